// Package smtpgw is kakuin's SMTP gateway: an authenticated relay that
// accepts mail only from authorised clients (client networks, SMTP AUTH
// after STARTTLS, TLS client certificates), only for senders under the
// allowed suffixes that the client may use, seals each message with the
// signer, and relays it upstream in lockstep: it answers 250 only after
// the upstream did (RULES M2, RFC 5321 6.1). It keeps no queue.
//
// It is built on github.com/emersion/go-smtp (RFC 5321, ESMTP with
// PIPELINING RFC 2920, SIZE RFC 1870, 8BITMIME RFC 6152,
// ENHANCEDSTATUSCODES RFC 2034/3463, STARTTLS RFC 3207, AUTH RFC 4954,
// CHUNKING RFC 3030, SMTPUTF8 RFC 6531 when enabled). This package is the
// only place where errors become SMTP replies (see errors.go).
package smtpgw

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kakuin/kakuin/govdomain"
	"github.com/kakuin/kakuin/signer"
	"github.com/kakuin/kakuin/smtpgw/relay"
)

// Sealer signs one message: *signer.Signer is one.
type Sealer interface {
	Sign(ctx context.Context, dst io.Writer, src io.Reader) (signer.Result, error)
}

// Config is what a reload (SIGHUP) may change. Every zero value is
// documented.
type Config struct {
	// Sealer signs every message. Required.
	Sealer Sealer
	// Senders are the allowed sender suffixes. If zero, go.jp
	// (govdomain.DefaultSuffixes).
	Senders govdomain.Policy
	// ClientNetworks may relay without authenticating. If empty, none:
	// every client must authenticate.
	ClientNetworks []netip.Prefix
	// Credentials are the SMTP AUTH accounts. If nil, AUTH is not
	// offered.
	Credentials *Credentials
	// Clients says which sender domains each client may use. If nil,
	// every authorised client may use every domain under Senders.
	Clients *ClientPolicy
	// Certificate is the STARTTLS certificate. If nil, STARTTLS (and so
	// AUTH) is not offered. Whether STARTTLS is offered at all is decided
	// at New; a reload can replace the certificate, not remove it.
	Certificate *tls.Certificate
	// ClientCAs verify TLS client certificates; a client with a verified
	// certificate is authorised. If nil, none are asked for.
	ClientCAs *x509.CertPool
}

// Limits bound what a client can make the gateway do. go-smtp treats zero
// as unlimited; here every zero value means the documented default, and
// there is no "unlimited".
type Limits struct {
	// MaxMessageBytes is the largest message accepted (552 5.3.4). If
	// zero, 32 MiB.
	MaxMessageBytes int64
	// MaxRecipients per message (452 4.5.3). If zero, 100 (RFC 5321
	// 4.5.3.1.8).
	MaxRecipients int
	// MaxSessions open at once; more get 421 4.7.0 at connect. If zero,
	// 100.
	MaxSessions int
	// MaxCommandsWithoutMail is how many session commands the gateway
	// sees without a successful MAIL (EHLO/HELO, RSET, AUTH, refused
	// MAIL) before it answers 421 4.7.0 and closes. go-smtp answers
	// NOOP, VRFY and HELP itself: those are bounded by
	// MaxTimeWithoutMail and by go-smtp's limit of 3 bad commands. If
	// zero, 20.
	MaxCommandsWithoutMail int
	// MaxHeaderBytes is the largest header section (552 5.3.4). If zero,
	// 256 KiB.
	MaxHeaderBytes int64
	// MaxLineLength is the longest line, in commands and in the message,
	// without CRLF. If zero, 2000 (twice RFC 5321 4.5.3.1.6, as Postfix
	// and go-smtp tolerate).
	MaxLineLength int
	// MaxTimeWithoutMail closes a session (when it is not in a
	// transaction) that has gone this long without a successful MAIL:
	// it bounds what NOOP, VRFY or HELP, which go-smtp answers itself,
	// can keep a session slot for. If zero, 10 minutes.
	MaxTimeWithoutMail time.Duration
	// ReadTimeout bounds the wait for each command or chunk of data. If
	// zero, 5 minutes (RFC 5321 4.5.3.2.7).
	ReadTimeout time.Duration
	// WriteTimeout bounds each reply. If zero, 1 minute.
	WriteTimeout time.Duration
	// MessagesPerMinute is each client's sustained message rate (451
	// 4.7.1 beyond it); a client is its AUTH name, certificate name or IP
	// address. If zero, 6000.
	MessagesPerMinute int
	// RateBurst is how many messages a client may send at once. If zero,
	// MessagesPerMinute.
	RateBurst int
	// SignTimeout bounds signing one message. If zero, 1 minute.
	SignTimeout time.Duration
}

// check refuses a negative limit: none means "unlimited", and a negative
// timeout would time out every command at once.
func (l *Limits) check() error {
	for name, v := range map[string]int64{
		"MaxMessageBytes": l.MaxMessageBytes, "MaxRecipients": int64(l.MaxRecipients),
		"MaxSessions": int64(l.MaxSessions), "MaxCommandsWithoutMail": int64(l.MaxCommandsWithoutMail),
		"MaxTimeWithoutMail": int64(l.MaxTimeWithoutMail), "MaxHeaderBytes": l.MaxHeaderBytes,
		"MaxLineLength": int64(l.MaxLineLength), "ReadTimeout": int64(l.ReadTimeout),
		"WriteTimeout": int64(l.WriteTimeout), "MessagesPerMinute": int64(l.MessagesPerMinute),
		"RateBurst": int64(l.RateBurst), "SignTimeout": int64(l.SignTimeout),
	} {
		if v < 0 {
			return fmt.Errorf("smtpgw: limit %s is negative", name)
		}
	}
	return nil
}

func (l *Limits) defaults() {
	if l.MaxMessageBytes == 0 {
		l.MaxMessageBytes = 32 << 20
	}
	if l.MaxRecipients == 0 {
		l.MaxRecipients = 100
	}
	if l.MaxSessions == 0 {
		l.MaxSessions = 100
	}
	if l.MaxCommandsWithoutMail == 0 {
		l.MaxCommandsWithoutMail = 20
	}
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = 256 << 10
	}
	if l.MaxLineLength == 0 {
		l.MaxLineLength = 2000
	}
	if l.MaxTimeWithoutMail == 0 {
		l.MaxTimeWithoutMail = 10 * time.Minute
	}
	if l.ReadTimeout == 0 {
		l.ReadTimeout = 5 * time.Minute
	}
	if l.WriteTimeout == 0 {
		l.WriteTimeout = time.Minute
	}
	if l.MessagesPerMinute == 0 {
		l.MessagesPerMinute = 6000
	}
	if l.RateBurst == 0 {
		l.RateBurst = l.MessagesPerMinute
	}
	if l.SignTimeout == 0 {
		l.SignTimeout = time.Minute
	}
}

// Options configure a Gateway. Every zero value is documented.
type Options struct {
	Config
	Limits Limits
	// Upstream receives the signed messages. Required.
	Upstream relay.Upstream
	// Hostname names the gateway in the greeting and in Received fields.
	// If empty, os.Hostname.
	Hostname string
	// SMTPUTF8 advertises SMTPUTF8 (RFC 6531); a transaction that uses
	// it is refused with 553 5.6.7 at MAIL if the upstream lacks it, and
	// is relayed with SMTPUTF8 otherwise. If false, not advertised, and
	// the MAIL parameter gets 504 5.5.4 (go-smtp). Either way a non-ASCII
	// envelope address without the parameter gets 553 5.6.7, and
	// non-ASCII header octets without it 554 5.6.9 (RFC 6531 3.4).
	SMTPUTF8 bool
	// SignConcurrency is how many messages are signed at once; the
	// others wait their turn (within Limits.SignTimeout) while their
	// sessions go on reading and relaying. Signing is CPU work, two RSA
	// signatures a message: more at once than there are cores only adds
	// preemption, cache misses and messages held in memory. If zero,
	// runtime.GOMAXPROCS(0).
	SignConcurrency int
	// SpoolMemory is how much of a message is held in memory before it
	// spills to a temporary file (unlinked at once). If zero, 1 MiB.
	SpoolMemory int
	// SpoolDir holds the temporary files. If empty, os.TempDir.
	SpoolDir string
	// Logger gets one line per transaction. If nil, slog.Default.
	Logger *slog.Logger
	// Registerer gets the metrics. If nil, a private registry (served by
	// Handler) with the process and Go runtime collectors.
	Registerer prometheus.Registerer
	// Gatherer serves /metrics. If nil, the private registry, or
	// prometheus.DefaultGatherer when Registerer is set.
	Gatherer prometheus.Gatherer
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
}

// Gateway is the SMTP server. Create it with New, run it with Serve, stop
// it with Shutdown.
type Gateway struct {
	opts    Options
	limits  Limits
	cfg     atomic.Pointer[Config]
	srv     *smtp.Server
	log     *slog.Logger
	m       *metrics
	gather  prometheus.Gatherer
	rate    *rateLimiter
	sem     chan struct{}
	signing chan struct{} // one token per message being signed
	hasTLS  bool
	baseCtx context.Context
	cancel  context.CancelFunc

	draining atomic.Bool
	mu       sync.Mutex
	conns    map[*gwConn]struct{}
	allGone  chan struct{} // closed when draining and no conns remain

	readyMu  sync.Mutex
	readyAt  time.Time
	readyErr error
	probing  atomic.Bool // a key probe is running
	// readyTimeout bounds each /readyz check: 10 s (shorter in tests).
	readyTimeout time.Duration
	// readyRefresh is how often Handler's refresher runs the /readyz
	// checks when nobody asks: 15 s (shorter in tests).
	readyRefresh time.Duration
	refreshOnce  sync.Once
}

// New checks the options and returns a gateway that is not serving yet.
func New(opts Options) (*Gateway, error) {
	if opts.Upstream == nil {
		return nil, errors.New("smtpgw: no upstream")
	}
	if err := opts.Config.check(); err != nil {
		return nil, err
	}
	if err := opts.Limits.check(); err != nil {
		return nil, err
	}
	opts.Limits.defaults()
	if opts.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			h = "localhost"
		}
		opts.Hostname = h
	}
	if opts.SignConcurrency <= 0 {
		opts.SignConcurrency = runtime.GOMAXPROCS(0)
	}
	if opts.SpoolMemory == 0 {
		opts.SpoolMemory = 1 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	g := &Gateway{opts: opts, limits: opts.Limits, log: opts.Logger, conns: map[*gwConn]struct{}{}, allGone: make(chan struct{}), readyTimeout: 10 * time.Second, readyRefresh: 15 * time.Second}
	reg, gather := opts.Registerer, opts.Gatherer
	if reg == nil {
		// The process and Go runtime series (process_resident_memory_bytes,
		// go_goroutines, ...) next to the gateway's: the alert rules in
		// deploy/prometheus use them.
		r := prometheus.NewRegistry()
		r.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
		reg, gather = r, r
	} else if gather == nil {
		gather = prometheus.DefaultGatherer
	}
	g.m, g.gather = newMetrics(reg), gather
	g.rate = newRateLimiter(opts.Limits.MessagesPerMinute, opts.Limits.RateBurst, opts.Now)
	g.sem = make(chan struct{}, opts.Limits.MaxSessions)
	g.signing = make(chan struct{}, opts.SignConcurrency)
	g.baseCtx, g.cancel = context.WithCancel(context.Background())
	cfg := opts.Config
	g.cfg.Store(&cfg)

	s := smtp.NewServer(smtp.BackendFunc(g.newSession))
	s.Domain = opts.Hostname
	// go-smtp treats zero limits as unlimited: every one is set here.
	s.MaxMessageBytes = opts.Limits.MaxMessageBytes
	s.MaxRecipients = opts.Limits.MaxRecipients
	s.MaxLineLength = opts.Limits.MaxLineLength + 2 // go-smtp counts the CRLF
	s.ReadTimeout = opts.Limits.ReadTimeout
	s.WriteTimeout = opts.Limits.WriteTimeout
	s.AllowInsecureAuth = false // RFC 4954 4: no AUTH PLAIN/LOGIN in clear
	s.EnableSMTPUTF8 = opts.SMTPUTF8
	s.ErrorLog = slogPrinter{opts.Logger}
	if opts.Certificate != nil {
		g.hasTLS = true
		s.TLSConfig = &tls.Config{GetConfigForClient: g.tlsConfig}
	}
	g.srv = s
	return g, nil
}

func (c *Config) check() error {
	if c.Sealer == nil {
		return errors.New("smtpgw: no sealer")
	}
	if len(c.Senders.Suffixes) == 0 {
		c.Senders = govdomain.Policy{Suffixes: govdomain.DefaultSuffixes}
	}
	for i, p := range c.ClientNetworks {
		c.ClientNetworks[i] = p.Masked()
	}
	return nil
}

// Reload replaces the configuration. Sessions in progress keep going;
// each new transaction uses the new configuration.
func (g *Gateway) Reload(c Config) error {
	if err := c.check(); err != nil {
		g.m.reloads.WithLabelValues("error").Inc()
		return err
	}
	if g.hasTLS && c.Certificate == nil {
		g.m.reloads.WithLabelValues("error").Inc()
		return errors.New("smtpgw: reload without a TLS certificate; STARTTLS is on")
	}
	g.cfg.Store(&c)
	g.m.reloads.WithLabelValues("ok").Inc()
	return nil
}

func (g *Gateway) tlsConfig(*tls.ClientHelloInfo) (*tls.Config, error) {
	c := g.cfg.Load()
	t := &tls.Config{
		Certificates: []tls.Certificate{*c.Certificate},
		MinVersion:   tls.VersionTLS12,
	}
	if c.ClientCAs != nil {
		t.ClientCAs = c.ClientCAs
		t.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return t, nil
}

// Serve accepts connections on l until Shutdown or Close.
func (g *Gateway) Serve(l net.Listener) error {
	err := g.srv.Serve(&limitListener{Listener: l, g: g})
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops taking new transactions: new connections get 421 4.3.2,
// idle sessions are closed, sessions in a transaction finish it (and get
// 421 at their next MAIL). When they are all gone, or when ctx ends, the
// server closes every connection.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.draining.Store(true)
	g.mu.Lock()
	conns := make([]*gwConn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	for _, c := range conns {
		c.closeIfIdle() // takes g.mu through Close
	}
	g.mu.Lock()
	empty := len(g.conns) == 0
	g.mu.Unlock()
	var err error
	if !empty {
		select {
		case <-g.allGone:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	g.cancel()
	g.srv.Close()
	return err
}

// SignConcurrency is how many messages are signed at once
// (Options.SignConcurrency, or its default).
func (g *Gateway) SignConcurrency() int { return cap(g.signing) }

// Close stops everything at once.
func (g *Gateway) Close() error {
	g.draining.Store(true)
	g.cancel()
	return g.srv.Close()
}

// Handler serves /metrics, /healthz (the process runs) and /readyz (a
// sealer is configured, the upstream is reachable and keys in an HSM
// still sign; checked at most every 5 seconds). It also runs those checks
// every 15 seconds until Shutdown or Close, so that the ready_check gauges
// of /metrics stay current where nothing polls /readyz (under systemd,
// say): the KakuinKeysUnavailable alert depends on them.
func (g *Gateway) Handler() http.Handler {
	g.refreshOnce.Do(func() { go g.refreshReady() })
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g.gather, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := g.ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// refreshReady runs the readiness checks every readyRefresh until the
// gateway stops.
func (g *Gateway) refreshReady() {
	t := time.NewTicker(g.readyRefresh)
	defer t.Stop()
	for {
		select {
		case <-g.baseCtx.Done():
			return
		case <-t.C:
			g.ready(g.baseCtx) //nolint:errcheck // the gauges are the result
		}
	}
}

func (g *Gateway) ready(ctx context.Context) error {
	if g.draining.Load() {
		return ErrShutdown
	}
	if g.cfg.Load().Sealer == nil {
		return errors.New("no signer")
	}
	g.readyMu.Lock()
	defer g.readyMu.Unlock()
	if now := g.opts.Now(); g.readyAt.IsZero() || now.Sub(g.readyAt) > 5*time.Second {
		// The checks run side by side, so that a hung upstream does not
		// use up the key probe's time (or the other way round), each to
		// the end: a prober that gives up early (Kubernetes' timeoutSeconds)
		// must not make a slow check count as failed.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.readyTimeout)
		defer cancel()
		checks := []struct {
			name  string
			check func(context.Context) error
			err   error
		}{
			{name: "upstream", check: g.opts.Upstream.Ping},
			{name: "keys", check: g.probeKeys},
		}
		var wg sync.WaitGroup
		for i := range checks {
			wg.Go(func() { checks[i].err = checks[i].check(ctx) })
		}
		wg.Wait()
		var errs []error
		for _, c := range checks {
			ok := 1.0
			if c.err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", c.name, c.err))
				ok = 0
			}
			g.m.ready.WithLabelValues(c.name).Set(ok)
		}
		g.readyErr, g.readyAt = errors.Join(errs...), now
	}
	return g.readyErr
}

// KeyProber is a Sealer, or a STARTTLS key, whose keys can stop signing
// while the gateway runs (keys in a PKCS#11 token, pki.KeyProber):
// ProbeKeys signs once with each. /readyz fails while it fails.
type KeyProber interface {
	ProbeKeys(ctx context.Context) error
}

// probeKeys probes the Sealer's keys and the STARTTLS key, where they can
// be probed. A PKCS#11 call cannot be interrupted: the probe runs apart and
// ctx bounds the wait for it, and while a probe has not returned no other
// is started, so a hung HSM holds one goroutine, not one per /readyz.
func (g *Gateway) probeKeys(ctx context.Context) error {
	cfg := g.cfg.Load()
	var ps []KeyProber
	if p, ok := cfg.Sealer.(KeyProber); ok {
		ps = append(ps, p)
	}
	if cfg.Certificate != nil {
		if p, ok := cfg.Certificate.PrivateKey.(KeyProber); ok {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return nil
	}
	if !g.probing.CompareAndSwap(false, true) {
		return errors.New("the last key probe has not returned (is the HSM answering?)")
	}
	done := make(chan error, 1)
	go func() {
		defer g.probing.Store(false)
		var errs []error
		for _, p := range ps {
			errs = append(errs, p.ProbeKeys(ctx))
		}
		done <- errors.Join(errs...)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("key probe: %w", ctx.Err())
	}
}

// limitListener enforces MaxSessions and Shutdown at accept time: a
// connection over the limit, or during shutdown, is answered 421 and
// closed, without a session and without slowing anyone else down.
type limitListener struct {
	net.Listener
	g *Gateway
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		g := l.g
		if g.draining.Load() {
			g.m.sessionsDenied.WithLabelValues("shutdown").Inc()
			go refuse(c, "421 4.3.2 "+g.opts.Hostname+" shutting down, try again later\r\n")
			continue
		}
		select {
		case g.sem <- struct{}{}:
		default:
			g.m.sessionsDenied.WithLabelValues("limit").Inc()
			go refuse(c, "421 4.7.0 "+g.opts.Hostname+" too many sessions, try again later\r\n")
			continue
		}
		gc := &gwConn{Conn: c, g: g}
		gc.idle = time.AfterFunc(g.limits.MaxTimeWithoutMail, gc.idleExpired)
		g.mu.Lock()
		g.conns[gc] = struct{}{}
		g.mu.Unlock()
		g.m.sessions.Inc()
		return gc, nil
	}
}

func refuse(c net.Conn, line string) {
	c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	io.WriteString(c, line)
	c.Close()
}

// gwConn is one client connection: it carries what outlives a go-smtp
// session (STARTTLS starts a new one) and lets Shutdown close it when
// idle.
type gwConn struct {
	net.Conn
	g *Gateway

	mu       sync.Mutex
	inTxn    bool
	closed   bool
	commands int         // session commands since the last successful MAIL
	idle     *time.Timer // MaxTimeWithoutMail, restarted by each successful MAIL
	once     sync.Once

	// Replies wait in out until go-smtp next reads from the connection
	// (RFC 2920 3.2: a server may hold the replies to pipelined commands
	// while it keeps reading them, and sends them all before it waits for
	// input). A client that pipelines MAIL, RCPT and DATA gets the three
	// replies in one segment, not three.
	wmu  sync.Mutex
	out  []byte
	werr error // the first failed write: every later one fails too
}

// maxPending is how many reply bytes may wait for the next read; more are
// written at once, so a client that pipelines without reading cannot make
// the buffer grow.
const maxPending = 16 << 10

// Write holds p until the next Read, Close, or until maxPending bytes
// wait (see out).
//
// A failed write closes the connection. go-smtp ignores the error of every
// reply it writes and keeps reading commands: a client that stops reading
// would keep its session, and a MaxSessions slot, until ReadTimeout, its
// replies lost. Closing makes go-smtp's next read fail and end the
// session; a transaction under way is aborted upstream (Logout) unless the
// upstream has already accepted it. Limits.WriteTimeout, set before each
// write of what waits, is what makes a stuck write fail.
func (c *gwConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	if c.werr != nil {
		err := c.werr
		c.wmu.Unlock()
		return 0, err
	}
	c.out = append(c.out, p...)
	var err error
	if len(c.out) >= maxPending {
		err = c.flushLocked()
	}
	c.wmu.Unlock()
	if err != nil {
		c.failed()
		return 0, err
	}
	return len(p), nil
}

// Read sends the replies that wait before it waits for the client (RFC
// 2920 3.2).
func (c *gwConn) Read(p []byte) (int, error) {
	c.wmu.Lock()
	err := c.flushLocked()
	c.wmu.Unlock()
	if err != nil {
		c.failed()
		return 0, err
	}
	return c.Conn.Read(p)
}

// flushLocked writes what waits in out. c.wmu is held.
func (c *gwConn) flushLocked() error {
	if c.werr != nil || len(c.out) == 0 {
		return c.werr
	}
	c.Conn.SetWriteDeadline(time.Now().Add(c.g.limits.WriteTimeout))
	_, c.werr = c.Conn.Write(c.out)
	if cap(c.out) > maxPending {
		c.out = nil // a TLS handshake's certificates: do not keep the room
	} else {
		c.out = c.out[:0]
	}
	return c.werr
}

func (c *gwConn) failed() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.Close()
}

// Close sends what waits (go-smtp's last reply, 221 or 421, or TLS's
// close_notify) and closes. If a write is under way in another goroutine,
// closing makes it fail instead of waiting for it.
func (c *gwConn) Close() error {
	if c.wmu.TryLock() {
		if c.werr == nil && len(c.out) > 0 {
			c.Conn.SetWriteDeadline(time.Now().Add(min(c.g.limits.WriteTimeout, 5*time.Second)))
			_, c.werr = c.Conn.Write(c.out)
			c.out = nil
		}
		if c.werr == nil {
			c.werr = net.ErrClosed
		}
		c.wmu.Unlock()
	}
	err := c.Conn.Close()
	c.once.Do(func() {
		c.idle.Stop()
		g := c.g
		<-g.sem
		g.m.sessions.Dec()
		g.mu.Lock()
		delete(g.conns, c)
		if g.draining.Load() && len(g.conns) == 0 {
			select {
			case <-g.allGone:
			default:
				close(g.allGone)
			}
		}
		g.mu.Unlock()
	})
	return err
}

// idleExpired runs after MaxTimeWithoutMail without a successful MAIL:
// the session is closed, or, in a transaction, checked again later.
func (c *gwConn) idleExpired() {
	c.mu.Lock()
	busy := c.inTxn
	c.mu.Unlock()
	if busy {
		c.idle.Reset(c.g.limits.MaxTimeWithoutMail)
		return
	}
	c.g.m.rejected.WithLabelValues("time_without_mail").Inc()
	c.closeIfIdle()
}

// closeIfIdle closes the connection unless a transaction is under way.
func (c *gwConn) closeIfIdle() {
	c.mu.Lock()
	idle := !c.inTxn && !c.closed
	if idle {
		c.closed = true
	}
	c.mu.Unlock()
	if idle {
		c.Close()
	}
}

// slogPrinter adapts go-smtp's logger.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Printf(format string, v ...interface{}) {
	p.l.Warn("smtp server", "detail", fmt.Sprintf(format, v...))
}
func (p slogPrinter) Println(v ...interface{}) { p.l.Warn("smtp server", "detail", fmt.Sprint(v...)) }
