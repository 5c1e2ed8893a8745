// Package mime7bit rewrites a MIME entity so that it is 7-bit clean with
// CRLF line ends and no line over 998 octets, as S/MIME requires before
// signing (RFC 8551 3.1.1-3.1.3, RFC 6376 5.3): a part with 8bit or binary
// content, or with a line too long, is re-encoded as quoted-printable (text)
// or base64 (anything else); nested multiparts are walked; charsets are
// kept. Malformed MIME is an error, never a silently mangled entity.
//
// It implements RFC 2045 (transfer encodings), RFC 2046 (multipart and
// message media types), RFC 2049 4 (canonical form of text) and the 7-bit
// requirements of RFC 8551 3.1 and RFC 6376 5.3.
//
// # What changes and what does not
//
//   - Line ends: CRLF, a bare LF and a bare CR all end a line, in
//     multipart structure and in line-oriented content (text, 7bit and
//     8bit data, RFC 2045 2.7-2.8); each becomes CRLF. In a header, a line
//     ends at CRLF or LF; a bare CR there is an error, since readers
//     disagree on whether it starts a new field. Content that
//     is re-encoded as base64 is never split into lines: its octets,
//     including any CR, LF and NUL, are encoded exactly.
//   - Header fields are copied byte for byte (apart from line ends), except
//     Content-Transfer-Encoding, which is rewritten in place when the
//     encoding changes, or appended at the end of the header when absent.
//     Content-Type and its parameters (charset=ISO-2022-JP, UTF-8,
//     Shift_JIS, boundary, ...) are never touched, and neither is
//     MIME-Version: the caller that builds the message around the entity
//     (the S/MIME signer) supplies it.
//   - A header field holding an octet over 127 or a NUL is an error: a
//     header cannot be re-encoded without changing it, and RFC 8551 3.1.1
//     needs 7 bits. Normalizer.AllowUTF8Header relaxes this for the
//     top-level fields other than Content-*; Normalizer.EncodeUTF8Params
//     rewrites UTF-8 quoted parameter values of Content-Type and
//     Content-Disposition (an attachment's name) as RFC 2231 extended
//     parameters, outside multipart/signed.
//   - A leaf part labelled (or defaulting to) 7bit, 8bit or binary whose
//     content holds an octet over 127, a NUL or a line over 998 octets is
//     re-encoded: text/* as quoted-printable of its lines (RFC 2045 6.7),
//     anything else as base64 of its exact octets (RFC 2045 6.8). Clean
//     content labelled 8bit or binary is relabelled 7bit without
//     re-encoding (binary only when its line ends are already CRLF, since
//     binary data is not line-oriented). Clean 7bit, quoted-printable and
//     base64 parts are never re-encoded.
//   - A quoted-printable part with raw 8-bit octets or over-long lines is
//     decoded (leniently, as RFC 2045 6.7 suggests and Go's
//     mime/quotedprintable does) and encoded again. A base64 part holding
//     an octet over 127 or a NUL is an error; one with over-long lines is
//     wrapped again at 76 characters, the same characters in the same
//     order, and must then hold only the base64 alphabet and white space.
//     A base64 part is otherwise not decoded, so not checked.
//   - multipart/* is walked recursively (RFC 2046 5.1). The boundary, the
//     delimiter lines and a 7-bit preamble and epilogue are kept. A preamble
//     or epilogue that is not 7-bit clean is dropped: RFC 2046 5.1.1 says
//     it is to be ignored, so nothing a reader sees changes. A multipart
//     labelled 8bit or binary is relabelled 7bit; one labelled
//     quoted-printable or base64 is an error (RFC 2045 6.4).
//   - message/rfc822 (and a part without Content-Type inside
//     multipart/digest, RFC 2046 5.1.5) may be encoded only as 7bit, 8bit
//     or binary (RFC 2046 5.2.1), so it is not base64-encoded: the enclosed
//     message is normalised recursively as an entity of its own, and the
//     part is relabelled 7bit. Its header fields must be 7-bit. A
//     message/rfc822 part already (illegally) encoded as quoted-printable or
//     base64 is treated as an opaque leaf. message/partial and
//     message/external-body must be 7bit (RFC 2046 5.2.2, 5.2.3): anything
//     else is an error. Other message/* subtypes are treated as
//     application/octet-stream (RFC 2046 5.2.4).
//   - Inside multipart/signed (RFC 1847) nothing may change beyond line
//     ends, which the signature already covers in canonical form: a part
//     there that would need re-encoding or relabelling is an error, since
//     changing it would break the enclosed signature.
//
// Decoding the output part by part gives the content of the input: text as
// text (line ends in canonical CRLF form, RFC 2049 4), base64-encoded and
// binary content octet for octet. Normalising the output again returns it
// unchanged.
//
// Quoted-printable written here also encodes "-" and "." at the start of a
// line and the "F" of "From " (=2D, =2E, =46), so that a soft line break
// never forges a delimiter line and careless relays and mbox writers leave
// the text alone (RFC 2046 5.1.1, RFC 2049 3 (8)).
//
// Memory: the input is held once; apart from a pooled 32 KiB output buffer
// (and one decoded line when repairing quoted-printable), nothing is
// allocated in proportion to it. The output is larger than the
// input where parts are re-encoded: base64 makes binary content 1.37 times
// its size (4/3, plus CRLF every 76 characters), quoted-printable makes
// Japanese 8-bit text about 3 times its size.
//
// A part's content ends before the line end that precedes a delimiter line
// (RFC 2046 5.1.1). When that line end could be read as CRLF or as a bare
// LF after a CR belonging to the content, it is read as CRLF, as Go's
// mime/multipart does.
package mime7bit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// ErrMIME: the entity is malformed (bad header syntax, a multipart without
// a usable boundary, a missing closing delimiter, an unknown
// Content-Transfer-Encoding, ...) or cannot be made 7-bit without changing
// it (an 8-bit header field, a part inside multipart/signed that needs
// re-encoding), or exceeds a Normalizer limit. The message says which part
// (as "part 1.2") and why.
var ErrMIME = errors.New("mime7bit: malformed mime")

// Default limits, used where a Normalizer field is zero.
const (
	// DefaultMaxDepth is the deepest nesting of multipart and
	// message/rfc822 entities accepted; the top-level entity is depth 0.
	DefaultMaxDepth = 32
	// DefaultMaxParts is the most entities (the top-level one, every body
	// part and every enclosed message) accepted in one input.
	DefaultMaxParts = 10000
	// DefaultMaxHeaderBytes is the largest header of one entity accepted,
	// in octets, line ends included.
	DefaultMaxHeaderBytes = 256 << 10
)

// maxLine is the longest line, without its CRLF, that RFC 5322 2.1.1 and
// RFC 2045 2.7-2.8 allow.
const maxLine = 998

// Normalizer rewrites MIME entities to their 7-bit form. The zero value is
// ready to use, with the default limits and 8-bit header fields refused.
type Normalizer struct {
	// MaxDepth is the deepest nesting of multipart and message/rfc822
	// entities accepted (the top-level entity is depth 0); deeper input is
	// ErrMIME. If zero, DefaultMaxDepth.
	MaxDepth int
	// MaxParts is the most entities accepted in one input, counting the
	// top-level entity, every body part and every enclosed message; more is
	// ErrMIME. If zero, DefaultMaxParts.
	MaxParts int
	// MaxHeaderBytes is the largest header accepted for one entity, in
	// octets; a larger one is ErrMIME. If zero, DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// AllowUTF8Header, if true, lets the header fields of the top-level
	// entity other than Content-* hold octets over 127 (internationalised
	// fields, RFC 6532); they are copied unchanged, so the output is then
	// 7-bit except in those fields. If false (the zero value), any octet
	// over 127 in any header field is ErrMIME.
	AllowUTF8Header bool
	// EncodeUTF8Params, if true, rewrites a Content-Type or
	// Content-Disposition field whose quoted parameter values hold UTF-8
	// (an RFC 6532 attachment name, say) with those values as RFC 2231
	// extended parameters (filename*=utf-8''%E5%A0%B1...), which say the
	// same in 7 bits; outside multipart/signed only, and only when the
	// field parses. If false (the zero value), such a field is ErrMIME.
	EncodeUTF8Params bool
}

// Normalize reads one MIME entity from src (header fields, an empty line,
// the body; LF or CRLF line ends) and writes its 7-bit, CRLF form to dst.
// Decoding the output part by part gives back exactly the content of the
// input (text as text, attachments byte for byte).
//
// It is (&Normalizer{}).Normalize: see the package documentation for the
// rules, and Normalizer for the limits.
func Normalize(dst io.Writer, src io.Reader) error {
	var n Normalizer
	return n.Normalize(dst, src)
}

// Normalize reads one MIME entity from src and writes its 7-bit, CRLF form
// to dst. The whole input is held in memory once (a *bytes.Buffer is used
// in place, not copied); the output is streamed to dst. On error, dst may
// have received part of the output, which the caller must discard. An error
// about the input wraps ErrMIME; an error reading src or writing dst is
// returned wrapped as is.
func (n *Normalizer) Normalize(dst io.Writer, src io.Reader) error {
	msg, err := readAll(src)
	if err != nil {
		return fmt.Errorf("mime7bit: read: %w", err)
	}
	return n.NormalizeBytes(dst, msg)
}

// NormalizeBytes is Normalize for an entity already in memory. It does not
// modify or retain msg.
func (n *Normalizer) NormalizeBytes(dst io.Writer, msg []byte) error {
	c := walkers.Get().(*walker)
	defer c.release()
	c.w.Reset(dst)
	c.maxDepth = orDefault(n.MaxDepth, DefaultMaxDepth)
	c.maxParts = orDefault(n.MaxParts, DefaultMaxParts)
	c.maxHeader = orDefault(n.MaxHeaderBytes, DefaultMaxHeaderBytes)
	c.utf8Top = n.AllowUTF8Header
	c.utf8Params = n.EncodeUTF8Params
	if err := c.entity(msg, entityCtx{top: true}); err != nil {
		return err
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("mime7bit: write: %w", err)
	}
	return nil
}

// walkers keeps walkers, with their output buffer, between calls: the
// small-message case then allocates next to nothing.
var walkers = sync.Pool{New: func() any {
	return &walker{w: bufio.NewWriterSize(nil, 32<<10)}
}}

func (c *walker) release() {
	c.w.Reset(nil)
	c.parts = 0
	c.path = c.path[:0]
	if cap(c.lineBuf) > 64<<10 {
		c.lineBuf = nil
	}
	walkers.Put(c)
}

func orDefault(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}

// readAll returns the whole input, sized up front where the reader tells
// its length, so that a large message is not copied while growing.
func readAll(src io.Reader) ([]byte, error) {
	switch r := src.(type) {
	case *bytes.Buffer:
		return r.Next(r.Len()), nil
	case *bytes.Reader:
		b := make([]byte, r.Len())
		_, err := io.ReadFull(r, b)
		return b, err
	case *strings.Reader:
		b := make([]byte, r.Len())
		_, err := io.ReadFull(r, b)
		return b, err
	case *os.File:
		if fi, err := r.Stat(); err == nil && fi.Mode().IsRegular() {
			if off, err := r.Seek(0, io.SeekCurrent); err == nil && fi.Size() >= off {
				buf := bytes.NewBuffer(make([]byte, 0, fi.Size()-off+1))
				_, err := buf.ReadFrom(r)
				return buf.Bytes(), err
			}
		}
	}
	return io.ReadAll(src)
}
