package lookup

import (
	"fmt"
	"net"

	"github.com/miekg/dns"
)

// DSRecord returns, in zone-file syntax, the SHA-256 DS record (RFC 4034
// 5, RFC 4509) that a parent zone publishes for the key k of zone.
func DSRecord(zone string, k DNSKEY) (string, error) {
	key := &dns.DNSKEY{
		Hdr:   dns.RR_Header{Name: dns.Fqdn(zone), Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600},
		Flags: k.Flags, Protocol: k.Protocol, Algorithm: k.Algorithm, PublicKey: k.PublicKey,
	}
	ds := key.ToDS(dns.SHA256)
	if ds == nil {
		return "", fmt.Errorf("%w: cannot make a ds record for %s", ErrPermanent, zone)
	}
	return ds.String(), nil
}

// SystemServers returns the name servers of /etc/resolv.conf as
// "host:port", for a default when none is configured.
func SystemServers() ([]string, error) {
	cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	var out []string
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no nameserver in /etc/resolv.conf", ErrPermanent)
	}
	return out, nil
}
