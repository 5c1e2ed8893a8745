package pki

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kakuin/kakuin/govdomain"
)

// oidAnyPolicy is RFC 5280 4.2.1.4 anyPolicy.
var oidAnyPolicy = mustOID(2, 5, 29, 32, 0)

// ErrInit: `kakuin pki init` could not lay out the directory.
var ErrInit = errors.New("pki: init")

// Key sizes and validity periods of the development PKI. RSA throughout,
// because every mail client (OpenSSL, NSS/Thunderbird, Outlook, Apple Mail)
// verifies it.
const (
	rootKeyBits     = 3072
	caKeyBits       = 2048
	rootValidity    = 20 // years
	issuingValidity = 10 // years
	tlsValidityDays = 397
)

// InitOptions configure Init. Every zero value is documented.
type InitOptions struct {
	// Dir is the PKI directory (Layout). Created if missing. Required.
	Dir string
	// Domains get DKIM keys: an RSA-2048 key (selector rsa-YYYYMM) and an
	// Ed25519 key (selector ed-YYYYMM), YYYYMM the month of Now in UTC.
	// A domain that already has a key of an algorithm keeps it. May be
	// empty (the CAs and TLS certificate are still made).
	Domains []string
	// Organization is the subject O of the CA certificates. If empty,
	// "kakuin development PKI".
	Organization string
	// TLSHosts are the names and IP addresses of the gateway's STARTTLS
	// certificate. If nil, localhost, 127.0.0.1 and ::1.
	TLSHosts []string
	// SPF is the suggested SPF record of each domain in dns.zone. If empty,
	// "v=spf1 mx -all".
	SPF string
	// DMARCReportAddress receives DMARC aggregate reports (rua). If empty,
	// dmarc-reports@DOMAIN.
	DMARCReportAddress string
	// RootCRLURL and RootCAIssuersURL go into the issuing CA and TLS
	// certificates. If empty, DefaultRootCRLURL and DefaultRootCAIssuersURL.
	RootCRLURL, RootCAIssuersURL string
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
}

// InitReport says what Init did, path by path.
type InitReport struct {
	// Created lists the files Init wrote because they were missing.
	Created []string
	// Kept lists the files that existed and were left untouched.
	Kept []string
	// Rewritten lists derived files regenerated on every run (dns.zone).
	Rewritten []string
	// Selectors maps each domain given in InitOptions.Domains to its
	// selectors, RSA first.
	Selectors map[string][]string
}

// Init lays out a development PKI in opts.Dir (see Layout), creating only
// what is missing and never overwriting a file:
//
//   - root CA (RSA-3072, 20 years) and S/MIME issuing CA (RSA-2048, 10
//     years, emailProtection EKU, strict S/MIME policies), root -> issuing
//     CA -> sender, the shape of a government PKI;
//   - trust-anchors.pem holding the root only;
//   - a TLS server certificate for the gateway's STARTTLS (RSA-2048, 397
//     days, signed by the root);
//   - per domain an RSA-2048 and an Ed25519 DKIM key
//     (dkim/DOMAIN/rsa-YYYYMM.key and ed-YYYYMM.key);
//   - certs/ for sender certificates.
//
// Key files are mode 0600 and written atomically; key directories are 0700.
// dns.zone is derived data: it is rewritten on every run from all the DKIM
// keys present under dkim/, with suggested SPF and DMARC records (only
// when its content changes). Running Init again changes nothing; with a new domain it adds only that
// domain's keys. Errors wrap ErrInit (or ErrKeyPermissions for an existing
// key file with a wide mode).
func Init(opts InitOptions) (*InitReport, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("%w: no directory", ErrInit)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Organization == "" {
		opts.Organization = "kakuin development PKI"
	}
	if opts.TLSHosts == nil {
		opts.TLSHosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	if opts.RootCRLURL == "" {
		opts.RootCRLURL = DefaultRootCRLURL
	}
	if opts.RootCAIssuersURL == "" {
		opts.RootCAIssuersURL = DefaultRootCAIssuersURL
	}
	domains := make([]string, 0, len(opts.Domains))
	for _, d := range opts.Domains {
		c, err := govdomain.Canonical(d)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInit, err)
		}
		if !slices.Contains(domains, c) {
			domains = append(domains, c)
		}
	}
	now := opts.Now().UTC().Truncate(time.Second)
	l := Layout{Dir: opts.Dir}
	r := &InitReport{Selectors: make(map[string][]string)}
	in := &initRun{l: l, opts: opts, now: now, r: r}

	for _, d := range []string{opts.Dir, l.CertDir(), l.DKIMDir(), filepath.Dir(l.RootKey()), filepath.Dir(l.IssuerKey()), filepath.Dir(l.TLSKey())} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInit, err)
		}
	}
	root, rootKey, err := in.ca(l.RootCert(), l.RootKey(), nil, nil, in.rootTemplate, func() (crypto.Signer, error) {
		return rsa.GenerateKey(rand.Reader, rootKeyBits)
	})
	if err != nil {
		return nil, err
	}
	if _, _, err := in.ca(l.IssuerCert(), l.IssuerKey(), root, rootKey, in.issuingTemplate, func() (crypto.Signer, error) {
		return rsa.GenerateKey(rand.Reader, caKeyBits)
	}); err != nil {
		return nil, err
	}
	if err := in.file(l.TrustAnchors(), 0o644, func() ([]byte, error) { return certPEM(root), nil }); err != nil {
		return nil, err
	}
	if err := in.tls(root, rootKey); err != nil {
		return nil, err
	}
	for _, d := range domains {
		sels, err := in.dkim(d)
		if err != nil {
			return nil, err
		}
		r.Selectors[d] = sels
	}
	if err := in.zone(); err != nil {
		return nil, err
	}
	return r, nil
}

type initRun struct {
	l    Layout
	opts InitOptions
	now  time.Time
	r    *InitReport
}

func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, fmt.Errorf("%w: %w", ErrInit, err)
}

// file writes path with make() unless it exists.
func (in *initRun) file(path string, perm os.FileMode, make func() ([]byte, error)) error {
	ok, err := exists(path)
	if err != nil {
		return err
	}
	if ok {
		in.r.Kept = append(in.r.Kept, path)
		return nil
	}
	data, err := make()
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInit, path, err)
	}
	if err := writeFileAtomic(path, data, perm, false); err != nil {
		return fmt.Errorf("%w: %w", ErrInit, err)
	}
	in.r.Created = append(in.r.Created, path)
	return nil
}

// ca loads the CA at certPath/keyPath, or creates both if neither exists.
// One without the other is an error: Init never guesses which to trust.
// parent nil makes a self-signed root.
func (in *initRun) ca(certPath, keyPath string, parent *x509.Certificate, parentKey crypto.Signer,
	tmpl func() (*x509.Certificate, error), newKey func() (crypto.Signer, error)) (*x509.Certificate, crypto.Signer, error) {
	certOK, err := exists(certPath)
	if err != nil {
		return nil, nil, err
	}
	keyOK, err := exists(keyPath)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case certOK && keyOK:
		c, k, err := LoadCA(certPath, keyPath)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrInit, err)
		}
		if parent != nil && c.CheckSignatureFrom(parent) != nil {
			return nil, nil, fmt.Errorf("%w: %s is not signed by %s", ErrInit, certPath, parent.Subject)
		}
		in.r.Kept = append(in.r.Kept, certPath, keyPath)
		return c, k, nil
	case certOK != keyOK:
		return nil, nil, fmt.Errorf("%w: only one of %s and %s exists; remove it or restore the other", ErrInit, certPath, keyPath)
	}
	key, err := newKey()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInit, err)
	}
	t, err := tmpl()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInit, err)
	}
	if parent == nil {
		parent, parentKey = t, key
	}
	der, err := x509.CreateCertificate(rand.Reader, t, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrInit, certPath, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInit, err)
	}
	// The key first: a certificate without its key is the state we refuse.
	if err := WriteKeyFile(keyPath, key); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInit, err)
	}
	if err := writeFileAtomic(certPath, certPEM(c), 0o644, false); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInit, err)
	}
	in.r.Created = append(in.r.Created, keyPath, certPath)
	return c, key, nil
}

func (in *initRun) rootTemplate() (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	// RFC 5280 4.2.1.9 / 4.2.1.3, S/MIME BR 7.1.2.1: basicConstraints cA
	// critical, keyCertSign and cRLSign critical, no EKU, SKI (x509 derives
	// it), no pathLen.
	return &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Country:      []string{"JP"},
			Organization: []string{in.opts.Organization},
			CommonName:   in.opts.Organization + " Root CA",
		},
		NotBefore:             in.now.Add(-time.Hour),
		NotAfter:              in.now.AddDate(rootValidity, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil
}

func (in *initRun) issuingTemplate() (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	// S/MIME BR 7.1.2.2 (subordinate CA): basicConstraints cA critical,
	// keyCertSign and cRLSign, EKU emailProtection only, the reserved
	// anyPolicy, cRLDistributionPoints and AIA over http;
	// AKI and SKI (x509 derives both).
	return &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Country:      []string{"JP"},
			Organization: []string{in.opts.Organization},
			CommonName:   in.opts.Organization + " S/MIME Issuing CA",
		},
		NotBefore:             in.now.Add(-time.Hour),
		NotAfter:              in.now.AddDate(issuingValidity, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		// S/MIME BR 7.1.2.2 (affiliated CA): anyPolicy. The reserved
		// subscriber OIDs would make the CA look like a subscriber
		// certificate to linters (zlint applies mailbox-validated subject
		// rules to it).
		Policies:              []x509.OID{oidAnyPolicy},
		CRLDistributionPoints: []string{in.opts.RootCRLURL},
		IssuingCertificateURL: []string{in.opts.RootCAIssuersURL},
	}, nil
}

// tls makes the STARTTLS certificate, signed by the root (the issuing CA
// is limited to emailProtection).
func (in *initRun) tls(root *x509.Certificate, rootKey crypto.Signer) error {
	certOK, err := exists(in.l.TLSCert())
	if err != nil {
		return err
	}
	keyOK, err := exists(in.l.TLSKey())
	if err != nil {
		return err
	}
	switch {
	case certOK && keyOK:
		in.r.Kept = append(in.r.Kept, in.l.TLSCert(), in.l.TLSKey())
		return nil
	case certOK != keyOK:
		return fmt.Errorf("%w: only one of %s and %s exists; remove it or restore the other", ErrInit, in.l.TLSCert(), in.l.TLSKey())
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInit, err)
	}
	serial, err := newSerial()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInit, err)
	}
	t := &x509.Certificate{
		SerialNumber: serial,
		// RFC 5280 4.1.2.6: a non-empty subject, so the SAN need not be
		// critical.
		Subject: pkix.Name{
			Country:      []string{"JP"},
			Organization: []string{in.opts.Organization},
			CommonName:   in.opts.TLSHosts[0],
		},
		NotBefore:             in.now.Add(-time.Hour),
		NotAfter:              in.now.AddDate(0, 0, tlsValidityDays),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		CRLDistributionPoints: []string{in.opts.RootCRLURL},
		IssuingCertificateURL: []string{in.opts.RootCAIssuersURL},
	}
	if t.SubjectKeyId, err = subjectKeyID(key.Public()); err != nil { // RFC 5280 4.2.1.2
		return fmt.Errorf("%w: %w", ErrInit, err)
	}
	for _, h := range in.opts.TLSHosts {
		if ip := net.ParseIP(h); ip != nil {
			t.IPAddresses = append(t.IPAddresses, ip)
		} else {
			t.DNSNames = append(t.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, t, root, key.Public(), rootKey)
	if err != nil {
		return fmt.Errorf("%w: tls certificate: %w", ErrInit, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInit, err)
	}
	if err := WriteKeyFile(in.l.TLSKey(), key); err != nil {
		return fmt.Errorf("%w: %w", ErrInit, err)
	}
	if err := writeFileAtomic(in.l.TLSCert(), certPEM(c), 0o644, false); err != nil {
		return fmt.Errorf("%w: %w", ErrInit, err)
	}
	in.r.Created = append(in.r.Created, in.l.TLSKey(), in.l.TLSCert())
	return nil
}

// DKIMSelectors returns the selectors Init gives new DKIM keys in the month
// of t (UTC): "rsa-YYYYMM" and "ed-YYYYMM". A month in the name makes
// rotation (RULES D7) a matter of running Init in a later month after
// moving the old keys aside.
func DKIMSelectors(t time.Time) (rsaSel, edSel string) {
	m := t.UTC().Format("200601")
	return "rsa-" + m, "ed-" + m
}

// dkim makes the missing DKIM keys of one domain: an RSA key unless the
// domain has one, an Ed25519 key unless it has one.
func (in *initRun) dkim(domain string) ([]string, error) {
	dir := filepath.Join(in.l.DKIMDir(), domain)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInit, err)
	}
	have, err := loadDomainKeys(dir)
	if err != nil {
		return nil, err
	}
	var rsaSels, edSels []string
	for _, k := range have {
		if _, ok := k.Signer.Public().(*rsa.PublicKey); ok {
			rsaSels = append(rsaSels, k.Selector)
		} else {
			edSels = append(edSels, k.Selector)
		}
		in.r.Kept = append(in.r.Kept, filepath.Join(dir, k.Selector+".key"))
	}
	rsaSel, edSel := DKIMSelectors(in.now)
	if len(rsaSels) == 0 {
		k, err := rsa.GenerateKey(rand.Reader, 2048) // RULES D2
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInit, err)
		}
		if err := in.writeKey(filepath.Join(dir, rsaSel+".key"), k); err != nil {
			return nil, err
		}
		rsaSels = append(rsaSels, rsaSel)
	}
	if len(edSels) == 0 {
		_, k, err := ed25519.GenerateKey(rand.Reader) // RULES D3, RFC 8463
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInit, err)
		}
		if err := in.writeKey(filepath.Join(dir, edSel+".key"), k); err != nil {
			return nil, err
		}
		edSels = append(edSels, edSel)
	}
	return append(rsaSels, edSels...), nil
}

func (in *initRun) writeKey(path string, k crypto.Signer) error {
	if err := WriteKeyFile(path, k); err != nil {
		return fmt.Errorf("%w: %w", ErrInit, err)
	}
	in.r.Created = append(in.r.Created, path)
	return nil
}

// loadDomainKeys reads the SELECTOR.key files of one domain directory.
func loadDomainKeys(dir string) ([]DKIMKey, error) {
	files, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInit, err)
	}
	var keys []DKIMKey
	for _, f := range files {
		name := f.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".key") || !isFile(dir, f) {
			continue
		}
		k, err := LoadSigner(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		keys = append(keys, DKIMKey{Domain: filepath.Base(dir), Selector: strings.TrimSuffix(name, ".key"), Signer: k})
	}
	return keys, nil
}

// zone rewrites dns.zone from every domain under dkim/.
func (in *initRun) zone() error {
	kr, err := LoadDKIMKeyring(in.l.DKIMDir())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInit, err)
	}
	data, err := ZoneFile(kr, ZoneOptions{SPF: in.opts.SPF, DMARCReportAddress: in.opts.DMARCReportAddress})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInit, err)
	}
	path := in.l.DNSZone()
	ok, err := exists(path)
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		in.r.Kept = append(in.r.Kept, path) // unchanged: leave it, mtime too
		return nil
	}
	if err := writeFileAtomic(path, data, 0o644, true); err != nil {
		return fmt.Errorf("%w: %w", ErrInit, err)
	}
	if ok {
		in.r.Rewritten = append(in.r.Rewritten, path)
	} else {
		in.r.Created = append(in.r.Created, path)
	}
	return nil
}
