package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"software.sslmate.com/src/go-pkcs12"
)

// ErrCertFile: a certificate file could not be read or parsed.
var ErrCertFile = errors.New("pki: certificate file")

// maxKeyFile bounds what is read from a key or certificate file: PEM keys
// and bundles are a few KB; a CA bundle a few hundred.
const maxKeyFile = 4 << 20

// readKeyMaterial opens path, refuses it if group or others may read or
// write it, and returns its content. The mode is taken from the open file
// (fstat), so the check and the read concern the same file.
func readKeyMaterial(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	defer f.Close()
	if err := checkKeyMode(f, path); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKeyFile, path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrKeyFile, path, maxKeyFile)
	}
	return data, nil
}

func checkKeyMode(f *os.File, path string) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrKeyFile, path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%w: %s: not a regular file", ErrKeyFile, path)
	}
	// A private key readable (or writable) by group or others is refused:
	// the operator must fix it rather than have kakuin sign with a key
	// others may have copied.
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %#o; run chmod 600 %s", ErrKeyPermissions, path, perm, path)
	}
	return nil
}

// LoadSigner reads a PEM private key file: PKCS#8 ("PRIVATE KEY"), PKCS#1
// ("RSA PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY"), holding an RSA, ECDSA
// or Ed25519 key. A file that group or others may access is refused with
// an error wrapping ErrKeyPermissions; any other failure wraps ErrKeyFile.
// Encrypted PEM is not supported.
//
// A file holding a pkcs11: URI (PKCS11URI) instead names a key in an HSM:
// the key is found through the PKCS#11 module, and failures wrap
// ErrPKCS11.
func LoadSigner(path string) (crypto.Signer, error) {
	data, err := readKeyMaterial(path)
	if err != nil {
		return nil, err
	}
	if IsPKCS11URI(data) {
		return loadPKCS11Signer(path, data)
	}
	k, err := ParseSigner(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKeyFile, path, err)
	}
	return k, nil
}

// ParseSigner parses the first private key PEM block of data (other blocks,
// such as certificates, are skipped). The error does not wrap ErrKeyFile;
// it never contains key bytes.
func ParseSigner(data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no private key pem block")
		}
		if isKeyBlock(b.Type) {
			return parseKeyBlock(b)
		}
	}
}

func isKeyBlock(t string) bool {
	return t == "PRIVATE KEY" || t == "RSA PRIVATE KEY" || t == "EC PRIVATE KEY" ||
		t == "ENCRYPTED PRIVATE KEY"
}

func parseKeyBlock(b *pem.Block) (crypto.Signer, error) {
	if _, ok := b.Headers["DEK-Info"]; ok || b.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, errors.New("encrypted private keys are not supported")
	}
	var (
		k   any
		err error
	)
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("pem block %q is not a private key", b.Type)
	}
	if err != nil {
		// The x509 errors name the structure, never the key content.
		return nil, fmt.Errorf("%s: %w", b.Type, err)
	}
	return asSigner(k)
}

// asSigner accepts the key types kakuin signs with.
func asSigner(k any) (crypto.Signer, error) {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return rsaSigner(k), nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	case *ed25519.PrivateKey:
		return *k, nil
	}
	return nil, fmt.Errorf("%w: %T", ErrKeyType, k)
}

// MarshalKeyPEM encodes a private key as a PKCS#8 "PRIVATE KEY" PEM block.
func MarshalKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(softKey(key))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyType, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteKeyFile writes key to path as PKCS#8 PEM, mode 0600, atomically:
// the bytes go to a new temporary file in the same directory (O_EXCL,
// 0600), are synced, and are then linked into place. It never replaces an
// existing file: if path exists the error wraps fs.ErrExist. ReplaceKeyFile
// replaces.
func WriteKeyFile(path string, key crypto.Signer) error {
	data, err := MarshalKeyPEM(key)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, data, 0o600, false)
}

// ReplaceKeyFile is WriteKeyFile that atomically replaces an existing file
// (rename).
func ReplaceKeyFile(path string, key crypto.Signer) error {
	data, err := MarshalKeyPEM(key)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, data, 0o600, true)
}

// writeFileAtomic writes data to a temporary file beside path (created with
// O_EXCL and mode perm, so a key is never visible with a wider mode), syncs
// it, and moves it into place: rename when overwrite, otherwise a hard link,
// which fails if path exists, so that nothing is ever clobbered, even by a
// concurrent writer. Readers see either no file or the whole file.
func writeFileAtomic(path string, data []byte, perm os.FileMode, overwrite bool) (err error) {
	dir := filepath.Dir(path)
	if !overwrite {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("pki: writing %s: %w", path, fs.ErrExist)
		}
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("pki: writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		os.Remove(tmp) // after link or on failure; harmless after rename
	}()
	// CreateTemp makes the file 0600 with O_EXCL; set perm explicitly
	// (a certificate is 0644) without widening it beyond what was asked.
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("pki: writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("pki: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("pki: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		f = nil
		return fmt.Errorf("pki: writing %s: %w", path, err)
	}
	f = nil
	if overwrite {
		err = os.Rename(tmp, path)
	} else {
		err = os.Link(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("pki: writing %s: %w", path, err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename or link durable; errors are ignored (some file
// systems cannot sync directories).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// LoadPKCS12 reads a PKCS#12 bundle (modern AES/PBKDF2 or legacy
// encryption, software.sslmate.com/src/go-pkcs12): the private key, its
// certificate and any CA certificates in it. A bundle holds a private key,
// so the file mode rules of LoadSigner apply (ErrKeyPermissions).
func LoadPKCS12(path, password string) (crypto.Signer, *x509.Certificate, []*x509.Certificate, error) {
	data, err := readKeyMaterial(path)
	if err != nil {
		return nil, nil, nil, err
	}
	k, c, cas, err := ParsePKCS12(data, password)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %s: %w", ErrKeyFile, path, err)
	}
	return k, c, cas, nil
}

// ParsePKCS12 decodes a PKCS#12 bundle held in memory (see LoadPKCS12). The
// key must match the certificate.
func ParsePKCS12(data []byte, password string) (crypto.Signer, *x509.Certificate, []*x509.Certificate, error) {
	if err := checkPKCS12Iterations(data); err != nil {
		return nil, nil, nil, err
	}
	k, c, cas, err := pkcs12.DecodeChain(data, password)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pkcs12: %w", err)
	}
	s, err := asSigner(k)
	if err != nil {
		return nil, nil, nil, err
	}
	if !publicKeysEqual(s.Public(), c.PublicKey) {
		return nil, nil, nil, errors.New("pkcs12: key does not match certificate")
	}
	return s, c, cas, nil
}

type equaler interface{ Equal(crypto.PublicKey) bool }

func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// LoadCertificates reads every CERTIFICATE block of a PEM file. A file
// without one is an error wrapping ErrCertFile.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCertFile, err)
	}
	certs, err := ParseCertificatesPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCertFile, path, err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: %s: no certificate", ErrCertFile, path)
	}
	return certs, nil
}

// ParseCertificatesPEM parses every CERTIFICATE block of data; other
// blocks are skipped.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return certs, nil
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
}

// LoadTrustAnchors reads a PEM file of trusted roots into a pool.
func LoadTrustAnchors(path string) (*x509.CertPool, error) {
	certs, err := LoadCertificates(path)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p, nil
}

// LoadCA reads a CA certificate (the first of the PEM file) and its key,
// checking that they match; the key file mode rules apply.
func LoadCA(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certs, err := LoadCertificates(certPath)
	if err != nil {
		return nil, nil, err
	}
	key, err := LoadSigner(keyPath)
	if err != nil {
		return nil, nil, err
	}
	if !publicKeysEqual(key.Public(), certs[0].PublicKey) {
		return nil, nil, fmt.Errorf("%w: %s does not match %s", ErrKeyFile, keyPath, certPath)
	}
	return certs[0], key, nil
}

func certPEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// isFile reports whether the directory entry is a regular file or a
// symbolic link to one (Kubernetes mounts secrets as symbolic links).
func isFile(dir string, d fs.DirEntry) bool {
	if d.Type().IsRegular() {
		return true
	}
	if d.Type()&fs.ModeSymlink == 0 {
		return false
	}
	st, err := os.Stat(filepath.Join(dir, d.Name()))
	return err == nil && st.Mode().IsRegular()
}

// isDir is isFile for directories.
func isDir(dir string, d fs.DirEntry) bool {
	if d.IsDir() {
		return true
	}
	if d.Type()&fs.ModeSymlink == 0 {
		return false
	}
	st, err := os.Stat(filepath.Join(dir, d.Name()))
	return err == nil && st.IsDir()
}
