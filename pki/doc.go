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
// pki imports none of kakuin's other packages.
package pki
