//go:build !cgo || kakuin_static

package pki

import (
	"crypto"
	"fmt"
)

// openPKCS11Key: PKCS#11 modules are C libraries loaded with dlopen, which
// a static binary cannot do: one built without cgo, or the container
// image's (cgo for libcrypto, linked statically, -tags kakuin_static).
func openPKCS11Key(u PKCS11URI, _ string) (crypto.Signer, error) {
	return nil, fmt.Errorf("%w: %s: this kakuin is a static binary (built with CGO_ENABLED=0 or -tags kakuin_static, as the container image is) and cannot load a PKCS#11 module; use a dynamically linked build (make build)", ErrPKCS11, u)
}

// ClosePKCS11 has nothing to close without cgo.
func ClosePKCS11() {}
