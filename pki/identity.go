package pki

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
)

// Errors, grouped by phase. Wrap them so that errors.Is finds both the
// sentinel and the cause: fmt.Errorf("%w: %s: %w", ErrKeyFile, path, err).
var (
	// ErrKeyFile: a private key file could not be read or parsed.
	ErrKeyFile = errors.New("pki: key file")
	// ErrKeyPermissions: a private key file is readable by group or others.
	ErrKeyPermissions = errors.New("pki: key file readable by group or others")
	// ErrNoCertificate: no valid certificate for the address and none could
	// be issued.
	ErrNoCertificate = errors.New("pki: no certificate for address")
	// ErrIssue: the issuing CA failed to issue a certificate.
	ErrIssue = errors.New("pki: issuing certificate")
	// ErrNoDKIMKey: no DKIM key is configured for the domain or any parent.
	ErrNoDKIMKey = errors.New("pki: no dkim key for domain")
)

// Identity is what signs S/MIME for one address.
type Identity struct {
	// Certificate is the signer's leaf certificate; one of its rfc822Name
	// SANs is the address the identity was chosen for.
	Certificate *x509.Certificate
	// Chain holds the intermediates, the leaf's issuer first, without the
	// root (RFC 8550 3, RULES S5).
	Chain []*x509.Certificate
	// Signer is the leaf's private key.
	Signer crypto.Signer
}

// IdentitySource finds the S/MIME identity for an address. It returns an
// error wrapping ErrNoCertificate when there is none and none could be
// issued. Implementations are safe for concurrent use.
type IdentitySource interface {
	Identity(ctx context.Context, addr string) (*Identity, error)
}

// DKIMKey is one DKIM signing key.
type DKIMKey struct {
	// Domain is the d= tag: the domain the key is published under.
	Domain string
	// Selector is the s= tag.
	Selector string
	// Signer is the private key: *rsa.PrivateKey-backed (rsa-sha256) or
	// ed25519 (ed25519-sha256, RFC 8463).
	Signer crypto.Signer
}

// DKIMKeySource finds the DKIM keys for a From domain: those configured
// for the domain itself or, failing that, for its nearest configured parent
// (so that d= aligns under DMARC, RULES D6). It returns an error wrapping
// ErrNoDKIMKey when there are none. Implementations are safe for concurrent
// use.
type DKIMKeySource interface {
	DKIMKeys(domain string) ([]DKIMKey, error)
}
