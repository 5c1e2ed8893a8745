package smimeverify_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/smallstep/pkcs7"

	"github.com/kakuin/kakuin/pki/pkitest"
	"github.com/kakuin/kakuin/rfc5322"
	"github.com/kakuin/kakuin/verify/internal/testsign"
	"github.com/kakuin/kakuin/verify/smimeverify"
)

const (
	addr  = "taro@example.go.jp"
	outer = "From: Taro <taro@example.go.jp>\nTo: hanako@example.com\nSubject: test\nDate: Thu, 26 Nov 2026 10:00:00 +0900\n"
)

func verifier(ca *pkitest.CA, now time.Time) *smimeverify.Verifier {
	return smimeverify.New(smimeverify.Options{Roots: ca.Roots(), Now: func() time.Time { return now }})
}

func expect(t *testing.T, r *smimeverify.Result, status authres.ResultValue, reason string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %s (%s), want %s", r.Status, r.Reason, status)
	}
	if !strings.Contains(r.Reason, reason) {
		t.Fatalf("reason %q lacks %q", r.Reason, reason)
	}
}

func TestDetachedAndOpaquePass(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	for _, kt := range []pkitest.KeyType{pkitest.RSA2048, pkitest.ECDSAP256} {
		id := ca.Identity(t, addr, pkitest.WithKeyType(kt), pkitest.Subject(pkixName("Ministry of Examples")))
		for name, msg := range map[string][]byte{
			"detached": testsign.Detached(t, id, outer, testsign.Entity("hello")),
			"opaque":   testsign.Opaque(t, id, outer, testsign.Entity("hello")),
		} {
			r := verifier(ca, time.Now()).Verify(msg, addr)
			expect(t, r, authres.ResultPass, "")
			if r.Organization() != "Ministry of Examples" || len(r.Chain) != 3 || r.SigningTime.IsZero() || r.Address != addr {
				t.Errorf("%s: result %+v", name, r)
			}
			if !bytes.Equal(r.Entity, testsign.Entity("hello")) {
				t.Errorf("%s: entity %q", name, r.Entity)
			}
			want := map[pkitest.KeyType]string{pkitest.RSA2048: "rsa-sha256", pkitest.ECDSAP256: "ecdsa-sha256"}[kt]
			if r.Algorithm != want {
				t.Errorf("%s: algorithm %s, want %s", name, r.Algorithm, want)
			}
			if name == "detached" && (r.Form != smimeverify.Detached || r.Micalg != "sha-256") {
				t.Errorf("form %s micalg %s", r.Form, r.Micalg)
			}
			if len(r.Mismatched) != 0 {
				t.Errorf("mismatched %v", r.Mismatched)
			}
		}
	}
}

func TestTampered(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	id := ca.Identity(t, addr)
	msg := testsign.Detached(t, id, outer, testsign.Entity("pay 100 yen"))
	bad := bytes.Replace(msg, []byte("pay 100 yen"), []byte("pay 900 yen"), 1)
	expect(t, verifier(ca, time.Now()).Verify(bad, addr), authres.ResultFail, "altered")

	op := testsign.Opaque(t, id, outer, testsign.Entity("pay 100 yen"))
	// Flip one base64 character inside the signed-data.
	i := bytes.Index(op, []byte("\r\n\r\n")) + 200
	op = append([]byte(nil), op...)
	if op[i] == 'A' {
		op[i] = 'B'
	} else {
		op[i] = 'A'
	}
	r := verifier(ca, time.Now()).Verify(op, addr)
	if r.Status == authres.ResultPass {
		t.Fatalf("tampered opaque passed")
	}
}

func TestStructureAttacks(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	id := ca.Identity(t, addr)
	msg := testsign.Detached(t, id, outer, testsign.Entity("genuine text"))
	v := verifier(ca, time.Now())

	// A third part appended after the signature.
	close := []byte("--" + testsign.Boundary + "--\r\n")
	third := bytes.Replace(msg, close, []byte("--"+testsign.Boundary+"\r\nContent-Type: text/plain\r\n\r\nPay to this account instead.\r\n"+string(close)), 1)
	expect(t, v.Verify(third, addr), authres.ResultFail, "exactly 2")

	// The whole signed message wrapped in multipart/mixed next to an
	// unsigned part.
	h, body := splitMsg(msg)
	wrapped := testsign.CRLF(outer + "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=outer\n\n--outer\nContent-Type: text/plain\n\nUnsigned text first.\n--outer\n")
	wrapped = append(wrapped, contentHeader(h)...)
	wrapped = append(wrapped, "\r\n"...)
	wrapped = append(wrapped, body...)
	wrapped = append(wrapped, "\r\n--outer--\r\n"...)
	expect(t, v.Verify(wrapped, addr), authres.ResultFail, "nested inside unsigned")

	// Not signed at all.
	expect(t, v.Verify(testsign.CRLF(outer+"\nhello\n"), addr), authres.ResultNone, "no S/MIME")

	// Truncated: no close delimiter.
	cut := msg[:bytes.LastIndex(msg, close)]
	expect(t, v.Verify(cut, addr), authres.ResultFail, "cut")

	// The signature part is not a signature.
	notSig := bytes.Replace(msg, []byte("Content-Type: application/pkcs7-signature; name"), []byte("Content-Type: text/plain; name"), 1)
	expect(t, v.Verify(notSig, addr), authres.ResultPermError, "second part")

	// Garbage signature.
	i := bytes.Index(msg, []byte("filename=smime.p7s\r\n\r\n")) + len("filename=smime.p7s\r\n\r\n")
	garbage := append(append([]byte(nil), msg[:i]...), []byte("AAAA\r\n\r\n--"+testsign.Boundary+"--\r\n")...)
	expect(t, v.Verify(garbage, addr), authres.ResultPermError, "")

	// Wrong protocol parameter.
	proto := bytes.Replace(msg, []byte(`protocol="application/pkcs7-signature"`), []byte(`protocol="application/pgp-signature"`), 1)
	expect(t, v.Verify(proto, addr), authres.ResultPermError, "protocol")

	// Encrypted: cannot verify.
	enc := testsign.CRLF(outer + "MIME-Version: 1.0\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\nContent-Transfer-Encoding: base64\n\nAAAA\n")
	expect(t, v.Verify(enc, addr), authres.ResultNeutral, "encrypted")
}

func TestCertificateRules(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	other := pkitest.New(t)
	now := time.Now()
	test := func(name string, id *pkitestIdentity, roots *x509.CertPool, at time.Time, from string, status authres.ResultValue, reason string) {
		t.Helper()
		msg := testsign.Detached(t, id, outer, testsign.Entity("hello"))
		r := smimeverify.New(smimeverify.Options{Roots: roots, Now: func() time.Time { return at }}).Verify(msg, from)
		if r.Status != status || !strings.Contains(r.Reason, reason) {
			t.Errorf("%s: %s (%s), want %s (%s)", name, r.Status, r.Reason, status, reason)
		}
	}
	test("good", ca.Identity(t, addr), ca.Roots(), now, addr, authres.ResultPass, "")
	test("domain case", ca.Identity(t, addr), ca.Roots(), now, "taro@EXAMPLE.Go.JP", authres.ResultPass, "")
	test("local part case", ca.Identity(t, addr), ca.Roots(), now, "Taro@example.go.jp", authres.ResultFail, "not for the From address")
	test("other address", ca.Identity(t, "jiro@example.go.jp"), ca.Roots(), now, addr, authres.ResultFail, "not for the From address")
	test("no email SAN", ca.Identity(t, addr, pkitest.NoEmailSAN(), pkitest.ExtraEmails("x@example.go.jp")), ca.Roots(), now, addr, authres.ResultFail, "not for the From address")
	test("no from", ca.Identity(t, addr), ca.Roots(), now, "", authres.ResultFail, "no usable From")
	test("other anchor", ca.Identity(t, addr), other.Roots(), now, addr, authres.ResultFail, "does not chain")
	test("no anchors", ca.Identity(t, addr), nil, now, addr, authres.ResultFail, "no trust anchors")
	test("intermediate is not an anchor", ca.Identity(t, addr), ca.Intermediates(), now, addr, authres.ResultPass, "")
	self := pkitest.SelfSigned(t, addr)
	test("self-signed", self, ca.Roots(), now, addr, authres.ResultFail, "does not chain")
	test("self-signed among the anchors", self, testsign.Pool(ca.Root, self.Certificate), now, addr, authres.ResultFail, "itself a trust anchor")
	test("server EKU", ca.Identity(t, addr, pkitest.EKU(x509.ExtKeyUsageServerAuth)), ca.Roots(), now, addr, authres.ResultFail, "e-mail protection")
	test("any EKU", ca.Identity(t, addr, pkitest.EKU(x509.ExtKeyUsageAny)), ca.Roots(), now, addr, authres.ResultPass, "")
	test("no EKU", ca.Identity(t, addr, pkitest.NoEKU()), ca.Roots(), now, addr, authres.ResultPass, "")
	test("keyEncipherment only", ca.Identity(t, addr, pkitest.KeyUsage(x509.KeyUsageKeyEncipherment)), ca.Roots(), now, addr, authres.ResultFail, "key usage")
	test("nonRepudiation", ca.Identity(t, addr, pkitest.KeyUsage(x509.KeyUsageContentCommitment)), ca.Roots(), now, addr, authres.ResultPass, "")
	test("expired now", ca.Identity(t, addr), ca.Roots(), now.Add(31*24*time.Hour), addr, authres.ResultFail, "expired or not yet valid")
	// Valid now (the --at time) but not when the message says it was signed.
	test("not valid at signing time", ca.Identity(t, addr, pkitest.Validity(now.Add(time.Hour), now.Add(48*time.Hour))), ca.Roots(), now.Add(2*time.Hour), addr, authres.ResultFail, "signing time")
	// Valid at signing time, expired by now.
	test("expired since signing", ca.Identity(t, addr, pkitest.Validity(now.Add(-time.Hour), now.Add(time.Hour))), ca.Roots(), now.Add(2*time.Hour), addr, authres.ResultFail, "expired")
}

func TestChainCacheHonoursTime(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	now := time.Now()
	at := now
	v := smimeverify.New(smimeverify.Options{Roots: ca.Roots(), Now: func() time.Time { return at }})
	msg := testsign.Detached(t, ca.Identity(t, addr), outer, testsign.Entity("x"))
	expect(t, v.Verify(msg, addr), authres.ResultPass, "")
	at = now.Add(40 * 24 * time.Hour)
	expect(t, v.Verify(msg, addr), authres.ResultFail, "expired")
}

func TestInnerHeaders(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	id := ca.Identity(t, addr)
	v := verifier(ca, time.Now())
	// Same values inside (folded differently, encoded-word subject): fine.
	same := testsign.CRLF("From: taro@EXAMPLE.go.jp\nSubject: =?UTF-8?B?dGVzdA==?=\nDate: Thu, 26 Nov 2026 01:00:00 +0000\nContent-Type: text/plain\n\nhello\n")
	r := v.Verify(testsign.Detached(t, id, outer, same), addr)
	expect(t, r, authres.ResultPass, "")
	if len(r.Mismatched) != 0 {
		t.Fatalf("mismatched %v", r.Mismatched)
	}
	diff := testsign.CRLF("From: boss@example.go.jp\nSubject: urgent transfer\nContent-Type: text/plain\n\nhello\n")
	r = v.Verify(testsign.Detached(t, id, outer, diff), addr)
	if strings.Join(r.Mismatched, ",") != "From,Subject" {
		t.Fatalf("mismatched %v", r.Mismatched)
	}
	// A wrapped message/rfc822 (RFC 8551 3.1) is compared too.
	wrapped := testsign.CRLF("Content-Type: message/rfc822\n\nFrom: taro@example.go.jp\nSubject: other subject\n\nhello\n")
	r = v.Verify(testsign.Opaque(t, id, outer, wrapped), addr)
	if strings.Join(r.Mismatched, ",") != "Subject" {
		t.Fatalf("mismatched %v", r.Mismatched)
	}
}

func TestSHA1Refused(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	id := ca.Identity(t, addr)
	entity := testsign.Entity("hello")
	sd, err := pkcs7.NewSignedData(entity)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA1)
	if err := sd.AddSignerChain(id.Certificate, id.Signer, id.Chain, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	r := verifier(ca, time.Now()).Verify(testsign.DetachedSig(outer, entity, der), addr)
	expect(t, r, authres.ResultFail, "rsa-sha1; SHA-256 or stronger")
}

func TestSmtpUTF8Mailbox(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	const eai = "太郎@example.go.jp"
	id := ca.Identity(t, "taro@example.go.jp", pkitest.SmtpUTF8Mailbox(eai))
	msg := testsign.Detached(t, id, outer, testsign.Entity("x"))
	v := verifier(ca, time.Now())
	expect(t, v.Verify(msg, eai), authres.ResultPass, "")
	expect(t, v.Verify(msg, "次郎@example.go.jp"), authres.ResultFail, "太郎@example.go.jp")
}

// TestInnerHeaderUnreadable: a signed entity whose header this parser
// cannot read (here a field hidden behind a bare CR, and the same inside
// a wrapped message/rfc822) is reported, never taken as "no difference".
func TestInnerHeaderUnreadable(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	id := ca.Identity(t, addr, pkitest.WithKeyType(pkitest.ECDSAP256))
	v := verifier(ca, time.Now())
	for _, entity := range [][]byte{
		[]byte("Content-Type: text/plain\r\nX-Note: a\rFrom: Minister <minister@example.go.jp>\r\n\r\nhello\r\n"),
		[]byte("Content-Type: message/rfc822\r\n\r\nX-Note: a\rFrom: Minister <minister@example.go.jp>\r\n\r\nhello\r\n"),
	} {
		r := v.Verify(testsign.Detached(t, id, outer, entity), addr)
		expect(t, r, authres.ResultPass, "")
		if !errors.Is(r.InnerErr, smimeverify.ErrMalformed) || !errors.Is(r.InnerErr, rfc5322.ErrSyntax) {
			t.Errorf("%q: InnerErr %v", entity, r.InnerErr)
		}
	}
	r := v.Verify(testsign.Detached(t, id, outer, testsign.Entity("x")), addr)
	if r.InnerErr != nil {
		t.Errorf("readable entity: %v", r.InnerErr)
	}
}
