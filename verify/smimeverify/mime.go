package smimeverify

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime"
	"strings"

	"github.com/kakuin/kakuin/rfc5322"
)

// maxDepth bounds how deep Verify looks into nested multiparts for a
// signed part that is not the whole message.
const maxDepth = 8

// part is one body part of a multipart entity: its exact bytes (header
// and body, without the CRLF that belongs to the next delimiter, RFC 2046
// 5.1.1).
type part []byte

// splitMultipart returns the body parts of a multipart body with the given
// boundary (RFC 2046 5.1.1). The preamble and epilogue are dropped. closed
// is false when the close delimiter is missing.
func splitMultipart(body []byte, boundary string) (parts []part, closed bool, err error) {
	if boundary == "" || len(boundary) > 200 {
		return nil, false, fmt.Errorf("%w: bad multipart boundary", ErrMalformed)
	}
	delim := []byte("--" + boundary)
	crlfDelim := []byte("\r\n--" + boundary)
	// Find delimiter lines: at the start of the body or after a CRLF.
	start := -1 // start of the current part's content
	pos := 0
	for pos <= len(body) {
		var at int
		if pos == 0 && bytes.HasPrefix(body, delim) {
			at = 0
		} else {
			i := bytes.Index(body[pos:], crlfDelim)
			if i < 0 {
				break
			}
			at = pos + i + 2
		}
		after := at + len(delim)
		// The CRLF before the delimiter belongs to the delimiter.
		partEnd := at - 2
		if at == 0 {
			partEnd = 0
		}
		if bytes.HasPrefix(body[after:], []byte("--")) {
			// Close delimiter: the rest is the epilogue.
			if start >= 0 {
				parts = append(parts, part(body[start:partEnd]))
			}
			return parts, true, nil
		}
		// transport-padding (LWSP) then CRLF; anything else means this line
		// only starts like a delimiter and is content.
		j := after
		for j < len(body) && (body[j] == ' ' || body[j] == '\t') {
			j++
		}
		if !bytes.HasPrefix(body[j:], []byte("\r\n")) {
			pos = after
			continue
		}
		if start >= 0 {
			parts = append(parts, part(body[start:partEnd]))
		}
		start = j + 2
		pos = start
		if pos == len(body) {
			break
		}
	}
	if start >= 0 {
		parts = append(parts, part(body[start:]))
	}
	return parts, false, nil
}

// split parses the header section of a message or MIME entity, read as
// received mail (rfc5322.Options.Received), and returns its fields and its
// body (empty when there is no blank line).
func split(entity []byte) (rfc5322.Header, []byte, error) {
	h, off, err := rfc5322.Parse(entity, &rfc5322.Options{Received: true})
	if err != nil {
		return nil, nil, err
	}
	return h, entity[off:], nil
}

// first returns the value of the first field named name, or "".
func first(h rfc5322.Header, name string) string {
	if v := h.Values(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// mediaType parses the single Content-Type of h. A missing field is
// text/plain (RFC 2045 5.2).
func mediaType(h rfc5322.Header) (string, map[string]string, error) {
	switch h.Count("Content-Type") {
	case 0:
		return "text/plain", map[string]string{}, nil
	case 1:
	default:
		return "", nil, fmt.Errorf("%w: several Content-Type fields", ErrMalformed)
	}
	mt, params, err := mime.ParseMediaType(first(h, "Content-Type"))
	if err != nil {
		return "", nil, fmt.Errorf("%w: Content-Type: %w", ErrMalformed, err)
	}
	return mt, params, nil
}

// decodeBody returns the body decoded per its Content-Transfer-Encoding.
// S/MIME objects are base64 in practice; 7bit, 8bit and binary are taken
// as they are.
func decodeBody(h rfc5322.Header, body []byte) ([]byte, error) {
	if h.Count("Content-Transfer-Encoding") > 1 {
		return nil, fmt.Errorf("%w: several Content-Transfer-Encoding fields", ErrMalformed)
	}
	switch cte := strings.ToLower(strings.TrimSpace(first(h, "Content-Transfer-Encoding"))); cte {
	case "base64":
		clean := make([]byte, 0, len(body))
		for _, c := range body {
			switch c {
			case '\r', '\n', ' ', '\t':
			default:
				clean = append(clean, c)
			}
		}
		out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
		n, err := base64.StdEncoding.Decode(out, clean)
		if err != nil {
			return nil, fmt.Errorf("%w: base64: %w", ErrMalformed, err)
		}
		return out[:n], nil
	case "", "7bit", "8bit", "binary":
		return body, nil
	default:
		return nil, fmt.Errorf("%w: unexpected Content-Transfer-Encoding %q for an S/MIME object", ErrMalformed, cte)
	}
}

// isSignatureType reports whether mt is the detached-signature type (RFC
// 8551 3.5.3; x-pkcs7-signature is the older name, 3.7).
func isSignatureType(mt string) bool {
	return mt == "application/pkcs7-signature" || mt == "application/x-pkcs7-signature"
}

// isMimeType reports whether mt is the opaque S/MIME type (RFC 8551 3.2).
func isMimeType(mt string) bool {
	return mt == "application/pkcs7-mime" || mt == "application/x-pkcs7-mime"
}

// findNested reports whether an S/MIME signed part sits somewhere inside
// a multipart entity that is not itself signed.
func findNested(body []byte, params map[string]string, depth int) bool {
	if depth > maxDepth {
		return false
	}
	parts, _, err := splitMultipart(body, params["boundary"])
	if err != nil {
		return false
	}
	for _, p := range parts {
		h, b, err := split(p)
		if err != nil {
			continue
		}
		mt, ps, err := mediaType(h)
		if err != nil {
			continue
		}
		switch {
		case mt == "multipart/signed", isMimeType(mt):
			return true
		case strings.HasPrefix(mt, "multipart/"):
			if findNested(b, ps, depth+1) {
				return true
			}
		}
	}
	return false
}
