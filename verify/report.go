package verify

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/authres"

	"github.com/kakuin/kakuin/rfc5322"
	"github.com/kakuin/kakuin/verify/dkimverify"
	"github.com/kakuin/kakuin/verify/dmarc"
	"github.com/kakuin/kakuin/verify/smimeverify"
)

// Check names, in the order a report lists them.
const (
	CheckFrom          = "from"
	CheckHeader        = "header"
	CheckGovernment    = "government-domain"
	CheckSMIME         = "smime"
	CheckSignedHeaders = "signed-headers"
	CheckRevocation    = "revocation"
	CheckDKIM          = "dkim"
	CheckSPF           = "spf"
	CheckDMARC         = "dmarc"
)

// Report is the outcome of verifying one message. Its JSON form is the
// stable schema of docs/verify-json.md.
type Report struct {
	// Verdict answers the question.
	Verdict Verdict `json:"verdict"`
	// From is the author's address; "" when there is no single one.
	From string `json:"from"`
	// At is the time validity was judged at.
	At time.Time `json:"at"`
	// Checks lists every check, in a fixed order (dkim once per signature).
	Checks []Check `json:"checks"`

	// SMIME and DKIM are the detailed results, for Go callers.
	SMIME *smimeverify.Result  `json:"-"`
	DKIM  []*dkimverify.Result `json:"-"`

	// unsigned[i] lists the shown fields DKIM[i] does not sign.
	unsigned [][]string
}

// Verdict is the answer in one line.
type Verdict struct {
	// Genuine is true only when every condition of the package doc holds.
	Genuine bool `json:"genuine"`
	// Summary is the first line of the text output: "GENUINE: ..." or
	// "NOT VERIFIED: ...".
	Summary string `json:"summary"`
	// Reason is the first reason the message is not genuine; "" when it
	// is.
	Reason string `json:"reason,omitempty"`
	// Organization is the signer's organisation from the certificate and
	// Address the address it was issued for, when genuine.
	Organization string `json:"organization,omitempty"`
	Address      string `json:"address,omitempty"`
}

// Check is one check's result.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Reason says why, in words, when Status is not pass (and sometimes
	// when it is, as a remark).
	Reason string `json:"reason,omitempty"`
	// Evidence holds what the check saw; the keys of each check are
	// listed in docs/verify-json.md.
	Evidence map[string]string `json:"evidence,omitempty"`
}

func (r *Report) add(c Check) { r.Checks = append(r.Checks, c) }

// Get returns the first check named name.
func (r *Report) Get(name string) (Check, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

// maxDateSkew is how far a signature's signingTime may be from the
// message's Date before Thunderbird marks the signature (RULES S8).
const maxDateSkew = time.Hour

func smimeCheck(sm *smimeverify.Result, h rfc5322.Header) Check {
	c := Check{Name: CheckSMIME, Status: sm.Status, Reason: sm.Reason, Evidence: map[string]string{}}
	if d := dateSkew(sm, h); d > maxDateSkew || d < -maxDateSkew {
		// RULES S8: not a failure (the signature is valid), but what a
		// reader sees: Thunderbird flags the signature.
		c.Evidence["date-skew"] = d.Round(time.Second).String()
		if c.Status == authres.ResultPass && c.Reason == "" {
			c.Reason = fmt.Sprintf("signed %s the Date field: Thunderbird shows a signature more than an hour away from Date as questionable", skewWords(d))
		}
	}
	if sm.Form != "" {
		c.Evidence["form"] = string(sm.Form)
	}
	if sm.Micalg != "" {
		c.Evidence["micalg"] = sm.Micalg
	}
	if sm.Algorithm != "" {
		c.Evidence["algorithm"] = sm.Algorithm
	}
	if s := sm.Signer; s != nil {
		c.Evidence["subject"] = s.Subject.String()
		c.Evidence["issuer"] = s.Issuer.String()
		c.Evidence["serial"] = hex.EncodeToString(s.SerialNumber.Bytes())
		c.Evidence["emails"] = strings.Join(s.EmailAddresses, " ")
		c.Evidence["not-before"] = s.NotBefore.UTC().Format(time.RFC3339)
		c.Evidence["not-after"] = s.NotAfter.UTC().Format(time.RFC3339)
		if o := sm.Organization(); o != "" {
			c.Evidence["organization"] = o
		}
	}
	if !sm.SigningTime.IsZero() {
		c.Evidence["signing-time"] = sm.SigningTime.UTC().Format(time.RFC3339)
	}
	if len(sm.Chain) > 0 {
		c.Evidence["anchor"] = sm.Chain[len(sm.Chain)-1].Subject.String()
	}
	if len(c.Evidence) == 0 {
		c.Evidence = nil
	}
	return c
}

// dateSkew is signingTime minus the Date field; zero when either is
// missing or Date does not parse.
func dateSkew(sm *smimeverify.Result, h rfc5322.Header) time.Duration {
	ds := h.Values("Date")
	if sm.SigningTime.IsZero() || len(ds) != 1 {
		return 0
	}
	date, err := mail.ParseDate(strings.Join(strings.Fields(ds[0]), " "))
	if err != nil {
		return 0
	}
	return sm.SigningTime.Sub(date)
}

func skewWords(d time.Duration) string {
	if d < 0 {
		return (-d).Round(time.Minute).String() + " before"
	}
	return d.Round(time.Minute).String() + " after"
}

func signedHeadersCheck(sm *smimeverify.Result) Check {
	c := Check{Name: CheckSignedHeaders}
	switch {
	case sm.Entity == nil:
		c.Status, c.Reason = authres.ResultNone, "no signed part"
	case sm.InnerErr != nil:
		c.Status = authres.ResultFail
		c.Reason = "the header inside the signed part cannot be read, so it cannot be compared with the message's: " + sm.InnerErr.Error()
	case len(sm.Mismatched) > 0:
		c.Status = authres.ResultFail
		c.Reason = "header fields inside the signed part differ from the message's: " + strings.Join(sm.Mismatched, ", ")
		c.Evidence = map[string]string{"mismatched": strings.Join(sm.Mismatched, " ")}
	default:
		c.Status = authres.ResultPass
	}
	return c
}

func (v *Verifier) revocationCheck(ctx context.Context, sm *smimeverify.Result, now time.Time) Check {
	c := Check{Name: CheckRevocation}
	switch {
	case sm.Status != authres.ResultPass:
		c.Status, c.Reason = authres.ResultNone, "no verified certificate to check"
	case v.opts.Revocation == nil:
		c.Status, c.Reason = authres.ResultNone, "revocation checking is not configured"
	default:
		r := v.opts.Revocation.Chain(ctx, sm.Chain)
		c.Status, c.Reason = r.Status, r.Reason
		if r.Source != "" {
			c.Evidence = map[string]string{"source": r.Source}
		}
	}
	return c
}

// aligned reports whether a DKIM d= (or SPF domain) aligns with the From
// domain (RFC 7489 3.1.1): the same organisational domain when relaxed,
// the same name when strict.
func aligned(d, fromDomain, mode string) bool {
	d, fromDomain = strings.ToLower(strings.TrimSuffix(d, ".")), strings.ToLower(fromDomain)
	if d == "" || fromDomain == "" {
		return false
	}
	if mode == "s" {
		return d == fromDomain
	}
	od := dmarc.OrganizationalDomain(d)
	// A public suffix (go.jp itself) is never an organisational domain.
	return od == dmarc.OrganizationalDomain(fromDomain) && strings.Contains(od, ".") && od != publicSuffix(od)
}

// shown are the header fields a reader sees: an aligned DKIM signature
// counts only if it signs every one of them present in the message (RFC
// 6376 5.4.1), or they could have been changed or added after signing.
var shown = []string{"From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date"}

// unsignedShown lists the fields of shown present in h that r's h= tag
// does not name.
func unsignedShown(r *dkimverify.Result, h rfc5322.Header) []string {
	var out []string
	for _, n := range shown {
		if h.Count(n) == 0 {
			continue
		}
		signed := false
		for _, k := range r.HeaderKeys {
			if strings.EqualFold(k, n) {
				signed = true
				break
			}
		}
		if !signed {
			out = append(out, n)
		}
	}
	return out
}

func dkimCheck(r *dkimverify.Result, fromDomain, mode string, h rfc5322.Header) Check {
	c := Check{Name: CheckDKIM, Status: r.Status, Reason: r.Reason, Evidence: map[string]string{
		"d": r.Domain, "s": r.Selector, "a": r.Algorithm, "c": r.Canonicalization, "b": r.BPrefix,
		"h": strings.Join(r.HeaderKeys, ":"),
	}}
	if r.Identifier != "" {
		c.Evidence["i"] = r.Identifier
	}
	if r.KeyType != "" {
		c.Evidence["key"] = fmt.Sprintf("%s %d bits", r.KeyType, r.KeyBits)
	}
	if !r.Signed.IsZero() {
		c.Evidence["t"] = r.Signed.UTC().Format(time.RFC3339)
	}
	if !r.Expires.IsZero() {
		c.Evidence["x"] = r.Expires.UTC().Format(time.RFC3339)
	}
	if len(r.Weak) > 0 {
		c.Evidence["weak"] = strings.Join(r.Weak, "; ")
	}
	if r.Testing {
		c.Evidence["testing"] = "y"
	}
	al := aligned(r.Domain, fromDomain, mode)
	c.Evidence["aligned"] = fmt.Sprint(al)
	if u := unsignedShown(r, h); len(u) > 0 {
		c.Evidence["unsigned"] = strings.Join(u, " ")
	}
	return c
}

func (v *Verifier) verdict(rep *Report) Verdict {
	fail := func(reason string) Verdict {
		return Verdict{Summary: "NOT VERIFIED: " + reason, Reason: reason}
	}
	get := func(n string) Check { c, _ := rep.Get(n); return c }
	for _, n := range []string{CheckFrom, CheckHeader, CheckGovernment, CheckSMIME, CheckSignedHeaders} {
		c := get(n)
		if c.Status == authres.ResultPass {
			continue
		}
		switch n {
		case CheckGovernment:
			if c.Reason == "" {
				c.Reason = "no From address"
			}
		case CheckSMIME:
			if c.Status == authres.ResultNone {
				return fail("the message has no S/MIME signature")
			}
			return fail("S/MIME: " + c.Reason)
		}
		return fail(c.Reason)
	}
	rev := get(CheckRevocation)
	if rev.Status == authres.ResultFail || (v.opts.RequireRevocation && rev.Status != authres.ResultPass) {
		return fail("revocation: " + rev.Reason)
	}
	// An aligned, passing DKIM signature not in testing mode (RFC 6376
	// 3.6.1: t=y counts as unsigned).
	var seen []string
	for i, r := range rep.DKIM {
		if r.Status == authres.ResultPass && !r.Testing && aligned(r.Domain, domainOf(rep.From), alignMode(rep)) && len(rep.unsigned[i]) == 0 {
			sm := rep.SMIME
			return Verdict{
				Genuine:      true,
				Summary:      fmt.Sprintf("GENUINE: signed by %s for %s, a government domain", orDefault(sm.Organization(), "an unnamed signer"), sm.Address),
				Organization: sm.Organization(),
				Address:      sm.Address,
			}
		}
		note := string(r.Status)
		if u := rep.unsigned[i]; r.Status == authres.ResultPass && len(u) > 0 {
			note += ", does not sign " + strings.Join(u, " ")
		}
		seen = append(seen, fmt.Sprintf("d=%s %s", r.Domain, note))
	}
	if len(rep.DKIM) == 0 {
		return fail("the message has no DKIM signature")
	}
	return fail(fmt.Sprintf("no passing DKIM signature aligned with %s (%s)", domainOf(rep.From), strings.Join(seen, ", ")))
}

func alignMode(rep *Report) string {
	if c, ok := rep.Get(CheckDMARC); ok && c.Evidence["adkim"] == "s" {
		return "s"
	}
	return "r"
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// Lines is the text output: the summary, then one line per check.
func (r *Report) Lines() []string {
	lines := []string{r.Verdict.Summary}
	for _, c := range r.Checks {
		l := fmt.Sprintf("  %-17s %-9s", c.Name, c.Status)
		var detail []string
		switch c.Name {
		case CheckFrom:
			detail = append(detail, c.Evidence["address"])
		case CheckDKIM:
			if c.Evidence["d"] != "" {
				detail = append(detail, fmt.Sprintf("d=%s s=%s a=%s aligned=%s", c.Evidence["d"], c.Evidence["s"], c.Evidence["a"], c.Evidence["aligned"]))
			}
		case CheckSMIME:
			if c.Status == authres.ResultPass {
				detail = append(detail, fmt.Sprintf("%s for %s, %s", c.Evidence["organization"], r.SMIME.Address, c.Evidence["algorithm"]))
			}
		}
		if c.Reason != "" {
			detail = append(detail, c.Reason)
		}
		lines = append(lines, strings.TrimRight(l+" "+strings.Join(nonEmpty(detail), ": "), " "))
	}
	return lines
}

func nonEmpty(s []string) []string {
	var out []string
	for _, x := range s {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}
