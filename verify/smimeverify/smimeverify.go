// Package smimeverify verifies the S/MIME signature of a message (RFC 8551
// S/MIME 4.0, RFC 5652 CMS, RFC 8550 certificate handling): a
// multipart/signed message (RFC 1847, RFC 8551 3.5.3, any micalg) or an
// opaque application/pkcs7-mime signed-data message (RFC 8551 3.5.2).
//
// github.com/smallstep/pkcs7 parses the CMS object and checks the digest
// and signature. It accepts any key usage and judges the chain at the
// signing time the sender claims, so this package builds and judges the
// chain itself with crypto/x509: to the given anchors only (never the
// system store), emailProtection or anyExtendedKeyUsage, digitalSignature
// or nonRepudiation key usage, valid now and at the signingTime, and an
// rfc822Name equal to the From address (RULES S6, S7).
package smimeverify

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/smallstep/pkcs7"

	"github.com/kakuin/kakuin/govdomain"
	"github.com/kakuin/kakuin/rfc5322"
)

// ErrMalformed: the MIME structure of an S/MIME message cannot be parsed.
// It is never returned by Verify (which reports permerror) but wraps the
// causes in Result.Err.
var ErrMalformed = errors.New("smimeverify: malformed s/mime structure")

// Status is an RFC 8601 result value; RFC 7281 uses pass, fail, none,
// neutral, policy, temperror and permerror for smime.
type Status = authres.ResultValue

// Form names how the message is signed.
type Form string

const (
	// Detached is multipart/signed with application/pkcs7-signature.
	Detached Form = "multipart/signed"
	// Opaque is application/pkcs7-mime; smime-type=signed-data.
	Opaque Form = "application/pkcs7-mime"
)

// Options configure a Verifier. Every zero value is documented.
type Options struct {
	// Roots are the trust anchors. The system store is never used: if nil,
	// no chain can be built and every signature fails.
	Roots *x509.CertPool
	// Now is the time the certificates must be valid at (besides the
	// signingTime). If nil, time.Now.
	Now func() time.Time
	// CacheSize bounds the number of verified chains remembered, keyed by
	// the certificates' bytes. If zero, 1024; negative disables the cache.
	CacheSize int
}

// Result is the outcome for one message.
type Result struct {
	// Status: none (not signed, or signed-data nested inside unsigned
	// content is reported as fail), pass, fail, permerror (malformed),
	// neutral (encrypted: cannot be verified here).
	Status Status
	// Reason says why, in words, when Status is not pass.
	Reason string
	// Err is the underlying error when there is one, for errors.Is.
	Err error
	// Form is how the message was signed; empty when not signed.
	Form Form
	// Micalg is the micalg parameter of multipart/signed, as sent.
	Micalg string
	// Signer is the signer's certificate, when found.
	Signer *x509.Certificate
	// Chain is the verified chain, signer first, anchor last (pass only).
	Chain []*x509.Certificate
	// SigningTime is the signingTime attribute; zero when absent.
	SigningTime time.Time
	// Algorithm is e.g. "rsa-sha256" or "ecdsa-sha256".
	Algorithm string
	// Address is the From address the certificate was matched against.
	Address string
	// Entity is the signed content (a canonical MIME entity).
	Entity []byte
	// Mismatched lists the header fields present inside the signed entity
	// (or in a message/rfc822 it wraps) whose values differ from the
	// outer header's, e.g. "From", "Subject".
	Mismatched []string
	// InnerErr is set when the header of the signed entity (or of the
	// message/rfc822 it wraps) cannot be read: then nothing inside can be
	// compared with the outer header, and a mail reader may still show
	// what is there, so the signed headers must be taken as differing.
	InnerErr error
}

// Organization returns the signer's organisation (O) or, failing that,
// its common name.
func (r *Result) Organization() string {
	if r.Signer == nil {
		return ""
	}
	if len(r.Signer.Subject.Organization) > 0 {
		return r.Signer.Subject.Organization[0]
	}
	return r.Signer.Subject.CommonName
}

// Verifier verifies S/MIME signatures. It is safe for concurrent use and
// caches verified chains.
type Verifier struct {
	opts  Options
	mu    sync.Mutex
	cache map[[32]byte]cachedChain
}

type cachedChain struct {
	chain              []*x509.Certificate
	notBefore, notAfte time.Time
}

// New returns a Verifier.
func New(opts Options) *Verifier {
	if opts.CacheSize == 0 {
		opts.CacheSize = 1024
	}
	return &Verifier{opts: opts, cache: map[[32]byte]cachedChain{}}
}

func (v *Verifier) now() time.Time {
	if v.opts.Now != nil {
		return v.opts.Now()
	}
	return time.Now()
}

// Verify checks the S/MIME signature of msg, a canonical (CRLF) message,
// for the From address from (an addr-spec). It never returns nil.
func (v *Verifier) Verify(msg []byte, from string) *Result {
	r := &Result{Address: from}
	h, body, err := split(msg)
	if err != nil {
		return r.permerror("message header: %w", err)
	}
	mt, params, err := mediaType(h)
	if err != nil {
		return r.permerror("%w", err)
	}
	var p7 *pkcs7.PKCS7
	switch {
	case mt == "multipart/signed":
		r.Form = Detached
		r.Micalg = params["micalg"]
		// RFC 1847 2.1, RFC 8551 3.5.3: protocol names the signature type.
		if !isSignatureType(strings.ToLower(params["protocol"])) {
			return r.permerror("%w: multipart/signed protocol %q is not application/pkcs7-signature", ErrMalformed, params["protocol"])
		}
		parts, closed, err := splitMultipart(body, params["boundary"])
		if err != nil {
			return r.permerror("%w", err)
		}
		// RFC 1847 2.1: exactly two body parts, the content and the
		// signature. A third part is content nobody signed.
		if len(parts) != 2 || !closed {
			return r.fail(nil, "multipart/signed has %d parts (closed %v), want exactly 2: unsigned content was added or the message was cut", len(parts), closed)
		}
		// RFC 8551 3.5.3: the signature covers the first part's exact bytes
		// in canonical form (RULES S1).
		r.Entity = parts[0]
		sh, sb, err := split(parts[1])
		if err != nil {
			return r.permerror("signature part: %w", err)
		}
		smt, _, err := mediaType(sh)
		if err != nil {
			return r.permerror("signature part: %w", err)
		}
		if !isSignatureType(smt) {
			return r.permerror("%w: second part is %s, not application/pkcs7-signature", ErrMalformed, smt)
		}
		der, err := decodeBody(sh, sb)
		if err != nil {
			return r.permerror("signature part: %w", err)
		}
		p7, err = pkcs7.Parse(der)
		if err != nil {
			return r.permerror("%w: signature: %w", ErrMalformed, err)
		}
		if len(p7.Content) != 0 {
			return r.permerror("%w: detached signature carries content of its own", ErrMalformed)
		}
		p7.Content = r.Entity
	case isMimeType(mt):
		r.Form = Opaque
		switch st := strings.ToLower(params["smime-type"]); st {
		case "signed-data", "":
		case "enveloped-data", "authenveloped-data":
			r.Status, r.Reason = authres.ResultNeutral, "message is encrypted ("+st+"); decrypt it first"
			return r
		default:
			return r.permerror("%w: smime-type %q is not signed-data", ErrMalformed, st)
		}
		der, err := decodeBody(h, body)
		if err != nil {
			return r.permerror("%w", err)
		}
		p7, err = pkcs7.Parse(der)
		if err != nil {
			return r.permerror("%w: signed-data: %w", ErrMalformed, err)
		}
		if len(p7.Content) == 0 {
			return r.permerror("%w: signed-data without encapsulated content", ErrMalformed)
		}
		// RFC 8551 3.1.1: the content is canonical MIME; accept bare LF
		// from sloppy signers only after the signature was checked over
		// the bytes as they are (below, p7.Content is what is signed).
		r.Entity = p7.Content
	case strings.HasPrefix(mt, "multipart/"):
		if findNested(body, params, 0) {
			return r.fail(nil, "the signed part is nested inside unsigned %s content: text outside the signature could be shown as part of the message", mt)
		}
		r.Status, r.Reason = authres.ResultNone, "no S/MIME signature"
		return r
	default:
		r.Status, r.Reason = authres.ResultNone, "no S/MIME signature"
		return r
	}
	if len(p7.Signers) == 0 {
		// The library reads only issuerAndSerialNumber signer identifiers:
		// a subjectKeyIdentifier one (CMS version 3) ends up here too.
		return r.permerror("%w: no signerInfo this verifier can read (signers identified by subjectKeyIdentifier are not supported)", ErrMalformed)
	}
	// Several signers: one that passes is enough (RFC 5652 5.1, RFC 8551
	// 2.4.2); otherwise the first failure is reported.
	var first *Result
	for i := range p7.Signers {
		one := *r
		q := *p7
		q.Signers = p7.Signers[i : i+1]
		v.verifySigner(&one, &q)
		if one.Status == authres.ResultPass {
			*r = one
			break
		}
		if first == nil {
			first = &one
		}
	}
	if r.Status != authres.ResultPass {
		*r = *first
	}
	r.Mismatched, r.InnerErr = innerMismatch(h, r.Entity)
	return r
}

var (
	oidContentType = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidSigningTime = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}
	oidData        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSHA256      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	oidSHA1        = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
)

// verifySigner judges q, which has exactly one signer.
func (v *Verifier) verifySigner(r *Result, q *pkcs7.PKCS7) {
	si := q.Signers[0]
	ee := q.GetOnlySigner()
	if ee == nil {
		r.fail(nil, "the signer's certificate is not in the message")
		return
	}
	r.Signer = ee
	r.Algorithm = algorithmName(ee, si.DigestAlgorithm.Algorithm)
	// RULES S3, RFC 8551 2.1: SHA-256 or stronger. crypto/x509's
	// CheckSignature (used by the library) still accepts SHA-1.
	if d := si.DigestAlgorithm.Algorithm; !d.Equal(oidSHA256) && !d.Equal(oidSHA384) && !d.Equal(oidSHA512) {
		r.fail(nil, "the signature uses the digest %s; SHA-256 or stronger is required (RFC 8551 2.1)", r.Algorithm)
		return
	}
	if e := si.DigestEncryptionAlgorithm.Algorithm; e.Equal(pkcs7.OIDEncryptionAlgorithmRSASHA1) || e.Equal(pkcs7.OIDEncryptionAlgorithmRSAMD5) || e.Equal(pkcs7.OIDDigestAlgorithmECDSASHA1) || e.Equal(pkcs7.OIDDigestAlgorithmDSASHA1) {
		r.fail(nil, "the signature algorithm %s is too weak (RFC 8551 2.2)", e)
		return
	}
	if len(si.AuthenticatedAttributes) > 0 {
		// RFC 5652 5.3, 11.1: with signed attributes, content-type is
		// required and must equal the eContentType (id-data for S/MIME).
		var ct asn1.ObjectIdentifier
		found := false
		for _, a := range si.AuthenticatedAttributes {
			switch {
			case a.Type.Equal(oidContentType):
				if _, err := asn1.Unmarshal(a.Value.Bytes, &ct); err != nil {
					r.permerror("%w: content-type attribute: %w", ErrMalformed, err)
					return
				}
				found = true
			case a.Type.Equal(oidSigningTime):
				var t time.Time
				if _, err := asn1.Unmarshal(a.Value.Bytes, &t); err != nil {
					r.permerror("%w: signingTime attribute: %w", ErrMalformed, err)
					return
				}
				r.SigningTime = t
			}
		}
		if !found || !ct.Equal(oidData) {
			r.fail(nil, "signed attributes lack a content-type of id-data (RFC 5652 11.1)")
			return
		}
	}
	now := v.now()
	// Digest and signature only (nil trust store): the chain is judged
	// below with our own rules. The library also refuses a signingTime
	// outside the signer's validity. RSASSA-PSS, which the library does
	// not know, is checked here (RULES S3).
	verifySig := q.VerifyWithChainAtTime
	if si.DigestEncryptionAlgorithm.Algorithm.Equal(oidRSAPSS) {
		r.Algorithm = strings.Replace(r.Algorithm, "rsa-", "rsa-pss-", 1)
		verifySig = func(*x509.CertPool, time.Time) error { return verifyPSS(q, ee) }
	}
	if err := verifySig(nil, now); err != nil {
		var md *pkcs7.MessageDigestMismatchError
		var st *pkcs7.SigningTimeNotValidError
		switch {
		case errors.As(err, &md):
			r.fail(err, "the signed content was altered after signing (message digest mismatch)")
		case errors.As(err, &st):
			r.fail(err, "the certificate was not valid at the signing time %s (valid %s to %s)",
				st.SigningTime.UTC().Format(time.RFC3339), st.NotBefore.UTC().Format(time.RFC3339), st.NotAfter.UTC().Format(time.RFC3339))
		default:
			r.fail(err, "the signature does not verify: %v", err)
		}
		return
	}
	// RFC 8550 4.4.2: if key usage is present, digitalSignature or
	// nonRepudiation (RULES S7).
	if ee.KeyUsage != 0 && ee.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		r.fail(nil, "the certificate's key usage allows neither digitalSignature nor nonRepudiation")
		return
	}
	if ee.IsCA {
		r.fail(nil, "the signer's certificate is a CA certificate")
		return
	}
	chain, err := v.chain(ee, q.Certificates, now)
	if err != nil {
		r.fail(err, "%s", chainReason(err, now))
		return
	}
	// RULES S7: the signer is issued by an anchor, not an anchor itself (a
	// self-signed certificate someone put among the anchors).
	if len(chain) < 2 {
		r.fail(nil, "the signer's certificate is itself a trust anchor, not issued by one")
		return
	}
	// The certificate must also have been valid when the message was
	// signed (the rule; the library checked the leaf only).
	if !r.SigningTime.IsZero() {
		for _, c := range chain {
			if r.SigningTime.Before(c.NotBefore) || r.SigningTime.After(c.NotAfter) {
				r.fail(nil, "%q was not valid at the signing time %s", c.Subject.CommonName, r.SigningTime.UTC().Format(time.RFC3339))
				return
			}
		}
	}
	// RFC 8550 3, RULES S6: an rfc822Name equal to the From address.
	if r.Address == "" {
		r.fail(nil, "the message has no usable From address to match the certificate")
		return
	}
	if !certHasAddress(ee, r.Address) {
		r.fail(nil, "the certificate is for %s, not for the From address %s", strings.Join(append(ee.EmailAddresses, smtpUTF8Mailboxes(ee)...), ", "), r.Address)
		return
	}
	r.Chain = chain
	r.Status, r.Reason, r.Err = authres.ResultPass, "", nil
}

// chain builds the signer's chain to the anchors, at now, for e-mail
// protection (RFC 8550 4.4.4: emailProtection or anyExtendedKeyUsage; a
// certificate without the extension is unrestricted, RFC 5280 4.2.1.12).
func (v *Verifier) chain(ee *x509.Certificate, certs []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	if v.opts.Roots == nil {
		return nil, errNoAnchors
	}
	var key [32]byte
	if v.opts.CacheSize > 0 {
		h := sha256.New()
		h.Write(ee.Raw)
		for _, c := range certs {
			h.Write(c.Raw)
		}
		h.Sum(key[:0])
		v.mu.Lock()
		c, ok := v.cache[key]
		v.mu.Unlock()
		if ok && !now.Before(c.notBefore) && !now.After(c.notAfte) {
			return c.chain, nil
		}
	}
	inter := x509.NewCertPool()
	for _, c := range certs {
		if c != ee {
			inter.AddCert(c)
		}
	}
	chains, err := ee.Verify(x509.VerifyOptions{
		Roots:         v.opts.Roots, // never nil here: nil would mean the system store
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
	})
	if err != nil {
		return nil, err
	}
	chain := chains[0]
	if v.opts.CacheSize > 0 {
		c := cachedChain{chain: chain, notBefore: chain[0].NotBefore, notAfte: chain[0].NotAfter}
		for _, x := range chain[1:] {
			if x.NotBefore.After(c.notBefore) {
				c.notBefore = x.NotBefore
			}
			if x.NotAfter.Before(c.notAfte) {
				c.notAfte = x.NotAfter
			}
		}
		v.mu.Lock()
		if len(v.cache) >= v.opts.CacheSize {
			clear(v.cache)
		}
		v.cache[key] = c
		v.mu.Unlock()
	}
	return chain, nil
}

var errNoAnchors = errors.New("smimeverify: no trust anchors configured")

func chainReason(err error, now time.Time) string {
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	switch {
	case errors.Is(err, errNoAnchors):
		return "no trust anchors are configured"
	case errors.As(err, &ua):
		return "the certificate does not chain to a configured trust anchor"
	case errors.As(err, &ci):
		switch ci.Reason {
		case x509.Expired:
			return fmt.Sprintf("a certificate in the chain is expired or not yet valid at %s", now.UTC().Format(time.RFC3339))
		case x509.IncompatibleUsage:
			return "the certificate is not for e-mail protection (extended key usage)"
		}
		return "the certificate chain is invalid: " + ci.Error()
	}
	return "the certificate chain is invalid: " + err.Error()
}

// certHasAddress compares addr with the certificate's rfc822Name SANs:
// local part exactly, domain case-insensitively in its A-label form (RFC
// 5280 4.2.1.6, RULES S6).
func certHasAddress(c *x509.Certificate, addr string) bool {
	al, ad, ok := splitAddr(addr)
	if !ok {
		return false
	}
	for _, e := range append(c.EmailAddresses, smtpUTF8Mailboxes(c)...) {
		el, ed, ok := splitAddr(e)
		if ok && el == al && ed == ad {
			return true
		}
	}
	return false
}

var (
	oidSubjectAltName  = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidSmtpUTF8Mailbox = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 9}
)

// smtpUTF8Mailboxes returns the SmtpUTF8Mailbox otherName SANs (RFC 9598
// 3, RULES S6), which crypto/x509 does not expose: the addresses of
// internationalised mailboxes.
func smtpUTF8Mailboxes(c *x509.Certificate) []string {
	var out []string
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var names []asn1.RawValue
		if _, err := asn1.Unmarshal(ext.Value, &names); err != nil {
			return nil
		}
		for _, n := range names {
			// otherName [0] IMPLICIT SEQUENCE { type-id OID, value [0] EXPLICIT ANY }.
			if n.Class != asn1.ClassContextSpecific || n.Tag != 0 || !n.IsCompound {
				continue
			}
			var id asn1.ObjectIdentifier
			rest, err := asn1.Unmarshal(n.Bytes, &id)
			if err != nil || !id.Equal(oidSmtpUTF8Mailbox) {
				continue
			}
			var wrapped asn1.RawValue
			if _, err := asn1.Unmarshal(rest, &wrapped); err != nil || wrapped.Class != asn1.ClassContextSpecific || wrapped.Tag != 0 {
				continue
			}
			var v string
			if _, err := asn1.UnmarshalWithParams(wrapped.Bytes, &v, "utf8"); err == nil {
				out = append(out, v)
			}
		}
	}
	return out
}

func splitAddr(a string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(a, '@')
	if i <= 0 || i == len(a)-1 {
		return "", "", false
	}
	d, err := govdomain.Canonical(a[i+1:])
	if err != nil {
		return "", "", false
	}
	return a[:i], d, true
}

func algorithmName(c *x509.Certificate, digest asn1.ObjectIdentifier) string {
	var k string
	switch c.PublicKeyAlgorithm {
	case x509.RSA:
		k = "rsa"
	case x509.ECDSA:
		k = "ecdsa"
	case x509.Ed25519:
		k = "ed25519"
	default:
		k = strings.ToLower(c.PublicKeyAlgorithm.String())
	}
	switch {
	case digest.Equal(oidSHA256):
		return k + "-sha256"
	case digest.Equal(oidSHA384):
		return k + "-sha384"
	case digest.Equal(oidSHA512):
		return k + "-sha512"
	case digest.Equal(oidSHA1):
		return k + "-sha1"
	}
	return k + "-" + digest.String()
}

func (r *Result) permerror(format string, a ...any) *Result {
	err := fmt.Errorf(format, a...)
	r.Status, r.Reason, r.Err = authres.ResultPermError, err.Error(), err
	return r
}

func (r *Result) fail(err error, format string, a ...any) *Result {
	r.Status, r.Reason, r.Err = authres.ResultFail, fmt.Sprintf(format, a...), err
	return r
}

// protected lists the fields compared between the signed entity and the
// outer header.
var protected = []string{"From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID"}

// innerMismatch compares header fields found inside the signed entity (and
// in a message/rfc822 it wraps, RFC 8551 3.1) with the outer header. A
// field present inside must be present outside with the same value: the
// recipient may be shown either. A header inside that cannot be read is
// an error, never "no difference": it is read with the same rules as the
// outer one (a bare CR, for one, is refused), and what this parser cannot
// read a mail reader may still show.
func innerMismatch(outer rfc5322.Header, entity []byte) ([]string, error) {
	if entity == nil {
		return nil, nil
	}
	ih, body, err := split(rfc5322.CRLF(entity))
	if err != nil {
		return nil, fmt.Errorf("%w: signed entity: %w", ErrMalformed, err)
	}
	var bad []string
	check := func(inner rfc5322.Header) {
		for _, name := range protected {
			iv := inner.Values(name)
			if len(iv) == 0 {
				continue
			}
			ov := outer.Values(name)
			if len(iv) != 1 || len(ov) != 1 || !sameValue(name, iv[0], ov[0]) {
				if !contains(bad, name) {
					bad = append(bad, name)
				}
			}
		}
	}
	check(ih)
	if mt, _, err := mediaType(ih); err == nil && mt == "message/rfc822" {
		wh, _, err := split(body)
		if err != nil {
			return bad, fmt.Errorf("%w: message/rfc822 in the signed entity: %w", ErrMalformed, err)
		}
		check(wh)
	}
	return bad, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func sameValue(name, a, b string) bool {
	if collapse(a) == collapse(b) {
		return true
	}
	switch strings.ToLower(name) {
	case "from", "sender", "reply-to", "to", "cc":
		la, err1 := rfc5322.ParseAddressList(a)
		lb, err2 := rfc5322.ParseAddressList(b)
		if err1 != nil || err2 != nil || len(la) != len(lb) {
			return false
		}
		for i := range la {
			if !rfc5322.SameAddress(la[i].Address, lb[i].Address) {
				return false
			}
		}
		return true
	case "subject":
		return collapse(rfc5322.DecodeText(a)) == collapse(rfc5322.DecodeText(b))
	case "date":
		ta, err1 := mail.ParseDate(a)
		tb, err2 := mail.ParseDate(b)
		return err1 == nil && err2 == nil && ta.Equal(tb)
	}
	return false
}

func collapse(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
