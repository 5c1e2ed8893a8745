package pki

import (
	"encoding/asn1"
	"fmt"
)

// maxKDFIterations bounds the PBKDF2 / PKCS#12 KDF iteration counts of a
// bundle. go-pkcs12 runs whatever count a file states, so a bundle with
// 2^31 iterations would stall a Store scan for hours; real bundles use
// 2048 (OpenSSL, go-pkcs12 Modern) to a few hundred thousand.
var maxKDFIterations int64 = 1 << 20 // a variable for the fuzz target only

// checkPKCS12Iterations walks the DER of a PFX (RFC 7292) and refuses an
// iteration count above maxKDFIterations. Every iteration count in PFX
// structures is an INTEGER that follows an OCTET STRING (the salt) in the
// same SEQUENCE: MacData, pbeParameter, PBKDF2-params (RFC 8018 A.2). The
// walk descends into constructed values and into OCTET STRINGs that hold
// exactly one DER SEQUENCE (ContentInfo data, AuthenticatedSafe,
// SafeContents). Bags inside encrypted content are reached only by the
// decoder, after a bounded outer KDF. Input that is not DER is left to the
// decoder.
func checkPKCS12Iterations(der []byte) error { return walkIterations(der, 0) }

func walkIterations(b []byte, depth int) error {
	if depth > 24 {
		return nil
	}
	afterOctets := false
	for len(b) > 0 {
		var v asn1.RawValue
		rest, err := asn1.Unmarshal(b, &v)
		if err != nil {
			return nil
		}
		octets := v.Class == asn1.ClassUniversal && v.Tag == asn1.TagOctetString && !v.IsCompound
		switch {
		case v.Class == asn1.ClassUniversal && v.Tag == asn1.TagInteger && afterOctets:
			if len(v.Bytes) > 4 || iterationValue(v.Bytes) > maxKDFIterations {
				return fmt.Errorf("pkcs12: kdf iteration count above %d", maxKDFIterations)
			}
		case v.IsCompound:
			if err := walkIterations(v.Bytes, depth+1); err != nil {
				return err
			}
		case octets && len(v.Bytes) > 0 && v.Bytes[0] == 0x30:
			var inner asn1.RawValue
			if r, err := asn1.Unmarshal(v.Bytes, &inner); err == nil && len(r) == 0 {
				if err := walkIterations(v.Bytes, depth+1); err != nil {
					return err
				}
			}
		}
		afterOctets = octets
		b = rest
	}
	return nil
}

func iterationValue(b []byte) int64 {
	var n int64
	for _, c := range b {
		n = n<<8 | int64(c)
	}
	return n
}
