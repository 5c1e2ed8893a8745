package spf

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kakuin/kakuin/verify/lookup"
	"github.com/kakuin/kakuin/verify/lookup/lookuptest"
)

func TestParse(t *testing.T) {
	t.Parallel()
	good := []string{
		"v=spf1 -all",
		"V=SPF1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx:example.go.jp/24//64 ~all",
		"v=spf1 include:_spf.example.com redirect=_spf.example.go.jp",
		"v=spf1 exists:%{i}._spf.%{d} -all",
		"v=spf1 a//64 ?all exp=explain.%{d2r}",
		"v=spf1  ptr:example.go.jp   -all ",
		"v=spf1 unknown-mod=x -all",
	}
	for _, s := range good {
		r, err := Parse(s)
		if err != nil {
			t.Errorf("%q: %v", s, err)
			continue
		}
		r2, err := Parse(r.String())
		if err != nil || r2.String() != r.String() {
			t.Errorf("%q: round trip %q: %v", s, r.String(), err)
		}
	}
	r, _ := Parse("v=spf1 mx:example.go.jp/24//64 -all")
	if m := r.Terms[0]; m.Name != "mx" || m.Value != "example.go.jp" || m.Prefix4 != 24 || m.Prefix6 != 64 || m.Qualifier != '+' {
		t.Errorf("mx term %+v", m)
	}
	if a, ok := r.All(); !ok || a.Qualifier != '-' {
		t.Errorf("all %+v", a)
	}
	bad := map[string]error{
		"v=spf10 -all":                  ErrNotSPF,
		"spf1 -all":                     ErrNotSPF,
		"v=spf1 -alll":                  ErrSyntax,
		"v=spf1 ip4:192.0.2.0/33":       ErrSyntax,
		"v=spf1 ip4:2001:db8::1":        ErrSyntax,
		"v=spf1 ip6:192.0.2.1":          ErrSyntax,
		"v=spf1 include:":               ErrSyntax,
		"v=spf1 include:example.123":    ErrSyntax,
		"v=spf1 a/024":                  ErrSyntax,
		"v=spf1 redirect=a redirect=b":  ErrSyntax,
		"v=spf1 exists:%{x}.example":    ErrSyntax,
		"v=spf1 exists:%{i.example.com": ErrSyntax,
		"v=spf1 all:x":                  ErrSyntax,
		"v=spf1 1bad=x":                 ErrSyntax,
	}
	for s, want := range bad {
		if _, err := Parse(s); !errors.Is(err, want) {
			t.Errorf("%q: %v, want %v", s, err, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"v=spf1 -all", "v=spf1 ip4:192.0.2.0/24 a:x.example/24//64 include:a.example ~all redirect=x.example",
		"v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} exp=%{d}", "v=spf1 ip6:2001:db8::1/128 ?mx//0"} {
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

func newResolver(t *testing.T, s *lookuptest.Server) lookup.Resolver {
	t.Helper()
	c, err := lookup.New([]string{s.Addr()}, lookup.Options{Timeout: 200 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestWalk(t *testing.T) {
	t.Parallel()
	s := lookuptest.New(t)
	s.AddZone("example.go.jp", `
@ SOA ns hostmaster 1 3600 600 86400 60
@ MX 10 mx
mx A 192.0.2.25
good TXT "v=spf1 mx ip4:192.0.2.0/24 include:_spf.example.com -all"
soft TXT "v=spf1 mx ~all"
open TXT "v=spf1 +all"
none TXT "v=spf1 ip4:192.0.2.1"
two TXT "v=spf1 -all"
two TXT "v=spf1 ~all"
ptr TXT "v=spf1 ptr -all"
bad TXT "v=spf1 ip4:300.1.1.1 -all"
loop TXT "v=spf1 include:loop2.example.go.jp -all"
loop2 TXT "v=spf1 include:loop.example.go.jp -all"
void TXT "v=spf1 a:v1.example.go.jp a:v2.example.go.jp mx:v3.example.go.jp -all"
missing TXT "v=spf1 include:nothing.example.go.jp -all"
redir TXT "v=spf1 redirect=soft.example.go.jp"
redirall TXT "v=spf1 -all redirect=open.example.go.jp"
servfail TXT "v=spf1 include:sf.example.go.jp -all"
macro TXT "v=spf1 exists:%{i}.spf.example.go.jp -all"
nospf TXT "google-site-verification=abc"
`)
	s.Add(`_spf.example.com. TXT "v=spf1 ip4:198.51.100.0/24 -all"`)
	// eleven: one include chain with 11 querying terms in total.
	var chain []string
	for i := 0; i < 10; i++ {
		chain = append(chain, fmt.Sprintf("include:i%d.example.go.jp", i))
		s.Add(fmt.Sprintf(`i%d.example.go.jp. TXT "v=spf1 ip4:192.0.2.%d -all"`, i, i))
	}
	s.Add(`eleven.example.go.jp. TXT "v=spf1 ` + strings.Join(chain, " ") + ` mx -all"`)
	s.Add(`ten.example.go.jp. TXT "v=spf1 ` + strings.Join(chain, " ") + ` -all"`)
	s.SetServFail("sf.example.go.jp", true)
	r := newResolver(t, s)

	test := func(domain string, lookups, void int, all byte, problems ...error) {
		t.Helper()
		tr, err := Walk(context.Background(), r, domain)
		if err != nil {
			t.Fatalf("%s: %v", domain, err)
		}
		if tr.Lookups != lookups || tr.VoidLookups != void || tr.All != all {
			t.Errorf("%s: lookups %d void %d all %q, want %d %d %q", domain, tr.Lookups, tr.VoidLookups, tr.All, lookups, void, all)
		}
		if len(tr.Problems) != len(problems) {
			t.Errorf("%s: problems %v, want %v", domain, tr.Problems, problems)
			return
		}
		for i, p := range problems {
			if !errors.Is(tr.Problems[i], p) {
				t.Errorf("%s: problem %d is %v, want %v", domain, i, tr.Problems[i], p)
			}
		}
	}
	test("good.example.go.jp", 2, 1, '-') // mx at good. has no MX: void
	test("soft.example.go.jp", 1, 1, '~')
	test("open.example.go.jp", 0, 0, '+')
	test("none.example.go.jp", 0, 0, 0)
	test("two.example.go.jp", 0, 0, 0, ErrMultiple)
	test("ptr.example.go.jp", 1, 0, '-', ErrPtr)
	test("bad.example.go.jp", 0, 0, 0, ErrSyntax)
	test("loop.example.go.jp", 2, 0, '-', ErrLoop)
	test("void.example.go.jp", 3, 3, '-', ErrTooManyVoid)
	test("missing.example.go.jp", 1, 1, '-', ErrNoRecord)
	test("redir.example.go.jp", 2, 1, '~')
	test("redirall.example.go.jp", 0, 0, '-') // redirect ignored when all is present
	test("ten.example.go.jp", 10, 0, '-')
	test("eleven.example.go.jp", 11, 1, '-', ErrTooManyLookups)
	test("macro.example.go.jp", 1, 0, '-')
	test("nospf.example.go.jp", 0, 0, 0, ErrNoRecord)
	test("nxdomain.example.go.jp", 0, 0, 0, ErrNoRecord)

	if _, err := Walk(context.Background(), r, "servfail.example.go.jp"); !errors.Is(err, lookup.ErrTemporary) {
		t.Errorf("servfail in the tree: %v, want ErrTemporary", err)
	}
}
