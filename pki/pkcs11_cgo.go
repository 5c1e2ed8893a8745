//go:build cgo && !kakuin_static

package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThalesGroup/crypto11"
)

// tokens keeps one logged-in crypto11 context per module, token and PIN,
// shared by every key on that token, until ClosePKCS11. Contexts replaced
// by a fresh one stay open in retired: keys taken from them still sign.
var tokens struct {
	sync.Mutex
	open    map[string]*crypto11.Context
	retired []*crypto11.Context
}

// ClosePKCS11 logs out of every token and unloads the PKCS#11 modules
// (the last context of a module finalises it): keys from them stop
// signing. For the end of a process, and for tests, since a module reads
// its configuration when it is loaded.
func ClosePKCS11() {
	tokens.Lock()
	defer tokens.Unlock()
	for _, ctx := range tokens.open {
		ctx.Close()
	}
	for _, ctx := range tokens.retired {
		ctx.Close()
	}
	tokens.open, tokens.retired = nil, nil
}

// openPKCS11Key finds the private key u names, on the token's shared
// context. If that context no longer finds it (the key was replaced in the
// HSM), a fresh context is tried and, if it finds the key, kept for the
// next ones: that is how a reload (SIGHUP) reaches a replaced key. The old
// context stays open for the keys already taken from it.
func openPKCS11Key(u PKCS11URI, pin string) (crypto.Signer, error) {
	tokens.Lock()
	defer tokens.Unlock()
	if tokens.open == nil {
		tokens.open = map[string]*crypto11.Context{}
	}
	id := u.Module + "\x00" + u.Token + "\x00" + u.Serial + "\x00" + pin
	if ctx := tokens.open[id]; ctx != nil {
		if s, err := findPKCS11Key(ctx, u); err == nil {
			return s, nil
		}
	}
	ctx, err := crypto11.Configure(&crypto11.Config{
		Path:        u.Module,
		TokenLabel:  u.Token,
		TokenSerial: u.Serial,
		Pin:         pin,
		// A signature waits at most this long for a session; the
		// gateway's sign timeout bounds it too.
		PoolWaitTimeout: 30 * time.Second,
	})
	if err != nil {
		// crypto11's errors name the module, token and PKCS#11 code,
		// never the PIN.
		return nil, fmt.Errorf("%w: %s: %w", ErrPKCS11, u, err)
	}
	s, err := findPKCS11Key(ctx, u)
	if err != nil {
		ctx.Close()
		return nil, err
	}
	if old := tokens.open[id]; old != nil {
		tokens.retired = append(tokens.retired, old)
	}
	tokens.open[id] = ctx
	return s, nil
}

func findPKCS11Key(ctx *crypto11.Context, u PKCS11URI) (crypto.Signer, error) {
	var label []byte
	if u.Object != "" {
		label = []byte(u.Object)
	}
	s, err := ctx.FindKeyPair(u.ID, label)
	if err == nil && s == nil {
		err = errors.New("no such key")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrPKCS11, u, err)
	}
	switch s.Public().(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
		return &hsmKey{Signer: s, uri: u}, nil
	default:
		return nil, fmt.Errorf("%w: %s: key type %T (RSA or ECDSA)", ErrPKCS11, u, s.Public())
	}
}

// hsmKey is a private key in a PKCS#11 token. It signs through the token
// and, as a KeyProber, can check that it still does.
type hsmKey struct {
	crypto.Signer
	uri PKCS11URI
}

// token names the token: module, label and serial.
func (k *hsmKey) token() string {
	return k.uri.Module + "\x00" + k.uri.Token + "\x00" + k.uri.Serial
}

// ProbeKeys implements KeyProber: one signature through the token. A
// PKCS#11 call cannot be interrupted, so ctx is not consulted; the caller
// bounds the wait.
func (k *hsmKey) ProbeKeys(context.Context) error {
	if err := probeSigner(k.Signer); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrPKCS11, k.uri, err)
	}
	return nil
}
