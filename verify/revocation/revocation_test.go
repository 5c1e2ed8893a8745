package revocation_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"golang.org/x/crypto/ocsp"

	"github.com/kakuin/kakuin/pki/pkitest"
	"github.com/kakuin/kakuin/verify/revocation"
)

type fixture struct {
	ca       *pkitest.CA
	srv      *httptest.Server
	crl      atomic.Pointer[[]byte]
	crlHits  atomic.Int32
	ocspHits atomic.Int32
	revoked  *big.Int
	status   atomic.Int32 // HTTP status for the CRL; 0 = 200
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{ca: pkitest.New(t), revoked: big.NewInt(666)}
	mux := http.NewServeMux()
	mux.HandleFunc("/issuing.crl", func(w http.ResponseWriter, r *http.Request) {
		f.crlHits.Add(1)
		if s := f.status.Load(); s != 0 {
			w.WriteHeader(int(s))
			return
		}
		w.Write(*f.crl.Load())
	})
	mux.HandleFunc("/ocsp", func(w http.ResponseWriter, r *http.Request) {
		f.ocspHits.Add(1)
		body, _ := io.ReadAll(r.Body)
		req, err := ocsp.ParseRequest(body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: req.SerialNumber, ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(time.Hour)}
		if req.SerialNumber.Cmp(f.revoked) == 0 {
			tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, time.Now().Add(-time.Minute), ocsp.KeyCompromise
		}
		der, err := ocsp.CreateResponse(f.ca.Intermediate, f.ca.Intermediate, tmpl, f.ca.IntermediateKey)
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(der)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	f.setCRL(t, time.Now().Add(time.Hour))
	return f
}

// setCRL publishes a CRL of the issuing CA revoking f.revoked.
func (f *fixture) setCRL(t *testing.T, next time.Time) []byte {
	t.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:     big.NewInt(time.Now().UnixNano()),
		ThisUpdate: time.Now().Add(-time.Hour),
		NextUpdate: next,
		RevokedCertificateEntries: []x509.RevocationListEntry{
			{SerialNumber: f.revoked, RevocationTime: time.Now().Add(-time.Minute)},
		},
	}, f.ca.Intermediate, f.ca.IntermediateKey)
	if err != nil {
		t.Fatal(err)
	}
	f.crl.Store(&der)
	return der
}

// leaf issues a certificate under the issuing CA with the given serial,
// CRL distribution points and OCSP responders.
func (f *fixture) leaf(t *testing.T, serial int64, crl, ocspURL []string) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "taro@example.go.jp"},
		EmailAddresses:        []string{"taro@example.go.jp"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		CRLDistributionPoints: crl,
		OCSPServer:            ocspURL,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.ca.Intermediate, k.Public(), f.ca.IntermediateKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func checker(t *testing.T, opts revocation.Options) *revocation.Checker {
	t.Helper()
	c, err := revocation.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func expect(t *testing.T, r revocation.Result, status authres.ResultValue, reason string) {
	t.Helper()
	if r.Status != status || !strings.Contains(r.Reason, reason) {
		t.Fatalf("%s (%s), want %s (%s)", r.Status, r.Reason, status, reason)
	}
}

func TestCRLDistributionPoint(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	u := f.srv.URL + "/issuing.crl"
	c := checker(t, revocation.Options{})
	ctx := context.Background()
	good, bad := f.leaf(t, 1, []string{u}, nil), f.leaf(t, 666, []string{u}, nil)
	r := c.Check(ctx, good, f.ca.Intermediate)
	expect(t, r, authres.ResultPass, "")
	if r.Source != u {
		t.Errorf("source %q", r.Source)
	}
	expect(t, c.Check(ctx, bad, f.ca.Intermediate), authres.ResultFail, "revoked")
	if n := f.crlHits.Load(); n != 1 {
		t.Errorf("CRL fetched %d times, want 1 (cached until nextUpdate)", n)
	}
	// The whole chain: the signer first.
	expect(t, c.Chain(ctx, []*x509.Certificate{bad, f.ca.Intermediate, f.ca.Root}), authres.ResultFail, "revoked")
	// Offline: nothing fetched, and the result says so.
	off := checker(t, revocation.Options{Offline: true})
	expect(t, off.Check(ctx, bad, f.ca.Intermediate), authres.ResultNone, "offline")
	// No source named.
	expect(t, c.Check(ctx, f.leaf(t, 2, nil, nil), f.ca.Intermediate), authres.ResultNone, "names no CRL")
}

func TestCRLTrouble(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	u := f.srv.URL + "/issuing.crl"
	ctx := context.Background()
	leaf := f.leaf(t, 1, []string{u}, nil)
	f.status.Store(http.StatusInternalServerError)
	expect(t, checker(t, revocation.Options{}).Check(ctx, leaf, f.ca.Intermediate), authres.ResultTempError, "HTTP 500")
	f.status.Store(0)
	expect(t, checker(t, revocation.Options{MaxCRLSize: 10}).Check(ctx, leaf, f.ca.Intermediate), authres.ResultTempError, "larger than")
	// A CRL signed by another CA is not accepted.
	other := pkitest.New(t)
	der, _ := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, other.Intermediate, other.IntermediateKey)
	f.crl.Store(&der)
	expect(t, checker(t, revocation.Options{}).Check(ctx, leaf, f.ca.Intermediate), authres.ResultTempError, "signature")
	// A stale CRL.
	f.setCRL(t, time.Now().Add(time.Hour))
	late := checker(t, revocation.Options{Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
	expect(t, late.Check(ctx, leaf, f.ca.Intermediate), authres.ResultTempError, "")
	// A server that does not answer in time.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(slow.Close)
	start := time.Now()
	expect(t, checker(t, revocation.Options{Timeout: 200 * time.Millisecond}).Check(ctx, f.leaf(t, 3, []string{slow.URL}, nil), f.ca.Intermediate), authres.ResultTempError, "")
	if time.Since(start) > 3*time.Second {
		t.Errorf("timeout not honoured: %v", time.Since(start))
	}
}

func TestCRLFile(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	der := f.setCRL(t, time.Now().Add(time.Hour))
	path := filepath.Join(t.TempDir(), "issuing.crl.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	// Offline, yet the file answers.
	c := checker(t, revocation.Options{CRLFiles: []string{path}, Offline: true})
	r := c.Check(context.Background(), f.leaf(t, 666, nil, nil), f.ca.Intermediate)
	expect(t, r, authres.ResultFail, "revoked")
	if r.Source != "file" {
		t.Errorf("source %q", r.Source)
	}
	expect(t, c.Check(context.Background(), f.leaf(t, 5, nil, nil), f.ca.Intermediate), authres.ResultPass, "")
	if _, err := revocation.New(revocation.Options{CRLFiles: []string{filepath.Join(t.TempDir(), "missing")}}); err == nil {
		t.Fatal("missing CRL file accepted")
	}
}

func TestOCSP(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	u := f.srv.URL + "/ocsp"
	c := checker(t, revocation.Options{})
	ctx := context.Background()
	r := c.Check(ctx, f.leaf(t, 1, nil, []string{u}), f.ca.Intermediate)
	expect(t, r, authres.ResultPass, "")
	if r.Source != u || f.ocspHits.Load() != 1 {
		t.Errorf("source %q, hits %d", r.Source, f.ocspHits.Load())
	}
	expect(t, c.Check(ctx, f.leaf(t, 666, nil, []string{u}), f.ca.Intermediate), authres.ResultFail, "OCSP")
	// A responder that fails: the CRL named too is used instead.
	r = c.Check(ctx, f.leaf(t, 666, []string{f.srv.URL + "/issuing.crl"}, []string{f.srv.URL + "/nothing"}), f.ca.Intermediate)
	expect(t, r, authres.ResultFail, "revoked")
}

var _ crypto.Signer = (*ecdsa.PrivateKey)(nil)

func FuzzParseCRLs(f *testing.F) {
	f.Add([]byte("-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n"))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		crls, err := revocation.ParseCRLs(b)
		if err == nil && len(crls) == 0 {
			t.Fatal("no error and no CRL")
		}
	})
}
