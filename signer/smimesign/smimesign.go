// Package smimesign makes an S/MIME 4.0 clear-signed message body (RFC
// 8551 3.5.3): multipart/signed with the exact bytes of a 7-bit CRLF MIME
// entity as the first part and a detached CMS SignedData (RFC 5652) as
// application/pkcs7-signature in the second.
//
// The SignedData carries SHA-256 (RFC 8551 2.1, RFC 5754), an RSA PKCS#1
// v1.5 or ECDSA P-256 signature made through crypto.Signer only (the key
// may live in an HSM), the signer certificate and its intermediates, leaf
// first, without the root (RFC 8550 3, RULES S5), and the signed attributes
// contentType, signingTime, messageDigest and SMIMECapabilities (RFC 8551
// 2.5, RULES S4).
//
// Why not github.com/smallstep/pkcs7's SignedData builder: it stamps
// signingTime with time.Now() (the clock cannot be injected, and a second
// signingTime attribute is forbidden by RFC 5652 11.3), and
// NewSignedData(content []byte) copies the whole content once more through
// asn1.Marshal, which for a 25 MB message is 25 MB more. This package hashes
// the entity as it streams past, so it never holds a copy. Tests verify the
// output with smallstep/pkcs7 and with OpenSSL.
package smimesign

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/kakuin/kakuin/pki"
)

// Errors. Each is wrapped with the detail; test them with errors.Is.
var (
	// ErrEntity: the entity is not 7-bit CRLF text with lines of at most
	// 998 octets, so it could be changed in transit after signing (RFC
	// 8551 3.1.1-3.1.3, RULES S2).
	ErrEntity = errors.New("smimesign: entity not 7-bit canonical")
	// ErrKey: the identity is unusable (no certificate, a key that is not
	// RSA or ECDSA P-256, a key that does not match the certificate) or
	// the key failed to sign.
	ErrKey = errors.New("smimesign: signing key")
	// ErrBoundary: every boundary drawn occurs in the entity. With 128
	// random bits per boundary this means a broken random source.
	ErrBoundary = errors.New("smimesign: no usable boundary")
)

// Options configure Sign. The zero value is ready to use.
type Options struct {
	// Now gives the signingTime attribute. If nil, time.Now.
	Now func() time.Time
	// Rand is the randomness for boundaries and ECDSA signatures. If nil,
	// crypto/rand.Reader.
	Rand io.Reader
}

// maxLine is the longest line allowed, CRLF excluded (RFC 5322 2.1.1).
const maxLine = 998

// candidates is how many boundaries Sign draws before reading the entity;
// it keeps the first one that does not occur in it.
const candidates = 4

// OIDs (RFC 5652, RFC 5754, RFC 3565, RFC 5084, RFC 8551).
var (
	oidData            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidContentType     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidMessageDigest   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidSigningTime     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}
	oidSMIMECaps       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 15}
	oidSHA256          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidRSAEncryption   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidAES256GCM       = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}
	oidAES128GCM       = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 6}
	oidAES256CBC       = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidAES128CBC       = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
)

// capabilities are announced in SMIMECapabilities, most preferred first
// (RFC 8551 2.5.2): AES-GCM for AuthEnvelopedData (2.7: AES-128 GCM MUST,
// AES-256 GCM SHOULD), AES-CBC for EnvelopedData (AES-128 CBC MUST, AES-256
// CBC SHOULD). Parameters are absent for all four.
var capabilities = []asn1.ObjectIdentifier{oidAES256GCM, oidAES128GCM, oidAES256CBC, oidAES128CBC}

// Signature is a detached S/MIME signature over one entity, and the
// boundary that delimits it.
type Signature struct {
	// Boundary is the multipart boundary; it does not occur in the entity.
	Boundary string
	// Digest is the SHA-256 of the entity.
	Digest []byte
	// Size is the entity's length in octets.
	Size int64
	// DER is the CMS ContentInfo holding the detached SignedData: the
	// content of smime.p7s.
	DER []byte
	// Algorithm is "rsa-sha256" or "ecdsa-sha256".
	Algorithm string

	head, tail string // of the body, made once
}

// Sign reads the entity once, to its end, and signs it with id. The entity
// is one MIME entity (header fields, an empty line, the body) that is
// already 7-bit with CRLF line ends (package mime7bit makes it so); Sign
// checks that and refuses anything else with ErrEntity rather than sign
// bytes that transport could alter.
func Sign(entity io.Reader, id *pki.Identity, opts Options) (*Signature, error) {
	if id == nil || id.Certificate == nil || id.Signer == nil {
		return nil, fmt.Errorf("%w: identity without certificate or key", ErrKey)
	}
	algo, sigAlg, err := keyAlgorithm(id)
	if err != nil {
		return nil, err
	}
	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	var cands [candidates]string
	for i := range cands {
		var b [16]byte
		if _, err := io.ReadFull(rnd, b[:]); err != nil {
			return nil, fmt.Errorf("%w: boundary: %w", ErrBoundary, err)
		}
		// RFC 2046 5.1.1: bchars; "=_" cannot occur in quoted-printable
		// or base64 text, so encoded parts never contain the boundary.
		cands[i] = "=_kakuin_" + hex.EncodeToString(b[:])
	}
	digest, size, used, err := scan(entity, cands[:])
	if err != nil {
		return nil, err
	}
	boundary := ""
	for i, c := range cands {
		if !used[i] {
			boundary = c
			break
		}
	}
	if boundary == "" {
		return nil, ErrBoundary
	}
	der, err := signedData(id, digest, now(), sigAlg, rnd)
	if err != nil {
		return nil, err
	}
	return &Signature{Boundary: boundary, Digest: digest, Size: size, DER: der, Algorithm: algo}, nil
}

// keyAlgorithm picks the signature algorithm from the public key: the key
// is only ever used as a crypto.Signer.
func keyAlgorithm(id *pki.Identity) (string, asn1.ObjectIdentifier, error) {
	pub := id.Signer.Public()
	if k, ok := id.Certificate.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(pub) {
		return "", nil, fmt.Errorf("%w: key does not match the certificate of %v", ErrKey, id.Certificate.EmailAddresses)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		// RFC 8551 2.2, RFC 5754 3.2: rsaEncryption with SHA-256, PKCS#1 v1.5.
		return "rsa-sha256", oidRSAEncryption, nil
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			// RFC 8551 2.2, RFC 5753 7.1.3: ecdsa-with-SHA256.
			return "ecdsa-sha256", oidECDSAWithSHA256, nil
		}
	}
	return "", nil, fmt.Errorf("%w: key type %T not supported for s/mime signing", ErrKey, pub)
}

// scan hashes the entity, checks that it is 7-bit CRLF with short lines,
// and notes which candidate boundaries begin a line after "--" (RFC 2046
// 5.1.1: the boundary must not appear in the encapsulated part).
func scan(r io.Reader, cands []string) (digest []byte, size int64, used []bool, err error) {
	h := sha256.New()
	br := bufio.NewReaderSize(r, 8<<10) // lines are at most 1000 octets
	used = make([]bool, len(cands))
	atStart, prevCR, lineLen := true, false, 0
	for {
		line, rerr := br.ReadSlice('\n')
		if len(line) > 0 {
			h.Write(line)
			size += int64(len(line))
			if atStart && len(line) > 2 && line[0] == '-' && line[1] == '-' {
				for i, c := range cands {
					if bytes.HasPrefix(line[2:], []byte(c)) {
						used[i] = true
					}
				}
			}
			if err := check(line, &prevCR, &lineLen, size); err != nil {
				return nil, 0, nil, err
			}
		}
		atStart = rerr == nil
		if rerr == io.EOF {
			break
		}
		if rerr != nil && !errors.Is(rerr, bufio.ErrBufferFull) {
			return nil, 0, nil, rerr
		}
	}
	if prevCR {
		return nil, 0, nil, fmt.Errorf("%w: bare CR at the end", ErrEntity)
	}
	return h.Sum(nil), size, used, nil
}

// check checks one piece of the entity (a line, or part of a long one):
// 7-bit (RFC 8551 3.1.2) without NUL (RFC 2045 2.7), CR only before LF and
// LF only after CR, lines of at most maxLine octets (RFC 5322 2.1.1).
// prevCR and lineLen carry the state from one piece to the next; end is the
// offset just after the piece, for messages.
func check(p []byte, prevCR *bool, lineLen *int, end int64) error {
	// Fast path, 8 octets at a time: no octet with the high bit set and
	// none zero (the "has zero byte" trick).
	i := 0
	for ; i+8 <= len(p); i += 8 {
		v := binary.LittleEndian.Uint64(p[i:])
		if v&0x8080808080808080 != 0 || (v-0x0101010101010101)&^v&0x8080808080808080 != 0 {
			return fmt.Errorf("%w: 8-bit or NUL octet before %d", ErrEntity, end)
		}
	}
	for _, c := range p[i:] {
		if c >= 0x80 || c == 0 {
			return fmt.Errorf("%w: 8-bit or NUL octet before %d", ErrEntity, end)
		}
	}
	// Line structure: CRs and LFs are rare, find them with IndexByte.
	for len(p) > 0 {
		if *prevCR {
			if p[0] != '\n' {
				return fmt.Errorf("%w: bare CR before %d", ErrEntity, end)
			}
			*prevCR, *lineLen = false, 0
			p = p[1:]
			continue
		}
		k := bytes.IndexAny(p, "\r\n")
		if k < 0 {
			k = len(p)
		}
		*lineLen += k
		if *lineLen > maxLine {
			return fmt.Errorf("%w: line over %d octets", ErrEntity, maxLine)
		}
		if k == len(p) {
			return nil
		}
		if p[k] == '\n' {
			return fmt.Errorf("%w: bare LF before %d", ErrEntity, end)
		}
		*prevCR = true
		p = p[k+1:]
	}
	return nil
}

// signedData builds the DER ContentInfo of a detached SignedData (RFC 5652
// 5.1-5.4).
func signedData(id *pki.Identity, digest []byte, signingTime time.Time, sigAlg asn1.ObjectIdentifier, rnd io.Reader) ([]byte, error) {
	attrs, err := signedAttributes(digest, signingTime)
	if err != nil {
		return nil, err
	}
	// RFC 5652 5.4: the signature covers the DER of the attributes with
	// an EXPLICIT SET OF tag, not the [0] IMPLICIT tag they carry in
	// SignerInfo.
	var set cryptobyte.Builder
	set.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
		for _, a := range attrs {
			b.AddBytes(a)
		}
	})
	toSign, err := set.Bytes()
	if err != nil {
		return nil, fmt.Errorf("smimesign: encoding attributes: %w", err)
	}
	sum := sha256.Sum256(toSign)
	sig, err := id.Signer.Sign(rnd, sum[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}

	var b cryptobyte.Builder
	// ContentInfo (RFC 5652 3)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			// SignedData (RFC 5652 5.1)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				// version 1: issuerAndSerialNumber, id-data, no
				// attribute certificates (RFC 5652 5.1).
				b.AddASN1Int64(1)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					addAlgorithm(b, oidSHA256, false)
				})
				// EncapsulatedContentInfo without eContent: detached
				// (RFC 5652 5.2, RFC 8551 3.5.3).
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidData)
				})
				// certificates [0] IMPLICIT: leaf first, then the
				// intermediates, never the root (RFC 8550 3, RULES S5).
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddBytes(id.Certificate.Raw)
					for _, c := range id.Chain {
						if isSelfSigned(c) {
							continue
						}
						b.AddBytes(c.Raw)
					}
				})
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					// SignerInfo (RFC 5652 5.3)
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1Int64(1)
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddBytes(id.Certificate.RawIssuer)
							b.AddASN1BigInt(id.Certificate.SerialNumber)
						})
						addAlgorithm(b, oidSHA256, false)
						b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
							for _, a := range attrs {
								b.AddBytes(a)
							}
						})
						// RFC 5754 3.2: rsaEncryption takes NULL
						// parameters; RFC 5758 3.2: ecdsa-with-SHA256
						// takes none.
						addAlgorithm(b, sigAlg, sigAlg.Equal(oidRSAEncryption))
						b.AddASN1OctetString(sig)
					})
				})
			})
		})
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("smimesign: encoding signed data: %w", err)
	}
	return der, nil
}

// signedAttributes returns the DER of each signed attribute, in DER SET OF
// order (sorted by encoding, X.690 11.6).
func signedAttributes(digest []byte, signingTime time.Time) ([][]byte, error) {
	attr := func(oid asn1.ObjectIdentifier, value func(*cryptobyte.Builder)) ([]byte, error) {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			b.AddASN1(cbasn1.SET, value)
		})
		return b.Bytes()
	}
	t := signingTime.UTC().Truncate(time.Second)
	var attrs [][]byte
	for _, mk := range []func() ([]byte, error){
		func() ([]byte, error) { // RFC 5652 11.1
			return attr(oidContentType, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidData) })
		},
		func() ([]byte, error) { // RFC 5652 11.2
			return attr(oidMessageDigest, func(b *cryptobyte.Builder) { b.AddASN1OctetString(digest) })
		},
		func() ([]byte, error) { // RFC 5652 11.3, RFC 8551 2.5.1: UTCTime up to 2049
			return attr(oidSigningTime, func(b *cryptobyte.Builder) {
				if t.Year() >= 1950 && t.Year() < 2050 {
					b.AddASN1UTCTime(t)
				} else {
					b.AddASN1GeneralizedTime(t)
				}
			})
		},
		func() ([]byte, error) { // RFC 8551 2.5.2
			return attr(oidSMIMECaps, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					for _, c := range capabilities {
						addAlgorithm(b, c, false)
					}
				})
			})
		},
	} {
		a, err := mk()
		if err != nil {
			return nil, fmt.Errorf("smimesign: encoding attribute: %w", err)
		}
		attrs = append(attrs, a)
	}
	slices.SortFunc(attrs, bytes.Compare)
	return attrs, nil
}

func addAlgorithm(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, null bool) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if null {
			b.AddASN1NULL()
		}
	})
}

// isSelfSigned reports whether c is a root: pki.Identity.Chain should not
// hold one, and a root in a signature helps nobody (RFC 8550 3).
func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}
