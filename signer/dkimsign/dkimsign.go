// Package dkimsign adds DKIM signatures (RFC 6376) to a finished message:
// one signature per key, RSA (rsa-sha256, RFC 8301) and Ed25519
// (ed25519-sha256, RFC 8463), relaxed/relaxed, the RFC 6376 5.4.1 header
// list with every singleton field oversigned (RULES D1), never an l= tag
// (RULES D5) and never rsa-sha1 (RULES D2).
//
// The signatures are made by github.com/emersion/go-msgauth/dkim: one
// streaming dkim.Signer per key, all fed in one pass over the message, none
// holding a copy of it. This package chooses the keys and the header list
// and checks what the library does not: CRLF line ends (the library
// silently turns a bare LF into CRLF, and would sign bytes that are not
// the ones sent), an ended header with a From field, and line lengths of
// the field it returns.
//
// The library takes t= (RFC 6376 3.5) from time.Now and its randomness
// from crypto/rand: neither can be injected.
package dkimsign

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/rfc5322"
)

// Errors. Each is wrapped with the detail; test them with errors.Is.
var (
	// ErrKey: the keys are unusable (none, no RSA key, an RSA key under
	// 2048 bits, an unsupported type) or a key failed to sign.
	ErrKey = errors.New("dkimsign: signing key")
	// ErrMessage: the message header could not be read, or the message is
	// not CRLF text.
	ErrMessage = errors.New("dkimsign: malformed message")
)

// MinRSABits is the smallest RSA key this package signs with (RFC 8301
// 3.2: signers MUST use at least 1024 bits and SHOULD use 2048; RULES D2).
const MinRSABits = 2048

// maxLine is the longest line of a header field, CRLF excluded (RFC 5322
// 2.1.1). go-msgauth writes the h= tag on one line, since h= has no white
// space at which it could be folded after signing.
const maxLine = 998

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

// Sign reads the message once and returns one signature per key, in the
// order of keys. Prepending the fields to the message, in any order, gives
// the signed message. The message must have CRLF line ends (a bare CR or
// LF is ErrMessage): it is what relays will carry, so it is what is signed.
// go-msgauth takes the t= tag from time.Now and its randomness from
// crypto/rand; neither can be injected.
func Sign(msg io.Reader, keys []pki.DKIMKey) ([]Signature, error) {
	if err := CheckKeys(keys); err != nil {
		return nil, err
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
	headerKeys := HeaderKeys(h)

	signers := make([]*dkim.Signer, len(keys))
	writers := make([]io.Writer, len(keys))
	defer func() {
		// A Signer's goroutine waits for the rest of the message until it
		// is closed; on success they are closed already (Close again is a
		// no-op).
		for _, s := range signers {
			if s != nil {
				s.Close() //nolint:errcheck // the error path reports its own
			}
		}
	}()
	for i, k := range keys {
		s, err := dkim.NewSigner(&dkim.SignOptions{
			Domain:   k.Domain,
			Selector: k.Selector,
			Signer:   k.Signer,
			// RULES D2: rsa-sha256 and ed25519-sha256, never sha1.
			Hash: crypto.SHA256,
			// RULES D5: relaxed/relaxed (the library's default is
			// simple/simple); the library never writes l=.
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			// RULES D1, RFC 6376 5.4.2: the library's header picker skips
			// a name listed more often than it occurs, the "null" instance
			// that makes oversigning work.
			HeaderKeys: headerKeys,
		})
		if err != nil {
			return nil, fmt.Errorf("%w: d=%s s=%s: %w", ErrKey, k.Domain, k.Selector, err)
		}
		signers[i], writers[i] = s, s
	}

	// One pass: every signer gets each piece as it goes by. Each write
	// is a hand-off to each signer's goroutine, so the header goes in one.
	w := &crlfWriter{w: io.MultiWriter(writers...)}
	head := make([]byte, 0, headerLen+2)
	for _, f := range h {
		head = append(head, f.Raw...)
	}
	if _, err := w.Write(append(head, "\r\n"...)); err != nil {
		return nil, readError(err)
	}
	if _, err := br.WriteTo(w); err != nil {
		return nil, readError(err)
	}
	if w.cr {
		return nil, fmt.Errorf("%w: bare CR at the end", ErrMessage)
	}

	sigs := make([]Signature, len(keys))
	for i, s := range signers {
		if err := s.Close(); err != nil {
			return nil, fmt.Errorf("%w: d=%s s=%s: %w", ErrKey, keys[i].Domain, keys[i].Selector, err)
		}
		field := s.Signature()
		for line := range strings.SplitSeq(strings.TrimSuffix(field, "\r\n"), "\r\n") {
			if len(line) > maxLine {
				// RFC 5322 2.1.1; only a message with dozens of
				// Resent-* or List-* fields makes h= this long.
				return nil, fmt.Errorf("%w: DKIM-Signature line of %d octets: too many fields to sign", ErrMessage, len(line))
			}
		}
		alg := "rsa-sha256"
		if _, ok := keys[i].Signer.Public().(ed25519.PublicKey); ok {
			alg = "ed25519-sha256" // RFC 8463 3
		}
		sigs[i] = Signature{Field: field, Domain: keys[i].Domain, Selector: keys[i].Selector, Algorithm: alg}
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

func readError(err error) error {
	if errors.Is(err, ErrMessage) {
		return err
	}
	return fmt.Errorf("dkimsign: reading message: %w", err)
}

// crlfWriter passes everything on and fails on the first bare CR or LF:
// go-msgauth would sign a bare LF as CRLF, and a relay may or may not
// change it the same way.
type crlfWriter struct {
	w  io.Writer
	cr bool // the previous octet was CR
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	rest := p
	if c.cr && len(rest) > 0 {
		if rest[0] != '\n' {
			return 0, fmt.Errorf("%w: bare CR", ErrMessage)
		}
		c.cr, rest = false, rest[1:]
	}
	// Line by line with IndexByte, which is vectorised: a CR only just
	// before each LF, and every LF after a CR.
	for len(rest) > 0 {
		k := bytes.IndexByte(rest, '\n')
		if k < 0 {
			if i := bytes.IndexByte(rest, '\r'); i >= 0 && i < len(rest)-1 {
				return 0, fmt.Errorf("%w: bare CR", ErrMessage)
			}
			c.cr = rest[len(rest)-1] == '\r'
			break
		}
		if k == 0 || rest[k-1] != '\r' {
			return 0, fmt.Errorf("%w: bare LF", ErrMessage)
		}
		if bytes.IndexByte(rest[:k-1], '\r') >= 0 {
			return 0, fmt.Errorf("%w: bare CR", ErrMessage)
		}
		rest = rest[k+1:]
	}
	return c.w.Write(p)
}
