package audit

import (
	"fmt"
	"sort"
)

// CheckIDs lists every check in report order.
var CheckIDs = []string{
	"domain.suffix", "domain.soa", "domain.ns",
	"dnssec.signed", "dnssec.validated",
	"mx.present", "mx.resolves",
	"spf.record", "spf.lookups", "spf.all", "spf.ptr",
	"dmarc.record", "dmarc.policy", "dmarc.rua", "dmarc.rua_authorized", "dmarc.subdomains", "dmarc.rua_cisa",
	"dkim.present", "dkim.keys",
	"starttls.offered", "starttls.tls12", "starttls.certificate", "starttls.weak",
	"mtasts.record", "mtasts.policy", "mtasts.mx",
	"tlsrpt.record",
	"dane.tlsa", "dane.match",
	"caa.issuemail",
}

// Profile says which checks make a domain's verdict.
type Profile struct {
	Name        string
	Description string
	// Suffixes are the allowed domain suffixes of domain.suffix.
	Suffixes []string
	// Checks are the counted check IDs.
	Checks []string
}

func (p Profile) counts(id string) bool {
	for _, c := range p.Checks {
		if c == id {
			return true
		}
	}
	return false
}

// CISAReportAddress is the DMARC aggregate report address BOD 18-01 asks
// every federal domain to include in rua.
const CISAReportAddress = "mailto:reports@dmarc.cyber.dhs.gov"

// Profiles is the one table of profile rules, kept together so that it
// can be adjusted as the texts are confirmed.
var Profiles = map[string]Profile{
	// Japan, the government unified standards (統一基準, 2023 edition):
	// sender domain authentication (SPF, DKIM, DMARC) is a basic measure;
	// government mail uses go.jp (national) and lg.jp (local).
	"nisc": {
		Name:        "nisc",
		Description: "Japanese government unified standards: go.jp or lg.jp; SPF, DKIM and DMARC in place",
		Suffixes:    []string{"go.jp", "lg.jp"},
		Checks: []string{"domain.suffix", "domain.soa", "mx.present",
			"spf.record", "spf.lookups", "spf.all",
			"dkim.present", "dkim.keys",
			"dmarc.record"},
	},
	// US CISA Binding Operational Directive 18-01: valid SPF, DMARC
	// p=reject with CISA in rua, STARTTLS on every MX, no SSLv2/SSLv3,
	// no RC4 or 3DES.
	"bod1801": {
		Name:        "bod1801",
		Description: "US CISA BOD 18-01: SPF, DMARC p=reject with rua to CISA, STARTTLS, no SSLv2/SSLv3/RC4/3DES",
		Suffixes:    []string{"go.jp"},
		Checks: []string{"mx.present",
			"spf.record", "spf.lookups", "spf.all",
			"dmarc.record", "dmarc.policy", "dmarc.rua", "dmarc.rua_cisa",
			"starttls.offered", "starttls.weak"},
	},
	// strict: everything kakuin checks, except the US-specific CISA
	// address and CAA (reported only).
	"strict": {
		Name:        "strict",
		Description: "everything: domain, DNSSEC, MX, SPF, DMARC p=reject, DKIM, STARTTLS, MTA-STS enforce, TLS-RPT, DANE",
		Suffixes:    []string{"go.jp"},
		Checks: func() []string {
			var out []string
			for _, id := range CheckIDs {
				if id != "dmarc.rua_cisa" && id != "caa.issuemail" {
					out = append(out, id)
				}
			}
			return out
		}(),
	},
}

// ProfileNames lists the profiles, sorted.
func ProfileNames() []string {
	var out []string
	for n := range Profiles {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// LookupProfile returns the named profile.
func LookupProfile(name string) (Profile, error) {
	p, ok := Profiles[name]
	if !ok {
		return Profile{}, fmt.Errorf("%w: unknown profile %q (have %v)", ErrOptions, name, ProfileNames())
	}
	return p, nil
}
