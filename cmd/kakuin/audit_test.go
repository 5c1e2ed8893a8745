package main

import (
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/verify/audit"
	"github.com/kakuin/kakuin/verify/audit/audittest"
	"github.com/kakuin/kakuin/verify/lookup/lookuptest"
)

// TestRecordsThenAuditPassesStrict: publishing what `kakuin records`
// prints makes `kakuin audit --profile strict` pass. What records cannot
// print is set up the way the operator would: the zone's SOA, NS, MX and
// DNSSEC signing, the MX server with the gateway's certificate, and the
// HTTPS server for the MTA-STS policy.
func TestRecordsThenAuditPassesStrict(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const domain = "example.go.jp"
	const mxHost = "mx.example.go.jp"
	rep, err := pki.Init(pki.InitOptions{Dir: dir, Domains: []string{domain}, TLSHosts: []string{mxHost}})
	if err != nil {
		t.Fatal(err)
	}
	l := pki.Layout{Dir: dir}

	code, zone, errs := runCmd(t, nil, "records", "--pki-dir", dir, "--gateway-ip", "127.0.0.1", "--gateway-ip", "2001:db8::25",
		"--mx", mxHost, "--tlsa-cert", l.TLSCert())
	if code != exitOK {
		t.Fatalf("records: %d %s", code, errs)
	}
	for _, want := range []string{"_dmarc." + domain + ".", "p=reject", "v=spf1 ip4:127.0.0.1 ip6:2001:db8::25 -all",
		"_mta-sts." + domain + ".", "_smtp._tls." + domain + ".", "_25._tcp." + mxHost + ". 3600 IN TLSA 3 1 1 ", ";   mode: enforce"} {
		if !strings.Contains(zone, want) {
			t.Errorf("records lack %q:\n%s", want, zone)
		}
	}
	for _, sel := range rep.Selectors[domain] {
		if !strings.Contains(zone, sel+"._domainkey."+domain+".") {
			t.Errorf("records lack selector %s", sel)
		}
	}
	code, policy, errs := runCmd(t, nil, "records", "--mta-sts-policy", domain, "--mx", mxHost)
	if code != exitOK || !strings.Contains(policy, "mx: "+mxHost+"\r\n") {
		t.Fatalf("policy: %d %q %s", code, policy, errs)
	}

	dns := lookuptest.New(t)
	dns.AddZone(domain, "@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\n@ NS ns2\n@ MX 10 mx\nmx A 127.0.0.1\n")
	dns.AddZone(".", zone)
	dns.SignZone(domain)
	dns.SetAuthentic(domain, true)

	cert, err := tls.LoadX509KeyPair(l.TLSCert(), l.TLSKey())
	if err != nil {
		t.Fatal(err)
	}
	smtp := audittest.NewSMTPServer(t, audittest.SMTPConfig{Name: mxHost, Cert: cert})
	ca := audittest.NewCA(t)
	https := audittest.NewPolicyServer(t)
	https.SetCertificate("mta-sts."+domain, ca.Leaf(t, "mta-sts."+domain))
	https.SetPolicy(domain, policy)
	anchors, err := os.ReadFile(l.TrustAnchors())
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "roots.pem")
	roots := append(anchors, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})...)
	if err := os.WriteFile(caFile, roots, 0o644); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(smtp.Addr, ":")

	code, out, errs := runCmd(t, nil, "audit", "--resolver", dns.Addr(), "--profile", "strict", "--format", "json",
		"--smtp-port", port, "--mtasts-addr", https.Addr, "--ca-file", caFile,
		"--selectors", strings.Join(rep.Selectors[domain], ","), domain)
	var doc struct {
		Domains []*audit.Report `json:"domains"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Domains) != 1 {
		t.Fatalf("audit output: %v\n%s\n%s", err, out, errs)
	}
	for _, c := range doc.Domains[0].Checks {
		if c.Counted && c.Status != audit.Pass {
			t.Errorf("%s: %s %v\n  advice: %s", c.ID, c.Status, c.Evidence, c.Advice)
		}
	}
	if code != auditPass || doc.Domains[0].Verdict != audit.Pass {
		t.Fatalf("exit %d verdict %s: %s", code, doc.Domains[0].Verdict, errs)
	}
	// The same domain without the records fails, and says what to publish.
	bare := lookuptest.New(t)
	bare.AddZone(domain, "@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\n@ NS ns2\n@ MX 10 mx\nmx A 127.0.0.1\n")
	code, out, _ = runCmd(t, nil, "audit", "--resolver", bare.Addr(), "--profile", "nisc", "--no-probes", domain)
	if code != auditFail || !strings.Contains(out, "fix: _dmarc."+domain+". 3600 IN TXT") {
		t.Fatalf("bare: exit %d\n%s", code, out)
	}
}

func TestAuditCommand(t *testing.T) {
	t.Parallel()
	dns := lookuptest.New(t)
	dns.AddZone("good.example.go.jp", `
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ NS ns1
@ NS ns2
@ MX 0 .
@ TXT "v=spf1 -all"
_dmarc TXT "v=DMARC1; p=reject; rua=mailto:d@good.example.go.jp"
*._domainkey TXT "v=DKIM1; p="
`)
	dns.AddZone("sf.example.go.jp", "@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ MX 0 .\n@ TXT \"v=spf1 -all\"\n")
	dns.SetServFail("_dmarc.sf.example.go.jp", true)
	list := filepath.Join(t.TempDir(), "domains.txt")
	os.WriteFile(list, []byte("# agencies\ngood.example.go.jp\n\nbad.example.go.jp  # no records\n"), 0o644)

	test := func(wantCode int, wantOut string, args ...string) string {
		t.Helper()
		code, out, errs := runCmd(t, nil, append([]string{"audit", "--resolver", dns.Addr(), "--no-probes"}, args...)...)
		if code != wantCode || !strings.Contains(out+errs, wantOut) {
			t.Fatalf("%v: exit %d, want %d; want %q in\n%s\n%s", args, code, wantCode, wantOut, out, errs)
		}
		return out
	}
	test(auditPass, "good.example.go.jp PASS", "good.example.go.jp")
	out := test(auditFail, "domain,verdict,profile,no_mail,domain.suffix", "--format", "csv", "-f", list)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "good.example.go.jp,pass,nisc,true,") || !strings.HasPrefix(lines[2], "bad.example.go.jp,fail,") {
		t.Fatalf("csv in input order:\n%s", out)
	}
	// SERVFAIL on the DMARC record: "could not test", exit 2, never "missing".
	out = test(auditCouldNot, `"status":"error"`, "--format", "json", "--profile", "bod1801", "--selectors", "x", "sf.example.go.jp")
	if strings.Contains(out, "no DMARC record") {
		t.Fatalf("servfail reported as missing:\n%s", out)
	}
	test(auditFail, "govdomain: invalid domain", "--format", "json", "not_a..domain")
	test(auditCouldNot, "unknown profile", "--profile", "nope", "good.example.go.jp")
	test(auditCouldNot, "unknown format", "--format", "xml", "good.example.go.jp")
	test(auditCouldNot, "no domains given")
	test(auditPass, "KAKUIN_AUDIT_RESOLVER", "--help")
	test(auditPass, "<svg", "--format", "html", "good.example.go.jp")
}

func TestRecordsCommandErrors(t *testing.T) {
	t.Parallel()
	empty := t.TempDir()
	if code, _, errs := runCmd(t, nil, "records", "--pki-dir", empty); code != exitUsage || !strings.Contains(errs, "kakuin pki init") {
		t.Fatalf("no keys: %d %s", code, errs)
	}
	if code, _, errs := runCmd(t, nil, "records", "--pki-dir", empty, "--mta-sts-mode", "none"); code != exitUsage || !strings.Contains(errs, "enforce or testing") {
		t.Fatalf("bad mode: %d %s", code, errs)
	}
	if code, _, errs := runCmd(t, nil, "records", "--gateway-ip", "not-an-ip"); code != exitUsage || !strings.Contains(errs, "--gateway-ip") {
		t.Fatalf("bad ip: %d %s", code, errs)
	}
	code, out, _ := runCmd(t, nil, "records", "--mta-sts-policy", "example.go.jp", "--mta-sts-mode", "testing")
	if code != exitOK || out != "version: STSv1\r\nmode: testing\r\nmx: *.example.go.jp\r\nmax_age: 1209600\r\n" {
		t.Fatalf("default policy: %d %q", code, out)
	}
	if code, out, _ := runCmd(t, nil, "records", "--help"); code != exitOK || !strings.Contains(out, "KAKUIN_RECORDS_GATEWAY_IPS") {
		t.Fatalf("help: %d %s", code, out)
	}
}
