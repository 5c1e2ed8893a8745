// Package pkitest makes throwaway certificate hierarchies and keys for
// tests, the way net/http/httptest makes servers: a root CA, an S/MIME
// issuing CA under it (root -> issuing CA -> sender, the shape of a
// government PKI), sender identities for any address with knobs for the
// negative cases a verifier must reject, self-signed certificates, and
// DKIM keys with their DNS records.
//
// Everything is made at test time and lives in memory; nothing here is fit
// for production. It is cheap: the CAs use fresh ECDSA P-256 keys, and the
// RSA-2048 keys of leaves and DKIM come from small process-wide caches of
// pre-generated keys (see FreshKey when a test needs a key nobody else has).
package pkitest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kakuin/kakuin/pki"
)

// CA is a root CA and an intermediate S/MIME issuing CA signed by it.
type CA struct {
	// Root is the self-signed root certificate: the only trust anchor.
	Root *x509.Certificate
	// RootKey is the root's private key (*ecdsa.PrivateKey).
	RootKey crypto.Signer
	// Intermediate is the issuing CA that signs sender certificates.
	Intermediate *x509.Certificate
	// IntermediateKey is the issuing CA's private key (*ecdsa.PrivateKey).
	IntermediateKey crypto.Signer
	// Now is the time validity periods are computed from. New sets it to
	// time.Now().
	Now time.Time
}

// New returns a fresh root and issuing CA, valid from a day before now for
// ten years. Many tests may call it: it costs two ECDSA P-256 key
// generations and two signatures.
func New(tb testing.TB) *CA {
	tb.Helper()
	return NewAt(tb, time.Now())
}

// NewAt is New with validity periods computed from now instead of the
// current time, for tests that judge validity at another time.
func NewAt(tb testing.TB, now time.Time) *CA {
	tb.Helper()
	now = now.Truncate(time.Second)
	rootKey := newECDSA(tb)
	root := &x509.Certificate{
		SerialNumber: serial(tb),
		Subject: pkix.Name{
			Country:      []string{"JP"},
			Organization: []string{"kakuin test PKI"},
			CommonName:   "kakuin test root CA",
		},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	rootCert := create(tb, root, root, rootKey.Public(), rootKey)

	intKey := newECDSA(tb)
	inter := &x509.Certificate{
		SerialNumber: serial(tb),
		Subject: pkix.Name{
			Country:      []string{"JP"},
			Organization: []string{"kakuin test PKI"},
			CommonName:   "kakuin test S/MIME issuing CA",
		},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	intCert := create(tb, inter, rootCert, intKey.Public(), rootKey)
	return &CA{Root: rootCert, RootKey: rootKey, Intermediate: intCert, IntermediateKey: intKey, Now: now}
}

// Roots returns a pool holding the root only.
func (ca *CA) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Root)
	return p
}

// Intermediates returns a pool holding the issuing CA.
func (ca *CA) Intermediates() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Intermediate)
	return p
}

// RootPEM returns the root certificate in PEM: a trust-anchors file.
func (ca *CA) RootPEM() []byte { return CertPEM(ca.Root) }

// IntermediatePEM returns the issuing CA certificate in PEM.
func (ca *CA) IntermediatePEM() []byte { return CertPEM(ca.Intermediate) }

// WriteLayout writes the CA into dir the way `kakuin pki init` lays it out
// (pki.Layout): trust-anchors.pem, root/ca.pem and ca.key, issuing/ca.pem
// and ca.key (keys mode 0600, their directories 0700), and an empty certs/
// directory. It returns the layout.
func (ca *CA) WriteLayout(tb testing.TB, dir string) pki.Layout {
	tb.Helper()
	l := pki.Layout{Dir: dir}
	for _, d := range []string{filepath.Dir(l.RootKey()), filepath.Dir(l.IssuerKey()), l.CertDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			tb.Fatal(err)
		}
	}
	writeFile(tb, l.TrustAnchors(), ca.RootPEM(), 0o644)
	writeFile(tb, l.RootCert(), ca.RootPEM(), 0o644)
	writeFile(tb, l.RootKey(), KeyPEM(tb, ca.RootKey), 0o600)
	writeFile(tb, l.IssuerCert(), ca.IntermediatePEM(), 0o644)
	writeFile(tb, l.IssuerKey(), KeyPEM(tb, ca.IntermediateKey), 0o600)
	return l
}

// KeyType selects the algorithm of a leaf key.
type KeyType int

const (
	// RSA2048 is the default: the production key type.
	RSA2048 KeyType = iota
	// ECDSAP256 is ECDSA on P-256.
	ECDSAP256
	// Ed25519 is EdDSA on Curve25519 (RFC 8410). S/MIME verifiers are
	// only asked to accept it (RULES S3); use it for negative tests.
	Ed25519
)

type config struct {
	keyType    KeyType
	fresh      bool
	key        crypto.Signer
	notBefore  time.Time
	notAfter   time.Time
	emails     []string
	noEmail    bool
	dnsNames   []string
	utf8Mbox   []string
	eku        []x509.ExtKeyUsage
	keyUsage   x509.KeyUsage
	byRoot     bool
	subject    *pkix.Name
	extraExts  []pkix.Extension
	policyOIDs []x509.OID
}

// Option changes the leaf that Identity makes.
type Option func(*config)

// WithKeyType selects the key algorithm (RSA2048 if not given).
func WithKeyType(k KeyType) Option { return func(c *config) { c.keyType = k } }

// FreshKey generates a new key instead of taking one from the cache, for a
// test that needs a key no other identity in the process has.
func FreshKey() Option { return func(c *config) { c.fresh = true } }

// WithKey uses the given key as the leaf's key.
func WithKey(k crypto.Signer) Option { return func(c *config) { c.key = k } }

// Validity sets NotBefore and NotAfter. The default is from an hour before
// ca.Now to 30 days after it.
func Validity(notBefore, notAfter time.Time) Option {
	return func(c *config) { c.notBefore, c.notAfter = notBefore, notAfter }
}

// ExtraEmails adds rfc822Name SANs after the identity's address.
func ExtraEmails(addrs ...string) Option {
	return func(c *config) { c.emails = append(c.emails, addrs...) }
}

// NoEmailSAN leaves the identity's own address out of the SANs (ExtraEmails
// still apply): a certificate that does not name its sender.
func NoEmailSAN() Option { return func(c *config) { c.noEmail = true } }

// DNSNames adds dNSName SANs.
func DNSNames(names ...string) Option {
	return func(c *config) { c.dnsNames = append(c.dnsNames, names...) }
}

// SmtpUTF8Mailbox adds otherName SmtpUTF8Mailbox SANs (RFC 9598), for
// internationalised addresses.
func SmtpUTF8Mailbox(addrs ...string) Option {
	return func(c *config) { c.utf8Mbox = append(c.utf8Mbox, addrs...) }
}

// EKU replaces the extended key usages (default: emailProtection only).
// EKU(x509.ExtKeyUsageServerAuth) makes a wrong-EKU fixture.
func EKU(usages ...x509.ExtKeyUsage) Option {
	return func(c *config) { c.eku = usages }
}

// NoEKU omits the extended key usage extension altogether.
func NoEKU() Option { return EKU() }

// KeyUsage replaces the key usage (default: digitalSignature). KeyUsage(0)
// omits the extension.
func KeyUsage(ku x509.KeyUsage) Option {
	return func(c *config) { c.keyUsage = ku }
}

// SignedByRoot has the root sign the leaf directly; Chain is then empty.
func SignedByRoot() Option { return func(c *config) { c.byRoot = true } }

// Subject replaces the subject (default: CN=address).
func Subject(n pkix.Name) Option { return func(c *config) { c.subject = &n } }

// Extension adds an extension as is.
func Extension(e pkix.Extension) Option {
	return func(c *config) { c.extraExts = append(c.extraExts, e) }
}

// Policies sets certificate policy OIDs.
func Policies(oids ...x509.OID) Option {
	return func(c *config) { c.policyOIDs = append(c.policyOIDs, oids...) }
}

// Identity issues a sender certificate for addr under the issuing CA:
// rfc822Name SAN addr, emailProtection EKU, digitalSignature key usage,
// RSA-2048 key, valid from an hour before ca.Now for 30 days; Chain is
// [Intermediate]. Options change any of it.
func (ca *CA) Identity(tb testing.TB, addr string, opts ...Option) *pki.Identity {
	tb.Helper()
	c := config{
		notBefore: ca.Now.Add(-time.Hour),
		notAfter:  ca.Now.Add(30 * 24 * time.Hour),
		eku:       []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		keyUsage:  x509.KeyUsageDigitalSignature,
	}
	for _, o := range opts {
		o(&c)
	}
	key := c.key
	if key == nil {
		key = leafKey(tb, c.keyType, c.fresh)
	}
	tmpl := leafTemplate(tb, addr, &c)
	parent, parentKey, chain := ca.Intermediate, ca.IntermediateKey, []*x509.Certificate{ca.Intermediate}
	if c.byRoot {
		parent, parentKey, chain = ca.Root, ca.RootKey, nil
	}
	cert := create(tb, tmpl, parent, key.Public(), parentKey)
	return &pki.Identity{Certificate: cert, Chain: chain, Signer: key}
}

// SelfSigned returns a self-signed sender certificate for addr (otherwise
// like Identity's default leaf): what a verifier must not trust.
func SelfSigned(tb testing.TB, addr string, opts ...Option) *pki.Identity {
	tb.Helper()
	now := time.Now().Truncate(time.Second)
	c := config{
		notBefore: now.Add(-time.Hour),
		notAfter:  now.Add(30 * 24 * time.Hour),
		eku:       []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		keyUsage:  x509.KeyUsageDigitalSignature,
	}
	for _, o := range opts {
		o(&c)
	}
	key := c.key
	if key == nil {
		key = leafKey(tb, c.keyType, c.fresh)
	}
	tmpl := leafTemplate(tb, addr, &c)
	cert := create(tb, tmpl, tmpl, key.Public(), key)
	return &pki.Identity{Certificate: cert, Signer: key}
}

func leafTemplate(tb testing.TB, addr string, c *config) *x509.Certificate {
	tb.Helper()
	subject := pkix.Name{CommonName: addr}
	if c.subject != nil {
		subject = *c.subject
	}
	var emails []string
	if !c.noEmail {
		emails = append(emails, addr)
	}
	emails = append(emails, c.emails...)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               subject,
		NotBefore:             c.notBefore,
		NotAfter:              c.notAfter,
		EmailAddresses:        emails,
		DNSNames:              c.dnsNames,
		BasicConstraintsValid: true,
		ExtraExtensions:       c.extraExts,
		Policies:              c.policyOIDs,
	}
	tmpl.KeyUsage = c.keyUsage // 0 omits the extension
	if len(c.eku) > 0 {
		tmpl.ExtKeyUsage = c.eku
	}
	if len(c.utf8Mbox) > 0 {
		// crypto/x509 cannot write otherName SANs: build the extension
		// (RFC 5280 4.2.1.6) by hand. It replaces the one x509 would make.
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, sanExtension(tb, emails, c.dnsNames, c.utf8Mbox))
	}
	return tmpl
}

// oidSmtpUTF8Mailbox is id-on-SmtpUTF8Mailbox (RFC 9598 3).
var oidSmtpUTF8Mailbox = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 9}

func sanExtension(tb testing.TB, emails, dnsNames, utf8 []string) pkix.Extension {
	tb.Helper()
	var names []asn1.RawValue
	for _, e := range emails {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, Bytes: []byte(e)})
	}
	for _, d := range dnsNames {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(d)})
	}
	for _, u := range utf8 {
		// RFC 9598 3: otherName { id-on-SmtpUTF8Mailbox, [0] EXPLICIT UTF8String }.
		oid, err := asn1.Marshal(oidSmtpUTF8Mailbox)
		if err != nil {
			tb.Fatal(err)
		}
		val, err := asn1.MarshalWithParams(u, "utf8")
		if err != nil {
			tb.Fatal(err)
		}
		explicit, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: val})
		if err != nil {
			tb.Fatal(err)
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(oid, explicit...)})
	}
	der, err := asn1.Marshal(names)
	if err != nil {
		tb.Fatal(err)
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: der}
}

// DKIM selectors of the keys DKIMKeys makes.
const (
	DKIMSelectorRSA     = "rsa-test"
	DKIMSelectorEd25519 = "ed-test"
)

// DKIMKeys returns two DKIM keys for domain, RSA-2048 (selector
// DKIMSelectorRSA) first, then Ed25519 (DKIMSelectorEd25519), as RULES D3
// wants them. The RSA key comes from a process-wide cache of DKIM keys,
// distinct from the leaf key cache; the Ed25519 key is fresh.
func DKIMKeys(tb testing.TB, domain string) []pki.DKIMKey {
	tb.Helper()
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return []pki.DKIMKey{
		{Domain: domain, Selector: DKIMSelectorRSA, Signer: dkimRSA.get(tb)},
		{Domain: domain, Selector: DKIMSelectorEd25519, Signer: edKey},
	}
}

// DKIMRecord returns the TXT record value of a key, e.g.
// "v=DKIM1; k=ed25519; p=..." (pki.DKIMRecord).
func DKIMRecord(tb testing.TB, k pki.DKIMKey) string {
	tb.Helper()
	v, err := pki.DKIMRecord(k.Signer.Public())
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// DKIMRecords maps each key's record name (SELECTOR._domainkey.DOMAIN, no
// trailing dot) to its TXT record value: what a test DNS server serves.
func DKIMRecords(tb testing.TB, keys []pki.DKIMKey) map[string]string {
	tb.Helper()
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		m[pki.DKIMRecordName(k.Domain, k.Selector)] = DKIMRecord(tb, k)
	}
	return m
}

// DKIMKeySource is a fixed pki.DKIMKeySource: the keys of each domain,
// looked up by exact domain only (no parent fallback; use pki.DKIMKeyring
// for that).
type DKIMKeySource map[string][]pki.DKIMKey

// DKIMKeys implements pki.DKIMKeySource.
func (s DKIMKeySource) DKIMKeys(domain string) ([]pki.DKIMKey, error) {
	if k, ok := s[domain]; ok && len(k) > 0 {
		return k, nil
	}
	return nil, pki.ErrNoDKIMKey
}

var _ pki.DKIMKeySource = DKIMKeySource(nil)

// CertPEM encodes certificates as consecutive PEM CERTIFICATE blocks.
func CertPEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// KeyPEM encodes a private key as a PEM "PRIVATE KEY" block (PKCS#8).
func KeyPEM(tb testing.TB, key crypto.Signer) []byte {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// IdentityPEM returns the leaf followed by its chain, and the key, in PEM.
func IdentityPEM(tb testing.TB, id *pki.Identity) (certPEM, keyPEM []byte) {
	tb.Helper()
	return CertPEM(append([]*x509.Certificate{id.Certificate}, id.Chain...)...), KeyPEM(tb, id.Signer)
}

// WriteIdentity writes id into dir as NAME.pem (leaf and chain, 0644) and
// NAME.key (0600) and returns the two paths.
func WriteIdentity(tb testing.TB, dir, name string, id *pki.Identity) (certPath, keyPath string) {
	tb.Helper()
	c, k := IdentityPEM(tb, id)
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	writeFile(tb, certPath, c, 0o644)
	writeFile(tb, keyPath, k, 0o600)
	return certPath, keyPath
}

func writeFile(tb testing.TB, path string, data []byte, mode os.FileMode) {
	tb.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		tb.Fatal(err)
	}
	// WriteFile leaves the mode of an existing file and applies the umask.
	if err := os.Chmod(path, mode); err != nil {
		tb.Fatal(err)
	}
}

func create(tb testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		tb.Fatalf("pkitest: creating certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return cert
}

// serial is a positive random serial number of 126 random bits in 16
// octets (RFC 5280 4.1.2.2: at most 20 octets; CA/B Forum BR 7.1: at least
// 64 bits from a CSPRNG).
func serial(tb testing.TB) *big.Int {
	tb.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	b[0] = b[0]&0x7f | 0x40
	return new(big.Int).SetBytes(b)
}

func newECDSA(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func leafKey(tb testing.TB, t KeyType, fresh bool) crypto.Signer {
	tb.Helper()
	switch t {
	case ECDSAP256:
		return newECDSA(tb)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		return k
	}
	if fresh {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			tb.Fatal(err)
		}
		return k
	}
	return leafRSA.get(tb)
}

// rsaCache hands out pre-generated RSA-2048 keys round-robin, generating
// each slot on first use: consecutive calls get distinct keys, the fifth
// reuses the first.
type rsaCache struct {
	next atomic.Uint32
	once [4]sync.Once
	keys [4]*rsa.PrivateKey
	errs [4]error
}

var leafRSA, dkimRSA rsaCache

func (c *rsaCache) get(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	i := (c.next.Add(1) - 1) % uint32(len(c.keys))
	c.once[i].Do(func() { c.keys[i], c.errs[i] = rsa.GenerateKey(rand.Reader, 2048) })
	if c.errs[i] != nil {
		tb.Fatal(c.errs[i])
	}
	return c.keys[i]
}

// Issuer returns a pki.Issuer that issues from the test issuing CA with
// the production profile (pki.Issuer); opts.CACert and opts.CAKey are set
// to the intermediate, the rest of opts is used as given.
func (ca *CA) Issuer(tb testing.TB, opts pki.IssuerOptions) *pki.Issuer {
	tb.Helper()
	opts.CACert, opts.CAKey = ca.Intermediate, ca.IntermediateKey
	i, err := pki.NewIssuer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	return i
}

// Store returns a pki.Store over dir trusting the test root, with opts.Dir
// and opts.Roots set (the rest of opts is used as given).
func (ca *CA) Store(tb testing.TB, dir string, opts pki.StoreOptions) *pki.Store {
	tb.Helper()
	opts.Dir, opts.Roots = dir, ca.Roots()
	s, err := pki.NewStore(opts)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
