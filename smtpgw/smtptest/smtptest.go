// Package smtptest runs a recording SMTP server on loopback for tests, the
// way net/http/httptest runs HTTP servers: the gateway's upstream in the
// tests of smtpgw and smtpgw/relay. It records every message it accepts,
// offers STARTTLS with a throwaway certificate, and can be told to refuse
// or break at any stage (4xx or 5xx at MAIL, RCPT or DATA, a connection
// dropped in the middle of DATA, a reply that never comes).
package smtptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is one message the server accepted (answered 250 to).
type Message struct {
	From string
	To   []string
	Data []byte
	// TLS is true when it came over TLS.
	TLS bool
	// Auth is the name the client authenticated as, or "".
	Auth string
	// UTF8 is true when MAIL FROM carried SMTPUTF8 (RFC 6531).
	UTF8 bool
}

// Faults tell the server to misbehave. The zero value behaves.
type Faults struct {
	// Mail, if set, is the reply to every MAIL FROM.
	Mail *smtp.SMTPError
	// Rcpt maps a recipient to its reply.
	Rcpt map[string]*smtp.SMTPError
	// Data, if set, is the reply after the final dot (the message is
	// read, then refused, and not recorded).
	Data *smtp.SMTPError
	// DropMidData closes the connection after reading the first bytes of
	// the message, without a reply.
	DropMidData bool
	// DropAtRcpt closes the connection instead of answering RCPT.
	DropAtRcpt bool
	// Stall makes the server read the whole message and then not answer
	// until the server is closed (an upstream timeout).
	Stall bool
}

// Options configure a Server. The zero value is a plaintext server
// without AUTH.
type Options struct {
	// STARTTLS offers STARTTLS with a fresh self-signed certificate for
	// 127.0.0.1, ::1 and localhost (see Server.RootCAs).
	STARTTLS bool
	// ImplicitTLS serves TLS from the first byte (smtps).
	ImplicitTLS bool
	// SMTPUTF8 advertises SMTPUTF8.
	SMTPUTF8 bool
	// Username and Password, if set, are the only credentials AUTH
	// PLAIN accepts (only after TLS).
	Username, Password string
	// Discard counts accepted messages (Count) without keeping them: a
	// sink for load tests.
	Discard bool
	// ClientCAs, if set, makes TLS require a client certificate that
	// verifies against it.
	ClientCAs *x509.CertPool
}

// Server is a recording SMTP server on 127.0.0.1.
type Server struct {
	// Addr is host:port.
	Addr string

	srv   *smtp.Server
	ln    net.Listener
	roots *x509.CertPool
	cert  *x509.Certificate
	opts  Options
	stop  chan struct{}

	mu     sync.Mutex
	faults Faults
	msgs   []Message
	conns  int
	txns   int
	count  int
}

// New starts a server on 127.0.0.1:0; it is closed in tb.Cleanup.
func New(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s := &Server{opts: opts, stop: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	be := smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &session{s: s, c: c, tls: isTLS}, nil
	})
	srv := smtp.NewServer(be)
	srv.Domain = "upstream.example.com"
	// go-smtp treats zero limits as unlimited: set them.
	srv.MaxMessageBytes = 64 << 20
	srv.MaxRecipients = 1000
	srv.MaxLineLength = 2000
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.EnableSMTPUTF8 = opts.SMTPUTF8
	srv.ErrorLog = discardLogger{}
	if opts.STARTTLS || opts.ImplicitTLS {
		cert, roots := selfSigned(tb)
		s.roots, s.cert = roots, cert.Leaf
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		if opts.ClientCAs != nil {
			srv.TLSConfig.ClientCAs = opts.ClientCAs
			srv.TLSConfig.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	if opts.ImplicitTLS {
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	s.srv, s.ln, s.Addr = srv, ln, ln.Addr().String()
	go srv.Serve(&countingListener{Listener: ln, s: s})
	tb.Cleanup(s.Close)
	return s
}

// Close stops the server and every connection.
func (s *Server) Close() {
	select {
	case <-s.stop:
		return
	default:
		close(s.stop)
	}
	s.srv.Close()
}

// RootCAs is a pool trusting the server's certificate.
func (s *Server) RootCAs() *x509.CertPool { return s.roots }

// SetFaults replaces the faults.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

// Messages returns the accepted messages so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Count is the number of messages accepted so far.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// RootPEM is the server's certificate in PEM, to trust it from another
// process.
func (s *Server) RootPEM() []byte {
	if s.cert == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.cert.Raw})
}

// Connections is the number of connections accepted so far.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Transactions is the number of MAIL commands seen so far.
func (s *Server) Transactions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.txns
}

func (s *Server) fault() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

type session struct {
	s    *Server
	c    *smtp.Conn
	tls  bool
	auth string
	from string
	utf8 bool
	to   []string
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain || ss.s.opts.Username == "" {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != ss.s.opts.Username || password != ss.s.opts.Password {
			return smtp.ErrAuthFailed
		}
		ss.auth = username
		return nil
	}), nil
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.s.mu.Lock()
	ss.s.txns++
	ss.s.mu.Unlock()
	if ss.s.opts.Username != "" && ss.auth == "" {
		return smtp.ErrAuthRequired
	}
	if f := ss.s.fault(); f.Mail != nil {
		return f.Mail
	}
	ss.from, ss.to = from, nil
	ss.utf8 = opts != nil && opts.UTF8
	return nil
}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	f := ss.s.fault()
	if f.DropAtRcpt {
		ss.c.Conn().Close()
		return errors.New("dropped")
	}
	if e := f.Rcpt[to]; e != nil {
		return e
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	f := ss.s.fault()
	if f.DropMidData {
		io.CopyN(io.Discard, r, 64)
		ss.c.Conn().Close()
		return errors.New("dropped")
	}
	if ss.s.opts.Discard && !f.Stall && f.Data == nil {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
		ss.s.mu.Lock()
		ss.s.count++
		ss.s.mu.Unlock()
		return nil
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		return err
	}
	if f.Stall {
		<-ss.s.stop
		return errors.New("stalled")
	}
	if f.Data != nil {
		return f.Data
	}
	ss.s.mu.Lock()
	ss.s.count++
	ss.s.msgs = append(ss.s.msgs, Message{From: ss.from, To: append([]string(nil), ss.to...), Data: buf.Bytes(), TLS: ss.tls, Auth: ss.auth, UTF8: ss.utf8})
	ss.s.mu.Unlock()
	return nil
}

func (ss *session) Reset()        { ss.from, ss.to, ss.utf8 = "", nil, false }
func (ss *session) Logout() error { return nil }

type countingListener struct {
	net.Listener
	s *Server
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.s.mu.Lock()
		l.s.conns++
		l.s.mu.Unlock()
	}
	return c, err
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...interface{}) {}
func (discardLogger) Println(...interface{})        {}

// selfSigned makes an ECDSA P-256 certificate for loopback.
func selfSigned(tb testing.TB) (tls.Certificate, *x509.CertPool) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "smtptest upstream"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}
