//go:debug rsa1024min=0

package dkimverify_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
	"github.com/kakuin/kakuin/rfc5322"
	"github.com/kakuin/kakuin/verify/dkimverify"
	"github.com/kakuin/kakuin/verify/internal/testsign"
	"github.com/kakuin/kakuin/verify/lookup"
	"github.com/kakuin/kakuin/verify/lookup/lookuptest"
)

const domain = "example.go.jp"

var plain = testsign.CRLF("From: Taro <taro@example.go.jp>\nTo: hanako@example.com\nSubject: notice\nDate: Thu, 26 Nov 2026 10:00:00 +0900\nMessage-ID: <1@example.go.jp>\n\nHello.\n")

type env struct {
	srv  *lookuptest.Server
	res  *lookup.Client
	keys []pki.DKIMKey
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := lookuptest.New(t)
	keys := pkitest.DKIMKeys(t, domain)
	srv.Add(testsign.Zone(t, keys)...)
	res, err := lookup.New([]string{srv.Addr()}, lookup.Options{Timeout: 300 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, res: res, keys: keys}
}

func (e *env) verify(t *testing.T, msg []byte, now time.Time) []*dkimverify.Result {
	t.Helper()
	rs, err := dkimverify.Verify(context.Background(), msg, dkimverify.Options{Resolver: e.res, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func statuses(rs []*dkimverify.Result) string {
	var s []string
	for _, r := range rs {
		s = append(s, string(r.Status))
	}
	return strings.Join(s, ",")
}

func TestBothAlgorithmsPass(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	msg := testsign.DKIM(t, plain, e.keys, nil)
	rs := e.verify(t, msg, time.Now())
	if statuses(rs) != "pass,pass" {
		t.Fatalf("%s: %v %v", statuses(rs), rs[0].Reason, rs[1].Reason)
	}
	// The last key signed last, so its field comes first.
	ed, rsaRes := rs[0], rs[1]
	if ed.Algorithm != "ed25519-sha256" || ed.KeyType != "ed25519" || ed.KeyBits != 256 || ed.Selector != pkitest.DKIMSelectorEd25519 {
		t.Errorf("ed25519: %+v", ed)
	}
	if rsaRes.Algorithm != "rsa-sha256" || rsaRes.KeyType != "rsa" || rsaRes.KeyBits != 2048 || rsaRes.Domain != domain || rsaRes.BodyLength != -1 {
		t.Errorf("rsa: %+v", rsaRes)
	}
	if len(rsaRes.Weak) != 0 || rsaRes.Canonicalization != "relaxed/relaxed" || len(rsaRes.BPrefix) < 8 {
		t.Errorf("rsa: %+v", rsaRes)
	}
}

func TestTamperedFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	msg := testsign.DKIM(t, plain, e.keys, nil)
	body := bytes.Replace(msg, []byte("Hello."), []byte("Hellp."), 1)
	if s := statuses(e.verify(t, body, time.Now())); s != "fail,fail" {
		t.Errorf("body: %s", s)
	}
	from := bytes.Replace(msg, []byte("From: Taro <taro@"), []byte("From: Taro <tar0@"), 1)
	if s := statuses(e.verify(t, from, time.Now())); s != "fail,fail" {
		t.Errorf("from: %s", s)
	}
}

func TestRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := time.Now()
	test := func(name string, mod func(*dkim.SignOptions), at time.Time, want authres.ResultValue, reason string) {
		t.Helper()
		msg := testsign.DKIM(t, plain, e.keys[:1], mod)
		rs := e.verify(t, msg, at)
		if len(rs) != 1 || rs[0].Status != want || !strings.Contains(rs[0].Reason, reason) {
			t.Errorf("%s: %s (%s), want %s (%s)", name, rs[0].Status, rs[0].Reason, want, reason)
		}
	}
	test("plain", nil, now, authres.ResultPass, "")
	test("expired at the injected time", func(o *dkim.SignOptions) { o.Expiration = now.Add(time.Hour) }, now.Add(2*time.Hour), authres.ResultFail, "expired")
	test("not yet expired", func(o *dkim.SignOptions) { o.Expiration = now.Add(time.Hour) }, now, authres.ResultPass, "")
	test("unknown selector", func(o *dkim.SignOptions) { o.Selector = "nope" }, now, authres.ResultPermError, "")
}

func TestFromNotSigned(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// go-msgauth refuses to sign without From: take it out of h=.
	msg := testsign.DKIM(t, plain, e.keys[:1], nil)
	if !bytes.Contains(msg, []byte("h=From:From:")) {
		t.Fatalf("h= not as expected: %s", msg)
	}
	msg = bytes.Replace(msg, []byte("h=From:From:"), []byte("h="), 1)
	rs := e.verify(t, msg, time.Now())
	if rs[0].Status != authres.ResultPolicy || !strings.Contains(rs[0].Reason, "From field is not signed") {
		t.Fatalf("%+v", rs[0])
	}
}

func TestBodyLengthIsWeak(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// go-msgauth cannot produce l=: splice one into the signed field text
	// (the signature no longer matters, the tag decides).
	msg := testsign.DKIM(t, plain, e.keys[:1], nil)
	msg = bytes.Replace(msg, []byte("DKIM-Signature: "), []byte("DKIM-Signature: l=8; "), 1)
	rs := e.verify(t, msg, time.Now())
	if rs[0].Status != authres.ResultPolicy || rs[0].BodyLength != 8 || !strings.Contains(strings.Join(rs[0].Weak, ","), "l= tag") {
		t.Fatalf("%+v", rs[0])
	}
}

func TestSHA1AndShortKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// rsa-sha1: go-msgauth cannot sign it; rewrite a= (the hash no longer
	// matches, but a= alone must decide).
	msg := testsign.DKIM(t, plain, e.keys[:1], nil)
	msg = bytes.Replace(msg, []byte("a=rsa-sha256"), []byte("a=rsa-sha1"), 1)
	rs := e.verify(t, msg, time.Now())
	if rs[0].Status != authres.ResultFail || !strings.Contains(rs[0].Reason, "RFC 8301") {
		t.Fatalf("sha1: %+v", rs[0])
	}
	// A 768-bit key, signed for real.
	short, err := rsa.GenerateKey(rand.Reader, 768)
	if err != nil {
		t.Fatal(err)
	}
	k := pki.DKIMKey{Domain: domain, Selector: "short", Signer: short}
	der, _ := x509.MarshalPKIXPublicKey(&short.PublicKey)
	e.srv.Add(`short._domainkey.example.go.jp. 300 IN TXT "v=DKIM1; k=rsa; p=` + base64.StdEncoding.EncodeToString(der) + `"`)
	msg = testsign.DKIM(t, plain, []pki.DKIMKey{k}, func(o *dkim.SignOptions) { o.Hash = crypto.SHA256 })
	rs = e.verify(t, msg, time.Now())
	if rs[0].Status != authres.ResultFail || rs[0].KeyBits != 768 || !strings.Contains(rs[0].Reason, "too short") {
		t.Fatalf("short: %+v", rs[0])
	}
}

func TestDNSTrouble(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	msg := testsign.DKIM(t, plain, e.keys[:1], nil)
	name := pki.DKIMRecordName(domain, pkitest.DKIMSelectorRSA)
	e.srv.SetServFail(name, true)
	rs := e.verify(t, msg, time.Now())
	if rs[0].Status != authres.ResultTempError {
		t.Fatalf("servfail: %+v", rs[0])
	}
	e.srv.SetServFail(name, false)
	e.srv.SetDrop(name, true)
	rs = e.verify(t, msg, time.Now())
	if rs[0].Status != authres.ResultTempError {
		t.Fatalf("timeout: %+v", rs[0])
	}
	if !errors.Is(rs[0].Err, lookup.ErrTemporary) && rs[0].Err == nil {
		t.Fatalf("err %v", rs[0].Err)
	}
	e.srv.SetDrop(name, false)
	// Revoked key: permanent.
	e.srv.Remove(name, "TXT")
	e.srv.Add(name + `. 300 IN TXT "v=DKIM1; k=rsa; p="`)
	rs = e.verify(t, msg, time.Now())
	if rs[0].Status != authres.ResultPermError || !strings.Contains(rs[0].Reason, "revoked") {
		t.Fatalf("revoked: %+v", rs[0])
	}
	// No resolver at all.
	rs, err := dkimverify.Verify(context.Background(), msg, dkimverify.Options{})
	if err != nil || rs[0].Status != authres.ResultTempError {
		t.Fatalf("no resolver: %v %+v", err, rs)
	}
}

func TestTestingFlag(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	name := pki.DKIMRecordName(domain, pkitest.DKIMSelectorRSA)
	rec, _ := pki.DKIMRecord(e.keys[0].Signer.Public())
	e.srv.Remove(name, "TXT")
	e.srv.Add(name + `. 300 IN TXT ` + testsign.TXTStrings(rec+"; t=y"))
	rs := e.verify(t, testsign.DKIM(t, plain, e.keys[:1], nil), time.Now())
	if rs[0].Status != authres.ResultPass || !rs[0].Testing {
		t.Fatalf("%+v", rs[0])
	}
}

func TestMalformed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rs := e.verify(t, testsign.CRLF("DKIM-Signature: v=1; a=rsa-sha256; d=x; d=y\nFrom: a@example.go.jp\n\nx\n"), time.Now())
	if len(rs) != 1 || rs[0].Status != authres.ResultPermError || !errors.Is(rs[0].Err, dkimverify.ErrTags) {
		t.Fatalf("%+v", rs)
	}
	if rs := e.verify(t, plain, time.Now()); len(rs) != 0 {
		t.Fatalf("unsigned: %+v", rs)
	}
	if _, err := dkimverify.Verify(context.Background(), []byte("garbage without colon\r\n\r\n"), dkimverify.Options{}); !errors.Is(err, dkimverify.ErrMessage) {
		t.Fatalf("err %v", err)
	}
}

// TestReceivedHeader: the header is read as received mail (package
// rfc5322), as go-msgauth reads it: a DKIM-Signature written with the
// obsolete white space before its colon (RFC 5322 4.5) is still found and,
// relaxed (RFC 6376 3.4.2), still passes; a bare CR is refused.
func TestReceivedHeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	msg := testsign.DKIM(t, plain, e.keys, nil)
	obs := bytes.Replace(msg, []byte("DKIM-Signature:"), []byte("DKIM-Signature :"), 1)
	if rs := e.verify(t, obs, time.Now()); statuses(rs) != "pass,pass" {
		t.Fatalf("obs-optional: %s", statuses(rs))
	}
	cr := append([]byte("X-A: b\rDKIM-Signature: v=1\r\n"), msg...)
	if _, err := dkimverify.Verify(context.Background(), cr, dkimverify.Options{Resolver: e.res}); !errors.Is(err, dkimverify.ErrMessage) || !errors.Is(err, rfc5322.ErrSyntax) {
		t.Fatalf("bare CR: %v", err)
	}
}
