package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// smtpUpstream is an SMTP or SMTPS next hop with a pool of idle
// connections.
type smtpUpstream struct {
	addr        string
	host        string
	implicitTLS bool
	opts        Options

	mu     sync.Mutex
	idle   []*conn
	closed bool
}

// conn is one upstream SMTP connection.
type conn struct {
	raw       net.Conn // the TCP connection under any TLS
	wire      *wire    // what c writes to, over any TLS
	c         *smtp.Client
	utf8      bool
	idleSince time.Time
	reused    bool
}

// NewSMTP returns an SMTP upstream at addr (host:port): implicit TLS if
// implicitTLS (RFC 8314), else STARTTLS (RFC 3207), required unless
// opts.InsecurePlaintext.
func NewSMTP(addr string, implicitTLS bool, opts Options) (Upstream, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrConfig, addr, err)
	}
	opts.defaults()
	if opts.Username != "" && opts.InsecurePlaintext && !implicitTLS {
		return nil, fmt.Errorf("%w: upstream AUTH needs TLS", ErrConfig)
	}
	return &smtpUpstream{addr: addr, host: host, implicitTLS: implicitTLS, opts: opts}, nil
}

func (u *smtpUpstream) tlsConfig() *tls.Config {
	var cfg *tls.Config
	if u.opts.TLS != nil {
		cfg = u.opts.TLS.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = u.host
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	return cfg
}

// dial opens, greets, secures and authenticates a new connection. Every
// failure wraps ErrConnect.
func (u *smtpUpstream) dial(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, u.opts.DialTimeout)
	defer cancel()
	raw, err := u.opts.Dial(ctx, "tcp", u.addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConnect, u.addr, err)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	raw.SetDeadline(time.Now().Add(u.opts.DialTimeout))
	fail := func(err error) (*conn, error) {
		raw.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrConnect, u.addr, err)
	}

	var nc net.Conn = raw
	switch {
	case u.implicitTLS:
		tc := tls.Client(raw, u.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(err)
		}
		nc = tc
	case !u.opts.InsecurePlaintext:
		// RFC 3207: STARTTLS before anything else; refuse an upstream
		// that does not offer it rather than send mail in clear.
		tc, err := u.startTLS(ctx, raw)
		if err != nil {
			return fail(err)
		}
		nc = tc
	}
	wc := &wire{Conn: nc}
	c := smtp.NewClient(wc)
	c.CommandTimeout = u.opts.DialTimeout
	c.SubmissionTimeout = u.opts.DataTimeout
	if err := c.Hello(u.opts.Hostname); err != nil {
		return fail(err)
	}
	if u.opts.Username != "" {
		// RFC 4954 4: PLAIN only over TLS (guaranteed by NewSMTP).
		if err := c.Auth(sasl.NewPlainClient("", u.opts.Username, u.opts.Password)); err != nil {
			return fail(err)
		}
	}
	c.CommandTimeout = u.opts.CommandTimeout
	raw.SetDeadline(time.Time{})
	utf8, _ := c.Extension("SMTPUTF8")
	return &conn{raw: raw, wire: wc, c: c, utf8: utf8}, nil
}

// startTLS runs the plaintext part of the session (greeting, EHLO,
// STARTTLS) by hand, so that EHLO carries our host name, and returns the
// TLS connection with a synthetic greeting in front for smtp.Client.
func (u *smtpUpstream) startTLS(ctx context.Context, raw net.Conn) (net.Conn, error) {
	br := bufio.NewReader(raw)
	tp := textproto.NewConn(struct {
		io.Reader
		io.Writer
		io.Closer
	}{br, raw, raw})
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if err := tp.PrintfLine("EHLO %s", u.opts.Hostname); err != nil {
		return nil, err
	}
	_, msg, err := tp.ReadResponse(250)
	if err != nil {
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	if !hasExtension(msg, "STARTTLS") {
		return nil, errors.New("upstream does not offer STARTTLS")
	}
	if err := tp.PrintfLine("STARTTLS"); err != nil {
		return nil, err
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("STARTTLS: %w", err)
	}
	if br.Buffered() > 0 {
		// RFC 3207 5: nothing may follow the 220 before the handshake
		// (a STARTTLS injection attempt).
		return nil, errors.New("data after STARTTLS reply")
	}
	tc := tls.Client(raw, u.tlsConfig())
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return &greeted{Conn: tc, pre: strings.NewReader("220 " + u.opts.Hostname + " TLS established\r\n")}, nil
}

func hasExtension(ehlo, ext string) bool {
	lines := strings.Split(ehlo, "\n")
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) > 0 && strings.EqualFold(f[0], ext) {
			return true
		}
	}
	return false
}

// greeted replays a greeting before the connection's own bytes: after
// STARTTLS the server sends no new 220, but smtp.Client waits for one.
type greeted struct {
	net.Conn
	pre *strings.Reader
}

func (g *greeted) Read(b []byte) (int, error) {
	if g.pre.Len() > 0 {
		return g.pre.Read(b)
	}
	return g.Conn.Read(b)
}

// get returns an idle connection or nil.
func (u *smtpUpstream) get() *conn {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.opts.Now()
	for len(u.idle) > 0 {
		c := u.idle[len(u.idle)-1]
		u.idle = u.idle[:len(u.idle)-1]
		if now.Sub(c.idleSince) < u.opts.IdleTimeout {
			return c
		}
		go c.c.Close()
	}
	return nil
}

// put returns a connection in a clean state to the pool, or closes it.
func (u *smtpUpstream) put(c *conn) {
	u.mu.Lock()
	if !u.closed && len(u.idle) < u.opts.PoolSize {
		c.idleSince = u.opts.Now()
		c.reused = true
		u.idle = append(u.idle, c)
		u.mu.Unlock()
		return
	}
	u.mu.Unlock()
	c.quit()
}

func (c *conn) quit() {
	c.raw.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.c.Quit(); err != nil {
		c.c.Close()
	}
}

// Begin implements Upstream. A pooled connection that fails at MAIL with
// a transport error (the upstream closed it while idle) is replaced by a
// fresh one: nothing has been accepted yet, so the retry is safe.
func (u *smtpUpstream) Begin(ctx context.Context, from string, opts MailOptions) (Txn, error) {
	for attempt := 0; ; attempt++ {
		c := u.get()
		if c == nil {
			var err error
			if c, err = u.dial(ctx); err != nil {
				return nil, err
			}
		}
		if opts.UTF8 && !c.utf8 {
			u.put(c)
			return nil, fmt.Errorf("%w: SMTPUTF8", ErrUnsupported) // RFC 6531 3.4
		}
		t := &smtpTxn{u: u, c: c}
		err := t.do(ctx, func() error { return c.c.Mail(from, &smtp.MailOptions{UTF8: opts.UTF8}) })
		if err == nil {
			return t, nil
		}
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			t.Abort()
			return nil, err
		}
		if c.reused && attempt == 0 {
			continue
		}
		return nil, err
	}
}

// Ping implements Upstream: it opens a connection (or checks an idle one
// with NOOP) and keeps it.
func (u *smtpUpstream) Ping(ctx context.Context) error {
	if c := u.get(); c != nil {
		stop := context.AfterFunc(ctx, func() { c.raw.Close() })
		err := c.c.Noop()
		if stop() && err == nil {
			u.put(c)
			return nil
		}
		c.c.Close()
	}
	c, err := u.dial(ctx)
	if err != nil {
		return err
	}
	u.put(c)
	return nil
}

// SupportsSMTPUTF8 implements UTF8Prober: whether the EHLO reply of an
// idle connection, or of a new one (kept for reuse), offers SMTPUTF8.
func (u *smtpUpstream) SupportsSMTPUTF8(ctx context.Context) (bool, error) {
	c := u.get()
	if c == nil {
		var err error
		if c, err = u.dial(ctx); err != nil {
			return false, err
		}
	}
	utf8 := c.utf8
	u.put(c)
	return utf8, nil
}

// Close implements Upstream.
func (u *smtpUpstream) Close() error {
	u.mu.Lock()
	idle := u.idle
	u.idle, u.closed = nil, true
	u.mu.Unlock()
	for _, c := range idle {
		c.quit()
	}
	return nil
}

type smtpTxn struct {
	u    *smtpUpstream
	c    *conn
	done bool
}

// do runs f with ctx able to interrupt it, and classifies transport
// errors. An upstream reply stays *smtp.SMTPError. After a transport
// error the connection is closed and the transaction over.
func (t *smtpTxn) do(ctx context.Context, f func() error) error {
	if t.done {
		return fmt.Errorf("%w: transaction already ended", ErrDropped)
	}
	// Closing (not a past deadline, which smtp.Client would overwrite at
	// its next command) makes cancellation certain; the connection is
	// not reused after it.
	stop := context.AfterFunc(ctx, func() { t.c.raw.Close() })
	err := f()
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err == nil {
		return nil
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		if se.Code == 421 {
			// RFC 5321 3.8: the upstream is closing the channel.
			t.close()
		}
		return se
	}
	t.close()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return fmt.Errorf("%w: %w", ErrDropped, err)
}

func (t *smtpTxn) close() {
	t.done = true
	t.c.c.Close()
}

// Rcpt implements Txn.
func (t *smtpTxn) Rcpt(ctx context.Context, to string) error {
	return t.do(ctx, func() error { return t.c.c.Rcpt(to, nil) })
}

// bodyWriters are the buffers the content of DATA goes through.
var bodyWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// Data implements Txn. The message is written with dot-stuffing and CRLF
// line ends (RFC 5321 4.5.2), so one DATA carries exactly one message.
// The content goes through stuffer, beneath smtp.Client (whose writer
// goes a byte at a time); smtp.Client ends it and reads the reply.
func (t *smtpTxn) Data(ctx context.Context, r io.Reader) (string, error) {
	var text string
	err := t.do(ctx, func() error {
		w, err := t.c.c.Data()
		if err != nil {
			return err
		}
		// smtp.Client sets no deadline while the body is written.
		t.c.raw.SetDeadline(time.Now().Add(t.u.opts.DataTimeout))
		bw := bodyWriters.Get().(*bufio.Writer)
		bw.Reset(t.c.wire.Conn)
		st := newStuffer(bw)
		_, err = io.Copy(st, r)
		if err == nil {
			err = bw.Flush()
		}
		bw.Reset(nil)
		bodyWriters.Put(bw)
		if err != nil {
			return err
		}
		t.c.wire.swallow = st.ending()
		resp, err := w.CloseWithResponse()
		if err != nil {
			return err
		}
		text = resp.StatusText
		return nil
	})
	if t.done {
		return "", err
	}
	if err != nil {
		// A refused message leaves the connection usable; RSET makes
		// sure no transaction state survives (RFC 5321 4.1.1.5).
		t.Abort()
		return "", err
	}
	t.done = true
	t.u.put(t.c)
	return text, nil
}

// Abort implements Txn: RSET, then back to the pool.
func (t *smtpTxn) Abort() {
	if t.done {
		return
	}
	t.done = true
	t.c.raw.SetDeadline(time.Now().Add(t.u.opts.CommandTimeout))
	if err := t.c.c.Reset(); err != nil {
		t.c.c.Close()
		return
	}
	t.c.raw.SetDeadline(time.Time{})
	t.u.put(t.c)
}
