package smimesign

import (
	"bufio"
	"encoding/base64"
	"io"
	"strings"
)

// ContentType returns the folded value of the Content-Type field of the
// multipart/signed message (RFC 8551 3.5.3, RULES S1).
func (s *Signature) ContentType() string {
	return `multipart/signed; protocol="application/pkcs7-signature";` + "\r\n" +
		` micalg=sha-256; boundary="` + s.Boundary + `"`
}

// preamble is ignored by MIME readers (RFC 2046 5.1.1).
const preamble = "This is an S/MIME signed message."

// signatureHeader is the header of the second part (RFC 8551 3.5.3).
const signatureHeader = "Content-Type: application/pkcs7-signature; name=smime.p7s\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"Content-Disposition: attachment; filename=smime.p7s\r\n" +
	"Content-Description: S/MIME Cryptographic Signature\r\n" +
	"\r\n"

// Body returns the body of the multipart/signed message: the entity,
// read from entity (which must give exactly the bytes Sign read), as the
// first part, and the signature as the second, base64 in lines of 76
// characters (RFC 2045 6.8). It streams: the entity is not copied, and
// the reader's WriteTo hands each piece to the writer as it is.
func (s *Signature) Body(entity io.Reader) io.Reader {
	if s.head == "" {
		// RFC 2046 5.1.1: the CRLF before "--boundary" belongs to the
		// delimiter, so the first part is exactly the entity's bytes.
		s.head = preamble + "\r\n--" + s.Boundary + "\r\n"
		var tail strings.Builder
		tail.WriteString("\r\n--" + s.Boundary + "\r\n" + signatureHeader)
		b64 := base64.StdEncoding.EncodeToString(s.DER)
		for len(b64) > 76 {
			tail.WriteString(b64[:76])
			tail.WriteString("\r\n")
			b64 = b64[76:]
		}
		tail.WriteString(b64)
		tail.WriteString("\r\n\r\n--" + s.Boundary + "--\r\n")
		s.tail = tail.String()
	}
	return &Concat{strings.NewReader(s.head), entity, strings.NewReader(s.tail)}
}

// Concat reads its readers one after the other, like io.MultiReader, but
// its WriteTo passes each reader's WriteTo through instead of copying
// through a 32 KB buffer of its own.
type Concat []io.Reader

func (c *Concat) Read(p []byte) (int, error) {
	for len(*c) > 0 {
		n, err := (*c)[0].Read(p)
		if err == io.EOF {
			*c = (*c)[1:]
			err = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
	return 0, io.EOF
}

// WriteTo writes what is left of every reader to w.
func (c *Concat) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for len(*c) > 0 {
		n, err := io.Copy(w, (*c)[0])
		total += n
		if err != nil {
			return total, err
		}
		*c = (*c)[1:]
	}
	return total, nil
}

// WriteBody writes Body(entity) to w.
func (s *Signature) WriteBody(w io.Writer, entity io.Reader) (int64, error) {
	cw := &countWriter{w: w}
	bw := bufio.NewWriterSize(cw, 32<<10)
	if _, err := bw.ReadFrom(s.Body(entity)); err != nil {
		return cw.n, err
	}
	err := bw.Flush()
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
