// Package mime7bit rewrites a MIME entity so that it is 7-bit clean with
// CRLF line ends and no line over 998 octets, as S/MIME requires before
// signing (RFC 8551 3.1.1-3.1.3, RFC 6376 5.3): a part with 8bit or binary
// content, or with a line too long, is re-encoded as quoted-printable (text)
// or base64 (anything else); nested multiparts are walked; charsets are
// kept. Malformed MIME is an error, never a silently mangled entity.
package mime7bit

import (
	"errors"
	"io"
)

// ErrMIME: the entity is malformed (bad header syntax, a multipart without
// a usable boundary, a missing closing delimiter, an unknown
// Content-Transfer-Encoding, ...).
var ErrMIME = errors.New("mime7bit: malformed mime")

// Normalize reads one MIME entity from src (header fields, an empty line,
// the body; LF or CRLF line ends) and writes its 7-bit, CRLF form to dst.
// Decoding the output part by part gives back exactly the content of the
// input (text as text, attachments byte for byte).
func Normalize(dst io.Writer, src io.Reader) error {
	return errors.New("mime7bit: not implemented")
}
