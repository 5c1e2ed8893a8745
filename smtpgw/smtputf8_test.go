package smtpgw

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/kakuin/kakuin/pki/pkitest"
	"github.com/kakuin/kakuin/signer"
	"github.com/kakuin/kakuin/smtpgw/smtptest"
)

// idnDomain is 例え.go.jp; govdomain compares it as its A-label.
const (
	idnDomain  = "例え.go.jp"
	idnALabel  = "xn--r8jz45g.go.jp"
	utf8Sender = "太郎@example.go.jp"
	utf8Rcpt   = "花子@example.com"
)

// utf8Message is an RFC 6532 message: UTF-8 in the From display name and
// addr-spec, in To and Subject, and an 8-bit UTF-8 body.
func utf8Message(from string) string {
	return "From: 山田 太郎 <" + from + ">\r\nTo: 花子 <" + utf8Rcpt + ">\r\nSubject: 件名のテスト\r\n" +
		"Date: Thu, 26 Nov 2026 10:00:00 +0900\r\nMessage-ID: <" + newID() + "@example.go.jp>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n" +
		"\r\nこんにちは。\r\n"
}

// utf8Env is a gateway with SMTPUTF8 on (unless off) in front of an
// upstream that offers it (unless upOff), with a sealer for example.go.jp
// and 例え.go.jp whose missing-certificate policy is mc.
func utf8Env(t *testing.T, off, upOff bool, mc signer.MissingCertificate) *env {
	t.Helper()
	seal := newTestSealer(t, []string{"example.go.jp", idnALabel, "mhlw.go.jp"}, func(o *signer.Options) { o.MissingCertificate = mc })
	pol, err := ParseClientPolicy(strings.NewReader("net:127.0.0.0/8 example.go.jp " + idnDomain + " mhlw.go.jp\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvUp(t, smtptest.Options{SMTPUTF8: !upOff}, func(o *Options) {
		o.SMTPUTF8 = !off
		o.Sealer, o.Clients = seal, pol
	})
	e.seal = seal
	return e
}

// TestSMTPUTF8Transaction: with SMTPUTF8 on and an upstream that offers
// it, a UTF-8 envelope and an RFC 6532 header go through, sealed, and are
// relayed with SMTPUTF8 and unchanged header bytes; the S/MIME policy
// decides what happens to a non-ASCII local part, which the issuer cannot
// name in a certificate.
func TestSMTPUTF8Transaction(t *testing.T) {
	t.Parallel()

	t.Run("non-ASCII local part, reject policy", func(t *testing.T) {
		t.Parallel()
		e := utf8Env(t, false, false, signer.Reject)
		c := e.dial()
		if ehlo := c.expect(250, "EHLO client.example.go.jp"); !strings.Contains(ehlo, "SMTPUTF8") {
			t.Fatalf("SMTPUTF8 not offered: %q", ehlo)
		}
		c.expect(250, "MAIL FROM:<%s> SMTPUTF8", utf8Sender)
		c.expect(250, "RCPT TO:<%s>", utf8Rcpt)
		code, text := c.data(utf8Message(utf8Sender) + ".\r\n")
		if code != 550 || enhanced(text) != "5.7.1" || !strings.Contains(text, "certificate") {
			t.Fatalf("no certificate, reject: %d %s, want 550 5.7.1 about the certificate", code, text)
		}
		if n := len(e.up.Messages()); n != 0 {
			t.Fatalf("upstream has %d messages: relayed unsigned", n)
		}
		if !strings.Contains(e.logs.String(), `"reason":"no_certificate"`) {
			t.Fatalf("log lacks the reason:\n%s", e.logs.String())
		}
	})

	t.Run("non-ASCII local part, dkim-only policy", func(t *testing.T) {
		t.Parallel()
		e := utf8Env(t, false, false, signer.DKIMOnly)
		c := e.dial()
		c.expect(250, "EHLO client.example.go.jp")
		c.expect(250, "MAIL FROM:<%s> SMTPUTF8", utf8Sender)
		c.expect(250, "RCPT TO:<%s>", utf8Rcpt)
		if code, text := c.data(utf8Message(utf8Sender) + ".\r\n"); code != 250 {
			t.Fatalf("dkim-only: %d %s", code, text)
		}
		m := e.up.Messages()
		if len(m) != 1 {
			t.Fatalf("upstream has %d messages", len(m))
		}
		got := m[0]
		if !got.UTF8 || got.From != utf8Sender || len(got.To) != 1 || got.To[0] != utf8Rcpt {
			t.Fatalf("upstream envelope: SMTPUTF8=%v from %q to %q", got.UTF8, got.From, got.To)
		}
		// RFC 6532: the UTF-8 header fields arrive as they were sent,
		// neither encoded (RFC 2047) nor mangled.
		for _, f := range []string{"From: 山田 太郎 <" + utf8Sender + ">\r\n", "Subject: 件名のテスト\r\n", "To: 花子 <" + utf8Rcpt + ">\r\n"} {
			if !bytes.Contains(got.Data, []byte(f)) {
				t.Fatalf("relayed message lacks %q:\n%s", f, got.Data)
			}
		}
		if !bytes.Contains(got.Data, []byte("(kakuin) with UTF8SMTP id ")) { // RFC 6531 3.7.3
			t.Fatalf("Received lacks WITH UTF8SMTP:\n%s", got.Data)
		}
		if bytes.Contains(got.Data, []byte("multipart/signed")) {
			t.Fatal("an S/MIME signature for an address no certificate names")
		}
		// DKIM over the UTF-8 header verifies with go-msgauth and with
		// dkimpy, and covers it: a changed UTF-8 Subject fails both.
		e.verifyDKIM(got.Data)
		if !bytes.Contains(got.Data, []byte("d=example.go.jp")) {
			t.Fatal("no DKIM signature for example.go.jp")
		}
		bad := bytes.Replace(got.Data, []byte("件名のテスト"), []byte("件名の変更"), 1)
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(bad), &dkim.VerifyOptions{LookupTXT: e.seal.lookupTXT})
		if err != nil || len(vs) == 0 {
			t.Fatalf("changed message: %d signatures, %v", len(vs), err)
		}
		for _, v := range vs {
			if v.Err == nil {
				t.Fatalf("go-msgauth accepts d=%s over a changed UTF-8 Subject", v.Domain)
			}
		}
		if res := e.dkimpy(got.Data, bad); res != "True True\nFalse False\n" {
			t.Fatalf("dkimpy (want both signatures valid, then both invalid):\n%s", res)
		}
	})

	t.Run("U-label domain", func(t *testing.T) {
		t.Parallel()
		e := utf8Env(t, false, false, signer.Reject)
		c := e.dial()
		c.expect(250, "EHLO client.example.go.jp")
		from := "taro@" + idnDomain
		c.expect(250, "MAIL FROM:<%s> SMTPUTF8", from)
		c.expect(250, "RCPT TO:<%s>", utf8Rcpt)
		if code, text := c.data(utf8Message(from) + ".\r\n"); code != 250 {
			t.Fatalf("U-label domain: %d %s", code, text)
		}
		m := e.up.Messages()
		if len(m) != 1 || !m[0].UTF8 || m[0].From != from {
			t.Fatalf("upstream: %d messages", len(m))
		}
		// S/MIME for the A-label address (RFC 8550 3: rfc822Name holds
		// the A-label), verified by openssl; DKIM d= is the A-label.
		// The 8-bit body is signed 7-bit (RULES S2): こんにちは in
		// quoted-printable.
		e.verifySMIME(m[0].Data, "=E3=81=93=E3=82=93=E3=81=AB=E3=81=A1=E3=81=AF")
		if sans := e.smimeSigner(m[0].Data).EmailAddresses; len(sans) != 1 || sans[0] != "taro@"+idnALabel {
			t.Fatalf("signing certificate names %q, want taro@%s", sans, idnALabel)
		}
		e.verifyDKIM(m[0].Data)
		if !bytes.Contains(m[0].Data, []byte("d="+idnALabel)) {
			t.Fatalf("no DKIM signature with d=%s", idnALabel)
		}
		// A U-label look-alike outside go.jp is refused like any other.
		c.expect(550, "MAIL FROM:<taro@%s.example.com> SMTPUTF8", idnDomain)
		c.expect(550, "MAIL FROM:<taro@例えgo.jp> SMTPUTF8")
	})

	t.Run("UTF-8 attachment name", func(t *testing.T) {
		t.Parallel()
		e := utf8Env(t, false, false, signer.Reject)
		c := e.dial()
		c.expect(250, "EHLO client.example.go.jp")
		from := "taro@example.go.jp"
		c.expect(250, "MAIL FROM:<%s> SMTPUTF8", from)
		c.expect(250, "RCPT TO:<%s>", utf8Rcpt)
		// RFC 6532 3.2 lets an SMTPUTF8 message carry UTF-8 in MIME
		// header fields too; the signed entity is 7-bit, so the name is
		// rewritten as an RFC 2231 parameter, which says the same.
		msg := "From: 山田 太郎 <" + from + ">\r\nTo: " + utf8Rcpt + "\r\nSubject: 報告書\r\nDate: Thu, 26 Nov 2026 10:00:00 +0900\r\n" +
			"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n添付します。\r\n" +
			"--b\r\nContent-Type: application/pdf; name=\"報告書.pdf\"\r\nContent-Disposition: attachment; filename=\"報告書.pdf\"\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjcK\r\n--b--\r\n"
		if code, text := c.data(msg + ".\r\n"); code != 250 {
			t.Fatalf("UTF-8 attachment name: %d %s", code, text)
		}
		m := e.up.Messages()
		if len(m) != 1 {
			t.Fatalf("upstream has %d messages", len(m))
		}
		e.verifySMIME(m[0].Data, "filename*=utf-8''%E5%A0%B1%E5%91%8A%E6%9B%B8.pdf")
		e.verifyDKIM(m[0].Data)
	})

	t.Run("non-ASCII address without the SMTPUTF8 parameter", func(t *testing.T) {
		t.Parallel()
		e := utf8Env(t, false, false, signer.DKIMOnly)
		c := e.dial()
		c.expect(250, "EHLO client.example.go.jp")
		base := e.up.Transactions()
		// RFC 6531 3.4: such an address needs SMTPUTF8 on MAIL FROM.
		for _, from := range []string{utf8Sender, "taro@" + idnDomain} {
			if code, text := c.cmd("MAIL FROM:<%s>", from); code != 553 || enhanced(text) != "5.6.7" {
				t.Fatalf("MAIL FROM:<%s> without SMTPUTF8: %d %s, want 553 5.6.7", from, code, text)
			}
		}
		if n := e.up.Transactions() - base; n != 0 {
			t.Fatalf("%d MAIL commands went upstream", n)
		}
		// An ASCII sender, then a non-ASCII recipient: refused alone;
		// the A-label form of the domain needs nothing.
		c.expect(250, "MAIL FROM:<taro@%s>", idnALabel)
		if code, text := c.cmd("RCPT TO:<%s>", utf8Rcpt); code != 553 || enhanced(text) != "5.6.7" {
			t.Fatalf("RCPT TO:<%s> without SMTPUTF8: %d %s, want 553 5.6.7", utf8Rcpt, code, text)
		}
		c.expect(250, "RCPT TO:<citizen@example.com>")
		if code, text := c.data(message("taro@"+idnALabel) + ".\r\n"); code != 250 {
			t.Fatalf("ASCII message: %d %s", code, text)
		}
		m := e.up.Messages()
		if len(m) != 1 || m[0].UTF8 || len(m[0].To) != 1 || m[0].To[0] != "citizen@example.com" {
			t.Fatalf("upstream: %+v", m)
		}
		if !bytes.Contains(m[0].Data, []byte("(kakuin) with ESMTP id ")) {
			t.Fatalf("Received lacks WITH ESMTP:\n%s", m[0].Data)
		}
		// An ASCII envelope and non-ASCII header fields (UTF-8, or raw
		// Shift_JIS): the message needed SMTPUTF8, and the upstream was
		// not told: 554 5.6.9, nothing relayed.
		for name, msg := range map[string]string{
			"UTF-8":     utf8Message("taro@" + idnALabel),
			"Shift_JIS": "From: taro@example.go.jp\r\nTo: citizen@example.com\r\nSubject: \x8c\x8f\x96\xbc\r\n\r\nbody\r\n",
		} {
			c.expect(250, "MAIL FROM:<taro@example.go.jp>")
			c.expect(250, "RCPT TO:<citizen@example.com>")
			if code, text := c.data(msg + ".\r\n"); code != 554 || enhanced(text) != "5.6.9" {
				t.Fatalf("%s header without SMTPUTF8: %d %s, want 554 5.6.9", name, code, text)
			}
		}
		// With SMTPUTF8, header octets must be UTF-8 (RFC 6532 3.2).
		c.expect(250, "MAIL FROM:<taro@example.go.jp> SMTPUTF8")
		c.expect(250, "RCPT TO:<citizen@example.com>")
		if code, text := c.data("From: taro@example.go.jp\r\nTo: citizen@example.com\r\nSubject: \x8c\x8f\x96\xbc\r\n\r\nbody\r\n.\r\n"); code != 554 || enhanced(text) != "5.6.0" {
			t.Fatalf("Shift_JIS header with SMTPUTF8: %d %s, want 554 5.6.0", code, text)
		}
		if n := len(e.up.Messages()); n != 1 {
			t.Fatalf("upstream has %d messages, want the one ASCII message", n)
		}
	})
}

// TestSMTPUTF8UpstreamLacksIt: a transaction that needs SMTPUTF8 and an
// upstream that does not offer it: 553 5.6.7 at MAIL (RFC 6531 3.4, 3.5),
// before anything goes upstream, never a downgraded message.
func TestSMTPUTF8UpstreamLacksIt(t *testing.T) {
	t.Parallel()
	e := utf8Env(t, false, true, signer.DKIMOnly)
	c := e.dial()
	if ehlo := c.expect(250, "EHLO client.example.go.jp"); !strings.Contains(ehlo, "SMTPUTF8") {
		t.Fatalf("SMTPUTF8 not offered: %q", ehlo)
	}
	base := e.up.Transactions()
	for _, from := range []string{utf8Sender, "taro@" + idnDomain, "taro@example.go.jp"} {
		if code, text := c.cmd("MAIL FROM:<%s> SMTPUTF8", from); code != 553 || enhanced(text) != "5.6.7" || !strings.Contains(text, "SMTPUTF8") {
			t.Fatalf("MAIL FROM:<%s> SMTPUTF8: %d %s, want 553 5.6.7", from, code, text)
		}
	}
	if code, text := c.cmd("MAIL FROM:<%s>", utf8Sender); code != 553 || enhanced(text) != "5.6.7" {
		t.Fatalf("MAIL FROM:<%s>: %d %s, want 553 5.6.7", utf8Sender, code, text)
	}
	if n := e.up.Transactions() - base; n != 0 {
		t.Fatalf("%d MAIL commands went upstream", n)
	}
	// The session is still usable for ASCII mail.
	if code, text := c.send("taro@example.go.jp", []string{"citizen@example.com"}, message("taro@example.go.jp")); code != 250 {
		t.Fatalf("ASCII message: %d %s", code, text)
	}
	if m := e.up.Messages(); len(m) != 1 || m[0].UTF8 {
		t.Fatalf("upstream: %d messages", len(m))
	}
	if !strings.Contains(e.logs.String(), `"reason":"smtputf8"`) {
		t.Fatal("log lacks reason smtputf8")
	}
}

// TestSMTPUTF8Off: not configured, SMTPUTF8 is not advertised, the MAIL
// parameter is refused (go-smtp: 504 5.5.4), and a non-ASCII address is
// refused too (553 5.6.7) even though the upstream could carry it.
func TestSMTPUTF8Off(t *testing.T) {
	t.Parallel()
	e := utf8Env(t, true, false, signer.DKIMOnly)
	c := e.dial()
	if ehlo := c.expect(250, "EHLO client.example.go.jp"); strings.Contains(ehlo, "SMTPUTF8") {
		t.Fatalf("SMTPUTF8 offered while off: %q", ehlo)
	}
	base := e.up.Transactions()
	if code, text := c.cmd("MAIL FROM:<taro@example.go.jp> SMTPUTF8"); code != 504 || enhanced(text) != "5.5.4" {
		t.Fatalf("SMTPUTF8 parameter while off: %d %s, want 504 5.5.4", code, text)
	}
	if code, text := c.cmd("MAIL FROM:<%s>", utf8Sender); code != 553 || enhanced(text) != "5.6.7" {
		t.Fatalf("non-ASCII sender while off: %d %s, want 553 5.6.7", code, text)
	}
	c.expect(250, "MAIL FROM:<taro@example.go.jp>")
	if code, text := c.cmd("RCPT TO:<%s>", utf8Rcpt); code != 553 || enhanced(text) != "5.6.7" {
		t.Fatalf("non-ASCII recipient while off: %d %s, want 553 5.6.7", code, text)
	}
	c.expect(250, "RSET")
	c.expect(250, "MAIL FROM:<taro@example.go.jp>")
	c.expect(250, "RCPT TO:<citizen@example.com>")
	if code, text := c.data(utf8Message("taro@example.go.jp") + ".\r\n"); code != 554 || enhanced(text) != "5.6.9" {
		t.Fatalf("UTF-8 header while off: %d %s, want 554 5.6.9", code, text)
	}
	if n := e.up.Transactions() - base; n != 2 {
		t.Fatalf("%d MAIL commands went upstream, want 2 (the ASCII ones)", n)
	}
	if n := len(e.up.Messages()); n != 0 {
		t.Fatalf("upstream has %d messages", n)
	}
}

// dkimpy verifies the first two DKIM signatures of each message with
// dkimpy (Debian python3-dkim), an independent implementation, against the
// test records; one line per message.
func (e *env) dkimpy(msgs ...[]byte) string {
	e.t.Helper()
	python := os.Getenv("KAKUIN_TEST_PYTHON")
	if python == "" {
		python = "/usr/bin/python3"
	}
	if err := exec.Command(python, "-c", "import dkim").Run(); err != nil {
		e.t.Fatalf("%s cannot import dkim (make deps installs python3-dkim): %v", python, err)
	}
	dir := e.t.TempDir()
	records, err := json.Marshal(e.seal.records)
	if err != nil {
		e.t.Fatal(err)
	}
	args := []string{"-c", `
import dkim, json, sys
recs = json.load(open(sys.argv[1]))
def dnsfunc(name, timeout=5):
    return recs.get(name.decode().rstrip('.'), '').encode()
for path in sys.argv[2:]:
    d = dkim.DKIM(open(path, 'rb').read())
    res = []
    for i in (0, 1):
        try:
            res.append(d.verify(idx=i, dnsfunc=dnsfunc))
        except dkim.ValidationError:
            res.append(False)
    print(*res)
`, filepath.Join(dir, "records.json")}
	if err := os.WriteFile(args[2], records, 0o644); err != nil {
		e.t.Fatal(err)
	}
	for i, m := range msgs {
		p := filepath.Join(dir, fmt.Sprintf("%d.eml", i))
		if err := os.WriteFile(p, m, 0o644); err != nil {
			e.t.Fatal(err)
		}
		args = append(args, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, args...).CombinedOutput()
	if err != nil {
		e.t.Fatalf("dkimpy: %v\n%s", err, out)
	}
	return string(out)
}

// smimeSigner returns the certificate that signed msg (openssl cms
// -verify -signer, against the test root).
func (e *env) smimeSigner(msg []byte) *x509.Certificate {
	e.t.Helper()
	dir := e.t.TempDir()
	root, out := filepath.Join(dir, "root.pem"), filepath.Join(dir, "signer.pem")
	if err := os.WriteFile(root, pkitest.CertPEM(e.seal.ca.Root), 0o644); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", "cms", "-verify", "-CAfile", root, "-purpose", "smimesign", "-signer", out, "-out", os.DevNull)
	cmd.Stdin = bytes.NewReader(msg)
	if b, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("openssl cms -verify: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		e.t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		e.t.Fatal("openssl wrote no signer certificate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}
