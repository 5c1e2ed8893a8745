// Package smimesign makes an S/MIME 4.0 clear-signed message body (RFC
// 8551 3.5.3): multipart/signed with the exact bytes of a 7-bit CRLF MIME
// entity as the first part and a detached CMS SignedData (RFC 5652) as
// application/pkcs7-signature in the second.
//
// The SignedData is built by github.com/smallstep/pkcs7: SHA-256 set
// explicitly (RFC 8551 2.1, RFC 5754; the library defaults to SHA-1), an
// RSA PKCS#1 v1.5 (sha256WithRSAEncryption) or ECDSA P-256
// (ecdsa-with-SHA256) signature made through crypto.Signer only (the key
// may live in an HSM), the signer certificate and its intermediates, leaf
// first, without the root (RFC 8550 3, RULES S5), and the signed attributes
// contentType, messageDigest, signingTime (the library stamps it with
// time.Now) and SMIMECapabilities (RFC 8551 2.5, RULES S4).
//
// This package adds what the library does not do: it checks that the
// entity is 7-bit CRLF text with short lines, picks a boundary that does
// not occur in it, refuses keys other than RSA and ECDSA P-256, and writes
// the multipart/signed body.
package smimesign

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/smallstep/pkcs7"

	"github.com/kakuin/kakuin/pki"
)

// Errors. Each is wrapped with the detail; test them with errors.Is.
var (
	// ErrEntity: the entity is not 7-bit CRLF text with lines of at most
	// 998 octets, so it could be changed in transit after signing (RFC
	// 8551 3.1.1-3.1.3, RULES S2).
	ErrEntity = errors.New("smimesign: entity not 7-bit canonical")
	// ErrKey: the identity is unusable (no certificate, a key that is not
	// RSA or ECDSA P-256, a key that does not match the certificate, a
	// chain that does not link up) or the key failed to sign.
	ErrKey = errors.New("smimesign: signing key")
	// ErrBoundary: every boundary drawn occurs in the entity. With 128
	// random bits per boundary this means a broken random source.
	ErrBoundary = errors.New("smimesign: no usable boundary")
)

// Options configure Sign. The zero value is ready to use.
//
// There is no clock: smallstep/pkcs7 stamps signingTime with time.Now()
// and offers no way to set it (RFC 5652 11.3 forbids a second
// signingTime attribute).
type Options struct {
	// Rand is the randomness for boundaries. If nil, crypto/rand.Reader.
	// The signature itself draws from crypto/rand.Reader (smallstep/pkcs7
	// passes that to crypto.Signer.Sign; only ECDSA uses it).
	Rand io.Reader
}

// maxLine is the longest line allowed, CRLF excluded (RFC 5322 2.1.1).
const maxLine = 998

// candidates is how many boundaries Sign draws before reading the entity;
// it keeps the first one that does not occur in it.
const candidates = 4

// OIDs (RFC 3565, RFC 5084, RFC 8551).
var (
	oidSMIMECaps = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 15}
	oidAES256GCM = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}
	oidAES128GCM = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 6}
	oidAES256CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidAES128CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
)

// capabilities are announced in SMIMECapabilities, most preferred first
// (RFC 8551 2.5.2): AES-GCM for AuthEnvelopedData (2.7: AES-128 GCM MUST,
// AES-256 GCM SHOULD), AES-CBC for EnvelopedData (AES-128 CBC MUST, AES-256
// CBC SHOULD). Parameters are absent for all four.
var capabilities = []asn1.ObjectIdentifier{oidAES256GCM, oidAES128GCM, oidAES256CBC, oidAES128CBC}

// smimeCapabilities is the attribute value: SMIMECapabilities ::= SEQUENCE
// OF SMIMECapability, each an OID without parameters (RFC 8551 2.5.2).
var smimeCapabilities = func() []pkix.AlgorithmIdentifier {
	caps := make([]pkix.AlgorithmIdentifier, len(capabilities))
	for i, c := range capabilities {
		caps[i] = pkix.AlgorithmIdentifier{Algorithm: c}
	}
	return caps
}()

// Signature is a detached S/MIME signature over one entity, and the
// boundary that delimits it.
type Signature struct {
	// Boundary is the multipart boundary; it does not occur in the entity.
	Boundary string
	// Digest is the SHA-256 of the entity (the messageDigest attribute).
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

// Sign reads the entity to its end and signs it with id, as SignBytes does.
// smallstep/pkcs7 needs the entity as one []byte: a caller that already
// holds it so should call SignBytes, which does not copy it.
func Sign(entity io.Reader, id *pki.Identity, opts Options) (*Signature, error) {
	var b bytes.Buffer
	if l, ok := entity.(interface{ Len() int }); ok {
		b.Grow(l.Len() + bytes.MinRead)
	}
	if _, err := b.ReadFrom(entity); err != nil {
		return nil, fmt.Errorf("smimesign: reading entity: %w", err)
	}
	return SignBytes(b.Bytes(), id, opts)
}

// SignBytes signs the entity with id. The entity is one MIME entity (header
// fields, an empty line, the body) that is already 7-bit with CRLF line
// ends (package mime7bit makes it so); SignBytes checks that and refuses
// anything else with ErrEntity rather than sign bytes that transport could
// alter. The entity is not modified, and not retained after SignBytes
// returns.
func SignBytes(entity []byte, id *pki.Identity, opts Options) (*Signature, error) {
	if id == nil || id.Certificate == nil || id.Signer == nil {
		return nil, fmt.Errorf("%w: identity without certificate or key", ErrKey)
	}
	algo, err := keyAlgorithm(id)
	if err != nil {
		return nil, err
	}
	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.Reader
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
	used, err := scan(entity, cands[:])
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

	sd, err := pkcs7.NewSignedData(entity)
	if err != nil {
		return nil, fmt.Errorf("smimesign: signed data: %w", err)
	}
	// RFC 8551 2.1, RFC 5754 2.2: SHA-256. The library's default is SHA-1.
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	// RFC 8551 2.5: contentType, messageDigest and signingTime come from
	// the library; SMIMECapabilities (2.5.2) is ours.
	cfg := pkcs7.SignerInfoConfig{ExtraSignedAttributes: []pkcs7.Attribute{{Type: oidSMIMECaps, Value: smimeCapabilities}}}
	// AddSigner names the signer by the issuer and serial number in its
	// own certificate (RFC 5652 5.3). AddSignerChain would also re-verify
	// the leaf's signature against its issuer on every message: an RSA
	// verification the certificate store already made when it loaded or
	// issued the chain.
	if err := sd.AddSigner(id.Certificate, id.Signer, cfg); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	// RFC 8550 3, RULES S5: the signer certificate (added above), then the
	// intermediates, never the root.
	for _, c := range id.Chain {
		if !isSelfSigned(c) {
			sd.AddCertificate(c)
		}
	}
	digest, err := messageDigest(sd)
	if err != nil {
		return nil, err
	}
	// RFC 8551 3.5.3: detached; the entity travels as the first part.
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("smimesign: encoding signed data: %w", err)
	}
	return &Signature{Boundary: boundary, Digest: digest, Size: int64(len(entity)), DER: der, Algorithm: algo}, nil
}

// messageDigest returns the value of the messageDigest attribute the
// library computed (RFC 5652 11.2), so that the entity is hashed once.
func messageDigest(sd *pkcs7.SignedData) ([]byte, error) {
	for _, si := range sd.GetSignedData().SignerInfos {
		for _, a := range si.AuthenticatedAttributes {
			if !a.Type.Equal(pkcs7.OIDAttributeMessageDigest) {
				continue
			}
			var d []byte
			if _, err := asn1.Unmarshal(a.Value.Bytes, &d); err != nil {
				return nil, fmt.Errorf("smimesign: messageDigest: %w", err)
			}
			return d, nil
		}
	}
	return nil, errors.New("smimesign: no messageDigest attribute")
}

// keyAlgorithm checks the key against the certificate and names the
// signature algorithm: the key is only ever used as a crypto.Signer.
func keyAlgorithm(id *pki.Identity) (string, error) {
	pub := id.Signer.Public()
	if k, ok := id.Certificate.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(pub) {
		return "", fmt.Errorf("%w: key does not match the certificate of %v", ErrKey, id.Certificate.EmailAddresses)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		// RFC 8551 2.2, RFC 5754 3.2: sha256WithRSAEncryption, PKCS#1 v1.5.
		return "rsa-sha256", nil
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			// RFC 8551 2.2, RFC 5753 7.1.3: ecdsa-with-SHA256.
			return "ecdsa-sha256", nil
		}
	}
	return "", fmt.Errorf("%w: key type %T not supported for s/mime signing", ErrKey, pub)
}

// scan checks that the entity is 7-bit CRLF with short lines, and notes
// which candidate boundaries begin a line after "--" (RFC 2046 5.1.1: the
// boundary must not appear in the encapsulated part).
func scan(e []byte, cands []string) (used []bool, err error) {
	used = make([]bool, len(cands))
	if err := check7bit(e); err != nil {
		return nil, err
	}
	// Line by line with IndexByte, which is vectorised.
	for off := 0; off < len(e); {
		line := e[off:]
		if len(line) > 2 && line[0] == '-' && line[1] == '-' {
			for i, c := range cands {
				if bytes.HasPrefix(line[2:], []byte(c)) {
					used[i] = true
				}
			}
		}
		k := bytes.IndexByte(line, '\n') // the line is line[:k-1]
		if k < 0 {
			k = len(line) + 1 // the last line, without CRLF
		} else if k == 0 || line[k-1] != '\r' {
			return nil, fmt.Errorf("%w: bare LF at %d", ErrEntity, off+k)
		}
		if k-1 > maxLine {
			return nil, fmt.Errorf("%w: line over %d octets", ErrEntity, maxLine)
		}
		if i := bytes.IndexByte(line[:k-1], '\r'); i >= 0 {
			if i == len(line)-1 {
				return nil, fmt.Errorf("%w: bare CR at the end", ErrEntity)
			}
			return nil, fmt.Errorf("%w: bare CR at %d", ErrEntity, off+i)
		}
		off += k + 1
	}
	return used, nil
}

// check7bit refuses octets with the high bit set (RFC 8551 3.1.2) and NUL
// (RFC 2045 2.7).
func check7bit(p []byte) error {
	// Fast path, 8 octets at a time: no octet with the high bit set and
	// none zero (the "has zero byte" trick).
	i := 0
	for ; i+8 <= len(p); i += 8 {
		v := binary.LittleEndian.Uint64(p[i:])
		if v&0x8080808080808080 != 0 || (v-0x0101010101010101)&^v&0x8080808080808080 != 0 {
			break
		}
	}
	for ; i < len(p); i++ {
		if c := p[i]; c >= 0x80 || c == 0 {
			return fmt.Errorf("%w: 8-bit or NUL octet at %d", ErrEntity, i)
		}
	}
	return nil
}

// isSelfSigned reports whether c is a root: pki.Identity.Chain should not
// hold one, and a root in a signature helps nobody (RFC 8550 3).
func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}
