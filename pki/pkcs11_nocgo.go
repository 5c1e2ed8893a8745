//go:build !cgo

package pki

import (
	"crypto"
	"fmt"
)

// openPKCS11Key: PKCS#11 modules are C libraries, which a binary built
// without cgo (the static container image) cannot load.
func openPKCS11Key(u PKCS11URI, _ string) (crypto.Signer, error) {
	return nil, fmt.Errorf("%w: %s: this kakuin was built without cgo (CGO_ENABLED=0) and cannot load a PKCS#11 module; build it with cgo", ErrPKCS11, u)
}

// ClosePKCS11 has nothing to close without cgo.
func ClosePKCS11() {}
