// Package dmarc parses DMARC policy records and finds the one that governs
// a domain: RFC 7489 and its successor DMARCbis, RFC 9989, which adds the
// np, psd and t tags, removes pct, rf and ri, and replaces the public
// suffix list with a DNS tree walk.
//
// Evaluating a message (alignment of DKIM and SPF results) is the
// verifier's business; it needs this package for the record and
// OrganizationalDomain for relaxed alignment.
package dmarc

import (
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// Errors.
var (
	// ErrNotDMARC: the text does not start with "v=DMARC1" (RFC 7489 6.3:
	// such records are discarded, not errors).
	ErrNotDMARC = errors.New("dmarc: not a dmarc record")
	// ErrSyntax: a DMARC record with an invalid tag value.
	ErrSyntax = errors.New("dmarc: syntax error")
	// ErrMultiple: more than one DMARC record at the name (RFC 7489
	// 6.6.3, RFC 9989 4.10): no policy applies.
	ErrMultiple = errors.New("dmarc: more than one record")
)

// Policy is a requested handling policy (RFC 7489 6.3 p=).
type Policy string

// Policies.
const (
	PolicyNone       Policy = "none"
	PolicyQuarantine Policy = "quarantine"
	PolicyReject     Policy = "reject"
)

// Record is a parsed DMARC record. Tags that are absent keep their zero
// value; the accessor methods apply the defaults.
type Record struct {
	// Policy is p=; "" when absent (RFC 9989 treats that as none when
	// rua is valid).
	Policy Policy
	// SubdomainPolicy is sp=; "" when absent (defaults to Policy).
	SubdomainPolicy Policy
	// NonexistentPolicy is np= (RFC 9989); "" when absent (defaults to
	// the subdomain policy).
	NonexistentPolicy Policy
	// ADKIM and ASPF are "r" or "s"; "" when absent (relaxed).
	ADKIM, ASPF string
	// Percent is pct= (RFC 7489 only, removed by RFC 9989); -1 when absent.
	Percent int
	// FailureOptions is fo=; "" when absent.
	FailureOptions string
	// ReportFormat and ReportInterval are rf= and ri= (RFC 7489 only);
	// "" and -1 when absent.
	ReportFormat   string
	ReportInterval int
	// RUA and RUF are the report URIs (RFC 7489 6.2 DMARC URIs, with an
	// optional !size suffix kept in the string).
	RUA, RUF []string
	// PSD is psd= (RFC 9989): "y", "n", "u" or "" when absent.
	PSD string
	// Testing is t= (RFC 9989): "y", "n" or "" when absent.
	Testing string
	// Unknown lists tags this package does not know; they are ignored
	// (RFC 7489 6.3).
	Unknown []string
	// Removed lists the RFC 7489 tags present that RFC 9989 removed
	// (pct, rf, ri).
	Removed []string
}

// EffectivePolicy is Policy, none when absent.
func (r *Record) EffectivePolicy() Policy {
	if r.Policy == "" {
		return PolicyNone
	}
	return r.Policy
}

// EffectiveSubdomainPolicy is sp=, else p=.
func (r *Record) EffectiveSubdomainPolicy() Policy {
	if r.SubdomainPolicy != "" {
		return r.SubdomainPolicy
	}
	return r.EffectivePolicy()
}

// EffectiveNonexistentPolicy is np=, else sp=, else p= (RFC 9989 4.7).
func (r *Record) EffectiveNonexistentPolicy() Policy {
	if r.NonexistentPolicy != "" {
		return r.NonexistentPolicy
	}
	return r.EffectiveSubdomainPolicy()
}

// InTesting reports whether the record asks for testing mode: t=y (RFC
// 9989) or, in RFC 7489 terms, a pct below 100.
func (r *Record) InTesting() bool {
	return r.Testing == "y" || (r.Percent >= 0 && r.Percent < 100)
}

// Parse parses a DMARC record. Text not starting with v=DMARC1 gives
// ErrNotDMARC; an invalid tag value gives ErrSyntax.
func Parse(s string) (*Record, error) {
	r := &Record{Percent: -1, ReportInterval: -1}
	parts := strings.Split(s, ";")
	seen := map[string]bool{}
	for i, part := range parts {
		part = strings.Trim(part, " \t\r\n")
		if part == "" {
			if i == 0 {
				return nil, ErrNotDMARC
			}
			continue // an empty tag after a trailing ";"
		}
		k, v, ok := strings.Cut(part, "=")
		k = strings.ToLower(strings.Trim(k, " \t"))
		v = strings.Trim(v, " \t")
		if i == 0 {
			// RFC 7489 6.4: v=DMARC1 first, exactly.
			if !ok || k != "v" || v != "DMARC1" {
				return nil, ErrNotDMARC
			}
			continue
		}
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: %q is not tag=value", ErrSyntax, part)
		}
		if seen[k] {
			return nil, fmt.Errorf("%w: tag %s more than once", ErrSyntax, k)
		}
		seen[k] = true
		var err error
		switch k {
		case "p":
			r.Policy, err = parsePolicy(k, v)
		case "sp":
			r.SubdomainPolicy, err = parsePolicy(k, v)
		case "np": // RFC 9989
			r.NonexistentPolicy, err = parsePolicy(k, v)
		case "adkim", "aspf":
			lv := strings.ToLower(v)
			if lv != "r" && lv != "s" {
				err = fmt.Errorf("%w: %s=%q", ErrSyntax, k, v)
			} else if k == "adkim" {
				r.ADKIM = lv
			} else {
				r.ASPF = lv
			}
		case "pct": // RFC 7489 6.3, removed by RFC 9989
			r.Removed = append(r.Removed, k)
			n, e := strconv.Atoi(v)
			if e != nil || n < 0 || n > 100 {
				err = fmt.Errorf("%w: pct=%q", ErrSyntax, v)
			}
			r.Percent = n
		case "ri":
			r.Removed = append(r.Removed, k)
			n, e := strconv.ParseUint(v, 10, 32)
			if e != nil {
				err = fmt.Errorf("%w: ri=%q", ErrSyntax, v)
			}
			r.ReportInterval = int(n)
		case "rf":
			r.Removed = append(r.Removed, k)
			r.ReportFormat = v
		case "fo":
			for _, o := range strings.Split(v, ":") {
				if o = strings.Trim(o, " \t"); o != "0" && o != "1" && o != "d" && o != "s" {
					err = fmt.Errorf("%w: fo=%q", ErrSyntax, v)
				}
			}
			r.FailureOptions = v
		case "rua", "ruf":
			var uris []string
			uris, err = parseURIs(k, v)
			if k == "rua" {
				r.RUA = uris
			} else {
				r.RUF = uris
			}
		case "psd": // RFC 9989
			lv := strings.ToLower(v)
			if lv != "y" && lv != "n" && lv != "u" {
				err = fmt.Errorf("%w: psd=%q", ErrSyntax, v)
			}
			r.PSD = lv
		case "t": // RFC 9989
			lv := strings.ToLower(v)
			if lv != "y" && lv != "n" {
				err = fmt.Errorf("%w: t=%q", ErrSyntax, v)
			}
			r.Testing = lv
		default:
			r.Unknown = append(r.Unknown, k)
		}
		if err != nil {
			return nil, err
		}
	}
	return r, nil
}

func parsePolicy(tag, v string) (Policy, error) {
	switch p := Policy(strings.ToLower(v)); p {
	case PolicyNone, PolicyQuarantine, PolicyReject:
		return p, nil
	}
	return "", fmt.Errorf("%w: %s=%q", ErrSyntax, tag, v)
}

// parseURIs parses a comma-separated list of DMARC URIs (RFC 7489 6.2):
// URI [ "!" size [unit] ].
func parseURIs(tag, v string) ([]string, error) {
	var out []string
	for _, u := range strings.Split(v, ",") {
		u = strings.Trim(u, " \t")
		if u == "" {
			return nil, fmt.Errorf("%w: empty uri in %s", ErrSyntax, tag)
		}
		base := u
		if i := strings.LastIndexByte(u, '!'); i >= 0 {
			size := strings.TrimRight(u[i+1:], "kmgtKMGT")
			if _, err := strconv.ParseUint(size, 10, 64); err != nil {
				return nil, fmt.Errorf("%w: bad size in %s uri %q", ErrSyntax, tag, u)
			}
			base = u[:i]
		}
		pu, err := url.Parse(base)
		if err != nil || pu.Scheme == "" || strings.ContainsAny(base, " \t") {
			return nil, fmt.Errorf("%w: bad %s uri %q", ErrSyntax, tag, u)
		}
		if strings.EqualFold(pu.Scheme, "mailto") {
			if _, err := mail.ParseAddress(pu.Opaque); err != nil {
				return nil, fmt.Errorf("%w: bad %s address %q", ErrSyntax, tag, u)
			}
		}
		out = append(out, u)
	}
	return out, nil
}

// String formats the record canonically: v first, then the tags present
// in a fixed order.
func (r *Record) String() string {
	parts := []string{"v=DMARC1"}
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("p", string(r.Policy))
	add("sp", string(r.SubdomainPolicy))
	add("np", string(r.NonexistentPolicy))
	add("adkim", r.ADKIM)
	add("aspf", r.ASPF)
	if r.Percent >= 0 {
		add("pct", strconv.Itoa(r.Percent))
	}
	add("fo", r.FailureOptions)
	add("rf", r.ReportFormat)
	if r.ReportInterval >= 0 {
		add("ri", strconv.Itoa(r.ReportInterval))
	}
	add("rua", strings.Join(r.RUA, ","))
	add("ruf", strings.Join(r.RUF, ","))
	add("psd", r.PSD)
	add("t", r.Testing)
	return strings.Join(parts, "; ")
}

// OrganizationalDomain returns the organisational domain of domain (RFC
// 7489 3.2): the public suffix plus one label, by the public suffix list
// of golang.org/x/net/publicsuffix. go.jp is a public suffix, so the
// organisational domain of x.mhlw.go.jp is mhlw.go.jp. A name that is
// itself a public suffix is returned unchanged.
func OrganizationalDomain(domain string) string {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return org
}

// URIDomain returns the domain a report URI delivers to: the domain of a
// mailto: address or the host of an https: URI; "" if there is none.
func URIDomain(uri string) string {
	if i := strings.LastIndexByte(uri, '!'); i >= 0 {
		uri = uri[:i]
	}
	u, err := url.Parse(uri)
	if err != nil {
		return ""
	}
	if strings.EqualFold(u.Scheme, "mailto") {
		addr := u.Opaque
		if i := strings.IndexByte(addr, '?'); i >= 0 {
			addr = addr[:i]
		}
		if i := strings.LastIndexByte(addr, '@'); i >= 0 {
			return strings.ToLower(addr[i+1:])
		}
		return ""
	}
	return strings.ToLower(u.Hostname())
}
