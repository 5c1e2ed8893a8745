// Package rfc5322 splits an Internet message into its header fields and
// body without losing their order or raw form (RFC 5322 2.2, 3.6), so that
// the signer can move Content-* fields into the signed entity, DKIM can see
// the exact bytes, and the gateway and the verifier can check the
// originator fields: exactly one From with exactly one mailbox, no
// duplicated singleton field (RFC 5322 3.6 table).
//
// The parser is strict where leniency would let two programs read the same
// header differently (the root of author-spoofing tricks): a bare CR, a NUL,
// a field name followed by white space before the colon (obs-optional), a
// line that is neither a field nor a continuation, and lines over the
// length limit are syntax errors.
//
// Options.Received reads mail received from elsewhere (the verifier): it
// also takes the obsolete syntax that has one reading (obs-optional, long
// lines) but refuses, like the strict mode, whatever two readers could
// split differently. Both modes share one address parser, one RFC 2047
// charset table and one set of singleton fields, so the signer, the
// gateway and the verifier cannot disagree about the author.
package rfc5322

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Errors. Each is wrapped with the detail; test them with errors.Is.
var (
	// ErrSyntax: the header section is not RFC 5322 syntax.
	ErrSyntax = errors.New("rfc5322: header syntax")
	// ErrTooLarge: the header section exceeds a limit in Options.
	ErrTooLarge = errors.New("rfc5322: header too large")
	// ErrDuplicate: a field that RFC 5322 3.6 allows at most once occurs
	// more than once. The error text names the field.
	ErrDuplicate = errors.New("rfc5322: duplicated singleton field")
	// ErrAddress: an originator field (From, Sender) is missing, occurs
	// more than once, does not hold exactly one mailbox, or does not parse.
	ErrAddress = errors.New("rfc5322: originator address")
)

// Defaults for the zero Options.
const (
	// DefaultMaxHeaderBytes bounds the header section, blank line included.
	DefaultMaxHeaderBytes = 1 << 20
	// DefaultMaxFields bounds the number of header fields.
	DefaultMaxFields = 1000
	// DefaultMaxLineLength is RFC 5322 2.1.1's limit of 998 characters per
	// line, excluding the line end.
	DefaultMaxLineLength = 998
)

// Options limit what Parse and ReadHeader accept. The zero value uses the
// defaults above.
type Options struct {
	// MaxHeaderBytes bounds the header section including the blank line.
	// If zero, DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxFields bounds the number of fields. If zero, DefaultMaxFields.
	MaxFields int
	// MaxLineLength bounds each line, line end excluded. If zero,
	// DefaultMaxLineLength (RFC 5322 2.1.1), or no limit when Received is
	// set; if negative, no limit.
	MaxLineLength int
	// Received selects the reading of a message received from elsewhere,
	// as a verifier must take it, rather than one about to be signed. RFC
	// 5322 4 says the obsolete syntax must be accepted, not generated; of
	// it, Received accepts what has a single reading:
	//   - white space between a field name and its colon (obs-optional,
	//     RFC 5322 4.5): Name is the name without it, Raw keeps it, as
	//     DKIM's relaxed canonicalisation (RFC 6376 3.4.2) and go-msgauth
	//     read it, so "From : x" counts as a From field (and a second From
	//     is seen as a duplicate, not missed);
	//   - lines over 998 characters (RFC 5322 2.1.1), unless MaxLineLength
	//     says otherwise.
	// It refuses, as the strict reading does, whatever two readers could
	// split differently: a bare CR (obs-unstruct, RFC 5322 4.1, allows it,
	// but some readers break the line there and some do not: a field
	// hidden behind it would be seen by one and not the other), a NUL
	// (C readers stop there), a line that is neither a field nor a
	// continuation, a field name outside printable US-ASCII. If false, the
	// strict reading of the signer and the gateway.
	Received bool
}

func (o *Options) limits() (maxHeader, maxFields, maxLine int) {
	maxHeader, maxFields, maxLine = DefaultMaxHeaderBytes, DefaultMaxFields, DefaultMaxLineLength
	if o == nil {
		return
	}
	if o.MaxHeaderBytes > 0 {
		maxHeader = o.MaxHeaderBytes
	}
	if o.MaxFields > 0 {
		maxFields = o.MaxFields
	}
	switch {
	case o.MaxLineLength != 0:
		maxLine = o.MaxLineLength
	case o.Received:
		maxLine = -1
	}
	return
}

func (o *Options) received() bool { return o != nil && o.Received }

// Field is one header field.
type Field struct {
	// Name is the field name as written ("Subject"), without the white
	// space Options.Received allows before the colon; compare it with
	// strings.EqualFold.
	Name string
	// Raw is the whole field as it appeared: name, colon, body, folding
	// and the final line end (CRLF or LF).
	Raw []byte
	// Value is the unfolded field body (RFC 5322 2.2.3: each line end
	// followed by white space removed), with leading and trailing white
	// space trimmed.
	Value string
}

// Is reports whether the field's name is name, case-insensitively.
func (f Field) Is(name string) bool { return strings.EqualFold(f.Name, name) }

// NewField returns a field with Raw "Name: value\r\n". value must already
// be folded if it is long (each fold a CRLF followed by white space); its
// unfolded form becomes Value.
func NewField(name, value string) Field {
	raw := name + ": " + value + "\r\n"
	return Field{Name: name, Raw: []byte(raw), Value: unfold(value)}
}

// Header is the header section: the fields in order.
type Header []Field

// Count returns how many fields are named name.
func (h Header) Count(name string) int {
	n := 0
	for _, f := range h {
		if f.Is(name) {
			n++
		}
	}
	return n
}

// Get returns the fields named name, in order.
func (h Header) Get(name string) []Field {
	var fs []Field
	for _, f := range h {
		if f.Is(name) {
			fs = append(fs, f)
		}
	}
	return fs
}

// Values returns the values of the fields named name, in order.
func (h Header) Values(name string) []string {
	var vs []string
	for _, f := range h {
		if f.Is(name) {
			vs = append(vs, f.Value)
		}
	}
	return vs
}

// WriteTo writes the raw fields and the blank line that ends the header
// section (CRLF). A field without a line end (the last one of a message
// that ends without a body) gets a CRLF.
func (h Header) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for _, f := range h {
		m, err := w.Write(f.Raw)
		n += int64(m)
		if err != nil {
			return n, err
		}
		if len(f.Raw) > 0 && f.Raw[len(f.Raw)-1] != '\n' {
			// The last field of a message without a body may lack its line end.
			m, err = io.WriteString(w, "\r\n")
			n += int64(m)
			if err != nil {
				return n, err
			}
		}
	}
	m, err := io.WriteString(w, "\r\n")
	return n + int64(m), err
}

// Format returns the header section as WriteTo writes it.
func Format(h Header) []byte {
	var b bytes.Buffer
	h.WriteTo(&b) //nolint:errcheck // bytes.Buffer does not fail
	return b.Bytes()
}

// Parse splits msg into its header fields and returns them with the offset
// of the body (just after the blank line; len(msg) when the message has no
// blank line and no body, RFC 5322 3.5). Raw fields share msg's memory.
func Parse(msg []byte, opts *Options) (Header, int, error) {
	maxHeader, maxFields, maxLine := opts.limits()
	var h Header
	off := 0
	// Errors name the line by its number and never quote it: error texts
	// reach logs and reports, and message content must not.
	for lineNo := 1; off < len(msg); lineNo++ {
		end := bytes.IndexByte(msg[off:], '\n')
		var line []byte
		next := len(msg)
		if end >= 0 {
			next = off + end + 1
		}
		line = msg[off:next]
		if next > maxHeader {
			return nil, 0, fmt.Errorf("%w: header section over %d bytes", ErrTooLarge, maxHeader)
		}
		content := trimEOL(line)
		if maxLine >= 0 && len(content) > maxLine {
			// RFC 5322 2.1.1
			return nil, 0, fmt.Errorf("%w: line over %d characters", ErrTooLarge, maxLine)
		}
		if len(content) == 0 {
			return h.finish(), next, nil // the blank line ends the header (RFC 5322 2.1)
		}
		if bytes.IndexByte(content, '\r') >= 0 || bytes.IndexByte(content, 0) >= 0 {
			// RFC 5322 2.2: CR only as part of CRLF; no NUL.
			return nil, 0, fmt.Errorf("%w: bare CR or NUL in line %d", ErrSyntax, lineNo)
		}
		if content[0] == ' ' || content[0] == '\t' {
			// RFC 5322 2.2.3: a continuation of the previous field.
			if len(h) == 0 {
				return nil, 0, fmt.Errorf("%w: continuation line before any field", ErrSyntax)
			}
			f := &h[len(h)-1]
			f.Raw = msg[off-len(f.Raw) : next]
			off = next
			continue
		}
		colon := bytes.IndexByte(content, ':')
		if colon <= 0 {
			return nil, 0, fmt.Errorf("%w: line %d is not a header field", ErrSyntax, lineNo)
		}
		name := content[:colon]
		if opts.received() {
			// RFC 5322 4.5 obs-optional: field-name *WSP ":". Refused
			// below when not reading received mail.
			name = bytes.TrimRight(name, " \t")
		}
		for _, c := range name {
			// RFC 5322 2.2: ftext is printable US-ASCII except colon.
			// White space before the colon (obs-optional, 4.5.x) is refused.
			if c < 33 || c > 126 {
				return nil, 0, fmt.Errorf("%w: invalid field name in line %d", ErrSyntax, lineNo)
			}
		}
		if len(h) == maxFields {
			return nil, 0, fmt.Errorf("%w: more than %d fields", ErrTooLarge, maxFields)
		}
		h = append(h, Field{Name: string(name), Raw: msg[off:next]})
		off = next
	}
	// No blank line: a message without a body (RFC 5322 3.5).
	return h.finish(), len(msg), nil
}

// finish computes Value for every field: what follows the first colon
// (a field name has none, RFC 5322 2.2).
func (h Header) finish() Header {
	for i := range h {
		f := &h[i]
		v := f.Raw[bytes.IndexByte(f.Raw, ':')+1:]
		f.Value = unfold(string(v))
	}
	return h
}

// unfold removes line ends followed by white space and trims the result.
func unfold(s string) string {
	if strings.ContainsAny(s, "\r\n") {
		var b strings.Builder
		b.Grow(len(s))
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c == '\r' || c == '\n' {
				continue
			}
			b.WriteByte(c)
		}
		s = b.String()
	}
	return strings.Trim(s, " \t")
}

// CRLF returns msg with every line ending in CRLF (RFC 5322 2.1, RFC 8551
// 3.1.1: the canonical form signatures are computed over): each LF not
// preceded by CR gets one. A bare CR is left as it is (Parse refuses it
// in a header section). It returns msg itself when nothing changes.
func CRLF(msg []byte) []byte {
	bare := bytes.Count(msg, []byte("\n")) - bytes.Count(msg, []byte("\r\n"))
	if bare == 0 {
		return msg
	}
	out := make([]byte, 0, len(msg)+bare)
	for i, c := range msg {
		if c == '\n' && (i == 0 || msg[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// trimEOL removes a final CRLF or LF; a CR not followed by LF stays.
func trimEOL(line []byte) []byte {
	if l, ok := bytes.CutSuffix(line, []byte("\n")); ok {
		return bytes.TrimSuffix(l, []byte("\r"))
	}
	return line
}

// ReadHeader reads the header section from br, up to and including the
// blank line, and parses it. On success br is positioned at the first byte
// of the body. The limits of opts apply; past MaxHeaderBytes it stops
// reading and returns ErrTooLarge.
func ReadHeader(br *bufio.Reader, opts *Options) (Header, error) {
	maxHeader, _, _ := opts.limits()
	var buf []byte
	lineStart := 0
	for {
		line, err := br.ReadSlice('\n')
		buf = append(buf, line...)
		if len(buf) > maxHeader {
			return nil, fmt.Errorf("%w: header section over %d bytes", ErrTooLarge, maxHeader)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue // the same line goes on
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(trimEOL(buf[lineStart:])) == 0 {
			break // the blank line ends the header (RFC 5322 2.1)
		}
		lineStart = len(buf)
	}
	h, off, err := Parse(buf, opts)
	if err != nil {
		return nil, err
	}
	if off != len(buf) {
		// Cannot happen: the buffer ends at the blank line or at EOF.
		return nil, fmt.Errorf("%w: internal: header ends at %d of %d", ErrSyntax, off, len(buf))
	}
	return h, nil
}
