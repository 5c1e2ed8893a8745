package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/kakuin/kakuin/pki"
)

func init() {
	register("pki", "lay out a development PKI and DKIM keys (kakuin pki init)", runPKI)
}

// pkiConfig is what `kakuin pki` reads from the environment.
type pkiConfig struct {
	PKIDir string `env:"PKI_DIR" envDefault:"var/pki" help:"PKI directory, the default of --dir"`
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

func runPKI(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		w := stderr
		if len(args) > 0 {
			w = stdout
		}
		fmt.Fprintln(w, "usage: kakuin pki init --dir DIR --domain DOMAIN [--domain DOMAIN ...]\n\n"+
			"  init   create, without overwriting anything, a root CA, an S/MIME issuing CA,\n"+
			"         DKIM keys per domain, a STARTTLS certificate, trust-anchors.pem and dns.zone\n\n"+
			"`kakuin pki init --help` lists its flags.")
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	switch args[0] {
	case "init":
		return runPKIInit(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "kakuin pki: unknown subcommand %q (see kakuin pki --help)\n", args[0])
	return exitUsage
}

func runPKIInit(args []string, stdout, stderr io.Writer) int {
	var cfg pkiConfig
	if err := parseEnv(&cfg); err != nil {
		fmt.Fprintf(stderr, "kakuin pki init: %v\n", oneLine(err))
		return exitUsage
	}
	fs := flag.NewFlagSet("kakuin pki init", flag.ContinueOnError)
	var domains, hosts stringList
	dir := fs.String("dir", cfg.PKIDir, "PKI directory to create or complete")
	fs.Var(&domains, "domain", "a sender domain that gets DKIM keys (repeat for several)")
	fs.Var(&hosts, "tls-host", "a host name or IP address of the gateway's STARTTLS certificate (repeat; default localhost, 127.0.0.1, ::1)")
	org := fs.String("organization", "", "subject O of the CA certificates (default \"kakuin development PKI\")")
	const intro = "usage: kakuin pki init --dir DIR --domain DOMAIN [--domain DOMAIN ...]\n\n" +
		"Creates in DIR, keeping every file that already exists: a root CA and an S/MIME\n" +
		"issuing CA (root -> issuing CA -> sender), an RSA-2048 and an Ed25519 DKIM key per\n" +
		"domain, a STARTTLS certificate, trust-anchors.pem (the root only) and dns.zone (the\n" +
		"DKIM, SPF and DMARC records to publish). Key files are mode 0600."
	if code, done := parseFlags(fs, args, intro, &cfg, stdout, stderr, exitUsage); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kakuin pki init: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "kakuin pki init: --dir is empty")
		return exitUsage
	}
	if len(domains) == 0 {
		fmt.Fprintln(stderr, "kakuin pki init: at least one --domain is needed (the sender domain that gets DKIM keys)")
		return exitUsage
	}
	rep, err := pki.Init(pki.InitOptions{Dir: *dir, Domains: domains, TLSHosts: hosts, Organization: *org})
	if err != nil {
		fmt.Fprintf(stderr, "kakuin pki init: %v\n", oneLine(err))
		if errors.Is(err, pki.ErrKeyPermissions) {
			return exitTemp
		}
		return exitUsage
	}
	for _, l := range []struct {
		what  string
		paths []string
	}{{"created", rep.Created}, {"kept", rep.Kept}, {"rewrote", rep.Rewritten}} {
		for _, p := range l.paths {
			fmt.Fprintf(stdout, "%-8s %s\n", l.what, p)
		}
	}
	ds := make([]string, 0, len(rep.Selectors))
	for d := range rep.Selectors {
		ds = append(ds, d)
	}
	slices.Sort(ds)
	for _, d := range ds {
		fmt.Fprintf(stdout, "dkim     %s selectors %s\n", d, strings.Join(rep.Selectors[d], " "))
	}
	l := pki.Layout{Dir: *dir}
	fmt.Fprintf(stdout, "\nPublish the records in %s.\nVerifiers trust %s (the root only).\nSign with: KAKUIN_PKI_DIR=%s kakuin sign < message.eml\n",
		l.DNSZone(), l.TrustAnchors(), *dir)
	return exitOK
}
