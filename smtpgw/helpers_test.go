package smtpgw

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"golang.org/x/crypto/bcrypt"

	"github.com/kakuin/kakuin/pki/pkitest"
	"github.com/kakuin/kakuin/smtpgw/relay"
	"github.com/kakuin/kakuin/smtpgw/smtptest"
)

// env is a gateway on loopback with a recording upstream behind it.
type env struct {
	t     *testing.T
	gw    *Gateway
	addr  string
	up    *smtptest.Server
	seal  *testSealer
	logs  *syncBuffer
	roots *x509.CertPool
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Test accounts; the hashes use bcrypt.MinCost to keep the tests fast.
const (
	testUser  = "mhlw-relay"
	testPass  = "correct horse battery staple"
	otherUser = "soumu-relay"
	otherPass = "another long passphrase"
)

var testCreds = sync.OnceValue(func() string {
	h1, _ := bcrypt.GenerateFromPassword([]byte(testPass), bcrypt.MinCost)
	h2, _ := bcrypt.GenerateFromPassword([]byte(otherPass), bcrypt.MinCost)
	return fmt.Sprintf("# test accounts\n%s:%s\n%s:%s\n", testUser, h1, otherUser, h2)
})

const testPolicy = `
# the two relays may each use their ministry's domains
user:mhlw-relay   mhlw.go.jp
user:soumu-relay  soumu.go.jp
net:127.0.0.0/8   mhlw.go.jp example.go.jp
`

// newEnv starts an upstream (STARTTLS) and a gateway that trusts
// 127.0.0.0/8 as a client network unless mod says otherwise.
func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	return newEnvUp(t, smtptest.Options{}, mod)
}

// newEnvUp is newEnv with an upstream made with up (STARTTLS is always
// on).
func newEnvUp(t *testing.T, up smtptest.Options, mod func(*Options)) *env {
	t.Helper()
	up.STARTTLS = true
	e := &env{t: t, up: smtptest.New(t, up), logs: &syncBuffer{}}
	u, err := relay.New("smtp://"+e.up.Addr, relay.Options{
		Hostname:       "gw.example.go.jp",
		TLS:            &tls.Config{RootCAs: e.up.RootCAs()},
		DialTimeout:    5 * time.Second,
		CommandTimeout: 2 * time.Second,
		DataTimeout:    2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	creds, err := ParseCredentials(strings.NewReader(testCreds()))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := ParseClientPolicy(strings.NewReader(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	cert, roots := tlsCert(t)
	e.roots = roots
	e.seal = newTestSealer(t, []string{"mhlw.go.jp", "soumu.go.jp", "example.go.jp"}, nil)
	opts := Options{
		Config: Config{
			Sealer:         e.seal,
			ClientNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			Credentials:    creds,
			Clients:        pol,
			Certificate:    &cert,
		},
		Limits: Limits{
			ReadTimeout:  5 * time.Second,
			WriteTimeout: 5 * time.Second,
		},
		Upstream: u,
		Hostname: "gw.example.go.jp",
		Logger:   slog.New(slog.NewJSONHandler(e.logs, nil)),
	}
	if mod != nil {
		mod(&opts)
	}
	gw, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.gw, e.addr = gw, ln.Addr().String()
	go gw.Serve(ln)
	t.Cleanup(func() { gw.Close() })
	return e
}

// tlsCert is a self-signed ECDSA certificate for 127.0.0.1.
func tlsCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gw.example.go.jp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: true, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
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

// client is a raw SMTP client: every reply is seen as the wire has it.
type client struct {
	t    *testing.T
	conn net.Conn
	tp   *textproto.Conn
}

func (e *env) dial() *client {
	e.t.Helper()
	conn, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: e.t, conn: conn, tp: textproto.NewConn(conn)}
	e.t.Cleanup(func() { conn.Close() })
	if code, msg := c.read(); code != 220 {
		e.t.Fatalf("greeting %d %s", code, msg)
	}
	return c
}

func (c *client) read() (int, string) {
	c.t.Helper()
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil && code == 0 {
		return 0, err.Error()
	}
	return code, msg
}

// cmd sends a command and returns the reply code and text (with the
// enhanced code).
func (c *client) cmd(format string, args ...any) (int, string) {
	c.t.Helper()
	if err := c.tp.PrintfLine(format, args...); err != nil {
		return 0, err.Error()
	}
	return c.read()
}

// expect sends a command and fails unless the reply has the code.
func (c *client) expect(code int, format string, args ...any) string {
	c.t.Helper()
	got, msg := c.cmd(format, args...)
	if got != code {
		c.t.Fatalf("%s: got %d %s, want %d", fmt.Sprintf(format, args...), got, msg, code)
	}
	return msg
}

// starttls upgrades the connection and says EHLO again.
func (c *client) starttls(roots *x509.CertPool, certs ...tls.Certificate) {
	c.t.Helper()
	c.expect(220, "STARTTLS")
	tc := tls.Client(c.conn, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: certs})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.tp = tc, textproto.NewConn(tc)
	c.expect(250, "EHLO client.example.go.jp")
}

func (c *client) authPlain(user, pass string) (int, string) {
	c.t.Helper()
	return c.cmd("AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)))
}

// data sends DATA and the raw bytes (which must end with the final
// "\r\n.\r\n" unless the test means otherwise) and returns the reply.
func (c *client) data(raw string) (int, string) {
	c.t.Helper()
	if code, msg := c.cmd("DATA"); code != 354 {
		return code, msg
	}
	if _, err := c.conn.Write([]byte(raw)); err != nil {
		return 0, err.Error()
	}
	return c.read()
}

// send runs a whole transaction and returns the reply to DATA (or to the
// first command refused).
func (c *client) send(from string, to []string, msg string) (int, string) {
	c.t.Helper()
	if code, text := c.cmd("MAIL FROM:<%s>", from); code != 250 {
		return code, text
	}
	for _, r := range to {
		if code, text := c.cmd("RCPT TO:<%s>", r); code != 250 {
			c.cmd("RSET")
			return code, text
		}
	}
	return c.data(dotStuff(msg) + ".\r\n")
}

func dotStuff(msg string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(msg, "\r\n") {
		if strings.HasPrefix(l, ".") {
			b.WriteString(".")
		}
		b.WriteString(l)
	}
	return b.String()
}

// message builds a test message.
func message(from string, extra ...string) string {
	h := "From: " + from + "\r\nTo: citizen@example.com\r\nSubject: test\r\nDate: Thu, 26 Nov 2026 10:00:00 +0900\r\nMessage-ID: <" + newID() + "@example.go.jp>\r\n"
	for _, x := range extra {
		h += x + "\r\n"
	}
	return h + "\r\nHello.\r\n.leading dot\r\n"
}

// verifyDKIM checks every DKIM signature of msg against the test keys.
func (e *env) verifyDKIM(msg []byte) {
	e.t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{LookupTXT: e.seal.lookupTXT})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(vs) == 0 {
		e.t.Fatal("no DKIM signature")
	}
	for _, v := range vs {
		if v.Err != nil {
			e.t.Fatalf("DKIM d=%s: %v", v.Domain, v.Err)
		}
	}
}

// receivedID returns the kakuin id in the first Received field of msg.
func receivedID(msg []byte) string {
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(msg)))
	h, err := r.ReadMIMEHeader()
	if err != nil {
		return ""
	}
	for _, v := range h.Values("Received") {
		if i := strings.Index(v, "(kakuin) with "); i >= 0 {
			f := strings.Fields(v[i:])
			for j := range f {
				if f[j] == "id" && j+1 < len(f) {
					return strings.TrimSuffix(f[j+1], ";")
				}
			}
		}
	}
	return ""
}

// verifySMIME checks the S/MIME signature of msg with openssl cms
// against the test root only, and that the content holds want.
func (e *env) verifySMIME(msg []byte, want string) {
	e.t.Helper()
	dir := e.t.TempDir()
	root := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(root, pkitest.CertPEM(e.seal.ca.Root), 0o644); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", "cms", "-verify", "-CAfile", root, "-purpose", "smimesign")
	cmd.Stdin = bytes.NewReader(msg)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		e.t.Fatalf("openssl cms -verify: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), want) {
		e.t.Fatalf("signed content lacks %q:\n%s", want, out.String())
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func newTP(c net.Conn) *textproto.Conn { return textproto.NewConn(c) }

// failingKey is a crypto.Signer whose Sign fails: an HSM gone away.
type failingKey struct{ crypto.Signer }

func (failingKey) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("hsm: device removed")
}
