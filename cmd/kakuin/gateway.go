package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/signer"
	"github.com/kakuin/kakuin/smtpgw"
	"github.com/kakuin/kakuin/smtpgw/relay"
)

func init() {
	register("gateway", "the signing SMTP relay (STARTTLS, AUTH, sender policy, lockstep upstream)", runGateway)
}

// gatewayConfig is the configuration of `kakuin gateway`: the signing
// configuration shared with `kakuin sign`, and the relay's own. Every
// default is safe: no client network (everyone authenticates), TLS
// required and verified towards an smtp:// upstream.
type gatewayConfig struct {
	Sign signConfig

	Listen          string   `env:"LISTEN" envDefault:"127.0.0.1:2525" help:"SMTP listening address"`
	MetricsListen   string   `env:"METRICS_LISTEN" envDefault:"127.0.0.1:9125" help:"address of /metrics, /healthz and /readyz (off: none)"`
	ClientNetworks  []string `env:"CLIENT_NETWORKS" envSeparator:"," help:"comma-separated CIDRs whose clients may relay without authenticating (default none)"`
	Credentials     string   `env:"CREDENTIALS" help:"SMTP AUTH accounts, NAME:BCRYPT-HASH per line, not accessible to others (default none: AUTH off)"`
	SenderPolicy    string   `env:"SENDER_POLICY" help:"per-client sender domains file (see README; default: every authorised client may use every domain under the suffixes)"`
	ClientCA        string   `env:"CLIENT_CA" help:"PEM CA certificates that verify TLS client certificates; a verified client may relay (default none)"`
	SignConcurrency int      `env:"SIGN_CONCURRENCY" envDefault:"0" help:"messages signed at once, the others wait their turn (0: one per core, one more when RSA signs through libcrypto; raise it for a slow HSM)"`
	SMTPUTF8        string   `env:"SMTPUTF8" envDefault:"auto" help:"advertise SMTPUTF8: auto (if the upstream offers it when the gateway starts), true or false"`

	Upstream           string        `env:"UPSTREAM" envDefault:"maildir:var/outbox" help:"next hop: smtp://host:port (STARTTLS required), smtps://host:port, or maildir:PATH"`
	UpstreamCA         string        `env:"UPSTREAM_CA" help:"PEM roots that verify the upstream's certificate (default the system roots)"`
	UpstreamInsecure   bool          `env:"UPSTREAM_INSECURE_SKIP_VERIFY" envDefault:"false" help:"do not verify the upstream's certificate (tests only)"`
	UpstreamPlaintext  bool          `env:"UPSTREAM_PLAINTEXT" envDefault:"false" help:"allow an smtp:// upstream without STARTTLS (tests only)"`
	UpstreamUser       string        `env:"UPSTREAM_USER" help:"AUTH PLAIN name towards the upstream, over TLS only (default none)"`
	UpstreamPassword   string        `env:"UPSTREAM_PASSWORD,unset" help:"AUTH PLAIN password towards the upstream"`
	UpstreamClientCert string        `env:"UPSTREAM_CLIENT_CERT" help:"PEM client certificate towards the upstream (default none)"`
	UpstreamClientKey  string        `env:"UPSTREAM_CLIENT_KEY" help:"its private key, mode 0600"`
	UpstreamTimeout    time.Duration `env:"UPSTREAM_TIMEOUT" envDefault:"5m" help:"wait for each upstream reply"`
	UpstreamPool       int           `env:"UPSTREAM_POOL" envDefault:"8" help:"idle upstream connections kept for reuse"`

	MaxMessageBytes   int64         `env:"MAX_MESSAGE_BYTES" envDefault:"33554432" help:"largest message (552 5.3.4)"`
	MaxRecipients     int           `env:"MAX_RECIPIENTS" envDefault:"100" help:"recipients per message (452 4.5.3)"`
	MaxSessions       int           `env:"MAX_SESSIONS" envDefault:"100" help:"concurrent sessions (421 4.7.0 beyond)"`
	MaxCommands       int           `env:"MAX_COMMANDS_WITHOUT_MAIL" envDefault:"20" help:"commands without a successful MAIL before 421"`
	MaxTimeNoMail     time.Duration `env:"MAX_TIME_WITHOUT_MAIL" envDefault:"10m" help:"a session with no successful MAIL for this long is closed (outside a transaction)"`
	MaxHeaderBytes    int64         `env:"MAX_HEADER_BYTES" envDefault:"262144" help:"largest header section (552 5.3.4)"`
	MaxLineLength     int           `env:"MAX_LINE_LENGTH" envDefault:"2000" help:"longest line, without CRLF"`
	ReadTimeout       time.Duration `env:"READ_TIMEOUT" envDefault:"5m" help:"wait for each client command or data chunk"`
	WriteTimeout      time.Duration `env:"WRITE_TIMEOUT" envDefault:"1m" help:"wait for each reply to be sent"`
	SignTimeout       time.Duration `env:"SIGN_TIMEOUT" envDefault:"1m" help:"longest wait for a turn to sign plus the signing (an HSM that stopped answering): then 451 4.3.0"`
	MessagesPerMinute int           `env:"RATE_PER_MINUTE" envDefault:"6000" help:"messages per minute per client (451 4.7.1 beyond)"`
	RateBurst         int           `env:"RATE_BURST" envDefault:"0" help:"messages a client may send at once (0: RATE_PER_MINUTE)"`
	ShutdownGrace     time.Duration `env:"SHUTDOWN_GRACE" envDefault:"30s" help:"on SIGTERM, how long transactions in flight may take to finish"`
}

func runGateway(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kakuin gateway", flag.ContinueOnError)
	const intro = "usage: kakuin gateway\n       kakuin gateway hash-password NAME < password   (prints a KAKUIN_CREDENTIALS line)\n\n" +
		"Runs the signing SMTP relay. Clients in KAKUIN_CLIENT_NETWORKS, or authenticated\n" +
		"with AUTH after STARTTLS, or with a verified TLS client certificate, may send as\n" +
		"the domains their policy allows under the sender suffixes; each message is signed\n" +
		"(S/MIME, then DKIM) and relayed upstream, and the client gets 250 only after the\n" +
		"upstream said 250. One JSON log line per transaction goes to stderr.\n\n" +
		"signals: SIGHUP reloads keys, certificates, credentials and policy;\n" +
		"SIGTERM/SIGINT stop accepting (421) and let transactions finish (SHUTDOWN_GRACE).\n\n" +
		"exit status: 0 stopped cleanly, 2 configuration error, 3 runtime failure."
	if code, done := parseFlags(fs, args, intro, &gatewayConfig{}, stdout, stderr, exitUsage); done {
		return code
	}
	if fs.NArg() == 2 && fs.Arg(0) == "hash-password" {
		return hashPassword(fs.Arg(1), stdin, stdout, stderr)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kakuin gateway: unexpected argument %q: configure with KAKUIN_* variables\n", fs.Arg(0))
		return exitUsage
	}
	var cfg gatewayConfig
	if err := parseEnv(&cfg); err != nil {
		fmt.Fprintf(stderr, "kakuin gateway: %s\n", oneLine(err))
		return exitUsage
	}
	if err := cfg.Sign.validate(); err != nil {
		fmt.Fprintf(stderr, "kakuin gateway: %s\n", oneLine(err))
		return exitUsage
	}
	cfg.Sign.useRSAEngine()
	if err := cfg.checkLimits(); err != nil {
		fmt.Fprintf(stderr, "kakuin gateway: %s\n", oneLine(err))
		return exitUsage
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	gcDefault(os.LookupEnv)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return serveGateway(ctx, &cfg, log, hup, nil)
}

// checkLimits refuses a negative number or duration among the gateway's
// own variables, naming it: no limit means "unlimited", and a negative
// timeout would time out everything at once.
func (c *gatewayConfig) checkLimits() error {
	v := reflect.ValueOf(c).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("env")
		if f := v.Field(i); name != "" && (f.Kind() == reflect.Int || f.Kind() == reflect.Int64) && f.Int() < 0 {
			return fmt.Errorf("%s%s must not be negative", envPrefix, name)
		}
	}
	return nil
}

// gatewayGOGC is the gateway's garbage-collection target unless GOGC is
// set. Its garbage is short-lived (a few times each message, gone once
// the message is relayed) and its live heap small, so with the runtime's
// default of 100 it collects every few messages; in BenchmarkGatewayLoad
// (4 KB, 20 sessions) collection took about 8 % of the gateway's CPU at
// 100 and under 2 % at 400, for about 20 MB more at 100 sessions.
// GOMEMLIMIT bounds the heap where memory is bounded (the Kubernetes and
// systemd examples set it).
const gatewayGOGC = 400

// gcDefault sets the gateway's GC target unless the environment (lookup)
// sets GOGC, which the runtime has then applied already.
func gcDefault(lookup func(string) (string, bool)) (percent int, set bool) {
	if _, ok := lookup("GOGC"); ok {
		return 0, false
	}
	debug.SetGCPercent(gatewayGOGC)
	return gatewayGOGC, true
}

// smtputf8Probe bounds the start-up question to the upstream.
const smtputf8Probe = 15 * time.Second

// smtputf8 decides whether the gateway advertises SMTPUTF8 (RFC 6531).
// auto: if the upstream offers it when the gateway starts (an SMTPUTF8
// transaction is relayed only with SMTPUTF8, RFC 6531 3.4, so advertising
// it to an upstream without it would only turn mail away later, with
// 553 5.6.7). An upstream that cannot be asked at start is taken not to
// offer it; the answer holds until the gateway restarts.
func (c *gatewayConfig) smtputf8(ctx context.Context, up relay.Upstream, log *slog.Logger) (bool, error) {
	if !strings.EqualFold(c.SMTPUTF8, "auto") {
		on, err := strconv.ParseBool(c.SMTPUTF8)
		if err != nil {
			return false, fmt.Errorf("KAKUIN_SMTPUTF8=%q: want auto, true or false", c.SMTPUTF8)
		}
		return on, nil
	}
	p, ok := up.(relay.UTF8Prober)
	if !ok {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, smtputf8Probe)
	defer cancel()
	on, err := p.SupportsSMTPUTF8(ctx)
	if err != nil {
		log.Warn("kakuin gateway: SMTPUTF8 not advertised: the upstream could not be asked (KAKUIN_SMTPUTF8=auto decides at start)", "error", oneLine(err))
		return false, nil
	}
	log.Info("kakuin gateway: SMTPUTF8", "advertised", on, "reason", "KAKUIN_SMTPUTF8=auto: as the upstream takes it or not")
	return on, nil
}

// serveGateway runs the gateway until ctx ends (then shuts down
// gracefully), reloading on each value from hup. ready, if set, gets the
// SMTP and metrics addresses once listening.
func serveGateway(ctx context.Context, cfg *gatewayConfig, log *slog.Logger, hup <-chan os.Signal, ready func(smtpAddr, metricsAddr string)) int {
	fail := func(code int, what string, err error) int {
		log.Error("kakuin gateway: "+what, "error", oneLine(err))
		return code
	}
	// Log out of the HSM tokens, if any, once every session is done.
	defer pki.ClosePKCS11()
	dyn, closer, err := cfg.dynamic()
	if err != nil {
		return fail(exitUsage, "configuration", err)
	}
	defer func() { closer.Close() }()
	up, err := cfg.upstream()
	if err != nil {
		return fail(exitUsage, "upstream", err)
	}
	defer up.Close()
	utf8, err := cfg.smtputf8(ctx, up, log)
	if err != nil {
		return fail(exitUsage, "configuration", err)
	}
	hostname := cfg.Sign.Hostname
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	signTurns := cfg.SignConcurrency
	if signTurns == 0 && cfg.Sign.rsaEngine == "libcrypto" {
		// While a signer is inside libcrypto its core runs other work (the
		// Go runtime hands the processor on), so one turn more than cores
		// keeps them busy: 3-8 % more messages/s at 4 KB on 2 cores, in
		// seven A/B pairs of BenchmarkGatewayLoad.
		signTurns = runtime.GOMAXPROCS(0) + 1
	}
	gw, err := smtpgw.New(smtpgw.Options{
		Config:          *dyn,
		Upstream:        up,
		Hostname:        hostname,
		SMTPUTF8:        utf8,
		SignConcurrency: signTurns,
		Logger:          log,
		Limits: smtpgw.Limits{
			MaxMessageBytes:        cfg.MaxMessageBytes,
			MaxRecipients:          cfg.MaxRecipients,
			MaxSessions:            cfg.MaxSessions,
			MaxCommandsWithoutMail: cfg.MaxCommands,
			MaxTimeWithoutMail:     cfg.MaxTimeNoMail,
			MaxHeaderBytes:         cfg.MaxHeaderBytes,
			MaxLineLength:          cfg.MaxLineLength,
			ReadTimeout:            cfg.ReadTimeout,
			WriteTimeout:           cfg.WriteTimeout,
			SignTimeout:            cfg.SignTimeout,
			MessagesPerMinute:      cfg.MessagesPerMinute,
			RateBurst:              cfg.RateBurst,
		},
	})
	if err != nil {
		return fail(exitUsage, "gateway", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fail(exitTemp, "listen", err)
	}
	var metricsAddr string
	if cfg.MetricsListen != "" && cfg.MetricsListen != "off" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			ln.Close()
			return fail(exitTemp, "metrics listen", err)
		}
		metricsAddr = mln.Addr().String()
		hs := &http.Server{Handler: gw.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(mln)
		defer hs.Close()
	}
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ln) }()
	log.Info("kakuin gateway: listening", "smtp", ln.Addr().String(), "metrics", metricsAddr,
		"upstream", cfg.Upstream, "client_networks", cfg.ClientNetworks, "starttls", dyn.Certificate != nil,
		"auth", dyn.Credentials != nil, "rsa", cfg.Sign.rsaEngine, "sign_turns", gw.SignConcurrency())
	if ready != nil {
		ready(ln.Addr().String(), metricsAddr)
	}
	for {
		select {
		case <-hup:
			// Reload what may change: keys, certificates, credentials,
			// policy. On error the running configuration stays.
			d, c, err := cfg.dynamic()
			if err == nil {
				err = gw.Reload(*d)
			}
			if err != nil {
				if c != nil {
					c.Close()
				}
				log.Error("kakuin gateway: reload failed; keeping the running configuration", "error", oneLine(err))
				continue
			}
			old := closer
			closer = c
			old.Close()
			log.Info("kakuin gateway: reloaded")
		case err := <-served:
			return fail(exitTemp, "serve", err)
		case <-ctx.Done():
			log.Info("kakuin gateway: stopping", "grace", cfg.ShutdownGrace.String())
			sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
			err := gw.Shutdown(sctx)
			cancel()
			if err != nil {
				log.Warn("kakuin gateway: transactions cut at the deadline", "error", err.Error())
			}
			log.Info("kakuin gateway: stopped")
			return exitOK
		}
	}
}

// dynamic loads what SIGHUP reloads: the signer (keys, certificates),
// the STARTTLS certificate, the client CAs, credentials, policy and
// networks.
func (cfg *gatewayConfig) dynamic() (*smtpgw.Config, io.Closer, error) {
	opts, closer, err := cfg.Sign.signerOptions()
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*smtpgw.Config, io.Closer, error) {
		closer.Close()
		return nil, nil, err
	}
	s, err := signer.New(opts)
	if err != nil {
		return fail(err)
	}
	d := &smtpgw.Config{Sealer: s, Senders: cfg.Sign.senders()}
	for _, n := range cfg.ClientNetworks {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return fail(fmt.Errorf("%w: KAKUIN_CLIENT_NETWORKS: %w", errConfig, err))
		}
		d.ClientNetworks = append(d.ClientNetworks, p)
	}
	certFile, keyFile := cfg.Sign.tlsCert(), cfg.Sign.tlsKey()
	if exists(certFile) || exists(keyFile) || cfg.Sign.TLSCert != "" {
		c, err := loadTLSCert(certFile, keyFile)
		if err != nil {
			return fail(err)
		}
		d.Certificate = c
	}
	if cfg.Credentials != "" {
		if d.Certificate == nil {
			return fail(fmt.Errorf("%w: KAKUIN_CREDENTIALS needs a STARTTLS certificate (KAKUIN_TLS_CERT): AUTH is never offered in clear", errConfig))
		}
		if d.Credentials, err = smtpgw.LoadCredentials(cfg.Credentials); err != nil {
			return fail(err)
		}
	}
	if cfg.SenderPolicy != "" {
		if d.Clients, err = smtpgw.LoadClientPolicy(cfg.SenderPolicy); err != nil {
			return fail(err)
		}
	}
	if cfg.ClientCA != "" {
		if d.Certificate == nil {
			return fail(fmt.Errorf("%w: KAKUIN_CLIENT_CA needs a STARTTLS certificate", errConfig))
		}
		if d.ClientCAs, err = pki.LoadTrustAnchors(cfg.ClientCA); err != nil {
			return fail(err)
		}
	}
	return d, closer, nil
}

func loadTLSCert(certFile, keyFile string) (*tls.Certificate, error) {
	certs, err := pki.LoadCertificates(certFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	key, err := pki.LoadSigner(keyFile) // refuses a key readable by others
	if err != nil {
		return nil, fmt.Errorf("TLS key: %w", err)
	}
	c := &tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, x := range certs {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c, nil
}

func (cfg *gatewayConfig) upstream() (relay.Upstream, error) {
	t := &tls.Config{InsecureSkipVerify: cfg.UpstreamInsecure}
	if cfg.UpstreamCA != "" {
		roots, err := pki.LoadTrustAnchors(cfg.UpstreamCA)
		if err != nil {
			return nil, fmt.Errorf("KAKUIN_UPSTREAM_CA: %w", err)
		}
		t.RootCAs = roots
	}
	if cfg.UpstreamClientCert != "" {
		c, err := loadTLSCert(cfg.UpstreamClientCert, cfg.UpstreamClientKey)
		if err != nil {
			return nil, fmt.Errorf("upstream client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{*c}
	}
	hostname := cfg.Sign.Hostname
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	return relay.New(cfg.Upstream, relay.Options{
		Hostname:          hostname,
		TLS:               t,
		InsecurePlaintext: cfg.UpstreamPlaintext,
		Username:          cfg.UpstreamUser,
		Password:          cfg.UpstreamPassword,
		CommandTimeout:    cfg.UpstreamTimeout,
		PoolSize:          cfg.UpstreamPool,
	})
}

// hashPassword reads a password (its first line) from stdin and prints a
// credentials line, NAME:BCRYPT-HASH, for KAKUIN_CREDENTIALS.
func hashPassword(name string, stdin io.Reader, stdout, stderr io.Writer) int {
	if name == "" || strings.ContainsAny(name, ": \t") {
		fmt.Fprintln(stderr, "kakuin gateway hash-password: NAME must be non-empty, without ':' or blanks")
		return exitUsage
	}
	b, err := io.ReadAll(io.LimitReader(stdin, 1024))
	if err != nil {
		fmt.Fprintf(stderr, "kakuin gateway hash-password: %v\n", err)
		return exitTemp
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if len(pw) < 12 {
		fmt.Fprintln(stderr, "kakuin gateway hash-password: the password (first line of stdin) must have at least 12 characters")
		return exitUsage
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), 12)
	if err != nil {
		fmt.Fprintf(stderr, "kakuin gateway hash-password: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stdout, "%s:%s\n", name, h)
	return exitOK
}
