package relay_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/kakuin/kakuin/smtpgw/relay"
	"github.com/kakuin/kakuin/smtpgw/smtptest"
)

// These tests exercise the relay mechanics alone: the message body is an
// opaque byte string (nothing is signed here; smtpgw's tests relay
// messages signed by the real signer).

const body = "From: a@example.go.jp\r\nTo: b@example.com\r\nSubject: t\r\n\r\nline\r\n.starts with a dot\r\n"

func upstream(t *testing.T, srv *smtptest.Server, mod func(*relay.Options)) relay.Upstream {
	t.Helper()
	o := relay.Options{
		Hostname:       "gw.example.go.jp",
		TLS:            &tls.Config{RootCAs: srv.RootCAs(), ServerName: "127.0.0.1"},
		DialTimeout:    5 * time.Second,
		CommandTimeout: 5 * time.Second,
		DataTimeout:    5 * time.Second,
	}
	if mod != nil {
		mod(&o)
	}
	u, err := relay.New("smtp://"+srv.Addr, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

func send(ctx context.Context, u relay.Upstream, from string, to []string, msg string) (string, error) {
	tx, err := u.Begin(ctx, from, relay.MailOptions{})
	if err != nil {
		return "", err
	}
	for _, r := range to {
		if err := tx.Rcpt(ctx, r); err != nil {
			tx.Abort()
			return "", err
		}
	}
	return tx.Data(ctx, strings.NewReader(msg))
}

func TestSTARTTLSPoolAndDotStuffing(t *testing.T) {
	t.Parallel()
	srv := smtptest.New(t, smtptest.Options{STARTTLS: true, Username: "gw", Password: "s3cret"})
	u := upstream(t, srv, func(o *relay.Options) { o.Username, o.Password = "gw", "s3cret" })
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := send(ctx, u, "a@example.go.jp", []string{"b@example.com", "c@example.com"}, body); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	msgs := srv.Messages()
	if len(msgs) != 3 {
		t.Fatalf("upstream stored %d messages, want 3", len(msgs))
	}
	for _, m := range msgs {
		if string(m.Data) != body || !m.TLS || m.Auth != "gw" || m.From != "a@example.go.jp" || len(m.To) != 2 {
			t.Fatalf("stored %+v", m)
		}
	}
	if n := srv.Connections(); n != 1 {
		t.Fatalf("%d upstream connections for 3 transactions, want 1 (pool reuse)", n)
	}
	// An aborted transaction (RSET) leaves the connection reusable.
	tx, err := u.Begin(ctx, "a@example.go.jp", relay.MailOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tx.Abort()
	if _, err := send(ctx, u, "a@example.go.jp", []string{"b@example.com"}, body); err != nil {
		t.Fatal(err)
	}
	if n := srv.Connections(); n != 1 {
		t.Fatalf("%d connections after RSET, want 1", n)
	}
}

func TestSMTPS(t *testing.T) {
	t.Parallel()
	srv := smtptest.New(t, smtptest.Options{ImplicitTLS: true})
	u, err := relay.New("smtps://"+srv.Addr, relay.Options{TLS: &tls.Config{RootCAs: srv.RootCAs()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	if _, err := send(context.Background(), u, "", []string{"b@example.com"}, body); err != nil {
		t.Fatal(err)
	}
	if m := srv.Messages(); len(m) != 1 || !m[0].TLS || m[0].From != "" {
		t.Fatalf("stored %+v", m)
	}
}

func TestTLSRequiredAndVerified(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// No STARTTLS offered: refused by default.
	plain := smtptest.New(t, smtptest.Options{})
	_, err := send(ctx, upstream(t, plain, nil), "a@example.go.jp", []string{"b@example.com"}, body)
	if !errors.Is(err, relay.ErrConnect) {
		t.Fatalf("upstream without STARTTLS: %v, want ErrConnect", err)
	}
	// Allowed only when asked for.
	if _, err := send(ctx, upstream(t, plain, func(o *relay.Options) { o.InsecurePlaintext = true }), "a@example.go.jp", []string{"b@example.com"}, body); err != nil {
		t.Fatal(err)
	}
	// A certificate that does not verify: refused.
	tlsSrv := smtptest.New(t, smtptest.Options{STARTTLS: true})
	_, err = send(ctx, upstream(t, tlsSrv, func(o *relay.Options) { o.TLS = &tls.Config{} }), "a@example.go.jp", []string{"b@example.com"}, body)
	if !errors.Is(err, relay.ErrConnect) {
		t.Fatalf("untrusted certificate: %v, want ErrConnect", err)
	}
	if n := len(tlsSrv.Messages()) + len(plain.Messages()); n != 1 {
		t.Fatalf("%d messages stored, want 1", n)
	}
}

func TestRefusedConnection(t *testing.T) {
	t.Parallel()
	u := deadUpstream(t)
	if _, err := u.Begin(context.Background(), "a@example.go.jp", relay.MailOptions{}); !errors.Is(err, relay.ErrConnect) {
		t.Fatalf("refused connection: %v, want ErrConnect", err)
	}
	if err := u.Ping(context.Background()); !errors.Is(err, relay.ErrConnect) {
		t.Fatalf("Ping: %v", err)
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	rej4 := &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "try later"}
	rej5 := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	test := func(name string, f smtptest.Faults, wantCode int, wantErr error) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.New(t, smtptest.Options{STARTTLS: true})
			srv.SetFaults(f)
			u := upstream(t, srv, func(o *relay.Options) {
				o.DataTimeout = 500 * time.Millisecond
				o.CommandTimeout = 500 * time.Millisecond
			})
			_, err := send(context.Background(), u, "a@example.go.jp", []string{"b@example.com"}, body)
			var se *smtp.SMTPError
			switch {
			case wantCode != 0:
				if !errors.As(err, &se) || se.Code != wantCode {
					t.Fatalf("err %v, want reply %d", err, wantCode)
				}
			default:
				if !errors.Is(err, wantErr) {
					t.Fatalf("err %v, want %v", err, wantErr)
				}
			}
			if n := len(srv.Messages()); n != 0 {
				t.Fatalf("upstream stored %d messages", n)
			}
			// The upstream behaves again: the next transaction works,
			// on a pooled connection or a fresh one.
			srv.SetFaults(smtptest.Faults{})
			if _, err := send(context.Background(), u, "a@example.go.jp", []string{"b@example.com"}, body); err != nil {
				t.Fatalf("after the fault: %v", err)
			}
			if m := srv.Messages(); len(m) != 1 || string(m[0].Data) != body {
				t.Fatalf("after the fault: %+v", m)
			}
		})
	}
	test("mail 4xx", smtptest.Faults{Mail: rej4}, 450, nil)
	test("mail 5xx", smtptest.Faults{Mail: rej5}, 550, nil)
	test("rcpt 4xx", smtptest.Faults{Rcpt: map[string]*smtp.SMTPError{"b@example.com": rej4}}, 450, nil)
	test("rcpt 5xx", smtptest.Faults{Rcpt: map[string]*smtp.SMTPError{"b@example.com": rej5}}, 550, nil)
	test("data 4xx", smtptest.Faults{Data: rej4}, 450, nil)
	test("data 5xx", smtptest.Faults{Data: rej5}, 550, nil)
	test("drop at rcpt", smtptest.Faults{DropAtRcpt: true}, 0, relay.ErrDropped)
	test("drop mid data", smtptest.Faults{DropMidData: true}, 0, relay.ErrDropped)
	test("stall after data", smtptest.Faults{Stall: true}, 0, relay.ErrTimeout)
}

func TestSMTPUTF8NotOffered(t *testing.T) {
	t.Parallel()
	srv := smtptest.New(t, smtptest.Options{STARTTLS: true})
	u := upstream(t, srv, nil)
	if _, err := u.Begin(context.Background(), "a@example.go.jp", relay.MailOptions{UTF8: true}); !errors.Is(err, relay.ErrUnsupported) {
		t.Fatalf("SMTPUTF8 to an upstream without it: %v", err)
	}
	srv8 := smtptest.New(t, smtptest.Options{STARTTLS: true, SMTPUTF8: true})
	tx, err := upstream(t, srv8, nil).Begin(context.Background(), "a@example.go.jp", relay.MailOptions{UTF8: true})
	if err != nil {
		t.Fatal(err)
	}
	tx.Abort()
}

func TestContextCancelsStalledUpstream(t *testing.T) {
	t.Parallel()
	srv := smtptest.New(t, smtptest.Options{STARTTLS: true})
	srv.SetFaults(smtptest.Faults{Stall: true})
	u := upstream(t, srv, func(o *relay.Options) { o.DataTimeout = time.Minute })
	// Connect first (a pooled connection), so that the deadline falls
	// in the stall, not in a slow handshake.
	if err := u.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := send(ctx, u, "a@example.go.jp", []string{"b@example.com"}, body)
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
	if !errors.Is(err, relay.ErrTimeout) && !errors.Is(err, relay.ErrDropped) {
		t.Fatalf("err %v", err)
	}
}

func TestMaildir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "outbox")
	u, err := relay.New("maildir:"+dir, relay.Options{Hostname: "gw.example.go.jp"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reply, err := send(ctx, u, "a@example.go.jp", []string{"b@example.com", "c@example.com"}, body)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(reply, "2.0.0 ") {
		t.Fatalf("reply %q", reply)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "new"))
	tmps, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	if len(ents) != 1 || len(tmps) != 0 {
		t.Fatalf("new/ has %d files, tmp/ %d", len(ents), len(tmps))
	}
	fi, _ := ents[0].Info()
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	got, _ := os.ReadFile(filepath.Join(dir, "new", ents[0].Name()))
	want := "Return-Path: <a@example.go.jp>\r\nDelivered-To: b@example.com\r\nDelivered-To: c@example.com\r\n" + body
	if string(got) != want {
		t.Fatalf("stored\n%q\nwant\n%q", got, want)
	}
	// A reader that fails mid-message leaves nothing behind.
	tx, _ := u.Begin(ctx, "a@example.go.jp", relay.MailOptions{})
	tx.Rcpt(ctx, "b@example.com")
	if _, err := tx.Data(ctx, &failingReader{data: []byte(body)}); !errors.Is(err, relay.ErrStore) {
		t.Fatalf("failing reader: %v", err)
	}
	ents, _ = os.ReadDir(filepath.Join(dir, "new"))
	tmps, _ = os.ReadDir(filepath.Join(dir, "tmp"))
	if len(ents) != 1 || len(tmps) != 0 {
		t.Fatalf("after a failed write: new/ has %d files, tmp/ %d", len(ents), len(tmps))
	}
}

type failingReader struct{ data []byte }

func (f *failingReader) Read(b []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, errors.New("disk on fire")
	}
	n := copy(b, f.data[:len(f.data)/2+1])
	f.data = f.data[n:]
	return n, nil
}

func TestNewRejectsBadURLs(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "http://x:1", "smtp://host", "smtp://u:p@host:25", "smtp://host:25/x", "maildir:"} {
		if _, err := relay.New(u, relay.Options{}); !errors.Is(err, relay.ErrConfig) {
			t.Errorf("New(%q): %v, want ErrConfig", u, err)
		}
	}
}

func TestUpstreamClientCertificate(t *testing.T) {
	t.Parallel()
	cert, pool := clientCert(t)
	srv := smtptest.New(t, smtptest.Options{STARTTLS: true, ClientCAs: pool})
	with := upstream(t, srv, func(o *relay.Options) { o.TLS.Certificates = []tls.Certificate{cert} })
	if _, err := send(context.Background(), with, "a@example.go.jp", []string{"b@example.com"}, body); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	without := upstream(t, srv, nil)
	if _, err := send(context.Background(), without, "a@example.go.jp", []string{"b@example.com"}, body); err == nil {
		t.Fatal("accepted without a client certificate")
	}
	if n := len(srv.Messages()); n != 1 {
		t.Fatalf("upstream has %d messages", n)
	}
}

// clientCert is a self-signed ECDSA certificate for TLS client auth.
func clientCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "gw.example.go.jp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: c}, pool
}

// TestSupportsSMTPUTF8: the probe reads the upstream's EHLO, keeps the
// connection for the next transaction, and fails when nobody answers; a
// Maildir always takes SMTPUTF8.
func TestSupportsSMTPUTF8(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, offers := range []bool{true, false} {
		srv := smtptest.New(t, smtptest.Options{STARTTLS: true, SMTPUTF8: offers})
		u := upstream(t, srv, nil)
		p, ok := u.(relay.UTF8Prober)
		if !ok {
			t.Fatal("smtp upstream is not a UTF8Prober")
		}
		got, err := p.SupportsSMTPUTF8(ctx)
		if err != nil || got != offers {
			t.Fatalf("upstream offering SMTPUTF8=%v: got %v, %v", offers, got, err)
		}
		if _, err := send(ctx, u, "a@example.go.jp", []string{"b@example.com"}, body); err != nil {
			t.Fatal(err)
		}
		if n := srv.Connections(); n != 1 {
			t.Fatalf("%d connections: the probe's was not reused", n)
		}
	}

	if _, err := deadUpstream(t).(relay.UTF8Prober).SupportsSMTPUTF8(ctx); !errors.Is(err, relay.ErrConnect) {
		t.Fatalf("nobody listening: %v", err)
	}

	m, err := relay.New("maildir:"+t.TempDir(), relay.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m.(relay.UTF8Prober).SupportsSMTPUTF8(ctx); !got || err != nil {
		t.Fatalf("maildir: %v, %v", got, err)
	}
}

// deadUpstream is an SMTP upstream at a loopback port nobody listens on.
func deadUpstream(t *testing.T) relay.Upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	u, err := relay.New("smtp://"+addr, relay.Options{DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return u
}
