// Package testsign makes signed messages for the verifier's tests without
// the production signer: S/MIME with github.com/smallstep/pkcs7 and DKIM
// with github.com/emersion/go-msgauth, each step exposed so that tests
// can build the malformed and malicious variants the verifier must
// refuse. Nothing here is fit for production.
package testsign

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/smallstep/pkcs7"

	"github.com/kakuin/kakuin/pki"
)

// Boundary is the multipart/signed boundary Detached uses.
const Boundary = "kakuin-test-boundary"

// CRLF turns "\n" line ends into "\r\n".
func CRLF(s string) []byte {
	return []byte(strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n"))
}

// SignedData returns a DER CMS SignedData over content by id (SHA-256,
// signer and chain certificates), detached or not.
func SignedData(tb testing.TB, id *pki.Identity, content []byte, detached bool) []byte {
	tb.Helper()
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		tb.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSignerChain(id.Certificate, id.Signer, id.Chain, pkcs7.SignerInfoConfig{}); err != nil {
		tb.Fatal(err)
	}
	if detached {
		sd.Detach()
	}
	der, err := sd.Finish()
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

// Base64 returns b in base64, 76-character lines, CRLF-terminated.
func Base64(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(s) > 76 {
		out.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	out.WriteString(s + "\r\n")
	return out.String()
}

// Detached returns a multipart/signed message: outer (header fields, each
// ending in CRLF, without Content-Type and MIME-Version) followed by the
// signed entity (a canonical MIME entity: its own Content-* header, an
// empty line, the body) and a detached signature over the entity's exact
// bytes (RFC 8551 3.5.3).
func Detached(tb testing.TB, id *pki.Identity, outer string, entity []byte) []byte {
	tb.Helper()
	return DetachedSig(outer, entity, SignedData(tb, id, entity, true))
}

// DetachedSig assembles a multipart/signed message with a given signature.
func DetachedSig(outer string, entity, sig []byte) []byte {
	var b bytes.Buffer
	b.Write(CRLF(outer))
	b.WriteString("MIME-Version: 1.0\r\n")
	b.WriteString(`Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="` + Boundary + "\"\r\n\r\n")
	b.WriteString("This is an S/MIME signed message\r\n\r\n")
	b.WriteString("--" + Boundary + "\r\n")
	b.Write(entity)
	b.WriteString("\r\n--" + Boundary + "\r\n")
	b.WriteString("Content-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=smime.p7s\r\n\r\n")
	b.WriteString(Base64(sig))
	b.WriteString("\r\n--" + Boundary + "--\r\n")
	return b.Bytes()
}

// Opaque returns an application/pkcs7-mime signed-data message (RFC 8551
// 3.5.2) wrapping entity.
func Opaque(tb testing.TB, id *pki.Identity, outer string, entity []byte) []byte {
	tb.Helper()
	var b bytes.Buffer
	b.Write(CRLF(outer))
	b.WriteString("MIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	b.WriteString(Base64(SignedData(tb, id, entity, false)))
	return b.Bytes()
}

// Entity is a small text/plain entity.
func Entity(text string) []byte {
	return CRLF("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 7bit\n\n" + text + "\n")
}

// DKIMHeaders is the header list DKIM signs, From and Subject oversigned
// (RULES D1).
var DKIMHeaders = []string{"From", "From", "Subject", "Subject", "Date", "To", "Cc", "Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"}

// DKIM signs msg with each key (relaxed/relaxed) and returns the message
// with the DKIM-Signature fields prepended, the last key's first. mod, if
// not nil, changes the options before each signature.
func DKIM(tb testing.TB, msg []byte, keys []pki.DKIMKey, mod func(*dkim.SignOptions)) []byte {
	tb.Helper()
	for _, k := range keys {
		o := &dkim.SignOptions{
			Domain:                 k.Domain,
			Selector:               k.Selector,
			Signer:                 k.Signer,
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             DKIMHeaders,
		}
		if mod != nil {
			mod(o)
		}
		var out bytes.Buffer
		if err := dkim.Sign(&out, bytes.NewReader(msg), o); err != nil {
			tb.Fatalf("testsign: dkim: %v", err)
		}
		msg = out.Bytes()
	}
	return msg
}

// Zone returns zone-file lines for the DKIM keys' records.
func Zone(tb testing.TB, keys []pki.DKIMKey) []string {
	tb.Helper()
	var z []string
	for _, k := range keys {
		v, err := pki.DKIMRecord(k.Signer.Public())
		if err != nil {
			tb.Fatal(err)
		}
		z = append(z, fmt.Sprintf("%s. 300 IN TXT %s", pki.DKIMRecordName(k.Domain, k.Selector), TXTStrings(v)))
	}
	return z
}

// TXTStrings splits a record value into quoted 255-octet character-strings
// (RFC 1035 3.3.14).
func TXTStrings(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	parts = append(parts, `"`+v+`"`)
	return strings.Join(parts, " ")
}

// Pool returns a pool of certs.
func Pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
