package lookup

import (
	"fmt"
	"io"
	"strings"

	"github.com/miekg/dns"
)

// NewZone returns a Client that answers from the records of a zone file
// (RFC 1035 5 master-file syntax) instead of asking a server: for
// development and for checking messages against records before they are
// published, e.g. the dns.zone that `kakuin pki init` writes. A name with
// no record of any type is NXDOMAIN; answers are never Authentic. Every
// Lookup method, CNAME following included, behaves as with a server.
func NewZone(r io.Reader, origin string) (*Client, error) {
	zp := dns.NewZoneParser(r, dns.Fqdn(origin), "")
	zone := map[string][]dns.RR{}
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		name := strings.ToLower(rr.Header().Name)
		zone[name] = append(zone[name], rr)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("%w: zone file: %w", ErrPermanent, err)
	}
	c, err := New([]string{"zone"}, Options{})
	if err != nil {
		return nil, err
	}
	c.servers, c.zone = nil, zone
	return c, nil
}

// exchangeZone answers a question from c.zone as an authoritative server
// would (RFC 1034 4.3.2, without delegation or wildcards).
func (c *Client) exchangeZone(name string, qtype uint16) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	r := new(dns.Msg)
	r.SetReply(q)
	rrs, ok := c.zone[strings.ToLower(dns.Fqdn(name))]
	if !ok {
		r.Rcode = dns.RcodeNameError
		return r
	}
	for _, rr := range rrs {
		if t := rr.Header().Rrtype; t == qtype || t == dns.TypeCNAME {
			r.Answer = append(r.Answer, rr)
		}
	}
	return r
}
