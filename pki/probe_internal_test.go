package pki

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"strings"
	"testing"
)

// fakeHSMKey counts its probes; it fails them when its token is "gone".
type fakeHSMKey struct {
	crypto.Signer
	tok    string
	probes int
}

func (k *fakeHSMKey) token() string { return k.tok }

func (k *fakeHSMKey) ProbeKeys(context.Context) error {
	k.probes++
	if k.tok == "gone" {
		return errors.New("token gone: " + k.tok)
	}
	return nil
}

func (k *fakeHSMKey) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	panic("a probe goes through ProbeKeys")
}

// TestProbeKeysScope: the DKIM keyring probes each of its HSM keys once
// (a key shared by two domains too); the store probes the issuer's key and
// one identity key per token, so that hundreds of senders' keys do not
// load the HSM at every /readyz; keys in memory are never probed.
func TestProbeKeysScope(t *testing.T) {
	_, soft, _ := ed25519.GenerateKey(nil)
	shared := &fakeHSMKey{tok: "a"}
	other := &fakeHSMKey{tok: "a"}
	ring := &DKIMKeyring{byDomain: map[string][]DKIMKey{
		"mhlw.go.jp":  {{Domain: "mhlw.go.jp", Selector: "s1", Signer: shared}, {Domain: "mhlw.go.jp", Selector: "ed", Signer: soft}},
		"soumu.go.jp": {{Domain: "soumu.go.jp", Selector: "s1", Signer: shared}, {Domain: "soumu.go.jp", Selector: "s2", Signer: other}},
	}}
	if err := ring.ProbeKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	if shared.probes != 1 || other.probes != 1 {
		t.Fatalf("keyring probes: shared %d, other %d; want 1 each", shared.probes, other.probes)
	}

	ca := &fakeHSMKey{tok: "ca"}
	var ids []*fakeHSMKey
	idx := &storeIndex{byAddr: map[string][]*storeEntry{}}
	for i, tok := range []string{"a", "a", "a", "b", "b", "gone", "gone"} {
		k := &fakeHSMKey{tok: tok}
		ids = append(ids, k)
		addr := string(rune('a'+i)) + "@mhlw.go.jp"
		idx.byAddr[addr] = []*storeEntry{{id: &Identity{Signer: k}}}
	}
	idx.byAddr["soft@mhlw.go.jp"] = []*storeEntry{{id: &Identity{Signer: soft}}}
	s := &Store{opts: StoreOptions{Issuer: &Issuer{opts: IssuerOptions{CAKey: ca}}}}
	s.index.Store(idx)
	err := s.ProbeKeys(context.Background())
	if err == nil || !strings.Contains(err.Error(), "token gone") {
		t.Fatalf("store probe with a token gone: %v", err)
	}
	if ca.probes != 1 {
		t.Fatalf("issuer key probed %d times", ca.probes)
	}
	per := map[string]int{}
	for _, k := range ids {
		per[k.tok] += k.probes
	}
	if per["a"] != 1 || per["b"] != 1 || per["gone"] != 1 {
		t.Fatalf("identity probes per token: %v, want one each", per)
	}
}

// pssOnly is an RSA key its token lets sign with PSS only (or with
// nothing, when gone).
type pssOnly struct {
	*rsa.PrivateKey
	gone bool
}

func (k pssOnly) Sign(r io.Reader, d []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, pss := opts.(*rsa.PSSOptions); !pss || k.gone {
		return nil, errors.New("CKR_MECHANISM_INVALID")
	}
	return k.PrivateKey.Sign(r, d, opts)
}

// TestProbeSignerPSS: an RSA key allowed only PSS (a TLS 1.3 STARTTLS
// key, in a token that restricts mechanisms) passes its probe; one that
// signs nothing fails it.
func TestProbeSignerPSS(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if err := probeSigner(pssOnly{PrivateKey: k}); err != nil {
		t.Errorf("PSS-only key: %v", err)
	}
	if err := probeSigner(pssOnly{PrivateKey: k, gone: true}); err == nil {
		t.Error("a key that signs nothing passed its probe")
	}
	if err := probeSigner(k); err != nil {
		t.Errorf("key in memory: %v", err)
	}
}
