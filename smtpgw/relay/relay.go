// Package relay is the gateway's upstream: the next hop that receives each
// signed message, in lockstep with the client's transaction (RULES M2,
// RFC 5321 6.1). Recipients are forwarded one by one as they arrive and the
// upstream's reply to each is returned; the message is handed over after
// signing and the upstream's final reply is returned. Nothing is queued:
// the caller answers 250 only when the upstream did.
//
// Two kinds of upstream exist, chosen by URL (see New):
//
//	smtp://host:port     SMTP with STARTTLS, required and verified by default (RFC 3207)
//	smtps://host:port    SMTP over implicit TLS (RFC 8314)
//	maildir:/path        a Maildir, each message written to tmp/ then renamed into new/
//
// SMTP connections are kept in a small pool and reused across transactions
// (RSET, RFC 5321 4.1.1.5), so throughput is not bound by TLS handshakes.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"
)

// Errors for failures that are not an upstream reply. An upstream reply
// (even 4xx or 5xx) is returned as *smtp.SMTPError, so that the caller can
// tell "the upstream said no" from "the upstream could not be asked".
var (
	// ErrConfig: the upstream URL or options are unusable.
	ErrConfig = errors.New("relay: bad upstream configuration")
	// ErrConnect: the upstream could not be reached or refused the
	// session (dial, greeting, EHLO, STARTTLS, certificate, AUTH).
	ErrConnect = errors.New("relay: cannot connect to upstream")
	// ErrTimeout: the upstream did not answer in time.
	ErrTimeout = errors.New("relay: upstream timed out")
	// ErrDropped: the upstream connection broke in the middle of a
	// transaction.
	ErrDropped = errors.New("relay: upstream connection lost")
	// ErrUnsupported: the transaction needs an extension the upstream
	// does not offer (SMTPUTF8, RFC 6531 3.4).
	ErrUnsupported = errors.New("relay: upstream lacks a required extension")
	// ErrStore: a Maildir write failed.
	ErrStore = errors.New("relay: cannot store message")
)

// MailOptions are the MAIL FROM parameters passed upstream.
type MailOptions struct {
	// UTF8 asks for SMTPUTF8 (RFC 6531). If false, none is asked.
	UTF8 bool
}

// Upstream is the next hop. Implementations are safe for concurrent use.
type Upstream interface {
	// Begin starts a transaction with MAIL FROM. from is the reverse path
	// without angle brackets ("" for the null path).
	Begin(ctx context.Context, from string, opts MailOptions) (Txn, error)
	// Ping checks that the upstream can be reached (for readiness).
	Ping(ctx context.Context) error
	// Close releases pooled connections.
	Close() error
}

// UTF8Prober is implemented by upstreams that can say whether they take
// SMTPUTF8 transactions (RFC 6531): an SMTP upstream by its EHLO reply, a
// Maildir always (it stores the octets as they are).
type UTF8Prober interface {
	SupportsSMTPUTF8(ctx context.Context) (bool, error)
}

// Txn is one mail transaction upstream. It is used by one goroutine.
type Txn interface {
	// Rcpt forwards one recipient and returns the upstream's reply as an
	// error (*smtp.SMTPError), or nil when it was accepted.
	Rcpt(ctx context.Context, to string) error
	// Data sends the message, then ends the transaction. It returns the
	// upstream's final reply text on success, its reply as
	// *smtp.SMTPError on refusal, or a transport error.
	Data(ctx context.Context, r io.Reader) (string, error)
	// Abort ends the transaction without a message (RSET upstream). It is
	// a no-op after Data.
	Abort()
}

// New returns the upstream named by rawURL: "smtp://host:port",
// "smtps://host:port" or "maildir:PATH" (absolute or relative).
func New(rawURL string, opts Options) (Upstream, error) {
	if p, ok := strings.CutPrefix(rawURL, "maildir:"); ok {
		p = strings.TrimPrefix(p, "//")
		if p == "" {
			return nil, fmt.Errorf("%w: maildir: empty path", ErrConfig)
		}
		return NewMaildir(p, opts)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrConfig, rawURL, err)
	}
	switch u.Scheme {
	case "smtp", "smtps":
		if u.Host == "" || u.Port() == "" {
			return nil, fmt.Errorf("%w: %q: want %s://host:port", ErrConfig, rawURL, u.Scheme)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("%w: %q: no path, query or credentials in the URL (use the options)", ErrConfig, rawURL)
		}
		return NewSMTP(u.Host, u.Scheme == "smtps", opts)
	default:
		return nil, fmt.Errorf("%w: %q: scheme must be smtp, smtps or maildir", ErrConfig, rawURL)
	}
}

// Options configure an upstream. Every zero value is documented.
type Options struct {
	// Hostname is the name given in EHLO and used in Maildir file names.
	// If empty, "localhost".
	Hostname string
	// TLS configures TLS towards an SMTP upstream: RootCAs (nil: the
	// system roots), Certificates (a client certificate), ServerName
	// (empty: the URL's host), InsecureSkipVerify (tests only). If nil, a
	// zero tls.Config: verified against the system roots.
	TLS *tls.Config
	// InsecurePlaintext allows an smtp:// upstream without STARTTLS. If
	// false (the default), an upstream that does not offer STARTTLS or
	// whose certificate does not verify is refused (ErrConnect).
	InsecurePlaintext bool
	// Username and Password, if Username is set, authenticate to the
	// upstream with AUTH PLAIN after TLS (RFC 4954, RFC 4616). Never sent
	// over plaintext.
	Username, Password string
	// DialTimeout bounds connecting, greeting, EHLO and STARTTLS. If
	// zero, 30 seconds.
	DialTimeout time.Duration
	// CommandTimeout bounds each command's reply. If zero, 5 minutes
	// (RFC 5321 4.5.3.2).
	CommandTimeout time.Duration
	// DataTimeout bounds sending the message and waiting for the final
	// reply. If zero, 10 minutes (RFC 5321 4.5.3.2.6).
	DataTimeout time.Duration
	// PoolSize is how many idle connections are kept for reuse. If zero,
	// 4; if negative, none.
	PoolSize int
	// IdleTimeout is how long an idle connection is kept. If zero, 30
	// seconds.
	IdleTimeout time.Duration
	// Dial opens the TCP connection. If nil, a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.Hostname == "" {
		o.Hostname = "localhost"
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 30 * time.Second
	}
	if o.CommandTimeout == 0 {
		o.CommandTimeout = 5 * time.Minute
	}
	if o.DataTimeout == 0 {
		o.DataTimeout = 10 * time.Minute
	}
	if o.PoolSize == 0 {
		o.PoolSize = 4
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 30 * time.Second
	}
	if o.Dial == nil {
		var d net.Dialer
		o.Dial = d.DialContext
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}
