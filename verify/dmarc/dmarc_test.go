package dmarc

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kakuin/kakuin/verify/lookup"
	"github.com/kakuin/kakuin/verify/lookup/lookuptest"
)

func TestParse(t *testing.T) {
	t.Parallel()
	r, err := Parse("v=DMARC1; p=reject; sp=quarantine; np=reject; adkim=s; aspf=r; pct=100; fo=1:d; rua=mailto:d@example.go.jp,mailto:x@example.com!10m; ruf=mailto:f@example.go.jp; psd=n; t=n; future=1")
	if err != nil {
		t.Fatal(err)
	}
	if r.Policy != PolicyReject || r.SubdomainPolicy != PolicyQuarantine || r.NonexistentPolicy != PolicyReject ||
		r.ADKIM != "s" || r.ASPF != "r" || r.Percent != 100 || len(r.RUA) != 2 || r.PSD != "n" || r.Testing != "n" ||
		len(r.Unknown) != 1 || len(r.Removed) != 1 || r.InTesting() {
		t.Fatalf("%+v", r)
	}
	r, err = Parse("v=DMARC1;rua=mailto:d@example.go.jp")
	if err != nil || r.EffectivePolicy() != PolicyNone || r.EffectiveNonexistentPolicy() != PolicyNone {
		t.Fatalf("no p: %+v %v", r, err)
	}
	r, _ = Parse("v=DMARC1; p=reject; sp=none")
	if r.EffectiveSubdomainPolicy() != PolicyNone || r.EffectiveNonexistentPolicy() != PolicyNone {
		t.Fatalf("sp: %+v", r)
	}
	r, _ = Parse("v=DMARC1; p=reject; t=y")
	if !r.InTesting() {
		t.Fatal("t=y is testing")
	}
	r, _ = Parse("v=DMARC1; p=reject; pct=50")
	if !r.InTesting() {
		t.Fatal("pct=50 is testing")
	}
	bad := map[string]error{
		"v=DMARC2; p=reject":                ErrNotDMARC,
		"p=reject; v=DMARC1":                ErrNotDMARC,
		"v=dmarc1; p=reject":                ErrNotDMARC,
		"":                                  ErrNotDMARC,
		"v=DMARC1; p=block":                 ErrSyntax,
		"v=DMARC1; p=reject; p=none":        ErrSyntax,
		"v=DMARC1; p=reject; pct=101":       ErrSyntax,
		"v=DMARC1; p=reject; adkim=x":       ErrSyntax,
		"v=DMARC1; p=reject; rua=d@example": ErrSyntax,
		"v=DMARC1; p=reject; rua=mailto:x":  ErrSyntax,
		"v=DMARC1; p=reject; psd=maybe":     ErrSyntax,
		"v=DMARC1; p=reject; t=1":           ErrSyntax,
		"v=DMARC1; p=reject; fo=2":          ErrSyntax,
		"v=DMARC1; p=reject; garbage":       ErrSyntax,
	}
	for s, want := range bad {
		if _, err := Parse(s); !errors.Is(err, want) {
			t.Errorf("%q: %v, want %v", s, err, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"v=DMARC1; p=reject; rua=mailto:d@example.go.jp", "v=DMARC1;p=none;sp=reject;np=quarantine;adkim=s;aspf=s;pct=0;fo=0:1:d:s;rf=afrf;ri=86400;rua=mailto:a@b.example!10m,https://r.example/x;ruf=mailto:c@d.example;psd=y;t=y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		out := r.String()
		r2, err := Parse(out)
		if err != nil {
			t.Fatalf("%q formats as %q, which fails: %v", s, out, err)
		}
		if r2.String() != out {
			t.Fatalf("%q -> %q -> %q", s, out, r2.String())
		}
	})
}

func TestOrganizationalDomain(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"x.mhlw.go.jp":      "mhlw.go.jp",
		"MHLW.go.jp.":       "mhlw.go.jp",
		"a.b.example.co.jp": "example.co.jp",
		"mail.example.com":  "example.com",
		"go.jp":             "go.jp",
	} {
		if got := OrganizationalDomain(in); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	s := lookuptest.New(t)
	s.AddZone("example.go.jp", `
@ SOA ns hostmaster 1 3600 600 86400 60
_dmarc TXT "v=DMARC1; p=reject; rua=mailto:d@example.go.jp"
_dmarc.two TXT "v=DMARC1; p=reject"
_dmarc.two TXT "v=DMARC1; p=none"
_dmarc.bad TXT "v=DMARC1; p=nonsense"
_dmarc.other TXT "some other text"
_dmarc.other TXT "v=DMARC1; p=quarantine"
`)
	s.SetServFail("_dmarc.sf.example.go.jp", true)
	s.SetAuthentic("example.go.jp", true)
	c, err := lookup.New([]string{s.Addr()}, lookup.Options{Timeout: 200 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	r, err := Lookup(ctx, c, "example.go.jp")
	if err != nil || !r.Found() || r.Inherited() || r.Record.Policy != PolicyReject || !r.Authentic {
		t.Fatalf("apex: %+v %v", r, err)
	}
	r, err = Lookup(ctx, c, "a.b.c.example.go.jp")
	if err != nil || !r.Found() || !r.Inherited() || r.PolicyDomain != "example.go.jp" || len(r.Queried) != 4 {
		t.Fatalf("walk: %+v %v", r, err)
	}
	r, err = Lookup(ctx, c, "two.example.go.jp")
	if err != nil || r.Found() || !errors.Is(r.Err, ErrMultiple) || len(r.Records) != 2 {
		t.Fatalf("two: %+v %v", r, err)
	}
	r, err = Lookup(ctx, c, "bad.example.go.jp")
	if err != nil || r.Found() || !errors.Is(r.Err, ErrSyntax) {
		t.Fatalf("bad: %+v %v", r, err)
	}
	r, err = Lookup(ctx, c, "other.example.go.jp")
	if err != nil || !r.Found() || r.Record.Policy != PolicyQuarantine {
		t.Fatalf("other text ignored: %+v %v", r, err)
	}
	r, err = Lookup(ctx, c, "nothing.example.net")
	if err != nil || r.Found() || r.PolicyDomain != "" {
		t.Fatalf("none: %+v %v", r, err)
	}
	if _, err := Lookup(ctx, c, "sf.example.go.jp"); !errors.Is(err, lookup.ErrTemporary) {
		t.Fatalf("servfail: %v", err)
	}
	// The walk: a name of more than 8 labels jumps to its last 7.
	long := "1.2.3.4.5.6.7.8.9.example.go.jp"
	r, _ = Lookup(ctx, c, long)
	if r.Queried[1] != "_dmarc.6.7.8.9.example.go.jp" {
		t.Fatalf("long walk: %v", r.Queried)
	}
}

func TestExternalAuthorized(t *testing.T) {
	t.Parallel()
	s := lookuptest.New(t)
	s.Add(`example.go.jp._report._dmarc.reports.example.com. TXT "v=DMARC1"`)
	c, _ := lookup.New([]string{s.Addr()}, lookup.Options{})
	ctx := context.Background()
	test := func(uri string, want bool) {
		t.Helper()
		ok, err := ExternalAuthorized(ctx, c, "example.go.jp", uri)
		if err != nil || ok != want {
			t.Errorf("%s: %v %v, want %v", uri, ok, err, want)
		}
	}
	test("mailto:d@example.go.jp", true)            // same domain
	test("mailto:d@sub.example.go.jp", true)        // same organisational domain
	test("mailto:d@reports.example.com", true)      // authorised
	test("mailto:d@reports.example.net!10m", false) // not authorised
	test("mailto:d@other.go.jp", false)             // another agency: go.jp is a public suffix
}
