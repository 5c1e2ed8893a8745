package verify_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
	"github.com/kakuin/kakuin/rfc5322"
	"github.com/kakuin/kakuin/verify"
	"github.com/kakuin/kakuin/verify/internal/testsign"
	"github.com/kakuin/kakuin/verify/lookup"
	"github.com/kakuin/kakuin/verify/lookup/lookuptest"
	"github.com/kakuin/kakuin/verify/revocation"
)

const (
	addr  = "taro@example.go.jp"
	outer = "From: Taro Yamada <taro@example.go.jp>\nTo: hanako@example.com\nSubject: Notice of tax refund\nDate: Thu, 26 Nov 2026 10:00:00 +0900\nMessage-ID: <n1@example.go.jp>\n"
)

type env struct {
	ca   *pkitest.CA
	srv  *lookuptest.Server
	res  *lookup.Client
	keys []pki.DKIMKey
	id   *pki.Identity
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{ca: pkitest.New(t), srv: lookuptest.New(t)}
	e.keys = pkitest.DKIMKeys(t, "example.go.jp")
	e.srv.Add(testsign.Zone(t, e.keys)...)
	e.srv.Add(`_dmarc.example.go.jp. 300 IN TXT "v=DMARC1; p=reject; adkim=r"`)
	e.srv.Add(`example.go.jp. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"`)
	res, err := lookup.New([]string{e.srv.Addr()}, lookup.Options{Timeout: 500 * time.Millisecond, Attempts: 1, CacheSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	e.res = res
	e.id = e.ca.Identity(t, addr, pkitest.Subject(pkixName("Ministry of Examples")))
	return e
}

func (e *env) opts() verify.Options {
	return verify.Options{Resolver: e.res, TrustAnchors: e.ca.Roots()}
}

// seal signs like the gateway: S/MIME, then DKIM with both keys.
func (e *env) seal(t testing.TB, id *pki.Identity, outerHeader string, entity []byte) []byte {
	t.Helper()
	return testsign.DKIM(t, testsign.Detached(t, id, outerHeader, entity), e.keys, nil)
}

func (e *env) check(t *testing.T, msg []byte, opts verify.Options) *verify.Report {
	t.Helper()
	rep, err := verify.Message(context.Background(), bytes.NewReader(msg), opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func notVerified(t *testing.T, rep *verify.Report, reason string) {
	t.Helper()
	if rep.Verdict.Genuine {
		t.Fatalf("genuine, want NOT VERIFIED (%s):\n%s", reason, strings.Join(rep.Lines(), "\n"))
	}
	if !strings.Contains(rep.Verdict.Reason, reason) || !strings.HasPrefix(rep.Verdict.Summary, "NOT VERIFIED: ") {
		t.Fatalf("reason %q lacks %q:\n%s", rep.Verdict.Reason, reason, strings.Join(rep.Lines(), "\n"))
	}
}

func status(t *testing.T, rep *verify.Report, name string, want authres.ResultValue) {
	t.Helper()
	c, ok := rep.Get(name)
	if !ok || c.Status != want {
		t.Errorf("%s: %s (%s), want %s", name, c.Status, c.Reason, want)
	}
}

func TestGenuine(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	msg := e.seal(t, e.id, outer, testsign.Entity("Your refund is on its way."))
	opts := e.opts()
	opts.ClientIP = netip.MustParseAddr("192.0.2.25")
	opts.HELO = "mail.example.go.jp"
	opts.MailFrom = "bounce@example.go.jp"
	rep := e.check(t, msg, opts)
	if !rep.Verdict.Genuine {
		t.Fatalf("not genuine:\n%s", strings.Join(rep.Lines(), "\n"))
	}
	if want := "GENUINE: signed by Ministry of Examples for taro@example.go.jp, a government domain"; rep.Verdict.Summary != want {
		t.Fatalf("summary %q", rep.Verdict.Summary)
	}
	for name, want := range map[string]authres.ResultValue{
		verify.CheckFrom: "pass", verify.CheckHeader: "pass", verify.CheckGovernment: "pass", verify.CheckSMIME: "pass",
		verify.CheckSignedHeaders: "pass", verify.CheckRevocation: "none", verify.CheckSPF: "pass", verify.CheckDMARC: "pass",
	} {
		status(t, rep, name, want)
	}
	if len(rep.DKIM) != 2 || rep.DKIM[0].Status != "pass" || rep.DKIM[1].Status != "pass" {
		t.Fatalf("dkim %+v", rep.DKIM)
	}
	// The same message saved with LF line ends (as a mail client or a
	// Unix mailbox stores it) is the same message.
	lf := bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
	if rep := e.check(t, lf, e.opts()); !rep.Verdict.Genuine {
		t.Fatalf("LF copy not genuine:\n%s", strings.Join(rep.Lines(), "\n"))
	}
	// An mbox separator line is not part of the message.
	if rep := e.check(t, append([]byte("From taro@example.go.jp Thu Nov 26 10:00:00 2026\n"), lf...), e.opts()); !rep.Verdict.Genuine {
		t.Fatalf("mbox copy not genuine:\n%s", strings.Join(rep.Lines(), "\n"))
	}
	// Opaque signed-data works the same.
	op := testsign.DKIM(t, testsign.Opaque(t, e.id, outer, testsign.Entity("x")), e.keys, nil)
	if rep := e.check(t, op, e.opts()); !rep.Verdict.Genuine {
		t.Fatalf("opaque not genuine:\n%s", strings.Join(rep.Lines(), "\n"))
	}
	// The header is read by package rfc5322 as received mail: obsolete
	// syntax with one reading, RFC 5322 4.5 obs-optional, and a field over
	// 998 characters (RFC 5322 2.1.1), both seen in received mail, verify.
	h := strings.Replace(outer, "Subject: ", "Subject : ", 1) + "X-Long: " + strings.Repeat("x", 1500) + "\n"
	if rep := e.check(t, e.seal(t, e.id, h, testsign.Entity("x")), e.opts()); !rep.Verdict.Genuine {
		t.Fatalf("obsolete syntax not genuine:\n%s", strings.Join(rep.Lines(), "\n"))
	}
}

// TestNotTricked: each way of making a message look genuine fails.
func TestNotTricked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	entity := testsign.Entity("Your refund is on its way.")
	good := e.seal(t, e.id, outer, entity)

	t.Run("two From fields", func(t *testing.T) {
		msg := append([]byte("From: Boss <boss@example.go.jp>\r\n"), good...)
		notVerified(t, e.check(t, msg, e.opts()), "2 From fields")
	})
	t.Run("From in the display name", func(t *testing.T) {
		other := e.ca.Identity(t, "taro@other.go.jp")
		keys := pkitest.DKIMKeys(t, "other.go.jp")
		e.srv.Add(testsign.Zone(t, keys)...)
		h := strings.Replace(outer, "From: Taro Yamada <taro@example.go.jp>", `From: "taro@example.go.jp" <taro@other.go.jp>`, 1)
		msg := testsign.DKIM(t, testsign.Detached(t, other, h, entity), keys, nil)
		notVerified(t, e.check(t, msg, e.opts()), "display name shows taro@example.go.jp")
	})
	t.Run("outside go.jp", func(t *testing.T) {
		x := e.ca.Identity(t, "taro@example.com")
		keys := pkitest.DKIMKeys(t, "example.com")
		e.srv.Add(testsign.Zone(t, keys)...)
		h := strings.Replace(outer, "taro@example.go.jp", "taro@example.com", 1)
		msg := testsign.DKIM(t, testsign.Detached(t, x, h, entity), keys, nil)
		rep := e.check(t, msg, e.opts())
		notVerified(t, rep, "example.com is not a government domain")
		status(t, rep, verify.CheckSMIME, "pass")
	})
	t.Run("inner From differs", func(t *testing.T) {
		inner := testsign.CRLF("From: Minister <minister@example.go.jp>\nContent-Type: text/plain\n\nTransfer the funds.\n")
		notVerified(t, e.check(t, e.seal(t, e.id, outer, inner), e.opts()), "differ from the message's: From")
	})
	t.Run("unsigned part added", func(t *testing.T) {
		// Insert a part before the close delimiter, then re-sign DKIM as a
		// forwarding relay might: the S/MIME structure must still fail.
		sm := testsign.Detached(t, e.id, outer, entity)
		close := []byte("--" + testsign.Boundary + "--\r\n")
		sm = bytes.Replace(sm, close, append([]byte("--"+testsign.Boundary+"\r\nContent-Type: text/plain\r\n\r\nNew bank account: 1234\r\n"), close...), 1)
		notVerified(t, e.check(t, testsign.DKIM(t, sm, e.keys, nil), e.opts()), "S/MIME: multipart/signed has 3 parts")
	})
	t.Run("certificate for another address", func(t *testing.T) {
		jiro := e.ca.Identity(t, "jiro@example.go.jp")
		notVerified(t, e.check(t, e.seal(t, jiro, outer, entity), e.opts()), "not for the From address")
	})
	t.Run("anchor not given", func(t *testing.T) {
		other := pkitest.New(t)
		id := other.Identity(t, addr)
		notVerified(t, e.check(t, e.seal(t, id, outer, entity), e.opts()), "does not chain to a configured trust anchor")
	})
	t.Run("self-signed signer", func(t *testing.T) {
		notVerified(t, e.check(t, e.seal(t, pkitest.SelfSigned(t, addr), outer, entity), e.opts()), "does not chain")
	})
	t.Run("no trust anchors", func(t *testing.T) {
		o := e.opts()
		o.TrustAnchors = nil
		notVerified(t, e.check(t, good, o), "no trust anchors")
	})
	t.Run("no S/MIME", func(t *testing.T) {
		msg := testsign.DKIM(t, testsign.CRLF(outer+"\nhello\n"), e.keys, nil)
		notVerified(t, e.check(t, msg, e.opts()), "no S/MIME signature")
	})
	t.Run("no DKIM", func(t *testing.T) {
		notVerified(t, e.check(t, testsign.Detached(t, e.id, outer, entity), e.opts()), "no DKIM signature")
	})
	t.Run("DKIM not aligned", func(t *testing.T) {
		keys := pkitest.DKIMKeys(t, "relay.example.net")
		e.srv.Add(testsign.Zone(t, keys)...)
		msg := testsign.DKIM(t, testsign.Detached(t, e.id, outer, entity), keys, nil)
		rep := e.check(t, msg, e.opts())
		notVerified(t, rep, "no passing DKIM signature aligned with example.go.jp (d=relay.example.net pass")
		status(t, rep, verify.CheckDMARC, "fail")
	})
	t.Run("DKIM d=go.jp does not align", func(t *testing.T) {
		keys := pkitest.DKIMKeys(t, "go.jp")
		e.srv.Add(testsign.Zone(t, keys)...)
		msg := testsign.DKIM(t, testsign.Detached(t, e.id, outer, entity), keys[:1], nil)
		notVerified(t, e.check(t, msg, e.opts()), "no passing DKIM signature aligned")
	})
	t.Run("DKIM tampered", func(t *testing.T) {
		msg := bytes.Replace(good, []byte("Subject: Notice of tax refund"), []byte("Subject: Notice of tax arrears"), 1)
		notVerified(t, e.check(t, msg, e.opts()), "no passing DKIM signature")
	})
	t.Run("body tampered", func(t *testing.T) {
		msg := bytes.Replace(good, []byte("on its way"), []byte("on its wax"), 1)
		notVerified(t, e.check(t, msg, e.opts()), "S/MIME: the signed content was altered")
	})
	t.Run("duplicate Subject", func(t *testing.T) {
		msg := append([]byte("Subject: Pay now\r\n"), good...)
		notVerified(t, e.check(t, msg, e.opts()), "duplicated header fields: Subject")
	})
	t.Run("two mailboxes", func(t *testing.T) {
		msg := bytes.Replace(good, []byte("From: Taro Yamada <taro@example.go.jp>"), []byte("From: Taro Yamada <taro@example.go.jp>, eve@example.com"), 1)
		notVerified(t, e.check(t, msg, e.opts()), "2 mailboxes")
	})
	t.Run("DKIM expired at the time asked", func(t *testing.T) {
		now := time.Now()
		msg := testsign.DKIM(t, testsign.Detached(t, e.id, outer, entity), e.keys, func(o *dkim.SignOptions) { o.Expiration = now.Add(time.Hour) })
		o := e.opts()
		o.Now = func() time.Time { return now.Add(2 * time.Hour) }
		notVerified(t, e.check(t, msg, o), "no passing DKIM signature")
	})
	t.Run("certificate expired at the time asked", func(t *testing.T) {
		o := e.opts()
		o.Now = func() time.Time { return time.Now().Add(60 * 24 * time.Hour) }
		notVerified(t, e.check(t, good, o), "expired or not yet valid")
	})
	t.Run("DKIM key in testing mode", func(t *testing.T) {
		keys := []pki.DKIMKey{{Domain: "example.go.jp", Selector: "testing", Signer: e.keys[1].Signer}}
		rec, _ := pki.DKIMRecord(keys[0].Signer.Public())
		e.srv.Add(`testing._domainkey.example.go.jp. 300 IN TXT "` + rec + `; t=y"`)
		msg := testsign.DKIM(t, testsign.Detached(t, e.id, outer, entity), keys, nil)
		notVerified(t, e.check(t, msg, e.opts()), "no passing DKIM signature")
	})
	// The header is read by package rfc5322 as received mail: what two
	// readers could split differently is refused or fails, never guessed.
	t.Run("obs-optional From counts as a From", func(t *testing.T) {
		// "From : " at the very start is a field (RFC 5322 4.5), not an
		// mbox "From " separator line to drop.
		msg := append([]byte("From : Boss <boss@example.go.jp>\r\n"), good...)
		notVerified(t, e.check(t, msg, e.opts()), "2 From fields")
	})
	t.Run("From as a group", func(t *testing.T) {
		// net/mail lists a group's members: one member must not make one
		// author (RFC 5322 3.6.2), as the signer refuses it too.
		msg := bytes.Replace(good, []byte("From: Taro Yamada <taro@example.go.jp>"), []byte("From: Taro Yamada: taro@example.go.jp;"), 1)
		rep := e.check(t, msg, e.opts())
		notVerified(t, rep, "group syntax")
		status(t, rep, verify.CheckFrom, "permerror")
	})
	t.Run("display name in an unknown charset", func(t *testing.T) {
		// A name that cannot be read cannot be checked for an address.
		msg := bytes.Replace(good, []byte("From: Taro Yamada <taro@example.go.jp>"), []byte("From: =?utf-7?Q?+AHQ-aro+AEA-example.go.jp?= <taro@example.go.jp>"), 1)
		rep := e.check(t, msg, e.opts())
		notVerified(t, rep, "unknown charset")
		status(t, rep, verify.CheckFrom, "permerror")
	})
	t.Run("duplicated MIME field", func(t *testing.T) {
		// RFC 2045 4: the singleton list is rfc5322's, MIME fields included.
		msg := append([]byte("MIME-Version: 1.0\r\n"), good...)
		notVerified(t, e.check(t, msg, e.opts()), "duplicated header fields: MIME-Version")
	})
	t.Run("bare CR in the header is refused", func(t *testing.T) {
		// A reader that breaks the line at the CR sees a second From.
		for _, pre := range []string{"Subject: Hello\rFrom: Boss <boss@example.com>\r\n", "X-A: \x00\r\n"} {
			_, err := verify.Message(context.Background(), strings.NewReader(pre+string(good)), e.opts())
			if !errors.Is(err, verify.ErrMessage) || !errors.Is(err, rfc5322.ErrSyntax) {
				t.Errorf("%q: err %v", pre, err)
			}
		}
	})
	t.Run("signed entity header that cannot be read", func(t *testing.T) {
		// A valid signature over an entity whose header hides a From
		// behind a bare CR: nothing can be compared, so it fails.
		inner := []byte("Content-Type: text/plain\r\nX-Note: a\rFrom: Minister <minister@example.go.jp>\r\n\r\nTransfer the funds.\r\n")
		rep := e.check(t, e.seal(t, e.id, outer, inner), e.opts())
		notVerified(t, rep, "the header inside the signed part cannot be read")
		status(t, rep, verify.CheckSMIME, "pass")
		status(t, rep, verify.CheckSignedHeaders, "fail")
	})
}

func TestDNSDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	msg := e.seal(t, e.id, outer, testsign.Entity("x"))
	for _, k := range e.keys {
		e.srv.SetServFail(pki.DKIMRecordName(k.Domain, k.Selector), true)
	}
	e.srv.SetServFail("_dmarc.example.go.jp", true)
	rep := e.check(t, msg, e.opts())
	notVerified(t, rep, "temperror")
	for _, r := range rep.DKIM {
		if r.Status != "temperror" {
			t.Errorf("dkim %s, want temperror", r.Status)
		}
	}
	status(t, rep, verify.CheckDMARC, "temperror")
}

func TestUnusable(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "just some text\nwithout a header\n", "\x00\x01\x02"} {
		if _, err := verify.Message(context.Background(), strings.NewReader(in), verify.Options{}); !errors.Is(err, verify.ErrMessage) {
			t.Errorf("%q: err %v", in, err)
		}
	}
	_, err := verify.Message(context.Background(), strings.NewReader("From: a@example.go.jp\n\n"+strings.Repeat("x", 100)), verify.Options{MaxSize: 50})
	if !errors.Is(err, verify.ErrTooLarge) {
		t.Errorf("err %v", err)
	}
}

func TestJSONAndAuthRes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rep := e.check(t, e.seal(t, e.id, outer, testsign.Entity("x")), e.opts())
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var generic struct {
		Verdict struct {
			Genuine      bool   `json:"genuine"`
			Summary      string `json:"summary"`
			Organization string `json:"organization"`
			Address      string `json:"address"`
		} `json:"verdict"`
		From   string `json:"from"`
		At     string `json:"at"`
		Checks []struct {
			Name     string            `json:"name"`
			Status   string            `json:"status"`
			Evidence map[string]string `json:"evidence"`
		} `json:"checks"`
	}
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	if !generic.Verdict.Genuine || generic.Verdict.Address != addr || generic.Verdict.Organization != "Ministry of Examples" || generic.From != addr {
		t.Fatalf("%s", b)
	}
	var names []string
	for _, c := range generic.Checks {
		names = append(names, c.Name)
	}
	if got := strings.Join(names, ","); got != "from,header,government-domain,smime,signed-headers,revocation,dkim,dkim,spf,dmarc" {
		t.Fatalf("checks %s", got)
	}
	ar := rep.AuthenticationResults("mx.example.com")
	id, results, err := authres.Parse(ar)
	if err != nil || id != "mx.example.com" {
		t.Fatalf("%q: %v", ar, err)
	}
	methods := map[string]authres.ResultValue{}
	for _, r := range results {
		switch r := r.(type) {
		case *authres.DKIMResult:
			methods["dkim"] = r.Value
			if r.Domain != "example.go.jp" {
				t.Errorf("dkim header.d %q", r.Domain)
			}
		case *authres.DMARCResult:
			methods["dmarc"] = r.Value
		case *authres.GenericResult:
			methods[r.Method] = r.Value
			if r.Method == "smime" && r.Params["body.smime-identifier"] != addr {
				t.Errorf("smime params %v", r.Params)
			}
		}
	}
	if methods["dkim"] != "pass" || methods["dmarc"] != "pass" || methods["smime"] != "pass" {
		t.Fatalf("%q -> %v", ar, methods)
	}
}

func TestRevoked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	msg := e.seal(t, e.id, outer, testsign.Entity("x"))
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: e.id.Certificate.SerialNumber, RevocationTime: time.Now()}},
	}, e.ca.Intermediate, e.ca.IntermediateKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "crl.der")
	if err := os.WriteFile(path, der, 0o644); err != nil {
		t.Fatal(err)
	}
	rc, err := revocation.New(revocation.Options{CRLFiles: []string{path}, Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	o := e.opts()
	o.Revocation = rc
	notVerified(t, e.check(t, msg, o), "revocation: the certificate was revoked")

	// Offline without a file: genuine, and the report says revocation was
	// not checked; with RequireRevocation it is not genuine.
	off, _ := revocation.New(revocation.Options{Offline: true})
	o.Revocation = off
	rep := e.check(t, msg, o)
	if c, _ := rep.Get(verify.CheckRevocation); !rep.Verdict.Genuine || c.Status != "none" || !strings.Contains(c.Reason, "offline") {
		t.Fatalf("offline: %s", strings.Join(rep.Lines(), "\n"))
	}
	o.RequireRevocation = true
	notVerified(t, e.check(t, msg, o), "revocation: offline")
}

func TestSPFAndDMARC(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	msg := e.seal(t, e.id, outer, testsign.Entity("x"))
	o := e.opts()
	o.ClientIP = netip.MustParseAddr("198.51.100.7") // not in the SPF record
	o.HELO = "mail.example.net"
	o.MailFrom = "bounce@example.go.jp"
	rep := e.check(t, msg, o)
	status(t, rep, verify.CheckSPF, "fail")
	// DMARC still passes on the aligned DKIM signature, and SPF is not
	// part of the verdict.
	status(t, rep, verify.CheckDMARC, "pass")
	if !rep.Verdict.Genuine {
		t.Fatalf("%s", strings.Join(rep.Lines(), "\n"))
	}
	ar := rep.AuthenticationResults("")
	if !strings.Contains(ar, "spf=fail") || !strings.Contains(ar, "smtp.mailfrom=bounce@example.go.jp") {
		t.Errorf("authres %q", ar)
	}
	// A domain without a DMARC record.
	e.srv.Remove("_dmarc.example.go.jp", "TXT")
	o = e.opts()
	o.Resolver, _ = lookup.New([]string{e.srv.Addr()}, lookup.Options{Timeout: 500 * time.Millisecond, Attempts: 1})
	rep = e.check(t, msg, o)
	status(t, rep, verify.CheckDMARC, "none")
}

func TestDKIMMustSignWhatIsShown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sm := testsign.Detached(t, e.id, outer, testsign.Entity("x"))
	// An aligned, valid signature that leaves Subject out: the Subject
	// could be anything.
	msg := testsign.DKIM(t, sm, e.keys, func(o *dkim.SignOptions) {
		o.HeaderKeys = []string{"From", "Date", "To", "Message-ID", "Content-Type"}
	})
	rep := e.check(t, msg, e.opts())
	notVerified(t, rep, "does not sign Subject")
	c, _ := rep.Get(verify.CheckDKIM)
	if c.Status != "pass" || c.Evidence["unsigned"] != "Subject" {
		t.Fatalf("%+v", c)
	}
}

// TestDateSkew: a signingTime more than an hour from the Date field is
// still a valid signature (the message stays GENUINE), but the smime check
// says what Thunderbird will show (RULES S8), with the skew as evidence.
func TestDateSkew(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	withDate := func(d time.Time) []byte {
		h := strings.Replace(outer, "Date: Thu, 26 Nov 2026 10:00:00 +0900", "Date: "+d.Format(time.RFC1123Z), 1)
		return e.seal(t, e.id, h, testsign.Entity("x"))
	}
	now := time.Now()
	for _, tc := range []struct {
		date  time.Time
		words string // in the reason; "" for none
	}{
		{now, ""},
		{now.Add(-50 * time.Minute), ""},
		{now.Add(-3 * time.Hour), "3h0m0s after the Date field"},
		{now.Add(2 * time.Hour), "2h0m0s before the Date field"},
	} {
		rep := e.check(t, withDate(tc.date), e.opts())
		if !rep.Verdict.Genuine {
			t.Fatalf("Date %v: not genuine:\n%s", tc.date, strings.Join(rep.Lines(), "\n"))
		}
		c, _ := rep.Get(verify.CheckSMIME)
		if c.Status != "pass" {
			t.Fatalf("Date %v: smime %s", tc.date, c.Status)
		}
		if tc.words == "" {
			if c.Reason != "" || c.Evidence["date-skew"] != "" {
				t.Errorf("Date %v: remark %q, skew %q", tc.date, c.Reason, c.Evidence["date-skew"])
			}
			continue
		}
		if !strings.Contains(c.Reason, tc.words) || !strings.Contains(c.Reason, "Thunderbird") || c.Evidence["date-skew"] == "" {
			t.Errorf("Date %v: reason %q, skew %q; want %q", tc.date, c.Reason, c.Evidence["date-skew"], tc.words)
		}
	}
}
