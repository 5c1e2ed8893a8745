package verify

import (
	"context"
	"errors"
	"net"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
	"golang.org/x/net/publicsuffix"

	"github.com/kakuin/kakuin/verify/dmarc"
	"github.com/kakuin/kakuin/verify/lookup"
)

func publicSuffix(d string) string {
	ps, _ := publicsuffix.PublicSuffix(d)
	return ps
}

// spfCheck evaluates SPF (RFC 7208 4) for the SMTP client, when known,
// with blitiri.com.ar/go/spf and the kakuin resolver.
func (v *Verifier) spfCheck(ctx context.Context) Check {
	c := Check{Name: CheckSPF}
	if !v.opts.ClientIP.IsValid() {
		c.Status, c.Reason = authres.ResultNone, "not checked: no client IP given"
		return c
	}
	if v.opts.Resolver == nil {
		c.Status, c.Reason = authres.ResultTempError, "no DNS resolver configured"
		return c
	}
	helo := v.opts.HELO
	sender := v.opts.MailFrom
	// RFC 7208 2.4: with a null reverse-path, check postmaster@HELO.
	if sender == "" {
		sender = "postmaster@" + helo
	}
	c.Evidence = map[string]string{"client-ip": v.opts.ClientIP.String(), "helo": helo, "mailfrom": sender}
	res, err := spf.CheckHostWithSender(net.IP(v.opts.ClientIP.AsSlice()), helo, sender,
		spf.WithContext(ctx), spf.WithResolver(spfResolver{v.opts.Resolver}))
	c.Status = authres.ResultValue(res)
	if err != nil && res != spf.Pass {
		c.Reason = err.Error()
	}
	return c
}

// spfResolver adapts lookup.Resolver to spf.DNSResolver; PTR comes from
// lookup.NetResolver when the resolver can answer it.
type spfResolver struct{ r lookup.Resolver }

func (s spfResolver) net() lookup.NetResolver {
	zr, _ := s.r.(lookup.ZoneResolver)
	return lookup.NetResolver{R: zr}
}

func (s spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return lookup.TXTFunc(ctx, s.r)(name)
}

func (s spfResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	if zr, ok := s.r.(lookup.ZoneResolver); ok {
		return lookup.NetResolver{R: zr}.LookupMX(ctx, name)
	}
	res, err := s.r.LookupMX(ctx, name)
	if err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: name, IsTemporary: errors.Is(err, lookup.ErrTemporary)}
	}
	if len(res.Records) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	var out []*net.MX
	for _, m := range res.Records {
		out = append(out, &net.MX{Host: m.Host + ".", Pref: m.Preference})
	}
	return out, nil
}

func (s spfResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if zr, ok := s.r.(lookup.ZoneResolver); ok {
		return lookup.NetResolver{R: zr}.LookupIPAddr(ctx, host)
	}
	res, err := s.r.LookupIP(ctx, host)
	if err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: host, IsTemporary: errors.Is(err, lookup.ErrTemporary)}
	}
	var out []net.IPAddr
	for _, a := range res.Records {
		if ip := net.ParseIP(a); ip != nil {
			out = append(out, net.IPAddr{IP: ip})
		}
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

func (s spfResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	if _, ok := s.r.(lookup.ZoneResolver); ok {
		return s.net().LookupAddr(ctx, addr)
	}
	return nil, &net.DNSError{Err: "no such host", Name: addr, IsNotFound: true}
}

// dmarcFound is the DMARC record lookup for the From domain.
type dmarcFound struct {
	res *dmarc.Result
	rec *dmarc.Record
	err error
}

func (v *Verifier) dmarcLookup(ctx context.Context, fromDomain string) dmarcFound {
	if fromDomain == "" || v.opts.Resolver == nil {
		return dmarcFound{}
	}
	res, err := dmarc.Lookup(ctx, v.opts.Resolver, fromDomain)
	if err != nil {
		return dmarcFound{res: res, err: err}
	}
	return dmarcFound{res: res, rec: res.Record}
}

// dmarcCheck evaluates DMARC (RFC 7489 4.2, 6.6): pass when an aligned
// DKIM signature or an aligned SPF result passes.
func (v *Verifier) dmarcCheck(f dmarcFound, fromDomain string, rep *Report) Check {
	c := Check{Name: CheckDMARC}
	switch {
	case fromDomain == "":
		c.Status, c.Reason = authres.ResultPermError, "no single From domain (RFC 7489 6.6.1)"
		return c
	case v.opts.Resolver == nil:
		c.Status, c.Reason = authres.ResultTempError, "no DNS resolver configured"
		return c
	case f.err != nil:
		c.Status, c.Reason = authres.ResultTempError, "DMARC lookup failed: "+f.err.Error()
		if errors.Is(f.err, lookup.ErrPermanent) {
			c.Status = authres.ResultPermError
		}
		return c
	case f.res != nil && f.res.Err != nil:
		c.Status, c.Reason = authres.ResultPermError, f.res.Err.Error()
		return c
	case f.rec == nil:
		c.Status, c.Reason = authres.ResultNone, "no DMARC record for "+fromDomain
		return c
	}
	rec := f.rec
	adkim, aspf := orDefault(rec.ADKIM, "r"), orDefault(rec.ASPF, "r")
	policy := rec.EffectivePolicy()
	if f.res.Inherited() {
		policy = rec.EffectiveSubdomainPolicy()
	}
	c.Evidence = map[string]string{"record": strings.Join(f.res.Records, " "), "policy-domain": f.res.PolicyDomain,
		"policy": string(policy), "adkim": adkim, "aspf": aspf, "header.from": fromDomain}
	for _, r := range rep.DKIM {
		if r.Status == authres.ResultPass && aligned(r.Domain, fromDomain, adkim) {
			c.Status = authres.ResultPass
			c.Evidence["dkim"] = "d=" + r.Domain
			return c
		}
	}
	if s, ok := rep.Get(CheckSPF); ok && s.Status == authres.ResultPass {
		spfDomain := domainOf(s.Evidence["mailfrom"])
		if aligned(spfDomain, fromDomain, aspf) {
			c.Status = authres.ResultPass
			c.Evidence["spf"] = spfDomain
			return c
		}
	}
	c.Status, c.Reason = authres.ResultFail, "neither DKIM nor SPF passes aligned with "+fromDomain+"; policy "+string(policy)
	return c
}
