package pki

import (
	"crypto"
	"crypto/rsa"
	"sync/atomic"
)

// RSA keys held in memory (PEM files, PKCS#12 bundles, keys the issuer
// generates) sign through OpenSSL's libcrypto when kakuin is built with
// cgo, as the Debian build is: libcrypto makes RSA-2048 signatures about
// 2.5 times as fast as Go's crypto/rsa on these machines, and two of them
// are most of the cost of a message (S/MIME and DKIM). The signatures are
// the same bytes: PKCS#1 v1.5 is deterministic (RFC 8017 8.2.1), which the
// tests check against crypto/rsa. Everything else an RSA key is asked for
// (RSA-PSS, which TLS 1.3 uses; a hash other than SHA-256, SHA-384 or
// SHA-512) and a binary built without cgo sign with crypto/rsa. The
// container image links libcrypto in statically (deploy/Dockerfile). Keys in an HSM sign in the HSM.
//
// There is no Go module for libcrypto among those this project can fetch
// (the maintained one, golang-fips/openssl, is not served here), so the few
// calls it needs are written out in libcrypto_cgo.go.

var useLibcrypto atomic.Bool

func init() { useLibcrypto.Store(libcryptoAvailable) }

// UseLibcrypto sets whether RSA keys loaded or generated from now on sign
// through libcrypto (the default when the binary has cgo) or with
// crypto/rsa. It returns whether libcrypto is used: false without cgo,
// whatever on says. Keys already loaded keep their way of signing.
func UseLibcrypto(on bool) bool {
	useLibcrypto.Store(on && libcryptoAvailable)
	return useLibcrypto.Load()
}

// rsaSigner is the crypto.Signer for an RSA private key in memory: the key
// itself, or its libcrypto copy when that is in use and can be made.
func rsaSigner(k *rsa.PrivateKey) crypto.Signer {
	if !useLibcrypto.Load() {
		return k
	}
	if s := newLibcryptoRSA(k); s != nil {
		return s
	}
	return k
}

// softKey returns the Go private key behind s: s itself, or the key a
// libcrypto signer was made from (to write it to a file, or compare it).
func softKey(s crypto.Signer) crypto.Signer {
	if l, ok := s.(interface{ goKey() *rsa.PrivateKey }); ok {
		return l.goKey()
	}
	return s
}
