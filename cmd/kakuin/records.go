package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/verify/mtasts"
)

func init() {
	register("records", "print the DNS records (and MTA-STS policy) a deployment must publish", runRecords)
}

// recordsConfig is what `kakuin records` reads from the environment.
type recordsConfig struct {
	PKIDir     string   `env:"PKI_DIR" envDefault:"var/pki" help:"PKI directory whose DKIM keys are published"`
	GatewayIPs []string `env:"RECORDS_GATEWAY_IPS" envSeparator:"," help:"addresses the gateway sends from, for SPF (default: v=spf1 mx -all)"`
	MX         []string `env:"RECORDS_MX" envSeparator:"," help:"the domains' MX hosts, for the MTA-STS policy and TLSA (default: *.DOMAIN)"`
	RUA        string   `env:"RECORDS_DMARC_RUA" help:"DMARC aggregate report address (default dmarc-reports@DOMAIN)"`
	TLSRPTRUA  string   `env:"RECORDS_TLSRPT_RUA" help:"TLS-RPT report address (default tlsrpt-reports@DOMAIN)"`
	STSMode    string   `env:"RECORDS_MTA_STS_MODE" envDefault:"enforce" help:"MTA-STS mode: enforce or testing"`
	TLSACert   string   `env:"RECORDS_TLSA_CERT" help:"PEM certificate of the MX hosts: prints DANE TLSA 3 1 1 records for them"`
}

func runRecords(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var cfg recordsConfig
	if err := parseEnv(&cfg); err != nil {
		fmt.Fprintf(stderr, "kakuin records: %v\n", oneLine(err))
		return exitUsage
	}
	fs := flag.NewFlagSet("kakuin records", flag.ContinueOnError)
	var domains, ips, mxs stringList
	dir := fs.String("pki-dir", cfg.PKIDir, "PKI directory (kakuin pki init) whose DKIM keys are published")
	fs.Var(&domains, "domain", "print only this domain (repeat; default every domain with DKIM keys)")
	fs.Var(&ips, "gateway-ip", "an address the gateway sends from, for SPF (repeat)")
	fs.Var(&mxs, "mx", "an MX host of the domains (repeat), for the MTA-STS policy and TLSA")
	rua := fs.String("rua", cfg.RUA, "DMARC aggregate report address (default dmarc-reports@DOMAIN)")
	tlsrpt := fs.String("tlsrpt-rua", cfg.TLSRPTRUA, "TLS-RPT report address (default tlsrpt-reports@DOMAIN)")
	mode := fs.String("mta-sts-mode", cfg.STSMode, "MTA-STS mode: enforce or testing")
	tlsaCert := fs.String("tlsa-cert", cfg.TLSACert, "PEM certificate the MX hosts present: prints TLSA 3 1 1 for each --mx")
	policyOnly := fs.String("mta-sts-policy", "", "print only the MTA-STS policy file of DOMAIN")
	const intro = "usage: kakuin records [--pki-dir DIR] [--domain D ...] [--gateway-ip IP ...] [--mx HOST ...]\n" +
		"       kakuin records --mta-sts-policy DOMAIN [--mx HOST ...]\n\n" +
		"Prints, in zone-file syntax, every record kakuin's domains need: DKIM keys per selector,\n" +
		"SPF covering the gateway's addresses, DMARC p=reject with rua, MTA-STS and TLS-RPT, TLSA\n" +
		"for the MX hosts (with --tlsa-cert), and the MTA-STS policy file (in comments, or alone\n" +
		"with --mta-sts-policy). Publish them, then run kakuin audit."
	if code, done := parseFlags(fs, args, intro, &cfg, stdout, stderr, exitUsage); done {
		return code
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "kakuin records: "+format+"\n", a...)
		return exitUsage
	}
	if len(ips) == 0 {
		ips = cfg.GatewayIPs
	}
	if len(mxs) == 0 {
		mxs = cfg.MX
	}
	m := mtasts.Mode(*mode)
	if m != mtasts.ModeEnforce && m != mtasts.ModeTesting {
		return fail("--mta-sts-mode %q: want enforce or testing", *mode)
	}
	policy := func(d string) *mtasts.Policy {
		p := &mtasts.Policy{Mode: m, MaxAge: 1209600} // two weeks (RFC 8461 3.2: weeks)
		for _, h := range mxs {
			p.MX = append(p.MX, strings.ToLower(strings.TrimSuffix(h, ".")))
		}
		if len(p.MX) == 0 {
			p.MX = []string{"*." + d}
		}
		return p
	}
	if *policyOnly != "" {
		io.WriteString(stdout, policy(strings.ToLower(*policyOnly)).String())
		return exitOK
	}

	// SPF covering the gateway's addresses (RFC 7208 5.6).
	spf := ""
	if len(ips) > 0 {
		terms := []string{"v=spf1"}
		for _, s := range ips {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				return fail("--gateway-ip %q: %v", s, err)
			}
			if a.Is4() {
				terms = append(terms, "ip4:"+a.String())
			} else {
				terms = append(terms, "ip6:"+a.String())
			}
		}
		spf = strings.Join(append(terms, "-all"), " ")
	}

	kr, err := pki.LoadDKIMKeyring(pki.Layout{Dir: *dir}.DKIMDir())
	if err != nil {
		return fail("%v (run kakuin pki init first)", oneLine(err))
	}
	all := kr.Domains()
	if len(domains) > 0 {
		var keys []pki.DKIMKey
		for _, d := range domains {
			d = strings.ToLower(strings.TrimSuffix(d, "."))
			if !slices.Contains(all, d) {
				return fail("no DKIM keys for %s in %s", d, *dir)
			}
			ks, _ := kr.DKIMKeys(d)
			keys = append(keys, ks...)
		}
		if kr, err = pki.NewDKIMKeyring(keys); err != nil {
			return fail("%v", oneLine(err))
		}
	}
	// DKIM, SPF and DMARC: the same records pki init writes to dns.zone.
	zone, err := pki.ZoneFile(kr, pki.ZoneOptions{SPF: spf, DMARCReportAddress: *rua})
	if err != nil {
		return fail("%v", oneLine(err))
	}
	stdout.Write(zone)

	var tlsa string
	if *tlsaCert != "" {
		b, err := os.ReadFile(*tlsaCert)
		if err != nil {
			return fail("%v", err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			return fail("%s: no PEM certificate", *tlsaCert)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return fail("%s: %v", *tlsaCert, err)
		}
		// RFC 7671 5.1: DANE-EE(3) SPKI(1) SHA2-256(1).
		sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		tlsa = hex.EncodeToString(sum[:])
	}
	for _, d := range kr.Domains() {
		p := policy(d)
		ps := p.String()
		// RFC 8461 3.1: id changes whenever the policy changes: a hash of it.
		sum := sha256.Sum256([]byte(ps))
		id := hex.EncodeToString(sum[:8])
		rpt := *tlsrpt
		if rpt == "" {
			rpt = "tlsrpt-reports@" + d
		}
		if !strings.Contains(rpt, ":") {
			rpt = "mailto:" + rpt
		}
		fmt.Fprintf(stdout, "\n; ---- %s: transport security\n", d)
		fmt.Fprintf(stdout, "; MTA-STS (RFC 8461): the record, and mta-sts.%s must serve the policy below over HTTPS.\n", d)
		fmt.Fprintf(stdout, "_mta-sts.%s. 3600 IN TXT \"v=STSv1; id=%s\"\n", d, id)
		fmt.Fprintf(stdout, "; TLS-RPT (RFC 8460): where senders report TLS failures.\n")
		fmt.Fprintf(stdout, "_smtp._tls.%s. 3600 IN TXT \"v=TLSRPTv1; rua=%s\"\n", d, rpt)
		if tlsa != "" {
			fmt.Fprintf(stdout, "; DANE (RFC 7672): the MX certificate's key; publish a second record for the next key before rolling over.\n")
			for _, h := range p.MX {
				if !strings.HasPrefix(h, "*.") {
					fmt.Fprintf(stdout, "_25._tcp.%s. 3600 IN TLSA 3 1 1 %s\n", h, tlsa)
				}
			}
		}
		fmt.Fprintf(stdout, "; MTA-STS policy: serve as text/plain at https://mta-sts.%s/.well-known/mta-sts.txt\n", d)
		fmt.Fprintf(stdout, "; (kakuin records --mta-sts-policy %s prints it alone):\n", d)
		for _, l := range strings.Split(strings.TrimSpace(strings.ReplaceAll(ps, "\r\n", "\n")), "\n") {
			fmt.Fprintf(stdout, ";   %s\n", l)
		}
	}
	return exitOK
}
