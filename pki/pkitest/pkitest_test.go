package pkitest_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
)

func verify(ca *pkitest.CA, id *pki.Identity, at time.Time) error {
	inter := x509.NewCertPool()
	for _, c := range id.Chain {
		inter.AddCert(c)
	}
	_, err := id.Certificate.Verify(x509.VerifyOptions{
		Roots:         ca.Roots(),
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		CurrentTime:   at,
	})
	return err
}

func TestIdentityDefault(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	id := ca.Identity(t, "taro@example.go.jp")
	c := id.Certificate
	if got := c.EmailAddresses; len(got) != 1 || got[0] != "taro@example.go.jp" {
		t.Fatalf("EmailAddresses = %q", got)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageEmailProtection {
		t.Fatalf("ExtKeyUsage = %v", c.ExtKeyUsage)
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Fatalf("KeyUsage = %v", c.KeyUsage)
	}
	k, ok := id.Signer.(*rsa.PrivateKey)
	if !ok || k.N.BitLen() != 2048 {
		t.Fatalf("key %T, want RSA-2048", id.Signer)
	}
	if !k.PublicKey.Equal(c.PublicKey) {
		t.Fatal("signer does not match certificate")
	}
	if len(id.Chain) != 1 || !id.Chain[0].Equal(ca.Intermediate) {
		t.Fatalf("chain = %v", id.Chain)
	}
	if err := verify(ca, id, time.Now()); err != nil {
		t.Fatalf("default identity does not verify: %v", err)
	}
	if err := verify(ca, id, time.Now().Add(31*24*time.Hour)); err == nil {
		t.Fatal("verified after NotAfter")
	}
	// The root is its own anchor; the intermediate is not self-signed.
	if err := ca.Root.CheckSignatureFrom(ca.Root); err != nil {
		t.Fatal(err)
	}
	if err := ca.Intermediate.CheckSignatureFrom(ca.Root); err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(ca.RootPEM())
	if b == nil || b.Type != "CERTIFICATE" || !ca.Root.Equal(mustParse(t, b.Bytes)) {
		t.Fatal("RootPEM is not the root")
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIdentityOptions(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	addr := "hanako@example.go.jp"

	ec := ca.Identity(t, addr, pkitest.WithKeyType(pkitest.ECDSAP256))
	if _, ok := ec.Signer.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("ECDSAP256 gave %T", ec.Signer)
	}
	if err := verify(ca, ec, time.Now()); err != nil {
		t.Fatal(err)
	}
	ed := ca.Identity(t, addr, pkitest.WithKeyType(pkitest.Ed25519))
	if _, ok := ed.Signer.(ed25519.PrivateKey); !ok {
		t.Fatalf("Ed25519 gave %T", ed.Signer)
	}

	wrong := ca.Identity(t, addr, pkitest.EKU(x509.ExtKeyUsageServerAuth))
	if err := verify(ca, wrong, time.Now()); err == nil {
		t.Fatal("serverAuth-only certificate verified for emailProtection")
	}
	none := ca.Identity(t, addr, pkitest.NoEKU())
	if len(none.Certificate.ExtKeyUsage) != 0 || len(none.Certificate.UnknownExtKeyUsage) != 0 {
		t.Fatal("NoEKU left an EKU")
	}
	for _, e := range none.Certificate.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 37}) {
			t.Fatal("NoEKU left the extension")
		}
	}

	nb := time.Now().Add(24 * time.Hour)
	future := ca.Identity(t, addr, pkitest.Validity(nb, nb.Add(time.Hour)))
	if !future.Certificate.NotBefore.Equal(nb.Truncate(time.Second)) {
		t.Fatalf("NotBefore = %v", future.Certificate.NotBefore)
	}
	if err := verify(ca, future, time.Now()); err == nil {
		t.Fatal("not-yet-valid certificate verified")
	}

	extra := ca.Identity(t, addr, pkitest.ExtraEmails("info@example.go.jp"), pkitest.DNSNames("mail.example.go.jp"))
	if got := strings.Join(extra.Certificate.EmailAddresses, ","); got != addr+",info@example.go.jp" {
		t.Fatalf("emails %q", got)
	}
	if len(extra.Certificate.DNSNames) != 1 {
		t.Fatalf("dns %q", extra.Certificate.DNSNames)
	}
	noSAN := ca.Identity(t, addr, pkitest.NoEmailSAN())
	if len(noSAN.Certificate.EmailAddresses) != 0 {
		t.Fatal("NoEmailSAN kept the address")
	}

	byRoot := ca.Identity(t, addr, pkitest.SignedByRoot())
	if len(byRoot.Chain) != 0 || byRoot.Certificate.CheckSignatureFrom(ca.Root) != nil {
		t.Fatal("SignedByRoot not signed by root")
	}

	fresh := ca.Identity(t, addr, pkitest.FreshKey())
	if fresh.Signer.(*rsa.PrivateKey).Equal(ca.Identity(t, addr).Signer) {
		t.Fatal("fresh key equals a cached one")
	}
	a, b := ca.Identity(t, addr), ca.Identity(t, addr)
	if a.Signer.(*rsa.PrivateKey).Equal(b.Signer) {
		t.Fatal("consecutive identities share a key")
	}

	self := pkitest.SelfSigned(t, addr)
	if err := verify(ca, self, time.Now()); err == nil {
		t.Fatal("self-signed verified under the CA")
	}
	if c := self.Certificate; c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) != nil {
		t.Fatal("self-signed is not")
	}
}

// TestSmtpUTF8Mailbox checks the hand-built SAN: crypto/x509 parses it
// (keeping the rfc822Name) and the otherName carries the UTF-8 address.
func TestSmtpUTF8Mailbox(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	id := ca.Identity(t, "info@example.go.jp", pkitest.SmtpUTF8Mailbox("山田@example.go.jp"))
	if got := id.Certificate.EmailAddresses; len(got) != 1 || got[0] != "info@example.go.jp" {
		t.Fatalf("EmailAddresses = %q", got)
	}
	if err := verify(ca, id, time.Now()); err != nil {
		t.Fatal(err)
	}
	var san []byte
	for _, e := range id.Certificate.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
			san = e.Value
		}
	}
	var names []asn1.RawValue
	if _, err := asn1.Unmarshal(san, &names); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, n := range names {
		if n.Tag != 0 {
			continue
		}
		var oid asn1.ObjectIdentifier
		rest, err := asn1.Unmarshal(n.Bytes, &oid)
		if err != nil || !oid.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 9}) {
			t.Fatalf("otherName oid %v %v", oid, err)
		}
		var explicit asn1.RawValue
		if _, err := asn1.Unmarshal(rest, &explicit); err != nil {
			t.Fatal(err)
		}
		var s string
		if _, err := asn1.UnmarshalWithParams(explicit.Bytes, &s, "utf8"); err != nil || s != "山田@example.go.jp" {
			t.Fatalf("otherName value %q %v", s, err)
		}
		found = true
	}
	if !found {
		t.Fatal("no otherName")
	}
}

func TestDKIMKeys(t *testing.T) {
	t.Parallel()
	keys := pkitest.DKIMKeys(t, "example.go.jp")
	if len(keys) != 2 || keys[0].Selector == keys[1].Selector {
		t.Fatalf("keys %+v", keys)
	}
	rsaKey, ok := keys[0].Signer.(*rsa.PrivateKey)
	if !ok || rsaKey.N.BitLen() != 2048 {
		t.Fatalf("first key %T", keys[0].Signer)
	}
	edKey, ok := keys[1].Signer.(ed25519.PrivateKey)
	if !ok {
		t.Fatalf("second key %T", keys[1].Signer)
	}
	recs := pkitest.DKIMRecords(t, keys)
	ed := recs["ed-test._domainkey.example.go.jp"]
	if !strings.HasPrefix(ed, "v=DKIM1; k=ed25519; p=") {
		t.Fatalf("ed25519 record %q", ed)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(ed, "v=DKIM1; k=ed25519; p="))
	if err != nil || len(raw) != 32 || !edKey.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(raw)) {
		t.Fatalf("ed25519 p= is not the raw key (RFC 8463 4.2): %d bytes, %v", len(raw), err)
	}
	rs := recs["rsa-test._domainkey.example.go.jp"]
	if !strings.HasPrefix(rs, "v=DKIM1; k=rsa; p=") {
		t.Fatalf("rsa record %q", rs)
	}
	der, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(rs, "v=DKIM1; k=rsa; p="))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil || !rsaKey.PublicKey.Equal(pub) {
		t.Fatalf("rsa p= is not the key: %v", err)
	}
	src := pkitest.DKIMKeySource{"example.go.jp": keys}
	if _, err := src.DKIMKeys("other.go.jp"); !errors.Is(err, pki.ErrNoDKIMKey) {
		t.Fatalf("missing domain: %v", err)
	}
}

func TestWriteLayout(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	dir := t.TempDir()
	l := ca.WriteLayout(t, dir)
	for _, p := range []string{l.RootKey(), l.IssuerKey()} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", p, st.Mode(), err)
		}
	}
	data, err := os.ReadFile(l.TrustAnchors())
	if err != nil || string(data) != string(ca.RootPEM()) {
		t.Fatalf("trust anchors: %v", err)
	}
	c, k := pkitest.WriteIdentity(t, filepath.Join(dir, "certs"), "x", ca.Identity(t, "a@example.go.jp"))
	if st, _ := os.Stat(k); st.Mode().Perm() != 0o600 {
		t.Fatal("identity key not 0600")
	}
	data, _ = os.ReadFile(c)
	if n := strings.Count(string(data), "BEGIN CERTIFICATE"); n != 2 {
		t.Fatalf("identity PEM holds %d certificates, want leaf+intermediate", n)
	}
}

func TestIssuerAndStore(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	dir := t.TempDir()
	iss := ca.Issuer(t, pki.IssuerOptions{Dir: dir, KeyAlgorithm: pki.KeyECDSAP256})
	st := ca.Store(t, dir, pki.StoreOptions{Issuer: iss})
	id, err := st.Identity(t.Context(), "jiro@example.go.jp")
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(ca, id, time.Now()); err != nil {
		t.Fatal(err)
	}
	again, err := st.Identity(t.Context(), "jiro@EXAMPLE.go.jp")
	if err != nil || again != id {
		t.Fatalf("second lookup did not reuse: %v", err)
	}
}

func TestNewAt(t *testing.T) {
	t.Parallel()
	at := time.Date(2031, 4, 1, 12, 0, 0, 0, time.UTC)
	ca := pkitest.NewAt(t, at)
	id := ca.Identity(t, "future@example.go.jp", pkitest.WithKeyType(pkitest.ECDSAP256))
	if err := verify(ca, id, at); err != nil {
		t.Fatal(err)
	}
	if err := verify(ca, id, time.Now()); err == nil {
		t.Fatal("a 2031 hierarchy verified today")
	}
}
