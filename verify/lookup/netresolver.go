package lookup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// NetResolver adapts a Resolver to the method set of *net.Resolver
// that libraries such as blitiri.com.ar/go/spf (spf.WithResolver) expect.
// Errors are *net.DNSError the way net.Resolver returns them: IsNotFound
// for a missing name or no records, IsTemporary for ErrTemporary, with
// the lookup error in UnwrapErr.
type NetResolver struct {
	// R answers the questions. LookupAddr needs R to also have
	// LookupPTR (a ZoneResolver has); without it LookupAddr fails with
	// ErrPermanent.
	R Resolver
}

func dnsError(name string, err error) error {
	return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: errors.Is(err, ErrTemporary),
		IsTimeout: errors.Is(err, context.DeadlineExceeded), UnwrapErr: err}
}

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// LookupTXT returns the TXT records of name, strings concatenated.
func (n NetResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return TXTFunc(ctx, n.R)(name)
}

// LookupMX returns the MX records of name, with trailing dots on hosts as
// net.Resolver has them.
func (n NetResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	res, err := n.R.LookupMX(ctx, name)
	if err != nil {
		return nil, dnsError(name, err)
	}
	if len(res.Records) == 0 {
		return nil, notFound(name)
	}
	out := make([]*net.MX, 0, len(res.Records))
	for _, m := range res.Records {
		out = append(out, &net.MX{Host: m.Host + ".", Pref: m.Preference})
	}
	return out, nil
}

// LookupIPAddr returns the A and AAAA addresses of host.
func (n NetResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	res, err := n.R.LookupIP(ctx, host)
	if err != nil {
		return nil, dnsError(host, err)
	}
	var out []net.IPAddr
	for _, s := range res.Records {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, net.IPAddr{IP: a.AsSlice()})
		}
	}
	if len(out) == 0 {
		return nil, notFound(host)
	}
	return out, nil
}

// LookupAddr returns the PTR names of addr, with trailing dots.
func (n NetResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	pr, ok := n.R.(interface {
		LookupPTR(ctx context.Context, addr string) (Result[string], error)
	})
	if !ok {
		return nil, dnsError(addr, fmt.Errorf("%w: resolver cannot look up ptr records", ErrPermanent))
	}
	res, err := pr.LookupPTR(ctx, addr)
	if err != nil {
		return nil, dnsError(addr, err)
	}
	if len(res.Records) == 0 {
		return nil, notFound(addr)
	}
	out := make([]string, len(res.Records))
	for i, s := range res.Records {
		out[i] = s + "."
	}
	return out, nil
}
