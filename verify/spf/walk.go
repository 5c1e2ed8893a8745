package spf

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/kakuin/kakuin/verify/lookup"
)

// Limits of RFC 7208 4.6.4.
const (
	// MaxLookups is the most DNS-querying terms (include, a, mx, ptr,
	// exists, redirect) one evaluation may use.
	MaxLookups = 10
	// MaxVoidLookups is the most of those that may return no answer.
	MaxVoidLookups = 2
	// MaxMXNames is the most MX names one mx term may look up.
	MaxMXNames = 10
	// MaxAnswerSize is the size above which a record may not fit a UDP
	// answer (RFC 7208 3.4).
	MaxAnswerSize = 450
)

// Problems found in the tree. They are reported in Tree.Problems,
// wrapped with the domain concerned.
var (
	ErrTooManyLookups = errors.New("spf: more than 10 dns lookups")
	ErrTooManyVoid    = errors.New("spf: more than 2 void lookups")
	ErrTooManyMX      = errors.New("spf: mx with more than 10 names")
	ErrLoop           = errors.New("spf: include or redirect loop")
	ErrMultiple       = errors.New("spf: more than one spf record")
	ErrNoRecord       = errors.New("spf: no spf record")
	ErrPtr            = errors.New("spf: ptr mechanism used")
	ErrTooLarge       = errors.New("spf: record longer than 450 bytes")
)

// Tree is the outcome of walking a domain's SPF record and everything it
// includes or redirects to.
type Tree struct {
	Domain string
	// Records are the TXT strings at Domain that start with v=spf1
	// (RFC 7208 4.5: exactly one is allowed).
	Records []string
	// Record is the parsed record when there is exactly one valid one.
	Record *Record
	// Lookups counts the DNS-querying terms of the whole tree
	// (RFC 7208 4.6.4), includes and redirects followed recursively.
	Lookups int
	// VoidLookups counts the terms whose query returned no records.
	VoidLookups int
	// Ptr is true when any record in the tree uses ptr (RFC 7208 5.5).
	Ptr bool
	// All is the qualifier of the "all" that ends the top-level policy,
	// following redirect=: '-', '~', '?', '+', or 0 when there is none
	// (the result is then neutral, RFC 7208 4.7).
	All byte
	// Visited lists the domains whose records were fetched, in order.
	Visited []string
	// Problems are the permanent errors and bad practices found, each
	// wrapping one of the package's sentinels (ErrSyntax, ErrLoop, ...).
	Problems []error
}

// Walk fetches domain's SPF record and walks its tree. It returns an error
// (wrapping lookup.ErrTemporary or lookup.ErrPermanent) only when a DNS
// question could not be answered: the tree cannot then be judged. A
// missing record is not an error: Tree.Records is empty and Problems holds
// ErrNoRecord.
func Walk(ctx context.Context, r lookup.Resolver, domain string) (*Tree, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	t := &Tree{Domain: domain}
	w := &walker{ctx: ctx, r: r, t: t}
	recs, err := w.fetch(domain)
	if err != nil {
		return nil, err
	}
	t.Records = recs
	switch len(recs) {
	case 0:
		t.Problems = append(t.Problems, fmt.Errorf("%w at %s", ErrNoRecord, domain))
		return t, nil
	case 1:
	default:
		// RFC 7208 4.5: more than one record is a permerror.
		t.Problems = append(t.Problems, fmt.Errorf("%w at %s: %d records", ErrMultiple, domain, len(recs)))
		return t, nil
	}
	rec, err := Parse(recs[0])
	if err != nil {
		t.Problems = append(t.Problems, fmt.Errorf("%s: %w", domain, err))
		return t, nil
	}
	t.Record = rec
	if len(recs[0]) > MaxAnswerSize {
		t.Problems = append(t.Problems, fmt.Errorf("%w: %s has %d", ErrTooLarge, domain, len(recs[0])))
	}
	all, err := w.walk(domain, rec, []string{domain}, true)
	if err != nil {
		return nil, err
	}
	t.All = all
	if t.Lookups > MaxLookups {
		t.Problems = append(t.Problems, fmt.Errorf("%w: %d", ErrTooManyLookups, t.Lookups))
	}
	if t.VoidLookups > MaxVoidLookups {
		t.Problems = append(t.Problems, fmt.Errorf("%w: %d", ErrTooManyVoid, t.VoidLookups))
	}
	if t.Ptr {
		t.Problems = append(t.Problems, ErrPtr)
	}
	return t, nil
}

// maxFetches bounds the records fetched, whatever the tree looks like.
const maxFetches = 40

type walker struct {
	ctx     context.Context
	r       lookup.Resolver
	t       *Tree
	fetches int
}

func (w *walker) fetch(domain string) ([]string, error) {
	w.fetches++
	w.t.Visited = append(w.t.Visited, domain)
	res, err := w.r.LookupTXT(w.ctx, domain)
	if err != nil && !(errors.Is(err, lookup.ErrPermanent) && w.fetches > 1) {
		return nil, err
	}
	var out []string
	for _, s := range res.Records {
		// RFC 7208 4.5: records that begin with "v=spf1" followed by a
		// space or the end.
		if len(s) >= 6 && strings.EqualFold(s[:6], "v=spf1") && (len(s) == 6 || s[6] == ' ') {
			out = append(out, s)
		}
	}
	return out, nil
}

// walk counts rec's terms and follows include and redirect; it returns
// the qualifier of the all that ends the policy (top level only).
func (w *walker) walk(domain string, rec *Record, stack []string, top bool) (byte, error) {
	var all byte
	hasAll := false
	for _, term := range rec.Terms {
		if term.Modifier {
			continue
		}
		switch term.Name {
		case "all":
			all, hasAll = term.Qualifier, true
		case "include":
			w.t.Lookups++
			if err := w.follow(domain, term.Value, stack, false); err != nil {
				return 0, err
			}
		case "a", "exists":
			w.t.Lookups++
			target := target(domain, term.Value)
			if target == "" {
				continue
			}
			res, err := w.r.LookupIP(w.ctx, target)
			if err != nil && !errors.Is(err, lookup.ErrPermanent) {
				return 0, err
			}
			if len(res.Records) == 0 {
				w.t.VoidLookups++
			}
		case "mx":
			w.t.Lookups++
			target := target(domain, term.Value)
			if target == "" {
				continue
			}
			res, err := w.r.LookupMX(w.ctx, target)
			if err != nil && !errors.Is(err, lookup.ErrPermanent) {
				return 0, err
			}
			if len(res.Records) == 0 {
				w.t.VoidLookups++
			}
			if len(res.Records) > MaxMXNames {
				w.t.Problems = append(w.t.Problems, fmt.Errorf("%w: mx:%s has %d", ErrTooManyMX, target, len(res.Records)))
			}
		case "ptr":
			w.t.Lookups++
			w.t.Ptr = true
		}
	}
	if redirect, ok := rec.Modifier("redirect"); ok && !hasAll {
		// RFC 7208 6.1: redirect is used only when there is no all.
		w.t.Lookups++
		if err := w.follow(domain, redirect, stack, top); err != nil {
			return 0, err
		}
		return w.t.All, nil
	}
	if top {
		w.t.All = all
	}
	return all, nil
}

// follow fetches and walks the record an include or redirect names.
func (w *walker) follow(domain, spec string, stack []string, top bool) error {
	if HasMacro(spec) {
		return nil // cannot be expanded without a sender
	}
	target := strings.ToLower(strings.TrimSuffix(spec, "."))
	for _, d := range stack {
		if d == target {
			w.t.Problems = append(w.t.Problems, fmt.Errorf("%w: %s -> %s", ErrLoop, strings.Join(stack, " -> "), target))
			return nil
		}
	}
	if w.fetches >= maxFetches || w.t.Lookups > 4*MaxLookups {
		return nil // far beyond the limit already; stop fetching
	}
	recs, err := w.fetch(target)
	if err != nil {
		return err
	}
	switch len(recs) {
	case 0:
		// RFC 7208 5.2, 6.1: include or redirect of a domain without a
		// record is a permerror; the empty answer is also void.
		w.t.VoidLookups++
		w.t.Problems = append(w.t.Problems, fmt.Errorf("%w at %s (named by %s)", ErrNoRecord, target, domain))
		return nil
	case 1:
	default:
		w.t.Problems = append(w.t.Problems, fmt.Errorf("%w at %s (named by %s)", ErrMultiple, target, domain))
		return nil
	}
	rec, err := Parse(recs[0])
	if err != nil {
		w.t.Problems = append(w.t.Problems, fmt.Errorf("%s (named by %s): %w", target, domain, err))
		return nil
	}
	_, err = w.walk(target, rec, append(stack[:len(stack):len(stack)], target), top)
	return err
}

// target is the domain a/mx/exists query: the spec or the current domain;
// "" when it holds a macro.
func target(domain, spec string) string {
	if spec == "" {
		return domain
	}
	if HasMacro(spec) {
		return ""
	}
	return strings.TrimSuffix(spec, ".")
}
