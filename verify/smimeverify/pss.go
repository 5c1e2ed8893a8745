package smimeverify

import (
	"crypto"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/smallstep/pkcs7"
)

var (
	oidRSAPSS            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidMGF1              = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidMessageDigestAttr = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
)

// pssParameters is RSASSA-PSS-params (RFC 4055 3.1).
type pssParameters struct {
	Hash         pkix.AlgorithmIdentifier `asn1:"explicit,optional,tag:0"`
	MGF          pkix.AlgorithmIdentifier `asn1:"explicit,optional,tag:1"`
	SaltLength   int                      `asn1:"explicit,optional,default:20,tag:2"`
	TrailerField int                      `asn1:"explicit,optional,default:1,tag:3"`
}

// attr mirrors the library's signed attribute for re-encoding.
type attr struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue `asn1:"set"`
}

func hashFor(oid asn1.ObjectIdentifier) (crypto.Hash, error) {
	switch {
	case oid.Equal(oidSHA256):
		return crypto.SHA256, nil
	case oid.Equal(oidSHA384):
		return crypto.SHA384, nil
	case oid.Equal(oidSHA512):
		return crypto.SHA512, nil
	}
	return 0, fmt.Errorf("smimeverify: unsupported digest %s", oid)
}

// verifyPSS checks an RSASSA-PSS signerInfo (RFC 4056 for CMS, RFC 8551
// 2.2): the messageDigest attribute against the content, then the
// signature over the DER signed attributes (RFC 5652 5.4), with the
// parameters' hash, MGF1 with the same hash and salt length. q has one
// signer, whose certificate is ee.
func verifyPSS(q *pkcs7.PKCS7, ee *x509.Certificate) error {
	si := q.Signers[0]
	pub, ok := ee.PublicKey.(*rsa.PublicKey)
	if !ok {
		return errors.New("smimeverify: RSASSA-PSS with a non-RSA certificate")
	}
	var params pssParameters
	if _, err := asn1.Unmarshal(si.DigestEncryptionAlgorithm.Parameters.FullBytes, &params); err != nil {
		return fmt.Errorf("smimeverify: RSASSA-PSS parameters: %w", err)
	}
	// RFC 4055 3.1: the default hash is SHA-1, refused like SHA-1 anywhere.
	h, err := hashFor(params.Hash.Algorithm)
	if err != nil {
		return err
	}
	if !params.MGF.Algorithm.Equal(oidMGF1) {
		return errors.New("smimeverify: RSASSA-PSS mask generation is not MGF1")
	}
	var mgfHash pkix.AlgorithmIdentifier
	if _, err := asn1.Unmarshal(params.MGF.Parameters.FullBytes, &mgfHash); err != nil || !mgfHash.Algorithm.Equal(params.Hash.Algorithm) {
		return errors.New("smimeverify: RSASSA-PSS MGF1 hash differs from the message hash")
	}
	if params.TrailerField != 1 {
		return errors.New("smimeverify: RSASSA-PSS trailer field is not 1")
	}
	dh, err := hashFor(si.DigestAlgorithm.Algorithm)
	if err != nil {
		return err
	}
	if len(si.AuthenticatedAttributes) == 0 {
		return errors.New("smimeverify: RSASSA-PSS signature without signed attributes")
	}
	var digest []byte
	attrs := make([]attr, 0, len(si.AuthenticatedAttributes))
	for _, a := range si.AuthenticatedAttributes {
		attrs = append(attrs, attr{Type: a.Type, Value: a.Value})
		if a.Type.Equal(oidMessageDigestAttr) {
			if _, err := asn1.Unmarshal(a.Value.Bytes, &digest); err != nil {
				return fmt.Errorf("smimeverify: messageDigest: %w", err)
			}
		}
	}
	c := dh.New()
	c.Write(q.Content)
	if sum := c.Sum(nil); subtle.ConstantTimeCompare(sum, digest) != 1 {
		return &pkcs7.MessageDigestMismatchError{ExpectedDigest: digest, ActualDigest: sum}
	}
	// RFC 5652 5.4: the signature covers the DER of SET OF Attribute.
	enc, err := asn1.Marshal(struct {
		A []attr `asn1:"set"`
	}{attrs})
	if err != nil {
		return err
	}
	var outer asn1.RawValue
	if _, err := asn1.Unmarshal(enc, &outer); err != nil {
		return err
	}
	sh := h.New()
	sh.Write(outer.Bytes)
	if err := rsa.VerifyPSS(pub, h, sh.Sum(nil), si.EncryptedDigest, &rsa.PSSOptions{SaltLength: params.SaltLength, Hash: h}); err != nil {
		return fmt.Errorf("smimeverify: RSASSA-PSS: %w", err)
	}
	return nil
}
