package mime7bit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// uniformLineEnds reports whether every line end of b is LF, or every one
// is CRLF. Only then is "the line end before a delimiter" the same for
// Go's mime/multipart, which fixes it from the first delimiter line, and
// for Normalize, which takes whatever each line has.
func uniformLineEnds(b []byte) bool {
	if bytes.IndexByte(b, '\r') < 0 {
		return true
	}
	return bytes.Count(b, []byte("\r\n")) == bytes.Count(b, []byte("\n")) &&
		bytes.Count(b, []byte("\r")) == bytes.Count(b, []byte("\n"))
}

// FuzzNormalize: never a panic; an error is ErrMIME; a success is 7-bit,
// CRLF, lines of at most 998 octets, a fixed point of Normalize, and, where
// the standard library can read the input, decodes to the same content.
func FuzzNormalize(f *testing.F) {
	seeds := []string{
		"",
		"Subject: x\n\nhello\n",
		"Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\nこんにちは\n\n",
		"Content-Type: text/plain\n\nline1\rline2\r\nline3\n",
		"Content-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\n\x00\r\x80\n\xff\r\n",
		"Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\nabc=3D \xe9=\nx=0D=0Ay \n=G1=\n",
		"Content-Type: image/png\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=\n",
		"Content-Type: multipart/mixed; boundary=b\n\npre\n--b\nContent-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\n\xe3\x81\x82--b\n--b\nContent-Type: application/zip\n\n\x00\x01\r\n--b--\nepi\n",
		"Content-Type: multipart/alternative; boundary=\"a b\"\r\n\r\n--a b\r\n\r\nx\r\n--a b  \r\nContent-Type: text/html\r\n\r\n<p>\xc3\xa9</p>\r\n--a b--",
		"Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/related; boundary=i\n\n--i\n\nx\n--i--\n--o\nContent-Type: message/rfc822\nContent-Transfer-Encoding: 8bit\n\nSubject: y\n\n\xe9\n--o--\n",
		"Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: a\n\n\xe9\n--d--\n",
		"Content-Type: multipart/signed; boundary=s\n\n--s\n\nx\n--s\nContent-Type: application/pkcs7-signature\nContent-Transfer-Encoding: base64\n\nMIIB\n--s--\n",
		"Content-Type: multipart/mixed; boundary=x\n\n--x\n\ny\n",
		"Content-Transfer-Encoding: x-uuencode\n\nbegin\n",
		"Content-Type: text/plain\n\n" + strings.Repeat("a", 1000) + "\n",
		"Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n" + strings.Repeat("QUJD", 260) + "\n",
		"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: application/pdf; name=\"\xe5\xa0\xb1\xe5\x91\x8a.pdf\"\nContent-Disposition: attachment;\n filename=\"\xe5\xa0\xb1 \\\"\xe5\x91\x8a.pdf\"\n\n%PDF\n--b--\n",
		"Content-Type: text/plain; charset=utf-8; name=\xc3\xa9.txt\n\nx\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	files, _ := filepath.Glob("../../testdata/corpus/*.eml")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil && len(b) < 64<<10 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, n := range []Normalizer{
			{MaxDepth: 8, MaxParts: 200},
			{MaxDepth: 8, MaxParts: 200, EncodeUTF8Params: true},
		} {
			fuzzNormalize(t, n, in)
		}
	})
}

// fuzzNormalize checks one Normalize of in: a refusal is ErrMIME; what
// comes out is 7-bit, CRLF, lines of at most 998 octets, comes out again
// unchanged, and decodes to the input's content.
func fuzzNormalize(t *testing.T, n Normalizer, in []byte) {
	{
		var out bytes.Buffer
		err := n.NormalizeBytes(&out, in)
		if err != nil {
			if !errors.Is(err, ErrMIME) {
				t.Fatalf("error not ErrMIME: %v", err)
			}
			return
		}
		o := out.Bytes()
		if err := check7bit(o, false); err != nil {
			t.Fatalf("output not 7-bit/CRLF/998: %v\n%q", err, o)
		}
		var again bytes.Buffer
		if err := n.NormalizeBytes(&again, o); err != nil {
			t.Fatalf("output refused: %v\n%q", err, o)
		}
		if !bytes.Equal(again.Bytes(), o) {
			t.Fatalf("not idempotent:\nin     %q\nfirst  %q\nsecond %q", in, o, again.Bytes())
		}
		if !uniformLineEnds(in) {
			return
		}
		din, err := decodeMIME(in)
		if err != nil {
			return // the standard library cannot read the input: nothing to compare
		}
		dout, err := decodeMIME(o)
		if err != nil {
			t.Fatalf("standard library reads the input but not the output: %v\nin  %q\nout %q", err, in, o)
		}
		if err := compareDecoded(din, dout); err != nil {
			t.Fatalf("content changed: %v\nin  %q\nout %q", err, in, o)
		}
	}
}
