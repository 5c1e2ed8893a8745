// Package govdomain decides whether a mail domain is under one of the
// allowed sender suffixes (by default go.jp, which only Japanese government
// bodies can hold).
//
// Matching is label-wise on the IDNA A-label form, case folded: with the
// suffix go.jp, "mhlw.go.jp" and "MHLW.Go.JP." are under it, "go.jp" itself
// is not (no agency sends as the bare suffix), and "evilgo.jp",
// "go.jp.example.com" and look-alike U-labels are outside.
package govdomain

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// ErrDomain: a domain name that is not a valid host name.
var ErrDomain = errors.New("govdomain: invalid domain")

// DefaultSuffixes is the safe default: go.jp only.
var DefaultSuffixes = []string{"go.jp"}

// profile converts U-labels to A-labels and rejects names that are not
// valid host names (RFC 5890, RFC 5891 lookup rules).
var profile = idna.New(idna.MapForLookup(), idna.Transitional(false), idna.StrictDomainName(true), idna.VerifyDNSLength(true))

// Canonical returns the lower-case A-label form of domain without a
// trailing dot, or an error wrapping ErrDomain.
func Canonical(domain string) (string, error) {
	d := strings.TrimSuffix(domain, ".")
	if d == "" {
		return "", fmt.Errorf("%w: empty", ErrDomain)
	}
	a, err := profile.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %w", ErrDomain, domain, err)
	}
	return strings.ToLower(a), nil
}

// Under reports whether domain is a proper subdomain of suffix, label-wise.
// Both are canonicalised first; an invalid name is never under anything.
func Under(domain, suffix string) bool {
	d, err := Canonical(domain)
	if err != nil {
		return false
	}
	s, err := Canonical(suffix)
	if err != nil {
		return false
	}
	return strings.HasSuffix(d, "."+s)
}

// Within reports whether domain equals parent or is under it, label-wise.
func Within(domain, parent string) bool {
	d, err1 := Canonical(domain)
	p, err2 := Canonical(parent)
	return err1 == nil && err2 == nil && (d == p || strings.HasSuffix(d, "."+p))
}

// Policy is a list of allowed suffixes. The zero value allows nothing.
type Policy struct {
	Suffixes []string
}

// Allows reports whether domain is under one of the policy's suffixes.
func (p Policy) Allows(domain string) bool {
	for _, s := range p.Suffixes {
		if Under(domain, s) {
			return true
		}
	}
	return false
}

// AllowsAddress reports whether the domain of addr (local@domain) is
// allowed. The domain is what follows the last '@'.
func (p Policy) AllowsAddress(addr string) bool {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return false
	}
	return p.Allows(addr[i+1:])
}
