// Package verify answers the citizen's question "is this message really
// from the government?" and, for the operator, "are these domains'
// records compliant?" (package verify/audit).
//
// Message composes the checks of one message: a single From mailbox
// (RFC 5322 3.6.2) under the government suffixes (package govdomain), the
// S/MIME signature (package smimeverify, RFC 8551), the header fields
// inside the signed part against the outer ones, revocation (package
// revocation: CRL RFC 5280, OCSP RFC 6960), every DKIM signature (package
// dkimverify, RFC 6376, RFC 8301, RFC 8463), SPF when the client IP is
// known (RFC 7208, blitiri.com.ar/go/spf) and DMARC (RFC 7489, package
// dmarc). The verdict is Genuine only when the From domain is under the
// suffixes, a valid S/MIME signature from a configured anchor names that
// exact address, and a passing DKIM signature aligns with the From domain
// and signs every header field a reader is shown.
//
// The report's JSON form is documented in docs/verify-json.md.
package verify

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/authres"

	"github.com/kakuin/kakuin/govdomain"
	"github.com/kakuin/kakuin/rfc5322"
	"github.com/kakuin/kakuin/verify/dkimverify"
	"github.com/kakuin/kakuin/verify/lookup"
	"github.com/kakuin/kakuin/verify/revocation"
	"github.com/kakuin/kakuin/verify/smimeverify"
)

// Errors. Message returns an error only when the input cannot be used as
// a message at all; every verification outcome is a Report.
var (
	// ErrMessage: the input is not an Internet message (no parsable
	// header).
	ErrMessage = errors.New("verify: not a usable message")
	// ErrTooLarge: the input is larger than Options.MaxSize.
	ErrTooLarge = errors.New("verify: message too large")
	// ErrRead: reading the input failed.
	ErrRead = errors.New("verify: reading message")
)

// Status is an RFC 8601 result value: pass, fail, neutral, none,
// temperror, permerror, policy (and softfail for SPF).
type Status = authres.ResultValue

// Options configure a Verifier. Every zero value is documented.
type Options struct {
	// Resolver answers DNS questions (DKIM keys, SPF, DMARC). If nil, those
	// checks are temperror ("no resolver").
	Resolver lookup.Resolver
	// TrustAnchors are the only roots S/MIME chains may end at; the system
	// store is never used. If nil, every S/MIME signature fails.
	TrustAnchors *x509.CertPool
	// Suffixes are the government sender suffixes. If nil,
	// govdomain.DefaultSuffixes (go.jp).
	Suffixes []string
	// ClientIP, HELO and MailFrom describe the SMTP transaction, for SPF.
	// If ClientIP is the zero Addr, SPF is not checked (status none). An
	// empty MailFrom means the null reverse-path (SPF checks the HELO).
	ClientIP netip.Addr
	HELO     string
	MailFrom string
	// Revocation checks certificates against CRLs and OCSP. If nil,
	// revocation is not checked and the report says so.
	Revocation *revocation.Checker
	// RequireRevocation makes a revocation status that could not be
	// established (offline, unreachable, no source) block the verdict. If
	// false, only a revoked certificate does.
	RequireRevocation bool
	// Now is the time validity is judged at (certificates, x=). If nil,
	// time.Now.
	Now func() time.Time
	// MaxSize bounds the message size in bytes. If zero, 64 MiB.
	MaxSize int64
	// AuthServID is the authserv-id of Authentication-Results (RFC 8601
	// 2.5). If empty, "kakuin".
	AuthServID string
}

// Verifier verifies messages. It is safe for concurrent use; reuse one to
// keep its caches (verified chains, fetched CRLs).
type Verifier struct {
	opts  Options
	smime *smimeverify.Verifier
}

// New returns a Verifier.
func New(opts Options) *Verifier {
	if opts.Suffixes == nil {
		opts.Suffixes = govdomain.DefaultSuffixes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = 64 << 20
	}
	if opts.AuthServID == "" {
		opts.AuthServID = "kakuin"
	}
	return &Verifier{
		opts:  opts,
		smime: smimeverify.New(smimeverify.Options{Roots: opts.TrustAnchors, Now: opts.Now}),
	}
}

// Message verifies one message with a fresh Verifier.
func Message(ctx context.Context, r io.Reader, opts Options) (*Report, error) {
	return New(opts).Message(ctx, r)
}

// Message reads a message (CRLF or LF line ends) and verifies it.
func (v *Verifier) Message(ctx context.Context, r io.Reader) (*Report, error) {
	msg, err := io.ReadAll(io.LimitReader(r, v.opts.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRead, err)
	}
	if int64(len(msg)) > v.opts.MaxSize {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, v.opts.MaxSize)
	}
	return v.Bytes(ctx, msg)
}

// Bytes verifies a message held in memory. msg is not modified.
func (v *Verifier) Bytes(ctx context.Context, msg []byte) (*Report, error) {
	// An mbox "From " separator line ("From sender date") is not part of
	// the message. "From :" is not one: it is a From field with the
	// obsolete white space before the colon (RFC 5322 4.5), which a mail
	// reader shows, so it must not be dropped unseen.
	if rest, ok := bytes.CutPrefix(msg, []byte("From ")); ok && !bytes.HasPrefix(bytes.TrimLeft(rest, " \t"), []byte(":")) {
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
	}
	// RFC 5322 2.1, RFC 8551 3.1.1: judge the canonical form (a message
	// saved with LF line ends was sent with CRLF).
	msg = rfc5322.CRLF(msg)
	// Read as received mail, by the parser the signer and the gateway use.
	h, _, err := rfc5322.Parse(msg, &rfc5322.Options{Received: true})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMessage, err)
	}
	if len(h) == 0 {
		return nil, fmt.Errorf("%w: no header fields", ErrMessage)
	}
	now := v.opts.Now()
	rep := &Report{At: now.UTC()}

	// The author.
	from, fromCheck := checkFrom(h)
	rep.From = from
	rep.add(fromCheck)
	rep.add(checkSingletons(h))
	fromDomain := domainOf(from)
	gov := Check{Name: CheckGovernment, Status: authres.ResultFail, Evidence: map[string]string{"suffixes": strings.Join(v.opts.Suffixes, " ")}}
	switch {
	case from == "":
		gov.Status, gov.Reason = authres.ResultNone, "no From address"
	case (govdomain.Policy{Suffixes: v.opts.Suffixes}).Allows(fromDomain):
		gov.Status = authres.ResultPass
		gov.Evidence["domain"] = fromDomain
	default:
		gov.Reason = fmt.Sprintf("%s is not a government domain (not under %s)", fromDomain, strings.Join(v.opts.Suffixes, ", "))
		gov.Evidence["domain"] = fromDomain
	}
	rep.add(gov)

	// S/MIME, the signed header fields, revocation.
	sm := v.smime.Verify(msg, from)
	rep.SMIME = sm
	rep.add(smimeCheck(sm, h))
	rep.add(signedHeadersCheck(sm))
	rep.add(v.revocationCheck(ctx, sm, now))

	// DKIM.
	dk, err := dkimverify.Verify(ctx, msg, dkimverify.Options{Resolver: v.opts.Resolver, Now: v.opts.Now})
	if err != nil {
		// The header parsed above, so this does not happen; report it.
		rep.add(Check{Name: CheckDKIM, Status: authres.ResultPermError, Reason: err.Error()})
	}
	rep.DKIM = dk
	dmarcRes := v.dmarcLookup(ctx, fromDomain)
	adkim := "r"
	if dmarcRes.rec != nil && dmarcRes.rec.ADKIM == "s" {
		adkim = "s"
	}
	if len(dk) == 0 && err == nil {
		rep.add(Check{Name: CheckDKIM, Status: authres.ResultNone, Reason: "no DKIM signature"})
	}
	for _, r := range dk {
		rep.unsigned = append(rep.unsigned, unsignedShown(r, h))
		rep.add(dkimCheck(r, fromDomain, adkim, h))
	}

	// SPF and DMARC: reported, not part of the verdict (an aligned DKIM
	// pass, which the verdict requires, passes DMARC).
	spfCheck := v.spfCheck(ctx)
	rep.add(spfCheck)
	rep.add(v.dmarcCheck(dmarcRes, fromDomain, rep))

	rep.Verdict = v.verdict(rep)
	return rep, nil
}

func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(addr[i+1:], "."))
}

// checkFrom finds the one author address. RFC 5322 3.6: exactly one From
// field; RFC 5322 3.6.2: one mailbox (several need a Sender, and then no
// single author can be named). A display name that shows another address
// is refused: the reader sees the name, not the address.
func checkFrom(h rfc5322.Header) (string, Check) {
	c := Check{Name: CheckFrom, Status: authres.ResultFail, Evidence: map[string]string{}}
	vals := h.Values("From")
	switch len(vals) {
	case 0:
		c.Reason = "the message has no From field"
		return "", c
	case 1:
	default:
		// RFC 6376 8.15, RULES D1: a second From is how a signed message
		// gets a different author shown.
		c.Reason = fmt.Sprintf("the message has %d From fields", len(vals))
		c.Evidence["from"] = strings.Join(vals, " | ")
		return "", c
	}
	c.Evidence["from"] = vals[0]
	// RFC 5322 3.6.2: mailboxes, not a group (the signer's rule too).
	list, err := rfc5322.ParseMailboxList(vals[0])
	if err != nil {
		c.Status, c.Reason = authres.ResultPermError, "the From field cannot be parsed: "+err.Error()
		return "", c
	}
	if len(list) != 1 {
		c.Reason = fmt.Sprintf("the From field has %d mailboxes, not one author", len(list))
		return "", c
	}
	a := list[0]
	c.Evidence["address"] = a.Address
	if a.Name != "" {
		c.Evidence["display-name"] = a.Name
		if other := addressIn(a.Name); other != "" && !rfc5322.SameAddress(other, a.Address) {
			c.Reason = fmt.Sprintf("the display name shows %s but the address is %s", other, a.Address)
			return "", c
		}
	}
	c.Status = authres.ResultPass
	return a.Address, c
}

// addressIn returns something that looks like an address inside a display
// name, or "".
func addressIn(name string) string {
	for _, w := range strings.FieldsFunc(name, func(r rune) bool {
		return r == ' ' || r == '<' || r == '>' || r == '"' || r == '(' || r == ')' || r == ',' || r == ';' || r == '\'' || r == '[' || r == ']'
	}) {
		if i := strings.IndexByte(w, '@'); i > 0 && i < len(w)-1 && strings.Contains(w[i:], ".") {
			return w
		}
	}
	return ""
}

// checkSingletons fails when a field RFC 5322 3.6 (or RFC 2045, for the
// MIME fields) allows at most once occurs more than once: rfc5322's list,
// the one the signer and the gateway refuse.
func checkSingletons(h rfc5322.Header) Check {
	c := Check{Name: CheckHeader, Status: authres.ResultPass}
	if dup := rfc5322.Duplicated(h); len(dup) > 0 {
		// RFC 5322 3.6: a duplicated field shows one value to the reader
		// while a signature may cover the other.
		c.Status, c.Reason = authres.ResultFail, "duplicated header fields: "+strings.Join(dup, ", ")
		c.Evidence = map[string]string{"duplicated": strings.Join(dup, " ")}
	}
	return c
}
