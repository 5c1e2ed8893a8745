package dkimsign

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
	"github.com/kakuin/kakuin/rfc5322"
)

const message = "From: =?UTF-8?B?5Y6a55Sf5Yq05YON55yB?= <info@example.go.jp>\r\n" +
	"To: citizen@example.com\r\n" +
	"Subject: Notice\r\n" +
	"Date: Thu, 26 Nov 2026 09:00:00 +0900\r\n" +
	"Message-ID: <1@example.go.jp>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=us-ascii\r\n" +
	"Received: from a by b; Thu, 26 Nov 2026 09:00:00 +0900\r\n" +
	"List-Id: <notices.example.go.jp>\r\n" +
	"\r\n" +
	"Hello,  world \r\n" +
	"\r\n\r\n"

// lookup serves the DKIM records of keys to go-msgauth.
func lookup(t testing.TB, keys []pki.DKIMKey) *dkim.VerifyOptions {
	records := pkitest.DKIMRecords(t, keys)
	return &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if r, ok := records[strings.TrimSuffix(name, ".")]; ok {
			return []string{r}, nil
		}
		return nil, fmt.Errorf("no TXT at %s", name)
	}}
}

// verify returns one error (nil: pass) per DKIM signature, top first.
func verify(t *testing.T, msg string, opts *dkim.VerifyOptions) []error {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(strings.NewReader(msg), opts)
	if err != nil {
		t.Fatal(err)
	}
	errs := make([]error, len(vs))
	for i, v := range vs {
		errs[i] = v.Err
	}
	return errs
}

func signed(t *testing.T, msg string, keys []pki.DKIMKey) (string, []Signature) {
	t.Helper()
	sigs, err := Sign(strings.NewReader(msg), keys)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, s := range sigs {
		b.WriteString(s.Field)
	}
	return b.String() + msg, sigs
}

func tags(field string) map[string]string {
	v := strings.TrimPrefix(field, "DKIM-Signature:")
	v = strings.NewReplacer("\r\n", "", " ", "", "\t", "").Replace(v)
	m := map[string]string{}
	for _, kv := range strings.Split(v, ";") {
		k, val, ok := strings.Cut(kv, "=")
		if ok {
			m[k] = val
		}
	}
	return m
}

func TestSign(t *testing.T) {
	t.Parallel()
	keys := pkitest.DKIMKeys(t, "example.go.jp")
	opts := lookup(t, keys)
	out, sigs := signed(t, message, keys)
	if len(sigs) != 2 {
		t.Fatalf("%d signatures", len(sigs))
	}
	for i, e := range verify(t, out, opts) {
		if e != nil {
			t.Errorf("signature %d: %v", i, e)
		}
	}
	wantAlg := []string{"rsa-sha256", "ed25519-sha256"}
	for i, s := range sigs {
		tg := tags(s.Field)
		if tg["a"] != wantAlg[i] || s.Algorithm != wantAlg[i] {
			t.Errorf("signature %d: a=%s (%s), want %s", i, tg["a"], s.Algorithm, wantAlg[i])
		}
		if tg["c"] != "relaxed/relaxed" {
			t.Errorf("c=%s", tg["c"])
		}
		if _, ok := tg["l"]; ok {
			t.Error("l= present (RULES D5)")
		}
		if tg["d"] != "example.go.jp" || tg["s"] != keys[i].Selector || s.String() != "d=example.go.jp s="+keys[i].Selector+" a="+wantAlg[i] {
			t.Errorf("d=%s s=%s %q", tg["d"], tg["s"], s.String())
		}
		h := strings.Split(strings.ToLower(tg["h"]), ":")
		count := func(name string) int {
			return len(slices.DeleteFunc(slices.Clone(h), func(x string) bool { return x != name }))
		}
		// RULES D1: present singletons twice, absent ones once.
		for name, want := range map[string]int{"from": 2, "subject": 2, "date": 2, "to": 2, "message-id": 2,
			"mime-version": 2, "content-type": 2, "cc": 1, "reply-to": 1, "content-transfer-encoding": 1,
			"list-id": 1, "received": 0, "dkim-signature": 0} {
			if got := count(name); got != want {
				t.Errorf("h= lists %s %d times, want %d: %s", name, got, want, tg["h"])
			}
		}
		if !strings.HasSuffix(s.Field, "\r\n") || !strings.HasPrefix(s.Field, "DKIM-Signature:") {
			t.Errorf("field %q", s.Field)
		}
	}

	// What oversigning protects against, and what it lets through.
	test := func(name, msg string, wantPass bool) {
		t.Helper()
		for i, e := range verify(t, msg, opts) {
			if (e == nil) != wantPass {
				t.Errorf("%s: signature %d: %v, want pass=%v", name, i, e, wantPass)
			}
		}
	}
	sigFields := out[:len(out)-len(message)]
	test("Received added on top", "Received: from c by d\r\n"+out, true)
	test("second Subject above", sigFields+"Subject: Urgent\r\n"+message, false)
	test("second From above", sigFields+"From: evil@example.com\r\n"+message, false)
	test("Reply-To added", sigFields+"Reply-To: evil@example.com\r\n"+message, false)
	test("Cc added", sigFields+"Cc: evil@example.com\r\n"+message, false)
	test("body changed", strings.Replace(out, "Hello", "Hallo", 1), false)
	test("whitespace changed (relaxed)", strings.Replace(out, "Hello,  world ", "Hello, world", 1), true)
	test("trailing blank lines dropped (relaxed)", strings.TrimSuffix(out, "\r\n\r\n"), true)
}

func TestSignTwiceSameField(t *testing.T) {
	t.Parallel()
	// A non-singleton field of Signed: signed as often as it occurs.
	msg := "From: a@example.go.jp\r\nResent-From: b@example.go.jp\r\nResent-From: c@example.go.jp\r\n\r\nx\r\n"
	keys := pkitest.DKIMKeys(t, "example.go.jp")
	out, sigs := signed(t, msg, keys)
	h := strings.ToLower(tags(sigs[0].Field)["h"])
	if strings.Count(h, "resent-from") != 2 {
		t.Errorf("h=%s", h)
	}
	for i, e := range verify(t, out, lookup(t, keys)) {
		if e != nil {
			t.Errorf("signature %d: %v", i, e)
		}
	}
}

func TestHeaderKeys(t *testing.T) {
	t.Parallel()
	h, _, err := rfc5322.Parse([]byte("From: a@example.go.jp\r\nSubject: x\r\n\r\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := HeaderKeys(h)
	want := []string{"From", "From", "Sender", "Reply-To", "Subject", "Subject", "Date", "To", "Cc",
		"Message-ID", "In-Reply-To", "References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"}
	if !slices.Equal(got, want) {
		t.Errorf("HeaderKeys = %q\nwant %q", got, want)
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	keys := pkitest.DKIMKeys(t, "example.go.jp")
	rsaKey, edKey := keys[0], keys[1]
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, ed2, _ := ed25519.GenerateKey(rand.Reader)
	test := func(name string, keys []pki.DKIMKey, want error) {
		t.Helper()
		_, err := Sign(strings.NewReader(message), keys)
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	test("none", nil, ErrKey)
	test("ed25519 alone", []pki.DKIMKey{edKey}, ErrKey)
	test("rsa-1024", []pki.DKIMKey{{Domain: "example.go.jp", Selector: "s", Signer: small}, edKey}, ErrKey)
	test("no selector", []pki.DKIMKey{{Domain: "example.go.jp", Signer: rsaKey.Signer}}, ErrKey)
	test("rsa alone", []pki.DKIMKey{rsaKey}, nil)
	test("rotation: two of each", []pki.DKIMKey{rsaKey, edKey, {Domain: "example.go.jp", Selector: "new", Signer: ed2}}, nil)
	if _, err := Sign(strings.NewReader("Subject: x\r\n\r\n"), keys); !errors.Is(err, ErrMessage) {
		t.Errorf("no From: %v", err)
	}
	// fuzz b055ec39: no empty line after the header; verifiers need it.
	if _, err := Sign(strings.NewReader("From: a@example.go.jp\r\n"), keys); !errors.Is(err, ErrMessage) {
		t.Errorf("no empty line: %v", err)
	}
	if _, err := Sign(strings.NewReader("From: a@example.go.jp\r\n\nbody\r\n"), keys); !errors.Is(err, ErrMessage) {
		t.Errorf("LF empty line: %v", err)
	}
	if _, err := Sign(strings.NewReader(" bad\r\n\r\n"), keys); !errors.Is(err, ErrMessage) {
		t.Errorf("bad header: %v", err)
	}
}

// msgauthBodyHash signs msg with go-msgauth (Ed25519, relaxed/relaxed)
// and returns its bh=: the reference for relaxed body canonicalisation.
func msgauthBodyHash(t testing.TB, msg string, key pki.DKIMKey) string {
	t.Helper()
	s, err := dkim.NewSigner(&dkim.SignOptions{Domain: key.Domain, Selector: key.Selector, Signer: key.Signer,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: []string{"From"}})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(s, msg)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return tags(s.Signature())["bh"]
}

func TestBodyHashMatchesMsgauth(t *testing.T) {
	t.Parallel()
	keys := pkitest.DKIMKeys(t, "example.go.jp")
	for _, body := range []string{
		"", "\r\n", "\r\n\r\n", "x", "x\r\n", "a  b\t\tc \r\n\r\n \r\nd\t\r\n\r\n\r\n",
		" leading\r\n\ttab\r\n", "   \r\n  \r\n", strings.Repeat("long line ", 2000) + "\r\n",
	} {
		msg := "From: a@example.go.jp\r\n\r\n" + body
		sigs, err := Sign(strings.NewReader(msg), keys)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := tags(sigs[0].Field)["bh"], msgauthBodyHash(t, msg, keys[1]); got != want {
			t.Errorf("body %q: bh=%s, go-msgauth %s", body, got, want)
		}
	}
}

// TestRelaxedHeader: the header fields are signed with relaxed
// canonicalisation (RFC 6376 3.4.2): case of the name, white space around
// the colon, runs of white space and folding may change in transit;
// anything else breaks the signature.
func TestRelaxedHeader(t *testing.T) {
	t.Parallel()
	keys := pkitest.DKIMKeys(t, "example.go.jp")
	opts := lookup(t, keys)
	const msg = "From: a@example.go.jp\r\n" +
		"Subject:  a   b \t\r\n" +
		"To: a@example.com,\r\n b@example.com\r\n" +
		"Cc:\r\n" +
		"\r\nx\r\n"
	out, _ := signed(t, msg, keys)
	for name, tc := range map[string]struct {
		old, new string
		pass     bool
	}{
		"as signed":                     {"", "", true},
		"runs of white space":           {"Subject:  a   b \t\r\n", "Subject: a b\r\n", true},
		"name case, space before colon": {"\r\nSubject:", "\r\nSUBJECT \t:", true},
		"refolded":                      {"To: a@example.com,\r\n b@example.com", "To: a@example.com, b@example.com", true},
		"folded more":                   {"To: a@example.com,", "To:\r\n a@example.com,", true},
		"empty value spaced":            {"Cc:\r\n", "Cc: \r\n", true},
		"letter changed":                {"Subject:  a", "Subject:  A", false},
		"space inserted in a word":      {"example.com,\r\n b@", "exam ple.com,\r\n b@", false},
	} {
		m := strings.Replace(out, tc.old, tc.new, 1)
		for i, e := range verify(t, m, opts) {
			if (e == nil) != tc.pass {
				t.Errorf("%s: signature %d: %v, want pass=%v", name, i, e, tc.pass)
			}
		}
	}
}

func TestBareLineEndsRefused(t *testing.T) {
	t.Parallel()
	keys := pkitest.DKIMKeys(t, "example.go.jp")
	for _, body := range []string{"a\nb\r\n", "a\rb\r\n", "a\r"} {
		if _, err := Sign(strings.NewReader("From: a@example.go.jp\r\n\r\n"+body), keys); !errors.Is(err, ErrMessage) {
			t.Errorf("body %q: %v", body, err)
		}
	}
}

// TestTimestamp: t= is the signing time (RFC 6376 3.5), which go-msgauth
// takes from time.Now; and the field's lines fit RFC 5322 2.1.1.
func TestTimestamp(t *testing.T) {
	t.Parallel()
	keys := pkitest.DKIMKeys(t, "example.go.jp")
	before := time.Now().Unix()
	sigs, err := Sign(strings.NewReader(message), keys)
	after := time.Now().Unix()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sigs {
		if got, err := strconv.ParseInt(tags(s.Field)["t"], 10, 64); err != nil || got < before || got > after {
			t.Errorf("t=%d (%v), want within [%d, %d]", got, err, before, after)
		}
		// RFC 5322 2.1.1: at most 998 octets per line (MUST). go-msgauth
		// folds between tags at about 75 characters not counting the
		// field name, so the first line may pass the 78 of the SHOULD (82
		// with ed25519-sha256), and writes h= unfolded: h= has no white
		// space at which it could be folded after signing. The b= value
		// is folded at 75.
		inB := false
		for _, line := range strings.Split(strings.TrimSuffix(s.Field, "\r\n"), "\r\n") {
			inB = inB || strings.HasPrefix(line, " b=")
			if len(line) > 998 || inB && len(line) > 78 {
				t.Errorf("line of %d characters: %q", len(line), line)
			}
		}
	}
}

// TestLongHeaderList: a header list too long for one line is refused
// rather than written over RFC 5322's 998 octets.
func TestLongHeaderList(t *testing.T) {
	t.Parallel()
	keys := pkitest.DKIMKeys(t, "example.go.jp")
	msg := "From: a@example.go.jp\r\n" + strings.Repeat("Resent-Message-ID: <1@example.go.jp>\r\n", 60) + "\r\nx\r\n"
	if _, err := Sign(strings.NewReader(msg), keys); !errors.Is(err, ErrMessage) {
		t.Errorf("60 Resent-Message-ID fields: %v, want ErrMessage", err)
	}
	msg = "From: a@example.go.jp\r\n" + strings.Repeat("Resent-Message-ID: <1@example.go.jp>\r\n", 20) + "\r\nx\r\n"
	out, _ := signed(t, msg, keys)
	for i, e := range verify(t, out, lookup(t, keys)) {
		if e != nil {
			t.Errorf("20 Resent-Message-ID fields: signature %d: %v", i, e)
		}
	}
}

// TestDkimpy verifies both signatures with dkimpy (Debian python3-dkim),
// an independent implementation, and checks that it fails a changed body.
func TestDkimpy(t *testing.T) {
	t.Parallel()
	python := os.Getenv("KAKUIN_TEST_PYTHON")
	if python == "" {
		python = "/usr/bin/python3"
	}
	if err := exec.Command(python, "-c", "import dkim").Run(); err != nil {
		t.Fatalf("%s cannot import dkim (make deps installs python3-dkim): %v", python, err)
	}
	keys := pkitest.DKIMKeys(t, "example.go.jp")
	out, _ := signed(t, message, keys)
	dir := t.TempDir()
	records, _ := json.Marshal(pkitest.DKIMRecords(t, keys))
	os.WriteFile(filepath.Join(dir, "records.json"), records, 0o644)
	os.WriteFile(filepath.Join(dir, "good.eml"), []byte(out), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.eml"), []byte(strings.Replace(out, "Hello", "Hallo", 1)), 0o644)
	const script = `
import dkim, json, sys
recs = json.load(open(sys.argv[1]))
def dnsfunc(name, timeout=5):
    return recs.get(name.decode().rstrip('.'), '').encode()
for path in sys.argv[2:]:
    msg = open(path, 'rb').read()
    d = dkim.DKIM(msg)
    res = []
    for i in (0, 1):
        try:
            res.append(d.verify(idx=i, dnsfunc=dnsfunc))
        except dkim.ValidationError:
            res.append(False)
    print(path.rsplit('/', 1)[1], *res)
`
	o, err := exec.Command(python, "-c", script, filepath.Join(dir, "records.json"),
		filepath.Join(dir, "good.eml"), filepath.Join(dir, "bad.eml")).CombinedOutput()
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, o)
	}
	if got := string(o); got != "good.eml True True\nbad.eml False False\n" {
		t.Errorf("dkimpy:\n%s", got)
	}
}
