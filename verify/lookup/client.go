package lookup

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Options configure a Client. The zero value is usable.
type Options struct {
	// Timeout bounds one attempt at one server. Zero means 2 seconds.
	Timeout time.Duration
	// Attempts is how many rounds over the server list are made before a
	// question is given up as ErrTemporary. Zero means 2.
	Attempts int
	// CacheSize is the most answers (one per name and type) kept in the
	// cache, which honours the records' TTLs (and RFC 2308 negative TTLs).
	// Zero means no cache.
	CacheSize int
	// MaxTTL caps how long an answer is cached. Zero means 1 hour.
	MaxTTL time.Duration
	// UDPSize is the EDNS0 UDP payload size advertised (RFC 6891 6.2.5).
	// Zero means 1232, the DNS flag day 2020 value.
	UDPSize uint16
	// Now is the cache's clock. Nil means time.Now.
	Now func() time.Time
}

// maxCNAME is how many CNAMEs are followed before giving up (a loop).
const maxCNAME = 8

// Client is a stub resolver over github.com/miekg/dns that asks one or
// more recursive (ideally validating) servers. It sends EDNS0 with the DO
// bit (RFC 3225) and the AD bit (RFC 6840 5.7) so that the server says
// whether the answer was validated, retries over TCP when a UDP answer is
// truncated (RFC 7766 5), tries the next server when one fails or times
// out, and follows CNAMEs. It is safe for concurrent use.
type Client struct {
	servers  []string
	timeout  time.Duration
	attempts int
	udpSize  uint16
	maxTTL   time.Duration
	now      func() time.Time
	cache    *cache              // nil without a cache
	zone     map[string][]dns.RR // NewZone: answers from these records, no server

	mu       sync.Mutex
	inflight map[cacheKey]*call
	idle     map[string][]*dns.Conn // server -> idle UDP sockets
}

// maxIdle bounds the idle UDP sockets kept per server. Reusing sockets
// saves a socket, connect and close per query; each query still gets a
// fresh random ID, and a socket whose query failed is closed.
const maxIdle = 64

func (c *Client) udpConn(ctx context.Context, srv string) (*dns.Conn, error) {
	c.mu.Lock()
	if l := c.idle[srv]; len(l) > 0 {
		co := l[len(l)-1]
		c.idle[srv] = l[:len(l)-1]
		c.mu.Unlock()
		return co, nil
	}
	c.mu.Unlock()
	d := &net.Dialer{Timeout: c.timeout}
	nc, err := d.DialContext(ctx, "udp", srv)
	if err != nil {
		return nil, err
	}
	return &dns.Conn{Conn: nc, UDPSize: c.udpSize}, nil
}

func (c *Client) putUDPConn(srv string, co *dns.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.idle[srv]) >= maxIdle {
		co.Close()
		return
	}
	c.idle[srv] = append(c.idle[srv], co)
}

// New returns a Client asking servers in order ("host:port"; a bare host
// gets port 53). At least one server is required.
func New(servers []string, opts Options) (*Client, error) {
	if len(servers) == 0 {
		return nil, fmt.Errorf("%w: no dns server configured", ErrPermanent)
	}
	c := &Client{
		timeout:  opts.Timeout,
		attempts: opts.Attempts,
		udpSize:  opts.UDPSize,
		maxTTL:   opts.MaxTTL,
		now:      opts.Now,
		inflight: map[cacheKey]*call{},
		idle:     map[string][]*dns.Conn{},
	}
	for _, s := range servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			s = net.JoinHostPort(s, "53")
		}
		c.servers = append(c.servers, s)
	}
	if c.timeout <= 0 {
		c.timeout = 2 * time.Second
	}
	if c.attempts <= 0 {
		c.attempts = 2
	}
	if c.udpSize == 0 {
		c.udpSize = 1232
	}
	if c.maxTTL <= 0 {
		c.maxTTL = time.Hour
	}
	if c.now == nil {
		c.now = time.Now
	}
	if opts.CacheSize > 0 {
		c.cache = newCache(opts.CacheSize)
	}
	return c, nil
}

// Servers returns the servers asked, in order.
func (c *Client) Servers() []string { return append([]string(nil), c.servers...) }

var _ ZoneResolver = (*Client)(nil)

// answer is the outcome of one question after following CNAMEs.
type answer struct {
	rrs       []dns.RR // records of the type asked, owned by the final name
	nx        bool
	authentic bool
	signed    bool
}

// LookupTXT implements Resolver. Each record's strings are concatenated
// (RFC 7208 3.3, RFC 6376 3.6.2.2).
func (c *Client) LookupTXT(ctx context.Context, name string) (Result[string], error) {
	return lookup(c, ctx, name, dns.TypeTXT, func(rr dns.RR) (string, bool) {
		t, ok := rr.(*dns.TXT)
		if !ok {
			return "", false
		}
		return strings.Join(t.Txt, ""), true
	})
}

// LookupMX implements Resolver. A null MX (RFC 7505) has Host "".
func (c *Client) LookupMX(ctx context.Context, name string) (Result[MX], error) {
	return lookup(c, ctx, name, dns.TypeMX, func(rr dns.RR) (MX, bool) {
		m, ok := rr.(*dns.MX)
		if !ok {
			return MX{}, false
		}
		return MX{Preference: m.Preference, Host: strings.TrimSuffix(m.Mx, ".")}, true
	})
}

// LookupIP implements Resolver: A then AAAA addresses, as strings. The
// result is NXDomain only if both say so, Authentic only if both are.
func (c *Client) LookupIP(ctx context.Context, name string) (Result[string], error) {
	a, err := lookup(c, ctx, name, dns.TypeA, func(rr dns.RR) (string, bool) {
		r, ok := rr.(*dns.A)
		if !ok {
			return "", false
		}
		return r.A.String(), true
	})
	if err != nil {
		return a, err
	}
	aaaa, err := lookup(c, ctx, name, dns.TypeAAAA, func(rr dns.RR) (string, bool) {
		r, ok := rr.(*dns.AAAA)
		if !ok {
			return "", false
		}
		return r.AAAA.String(), true
	})
	if err != nil {
		return aaaa, err
	}
	return Result[string]{
		Records:   append(a.Records, aaaa.Records...),
		NXDomain:  a.NXDomain && aaaa.NXDomain,
		Authentic: a.Authentic && aaaa.Authentic,
		Signed:    a.Signed && aaaa.Signed,
	}, nil
}

// LookupTLSA implements Resolver.
func (c *Client) LookupTLSA(ctx context.Context, name string) (Result[TLSA], error) {
	return lookup(c, ctx, name, dns.TypeTLSA, func(rr dns.RR) (TLSA, bool) {
		t, ok := rr.(*dns.TLSA)
		if !ok {
			return TLSA{}, false
		}
		data, err := hex.DecodeString(t.Certificate)
		if err != nil {
			return TLSA{}, false
		}
		return TLSA{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data}, true
	})
}

// LookupNS returns the name servers of a zone, without trailing dots.
func (c *Client) LookupNS(ctx context.Context, name string) (Result[string], error) {
	return lookup(c, ctx, name, dns.TypeNS, func(rr dns.RR) (string, bool) {
		r, ok := rr.(*dns.NS)
		if !ok {
			return "", false
		}
		return strings.TrimSuffix(r.Ns, "."), true
	})
}

// LookupSOA returns the SOA record of a zone apex.
func (c *Client) LookupSOA(ctx context.Context, name string) (Result[SOA], error) {
	return lookup(c, ctx, name, dns.TypeSOA, func(rr dns.RR) (SOA, bool) {
		r, ok := rr.(*dns.SOA)
		if !ok {
			return SOA{}, false
		}
		return SOA{NS: strings.TrimSuffix(r.Ns, "."), Mbox: strings.TrimSuffix(r.Mbox, "."), Serial: r.Serial, MinTTL: r.Minttl}, true
	})
}

// LookupDS returns the DS records the parent zone holds for a child
// (RFC 4034 5).
func (c *Client) LookupDS(ctx context.Context, name string) (Result[DS], error) {
	return lookup(c, ctx, name, dns.TypeDS, func(rr dns.RR) (DS, bool) {
		r, ok := rr.(*dns.DS)
		if !ok {
			return DS{}, false
		}
		d, err := hex.DecodeString(r.Digest)
		if err != nil {
			return DS{}, false
		}
		return DS{KeyTag: r.KeyTag, Algorithm: r.Algorithm, DigestType: r.DigestType, Digest: d}, true
	})
}

// LookupDNSKEY returns the DNSKEY records at a zone apex (RFC 4034 2).
func (c *Client) LookupDNSKEY(ctx context.Context, name string) (Result[DNSKEY], error) {
	return lookup(c, ctx, name, dns.TypeDNSKEY, func(rr dns.RR) (DNSKEY, bool) {
		r, ok := rr.(*dns.DNSKEY)
		if !ok {
			return DNSKEY{}, false
		}
		return DNSKEY{Flags: r.Flags, Protocol: r.Protocol, Algorithm: r.Algorithm, PublicKey: r.PublicKey, KeyTag: r.KeyTag()}, true
	})
}

// LookupCAA returns the CAA records at a name (RFC 8659; issuemail is RFC
// 9495). It does not climb the tree.
func (c *Client) LookupCAA(ctx context.Context, name string) (Result[CAA], error) {
	return lookup(c, ctx, name, dns.TypeCAA, func(rr dns.RR) (CAA, bool) {
		r, ok := rr.(*dns.CAA)
		if !ok {
			return CAA{}, false
		}
		return CAA{Flag: r.Flag, Tag: r.Tag, Value: r.Value}, true
	})
}

// LookupPTR returns the names of an IP address (reverse DNS), without
// trailing dots.
func (c *Client) LookupPTR(ctx context.Context, addr string) (Result[string], error) {
	rev, err := dns.ReverseAddr(addr)
	if err != nil {
		return Result[string]{}, fmt.Errorf("%w: %q: %w", ErrPermanent, addr, err)
	}
	return lookup(c, ctx, rev, dns.TypePTR, func(rr dns.RR) (string, bool) {
		r, ok := rr.(*dns.PTR)
		if !ok {
			return "", false
		}
		return strings.TrimSuffix(r.Ptr, "."), true
	})
}

func lookup[T any](c *Client, ctx context.Context, name string, qtype uint16, conv func(dns.RR) (T, bool)) (Result[T], error) {
	a, err := c.resolve(ctx, name, qtype)
	if err != nil {
		return Result[T]{}, err
	}
	res := Result[T]{NXDomain: a.nx, Authentic: a.authentic, Signed: a.signed}
	for _, rr := range a.rrs {
		if v, ok := conv(rr); ok {
			res.Records = append(res.Records, v)
		}
	}
	return res, nil
}

// resolve answers name/qtype from the cache or the servers, sharing one
// query between concurrent callers.
func (c *Client) resolve(ctx context.Context, name string, qtype uint16) (*answer, error) {
	fq := dns.CanonicalName(name)
	if _, ok := dns.IsDomainName(fq); !ok || fq == "." && qtype != dns.TypeNS {
		return nil, fmt.Errorf("%w: invalid name %q", ErrPermanent, name)
	}
	key := cacheKey{fq, qtype}
	now := c.now()
	if c.cache != nil {
		if a, ok := c.cache.get(key, now); ok {
			return a, nil
		}
	}
	c.mu.Lock()
	if cl, ok := c.inflight[key]; ok {
		c.mu.Unlock()
		select {
		case <-cl.done:
			return cl.a, cl.err
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %s %s: %w", ErrTemporary, fq, dns.TypeToString[qtype], ctx.Err())
		}
	}
	if c.cache != nil {
		// Again, under c.mu: a call that ended between the first look
		// and the lock put its answer in the cache before it left
		// inflight (below), and asking again would be a second query.
		if a, ok := c.cache.get(key, now); ok {
			c.mu.Unlock()
			return a, nil
		}
	}
	cl := &call{done: make(chan struct{})}
	c.inflight[key] = cl
	c.mu.Unlock()

	a, ttl, err := c.follow(ctx, fq, qtype)
	cl.a, cl.err = a, err
	// Cache first, then retire the call, so that no caller sees neither.
	if err == nil && c.cache != nil && ttl > 0 {
		c.cache.put(key, a, now.Add(min(ttl, c.maxTTL)))
	}
	c.mu.Lock()
	delete(c.inflight, key)
	c.mu.Unlock()
	close(cl.done)
	return a, err
}

type call struct {
	done chan struct{}
	a    *answer
	err  error
}

// follow asks name/qtype and follows CNAME chains (RFC 1034 3.6.2),
// returning the answer and how long it may be cached.
func (c *Client) follow(ctx context.Context, name string, qtype uint16) (*answer, time.Duration, error) {
	a := &answer{authentic: true, signed: true}
	ttl := c.maxTTL
	target := name
	seen := map[string]bool{}
	for hop := 0; ; hop++ {
		if hop > maxCNAME {
			return nil, 0, fmt.Errorf("%w: %s: cname chain too long", ErrPermanent, name)
		}
		r, err := c.exchange(ctx, target, qtype)
		if err != nil {
			return nil, 0, err
		}
		a.authentic = a.authentic && r.AuthenticatedData
		sigs := map[string]bool{} // owner/type covered by an RRSIG
		for _, rr := range r.Answer {
			if s, ok := rr.(*dns.RRSIG); ok {
				sigs[dns.CanonicalName(s.Hdr.Name)+"/"+dns.TypeToString[s.TypeCovered]] = true
			}
		}
		// Walk the chain inside this reply.
		followed := false
		for {
			var next string
			for _, rr := range r.Answer {
				if cn, ok := rr.(*dns.CNAME); ok && qtype != dns.TypeCNAME && dns.CanonicalName(cn.Hdr.Name) == target {
					next = dns.CanonicalName(cn.Target)
					ttl = min(ttl, time.Duration(cn.Hdr.Ttl)*time.Second)
					a.signed = a.signed && sigs[target+"/CNAME"]
					break
				}
			}
			if next == "" {
				break
			}
			if seen[next] || len(seen) > maxCNAME {
				return nil, 0, fmt.Errorf("%w: %s: cname loop", ErrPermanent, name)
			}
			seen[target] = true
			target, followed = next, true
		}
		for _, rr := range r.Answer {
			h := rr.Header()
			if h.Rrtype == qtype && dns.CanonicalName(h.Name) == target {
				a.rrs = append(a.rrs, rr)
				ttl = min(ttl, time.Duration(h.Ttl)*time.Second)
			}
		}
		if len(a.rrs) > 0 {
			a.signed = a.signed && sigs[target+"/"+dns.TypeToString[qtype]]
			return a, ttl, nil
		}
		if r.Rcode == dns.RcodeNameError || !followed {
			// RFC 2308 5: a negative answer is cached for the SOA's
			// minimum or its TTL, whichever is less; without a SOA it
			// is not cached.
			a.nx = r.Rcode == dns.RcodeNameError
			a.signed = a.signed && hasRRSIG(r.Ns)
			neg := time.Duration(0)
			for _, rr := range r.Ns {
				if soa, ok := rr.(*dns.SOA); ok {
					neg = time.Duration(min(soa.Minttl, soa.Hdr.Ttl)) * time.Second
				}
			}
			return a, min(ttl, neg), nil
		}
		// The reply ended at a CNAME whose target it did not answer:
		// ask for the target.
	}
}

func hasRRSIG(rrs []dns.RR) bool {
	for _, rr := range rrs {
		if _, ok := rr.(*dns.RRSIG); ok {
			return true
		}
	}
	return false
}

// exchange asks the servers in turn, Attempts rounds, and returns the
// first NOERROR or NXDOMAIN reply.
func (c *Client) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	if c.zone != nil {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%w: %s %s: %w", ErrTemporary, name, dns.TypeToString[qtype], err)
		}
		return c.exchangeZone(name, qtype), nil
	}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = true  // RFC 6840 5.7: ask for the AD bit
	m.SetEdns0(c.udpSize, true) // RFC 3225: DO, so RRSIGs and AD come back
	var last error
	for attempt := 0; attempt < c.attempts; attempt++ {
		for _, srv := range c.servers {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("%w: %s %s: %w", ErrTemporary, name, dns.TypeToString[qtype], err)
			}
			m.Id = dns.Id()
			r, err := c.exchangeOne(ctx, m, srv)
			if err != nil {
				last = err
				continue
			}
			switch r.Rcode {
			case dns.RcodeSuccess, dns.RcodeNameError:
				return r, nil
			case dns.RcodeServerFailure, dns.RcodeRefused:
				last = fmt.Errorf("%w: %s %s: %s from %s", ErrTemporary, name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode], srv)
			default:
				last = fmt.Errorf("%w: %s %s: %s from %s", ErrPermanent, name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode], srv)
			}
		}
	}
	return nil, last
}

func (c *Client) exchangeOne(ctx context.Context, m *dns.Msg, srv string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	q := m.Question[0]
	udp := &dns.Client{Net: "udp", UDPSize: c.udpSize, Timeout: c.timeout}
	var r *dns.Msg
	co, err := c.udpConn(ctx, srv)
	if err == nil {
		r, _, err = udp.ExchangeWithConnContext(ctx, m, co)
		if err == nil {
			c.putUDPConn(srv, co)
		} else {
			co.Close() // a late reply must not meet the next question
		}
	}
	if err == nil && r.Truncated {
		// RFC 7766 5: retry over TCP when the UDP answer is truncated.
		tcp := &dns.Client{Net: "tcp", Timeout: c.timeout}
		r, _, err = tcp.ExchangeContext(ctx, m, srv)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s via %s: %w", ErrTemporary, q.Name, dns.TypeToString[q.Qtype], srv, err)
	}
	if len(r.Question) != 1 || dns.CanonicalName(r.Question[0].Name) != dns.CanonicalName(q.Name) || r.Question[0].Qtype != q.Qtype {
		return nil, fmt.Errorf("%w: %s %s via %s: reply to another question", ErrPermanent, q.Name, dns.TypeToString[q.Qtype], srv)
	}
	return r, nil
}

// TXTFunc bridges the Client to APIs without a context, such as
// go-msgauth's dkim.VerifyOptions.LookupTXT and dmarc.LookupOptions: the
// returned function asks with ctx. Errors are *net.DNSError as
// net.LookupTXT returns them (IsTemporary for ErrTemporary, IsNotFound for
// a missing name or no TXT record), with the lookup error in UnwrapErr so
// errors.Is still finds ErrTemporary.
func (c *Client) TXTFunc(ctx context.Context) func(domain string) ([]string, error) {
	return TXTFunc(ctx, c)
}

// TXTFunc is Client.TXTFunc for any Resolver.
func TXTFunc(ctx context.Context, r Resolver) func(domain string) ([]string, error) {
	return func(domain string) ([]string, error) {
		res, err := r.LookupTXT(ctx, domain)
		if err != nil {
			return nil, dnsError(domain, err)
		}
		if len(res.Records) == 0 {
			return nil, notFound(domain)
		}
		return res.Records, nil
	}
}
