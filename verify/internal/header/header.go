// Package header splits an Internet message or a MIME entity into its
// header fields and body without losing the fields' order or raw bytes
// (RFC 5322 2.2, 2.2.3; RFC 2045 3), for the verifier. The input is
// expected in canonical form (CRLF line ends, see Canonical).
package header

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// ErrMalformed: the header section cannot be parsed.
var ErrMalformed = errors.New("header: malformed header")

// Field is one header field.
type Field struct {
	// Name is the field name as written.
	Name string
	// Value is the unfolded value (RFC 5322 2.2.3): CRLFs removed, leading
	// and trailing white space trimmed.
	Value string
	// Raw is the field exactly as transmitted, including the final CRLF.
	Raw []byte
}

// Header is the ordered list of fields.
type Header []Field

// Values returns the values of every field named name (case-insensitive),
// in order.
func (h Header) Values(name string) []string {
	var v []string
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			v = append(v, f.Value)
		}
	}
	return v
}

// Get returns the value of the first field named name, or "".
func (h Header) Get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Count returns how many fields are named name.
func (h Header) Count(name string) int {
	n := 0
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			n++
		}
	}
	return n
}

// Canonical returns msg with every line ending as CRLF (RFC 5322 2.1,
// RFC 8551 3.1.1): bare LFs become CRLF, existing CRLFs are kept. It
// returns msg itself when nothing changes.
func Canonical(msg []byte) []byte {
	bare := 0
	for i, c := range msg {
		if c == '\n' && (i == 0 || msg[i-1] != '\r') {
			bare++
		}
	}
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

// Split parses the header section of a canonical entity and returns its
// fields and the body (what follows the empty line; nil when there is no
// empty line). An entity that starts with the empty line has no fields. A
// line that is neither a field nor a continuation wraps ErrMalformed.
func Split(entity []byte) (Header, []byte, error) {
	var h Header
	rest := entity
	for len(rest) > 0 {
		if bytes.HasPrefix(rest, []byte("\r\n")) {
			return h, rest[2:], nil
		}
		// One field: its first line and every continuation line (starting
		// with WSP, RFC 5322 2.2.3).
		end := 0
		for {
			i := bytes.Index(rest[end:], []byte("\r\n"))
			if i < 0 {
				end = len(rest)
				break
			}
			end += i + 2
			if end >= len(rest) || (rest[end] != ' ' && rest[end] != '\t') {
				break
			}
		}
		raw := rest[:end]
		rest = rest[end:]
		colon := bytes.IndexByte(raw, ':')
		if colon <= 0 {
			return nil, nil, fmt.Errorf("%w: line %q is not a header field", ErrMalformed, firstLine(raw))
		}
		name := string(raw[:colon])
		// RFC 5322 2.2: ftext is printable US-ASCII except colon. Obsolete
		// syntax allows WSP before the colon (RFC 5322 4.5).
		name = strings.TrimRight(name, " \t")
		if name == "" || !validName(name) {
			return nil, nil, fmt.Errorf("%w: bad field name %q", ErrMalformed, firstLine(raw))
		}
		h = append(h, Field{Name: name, Value: unfold(raw[colon+1:]), Raw: raw})
	}
	return h, nil, nil
}

func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

func unfold(v []byte) string {
	s := strings.ReplaceAll(string(v), "\r\n", "")
	return strings.Trim(s, " \t")
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\r'); i >= 0 {
		b = b[:i]
	}
	if len(b) > 60 {
		b = b[:60]
	}
	return string(b)
}
