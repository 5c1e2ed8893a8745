package smtpgw

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
	"github.com/kakuin/kakuin/signer"
	"github.com/kakuin/kakuin/smtpgw/relay"
	"github.com/kakuin/kakuin/smtpgw/smtptest"
)

// TestUpstreamFaults: for each fault the client gets the right class of
// reply, and the upstream holds nothing; when the upstream behaves again
// the next message arrives whole and signed.
func TestUpstreamFaults(t *testing.T) {
	t.Parallel()
	rej4 := &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy"}
	rej5 := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	test := func(name string, f smtptest.Faults, stage string, wantCode int, wantEnh string) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			e.up.SetFaults(f)
			c := e.dial()
			c.expect(250, "EHLO client.example.go.jp")
			var code int
			var text string
			switch stage {
			case "MAIL":
				code, text = c.cmd("MAIL FROM:<taro@mhlw.go.jp>")
			case "RCPT":
				c.expect(250, "MAIL FROM:<taro@mhlw.go.jp>")
				code, text = c.cmd("RCPT TO:<citizen@example.com>")
				c.expect(250, "RSET")
			case "DATA":
				code, text = c.send("taro@mhlw.go.jp", []string{"citizen@example.com"}, message("taro@mhlw.go.jp"))
			}
			if code != wantCode || enhanced(text) != wantEnh {
				t.Fatalf("%s: %d %s, want %d %s", stage, code, text, wantCode, wantEnh)
			}
			if n := len(e.up.Messages()); n != 0 {
				t.Fatalf("upstream stored %d messages after a fault", n)
			}
			e.up.SetFaults(smtptest.Faults{})
			if code, text := c.send("taro@mhlw.go.jp", []string{"citizen@example.com"}, message("taro@mhlw.go.jp")); code != 250 {
				t.Fatalf("after the fault: %d %s", code, text)
			}
			m := e.up.Messages()
			if len(m) != 1 {
				t.Fatalf("upstream has %d messages", len(m))
			}
			e.verifyDKIM(m[0].Data)
		})
	}
	test("mail 4xx", smtptest.Faults{Mail: rej4}, "MAIL", 451, "4.4.0")
	test("mail 5xx", smtptest.Faults{Mail: rej5}, "MAIL", 550, "5.1.1")
	test("rcpt 4xx", smtptest.Faults{Rcpt: map[string]*smtp.SMTPError{"citizen@example.com": rej4}}, "RCPT", 451, "4.4.0")
	test("rcpt 5xx", smtptest.Faults{Rcpt: map[string]*smtp.SMTPError{"citizen@example.com": rej5}}, "RCPT", 550, "5.1.1")
	test("data 4xx", smtptest.Faults{Data: rej4}, "DATA", 451, "4.4.0")
	test("data 5xx", smtptest.Faults{Data: rej5}, "DATA", 550, "5.1.1")
	test("drop at rcpt", smtptest.Faults{DropAtRcpt: true}, "RCPT", 451, "4.4.2")
	test("drop mid data", smtptest.Faults{DropMidData: true}, "DATA", 451, "4.4.2")
	test("timeout after data", smtptest.Faults{Stall: true}, "DATA", 451, "4.4.2")
}

func TestUpstreamRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	e := newEnv(t, func(o *Options) {
		u, err := relay.New("smtp://"+addr, relay.Options{DialTimeout: 2 * time.Second, TLS: &tls.Config{}})
		if err != nil {
			t.Fatal(err)
		}
		o.Upstream = u
	})
	c := e.dial()
	c.expect(250, "EHLO client.example.go.jp")
	if code, text := c.cmd("MAIL FROM:<taro@mhlw.go.jp>"); code != 451 || enhanced(text) != "4.4.1" {
		t.Fatalf("refused upstream: %d %s", code, text)
	}
	if code, _ := c.cmd("RCPT TO:<citizen@example.com>"); code/100 != 5 {
		t.Fatalf("RCPT without a transaction: %d", code)
	}
}

// TestRecipientsInLockstep: each recipient gets the upstream's own
// verdict, and only the accepted ones receive the message.
func TestRecipientsInLockstep(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.up.SetFaults(smtptest.Faults{Rcpt: map[string]*smtp.SMTPError{
		"gone@example.com": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
	}})
	c := e.dial()
	c.expect(250, "EHLO client.example.go.jp")
	c.expect(250, "MAIL FROM:<taro@mhlw.go.jp>")
	c.expect(250, "RCPT TO:<a@example.com>")
	if code, text := c.cmd("RCPT TO:<gone@example.com>"); code != 550 || !strings.Contains(text, "no such user") {
		t.Fatalf("refused recipient: %d %s", code, text)
	}
	c.expect(250, "RCPT TO:<b@example.com>")
	if code, text := c.data(dotStuff(message("taro@mhlw.go.jp")) + ".\r\n"); code != 250 {
		t.Fatalf("DATA: %d %s", code, text)
	}
	m := e.up.Messages()
	if len(m) != 1 || strings.Join(m[0].To, " ") != "a@example.com b@example.com" {
		t.Fatalf("upstream got %+v", m)
	}
}

// TestSignerFailuresFailClosed: the real signer's refusals map to the
// table and nothing reaches the upstream unsigned.
func TestSignerFailuresFailClosed(t *testing.T) {
	t.Parallel()
	test := func(name string, mod func(*signer.Options), msg string, wantCode int, wantEnh string) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(o *Options) {
				o.Sealer = newTestSealer(t, []string{"mhlw.go.jp"}, mod)
			})
			c := e.dial()
			c.expect(250, "EHLO client.example.go.jp")
			code, text := c.send("taro@mhlw.go.jp", []string{"citizen@example.com"}, msg)
			if code != wantCode || enhanced(text) != wantEnh {
				t.Fatalf("%d %s, want %d %s", code, text, wantCode, wantEnh)
			}
			if n := len(e.up.Messages()); n != 0 {
				t.Fatalf("upstream stored %d messages", n)
			}
		})
	}
	// No DKIM key for the From domain (allowed by the gateway's policy).
	test("no dkim key", nil, message("a@example.go.jp"), 451, "4.3.0")
	// The DKIM key is unusable (an HSM that fails).
	test("dkim key fails", func(o *signer.Options) {
		ks := pkitest.DKIMKeys(t, "mhlw.go.jp")
		ks[0].Signer = failingKey{ks[0].Signer}
		o.DKIM = pkitest.DKIMKeySource{"mhlw.go.jp": ks}
	}, message("taro@mhlw.go.jp"), 451, "4.3.0")
	// No certificate and none can be issued; the policy says reject.
	test("no certificate", func(o *signer.Options) {
		ca := pkitest.New(t)
		o.Identities = ca.Store(t, t.TempDir(), pki.StoreOptions{})
		o.MissingCertificate = signer.Reject
	}, message("taro@mhlw.go.jp"), 550, "5.7.1")
	// The signer's own suffix policy is narrower than the gateway's.
	test("signer sender policy", func(o *signer.Options) {
		o.Senders.Suffixes = []string{"soumu.go.jp"}
	}, message("taro@mhlw.go.jp"), 550, "5.7.1")
	// A duplicated singleton field: the gateway lets it through, the
	// signer refuses.
	test("duplicate subject", nil, message("taro@mhlw.go.jp", "Subject: again"), 554, "5.6.0")
}

// TestSMTPUTF8: offered only when configured, and refused with 553 5.6.7
// when the upstream cannot carry it (RFC 6531 3.4).
func TestSMTPUTF8(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.SMTPUTF8 = true })
	c := e.dial()
	if ehlo := c.expect(250, "EHLO client.example.go.jp"); !strings.Contains(ehlo, "SMTPUTF8") {
		t.Fatalf("SMTPUTF8 not offered: %q", ehlo)
	}
	if code, text := c.cmd("MAIL FROM:<taro@mhlw.go.jp> SMTPUTF8"); code != 553 || enhanced(text) != "5.6.7" {
		t.Fatalf("SMTPUTF8 to an upstream without it: %d %s", code, text)
	}
	off := newEnv(t, nil)
	c = off.dial()
	if ehlo := c.expect(250, "EHLO client.example.go.jp"); strings.Contains(ehlo, "SMTPUTF8") {
		t.Fatalf("SMTPUTF8 offered by default: %q", ehlo)
	}
	if code, _ := c.cmd("MAIL FROM:<taro@mhlw.go.jp> SMTPUTF8"); code/100 != 5 {
		t.Fatalf("SMTPUTF8 not offered but accepted: %d", code)
	}
}
