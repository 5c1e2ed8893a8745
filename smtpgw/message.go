package smtpgw

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

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
	for i, b := range p {
		switch {
		case b == '\n' && c.prev != '\r':
			c.err = ErrBareLineEnd
		case c.prev == '\r' && b != '\n':
			c.err = ErrBareLineEnd
		case b == '\n':
			if !c.headerDone && c.lineLen == 0 {
				// RFC 5322 2.1: the empty line ends the header section.
				c.headerDone, c.headerLen = true, c.n+int64(i)+1
				if c.headerLen > c.maxHeader {
					c.err = ErrHeaderTooBig
				}
			}
			c.lineLen = 0
		case b != '\r':
			c.lineLen++
			if c.lineLen > c.maxLine {
				c.err = ErrLineTooLong
			}
		}
		c.prev = b
		if c.err != nil {
			break
		}
	}
	c.n += int64(len(p))
	if c.err == nil && c.n > c.maxSize {
		c.err = ErrTooBig
	}
	if c.err == nil && !c.headerDone && c.n > c.maxHeader {
		c.err = ErrHeaderTooBig
	}
	return len(p), nil
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
// one mailbox (RFC 5322 3.6.2, 3.6 table). It returns their addr-specs.
// Errors wrap ErrHeader.
func originators(head []byte) (from, sender string, err error) {
	h, _, err := rfc5322.Parse(head, nil)
	if err != nil {
		// rfc5322's errors name fields, never quote their content, which
		// must not reach the log.
		return "", "", fmt.Errorf("%w: %w", ErrHeader, err)
	}
	if from, err = rfc5322.From(h); err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrHeader, err)
	}
	if sender, err = rfc5322.Sender(h); err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrHeader, err)
	}
	return from, sender, nil
}
