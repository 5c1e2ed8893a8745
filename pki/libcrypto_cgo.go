//go:build cgo

package pki

/*
#cgo LDFLAGS: -lcrypto
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

// kakuin_load parses a PKCS#8 private key (DER) into an EVP_PKEY, or NULL.
static EVP_PKEY *kakuin_load(const unsigned char *der, long n) {
	const unsigned char *p = der;
	return d2i_AutoPrivateKey(NULL, &p, n);
}

// kakuin_sign makes an RSASSA-PKCS1-v1_5 signature (RFC 8017 8.2.1) of a
// digest made with md: the DigestInfo encoding is libcrypto's. It returns
// 1 on success. One EVP_PKEY_CTX per call: the EVP_PKEY is shared between
// threads, which OpenSSL 3 allows for an object that is not modified.
// Like crypto/rsa, libcrypto checks a CRT result with the public exponent
// before it lets it out (a faulty computation would leak the key).
static int kakuin_sign(EVP_PKEY *k, int md, const unsigned char *dg, size_t dn, unsigned char *sig, size_t *sn) {
	const EVP_MD *m = md == 256 ? EVP_sha256() : md == 384 ? EVP_sha384() : md == 512 ? EVP_sha512() : NULL;
	if (m == NULL) return 0;
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k, NULL);
	if (c == NULL) {
		ERR_clear_error();
		return 0;
	}
	int ok = EVP_PKEY_sign_init(c) > 0 &&
		EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) > 0 &&
		EVP_PKEY_CTX_set_signature_md(c, m) > 0 &&
		EVP_PKEY_sign(c, sig, sn, dg, dn) > 0;
	EVP_PKEY_CTX_free(c);
	if (!ok) ERR_clear_error(); // the queue is per thread, and Go moves between threads
	return ok;
}
*/
import "C"

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"io"
	"runtime"
	"unsafe"
)

const libcryptoAvailable = true

// libcryptoRSA signs with a copy of an RSA key in libcrypto. The copy is
// freed (OpenSSL clears the private numbers as it frees them) once the
// signer is unreachable.
type libcryptoRSA struct {
	key  *rsa.PrivateKey
	pkey *C.EVP_PKEY
}

// newLibcryptoRSA copies k into libcrypto, or returns nil if libcrypto
// does not take it (crypto/rsa signs then).
func newLibcryptoRSA(k *rsa.PrivateKey) crypto.Signer {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil || len(der) == 0 {
		return nil
	}
	pkey := C.kakuin_load((*C.uchar)(unsafe.Pointer(&der[0])), C.long(len(der)))
	clear(der) // the key's bytes are not left in the Go heap
	if pkey == nil {
		C.ERR_clear_error()
		return nil
	}
	s := &libcryptoRSA{key: k, pkey: pkey}
	runtime.AddCleanup(s, func(p *C.EVP_PKEY) { C.EVP_PKEY_free(p) }, pkey)
	return s
}

func (s *libcryptoRSA) Public() crypto.PublicKey { return &s.key.PublicKey }

func (s *libcryptoRSA) goKey() *rsa.PrivateKey { return s.key }

// Sign implements crypto.Signer. PKCS#1 v1.5 with SHA-256, SHA-384 or
// SHA-512 is made by libcrypto; anything else, and a libcrypto failure,
// by crypto/rsa, which gives the same bytes (rand is not used for PKCS#1
// v1.5 by either).
func (s *libcryptoRSA) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, pss := opts.(*rsa.PSSOptions); pss || opts == nil {
		return s.key.Sign(rand, digest, opts)
	}
	h := opts.HashFunc()
	var md C.int
	switch h {
	case crypto.SHA256:
		md = 256
	case crypto.SHA384:
		md = 384
	case crypto.SHA512:
		md = 512
	default:
		return s.key.Sign(rand, digest, opts)
	}
	if len(digest) != h.Size() {
		return nil, errors.New("pki: rsa: input must be hashed with the given hash")
	}
	sig := make([]byte, s.key.Size())
	n := C.size_t(len(sig))
	ok := C.kakuin_sign(s.pkey, md, (*C.uchar)(unsafe.Pointer(&digest[0])), C.size_t(len(digest)), (*C.uchar)(unsafe.Pointer(&sig[0])), &n)
	runtime.KeepAlive(s) // the cleanup must not free pkey during the call
	if ok != 1 || int(n) != len(sig) {
		return s.key.Sign(rand, digest, opts)
	}
	return sig, nil
}
