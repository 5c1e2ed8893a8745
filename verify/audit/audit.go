package audit

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kakuin/kakuin/govdomain"
	"github.com/kakuin/kakuin/verify/lookup"
)

// ErrOptions: the audit cannot run with these options.
var ErrOptions = errors.New("audit: bad options")

// CommonSelectors are DKIM selectors tried on every domain besides
// Options.Selectors: kakuin's own pattern and those of common mail
// platforms.
var CommonSelectors = []string{"default", "dkim", "mail", "selector1", "selector2", "google", "k1", "s1", "s2", "kakuin"}

// Options configure an Auditor. Only Resolver is required.
type Options struct {
	// Resolver answers every DNS question; it should be a validating
	// resolver, or dnssec.validated fails. Required.
	Resolver lookup.ZoneResolver
	// Profile names the profile (see Profiles). Empty means "nisc".
	Profile string
	// Suffixes override the profile's allowed domain suffixes. Nil means
	// the profile's.
	Suffixes []string
	// Selectors are DKIM selectors to check besides CommonSelectors.
	Selectors []string
	// SMTPPort is the port probed on each MX. Zero means 25.
	SMTPPort int
	// SMTPAddrs maps an MX host name to the "host:port" to connect to
	// instead of its address and SMTPPort. Tests point it at loopback.
	SMTPAddrs map[string]string
	// MTASTSAddr, if set, is the "host:port" every MTA-STS policy is
	// fetched from (the certificate is still checked for
	// mta-sts.<domain>). Empty means mta-sts.<domain>:443.
	MTASTSAddr string
	// RootCAs verifies MX and MTA-STS certificates. Nil means the system
	// roots.
	RootCAs *x509.CertPool
	// Timeout bounds the audit of one domain. Zero means 60 seconds.
	Timeout time.Duration
	// ProbeTimeout bounds one SMTP or HTTPS connection. Zero means 10
	// seconds.
	ProbeTimeout time.Duration
	// ProbeInterval is the least time between two connections to the
	// same MX address, so that a busy MX is not hammered. Zero means
	// 100 ms; negative means no wait.
	ProbeInterval time.Duration
	// NoProbes skips the SMTP and HTTPS probes: the checks that need
	// them report error ("not tested").
	NoProbes bool
	// HeloName is the EHLO name of the SMTP probes. Empty means
	// "audit.kakuin.invalid".
	HeloName string
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Auditor audits domains. One Auditor per run: it probes each MX host
// once however many domains share it. It is safe for concurrent use.
type Auditor struct {
	opts    Options
	profile Profile
	r       lookup.ZoneResolver

	mu     sync.Mutex
	probes map[string]*probeCall // MX host -> probe, once per run
	hosts  map[string]*hostGate  // address -> rate limit
}

// New returns an Auditor.
func New(opts Options) (*Auditor, error) {
	if opts.Resolver == nil {
		return nil, fmt.Errorf("%w: no resolver", ErrOptions)
	}
	if opts.Profile == "" {
		opts.Profile = "nisc"
	}
	p, err := LookupProfile(opts.Profile)
	if err != nil {
		return nil, err
	}
	if opts.Suffixes != nil {
		p.Suffixes = opts.Suffixes
	}
	if opts.SMTPPort == 0 {
		opts.SMTPPort = 25
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = 10 * time.Second
	}
	if opts.ProbeInterval == 0 {
		opts.ProbeInterval = 100 * time.Millisecond
	}
	if opts.HeloName == "" {
		opts.HeloName = "audit.kakuin.invalid"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Auditor{opts: opts, profile: p, r: opts.Resolver, probes: map[string]*probeCall{}, hosts: map[string]*hostGate{}}, nil
}

// Domain audits one domain with opts; see Auditor.Domain.
func Domain(ctx context.Context, domain string, opts Options) (*Report, error) {
	a, err := New(opts)
	if err != nil {
		return nil, err
	}
	return a.Domain(ctx, domain), nil
}

// Run audits domains with at most concurrency at a time (zero means 32)
// and calls done with each report as it completes (from several
// goroutines, one call at a time) with its index in domains. Reports are
// not kept: memory stays flat in the number of domains.
func (a *Auditor) Run(ctx context.Context, domains []string, concurrency int, done func(i int, r *Report)) {
	if concurrency <= 0 {
		concurrency = 32
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < min(concurrency, len(domains)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r := a.Domain(ctx, domains[i])
				mu.Lock()
				done(i, r)
				mu.Unlock()
			}
		}()
	}
	for i := range domains {
		next <- i
	}
	close(next)
	wg.Wait()
}

// run is the state of one domain's audit.
type run struct {
	a      *Auditor
	ctx    context.Context
	domain string
	rep    *Report
	mx     []lookup.MX
	mxErr  error
	nullMX bool
	// mxAuthentic: the MX answer was DNSSEC-validated.
	mxAuthentic bool
}

func (r *run) add(c Check) {
	if c.Evidence == nil {
		c.Evidence = []string{}
	}
	if c.Status == Pass || c.Status == Error {
		c.Advice = ""
	}
	r.rep.Checks = append(r.rep.Checks, c)
}

// Domain audits one domain. Its checks never stop at the first failure;
// DNS errors make the checks that needed the answer "error".
func (a *Auditor) Domain(ctx context.Context, domain string) *Report {
	ctx, cancel := context.WithTimeout(ctx, a.opts.Timeout)
	defer cancel()
	start := a.opts.Now()
	rep := &Report{Domain: strings.ToLower(strings.TrimSuffix(domain, ".")), Profile: a.profile.Name, Started: start}
	d, err := govdomain.Canonical(domain)
	if err != nil {
		// Not a domain: nothing else can be checked, whatever the profile.
		rep.Checks = []Check{{ID: "domain.suffix", Status: Fail, Evidence: []string{err.Error()},
			Advice: "give a valid domain name", Counted: true}}
		rep.Verdict = Fail
		return rep
	}
	rep.Domain = d
	r := &run{a: a, ctx: ctx, domain: d, rep: rep}
	r.checkDomain()
	r.checkDNSSEC()
	r.checkMX()
	spfAllowsNothing := r.checkSPF()
	rep.NoMail = r.nullMX && spfAllowsNothing
	r.checkDMARC()
	r.checkDKIM()
	r.checkTransport()
	r.checkTLSRPT()
	r.checkCAA()
	sortChecks(rep.Checks)
	rep.verdict(a.profile)
	rep.Duration = a.opts.Now().Sub(start)
	return rep
}

// dnsError is the error check for a question that could not be answered.
func dnsError(id string, err error) Check {
	return Check{ID: id, Status: Error, Evidence: []string{"could not test: " + err.Error()}}
}

// txt formats a TXT record for advice (RFC 1035 5.1), split into
// character-strings of at most 255 octets.
func txt(owner, value string) string {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, value[:255])
		value = value[255:]
	}
	parts = append(parts, value)
	for i, p := range parts {
		parts[i] = `"` + strings.ReplaceAll(strings.ReplaceAll(p, `\`, `\\`), `"`, `\"`) + `"`
	}
	return owner + ". 3600 IN TXT " + strings.Join(parts, " ")
}

func (r *run) checkDomain() {
	var ok bool
	for _, s := range r.a.profile.Suffixes {
		if govdomain.Under(r.domain, s) {
			ok = true
		}
	}
	c := Check{ID: "domain.suffix", Status: Pass, Evidence: []string{fmt.Sprintf("%s is under %s", r.domain, strings.Join(r.a.profile.Suffixes, " or "))}}
	if !ok {
		c.Status, c.Evidence = Fail, []string{fmt.Sprintf("%s is not under %s", r.domain, strings.Join(r.a.profile.Suffixes, " or "))}
		c.Advice = "send government mail from a domain under " + strings.Join(r.a.profile.Suffixes, " or ")
	}
	r.add(c)

	soa, err := r.a.r.LookupSOA(r.ctx, r.domain)
	switch {
	case err != nil:
		r.add(dnsError("domain.soa", err))
	case soa.NXDomain:
		r.add(Check{ID: "domain.soa", Status: Fail, Evidence: []string{r.domain + " does not exist (NXDOMAIN)"}, Advice: "register and delegate the domain"})
	case len(soa.Records) == 0:
		r.add(Check{ID: "domain.soa", Status: Warn, Evidence: []string{r.domain + " exists but is not a zone apex (no SOA)"},
			Advice: "delegate " + r.domain + " as its own zone, or audit the zone that holds it"})
	default:
		s := soa.Records[0]
		r.add(Check{ID: "domain.soa", Status: Pass, Evidence: []string{fmt.Sprintf("SOA %s %s serial %d", s.NS, s.Mbox, s.Serial)}})
	}
	ns, err := r.a.r.LookupNS(r.ctx, r.domain)
	switch {
	case err != nil:
		r.add(dnsError("domain.ns", err))
	case len(ns.Records) == 0:
		r.add(Check{ID: "domain.ns", Status: Fail, Evidence: []string{"no NS records"}, Advice: r.domain + ". 3600 IN NS ns1.<your dns provider>."})
	default:
		c := Check{ID: "domain.ns", Status: Pass, Evidence: []string{"NS " + strings.Join(ns.Records, ", ")}}
		if len(ns.Records) < 2 {
			c.Status, c.Advice = Warn, "add a second name server (RFC 2182 5): "+r.domain+". 3600 IN NS ns2.<another network>."
		}
		r.add(c)
	}
}

func (r *run) checkDNSSEC() {
	ds, err := r.a.r.LookupDS(r.ctx, r.domain)
	if err != nil {
		r.add(dnsError("dnssec.signed", err))
		r.add(dnsError("dnssec.validated", err))
		return
	}
	keys, err := r.a.r.LookupDNSKEY(r.ctx, r.domain)
	if err != nil {
		r.add(dnsError("dnssec.signed", err))
		r.add(dnsError("dnssec.validated", err))
		return
	}
	c := Check{ID: "dnssec.signed", Status: Pass}
	for _, d := range ds.Records {
		c.Evidence = append(c.Evidence, fmt.Sprintf("DS %d %d %d", d.KeyTag, d.Algorithm, d.DigestType))
	}
	for _, k := range keys.Records {
		c.Evidence = append(c.Evidence, fmt.Sprintf("DNSKEY flags %d algorithm %d tag %d", k.Flags, k.Algorithm, k.KeyTag))
	}
	switch {
	case len(keys.Records) == 0:
		c.Status = Fail
		c.Evidence = append(c.Evidence, "no DNSKEY: the zone is not signed")
		c.Advice = "sign the zone " + r.domain + " (RFC 4033) and publish its DS record at the parent zone"
	case !keys.Signed:
		c.Status = Fail
		c.Evidence = append(c.Evidence, "DNSKEY answer carries no RRSIG")
		c.Advice = "sign the zone " + r.domain + " (RFC 4034 3): the DNSKEY set has no signature"
	case len(ds.Records) == 0:
		c.Status = Fail
		c.Evidence = append(c.Evidence, "no DS at the parent: the signed zone is an island of security")
		var recs []string
		for _, k := range keys.Records {
			if k.Flags&1 == 1 { // SEP bit: a key-signing key (RFC 4034 2.1.1)
				if s, err := lookup.DSRecord(r.domain, k); err == nil {
					recs = append(recs, s)
				}
			}
		}
		c.Advice = "publish at the parent zone: " + strings.Join(recs, "; ")
	}
	r.add(c)
	v := Check{ID: "dnssec.validated", Status: Pass, Evidence: []string{"the resolver set the AD bit: answers validated"}}
	if !keys.Authentic {
		v.Status, v.Evidence = Fail, []string{"the validating resolver did not set the AD bit for " + r.domain}
		v.Advice = "sign the zone " + r.domain + " and publish its DS at the parent so that validating resolvers authenticate it (RFC 4035)"
	}
	r.add(v)
}

func (r *run) checkMX() {
	res, err := r.a.r.LookupMX(r.ctx, r.domain)
	if err != nil {
		r.mxErr = err
		r.add(dnsError("mx.present", err))
		r.add(dnsError("mx.resolves", err))
		return
	}
	r.mxAuthentic = res.Authentic
	nullMX := false
	var hosts []string
	for _, m := range res.Records {
		if m.Host == "" || m.Host == "." {
			nullMX = true
			hosts = append(hosts, fmt.Sprintf("%d .", m.Preference))
			continue
		}
		hosts = append(hosts, fmt.Sprintf("%d %s", m.Preference, m.Host))
		r.mx = append(r.mx, m)
	}
	c := Check{ID: "mx.present", Status: Pass, Evidence: []string{"MX " + strings.Join(hosts, ", ")}}
	switch {
	case nullMX && len(r.mx) > 0:
		// RFC 7505 3: a null MX must be the only MX.
		c.Status, c.Advice = Fail, "a null MX must be alone (RFC 7505 3): remove "+r.domain+". IN MX 0 . or the other MX records"
		r.mx = nil
	case nullMX:
		r.nullMX = true
		c.Evidence = append(c.Evidence, "null MX (RFC 7505): the domain receives no mail")
	case len(r.mx) == 0:
		c.Status, c.Evidence = Fail, []string{"no MX records"}
		c.Advice = r.domain + ". 3600 IN MX 10 mx." + r.domain + ".   (or, for a domain that receives no mail, the null MX of RFC 7505: " + r.domain + ". 3600 IN MX 0 .)"
	}
	r.add(c)
	rc := Check{ID: "mx.resolves", Status: Pass}
	if len(r.mx) == 0 {
		rc.Evidence = []string{"no MX host to resolve"}
		if !r.nullMX {
			rc.Status, rc.Advice = Fail, c.Advice
		}
		r.add(rc)
		return
	}
	for _, m := range r.mx {
		ips, err := r.a.r.LookupIP(r.ctx, m.Host)
		switch {
		case err != nil:
			rc.Status = worst(rc.Status, Error)
			rc.Evidence = append(rc.Evidence, m.Host+": could not test: "+err.Error())
		case len(ips.Records) == 0:
			rc.Status = worst(rc.Status, Fail)
			rc.Evidence = append(rc.Evidence, m.Host+": no A or AAAA record")
			rc.Advice = m.Host + ". 3600 IN A <address of the mail server>"
		default:
			rc.Evidence = append(rc.Evidence, m.Host+": "+strings.Join(ips.Records, ", "))
		}
	}
	r.add(rc)
}

var checkOrder = func() map[string]int {
	m := map[string]int{}
	for i, id := range CheckIDs {
		m[id] = i
	}
	return m
}()

// sortChecks puts checks in CheckIDs order.
func sortChecks(cs []Check) {
	sort.SliceStable(cs, func(i, j int) bool { return checkOrder[cs[i].ID] < checkOrder[cs[j].ID] })
}
