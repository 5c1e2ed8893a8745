package pki_test

import (
	"context"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"crypto/x509"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
)

// TestStoreSources: a PEM pair split over two oddly named files, a
// combined PEM file and a PKCS#12 bundle without extension are all found
// by the addresses inside the certificates.
func TestStoreSources(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	dir := t.TempDir()

	pemID := ca.Identity(t, "Taro.Yamada@example.go.jp", pkitest.ExtraEmails("info@sub.example.go.jp"))
	c, k := pkitest.IdentityPEM(t, pemID)
	if err := os.MkdirAll(filepath.Join(dir, "misc"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeMode(t, filepath.Join(dir, "misc", "hanako.pem"), c, 0o644) // the name says hanako: irrelevant
	writeMode(t, filepath.Join(dir, "0001"), k, 0o600)

	combo := ca.Identity(t, "combo@example.go.jp", pkitest.WithKeyType(pkitest.ECDSAP256))
	c2, k2 := pkitest.IdentityPEM(t, combo)
	writeMode(t, filepath.Join(dir, "both"), append(k2, c2...), 0o600)

	p12ID := ca.Identity(t, "p12@example.go.jp")
	pfx, err := pkcs12.Modern.Encode(p12ID.Signer, p12ID.Certificate, p12ID.Chain, "pw")
	if err != nil {
		t.Fatal(err)
	}
	writeMode(t, filepath.Join(dir, "bundle-without-extension"), pfx, 0o600)
	writeMode(t, filepath.Join(dir, "README"), []byte("certificates live here\n"), 0o644)

	intl := ca.Identity(t, "info@example.go.jp", pkitest.NoEmailSAN(), pkitest.SmtpUTF8Mailbox("山田@Example.go.jp"), pkitest.WithKeyType(pkitest.ECDSAP256))
	pkitest.WriteIdentity(t, dir, "intl", intl)

	st := ca.Store(t, dir, pki.StoreOptions{PKCS12Password: "pw"})
	test := func(addr string, want *pki.Identity, wantErr error) {
		t.Helper()
		id, err := st.Identity(t.Context(), addr)
		if !errors.Is(err, wantErr) {
			t.Fatalf("%s: err %v, want %v", addr, err, wantErr)
		}
		if want == nil {
			return
		}
		if !id.Certificate.Equal(want.Certificate) {
			t.Fatalf("%s: wrong certificate %v", addr, id.Certificate.EmailAddresses)
		}
		if !id.Signer.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(want.Certificate.PublicKey) {
			t.Fatalf("%s: signer does not match", addr)
		}
		if len(id.Chain) != 1 || !id.Chain[0].Equal(ca.Intermediate) {
			t.Fatalf("%s: chain %d certificates, want the intermediate only (RULES S5)", addr, len(id.Chain))
		}
	}
	test("Taro.Yamada@example.go.jp", pemID, nil)
	test("Taro.Yamada@EXAMPLE.Go.Jp", pemID, nil)                // domain case folded
	test("info@sub.example.go.jp", pemID, nil)                   // second SAN
	test("taro.yamada@example.go.jp", nil, pki.ErrNoCertificate) // local part exact
	test("hanako@example.go.jp", nil, pki.ErrNoCertificate)      // file names do not count
	test("combo@example.go.jp", combo, nil)
	test("p12@example.go.jp", p12ID, nil)
	test("nobody@example.go.jp", nil, pki.ErrNoCertificate)
	test("山田@example.go.jp", intl, nil) // RFC 9598 SmtpUTF8Mailbox
	test("info@example.go.jp", nil, pki.ErrNoCertificate)
	test("not an address", nil, pki.ErrNoCertificate)
	if got := strings.Join(st.Addresses(), " "); got != "Taro.Yamada@example.go.jp combo@example.go.jp info@sub.example.go.jp p12@example.go.jp 山田@example.go.jp" {
		t.Fatalf("addresses %q", got)
	}
}

// TestStoreValidity: expired and not-yet-valid certificates are never
// chosen; among valid ones the latest NotAfter wins; time is Now's.
func TestStoreValidity(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	dir := t.TempDir()
	// Later than the CA's NotBefore (a day before ca.Now), so that all
	// these windows are within the chain's validity.
	t0 := ca.Now.Add(100 * time.Hour)
	addr := "kacho@example.go.jp"
	early := ca.Identity(t, addr, pkitest.Validity(t0.Add(-48*time.Hour), t0.Add(24*time.Hour)))
	late := ca.Identity(t, addr, pkitest.Validity(t0.Add(-time.Hour), t0.Add(72*time.Hour)))
	future := ca.Identity(t, addr, pkitest.Validity(t0.Add(2*time.Hour), t0.Add(240*time.Hour)))
	expired := ca.Identity(t, addr, pkitest.Validity(t0.Add(-96*time.Hour), t0.Add(-time.Hour)))
	for i, id := range []*pki.Identity{early, late, future, expired} {
		pkitest.WriteIdentity(t, dir, string(rune('a'+i)), id)
	}
	clk := newClock(ca.Now)
	st := ca.Store(t, dir, pki.StoreOptions{Now: clk.Now})
	test := func(at time.Time, want *pki.Identity) {
		t.Helper()
		clk.Set(at)
		id, err := st.Identity(t.Context(), addr)
		if want == nil {
			if !errors.Is(err, pki.ErrNoCertificate) {
				t.Fatalf("at %v: %v, want ErrNoCertificate", at, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("at %v: %v", at, err)
		}
		if !id.Certificate.Equal(want.Certificate) {
			t.Fatalf("at %v: got cert valid %v..%v", at, id.Certificate.NotBefore, id.Certificate.NotAfter)
		}
	}
	test(t0, late)                       // early, late valid: late expires last; future not yet valid
	test(t0.Add(-90*time.Hour), expired) // only expired was valid then
	test(t0.Add(-30*time.Hour), early)   // late not yet valid
	test(t0.Add(3*time.Hour), future)    // future now valid and expires last
	test(t0.Add(100*time.Hour), future)  // the others expired
	test(t0.Add(241*time.Hour), nil)     // all expired
	test(t0.Add(-200*time.Hour), nil)    // none yet valid
}

// TestStoreRejects: certificates that do not chain to the anchors, have
// the wrong EKU or no signing key usage, or lack their key are not used,
// and Problems says why.
func TestStoreRejects(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	other := pkitest.New(t)
	dir := t.TempDir()
	pkitest.WriteIdentity(t, dir, "self", pkitest.SelfSigned(t, "self@example.go.jp"))
	pkitest.WriteIdentity(t, dir, "other", other.Identity(t, "other@example.go.jp"))
	pkitest.WriteIdentity(t, dir, "tls", ca.Identity(t, "tls@example.go.jp", pkitest.EKU(x509.ExtKeyUsageServerAuth)))
	pkitest.WriteIdentity(t, dir, "ku", ca.Identity(t, "ku@example.go.jp", pkitest.KeyUsage(x509.KeyUsageKeyEncipherment)))
	nokey := ca.Identity(t, "nokey@example.go.jp", pkitest.FreshKey()) // no cached key another file holds
	writeMode(t, filepath.Join(dir, "nokey.pem"), pkitest.CertPEM(nokey.Certificate), 0o644)

	st := ca.Store(t, dir, pki.StoreOptions{})
	for _, a := range []string{"self", "other", "tls", "ku", "nokey"} {
		if _, err := st.Identity(t.Context(), a+"@example.go.jp"); !errors.Is(err, pki.ErrNoCertificate) {
			t.Errorf("%s: %v, want ErrNoCertificate", a, err)
		}
	}
	if n := len(st.Problems()); n != 5 {
		t.Errorf("%d problems, want 5:\n%s", n, strings.Join(st.Problems(), "\n"))
	}

	// A leaf whose issuer is in no file: unusable until the intermediate
	// is configured.
	dir2 := t.TempDir()
	extra := ca.Identity(t, "extra@example.go.jp")
	writeMode(t, filepath.Join(dir2, "extra.pem"), pkitest.CertPEM(extra.Certificate), 0o644)
	writeMode(t, filepath.Join(dir2, "extra.key"), pkitest.KeyPEM(t, extra.Signer), 0o600)
	if _, err := ca.Store(t, dir2, pki.StoreOptions{}).Identity(t.Context(), "extra@example.go.jp"); !errors.Is(err, pki.ErrNoCertificate) {
		t.Fatalf("without the intermediate: %v", err)
	}
	st2 := ca.Store(t, dir2, pki.StoreOptions{Intermediates: []*x509.Certificate{ca.Intermediate}})
	id, err := st2.Identity(t.Context(), "extra@example.go.jp")
	if err != nil {
		t.Fatalf("with the extra intermediate: %v", err)
	}
	if len(id.Chain) != 1 || !id.Chain[0].Equal(ca.Intermediate) {
		t.Fatal("chain lacks the configured intermediate")
	}
}

// TestStoreReload: Reload picks up new files; a failed reload (a key file
// readable by others) keeps the old index.
func TestStoreReload(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	dir := t.TempDir()
	pkitest.WriteIdentity(t, dir, "a", ca.Identity(t, "a@example.go.jp"))
	st := ca.Store(t, dir, pki.StoreOptions{})
	pkitest.WriteIdentity(t, dir, "b", ca.Identity(t, "b@example.go.jp"))
	if _, err := st.Identity(t.Context(), "b@example.go.jp"); !errors.Is(err, pki.ErrNoCertificate) {
		t.Fatalf("before reload: %v", err)
	}
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Identity(t.Context(), "b@example.go.jp"); err != nil {
		t.Fatalf("after reload: %v", err)
	}
	_, keyC := pkitest.WriteIdentity(t, dir, "c", ca.Identity(t, "c@example.go.jp"))
	if err := os.Chmod(keyC, 0o644); err != nil {
		t.Fatal(err)
	}
	err := st.Reload()
	if !errors.Is(err, pki.ErrKeyPermissions) || !strings.Contains(err.Error(), keyC) {
		t.Fatalf("reload with a 0644 key: %v", err)
	}
	for _, a := range []string{"a", "b"} {
		if _, err := st.Identity(t.Context(), a+"@example.go.jp"); err != nil {
			t.Fatalf("old index lost after failed reload: %s: %v", a, err)
		}
	}
	if _, err := pki.NewStore(pki.StoreOptions{Dir: dir, Roots: ca.Roots()}); !errors.Is(err, pki.ErrKeyPermissions) {
		t.Fatalf("NewStore with a 0644 key: %v", err)
	}
	// A PKCS#12 bundle is key material too.
	if err := os.Remove(keyC); err != nil {
		t.Fatal(err)
	}
	id := ca.Identity(t, "d@example.go.jp")
	pfx, _ := pkcs12.Modern.Encode(id.Signer, id.Certificate, id.Chain, "")
	writeMode(t, filepath.Join(dir, "d.p12"), pfx, 0o640)
	if err := st.Reload(); !errors.Is(err, pki.ErrKeyPermissions) {
		t.Fatalf("reload with a 0640 bundle: %v", err)
	}
}

// TestStoreConcurrent hammers Identity and Reload together (run with -race).
func TestStoreConcurrent(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	dir := t.TempDir()
	pkitest.WriteIdentity(t, dir, "a", ca.Identity(t, "a@example.go.jp", pkitest.WithKeyType(pkitest.ECDSAP256)))
	st := ca.Store(t, dir, pki.StoreOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				if _, err := st.Identity(ctx, "a@example.go.jp"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for j := 0; j < 5; j++ {
		if err := st.Reload(); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
}

// TestStoreSymlinks: a Kubernetes secret volume, whose visible files are
// symbolic links into a hidden ..data directory, is scanned; the key's
// mode is judged on the file the link points to.
func TestStoreSymlinks(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "..2026_11_26")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	_, key := pkitest.WriteIdentity(t, data, "sender", ca.Identity(t, "k8s@example.go.jp", pkitest.WithKeyType(pkitest.ECDSAP256)))
	if err := os.Symlink(filepath.Base(data), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"sender.pem", "sender.key"} {
		if err := os.Symlink(filepath.Join("..data", n), filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	st := ca.Store(t, dir, pki.StoreOptions{})
	if _, err := st.Identity(t.Context(), "k8s@example.go.jp"); err != nil {
		t.Fatal(err)
	}
	// The store directory itself may be a link.
	link := filepath.Join(t.TempDir(), "certs")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Store(t, link, pki.StoreOptions{}).Identity(t.Context(), "k8s@example.go.jp"); err != nil {
		t.Fatalf("linked directory: %v", err)
	}
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := st.Reload(); !errors.Is(err, pki.ErrKeyPermissions) {
		t.Fatalf("linked 0644 key: %v", err)
	}
}
