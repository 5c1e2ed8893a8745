package pki_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
)

// TestNSSAcceptsHierarchy: NSS, the library Thunderbird verifies S/MIME
// with, accepts a certificate issued under the Init PKI as an email signer
// when only the dev root is trusted, and refuses it as a TLS server; the
// STARTTLS certificate is accepted as a TLS server.
func TestNSSAcceptsHierarchy(t *testing.T) {
	t.Parallel()
	certutil, err := exec.LookPath("certutil")
	if err != nil {
		t.Fatal("certutil not installed (Debian libnss3-tools, make deps)")
	}
	l := devPKI(t)
	st, err := pki.OpenStore(l, pki.OpenOptions{Issue: true})
	if err != nil {
		t.Fatal(err)
	}
	id, err := st.Identity(t.Context(), "joho@example.go.jp")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	leaf := filepath.Join(tmp, "leaf.pem")
	writeMode(t, leaf, pkitest.CertPEM(id.Certificate), 0o644)
	db := "sql:" + filepath.Join(tmp, "nssdb")
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, certutil, append([]string{"-d", db}, args...)...).CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) {
		t.Helper()
		if out, err := run(args...); err != nil {
			t.Fatalf("certutil %v: %v\n%s", args, err, out)
		}
	}
	if err := os.Mkdir(filepath.Join(tmp, "nssdb"), 0o700); err != nil {
		t.Fatal(err)
	}
	must("-N", "--empty-password")
	must("-A", "-n", "dev-root", "-t", "C,C,", "-i", l.TrustAnchors())
	must("-A", "-n", "issuing", "-t", ",,", "-i", l.IssuerCert())
	must("-A", "-n", "sender", "-t", ",,", "-i", leaf)
	must("-A", "-n", "tls", "-t", ",,", "-i", l.TLSCert())

	if out, err := run("-V", "-n", "sender", "-u", "S", "-e"); err != nil || !strings.Contains(out, "valid") {
		t.Fatalf("NSS refuses the sender certificate as email signer: %v\n%s", err, out)
	}
	if out, err := run("-V", "-n", "sender", "-u", "V"); err == nil {
		t.Fatalf("NSS accepts the sender certificate as TLS server:\n%s", out)
	}
	if out, err := run("-V", "-n", "tls", "-u", "V", "-e"); err != nil {
		t.Fatalf("NSS refuses the TLS certificate: %v\n%s", err, out)
	}
}
