package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// OpenOptions configure OpenStore. Every zero value is documented.
type OpenOptions struct {
	// Issue enables issuance on demand from the layout's issuing CA
	// (issuing/ca.pem and ca.key), into certs/. If false, the Store has no
	// Issuer and a miss is ErrNoCertificate.
	Issue bool
	// Issuer holds the other issuer settings (validity, key algorithm,
	// URLs, domains); CACert, CAKey and Dir are taken from the layout, and
	// a nil Now from OpenOptions.Now.
	Issuer IssuerOptions
	// PKCS12Password opens PKCS#12 bundles in certs/. If empty, the empty
	// password.
	PKCS12Password string
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
}

// OpenStore opens the certificate store of a PKI directory laid out by
// Init: certs/ trusted up to trust-anchors.pem, with the issuing CA
// certificate available for chain building, and optionally an Issuer.
func OpenStore(l Layout, opts OpenOptions) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	roots, err := LoadTrustAnchors(l.TrustAnchors())
	if err != nil {
		return nil, err
	}
	so := StoreOptions{Dir: l.CertDir(), Roots: roots, PKCS12Password: opts.PKCS12Password, Now: opts.Now}
	if _, err := os.Stat(l.IssuerCert()); err == nil {
		certs, err := LoadCertificates(l.IssuerCert())
		if err != nil {
			return nil, err
		}
		so.Intermediates = certs
	} else if !errors.Is(err, fs.ErrNotExist) || opts.Issue {
		return nil, fmt.Errorf("%w: %w", ErrCertFile, err)
	}
	if opts.Issue {
		caCert, caKey, err := LoadCA(l.IssuerCert(), l.IssuerKey())
		if err != nil {
			return nil, err
		}
		io := opts.Issuer
		io.CACert, io.CAKey, io.Dir = caCert, caKey, l.CertDir()
		if io.Now == nil {
			io.Now = opts.Now
		}
		if so.Issuer, err = NewIssuer(io); err != nil {
			return nil, err
		}
	}
	return NewStore(so)
}
