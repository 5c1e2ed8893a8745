package pki

import (
	"crypto"
	"crypto/rsa"
)

// SetMaxKDFIterations lowers the PKCS#12 iteration bound for the fuzz
// target (which would otherwise spend seconds per input in the KDF) and
// returns a function restoring it. Not for parallel tests.
func SetMaxKDFIterations(n int64) (restore func()) {
	old := maxKDFIterations
	maxKDFIterations = n
	return func() { maxKDFIterations = old }
}

// SoftRSAKey returns the crypto/rsa key behind a signer of a key held in
// memory: the key itself, or the key a libcrypto signer was copied from.
func SoftRSAKey(s crypto.Signer) (*rsa.PrivateKey, bool) {
	k, ok := softKey(s).(*rsa.PrivateKey)
	return k, ok
}

// IsLibcrypto says whether s signs through libcrypto.
func IsLibcrypto(s crypto.Signer) bool {
	_, ok := s.(interface{ goKey() *rsa.PrivateKey })
	return ok
}
