package smimeverify_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"

	"github.com/kakuin/kakuin/pki/pkitest"
	"github.com/kakuin/kakuin/verify/internal/testsign"
	"github.com/kakuin/kakuin/verify/smimeverify"
)

// FuzzVerify feeds arbitrary messages to the MIME and CMS parsing path. A
// message that passes must have a chain and a signer for the address.
func FuzzVerify(f *testing.F) {
	ca := pkitest.New(f)
	id := ca.Identity(f, addr, pkitest.WithKeyType(pkitest.ECDSAP256)) // no RSA keygen per worker
	f.Add(testsign.Detached(f, id, outer, testsign.Entity("hello")))
	f.Add(testsign.Opaque(f, id, outer, testsign.Entity("hello")))
	f.Add(testsign.CRLF(outer + "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: multipart/signed; protocol=application/pkcs7-signature; boundary=c\n\n--c\n\nx\n--c--\n--b--\n"))
	// The openssl-made fixtures, RSASSA-PSS among them.
	for _, name := range []string{"openssl-detached.eml", "openssl-opaque.eml", "openssl-pss.eml"} {
		if b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "interop", "smime", name)); err == nil {
			f.Add(b)
		}
	}
	v := smimeverify.New(smimeverify.Options{Roots: ca.Roots(), Now: time.Now})
	f.Fuzz(func(t *testing.T, msg []byte) {
		r := v.Verify(msg, addr)
		if r.Status == authres.ResultPass && (len(r.Chain) < 2 || r.Signer == nil) {
			t.Fatalf("pass without a chain: %+v", r)
		}
	})
}
