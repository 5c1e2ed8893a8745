package pki

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
)

// KeyProber is a key, or a source of keys, that can stop signing while
// the process runs: a key in a PKCS#11 token whose token is removed, whose
// HSM stops answering or logs the session out. ProbeKeys makes one
// signature with such keys (each of them, or, for a Store, one per token)
// and returns the errors of those that failed. A key held in memory (a PEM
// or PKCS#12 file) cannot become unavailable and is not probed.
//
// The gateway's /readyz calls it, so that an orchestrator takes a replica
// whose HSM is gone out of service instead of letting it answer every
// message 451 4.3.0.
type KeyProber interface {
	ProbeKeys(ctx context.Context) error
}

// probeDigest is what a probe signs: the SHA-256 of a fixed text, never
// of anything a client sent.
var probeDigest = sha256.Sum256([]byte("kakuin key probe"))

// probeSigner makes one ECDSA or RSA signature with s over probeDigest.
// An RSA key is tried with PKCS#1 v1.5 (DKIM rsa-sha256, S/MIME, X.509),
// then with PSS: a token may allow a key only the mechanisms of its use,
// and a STARTTLS key under TLS 1.3 signs with PSS only.
func probeSigner(s crypto.Signer) error {
	_, err := s.Sign(rand.Reader, probeDigest[:], crypto.SHA256)
	if _, isRSA := s.Public().(*rsa.PublicKey); err != nil && isRSA {
		if _, pssErr := s.Sign(rand.Reader, probeDigest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}); pssErr == nil {
			return nil
		}
	}
	return err
}

// probeKeys probes every key in keys that is a KeyProber, each once
// (keys may repeat), until ctx ends.
func probeKeys(ctx context.Context, keys []crypto.Signer) error {
	seen := make(map[KeyProber]bool)
	var errs []error
	for _, k := range keys {
		p, ok := k.(KeyProber)
		if !ok || seen[p] {
			continue
		}
		seen[p] = true
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, fmt.Errorf("pki: key probe: %w", err))...)
		}
		if err := p.ProbeKeys(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ProbeKeys implements KeyProber over every DKIM key of the keyring.
func (k *DKIMKeyring) ProbeKeys(ctx context.Context) error {
	var keys []crypto.Signer
	for _, ks := range k.byDomain {
		for _, dk := range ks {
			keys = append(keys, dk.Signer)
		}
	}
	return probeKeys(ctx, keys)
}

// ProbeKeys implements KeyProber over the issuing CA's key.
func (i *Issuer) ProbeKeys(ctx context.Context) error {
	return probeKeys(ctx, []crypto.Signer{i.opts.CAKey})
}

// tokenKey is a key that names the token holding it.
type tokenKey interface {
	token() string
}

// ProbeKeys implements KeyProber over the issuer's key and, for the
// identities in the store, one key per token: a store may hold a key for
// each of hundreds of senders, and probing them all every few seconds
// would load the HSM. A token that is gone fails its probe; a single
// identity's key that is gone fails that sender's messages (451 4.3.0,
// reason signer_key) and not readiness.
func (s *Store) ProbeKeys(ctx context.Context) error {
	var errs []error
	if s.opts.Issuer != nil {
		errs = append(errs, s.opts.Issuer.ProbeKeys(ctx))
	}
	var keys []crypto.Signer
	tokens := map[string]bool{}
	for _, es := range s.index.Load().byAddr {
		for _, e := range es {
			if t, ok := e.id.Signer.(tokenKey); ok {
				if tokens[t.token()] {
					continue
				}
				tokens[t.token()] = true
			}
			keys = append(keys, e.id.Signer)
		}
	}
	errs = append(errs, probeKeys(ctx, keys))
	return errors.Join(errs...)
}
