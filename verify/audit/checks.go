package audit

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/verify/dmarc"
	"github.com/kakuin/kakuin/verify/lookup"
	"github.com/kakuin/kakuin/verify/spf"
)

// checkSPF adds the spf.* checks and reports whether the record allows no
// sender at all ("v=spf1 -all", what a domain that sends no mail says).
func (r *run) checkSPF() bool {
	t, err := spf.Walk(r.ctx, r.a.r, r.domain)
	if err != nil {
		for _, id := range []string{"spf.record", "spf.lookups", "spf.all", "spf.ptr"} {
			r.add(dnsError(id, err))
		}
		return false
	}
	suggested := "v=spf1 mx -all"
	if r.nullMX {
		suggested = "v=spf1 -all" // RULES null MX: a domain that sends no mail
	}
	rec := Check{ID: "spf.record", Status: Pass}
	for _, s := range t.Records {
		rec.Evidence = append(rec.Evidence, "TXT "+s)
	}
	var top error
	for _, p := range t.Problems {
		if errors.Is(p, spf.ErrNoRecord) && len(t.Records) == 0 ||
			errors.Is(p, spf.ErrMultiple) && len(t.Records) > 1 ||
			errors.Is(p, spf.ErrSyntax) && t.Record == nil {
			top = p
		}
	}
	switch {
	case len(t.Records) == 0:
		rec.Status, rec.Evidence = Fail, []string{"no SPF record (RFC 7208 4.5)"}
		rec.Advice = txt(r.domain, suggested)
	case len(t.Records) > 1:
		rec.Status = Fail
		rec.Evidence = append(rec.Evidence, fmt.Sprintf("%d SPF records: a permerror (RFC 7208 4.5)", len(t.Records)))
		rec.Advice = "keep exactly one: " + txt(r.domain, t.Records[0])
	case top != nil:
		rec.Status = Fail
		rec.Evidence = append(rec.Evidence, top.Error())
		rec.Advice = txt(r.domain, suggested)
	case len(t.Records[0]) > spf.MaxAnswerSize:
		rec.Status = Warn
		rec.Evidence = append(rec.Evidence, fmt.Sprintf("%d bytes: may not fit a UDP answer (RFC 7208 3.4)", len(t.Records[0])))
		rec.Advice = "shorten the record under 450 bytes, for example by replacing include: with the ip4:/ip6: ranges they hold"
	}
	r.add(rec)
	if t.Record == nil {
		for _, id := range []string{"spf.lookups", "spf.all", "spf.ptr"} {
			r.add(Check{ID: id, Status: Fail, Evidence: []string{"no usable SPF record"}, Advice: rec.Advice})
		}
		return false
	}

	lk := Check{ID: "spf.lookups", Status: Pass, Evidence: []string{
		fmt.Sprintf("%d DNS lookups (limit %d), %d void (limit %d), RFC 7208 4.6.4", t.Lookups, spf.MaxLookups, t.VoidLookups, spf.MaxVoidLookups),
		"records fetched: " + strings.Join(t.Visited, ", "),
	}}
	for _, p := range t.Problems {
		if errors.Is(p, spf.ErrPtr) || errors.Is(p, spf.ErrTooLarge) {
			continue
		}
		lk.Status = Fail
		lk.Evidence = append(lk.Evidence, p.Error())
	}
	if lk.Status == Fail {
		lk.Advice = "make the SPF tree evaluate without permerror: at most 10 include/a/mx/ptr/exists/redirect terms in total, " +
			"at most 2 of them empty, no loops, every include naming a domain with one SPF record; replace includes with ip4:/ip6: ranges where needed"
	}
	r.add(lk)

	all := Check{ID: "spf.all", Status: Pass}
	fixed := withAll(t.Record, '-')
	switch t.All {
	case '-':
		all.Evidence = []string{"ends in -all"}
	case '~':
		all.Status, all.Evidence = Warn, []string{"ends in ~all (softfail)"}
	case '?', '+':
		all.Status, all.Evidence = Fail, []string{"ends in " + string(t.All) + "all: anyone may send"}
	default:
		all.Status, all.Evidence = Fail, []string{"no all: the result for other senders is neutral (RFC 7208 4.7)"}
	}
	if all.Status != Pass {
		all.Advice = txt(r.domain, fixed)
	}
	allowsNothing := t.All == '-' && len(t.Record.Terms) == 1
	if r.nullMX && !allowsNothing {
		all.Evidence = append(all.Evidence, "null MX, but the SPF record allows senders: treated as a sending domain")
	}
	r.add(all)

	pc := Check{ID: "spf.ptr", Status: Pass, Evidence: []string{"no ptr mechanism"}}
	if t.Ptr {
		pc.Status, pc.Evidence = Warn, []string{"ptr is used: slow and unreliable, SHOULD NOT be used (RFC 7208 5.5)"}
		pc.Advice = "replace ptr with the ip4:/ip6: ranges of the senders"
	}
	r.add(pc)
	return allowsNothing
}

// withAll returns the record with its all term set to qualifier q.
func withAll(rec *spf.Record, q byte) string {
	out := &spf.Record{}
	for _, t := range rec.Terms {
		if !t.Modifier && t.Name == "all" {
			continue
		}
		if t.Modifier && t.Name == "redirect" {
			continue
		}
		out.Terms = append(out.Terms, t)
	}
	out.Terms = append(out.Terms, spf.Term{Name: "all", Qualifier: q, Explicit: true, Prefix4: -1, Prefix6: -1})
	return out.String()
}

func (r *run) checkDMARC() {
	ids := []string{"dmarc.record", "dmarc.policy", "dmarc.rua", "dmarc.rua_authorized", "dmarc.subdomains", "dmarc.rua_cisa"}
	res, err := dmarc.Lookup(r.ctx, r.a.r, r.domain)
	if err != nil {
		for _, id := range ids {
			r.add(dnsError(id, err))
		}
		return
	}
	rua := "mailto:dmarc-reports@" + r.domain
	suggested := &dmarc.Record{Policy: dmarc.PolicyReject, SubdomainPolicy: dmarc.PolicyReject, Percent: -1, ReportInterval: -1, RUA: []string{rua}}
	if res.Record != nil {
		// Keep what is there; fix what is wrong.
		s := *res.Record
		s.Policy, s.Percent, s.Testing = dmarc.PolicyReject, -1, ""
		if s.SubdomainPolicy != "" && s.SubdomainPolicy != dmarc.PolicyReject {
			s.SubdomainPolicy = dmarc.PolicyReject
		}
		if s.NonexistentPolicy != "" && s.NonexistentPolicy != dmarc.PolicyReject {
			s.NonexistentPolicy = dmarc.PolicyReject
		}
		if len(s.RUA) == 0 {
			s.RUA = []string{rua}
		}
		suggested = &s
	}
	owner := "_dmarc." + r.domain
	if res.PolicyDomain != "" {
		owner = "_dmarc." + res.PolicyDomain
	}
	advice := txt(owner, suggested.String())

	rec := Check{ID: "dmarc.record", Status: Pass}
	for _, s := range res.Records {
		rec.Evidence = append(rec.Evidence, "TXT "+s)
	}
	if res.Inherited() {
		rec.Evidence = append(rec.Evidence, "found at the parent "+res.PolicyDomain+" (RFC 9989 tree walk)")
	}
	switch {
	case res.Err != nil:
		rec.Status = Fail
		rec.Evidence = append(rec.Evidence, res.Err.Error())
		rec.Advice = "keep exactly one valid record: " + advice
	case res.Record == nil:
		rec.Status = Fail
		rec.Evidence = []string{"no DMARC record at " + strings.Join(res.Queried, ", ")}
		rec.Advice = advice
	}
	r.add(rec)
	if res.Record == nil {
		for _, id := range ids[1:] {
			r.add(Check{ID: id, Status: Fail, Evidence: []string{"no usable DMARC record"}, Advice: advice})
		}
		return
	}
	d := res.Record

	pol := Check{ID: "dmarc.policy", Status: Pass}
	p := d.EffectivePolicy()
	if res.Inherited() {
		// RFC 7489 6.6.3: a subdomain gets sp= of the organisational
		// domain's record.
		p = d.EffectiveSubdomainPolicy()
		pol.Evidence = append(pol.Evidence, "policy inherited from "+res.PolicyDomain+" (sp)")
	}
	pol.Evidence = append(pol.Evidence, "p="+string(p))
	switch p {
	case dmarc.PolicyReject:
	case dmarc.PolicyQuarantine:
		pol.Status = Warn
	default:
		pol.Status = Fail
	}
	if d.Policy == "" {
		pol.Evidence = append(pol.Evidence, "p= is missing: treated as none")
	}
	if d.InTesting() {
		pol.Status = worst(pol.Status, Warn)
		pol.Evidence = append(pol.Evidence, fmt.Sprintf("testing mode (pct=%d, t=%s): the policy is not fully applied", d.Percent, d.Testing))
	}
	if len(d.Removed) > 0 {
		pol.Evidence = append(pol.Evidence, "tags removed by RFC 9989: "+strings.Join(d.Removed, ", "))
	}
	pol.Advice = advice
	r.add(pol)

	ru := Check{ID: "dmarc.rua", Status: Pass, Evidence: []string{"rua=" + strings.Join(d.RUA, ",")}}
	if len(d.RUA) == 0 {
		ru.Status, ru.Evidence, ru.Advice = Fail, []string{"no rua: no aggregate reports"}, advice
	}
	r.add(ru)

	au := Check{ID: "dmarc.rua_authorized", Status: Pass}
	for _, u := range append(append([]string(nil), d.RUA...), d.RUF...) {
		dest := dmarc.URIDomain(u)
		ok, err := dmarc.ExternalAuthorized(r.ctx, r.a.r, res.PolicyDomain, u)
		switch {
		case err != nil:
			au.Status = worst(au.Status, Error)
			au.Evidence = append(au.Evidence, u+": could not test: "+err.Error())
		case ok:
			au.Evidence = append(au.Evidence, u+": authorised")
		default:
			au.Status = worst(au.Status, Fail)
			au.Evidence = append(au.Evidence, u+": "+dest+" has not authorised reports for "+res.PolicyDomain+" (RFC 7489 7.1)")
			au.Advice = strings.TrimPrefix(au.Advice+"; ", "; ") + "at the destination: " + txt(res.PolicyDomain+"._report._dmarc."+dest, "v=DMARC1")
		}
	}
	if len(au.Evidence) == 0 {
		au.Evidence = []string{"no report destinations"}
	}
	r.add(au)

	sub := Check{ID: "dmarc.subdomains", Status: Pass, Evidence: []string{
		fmt.Sprintf("sp=%s np=%s adkim=%s aspf=%s", d.EffectiveSubdomainPolicy(), d.EffectiveNonexistentPolicy(), def(d.ADKIM, "r"), def(d.ASPF, "r")),
	}}
	if d.PSD != "" {
		sub.Evidence = append(sub.Evidence, "psd="+d.PSD)
	}
	if d.EffectiveSubdomainPolicy() != dmarc.PolicyReject || d.EffectiveNonexistentPolicy() != dmarc.PolicyReject {
		sub.Status = Warn
		sub.Evidence = append(sub.Evidence, "subdomains or non-existent subdomains are not under p=reject: they can be spoofed")
		sub.Advice = advice
	}
	r.add(sub)

	cisa := Check{ID: "dmarc.rua_cisa", Status: Fail, Evidence: []string{"rua does not include " + CISAReportAddress}}
	for _, u := range d.RUA {
		if strings.EqualFold(strings.SplitN(u, "!", 2)[0], CISAReportAddress) {
			cisa.Status, cisa.Evidence = Pass, []string{"rua includes " + CISAReportAddress}
		}
	}
	if cisa.Status == Fail {
		s := *d
		s.RUA = append(append([]string(nil), d.RUA...), CISAReportAddress)
		cisa.Advice = txt(owner, s.String())
	}
	r.add(cisa)
}

func def(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// checkDKIM looks for key records at the given and common selectors.
func (r *run) checkDKIM() {
	sels := map[string]bool{}
	var order []string
	// kakuin's own selectors (pki.DKIMSelectors) of this month and the last.
	now := r.a.opts.Now()
	rsaNow, edNow := pki.DKIMSelectors(now)
	rsaLast, edLast := pki.DKIMSelectors(now.AddDate(0, 0, -now.Day()))
	own := []string{rsaNow, edNow, rsaLast, edLast}
	for _, s := range append(append(append([]string(nil), r.a.opts.Selectors...), own...), CommonSelectors...) {
		s = strings.ToLower(strings.TrimSpace(s))
		if s != "" && !sels[s] {
			sels[s] = true
			order = append(order, s)
		}
	}
	// A random selector shows whether *._domainkey answers everything.
	var rnd [6]byte
	rand.Read(rnd[:])
	probe := "kakuin-audit-" + hex.EncodeToString(rnd[:])
	wild, err := r.a.r.LookupTXT(r.ctx, probe+"._domainkey."+r.domain)
	if err != nil {
		r.add(dnsError("dkim.present", err))
		r.add(dnsError("dkim.keys", err))
		return
	}
	wildcard := ""
	if len(wild.Records) > 0 {
		wildcard = wild.Records[0]
	}

	type found struct {
		sel string
		raw string
		key *DKIMKey
		err error
	}
	var keys []found
	var lookupErrs []string
	for _, s := range order {
		res, err := r.a.r.LookupTXT(r.ctx, s+"._domainkey."+r.domain)
		if err != nil {
			if errors.Is(err, lookup.ErrPermanent) {
				continue // a selector that does not make a DNS name
			}
			lookupErrs = append(lookupErrs, s+": "+err.Error())
			continue
		}
		for _, raw := range res.Records {
			if wildcard != "" && raw == wildcard {
				continue // the wildcard, reported once below
			}
			k, err := ParseDKIMKey(raw)
			keys = append(keys, found{s, raw, k, err})
		}
	}

	present := Check{ID: "dkim.present"}
	strength := Check{ID: "dkim.keys", Status: Pass}
	usable := 0
	for _, f := range keys {
		name := f.sel + "._domainkey." + r.domain
		switch {
		case f.err != nil:
			strength.Status = worst(strength.Status, Fail)
			strength.Evidence = append(strength.Evidence, name+": "+f.err.Error())
		case f.key.Revoked:
			strength.Evidence = append(strength.Evidence, name+": revoked (empty p=)")
		default:
			usable++
			k := f.key
			ev := fmt.Sprintf("%s: %s %d bits", name, k.KeyType, k.Bits)
			st := Pass
			switch {
			case k.KeyType == "rsa" && k.Bits < 1024:
				st = Fail // RFC 8301 3.2: verifiers must not accept under 1024
				ev += ": under 1024 bits, rejected by verifiers (RFC 8301 3.2)"
			case k.KeyType == "rsa" && k.Bits < 2048:
				st = Warn
				ev += ": under 2048 bits (RFC 8301 3.2: signers should use 2048)"
			}
			if len(k.Hashes) > 0 && !contains(k.Hashes, "sha256") {
				st = worst(st, Fail)
				ev += ": h= excludes sha256 (RFC 8301 3.1)"
			}
			if len(k.Services) > 0 && !contains(k.Services, "*") && !contains(k.Services, "email") {
				st = worst(st, Fail)
				ev += ": s= excludes email (RFC 6376 3.6.1)"
			}
			if k.Testing() {
				st = worst(st, Warn)
				ev += ": t=y (testing: verifiers may ignore failures)"
			}
			strength.Status = worst(strength.Status, st)
			strength.Evidence = append(strength.Evidence, ev)
		}
	}
	if strength.Status != Pass {
		strength.Advice = "publish a 2048-bit RSA or an Ed25519 key without t=y, for example the records `kakuin records` prints: " +
			txt("SELECTOR._domainkey."+r.domain, "v=DKIM1; k=rsa; p=<base64 of the 2048-bit public key>")
	}

	var wildKey *DKIMKey
	if wildcard != "" {
		wildKey, _ = ParseDKIMKey(wildcard)
		strength.Evidence = append(strength.Evidence, "*._domainkey."+r.domain+": TXT "+wildcard)
	}
	noMail := r.nullMX && r.rep.NoMail
	switch {
	case usable > 0:
		present.Status = Pass
		present.Evidence = []string{fmt.Sprintf("%d usable key(s) at selectors checked: %s", usable, strings.Join(order, ", "))}
	case noMail && wildKey != nil && wildKey.Revoked:
		present.Status = Pass
		present.Evidence = []string{"no key, and *._domainkey." + r.domain + " has an empty p=: the domain sends no mail"}
	case len(lookupErrs) > 0:
		present.Status = Error
		present.Evidence = append([]string{"could not test:"}, lookupErrs...)
	case noMail:
		present.Status = Warn
		present.Evidence = []string{"a domain that sends no mail, without a revoked wildcard key"}
		present.Advice = txt("*._domainkey."+r.domain, "v=DKIM1; p=")
	default:
		present.Status = Fail
		present.Evidence = []string{"no usable DKIM key at the selectors checked: " + strings.Join(order, ", ")}
		present.Advice = "publish the key of each selector you sign with (`kakuin records` prints them): " +
			txt("SELECTOR._domainkey."+r.domain, "v=DKIM1; k=rsa; p=<base64 of the public key>")
	}
	if usable == 0 && strength.Status == Pass {
		strength.Status = present.Status
		strength.Evidence = append(strength.Evidence, "no usable key to judge")
		strength.Advice = present.Advice
	}
	if len(lookupErrs) > 0 && usable > 0 {
		sort.Strings(lookupErrs)
		present.Evidence = append(present.Evidence, "not tested: "+strings.Join(lookupErrs, "; "))
	}
	r.add(present)
	r.add(strength)
}

func (r *run) checkTLSRPT() {
	c := Check{ID: "tlsrpt.record", Status: Pass}
	name := "_smtp._tls." + r.domain
	advice := txt(name, "v=TLSRPTv1; rua=mailto:tlsrpt-reports@"+r.domain)
	if r.nullMX {
		c.Evidence = []string{"null MX: the domain receives no mail, TLS-RPT does not apply"}
		r.add(c)
		return
	}
	res, err := r.a.r.LookupTXT(r.ctx, name)
	if err != nil {
		r.add(dnsError(c.ID, err))
		return
	}
	var recs []string
	for _, s := range res.Records {
		if strings.HasPrefix(s, "v=TLSRPTv1") {
			recs = append(recs, s)
		}
	}
	switch len(recs) {
	case 0:
		c.Status, c.Evidence, c.Advice = Fail, []string{"no TLS-RPT record at " + name + " (RFC 8460 3)"}, advice
	case 1:
		c.Evidence = []string{"TXT " + recs[0]}
		if _, err := ParseTLSRPT(recs[0]); err != nil {
			c.Status, c.Advice = Fail, advice
			c.Evidence = append(c.Evidence, err.Error())
		}
	default:
		c.Status, c.Evidence, c.Advice = Fail, append([]string{"more than one TLS-RPT record"}, recs...), "keep exactly one: "+advice
	}
	r.add(c)
}

func (r *run) checkCAA() {
	c := Check{ID: "caa.issuemail", Status: Pass}
	// RFC 8659 3: the relevant CAA set is the one of the closest name,
	// climbing towards the root; here up to the public suffix.
	var res lookup.Result[lookup.CAA]
	for name := r.domain; ; {
		var err error
		res, err = r.a.r.LookupCAA(r.ctx, name)
		if err != nil {
			r.add(dnsError(c.ID, err))
			return
		}
		if len(res.Records) > 0 {
			if name != r.domain {
				c.Evidence = append(c.Evidence, "CAA set found at "+name)
			}
			break
		}
		i := strings.IndexByte(name, '.')
		if i < 0 || name == dmarc.OrganizationalDomain(name) {
			break // do not climb into the public suffix
		}
		name = name[i+1:]
	}
	for _, x := range res.Records {
		c.Evidence = append(c.Evidence, fmt.Sprintf("CAA %d %s %q", x.Flag, x.Tag, x.Value))
	}
	var has bool
	for _, x := range res.Records {
		if strings.EqualFold(x.Tag, "issuemail") {
			has = true
		}
	}
	if !has {
		c.Status = Warn
		c.Evidence = append(c.Evidence, "no CAA issuemail record (RFC 9495): any CA may issue S/MIME certificates for the domain")
		c.Advice = r.domain + `. 3600 IN CAA 0 issuemail "<the government CA's domain>"`
	}
	r.add(c)
}
