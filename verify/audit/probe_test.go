package audit

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestClientHelloShape(t *testing.T) {
	t.Parallel()
	for _, w := range weakProbes {
		if w.version == sslv2Version {
			continue // TestSSLv2ClientHelloShape
		}
		suites := make([]uint16, len(w.suites))
		for i, s := range w.suites {
			suites[i] = uint16(s)
		}
		b := ClientHello(w.version, suites, "mx.example.go.jp")
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

func TestSSLv2ClientHelloShape(t *testing.T) {
	t.Parallel()
	b := sslv2ClientHello(sslv2CipherKinds)
	// SSL 2.0 spec 1.2: 2-byte header, high bit set, 15-bit length.
	if b[0]&0x80 == 0 || int(b[0]&0x7f)<<8|int(b[1]) != len(b)-2 {
		t.Fatalf("bad record header % x (len %d)", b[:2], len(b))
	}
	body := b[2:]
	specs, sid, chal := int(body[3])<<8|int(body[4]), int(body[5])<<8|int(body[6]), int(body[7])<<8|int(body[8])
	if body[0] != 1 || body[1] != 0 || body[2] != 2 || sid != 0 || chal != 16 || 9+specs+sid+chal != len(body) {
		t.Fatalf("bad CLIENT-HELLO % x", body[:9])
	}
	var kinds []uint32
	for i := 9; i < 9+specs; i += 3 {
		kinds = append(kinds, uint32(body[i])<<16|uint32(body[i+1])<<8|uint32(body[i+2]))
	}
	if !slices.Equal(kinds, sslv2CipherKinds) || !slices.Contains(kinds, 0x010080) || !slices.Contains(kinds, 0x0700c0) {
		t.Fatalf("cipher kinds %06x", kinds)
	}
}

// v2ServerHello writes an SSLv2 SERVER-HELLO by hand (SSL 2.0 spec, 2.6).
func v2ServerHello(hit, certType byte, version uint16, cert []byte, kinds []byte, connID []byte) []byte {
	body := []byte{4, hit, certType, byte(version >> 8), byte(version),
		byte(len(cert) >> 8), byte(len(cert)), byte(len(kinds) >> 8), byte(len(kinds)), byte(len(connID) >> 8), byte(len(connID))}
	body = append(append(append(body, cert...), kinds...), connID...)
	return append([]byte{0x80 | byte(len(body)>>8), byte(len(body))}, body...)
}

func TestReadSSLv2ServerHello(t *testing.T) {
	t.Parallel()
	cert := bytes.Repeat([]byte{0x30}, 300)
	id := bytes.Repeat([]byte{7}, 16)
	good := v2ServerHello(0, 1, 2, cert, []byte{0x07, 0x00, 0xc0, 0x01, 0x00, 0x80}, id)
	h, err := readSSLv2ServerHello(bufio.NewReader(bytes.NewReader(good)))
	if err != nil || !bytes.Equal(h.certificate, cert) || !slices.Equal(h.kinds, []uint32{0x0700c0, 0x010080}) {
		t.Fatalf("good hello: %+v %v", h, err)
	}
	refused := map[string][]byte{
		"TLS alert":           {0x15, 3, 3, 0, 2, 2, 70},
		"TLS handshake":       {0x16, 3, 1, 0, 4, 2, 0, 0, 0},
		"closed":              nil,
		"SSLv2 ERROR":         {0x80, 3, 0, 0, 1}, // NO-CIPHER-ERROR
		"short record":        {0x80, 4, 4, 0, 1, 0},
		"truncated":           good[:len(good)-5],
		"session-id hit":      v2ServerHello(1, 1, 2, cert, []byte{1, 0, 0x80}, id),
		"version 3.0":         v2ServerHello(0, 1, 0x0300, cert, []byte{1, 0, 0x80}, id),
		"no certificate":      v2ServerHello(0, 1, 2, nil, []byte{1, 0, 0x80}, id),
		"cert type":           v2ServerHello(0, 2, 2, cert, []byte{1, 0, 0x80}, id),
		"no cipher":           v2ServerHello(0, 1, 2, cert, nil, id),
		"partial cipher":      v2ServerHello(0, 1, 2, cert, []byte{1, 0}, id),
		"short connection-id": v2ServerHello(0, 1, 2, cert, []byte{1, 0, 0x80}, id[:15]),
		"long connection-id":  v2ServerHello(0, 1, 2, cert, []byte{1, 0, 0x80}, bytes.Repeat(id, 3)),
		"lengths overrun":     append(v2ServerHello(0, 1, 2, cert, []byte{1, 0, 0x80}, id)[:2], make([]byte, 40)...),
	}
	for name, b := range refused {
		if _, err := readSSLv2ServerHello(bufio.NewReader(bytes.NewReader(b))); err != errRefused {
			t.Errorf("%s: %v, want errRefused", name, err)
		}
	}
	// Silence until the deadline is "could not test", never a refusal.
	c, s := net.Pipe()
	t.Cleanup(func() { c.Close(); s.Close() })
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := readSSLv2ServerHello(bufio.NewReader(c)); err == nil || errors.Is(err, errRefused) {
		t.Fatalf("timeout: %v", err)
	}
}

// TestSSLv2HelloAgainstOpenSSL sends the probe's CLIENT-HELLO to a real
// OpenSSL server, which has no SSLv2: its answer must read as a refusal
// (not a timeout, not an acceptance).
func TestSSLv2HelloAgainstOpenSSL(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed (make deps)")
	}
	cmd := exec.Command(bin, "s_server", "-accept", "127.0.0.1:0", "-nocert", "-naccept", "1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ACCEPT "); ok {
				addr <- a
			}
		}
		close(addr)
	}()
	var a string
	select {
	case a = <-addr:
	case <-time.After(10 * time.Second):
		t.Fatal("openssl s_server did not start")
	}
	if a == "" {
		t.Fatal("openssl s_server exited")
	}
	conn, err := net.DialTimeout("tcp", a, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(sslv2ClientHello(sslv2CipherKinds)); err != nil {
		t.Fatal(err)
	}
	// OpenSSL 3 answers with a protocol_version alert and closes; the
	// close may come as a reset that discards the alert. Both refuse.
	if _, err := readSSLv2ServerHello(bufio.NewReader(conn)); err != errRefused {
		t.Fatalf("OpenSSL's answer read as %v, want errRefused", err)
	}
}

// FuzzReadSSLv2ServerHello: the answer to the SSLv2 probe is untrusted
// input.
func FuzzReadSSLv2ServerHello(f *testing.F) {
	id := bytes.Repeat([]byte{7}, 16)
	f.Add(v2ServerHello(0, 1, 2, []byte{0x30, 0x82, 0, 0}, []byte{1, 0, 0x80}, id))
	f.Add(v2ServerHello(1, 1, 2, nil, nil, id))
	f.Add([]byte{0x15, 3, 3, 0, 2, 2, 70})
	f.Add([]byte{0x80, 3, 0, 0, 1})
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := readSSLv2ServerHello(bufio.NewReader(bytes.NewReader(b)))
		if (h == nil) == (err == nil) {
			t.Fatalf("hello %v with error %v", h, err)
		}
		if err == nil && (len(h.kinds) == 0 || len(h.certificate) == 0 || len(b) < 2+11+len(h.certificate)+3*len(h.kinds)+16) {
			t.Fatalf("accepted an impossible hello: %+v from %d bytes", h, len(b))
		}
	})
}
