package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
	"github.com/kakuin/kakuin/signer"
	"github.com/kakuin/kakuin/verify/lookup/lookuptest"
)

type fixedIdentities map[string]*pki.Identity

func (m fixedIdentities) Identity(_ context.Context, addr string) (*pki.Identity, error) {
	if id, ok := m[addr]; ok {
		return id, nil
	}
	return nil, pki.ErrNoCertificate
}

// verifyFixture: a PKI laid out on disk, a DNS server with the DKIM keys
// and a message sealed by package signer.
func verifyFixture(t *testing.T) (dir, dnsAddr string, sealed []byte) {
	t.Helper()
	dir = t.TempDir()
	ca := pkitest.New(t)
	ca.WriteLayout(t, dir)
	keys := pkitest.DKIMKeys(t, "example.go.jp")
	srv := lookuptest.New(t)
	for name, rec := range pkitest.DKIMRecords(t, keys) {
		var parts []string
		for len(rec) > 255 {
			parts, rec = append(parts, `"`+rec[:255]+`"`), rec[255:]
		}
		parts = append(parts, `"`+rec+`"`)
		srv.Add(name + ". 300 IN TXT " + strings.Join(parts, " "))
	}
	id := ca.Identity(t, "info@example.go.jp", pkitest.Subject(pkixOrg("Ministry of Examples")))
	sg, err := signer.New(signer.Options{Identities: fixedIdentities{"info@example.go.jp": id}, DKIM: pkitest.DKIMKeySource{"example.go.jp": keys}})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := sg.Sign(context.Background(), &out, strings.NewReader("From: Info <info@example.go.jp>\nTo: a@example.com\nSubject: hello\n\nHello.\n")); err != nil {
		t.Fatal(err)
	}
	return dir, srv.Addr(), out.Bytes()
}

func TestVerifyCommand(t *testing.T) {
	dir, dnsAddr, sealed := verifyFixture(t)
	// The PKI directory alone configures the trust anchors.
	t.Setenv("KAKUIN_PKI_DIR", dir)
	t.Setenv("KAKUIN_TRUST_ANCHORS", "")
	t.Setenv("KAKUIN_RESOLVER", dnsAddr)
	msgFile := filepath.Join(t.TempDir(), "m.eml")
	if err := os.WriteFile(msgFile, sealed, 0o644); err != nil {
		t.Fatal(err)
	}

	code, out, errs := runCmd(t, nil, "verify", msgFile)
	if code != verifyGenuine || !strings.HasPrefix(out, "GENUINE: signed by Ministry of Examples for info@example.go.jp, a government domain\n") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	if n := strings.Count(out, "\n"); n < 8 {
		t.Fatalf("want one line per check:\n%s", out)
	}

	// stdin, JSON.
	code, out, _ = runCmd(t, sealed, "verify", "--json", "--offline", "-")
	var rep struct {
		Verdict struct{ Genuine bool } `json:"verdict"`
		Checks  []struct{ Name, Status, Reason string }
	}
	if code != verifyGenuine || json.Unmarshal([]byte(out), &rep) != nil || !rep.Verdict.Genuine {
		t.Fatalf("json: exit %d\n%s", code, out)
	}
	for _, c := range rep.Checks {
		if c.Name == "revocation" && (c.Status != "none" || !strings.Contains(c.Reason, "offline")) {
			t.Errorf("offline revocation: %+v", c)
		}
	}

	// Authentication-Results.
	code, out, _ = runCmd(t, sealed, "verify", "--authres", "-")
	if code != verifyGenuine || !strings.HasPrefix(out, "Authentication-Results: kakuin; ") || !strings.Contains(out, "smime=pass") || !strings.Contains(out, "dkim=pass") {
		t.Fatalf("authres: exit %d\n%s", code, out)
	}

	// A changed body: NOT VERIFIED, exit 1.
	bad := bytes.Replace(sealed, []byte("Hello."), []byte("Hellp."), 1)
	code, out, _ = runCmd(t, bad, "verify", "-")
	if code != verifyNotVerified || !strings.HasPrefix(out, "NOT VERIFIED: ") {
		t.Fatalf("tampered: exit %d\n%s", code, out)
	}
	// Unsigned mail: exit 1.
	if code, out, _ = runCmd(t, []byte("From: a@example.go.jp\n\nhi\n"), "verify", "-"); code != verifyNotVerified {
		t.Fatalf("unsigned: exit %d\n%s", code, out)
	}
	// Judged a year later: the certificate has expired.
	code, out, _ = runCmd(t, sealed, "verify", "--at", "2099-01-01", "-")
	if code != verifyNotVerified || !strings.Contains(out, "expired") {
		t.Fatalf("--at: exit %d\n%s", code, out)
	}
	// Another anchor: exit 1.
	other := filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(other, pkitest.New(t).RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ = runCmd(t, sealed, "verify", "--trust-anchors", other, "-"); code != verifyNotVerified || !strings.Contains(out, "trust anchor") {
		t.Fatalf("other anchor: exit %d\n%s", code, out)
	}

	// Unusable: exit 2.
	for _, tc := range []struct {
		stdin []byte
		args  []string
		want  string
	}{
		{nil, []string{"verify"}, "exactly one message"},
		{nil, []string{"verify", "--bogus", "-"}, "bogus"},
		{[]byte("not a message\n"), []string{"verify", "-"}, "not a usable message"},
		{nil, []string{"verify", filepath.Join(dir, "missing.eml")}, "no such file"},
		{sealed, []string{"verify", "--trust-anchors", filepath.Join(dir, "none.pem"), "-"}, "trust anchors"},
		{sealed, []string{"verify", "--json", "--authres", "-"}, "exclude"},
		{sealed, []string{"verify", "--at", "yesterday", "-"}, "--at"},
		{sealed, []string{"verify", "--helo", "x", "-"}, "--client-ip"},
	} {
		code, out, errs := runCmd(t, tc.stdin, tc.args...)
		if code != verifyUnusable || !strings.Contains(errs, tc.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q (want %q), stdout %q", tc.args, code, errs, tc.want, out)
		}
	}

	// Help lists the flags and the variables.
	code, out, _ = runCmd(t, nil, "verify", "--help")
	if code != exitOK || !strings.Contains(out, "-trust-anchors") || !strings.Contains(out, "KAKUIN_TRUST_ANCHORS") || !strings.Contains(out, "KAKUIN_RESOLVER") {
		t.Fatalf("help: %d\n%s", code, out)
	}
}
