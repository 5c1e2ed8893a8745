package pki

import "path/filepath"

// Layout names the files of a PKI directory as `kakuin pki init` lays it
// out. One directory is enough to configure every key, certificate and
// trust anchor; each path can be overridden on its own.
//
//	DIR/trust-anchors.pem        the root certificate only: what verifiers trust
//	DIR/root/ca.pem, ca.key      the root CA
//	DIR/issuing/ca.pem, ca.key   the S/MIME issuing CA (root -> issuing -> sender)
//	DIR/certs/                   sender certificates and keys (PEM or PKCS#12),
//	                             indexed by their rfc822Name SANs; issued ones land here
//	DIR/dkim/DOMAIN/SELECTOR.key DKIM private keys, one file per selector
//	DIR/tls/cert.pem, key.pem    the gateway's STARTTLS certificate
//	DIR/dns.zone                 DKIM, SPF and DMARC records to publish
type Layout struct {
	Dir string
}

func (l Layout) path(p ...string) string { return filepath.Join(append([]string{l.Dir}, p...)...) }

// TrustAnchors is the PEM file of trusted roots.
func (l Layout) TrustAnchors() string { return l.path("trust-anchors.pem") }

// RootCert is the root CA certificate.
func (l Layout) RootCert() string { return l.path("root", "ca.pem") }

// RootKey is the root CA private key.
func (l Layout) RootKey() string { return l.path("root", "ca.key") }

// IssuerCert is the S/MIME issuing CA certificate.
func (l Layout) IssuerCert() string { return l.path("issuing", "ca.pem") }

// IssuerKey is the S/MIME issuing CA private key.
func (l Layout) IssuerKey() string { return l.path("issuing", "ca.key") }

// CertDir holds sender certificates and keys.
func (l Layout) CertDir() string { return l.path("certs") }

// DKIMDir holds DKIM keys as DOMAIN/SELECTOR.key.
func (l Layout) DKIMDir() string { return l.path("dkim") }

// TLSCert is the gateway's STARTTLS certificate (with its chain).
func (l Layout) TLSCert() string { return l.path("tls", "cert.pem") }

// TLSKey is the gateway's STARTTLS private key.
func (l Layout) TLSKey() string { return l.path("tls", "key.pem") }

// DNSZone is the zone-file fragment with the records to publish.
func (l Layout) DNSZone() string { return l.path("dns.zone") }
