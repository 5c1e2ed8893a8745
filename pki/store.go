package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/kakuin/kakuin/govdomain"
)

// ErrStore: the certificate directory could not be scanned.
var ErrStore = errors.New("pki: certificate store")

// StoreOptions configure a Store. Every zero value is documented.
type StoreOptions struct {
	// Dir is scanned, with its subdirectories, for PEM files holding
	// certificates and private keys (in any combination and under any file
	// names) and for PKCS#12 bundles. Names starting with "." are skipped;
	// symbolic links to files are followed, to directories not.
	// Required.
	Dir string
	// Roots are the trust anchors: a sender certificate is used only if it
	// chains to one of them with the emailProtection EKU. Required.
	Roots *x509.CertPool
	// Intermediates are CA certificates for building chains, in addition
	// to the CA certificates found in Dir and in PKCS#12 bundles. May be
	// nil.
	Intermediates []*x509.Certificate
	// PKCS12Password opens the PKCS#12 bundles. If empty, the empty
	// password.
	PKCS12Password string
	// Issuer issues a certificate for an address that has none, and
	// renews the ones it issued when they near expiry. If nil, Identity
	// returns ErrNoCertificate for such an address.
	Issuer *Issuer
	// Now is the clock for validity. If nil, time.Now.
	Now func() time.Time
}

// Store is an IdentitySource over a directory of certificates and keys,
// indexed by the rfc822Name and SmtpUTF8Mailbox (RFC 9598) SANs inside the
// certificates (never by file name). The local part of an address is matched exactly, the domain case
// folded (IDNA A-labels). Among the valid certificates of an address the one
// expiring last is chosen; an expired or not-yet-valid certificate (leaf or
// chain, judged by Now at each call) never is.
//
// A Store is safe for concurrent use. Reload rescans the directory
// atomically: on error the previous index stays in use.
type Store struct {
	opts  StoreOptions
	index atomic.Pointer[storeIndex]

	mu sync.Mutex // serialises Reload and additions of issued identities

	flightMu sync.Mutex
	flights  map[string]*flight
}

var _ IdentitySource = (*Store)(nil)

// storeIndex is immutable once published.
type storeIndex struct {
	byAddr   map[string][]*storeEntry
	problems []string
}

type storeEntry struct {
	id         *Identity
	notBefore  time.Time // the latest NotBefore over leaf and chain (root included)
	notAfter   time.Time // the earliest NotAfter over leaf and chain
	source     string
	fingerprnt [32]byte
}

type flight struct {
	done chan struct{}
	id   *Identity
	err  error
}

// NewStore scans opts.Dir and returns the Store. Errors wrap ErrStore, or
// ErrKeyPermissions / ErrKeyFile for key material that cannot be used.
func NewStore(opts StoreOptions) (*Store, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("%w: no directory", ErrStore)
	}
	if opts.Roots == nil {
		return nil, fmt.Errorf("%w: no trust anchors", ErrStore)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{opts: opts, flights: make(map[string]*flight)}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload rescans the directory and replaces the index; on error the
// previous index stays in use and the error is returned. Call it on SIGHUP.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.scan()
	if err != nil {
		return err
	}
	s.index.Store(idx)
	return nil
}

// Problems lists certificates found in the last successful scan that are
// not used, with the reason (no matching key, chain does not verify,
// wrong key usage), for the operator's log.
func (s *Store) Problems() []string {
	return slices.Clone(s.index.Load().problems)
}

// Addresses lists the addresses the index holds at least one certificate
// for (valid or not), sorted.
func (s *Store) Addresses() []string {
	idx := s.index.Load()
	out := make([]string, 0, len(idx.byAddr))
	for a := range idx.byAddr {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// Identity returns the identity for addr: the valid certificate for addr
// that expires last. With an Issuer, a missing certificate is issued (and
// one the Issuer made that nears expiry renewed; if renewal fails the old
// one is used while valid); concurrent calls for one address issue once.
// Without a certificate, and when the Issuer refuses the address, the
// error wraps ErrNoCertificate; if issuance failed it wraps ErrIssue
// instead (a transient failure: defer, do not send unsigned, RULES M3). The returned Identity must not be modified.
func (s *Store) Identity(ctx context.Context, addr string) (*Identity, error) {
	key, err := addrKey(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoCertificate, err)
	}
	now := s.opts.Now()
	e := s.index.Load().best(key, now)
	if e != nil && (s.opts.Issuer == nil || !s.opts.Issuer.NeedsRenewal(e.id.Certificate, now)) {
		return e.id, nil
	}
	if s.opts.Issuer == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoCertificate, addr)
	}
	id, err := s.issueOnce(ctx, key)
	if err != nil {
		if e != nil && !errors.Is(err, context.Canceled) {
			return e.id, nil // renewal failed; the current one is still valid
		}
		return nil, err
	}
	return id, nil
}

// issueOnce issues for key unless another call is already doing so, in
// which case it waits for that call's result.
func (s *Store) issueOnce(ctx context.Context, key string) (*Identity, error) {
	s.flightMu.Lock()
	if f, ok := s.flights[key]; ok {
		s.flightMu.Unlock()
		select {
		case <-f.done:
			return f.id, f.err
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrIssue, ctx.Err())
		}
	}
	f := &flight{done: make(chan struct{})}
	s.flights[key] = f
	s.flightMu.Unlock()
	defer func() {
		s.flightMu.Lock()
		delete(s.flights, key)
		s.flightMu.Unlock()
		close(f.done)
	}()
	// A flight that ended between our lookup and now may have issued.
	now := s.opts.Now()
	if e := s.index.Load().best(key, now); e != nil && !s.opts.Issuer.NeedsRenewal(e.id.Certificate, now) {
		f.id = e.id
		return f.id, nil
	}
	id, err := s.opts.Issuer.Issue(ctx, key)
	if err == nil {
		// Hold issued certificates to the same standard as found ones: a
		// misconfigured issuing CA (not under the anchors) fails here, not
		// at every recipient.
		err = s.verifyIssued(id, now)
	}
	if err != nil {
		f.err = err
		return nil, err
	}
	s.add(id, now)
	// Remove this address's expired certificates that the issuer wrote
	// earlier; a failure only leaves files behind.
	_, _ = s.opts.Issuer.prune(fileSafe(key)+"-*.pem", now)
	f.id = id
	return id, nil
}

func (s *Store) verifyIssued(id *Identity, now time.Time) error {
	inter := x509.NewCertPool()
	for _, c := range append(slices.Clone(s.opts.Intermediates), id.Chain...) {
		inter.AddCert(c)
	}
	if _, err := id.Certificate.Verify(x509.VerifyOptions{
		Roots: s.opts.Roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
	}); err != nil {
		return fmt.Errorf("%w: issued certificate does not chain to the trust anchors: %w", ErrIssue, err)
	}
	return nil
}

// add publishes an issued identity in a copy of the index.
func (s *Store) add(id *Identity, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.index.Load()
	idx := &storeIndex{byAddr: make(map[string][]*storeEntry, len(old.byAddr)+1), problems: old.problems}
	for k, v := range old.byAddr {
		idx.byAddr[k] = v
	}
	e := newEntry(id, append([]*x509.Certificate{id.Certificate}, id.Chain...), "issued")
	for _, a := range Mailboxes(id.Certificate) {
		if k, err := addrKey(a); err == nil {
			// Expired entries of the address go: a long-running gateway
			// renews every few days and would otherwise keep them all.
			kept := slices.DeleteFunc(slices.Clone(idx.byAddr[k]), func(o *storeEntry) bool { return now.After(o.notAfter) })
			idx.byAddr[k] = append(kept, e)
		}
	}
	s.index.Store(idx)
}

func (idx *storeIndex) best(key string, now time.Time) *storeEntry {
	var best *storeEntry
	for _, e := range idx.byAddr[key] {
		if now.Before(e.notBefore) || now.After(e.notAfter) {
			continue
		}
		if best == nil || e.id.Certificate.NotAfter.After(best.id.Certificate.NotAfter) ||
			e.id.Certificate.NotAfter.Equal(best.id.Certificate.NotAfter) && e.id.Certificate.NotBefore.After(best.id.Certificate.NotBefore) {
			best = e
		}
	}
	return best
}

// addrKey is the index key of an address: the local part as is (RFC 5321
// 2.4: it is case sensitive), "@", the domain in lower-case A-labels.
func addrKey(addr string) (string, error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", fmt.Errorf("%q is not an address", addr)
	}
	d, err := govdomain.Canonical(addr[at+1:])
	if err != nil {
		return "", err
	}
	return addr[:at] + "@" + d, nil
}

func newEntry(id *Identity, chain []*x509.Certificate, source string) *storeEntry {
	e := &storeEntry{id: id, source: source, fingerprnt: sha256.Sum256(id.Certificate.Raw)}
	for i, c := range chain {
		if i == 0 || c.NotBefore.After(e.notBefore) {
			e.notBefore = c.NotBefore
		}
		if i == 0 || c.NotAfter.Before(e.notAfter) {
			e.notAfter = c.NotAfter
		}
	}
	return e
}

// scanned is what one file contributed.
type scanned struct {
	path  string
	certs []*x509.Certificate
	keys  []crypto.Signer
}

func (s *Store) scan() (*storeIndex, error) {
	var files []scanned
	// The directory itself may be a link (WalkDir would not enter it).
	root, err := filepath.EvalSymlinks(s.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStore, err)
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && path != root {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		// Symbolic links to files are followed (Kubernetes mounts secrets
		// as links into a hidden ..data directory); links to directories
		// are not, so a scan cannot loop.
		if !isFile(filepath.Dir(path), d) {
			return nil
		}
		f, err := scanFile(path, s.opts.PKCS12Password)
		if err != nil {
			return err
		}
		if f != nil {
			files = append(files, *f)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrKeyFile) || errors.Is(err, ErrKeyPermissions) || errors.Is(err, ErrCertFile) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrStore, err)
	}

	inter := x509.NewCertPool()
	for _, c := range s.opts.Intermediates {
		inter.AddCert(c)
	}
	keys := make(map[string]crypto.Signer)
	for _, f := range files {
		for _, c := range f.certs {
			if c.IsCA {
				inter.AddCert(c)
			}
		}
		for _, k := range f.keys {
			if der, err := x509.MarshalPKIXPublicKey(k.Public()); err == nil {
				keys[string(der)] = k
			}
		}
	}

	idx := &storeIndex{byAddr: make(map[string][]*storeEntry)}
	seen := make(map[[32]byte]bool)
	for _, f := range files {
		for _, c := range f.certs {
			if c.IsCA {
				continue
			}
			fp := sha256.Sum256(c.Raw)
			if seen[fp] {
				continue
			}
			seen[fp] = true
			problem := func(format string, a ...any) {
				idx.problems = append(idx.problems, fmt.Sprintf("%s: %s: ", f.path, c.Subject)+fmt.Sprintf(format, a...))
			}
			key := keys[string(c.RawSubjectPublicKeyInfo)]
			if key == nil {
				problem("no matching private key")
				continue
			}
			mailboxes := Mailboxes(c)
			if len(mailboxes) == 0 {
				problem("no rfc822Name or SmtpUTF8Mailbox subjectAltName")
				continue
			}
			// RFC 8550 4.4.2: a signing certificate that has the key usage
			// extension needs digitalSignature or nonRepudiation.
			if c.KeyUsage != 0 && c.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
				problem("key usage allows no signing (RFC 8550 4.4.2)")
				continue
			}
			// Verify at a time within the leaf's validity: the chain is
			// built once; validity is judged against Now at each lookup.
			at := s.opts.Now()
			if at.Before(c.NotBefore) {
				at = c.NotBefore
			}
			if at.After(c.NotAfter) {
				at = c.NotAfter
			}
			chains, err := c.Verify(x509.VerifyOptions{
				Roots:         s.opts.Roots,
				Intermediates: inter,
				CurrentTime:   at,
				// RULES S7, RFC 8550 4.4.4.
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
			})
			if err != nil {
				problem("%v", err)
				continue
			}
			full := chains[0]
			// RFC 8550 3, RULES S5: the intermediates, leaf's issuer first,
			// without the root.
			id := &Identity{Certificate: c, Chain: slices.Clone(full[1 : len(full)-1]), Signer: key}
			e := newEntry(id, full, f.path)
			for _, a := range mailboxes {
				k, err := addrKey(a)
				if err != nil {
					problem("mailbox %q: %v", a, err)
					continue
				}
				idx.byAddr[k] = append(idx.byAddr[k], e)
			}
		}
	}
	return idx, nil
}

// scanFile reads one file of the store. PEM files contribute their
// certificates and keys; a file without PEM that decodes as PKCS#12 is a
// bundle; anything else is ignored (nil). A file holding a private key must
// pass the mode check (ErrKeyPermissions).
func scanFile(path, password string) (*scanned, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStore, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrStore, path, err)
	}
	if len(data) > maxKeyFile {
		return nil, nil // not a certificate or key file
	}
	out := &scanned{path: path}
	if IsPKCS11URI(data) {
		// A key in an HSM; its certificate is in another file.
		if err := checkKeyMode(f, path); err != nil {
			return nil, err
		}
		k, err := loadPKCS11Signer(path, data)
		if err != nil {
			return nil, err
		}
		out.keys = append(out.keys, k)
		return out, nil
	}
	if bytes.Contains(data, []byte("-----BEGIN ")) {
		for rest := data; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			switch {
			case b.Type == "CERTIFICATE":
				c, err := x509.ParseCertificate(b.Bytes)
				if err != nil {
					return nil, fmt.Errorf("%w: %s: %w", ErrCertFile, path, err)
				}
				out.certs = append(out.certs, c)
			case isKeyBlock(b.Type):
				if len(out.keys) == 0 {
					if err := checkKeyMode(f, path); err != nil {
						return nil, err
					}
				}
				k, err := parseKeyBlock(b)
				if err != nil {
					return nil, fmt.Errorf("%w: %s: %w", ErrKeyFile, path, err)
				}
				out.keys = append(out.keys, k)
			}
		}
		return out, nil
	}
	if err := checkPKCS12Iterations(data); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKeyFile, path, err)
	}
	k, c, cas, err := pkcs12.DecodeChain(data, password)
	switch {
	case errors.Is(err, pkcs12.ErrIncorrectPassword):
		if err := checkKeyMode(f, path); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s: pkcs12: %w", ErrKeyFile, path, err)
	case err != nil && isPKCS12Name(path):
		return nil, fmt.Errorf("%w: %s: %w", ErrKeyFile, path, err)
	case err != nil:
		return nil, nil // neither PEM nor PKCS#12: not ours
	}
	if err := checkKeyMode(f, path); err != nil {
		return nil, err
	}
	signer, err := asSigner(k)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKeyFile, path, err)
	}
	out.keys = append(out.keys, signer)
	out.certs = append(append(out.certs, c), cas...)
	return out, nil
}

func isPKCS12Name(path string) bool {
	ext := strings.ToLower(filepath.Ext(path))
	return ext == ".p12" || ext == ".pfx"
}
