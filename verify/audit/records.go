package audit

import (
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrRecord: a DKIM key or TLS-RPT record that does not parse.
var ErrRecord = errors.New("audit: invalid record")

// DKIMKey is a parsed DKIM key record (RFC 6376 3.6.1).
type DKIMKey struct {
	// KeyType is k=: "rsa" (the default) or "ed25519" (RFC 8463).
	KeyType string
	// Hashes is h=, lower case; empty means any.
	Hashes []string
	// Flags is t=, lower case: "y" (testing), "s" (strict).
	Flags []string
	// Services is s=; empty means "*".
	Services []string
	// Revoked is true for an empty p= (RFC 6376 3.6.1).
	Revoked bool
	// Bits is the key size: the RSA modulus length, 256 for Ed25519.
	Bits int
	// Public is the key: *rsa.PublicKey or ed25519.PublicKey; nil when
	// revoked.
	Public any
}

// Testing reports t=y.
func (k *DKIMKey) Testing() bool { return contains(k.Flags, "y") }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ParseDKIMKey parses a DKIM key record (RFC 6376 3.6.1, 3.2 tag lists):
// v=DKIM1 first if present, p= required, the key decoded and measured.
func ParseDKIMKey(s string) (*DKIMKey, error) {
	tags, err := tagList(s)
	if err != nil {
		return nil, err
	}
	k := &DKIMKey{KeyType: "rsa"}
	if v, ok := tags.get("v"); ok && (tags[0].k != "v" || v != "DKIM1") {
		// RFC 6376 3.6.1: v= must be first and DKIM1.
		return nil, fmt.Errorf("%w: dkim v=%q (must come first and be DKIM1)", ErrRecord, v)
	}
	if v, ok := tags.get("k"); ok {
		k.KeyType = strings.ToLower(v)
	}
	if v, ok := tags.get("h"); ok {
		k.Hashes = splitColon(v)
	}
	if v, ok := tags.get("t"); ok {
		k.Flags = splitColon(v)
	}
	if v, ok := tags.get("s"); ok {
		k.Services = splitColon(v)
	}
	p, ok := tags.get("p")
	if !ok {
		return nil, fmt.Errorf("%w: dkim key without p=", ErrRecord)
	}
	p = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, p)
	if p == "" {
		k.Revoked = true
		return k, nil
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("%w: dkim p= is not base64: %w", ErrRecord, err)
	}
	switch k.KeyType {
	case "rsa":
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			// Some publish the PKCS#1 RSAPublicKey; verifiers accept it.
			if rk, err2 := x509.ParsePKCS1PublicKey(der); err2 == nil {
				pub, err = rk, nil
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%w: dkim rsa key: %w", ErrRecord, err)
		}
		rk, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: dkim k=rsa but p= holds %T", ErrRecord, pub)
		}
		k.Public, k.Bits = rk, rk.N.BitLen()
	case "ed25519":
		// RFC 8463 4.2: the raw 32-byte key.
		if len(der) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: dkim ed25519 key of %d bytes", ErrRecord, len(der))
		}
		k.Public, k.Bits = ed25519.PublicKey(der), 256
	default:
		return nil, fmt.Errorf("%w: dkim key type %q", ErrRecord, k.KeyType)
	}
	return k, nil
}

func splitColon(v string) []string {
	var out []string
	for _, x := range strings.Split(v, ":") {
		if x = strings.ToLower(strings.TrimSpace(x)); x != "" {
			out = append(out, x)
		}
	}
	return out
}

type tag struct{ k, v string }
type tags []tag

func (t tags) get(k string) (string, bool) {
	for _, x := range t {
		if x.k == k {
			return x.v, true
		}
	}
	return "", false
}

// tagList parses "k=v; k=v" (RFC 6376 3.2): duplicate tags are an error.
func tagList(s string) (tags, error) {
	var out tags
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: %q is not tag=value", ErrRecord, part)
		}
		if seen[k] {
			return nil, fmt.Errorf("%w: tag %s twice", ErrRecord, k)
		}
		seen[k] = true
		out = append(out, tag{k, strings.TrimSpace(v)})
	}
	return out, nil
}

// TLSRPT is a parsed TLS-RPT record (RFC 8460 3).
type TLSRPT struct {
	// RUA are the report destinations: mailto: or https: URIs.
	RUA []string
}

// ParseTLSRPT parses "v=TLSRPTv1; rua=mailto:...,https://...".
func ParseTLSRPT(s string) (*TLSRPT, error) {
	fields := strings.Split(s, ";")
	if strings.TrimSpace(fields[0]) != "v=TLSRPTv1" {
		// RFC 8460 3: the version first.
		return nil, fmt.Errorf("%w: not v=TLSRPTv1", ErrRecord)
	}
	r := &TLSRPT{}
	seen := false
	for _, f := range fields[1:] {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("%w: tls-rpt field %q", ErrRecord, f)
		}
		if strings.TrimSpace(k) != "rua" {
			continue // extensions are ignored
		}
		if seen {
			return nil, fmt.Errorf("%w: rua twice", ErrRecord)
		}
		seen = true
		for _, u := range strings.Split(v, ",") {
			u = strings.TrimSpace(u)
			lu := strings.ToLower(u)
			switch {
			case strings.HasPrefix(lu, "mailto:") && strings.Contains(u, "@") && len(u) > len("mailto:")+2:
			case strings.HasPrefix(lu, "https://") && len(u) > len("https://"):
			default:
				return nil, fmt.Errorf("%w: tls-rpt rua %q is not mailto: or https:", ErrRecord, u)
			}
			r.RUA = append(r.RUA, u)
		}
	}
	if len(r.RUA) == 0 {
		return nil, fmt.Errorf("%w: tls-rpt without rua", ErrRecord)
	}
	return r, nil
}

// String formats the record.
func (r *TLSRPT) String() string { return "v=TLSRPTv1; rua=" + strings.Join(r.RUA, ",") }
