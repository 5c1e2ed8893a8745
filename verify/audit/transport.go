package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kakuin/kakuin/verify/lookup"
	"github.com/kakuin/kakuin/verify/mtasts"
)

var transportIDs = []string{"starttls.offered", "starttls.tls12", "starttls.certificate", "starttls.weak",
	"mtasts.record", "mtasts.policy", "mtasts.mx", "dane.tlsa", "dane.match"}

// checkTransport adds the STARTTLS, MTA-STS and DANE checks.
func (r *run) checkTransport() {
	switch {
	case r.nullMX:
		for _, id := range transportIDs {
			r.add(Check{ID: id, Status: Pass, Evidence: []string{"null MX: the domain receives no mail"}})
		}
		return
	case r.mxErr != nil:
		for _, id := range transportIDs {
			r.add(dnsError(id, r.mxErr))
		}
		return
	case len(r.mx) == 0:
		for _, id := range transportIDs {
			r.add(Check{ID: id, Status: Fail, Evidence: []string{"no MX host to test"},
				Advice: r.domain + ". 3600 IN MX 10 mx." + r.domain + "."})
		}
		return
	}
	probes := map[string]*probeResult{}
	if !r.a.opts.NoProbes {
		for _, m := range r.mx {
			probes[m.Host] = r.a.probe(r.ctx, m.Host)
		}
	}
	// RFC 7672 3.1: a certificate that matches DNSSEC-validated TLSA
	// records needs no CA.
	daneOK := map[string]bool{}
	for _, m := range r.mx {
		p := probes[m.Host]
		if p == nil || len(p.chain) == 0 {
			continue
		}
		if res, err := r.a.r.LookupTLSA(r.ctx, "_25._tcp."+m.Host); err == nil && res.Authentic {
			daneOK[m.Host] = daneMatch(usableTLSA(res.Records), p.chain)
		}
	}
	r.checkSTARTTLS(probes, daneOK)
	r.checkMTASTS()
	r.checkDANE(probes)
}

func notProbed(id string) Check {
	return Check{ID: id, Status: Error, Evidence: []string{"could not test: network probes are disabled"}}
}

func (r *run) checkSTARTTLS(probes map[string]*probeResult, daneOK map[string]bool) {
	if r.a.opts.NoProbes {
		for _, id := range transportIDs[:4] {
			r.add(notProbed(id))
		}
		return
	}
	off := Check{ID: "starttls.offered", Status: Pass}
	ver := Check{ID: "starttls.tls12", Status: Pass}
	cert := Check{ID: "starttls.certificate", Status: Pass}
	weak := Check{ID: "starttls.weak", Status: Pass}
	all := []*Check{&off, &ver, &cert, &weak}
	for _, m := range r.mx {
		p := probes[m.Host]
		if p.err != nil {
			for _, c := range all {
				c.Status = worst(c.Status, Error)
				c.Evidence = append(c.Evidence, m.Host+": could not test: "+p.err.Error())
			}
			continue
		}
		if !p.starttls {
			for _, c := range all {
				c.Status = worst(c.Status, Fail)
				c.Evidence = append(c.Evidence, m.Host+": STARTTLS not offered")
			}
			off.Advice = "enable STARTTLS on " + m.Host + " port 25 (RFC 3207), e.g. Postfix: smtpd_tls_security_level = may, with a certificate for " + m.Host
			continue
		}
		if p.tlsErr != nil {
			for _, c := range all {
				c.Status = worst(c.Status, Fail)
				c.Evidence = append(c.Evidence, m.Host+": STARTTLS offered, handshake failed: "+p.tlsErr.Error())
			}
			off.Advice = "fix the TLS configuration of " + m.Host + ": the handshake fails"
			continue
		}
		off.Evidence = append(off.Evidence, m.Host+": STARTTLS offered")
		ev := fmt.Sprintf("%s: %s, %s", m.Host, versionName(p.version), tls.CipherSuiteName(p.cipher))
		if p.version < tls.VersionTLS12 {
			ver.Status = worst(ver.Status, Fail)
			ver.Advice = "enable TLS 1.2 and 1.3 on " + m.Host + ", e.g. Postfix: smtpd_tls_protocols = >=TLSv1.2"
		}
		ver.Evidence = append(ver.Evidence, ev)
		switch {
		case p.certErr == nil:
			cert.Evidence = append(cert.Evidence, m.Host+": certificate valid for the name ("+p.chain[0].Subject.CommonName+")")
		case daneOK[m.Host]:
			cert.Evidence = append(cert.Evidence, m.Host+": certificate matches its DNSSEC-validated TLSA record (RFC 7672 3.1); CA check: "+p.certErr.Error())
		default:
			cert.Status = worst(cert.Status, Fail)
			cert.Evidence = append(cert.Evidence, m.Host+": "+p.certErr.Error())
			cert.Advice = "install on " + m.Host + " a certificate for " + m.Host + " from a trusted CA, with its chain (or publish a DANE TLSA record for it)"
		}
		switch {
		case p.weakErr != nil:
			weak.Status = worst(weak.Status, Error)
			weak.Evidence = append(weak.Evidence, m.Host+": could not test: "+p.weakErr.Error())
		case len(p.weak) > 0:
			weak.Status = worst(weak.Status, Fail)
			weak.Evidence = append(weak.Evidence, m.Host+": accepts "+strings.Join(p.weak, ", "))
			weak.Advice = "disable SSLv2/SSLv3, RC4 and 3DES on " + m.Host + " (RFC 6176, RFC 7568, RFC 7465; BOD 18-01), e.g. Postfix: smtpd_tls_protocols = >=TLSv1.2, smtpd_tls_exclude_ciphers = RC4, 3DES, aNULL"
		default:
			weak.Evidence = append(weak.Evidence, m.Host+": refuses "+weakNames())
		}
	}
	for _, c := range all {
		r.add(*c)
	}
}

func (r *run) checkMTASTS() {
	name := "_mta-sts." + r.domain
	id := time.Now().UTC().Format("20060102")
	recAdvice := txt(name, "v=STSv1; id="+id)
	var hosts []string
	for _, m := range r.mx {
		hosts = append(hosts, m.Host)
	}
	pol := &mtasts.Policy{Mode: mtasts.ModeEnforce, MX: hosts, MaxAge: 1209600}
	polAdvice := "serve at https://mta-sts." + r.domain + "/.well-known/mta-sts.txt (text/plain, a valid certificate for mta-sts." +
		r.domain + "):\n" + strings.TrimSpace(strings.ReplaceAll(pol.String(), "\r\n", "\n"))

	res, err := r.a.r.LookupTXT(r.ctx, name)
	if err != nil {
		for _, id := range transportIDs[4:7] {
			r.add(dnsError(id, err))
		}
		return
	}
	var recs []string
	for _, s := range res.Records {
		if strings.HasPrefix(s, "v=STSv1") {
			recs = append(recs, s)
		}
	}
	rec := Check{ID: "mtasts.record", Status: Pass}
	for _, s := range recs {
		rec.Evidence = append(rec.Evidence, "TXT "+s)
	}
	switch len(recs) {
	case 0:
		rec.Status, rec.Evidence, rec.Advice = Fail, []string{"no MTA-STS record at " + name + " (RFC 8461 3.1)"}, recAdvice
	case 1:
		if _, err := mtasts.ParseRecord(recs[0]); err != nil {
			rec.Status, rec.Advice = Fail, recAdvice
			rec.Evidence = append(rec.Evidence, err.Error())
		}
	default:
		rec.Status, rec.Advice = Fail, "keep exactly one: "+recAdvice
		rec.Evidence = append(rec.Evidence, "more than one record: MTA-STS is not used (RFC 8461 3.1)")
	}
	r.add(rec)
	if rec.Status != Pass {
		r.add(Check{ID: "mtasts.policy", Status: Fail, Evidence: []string{"no valid MTA-STS record: the policy is not looked for"}, Advice: recAdvice + "\nand " + polAdvice})
		r.add(Check{ID: "mtasts.mx", Status: Fail, Evidence: []string{"no MTA-STS policy"}, Advice: polAdvice})
		return
	}
	if r.a.opts.NoProbes {
		r.add(notProbed("mtasts.policy"))
		r.add(notProbed("mtasts.mx"))
		return
	}
	p, body, err := mtasts.Fetch(r.ctx, r.domain, mtasts.FetchOptions{Addr: r.a.opts.MTASTSAddr, RootCAs: r.a.opts.RootCAs, Timeout: r.a.opts.ProbeTimeout,
		LookupIP: func(ctx context.Context, host string) ([]string, error) {
			res, err := r.a.r.LookupIP(ctx, host)
			return res.Records, err
		}})
	pc := Check{ID: "mtasts.policy", Status: Pass}
	if err != nil {
		// A policy that cannot be had is the domain's problem (RFC 8461
		// 3.3), except when the network itself failed.
		pc.Status, pc.Advice = Fail, polAdvice
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, lookup.ErrTemporary) {
			pc.Status = Error
		}
		pc.Evidence = []string{err.Error()}
		r.add(pc)
		r.add(Check{ID: "mtasts.mx", Status: pc.Status, Evidence: []string{"no policy to match the MX against"}, Advice: polAdvice})
		return
	}
	pc.Evidence = []string{"policy: " + strings.ReplaceAll(strings.TrimSpace(body), "\r\n", "; ")}
	switch p.Mode {
	case mtasts.ModeEnforce:
	case mtasts.ModeTesting:
		pc.Status = Warn
		pc.Evidence = append(pc.Evidence, "mode testing: failures are reported, not enforced")
	default:
		pc.Status = Fail
		pc.Evidence = append(pc.Evidence, "mode none: the policy is withdrawn")
	}
	if p.MaxAge < 86400 {
		pc.Status = worst(pc.Status, Warn)
		pc.Evidence = append(pc.Evidence, fmt.Sprintf("max_age %d is under a day (RFC 8461 3.2 suggests weeks)", p.MaxAge))
	}
	if pc.Status != Pass {
		pc.Advice = polAdvice
	}
	r.add(pc)
	mc := Check{ID: "mtasts.mx", Status: Pass}
	for _, h := range hosts {
		if p.Matches(h) {
			mc.Evidence = append(mc.Evidence, h+": matches the policy")
		} else {
			mc.Status = Fail
			mc.Evidence = append(mc.Evidence, h+": matches no mx pattern of the policy (RFC 8461 4.1)")
			mc.Advice = polAdvice
		}
	}
	r.add(mc)
}

func (r *run) checkDANE(probes map[string]*probeResult) {
	tc := Check{ID: "dane.tlsa", Status: Pass}
	mc := Check{ID: "dane.match", Status: Pass}
	var advice []string
	for _, m := range r.mx {
		name := "_25._tcp." + m.Host
		res, err := r.a.r.LookupTLSA(r.ctx, name)
		if err != nil {
			tc.Status = worst(tc.Status, Error)
			tc.Evidence = append(tc.Evidence, name+": could not test: "+err.Error())
			mc.Status = worst(mc.Status, Error)
			mc.Evidence = append(mc.Evidence, name+": could not test: "+err.Error())
			continue
		}
		usable := usableTLSA(res.Records)
		for _, t := range res.Records {
			tc.Evidence = append(tc.Evidence, fmt.Sprintf("%s: TLSA %d %d %d %x", name, t.Usage, t.Selector, t.MatchingType, t.Data))
		}
		p := probes[m.Host]
		rec := name + ". 3600 IN TLSA 3 1 1 <sha-256 of the certificate's public key>"
		if p != nil && len(p.chain) > 0 {
			sum := sha256.Sum256(p.chain[0].RawSubjectPublicKeyInfo)
			rec = fmt.Sprintf("%s. 3600 IN TLSA 3 1 1 %s", name, hex.EncodeToString(sum[:]))
		}
		switch {
		case len(usable) == 0:
			tc.Status = worst(tc.Status, Fail)
			tc.Evidence = append(tc.Evidence, name+": no usable TLSA record (usage 2 or 3)")
			advice = append(advice, rec)
		case !r.mxAuthentic:
			// RFC 7672 2.2.1: DANE applies only when the MX RRset is
			// DNSSEC-validated too.
			tc.Status = worst(tc.Status, Fail)
			tc.Evidence = append(tc.Evidence, r.domain+": MX records not DNSSEC-validated: senders ignore the TLSA records (RFC 7672 2.2.1)")
			advice = append(advice, "sign the zone of "+r.domain)
		case !res.Authentic:
			// RFC 7672 2.2: TLSA records count only when DNSSEC-validated.
			tc.Status = worst(tc.Status, Fail)
			tc.Evidence = append(tc.Evidence, name+": TLSA not DNSSEC-validated (no AD bit): ignored by senders (RFC 7672 2.2)")
			advice = append(advice, "sign the zone holding "+name)
		}
		if len(usable) == 1 {
			tc.Evidence = append(tc.Evidence, name+": one usable record: publish the next key's too before rolling over (RFC 7671 8.1)")
		}
		switch {
		case len(usable) == 0:
			mc.Status = worst(mc.Status, Fail)
			mc.Evidence = append(mc.Evidence, m.Host+": no TLSA record to match")
		case r.a.opts.NoProbes:
			mc.Status = worst(mc.Status, Error)
			mc.Evidence = append(mc.Evidence, m.Host+": could not test: network probes are disabled")
		case p.err != nil || p.tlsErr != nil || !p.starttls || len(p.chain) == 0:
			st, why := Error, "could not test: no certificate seen"
			if p.err == nil && (!p.starttls || p.tlsErr != nil) {
				st, why = Fail, "no TLS session to match against"
			}
			mc.Status = worst(mc.Status, st)
			mc.Evidence = append(mc.Evidence, m.Host+": "+why)
		case daneMatch(usable, p.chain):
			mc.Evidence = append(mc.Evidence, m.Host+": the presented certificate matches a TLSA record")
		default:
			mc.Status = worst(mc.Status, Fail)
			mc.Evidence = append(mc.Evidence, m.Host+": the presented certificate matches no TLSA record (RFC 7671 5)")
			advice = append(advice, rec)
		}
	}
	if tc.Status == Fail || tc.Status == Warn {
		tc.Advice = strings.Join(advice, "\n") + "\n(publish with a rollover record for the next key, RFC 7671 8.1)"
	}
	if mc.Status == Fail {
		mc.Advice = strings.Join(advice, "\n")
	}
	r.add(tc)
	r.add(mc)
}

// daneMatch reports whether a TLSA record matches the chain (RFC 6698
// 2.1, RFC 7671 5): usage 3 against the leaf, usage 2 against an issuer
// certificate in the chain.
func daneMatch(recs []lookup.TLSA, chain []*x509.Certificate) bool {
	for _, t := range recs {
		certs := chain[:1]
		if t.Usage == 2 {
			certs = chain[1:]
		}
		for _, c := range certs {
			var data []byte
			switch t.Selector {
			case 0:
				data = c.Raw
			case 1:
				data = c.RawSubjectPublicKeyInfo
			default:
				continue
			}
			var sum []byte
			switch t.MatchingType {
			case 0:
				sum = data
			case 1:
				s := sha256.Sum256(data)
				sum = s[:]
			case 2:
				s := sha512.Sum512(data)
				sum = s[:]
			default:
				continue
			}
			if bytes.Equal(sum, t.Data) {
				return true
			}
		}
	}
	return false
}

// usableTLSA keeps DANE-TA(2) and DANE-EE(3) records: the only ones used
// for SMTP (RFC 7672 3.1.3).
func usableTLSA(recs []lookup.TLSA) []lookup.TLSA {
	var out []lookup.TLSA
	for _, t := range recs {
		if t.Usage == 2 || t.Usage == 3 {
			out = append(out, t)
		}
	}
	return out
}

// weakNames lists what the weak probes try, for the evidence of a pass:
// "SSLv2, SSLv3, RC4 and 3DES".
func weakNames() string {
	var names []string
	for _, w := range weakProbes {
		names = append(names, w.name)
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}
