package pki_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
)

func TestDKIMKeyringNearestParent(t *testing.T) {
	t.Parallel()
	parent := pkitest.DKIMKeys(t, "mhlw.go.jp")
	child := pkitest.DKIMKeys(t, "kenkou.mhlw.go.jp")
	other := pkitest.DKIMKeys(t, "example.go.jp")
	kr, err := pki.NewDKIMKeyring(append(append(append([]pki.DKIMKey(nil), parent...), child...), other...))
	if err != nil {
		t.Fatal(err)
	}
	test := func(domain, wantD string, wantErr error) {
		t.Helper()
		keys, err := kr.DKIMKeys(domain)
		if !errors.Is(err, wantErr) {
			t.Fatalf("%s: err %v, want %v", domain, err, wantErr)
		}
		if wantErr != nil {
			return
		}
		if len(keys) != 2 {
			t.Fatalf("%s: %d keys", domain, len(keys))
		}
		for _, k := range keys {
			if k.Domain != wantD {
				t.Fatalf("%s: d=%s, want %s", domain, k.Domain, wantD)
			}
		}
		// RULES D3: RSA first, then Ed25519.
		if _, ok := keys[0].Signer.(*rsa.PrivateKey); !ok {
			t.Fatalf("%s: first key %T", domain, keys[0].Signer)
		}
		if _, ok := keys[1].Signer.(ed25519.PrivateKey); !ok {
			t.Fatalf("%s: second key %T", domain, keys[1].Signer)
		}
	}
	test("mhlw.go.jp", "mhlw.go.jp", nil)
	test("MHLW.GO.JP.", "mhlw.go.jp", nil)
	test("a.b.mhlw.go.jp", "mhlw.go.jp", nil)
	test("kenkou.mhlw.go.jp", "kenkou.mhlw.go.jp", nil)
	test("x.kenkou.mhlw.go.jp", "kenkou.mhlw.go.jp", nil)
	test("evilmhlw.go.jp", "", pki.ErrNoDKIMKey)
	test("mhlw.go.jp.example.com", "", pki.ErrNoDKIMKey)
	test("go.jp", "", pki.ErrNoDKIMKey)
	test("soumu.go.jp", "", pki.ErrNoDKIMKey)
	test("", "", pki.ErrNoDKIMKey)

	var zero pki.DKIMKeyring
	if _, err := zero.DKIMKeys("mhlw.go.jp"); !errors.Is(err, pki.ErrNoDKIMKey) {
		t.Fatal(err)
	}
}

func TestDKIMKeyringRules(t *testing.T) {
	t.Parallel()
	keys := pkitest.DKIMKeys(t, "example.go.jp")
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	test := func(name string, ks []pki.DKIMKey, wantErr error) {
		t.Helper()
		_, err := pki.NewDKIMKeyring(ks)
		if !errors.Is(err, wantErr) {
			t.Fatalf("%s: err %v, want %v", name, err, wantErr)
		}
	}
	test("rsa+ed25519", keys, nil)
	test("rsa alone", keys[:1], nil)
	test("ed25519 alone (RULES D3)", keys[1:], pki.ErrDKIMConfig)
	test("rsa-1024 (RULES D2)", []pki.DKIMKey{{Domain: "example.go.jp", Selector: "old", Signer: small}, keys[1]}, pki.ErrKeyType)
	test("public suffix (RULES D6)", []pki.DKIMKey{{Domain: "go.jp", Selector: "s", Signer: keys[0].Signer}}, pki.ErrDKIMConfig)
	test("duplicate selector", []pki.DKIMKey{keys[0], {Domain: "EXAMPLE.go.jp", Selector: keys[0].Selector, Signer: keys[0].Signer}}, pki.ErrDKIMConfig)
	test("bad selector", []pki.DKIMKey{{Domain: "example.go.jp", Selector: "a b", Signer: keys[0].Signer}}, pki.ErrDKIMConfig)
	ec := pkitest.New(t).IntermediateKey
	test("ecdsa", []pki.DKIMKey{keys[0], {Domain: "example.go.jp", Selector: "ec", Signer: ec}}, pki.ErrKeyType)
}

func TestLoadDKIMKeyring(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keys := pkitest.DKIMKeys(t, "example.go.jp")
	d := filepath.Join(dir, "example.go.jp")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := pki.WriteKeyFile(filepath.Join(d, k.Selector+".key"), k.Signer); err != nil {
			t.Fatal(err)
		}
	}
	writeMode(t, filepath.Join(d, "README"), []byte("not a key"), 0o644)
	kr, err := pki.LoadDKIMKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := kr.DKIMKeys("mail.example.go.jp")
	if err != nil || len(got) != 2 || got[0].Selector != keys[0].Selector || got[1].Selector != keys[1].Selector {
		t.Fatalf("got %+v, %v", got, err)
	}
	// A readable key refuses the whole keyring.
	if err := os.Chmod(filepath.Join(d, keys[1].Selector+".key"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadDKIMKeyring(dir); !errors.Is(err, pki.ErrKeyPermissions) {
		t.Fatalf("0640 key: %v", err)
	}
	// Ed25519 alone is refused at load.
	if err := os.Chmod(filepath.Join(d, keys[1].Selector+".key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(d, keys[0].Selector+".key")); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadDKIMKeyring(dir); !errors.Is(err, pki.ErrDKIMConfig) {
		t.Fatalf("ed25519 alone: %v", err)
	}
}

func TestLoadDKIMKeyringSymlinks(t *testing.T) {
	t.Parallel()
	dir, store := t.TempDir(), t.TempDir()
	keys := pkitest.DKIMKeys(t, "example.go.jp")
	for _, k := range keys {
		if err := pki.WriteKeyFile(filepath.Join(store, k.Selector+".key"), k.Signer); err != nil {
			t.Fatal(err)
		}
	}
	// The domain directory and its files are links.
	if err := os.Symlink(store, filepath.Join(dir, "example.go.jp")); err != nil {
		t.Fatal(err)
	}
	kr, err := pki.LoadDKIMKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := kr.DKIMKeys("example.go.jp"); err != nil || len(got) != 2 {
		t.Fatalf("%d keys, %v", len(got), err)
	}
}
