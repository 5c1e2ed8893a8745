package pki_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
)

func writeMode(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestLoadSignerMode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyPEM := pkitest.KeyPEM(t, pkitest.New(t).IntermediateKey)
	test := func(mode os.FileMode, wantErr error) {
		t.Helper()
		path := filepath.Join(dir, "k.key")
		writeMode(t, path, keyPEM, mode)
		k, err := pki.LoadSigner(path)
		if !errors.Is(err, wantErr) {
			t.Fatalf("mode %#o: err %v, want %v", mode, err, wantErr)
		}
		if wantErr == nil && k == nil {
			t.Fatalf("mode %#o: no key", mode)
		}
		if wantErr != nil {
			// The message names the file and says how to fix it.
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "chmod 600") {
				t.Fatalf("unhelpful error: %v", err)
			}
			if k != nil {
				t.Fatal("key returned with error")
			}
		}
	}
	test(0o600, nil)
	test(0o400, nil)
	test(0o644, pki.ErrKeyPermissions)
	test(0o640, pki.ErrKeyPermissions)
	test(0o604, pki.ErrKeyPermissions)
	test(0o620, pki.ErrKeyPermissions)

	if _, err := pki.LoadSigner(filepath.Join(dir, "missing.key")); !errors.Is(err, pki.ErrKeyFile) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestLoadSignerFormats reads PKCS#8, PKCS#1 and SEC 1 PEM of each key type.
func TestLoadSignerFormats(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rsaKey := pkitest.New(t).Identity(t, "a@example.go.jp").Signer.(*rsa.PrivateKey)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	pkcs8 := func(k crypto.Signer) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		data []byte
		key  crypto.Signer
	}{
		"rsa-pkcs8":   {pkcs8(rsaKey), rsaKey},
		"rsa-pkcs1":   {pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), rsaKey},
		"ec-pkcs8":    {pkcs8(ecKey), ecKey},
		"ec-sec1":     {pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), ecKey},
		"ed25519":     {pkcs8(edKey), edKey},
		"cert-first":  {append(pkitest.CertPEM(pkitest.New(t).Root), pkcs8(ecKey)...), ecKey},
		"not-a-key":   {pkitest.CertPEM(pkitest.New(t).Root), nil},
		"garbage":     {[]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), nil},
		"encrypted":   {pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0}}), nil},
		"legacy-encr": {pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1}}), nil},
	}
	for name, c := range cases {
		path := filepath.Join(dir, name)
		writeMode(t, path, c.data, 0o600)
		k, err := pki.LoadSigner(path)
		if c.key == nil {
			if !errors.Is(err, pki.ErrKeyFile) {
				t.Errorf("%s: err %v, want ErrKeyFile", name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(c.key.Public()) {
			t.Errorf("%s: wrong key", name)
		}
		// A key in memory cannot become unavailable: readiness does not
		// sign with it (only keys in an HSM are probed).
		if _, ok := k.(pki.KeyProber); ok {
			t.Errorf("%s: a key from a file is a KeyProber", name)
		}
	}
}

func TestWriteKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "new.key")
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := pki.WriteKeyFile(path, k1); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	if err := pki.WriteKeyFile(path, k2); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrote an existing key: %v", err)
	}
	got, err := pki.LoadSigner(path)
	if err != nil || !k1.PublicKey.Equal(got.Public()) {
		t.Fatalf("key changed: %v", err)
	}
	if err := pki.ReplaceKeyFile(path, k2); err != nil {
		t.Fatal(err)
	}
	if got, _ := pki.LoadSigner(path); !k2.PublicKey.Equal(got.Public()) {
		t.Fatal("ReplaceKeyFile did not replace")
	}
	// No temporary files are left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries", len(ents))
	}
}

func TestLoadPKCS12(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	id := ca.Identity(t, "p12@example.go.jp", pkitest.WithKeyType(pkitest.ECDSAP256))
	pfx, err := pkcs12.Modern.Encode(id.Signer, id.Certificate, id.Chain, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "bundle.p12")
	writeMode(t, path, pfx, 0o644)
	if _, _, _, err := pki.LoadPKCS12(path, "s3cret"); !errors.Is(err, pki.ErrKeyPermissions) {
		t.Fatalf("0644 bundle: %v", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := pki.LoadPKCS12(path, "wrong"); !errors.Is(err, pki.ErrKeyFile) || !errors.Is(err, pkcs12.ErrIncorrectPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	k, c, cas, err := pki.LoadPKCS12(path, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Equal(id.Certificate) || len(cas) != 1 || !cas[0].Equal(ca.Intermediate) || !k.Public().(*ecdsa.PublicKey).Equal(c.PublicKey) {
		t.Fatal("bundle content differs")
	}
}

// TestPKCS12IterationBound: a bundle stating an absurd KDF iteration count
// is refused at once instead of stalling the scan; ordinary ones pass.
func TestPKCS12IterationBound(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	id := ca.Identity(t, "it@example.go.jp", pkitest.WithKeyType(pkitest.ECDSAP256))
	for _, enc := range []*pkcs12.Encoder{pkcs12.Modern2023, pkcs12.Modern2026, pkcs12.LegacyDES, pkcs12.Modern2023.WithIterations(20000)} {
		pfx, err := enc.Encode(id.Signer, id.Certificate, id.Chain, "pw")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := pki.ParsePKCS12(pfx, "pw"); err != nil {
			t.Fatalf("ordinary bundle refused: %v", err)
		}
	}
	// Encoding 2^23 iterations would itself take minutes: encode 32768
	// (INTEGER 02 03 00 80 00) and patch every count to 8388607.
	pfx, err := pkcs12.Modern2023.WithIterations(1<<15).Encode(id.Signer, id.Certificate, id.Chain, "pw")
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(pfx, []byte{2, 3, 0, 0x80, 0}); n < 3 {
		t.Fatalf("found %d iteration counts to patch", n)
	}
	pfx = bytes.ReplaceAll(pfx, []byte{2, 3, 0, 0x80, 0}, []byte{2, 3, 0x7f, 0xff, 0xff})
	start := time.Now()
	if _, _, _, err := pki.ParsePKCS12(pfx, "pw"); err == nil || !strings.Contains(err.Error(), "kdf iteration count above") {
		t.Fatalf("2^24 iterations: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("refusal took %v", d)
	}
}

func FuzzParseSigner(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	sec1, _ := x509.MarshalECPrivateKey(k)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nMA==\n-----END RSA PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := pki.ParseSigner(data)
		if err != nil {
			return
		}
		// parse -> format -> parse gives the same key.
		out, err := pki.MarshalKeyPEM(s)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := pki.ParseSigner(out)
		if err != nil {
			t.Fatal(err)
		}
		if !s2.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(s.Public()) {
			t.Fatal("round trip changed the key")
		}
	})
}

func FuzzParsePKCS12(f *testing.F) {
	// Keep each input cheap: the production bound allows KDFs of a second.
	f.Cleanup(pki.SetMaxKDFIterations(4096))
	ca := pkitest.New(f)
	id := ca.Identity(f, "fz@example.go.jp", pkitest.WithKeyType(pkitest.ECDSAP256))
	pfx, _ := pkcs12.Modern.WithIterations(1).Encode(id.Signer, id.Certificate, id.Chain, "")
	f.Add(pfx, "")
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x03}, "x")
	f.Fuzz(func(t *testing.T, data []byte, password string) {
		k, c, _, err := pki.ParsePKCS12(data, password)
		if err != nil {
			return
		}
		if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(c.PublicKey) {
			t.Fatal("key and certificate differ")
		}
	})
}
