// Package dkimsign adds DKIM signatures (RFC 6376) to a finished message
// with github.com/emersion/go-msgauth/dkim: one signature per key, RSA
// (rsa-sha256, RFC 8301) and Ed25519 (ed25519-sha256, RFC 8463), all
// computed in one pass over the message.
//
// go-msgauth signs with simple/simple and every header field unless told
// otherwise; this package always sets relaxed/relaxed and the RFC 6376
// 5.4.1 header list with every singleton field oversigned (RULES D1), never
// an l= tag (RULES D5) and never rsa-sha1 (RULES D2).
package dkimsign

import (
	"bufio"
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

// Sign reads the message (CRLF line ends) once and returns one signature
// per key, in the order of keys. Prepending the fields to the message, in
// any order, gives the signed message.
func Sign(msg io.Reader, keys []pki.DKIMKey) ([]Signature, error) {
	if err := CheckKeys(keys); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(msg, 32<<10)
	h, err := rfc5322.ReadHeader(br, &rfc5322.Options{MaxLineLength: -1})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMessage, err)
	}
	if h.Count("From") == 0 {
		return nil, fmt.Errorf("%w: no From field (RFC 6376 5.4)", ErrMessage)
	}
	headerKeys := HeaderKeys(h)
	signers := make([]*dkim.Signer, 0, len(keys))
	writers := make([]io.Writer, 0, len(keys))
	closeAll := func() {
		for _, s := range signers {
			s.Close() //nolint:errcheck // already failing
		}
	}
	for _, k := range keys {
		s, err := dkim.NewSigner(&dkim.SignOptions{
			Domain:   k.Domain,
			Selector: k.Selector,
			Signer:   k.Signer,
			// RULES D2: sha256 only; go-msgauth refuses sha1 anyway.
			Hash: 0,
			// RULES D5: relaxed/relaxed, set explicitly.
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			// RULES D1, RFC 6376 5.4.1-5.4.2.
			HeaderKeys: headerKeys,
			// No l= (RULES D5): go-msgauth never writes one.
		})
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("%w: d=%s s=%s: %w", ErrKey, k.Domain, k.Selector, err)
		}
		signers = append(signers, s)
		writers = append(writers, s)
	}
	// One pass: every signer hashes the same bytes as they go by.
	w := io.MultiWriter(writers...)
	if _, err := h.WriteTo(w); err != nil {
		closeAll()
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	if _, err := br.WriteTo(w); err != nil {
		closeAll()
		return nil, fmt.Errorf("dkimsign: reading message: %w", err)
	}
	sigs := make([]Signature, len(keys))
	var firstErr error
	for i, s := range signers {
		if err := s.Close(); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%w: d=%s s=%s: %w", ErrKey, keys[i].Domain, keys[i].Selector, err)
			}
			continue
		}
		alg := "rsa-sha256"
		if _, ok := keys[i].Signer.Public().(ed25519.PublicKey); ok {
			alg = "ed25519-sha256"
		}
		field := s.Signature()
		if !strings.HasSuffix(field, "\r\n") {
			field += "\r\n"
		}
		sigs[i] = Signature{Field: field, Domain: keys[i].Domain, Selector: keys[i].Selector, Algorithm: alg}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return sigs, nil
}
