// Package pki holds kakuin's keys and certificates: trust anchors, the
// certificate store that maps a From address to an S/MIME signing identity
// (PEM files and PKCS#12 bundles), the issuing CA that makes short-lived
// sender certificates on demand (CA/B Forum S/MIME Baseline Requirements,
// RFC 8550), the DKIM keyring (RFC 6376, RFC 8463), and the development PKI
// that `kakuin pki init` lays out.
//
// Keys are always crypto.Signer: whether a key is a PEM file, a PKCS#12
// bundle or an HSM object is this package's business, never the signer's.
//
// # Key files
//
// LoadSigner reads PEM keys (PKCS#8, PKCS#1, SEC 1; RSA, ECDSA, Ed25519);
// LoadPKCS12 reads bundles. A file holding key material that group or
// others may access is refused with ErrKeyPermissions, naming the file and
// the fix (chmod 600). WriteKeyFile writes 0600 through an O_EXCL
// temporary file and a link, so a key is never visible half-written or
// with a wider mode, and an existing file is never replaced.
//
// # Keys in an HSM
//
// Any key file (a DKIM key, the issuing CA's key, a key in the certificate
// store, the STARTTLS key) may hold instead an RFC 7512 pkcs11: URI naming
// an RSA or ECDSA key on a PKCS#11 token, with the module and the PIN
// file (PKCS11URI). The key stays in the HSM; signatures go through the
// module (github.com/ThalesGroup/crypto11), and when the HSM fails they
// fail, so nothing is signed without it. A static binary (built without
// cgo, or the container image's, -tags kakuin_static) cannot load a module
// and says so (ErrPKCS11).
// Ed25519 DKIM keys stay in files: crypto11 signs with RSA and ECDSA keys
// only.
//
// # Certificates
//
// Store indexes a directory by the rfc822Name SANs inside the certificates
// (local part exact, domain case folded), pairs certificates with keys by
// public key, builds each chain to the trust anchors with the
// emailProtection EKU, and never returns a certificate that is expired or
// not yet valid at Now. With an Issuer, a missing certificate is issued:
// mailbox-validated, strict generation (policy 2.23.140.1.5.1.3),
// emailProtection only, valid DefaultIssueValidity (7 days) unless set,
// renewed once less than a third of its validity is left. Concurrent
// requests for one address issue once. Every certificate kakuin makes
// passes zlint's S/MIME BR and RFC 5280 lints (zlint_test.go).
//
// # Development PKI
//
// Init lays out a directory as Layout describes: an RSA-3072 root, an
// RSA-2048 S/MIME issuing CA under it (root -> issuing CA -> sender), a
// STARTTLS certificate for localhost, 127.0.0.1 and ::1 signed by the
// root, trust-anchors.pem (the root only), and per domain an RSA-2048 and
// an Ed25519 DKIM key with the selectors rsa-YYYYMM and ed-YYYYMM (the
// month of creation, UTC) in dkim/DOMAIN/SELECTOR.key. It never overwrites
// a file: a second run adds only what is missing (a new domain's keys).
// dns.zone is derived data: it is regenerated from every key under dkim/
// whenever its content would change, with the DKIM records and suggested
// SPF (-all) and DMARC (p=reject) records of each domain.
//
// pki imports none of kakuin's other packages except govdomain, for
// label-wise domain matching.
package pki
