package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/kakuin/kakuin/verify/audit"
	"github.com/kakuin/kakuin/verify/lookup"
)

func init() {
	register("audit", "are these domains' mail records compliant? (SPF, DKIM, DMARC, MTA-STS, DANE, ...)", runAudit)
}

// auditConfig is what `kakuin audit` reads from the environment; flags
// override it.
type auditConfig struct {
	Resolvers   []string      `env:"AUDIT_RESOLVER" envSeparator:"," help:"DNS resolvers host:port, comma-separated, tried in order; use a validating one (default: /etc/resolv.conf)"`
	Profile     string        `env:"AUDIT_PROFILE" envDefault:"nisc" help:"profile: nisc, bod1801 or strict"`
	Format      string        `env:"AUDIT_FORMAT" envDefault:"table" help:"output: table, json, csv or html"`
	Selectors   []string      `env:"AUDIT_SELECTORS" envSeparator:"," help:"DKIM selectors to check besides the common ones, comma-separated"`
	Concurrency int           `env:"AUDIT_CONCURRENCY" envDefault:"32" help:"domains audited at once"`
	Timeout     time.Duration `env:"AUDIT_TIMEOUT" envDefault:"60s" help:"time limit per domain"`
	DNSTimeout  time.Duration `env:"AUDIT_DNS_TIMEOUT" envDefault:"2s" help:"time limit of one DNS query to one server"`
	SMTPPort    int           `env:"AUDIT_SMTP_PORT" envDefault:"25" help:"port probed for STARTTLS on each MX"`
	MTASTSAddr  string        `env:"AUDIT_MTASTS_ADDR" help:"host:port to fetch every MTA-STS policy from instead of mta-sts.DOMAIN:443"`
	CAFile      string        `env:"AUDIT_CA_FILE" help:"PEM roots for MX and MTA-STS certificates (default: the system roots)"`
	NoProbes    bool          `env:"AUDIT_NO_PROBES" help:"skip SMTP and HTTPS probes (their checks report error)"`
}

// Exit statuses of `kakuin audit`.
const (
	auditPass     = 0 // every domain passes the profile
	auditFail     = 1 // some domain fails
	auditCouldNot = 2 // bad arguments, or some domain could not be tested (and none failed)
)

func runAudit(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var cfg auditConfig
	if err := parseEnv(&cfg); err != nil {
		fmt.Fprintf(stderr, "kakuin audit: %v\n", oneLine(err))
		return auditCouldNot
	}
	fs := flag.NewFlagSet("kakuin audit", flag.ContinueOnError)
	var resolvers stringList
	fs.Var(&resolvers, "resolver", "DNS resolver host:port (repeat, or comma-separate, for fallbacks)")
	selectors := fs.String("selectors", strings.Join(cfg.Selectors, ","), "DKIM selectors to check, comma-separated, besides "+strings.Join(audit.CommonSelectors, ","))
	profile := fs.String("profile", cfg.Profile, "profile: "+strings.Join(audit.ProfileNames(), ", "))
	format := fs.String("format", cfg.Format, "output: "+strings.Join(audit.Formats, ", "))
	concurrency := fs.Int("concurrency", cfg.Concurrency, "domains audited at once")
	timeout := fs.Duration("timeout", cfg.Timeout, "time limit per domain")
	file := fs.String("f", "", "read domains from FILE, one per line (# comments; - for stdin)")
	smtpPort := fs.Int("smtp-port", cfg.SMTPPort, "port probed for STARTTLS on each MX")
	mtastsAddr := fs.String("mtasts-addr", cfg.MTASTSAddr, "host:port to fetch MTA-STS policies from (tests)")
	caFile := fs.String("ca-file", cfg.CAFile, "PEM roots for MX and MTA-STS certificates")
	noProbes := fs.Bool("no-probes", cfg.NoProbes, "skip SMTP and HTTPS probes")
	var intro strings.Builder
	intro.WriteString("usage: kakuin audit [--resolver host:port] [--selectors s1,s2] [--profile nisc|bod1801|strict]\n" +
		"                    [--format table|json|csv|html] [--concurrency N] [--timeout D] (DOMAIN... | -f FILE)\n\n" +
		"Checks each domain's DNS and mail servers: domain, DNSSEC, MX, SPF, DMARC, DKIM, STARTTLS\n" +
		"(with SSLv2/SSLv3/RC4/3DES probes), MTA-STS, TLS-RPT, DANE. Every warn and fail says what to publish.\n" +
		"Exit status: 0 every domain passes the profile, 1 some fail, 2 the audit could not run\n" +
		"(bad arguments, or a domain could not be tested and none failed).\n\nprofiles:")
	for _, n := range audit.ProfileNames() {
		fmt.Fprintf(&intro, "\n  %-8s %s", n, audit.Profiles[n].Description)
	}
	if code, done := parseFlags(fs, args, intro.String(), &cfg, stdout, stderr, auditCouldNot); done {
		return code
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "kakuin audit: "+format+"\n", a...)
		return auditCouldNot
	}

	domains := fs.Args()
	if *file != "" {
		var r io.Reader = stdin
		if *file != "-" {
			f, err := os.Open(*file)
			if err != nil {
				return fail("%v", err)
			}
			defer f.Close()
			r = f
		}
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = strings.TrimSpace(line[:i])
			}
			if line != "" {
				domains = append(domains, line)
			}
		}
		if err := sc.Err(); err != nil {
			return fail("reading %s: %v", *file, err)
		}
	}
	if len(domains) == 0 {
		fmt.Fprintln(stderr, "kakuin audit: no domains given")
		usage(stderr)
		return auditCouldNot
	}

	servers := cfg.Resolvers
	if len(resolvers) > 0 {
		servers = nil
		for _, r := range resolvers {
			servers = append(servers, strings.Split(r, ",")...)
		}
	}
	if len(servers) == 0 {
		var err error
		if servers, err = lookup.SystemServers(); err != nil {
			return fail("no resolver given and %v", err)
		}
	}
	client, err := lookup.New(servers, lookup.Options{Timeout: cfg.DNSTimeout, CacheSize: 20000})
	if err != nil {
		return fail("%v", err)
	}
	var roots *x509.CertPool
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return fail("%v", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fail("%s: no PEM certificate", *caFile)
		}
	}
	var sels []string
	for _, s := range strings.Split(*selectors, ",") {
		if s = strings.TrimSpace(s); s != "" {
			sels = append(sels, s)
		}
	}
	a, err := audit.New(audit.Options{
		Resolver: client, Profile: *profile, Selectors: sels, SMTPPort: *smtpPort, MTASTSAddr: *mtastsAddr,
		RootCAs: roots, Timeout: *timeout, NoProbes: *noProbes,
	})
	if err != nil {
		return fail("%v", err)
	}
	p, _ := audit.LookupProfile(*profile)
	w, err := audit.NewWriter(*format, stdout, p)
	if err != nil {
		return fail("%v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var bar *progressbar.ProgressBar
	if f, ok := stderr.(*os.File); ok && len(domains) > 1 && term.IsTerminal(int(f.Fd())) {
		bar = progressbar.NewOptions(len(domains), progressbar.OptionSetWriter(f), progressbar.OptionSetDescription("auditing"),
			progressbar.OptionShowCount(), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100*time.Millisecond))
	}
	// Reports come back in any order; write them in input order,
	// holding only those that arrived early.
	pending := map[int]*audit.Report{}
	next := 0
	var writeErr error
	var anyFail, anyError bool
	a.Run(ctx, domains, *concurrency, func(i int, r *audit.Report) {
		if bar != nil {
			bar.Add(1)
		}
		switch r.Verdict {
		case audit.Fail:
			anyFail = true
		case audit.Error:
			anyError = true
		}
		pending[i] = r
		for {
			r, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			if err := w.Write(r); err != nil && writeErr == nil {
				writeErr = err
			}
		}
	})
	if bar != nil {
		bar.Finish()
	}
	if err := w.Close(); err != nil && writeErr == nil {
		writeErr = err
	}
	if writeErr != nil {
		return fail("writing: %v", writeErr)
	}
	switch {
	case anyFail:
		return auditFail
	case anyError:
		return auditCouldNot
	}
	return auditPass
}
