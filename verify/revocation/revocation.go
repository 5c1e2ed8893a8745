// Package revocation tells whether a certificate has been revoked: from
// CRLs given as files, from OCSP responders the certificate names (RFC
// 6960, golang.org/x/crypto/ocsp), and from CRLs fetched over HTTP from the
// certificate's distribution points (RFC 5280 4.2.1.13, 5), cached until
// their nextUpdate and bounded in size and time.
package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"golang.org/x/crypto/ocsp"
)

// Errors.
var (
	// ErrCRLFile: a CRL file could not be read or parsed.
	ErrCRLFile = errors.New("revocation: crl file")
	// ErrFetch: a CRL or OCSP answer could not be fetched or was unusable.
	ErrFetch = errors.New("revocation: fetching")
)

// Status: pass (not revoked, by a current CRL or OCSP answer), fail
// (revoked), none (no source: offline, or the certificate names none),
// temperror (a source could not be reached or was stale).
type Status = authres.ResultValue

// Options configure a Checker. Every zero value is documented.
type Options struct {
	// CRLFiles are CRLs (DER or PEM) consulted before anything is fetched.
	CRLFiles []string
	// Offline: fetch nothing (CRL files still count).
	Offline bool
	// HTTPClient fetches CRLs and asks OCSP responders. If nil, a client
	// without redirects whose requests are bounded by Timeout.
	HTTPClient *http.Client
	// Timeout bounds one fetch. If zero, 10 seconds.
	Timeout time.Duration
	// MaxCRLSize bounds a fetched CRL or OCSP answer in bytes. If zero,
	// 10 MiB.
	MaxCRLSize int64
	// Now is the clock CRL freshness is judged by. If nil, time.Now.
	Now func() time.Time
}

// Checker checks revocation. It is safe for concurrent use and caches
// fetched CRLs by URL until their nextUpdate.
type Checker struct {
	opts  Options
	files []*x509.RevocationList
	mu    sync.Mutex
	cache map[string]*x509.RevocationList
}

// New loads the CRL files and returns a Checker.
func New(opts Options) (*Checker, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.MaxCRLSize <= 0 {
		opts.MaxCRLSize = 10 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{
			Timeout: opts.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	c := &Checker{opts: opts, cache: map[string]*x509.RevocationList{}}
	for _, f := range opts.CRLFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCRLFile, err)
		}
		crls, err := ParseCRLs(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrCRLFile, f, err)
		}
		c.files = append(c.files, crls...)
	}
	return c, nil
}

// ParseCRLs parses one DER CRL or any number of PEM "X509 CRL" blocks.
func ParseCRLs(b []byte) ([]*x509.RevocationList, error) {
	if !bytes.Contains(b, []byte("-----BEGIN")) {
		l, err := x509.ParseRevocationList(b)
		if err != nil {
			return nil, err
		}
		return []*x509.RevocationList{l}, nil
	}
	var out []*x509.RevocationList
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "X509 CRL" {
			continue
		}
		l, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, errors.New("no X509 CRL block")
	}
	return out, nil
}

// Result is the revocation status of one certificate.
type Result struct {
	Status Status
	// Reason says why, in words.
	Reason string
	// Source names what answered: "file", a CRL URL or an OCSP URL.
	Source string
	// RevokedAt is the revocation time when revoked.
	RevokedAt time.Time
}

// Chain checks every certificate of a verified chain (signer first,
// anchor last) against its issuer and returns the worst result: fail
// before temperror before none before pass. The anchor itself is not
// checked.
func (c *Checker) Chain(ctx context.Context, chain []*x509.Certificate) Result {
	worst := Result{Status: authres.ResultPass}
	rank := map[Status]int{authres.ResultPass: 0, authres.ResultNone: 1, authres.ResultTempError: 2, authres.ResultFail: 3}
	for i := 0; i+1 < len(chain); i++ {
		r := c.Check(ctx, chain[i], chain[i+1])
		if i > 0 && r.Reason != "" {
			r.Reason = fmt.Sprintf("%q: %s", chain[i].Subject.CommonName, r.Reason)
		}
		if rank[r.Status] > rank[worst.Status] || (i == 0 && r.Status == worst.Status) {
			worst = r
		}
	}
	return worst
}

// Check tells whether cert, issued by issuer, is revoked: CRL files first,
// then (unless offline) OCSP, then the CRL distribution points.
func (c *Checker) Check(ctx context.Context, cert, issuer *x509.Certificate) Result {
	now := c.opts.Now()
	for _, l := range c.files {
		if r, ok := judgeCRL(l, cert, issuer, now, "file"); ok {
			return r
		}
	}
	if c.opts.Offline {
		return Result{Status: authres.ResultNone, Reason: "offline: revocation not checked"}
	}
	var problems []string
	for _, u := range cert.OCSPServer {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			continue
		}
		r, err := c.ocsp(ctx, u, cert, issuer)
		if err == nil {
			return r
		}
		problems = append(problems, err.Error())
	}
	for _, u := range cert.CRLDistributionPoints {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			continue
		}
		l, err := c.crl(ctx, u, issuer, now)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if r, ok := judgeCRL(l, cert, issuer, now, u); ok {
			return r
		}
		problems = append(problems, u+": not a current CRL from the issuer")
	}
	if len(problems) > 0 {
		return Result{Status: authres.ResultTempError, Reason: "revocation could not be checked: " + strings.Join(problems, "; ")}
	}
	return Result{Status: authres.ResultNone, Reason: "the certificate names no CRL distribution point or OCSP responder"}
}

// judgeCRL applies l to cert if l is a current CRL signed by issuer (RFC
// 5280 6.3.3).
func judgeCRL(l *x509.RevocationList, cert, issuer *x509.Certificate, now time.Time, src string) (Result, bool) {
	if !bytes.Equal(l.RawIssuer, cert.RawIssuer) || l.CheckSignatureFrom(issuer) != nil {
		return Result{}, false
	}
	if !l.NextUpdate.IsZero() && now.After(l.NextUpdate) {
		return Result{Status: authres.ResultTempError, Reason: "the CRL from " + src + " is stale (nextUpdate " + l.NextUpdate.UTC().Format(time.RFC3339) + ")", Source: src}, true
	}
	for _, e := range l.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			return Result{Status: authres.ResultFail, Reason: "the certificate was revoked on " + e.RevocationTime.UTC().Format(time.RFC3339), Source: src, RevokedAt: e.RevocationTime}, true
		}
	}
	return Result{Status: authres.ResultPass, Source: src}, true
}

func (c *Checker) fetch(ctx context.Context, req *http.Request) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	resp, err := c.opts.HTTPClient.Do(req.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s: HTTP %d", ErrFetch, req.URL, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.opts.MaxCRLSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrFetch, req.URL, err)
	}
	if int64(len(b)) > c.opts.MaxCRLSize {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrFetch, req.URL, c.opts.MaxCRLSize)
	}
	return b, nil
}

func (c *Checker) crl(ctx context.Context, u string, issuer *x509.Certificate, now time.Time) (*x509.RevocationList, error) {
	c.mu.Lock()
	l, ok := c.cache[u]
	c.mu.Unlock()
	if ok && (l.NextUpdate.IsZero() || now.Before(l.NextUpdate)) {
		return l, nil
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	b, err := c.fetch(ctx, req)
	if err != nil {
		return nil, err
	}
	l, err = x509.ParseRevocationList(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrFetch, u, err)
	}
	if err := l.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("%w: %s: CRL signature: %w", ErrFetch, u, err)
	}
	c.mu.Lock()
	if len(c.cache) > 256 {
		clear(c.cache)
	}
	c.cache[u] = l
	c.mu.Unlock()
	return l, nil
}

// ocsp asks one responder (RFC 6960 A.1, HTTP POST). Unknown is an error:
// the CRL is tried next.
func (c *Checker) ocsp(ctx context.Context, u string, cert, issuer *x509.Certificate) (Result, error) {
	der, err := ocsp.CreateRequest(cert, issuer, nil)
	if err != nil {
		return Result{}, fmt.Errorf("%w: ocsp request: %w", ErrFetch, err)
	}
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(der))
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	b, err := c.fetch(ctx, req)
	if err != nil {
		return Result{}, err
	}
	resp, err := ocsp.ParseResponseForCert(b, cert, issuer)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %s: %w", ErrFetch, u, err)
	}
	now := c.opts.Now()
	// RFC 6960 4.2.2.1: an answer past its nextUpdate is not current.
	if !resp.NextUpdate.IsZero() && now.After(resp.NextUpdate) {
		return Result{}, fmt.Errorf("%w: %s: stale OCSP answer", ErrFetch, u)
	}
	switch resp.Status {
	case ocsp.Good:
		return Result{Status: authres.ResultPass, Source: u}, nil
	case ocsp.Revoked:
		return Result{Status: authres.ResultFail, Reason: "the certificate was revoked on " + resp.RevokedAt.UTC().Format(time.RFC3339) + " (OCSP)", Source: u, RevokedAt: resp.RevokedAt}, nil
	}
	return Result{}, fmt.Errorf("%w: %s: OCSP status unknown", ErrFetch, u)
}
