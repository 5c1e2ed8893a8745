package smtpgw

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"testing"

	"github.com/kakuin/kakuin/govdomain"
	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
	"github.com/kakuin/kakuin/signer"
	"github.com/kakuin/kakuin/signer/dkimsign"
)

// testSealer signs with real DKIM keys from pkitest through
// signer/dkimsign. INTERIM: it stands in for signer.New until the
// composite signer lands; it does what the signer's contract says for the
// cases the gateway relies on (ErrKey when the domain has no key,
// ErrSender outside the suffixes, ErrMessage when the header cannot be
// read).
type testSealer struct {
	keys    *pki.DKIMKeyring
	records map[string]string
	senders govdomain.Policy
}

func newTestSealer(t testing.TB, domains ...string) *testSealer {
	t.Helper()
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
	return &testSealer{keys: kr, records: records, senders: govdomain.Policy{Suffixes: govdomain.DefaultSuffixes}}
}

func (s *testSealer) lookupTXT(name string) ([]string, error) {
	if v, ok := s.records[strings.TrimSuffix(name, ".")]; ok {
		return []string{v}, nil
	}
	return nil, fmt.Errorf("no TXT for %s", name)
}

func (s *testSealer) Sign(ctx context.Context, dst io.Writer, src io.Reader) (signer.Result, error) {
	msg, err := io.ReadAll(src)
	if err != nil {
		return signer.Result{}, err
	}
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return signer.Result{}, fmt.Errorf("%w: %w", signer.ErrMessage, err)
	}
	a, err := addressParser.Parse(m.Header.Get("From"))
	if err != nil {
		return signer.Result{}, fmt.Errorf("%w: %w", signer.ErrMessage, err)
	}
	if !s.senders.AllowsAddress(a.Address) {
		return signer.Result{}, fmt.Errorf("%w: %s", signer.ErrSender, a.Address)
	}
	domain := a.Address[strings.LastIndexByte(a.Address, '@')+1:]
	keys, err := s.keys.DKIMKeys(domain)
	if err != nil {
		return signer.Result{}, fmt.Errorf("%w: %w", signer.ErrKey, err)
	}
	sigs, err := dkimsign.Sign(bytes.NewReader(msg), keys)
	if errors.Is(err, dkimsign.ErrMessage) {
		return signer.Result{}, fmt.Errorf("%w: %w", signer.ErrMessage, err)
	}
	if err != nil {
		return signer.Result{}, fmt.Errorf("%w: %w", signer.ErrKey, err)
	}
	res := signer.Result{From: a.Address}
	for _, sg := range sigs {
		io.WriteString(dst, sg.Field)
		res.DKIM = append(res.DKIM, sg.String())
	}
	_, err = dst.Write(msg)
	return res, err
}
