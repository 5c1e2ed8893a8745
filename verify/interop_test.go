package verify_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"

	"github.com/kakuin/kakuin/pki/pkitest"
	"github.com/kakuin/kakuin/verify"
	"github.com/kakuin/kakuin/verify/dkimverify"
	"github.com/kakuin/kakuin/verify/lookup"
	"github.com/kakuin/kakuin/verify/lookup/lookuptest"
	"github.com/kakuin/kakuin/verify/smimeverify"
)

// The fixtures in testdata/interop were made by other tools (openssl cms,
// dkimpy, Mail::DKIM) or published in RFC 8463; see its README.md.
const interop = "../testdata/interop"

// interopNow is inside the validity of the openssl-made certificates.
var interopNow = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(interop, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func interopAnchors(t *testing.T) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(readFixture(t, "smime/root.pem")) {
		t.Fatal("no root")
	}
	return p
}

func interopResolver(t *testing.T) *lookup.Client {
	t.Helper()
	srv := lookuptest.New(t)
	srv.AddZone(".", string(readFixture(t, "dkim/dkim.zone")))
	res, err := lookup.New([]string{srv.Addr()}, lookup.Options{Timeout: time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// tamper changes one octet of the body (after the header).
func tamper(t *testing.T, msg []byte, old, new string) []byte {
	t.Helper()
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	j := bytes.Index(msg[i:], []byte(old))
	if i < 0 || j < 0 {
		t.Fatalf("%q not in the body", old)
	}
	out := append([]byte(nil), msg...)
	copy(out[i+j:], new)
	return out
}

func TestInteropOpenSSLSMIME(t *testing.T) {
	t.Parallel()
	v := smimeverify.New(smimeverify.Options{Roots: interopAnchors(t), Now: func() time.Time { return interopNow }})
	for _, name := range []string{"smime/openssl-detached.eml", "smime/openssl-opaque.eml", "smime/openssl-pss.eml"} {
		msg := readFixture(t, name)
		r := v.Verify(msg, "taro@example.go.jp")
		if r.Status != authres.ResultPass || r.Organization() != "Ministry of Interop Testing" || len(r.Chain) != 3 {
			t.Errorf("%s: %s %s", name, r.Status, r.Reason)
		}
		if r := v.Verify(msg, "jiro@example.go.jp"); r.Status != authres.ResultFail {
			t.Errorf("%s for another From: %s", name, r.Status)
		}
	}
	// The detached one's signed text, changed.
	bad := tamper(t, readFixture(t, "smime/openssl-detached.eml"), "only a test", "only a jest")
	if r := v.Verify(bad, "taro@example.go.jp"); r.Status != authres.ResultFail || !strings.Contains(r.Reason, "altered") {
		t.Errorf("tampered detached: %s %s", r.Status, r.Reason)
	}
	// RSASSA-PSS, named as such; its text changed fails.
	pss := readFixture(t, "smime/openssl-pss.eml")
	if r := v.Verify(pss, "taro@example.go.jp"); r.Algorithm != "rsa-pss-sha256" {
		t.Errorf("pss algorithm %q", r.Algorithm)
	}
	if r := v.Verify(tamper(t, pss, "only a test", "only a jest"), "taro@example.go.jp"); r.Status != authres.ResultFail || !strings.Contains(r.Reason, "altered") {
		t.Errorf("tampered pss: %s %s", r.Status, r.Reason)
	}
	// The last octets of the signature value (near the end of the
	// base64), changed.
	end := bytes.LastIndex(pss, []byte("\n------"))
	badSig := append([]byte(nil), pss...)
	k := end - 12
	if badSig[k] == 'A' {
		badSig[k] = 'B'
	} else {
		badSig[k] = 'A'
	}
	if r := v.Verify(badSig, "taro@example.go.jp"); r.Status != authres.ResultFail || !strings.Contains(r.Reason, "RSASSA-PSS") {
		t.Errorf("pss with a changed signature: %s %s", r.Status, r.Reason)
	}
	// The opaque one's base64 content, changed.
	op := readFixture(t, "smime/openssl-opaque.eml")
	i := bytes.Index(op, []byte("\r\n\r\n")) + 300
	op[i] ^= 0x01
	if r := v.Verify(op, "taro@example.go.jp"); r.Status == authres.ResultPass {
		t.Errorf("tampered opaque passed")
	}
	// A certificate for jiro@ signing a message from taro@.
	if r := v.Verify(readFixture(t, "smime/openssl-wrong-address.eml"), "taro@example.go.jp"); r.Status != authres.ResultFail || !strings.Contains(r.Reason, "jiro@example.go.jp") {
		t.Errorf("wrong address: %s %s", r.Status, r.Reason)
	}
	// Anchors that are not the openssl root.
	other := smimeverify.New(smimeverify.Options{Roots: pkitest.New(t).Roots(), Now: func() time.Time { return interopNow }})
	if r := other.Verify(readFixture(t, "smime/openssl-detached.eml"), "taro@example.go.jp"); r.Status != authres.ResultFail {
		t.Errorf("other anchors: %s", r.Status)
	}
}

func TestInteropDKIM(t *testing.T) {
	t.Parallel()
	res := interopResolver(t)
	test := func(name string, want []string, old, new string) {
		t.Helper()
		msg := readFixture(t, name)
		check := func(msg []byte, want []string) {
			t.Helper()
			rs, err := dkimverify.Verify(context.Background(), msg, dkimverify.Options{Resolver: res, Now: func() time.Time { return interopNow }})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rs {
				got = append(got, string(r.Status)+" "+r.Algorithm)
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("%s: %v, want %v (%v)", name, got, want, rs[0].Reason)
			}
		}
		check(msg, want)
		var failed []string
		for _, w := range want {
			failed = append(failed, "fail "+strings.Fields(w)[1])
		}
		check(tamper(t, msg, old, new), failed)
	}
	test("dkim/dkimpy-rsa.eml", []string{"pass rsa-sha256"}, "another", "anothEr")
	test("dkim/dkimpy-ed25519.eml", []string{"pass ed25519-sha256"}, "another", "anothEr")
	test("dkim/maildkim-rsa.eml", []string{"pass rsa-sha256"}, "another", "anothEr")
	// RFC 8463 appendix A.3: ed25519 and rsa (a 1024-bit key) over the
	// same message.
	test("dkim/rfc8463-appendix-a.eml", []string{"pass ed25519-sha256", "pass rsa-sha256"}, "hungry", "Hungry")
}

// TestInteropGenuine: S/MIME by openssl and DKIM by dkimpy, nothing by
// kakuin, verifies as GENUINE; a changed copy does not.
func TestInteropGenuine(t *testing.T) {
	t.Parallel()
	opts := verify.Options{Resolver: interopResolver(t), TrustAnchors: interopAnchors(t), Now: func() time.Time { return interopNow }}
	msg := readFixture(t, "genuine-openssl-dkimpy.eml")
	rep, err := verify.Message(context.Background(), bytes.NewReader(msg), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Verdict.Genuine || rep.Verdict.Summary != "GENUINE: signed by Ministry of Interop Testing for taro@example.go.jp, a government domain" {
		t.Fatalf("%s", strings.Join(rep.Lines(), "\n"))
	}
	rep, err = verify.Message(context.Background(), bytes.NewReader(tamper(t, msg, "only a test", "only a jest")), opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verdict.Genuine {
		t.Fatalf("tampered copy genuine:\n%s", strings.Join(rep.Lines(), "\n"))
	}
}
