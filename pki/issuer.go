package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kakuin/kakuin/govdomain"
)

// Certificate policy OIDs reserved by the CA/Browser Forum S/MIME Baseline
// Requirements 7.1.6.1 for the strict generation.
var (
	// OIDMailboxValidatedStrict: mailbox-validated, strict.
	OIDMailboxValidatedStrict = mustOID(2, 23, 140, 1, 5, 1, 3)
	// OIDSponsorValidatedStrict: sponsor-validated, strict.
	OIDSponsorValidatedStrict = mustOID(2, 23, 140, 1, 5, 4, 3)
)

func mustOID(arcs ...uint64) x509.OID {
	o, err := x509.OIDFromInts(arcs)
	if err != nil {
		panic(err)
	}
	return o
}

// KeyAlgorithm selects the algorithm of the keys the issuer generates.
type KeyAlgorithm int

const (
	// KeyRSA2048 is RSA with a 2048-bit modulus: what every mail client
	// verifies (RULES S3). The zero value.
	KeyRSA2048 KeyAlgorithm = iota
	// KeyECDSAP256 is ECDSA on P-256 (RULES S3).
	KeyECDSAP256
)

// Default URLs of the development PKI, invented under example.go.jp. A
// real deployment sets its own (S/MIME BR 7.1.2.3: http only).
const (
	DefaultIssuingCRLURL       = "http://pki.example.go.jp/kakuin/issuing-ca.crl"
	DefaultIssuingCAIssuersURL = "http://pki.example.go.jp/kakuin/issuing-ca.crt"
	DefaultRootCRLURL          = "http://pki.example.go.jp/kakuin/root-ca.crl"
	DefaultRootCAIssuersURL    = "http://pki.example.go.jp/kakuin/root-ca.crt"
)

// DefaultIssueValidity is the validity of issued sender certificates when
// IssuerOptions.Validity is zero: short, so that a lost key or a departed
// sender matters for a week at most, and revocation is rarely needed.
const DefaultIssueValidity = 7 * 24 * time.Hour

// maxStrictValidity is the longest validity of a strict-generation
// subscriber certificate (S/MIME BR 6.3.2: 825 days).
const maxStrictValidity = 825 * 24 * time.Hour

// IssuerOptions configure an Issuer. Every zero value is documented.
type IssuerOptions struct {
	// CACert is the issuing CA certificate. Required.
	CACert *x509.Certificate
	// CAKey is its private key. Required; it must match CACert.
	CAKey crypto.Signer
	// Chain holds the CA certificates above CACert up to, but excluding,
	// the root. Nil when CACert is signed by the root (the dev PKI).
	Chain []*x509.Certificate
	// Dir is where issued certificates and keys are written (NAME.pem with
	// the leaf and its chain, NAME.key mode 0600), normally the Store's
	// directory so that a restart finds them. If empty, nothing is written.
	Dir string
	// Domains restricts issuance to addresses within these domains
	// (label-wise, govdomain.Within). If nil, any domain: the caller
	// (the signer's sender policy) has already checked it.
	Domains []string
	// Validity of issued certificates. If zero, DefaultIssueValidity (7
	// days). At most 825 days (S/MIME BR 6.3.2).
	Validity time.Duration
	// KeyAlgorithm of issued keys. If zero, KeyRSA2048.
	KeyAlgorithm KeyAlgorithm
	// CRLURL is the cRLDistributionPoints URL (S/MIME BR 7.1.2.3 b: required,
	// http). If empty, DefaultIssuingCRLURL.
	CRLURL string
	// CAIssuersURL is the AIA caIssuers URL. If empty,
	// DefaultIssuingCAIssuersURL.
	CAIssuersURL string
	// OCSPURL is the AIA OCSP URL. If empty, none.
	OCSPURL string
	// RenewFraction: a certificate from this CA is renewed when less than
	// this fraction of its validity is left. If zero, 1/3.
	RenewFraction float64
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
}

// Issuer issues short-lived S/MIME sender certificates from an issuing CA
// on the profile of the CA/Browser Forum S/MIME Baseline Requirements
// (mailbox-validated, strict generation, RULES B1-B2): subject CN and
// rfc822Name SAN the address, emailProtection as the only EKU,
// digitalSignature key usage, policy 2.23.140.1.5.1.3, cRLDistributionPoints
// and AIA over http, a fresh key per certificate.
//
// Mailbox validation happens before kakuin: the gateway only signs for
// authenticated clients allowed to send from the address. An Issuer is safe
// for concurrent use; Store makes concurrent requests for one address
// issue once.
type Issuer struct {
	opts IssuerOptions
	// verdicts remembers issued's answer per certificate: the Store asks
	// on every message, and the answer needs an RSA verification.
	verdicts  sync.Map // *x509.Certificate -> bool
	nVerdicts atomic.Int64
}

// maxVerdicts bounds the verdicts cache; certificates replaced by reloads
// and renewals are forgotten when it is cleared.
const maxVerdicts = 4096

// NewIssuer checks opts and returns an Issuer. Errors wrap ErrIssue.
func NewIssuer(opts IssuerOptions) (*Issuer, error) {
	if opts.CACert == nil || opts.CAKey == nil {
		return nil, fmt.Errorf("%w: no issuing CA", ErrIssue)
	}
	if !opts.CACert.IsCA || opts.CACert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%w: %s is not a CA certificate", ErrIssue, opts.CACert.Subject)
	}
	if !publicKeysEqual(opts.CAKey.Public(), opts.CACert.PublicKey) {
		return nil, fmt.Errorf("%w: CA key does not match CA certificate", ErrIssue)
	}
	if opts.Validity == 0 {
		opts.Validity = DefaultIssueValidity
	}
	if opts.Validity < time.Hour || opts.Validity > maxStrictValidity {
		return nil, fmt.Errorf("%w: validity %v outside 1h..825 days (S/MIME BR 6.3.2)", ErrIssue, opts.Validity)
	}
	if opts.CRLURL == "" {
		opts.CRLURL = DefaultIssuingCRLURL
	}
	if opts.CAIssuersURL == "" {
		opts.CAIssuersURL = DefaultIssuingCAIssuersURL
	}
	for _, u := range []string{opts.CRLURL, opts.CAIssuersURL, opts.OCSPURL} {
		// S/MIME BR 7.1.2.3 b, c: http only (strict generation).
		if u != "" && !strings.HasPrefix(u, "http://") {
			return nil, fmt.Errorf("%w: %q is not an http URL (S/MIME BR 7.1.2.3)", ErrIssue, u)
		}
	}
	if opts.RenewFraction <= 0 || opts.RenewFraction >= 1 {
		opts.RenewFraction = 1.0 / 3
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Issuer{opts: opts}, nil
}

// CACertificate returns the issuing CA certificate.
func (i *Issuer) CACertificate() *x509.Certificate { return i.opts.CACert }

// Issue makes a new certificate and key for addr, writes them to Dir (if
// set) and returns the identity. It always issues; Store decides when.
// An address this issuer will never certify (outside Domains, not an
// ASCII address) is refused with an error wrapping ErrNoCertificate, a
// permanent condition the sender policy decides on; a failure of the CA
// (key generation, signing, writing, a canceled ctx) wraps ErrIssue, a
// transient one.
func (i *Issuer) Issue(ctx context.Context, addr string) (*Identity, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIssue, err)
	}
	addr, err := canonicalIssueAddr(addr)
	if err != nil {
		return nil, err
	}
	if len(i.opts.Domains) > 0 {
		domain := addr[strings.LastIndexByte(addr, '@')+1:]
		ok := false
		for _, d := range i.opts.Domains {
			ok = ok || govdomain.Within(domain, d)
		}
		if !ok {
			return nil, fmt.Errorf("%w: %s is outside the issuing domains", ErrNoCertificate, addr)
		}
	}
	key, err := generateKey(i.opts.KeyAlgorithm)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIssue, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIssue, err)
	}
	now := i.opts.Now().UTC().Truncate(time.Second)
	// Never valid beyond the CA: x509 verification would fail anyway.
	notAfter := now.Add(i.opts.Validity)
	if notAfter.After(i.opts.CACert.NotAfter) {
		notAfter = i.opts.CACert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, // S/MIME BR 7.1: >= 64 bits from a CSPRNG
		// S/MIME BR 7.1.4.2.2 (mailbox-validated): commonName, if present,
		// is a mailbox address; no other attributes but emailAddress and
		// serialNumber.
		Subject: pkix.Name{CommonName: addr},
		// A few minutes of back-dating absorbs clock skew between the
		// gateway and the verifier.
		NotBefore: now.Add(-5 * time.Minute),
		NotAfter:  notAfter,
		// S/MIME BR 7.1.2.3 e: signing only, digitalSignature (critical).
		KeyUsage: x509.KeyUsageDigitalSignature,
		// S/MIME BR 7.1.2.3 f, strict: id-kp-emailProtection and nothing
		// else (RULES B2, RULES S7).
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		// S/MIME BR 7.1.2.3 h, RFC 8550 3: the mailbox as rfc822Name
		// (RULES S6). Non-critical since the subject is not empty.
		EmailAddresses: []string{addr},
		// S/MIME BR 7.1.6.1: exactly one reserved policy OID.
		// (crypto/x509 writes Policies, not PolicyIdentifiers, since Go 1.24.)
		Policies: []x509.OID{OIDMailboxValidatedStrict},
		// S/MIME BR 7.1.2.3 b, c.
		CRLDistributionPoints: []string{i.opts.CRLURL},
		IssuingCertificateURL: []string{i.opts.CAIssuersURL},
	}
	// RFC 5280 4.2.1.2: subscriber certificates should carry a subject key
	// identifier (crypto/x509 adds one only to CA certificates).
	if tmpl.SubjectKeyId, err = subjectKeyID(key.Public()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIssue, err)
	}
	if i.opts.OCSPURL != "" {
		tmpl.OCSPServer = []string{i.opts.OCSPURL}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.opts.CACert, key.Public(), i.opts.CAKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrIssue, addr, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIssue, err)
	}
	chain := append([]*x509.Certificate{i.opts.CACert}, i.opts.Chain...)
	id := &Identity{Certificate: cert, Chain: chain, Signer: key}
	if i.opts.Dir != "" {
		if err := i.write(id); err != nil {
			return nil, err
		}
	}
	return id, nil
}

// write stores the key first and then the certificate, each atomically,
// under a name made of the address and the serial number.
func (i *Issuer) write(id *Identity) error {
	base := filepath.Join(i.opts.Dir, fileSafe(id.Certificate.EmailAddresses[0])+"-"+id.Certificate.SerialNumber.Text(16))
	if err := WriteKeyFile(base+".key", id.Signer); err != nil {
		return fmt.Errorf("%w: %w", ErrIssue, err)
	}
	data := certPEM(append([]*x509.Certificate{id.Certificate}, id.Chain...)...)
	if err := writeFileAtomic(base+".pem", data, 0o644, false); err != nil {
		return fmt.Errorf("%w: %w", ErrIssue, err)
	}
	return nil
}

// NeedsRenewal reports whether c was issued by this issuer's CA and has
// less than RenewFraction of its validity left at now. Certificates from
// elsewhere are never renewed: they are used until they expire.
func (i *Issuer) NeedsRenewal(c *x509.Certificate, now time.Time) bool {
	if !i.issued(c) {
		return false
	}
	total := c.NotAfter.Sub(c.NotBefore)
	left := c.NotAfter.Sub(now)
	return float64(left) < float64(total)*i.opts.RenewFraction
}

// issued reports whether c was signed by this issuer's CA. Certificates
// are immutable once parsed, so the answer is kept per certificate.
func (i *Issuer) issued(c *x509.Certificate) bool {
	if v, ok := i.verdicts.Load(c); ok {
		return v.(bool)
	}
	ca := i.opts.CACert
	ok := bytes.Equal(c.RawIssuer, ca.RawSubject) &&
		(len(ca.SubjectKeyId) == 0 || bytes.Equal(c.AuthorityKeyId, ca.SubjectKeyId)) &&
		c.CheckSignatureFrom(ca) == nil
	if i.nVerdicts.Add(1) > maxVerdicts {
		i.verdicts.Clear()
		i.nVerdicts.Store(1)
	}
	i.verdicts.Store(c, ok)
	return ok
}

// canonicalIssueAddr checks an address to put into a certificate: an
// ASCII local part kept as is, the domain lower-cased. rfc822Name is an
// IA5String (RFC 5280 4.2.1.6); internationalised local parts would need
// SmtpUTF8Mailbox (RFC 9598), which this issuer does not make.
func canonicalIssueAddr(addr string) (string, error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", fmt.Errorf("%w: %q is not an address", ErrNoCertificate, addr)
	}
	local := addr[:at]
	for _, c := range []byte(local) {
		// RFC 5321 4.1.2 dot-atom characters; quoted local parts are refused.
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),:;<>@[\\]", c) >= 0 {
			return "", fmt.Errorf("%w: %q: local part not supported in a certificate", ErrNoCertificate, addr)
		}
	}
	domain, err := govdomain.Canonical(addr[at+1:])
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoCertificate, err)
	}
	return local + "@" + domain, nil
}

func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@.-_+", r) {
			return r
		}
		return '_'
	}, s)
}

func generateKey(alg KeyAlgorithm) (crypto.Signer, error) {
	switch alg {
	case KeyRSA2048:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		return rsaSigner(k), nil
	case KeyECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, fmt.Errorf("%w: key algorithm %d", ErrKeyType, alg)
}

// newSerial returns a positive serial number with 127 random bits in 16
// octets (RFC 5280 4.1.2.2: at most 20 octets; S/MIME BR 7.1: at least 64
// bits of CSPRNG output).
func newSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	b[0] &= 0x7f
	if b[0] == 0 {
		b[0] = 1
	}
	return new(big.Int).SetBytes(b), nil
}

// subjectKeyID is RFC 7093 2 method 1: the leftmost 160 bits of the SHA-256
// hash of the subjectPublicKey BIT STRING value.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	h := sha256.Sum256(spki.PublicKey.Bytes)
	return h[:20], nil
}

// Prune removes from Dir the certificates this issuer wrote that expired
// before now, each with its key, and returns the removed paths. A file is
// removed only if its name is the one Issue gives (ADDRESS-SERIAL.pem and
// .key), it holds a certificate with that serial issued by this CA, and
// the key file holds that certificate's key: nothing an operator put there
// is touched. Store prunes an address's files after issuing for it; call
// Prune now and then (e.g. daily) for addresses that stopped sending.
func (i *Issuer) Prune(now time.Time) ([]string, error) {
	return i.prune("*.pem", now)
}

func (i *Issuer) prune(pattern string, now time.Time) ([]string, error) {
	if i.opts.Dir == "" {
		return nil, nil
	}
	paths, err := filepath.Glob(filepath.Join(i.opts.Dir, pattern))
	if err != nil {
		return nil, fmt.Errorf("%w: prune: %w", ErrIssue, err)
	}
	var removed []string
	for _, p := range paths {
		certs, err := LoadCertificates(p)
		if err != nil || len(certs) == 0 {
			continue
		}
		c := certs[0]
		base := strings.TrimSuffix(p, ".pem")
		if len(c.EmailAddresses) == 0 || filepath.Base(base) != fileSafe(c.EmailAddresses[0])+"-"+c.SerialNumber.Text(16) ||
			!now.After(c.NotAfter) || !i.issued(c) {
			continue
		}
		key, err := LoadSigner(base + ".key")
		if err != nil || !publicKeysEqual(key.Public(), c.PublicKey) {
			continue
		}
		// The certificate first: a key without its certificate is ignored
		// by the Store, a certificate without its key is a problem report.
		if err := os.Remove(p); err != nil {
			return removed, fmt.Errorf("%w: prune: %w", ErrIssue, err)
		}
		removed = append(removed, p)
		if err := os.Remove(base + ".key"); err != nil {
			return removed, fmt.Errorf("%w: prune: %w", ErrIssue, err)
		}
		removed = append(removed, base+".key")
	}
	return removed, nil
}
