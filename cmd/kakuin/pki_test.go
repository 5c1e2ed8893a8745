package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/signer"
)

// runCmd runs a kakuin command in-process.
func runCmd(t *testing.T, stdin []byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, bytes.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		files[p] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestPKIInit lays out a PKI with the command, runs it again, and builds
// the signer's options from the directory alone. It sets KAKUIN_*
// variables: not parallel.
func TestPKIInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	t.Setenv("KAKUIN_PKI_DIR", dir) // the default of --dir
	code, out, errs := runCmd(t, nil, "pki", "init", "--domain", "example.go.jp", "--domain", "kakuin-test.go.jp")
	if code != exitOK {
		t.Fatalf("pki init: exit %d: %s", code, errs)
	}
	l := pki.Layout{Dir: dir}
	for _, p := range []string{l.TrustAnchors(), l.DNSZone(), l.RootCert(), l.IssuerCert(), l.IssuerKey(), l.TLSCert(), l.TLSKey()} {
		if !strings.Contains(out, "created  "+p+"\n") {
			t.Errorf("output does not say %s was created:\n%s", p, out)
		}
	}
	for _, k := range []string{l.RootKey(), l.IssuerKey(), l.TLSKey()} {
		if fi, err := os.Stat(k); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", k, fi.Mode(), err)
		}
	}
	anchors, err := pki.LoadCertificates(l.TrustAnchors())
	if err != nil || len(anchors) != 1 || !anchors[0].IsCA || !isSelfSigned(anchors[0]) {
		t.Fatalf("trust-anchors.pem: want the root alone: %d certificates, %v", len(anchors), err)
	}
	zone, _ := os.ReadFile(l.DNSZone())
	for _, d := range []string{"example.go.jp", "kakuin-test.go.jp"} {
		if !strings.Contains(string(zone), "._domainkey."+d+". ") || !strings.Contains(out, "dkim     "+d+" selectors ") {
			t.Errorf("no DKIM record or selectors for %s", d)
		}
	}

	// Again: everything is kept, nothing changes.
	before := readTree(t, dir)
	code, out, errs = runCmd(t, nil, "pki", "init", "--dir", dir, "--domain", "example.go.jp", "--domain", "kakuin-test.go.jp")
	if code != exitOK || strings.Contains(out, "created") {
		t.Fatalf("second pki init: exit %d, created something:\n%s%s", code, out, errs)
	}
	if !strings.Contains(out, "kept     "+l.RootKey()+"\n") {
		t.Errorf("second run does not report the root key as kept:\n%s", out)
	}
	after := readTree(t, dir)
	if len(after) != len(before) {
		t.Errorf("second run: %d files, then %d", len(before), len(after))
	}
	for p, b := range before {
		if !bytes.Equal(after[p], b) {
			t.Errorf("second run changed %s", p)
		}
	}

	// KAKUIN_PKI_DIR alone configures the signer.
	cfg, err := loadSignConfig()
	if err != nil {
		t.Fatal(err)
	}
	opts, closer, err := cfg.signerOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	if opts.MissingCertificate != signer.Reject || opts.Identities == nil || opts.DKIM == nil {
		t.Errorf("options: %+v", opts)
	}
	// Issue is the default policy with an issuing CA: a certificate is
	// issued for a new address, under the development root.
	id, err := opts.Identities.Identity(context.Background(), "info@example.go.jp")
	if err != nil {
		t.Fatalf("identity: %v", err)
	}
	pool, _ := pki.LoadTrustAnchors(l.TrustAnchors())
	inter := x509.NewCertPool()
	for _, c := range id.Chain {
		inter.AddCert(c)
	}
	if _, err := id.Certificate.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}); err != nil {
		t.Errorf("issued certificate does not chain to the development root: %v", err)
	}
	if len(id.Certificate.EmailAddresses) != 1 || id.Certificate.EmailAddresses[0] != "info@example.go.jp" {
		t.Errorf("issued certificate SANs %v", id.Certificate.EmailAddresses)
	}
	// DKIM keys of the nearest configured parent (RULES D6).
	keys, err := opts.DKIM.DKIMKeys("kanto.example.go.jp")
	if err != nil || len(keys) != 2 || keys[0].Domain != "example.go.jp" {
		t.Errorf("dkim keys for kanto.example.go.jp: %v %+v", err, keys)
	}

	// The reject policy: no issuer, an unknown address has no certificate.
	t.Setenv("KAKUIN_NO_CERT_POLICY", "reject")
	cfg, _ = loadSignConfig()
	opts, _, err = cfg.signerOptions()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := opts.Identities.Identity(context.Background(), "other@example.go.jp"); !errors.Is(err, pki.ErrNoCertificate) {
		t.Errorf("reject policy: identity error %v, want pki.ErrNoCertificate", err)
	}
	t.Setenv("KAKUIN_NO_CERT_POLICY", "dkim-only")
	cfg, _ = loadSignConfig()
	if opts, _, err = cfg.signerOptions(); err != nil || opts.MissingCertificate != signer.DKIMOnly {
		t.Errorf("dkim-only: %v %v", opts.MissingCertificate, err)
	}

	// A DKIM key readable by others is refused.
	keyFile := filepath.Join(l.DKIMDir(), "example.go.jp")
	ents, _ := os.ReadDir(keyFile)
	if err := os.Chmod(filepath.Join(keyFile, ents[0].Name()), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cfg.signerOptions(); !errors.Is(err, pki.ErrKeyPermissions) {
		t.Errorf("wide DKIM key mode: %v, want pki.ErrKeyPermissions", err)
	}
}

func TestPKIInitUsage(t *testing.T) {
	t.Setenv("KAKUIN_PKI_DIR", t.TempDir())
	if code, _, errs := runCmd(t, nil, "pki", "init"); code != exitUsage || !strings.Contains(errs, "--domain") {
		t.Errorf("no --domain: exit %d %q", code, errs)
	}
	if code, _, _ := runCmd(t, nil, "pki", "init", "--bogus"); code != exitUsage {
		t.Errorf("unknown flag: exit %d", code)
	}
	if code, _, _ := runCmd(t, nil, "pki", "frobnicate"); code != exitUsage {
		t.Errorf("unknown subcommand: exit %d", code)
	}
	code, out, _ := runCmd(t, nil, "pki", "init", "--help")
	if code != exitOK || !strings.Contains(out, "-domain") || !strings.Contains(out, "KAKUIN_PKI_DIR") {
		t.Errorf("pki init --help: exit %d:\n%s", code, out)
	}
}

func TestSignConfigMissingPKIDir(t *testing.T) {
	t.Setenv("KAKUIN_PKI_DIR", filepath.Join(t.TempDir(), "nothing-here"))
	cfg, err := loadSignConfig()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cfg.signerOptions(); !errors.Is(err, errConfig) || !strings.Contains(err.Error(), "kakuin pki init") {
		t.Errorf("missing PKI directory: %v, want errConfig with a hint", err)
	}
}
