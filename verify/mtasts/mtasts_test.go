package mtasts

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kakuin/kakuin/verify/audit/audittest"
)

func TestParseRecord(t *testing.T) {
	t.Parallel()
	r, err := ParseRecord("v=STSv1; id=2026-11-26;")
	if err == nil {
		t.Fatalf("id with dashes accepted? %+v", r)
	}
	r, err = ParseRecord("v=STSv1; id=20261126a1;  ext=1")
	if err != nil || r.ID != "20261126a1" || len(r.Extensions) != 1 {
		t.Fatalf("%+v %v", r, err)
	}
	for s, want := range map[string]error{
		"v=STSv2; id=1":                          ErrNotSTS,
		"id=1; v=STSv1":                          ErrNotSTS,
		"v=STSv1":                                ErrSyntax,
		"v=STSv1; id=":                           ErrSyntax,
		"v=STSv1; id=a-b":                        ErrSyntax,
		"v=STSv1; id=" + strings.Repeat("a", 33): ErrSyntax,
		"v=STSv1; id=1; id=2":                    ErrSyntax,
	} {
		if _, err := ParseRecord(s); !errors.Is(err, want) {
			t.Errorf("%q: %v, want %v", s, err, want)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	t.Parallel()
	p, err := ParsePolicy("version: STSv1\r\nmode: enforce\r\nmx: mx1.example.go.jp\r\nmx: *.mail.example.go.jp\r\nmax_age: 604800\r\n")
	if err != nil || p.Mode != ModeEnforce || len(p.MX) != 2 || p.MaxAge != 604800 {
		t.Fatalf("%+v %v", p, err)
	}
	for host, want := range map[string]bool{
		"mx1.example.go.jp": true, "MX1.example.go.jp.": true, "a.mail.example.go.jp": true,
		"mail.example.go.jp": false, "a.b.mail.example.go.jp": false, "mx2.example.go.jp": false,
	} {
		if p.Matches(host) != want {
			t.Errorf("%s: %v", host, !want)
		}
	}
	p2, err := ParsePolicy(p.String())
	if err != nil || p2.String() != p.String() {
		t.Fatalf("round trip: %v", err)
	}
	for _, s := range []string{
		"mode: enforce\nmx: a.example\nmax_age: 1",                        // no version
		"version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1",         // bad mode
		"version: STSv1\nmode: enforce\nmax_age: 1",                       // no mx
		"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601", // too long
		"version: STSv1\nmode: enforce\nmx: a.example",                    // no max_age
		"version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1",
		"garbage",
	} {
		if _, err := ParsePolicy(s); !errors.Is(err, ErrSyntax) {
			t.Errorf("%q: %v, want ErrSyntax", s, err)
		}
	}
	if _, err := ParsePolicy("version: STSv1\nmode: none\nmax_age: 86400\n"); err != nil {
		t.Errorf("mode none needs no mx: %v", err)
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add("v=STSv1; id=20261126;")
	f.Add("v=STSv1;id=a;x.y=z")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecord(s)
		if err != nil {
			return
		}
		r2, err := ParseRecord(r.String())
		if err != nil || r2.String() != r.String() {
			t.Fatalf("%q -> %q: %v", s, r.String(), err)
		}
	})
}

func FuzzParsePolicy(f *testing.F) {
	f.Add("version: STSv1\r\nmode: enforce\r\nmx: mx1.example.go.jp\r\nmx: *.example.go.jp\r\nmax_age: 604800\r\n")
	f.Add("version: STSv1\nmode: none\nmax_age: 0\nfoo: bar\n")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePolicy(s)
		if err != nil {
			return
		}
		p2, err := ParsePolicy(p.String())
		if err != nil || p2.String() != p.String() {
			t.Fatalf("%q -> %q: %v", s, p.String(), err)
		}
	})
}

func TestFetch(t *testing.T) {
	t.Parallel()
	ca := audittest.NewCA(t)
	ps := audittest.NewPolicyServer(t)
	good := "version: STSv1\r\nmode: testing\r\nmx: mx.example.go.jp\r\nmax_age: 86400\r\n"
	for _, d := range []string{"good", "redirect", "html", "notfound", "wrongcert", "expired", "broken"} {
		host := "mta-sts." + d + ".example.go.jp"
		switch d {
		case "wrongcert":
			ps.SetCertificate(host, ca.Leaf(t, "www.example.go.jp"))
		case "expired":
			ps.SetCertificate(host, ca.ExpiredLeaf(t, host))
		default:
			ps.SetCertificate(host, ca.Leaf(t, host))
		}
	}
	ps.SetPolicy("good.example.go.jp", good)
	ps.SetPolicy("wrongcert.example.go.jp", good)
	ps.SetPolicy("expired.example.go.jp", good)
	ps.SetResponse("redirect.example.go.jp", 302, "text/plain", "", "https://mta-sts.good.example.go.jp/.well-known/mta-sts.txt")
	ps.SetResponse("html.example.go.jp", 200, "text/html", good, "")
	ps.SetPolicy("broken.example.go.jp", "version: STSv1\nmode: enforce\n")
	opts := FetchOptions{Addr: ps.Addr, RootCAs: ca.Pool, Timeout: 2 * time.Second}
	ctx := context.Background()

	p, body, err := Fetch(ctx, "good.example.go.jp", opts)
	if err != nil || p.Mode != ModeTesting || body != good {
		t.Fatalf("good: %+v %v", p, err)
	}
	for d, want := range map[string]error{
		"redirect": ErrFetch, "html": ErrFetch, "notfound": ErrFetch, "wrongcert": ErrFetch, "expired": ErrFetch,
		"broken": ErrSyntax,
	} {
		if _, _, err := Fetch(ctx, d+".example.go.jp", opts); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", d, err, want)
		}
	}
	// Without the test CA, the loopback certificate is not trusted.
	if _, _, err := Fetch(ctx, "good.example.go.jp", FetchOptions{Addr: ps.Addr, Timeout: time.Second}); !errors.Is(err, ErrFetch) {
		t.Errorf("untrusted: %v", err)
	}
}
