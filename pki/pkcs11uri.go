package pki

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
)

// ErrPKCS11: a key held in an HSM could not be reached: a malformed
// pkcs11: URI, a module that does not load, a token or key that is not
// there, a wrong PIN, or a static binary that cannot load modules.
var ErrPKCS11 = errors.New("pki: pkcs#11")

// PKCS11URI names a private key held in an HSM, in the RFC 7512 form
//
//	pkcs11:token=LABEL;object=LABEL;id=%01;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/etc/kakuin/hsm.pin
//
// A key file (a DKIM key, the issuing CA's key, the STARTTLS key, a key
// in certs/) may hold such a URI, on one line, instead of a PEM key: the
// key then never leaves the HSM, and kakuin signs through the module
// (PKCS#11, by github.com/ThalesGroup/crypto11). The file keeps the mode
// rules of a key file (0600), since it names the PIN file.
type PKCS11URI struct {
	// Token is the token label (RFC 7512 "token"); required.
	Token string
	// Serial is the token serial number ("serial"); optional.
	Serial string
	// Object is the key's label (CKA_LABEL, "object") and ID its CKA_ID
	// ("id", percent-encoded bytes); at least one of them.
	Object string
	ID     []byte
	// Module is the PKCS#11 library ("module-path"); required.
	Module string
	// PINFile is the file holding the user PIN ("pin-source", a path or
	// a file: URI); required. It obeys the key file mode rules.
	PINFile string
}

// IsPKCS11URI reports whether the content of a key file is a pkcs11: URI
// rather than PEM or PKCS#12.
func IsPKCS11URI(data []byte) bool {
	return bytes.HasPrefix(bytes.TrimSpace(data), []byte("pkcs11:"))
}

// ParsePKCS11URI parses the RFC 7512 URI s. It takes the path attributes
// token, serial, object, id and type (which, if present, must be
// "private"), and the query attributes module-path and pin-source; a PIN
// in the URI itself (pin-value) is refused, and so is any other
// attribute (RFC 7512 2.3: a URI that is not fully understood must not be
// used to select a key). Errors wrap ErrPKCS11.
func ParsePKCS11URI(s string) (PKCS11URI, error) {
	var u PKCS11URI
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return u, fmt.Errorf("%w: not a pkcs11: URI", ErrPKCS11)
	}
	path, query, _ := strings.Cut(rest, "?")
	seen := map[string]bool{}
	attr := func(kv string) (string, string, error) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return "", "", fmt.Errorf("%w: attribute %q has no value", ErrPKCS11, kv)
		}
		if seen[k] {
			return "", "", fmt.Errorf("%w: attribute %q given twice", ErrPKCS11, k)
		}
		seen[k] = true
		dv, err := url.PathUnescape(v) // RFC 7512 2.3: pct-encoded octets
		if err != nil {
			return "", "", fmt.Errorf("%w: attribute %q: %w", ErrPKCS11, k, err)
		}
		return k, dv, nil
	}
	if path != "" {
		for _, kv := range strings.Split(path, ";") {
			k, v, err := attr(kv)
			if err != nil {
				return u, err
			}
			switch k {
			case "token":
				u.Token = v
			case "serial":
				u.Serial = v
			case "object":
				u.Object = v
			case "id":
				u.ID = []byte(v)
			case "type":
				if v != "private" {
					return u, fmt.Errorf("%w: type=%s: a signing key is type=private", ErrPKCS11, v)
				}
			default:
				return u, fmt.Errorf("%w: unsupported path attribute %q", ErrPKCS11, k)
			}
		}
	}
	if query != "" {
		for _, kv := range strings.Split(query, "&") {
			k, v, err := attr(kv)
			if err != nil {
				return u, err
			}
			switch k {
			case "module-path":
				u.Module = v
			case "pin-source":
				u.PINFile = strings.TrimPrefix(v, "file:")
			case "pin-value":
				return u, fmt.Errorf("%w: pin-value: put the PIN in a file (mode 0600) named by pin-source", ErrPKCS11)
			default:
				return u, fmt.Errorf("%w: unsupported query attribute %q", ErrPKCS11, k)
			}
		}
	}
	switch {
	case u.Token == "":
		return u, fmt.Errorf("%w: no token= attribute", ErrPKCS11)
	case u.Object == "" && len(u.ID) == 0:
		return u, fmt.Errorf("%w: neither object= nor id=: which key?", ErrPKCS11)
	case u.Module == "" || !filepath.IsAbs(u.Module):
		return u, fmt.Errorf("%w: module-path must name the PKCS#11 library by its absolute path", ErrPKCS11)
	case u.PINFile == "" || !filepath.IsAbs(u.PINFile):
		return u, fmt.Errorf("%w: pin-source must name the PIN file by its absolute path", ErrPKCS11)
	}
	return u, nil
}

// String returns the URI without its query (module and PIN file), for
// messages.
func (u PKCS11URI) String() string {
	var b strings.Builder
	b.WriteString("pkcs11:token=" + url.PathEscape(u.Token))
	if u.Serial != "" {
		b.WriteString(";serial=" + url.PathEscape(u.Serial))
	}
	if u.Object != "" {
		b.WriteString(";object=" + url.PathEscape(u.Object))
	}
	if len(u.ID) > 0 {
		b.WriteString(";id=")
		for _, c := range u.ID {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// loadPKCS11Signer returns the key that the pkcs11: URI in data names,
// read from a key file at path.
func loadPKCS11Signer(path string, data []byte) (crypto.Signer, error) {
	u, err := ParsePKCS11URI(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pin, err := readKeyMaterial(u.PINFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: PIN file: %w", ErrPKCS11, path, err)
	}
	s, err := openPKCS11Key(u, strings.TrimRight(string(pin), "\r\n"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}
