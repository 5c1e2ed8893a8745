package pki

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
)

// ErrKeyType: a key of a type or size that the use does not allow (DKIM
// RSA under 2048 bits, an algorithm other than RSA, ECDSA or Ed25519).
var ErrKeyType = errors.New("pki: unsupported key")

// DKIMAlgorithm returns the DKIM k= tag of a public key: "rsa" or "ed25519"
// (RFC 6376 3.6.1, RFC 8463 4.2). Other keys wrap ErrKeyType.
func DKIMAlgorithm(pub crypto.PublicKey) (string, error) {
	switch pub.(type) {
	case *rsa.PublicKey:
		return "rsa", nil
	case ed25519.PublicKey:
		return "ed25519", nil
	}
	return "", fmt.Errorf("%w: %T is not a dkim key type", ErrKeyType, pub)
}

// DKIMRecord returns the value of the DKIM key record to publish as TXT at
// SELECTOR._domainkey.DOMAIN, as one string (split it into 255-octet
// character-strings for a zone file, see DKIMZoneRecord):
//
//	v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>     (RFC 6376 3.6.1)
//	v=DKIM1; k=ed25519; p=<base64 raw 32-byte key>      (RFC 8463 4.2)
func DKIMRecord(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrKeyType, err)
		}
		// RFC 6376 3.6.1: p= is the base64 of the DER public key; the
		// SubjectPublicKeyInfo form is what verifiers (dkimpy, OpenDKIM,
		// go-msgauth) accept.
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		// RFC 8463 4.2: the raw 32-byte public key, base64, no ASN.1.
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k), nil
	}
	return "", fmt.Errorf("%w: %T is not a dkim key type", ErrKeyType, pub)
}

// DKIMRecordName returns the owner name of a DKIM key record without the
// trailing dot: SELECTOR._domainkey.DOMAIN (RFC 6376 3.6.2.1).
func DKIMRecordName(domain, selector string) string {
	return selector + "._domainkey." + domain
}
