package signer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/kakuin/kakuin/govdomain"
	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/rfc5322"
	"github.com/kakuin/kakuin/signer/dkimsign"
	"github.com/kakuin/kakuin/signer/mime7bit"
	"github.com/kakuin/kakuin/signer/smimesign"
)

// Signer seals messages. It is safe for concurrent use.
type Signer struct {
	opts Options
}

// New checks opts and returns a Signer.
func New(opts Options) (*Signer, error) {
	if opts.DKIM == nil {
		return nil, fmt.Errorf("%w: no dkim key source configured", ErrKey)
	}
	switch opts.MissingCertificate {
	case Reject, DKIMOnly:
	default:
		return nil, fmt.Errorf("signer: unknown MissingCertificate %d", opts.MissingCertificate)
	}
	if opts.Senders.Suffixes == nil {
		opts.Senders = govdomain.Policy{Suffixes: govdomain.DefaultSuffixes}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	return &Signer{opts: opts}, nil
}

// Sign reads one message from src (LF or CRLF line ends), seals it and
// writes the result to dst: S/MIME first, since it wraps the body, then
// DKIM over the final bytes (ARCHITECTURE). On any error nothing at all is
// written to dst, so nothing leaves unsigned (RULES M3). Errors wrap
// ErrMessage, ErrSender, ErrNoCertificate or ErrKey (and the cause); an
// error reading src or writing dst is returned wrapped as is.
//
// The message is held in memory twice (as read, and 7-bit normalised; the
// first is dropped before signing), and a third time while S/MIME signs:
// smallstep/pkcs7's NewSignedData marshals a copy of the entity, which
// Detach drops. When src reports its length (a Len method, or a regular
// *os.File) the first buffer is sized exactly. go-msgauth's DKIM signers
// allocate about four times the message in short-lived garbage (two
// copies of every octet per key).
func (s *Signer) Sign(ctx context.Context, dst io.Writer, src io.Reader) (Result, error) {
	var res Result
	br := bufio.NewReaderSize(src, 8<<10)
	h, err := rfc5322.ReadHeader(br, nil)
	if err != nil {
		if errors.Is(err, rfc5322.ErrSyntax) || errors.Is(err, rfc5322.ErrTooLarge) {
			return res, fmt.Errorf("%w: %w", ErrMessage, err)
		}
		return res, fmt.Errorf("signer: reading message: %w", err)
	}

	// Originator checks (RFC 5322 3.6): one of each singleton, exactly one
	// From mailbox; its addr-spec, not its display name, must be allowed.
	if err := rfc5322.CheckSingletons(h); err != nil {
		return res, fmt.Errorf("%w: %w", ErrMessage, err)
	}
	from, err := rfc5322.From(h)
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrMessage, err)
	}
	res.From = from
	if !s.opts.Senders.AllowsAddress(from) {
		return res, fmt.Errorf("%w: From %s", ErrSender, from)
	}
	sender, err := rfc5322.Sender(h)
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrMessage, err)
	}
	if sender != "" && !s.opts.Senders.AllowsAddress(sender) {
		return res, fmt.Errorf("%w: Sender %s", ErrSender, sender)
	}
	at := strings.LastIndexByte(from, '@')
	domain, err := govdomain.Canonical(from[at+1:])
	if err != nil { // cannot happen: AllowsAddress canonicalised it
		return res, fmt.Errorf("%w: %w", ErrSender, err)
	}
	addr := from[:at+1] + domain

	// Keys first, so that a missing key costs nothing (RULES M3: 4xx).
	keys, err := s.dkimKeys(domain)
	if err != nil {
		return res, err
	}
	id, err := s.identity(ctx, addr)
	if err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}

	// Split the header: Content-* fields go into the signed entity, the
	// rest stays outside (RFC 8551 3.5.3: the first part is a MIME entity;
	// MIME-Version belongs to the message). DKIM-Signature fields are
	// dropped: wrapping the body breaks them anyway.
	var outer, inner rfc5322.Header
	for _, f := range h {
		switch {
		case f.Is("DKIM-Signature"):
		case len(f.Name) > 8 && strings.EqualFold(f.Name[:8], "Content-"):
			inner = append(inner, f)
		default:
			f.Raw = crlf(f.Raw)
			outer = append(outer, f)
		}
	}
	if h.Count("Date") == 0 {
		// RFC 5322 3.6: Date is required; 3.3 date-time.
		outer = append(outer, rfc5322.NewField("Date", s.opts.Now().Format(time.RFC1123Z)))
	}
	if h.Count("Message-ID") == 0 {
		// RFC 5322 3.6.4: SHOULD be present; unique left part.
		mid, err := s.messageID(domain)
		if err != nil {
			return res, err
		}
		outer = append(outer, rfc5322.NewField("Message-ID", mid))
	}
	if h.Count("MIME-Version") == 0 {
		outer = append(outer, rfc5322.NewField("MIME-Version", "1.0")) // RFC 2045 4
	}

	// 7-bit normalisation (RFC 8551 3.1, RFC 6376 5.3, RULES S2/D4).
	in, err := readEntity(inner, br, src)
	if err != nil {
		return res, fmt.Errorf("signer: reading message: %w", err)
	}
	// Sized for 7-bit input, which comes out the same size; what grows
	// (8-bit text, binary) spills into further chunks of at most 4 MB.
	entity := newSpool(in.Len() + in.Len()/64 + 4096)
	// UTF-8 attachment names (RFC 6532, SMTPUTF8 mail) become RFC 2231
	// parameters: the signed entity must be 7-bit (RFC 8551 3.1.1).
	norm := mime7bit.Normalizer{EncodeUTF8Params: true}
	if err := norm.Normalize(entity, in); err != nil {
		if errors.Is(err, mime7bit.ErrMIME) {
			return res, fmt.Errorf("%w: %w", ErrMessage, err)
		}
		return res, fmt.Errorf("signer: normalising: %w", err)
	}
	in = nil //nolint:ineffassign,wastedassign // let the input go before signing

	// S/MIME (RFC 8551 3.5.3).
	var message func() io.Reader
	if id != nil {
		sig, err := smimesign.SignBytes(entity.Bytes(), id, smimesign.Options{Rand: s.opts.Rand})
		switch {
		case errors.Is(err, smimesign.ErrEntity):
			return res, fmt.Errorf("%w: %w", ErrMessage, err)
		case err != nil:
			return res, fmt.Errorf("%w: %w", ErrKey, err)
		}
		outer = append(outer, rfc5322.NewField("Content-Type", sig.ContentType()))
		head := rfc5322.Format(outer)
		message = func() io.Reader { return &smimesign.Concat{bytes.NewReader(head), sig.Body(entity.Reader())} }
		res.SMIME, res.SMIMEAlgorithm = true, sig.Algorithm
	} else {
		// DKIMOnly: the normalised entity carries its own header fields
		// and the empty line.
		var head bytes.Buffer
		for _, f := range outer {
			head.Write(f.Raw)
		}
		message = func() io.Reader { return &smimesign.Concat{bytes.NewReader(head.Bytes()), entity.Reader()} }
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}

	// DKIM over the final bytes (RFC 6376, RFC 8463).
	sigs, err := dkimsign.Sign(message(), keys)
	switch {
	case errors.Is(err, dkimsign.ErrMessage):
		return res, fmt.Errorf("%w: %w", ErrMessage, err)
	case err != nil:
		return res, fmt.Errorf("%w: %w", ErrKey, err)
	}
	// Unbuffered: the pieces (fields, header, entity chunks, signature
	// part) are written as they are, without another copy.
	var fields strings.Builder
	for _, sg := range sigs {
		fields.WriteString(sg.Field)
		res.DKIM = append(res.DKIM, sg.String())
	}
	if _, err := io.WriteString(dst, fields.String()); err != nil {
		return res, fmt.Errorf("signer: writing: %w", err)
	}
	if _, err := io.Copy(dst, message()); err != nil {
		return res, fmt.Errorf("signer: writing: %w", err)
	}
	return res, nil
}

// ProbeKeys implements pki.KeyProber: it probes the keys of the DKIM and
// identity sources that can check theirs (keys in a PKCS#11 token), so
// that the gateway's readiness says when signing would fail.
func (s *Signer) ProbeKeys(ctx context.Context) error {
	var errs []error
	for _, src := range []any{s.opts.DKIM, s.opts.Identities} {
		if p, ok := src.(pki.KeyProber); ok {
			errs = append(errs, p.ProbeKeys(ctx))
		}
	}
	return errors.Join(errs...)
}

// dkimKeys returns the DKIM keys for the From domain, checked: at least
// one RSA key (RULES D3), strong enough (RULES D2), each d= the domain or a
// parent of it (RULES D6).
func (s *Signer) dkimKeys(domain string) ([]pki.DKIMKey, error) {
	keys, err := s.opts.DKIM.DKIMKeys(domain)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKey, domain, err)
	}
	if err := dkimsign.CheckKeys(keys); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKey, domain, err)
	}
	for _, k := range keys {
		if !govdomain.Within(domain, k.Domain) {
			return nil, fmt.Errorf("%w: key d=%s does not align with %s (RFC 7489 3.1)", ErrKey, k.Domain, domain)
		}
	}
	return keys, nil
}

// identity returns the S/MIME identity for addr, or nil when there is none
// and the policy is DKIMOnly.
func (s *Signer) identity(ctx context.Context, addr string) (*pki.Identity, error) {
	if s.opts.Identities == nil {
		if s.opts.MissingCertificate == DKIMOnly {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: %s: no certificate source configured", ErrNoCertificate, addr)
	}
	id, err := s.opts.Identities.Identity(ctx, addr)
	switch {
	case errors.Is(err, pki.ErrNoCertificate):
		if s.opts.MissingCertificate == DKIMOnly {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: %w", ErrNoCertificate, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	case id == nil || id.Certificate == nil || id.Signer == nil:
		return nil, fmt.Errorf("%w: %s: incomplete identity", ErrKey, addr)
	}
	if !namesAddress(id.Certificate.EmailAddresses, addr) {
		// RULES S6 (RFC 8550 3): a signature whose certificate does not
		// name the From address shows as forged in every mail reader.
		return nil, fmt.Errorf("%w: certificate for %s names %v", ErrKey, addr, id.Certificate.EmailAddresses)
	}
	return id, nil
}

// namesAddress reports whether one of the rfc822Name SANs is addr (domain
// case-insensitive, RFC 5321 2.4; local parts compared case-insensitively
// too, as stores index them). An internationalised address is named in an
// SmtpUTF8Mailbox SAN (RFC 9598) that crypto/x509 does not parse: it is
// left to the store.
func namesAddress(sans []string, addr string) bool {
	for i := 0; i < len(addr); i++ {
		if addr[i] >= 0x80 {
			return true
		}
	}
	for _, san := range sans {
		if strings.EqualFold(san, addr) {
			return true
		}
	}
	return false
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// messageID returns "<random@host>" (RFC 5322 3.6.4).
func (s *Signer) messageID(domain string) (string, error) {
	var b [15]byte
	if _, err := io.ReadFull(s.opts.Rand, b[:]); err != nil {
		return "", fmt.Errorf("signer: message-id: %w", err)
	}
	host := s.opts.Hostname
	if host == "" {
		host = domain
	}
	return "<" + strings.ToLower(idEncoding.EncodeToString(b[:])) + "@" + host + ">", nil
}

// readEntity returns the entity to normalise: the Content-* fields, the
// empty line and the rest of br, in one buffer. When src tells its length
// the buffer is allocated once at the right size; otherwise the input is
// first gathered in chunks and then copied once into a buffer of the right
// size, which costs less than growing a buffer by doubling (that copies
// the message again at every step and leaves up to twice its size).
func readEntity(inner rfc5322.Header, br *bufio.Reader, src io.Reader) (*bytes.Buffer, error) {
	size := 0
	for _, f := range inner {
		size += len(f.Raw)
	}
	size += 2 + br.Buffered()
	if n, ok := remaining(src); ok {
		b := bytes.NewBuffer(make([]byte, 0, size+int(n)+bytes.MinRead))
		inner.WriteTo(b) //nolint:errcheck // bytes.Buffer does not fail
		if _, err := b.ReadFrom(br); err != nil {
			return nil, err
		}
		return b, nil
	}
	chunks := newSpool(size + 32<<10)
	inner.WriteTo(chunks) //nolint:errcheck // spool does not fail
	if _, err := io.Copy(chunks, br); err != nil {
		return nil, err
	}
	b := bytes.NewBuffer(make([]byte, 0, chunks.Len()))
	chunks.Reader().(io.WriterTo).WriteTo(b) //nolint:errcheck // bytes.Buffer does not fail
	return b, nil
}

// remaining reports how many octets are left in src, if it can tell.
func remaining(src io.Reader) (int64, bool) {
	switch r := src.(type) {
	case interface{ Len() int }:
		return int64(r.Len()), true
	case interface{ Len() int64 }:
		return r.Len(), true
	case *os.File:
		fi, err := r.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return 0, false
		}
		off, err := r.Seek(0, io.SeekCurrent)
		if err != nil || off > fi.Size() {
			return 0, false
		}
		return fi.Size() - off, true
	}
	return 0, false
}

// crlf returns raw with every bare LF made CRLF, and a CRLF added if raw
// does not end in one (the last field of a message without a body).
func crlf(raw []byte) []byte {
	n := bytes.Count(raw, []byte("\n")) - bytes.Count(raw, []byte("\r\n"))
	if n == 0 && bytes.HasSuffix(raw, []byte("\r\n")) {
		return raw
	}
	out := make([]byte, 0, len(raw)+n+2)
	for i, c := range raw {
		if c == '\n' && (i == 0 || raw[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	if !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, "\r\n"...)
	}
	return out
}
