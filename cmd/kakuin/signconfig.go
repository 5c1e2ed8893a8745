package main

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/kakuin/kakuin/govdomain"
	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/signer"
)

// errConfig: the configuration is unusable (a bad value, a missing file).
// Commands exit with exitUsage when they see it.
var errConfig = errors.New("configuration")

// No-certificate policies (KAKUIN_NO_CERT_POLICY).
const (
	policyIssue    = "issue"     // issue a sender certificate from the issuing CA
	policyReject   = "reject"    // refuse the message
	policyDKIMOnly = "dkim-only" // sign with DKIM alone
)

// maxCertValidity is the longest validity a certificate kakuin issues may
// have: 825 days (CA/B Forum S/MIME BR 6.3.2, RULES B2).
const maxCertValidity = 825 * 24 * time.Hour

// signConfig is the signing configuration shared by `kakuin sign` and
// `kakuin gateway`: where the keys, certificates and trust anchors are,
// what to do without a certificate, and which senders are allowed.
//
// KAKUIN_PKI_DIR alone, laid out by `kakuin pki init` (see pki.Layout), is
// enough; each other path variable overrides one part of it. Resolve the
// effective paths with the accessor methods (trustAnchors, certDir, ...),
// never by reading the fields directly.
type signConfig struct {
	PKIDir         string        `env:"PKI_DIR" envDefault:"var/pki" help:"PKI directory laid out by 'kakuin pki init'; the variables below override parts of it"`
	TrustAnchors   string        `env:"TRUST_ANCHORS" help:"PEM file of the trusted root certificates (default PKI_DIR/trust-anchors.pem)"`
	CertDir        string        `env:"CERT_DIR" help:"directory of sender certificates and keys, PEM or PKCS#12, indexed by their rfc822Name SANs; issued certificates are stored here (default PKI_DIR/certs)"`
	IssuerCert     string        `env:"ISSUER_CERT" help:"S/MIME issuing CA certificate, PEM (default PKI_DIR/issuing/ca.pem if it exists)"`
	IssuerKey      string        `env:"ISSUER_KEY" help:"S/MIME issuing CA private key, PEM, mode 0600 (default PKI_DIR/issuing/ca.key if it exists)"`
	DKIMDir        string        `env:"DKIM_DIR" help:"DKIM private keys as DOMAIN/SELECTOR.key, mode 0600 (default PKI_DIR/dkim)"`
	TLSCert        string        `env:"TLS_CERT" help:"gateway STARTTLS certificate and chain, PEM (default PKI_DIR/tls/cert.pem)"`
	TLSKey         string        `env:"TLS_KEY" help:"gateway STARTTLS private key, PEM, mode 0600 (default PKI_DIR/tls/key.pem)"`
	PKCS12Password string        `env:"PKCS12_PASSWORD,unset" help:"password of the PKCS#12 bundles in the certificate directory (default empty)"`
	NoCertPolicy   string        `env:"NO_CERT_POLICY" help:"what to do when no S/MIME certificate matches the From address: issue, reject or dkim-only (default issue when an issuing CA is configured, else reject)"`
	CertValidity   time.Duration `env:"CERT_VALIDITY" envDefault:"168h" help:"validity of the sender certificates kakuin issues, at most 825 days (19800h)"`
	SenderSuffixes []string      `env:"SENDER_SUFFIXES" envDefault:"go.jp" envSeparator:"," help:"comma-separated domain suffixes a From address must be under, label-wise"`
	Hostname       string        `env:"HOSTNAME" help:"right-hand side of the Message-IDs kakuin adds (default the From domain)"`
	RSALibcrypto   bool          `env:"RSA_LIBCRYPTO" envDefault:"true" help:"RSA keys held in files sign through OpenSSL's libcrypto (about 2.5 times as fast as Go's crypto/rsa; the same signatures); false: crypto/rsa. A binary built without cgo always uses crypto/rsa"`

	// rsaEngine is what RSA keys in files sign with: "libcrypto" or
	// "crypto/rsa" (set by useRSAEngine).
	rsaEngine string
}

// layout is the pki.Layout of PKIDir.
func (c *signConfig) layout() pki.Layout { return pki.Layout{Dir: c.PKIDir} }

// or returns v, or def when v is empty.
func or(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

func (c *signConfig) trustAnchors() string { return or(c.TrustAnchors, c.layout().TrustAnchors()) }
func (c *signConfig) certDir() string      { return or(c.CertDir, c.layout().CertDir()) }
func (c *signConfig) dkimDir() string      { return or(c.DKIMDir, c.layout().DKIMDir()) }
func (c *signConfig) tlsCert() string      { return or(c.TLSCert, c.layout().TLSCert()) }
func (c *signConfig) tlsKey() string       { return or(c.TLSKey, c.layout().TLSKey()) }

// issuer returns the issuing CA's certificate and key files, and whether an
// issuing CA is configured: both variables set, or, when neither is, both
// files present in the PKI directory. Setting only one of the two variables
// is a configuration error, reported by validate.
func (c *signConfig) issuer() (cert, key string, ok bool) {
	if c.IssuerCert != "" || c.IssuerKey != "" {
		return c.IssuerCert, c.IssuerKey, c.IssuerCert != "" && c.IssuerKey != ""
	}
	cert, key = c.layout().IssuerCert(), c.layout().IssuerKey()
	return cert, key, exists(cert) && exists(key)
}

// noCertPolicy is the effective KAKUIN_NO_CERT_POLICY: the configured one,
// or issue when an issuing CA is configured, else reject.
func (c *signConfig) noCertPolicy() string {
	if c.NoCertPolicy != "" {
		return strings.ToLower(c.NoCertPolicy)
	}
	if _, _, ok := c.issuer(); ok {
		return policyIssue
	}
	return policyReject
}

// senders is the allowed sender suffix policy.
func (c *signConfig) senders() govdomain.Policy {
	return govdomain.Policy{Suffixes: c.SenderSuffixes}
}

// validate checks the values that can be checked without opening a file.
// Errors wrap errConfig.
func (c *signConfig) validate() error {
	if c.PKIDir == "" && (c.TrustAnchors == "" || c.DKIMDir == "" || c.CertDir == "") {
		return fmt.Errorf("%w: KAKUIN_PKI_DIR is empty and not every path is set on its own", errConfig)
	}
	if (c.IssuerCert == "") != (c.IssuerKey == "") {
		return fmt.Errorf("%w: KAKUIN_ISSUER_CERT and KAKUIN_ISSUER_KEY go together", errConfig)
	}
	switch p := c.noCertPolicy(); p {
	case policyReject, policyDKIMOnly:
	case policyIssue:
		if _, _, ok := c.issuer(); !ok {
			return fmt.Errorf("%w: KAKUIN_NO_CERT_POLICY=issue needs an issuing CA (KAKUIN_ISSUER_CERT and KAKUIN_ISSUER_KEY, or PKI_DIR/issuing/)", errConfig)
		}
	default:
		return fmt.Errorf("%w: KAKUIN_NO_CERT_POLICY=%q: want issue, reject or dkim-only", errConfig, p)
	}
	if c.CertValidity <= 0 || c.CertValidity > maxCertValidity {
		// CA/B Forum S/MIME BR 6.3.2 (RULES B2): at most 825 days.
		return fmt.Errorf("%w: KAKUIN_CERT_VALIDITY=%s: want more than 0 and at most 825 days", errConfig, c.CertValidity)
	}
	if len(c.SenderSuffixes) == 0 {
		return fmt.Errorf("%w: KAKUIN_SENDER_SUFFIXES is empty: nothing could be sent", errConfig)
	}
	for i, s := range c.SenderSuffixes {
		cs, err := govdomain.Canonical(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%w: KAKUIN_SENDER_SUFFIXES: %w", errConfig, err)
		}
		if !strings.Contains(cs, ".") {
			// A single label (jp, com) would allow a whole TLD.
			return fmt.Errorf("%w: KAKUIN_SENDER_SUFFIXES: %q is a top-level domain", errConfig, s)
		}
		c.SenderSuffixes[i] = cs
	}
	return nil
}

// loadSignConfig reads and validates the signing configuration from the
// environment.
func loadSignConfig() (*signConfig, error) {
	var c signConfig
	if err := parseEnv(&c); err != nil {
		// parseEnv already says "configuration: ..."; keep its cause.
		if cause := errors.Unwrap(err); cause != nil {
			err = cause
		}
		return nil, fmt.Errorf("%w: %w", errConfig, err)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	c.useRSAEngine()
	return &c, nil
}

// useRSAEngine makes RSA keys loaded from now on sign as RSALibcrypto
// says, and records which way they sign.
func (c *signConfig) useRSAEngine() {
	c.rsaEngine = "crypto/rsa"
	if pki.UseLibcrypto(c.RSALibcrypto) {
		c.rsaEngine = "libcrypto"
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// signerOptions builds signer.Options from the configuration: the
// certificate store over certDir (PEM and PKCS#12), the issuing CA when the
// policy is issue, the DKIM keyring over dkimDir, the sender policy and the
// hostname. Close the returned io.Closer when the options are no longer
// used (on exit, or after a reload has swapped them).
//
// Errors wrap errConfig for settings that cannot work (no PKI directory);
// files that cannot be used keep pki's sentinels (pki.ErrKeyFile,
// pki.ErrKeyPermissions, pki.ErrStore, pki.ErrDKIMConfig, pki.ErrIssue).
func (c *signConfig) signerOptions() (signer.Options, io.Closer, error) {
	var none signer.Options
	if c.PKIDir != "" && !exists(c.PKIDir) && (c.TrustAnchors == "" || c.DKIMDir == "" || c.CertDir == "") {
		return none, nil, fmt.Errorf("%w: KAKUIN_PKI_DIR=%s does not exist (create it with: kakuin pki init --dir %s --domain YOUR.DOMAIN.go.jp)",
			errConfig, c.PKIDir, c.PKIDir)
	}
	roots, err := pki.LoadTrustAnchors(c.trustAnchors())
	if err != nil {
		return none, nil, fmt.Errorf("trust anchors: %w", err)
	}
	var intermediates []*x509.Certificate
	var issuer *pki.Issuer
	if cert, key, ok := c.issuer(); ok {
		// The issuing CA file may hold the CA certificate followed by its
		// own chain; the root is not sent (RFC 8550 3, RULES S5).
		certs, err := pki.LoadCertificates(cert)
		if err != nil {
			return none, nil, fmt.Errorf("issuing CA: %w", err)
		}
		var chain []*x509.Certificate // above the issuing CA, without the root
		for i, ic := range certs {
			if isSelfSigned(ic) {
				continue
			}
			intermediates = append(intermediates, ic)
			if i > 0 {
				chain = append(chain, ic)
			}
		}
		if c.noCertPolicy() == policyIssue {
			caCert, caKey, err := pki.LoadCA(cert, key)
			if err != nil {
				return none, nil, fmt.Errorf("issuing CA: %w", err)
			}
			issuer, err = pki.NewIssuer(pki.IssuerOptions{
				CACert:   caCert,
				CAKey:    caKey,
				Chain:    chain,
				Dir:      c.certDir(),
				Validity: c.CertValidity,
			})
			if err != nil {
				return none, nil, err
			}
		}
	}
	if err := os.MkdirAll(c.certDir(), 0o700); err != nil {
		return none, nil, fmt.Errorf("%w: %w", pki.ErrStore, err)
	}
	store, err := pki.NewStore(pki.StoreOptions{
		Dir:            c.certDir(),
		Roots:          roots,
		Intermediates:  intermediates,
		PKCS12Password: c.PKCS12Password,
		Issuer:         issuer,
	})
	if err != nil {
		return none, nil, err
	}
	keyring, err := pki.LoadDKIMKeyring(c.dkimDir())
	if err != nil {
		return none, nil, err
	}
	if len(keyring.Domains()) == 0 {
		return none, nil, fmt.Errorf("%w: no DKIM keys in %s", pki.ErrDKIMConfig, c.dkimDir())
	}
	opts := signer.Options{
		Identities:         store,
		DKIM:               keyring,
		MissingCertificate: signer.Reject,
		Senders:            c.senders(),
		Hostname:           c.Hostname,
	}
	if c.noCertPolicy() == policyDKIMOnly {
		opts.MissingCertificate = signer.DKIMOnly
	}
	return opts, nopCloser{}, nil
}

// nopCloser: nothing to release yet (PEM and PKCS#12 keys live in memory);
// an HSM session will be closed here.
type nopCloser struct{}

func (nopCloser) Close() error { return nil }

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}
