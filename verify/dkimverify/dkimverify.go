// Package dkimverify checks every DKIM signature of a message (RFC 6376,
// updated by RFC 8301; Ed25519 by RFC 8463) with
// github.com/emersion/go-msgauth/dkim, keys fetched through the kakuin
// resolver (package lookup) with a context, and adds what that library
// leaves out or decides by the wall clock: x= judged at an injected time,
// l= and an unsigned From reported as weak (policy) rather than as a bare
// failure, the key's algorithm and size as evidence, t=y (testing) flagged,
// and DNS trouble reported as temperror, never as fail.
package dkimverify

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/kakuin/kakuin/rfc5322"
	"github.com/kakuin/kakuin/verify/lookup"
)

// Errors.
var (
	// ErrMessage: the message header cannot be parsed; no signature can be
	// checked.
	ErrMessage = errors.New("dkimverify: malformed message")
	// ErrTags: a tag-list (signature or key record) is malformed (RFC 6376
	// 3.2).
	ErrTags = errors.New("dkimverify: malformed tag-list")
)

// Status is an RFC 8601 result value for dkim (RFC 8601 2.7.1): pass,
// fail, policy, neutral, temperror, permerror.
type Status = authres.ResultValue

// Options configure Verify. Every zero value is documented.
type Options struct {
	// Resolver answers the key queries. If nil, every signature is a
	// temperror ("no resolver").
	Resolver lookup.Resolver
	// Now is the time x= is judged at. If nil, time.Now.
	Now func() time.Time
	// MaxSignatures bounds how many signatures are checked; later ones are
	// reported as neutral and not checked. If zero, 10.
	MaxSignatures int
}

// Result is the outcome of one DKIM-Signature field, in header order.
type Result struct {
	Status Status
	// Reason says why, when Status is not pass.
	Reason string
	// Err is the library's error when there is one.
	Err error
	// Domain (d=), Selector (s=), Identifier (i=), Algorithm (a=) as
	// signed. Canonicalization is c= ("simple/simple" when absent).
	Domain, Selector, Identifier, Algorithm, Canonicalization string
	// HeaderKeys is h=, in order.
	HeaderKeys []string
	// BodyLength is the l= tag, -1 when absent.
	BodyLength int64
	// Weak lists what makes the signature weak: "l= tag" (RFC 6376 8.2),
	// "From not signed" (RFC 6376 5.4), "From not oversigned".
	Weak []string
	// Signed and Expires are t= and x=; zero when absent.
	Signed, Expires time.Time
	// KeyType ("rsa", "ed25519") and KeyBits describe the key found in DNS.
	KeyType string
	KeyBits int
	// Testing is true when the key record has t=y: such a signature must
	// be treated like no signature (RFC 6376 3.6.1).
	Testing bool
	// BPrefix is the start of b= for Authentication-Results header.b
	// (RFC 6008 2): at least 8 characters, enough to tell the message's
	// signatures apart.
	BPrefix string
}

// Verify checks every DKIM-Signature of msg, a canonical (CRLF) message.
// It returns an error wrapping ErrMessage only when the header cannot be
// parsed; a message without signatures gives no results.
func Verify(ctx context.Context, msg []byte, opts Options) ([]*Result, error) {
	// Read as received mail, as package verify reads the same message.
	h, _, err := rfc5322.Parse(msg, &rfc5322.Options{Received: true})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMessage, err)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	max := opts.MaxSignatures
	if max <= 0 {
		max = 10
	}
	var results []*Result
	for _, f := range h {
		if strings.EqualFold(f.Name, "DKIM-Signature") {
			results = append(results, parseSignature(f.Value))
		}
	}
	if len(results) == 0 {
		return nil, nil
	}
	for i, r := range results {
		if i >= max {
			r.Status, r.Reason = authres.ResultNeutral, fmt.Sprintf("not checked: more than %d signatures", max)
		}
	}
	if opts.Resolver == nil {
		for _, r := range results {
			if r.Status == "" {
				r.Status, r.Reason = authres.ResultTempError, "no DNS resolver configured"
			}
		}
		return results, nil
	}
	b := &bridge{ctx: ctx, r: opts.Resolver, records: map[string][]string{}}
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{LookupTXT: b.lookupTXT, MaxVerifications: max})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// An I/O or header error inside the library: it could not run.
		for _, r := range results {
			if r.Status == "" {
				r.Status, r.Reason, r.Err = authres.ResultPermError, "the message could not be read for DKIM: "+err.Error(), err
			}
		}
		return results, nil
	}
	for i, r := range results {
		if r.Status != "" {
			continue
		}
		if i >= len(verifs) {
			r.Status, r.Reason = authres.ResultPermError, "not checked"
			continue
		}
		judge(r, verifs[i], b.key(r), now())
	}
	return results, nil
}

// judge turns the library's verdict into a status, with our own rules on
// top.
func judge(r *Result, v *dkim.Verification, key *Key, now time.Time) {
	r.Err = v.Err
	if key != nil {
		r.KeyType, r.KeyBits, r.Testing = key.Type, key.Bits, key.Testing
	}
	switch {
	case r.Status != "":
		// Already decided while parsing (malformed tags).
		return
	case strings.EqualFold(r.Algorithm, "rsa-sha1"):
		// RFC 8301 3.1, RULES D2: rsa-sha1 never verifies.
		r.Status, r.Reason = authres.ResultFail, "rsa-sha1 is not accepted (RFC 8301 3.1)"
		return
	case !r.Expires.IsZero() && now.After(r.Expires):
		// RFC 6376 3.5 x=: judged at the injected time.
		r.Status, r.Reason = authres.ResultFail, "signature expired at "+r.Expires.UTC().Format(time.RFC3339)
		return
	case containsWeak(r.Weak, "From not signed"):
		// RFC 6376 5.4: From MUST be signed; go-msgauth refuses it too.
		r.Status, r.Reason = authres.ResultPolicy, "weak: the From field is not signed"
		return
	case r.BodyLength >= 0:
		// RFC 6376 8.2: content can be appended after l= octets.
		r.Status, r.Reason = authres.ResultPolicy, "weak: l= tag lets unsigned text be appended to the body"
		return
	}
	err := v.Err
	switch {
	case err == nil:
		r.Status = authres.ResultPass
	case dkim.IsTempFail(err):
		r.Status, r.Reason = authres.ResultTempError, "key lookup failed temporarily: "+err.Error()
	case dkim.IsPermFail(err):
		switch {
		case key != nil && key.Type == "rsa" && key.Bits > 0 && key.Bits < 1024:
			// RFC 8301 3.2, RULES D2.
			r.Status, r.Reason = authres.ResultFail, fmt.Sprintf("RSA key of %d bits is too short (RFC 8301 3.2)", key.Bits)
		case !v.Expiration.IsZero() && time.Now().After(v.Expiration):
			// The library judges x= by the wall clock; at the requested time
			// the signature has not expired but cannot be checked here.
			r.Status, r.Reason = authres.ResultPermError, "signature expired by the system clock; it cannot be checked at the requested time"
		default:
			r.Status, r.Reason = authres.ResultPermError, err.Error()
		}
	default:
		r.Status, r.Reason = authres.ResultFail, err.Error()
	}
}

func containsWeak(w []string, s string) bool {
	for _, x := range w {
		if x == s {
			return true
		}
	}
	return false
}

// parseSignature reads the tags of one DKIM-Signature value.
func parseSignature(v string) *Result {
	r := &Result{BodyLength: -1, Canonicalization: "simple/simple"}
	tags, err := ParseTags(v)
	if err != nil {
		r.Status, r.Reason, r.Err = authres.ResultPermError, err.Error(), err
		return r
	}
	r.Domain = strings.ToLower(stripWS(tags["d"]))
	r.Selector = stripWS(tags["s"])
	r.Identifier = stripWS(tags["i"])
	r.Algorithm = strings.ToLower(stripWS(tags["a"]))
	if c := stripWS(tags["c"]); c != "" {
		r.Canonicalization = c
		if !strings.Contains(c, "/") {
			r.Canonicalization = c + "/simple"
		}
	}
	b := stripWS(tags["b"])
	r.BPrefix = b
	if len(b) > 12 {
		r.BPrefix = b[:12]
	}
	from := 0
	for _, k := range strings.Split(tags["h"], ":") {
		k = stripWS(k)
		if k == "" {
			continue
		}
		r.HeaderKeys = append(r.HeaderKeys, k)
		if strings.EqualFold(k, "from") {
			from++
		}
	}
	switch from {
	case 0:
		r.Weak = append(r.Weak, "From not signed")
	case 1:
		// RFC 6376 8.15: without oversigning, a second From can be added
		// above the signed one. Our From check refuses two From fields.
		r.Weak = append(r.Weak, "From not oversigned")
	}
	if l, ok := tags["l"]; ok {
		r.Weak = append(r.Weak, "l= tag")
		n, err := strconv.ParseInt(stripWS(l), 10, 64)
		if err != nil || n < 0 {
			n = 0
		}
		r.BodyLength = n
	}
	if t, ok := tags["t"]; ok {
		if n, err := strconv.ParseInt(stripWS(t), 10, 64); err == nil {
			r.Signed = time.Unix(n, 0)
		}
	}
	if x, ok := tags["x"]; ok {
		n, err := strconv.ParseInt(stripWS(x), 10, 64)
		if err != nil {
			r.Status, r.Reason = authres.ResultPermError, "malformed x= tag"
			return r
		}
		r.Expires = time.Unix(n, 0)
	}
	for _, req := range []string{"v", "a", "b", "bh", "d", "h", "s"} {
		if _, ok := tags[req]; !ok {
			// RFC 6376 6.1.1.
			r.Status, r.Reason = authres.ResultPermError, "signature lacks the required "+req+"= tag"
			return r
		}
	}
	return r
}

// ParseTags parses a tag-list (RFC 6376 3.2): "tag=value" separated by
// semicolons, white space around names and values ignored. A duplicate
// tag name, an empty name or a spec without "=" wraps ErrTags.
func ParseTags(s string) (map[string]string, error) {
	tags := map[string]string{}
	for _, spec := range strings.Split(s, ";") {
		if strings.TrimSpace(spec) == "" {
			continue
		}
		name, value, ok := strings.Cut(spec, "=")
		if !ok {
			return nil, fmt.Errorf("%w: %q has no '='", ErrTags, strings.TrimSpace(spec))
		}
		name = strings.Trim(name, " \t\r\n")
		if !validTagName(name) {
			return nil, fmt.Errorf("%w: bad tag name %q", ErrTags, name)
		}
		if _, dup := tags[name]; dup {
			return nil, fmt.Errorf("%w: duplicate tag %q", ErrTags, name)
		}
		tags[name] = strings.Trim(value, " \t\r\n")
	}
	return tags, nil
}

// validTagName: ALPHA *ALNUMPUNC (RFC 6376 3.2).
func validTagName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i == 0 && !alpha {
			return false
		}
		if !alpha && !(c >= '0' && c <= '9') && c != '_' {
			return false
		}
	}
	return true
}

func stripWS(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
}

// bridge plugs the resolver, with a context, into go-msgauth's LookupTXT
// hook (which has none) and keeps the answers as evidence.
type bridge struct {
	ctx     context.Context
	r       lookup.Resolver
	mu      sync.Mutex
	records map[string][]string
}

func (b *bridge) lookupTXT(name string) ([]string, error) {
	res, err := b.r.LookupTXT(b.ctx, name)
	if err != nil {
		// go-msgauth reports a temporary net.Error as a temporary failure
		// and anything else as permanent: keep DNS trouble temporary
		// unless the resolver said it is permanent.
		return nil, &net.DNSError{Err: err.Error(), Name: name, IsTemporary: !errors.Is(err, lookup.ErrPermanent), UnwrapErr: err}
	}
	b.mu.Lock()
	b.records[strings.ToLower(strings.TrimSuffix(name, "."))] = res.Records
	b.mu.Unlock()
	return res.Records, nil
}

// Key is what a key record says about the key (RFC 6376 3.6.1).
type Key struct {
	// Type is k=: "rsa" (the default) or "ed25519".
	Type string
	// Bits is the key size; 0 when p= is empty (revoked) or unreadable.
	Bits int
	// Testing is t=y.
	Testing bool
}

func (b *bridge) key(r *Result) *Key {
	b.mu.Lock()
	recs := b.records[strings.ToLower(r.Selector+"._domainkey."+r.Domain)]
	b.mu.Unlock()
	if len(recs) != 1 {
		return nil
	}
	k, err := ParseKey(recs[0])
	if err != nil {
		return nil
	}
	return k
}

// ParseKey reads a DKIM key record (RFC 6376 3.6.1, RFC 8463 4.2). A
// malformed tag-list wraps ErrTags.
func ParseKey(txt string) (*Key, error) {
	tags, err := ParseTags(txt)
	if err != nil {
		return nil, err
	}
	k := &Key{Type: strings.ToLower(stripWS(tags["k"]))}
	if k.Type == "" {
		k.Type = "rsa"
	}
	for _, f := range strings.Split(tags["t"], ":") {
		if stripWS(f) == "y" {
			k.Testing = true
		}
	}
	p, err := base64.StdEncoding.DecodeString(stripWS(tags["p"]))
	if err != nil {
		return nil, fmt.Errorf("%w: p=: %w", ErrTags, err)
	}
	switch k.Type {
	case "rsa":
		if len(p) == 0 {
			return k, nil
		}
		pub, err := x509.ParsePKIXPublicKey(p)
		if err != nil {
			pk, err2 := x509.ParsePKCS1PublicKey(p)
			if err2 != nil {
				return k, nil
			}
			pub = pk
		}
		if rk, ok := pub.(*rsa.PublicKey); ok {
			k.Bits = rk.N.BitLen()
		}
	case "ed25519":
		k.Bits = len(p) * 8
	}
	return k, nil
}
