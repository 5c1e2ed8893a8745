// Package signer seals an outbound message: it checks the header (exactly
// one of each RFC 5322 singleton field, a From address under the allowed
// suffixes), normalises the content to 7 bits (RFC 8551 3.1, package
// mime7bit), wraps it in S/MIME multipart/signed (RFC 8551 3.5, package
// smimesign) and then signs the result with DKIM, rsa-sha256 and
// ed25519-sha256 (RFC 6376, RFC 8463, package dkimsign).
//
// S/MIME wraps the body, so it is applied first; DKIM signs the final bytes.
package signer

import (
	"errors"
	"io"
	"time"

	"github.com/kakuin/kakuin/govdomain"
	"github.com/kakuin/kakuin/pki"
)

// Errors, grouped by phase. Each is wrapped with the detail, so callers
// (smtpgw maps them to SMTP replies) test them with errors.Is.
var (
	// ErrMessage: the message is malformed (header syntax, MIME structure,
	// a duplicated singleton field, no or several From mailboxes). The
	// client must fix the message: a permanent failure (554 5.6.0).
	ErrMessage = errors.New("signer: malformed message")
	// ErrSender: the From (or Sender) address is outside the allowed
	// suffixes. A policy refusal (550 5.7.1).
	ErrSender = errors.New("signer: sender not allowed")
	// ErrNoCertificate: no S/MIME certificate could be had for the From
	// address and the policy is Reject (550 5.7.1).
	ErrNoCertificate = errors.New("signer: no s/mime certificate for sender")
	// ErrKey: a key or the issuing CA is unavailable or failed to sign; a
	// transient failure (451 4.3.0). Nothing is emitted unsigned.
	ErrKey = errors.New("signer: signing key unavailable")
)

// MissingCertificate says what to do when no S/MIME certificate can be had
// for the From address.
type MissingCertificate int

const (
	// Reject refuses the message (ErrNoCertificate). The zero value: the
	// safe default.
	Reject MissingCertificate = iota
	// DKIMOnly signs with DKIM alone.
	DKIMOnly
)

// Options configure a Signer. Every zero value is documented.
type Options struct {
	// Identities finds the S/MIME identity for the From address. If nil,
	// no message gets S/MIME and MissingCertificate decides.
	Identities pki.IdentitySource
	// DKIM finds the DKIM keys for the From domain. Required: a message
	// whose domain has no DKIM key is refused with ErrKey.
	DKIM pki.DKIMKeySource
	// MissingCertificate: Reject if zero.
	MissingCertificate MissingCertificate
	// Senders is the allowed sender suffixes. If zero, go.jp
	// (govdomain.DefaultSuffixes).
	Senders govdomain.Policy
	// Hostname is the right-hand side of generated Message-IDs. If empty,
	// the From domain.
	Hostname string
	// Now is the clock used for a Date field the message lacks, and for
	// nothing else: smallstep/pkcs7 stamps signingTime and go-msgauth
	// stamps t= with time.Now. If nil, time.Now.
	Now func() time.Time
	// Rand is the randomness for Message-IDs and MIME boundaries. If nil,
	// crypto/rand.Reader. The signatures draw from crypto/rand.Reader
	// inside the libraries (ECDSA is the only one that uses it).
	Rand io.Reader
}

// Result describes what Sign did, for logs and metrics. It never holds key
// material or message content beyond the From address.
type Result struct {
	// From is the addr-spec of the single From mailbox.
	From string
	// SMIME is true when an S/MIME signature was applied.
	SMIME bool
	// SMIMEAlgorithm is e.g. "rsa-sha256" or "ecdsa-sha256" when SMIME.
	SMIMEAlgorithm string
	// DKIM lists the DKIM signatures applied, as "d=DOMAIN s=SELECTOR a=ALG".
	DKIM []string
}
