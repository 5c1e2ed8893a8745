// Package roundtrip_test seals every message of the signing corpus with
// package signer and verifies it with package verify. It lives apart from
// verify's own tests so that those build while the signer is being edited.
package roundtrip_test

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
	"github.com/kakuin/kakuin/signer"
	"github.com/kakuin/kakuin/verify"
	"github.com/kakuin/kakuin/verify/internal/testsign"
	"github.com/kakuin/kakuin/verify/lookup"
	"github.com/kakuin/kakuin/verify/lookup/lookuptest"
)

const addr = "taro@example.go.jp"

type env struct {
	ca   *pkitest.CA
	srv  *lookuptest.Server
	keys []pki.DKIMKey
	opts verify.Options
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{ca: pkitest.New(t), srv: lookuptest.New(t)}
	e.keys = pkitest.DKIMKeys(t, "example.go.jp")
	e.srv.Add(testsign.Zone(t, e.keys)...)
	res, err := lookup.New([]string{e.srv.Addr()}, lookup.Options{Timeout: 500 * time.Millisecond, Attempts: 1, CacheSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	e.opts = verify.Options{Resolver: res, TrustAnchors: e.ca.Roots()}
	return e
}

// issuer is a pki.IdentitySource and pki.DKIMKeySource that makes what
// is asked for on demand and publishes the DKIM records.
type issuer struct {
	t    testing.TB
	e    *env
	mu   sync.Mutex
	ids  map[string]*pki.Identity
	dkim map[string][]pki.DKIMKey
}

func (s *issuer) Identity(_ context.Context, addr string) (*pki.Identity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.ids[addr]; ok {
		return id, nil
	}
	id := s.e.ca.Identity(s.t, addr, pkitest.Subject(pkix.Name{Organization: []string{"Ministry of Examples"}, CommonName: addr}))
	s.ids[addr] = id
	return id, nil
}

func (s *issuer) DKIMKeys(domain string) ([]pki.DKIMKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := strings.ToLower(domain)
	if k, ok := s.dkim[d]; ok {
		return k, nil
	}
	k := pkitest.DKIMKeys(s.t, d)
	s.e.srv.Add(testsign.Zone(s.t, k)...)
	s.dkim[d] = k
	return k, nil
}

// TestCorpusRoundTrip: every message of the signing corpus, sealed by
// package signer, verifies as GENUINE; with one body byte changed it does
// not.
func TestCorpusRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := &issuer{t: t, e: e, ids: map[string]*pki.Identity{}, dkim: map[string][]pki.DKIMKey{"example.go.jp": e.keys}}
	sg, err := signer.New(signer.Options{Identities: src, DKIM: src})
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("../../../testdata/corpus/*.eml")
	if err != nil || len(files) < 15 {
		t.Fatalf("corpus: %v %d files", err, len(files))
	}
	v := verify.New(e.opts)
	signed := 0
	for _, f := range files {
		in, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		res, err := sg.Sign(context.Background(), &out, bytes.NewReader(in))
		if errors.Is(err, signer.ErrSender) {
			continue // a sender outside go.jp, refused by design
		}
		if err != nil {
			t.Errorf("%s: sign: %v", filepath.Base(f), err)
			continue
		}
		signed++
		rep, err := v.Bytes(context.Background(), out.Bytes())
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !rep.Verdict.Genuine {
			t.Errorf("%s: not genuine:\n%s", filepath.Base(f), strings.Join(rep.Lines(), "\n"))
			continue
		}
		if !strings.EqualFold(rep.Verdict.Address, res.From) {
			t.Errorf("%s: address %s, signed for %s", filepath.Base(f), rep.Verdict.Address, res.From)
		}
		// Change the last visible octet of the signed entity: the one
		// before the delimiter that precedes the signature part.
		b := out.Bytes()
		j := bytes.LastIndex(b[:bytes.LastIndex(b, []byte("application/pkcs7-signature"))], []byte("\r\n--"))
		if j <= 0 {
			t.Fatalf("%s: no multipart/signed structure", f)
		}
		k := j - 1
		for k > 0 && (b[k] == '\n' || b[k] == '\r' || b[k] == ' ') {
			k--
		}
		t2 := append([]byte(nil), b...)
		t2[k] ^= 0x01
		rep, err = v.Bytes(context.Background(), t2)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if rep.Verdict.Genuine {
			t.Errorf("%s: tampered copy is genuine", filepath.Base(f))
		}
	}
	if signed < 15 {
		t.Fatalf("only %d corpus messages signed", signed)
	}
	t.Logf("%d corpus messages sealed and verified", signed)
}
