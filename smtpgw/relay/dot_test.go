package relay

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// stuffedByTextproto is what smtp.Client sent before the stuffer: the
// content through textproto's DotWriter, closed.
func stuffedByTextproto(msg []byte, step int) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	dw := textproto.NewWriter(bw).DotWriter()
	for i := 0; i < len(msg); i += step {
		dw.Write(msg[i:min(i+step, len(msg))])
	}
	dw.Close()
	return out.Bytes()
}

// stuffedByStuffer is what the relay sends now: the stuffer's output, then
// textproto's end-of-data sequence through wire, which swallows the part
// that would add an empty line.
func stuffedByStuffer(t testing.TB, msg []byte, step int) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriterSize(&out, 64)
	st := newStuffer(bw)
	for i := 0; i < len(msg); i += step {
		if n, err := st.Write(msg[i:min(i+step, len(msg))]); err != nil || n != min(step, len(msg)-i) {
			t.Fatalf("Write: %d, %v", n, err)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	w := &wire{Conn: bufConn{&out}, swallow: st.ending()}
	end := bufio.NewWriter(w)
	dw := textproto.NewWriter(end).DotWriter()
	if err := dw.Close(); err != nil {
		t.Fatalf("end of data: %v", err)
	}
	return out.Bytes()
}

func TestStuffer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", "\r\n.\r\n"},
		{"a\r\n", "a\r\n.\r\n"},
		{"a", "a\r\n.\r\n"},
		{".\r\n", "..\r\n.\r\n"},
		{"a\r\n.b\r\n..\r\n", "a\r\n..b\r\n...\r\n.\r\n"},
		{"a\r\n.\r\nMAIL FROM:<x>\r\n", "a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n"}, // smuggling stays content
		{"a\nb\n", "a\r\nb\r\n.\r\n"},                                        // bare LF gets its CR
		{"a\r", "a\r\n.\r\n"},
		{"\r\n", "\r\n.\r\n"},
	} {
		for step := 1; step <= len(tc.in)+1; step++ {
			if got := string(stuffedByStuffer(t, []byte(tc.in), step)); got != tc.want {
				t.Errorf("%q in parts of %d: got %q, want %q", tc.in, step, got, tc.want)
			}
		}
	}
}

// FuzzStuffer: the stuffer and wire together send exactly what textproto's
// DotWriter sends, however the content is split. (textproto treats the
// second CR of "\r\r\n" as content and adds a third; the stuffer ends the
// line there. The gateway never relays a CR outside CRLF.)
func FuzzStuffer(f *testing.F) {
	f.Add([]byte("From: a@example.go.jp\r\n\r\n.hidden\r\n.\r\nQUIT\r\n"), uint8(3))
	f.Add([]byte("a\n.\nb"), uint8(1))
	f.Add([]byte("."), uint8(0))
	f.Fuzz(func(t *testing.T, msg []byte, split uint8) {
		if bytes.Contains(msg, []byte("\r\r")) {
			t.Skip("textproto's own reading of CR CR LF")
		}
		step := int(split)%17 + 1
		want := stuffedByTextproto(msg, step)
		if got := stuffedByStuffer(t, msg, step); !bytes.Equal(got, want) {
			t.Fatalf("parts of %d:\n got %q\nwant %q", step, got, want)
		}
	})
}

func TestWireRefusesAnotherEnding(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	w := &wire{Conn: bufConn{&out}, swallow: "\r\n"}
	if _, err := w.Write([]byte(".\r\n")); err != errEnding || out.Len() != 0 {
		t.Fatalf("got %v, wrote %q", err, out.String())
	}
	// Swallowing is for one write only.
	if _, err := w.Write([]byte("\r\n")); err != nil || out.String() != "\r\n" {
		t.Fatalf("got %v, wrote %q", err, out.String())
	}
}

// BenchmarkStuffer: 1 MB of content through the stuffer and through
// textproto's DotWriter (what smtp.Client's Data writer is).
func BenchmarkStuffer(b *testing.B) {
	msg := []byte(strings.Repeat(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 2)[:76]+"\r\n", 1<<20/78))
	b.Run("stuffer", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		bw := bufio.NewWriterSize(nopWriter{}, 32<<10)
		for b.Loop() {
			st := newStuffer(bw)
			for p := msg; len(p) > 0; p = p[min(len(p), 32<<10):] {
				st.Write(p[:min(len(p), 32<<10)])
			}
			bw.Flush()
		}
	})
	b.Run("textproto", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		bw := bufio.NewWriterSize(nopWriter{}, 4096)
		for b.Loop() {
			dw := textproto.NewWriter(bw).DotWriter()
			for p := msg; len(p) > 0; p = p[min(len(p), 32<<10):] {
				dw.Write(p[:min(len(p), 32<<10)])
			}
			dw.Close()
		}
	})
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// bufConn is a net.Conn that only writes, into a buffer.
type bufConn struct{ b *bytes.Buffer }

func (c bufConn) Write(p []byte) (int, error)      { return c.b.Write(p) }
func (c bufConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c bufConn) Close() error                     { return nil }
func (c bufConn) LocalAddr() net.Addr              { return nil }
func (c bufConn) RemoteAddr() net.Addr             { return nil }
func (c bufConn) SetDeadline(time.Time) error      { return nil }
func (c bufConn) SetReadDeadline(time.Time) error  { return nil }
func (c bufConn) SetWriteDeadline(time.Time) error { return nil }
