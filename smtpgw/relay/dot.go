package relay

import (
	"bufio"
	"bytes"
	"errors"
	"net"
)

// stuffer writes a message as the content of DATA (RFC 5321 4.5.2): a
// '.' that begins a line is doubled, and an LF without a CR before it
// gets one. It writes what net/textproto's DotWriter (which smtp.Client
// uses) writes, but a line at a time with IndexByte instead of a byte at
// a time: on a 1 MB message that is most of what relaying costs after
// signing. It does not write the end-of-data line: see ending.
type stuffer struct {
	w     *bufio.Writer
	bol   bool // the next byte begins a line
	cr    bool // the last byte was CR
	wrote bool
}

func newStuffer(w *bufio.Writer) *stuffer { return &stuffer{w: w, bol: true} }

func (s *stuffer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if s.bol && p[0] == '.' {
			s.w.WriteByte('.') // RFC 5321 4.5.2: transparency
		}
		s.wrote = true
		k := bytes.IndexByte(p, '\n')
		if k < 0 {
			s.w.Write(p)
			s.bol, s.cr = false, p[len(p)-1] == '\r'
			break
		}
		s.w.Write(p[:k])
		if !(k > 0 && p[k-1] == '\r' || k == 0 && s.cr) {
			s.w.WriteByte('\r') // RFC 5321 2.3.8: lines end in CRLF
		}
		s.w.WriteByte('\n')
		s.bol, s.cr = true, false
		p = p[k+1:]
	}
	// bufio.Writer keeps its first error and returns it from every call.
	if _, err := s.w.Write(nil); err != nil {
		return 0, err
	}
	return n, nil
}

// ending is what of textproto's end-of-data sequence must not reach the
// wire once the content went through the stuffer: textproto's DotWriter,
// closed with nothing written through it, sends "\r\n.\r\n", which is
// right after content that ends mid-line; after a CRLF only ".\r\n" may
// follow, after a lone CR "\n.\r\n".
func (s *stuffer) ending() string {
	switch {
	case s.cr:
		return "\r"
	case s.bol && s.wrote:
		return "\r\n"
	}
	return ""
}

// errEnding: smtp.Client's end of DATA was not the expected "\r\n.\r\n";
// nothing of it was sent, so the upstream never sees the end of the
// message and cannot accept it.
var errEnding = errors.New("relay: unexpected end-of-data sequence from smtp.Client")

// wire is the connection smtp.Client writes to. After the content of
// DATA was written around smtp.Client, swallow removes the part of
// textproto's end-of-data sequence that would add an empty line.
type wire struct {
	net.Conn
	swallow string
}

func (w *wire) Write(p []byte) (int, error) {
	if w.swallow == "" {
		return w.Conn.Write(p)
	}
	want := w.swallow
	w.swallow = ""
	if !bytes.HasPrefix(p, []byte(want)) {
		return 0, errEnding
	}
	n, err := w.Conn.Write(p[len(want):])
	return len(want) + n, err
}
