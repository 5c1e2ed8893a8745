package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
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
