package smtpgw

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
	"github.com/kakuin/kakuin/signer"
)

// testSealer is the real signer (signer.New) over a pkitest hierarchy:
// a certificate store that issues S/MIME certificates on demand from the
// test issuing CA (ECDSA P-256 leaves, to keep the tests quick), and DKIM
// keys (RSA-2048 and Ed25519) for the given domains.
type testSealer struct {
	*signer.Signer
	ca      *pkitest.CA
	records map[string]string
}

// newTestSealer signs for domains; mod may change the signer options.
func newTestSealer(t testing.TB, domains []string, mod func(*signer.Options)) *testSealer {
	t.Helper()
	ca := pkitest.New(t)
	var all []pki.DKIMKey
	records := map[string]string{}
	for _, d := range domains {
		ks := pkitest.DKIMKeys(t, d)
		all = append(all, ks...)
		for k, v := range pkitest.DKIMRecords(t, ks) {
			records[k] = v
		}
	}
	kr, err := pki.NewDKIMKeyring(all)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	store := ca.Store(t, dir, pki.StoreOptions{Issuer: ca.Issuer(t, pki.IssuerOptions{Dir: dir, KeyAlgorithm: pki.KeyECDSAP256})})
	opts := signer.Options{Identities: store, DKIM: kr, Hostname: "gw.example.go.jp"}
	if mod != nil {
		mod(&opts)
	}
	s, err := signer.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &testSealer{Signer: s, ca: ca, records: records}
}

func (s *testSealer) lookupTXT(name string) ([]string, error) {
	if v, ok := s.records[strings.TrimSuffix(name, ".")]; ok {
		return []string{v}, nil
	}
	return nil, fmt.Errorf("no TXT for %s", name)
}
