package dmarc

import (
	"context"
	"errors"
	"strings"

	"github.com/kakuin/kakuin/verify/lookup"
)

// Result is the DMARC policy found for a domain.
type Result struct {
	// Domain is the name asked about.
	Domain string
	// PolicyDomain is the domain whose _dmarc record was found: Domain
	// itself or, by the tree walk, a parent. "" when none was found.
	PolicyDomain string
	// Records are the TXT strings starting with v=DMARC1 at
	// _dmarc.PolicyDomain (or at _dmarc.Domain when none was found).
	Records []string
	// Record is the parsed record when there is exactly one.
	Record *Record
	// Err is ErrMultiple or a wrapped ErrSyntax when the record found
	// cannot be used (no policy applies); nil otherwise.
	Err error
	// Authentic is the AD bit of the answer that gave the record.
	Authentic bool
	// Queried lists the names asked, in order.
	Queried []string
}

// Found reports whether a usable record was found.
func (r *Result) Found() bool { return r.Record != nil }

// Inherited reports whether the record was found at a parent domain.
func (r *Result) Inherited() bool { return r.PolicyDomain != "" && r.PolicyDomain != r.Domain }

// Lookup finds the DMARC record that governs domain with the DNS tree walk
// of RFC 9989 4.10: _dmarc.<domain>, then _dmarc of each parent (after
// shortening a name of more than 8 labels to its last 7), never the root,
// stopping at the first name with a DMARC record, valid or not. For the
// domains kakuin cares about this finds what RFC 7489 6.6.3 finds at the
// organisational domain. An error (wrapping lookup.ErrTemporary or
// lookup.ErrPermanent) means the walk could not be completed; a missing
// record is a Result without Record.
func Lookup(ctx context.Context, r lookup.Resolver, domain string) (*Result, error) {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	res := &Result{Domain: d}
	for target := d; target != ""; target = parent(target) {
		name := "_dmarc." + target
		res.Queried = append(res.Queried, name)
		ans, err := r.LookupTXT(ctx, name)
		if err != nil {
			return res, err
		}
		var recs []string
		for _, s := range ans.Records {
			if _, err := Parse(s); !errors.Is(err, ErrNotDMARC) {
				recs = append(recs, s)
			}
		}
		if len(recs) == 0 {
			continue
		}
		res.PolicyDomain, res.Records, res.Authentic = target, recs, ans.Authentic
		if len(recs) > 1 {
			res.Err = ErrMultiple
			return res, nil
		}
		rec, err := Parse(recs[0])
		if err != nil {
			res.Err = err
			return res, nil
		}
		res.Record = rec
		return res, nil
	}
	return res, nil
}

// parent is the next name of the tree walk (RFC 9989 4.10.1): a name of
// more than 8 labels jumps to its last 7; otherwise drop the leftmost
// label; "" once only a top-level domain would remain.
func parent(d string) string {
	labels := strings.Split(d, ".")
	if len(labels) > 8 {
		return strings.Join(labels[len(labels)-7:], ".")
	}
	if len(labels) <= 2 {
		return "" // do not query _dmarc.<tld>
	}
	return strings.Join(labels[1:], ".")
}

// ExternalAuthorized checks that reports for domain may go to uri's
// domain (RFC 7489 7.1, RFC 9989 3.x): when the URI's organisational
// domain differs from domain's, a TXT record starting with v=DMARC1 must
// exist at <domain>._report._dmarc.<uri-domain>. It returns true without
// asking when no authorisation is needed.
func ExternalAuthorized(ctx context.Context, r lookup.Resolver, domain, uri string) (bool, error) {
	dest := URIDomain(uri)
	if dest == "" {
		return false, nil
	}
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	if OrganizationalDomain(dest) == OrganizationalDomain(d) {
		return true, nil
	}
	ans, err := r.LookupTXT(ctx, d+"._report._dmarc."+dest)
	if err != nil {
		return false, err
	}
	for _, s := range ans.Records {
		if strings.HasPrefix(strings.TrimSpace(s), "v=DMARC1") {
			return true, nil
		}
	}
	return false, nil
}
