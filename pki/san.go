package pki

import (
	"crypto/x509"
	"encoding/asn1"
	"unicode/utf8"
)

var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	// oidSmtpUTF8Mailbox is id-on-SmtpUTF8Mailbox (RFC 9598 3).
	oidSmtpUTF8Mailbox = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 9}
)

// Mailboxes returns the mailbox addresses a certificate is for: its
// rfc822Name SANs and its SmtpUTF8Mailbox otherName SANs (RFC 9598, for
// addresses with a non-ASCII local part; RULES S6). crypto/x509 parses
// only the former. A malformed otherName is skipped.
func Mailboxes(c *x509.Certificate) []string {
	out := append([]string(nil), c.EmailAddresses...)
	for _, e := range c.Extensions {
		if !e.Id.Equal(oidSubjectAltName) {
			continue
		}
		var names []asn1.RawValue
		if rest, err := asn1.Unmarshal(e.Value, &names); err != nil || len(rest) != 0 {
			return out
		}
		for _, n := range names {
			// otherName [0] IMPLICIT SEQUENCE { type-id OID, value [0] EXPLICIT ANY }
			if n.Class != asn1.ClassContextSpecific || n.Tag != 0 || !n.IsCompound {
				continue
			}
			var oid asn1.ObjectIdentifier
			rest, err := asn1.Unmarshal(n.Bytes, &oid)
			if err != nil || !oid.Equal(oidSmtpUTF8Mailbox) {
				continue
			}
			var explicit asn1.RawValue
			if r, err := asn1.Unmarshal(rest, &explicit); err != nil || len(r) != 0 ||
				explicit.Class != asn1.ClassContextSpecific || explicit.Tag != 0 {
				continue
			}
			var s string
			if r, err := asn1.UnmarshalWithParams(explicit.Bytes, &s, "utf8"); err != nil || len(r) != 0 || !utf8.ValidString(s) {
				continue
			}
			out = append(out, s)
		}
	}
	return out
}
