package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kakuin/kakuin/pki"
)

// These tests set KAKUIN_* variables: not parallel.

func TestSignHelpListsFlagsAndEveryVariable(t *testing.T) {
	code, out, _ := runCmd(t, nil, "sign", "--help")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	want := []string{"-v", "exit status", "(default var/pki)", "(default go.jp)", "(default 168h)"}
	st := reflect.TypeFor[signConfig]()
	for i := range st.NumField() {
		want = append(want, envPrefix+strings.Split(st.Field(i).Tag.Get("env"), ",")[0])
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("kakuin sign --help lacks %q:\n%s", w, out)
		}
	}
}

func TestSignUsageAndConfigErrors(t *testing.T) {
	test := func(name string, env map[string]string, args []string, wantCode int, wantWord string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			t.Setenv("KAKUIN_PKI_DIR", filepath.Join(t.TempDir(), "absent"))
			for k, v := range env {
				t.Setenv(k, v)
			}
			code, out, errs := runCmd(t, []byte("From: a@example.go.jp\r\n\r\nx\r\n"), append([]string{"sign"}, args...)...)
			if code != wantCode || out != "" || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, wantWord) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, one line with %q", code, out, errs, wantCode, wantWord)
			}
		})
	}
	test("argument", nil, []string{"msg.eml"}, exitUsage, "stdin")
	test("unknown flag", nil, []string{"--bogus"}, exitUsage, "bogus")
	test("bad policy", map[string]string{"KAKUIN_NO_CERT_POLICY": "sometimes"}, nil, exitUsage, "KAKUIN_NO_CERT_POLICY")
	test("bad duration", map[string]string{"KAKUIN_CERT_VALIDITY": "a week"}, nil, exitUsage, "KAKUIN_CERT_VALIDITY")
	test("no pki", nil, nil, exitUsage, "kakuin pki init")
}

// TestSignInProcess signs and refuses without the external verifiers
// (those are in interop_test.go), so that it runs in -short mode too.
func TestSignInProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	t.Setenv("KAKUIN_PKI_DIR", dir)
	if code, _, errs := runCmd(t, nil, "pki", "init", "--domain", "example.go.jp"); code != exitOK {
		t.Fatalf("pki init: %d %s", code, errs)
	}
	msg := "From: Info <info@example.go.jp>\nTo: a@example.com\nSubject: hello\n\nbody\n"
	code, out, errs := runCmd(t, []byte(msg), "sign", "-v")
	if code != exitOK || !strings.Contains(out, "Content-Type: multipart/signed") || strings.Count(out, "DKIM-Signature:") != 2 {
		t.Fatalf("sign: exit %d, stderr %q, stdout:\n%s", code, errs, out)
	}
	if !strings.Contains(errs, "from=info@example.go.jp") || !strings.Contains(errs, "a=ed25519-sha256") {
		t.Errorf("-v summary: %q", errs)
	}
	for _, from := range []string{"info@evilgo.jp", "info@go.jp.example.com", "info@example.com"} {
		code, out, errs := runCmd(t, []byte(strings.Replace(msg, "info@example.go.jp", from, 1)), "sign")
		if code != exitRefused || out != "" || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, from) {
			t.Errorf("From %s: exit %d, stdout %q, stderr %q; want exit 1, one line naming it", from, code, out, errs)
		}
	}
	// A domain under go.jp without a DKIM key: nothing is sent unsigned.
	code, out, errs = runCmd(t, []byte(strings.Replace(msg, "info@example.go.jp", "info@other.go.jp", 1)), "sign")
	if code == exitOK || out != "" {
		t.Errorf("From without a DKIM key: exit %d, %d bytes out, stderr %q", code, len(out), errs)
	}
}

func TestOneLine(t *testing.T) {
	err := fmt.Errorf("outer: %w", errors.New("line one\nline two\r\n  three"))
	if got := oneLine(err); got != "outer: line one line two three" {
		t.Errorf("oneLine = %q", got)
	}
}

// TestSignWithIndividualVariables configures every part with its own
// variable, KAKUIN_PKI_DIR pointing nowhere, and checks the three
// no-certificate policies.
func TestSignWithIndividualVariables(t *testing.T) {
	src := filepath.Join(t.TempDir(), "pki")
	if code, _, errs := runCmd(t, nil, "pki", "init", "--dir", src, "--domain", "example.go.jp"); code != exitOK {
		t.Fatalf("pki init: %d %s", code, errs)
	}
	l := pki.Layout{Dir: src}
	certs := filepath.Join(t.TempDir(), "certs")
	t.Setenv("KAKUIN_PKI_DIR", filepath.Join(t.TempDir(), "absent"))
	t.Setenv("KAKUIN_TRUST_ANCHORS", l.TrustAnchors())
	t.Setenv("KAKUIN_DKIM_DIR", l.DKIMDir())
	t.Setenv("KAKUIN_CERT_DIR", certs)
	msg := []byte("From: info@example.go.jp\r\nTo: a@example.com\r\nSubject: s\r\n\r\nbody\r\n")

	// No issuing CA configured: reject is the default.
	code, out, errs := runCmd(t, msg, "sign")
	if code != exitRefused || out != "" || !strings.Contains(errs, "no s/mime certificate") {
		t.Errorf("reject: exit %d, stderr %q", code, errs)
	}
	// dkim-only: DKIM signatures, no S/MIME.
	t.Setenv("KAKUIN_NO_CERT_POLICY", "dkim-only")
	code, out, errs = runCmd(t, msg, "sign")
	if code != exitOK || strings.Contains(out, "multipart/signed") || strings.Count(out, "DKIM-Signature:") != 2 {
		t.Errorf("dkim-only: exit %d, stderr %q, stdout:\n%s", code, errs, out)
	}
	// The issuing CA by its own variables: issue becomes the default, and
	// the certificate lands in KAKUIN_CERT_DIR.
	t.Setenv("KAKUIN_NO_CERT_POLICY", "")
	t.Setenv("KAKUIN_ISSUER_CERT", l.IssuerCert())
	t.Setenv("KAKUIN_ISSUER_KEY", l.IssuerKey())
	code, out, errs = runCmd(t, msg, "sign")
	if code != exitOK || !strings.Contains(out, "multipart/signed") {
		t.Fatalf("issue: exit %d, stderr %q", code, errs)
	}
	if ents, err := os.ReadDir(certs); err != nil || len(ents) == 0 {
		t.Errorf("no issued certificate in KAKUIN_CERT_DIR: %v", err)
	}
	// A CA key readable by others is a key failure, exit 3.
	if err := os.Chmod(l.IssuerKey(), 0o640); err != nil {
		t.Fatal(err)
	}
	if code, _, errs = runCmd(t, msg, "sign"); code != exitTemp || !strings.Contains(errs, "readable by group or others") {
		t.Errorf("wide CA key: exit %d, stderr %q", code, errs)
	}
}
