// Package spf parses Sender Policy Framework records (RFC 7208) and walks
// a domain's SPF tree the way an evaluator would, without a sender
// address, to audit it: how many DNS-querying terms it takes (RFC 7208
// 4.6.4), how many of them come back empty (void lookups), include loops,
// ptr use (RFC 7208 5.5) and the final "all".
//
// Evaluating a message's SPF against a client IP is not done here: the
// verifier uses blitiri.com.ar/go/spf with lookup.NetResolver. The package
// name clashes with that library's; import one of them under another name.
package spf

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Errors.
var (
	// ErrSyntax: the record is not valid SPF (RFC 7208 4.6.1, 12).
	ErrSyntax = errors.New("spf: syntax error")
	// ErrNotSPF: the text does not start with "v=spf1" (RFC 7208 4.5).
	ErrNotSPF = errors.New("spf: not an spf record")
)

// Term is one directive (a mechanism with its qualifier) or modifier.
type Term struct {
	// Qualifier is '+', '-', '~' or '?' for a mechanism (RFC 7208 4.6.2;
	// an absent qualifier is stored as '+' with Explicit false), 0 for a
	// modifier.
	Qualifier byte
	// Explicit is true when the qualifier was written out.
	Explicit bool
	// Name is the mechanism (all, include, a, mx, ptr, ip4, ip6, exists)
	// or the modifier name (redirect, exp, or any other), lower case.
	Name string
	// Modifier is true for name=value terms (RFC 7208 6).
	Modifier bool
	// Value is the domain-spec, the IP network without the prefix length,
	// or the modifier's value; "" when absent.
	Value string
	// Prefix4 and Prefix6 are the CIDR lengths of a, mx, ip4 and ip6
	// (RFC 7208 5.6); -1 when absent.
	Prefix4, Prefix6 int
}

// Record is a parsed SPF record.
type Record struct {
	Terms []Term
}

// mechanisms of RFC 7208 5.
var mechanisms = map[string]bool{"all": true, "include": true, "a": true, "mx": true, "ptr": true, "ip4": true, "ip6": true, "exists": true}

// Parse parses an SPF record ("v=spf1 ..."). The version tag is matched
// case-insensitively (RFC 7208 4.5); terms are separated by spaces.
func Parse(s string) (*Record, error) {
	fields := strings.Split(s, " ")
	if !strings.EqualFold(fields[0], "v=spf1") {
		return nil, ErrNotSPF
	}
	r := &Record{}
	seen := map[string]bool{}
	for _, f := range fields[1:] {
		if f == "" {
			continue // RFC 7208 12: 1*SP between terms, trailing *SP
		}
		t, err := parseTerm(f)
		if err != nil {
			return nil, err
		}
		if t.Modifier && (t.Name == "redirect" || t.Name == "exp") {
			// RFC 7208 6: redirect and exp appear at most once.
			if seen[t.Name] {
				return nil, fmt.Errorf("%w: %s= more than once", ErrSyntax, t.Name)
			}
			seen[t.Name] = true
		}
		r.Terms = append(r.Terms, t)
	}
	return r, nil
}

func parseTerm(f string) (Term, error) {
	t := Term{Prefix4: -1, Prefix6: -1}
	// A modifier is name=value with a name that is not a mechanism
	// (RFC 7208 4.6.1, 12: name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )).
	if i := strings.IndexByte(f, '='); i > 0 && !strings.ContainsAny(f[:i], ":/") {
		name := strings.ToLower(f[:i])
		if !validName(name) {
			return t, fmt.Errorf("%w: bad modifier name %q", ErrSyntax, f[:i])
		}
		t.Modifier, t.Name, t.Value = true, name, f[i+1:]
		if err := checkMacro(t.Value); err != nil {
			return t, err
		}
		if (name == "redirect" || name == "exp") && t.Value == "" {
			return t, fmt.Errorf("%w: empty %s=", ErrSyntax, name)
		}
		return t, nil
	}
	t.Qualifier = '+'
	switch f[0] {
	case '+', '-', '~', '?':
		t.Qualifier, t.Explicit, f = f[0], true, f[1:]
	}
	name, rest := f, ""
	if i := strings.IndexAny(f, ":/"); i >= 0 {
		name, rest = f[:i], f[i:]
	}
	t.Name = strings.ToLower(name)
	if !mechanisms[t.Name] {
		return t, fmt.Errorf("%w: unknown mechanism %q", ErrSyntax, name)
	}
	switch t.Name {
	case "all":
		if rest != "" {
			return t, fmt.Errorf("%w: all takes no argument", ErrSyntax)
		}
	case "include", "exists":
		if !strings.HasPrefix(rest, ":") || len(rest) == 1 {
			return t, fmt.Errorf("%w: %s needs a domain", ErrSyntax, t.Name)
		}
		t.Value = rest[1:]
		if err := checkDomainSpec(t.Value); err != nil {
			return t, err
		}
	case "ptr":
		if rest != "" {
			if rest[0] != ':' || len(rest) == 1 {
				return t, fmt.Errorf("%w: bad ptr argument %q", ErrSyntax, rest)
			}
			t.Value = rest[1:]
			if err := checkDomainSpec(t.Value); err != nil {
				return t, err
			}
		}
	case "a", "mx":
		var cidr string
		if strings.HasPrefix(rest, ":") {
			// The domain-spec ends where a dual-cidr-length starts.
			d := rest[1:]
			if i := strings.IndexByte(d, '/'); i >= 0 {
				d, cidr = d[:i], d[i:]
			}
			if d == "" {
				return t, fmt.Errorf("%w: empty domain in %s", ErrSyntax, t.Name)
			}
			t.Value = d
			if err := checkDomainSpec(d); err != nil {
				return t, err
			}
		} else {
			cidr = rest
		}
		if err := parseDualCIDR(&t, cidr); err != nil {
			return t, err
		}
	case "ip4", "ip6":
		if !strings.HasPrefix(rest, ":") {
			return t, fmt.Errorf("%w: %s needs an address", ErrSyntax, t.Name)
		}
		addr, plen, hasLen := strings.Cut(rest[1:], "/")
		a, err := netip.ParseAddr(addr)
		if err != nil || (t.Name == "ip4") != a.Is4() || a.Zone() != "" {
			return t, fmt.Errorf("%w: bad %s address %q", ErrSyntax, t.Name, addr)
		}
		t.Value = addr
		if hasLen {
			n, err := cidrLen(plen, map[bool]int{true: 32, false: 128}[t.Name == "ip4"])
			if err != nil {
				return t, err
			}
			if t.Name == "ip4" {
				t.Prefix4 = n
			} else {
				t.Prefix6 = n
			}
		}
	}
	return t, nil
}

// parseDualCIDR parses [ "/" ip4-cidr-length ] [ "//" ip6-cidr-length ].
func parseDualCIDR(t *Term, s string) error {
	if s == "" {
		return nil
	}
	if strings.HasPrefix(s, "//") {
		n, err := cidrLen(s[2:], 128)
		t.Prefix6 = n
		return err
	}
	if !strings.HasPrefix(s, "/") {
		return fmt.Errorf("%w: bad cidr %q", ErrSyntax, s)
	}
	v4, v6, both := strings.Cut(s[1:], "//")
	n, err := cidrLen(v4, 32)
	if err != nil {
		return err
	}
	t.Prefix4 = n
	if both {
		n, err := cidrLen(v6, 128)
		if err != nil {
			return err
		}
		t.Prefix6 = n
	}
	return nil
}

func cidrLen(s string, max int) (int, error) {
	// RFC 7208 5.6: no leading zeros.
	if s == "" || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("%w: bad prefix length %q", ErrSyntax, s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > max {
		return 0, fmt.Errorf("%w: bad prefix length %q", ErrSyntax, s)
	}
	return n, nil
}

func validName(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlpha(c) && !(c >= '0' && c <= '9') && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// checkDomainSpec checks a domain-spec (RFC 7208 7.1): a macro-string
// whose expansion would be a domain; without macros, the last label must
// not be all digits (toplabel).
func checkDomainSpec(s string) error {
	if err := checkMacro(s); err != nil {
		return err
	}
	if !strings.Contains(s, "%") {
		d := strings.TrimSuffix(s, ".")
		last := d[strings.LastIndexByte(d, '.')+1:]
		if last == "" || strings.Trim(last, "0123456789") == "" {
			return fmt.Errorf("%w: bad domain %q", ErrSyntax, s)
		}
	}
	return nil
}

// checkMacro checks the macro syntax of RFC 7208 7.1.
func checkMacro(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e {
			return fmt.Errorf("%w: bad character in %q", ErrSyntax, s)
		}
		if c != '%' {
			continue
		}
		if i+1 >= len(s) {
			return fmt.Errorf("%w: dangling %% in %q", ErrSyntax, s)
		}
		switch s[i+1] {
		case '%', '_', '-':
			i++
			continue
		case '{':
		default:
			return fmt.Errorf("%w: bad macro in %q", ErrSyntax, s)
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return fmt.Errorf("%w: unclosed macro in %q", ErrSyntax, s)
		}
		body := s[i+2 : i+end]
		if body == "" || !strings.ContainsRune("slodiphcrtvSLODIPHCRTV", rune(body[0])) {
			return fmt.Errorf("%w: bad macro letter in %q", ErrSyntax, s)
		}
		rest := body[1:]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if j < len(rest) && (rest[j] == 'r' || rest[j] == 'R') {
			j++
		}
		for ; j < len(rest); j++ {
			if !strings.ContainsRune(".-+,/_=", rune(rest[j])) {
				return fmt.Errorf("%w: bad macro transformer in %q", ErrSyntax, s)
			}
		}
		i += end
	}
	return nil
}

// String formats the record in canonical form: lower-case names, explicit
// qualifiers only where written.
func (r *Record) String() string {
	var b strings.Builder
	b.WriteString("v=spf1")
	for _, t := range r.Terms {
		b.WriteByte(' ')
		b.WriteString(t.String())
	}
	return b.String()
}

// String formats one term.
func (t Term) String() string {
	if t.Modifier {
		return t.Name + "=" + t.Value
	}
	var b strings.Builder
	if t.Explicit {
		b.WriteByte(t.Qualifier)
	}
	b.WriteString(t.Name)
	if t.Value != "" {
		b.WriteByte(':')
		b.WriteString(t.Value)
	}
	if t.Name == "ip6" && t.Prefix6 >= 0 {
		fmt.Fprintf(&b, "/%d", t.Prefix6)
		return b.String()
	}
	if t.Prefix4 >= 0 {
		fmt.Fprintf(&b, "/%d", t.Prefix4)
	}
	if t.Prefix6 >= 0 {
		fmt.Fprintf(&b, "//%d", t.Prefix6)
	}
	return b.String()
}

// HasMacro reports whether a domain-spec holds a macro (RFC 7208 7),
// which cannot be expanded without a sender.
func HasMacro(s string) bool { return strings.Contains(s, "%{") }

// All returns the record's "all" term and true, if it has one.
func (r *Record) All() (Term, bool) {
	for _, t := range r.Terms {
		if !t.Modifier && t.Name == "all" {
			return t, true
		}
	}
	return Term{}, false
}

// Modifier returns the value of the named modifier and true, if present.
func (r *Record) Modifier(name string) (string, bool) {
	for _, t := range r.Terms {
		if t.Modifier && t.Name == name {
			return t.Value, true
		}
	}
	return "", false
}
