package pki_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
)

func TestParsePKCS11URI(t *testing.T) {
	t.Parallel()
	const q = "?module-path=/usr/lib/m.so&pin-source=/etc/kakuin/hsm.pin"
	good := []struct {
		in   string
		want pki.PKCS11URI
	}{
		{"pkcs11:token=agency;object=dkim-rsa" + q, pki.PKCS11URI{Token: "agency", Object: "dkim-rsa", Module: "/usr/lib/m.so", PINFile: "/etc/kakuin/hsm.pin"}},
		{"pkcs11:token=My%20Token;id=%01%ff;type=private?module-path=/m.so&pin-source=file:/p", pki.PKCS11URI{Token: "My Token", ID: []byte{1, 0xff}, Module: "/m.so", PINFile: "/p"}},
		{" pkcs11:serial=42;token=t;object=k" + q + "\n", pki.PKCS11URI{Token: "t", Serial: "42", Object: "k", Module: "/usr/lib/m.so", PINFile: "/etc/kakuin/hsm.pin"}},
	}
	for _, c := range good {
		got, err := pki.ParsePKCS11URI(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if got.Token != c.want.Token || got.Serial != c.want.Serial || got.Object != c.want.Object || !bytes.Equal(got.ID, c.want.ID) || got.Module != c.want.Module || got.PINFile != c.want.PINFile {
			t.Errorf("%q: %+v, want %+v", c.in, got, c.want)
		}
	}
	bad := map[string]string{
		"file:/k.pem":                                              "not a pkcs11: URI",
		"pkcs11:object=k" + q:                                      "no token",
		"pkcs11:token=t" + q:                                       "neither object= nor id=",
		"pkcs11:token=t;object=k;type=cert" + q:                    "type=private",
		"pkcs11:token=t;object=k;slot-id=3" + q:                    "unsupported path attribute",
		"pkcs11:token=t;token=u;object=k" + q:                      "given twice",
		"pkcs11:token=t;object" + q:                                "has no value",
		"pkcs11:token=t;object=%zz" + q:                            "object",
		"pkcs11:token=t;object=k?pin-source=/p":                    "module-path",
		"pkcs11:token=t;object=k?module-path=m.so&pin-source=/p":   "module-path",
		"pkcs11:token=t;object=k?module-path=/m.so":                "pin-source",
		"pkcs11:token=t;object=k?module-path=/m.so&pin-value=1234": "pin-value",
		"pkcs11:token=t;object=k" + q + "&x-vendor=1":              "unsupported query attribute",
	}
	for in, want := range bad {
		_, err := pki.ParsePKCS11URI(in)
		if !errors.Is(err, pki.ErrPKCS11) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want ErrPKCS11 saying %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "1234") {
			t.Errorf("%q: the error shows the PIN: %v", in, err)
		}
	}
}

// TestPKCS11Keys: keys imported into a real SoftHSM2 token are used
// through key files that hold their pkcs11: URI: a DKIM keyring, a
// certificate store identity and LoadSigner each sign with the HSM's key,
// and the mistakes an operator can make fail with ErrPKCS11 (or the key
// file mode error), naming neither key nor PIN.
func TestPKCS11Keys(t *testing.T) {
	dir := t.TempDir()
	hsm := pkitest.NewSoftHSM(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaURI := hsm.Import(t, "dkim-rsa", rsaKey)
	ecURI := hsm.Import(t, "smime-ec", ecKey)
	writeRef := func(path, uri string, mode os.FileMode) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(uri+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, mode)
		return path
	}
	signs := func(s crypto.Signer, pub crypto.PublicKey) {
		t.Helper()
		h := sha256.Sum256([]byte("kakuin"))
		sig, err := s.Sign(rand.Reader, h[:], crypto.SHA256)
		if err != nil {
			t.Fatalf("sign through the HSM: %v", err)
		}
		switch pub := pub.(type) {
		case *rsa.PublicKey:
			err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig)
		case *ecdsa.PublicKey:
			if !ecdsa.VerifyASN1(pub, h[:], sig) {
				err = errors.New("bad ecdsa signature")
			}
		}
		if err != nil {
			t.Fatalf("the HSM's signature does not verify with the imported key: %v", err)
		}
	}

	// A wrong PIN, tried first: PKCS#11 logs an application in per token,
	// so once a key of the token is loaded with the right PIN the token
	// stays logged in for the process.
	wrong := filepath.Join(dir, "wrong.pin")
	if err := os.WriteFile(wrong, []byte("00000000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = pki.LoadSigner(writeRef(filepath.Join(dir, "bad.key"), strings.Replace(rsaURI, hsm.PINFile, wrong, 1), 0o600))
	if !errors.Is(err, pki.ErrPKCS11) {
		t.Errorf("wrong PIN: %v", err)
	}

	// LoadSigner.
	s, err := pki.LoadSigner(writeRef(filepath.Join(dir, "rsa.key"), rsaURI, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	if !rsaKey.PublicKey.Equal(s.Public()) {
		t.Fatal("LoadSigner found another key")
	}
	if _, isSoft := pki.SoftRSAKey(s); isSoft {
		t.Fatal("the key came out of the HSM")
	}
	signs(s, &rsaKey.PublicKey)

	// A DKIM keyring with its RSA key in the HSM.
	dkimDir := filepath.Join(dir, "dkim")
	writeRef(filepath.Join(dkimDir, "example.go.jp", "hsm-202612.key"), rsaURI, 0o600)
	ring, err := pki.LoadDKIMKeyring(dkimDir)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ring.DKIMKeys("example.go.jp")
	if err != nil || len(keys) != 1 || keys[0].Selector != "hsm-202612" {
		t.Fatalf("dkim keys: %v %v", keys, err)
	}
	signs(keys[0].Signer, &rsaKey.PublicKey)

	// A store identity: the certificate in one file, the key's URI in
	// another.
	ca := pkitest.New(t)
	id := ca.Identity(t, "hanako@example.go.jp", pkitest.WithKey(ecKey))
	certs := filepath.Join(dir, "certs")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, "hanako.pem"), pkitest.CertPEM(append([]*x509.Certificate{id.Certificate}, id.Chain...)...), 0o644); err != nil {
		t.Fatal(err)
	}
	writeRef(filepath.Join(certs, "hanako.key"), ecURI, 0o600)
	store := ca.Store(t, certs, pki.StoreOptions{})
	got, err := store.Identity(context.Background(), "hanako@example.go.jp")
	if err != nil {
		t.Fatalf("identity: %v (problems %v)", err, store.Problems())
	}
	signs(got.Signer, &ecKey.PublicKey)

	// Mistakes.
	for name, c := range map[string]struct {
		uri  string
		mode os.FileMode
		want error
	}{
		"key file readable by others": {rsaURI, 0o644, pki.ErrKeyPermissions},
		"no such key":                 {strings.Replace(rsaURI, "object=dkim-rsa", "object=nope", 1), 0o600, pki.ErrPKCS11},
		"no such token":               {strings.Replace(rsaURI, "token="+hsm.Token, "token=other", 1), 0o600, pki.ErrPKCS11},
		"no such module":              {strings.Replace(rsaURI, pkitest.SoftHSMModule, "/nonexistent/libpkcs11.so", 1), 0o600, pki.ErrPKCS11},
		"PIN file missing":            {strings.Replace(rsaURI, hsm.PINFile, "/nonexistent/hsm.pin", 1), 0o600, pki.ErrPKCS11},
	} {
		_, err := pki.LoadSigner(writeRef(filepath.Join(dir, "bad.key"), c.uri, c.mode))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
		pin, _ := os.ReadFile(hsm.PINFile)
		if err != nil && strings.Contains(err.Error(), strings.TrimSpace(string(pin))) {
			t.Errorf("%s: the error shows the PIN: %v", name, err)
		}
	}
	// A PIN file that others may read is refused like a key file.
	os.Chmod(hsm.PINFile, 0o644)
	_, err = pki.LoadSigner(filepath.Join(dir, "rsa.key"))
	os.Chmod(hsm.PINFile, 0o600)
	if !errors.Is(err, pki.ErrKeyPermissions) || !errors.Is(err, pki.ErrPKCS11) {
		t.Errorf("PIN file mode 0644: %v", err)
	}
	// Probes (what the gateway's /readyz asks) pass while the token is
	// there.
	ctx := context.Background()
	prober, ok := s.(pki.KeyProber)
	if !ok {
		t.Fatalf("a key in the HSM (%T) cannot be probed", s)
	}
	for name, p := range map[string]pki.KeyProber{"key": prober, "keyring": ring, "store": store} {
		if err := p.ProbeKeys(ctx); err != nil {
			t.Errorf("%s probe with the token present: %v", name, err)
		}
	}
	// The HSM goes away: the keys already loaded fail to sign, and the
	// probes say which key, without the PIN.
	hsm.DeleteToken(t)
	h := sha256.Sum256([]byte("kakuin"))
	if _, err := s.Sign(rand.Reader, h[:], crypto.SHA256); err == nil {
		t.Fatal("signed with a key whose token was deleted")
	}
	pin, _ := os.ReadFile(hsm.PINFile)
	for name, c := range map[string]struct {
		p    pki.KeyProber
		want string
	}{
		"key":     {prober, "object=dkim-rsa"},
		"keyring": {ring, "object=dkim-rsa"},
		"store":   {store, "object=smime-ec"},
	} {
		err := c.p.ProbeKeys(ctx)
		if !errors.Is(err, pki.ErrPKCS11) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s probe with the token deleted: %v, want ErrPKCS11 naming %s", name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), strings.TrimSpace(string(pin))) {
			t.Errorf("%s probe: the error shows the PIN: %v", name, err)
		}
	}
}

// FuzzParsePKCS11URI: any input is refused or parsed without panic, and
// what parses comes back the same through String (token, serial, object,
// id), with the query added again.
func FuzzParsePKCS11URI(f *testing.F) {
	const q = "?module-path=/m.so&pin-source=/p"
	f.Add("pkcs11:token=agency;object=dkim-rsa" + q)
	f.Add("pkcs11:token=My%20Token;id=%01%ff;type=private;serial=7" + q)
	f.Add("pkcs11:token=a%3Bb;object=c%3Fd%26e" + q + "&pin-value=1")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := pki.ParsePKCS11URI(s)
		if err != nil {
			if !errors.Is(err, pki.ErrPKCS11) {
				t.Fatalf("%q: error not ErrPKCS11: %v", s, err)
			}
			return
		}
		again, err := pki.ParsePKCS11URI(u.String() + "?module-path=" + u.Module + "&pin-source=" + u.PINFile)
		if err != nil {
			// The module and PIN paths are not escaped by String; only
			// a path holding '&' or '%' may fail to come back.
			if !strings.ContainsAny(u.Module+u.PINFile, "&%") {
				t.Fatalf("%q: String %q does not parse: %v", s, u.String(), err)
			}
			return
		}
		if again.Token != u.Token || again.Serial != u.Serial || again.Object != u.Object || !bytes.Equal(again.ID, u.ID) {
			t.Fatalf("%q: round trip %+v -> %q -> %+v", s, u, u.String(), again)
		}
	})
}
