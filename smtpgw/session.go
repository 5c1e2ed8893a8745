package smtpgw

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/kakuin/kakuin/signer"
	"github.com/kakuin/kakuin/smtpgw/relay"
)

var (
	_ smtp.Session     = (*session)(nil)
	_ smtp.AuthSession = (*session)(nil)
)

// session is one go-smtp session (a connection has a new one after
// STARTTLS).
type session struct {
	g      *Gateway
	c      *smtp.Conn
	gc     *gwConn
	ctx    context.Context
	cancel context.CancelFunc
	client Client
	tls    bool
	helo   string

	// The transaction, between MAIL and the end of DATA or RSET.
	t *txn
	// afterData: go-smtp calls Reset after every DATA; that one is not a
	// client command.
	afterData bool
	// mu serialises the session's methods with Logout, which go-smtp
	// may call from another goroutine (Server.Close at the shutdown
	// deadline) while Data is running.
	mu sync.Mutex
}

// txn is one mail transaction and the record that is logged at its end.
type txn struct {
	id           string
	start        time.Time
	from         string
	up           relay.Txn
	rcpts        int
	rcptAttempts int
	size         int64
	utf8         bool // MAIL FROM carried SMTPUTF8 (RFC 6531 3.4)
	headerFrom   string
	dateSkew     time.Duration // signing time minus the Date field, when over maxDateSkew
	result       signer.Result
	upReply      string
}

func (g *Gateway) newSession(c *smtp.Conn) (smtp.Session, error) {
	nc := c.Conn()
	s := &session{g: g, c: c, helo: c.Hostname()}
	if tc, ok := nc.(*tls.Conn); ok {
		s.tls = true
		st := tc.ConnectionState()
		if len(st.VerifiedChains) > 0 && len(st.PeerCertificates) > 0 {
			leaf := st.PeerCertificates[0]
			if leaf.Subject.CommonName != "" {
				s.client.CertNames = append(s.client.CertNames, leaf.Subject.CommonName)
			}
			s.client.CertNames = append(s.client.CertNames, leaf.DNSNames...)
		}
		nc = tc.NetConn()
	}
	gc, ok := nc.(*gwConn)
	if !ok {
		return nil, fmt.Errorf("%w: connection not from the gateway's listener", ErrInternal)
	}
	s.gc = gc
	if ap, err := netip.ParseAddrPort(gc.RemoteAddr().String()); err == nil {
		s.client.Addr = ap.Addr().Unmap()
	}
	s.ctx, s.cancel = context.WithCancel(g.baseCtx)
	if err := s.command(); err != nil {
		return nil, err
	}
	return s, nil
}

// command counts a session command that is not part of a transaction and
// enforces MaxCommandsWithoutMail: past it, 421 and the connection closes.
func (s *session) command() error {
	s.gc.mu.Lock()
	s.gc.commands++
	over := s.gc.commands > s.g.limits.MaxCommandsWithoutMail
	s.gc.mu.Unlock()
	if over {
		s.g.m.rejected.WithLabelValues("commands").Inc()
		s.hangUp(ErrTooManyCommands)
		return ErrTooManyCommands
	}
	return nil
}

// hangUp writes the reply for err and closes the connection. It runs on
// the session's goroutine, the only writer.
func (s *session) hangUp(err error) {
	r, _ := toSMTP(err)
	nc := s.c.Conn()
	nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(nc, "%d %d.%d.%d %s\r\n", r.Code, r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2], r.Message)
	nc.Close()
}

func (s *session) authorised(cfg *Config) bool {
	if s.client.User != "" || len(s.client.CertNames) > 0 {
		return true
	}
	for _, p := range cfg.ClientNetworks {
		if s.client.Addr.IsValid() && p.Contains(s.client.Addr) {
			return true
		}
	}
	return false
}

// key identifies the client for the rate limit.
func (s *session) key() string {
	switch {
	case s.client.User != "":
		return "user:" + s.client.User
	case len(s.client.CertNames) > 0:
		return "cert:" + s.client.CertNames[0]
	default:
		return "ip:" + s.client.Addr.String()
	}
}

// AuthMechanisms implements smtp.AuthSession. go-smtp offers them only
// over TLS (Server.AllowInsecureAuth is false).
func (s *session) AuthMechanisms() []string {
	if s.g.cfg.Load().Credentials == nil || !s.tls {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth implements smtp.AuthSession: PLAIN (RFC 4616) and LOGIN, only over
// TLS (RFC 4954 4), checked against the bcrypt hashes.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if err := s.command(); err != nil {
		return nil, err
	}
	creds := s.g.cfg.Load().Credentials
	if !s.tls || creds == nil {
		// RFC 4954 6: 538 5.7.11 encryption required.
		return nil, &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11}, Message: "Encryption required for requested authentication mechanism"}
	}
	check := func(identity, user, pass string) error {
		if (identity != "" && identity != user) || !creds.Verify(user, pass) {
			s.g.m.authFailures.Inc()
			s.g.log.Warn("auth failed", "client", s.client.Addr.String(), "user", user)
			return smtp.ErrAuthFailed // 535 5.7.8
		}
		s.mu.Lock()
		s.client.User = user
		s.mu.Unlock()
		return nil
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(check), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// loginServer is the LOGIN mechanism (draft-murchison-sasl-login), which
// go-sasl offers only as a client.
type loginServer struct {
	step  int
	user  string
	check func(identity, user, pass string) error
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if response != nil && len(response) > 0 {
			l.user, l.step = string(response), 2
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.user, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check("", l.user, string(response))
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}

// Mail implements smtp.Session: authorisation, rate, sender policy, then
// MAIL FROM upstream.
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t != nil {
		// RFC 5321 4.1.4: no MAIL inside a transaction.
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Nested MAIL command"}
	}
	s.gc.mu.Lock()
	if s.g.draining.Load() || s.gc.closed {
		s.gc.mu.Unlock()
		s.g.m.rejected.WithLabelValues("shutdown").Inc()
		s.hangUp(ErrShutdown)
		return ErrShutdown
	}
	s.gc.inTxn = true
	s.gc.mu.Unlock()

	cfg := s.g.cfg.Load()
	s.t = &txn{id: newID(), start: s.g.opts.Now(), from: from}
	err := s.mail(cfg, from, opts)
	if err != nil {
		s.end(err)
		if errors.Is(err, ErrTooManyCommands) {
			return err
		}
		r, _ := toSMTP(err)
		return r
	}
	s.gc.mu.Lock()
	s.gc.commands = 0
	s.gc.mu.Unlock()
	s.gc.idle.Reset(s.g.limits.MaxTimeWithoutMail)
	return nil
}

func (s *session) mail(cfg *Config, from string, opts *smtp.MailOptions) error {
	if !s.authorised(cfg) {
		if err := s.command(); err != nil {
			return err
		}
		return ErrNotAuthorised
	}
	s.t.utf8 = opts != nil && opts.UTF8
	if !s.t.utf8 && !isASCII(from) {
		// RFC 6531 3.4: a non-ASCII reverse-path only with SMTPUTF8.
		// go-smtp's parser lets it through either way; passed on, it
		// would reach an upstream that was never told.
		if err := s.command(); err != nil {
			return err
		}
		return fmt.Errorf("%w: MAIL FROM", ErrNeedSMTPUTF8)
	}
	if from != "" { // RFC 5321 4.5.5: the null path is allowed; the header From decides.
		if err := s.checkSender(cfg, from); err != nil {
			if err := s.command(); err != nil {
				return err
			}
			return err
		}
	}
	if !s.g.rate.allow(s.key()) {
		return ErrRate
	}
	up, err := s.g.opts.Upstream.Begin(s.ctx, from, relay.MailOptions{UTF8: s.t.utf8})
	if err != nil {
		return fromRelay(err)
	}
	s.t.up = up
	return nil
}

// checkSender applies the suffix and the client's policy to an address.
func (s *session) checkSender(cfg *Config, addr string) error {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return fmt.Errorf("%w: %q has no domain", ErrSenderSuffix, addr)
	}
	domain := addr[i+1:]
	if !cfg.Senders.Allows(domain) { // label-wise, A-labels (govdomain)
		return fmt.Errorf("%w: %q", ErrSenderSuffix, domain)
	}
	if !cfg.Clients.Allows(s.client, domain) {
		return fmt.Errorf("%w: %q", ErrSenderClient, domain)
	}
	return nil
}

// Rcpt implements smtp.Session: forwarded upstream at once, its reply
// passed back.
func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t == nil || s.t.up == nil {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Need MAIL first"}
	}
	s.t.rcptAttempts++
	// Refused recipients count too, at twice the limit: a client cannot
	// make the gateway probe the upstream without end.
	if s.t.rcpts >= s.g.limits.MaxRecipients || s.t.rcptAttempts > 2*s.g.limits.MaxRecipients {
		r, _ := toSMTP(ErrTooManyRecipients)
		return r
	}
	if !s.t.utf8 && !isASCII(to) {
		// RFC 6531 3.4: a non-ASCII forward-path only with SMTPUTF8.
		r, _ := toSMTP(ErrNeedSMTPUTF8)
		s.g.log.Info("recipient refused", "id", s.t.id, "reason", "smtputf8_required", "reply", r.Code)
		return r
	}
	if err := s.t.up.Rcpt(s.ctx, to); err != nil {
		r, reason := toSMTP(fromRelay(err))
		s.g.log.Info("recipient refused", "id", s.t.id, "reason", reason, "reply", r.Code, "cause", err.Error())
		return r
	}
	s.t.rcpts++
	return nil
}

// Data implements smtp.Session: spool and check, sign, relay; 250 only
// when the upstream said 250.
func (s *session) Data(r io.Reader) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t == nil || s.t.up == nil {
		io.Copy(io.Discard, r)
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Need MAIL first"}
	}
	s.afterData = true
	text, err := s.data(r)
	if err != nil {
		s.t.up.Abort()
		s.end(err)
		rep, _ := toSMTP(err)
		return rep
	}
	msg := fmt.Sprintf("OK id=%s; upstream: %s", s.t.id, text)
	s.end(nil)
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: msg}
}

func (s *session) data(r io.Reader) (string, error) {
	g, cfg, t := s.g, s.g.cfg.Load(), s.t
	l := g.limits
	chk := &checker{maxSize: l.MaxMessageBytes, maxLine: l.MaxLineLength, maxHeader: l.MaxHeaderBytes}
	in := &spool{threshold: g.opts.SpoolMemory, dir: g.opts.SpoolDir}
	// handedOff: a signer that outlived the sign timeout still reads in
	// and writes signed; it closes them when it returns.
	handedOff := false
	defer func() {
		if !handedOff {
			in.Close()
		}
	}()
	// Read all of it even after a violation, so that the reply comes
	// after the client's final dot and nothing is read as a command.
	_, err := io.Copy(io.MultiWriter(chk, &stopWriter{w: in, chk: chk}), r)
	t.size = chk.n
	g.m.bytes.WithLabelValues("in").Add(float64(chk.n))
	if errors.Is(err, smtp.ErrDataTooLarge) {
		return "", ErrTooBig
	}
	if errors.Is(err, smtp.ErrTooLongLine) {
		return "", ErrLineTooLong
	}
	if err != nil {
		return "", err
	}
	if err := chk.end(); err != nil {
		return "", err
	}

	head, err := in.Head(chk.headerLen)
	if err != nil {
		return "", err
	}
	if err := headerCharset(head, t.utf8); err != nil {
		return "", err
	}
	from, sender, date, err := originators(head)
	if err != nil {
		return "", err
	}
	t.headerFrom = from
	if err := s.checkSender(cfg, from); err != nil {
		return "", err
	}
	if sender != "" {
		if err := s.checkSender(cfg, sender); err != nil {
			return "", err
		}
	}

	signed := &spool{threshold: g.opts.SpoolMemory, dir: g.opts.SpoolDir}
	defer func() {
		if !handedOff {
			signed.Close()
		}
	}()
	// The signed message is the message, a few fields and the signature
	// part longer: room for it at once, instead of doubling into it.
	signed.expect(in.Len() + in.Len()/64 + 16<<10)
	ctx, cancel := context.WithTimeout(s.ctx, l.SignTimeout)
	start := time.Now()
	rcvd := s.received(cfg)
	// Say how long the message is, so that the signer sizes its one
	// buffer once instead of growing it chunk by chunk.
	src := sizedReader{io.MultiReader(strings.NewReader(rcvd), in.Reader()), int64(len(rcvd)) + in.Len()}
	var res signer.Result
	select {
	case g.signing <- struct{}{}:
		g.m.signWait.Observe(time.Since(start).Seconds())
		start = time.Now() // sign_duration_seconds times signing, not the wait
		// Signing runs apart, so that the reply keeps to the sign timeout
		// even when the signer does not heed its context: a PKCS#11 call
		// to an HSM that stopped answering cannot be interrupted. Such a
		// signer keeps its turn (the capacity is really taken) and the
		// spools until it returns; the client gets 451 4.3.0 now and
		// nothing is relayed.
		done := make(chan struct{})
		var sres signer.Result
		var serr error
		go func() {
			defer close(done)
			defer func() { <-g.signing }()
			defer func() {
				if p := recover(); p != nil {
					// The panic's own value may quote the message: only a
					// runtime error (an index, a nil pointer) is shown.
					what := fmt.Sprintf("%T", p)
					if re, ok := p.(runtime.Error); ok {
						what = re.Error()
					}
					serr = fmt.Errorf("%w: signer panicked: %s", signer.ErrKey, what)
				}
			}()
			sres, serr = cfg.Sealer.Sign(ctx, signed, src)
		}()
		select {
		case <-done:
			res, err = sres, serr
		case <-ctx.Done():
			handedOff = true
			go func() {
				<-done
				in.Close()
				signed.Close()
			}()
			cancel()
			g.m.signDuration.Observe(time.Since(start).Seconds())
			if s.ctx.Err() == nil {
				return "", fmt.Errorf("%w: signing took longer than %v: %w", signer.ErrKey, l.SignTimeout, ctx.Err())
			}
			return "", ctx.Err()
		}
	case <-ctx.Done():
		g.m.signWait.Observe(time.Since(start).Seconds())
		err = fmt.Errorf("%w: waiting for a turn to sign: %w", signer.ErrKey, ctx.Err())
	}
	if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, signer.ErrKey) && s.ctx.Err() == nil {
		// The sign timeout, not the client's: signing is unavailable
		// for now (451 4.3.0), the session goes on.
		err = fmt.Errorf("%w: signing took longer than %v: %w", signer.ErrKey, l.SignTimeout, err)
	}
	cancel()
	g.m.signDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		return "", err
	}
	if !res.SMIME && len(res.DKIM) == 0 {
		// RULES M3: never relay a message that carries no signature.
		return "", fmt.Errorf("%w: signer applied no signature", signer.ErrKey)
	}
	t.result = res
	if res.SMIME {
		g.m.signatures.WithLabelValues("smime").Inc()
		// RULES S8: a signingTime more than an hour from the Date field
		// shows as questionable in Thunderbird. Nothing to refuse (mail
		// queued during an outage gets here late): counted and logged.
		if d := g.opts.Now().Sub(date); !date.IsZero() && (d > maxDateSkew || d < -maxDateSkew) {
			t.dateSkew = d
			g.m.dateSkew.Inc()
		}
	}
	g.m.signatures.WithLabelValues("dkim").Add(float64(len(res.DKIM)))

	start = time.Now()
	text, err := t.up.Data(s.ctx, signed.Reader())
	g.m.upDuration.Observe(time.Since(start).Seconds())
	var se *smtp.SMTPError
	switch {
	case err == nil:
		g.m.upstream.WithLabelValues("2xx").Inc()
		g.m.bytes.WithLabelValues("out").Add(float64(signed.Len()))
	case errors.As(err, &se) && se.Code >= 500:
		g.m.upstream.WithLabelValues("5xx").Inc()
	case errors.As(err, &se):
		g.m.upstream.WithLabelValues("4xx").Inc()
	default:
		g.m.upstream.WithLabelValues("error").Inc()
	}
	if err != nil {
		return "", fromRelay(err)
	}
	t.upReply = text
	return text, nil
}

// stopWriter writes to w until the checker has seen a violation.
type stopWriter struct {
	w   io.Writer
	chk *checker
	err error
}

func (s *stopWriter) Write(p []byte) (int, error) {
	if s.chk.err == nil && s.err == nil {
		_, s.err = s.w.Write(p)
	}
	if s.err != nil {
		return 0, s.err
	}
	return len(p), nil
}

// maxDateSkew is how far from the Date field a signature may be made
// before Thunderbird marks it (RULES S8).
const maxDateSkew = time.Hour

// received is the trace field this hop adds (RFC 5321 4.4), with the
// transaction id that is also in the log; protocol names per RFC 3848.
func (s *session) received(cfg *Config) string {
	proto := "ESMTP"
	if s.t.utf8 {
		proto = "UTF8SMTP" // RFC 6531 3.7.3: UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA
	}
	if s.tls {
		proto += "S"
	}
	if s.client.User != "" {
		proto += "A"
	}
	helo := strings.Map(func(r rune) rune {
		if r <= ' ' || r > '~' || r == '(' || r == ')' || r == ';' {
			return -1
		}
		return r
	}, s.helo)
	if helo == "" {
		helo = "unknown"
	}
	addr := s.client.Addr.String()
	if s.client.Addr.Is6() {
		addr = "IPv6:" + addr // RFC 5321 4.1.3
	}
	return fmt.Sprintf("Received: from %s ([%s])\r\n\tby %s (kakuin) with %s id %s;\r\n\t%s\r\n",
		helo, addr, s.g.opts.Hostname, proto, s.t.id, s.g.opts.Now().Format(time.RFC1123Z))
}

// end logs the transaction and updates the metrics. err nil means the
// upstream accepted the message.
func (s *session) end(err error) {
	t := s.t
	if t == nil {
		return
	}
	s.t = nil
	s.gc.mu.Lock()
	s.gc.inTxn = false
	closing := s.gc.closed
	s.gc.mu.Unlock()
	g := s.g
	d := g.opts.Now().Sub(t.start)
	g.m.txnDuration.Observe(d.Seconds())
	attrs := []any{
		"id", t.id,
		"client", s.client.Addr.String(),
		"helo", s.helo,
		"tls", s.tls,
		"auth", s.client.User,
		"cert", strings.Join(s.client.CertNames, ","),
		"mail_from", t.from,
		"rcpts", t.rcpts,
		"size", t.size,
		"header_from", t.headerFrom,
		"smime", t.result.SMIME,
		"dkim", t.result.DKIM,
		"duration_ms", d.Milliseconds(),
	}
	if t.dateSkew != 0 {
		attrs = append(attrs, "date_skew_s", int64(t.dateSkew.Seconds()))
	}
	if err == nil {
		g.m.accepted.Inc()
		g.log.Info("transaction", append(attrs, "result", "accepted", "reply", 250, "upstream", t.upReply)...)
	} else {
		r, reason := toSMTP(err)
		g.m.rejected.WithLabelValues(reason).Inc()
		g.log.Info("transaction", append(attrs,
			"result", "refused", "reason", reason, "reply", r.Code,
			"enhanced", fmt.Sprintf("%d.%d.%d", r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2]),
			"cause", err.Error())...)
	}
	if closing {
		s.c.Conn().Close()
	}
}

// Reset implements smtp.Session: RSET, a new EHLO, and the end of every
// DATA. An open transaction is aborted upstream (RSET there too).
func (s *session) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.afterData {
		s.afterData = false
		if s.g.draining.Load() {
			// Shutting down: the reply to DATA is out (go-smtp resets
			// after writing it); this session has nothing left to do.
			s.gc.closeIfIdle()
		}
		return
	}
	if s.t != nil {
		if s.t.up != nil {
			s.t.up.Abort()
		}
		s.end(errAborted)
		return
	}
	s.command()
}

// Logout implements smtp.Session.
func (s *session) Logout() error {
	// Interrupt upstream I/O first, so that a Data in progress returns
	// (its upstream DATA is cut short: nothing is half delivered), then
	// wait for it.
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t != nil {
		if s.t.up != nil {
			s.t.up.Abort()
		}
		s.end(errAborted)
	}
	s.cancel()
	return nil
}

var idEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// newID is a random transaction id (80 bits, Crockford base32).
func newID() string {
	var b [10]byte
	rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}

// headerCharset checks the octets of the header section: without
// SMTPUTF8 they must all be US-ASCII (RFC 5322 2.2; RFC 6531 3.4: a
// message with UTF-8 header fields needs the SMTPUTF8 parameter, and it
// would reach the upstream unannounced), refused with 554 5.6.9; with
// SMTPUTF8, non-ASCII must be UTF-8 (RFC 6532 3.2), or 554 5.6.0.
func headerCharset(head []byte, smtputf8 bool) error {
	if smtputf8 {
		if !utf8.Valid(head) {
			return fmt.Errorf("%w: header is not UTF-8 (RFC 6532 3.2)", ErrHeader)
		}
		return nil
	}
	if !isASCII(string(head)) {
		return ErrHeader8bit
	}
	return nil
}

// isASCII reports whether s is all US-ASCII.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// sizedReader is a reader that tells how many octets it holds.
type sizedReader struct {
	io.Reader
	n int64
}

// Len is what the signer asks to size its buffer.
func (r sizedReader) Len() int64 { return r.n }
