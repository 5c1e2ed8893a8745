package signer

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
	"github.com/kakuin/kakuin/rfc5322"
)

// FuzzSign: any input is either refused with one of the package's errors
// or signed; a signed output parses, is 7-bit except where the input header
// was not, and both DKIM signatures and the S/MIME signature verify.
func FuzzSign(f *testing.F) {
	fx := newFixture(f, pkitest.ECDSAP256)
	s, err := New(fx.options())
	if err != nil {
		f.Fatal(err)
	}
	dkimOnly := fx.options()
	dkimOnly.Identities, dkimOnly.MissingCertificate = nil, DKIMOnly
	d, err := New(dkimOnly)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(plain))
	f.Add([]byte("From: info@example.go.jp\nSubject: x\n\nbody\n"))
	f.Add([]byte("From: info@example.go.jp\r\n\r\n"))
	f.Add([]byte("From: info@example.go.jp\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n\x00\xff\r\n--b--\r\n"))
	f.Add([]byte("From: \"info@example.go.jp\" <evil@example.com>\r\n\r\nx"))
	f.Add([]byte("From: info@example.go.jp\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\n\r\nx"))
	f.Add([]byte("From: info@example.go.jp"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		var dout bytes.Buffer
		if _, err := d.Sign(context.Background(), &dout, bytes.NewReader(msg)); err == nil {
			if _, _, err := rfc5322.Parse(dout.Bytes(), nil); err != nil {
				t.Fatalf("DKIM-only output does not parse: %v", err)
			}
			fx.verifyDKIM(t, dout.String())
		} else if dout.Len() != 0 {
			t.Fatalf("error %v with %d octets written", err, dout.Len())
		}
		var out bytes.Buffer
		res, err := s.Sign(context.Background(), &out, bytes.NewReader(msg))
		if err != nil {
			if out.Len() != 0 {
				t.Fatalf("error %v with %d octets written", err, out.Len())
			}
			noKey := errors.Is(err, ErrKey) && errors.Is(err, pki.ErrNoDKIMKey) // another go.jp domain
			if !errors.Is(err, ErrMessage) && !errors.Is(err, ErrSender) && !errors.Is(err, ErrNoCertificate) && !noKey {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if !res.SMIME || len(res.DKIM) != 2 {
			t.Fatalf("Result %+v", res)
		}
		if _, _, err := rfc5322.Parse(out.Bytes(), nil); err != nil {
			t.Fatalf("output does not parse: %v", err)
		}
		fx.verifyDKIM(t, out.String())
		_, entity := fx.smime(t, out.String())
		if bytes.IndexFunc(entity, func(r rune) bool { return r >= 0x80 }) >= 0 || strings.Contains(strings.ReplaceAll(string(entity), "\r\n", ""), "\n") {
			t.Fatal("signed entity is not 7-bit CRLF")
		}
	})
}
