package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/verify"
	"github.com/kakuin/kakuin/verify/lookup"
	"github.com/kakuin/kakuin/verify/revocation"
)

func init() {
	register("verify", "is this message really from the government?", runVerify)
}

// Exit statuses of `kakuin verify`.
const (
	verifyGenuine     = 0 // GENUINE
	verifyNotVerified = 1 // NOT VERIFIED, including "no signature"
	verifyUnusable    = 2 // the message, the arguments or the configuration could not be used
)

// verifyConfig is what `kakuin verify` reads from the environment.
type verifyConfig struct {
	PKIDir            string        `env:"PKI_DIR" envDefault:"var/pki" help:"PKI directory laid out by 'kakuin pki init'; its trust-anchors.pem is the default trust anchors"`
	TrustAnchors      string        `env:"TRUST_ANCHORS" help:"PEM file of the trusted roots; never the system store (default PKI_DIR/trust-anchors.pem)"`
	Resolver          string        `env:"RESOLVER" help:"DNS server host:port, comma-separated for several (default the nameservers of /etc/resolv.conf)"`
	SenderSuffixes    []string      `env:"SENDER_SUFFIXES" envDefault:"go.jp" envSeparator:"," help:"comma-separated government domain suffixes"`
	CRLFiles          []string      `env:"CRL_FILES" envSeparator:"," help:"comma-separated CRL files (DER or PEM) consulted before fetching"`
	Offline           bool          `env:"OFFLINE" help:"fetch no CRL or OCSP answer (the result says revocation was not checked)"`
	RequireRevocation bool          `env:"REQUIRE_REVOCATION" help:"a revocation status that cannot be established blocks the verdict (default: only a revoked certificate does)"`
	AuthServID        string        `env:"AUTHSERV_ID" envDefault:"kakuin" help:"authserv-id of the Authentication-Results header (--authres)"`
	DNSTimeout        time.Duration `env:"DNS_TIMEOUT" envDefault:"3s" help:"timeout of one DNS query"`
}

func (c *verifyConfig) trustAnchors() string {
	if c.TrustAnchors != "" {
		return c.TrustAnchors
	}
	return pki.Layout{Dir: c.PKIDir}.TrustAnchors()
}

const verifyIntro = "usage: kakuin verify [--json | --authres] [--resolver host:port] [--trust-anchors FILE]\n" +
	"                     [--zone FILE] [--client-ip IP --helo NAME --mail-from ADDR] [--offline] [--at TIME] MESSAGE.eml | -\n\n" +
	"Says whether a message is genuine government mail: From under the government suffixes,\n" +
	"a valid S/MIME signature from a configured trust anchor for that exact address, and an\n" +
	"aligned passing DKIM signature. Exit status: 0 genuine, 1 not verified, 2 unusable input."

type verifyFlags struct {
	json, authres, offline, requireRev bool
	resolver, zone, anchors, clientIP  string
	helo, mailFrom, at                 string
	crls                               stringList
}

func runVerify(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var cfg verifyConfig
	fs := flag.NewFlagSet("kakuin verify", flag.ContinueOnError)
	var f verifyFlags
	fs.BoolVar(&f.json, "json", false, "print the report as JSON (schema: docs/verify-json.md)")
	fs.BoolVar(&f.authres, "authres", false, "print an RFC 8601 Authentication-Results header field")
	fs.StringVar(&f.resolver, "resolver", "", "DNS server host:port (overrides KAKUIN_RESOLVER)")
	fs.StringVar(&f.zone, "zone", "", "answer DNS questions from this zone file instead of a server (e.g. the PKI's dns.zone, before it is published)")
	fs.StringVar(&f.anchors, "trust-anchors", "", "PEM file of trusted roots (overrides KAKUIN_TRUST_ANCHORS)")
	fs.StringVar(&f.clientIP, "client-ip", "", "IP address of the SMTP client, to check SPF")
	fs.StringVar(&f.helo, "helo", "", "HELO/EHLO name of the SMTP client, for SPF")
	fs.StringVar(&f.mailFrom, "mail-from", "", "envelope sender (MAIL FROM), for SPF")
	fs.BoolVar(&f.offline, "offline", false, "fetch no CRL or OCSP answer")
	fs.BoolVar(&f.requireRev, "require-revocation", false, "a revocation status that cannot be established blocks the verdict")
	fs.StringVar(&f.at, "at", "", "judge validity at this time (RFC 3339, or YYYY-MM-DD) instead of now")
	fs.Var(&f.crls, "crl", "CRL file (DER or PEM); repeatable")
	if code, done := parseFlags(fs, args, verifyIntro, &cfg, stdout, stderr, verifyUnusable); done {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "kakuin verify: give exactly one message file, or - for stdin (see kakuin verify --help)")
		return verifyUnusable
	}
	if f.json && f.authres {
		fmt.Fprintln(stderr, "kakuin verify: --json and --authres exclude each other")
		return verifyUnusable
	}
	if err := parseEnv(&cfg); err != nil {
		fmt.Fprintf(stderr, "kakuin verify: %v\n", oneLine(err))
		return verifyUnusable
	}
	opts, err := verifyOptions(&cfg, &f)
	if err != nil {
		fmt.Fprintf(stderr, "kakuin verify: %v\n", oneLine(err))
		return verifyUnusable
	}

	var in io.Reader = stdin
	if name := fs.Arg(0); name != "-" {
		file, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "kakuin verify: %v\n", oneLine(err))
			return verifyUnusable
		}
		defer file.Close()
		in = file
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := verify.Message(ctx, in, opts)
	if err != nil {
		fmt.Fprintf(stderr, "kakuin verify: %v\n", oneLine(err))
		return verifyUnusable
	}
	switch {
	case f.json:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "kakuin verify: %v\n", err)
			return verifyUnusable
		}
	case f.authres:
		fmt.Fprintln(stdout, "Authentication-Results: "+rep.AuthenticationResults(opts.AuthServID))
	default:
		for _, l := range rep.Lines() {
			fmt.Fprintln(stdout, l)
		}
	}
	if rep.Verdict.Genuine {
		return verifyGenuine
	}
	return verifyNotVerified
}

// verifyOptions turns configuration and flags into verify.Options.
func verifyOptions(cfg *verifyConfig, f *verifyFlags) (verify.Options, error) {
	opts := verify.Options{Suffixes: cfg.SenderSuffixes, AuthServID: cfg.AuthServID, RequireRevocation: cfg.RequireRevocation || f.requireRev}
	if f.at != "" {
		at, err := parseAt(f.at)
		if err != nil {
			return opts, err
		}
		opts.Now = func() time.Time { return at }
	}
	anchors := cfg.trustAnchors()
	if f.anchors != "" {
		anchors = f.anchors
	}
	pool, err := loadAnchors(anchors)
	if err != nil {
		return opts, fmt.Errorf("%w: trust anchors: %w (set --trust-anchors or KAKUIN_TRUST_ANCHORS)", errConfig, err)
	}
	opts.TrustAnchors = pool

	res, err := verifyResolver(cfg, f)
	if err != nil {
		return opts, err
	}
	opts.Resolver = res

	if f.clientIP != "" {
		ip, err := netip.ParseAddr(f.clientIP)
		if err != nil {
			return opts, fmt.Errorf("%w: --client-ip: %w", errConfig, err)
		}
		opts.ClientIP = ip.Unmap()
		opts.HELO, opts.MailFrom = f.helo, f.mailFrom
	} else if f.helo != "" || f.mailFrom != "" {
		return opts, fmt.Errorf("%w: --helo and --mail-from need --client-ip", errConfig)
	}

	var now func() time.Time
	if opts.Now != nil {
		now = opts.Now
	}
	rc, err := revocation.New(revocation.Options{
		CRLFiles: append(append([]string(nil), cfg.CRLFiles...), f.crls...),
		Offline:  cfg.Offline || f.offline,
		Now:      now,
	})
	if err != nil {
		return opts, fmt.Errorf("%w: %w", errConfig, err)
	}
	opts.Revocation = rc
	return opts, nil
}

// parseAt reads --at: RFC 3339, or a date (midnight UTC).
func parseAt(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%w: --at %q: want RFC 3339 (2026-11-26T10:00:00+09:00) or YYYY-MM-DD", errConfig, s)
}

// loadAnchors reads a PEM file of certificates into a pool. An empty or
// unreadable file is an error: without anchors nothing can be genuine.
func loadAnchors(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return pool, nil
}

// resolvConf returns the nameservers of a resolv.conf file (host:53).
func resolvConf(path string) []string {
	file, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer file.Close()
	var out []string
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			out = append(out, net.JoinHostPort(strings.Split(fields[1], "%")[0], "53"))
		}
	}
	return out
}

// verifyResolver answers DNS questions from --zone, or from --resolver,
// KAKUIN_RESOLVER or /etc/resolv.conf, in that order. Nil when none is
// configured: DNS-based checks then say they could not run.
func verifyResolver(cfg *verifyConfig, f *verifyFlags) (lookup.Resolver, error) {
	if f.zone != "" {
		if f.resolver != "" {
			return nil, fmt.Errorf("%w: --zone and --resolver exclude each other", errConfig)
		}
		zf, err := os.Open(f.zone)
		if err != nil {
			return nil, fmt.Errorf("%w: --zone: %w", errConfig, err)
		}
		defer zf.Close()
		res, err := lookup.NewZone(zf, ".")
		if err != nil {
			return nil, fmt.Errorf("%w: --zone %s: %w", errConfig, f.zone, err)
		}
		return res, nil
	}
	servers := cfg.Resolver
	if f.resolver != "" {
		servers = f.resolver
	}
	var list []string
	if servers != "" {
		list = strings.Split(servers, ",")
	} else {
		list = resolvConf("/etc/resolv.conf")
	}
	if len(list) == 0 {
		return nil, nil
	}
	res, err := lookup.New(list, lookup.Options{Timeout: cfg.DNSTimeout, CacheSize: 256})
	if err != nil {
		return nil, fmt.Errorf("%w: resolver: %w", errConfig, err)
	}
	return res, nil
}
