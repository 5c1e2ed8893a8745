package pki_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kakuin/kakuin/pki"
)

// TestLibcryptoRSA: an RSA key loaded from a file signs through libcrypto
// when the binary has cgo, and its signatures are the bytes crypto/rsa
// makes (PKCS#1 v1.5 is deterministic, RFC 8017 8.2.1), for every hash
// kakuin uses, from many goroutines at once. What libcrypto is not asked
// to do (RSA-PSS, SHA-1) is done by crypto/rsa and verifies. Switched off,
// the key is crypto/rsa's.
func TestLibcryptoRSA(t *testing.T) {
	available := pki.UseLibcrypto(true)
	t.Cleanup(func() { pki.UseLibcrypto(true) })
	t.Logf("libcrypto available: %v", available)

	goKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rsa.key")
	if err := pki.WriteKeyFile(path, goKey); err != nil {
		t.Fatal(err)
	}
	s, err := pki.LoadSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := pki.IsLibcrypto(s); got != available {
		t.Fatalf("LoadSigner gave %T: libcrypto %v, want %v", s, got, available)
	}
	if !goKey.PublicKey.Equal(s.Public()) {
		t.Fatal("Public() is another key")
	}
	if k, ok := pki.SoftRSAKey(s); !ok || !k.Equal(goKey) {
		t.Fatal("the key behind the signer is another key")
	}

	msg := []byte("kakuin libcrypto test")
	d256, d384, d512, d1 := sha256.Sum256(msg), sha512.Sum384(msg), sha512.Sum512(msg), sha1.Sum(msg)
	for _, c := range []struct {
		hash   crypto.Hash
		digest []byte
	}{{crypto.SHA256, d256[:]}, {crypto.SHA384, d384[:]}, {crypto.SHA512, d512[:]}, {crypto.SHA1, d1[:]}} {
		want, err := rsa.SignPKCS1v15(nil, goKey, c.hash, c.digest)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Sign(rand.Reader, c.digest, c.hash)
		if err != nil {
			t.Fatalf("%v: %v", c.hash, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%v: the signature differs from crypto/rsa's", c.hash)
		}
		if _, err := s.Sign(rand.Reader, c.digest[1:], c.hash); err == nil {
			t.Fatalf("%v: a digest of the wrong length was signed", c.hash)
		}
	}

	// RSA-PSS (TLS 1.3) is randomised: it must verify.
	pss := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	sig, err := s.Sign(rand.Reader, d256[:], pss)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPSS(&goKey.PublicKey, crypto.SHA256, d256[:], sig, pss); err != nil {
		t.Fatalf("PSS: %v", err)
	}

	// Concurrent signing: one libcrypto key shared by every goroutine.
	want, _ := rsa.SignPKCS1v15(nil, goKey, crypto.SHA256, d256[:])
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Go(func() {
			for range 25 {
				got, err := s.Sign(rand.Reader, d256[:], crypto.SHA256)
				if err != nil || !bytes.Equal(got, want) {
					errs <- "a concurrent signature differs"
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}

	// Written back, it is the same key, mode 0600.
	out := filepath.Join(t.TempDir(), "again.key")
	if err := pki.WriteKeyFile(out, s); err != nil {
		t.Fatal(err)
	}
	again, err := pki.LoadSigner(out)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := pki.SoftRSAKey(again); !ok || !k.Equal(goKey) {
		t.Fatal("the written key is another key")
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("written key: %v %v", st.Mode(), err)
	}

	// Switched off: crypto/rsa's own key.
	if pki.UseLibcrypto(false) {
		t.Fatal("UseLibcrypto(false) says libcrypto is on")
	}
	off, err := pki.LoadSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := off.(*rsa.PrivateKey); !ok {
		t.Fatalf("with libcrypto off, LoadSigner gave %T", off)
	}
}
