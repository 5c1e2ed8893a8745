package smtpgw

import (
	"crypto/tls"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// code extracts "550 5.7.1" style: code and the enhanced code at the
// start of the text.
func enhanced(text string) string {
	f := strings.Fields(text)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func TestEnvelopeSenderPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil) // 127.0.0.0/8 may use mhlw.go.jp and example.go.jp
	c := e.dial()
	c.expect(250, "EHLO client.example.go.jp")
	test := func(from string, wantCode int, wantEnh string) {
		t.Helper()
		code, text := c.cmd("MAIL FROM:<%s>", from)
		if code != wantCode || (wantEnh != "" && enhanced(text) != wantEnh) {
			t.Errorf("MAIL FROM:<%s>: %d %s, want %d %s", from, code, text, wantCode, wantEnh)
		}
		if code == 250 {
			c.expect(250, "RSET")
		}
	}
	test("taro@mhlw.go.jp", 250, "")
	test("taro@sub.mhlw.go.jp", 250, "")
	test("TARO@MHLW.GO.JP", 250, "")    // case folded
	test("taro@mhlw.go.jp.", 250, "")   // trailing dot is the same name
	test("", 250, "")                   // null reverse path (bounces): the header From decides
	test("a@example.go.jp", 250, "")    // the policy's second domain
	test("a@soumu.go.jp", 550, "5.7.1") // under go.jp, not this client's
	test("a@evilgo.jp", 550, "5.7.1")   // not label-wise under go.jp
	test("a@go.jp", 550, "5.7.1")       // the bare suffix
	test("a@go.jp.example.com", 550, "5.7.1")
	test("a@mhlw.go.jp.example.com", 550, "5.7.1")
	test("a@evilmhlw.go.jp", 550, "5.7.1")     // under go.jp but not under mhlw.go.jp
	test("a@xn--mhlw-9ra.go.jp", 550, "5.7.1") // an A-label look-alike is another name
	test("a@example.com", 550, "5.7.1")
	test("postmaster", 501, "5.5.2") // go-smtp: not a reverse path
	test("a@[192.0.2.1]", 550, "5.7.1")
}

func TestHeaderPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.dial()
	c.expect(250, "EHLO client.example.go.jp")
	hdr := "To: citizen@example.com\r\nSubject: t\r\nDate: Thu, 26 Nov 2026 10:00:00 +0900\r\n"
	test := func(name, from, header string, wantCode int, wantEnh string) {
		t.Helper()
		before := len(e.up.Messages())
		code, text := c.send(from, []string{"citizen@example.com"}, header+hdr+"\r\nbody\r\n")
		if code != wantCode || (wantEnh != "" && enhanced(text) != wantEnh) {
			t.Errorf("%s: %d %s, want %d %s", name, code, text, wantCode, wantEnh)
		}
		after := len(e.up.Messages())
		if (code == 250) != (after == before+1) {
			t.Errorf("%s: reply %d but upstream went from %d to %d messages", name, code, before, after)
		}
	}
	test("plain", "taro@mhlw.go.jp", "From: taro@mhlw.go.jp\r\n", 250, "2.0.0")
	test("display name", "taro@mhlw.go.jp", "From: \"Taro Kasumigaseki\" <taro@mhlw.go.jp>\r\n", 250, "2.0.0")
	test("iso-2022-jp name", "taro@mhlw.go.jp", "From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <taro@mhlw.go.jp>\r\n", 250, "2.0.0")
	test("null envelope, good From", "", "From: taro@mhlw.go.jp\r\n", 250, "2.0.0")
	test("envelope differs, both allowed", "bounce@example.go.jp", "From: taro@mhlw.go.jp\r\n", 250, "2.0.0")
	test("no From", "taro@mhlw.go.jp", "", 554, "5.6.0")
	test("two From fields", "taro@mhlw.go.jp", "From: taro@mhlw.go.jp\r\nFrom: jiro@mhlw.go.jp\r\n", 554, "5.6.0")
	test("two mailboxes", "taro@mhlw.go.jp", "From: taro@mhlw.go.jp, jiro@mhlw.go.jp\r\n", 554, "5.6.0")
	test("group", "taro@mhlw.go.jp", "From: ministry: taro@mhlw.go.jp;\r\n", 554, "5.6.0")
	test("garbage", "taro@mhlw.go.jp", "From: <<<\r\n", 554, "5.6.0")
	test("header line without colon", "taro@mhlw.go.jp", "From: taro@mhlw.go.jp\r\nnot a header\r\n", 554, "5.6.0")
	test("From outside go.jp", "taro@mhlw.go.jp", "From: taro@example.com\r\n", 550, "5.7.1")
	test("From under go.jp, not this client's", "taro@mhlw.go.jp", "From: boss@soumu.go.jp\r\n", 550, "5.7.1")
	test("null envelope, bad From", "", "From: taro@evilgo.jp\r\n", 550, "5.7.1")
	test("display name looks allowed", "taro@mhlw.go.jp", "From: \"taro@mhlw.go.jp\" <phish@example.com>\r\n", 550, "5.7.1")
	test("Sender outside", "taro@mhlw.go.jp", "From: taro@mhlw.go.jp\r\nSender: bot@example.com\r\n", 550, "5.7.1")
	test("Sender allowed", "taro@mhlw.go.jp", "From: taro@mhlw.go.jp\r\nSender: bot@example.go.jp\r\n", 250, "2.0.0")
	test("content never logged", "taro@mhlw.go.jp", "From: taro@mhlw.go.jp\r\nsecret-content-line\r\n", 554, "5.6.0")
	test("two Sender fields", "taro@mhlw.go.jp", "From: taro@mhlw.go.jp\r\nSender: a@mhlw.go.jp\r\nSender: b@mhlw.go.jp\r\n", 554, "5.6.0")
	for _, m := range e.up.Messages() {
		e.verifyDKIM(m.Data)
	}
	if strings.Contains(e.logs.String(), "secret-content-line") {
		t.Fatal("message content in the log")
	}
}

func TestOpenRelay(t *testing.T) {
	t.Parallel()
	// No client networks: everyone must authenticate.
	e := newEnv(t, func(o *Options) { o.ClientNetworks = nil })
	msg := message("taro@mhlw.go.jp")

	// Unauthenticated, in clear.
	c := e.dial()
	c.expect(250, "EHLO client.example.com")
	if code, text := c.cmd("MAIL FROM:<taro@mhlw.go.jp>"); code != 530 || enhanced(text) != "5.7.0" {
		t.Fatalf("unauthenticated MAIL: %d %s", code, text)
	}
	// AUTH before STARTTLS: refused, and not even offered.
	if ehlo := c.expect(250, "EHLO client.example.com"); strings.Contains(ehlo, "AUTH") {
		t.Fatalf("AUTH offered in clear: %q", ehlo)
	}
	if code, _ := c.authPlain(testUser, testPass); code < 500 {
		t.Fatalf("AUTH before STARTTLS: %d", code)
	}
	c.cmd("RSET")
	if code, _ := c.cmd("MAIL FROM:<taro@mhlw.go.jp>"); code != 530 {
		t.Fatalf("MAIL after refused AUTH: %d", code)
	}

	// Unauthenticated over TLS.
	c = e.dial()
	c.expect(250, "EHLO client.example.com")
	c.starttls(e.roots)
	if code, _ := c.cmd("MAIL FROM:<taro@mhlw.go.jp>"); code != 530 {
		t.Fatalf("unauthenticated MAIL over TLS: %d", code)
	}
	// Wrong password, unknown user.
	if code, text := c.authPlain(testUser, "wrong"); code != 535 || enhanced(text) != "5.7.8" {
		t.Fatalf("wrong password: %d %s", code, text)
	}
	if code, _ := c.authPlain("nobody", testPass); code != 535 {
		t.Fatalf("unknown user: %d", code)
	}
	if code, _ := c.authPlain(otherUser, testPass); code != 535 {
		t.Fatalf("another user's password: %d", code)
	}
	if code, _ := c.cmd("MAIL FROM:<taro@mhlw.go.jp>"); code != 530 {
		t.Fatalf("MAIL after failed AUTH: %d", code)
	}
	// Authenticated as mhlw-relay: soumu.go.jp is another client's.
	if code, text := c.authPlain(testUser, testPass); code != 235 {
		t.Fatalf("AUTH: %d %s", code, text)
	}
	if code, text := c.cmd("MAIL FROM:<boss@soumu.go.jp>"); code != 550 || enhanced(text) != "5.7.1" {
		t.Fatalf("another client's domain: %d %s", code, text)
	}
	// example.go.jp belongs to the network line, which does not apply
	// (no client networks here, and user: decides first).
	if code, _ := c.cmd("MAIL FROM:<a@example.go.jp>"); code != 550 {
		t.Fatalf("domain of another policy line: %d", code)
	}
	if code, text := c.send("taro@mhlw.go.jp", []string{"citizen@example.com"}, msg); code != 250 {
		t.Fatalf("authorised: %d %s", code, text)
	}
	// Header From of another client's domain, envelope fine.
	if code, _ := c.send("taro@mhlw.go.jp", []string{"citizen@example.com"}, message("boss@soumu.go.jp")); code != 550 {
		t.Fatalf("header From of another client: %d", code)
	}

	// AUTH LOGIN works too, and the other client gets its own domain.
	c = e.dial()
	c.expect(250, "EHLO client.example.com")
	c.starttls(e.roots)
	c.expect(334, "AUTH LOGIN")
	c.expect(334, "%s", b64(otherUser))
	c.expect(235, "%s", b64(otherPass))
	if code, text := c.send("boss@soumu.go.jp", []string{"citizen@example.com"}, message("boss@soumu.go.jp")); code != 250 {
		t.Fatalf("soumu: %d %s", code, text)
	}
	if code, _ := c.cmd("MAIL FROM:<taro@mhlw.go.jp>"); code != 550 {
		t.Fatalf("soumu as mhlw: %d", code)
	}
	if n := len(e.up.Messages()); n != 2 {
		t.Fatalf("upstream has %d messages, want 2", n)
	}
}

func TestClientCertificate(t *testing.T) {
	t.Parallel()
	caCert, caPool := tlsCert(t) // a self-signed CA for client certificates
	e := newEnv(t, func(o *Options) {
		o.ClientNetworks = nil
		o.ClientCAs = caPool
		pol, err := ParseClientPolicy(strings.NewReader("cert:gw.example.go.jp mhlw.go.jp\n"))
		if err != nil {
			t.Fatal(err)
		}
		o.Clients = pol
	})
	c := e.dial()
	c.expect(250, "EHLO client.example.com")
	c.starttls(e.roots, caCert)
	if code, text := c.send("taro@mhlw.go.jp", []string{"citizen@example.com"}, message("taro@mhlw.go.jp")); code != 250 {
		t.Fatalf("client certificate: %d %s", code, text)
	}
	// Without one: not authorised.
	c = e.dial()
	c.expect(250, "EHLO client.example.com")
	c.starttls(e.roots)
	if code, _ := c.cmd("MAIL FROM:<taro@mhlw.go.jp>"); code != 530 {
		t.Fatalf("no client certificate: %d", code)
	}
	// A certificate from another CA: the handshake fails or it is not
	// authorised.
	other, _ := tlsCert(t)
	c = e.dial()
	c.expect(250, "EHLO client.example.com")
	c.expect(220, "STARTTLS")
	tc := tls.Client(c.conn, &tls.Config{RootCAs: e.roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{other}})
	if err := tc.Handshake(); err == nil {
		c.conn = tc
		c.tp = newTP(tc)
		// TLS 1.3: the server's alert arrives with the first reply.
		if code, _ := c.cmd("EHLO client.example.com"); code == 250 {
			if code, _ := c.cmd("MAIL FROM:<taro@mhlw.go.jp>"); code != 530 {
				t.Fatalf("untrusted client certificate: %d", code)
			}
		}
	}
	if n := len(e.up.Messages()); n != 1 {
		t.Fatalf("upstream has %d messages, want 1", n)
	}
}

func TestParseClientPolicy(t *testing.T) {
	t.Parallel()
	p, err := ParseClientPolicy(strings.NewReader(`
user:a  a.go.jp   # comment
cert:Relay.B.go.jp  b.go.jp
net:10.0.0.0/8  ten.go.jp
net:10.1.0.0/16 ten-one.go.jp
*  any.go.jp
`))
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr
	test := func(c Client, domain string, want bool) {
		t.Helper()
		if got := p.Allows(c, domain); got != want {
			t.Errorf("Allows(%+v, %s) = %v", c, domain, got)
		}
	}
	test(Client{User: "a"}, "a.go.jp", true)
	test(Client{User: "a"}, "x.a.go.jp", true)
	test(Client{User: "a"}, "any.go.jp", false)
	test(Client{User: "a", Addr: ip("10.0.0.1")}, "ten.go.jp", false) // user: decides first
	test(Client{CertNames: []string{"relay.b.go.jp"}}, "b.go.jp", true)
	test(Client{Addr: ip("10.2.0.1")}, "ten.go.jp", true)
	test(Client{Addr: ip("10.1.0.1")}, "ten.go.jp", false) // most specific network
	test(Client{Addr: ip("10.1.0.1")}, "ten-one.go.jp", true)
	test(Client{Addr: ip("192.0.2.1")}, "any.go.jp", true)
	test(Client{User: "unknown"}, "any.go.jp", true)
	var nilPolicy *ClientPolicy
	if !nilPolicy.Allows(Client{}, "whatever.go.jp") {
		t.Error("nil policy refuses")
	}
	// No "*" line: an unlisted client may use nothing.
	p2, _ := ParseClientPolicy(strings.NewReader("user:a a.go.jp\n"))
	if p2.Allows(Client{User: "b"}, "a.go.jp") {
		t.Error("unlisted client allowed")
	}
	for _, bad := range []string{"user:a\n", "bogus a.go.jp\n", "net:10.0.0.0/33 a.go.jp\n", "user:a a.go.jp\nuser:a b.go.jp\n", "user:a bad..domain\n", "* a.go.jp\n* b.go.jp\n"} {
		if _, err := ParseClientPolicy(strings.NewReader(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestLoadCredentials(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "credentials")
	if err := os.WriteFile(path, []byte(testCreds()), 0o640); err != nil {
		t.Fatal(err)
	}
	c, err := LoadCredentials(path)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Verify(testUser, testPass) || c.Verify(testUser, testPass+"x") || c.Verify("nobody", testPass) || c.Verify(otherUser, testPass) {
		t.Fatal("Verify")
	}
	os.Chmod(path, 0o644)
	if _, err := LoadCredentials(path); err == nil {
		t.Fatal("world-readable credentials accepted")
	}
	for _, bad := range []string{"nohash\n", "a:notbcrypt\n"} {
		if _, err := ParseCredentials(strings.NewReader(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
