// Package dkimsign adds DKIM signatures (RFC 6376) to a finished message:
// one signature per key, RSA (rsa-sha256, RFC 8301) and Ed25519
// (ed25519-sha256, RFC 8463), relaxed/relaxed, the RFC 6376 5.4.1 header
// list with every singleton field oversigned (RULES D1), never an l= tag
// (RULES D5) and never rsa-sha1 (RULES D2).
//
// The body is canonicalised and hashed once for all keys, in one pass,
// without allocating: github.com/emersion/go-msgauth/dkim (v0.7.0) hashes
// the body once per signature and allocates two copies of every octet it
// is given, so signing a 25 MB message with two keys cost 100 MB of garbage
// and most of the CPU time (see the signer benchmarks). The header
// canonicalisation and the signature field follow RFC 6376 3.4.2, 3.5 and
// 3.7 directly; the tests check every signature with go-msgauth's verifier
// and with dkimpy, and compare the body hash with go-msgauth's.
package dkimsign

import (
	"bufio"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/rfc5322"
)

// Errors. Each is wrapped with the detail; test them with errors.Is.
var (
	// ErrKey: the keys are unusable (none, no RSA key, an RSA key under
	// 2048 bits, an unsupported type) or a key failed to sign.
	ErrKey = errors.New("dkimsign: signing key")
	// ErrMessage: the message header could not be read.
	ErrMessage = errors.New("dkimsign: malformed message")
)

// MinRSABits is the smallest RSA key this package signs with (RFC 8301
// 3.2: signers MUST use at least 1024 bits and SHOULD use 2048; RULES D2).
const MinRSABits = 2048

// Oversigned are the fields listed in h= once more than they occur, so
// that no copy can be added above the signed one without breaking the
// signature (RFC 6376 5.4.2, 8.15; RULES D1). Each is a singleton (RFC
// 5322 3.6), so h= stays short.
var Oversigned = []string{
	"From", "Sender", "Reply-To", "Subject", "Date", "To", "Cc",
	"Message-ID", "In-Reply-To", "References",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
}

// Signed are the other RFC 6376 5.4.1 fields, signed as often as they
// occur: a mailing list may legitimately add its own copies on top.
var Signed = []string{
	"Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc", "Resent-Message-ID",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Subscribe",
	"List-Post", "List-Owner", "List-Archive",
}

// HeaderKeys returns the h= list for a message with header h: each field
// of Oversigned one time more than it occurs (an absent one once: the
// "null" instance of RFC 6376 5.4.2), then each field of Signed as often as
// it occurs.
func HeaderKeys(h rfc5322.Header) []string {
	var keys []string
	for _, name := range Oversigned {
		for range h.Count(name) + 1 {
			keys = append(keys, name)
		}
	}
	for _, name := range Signed {
		for range h.Count(name) {
			keys = append(keys, name)
		}
	}
	return keys
}

// Signature is one DKIM-Signature field.
type Signature struct {
	// Field is the whole field, "DKIM-Signature: ...", folded, ending in
	// CRLF: prepend it to the message.
	Field string
	// Domain, Selector and Algorithm are the d=, s= and a= tags.
	Domain, Selector, Algorithm string
}

// String returns "d=DOMAIN s=SELECTOR a=ALGORITHM".
func (s Signature) String() string {
	return "d=" + s.Domain + " s=" + s.Selector + " a=" + s.Algorithm
}

// CheckKeys checks that keys can sign: at least one RSA key, since Ed25519
// never signs alone (RFC 8463, RULES D3); RSA keys of at least MinRSABits;
// only RSA and Ed25519. The public half is inspected, the private key is
// only ever a crypto.Signer.
func CheckKeys(keys []pki.DKIMKey) error {
	if len(keys) == 0 {
		return fmt.Errorf("%w: no keys", ErrKey)
	}
	haveRSA := false
	for _, k := range keys {
		if k.Signer == nil || k.Domain == "" || k.Selector == "" {
			return fmt.Errorf("%w: incomplete key d=%q s=%q", ErrKey, k.Domain, k.Selector)
		}
		switch pub := k.Signer.Public().(type) {
		case *rsa.PublicKey:
			if pub.N.BitLen() < MinRSABits {
				return fmt.Errorf("%w: d=%s s=%s: rsa key of %d bits, want at least %d", ErrKey, k.Domain, k.Selector, pub.N.BitLen(), MinRSABits)
			}
			haveRSA = true
		case ed25519.PublicKey:
		default:
			return fmt.Errorf("%w: d=%s s=%s: key type %T", ErrKey, k.Domain, k.Selector, pub)
		}
	}
	if !haveRSA {
		return fmt.Errorf("%w: no rsa key (ed25519 never signs alone, RFC 8463)", ErrKey)
	}
	return nil
}

// Options configure Sign. The zero value is ready to use.
type Options struct {
	// Now gives the t= tag (RFC 6376 3.5). If nil, time.Now.
	Now func() time.Time
	// Rand is passed to the keys' Sign methods. If nil, crypto/rand.Reader.
	Rand io.Reader
}

// Sign reads the message once and returns one signature per key, in the
// order of keys. Prepending the fields to the message, in any order, gives
// the signed message. The message must have CRLF line ends (a bare CR or
// LF is ErrMessage): it is what relays will carry, so it is what is signed.
func Sign(msg io.Reader, keys []pki.DKIMKey, opts Options) ([]Signature, error) {
	if err := CheckKeys(keys); err != nil {
		return nil, err
	}
	now, rnd := time.Now, opts.Rand
	if opts.Now != nil {
		now = opts.Now
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	cr := &countReader{r: msg}
	br := bufio.NewReader(cr) // the body goes on through WriteTo, unbuffered
	h, err := rfc5322.ReadHeader(br, &rfc5322.Options{MaxLineLength: -1})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMessage, err)
	}
	headerLen := int64(0)
	for _, f := range h {
		headerLen += int64(len(f.Raw))
	}
	if cr.n-int64(br.Buffered()) != headerLen+2 {
		// RFC 5322 2.1: the empty line (CRLF) that separates the header
		// from the body; verifiers need it even when the body is empty.
		return nil, fmt.Errorf("%w: header not ended by an empty CRLF line", ErrMessage)
	}
	if h.Count("From") == 0 {
		return nil, fmt.Errorf("%w: no From field (RFC 6376 5.4)", ErrMessage)
	}

	// RFC 6376 3.7: the body hash, the same for every key (same
	// canonicalisation, same hash), computed once.
	bh := sha256.New()
	body := &relaxedBody{h: bh}
	if _, err := br.WriteTo(body); err != nil {
		if errors.Is(err, ErrMessage) {
			return nil, err
		}
		return nil, fmt.Errorf("dkimsign: reading message: %w", err)
	}
	if err := body.Close(); err != nil {
		return nil, err
	}
	bodyHash := base64.StdEncoding.EncodeToString(bh.Sum(nil))

	// RFC 6376 5.4.2: the signed fields, in h= order, each instance picked
	// from the bottom up; a name listed more often than it occurs adds
	// nothing (the "null" instance that makes oversigning work).
	headerKeys := HeaderKeys(h)
	var signedHeader strings.Builder
	picked := map[string]int{}
	for _, name := range headerKeys {
		lower := strings.ToLower(name)
		skip := picked[lower]
		picked[lower]++
		for i := len(h) - 1; i >= 0; i-- {
			if !h[i].Is(name) {
				continue
			}
			if skip > 0 {
				skip--
				continue
			}
			signedHeader.WriteString(relaxedHeader(string(h[i].Raw)))
			break
		}
	}

	t := strconv.FormatInt(now().Unix(), 10)
	sigs := make([]Signature, len(keys))
	for i, k := range keys {
		alg, hashOpt := "rsa-sha256", crypto.Hash(crypto.SHA256)
		if _, ok := k.Signer.Public().(ed25519.PublicKey); ok {
			// RFC 8463 3: Ed25519 signs the SHA-256 hash as its message.
			alg, hashOpt = "ed25519-sha256", crypto.Hash(0)
		}
		// RFC 6376 3.5; c= relaxed/relaxed and no l= (RULES D5).
		field := "DKIM-Signature: v=1; a=" + alg + "; c=relaxed/relaxed;\r\n" +
			" d=" + k.Domain + "; s=" + k.Selector + "; t=" + t + ";\r\n" +
			foldList(" h=", headerKeys) + ";\r\n" +
			" bh=" + bodyHash + ";\r\n" +
			" b="
		// RFC 6376 3.7: the header hash covers the signed fields and this
		// field with an empty b= value, canonicalised, without its CRLF.
		hh := sha256.New()
		io.WriteString(hh, signedHeader.String())
		io.WriteString(hh, strings.TrimSuffix(relaxedHeader(field), "\r\n"))
		sig, err := k.Signer.Sign(rnd, hh.Sum(nil), hashOpt)
		if err != nil {
			return nil, fmt.Errorf("%w: d=%s s=%s: %w", ErrKey, k.Domain, k.Selector, err)
		}
		field += fold(base64.StdEncoding.EncodeToString(sig)) + "\r\n"
		sigs[i] = Signature{Field: field, Domain: k.Domain, Selector: k.Selector, Algorithm: alg}
	}
	return sigs, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// foldList writes prefix and the names joined by colons, folding after a
// colon before a line would pass 76 characters (RFC 6376 3.5 allows FWS
// around the colons of h=).
func foldList(prefix string, names []string) string {
	var b strings.Builder
	b.WriteString(prefix)
	line := len(prefix)
	for i, n := range names {
		if i > 0 {
			b.WriteByte(':')
			line++
			if line+len(n) > 76 {
				b.WriteString("\r\n  ")
				line = 2
			}
		}
		b.WriteString(n)
		line += len(n)
	}
	return b.String()
}

// fold splits a base64 value into lines of 72 characters (RFC 6376 3.5:
// white space in b= is ignored).
func fold(s string) string {
	var b strings.Builder
	for len(s) > 72 {
		b.WriteString(s[:72])
		b.WriteString("\r\n  ")
		s = s[72:]
	}
	b.WriteString(s)
	return b.String()
}

// relaxedHeader canonicalises one raw header field (RFC 6376 3.4.2): name
// lower-cased, line ends removed (unfolding), runs of white space made one
// space, white space at the end of the value and around the colon removed;
// the result ends in CRLF.
func relaxedHeader(raw string) string {
	name, value, _ := strings.Cut(raw, ":")
	var b strings.Builder
	b.Grow(len(raw) + 2)
	b.WriteString(strings.ToLower(strings.TrimRight(name, " \t")))
	b.WriteByte(':')
	wsp, started := false, false
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case '\r', '\n':
			// unfold
		case ' ', '\t':
			wsp = true
		default:
			if wsp && started {
				b.WriteByte(' ')
			}
			wsp, started = false, true
			b.WriteByte(c)
		}
	}
	b.WriteString("\r\n")
	return b.String()
}

// relaxedBody canonicalises a body as it is written (RFC 6376 3.4.4) and
// feeds it to h: runs of white space within a line become one space, white
// space at the end of a line goes, empty lines at the end go, and a
// non-empty body ends in CRLF. It does not allocate per write.
type relaxedBody struct {
	h       hash.Hash
	buf     [8 << 10]byte
	n       int
	wsp     bool // white space pending within the line
	crlfs   int  // line ends held back: they count only if text follows
	cr      bool // the previous octet was CR
	written bool // some text was written
}

func (c *relaxedBody) emit(b byte) {
	if c.n == len(c.buf) {
		c.h.Write(c.buf[:])
		c.n = 0
	}
	c.buf[c.n] = b
	c.n++
}

func (c *relaxedBody) Write(p []byte) (int, error) {
	for i := 0; i < len(p); i++ {
		b := p[i]
		if c.cr {
			if b != '\n' {
				return i, fmt.Errorf("%w: bare CR in the body", ErrMessage)
			}
			c.cr = false
			c.crlfs++
			c.wsp = false // white space at the end of a line is ignored
			continue
		}
		switch b {
		case '\r':
			c.cr = true
		case '\n':
			return i, fmt.Errorf("%w: bare LF in the body", ErrMessage)
		case ' ', '\t':
			c.wsp = true
		default:
			for ; c.crlfs > 0; c.crlfs-- {
				c.emit('\r')
				c.emit('\n')
			}
			if c.wsp {
				c.emit(' ')
				c.wsp = false
			}
			// The run of ordinary octets up to the next special one is
			// copied as is.
			j := i + 1
			for j < len(p) && !special[p[j]] {
				j++
			}
			c.emitRun(p[i:j])
			c.written = true
			i = j - 1
		}
	}
	return len(p), nil
}

// special marks the octets relaxed body canonicalisation looks at.
var special = [256]bool{' ': true, '\t': true, '\r': true, '\n': true}

func (c *relaxedBody) emitRun(p []byte) {
	for len(p) > 0 {
		if c.n == len(c.buf) {
			c.h.Write(c.buf[:])
			c.n = 0
		}
		k := copy(c.buf[c.n:], p)
		c.n += k
		p = p[k:]
	}
}

// Close ends the body: trailing empty lines are dropped, and a non-empty
// body gets its final CRLF.
func (c *relaxedBody) Close() error {
	if c.cr {
		return fmt.Errorf("%w: bare CR at the end of the body", ErrMessage)
	}
	if c.written {
		c.emit('\r')
		c.emit('\n')
	}
	c.h.Write(c.buf[:c.n])
	c.n = 0
	return nil
}
