package pki_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
)

func countFiles(t *testing.T, dir, suffix string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), suffix) {
			n++
		}
	}
	return n
}

func TestIssuerProfile(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	dir := t.TempDir()
	clk := newClock(ca.Now)
	iss := ca.Issuer(t, pki.IssuerOptions{Dir: dir, Now: clk.Now, OCSPURL: "http://ocsp.example.go.jp/"})
	id, err := iss.Issue(t.Context(), "Sato@Example.GO.jp")
	if err != nil {
		t.Fatal(err)
	}
	c := id.Certificate
	if got := c.EmailAddresses; len(got) != 1 || got[0] != "Sato@example.go.jp" {
		t.Fatalf("SAN %q: local part kept, domain lower-cased", got)
	}
	if c.Subject.CommonName != "Sato@example.go.jp" || len(c.Subject.Names) != 1 {
		t.Fatalf("subject %v: mailbox-validated allows the address only", c.Subject)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}) || len(c.UnknownExtKeyUsage) != 0 {
		t.Fatalf("EKU %v: strict generation is emailProtection only", c.ExtKeyUsage)
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Fatalf("key usage %v", c.KeyUsage)
	}
	if len(c.Policies) != 1 || !c.Policies[0].Equal(pki.OIDMailboxValidatedStrict) {
		t.Fatalf("policies %v", c.Policies)
	}
	if !slices.Equal(c.CRLDistributionPoints, []string{pki.DefaultIssuingCRLURL}) ||
		!slices.Equal(c.IssuingCertificateURL, []string{pki.DefaultIssuingCAIssuersURL}) ||
		!slices.Equal(c.OCSPServer, []string{"http://ocsp.example.go.jp/"}) {
		t.Fatalf("urls %v %v %v", c.CRLDistributionPoints, c.IssuingCertificateURL, c.OCSPServer)
	}
	if k, ok := pki.SoftRSAKey(id.Signer); !ok || k.N.BitLen() != 2048 {
		t.Fatalf("key %T, want RSA-2048", id.Signer)
	}
	if got := c.NotAfter.Sub(ca.Now.Truncate(time.Second)); got != pki.DefaultIssueValidity {
		t.Fatalf("validity %v, want %v", got, pki.DefaultIssueValidity)
	}
	if len(id.Chain) != 1 || !id.Chain[0].Equal(ca.Intermediate) {
		t.Fatal("chain")
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Roots(), Intermediates: ca.Intermediates(), CurrentTime: clk.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}); err != nil {
		t.Fatal(err)
	}
	// Written: key 0600, certificate with chain.
	if countFiles(t, dir, ".key") != 1 || countFiles(t, dir, ".pem") != 1 {
		t.Fatal("issued files not written")
	}
	keys, _ := filepath.Glob(filepath.Join(dir, "*.key"))
	if st, _ := os.Stat(keys[0]); st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", st.Mode())
	}

	ec := ca.Issuer(t, pki.IssuerOptions{KeyAlgorithm: pki.KeyECDSAP256, Validity: 48 * time.Hour})
	id2, err := ec.Issue(t.Context(), "ec@example.go.jp")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := id2.Signer.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("key %T", id2.Signer)
	}
	if id2.Certificate.SerialNumber.Cmp(c.SerialNumber) == 0 || id2.Certificate.SerialNumber.BitLen() < 64 {
		t.Fatal("serial numbers")
	}

	for _, bad := range []string{"no-at", "@example.go.jp", "a b@example.go.jp", "山田@example.go.jp", "x@bad..domain"} {
		if _, err := iss.Issue(t.Context(), bad); !errors.Is(err, pki.ErrNoCertificate) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := iss.Issue(ctx, "x@example.go.jp"); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
	for _, o := range []pki.IssuerOptions{
		{CACert: ca.Root, CAKey: ca.IntermediateKey},                                         // key mismatch
		{CACert: ca.Identity(t, "leaf@example.go.jp").Certificate},                           // not a CA
		{CACert: ca.Intermediate, CAKey: ca.IntermediateKey, Validity: 900 * 24 * time.Hour}, // > 825 days
		{CACert: ca.Intermediate, CAKey: ca.IntermediateKey, CRLURL: "ldap://x"},             // http only
	} {
		if _, err := pki.NewIssuer(o); !errors.Is(err, pki.ErrIssue) {
			t.Errorf("NewIssuer(%+v): %v", o, err)
		}
	}
}

// TestIssuerDomains: issuance is limited to the configured domains; an
// address outside is a missing certificate (policy decides), not a
// failure (defer).
func TestIssuerDomains(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	iss := ca.Issuer(t, pki.IssuerOptions{Domains: []string{"mhlw.go.jp"}, KeyAlgorithm: pki.KeyECDSAP256})
	if _, err := iss.Issue(t.Context(), "a@x.mhlw.go.jp"); err != nil {
		t.Fatal(err)
	}
	st := ca.Store(t, t.TempDir(), pki.StoreOptions{Issuer: iss})
	_, err := st.Identity(t.Context(), "a@evilmhlw.go.jp")
	if !errors.Is(err, pki.ErrNoCertificate) || errors.Is(err, pki.ErrIssue) {
		t.Fatalf("outside domains: %v", err)
	}
	if _, err := st.Identity(t.Context(), "b@mhlw.go.jp"); err != nil {
		t.Fatal(err)
	}

	// An issuing CA that is not under the Store's anchors: issuance fails
	// (ErrIssue) instead of handing out an unverifiable identity.
	other := pkitest.New(t)
	st2 := other.Store(t, t.TempDir(), pki.StoreOptions{Issuer: iss})
	if _, err := st2.Identity(t.Context(), "c@mhlw.go.jp"); !errors.Is(err, pki.ErrIssue) {
		t.Fatalf("foreign issuing CA: %v", err)
	}
}

// TestIssuanceReuseAndRenewal: the Store issues on a miss, reuses the
// certificate until less than a third of its validity is left, then
// renews; a restarted Store finds the issued files.
func TestIssuanceReuseAndRenewal(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	dir := t.TempDir()
	clk := newClock(ca.Now)
	const validity = 9 * 24 * time.Hour
	iss := ca.Issuer(t, pki.IssuerOptions{Dir: dir, Now: clk.Now, Validity: validity, KeyAlgorithm: pki.KeyECDSAP256})
	st := ca.Store(t, dir, pki.StoreOptions{Issuer: iss, Now: clk.Now})
	addr := "renew@example.go.jp"
	get := func() *x509.Certificate {
		t.Helper()
		id, err := st.Identity(t.Context(), addr)
		if err != nil {
			t.Fatal(err)
		}
		return id.Certificate
	}
	first := get()
	if n := countFiles(t, dir, ".pem"); n != 1 {
		t.Fatalf("%d certificates after first use", n)
	}
	clk.Set(ca.Now.Add(5 * 24 * time.Hour)) // 4 of 9 days left: reuse
	if !get().Equal(first) {
		t.Fatal("renewed too early")
	}
	clk.Set(ca.Now.Add(6*24*time.Hour + time.Hour)) // under 3 days left: renew
	second := get()
	if second.Equal(first) {
		t.Fatal("not renewed with less than a third left")
	}
	if !get().Equal(second) || countFiles(t, dir, ".pem") != 2 {
		t.Fatal("renewed certificate not reused")
	}

	// A restarted Store finds the newest issued certificate on disk.
	st2 := ca.Store(t, dir, pki.StoreOptions{Issuer: iss, Now: clk.Now})
	id, err := st2.Identity(t.Context(), addr)
	if err != nil || !id.Certificate.Equal(second) || countFiles(t, dir, ".pem") != 2 {
		t.Fatalf("restart: %v", err)
	}

	// Renewal that fails keeps the valid certificate in use.
	broken := ca.Issuer(t, pki.IssuerOptions{Dir: filepath.Join(dir, "missing"), Now: clk.Now, KeyAlgorithm: pki.KeyECDSAP256})
	st3 := ca.Store(t, dir, pki.StoreOptions{Issuer: broken, Now: clk.Now})
	clk.Set(second.NotAfter.Add(-time.Hour))
	id, err = st3.Identity(t.Context(), addr)
	if err != nil || !id.Certificate.Equal(second) {
		t.Fatalf("failed renewal: %v", err)
	}
	clk.Set(second.NotAfter.Add(time.Hour))
	if _, err := st3.Identity(t.Context(), addr); !errors.Is(err, pki.ErrIssue) {
		t.Fatalf("expired and renewal failing: %v", err)
	}

	// Certificates from elsewhere are not renewed, only replaced at expiry.
	// Asked twice: the second answer comes from the issuer's memory of
	// the first and must be the same.
	foreign := pkitest.New(t).Identity(t, addr).Certificate
	for range 2 {
		if iss.NeedsRenewal(foreign, clk.Now().Add(100*24*time.Hour)) {
			t.Fatal("NeedsRenewal for a foreign certificate")
		}
		if !iss.NeedsRenewal(second, second.NotAfter.Add(-time.Hour)) {
			t.Fatal("no renewal for an issued certificate near its end")
		}
	}
}

// TestIssuanceConcurrent: many concurrent requests for one address issue
// one certificate; other addresses get their own.
func TestIssuanceConcurrent(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	dir := t.TempDir()
	iss := ca.Issuer(t, pki.IssuerOptions{Dir: dir})
	st := ca.Store(t, dir, pki.StoreOptions{Issuer: iss})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	const n = 16
	ids := make([]*pki.Identity, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			addr := "same@example.go.jp"
			if i%4 == 3 {
				addr = "other@example.go.jp"
			}
			id, err := st.Identity(ctx, addr)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = id
		}()
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	for i := range n {
		want := ids[0]
		if i%4 == 3 {
			want = ids[3]
		}
		if !ids[i].Certificate.Equal(want.Certificate) {
			t.Fatalf("request %d got another certificate", i)
		}
	}
	if ids[0].Certificate.Equal(ids[3].Certificate) {
		t.Fatal("two addresses share a certificate")
	}
	if got := countFiles(t, dir, ".pem"); got != 2 {
		t.Fatalf("%d certificates issued, want 2 (one per address)", got)
	}
}

// TestIssuedVerifiesWithOpenSSL: a certificate issued under the Init PKI
// verifies with OpenSSL as an S/MIME signing certificate against the
// trust anchors alone.
func TestIssuedVerifiesWithOpenSSL(t *testing.T) {
	t.Parallel()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl not installed (make deps)")
	}
	l := devPKI(t)
	caCert, caKey, err := pki.LoadCA(l.IssuerCert(), l.IssuerKey())
	if err != nil {
		t.Fatal(err)
	}
	iss, err := pki.NewIssuer(pki.IssuerOptions{CACert: caCert, CAKey: caKey, Dir: l.CertDir()})
	if err != nil {
		t.Fatal(err)
	}
	anchors, err := pki.LoadTrustAnchors(l.TrustAnchors())
	if err != nil {
		t.Fatal(err)
	}
	st, err := pki.NewStore(pki.StoreOptions{Dir: l.CertDir(), Roots: anchors, Issuer: iss})
	if err != nil {
		t.Fatal(err)
	}
	id, err := st.Identity(t.Context(), "kouhou@example.go.jp")
	if err != nil {
		t.Fatal(err)
	}
	leaf := filepath.Join(t.TempDir(), "leaf.pem")
	writeMode(t, leaf, pkitest.CertPEM(id.Certificate), 0o644)
	untrusted := filepath.Join(t.TempDir(), "chain.pem")
	writeMode(t, untrusted, pkitest.CertPEM(id.Chain...), 0o644)
	run := func(purpose string) (string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, openssl, "verify", "-x509_strict", "-policy_check", "-explicit_policy",
			"-policy", "2.23.140.1.5.1.3", "-purpose", purpose,
			"-CAfile", l.TrustAnchors(), "-no-CApath", "-no-CAstore", "-untrusted", untrusted, leaf).CombinedOutput()
		return string(out), err
	}
	if out, err := run("smimesign"); err != nil {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	if out, err := run("sslserver"); err == nil {
		t.Fatalf("openssl accepted the sender certificate for TLS:\n%s", out)
	}
	// The TLS certificate verifies for a server, against the same anchors.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, openssl, "verify", "-x509_strict", "-purpose", "sslserver", "-verify_hostname", "localhost",
		"-verify_ip", "127.0.0.1", "-CAfile", l.TrustAnchors(), "-no-CApath", "-no-CAstore", l.TLSCert()).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl verify tls: %v\n%s", err, out)
	}
}

// TestIssuerPrune: expired certificates the issuer wrote are removed with
// their keys, by the Store after it issues for the address and by Prune;
// valid ones and files from elsewhere stay.
func TestIssuerPrune(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	dir := t.TempDir()
	clk := newClock(ca.Now)
	iss := ca.Issuer(t, pki.IssuerOptions{Dir: dir, Now: clk.Now, Validity: 24 * time.Hour, KeyAlgorithm: pki.KeyECDSAP256})
	st := ca.Store(t, dir, pki.StoreOptions{Issuer: iss, Now: clk.Now})
	for _, a := range []string{"a@example.go.jp", "b@example.go.jp"} {
		if _, err := st.Identity(t.Context(), a); err != nil {
			t.Fatal(err)
		}
	}
	// An operator's expired certificate, named like an issued one.
	old := ca.Identity(t, "a@example.go.jp", pkitest.Validity(ca.Now.Add(-48*time.Hour), ca.Now.Add(time.Hour)), pkitest.WithKeyType(pkitest.ECDSAP256))
	opCert, opKey := pkitest.WriteIdentity(t, dir, "a@example.go.jp-"+old.Certificate.SerialNumber.Text(16)+"x", old)
	if countFiles(t, dir, ".pem") != 3 {
		t.Fatal("setup")
	}

	clk.Set(ca.Now.Add(25 * time.Hour)) // a's and b's first certificates expired
	if _, err := st.Identity(t.Context(), "a@example.go.jp"); err != nil {
		t.Fatal(err)
	}
	// a: old issued pair removed, new pair written; b untouched; operator's stays.
	if n := countFiles(t, dir, ".pem"); n != 3 {
		t.Fatalf("%d certificates after issuing for a, want 3", n)
	}
	removed, err := iss.Prune(clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 || !strings.Contains(filepath.Base(removed[0]), "b@example.go.jp-") {
		t.Fatalf("Prune removed %v, want b's pair", removed)
	}
	for _, p := range []string{opCert, opKey} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("operator's file removed: %v", err)
		}
	}
	if n := countFiles(t, dir, ".pem"); n != 2 || countFiles(t, dir, ".key") != 2 {
		t.Fatalf("left %d certificates", n)
	}
	if removed, err := iss.Prune(clk.Now()); err != nil || len(removed) != 0 {
		t.Fatalf("second Prune: %v %v", removed, err)
	}
}
