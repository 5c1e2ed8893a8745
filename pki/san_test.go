package pki_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
)

func TestMailboxes(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	c := ca.Identity(t, "a@example.go.jp", pkitest.ExtraEmails("b@example.go.jp"), pkitest.DNSNames("mx.example.go.jp"),
		pkitest.SmtpUTF8Mailbox("山田@example.go.jp", "ü@example.go.jp"), pkitest.WithKeyType(pkitest.ECDSAP256)).Certificate
	if got := pki.Mailboxes(c); !slices.Equal(got, []string{"a@example.go.jp", "b@example.go.jp", "山田@example.go.jp", "ü@example.go.jp"}) {
		t.Fatalf("Mailboxes = %q", got)
	}
	if got := pki.Mailboxes(ca.Intermediate); len(got) != 0 {
		t.Fatalf("CA mailboxes %q", got)
	}
}

func FuzzMailboxes(f *testing.F) {
	ca := pkitest.New(f)
	c := ca.Identity(f, "a@example.go.jp", pkitest.SmtpUTF8Mailbox("山田@example.go.jp"), pkitest.WithKeyType(pkitest.ECDSAP256)).Certificate
	for _, e := range c.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
			f.Add(e.Value)
		}
	}
	f.Add([]byte{0x30, 0x03, 0xa0, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, san []byte) {
		c := &x509.Certificate{Extensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: san}}}
		for _, m := range pki.Mailboxes(c) {
			if !utf8.ValidString(m) {
				t.Fatalf("invalid UTF-8 mailbox %q", m)
			}
		}
	})
}
