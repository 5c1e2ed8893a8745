// Package lookuptest runs an in-process DNS server on 127.0.0.1 (UDP and
// TCP on the same port) for tests, the way net/http/httptest runs an HTTP
// server. It answers from records given as zone-file text and can stand
// in for a validating recursive resolver: it sets the AD bit for chosen
// zones (RFC 4035 3.2.3), signs chosen zones on the fly with real RRSIGs
// (RFC 4034 3), answers SERVFAIL or drops the queries for chosen names,
// forces truncation to exercise TCP fallback, and counts queries.
//
// What it is not: a full authoritative server. There is no NSEC/NSEC3
// denial of existence, no delegation (every name is served from one flat
// store) and wildcards are synthesised at the closest encloser only
// (RFC 4592 3.3.1, simplified).
package lookuptest

import (
	"crypto"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server is a DNS server on loopback. Its methods are safe for concurrent
// use, also while it serves.
type Server struct {
	tb   testing.TB
	addr string

	mu        sync.Mutex
	rrs       map[string][]dns.RR // canonical owner name -> records
	nodes     map[string]bool     // every owner name and its ancestors
	dirty     bool                // nodes must be rebuilt
	authentic map[string]bool     // zone -> set AD
	servfail  map[string]bool     // name -> answer SERVFAIL
	drop      map[string]bool     // name -> never answer
	truncate  map[string]bool     // name -> answer UDP with TC and no records
	keys      map[string]*zoneKey // zone -> signing key
	queries   map[string]int      // "name TYPE" -> count
	noCount   bool                // per-name counting off (Total still counts)
	total     int
}

type zoneKey struct {
	key    *dns.DNSKEY
	signer crypto.Signer
}

// New starts a server on 127.0.0.1 (UDP and TCP, same port) and stops it
// in tb.Cleanup.
func New(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{
		tb:        tb,
		rrs:       map[string][]dns.RR{},
		nodes:     map[string]bool{},
		authentic: map[string]bool{},
		servfail:  map[string]bool{},
		drop:      map[string]bool{},
		truncate:  map[string]bool{},
		keys:      map[string]*zoneKey{},
		queries:   map[string]int{},
	}
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("lookuptest: listen udp: %v", err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i == 20 {
			tb.Fatalf("lookuptest: listen tcp on the udp port: %v", err)
		}
	}
	s.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h, ReadTimeout: 2 * time.Second}
	var wg sync.WaitGroup
	for _, srv := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv.ActivateAndServe()
		}()
		<-started
	}
	tb.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
		wg.Wait()
	})
	return s
}

// Addr is the server's "127.0.0.1:port", for lookup.New.
func (s *Server) Addr() string { return s.addr }

// AddZone adds the records of zone-file text (RFC 1035 5) with origin as
// $ORIGIN; records without a TTL get 300 seconds. A parse error fails
// the test.
func (s *Server) AddZone(origin, text string) {
	s.tb.Helper()
	rrs, err := ParseZone(origin, text)
	if err != nil {
		s.tb.Fatalf("lookuptest: %v", err)
	}
	s.AddRR(rrs...)
}

// AddZones adds zones from a map of origin to zone-file text.
func (s *Server) AddZones(zones map[string]string) {
	s.tb.Helper()
	for origin, text := range zones {
		s.AddZone(origin, text)
	}
}

// ParseZone parses zone-file text into records (300 s default TTL).
func ParseZone(origin, text string) ([]dns.RR, error) {
	zp := dns.NewZoneParser(strings.NewReader(text), dns.Fqdn(origin), "")
	zp.SetDefaultTTL(300)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("zone %s: %w", origin, err)
	}
	return rrs, nil
}

// Add adds records, one per string in zone-file syntax with absolute
// names ("_dmarc.example.go.jp. TXT \"v=DMARC1; p=reject\"").
func (s *Server) Add(records ...string) {
	s.tb.Helper()
	for _, r := range records {
		s.AddZone(".", r)
	}
}

// AddRR adds parsed records.
func (s *Server) AddRR(rrs ...dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		n := dns.CanonicalName(rr.Header().Name)
		rr.Header().Name = n
		s.rrs[n] = append(s.rrs[n], rr)
		s.addNode(n)
	}
}

func (s *Server) addNode(n string) {
	for {
		s.nodes[n] = true
		if n == "." {
			return
		}
		i := strings.IndexByte(n, '.')
		n = n[i+1:]
		if n == "" {
			n = "."
		}
	}
}

// Remove deletes the records of name of type qtype ("TXT", "MX", ...),
// or all records of name when qtype is "".
func (s *Server) Remove(name, qtype string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := dns.CanonicalName(name)
	if qtype == "" {
		delete(s.rrs, n)
	} else {
		t := dns.StringToType[strings.ToUpper(qtype)]
		var keep []dns.RR
		for _, rr := range s.rrs[n] {
			if rr.Header().Rrtype != t {
				keep = append(keep, rr)
			}
		}
		if len(keep) == 0 {
			delete(s.rrs, n)
		} else {
			s.rrs[n] = keep
		}
	}
	s.dirty = true
}

// SetAuthentic makes answers for names in zone (the zone itself and every
// name under it) carry the AD bit, as a validating resolver would for a
// zone that validates.
func (s *Server) SetAuthentic(zone string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authentic[dns.CanonicalName(zone)] = on
}

// SetServFail makes the server answer SERVFAIL for name, any type.
func (s *Server) SetServFail(name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.servfail[dns.CanonicalName(name)] = on
}

// SetDrop makes the server ignore queries for name, so that they time out.
func (s *Server) SetDrop(name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop[dns.CanonicalName(name)] = on
}

// SetTruncate makes UDP answers for name empty with the TC bit, so that
// only TCP gets the records (RFC 7766).
func (s *Server) SetTruncate(name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.truncate[dns.CanonicalName(name)] = on
}

// SignZone makes zone signed: it generates an ECDSA P-256 key (RFC 6605),
// publishes its DNSKEY at the apex and its DS at the apex name (as the
// parent would), and from then on adds RRSIGs to answers in the zone when
// the query has the DO bit. It does not set AD: see SetAuthentic.
func (s *Server) SignZone(zone string) {
	s.tb.Helper()
	z := dns.CanonicalName(zone)
	k := &dns.DNSKEY{Hdr: dns.RR_Header{Name: z, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 300},
		Flags: 257, Protocol: 3, Algorithm: dns.ECDSAP256SHA256}
	priv, err := k.Generate(256)
	if err != nil {
		s.tb.Fatalf("lookuptest: dnskey: %v", err)
	}
	ds := k.ToDS(dns.SHA256)
	s.AddRR(k, ds)
	s.mu.Lock()
	s.keys[z] = &zoneKey{key: k, signer: priv.(crypto.Signer)}
	s.mu.Unlock()
}

// Queries is how many queries for name of type qtype ("TXT", ...) the
// server received, dropped ones included.
func (s *Server) Queries(name, qtype string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[dns.CanonicalName(name)+" "+strings.ToUpper(qtype)]
}

// SetCounting turns per-name query counting (Queries) on or off; it is on
// by default. Benchmarks turn it off so that the server's memory does not
// grow with every new name asked.
func (s *Server) SetCounting(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noCount = !on
}

// Total is how many queries the server received.
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// ResetCounts zeroes the query counters.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.queries)
	s.total = 0
}

// Names lists the owner names held, sorted (for debugging tests).
func (s *Server) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.rrs))
	for n := range s.rrs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	_, isUDP := w.RemoteAddr().(*net.UDPAddr)
	opt := req.IsEdns0()
	do := opt != nil && opt.Do()

	s.mu.Lock()
	if !s.noCount {
		s.queries[name+" "+dns.TypeToString[q.Qtype]]++
	}
	s.total++
	if s.drop[name] {
		s.mu.Unlock()
		return
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	if s.servfail[name] {
		s.mu.Unlock()
		m.Rcode = dns.RcodeServerFailure
		w.WriteMsg(m)
		return
	}
	if s.dirty {
		clear(s.nodes)
		for n := range s.rrs {
			s.addNode(n)
		}
		s.dirty = false
	}
	s.answer(m, name, q.Qtype, do)
	trunc := isUDP && s.truncate[name]
	s.mu.Unlock()

	if opt != nil {
		m.SetEdns0(1232, do)
	}
	if trunc {
		m.Answer, m.Ns, m.Extra = nil, nil, nil
		m.Truncated = true
	} else if isUDP {
		size := 512
		if opt != nil {
			size = int(max(opt.UDPSize(), 512))
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// answer fills m; s.mu is held.
func (s *Server) answer(m *dns.Msg, name string, qtype uint16, do bool) {
	authentic := true
	target := name
	for hop := 0; hop < 8; hop++ {
		authentic = authentic && s.authenticFor(target)
		rrs, exists := s.lookup(target)
		var match []dns.RR
		var cname dns.RR
		for _, rr := range rrs {
			switch {
			case rr.Header().Rrtype == qtype:
				match = append(match, rr)
			case rr.Header().Rrtype == dns.TypeCNAME:
				cname = rr
			}
		}
		if len(match) > 0 {
			m.Answer = append(m.Answer, s.sign(match, do)...)
			break
		}
		if cname != nil && qtype != dns.TypeCNAME {
			m.Answer = append(m.Answer, s.sign([]dns.RR{cname}, do)...)
			target = dns.CanonicalName(cname.(*dns.CNAME).Target)
			continue
		}
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		// RFC 2308 3: the SOA of the zone goes in the authority section
		// of a negative answer.
		if soa := s.soaFor(target); soa != nil {
			m.Ns = append(m.Ns, s.sign([]dns.RR{soa}, do)...)
		}
		break
	}
	// RFC 6840 5.8: AD only when asked for with AD or DO.
	m.AuthenticatedData = authentic && (m.AuthenticatedData || do)
}

// lookup returns the records at name, synthesised from a wildcard when the
// name does not exist, and whether the name exists.
func (s *Server) lookup(name string) ([]dns.RR, bool) {
	if rrs, ok := s.rrs[name]; ok {
		return rrs, true
	}
	if s.nodes[name] {
		return nil, true // an empty non-terminal
	}
	// RFC 4592 3.3.1: the closest encloser's wildcard, if any.
	for n := name; n != "."; {
		i := strings.IndexByte(n, '.')
		n = n[i+1:]
		if n == "" {
			n = "."
		}
		if !s.nodes[n] {
			continue
		}
		wild, ok := s.rrs["*."+n]
		if n == "." {
			wild, ok = s.rrs["*."]
		}
		if !ok {
			return nil, false
		}
		out := make([]dns.RR, len(wild))
		for j, rr := range wild {
			c := dns.Copy(rr)
			c.Header().Name = name
			out[j] = c
		}
		return out, true
	}
	return nil, false
}

func (s *Server) zoneOf(name string) string {
	for n := name; ; {
		for _, rr := range s.rrs[n] {
			if rr.Header().Rrtype == dns.TypeSOA {
				return n
			}
		}
		if n == "." {
			return ""
		}
		i := strings.IndexByte(n, '.')
		n = n[i+1:]
		if n == "" {
			n = "."
		}
	}
}

func (s *Server) soaFor(name string) dns.RR {
	z := s.zoneOf(name)
	if z == "" {
		return nil
	}
	for _, rr := range s.rrs[z] {
		if rr.Header().Rrtype == dns.TypeSOA {
			return rr
		}
	}
	return nil
}

func (s *Server) authenticFor(name string) bool {
	for n := name; ; {
		if on, ok := s.authentic[n]; ok {
			return on
		}
		if n == "." {
			return false
		}
		i := strings.IndexByte(n, '.')
		n = n[i+1:]
		if n == "" {
			n = "."
		}
	}
}

// sign returns the RRset followed by an RRSIG from the key of the zone
// that holds it, when the query had DO and the zone is signed.
func (s *Server) sign(rrset []dns.RR, do bool) []dns.RR {
	if !do {
		return rrset
	}
	name := rrset[0].Header().Name
	var zk *zoneKey
	var zone string
	for n := name; ; {
		if k, ok := s.keys[n]; ok {
			zk, zone = k, n
			break
		}
		if n == "." {
			return rrset
		}
		i := strings.IndexByte(n, '.')
		n = n[i+1:]
		if n == "" {
			n = "."
		}
	}
	now := time.Now()
	sig := &dns.RRSIG{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: rrset[0].Header().Ttl},
		Algorithm: zk.key.Algorithm, SignerName: zone, KeyTag: zk.key.KeyTag(),
		Inception: uint32(now.Add(-time.Hour).Unix()), Expiration: uint32(now.Add(24 * time.Hour).Unix())}
	if err := sig.Sign(zk.signer, rrset); err != nil {
		return rrset
	}
	return append(append([]dns.RR(nil), rrset...), sig)
}
