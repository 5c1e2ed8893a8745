package signer

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/smallstep/pkcs7"

	"github.com/kakuin/kakuin/govdomain"
	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
	"github.com/kakuin/kakuin/rfc5322"
	"github.com/kakuin/kakuin/signer/mime7bit"
)

// identities is a fixed pki.IdentitySource.
type identities map[string]*pki.Identity

func (m identities) Identity(_ context.Context, addr string) (*pki.Identity, error) {
	if id, ok := m[addr]; ok {
		return id, nil
	}
	return nil, fmt.Errorf("%w: %s", pki.ErrNoCertificate, addr)
}

type brokenSource struct{}

func (brokenSource) Identity(context.Context, string) (*pki.Identity, error) {
	return nil, fmt.Errorf("%w: hsm offline", pki.ErrIssue)
}

type fixture struct {
	ca   *pkitest.CA
	keys []pki.DKIMKey
	ids  identities
	now  time.Time
	// start is when the fixture was made: signingTime, which
	// smallstep/pkcs7 takes from time.Now, lies between it and the check.
	start time.Time
}

func newFixture(t testing.TB, kt pkitest.KeyType) *fixture {
	start := time.Now()
	ca := pkitest.New(t)
	return &fixture{
		start: start,
		ca:    ca,
		keys:  pkitest.DKIMKeys(t, "example.go.jp"),
		ids:   identities{"info@example.go.jp": ca.Identity(t, "info@example.go.jp", pkitest.WithKeyType(kt))},
		now:   ca.Now.Add(time.Minute),
	}
}

func (f *fixture) options() Options {
	return Options{
		Identities: f.ids,
		DKIM:       pkitest.DKIMKeySource{"example.go.jp": f.keys},
		Now:        func() time.Time { return f.now },
		Hostname:   "kakuin.example.go.jp",
	}
}

func (f *fixture) sign(t testing.TB, opts Options, msg string) (string, Result, error) {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := s.Sign(context.Background(), &out, strings.NewReader(msg))
	if err != nil && out.Len() != 0 {
		t.Errorf("error %v, yet %d octets written to dst", err, out.Len())
	}
	return out.String(), res, err
}

func (f *fixture) dkimOptions(t testing.TB) *dkim.VerifyOptions {
	records := pkitest.DKIMRecords(t, f.keys)
	return &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if r, ok := records[strings.TrimSuffix(name, ".")]; ok {
			return []string{r}, nil
		}
		return nil, fmt.Errorf("no TXT at %s", name)
	}}
}

// verifyDKIM checks that the message carries exactly an rsa-sha256 and an
// ed25519-sha256 signature, both valid, oversigning From, without l=.
func (f *fixture) verifyDKIM(t testing.TB, out string) {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(strings.NewReader(out), f.dkimOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 {
		t.Fatalf("%d DKIM signatures, want 2", len(vs))
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("DKIM d=%s: %v", v.Domain, v.Err)
		}
	}
	h, _, err := rfc5322.Parse([]byte(out), nil)
	if err != nil {
		t.Fatal(err)
	}
	algs := map[string]bool{}
	for _, f := range h.Get("DKIM-Signature") {
		v := strings.NewReplacer(" ", "", "\t", "").Replace(f.Value)
		for _, tag := range strings.Split(v, ";") {
			k, val, _ := strings.Cut(tag, "=")
			switch k {
			case "a":
				algs[val] = true
			case "l":
				t.Error("l= present (RULES D5)")
			case "h":
				if n := strings.Count(strings.ToLower(val+":"), "from:"); n != 2 {
					t.Errorf("From signed %d times, want 2 (oversigned): h=%s", n, val)
				}
			}
		}
	}
	if !algs["rsa-sha256"] || !algs["ed25519-sha256"] || len(algs) != 2 {
		t.Errorf("algorithms %v", algs)
	}
}

// smime splits an S/MIME message and verifies its signature with
// smallstep/pkcs7 against the test root; it returns the outer header and
// the signed entity.
func (f *fixture) smime(t testing.TB, out string) (rfc5322.Header, []byte) {
	t.Helper()
	h, off, err := rfc5322.Parse([]byte(out), nil)
	if err != nil {
		t.Fatal(err)
	}
	cts := h.Get("Content-Type")
	if len(cts) != 1 {
		t.Fatalf("%d Content-Type fields", len(cts))
	}
	mt, params, err := mime.ParseMediaType(cts[0].Value)
	if err != nil || mt != "multipart/signed" || params["protocol"] != "application/pkcs7-signature" || params["micalg"] != "sha-256" {
		t.Fatalf("Content-Type %q: %v", cts[0].Value, err) // RULES S1
	}
	body := out[off:]
	delim := "\r\n--" + params["boundary"]
	i := strings.Index(body, "--"+params["boundary"]+"\r\n")
	if i < 0 {
		t.Fatal("no first delimiter")
	}
	rest := body[i+len(params["boundary"])+4:]
	j := strings.Index(rest, delim+"\r\n")
	if j < 0 {
		t.Fatal("no second delimiter")
	}
	entity := []byte(rest[:j])
	second := rest[j+len(delim)+2:]
	k := strings.Index(second, delim+"--")
	if k < 0 {
		t.Fatal("no close delimiter")
	}
	ph, b64, _ := strings.Cut(second[:k], "\r\n\r\n")
	if !strings.Contains(ph, "application/pkcs7-signature; name=smime.p7s") {
		t.Errorf("signature part header %q", ph)
	}
	der, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(b64, "\r\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		t.Fatal(err)
	}
	p7.Content = entity
	if err := p7.VerifyWithChainAtTime(f.ca.Roots(), f.now); err != nil {
		t.Fatalf("S/MIME: %v", err)
	}
	var st time.Time
	if err := p7.UnmarshalSignedAttribute(pkcs7.OIDAttributeSigningTime, &st); err != nil ||
		st.Before(f.start.Truncate(time.Second)) || st.After(time.Now()) {
		t.Errorf("signingTime %v (%v), want within [%v, now]", st, err, f.start)
	}
	return h, entity
}

const plain = "Received: from mua.example.go.jp by mta.example.go.jp\r\n" +
	"From: =?UTF-8?B?5Y6a55Sf5Yq05YON55yB?= <info@example.go.jp>\r\n" +
	"To: citizen@example.com\r\n" +
	"Subject: =?UTF-8?B?44GK55+l44KJ44Gb?=\r\n" +
	"Date: Thu, 26 Nov 2026 09:00:00 +0900\r\n" +
	"Message-ID: <notice-1@example.go.jp>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=UTF-8\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"DKIM-Signature: v=1; a=rsa-sha256; d=example.go.jp; s=old; h=From; bh=AAAA; b=AAAA\r\n" +
	"\r\n" +
	"お知らせです。\r\n" +
	"-- \r\n" +
	"Ministry\r\n"

func TestSign(t *testing.T) {
	t.Parallel()
	for _, kt := range []struct {
		name string
		typ  pkitest.KeyType
		alg  string
	}{{"rsa", pkitest.RSA2048, "rsa-sha256"}, {"ecdsa", pkitest.ECDSAP256, "ecdsa-sha256"}} {
		t.Run(kt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kt.typ)
			out, res, err := f.sign(t, f.options(), plain)
			if err != nil {
				t.Fatal(err)
			}
			if res.From != "info@example.go.jp" || !res.SMIME || res.SMIMEAlgorithm != kt.alg || len(res.DKIM) != 2 ||
				res.DKIM[0] != "d=example.go.jp s="+pkitest.DKIMSelectorRSA+" a=rsa-sha256" ||
				res.DKIM[1] != "d=example.go.jp s="+pkitest.DKIMSelectorEd25519+" a=ed25519-sha256" {
				t.Errorf("Result %+v", res)
			}
			f.verifyDKIM(t, out)
			h, entity := f.smime(t, out)
			// The old DKIM-Signature is gone: only our two remain.
			if n := h.Count("DKIM-Signature"); n != 2 || strings.Contains(out, "s=old") {
				t.Errorf("%d DKIM-Signature fields; old one kept: %v", n, strings.Contains(out, "s=old"))
			}
			// Content-* fields moved into the entity; the rest stayed.
			for _, name := range []string{"Received", "From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"} {
				if h.Count(name) != 1 {
					t.Errorf("outer header has %d %s", h.Count(name), name)
				}
			}
			if h.Count("Content-Transfer-Encoding") != 0 {
				t.Error("Content-Transfer-Encoding left outside")
			}
			if h.Get("Message-ID")[0].Value != "<notice-1@example.go.jp>" || h.Get("Date")[0].Value != "Thu, 26 Nov 2026 09:00:00 +0900" {
				t.Error("existing Date or Message-ID changed")
			}
			// The signed entity is what mime7bit makes of the Content-*
			// fields and the body.
			var want bytes.Buffer
			in := "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + plain[strings.Index(plain, "\r\n\r\n")+4:]
			if err := mime7bit.Normalize(&want, strings.NewReader(in)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(entity, want.Bytes()) {
				t.Errorf("signed entity\n%q\nwant\n%q", entity, want.Bytes())
			}
			for i, c := range []byte(out) {
				if c >= 0x80 {
					t.Fatalf("8-bit octet at %d", i)
				}
			}
			opensslVerify(t, f, out, true)
			opensslVerify(t, f, strings.Replace(out, "Ministry", "Ministrx", 1), false)
		})
	}
}

// opensslVerify runs `openssl cms -verify` against the test root alone.
func opensslVerify(t *testing.T, f *fixture, out string, wantOK bool) {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl not installed (make deps): %v", err)
	}
	dir := t.TempDir()
	root, msg := filepath.Join(dir, "root.pem"), filepath.Join(dir, "out.eml")
	if err := os.WriteFile(root, f.ca.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(msg, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := exec.Command(openssl, "cms", "-verify", "-in", msg, "-CAfile", root, "-no-CApath", "-no-CAstore",
		"-purpose", "smimesign", "-out", os.DevNull).CombinedOutput()
	if wantOK != (err == nil) {
		t.Errorf("openssl cms -verify: %v (want ok=%v)\n%s", err, wantOK, o)
	}
}

func TestSignAddsDateAndMessageID(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pkitest.ECDSAP256)
	msg := "From: info@example.go.jp\nTo: a@example.com\nSubject: bare LF\n\nline one\nline two\n"
	out, _, err := f.sign(t, f.options(), msg)
	if err != nil {
		t.Fatal(err)
	}
	f.verifyDKIM(t, out)
	h, entity := f.smime(t, out)
	if d := h.Get("Date"); len(d) != 1 || d[0].Value != f.now.Format(time.RFC1123Z) {
		t.Errorf("Date %q, want %q", d, f.now.Format(time.RFC1123Z))
	}
	mid := h.Get("Message-ID")
	if len(mid) != 1 || !strings.HasPrefix(mid[0].Value, "<") || !strings.HasSuffix(mid[0].Value, "@kakuin.example.go.jp>") || len(mid[0].Value) < 30 {
		t.Errorf("Message-ID %q", mid)
	}
	if h.Count("MIME-Version") != 1 {
		t.Error("MIME-Version not added")
	}
	if strings.Contains(strings.ReplaceAll(out, "\r\n", ""), "\n") {
		t.Error("bare LF in the output")
	}
	if !strings.HasSuffix(string(entity), "line one\r\nline two\r\n") {
		t.Errorf("entity %q", entity)
	}
	// Without Hostname, the From domain.
	opts := f.options()
	opts.Hostname = ""
	out, _, err = f.sign(t, opts, msg)
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ = rfc5322.Parse([]byte(out), nil)
	if !strings.HasSuffix(h.Get("Message-ID")[0].Value, "@example.go.jp>") {
		t.Errorf("Message-ID %q", h.Get("Message-ID")[0].Value)
	}
}

func TestSignRefusesMessages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pkitest.ECDSAP256)
	test := func(name, msg string, want error) {
		t.Helper()
		_, _, err := f.sign(t, f.options(), msg)
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	const rest = "To: a@example.com\r\nSubject: s\r\n\r\nbody\r\n"
	for _, field := range []string{"From: info@example.go.jp", "Subject: again", "To: b@example.com", "Cc: c@example.com",
		"Date: Thu, 26 Nov 2026 09:00:00 +0900", "Message-ID: <a@b>", "Reply-To: r@example.go.jp", "Sender: info@example.go.jp",
		"Content-Type: text/html", "MIME-Version: 1.0"} {
		name, _, _ := strings.Cut(field, ":")
		msg := "From: info@example.go.jp\r\n" + field + "\r\n" + rest
		if name != "From" && name != "Subject" && name != "To" {
			msg = "From: info@example.go.jp\r\n" + field + "\r\n" + field + "\r\n" + rest
		}
		_, _, err := f.sign(t, f.options(), msg)
		if !errors.Is(err, ErrMessage) || !strings.Contains(err.Error(), name) {
			t.Errorf("duplicate %s: %v", name, err)
		}
	}
	test("no From", "To: a@example.com\r\n\r\nbody\r\n", ErrMessage)
	test("two mailboxes", "From: info@example.go.jp, other@example.go.jp\r\n"+rest, ErrMessage)
	test("group", "From: g: info@example.go.jp;\r\n"+rest, ErrMessage)
	test("header syntax", "From: info@example.go.jp\r\n bad\r\nNo colon\r\n"+rest, ErrMessage)
	test("long header line", "From: info@example.go.jp\r\nX: "+strings.Repeat("x", 1000)+"\r\n"+rest, ErrMessage)
	test("malformed mime", "From: info@example.go.jp\r\nContent-Type: multipart/mixed\r\n"+rest, ErrMessage)
	test("unknown transfer encoding", "From: info@example.go.jp\r\nContent-Transfer-Encoding: x-unknown\r\n"+rest, ErrMessage)

	test("evilgo.jp", "From: info@evilgo.jp\r\n"+rest, ErrSender)
	test("go.jp.example.com", "From: info@go.jp.example.com\r\n"+rest, ErrSender)
	test("bare go.jp", "From: info@go.jp\r\n"+rest, ErrSender)
	test("display name", "From: \"info@example.go.jp\" <evil@example.com>\r\n"+rest, ErrSender)
	test("comment", "From: evil@example.com (info@example.go.jp)\r\n"+rest, ErrSender)
	test("quoted local part", "From: \"info@example.go.jp\"@example.com\r\n"+rest, ErrSender)
	test("Sender outside", "From: info@example.go.jp\r\nSender: evil@example.com\r\n"+rest, ErrSender)

	// With other suffixes configured, go.jp is no longer enough.
	opts := f.options()
	opts.Senders = govdomain.Policy{Suffixes: []string{"lg.jp"}}
	s, _ := New(opts)
	var out bytes.Buffer
	if _, err := s.Sign(context.Background(), &out, strings.NewReader("From: info@example.go.jp\r\n"+rest)); !errors.Is(err, ErrSender) || out.Len() != 0 {
		t.Errorf("lg.jp policy: %v, %d octets", err, out.Len())
	}
}

func TestMissingCertificate(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pkitest.ECDSAP256)
	msg := "From: other@example.go.jp\r\nTo: a@example.com\r\nSubject: s\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n日本語\r\n"

	opts := f.options()
	if _, _, err := f.sign(t, opts, msg); !errors.Is(err, ErrNoCertificate) || !errors.Is(err, pki.ErrNoCertificate) {
		t.Errorf("Reject: %v", err)
	}
	opts.Identities = nil
	if _, _, err := f.sign(t, opts, msg); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("Reject without a source: %v", err)
	}

	for _, ids := range []pki.IdentitySource{f.ids, nil} {
		opts := f.options()
		opts.Identities = ids
		opts.MissingCertificate = DKIMOnly
		out, res, err := f.sign(t, opts, msg)
		if err != nil {
			t.Fatal(err)
		}
		if res.SMIME || len(res.DKIM) != 2 {
			t.Errorf("Result %+v", res)
		}
		f.verifyDKIM(t, out)
		h, off, err := rfc5322.Parse([]byte(out), nil)
		if err != nil {
			t.Fatal(err)
		}
		ct := h.Get("Content-Type")
		if len(ct) != 1 || !strings.HasPrefix(ct[0].Value, "text/plain") || h.Count("Content-Transfer-Encoding") != 1 {
			t.Errorf("DKIM-only header %q", h)
		}
		// Still 7-bit: the body was normalised.
		for _, c := range []byte(out) {
			if c >= 0x80 {
				t.Fatal("8-bit octet in a DKIM-only message")
			}
		}
		if strings.Contains(out[off:], "multipart/signed") {
			t.Error("S/MIME applied")
		}
	}

	// A message that ends after its header, without a line end.
	opts = f.options()
	opts.Identities, opts.MissingCertificate = nil, DKIMOnly
	out, _, err := f.sign(t, opts, "From: info@example.go.jp\r\nSubject: no body")
	if err != nil {
		t.Fatal(err)
	}
	f.verifyDKIM(t, out)
	if !strings.Contains(out, "\r\nSubject: no body\r\n") {
		t.Errorf("last field not ended: %q", out)
	}

	opts = f.options()
	opts.Identities = brokenSource{}
	opts.MissingCertificate = DKIMOnly
	if _, _, err := f.sign(t, opts, msg); !errors.Is(err, ErrKey) || !errors.Is(err, pki.ErrIssue) {
		t.Errorf("issuing failure: %v, want ErrKey (a transient failure, not DKIM-only)", err)
	}
}

type failingSigner struct{ crypto.Signer }

func (failingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("hsm: session closed")
}

func TestKeyErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pkitest.ECDSAP256)
	msg := "From: info@example.go.jp\r\nTo: a@example.com\r\nSubject: s\r\n\r\nbody\r\n"
	test := func(name string, opts Options, want ...error) {
		t.Helper()
		_, _, err := f.sign(t, opts, msg)
		for _, w := range want {
			if !errors.Is(err, w) {
				t.Errorf("%s: %v, want %v", name, err, w)
			}
		}
	}
	opts := f.options()
	opts.DKIM = pkitest.DKIMKeySource{}
	test("no DKIM key", opts, ErrKey, pki.ErrNoDKIMKey)

	opts = f.options()
	opts.DKIM = pkitest.DKIMKeySource{"example.go.jp": {f.keys[1]}}
	test("ed25519 alone", opts, ErrKey)

	opts = f.options()
	bad := []pki.DKIMKey{f.keys[0], f.keys[1]}
	bad[0].Signer = failingSigner{bad[0].Signer}
	opts.DKIM = pkitest.DKIMKeySource{"example.go.jp": bad}
	test("DKIM key fails", opts, ErrKey)

	opts = f.options()
	other := pkitest.DKIMKeys(t, "other.go.jp")
	opts.DKIM = pkitest.DKIMKeySource{"example.go.jp": other}
	test("unaligned d=", opts, ErrKey)

	opts = f.options()
	id := *f.ids["info@example.go.jp"]
	id.Signer = failingSigner{id.Signer}
	opts.Identities = identities{"info@example.go.jp": &id}
	test("S/MIME key fails", opts, ErrKey)

	opts = f.options()
	opts.Identities = identities{"info@example.go.jp": f.ca.Identity(t, "other@example.go.jp", pkitest.WithKeyType(pkitest.ECDSAP256))}
	test("certificate for another address", opts, ErrKey) // RULES S6

	opts = f.options()
	opts.Identities = identities{"info@example.go.jp": f.ca.Identity(t, "INFO@Example.GO.JP", pkitest.WithKeyType(pkitest.ECDSAP256))}
	if _, _, err := f.sign(t, opts, msg); err != nil {
		t.Errorf("SAN in other case: %v", err)
	}

	if _, err := New(Options{}); !errors.Is(err, ErrKey) {
		t.Errorf("New without DKIM: %v", err)
	}
}

// A parent domain's key signs for a subdomain (RULES D6).
func TestParentDomainKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pkitest.ECDSAP256)
	f.ids["info@sub.example.go.jp"] = f.ca.Identity(t, "info@sub.example.go.jp", pkitest.WithKeyType(pkitest.ECDSAP256))
	opts := f.options()
	opts.DKIM = parentSource{f.keys}
	out, res, err := f.sign(t, opts, "From: info@sub.example.go.jp\r\nSubject: s\r\n\r\nbody\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.DKIM[0], "d=example.go.jp ") {
		t.Errorf("DKIM %v", res.DKIM)
	}
	f.verifyDKIM(t, out)
	f.smime(t, out)
}

type parentSource struct{ keys []pki.DKIMKey }

func (p parentSource) DKIMKeys(domain string) ([]pki.DKIMKey, error) {
	if govdomain.Within(domain, "example.go.jp") {
		return p.keys, nil
	}
	return nil, pki.ErrNoDKIMKey
}

func TestContextCancelled(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pkitest.ECDSAP256)
	s, _ := New(f.options())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	_, err := s.Sign(ctx, &out, strings.NewReader("From: info@example.go.jp\r\n\r\nx\r\n"))
	if !errors.Is(err, context.Canceled) || out.Len() != 0 {
		t.Errorf("%v, %d octets", err, out.Len())
	}
}

func TestSpool(t *testing.T) {
	t.Parallel()
	s := newSpool(10)
	var want bytes.Buffer
	for i := range 3000 {
		p := bytes.Repeat([]byte{byte(i)}, i%97)
		s.Write(p)
		want.Write(p)
	}
	if s.Len() != want.Len() || len(s.chunks) < 2 {
		t.Fatalf("Len %d, want %d; %d chunks", s.Len(), want.Len(), len(s.chunks))
	}
	for range 2 { // readable twice, by Read and by WriteTo
		got, _ := io.ReadAll(io.LimitReader(s.Reader(), int64(s.Len())+1))
		var wt bytes.Buffer
		s.Reader().(io.WriterTo).WriteTo(&wt)
		if !bytes.Equal(got, want.Bytes()) || !bytes.Equal(wt.Bytes(), want.Bytes()) {
			t.Fatal("spool content differs")
		}
	}
}
