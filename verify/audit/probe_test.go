package audit

import (
	"bufio"
	"bytes"
	"testing"
)

func TestClientHelloShape(t *testing.T) {
	t.Parallel()
	for _, w := range weakProbes {
		b := ClientHello(w.version, w.suites, "mx.example.go.jp")
		if b[0] != 0x16 || int(b[3])<<8|int(b[4]) != len(b)-5 || b[5] != 1 {
			t.Fatalf("%s: bad record framing % x", w.name, b[:10])
		}
		if got := uint16(b[9])<<8 | uint16(b[10]); got != w.version {
			t.Fatalf("%s: client_version %04x", w.name, got)
		}
		hasSNI := bytes.Contains(b, []byte("mx.example.go.jp"))
		if hasSNI != (w.version > 0x0300) {
			t.Fatalf("%s: SNI present %v", w.name, hasSNI)
		}
	}
}

func TestReadServerHello(t *testing.T) {
	t.Parallel()
	hello := []byte{0x16, 3, 3, 0, 42, 2, 0, 0, 38, 3, 3}
	hello = append(hello, make([]byte, 32)...)
	hello = append(hello, 0, 0xc0, 0x12, 0)
	v, s, err := readServerHello(bufio.NewReader(bytes.NewReader(hello)))
	if err != nil || v != 0x0303 || s != 0xc012 {
		t.Fatalf("%04x %04x %v", v, s, err)
	}
	alert := []byte{0x15, 3, 3, 0, 2, 2, 40}
	if _, _, err := readServerHello(bufio.NewReader(bytes.NewReader(alert))); err != errRefused {
		t.Fatalf("alert: %v", err)
	}
	if _, _, err := readServerHello(bufio.NewReader(bytes.NewReader(nil))); err != errRefused {
		t.Fatalf("closed: %v", err)
	}
}

// FuzzReadServerHello: the server's first record is untrusted input.
func FuzzReadServerHello(f *testing.F) {
	h := []byte{0x16, 3, 3, 0, 42, 2, 0, 0, 38, 3, 3}
	h = append(h, make([]byte, 32)...)
	f.Add(append(h, 0, 0xc0, 0x12, 0))
	f.Add([]byte{0x15, 3, 3, 0, 2, 2, 40})
	f.Add([]byte{0x16, 3, 0, 0, 41, 2, 0, 0, 37, 3, 0, 32})
	f.Fuzz(func(t *testing.T, b []byte) {
		readServerHello(bufio.NewReader(bytes.NewReader(b)))
	})
}
