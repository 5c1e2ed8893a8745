package pki

import (
	"cmp"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/kakuin/kakuin/govdomain"
)

// ErrDKIMConfig: the DKIM keys of a domain break a rule (a key under 2048
// bits, Ed25519 without RSA, a domain that is a public suffix).
var ErrDKIMConfig = errors.New("pki: dkim configuration")

// DKIMKeyring holds the DKIM signing keys of each configured domain. It
// implements DKIMKeySource: DKIMKeys returns the keys of the domain or of
// its nearest configured parent, label-wise. A DKIMKeyring is immutable
// and safe for concurrent use; the zero value has no keys.
type DKIMKeyring struct {
	byDomain map[string][]DKIMKey
}

var _ DKIMKeySource = (*DKIMKeyring)(nil)

// LoadDKIMKeyring reads dir/DOMAIN/SELECTOR.key for every domain directory
// in dir (the layout `kakuin pki init` makes, Layout.DKIMDir). Files not
// ending in ".key" and names starting with "." are ignored; symbolic links
// to files and directories are followed (Kubernetes secret volumes). Key files obey
// LoadSigner's rules (mode 0600). The keys are checked as NewDKIMKeyring
// does.
func LoadDKIMKeyring(dir string) (*DKIMKeyring, error) {
	domains, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDKIMConfig, err)
	}
	var keys []DKIMKey
	for _, d := range domains {
		if strings.HasPrefix(d.Name(), ".") || !isDir(dir, d) {
			continue
		}
		files, err := os.ReadDir(filepath.Join(dir, d.Name()))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDKIMConfig, err)
		}
		for _, f := range files {
			name := f.Name()
			if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".key") || !isFile(filepath.Join(dir, d.Name()), f) {
				continue
			}
			k, err := LoadSigner(filepath.Join(dir, d.Name(), name))
			if err != nil {
				return nil, err
			}
			keys = append(keys, DKIMKey{Domain: d.Name(), Selector: strings.TrimSuffix(name, ".key"), Signer: k})
		}
	}
	return NewDKIMKeyring(keys)
}

// NewDKIMKeyring checks keys and indexes them by domain:
//   - RSA keys must have at least 2048 bits (RULES D2, RFC 8301 3.2);
//   - only RSA and Ed25519 keys (RFC 6376, RFC 8463);
//   - a domain with an Ed25519 key must also have an RSA key: Ed25519 is a
//     second signature, never the only one (RULES D3);
//   - a domain may not be a public suffix such as go.jp, whose signature
//     would not align with any sender under DMARC (RULES D6);
//   - selectors are unique per domain and valid DNS labels.
//
// Errors wrap ErrDKIMConfig. Per domain the keys are ordered RSA first, then
// Ed25519, each by selector.
func NewDKIMKeyring(keys []DKIMKey) (*DKIMKeyring, error) {
	r := &DKIMKeyring{byDomain: make(map[string][]DKIMKey)}
	for _, k := range keys {
		d, err := govdomain.Canonical(k.Domain)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDKIMConfig, err)
		}
		if suffix, icann := publicsuffix.PublicSuffix(d); icann && suffix == d {
			// RULES D6: go.jp is a public suffix, no organisational domain.
			return nil, fmt.Errorf("%w: %s is a public suffix", ErrDKIMConfig, d)
		}
		if !validSelector(k.Selector) {
			return nil, fmt.Errorf("%w: %s: invalid selector %q", ErrDKIMConfig, d, k.Selector)
		}
		if k.Signer == nil {
			return nil, fmt.Errorf("%w: %s/%s: no key", ErrDKIMConfig, d, k.Selector)
		}
		switch pub := k.Signer.Public().(type) {
		case *rsa.PublicKey:
			// RULES D2, RFC 8301 3.2: signers MUST use at least 2048 bits.
			if pub.N.BitLen() < 2048 {
				return nil, fmt.Errorf("%w: %s/%s: rsa key of %d bits, at least 2048 required (RFC 8301 3.2): %w",
					ErrDKIMConfig, d, k.Selector, pub.N.BitLen(), ErrKeyType)
			}
		case ed25519.PublicKey:
		default:
			return nil, fmt.Errorf("%w: %s/%s: %T is not a dkim key (rsa or ed25519): %w", ErrDKIMConfig, d, k.Selector, pub, ErrKeyType)
		}
		for _, o := range r.byDomain[d] {
			if o.Selector == k.Selector {
				return nil, fmt.Errorf("%w: %s: selector %q twice", ErrDKIMConfig, d, k.Selector)
			}
		}
		k.Domain = d
		r.byDomain[d] = append(r.byDomain[d], k)
	}
	for d, ks := range r.byDomain {
		slices.SortFunc(ks, func(a, b DKIMKey) int {
			return cmp.Or(cmp.Compare(algRank(a), algRank(b)), strings.Compare(a.Selector, b.Selector))
		})
		if algRank(ks[0]) != 0 {
			// RULES D3, RFC 8463: ed25519 only next to rsa-sha256, since
			// many verifiers do not know it yet.
			return nil, fmt.Errorf("%w: %s has an ed25519 key but no rsa key; ed25519 is never used alone (RFC 8463)", ErrDKIMConfig, d)
		}
	}
	return r, nil
}

func algRank(k DKIMKey) int {
	if _, ok := k.Signer.Public().(*rsa.PublicKey); ok {
		return 0
	}
	return 1
}

// validSelector: one or more dot-separated labels of letters, digits and
// hyphens (RFC 6376 3.1).
func validSelector(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// DKIMKeys returns the keys of domain or, if it has none, of its nearest
// configured parent (RULES D6: "x.mhlw.go.jp" signs with the keys of
// "mhlw.go.jp"), RSA first. The DKIMKey.Domain of each key is the domain it
// is configured for: the d= to use. The slice must not be modified. With no
// keys the error wraps ErrNoDKIMKey.
func (r *DKIMKeyring) DKIMKeys(domain string) ([]DKIMKey, error) {
	d, err := govdomain.Canonical(domain)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoDKIMKey, err)
	}
	if r != nil {
		// Label-wise: drop the leftmost label until a configured domain is
		// found, so "evilmhlw.go.jp" never matches "mhlw.go.jp".
		for p := d; p != ""; {
			if ks, ok := r.byDomain[p]; ok && govdomain.Within(d, p) {
				return ks, nil
			}
			i := strings.IndexByte(p, '.')
			if i < 0 {
				break
			}
			p = p[i+1:]
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNoDKIMKey, d)
}

// Domains lists the configured domains, sorted.
func (r *DKIMKeyring) Domains() []string {
	if r == nil {
		return nil
	}
	ds := make([]string, 0, len(r.byDomain))
	for d := range r.byDomain {
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return ds
}
