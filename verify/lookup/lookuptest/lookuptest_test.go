package lookuptest

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

func ask(t *testing.T, s *Server, name string, qtype uint16, do bool) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	if do {
		m.SetEdns0(1232, true)
	}
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	r, _, err := c.Exchange(m, s.Addr())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return r
}

func TestServer(t *testing.T) {
	t.Parallel()
	s := New(t)
	s.AddZone("example.go.jp", `
@ IN SOA ns hostmaster 1 3600 600 86400 60
@ IN TXT "v=spf1 -all"
www IN A 192.0.2.1
`)
	s.AddZones(map[string]string{"other.example": `@ 60 IN TXT "x"`})
	s.SetAuthentic("example.go.jp", true)
	s.SignZone("example.go.jp")

	r := ask(t, s, "example.go.jp", dns.TypeTXT, false)
	if len(r.Answer) != 1 || r.AuthenticatedData {
		t.Fatalf("without DO: %v", r)
	}
	r = ask(t, s, "EXAMPLE.go.jp", dns.TypeTXT, true)
	if len(r.Answer) != 2 || !r.AuthenticatedData {
		t.Fatalf("with DO: %v", r)
	}
	// The RRSIG verifies with the published DNSKEY.
	keys := ask(t, s, "example.go.jp", dns.TypeDNSKEY, true)
	key := keys.Answer[0].(*dns.DNSKEY)
	if err := r.Answer[1].(*dns.RRSIG).Verify(key, r.Answer[:1]); err != nil {
		t.Fatalf("rrsig: %v", err)
	}
	r = ask(t, s, "nope.example.go.jp", dns.TypeA, true)
	if r.Rcode != dns.RcodeNameError || len(r.Ns) != 2 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
		t.Fatalf("nxdomain: %v", r)
	}
	r = ask(t, s, "other.example", dns.TypeTXT, true)
	if r.AuthenticatedData || len(r.Answer) != 1 {
		t.Fatalf("other zone: %v", r)
	}
	if s.Queries("example.go.jp", "txt") != 2 || s.Total() != 5 {
		t.Fatalf("counts: %d %d", s.Queries("example.go.jp", "TXT"), s.Total())
	}
	s.SetServFail("www.example.go.jp", true)
	if r := ask(t, s, "www.example.go.jp", dns.TypeA, false); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("servfail: %v", r)
	}
	s.SetServFail("www.example.go.jp", false)
	s.Remove("www.example.go.jp", "A")
	if r := ask(t, s, "www.example.go.jp", dns.TypeA, false); r.Rcode != dns.RcodeNameError {
		t.Fatalf("removed: %v", r)
	}
	s.SetDrop("example.go.jp", true)
	m := new(dns.Msg)
	m.SetQuestion("example.go.jp.", dns.TypeTXT)
	if _, _, err := (&dns.Client{Timeout: 100 * time.Millisecond}).Exchange(m, s.Addr()); err == nil {
		t.Fatal("dropped query answered")
	}
	// TCP answers too.
	s.SetDrop("example.go.jp", false)
	if r, _, err := (&dns.Client{Net: "tcp", Timeout: time.Second}).Exchange(m, s.Addr()); err != nil || len(r.Answer) != 1 {
		t.Fatalf("tcp: %v %v", r, err)
	}
}
