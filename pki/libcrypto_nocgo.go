//go:build !cgo

package pki

import (
	"crypto"
	"crypto/rsa"
)

// Without cgo there is no libcrypto: crypto/rsa signs.
const libcryptoAvailable = false

func newLibcryptoRSA(*rsa.PrivateKey) crypto.Signer { return nil }
