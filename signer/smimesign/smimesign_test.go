package smimesign

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
)

const entity = "Content-Type: text/plain; charset=ISO-2022-JP\r\n" +
	"Content-Transfer-Encoding: 7bit\r\n" +
	"\r\n" +
	"\x1b$B$3$s$K$A$O\x1b(B\r\n" +
	"--not-a-boundary\r\n" +
	"trailing blank lines follow\r\n\r\n\r\n"

// opaqueSigner hides the concrete key type, as an HSM key does.
type opaqueSigner struct{ s crypto.Signer }

func (o opaqueSigner) Public() crypto.PublicKey { return o.s.Public() }
func (o opaqueSigner) Sign(r io.Reader, d []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.s.Sign(r, d, opts)
}

// parsed splits a multipart/signed body by its boundary and returns the
// first part's exact bytes and the decoded smime.p7s.
func parsed(t *testing.T, sig *Signature, body []byte) (first, p7s []byte, p7sHeader string) {
	t.Helper()
	delim := []byte("\r\n--" + sig.Boundary)
	start := []byte(preamble + "\r\n--" + sig.Boundary + "\r\n")
	if !bytes.HasPrefix(body, start) {
		t.Fatalf("body does not start with the preamble and the first delimiter: %q", body[:min(len(body), 120)])
	}
	rest := body[len(start):]
	i := bytes.Index(rest, delim)
	if i < 0 {
		t.Fatal("no second delimiter")
	}
	first = rest[:i]
	rest = rest[i+len(delim):]
	rest, ok := bytes.CutPrefix(rest, []byte("\r\n"))
	if !ok {
		t.Fatalf("delimiter not followed by CRLF: %q", rest[:min(len(rest), 20)])
	}
	j := bytes.Index(rest, delim)
	if j < 0 || !bytes.Equal(rest[j+len(delim):], []byte("--\r\n")) {
		t.Fatalf("no close delimiter at the end: %q", rest)
	}
	part := rest[:j]
	h, b64, ok := bytes.Cut(part, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("second part has no header: %q", part)
	}
	for _, line := range strings.Split(string(b64), "\r\n") {
		if len(line) > 76 {
			t.Errorf("base64 line of %d characters", len(line))
		}
	}
	p7s, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(b64), "\r\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	return first, p7s, string(h)
}

func TestSign(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	testTime := ca.Now.Add(time.Minute).UTC() // to verify the chain at
	for _, kt := range []struct {
		name string
		typ  pkitest.KeyType
		alg  string
	}{{"rsa", pkitest.RSA2048, "rsa-sha256"}, {"ecdsa", pkitest.ECDSAP256, "ecdsa-sha256"}} {
		t.Run(kt.name, func(t *testing.T) {
			t.Parallel()
			id := ca.Identity(t, "info@example.go.jp", pkitest.WithKeyType(kt.typ))
			id.Signer = opaqueSigner{id.Signer}
			before := time.Now()
			sig, err := Sign(strings.NewReader(entity), id, Options{})
			after := time.Now()
			if err != nil {
				t.Fatal(err)
			}
			if sig.Algorithm != kt.alg || sig.Size != int64(len(entity)) {
				t.Errorf("Algorithm %q Size %d", sig.Algorithm, sig.Size)
			}
			if sum := sha256.Sum256([]byte(entity)); !bytes.Equal(sig.Digest, sum[:]) {
				t.Errorf("Digest %x, want the SHA-256 of the entity %x", sig.Digest, sum)
			}
			var body bytes.Buffer
			n, err := sig.WriteBody(&body, strings.NewReader(entity))
			if err != nil || n != int64(body.Len()) {
				t.Fatalf("WriteBody: %d, %v", n, err)
			}
			first, p7s, p7sHeader := parsed(t, sig, body.Bytes())
			if string(first) != entity {
				t.Errorf("first part differs from the entity:\n%q\n%q", first, entity)
			}
			for _, want := range []string{
				"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n",
				"Content-Transfer-Encoding: base64\r\n",
				"Content-Disposition: attachment; filename=smime.p7s\r\n",
			} {
				if !strings.Contains(p7sHeader+"\r\n", want) {
					t.Errorf("signature part header lacks %q: %q", want, p7sHeader)
				}
			}
			if !bytes.Equal(p7s, sig.DER) {
				t.Error("smime.p7s differs from DER")
			}
			p7, err := pkcs7.Parse(p7s)
			if err != nil {
				t.Fatal(err)
			}
			if len(p7.Content) != 0 {
				t.Error("signature is not detached")
			}
			p7.Content = first
			if err := p7.VerifyWithChainAtTime(ca.Roots(), testTime); err != nil {
				t.Fatalf("verify: %v", err)
			}
			// RULES S5: leaf first, the intermediates, not the root.
			if len(p7.Certificates) != 2 || !p7.Certificates[0].Equal(id.Certificate) || !p7.Certificates[1].Equal(ca.Intermediate) {
				t.Errorf("certificates: %d, want leaf and intermediate", len(p7.Certificates))
			}
			// smallstep/pkcs7 stamps signingTime with time.Now(), in
			// whole seconds.
			var st time.Time
			if err := p7.UnmarshalSignedAttribute(pkcs7.OIDAttributeSigningTime, &st); err != nil ||
				st.Before(before.Truncate(time.Second)) || st.After(after) {
				t.Errorf("signingTime %v, %v; want within [%v, %v]", st, err, before, after)
			}
			var md []byte
			if err := p7.UnmarshalSignedAttribute(pkcs7.OIDAttributeMessageDigest, &md); err != nil || !bytes.Equal(md, sig.Digest) {
				t.Errorf("messageDigest %x, %v; want %x", md, err, sig.Digest)
			}
			var ct asn1.ObjectIdentifier
			if err := p7.UnmarshalSignedAttribute(pkcs7.OIDAttributeContentType, &ct); err != nil || !ct.Equal(pkcs7.OIDData) {
				t.Errorf("contentType %v, %v", ct, err)
			}
			var caps []struct{ ID asn1.ObjectIdentifier }
			if err := p7.UnmarshalSignedAttribute(oidSMIMECaps, &caps); err != nil || len(caps) != len(capabilities) || !caps[0].ID.Equal(oidAES256GCM) {
				t.Errorf("SMIMECapabilities %v, %v", caps, err)
			}
			if !p7.Signers[0].DigestAlgorithm.Algorithm.Equal(pkcs7.OIDDigestAlgorithmSHA256) {
				t.Errorf("digest algorithm %v, want SHA-256", p7.Signers[0].DigestAlgorithm.Algorithm)
			}
			// RFC 8551 2.2: sha256WithRSAEncryption (RFC 5754 3.2) or
			// ecdsa-with-SHA256 (RFC 5753 7.1.3), never SHA-1.
			wantSigAlg := map[string]asn1.ObjectIdentifier{"rsa-sha256": pkcs7.OIDEncryptionAlgorithmRSASHA256,
				"ecdsa-sha256": pkcs7.OIDDigestAlgorithmECDSASHA256}[kt.alg]
			if got := p7.Signers[0].DigestEncryptionAlgorithm.Algorithm; !got.Equal(wantSigAlg) {
				t.Errorf("signature algorithm %v, want %v", got, wantSigAlg)
			}
			// One changed octet in the entity breaks the signature.
			tampered := []byte(entity)
			tampered[len(tampered)-8] ^= 1
			p7.Content = tampered
			var mismatch *pkcs7.MessageDigestMismatchError
			if err := p7.VerifyWithChainAtTime(ca.Roots(), testTime); !errors.As(err, &mismatch) {
				t.Errorf("tampered entity: %v", err)
			}
			ct2 := sig.ContentType()
			for _, want := range []string{"multipart/signed;", `protocol="application/pkcs7-signature";`, "micalg=sha-256;", `boundary="` + sig.Boundary + `"`} {
				if !strings.Contains(ct2, want) {
					t.Errorf("Content-Type %q lacks %q", ct2, want)
				}
			}
			opensslVerify(t, ca, sig, body.Bytes(), true)
			opensslVerify(t, ca, sig, bytes.Replace(body.Bytes(), []byte("trailing"), []byte("trailinG"), 1), false)
			nssVerify(t, ca, sig, []byte(entity), true)
			nssVerify(t, ca, sig, tampered, false)
		})
	}
}

// opensslVerify checks the message with `openssl cms -verify` against the
// test root alone.
func opensslVerify(t *testing.T, ca *pkitest.CA, sig *Signature, body []byte, wantOK bool) {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl not installed (make deps): %v", err)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root.pem")
	msg := filepath.Join(dir, "msg.eml")
	if err := os.WriteFile(root, ca.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	eml := "MIME-Version: 1.0\r\nContent-Type: " + sig.ContentType() + "\r\n\r\n" + string(body)
	if err := os.WriteFile(msg, []byte(eml), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "cms", "-verify", "-in", msg, "-CAfile", root, "-no-CApath", "-no-CAstore",
		"-purpose", "smimesign", "-out", filepath.Join(dir, "content")).CombinedOutput()
	if wantOK && err != nil {
		t.Fatalf("openssl cms -verify: %v\n%s", err, out)
	}
	if !wantOK && err == nil {
		t.Fatalf("openssl cms -verify accepted a tampered message:\n%s", out)
	}
	if wantOK {
		content, _ := os.ReadFile(filepath.Join(dir, "content"))
		if !bytes.Equal(content, []byte(entity)) {
			t.Errorf("openssl's content %q differs from the entity", content)
		}
	}
}

// nssVerify checks the detached signature over entity with NSS's cmsutil
// (what Thunderbird verifies with), trusting the test root alone for
// e-mail signing (certUsageEmailSigner, -u 4).
func nssVerify(t *testing.T, ca *pkitest.CA, sig *Signature, entity []byte, wantOK bool) {
	t.Helper()
	for _, tool := range []string{"certutil", "cmsutil"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (make deps installs libnss3-tools): %v", tool, err)
		}
	}
	dir := t.TempDir()
	db := "sql:" + dir
	root := filepath.Join(dir, "root.pem")
	sigPath := filepath.Join(dir, "smime.p7s")
	entityPath := filepath.Join(dir, "entity")
	for name, data := range map[string][]byte{root: ca.RootPEM(), sigPath: sig.DER, entityPath: entity} {
		if err := os.WriteFile(name, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"-N", "-d", db, "--empty-password"},
		{"-A", "-d", db, "-n", "test root", "-t", "C,C,C", "-i", root},
	} {
		if out, err := exec.Command("certutil", args...).CombinedOutput(); err != nil {
			t.Fatalf("certutil %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	out, err := exec.Command("cmsutil", "-D", "-i", sigPath, "-c", entityPath, "-d", db, "-u", "4", "-n", "-h", "2").CombinedOutput()
	good := err == nil && bytes.Contains(out, []byte("signer0.status=GoodSignature")) && !bytes.Contains(out, []byte("signer1."))
	if good != wantOK {
		t.Errorf("cmsutil: good signature %v, want %v: %v\n%s", good, wantOK, err, out)
	}
}

func TestSignRefusesNonCanonical(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	id := ca.Identity(t, "info@example.go.jp")
	for _, e := range []string{
		"Content-Type: text/plain\r\n\r\nbare LF\n",
		"Content-Type: text/plain\r\n\r\nbare CR\rx\r\n",
		"Content-Type: text/plain\r\n\r\nends in CR\r",
		"Content-Type: text/plain; charset=utf-8\r\n\r\n8bit \xe3\x81\x82\r\n",
		"Content-Type: text/plain\r\n\r\nNUL \x00\r\n",
		"Content-Type: text/plain\r\n\r\n" + strings.Repeat("x", 999) + "\r\n",
	} {
		if _, err := Sign(strings.NewReader(e), id, Options{}); !errors.Is(err, ErrEntity) {
			t.Errorf("Sign(%q) = %v, want ErrEntity", e[:min(len(e), 60)], err)
		}
	}
	if _, err := Sign(strings.NewReader("\r\n"+strings.Repeat("x", 998)+"\r\n"), id, Options{}); err != nil {
		t.Errorf("998-octet line: %v", err)
	}
}

func TestSignRefusesBadKeys(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	test := func(id *pki.Identity) {
		t.Helper()
		if _, err := Sign(strings.NewReader(entity), id, Options{}); !errors.Is(err, ErrKey) {
			t.Errorf("Sign = %v, want ErrKey", err)
		}
	}
	test(nil)
	test(&pki.Identity{})
	ed := ca.Identity(t, "ed@example.go.jp", pkitest.WithKeyType(pkitest.Ed25519))
	test(ed) // RFC 8551 2.2: sign with RSA or ECDSA P-256
	a := ca.Identity(t, "a@example.go.jp", pkitest.WithKeyType(pkitest.ECDSAP256))
	b := ca.Identity(t, "b@example.go.jp", pkitest.WithKeyType(pkitest.ECDSAP256))
	test(&pki.Identity{Certificate: a.Certificate, Chain: a.Chain, Signer: b.Signer}) // key of another certificate
	test(&pki.Identity{Certificate: a.Certificate, Chain: a.Chain, Signer: failingSigner{a.Signer}})
}

type failingSigner struct{ crypto.Signer }

func (failingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("hsm: session closed")
}

// fixedRand returns the same 16 octets over and over: every boundary drawn
// is the same, so the entity can contain it.
type fixedRand struct{}

func (fixedRand) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i % 16)
	}
	return len(p), nil
}

// seqRand returns 0x00..., then 0x01..., one value per 16-octet read.
type seqRand struct{ n byte }

func (s *seqRand) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = s.n
	}
	s.n++
	return len(p), nil
}

func TestBoundaryNotInEntity(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	id := ca.Identity(t, "info@example.go.jp", pkitest.WithKeyType(pkitest.ECDSAP256))
	first := "=_kakuin_" + strings.Repeat("00", 16)
	second := "=_kakuin_" + strings.Repeat("01", 16)
	e := "Content-Type: text/plain\r\n\r\n--" + first + "\r\n"
	sig, err := Sign(strings.NewReader(e), id, Options{Rand: &seqRand{}})
	if err != nil || sig.Boundary != second {
		t.Fatalf("boundary %q, %v; want %q", sig.Boundary, err, second)
	}
	// Not at the start of a line: no conflict.
	sig, err = Sign(strings.NewReader("\r\nx--"+first+"\r\n"), id, Options{Rand: &seqRand{}})
	if err != nil || sig.Boundary != first {
		t.Fatalf("boundary %q, %v; want %q", sig.Boundary, err, first)
	}
	var fr fixedRand
	b := make([]byte, 16)
	fr.Read(b)
	fixed := "=_kakuin_" + strings.ToLower(strings.TrimSpace(hexString(b)))
	if _, err := Sign(strings.NewReader("\r\n--"+fixed+"--\r\n"), id, Options{Rand: fr}); !errors.Is(err, ErrBoundary) {
		t.Errorf("all boundaries in the entity: %v", err)
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}

func TestRootNotIncluded(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	id := ca.Identity(t, "info@example.go.jp", pkitest.WithKeyType(pkitest.ECDSAP256))
	id.Chain = []*x509.Certificate{ca.Intermediate, ca.Root} // a misconfigured store
	sig, err := Sign(strings.NewReader(entity), id, Options{})
	if err != nil {
		t.Fatal(err)
	}
	p7, err := pkcs7.Parse(sig.DER)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range p7.Certificates {
		if c.Equal(ca.Root) {
			t.Error("the root is in the signature (RULES S5)")
		}
	}
}

// TestSigningTimeUTCTime: signingTime is a UTCTime until 2049 (RFC 8551
// 2.5.1, RFC 5652 11.3). smallstep/pkcs7 takes the time from time.Now(),
// so the GeneralizedTime of 2050 on cannot be tested here.
func TestSigningTimeUTCTime(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t)
	id := ca.Identity(t, "info@example.go.jp", pkitest.WithKeyType(pkitest.ECDSAP256))
	before := time.Now().UTC().Truncate(time.Second)
	sig, err := Sign(strings.NewReader(entity), id, Options{})
	after := time.Now().UTC()
	if err != nil {
		t.Fatal(err)
	}
	// Attribute ::= SEQUENCE { id-signingTime, SET { UTCTime } }
	oid, _ := asn1.Marshal(pkcs7.OIDAttributeSigningTime)
	i := bytes.Index(sig.DER, oid)
	if i < 0 {
		t.Fatal("no signingTime attribute")
	}
	v := sig.DER[i+len(oid):]
	if len(v) < 4+13 || v[0] != 0x31 || v[2] != 0x17 || v[3] != 13 {
		t.Fatalf("signingTime is not SET { UTCTime }: % x", v[:min(len(v), 8)])
	}
	st, err := time.Parse("060102150405Z", string(v[4:4+13]))
	if err != nil || st.Before(before) || st.After(after) {
		t.Errorf("signingTime %v, %v; want within [%v, %v]", st, err, before, after)
	}
}

func TestConcat(t *testing.T) {
	t.Parallel()
	want := "head" + entity + "tail"
	c := &Concat{strings.NewReader("head"), strings.NewReader(""), strings.NewReader(entity), strings.NewReader("tail")}
	var got bytes.Buffer
	buf := make([]byte, 3)
	for {
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if got.String() != want {
		t.Errorf("Read: %q", got.String())
	}
	got.Reset()
	c = &Concat{strings.NewReader("head"), strings.NewReader(entity), strings.NewReader("tail")}
	if n, err := c.WriteTo(&got); err != nil || n != int64(len(want)) || got.String() != want {
		t.Errorf("WriteTo: %d %v %q", n, err, got.String())
	}
}
