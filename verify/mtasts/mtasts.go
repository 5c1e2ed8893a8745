// Package mtasts parses and fetches SMTP MTA Strict Transport Security
// policies (RFC 8461): the _mta-sts TXT record, the policy file served at
// https://mta-sts.<domain>/.well-known/mta-sts.txt, and the matching of
// MX host names against the policy's mx patterns.
package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Errors.
var (
	ErrNotSTS = errors.New("mtasts: not an mta-sts record")
	ErrSyntax = errors.New("mtasts: syntax error")
	// ErrFetch: the policy could not be fetched as RFC 8461 3.3 demands
	// (HTTPS with a valid certificate, status 200, no redirect,
	// text/plain, at most MaxPolicySize bytes).
	ErrFetch = errors.New("mtasts: fetching policy")
)

// MaxAge is the largest max_age allowed (RFC 8461 3.2: 31557600 s, a year).
const MaxAge = 31557600

// MaxPolicySize bounds the policy body read (RFC 8461 3.3 suggests 64 KiB).
const MaxPolicySize = 64 << 10

// Record is the _mta-sts TXT record (RFC 8461 3.1).
type Record struct {
	// ID identifies the policy version: 1 to 32 alphanumerics.
	ID string
	// Extensions are other fields, in order, as name=value.
	Extensions []string
}

// ParseRecord parses "v=STSv1; id=...;". Text that does not start with
// v=STSv1 gives ErrNotSTS.
func ParseRecord(s string) (*Record, error) {
	fields := strings.Split(s, ";")
	r := &Record{}
	for i, f := range fields {
		f = strings.Trim(f, " \t")
		if f == "" && i == len(fields)-1 && i > 0 {
			break // trailing delimiter
		}
		k, v, ok := strings.Cut(f, "=")
		if i == 0 {
			// RFC 8461 3.1: the version must be first.
			if !ok || k != "v" || v != "STSv1" {
				return nil, ErrNotSTS
			}
			continue
		}
		if !ok || !validFieldName(k) || !validFieldValue(v) {
			return nil, fmt.Errorf("%w: field %q", ErrSyntax, f)
		}
		if k == "id" {
			if r.ID != "" {
				return nil, fmt.Errorf("%w: id twice", ErrSyntax)
			}
			if len(v) < 1 || len(v) > 32 || !isAlnum(v) {
				return nil, fmt.Errorf("%w: id %q is not 1-32 alphanumerics", ErrSyntax, v)
			}
			r.ID = v
			continue
		}
		r.Extensions = append(r.Extensions, k+"="+v)
	}
	if r.ID == "" {
		return nil, fmt.Errorf("%w: no id", ErrSyntax)
	}
	return r, nil
}

// String formats the record.
func (r *Record) String() string {
	s := "v=STSv1; id=" + r.ID + ";"
	for _, e := range r.Extensions {
		s += " " + e + ";"
	}
	return s
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// sts-ext-name = (ALPHA / DIGIT) 0*31(ALPHA / DIGIT / "_" / "-" / ".")
func validFieldName(s string) bool {
	if s == "" || len(s) > 32 || !isAlnum(s[:1]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(string(c)) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)
func validFieldValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == ';' || c == '=' {
			return false
		}
	}
	return true
}

// Mode is a policy mode (RFC 8461 5).
type Mode string

// Modes.
const (
	ModeEnforce Mode = "enforce"
	ModeTesting Mode = "testing"
	ModeNone    Mode = "none"
)

// Policy is a parsed policy file (RFC 8461 3.2).
type Policy struct {
	Mode   Mode
	MX     []string // patterns, lower case: "mx.example.go.jp" or "*.example.go.jp"
	MaxAge int      // seconds
	// Extensions are other keys, as key: value.
	Extensions []string
}

// ParsePolicy parses a policy file: "key: value" lines separated by CRLF
// or LF.
func ParsePolicy(body string) (*Policy, error) {
	p := &Policy{MaxAge: -1}
	version := false
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n") {
		line = strings.TrimRight(line, " \t")
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%w: line %q", ErrSyntax, line)
		}
		k = strings.TrimSpace(k)
		v = strings.TrimSpace(v)
		if k != "mx" && seen[k] {
			// RFC 8461 3.2: only mx may repeat; the first of others
			// wins, but a repeated key is a sign of a broken policy.
			return nil, fmt.Errorf("%w: %s repeated", ErrSyntax, k)
		}
		seen[k] = true
		switch k {
		case "version":
			if v != "STSv1" {
				return nil, fmt.Errorf("%w: version %q", ErrSyntax, v)
			}
			version = true
		case "mode":
			switch m := Mode(v); m {
			case ModeEnforce, ModeTesting, ModeNone:
				p.Mode = m
			default:
				return nil, fmt.Errorf("%w: mode %q", ErrSyntax, v)
			}
		case "max_age":
			// RFC 8461 3.2: max-age-value = 1*10(DIGIT), at most 31557600.
			n, err := strconv.Atoi(v)
			if err != nil || len(v) > 10 || n < 0 || n > MaxAge || strings.Trim(v, "0123456789") != "" {
				return nil, fmt.Errorf("%w: max_age %q", ErrSyntax, v)
			}
			p.MaxAge = n
		case "mx":
			pat := strings.ToLower(strings.TrimSuffix(v, "."))
			if !validPattern(pat) {
				return nil, fmt.Errorf("%w: mx %q", ErrSyntax, v)
			}
			p.MX = append(p.MX, pat)
		default:
			if !validFieldName(k) {
				return nil, fmt.Errorf("%w: key %q", ErrSyntax, k)
			}
			p.Extensions = append(p.Extensions, k+": "+v)
		}
	}
	switch {
	case !version:
		return nil, fmt.Errorf("%w: no version", ErrSyntax)
	case p.Mode == "":
		return nil, fmt.Errorf("%w: no mode", ErrSyntax)
	case p.MaxAge < 0:
		return nil, fmt.Errorf("%w: no max_age", ErrSyntax)
	case len(p.MX) == 0 && p.Mode != ModeNone:
		return nil, fmt.Errorf("%w: no mx", ErrSyntax)
	}
	return p, nil
}

func validPattern(p string) bool {
	p = strings.TrimPrefix(p, "*.")
	if p == "" || len(p) > 253 {
		return false
	}
	for _, l := range strings.Split(p, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// String formats the policy with CRLF line ends (RFC 8461 3.2).
func (p *Policy) String() string {
	var b strings.Builder
	b.WriteString("version: STSv1\r\nmode: " + string(p.Mode) + "\r\n")
	for _, m := range p.MX {
		b.WriteString("mx: " + m + "\r\n")
	}
	b.WriteString("max_age: " + strconv.Itoa(p.MaxAge) + "\r\n")
	for _, e := range p.Extensions {
		b.WriteString(e + "\r\n")
	}
	return b.String()
}

// Matches reports whether host matches one of the policy's mx patterns
// (RFC 8461 4.1): exactly, or "*.example.go.jp" matching one leftmost
// label.
func (p *Policy) Matches(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		if pat == h {
			return true
		}
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			if i := strings.IndexByte(h, '.'); i > 0 && h[i+1:] == rest {
				return true
			}
		}
	}
	return false
}

// FetchOptions configure Fetch. The zero value fetches from the Internet
// with the system roots.
type FetchOptions struct {
	// Addr, if set, is the "host:port" connected to instead of
	// mta-sts.<domain>:443; the certificate is still checked for
	// mta-sts.<domain>. Tests point it at loopback.
	Addr string
	// LookupIP, if set, resolves mta-sts.<domain> (when Addr is empty),
	// so that the policy host is found through the same resolver as the
	// record. Nil means the system resolver.
	LookupIP func(ctx context.Context, host string) ([]string, error)
	// RootCAs verifies the server's certificate. Nil means the system
	// roots.
	RootCAs *x509.CertPool
	// Timeout bounds the whole fetch. Zero means 10 seconds.
	Timeout time.Duration
}

// Fetch gets domain's policy from https://mta-sts.<domain>/.well-known/
// mta-sts.txt (RFC 8461 3.3): a valid certificate for the host, status
// 200, no redirect followed, Content-Type text/plain. It returns the raw
// body too, for evidence. Failures wrap ErrFetch; a policy that does not
// parse wraps ErrSyntax.
func Fetch(ctx context.Context, domain string, opts FetchOptions) (*Policy, string, error) {
	host := "mta-sts." + strings.ToLower(strings.TrimSuffix(domain, "."))
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	dialer := &net.Dialer{Timeout: timeout}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: opts.RootCAs, ServerName: host, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
		Proxy:             nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			switch {
			case opts.Addr != "":
				addr = opts.Addr
			case opts.LookupIP != nil:
				h, port, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				ips, err := opts.LookupIP(ctx, h)
				if err != nil {
					return nil, err
				}
				if len(ips) == 0 {
					return nil, fmt.Errorf("%s has no address", h)
				}
				addr = net.JoinHostPort(ips[0], port)
			}
			return dialer.DialContext(ctx, network, addr)
		},
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		Timeout:   timeout,
		// RFC 8461 3.3: HTTP 3xx redirects MUST NOT be followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/.well-known/mta-sts.txt", nil)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrFetch, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s: %w", ErrFetch, host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("%w: %s: status %s", ErrFetch, host, resp.Status)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, "", fmt.Errorf("%w: %s: content type %q, want text/plain", ErrFetch, host, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s: %w", ErrFetch, host, err)
	}
	if len(body) > MaxPolicySize {
		return nil, "", fmt.Errorf("%w: %s: policy larger than %d bytes", ErrFetch, host, MaxPolicySize)
	}
	p, err := ParsePolicy(string(body))
	return p, string(body), err
}
