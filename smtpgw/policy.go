package smtpgw

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"

	"github.com/kakuin/kakuin/govdomain"
)

// Errors of the configuration files.
var (
	// ErrPolicyFile: the sender policy file is malformed.
	ErrPolicyFile = errors.New("smtpgw: sender policy file")
	// ErrCredentialsFile: the credentials file is malformed or readable
	// by others.
	ErrCredentialsFile = errors.New("smtpgw: credentials file")
)

// Client is who is on the other end of a session, as far as the gateway
// knows it.
type Client struct {
	// Addr is the remote IP address.
	Addr netip.Addr
	// User is the name the client authenticated as with SMTP AUTH, or "".
	User string
	// CertNames are the subject CN and DNS SANs of a verified TLS client
	// certificate, or nil.
	CertNames []string
}

// ClientPolicy says which sender domains each client may use. It is read
// from a file (ParseClientPolicy) with one client per line followed by
// its domains:
//
//	# comment
//	user:mhlw-relay        mhlw.go.jp
//	cert:relay.mlit.go.jp  mlit.go.jp
//	net:192.0.2.0/24       soumu.go.jp mhlw.go.jp
//	*                      example.go.jp
//
// A domain allows itself and its subdomains, label-wise (mhlw.go.jp
// allows mhlw.go.jp and x.mhlw.go.jp, not evilmhlw.go.jp); the sender
// suffixes (go.jp) apply on top. The first of these that has a line
// decides for a client: its AUTH name (user:), a name in its verified
// client certificate (cert:, subject CN or DNS SAN), the most specific
// network holding its address (net:), then "*". A client that matches no
// line may use no domain. The policy decides only what an authorised
// client may send as: who may relay at all is decided by the client
// networks, AUTH and client certificates.
type ClientPolicy struct {
	users  map[string][]string
	certs  map[string][]string
	nets   []netEntry
	any    []string
	hasAny bool
}

type netEntry struct {
	prefix  netip.Prefix
	domains []string
}

// ParseClientPolicy reads a policy in the format described at
// ClientPolicy. Errors wrap ErrPolicyFile and name the line.
func ParseClientPolicy(r io.Reader) (*ClientPolicy, error) {
	p := &ClientPolicy{users: map[string][]string{}, certs: map[string][]string{}}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("%w: line %d: a client needs at least one domain", ErrPolicyFile, n)
		}
		var domains []string
		for _, d := range f[1:] {
			c, err := govdomain.Canonical(d)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrPolicyFile, n, err)
			}
			domains = append(domains, c)
		}
		kind, name, _ := strings.Cut(f[0], ":")
		dup := func(m map[string][]string, k string) error {
			if _, ok := m[k]; ok {
				return fmt.Errorf("%w: line %d: %s listed twice", ErrPolicyFile, n, f[0])
			}
			m[k] = domains
			return nil
		}
		var err error
		switch {
		case f[0] == "*":
			if p.hasAny {
				err = fmt.Errorf("%w: line %d: * listed twice", ErrPolicyFile, n)
			}
			p.any, p.hasAny = domains, true
		case kind == "user" && name != "":
			err = dup(p.users, name)
		case kind == "cert" && name != "":
			err = dup(p.certs, strings.ToLower(name))
		case kind == "net" && name != "":
			pfx, perr := netip.ParsePrefix(name)
			if perr != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrPolicyFile, n, perr)
			}
			pfx = pfx.Masked()
			for _, e := range p.nets {
				if e.prefix == pfx {
					return nil, fmt.Errorf("%w: line %d: %s listed twice", ErrPolicyFile, n, f[0])
				}
			}
			p.nets = append(p.nets, netEntry{pfx, domains})
		default:
			err = fmt.Errorf("%w: line %d: client %q: want user:NAME, cert:NAME, net:CIDR or *", ErrPolicyFile, n, f[0])
		}
		if err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPolicyFile, err)
	}
	return p, nil
}

// LoadClientPolicy reads the policy file at path.
func LoadClientPolicy(path string) (*ClientPolicy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPolicyFile, err)
	}
	defer f.Close()
	p, err := ParseClientPolicy(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// domains returns the domains the policy gives c, and whether a line
// matched.
func (p *ClientPolicy) domains(c Client) ([]string, bool) {
	if c.User != "" {
		if d, ok := p.users[c.User]; ok {
			return d, true
		}
	}
	for _, n := range c.CertNames {
		if d, ok := p.certs[strings.ToLower(n)]; ok {
			return d, true
		}
	}
	best := -1
	var bestDomains []string
	if c.Addr.IsValid() {
		a := c.Addr.Unmap()
		for _, e := range p.nets {
			if e.prefix.Contains(a) && e.prefix.Bits() > best {
				best, bestDomains = e.prefix.Bits(), e.domains
			}
		}
	}
	if best >= 0 {
		return bestDomains, true
	}
	return p.any, p.hasAny
}

// Allows reports whether client c may send as domain. A nil policy allows
// every domain (the sender suffixes still apply).
func (p *ClientPolicy) Allows(c Client, domain string) bool {
	if p == nil {
		return true
	}
	ds, _ := p.domains(c)
	for _, d := range ds {
		if govdomain.Within(domain, d) {
			return true
		}
	}
	return false
}

// Credentials are the SMTP AUTH accounts: names and bcrypt hashes.
//
// The file format (ParseCredentials) is one account per line, name and
// hash separated by a colon, as htpasswd -B writes it:
//
//	# comment
//	mhlw-relay:$2y$10$...
type Credentials struct {
	hashes map[string][]byte
}

// dummyHash is compared against when the name is unknown, so that a
// wrong name costs as much time as a wrong password.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("kakuin: no such user"), bcrypt.DefaultCost)
	return h
})

// ParseCredentials reads credentials in the format described at
// Credentials. Errors wrap ErrCredentialsFile and name the line, never
// the hash.
func ParseCredentials(r io.Reader) (*Credentials, error) {
	c := &Credentials{hashes: map[string][]byte{}}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("%w: line %d: want NAME:BCRYPT-HASH", ErrCredentialsFile, n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("%w: line %d: %s: not a bcrypt hash", ErrCredentialsFile, n, name)
		}
		if _, dup := c.hashes[name]; dup {
			return nil, fmt.Errorf("%w: line %d: %s listed twice", ErrCredentialsFile, n, name)
		}
		c.hashes[name] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCredentialsFile, err)
	}
	return c, nil
}

// LoadCredentials reads the credentials file at path. A file readable or
// writable by others (mode & 0o007) is refused: the hashes are secrets.
func LoadCredentials(path string) (*Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCredentialsFile, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCredentialsFile, err)
	}
	if fi.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("%w: %s: mode %v is accessible to others; chmod o-rwx", ErrCredentialsFile, path, fi.Mode().Perm())
	}
	c, err := ParseCredentials(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Verify reports whether password is name's. It takes about as long for
// an unknown name as for a wrong password.
func (c *Credentials) Verify(name, password string) bool {
	if c == nil {
		return false
	}
	h, ok := c.hashes[name]
	if !ok {
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return false
	}
	err := bcrypt.CompareHashAndPassword(h, []byte(password))
	return err == nil
}
