package pki_test

import (
	"crypto/x509"
	"slices"
	"strings"
	"testing"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/kakuin/kakuin/pki"
)

// lintCert runs the zlint S/MIME BR and RFC 5280 lints over c and fails on
// any error, warning or fatal, naming the lints.
func lintCert(t *testing.T, what string, c *x509.Certificate) {
	t.Helper()
	zc, err := zx509.ParseCertificate(c.Raw)
	if err != nil {
		t.Fatalf("%s: zcrypto cannot parse: %v", what, err)
	}
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{
		IncludeSources: lint.SourceList{lint.CABFSMIMEBaselineRequirements, lint.RFC5280},
	})
	if err != nil {
		t.Fatal(err)
	}
	rs := zlint.LintCertificateEx(zc, reg)
	var bad []string
	ran := 0
	for name, r := range rs.Results {
		switch r.Status {
		case lint.Warn, lint.Error, lint.Fatal:
			bad = append(bad, name+" ("+r.Status.String()+": "+r.Details+")")
		case lint.Pass:
			ran++
		}
	}
	slices.Sort(bad)
	if len(bad) > 0 {
		t.Errorf("%s: zlint:\n  %s", what, strings.Join(bad, "\n  "))
	}
	if ran == 0 {
		t.Errorf("%s: no lint passed: the registry filter is wrong", what)
	}
	t.Logf("%s: %d lints passed", what, ran)
}

// TestZlint lints every certificate kakuin makes: the development root,
// issuing CA and TLS certificate from Init, and sender certificates issued
// with both key algorithms.
func TestZlint(t *testing.T) {
	t.Parallel()
	l := devPKI(t)
	for what, path := range map[string]string{"root": l.RootCert(), "issuing CA": l.IssuerCert(), "tls": l.TLSCert()} {
		certs, err := pki.LoadCertificates(path)
		if err != nil {
			t.Fatal(err)
		}
		lintCert(t, what, certs[0])
	}
	caCert, caKey, err := pki.LoadCA(l.IssuerCert(), l.IssuerKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range []pki.KeyAlgorithm{pki.KeyRSA2048, pki.KeyECDSAP256} {
		iss, err := pki.NewIssuer(pki.IssuerOptions{CACert: caCert, CAKey: caKey, KeyAlgorithm: alg})
		if err != nil {
			t.Fatal(err)
		}
		id, err := iss.Issue(t.Context(), "Taro.Yamada@Example.GO.JP")
		if err != nil {
			t.Fatal(err)
		}
		lintCert(t, "issued sender certificate", id.Certificate)
	}
}
