// Package lookup is kakuin's one DNS resolver, built on github.com/miekg/dns
// with a configurable server address, so that tests and audits can point
// at any server and the DNSSEC AD bit (RFC 4035 3.2.3) is visible. It is
// the only package that imports miekg/dns.
package lookup

import (
	"context"
	"errors"
)

// Errors. A missing name or record is not an error: it is a Result with no
// records and NXDomain set or not. An error means the question could not be
// answered (timeout, SERVFAIL, REFUSED, a malformed reply): callers report
// it as temperror / "could not test", never as a missing record.
var (
	// ErrTemporary: timeout, SERVFAIL, network error; worth retrying.
	ErrTemporary = errors.New("lookup: temporary dns failure")
	// ErrPermanent: the reply was malformed or the name is invalid.
	ErrPermanent = errors.New("lookup: dns failure")
)

// Result is the answer to one question.
type Result[T any] struct {
	// Records is the answer's data of the type asked, in answer order,
	// after following CNAMEs.
	Records []T
	// NXDomain is true when the name does not exist (RCODE 3).
	NXDomain bool
	// Authentic is the AD bit of the reply from the configured validating
	// resolver (RFC 4035 3.2.3, RFC 6840 5.8).
	Authentic bool
	// Signed is true when RRSIG records covering the answer (or, for a
	// negative answer, the authority section) came back: the zone is
	// signed, whether or not the resolver validated it (RFC 4035 3.1.1).
	Signed bool
}

// Resolver answers the questions kakuin asks. *Client implements it; tests
// use a real server on loopback from package lookuptest.
type Resolver interface {
	// LookupTXT returns each TXT record as its strings concatenated
	// (RFC 7208 3.3, RFC 6376 3.6.2.2).
	LookupTXT(ctx context.Context, name string) (Result[string], error)
	LookupMX(ctx context.Context, name string) (Result[MX], error)
	// LookupIP returns A and AAAA addresses.
	LookupIP(ctx context.Context, name string) (Result[string], error)
	LookupTLSA(ctx context.Context, name string) (Result[TLSA], error)
}

// ZoneResolver is a Resolver that also asks the zone-level questions of
// the domain audit. *Client implements it.
type ZoneResolver interface {
	Resolver
	LookupNS(ctx context.Context, name string) (Result[string], error)
	LookupSOA(ctx context.Context, name string) (Result[SOA], error)
	LookupDS(ctx context.Context, name string) (Result[DS], error)
	LookupDNSKEY(ctx context.Context, name string) (Result[DNSKEY], error)
	LookupCAA(ctx context.Context, name string) (Result[CAA], error)
	// LookupPTR returns the names of an IP address.
	LookupPTR(ctx context.Context, addr string) (Result[string], error)
}

// SOA is the part of a SOA record (RFC 1035 3.3.13) the audit reads.
type SOA struct {
	NS, Mbox string // without trailing dots
	Serial   uint32
	MinTTL   uint32 // the negative-caching TTL (RFC 2308 4)
}

// DS is one delegation signer record (RFC 4034 5.1).
type DS struct {
	KeyTag     uint16
	Algorithm  uint8
	DigestType uint8
	Digest     []byte
}

// DNSKEY is one zone key (RFC 4034 2.1).
type DNSKEY struct {
	Flags     uint16 // 257 for a key-signing key, 256 for a zone-signing key
	Protocol  uint8
	Algorithm uint8
	PublicKey string // base64, as in the zone file
	KeyTag    uint16 // RFC 4034 Appendix B
}

// CAA is one certification authority authorisation record (RFC 8659 4.1;
// the issuemail tag is RFC 9495).
type CAA struct {
	Flag  uint8
	Tag   string
	Value string
}

// MX is one mail exchanger.
type MX struct {
	Preference uint16
	Host       string // without the trailing dot; "" or "." for a null MX (RFC 7505)
}

// TLSA is one TLSA record (RFC 6698 2.1).
type TLSA struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte
}
