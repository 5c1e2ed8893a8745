package lookup_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/dmarc"

	"github.com/kakuin/kakuin/verify/lookup"
	"github.com/kakuin/kakuin/verify/lookup/lookuptest"
)

const zone = `
$ORIGIN example.go.jp.
@        300 IN SOA ns1 hostmaster 2026112601 3600 600 86400 60
@        300 IN NS  ns1
@        300 IN NS  ns2.example.com.
@        300 IN MX  10 mx1
@        300 IN MX  20 mx2.example.com.
@        300 IN TXT "v=spf1 " "ip4:192.0.2.10 -all"
@        300 IN CAA 0 issuemail "ca.example.com"
mx1      300 IN A    192.0.2.10
mx1      300 IN AAAA 2001:db8::10
ns1      300 IN A    192.0.2.53
_dmarc   300 IN TXT "v=DMARC1; p=reject; rua=mailto:d@example.go.jp"
_25._tcp.mx1 300 IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
alias    300 IN CNAME alias2
alias2   300 IN CNAME mx1
loop1    300 IN CNAME loop2
loop2    300 IN CNAME loop1
outside  300 IN CNAME target.example.net.
*.wild   300 IN TXT "wildcard"
deep.ent.sub 300 IN TXT "deep"
`

const zoneNet = `
$ORIGIN example.net.
@      300 IN SOA ns hostmaster 1 3600 600 86400 60
target 300 IN TXT "from example.net"
10.2.0.192.in-addr.arpa. 300 IN PTR mx1.example.go.jp.
`

func newServer(t *testing.T) *lookuptest.Server {
	t.Helper()
	s := lookuptest.New(t)
	s.AddZone("example.go.jp.", zone)
	s.AddZone("example.net.", zoneNet)
	return s
}

func newClient(t *testing.T, servers []string, opts lookup.Options) *lookup.Client {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = 300 * time.Millisecond
	}
	c, err := lookup.New(servers, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRecords(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	c := newClient(t, []string{s.Addr()}, lookup.Options{})
	ctx := context.Background()

	txt, err := c.LookupTXT(ctx, "Example.Go.JP.")
	if err != nil || len(txt.Records) != 1 || txt.Records[0] != "v=spf1 ip4:192.0.2.10 -all" || txt.NXDomain {
		t.Fatalf("txt: %+v %v", txt, err)
	}
	mx, err := c.LookupMX(ctx, "example.go.jp")
	if err != nil || len(mx.Records) != 2 {
		t.Fatalf("mx: %+v %v", mx, err)
	}
	hosts := map[string]uint16{}
	for _, m := range mx.Records {
		hosts[m.Host] = m.Preference
	}
	if hosts["mx1.example.go.jp"] != 10 || hosts["mx2.example.com"] != 20 {
		t.Fatalf("mx hosts: %v", hosts)
	}
	ip, err := c.LookupIP(ctx, "mx1.example.go.jp")
	if err != nil || strings.Join(ip.Records, ",") != "192.0.2.10,2001:db8::10" {
		t.Fatalf("ip: %+v %v", ip, err)
	}
	tlsa, err := c.LookupTLSA(ctx, "_25._tcp.mx1.example.go.jp")
	if err != nil || len(tlsa.Records) != 1 || tlsa.Records[0].Usage != 3 || tlsa.Records[0].Selector != 1 ||
		tlsa.Records[0].MatchingType != 1 || len(tlsa.Records[0].Data) != 32 || tlsa.Records[0].Data[0] != 0x01 {
		t.Fatalf("tlsa: %+v %v", tlsa, err)
	}
	ns, err := c.LookupNS(ctx, "example.go.jp")
	if err != nil || len(ns.Records) != 2 {
		t.Fatalf("ns: %+v %v", ns, err)
	}
	soa, err := c.LookupSOA(ctx, "example.go.jp")
	if err != nil || len(soa.Records) != 1 || soa.Records[0].Serial != 2026112601 || soa.Records[0].NS != "ns1.example.go.jp" {
		t.Fatalf("soa: %+v %v", soa, err)
	}
	caa, err := c.LookupCAA(ctx, "example.go.jp")
	if err != nil || len(caa.Records) != 1 || caa.Records[0].Tag != "issuemail" || caa.Records[0].Value != "ca.example.com" {
		t.Fatalf("caa: %+v %v", caa, err)
	}
	ptr, err := c.LookupPTR(ctx, "192.0.2.10")
	if err != nil || len(ptr.Records) != 1 || ptr.Records[0] != "mx1.example.go.jp" {
		t.Fatalf("ptr: %+v %v", ptr, err)
	}
}

func TestNegativeAnswers(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	c := newClient(t, []string{s.Addr()}, lookup.Options{})
	ctx := context.Background()
	test := func(name string, nx bool) {
		t.Helper()
		r, err := c.LookupTXT(ctx, name)
		if err != nil || len(r.Records) != 0 || r.NXDomain != nx {
			t.Fatalf("%s: %+v %v, want no records, nxdomain %v", name, r, err, nx)
		}
	}
	test("nope.example.go.jp", true)
	test("mx1.example.go.jp", false)                          // exists, no TXT
	test("ent.sub.example.go.jp", false)                      // empty non-terminal
	test("x.y.example.go.jp", true)                           // no wildcard here
	r, err := c.LookupTXT(ctx, "anything.wild.example.go.jp") // RFC 4592 wildcard
	if err != nil || len(r.Records) != 1 || r.Records[0] != "wildcard" {
		t.Fatalf("wildcard: %+v %v", r, err)
	}
}

func TestCNAME(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	c := newClient(t, []string{s.Addr()}, lookup.Options{})
	ctx := context.Background()
	ip, err := c.LookupIP(ctx, "alias.example.go.jp")
	if err != nil || len(ip.Records) != 2 {
		t.Fatalf("chain: %+v %v", ip, err)
	}
	// The test server answers only in-store targets inside the reply;
	// example.net is in the store, so this also covers a target in
	// another zone.
	txt, err := c.LookupTXT(ctx, "outside.example.go.jp")
	if err != nil || len(txt.Records) != 1 || txt.Records[0] != "from example.net" {
		t.Fatalf("cross-zone: %+v %v", txt, err)
	}
	_, err = c.LookupTXT(ctx, "loop1.example.go.jp")
	if !errors.Is(err, lookup.ErrPermanent) {
		t.Fatalf("loop: %v, want ErrPermanent", err)
	}
}

func TestInvalidName(t *testing.T) {
	t.Parallel()
	c := newClient(t, []string{"127.0.0.1:1"}, lookup.Options{})
	for _, n := range []string{"", "a..b", strings.Repeat("a", 64) + ".example"} {
		if _, err := c.LookupTXT(context.Background(), n); !errors.Is(err, lookup.ErrPermanent) {
			t.Errorf("%q: %v, want ErrPermanent", n, err)
		}
	}
	if _, err := lookup.New(nil, lookup.Options{}); !errors.Is(err, lookup.ErrPermanent) {
		t.Errorf("no servers: %v", err)
	}
}

func TestAuthenticAndSigned(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.SetAuthentic("example.go.jp", true)
	s.SignZone("example.go.jp")
	c := newClient(t, []string{s.Addr()}, lookup.Options{})
	ctx := context.Background()

	r, err := c.LookupTXT(ctx, "_dmarc.example.go.jp")
	if err != nil || !r.Authentic || !r.Signed {
		t.Fatalf("signed zone: %+v %v", r, err)
	}
	neg, err := c.LookupTXT(ctx, "none.example.go.jp")
	if err != nil || !neg.NXDomain || !neg.Authentic || !neg.Signed {
		t.Fatalf("signed negative: %+v %v", neg, err)
	}
	r2, err := c.LookupTXT(ctx, "target.example.net")
	if err != nil || r2.Authentic || r2.Signed {
		t.Fatalf("unsigned zone: %+v %v", r2, err)
	}
	// A CNAME out of a validated zone into an unvalidated one is not
	// authentic.
	r3, err := c.LookupTXT(ctx, "outside.example.go.jp")
	if err != nil || r3.Authentic {
		t.Fatalf("mixed chain: %+v %v", r3, err)
	}
	ds, err := c.LookupDS(ctx, "example.go.jp")
	if err != nil || len(ds.Records) != 1 || ds.Records[0].DigestType != 2 || len(ds.Records[0].Digest) != 32 {
		t.Fatalf("ds: %+v %v", ds, err)
	}
	keys, err := c.LookupDNSKEY(ctx, "example.go.jp")
	if err != nil || len(keys.Records) != 1 || keys.Records[0].KeyTag != ds.Records[0].KeyTag || keys.Records[0].Algorithm != 13 {
		t.Fatalf("dnskey: %+v %v", keys, err)
	}
}

func TestTruncationFallsBackToTCP(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.SetTruncate("example.go.jp", true)
	// A record too large for 512 bytes and for the advertised 1232.
	big := strings.Repeat("a", 250)
	for i := 0; i < 8; i++ {
		s.Add(`big.example.go.jp. 300 IN TXT "` + big + `" "` + big + `" "` + string(rune('a'+i)) + `"`)
	}
	c := newClient(t, []string{s.Addr()}, lookup.Options{})
	r, err := c.LookupTXT(context.Background(), "example.go.jp")
	if err != nil || len(r.Records) != 1 {
		t.Fatalf("forced TC: %+v %v", r, err)
	}
	r, err = c.LookupTXT(context.Background(), "big.example.go.jp")
	if err != nil || len(r.Records) != 8 {
		t.Fatalf("large answer: %d records, %v", len(r.Records), err)
	}
}

func TestFailures(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.SetServFail("_dmarc.example.go.jp", true)
	s.SetDrop("mx1.example.go.jp", true)
	c := newClient(t, []string{s.Addr()}, lookup.Options{Timeout: 100 * time.Millisecond, Attempts: 2})
	ctx := context.Background()

	if _, err := c.LookupTXT(ctx, "_dmarc.example.go.jp"); !errors.Is(err, lookup.ErrTemporary) {
		t.Fatalf("servfail: %v, want ErrTemporary", err)
	}
	if n := s.Queries("_dmarc.example.go.jp", "TXT"); n != 2 {
		t.Errorf("servfail asked %d times, want 2 (Attempts)", n)
	}
	start := time.Now()
	if _, err := c.LookupIP(ctx, "mx1.example.go.jp"); !errors.Is(err, lookup.ErrTemporary) {
		t.Fatalf("dropped: %v, want ErrTemporary", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("dropped query took %v", d)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.LookupTXT(cctx, "example.go.jp"); !errors.Is(err, lookup.ErrTemporary) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestSecondServer(t *testing.T) {
	t.Parallel()
	bad := newServer(t)
	good := newServer(t)
	bad.SetDrop("example.go.jp", true)
	bad.SetServFail("_dmarc.example.go.jp", true)
	// A port with nothing listening.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close()

	c := newClient(t, []string{bad.Addr(), deadAddr, good.Addr()}, lookup.Options{Timeout: 100 * time.Millisecond, Attempts: 1})
	ctx := context.Background()
	for _, n := range []string{"example.go.jp", "_dmarc.example.go.jp"} {
		r, err := c.LookupTXT(ctx, n)
		if err != nil || len(r.Records) != 1 {
			t.Fatalf("%s: %+v %v", n, r, err)
		}
		if bad.Queries(n, "TXT") != 1 || good.Queries(n, "TXT") != 1 {
			t.Errorf("%s: bad asked %d, good asked %d", n, bad.Queries(n, "TXT"), good.Queries(n, "TXT"))
		}
	}
}

func TestCache(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	c := newClient(t, []string{s.Addr()}, lookup.Options{CacheSize: 3, Now: clock})
	ctx := context.Background()
	ask := func(name string) {
		t.Helper()
		if _, err := c.LookupTXT(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	ask("example.go.jp")
	ask("example.go.jp")
	if n := s.Queries("example.go.jp", "TXT"); n != 1 {
		t.Fatalf("cached answer asked %d times", n)
	}
	if st := c.CacheStats(); st.Hits != 1 || st.Entries != 1 {
		t.Fatalf("stats %+v", st)
	}
	advance(301 * time.Second) // TTL 300
	ask("example.go.jp")
	if n := s.Queries("example.go.jp", "TXT"); n != 2 {
		t.Fatalf("expired answer asked %d times, want 2", n)
	}
	// Negative answers last the SOA minimum (60 s, RFC 2308 5).
	ask("nope.example.go.jp")
	advance(30 * time.Second)
	ask("nope.example.go.jp")
	if n := s.Queries("nope.example.go.jp", "TXT"); n != 1 {
		t.Fatalf("negative answer asked %d times within its TTL", n)
	}
	advance(31 * time.Second)
	ask("nope.example.go.jp")
	if n := s.Queries("nope.example.go.jp", "TXT"); n != 2 {
		t.Fatalf("negative answer asked %d times after its TTL", n)
	}
	// The bound: three entries; a fourth evicts the least recently used.
	ask("_dmarc.example.go.jp")
	ask("target.example.net")
	if st := c.CacheStats(); st.Entries != 3 {
		t.Fatalf("entries %d, want 3", st.Entries)
	}
	ask("example.go.jp") // evicted: asked again
	if n := s.Queries("example.go.jp", "TXT"); n != 3 {
		t.Fatalf("evicted answer asked %d times, want 3", n)
	}
	// Errors are not cached.
	s.SetServFail("srv.example.go.jp", true)
	for i := 0; i < 2; i++ {
		if _, err := c.LookupTXT(ctx, "srv.example.go.jp"); !errors.Is(err, lookup.ErrTemporary) {
			t.Fatal(err)
		}
	}
	if n := s.Queries("srv.example.go.jp", "TXT"); n != 4 {
		t.Fatalf("failing name asked %d times, want 4 (2 lookups x 2 attempts)", n)
	}
}

func TestConcurrentQueriesShared(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.SetDrop("slow.example.go.jp", false)
	c := newClient(t, []string{s.Addr()}, lookup.Options{CacheSize: 100})
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r, err := c.LookupMX(context.Background(), "example.go.jp"); err != nil || len(r.Records) != 2 {
				t.Errorf("%+v %v", r, err)
			}
		}()
	}
	wg.Wait()
	if n := s.Queries("example.go.jp", "MX"); n != 1 {
		t.Fatalf("50 concurrent lookups sent %d queries, want 1", n)
	}
}

func TestTXTFuncWithMsgauth(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.Add(`_dmarc.fail.example.go.jp. 300 IN TXT "v=DMARC1; p=none"`)
	s.SetServFail("_dmarc.broken.example.go.jp", true)
	c := newClient(t, []string{s.Addr()}, lookup.Options{Timeout: 100 * time.Millisecond, Attempts: 1})
	opts := &dmarc.LookupOptions{LookupTXT: c.TXTFunc(context.Background())}

	rec, err := dmarc.LookupWithOptions("example.go.jp", opts)
	if err != nil || rec.Policy != dmarc.PolicyReject {
		t.Fatalf("dmarc: %+v %v", rec, err)
	}
	if _, err := dmarc.LookupWithOptions("nope.example.go.jp", opts); !errors.Is(err, dmarc.ErrNoPolicy) {
		t.Fatalf("missing: %v, want dmarc.ErrNoPolicy", err)
	}
	_, err = dmarc.LookupWithOptions("broken.example.go.jp", opts)
	if !dmarc.IsTempFail(err) {
		t.Fatalf("servfail: %v, want a temporary failure", err)
	}

	f := c.TXTFunc(context.Background())
	_, err = f("_dmarc.broken.example.go.jp")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsTemporary || !errors.Is(err, lookup.ErrTemporary) {
		t.Fatalf("bridge error: %#v", err)
	}
	_, err = f("nope.example.go.jp")
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Fatalf("bridge not found: %#v", err)
	}
}

func TestNetResolverWithSPF(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	c := newClient(t, []string{s.Addr()}, lookup.Options{})
	nr := lookup.NetResolver{R: c}
	test := func(ip string, want spf.Result) {
		t.Helper()
		got, err := spf.CheckHostWithSender(net.IP(netip.MustParseAddr(ip).AsSlice()), "mx1.example.go.jp", "a@example.go.jp",
			spf.WithResolver(nr), spf.WithContext(context.Background()))
		if got != want {
			t.Fatalf("%s: %v %v, want %v", ip, got, err, want)
		}
	}
	test("192.0.2.10", spf.Pass)
	test("198.51.100.1", spf.Fail)
	names, err := nr.LookupAddr(context.Background(), "192.0.2.10")
	if err != nil || len(names) != 1 || names[0] != "mx1.example.go.jp." {
		t.Fatalf("ptr: %v %v", names, err)
	}
	mx, err := nr.LookupMX(context.Background(), "example.go.jp")
	if err != nil || len(mx) != 2 {
		t.Fatalf("mx: %v %v", mx, err)
	}
}
