package smtpgw

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/mail"
	"os"
	"strings"
	"time"

	"github.com/kakuin/kakuin/rfc5322"
)

// checker watches the bytes of a message as they arrive: size, line
// length, header size, and bare CR or LF (RFC 5321 2.3.8: lines end with
// CRLF; a lone LF is what SMTP smuggling builds its second message from,
// so it is refused, never passed on). It remembers the first violation.
type checker struct {
	maxSize   int64
	maxLine   int
	maxHeader int64

	n          int64
	lineLen    int
	prev       byte
	headerLen  int64 // bytes up to and including the blank line, once seen
	headerDone bool
	err        error
}

func (c *checker) Write(p []byte) (int, error) {
	if c.err != nil {
		return len(p), nil
	}
	// Line by line with IndexByte, which is vectorised: this runs over
	// every byte of every message. The first violation in byte order is
	// the one kept; FuzzChecker holds this to refChecker, the byte-wise
	// definition, on any input split any way.
	rest := p
	for c.err == nil && len(rest) > 0 {
		off := len(p) - len(rest)
		if c.prev == '\r' && rest[0] != '\n' {
			c.fail(p, off, ErrBareLineEnd) // a CR not followed by LF
			break
		}
		k := bytes.IndexByte(rest, '\n')
		seg := rest // this chunk's part of the current line, before its LF
		if k >= 0 {
			seg = rest[:k]
		}
		// The only CR a line may hold is its last byte, before the LF.
		content := len(seg)
		if i := bytes.IndexByte(seg, '\r'); i >= 0 {
			if i != len(seg)-1 {
				if over := c.maxLine - c.lineLen; over < i {
					c.fail(p, off+over, ErrLineTooLong) // before the bare CR
				} else {
					c.fail(p, off+i+1, ErrBareLineEnd) // seen at the byte after it
				}
				break
			}
			content = i
		}
		if over := c.maxLine - c.lineLen; content > over {
			c.fail(p, off+over, ErrLineTooLong)
			break
		}
		c.lineLen += content
		if k < 0 {
			if len(seg) > 0 {
				c.prev = seg[len(seg)-1]
			}
			break
		}
		if content == len(seg) && (len(seg) > 0 || c.prev != '\r') {
			c.fail(p, off+k, ErrBareLineEnd) // an LF without its CR
			break
		}
		if !c.headerDone && c.lineLen == 0 {
			// RFC 5322 2.1: the empty line ends the header section.
			if c.headerLen = c.n + int64(off+k+1); c.headerLen > c.maxHeader {
				c.fail(p, off+k, ErrHeaderTooBig)
				break
			}
			c.headerDone = true
		}
		c.lineLen, c.prev = 0, '\n'
		rest = rest[k+1:]
	}
	if c.err == nil {
		c.fail(p, len(p), nil)
	}
	c.n += int64(len(p))
	return len(p), nil
}

// fail records err, found at index at of p, unless the header or the
// message grew over its limit at an earlier byte of p (the limit checks
// come after the line checks at the same byte). With err nil it records
// only those.
func (c *checker) fail(p []byte, at int, err error) {
	hdr := c.maxHeader - c.n // index in p of the first byte over the header limit
	size := c.maxSize - c.n  // and over the size limit
	inHdr := !c.headerDone && hdr < int64(at)
	switch {
	case inHdr && hdr <= size:
		c.err = ErrHeaderTooBig
	case size < int64(at):
		c.err = ErrTooBig
	default:
		c.err = err
	}
}

// end checks the end of the message.
func (c *checker) end() error {
	if c.err == nil && c.prev == '\r' {
		c.err = ErrBareLineEnd
	}
	if c.err == nil && !c.headerDone {
		// A message without a body: the header is all of it.
		c.headerLen = c.n
	}
	return c.err
}

// spool holds a message in memory up to a threshold, then in a temporary
// file (mode 0600, removed by Close).
type spool struct {
	mem       bytes.Buffer
	f         *os.File
	n         int64
	threshold int
	dir       string
}

// expect makes room in memory for n bytes if they stay under the
// threshold; a spool that will spill to a file gets nothing.
func (s *spool) expect(n int64) {
	if d := n - int64(s.mem.Len()); s.f == nil && n <= int64(s.threshold) && d > 0 {
		s.mem.Grow(int(d))
	}
}

func (s *spool) Write(p []byte) (int, error) {
	if s.f == nil && s.mem.Len()+len(p) > s.threshold {
		f, err := os.CreateTemp(s.dir, "kakuin-spool-")
		if err != nil {
			return 0, fmt.Errorf("%w: spool: %w", ErrInternal, err)
		}
		os.Remove(f.Name()) // unlinked: nothing is left behind, even on a crash
		s.f = f
		if _, err := s.f.Write(s.mem.Bytes()); err != nil {
			return 0, fmt.Errorf("%w: spool: %w", ErrInternal, err)
		}
		s.mem = bytes.Buffer{}
	}
	var n int
	var err error
	if s.f != nil {
		n, err = s.f.Write(p)
		if err != nil {
			err = fmt.Errorf("%w: spool: %w", ErrInternal, err)
		}
	} else {
		n, err = s.mem.Write(p)
	}
	s.n += int64(n)
	return n, err
}

// Reader reads the spooled bytes from the start.
func (s *spool) Reader() io.Reader {
	if s.f != nil {
		return bufio.NewReaderSize(io.NewSectionReader(s.f, 0, s.n), 64<<10)
	}
	return bytes.NewReader(s.mem.Bytes())
}

// Head returns the first n bytes.
func (s *spool) Head(n int64) ([]byte, error) {
	if n > s.n {
		n = s.n
	}
	if s.f == nil {
		return s.mem.Bytes()[:n], nil
	}
	b := make([]byte, n)
	if _, err := s.f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("%w: spool: %w", ErrInternal, err)
	}
	return b, nil
}

// Len is the number of bytes spooled.
func (s *spool) Len() int64 { return s.n }

// Close releases the spool.
func (s *spool) Close() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	s.mem = bytes.Buffer{}
}

// originators parses the header section with the signer's own parser
// (package rfc5322, same limits), so that the per-client sender policy
// judges exactly the addresses the signer will sign for: exactly one From
// field holding exactly one mailbox, and at most one Sender field holding
// one mailbox (RFC 5322 3.6.2, 3.6 table). It returns their addr-specs,
// and the Date field's time (zero if absent or unreadable). Errors wrap
// ErrHeader.
func originators(head []byte) (from, sender string, date time.Time, err error) {
	h, _, err := rfc5322.Parse(head, nil)
	if err != nil {
		// rfc5322's errors name fields, never quote their content, which
		// must not reach the log.
		return "", "", date, fmt.Errorf("%w: %w", ErrHeader, err)
	}
	if from, err = rfc5322.From(h); err != nil {
		return "", "", date, fmt.Errorf("%w: %w", ErrHeader, err)
	}
	if sender, err = rfc5322.Sender(h); err != nil {
		return "", "", date, fmt.Errorf("%w: %w", ErrHeader, err)
	}
	if ds := h.Values("Date"); len(ds) == 1 {
		// Zero when it does not parse: the signer checks the header.
		date, _ = mail.ParseDate(strings.Join(strings.Fields(ds[0]), " "))
	}
	return from, sender, date, nil
}
