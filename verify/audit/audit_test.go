package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/verify/audit/audittest"
	"github.com/kakuin/kakuin/verify/lookup"
	"github.com/kakuin/kakuin/verify/lookup/lookuptest"
)

// fakeRSA returns the DKIM p= value of an RSA public key of the given
// size. The modulus is random, not a product of primes: the audit only
// measures it, and real small keys cannot be generated any more.
func fakeRSA(bits int) string {
	b := make([]byte, bits/8)
	rand.Read(b)
	n := new(big.Int).SetBytes(b)
	n.SetBit(n, bits-1, 1)
	n.SetBit(n, 0, 1)
	der, err := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: n, E: 65537})
	if err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

func ed25519Key() string {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	return base64.StdEncoding.EncodeToString(pub)
}

func spkiHash(c tls.Certificate) string {
	s := sha256.Sum256(c.Leaf.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(s[:])
}

// env is a loopback world: a DNS server, SMTP servers, an MTA-STS server.
type env struct {
	t      *testing.T
	dns    *lookuptest.Server
	ca     *audittest.CA
	https  *audittest.PolicyServer
	smtp   map[string]string // MX host -> address
	certs  map[string]tls.Certificate
	client *lookup.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dns: lookuptest.New(t), ca: audittest.NewCA(t), smtp: map[string]string{}, certs: map[string]tls.Certificate{}}
	e.https = audittest.NewPolicyServer(t)
	c, err := lookup.New([]string{e.dns.Addr()}, lookup.Options{Timeout: 300 * time.Millisecond, Attempts: 2, CacheSize: 10000})
	if err != nil {
		t.Fatal(err)
	}
	e.client = c
	return e
}

// mx starts an SMTP server for host with cfg (a certificate for host is
// added unless cfg has one).
func (e *env) mx(host string, cfg audittest.SMTPConfig) tls.Certificate {
	if cfg.Cert.Certificate == nil {
		cfg.Cert = e.ca.Leaf(e.t, host)
	}
	cfg.Name = host
	s := audittest.NewSMTPServer(e.t, cfg)
	e.smtp[host] = s.Addr
	e.certs[host] = cfg.Cert
	e.dns.Add(host + `. A 127.0.0.1`)
	return cfg.Cert
}

// policy serves an MTA-STS policy for domain.
func (e *env) policy(domain, body string) {
	e.https.SetCertificate("mta-sts."+domain, e.ca.Leaf(e.t, "mta-sts."+domain))
	e.https.SetPolicy(domain, body)
}

func (e *env) options(profile string) Options {
	return Options{
		Resolver: e.client, Profile: profile, SMTPAddrs: e.smtp, MTASTSAddr: e.https.Addr, RootCAs: e.ca.Pool,
		Timeout: 20 * time.Second, ProbeTimeout: 3 * time.Second, ProbeInterval: -1,
		Selectors: []string{"sel", "ed"},
	}
}

// perfect publishes everything for domain, with its MX at mx.<domain>.
func (e *env) perfect(d string) {
	mxHost := "mx." + d
	cert := e.mx(mxHost, audittest.SMTPConfig{})
	e.dns.AddZone(d, fmt.Sprintf(`
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ NS ns1
@ NS ns2.example.net.
@ MX 10 mx
@ TXT "v=spf1 mx -all"
@ CAA 0 issuemail "ca.example.go.jp"
_dmarc TXT "v=DMARC1; p=reject; sp=reject; rua=mailto:dmarc@%[1]s"
sel._domainkey TXT "v=DKIM1; k=rsa; p=%[2]s"
ed._domainkey TXT "v=DKIM1; k=ed25519; p=%[3]s"
_mta-sts TXT "v=STSv1; id=20261126"
_smtp._tls TXT "v=TLSRPTv1; rua=mailto:tlsrpt@%[1]s"
_25._tcp.mx TLSA 3 1 1 %[4]s
`, d, fakeRSA(2048), ed25519Key(), spkiHash(cert)))
	e.dns.SignZone(d)
	e.dns.SetAuthentic(d, true)
	e.policy(d, "version: STSv1\r\nmode: enforce\r\nmx: "+mxHost+"\r\nmax_age: 1209600\r\n")
}

func statusOf(t *testing.T, rep *Report, id string) Check {
	t.Helper()
	c, ok := rep.Check(id)
	if !ok {
		t.Fatalf("%s: no check %s", rep.Domain, id)
	}
	return c
}

func dump(rep *Report) string {
	var b strings.Builder
	for _, c := range rep.Checks {
		fmt.Fprintf(&b, "  %-22s %-5s %s | %s\n", c.ID, c.Status, strings.Join(c.Evidence, "; "), c.Advice)
	}
	return b.String()
}

func TestPerfectDomainPassesStrict(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.perfect("perfect.example.go.jp")
	a, err := New(e.options("strict"))
	if err != nil {
		t.Fatal(err)
	}
	rep := a.Domain(context.Background(), "perfect.example.go.jp")
	for _, c := range rep.Checks {
		if c.ID == "dmarc.rua_cisa" { // US only, not counted in strict
			if c.Status != Fail || c.Counted {
				t.Errorf("%+v", c)
			}
			continue
		}
		if c.Status != Pass || !c.Counted && c.ID != "caa.issuemail" {
			t.Errorf("%s: %s counted=%v %v", c.ID, c.Status, c.Counted, c.Evidence)
		}
		if c.Advice != "" {
			t.Errorf("%s: advice on a pass: %q", c.ID, c.Advice)
		}
	}
	if rep.Verdict != Pass || len(rep.Checks) != len(CheckIDs) {
		t.Fatalf("verdict %s, %d checks:\n%s", rep.Verdict, len(rep.Checks), dump(rep))
	}
	for i, id := range CheckIDs {
		if rep.Checks[i].ID != id {
			t.Fatalf("check %d is %s, want %s (stable order)", i, rep.Checks[i].ID, id)
		}
	}
}

// TestChecks: one invented domain per pass, warn, fail and error.
func TestChecks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base := func(d string, extra string) {
		e.dns.AddZone(d, `
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ NS ns1
@ MX 10 mx.shared.example.go.jp.
`+extra)
	}
	e.mx("mx.shared.example.go.jp", audittest.SMTPConfig{})
	dmarcOK := `_dmarc TXT "v=DMARC1; p=reject; rua=mailto:d@example.go.jp"` + "\n"

	// SPF
	var inc []string
	for i := 0; i < 11; i++ {
		inc = append(inc, fmt.Sprintf("include:i%d.spf.example.go.jp", i))
		e.dns.Add(fmt.Sprintf(`i%d.spf.example.go.jp. TXT "v=spf1 ip4:192.0.2.%d -all"`, i, i))
	}
	base("spf11.example.go.jp", `@ TXT "v=spf1 `+strings.Join(inc, " ")+` -all"`)
	base("plusall.example.go.jp", `@ TXT "v=spf1 mx +all"`)
	base("softall.example.go.jp", `@ TXT "v=spf1 mx ~all"`)
	base("noall.example.go.jp", `@ TXT "v=spf1 mx"`)
	base("twospf.example.go.jp", "@ TXT \"v=spf1 mx -all\"\n@ TXT \"v=spf1 -all\"")
	base("spfloop.example.go.jp", `@ TXT "v=spf1 include:a.spfloop.example.go.jp -all"
a TXT "v=spf1 include:b.spfloop.example.go.jp -all"
b TXT "v=spf1 include:a.spfloop.example.go.jp -all"`)
	base("ptr.example.go.jp", `@ TXT "v=spf1 ptr -all"`)
	base("nospf.example.go.jp", dmarcOK)
	// DMARC
	base("twodmarc.example.go.jp", `_dmarc TXT "v=DMARC1; p=reject"
_dmarc TXT "v=DMARC1; p=none"`)
	base("pnone.example.go.jp", `_dmarc TXT "v=DMARC1; p=none; rua=mailto:d@pnone.example.go.jp"`)
	base("quarantine.example.go.jp", `_dmarc TXT "v=DMARC1; p=quarantine; rua=mailto:d@quarantine.example.go.jp"`)
	base("pct.example.go.jp", `_dmarc TXT "v=DMARC1; p=reject; pct=50; rua=mailto:d@pct.example.go.jp"`)
	base("norua.example.go.jp", `_dmarc TXT "v=DMARC1; p=reject"`)
	base("extrua.example.go.jp", `_dmarc TXT "v=DMARC1; p=reject; rua=mailto:d@reports.example.com"`)
	base("extok.example.go.jp", `_dmarc TXT "v=DMARC1; p=reject; rua=mailto:d@reports.example.com,mailto:reports@dmarc.cyber.dhs.gov"`)
	e.dns.Add(`extok.example.go.jp._report._dmarc.reports.example.com. TXT "v=DMARC1"`)
	e.dns.Add(`extok.example.go.jp._report._dmarc.dmarc.cyber.dhs.gov. TXT "v=DMARC1"`)
	base("spnone.example.go.jp", `_dmarc TXT "v=DMARC1; p=reject; sp=none; rua=mailto:d@spnone.example.go.jp"`)
	base("org.example.go.jp", `_dmarc TXT "v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@org.example.go.jp"`)
	e.dns.Add(`sub.org.example.go.jp. MX 10 mx.shared.example.go.jp.`)
	// DKIM
	base("rsa1024.example.go.jp", `sel._domainkey TXT "v=DKIM1; k=rsa; p=`+fakeRSA(1024)+`"`)
	base("rsa512.example.go.jp", `sel._domainkey TXT "v=DKIM1; k=rsa; p=`+fakeRSA(512)+`"`)
	base("rsa2048.example.go.jp", `sel._domainkey TXT "v=DKIM1; k=rsa; p=`+fakeRSA(2048)+`"`)
	base("testing.example.go.jp", `ed._domainkey TXT "v=DKIM1; k=ed25519; t=y; p=`+ed25519Key()+`"`)
	base("service.example.go.jp", `ed._domainkey TXT "v=DKIM1; k=ed25519; s=tlsrpt; p=`+ed25519Key()+`"`)
	base("revoked.example.go.jp", `sel._domainkey TXT "v=DKIM1; k=rsa; p="`)
	base("badkey.example.go.jp", `sel._domainkey TXT "v=DKIM1; k=rsa; p=notbase64!"`)
	base("nodkim.example.go.jp", ``)
	// null MX: a domain that sends no mail
	e.dns.AddZone("nomail.example.go.jp", `
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ NS ns1
@ MX 0 .
@ TXT "v=spf1 -all"
_dmarc TXT "v=DMARC1; p=reject"
*._domainkey TXT "v=DKIM1; p="
`)
	e.dns.AddZone("badnull.example.go.jp", `
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ MX 0 .
@ MX 10 mx.shared.example.go.jp.
`)
	e.dns.AddZone("nomx.example.go.jp", "@ SOA ns1 hostmaster 1 3600 600 86400 60\n")
	// MTA-STS, TLS-RPT
	base("nomtasts.example.go.jp", ``)
	base("stsgood.example.go.jp", `_mta-sts TXT "v=STSv1; id=1"
_smtp._tls TXT "v=TLSRPTv1; rua=mailto:t@stsgood.example.go.jp"`)
	e.policy("stsgood.example.go.jp", "version: STSv1\nmode: enforce\nmx: *.shared.example.go.jp\nmax_age: 604800\n")
	base("ststesting.example.go.jp", `_mta-sts TXT "v=STSv1; id=1"`)
	e.policy("ststesting.example.go.jp", "version: STSv1\nmode: testing\nmx: mx.shared.example.go.jp\nmax_age: 604800\n")
	base("stsmx.example.go.jp", `_mta-sts TXT "v=STSv1; id=1"`)
	e.policy("stsmx.example.go.jp", "version: STSv1\nmode: enforce\nmx: mx.other.example.go.jp\nmax_age: 604800\n")
	base("stsnopolicy.example.go.jp", `_mta-sts TXT "v=STSv1; id=1"`)
	base("badtlsrpt.example.go.jp", `_smtp._tls TXT "v=TLSRPTv1; rua=ftp://x"`)
	// DANE
	shared := e.certs["mx.shared.example.go.jp"]
	base("danegood.example.go.jp", ``)
	e.dns.Add(`_25._tcp.mx.shared.example.go.jp. TLSA 3 1 1 ` + spkiHash(shared))
	e.dns.SetAuthentic("_25._tcp.mx.shared.example.go.jp", true)
	e.dns.SetAuthentic("danegood.example.go.jp", true)
	e.dns.AddZone("danebad.example.go.jp", `
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ MX 10 mx.danebad.example.go.jp.
_25._tcp.mx TLSA 3 1 1 0000000000000000000000000000000000000000000000000000000000000000
`)
	e.mx("mx.danebad.example.go.jp", audittest.SMTPConfig{})
	e.dns.SetAuthentic("danebad.example.go.jp", true)
	e.dns.AddZone("daneinsecure.example.go.jp", `
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ MX 10 mx.daneinsecure.example.go.jp.
`)
	ic := e.mx("mx.daneinsecure.example.go.jp", audittest.SMTPConfig{})
	e.dns.Add(`_25._tcp.mx.daneinsecure.example.go.jp. TLSA 3 1 1 ` + spkiHash(ic))
	// A self-signed-like certificate (another CA) that DANE vouches for.
	other := audittest.NewCA(t)
	dc := other.Leaf(t, "mx.daneonly.example.go.jp")
	e.dns.AddZone("daneonly.example.go.jp", `
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ MX 10 mx.daneonly.example.go.jp.
_25._tcp.mx TLSA 3 1 1 `+spkiHash(dc)+"\n")
	e.mx("mx.daneonly.example.go.jp", audittest.SMTPConfig{Cert: dc})
	e.dns.SetAuthentic("daneonly.example.go.jp", true)
	// STARTTLS
	mxd := func(d string, cfg audittest.SMTPConfig) {
		e.dns.AddZone(d, "@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ MX 10 mx."+d+".\n")
		e.mx("mx."+d, cfg)
	}
	mxd("plain.example.go.jp", audittest.SMTPConfig{NoSTARTTLS: true})
	mxd("busy.example.go.jp", audittest.SMTPConfig{Busy: true})
	mxd("oldtls.example.go.jp", audittest.SMTPConfig{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	mxd("weak3des.example.go.jp", audittest.SMTPConfig{AcceptWeak: []string{"3DES"}})
	mxd("weakrc4.example.go.jp", audittest.SMTPConfig{AcceptWeak: []string{"RC4"}})
	mxd("sslv3.example.go.jp", audittest.SMTPConfig{AcceptWeak: []string{"SSLv3"}})
	mxd("sslv2.example.go.jp", audittest.SMTPConfig{AcceptWeak: []string{"SSLv2"}})
	mxd("dropprobe.example.go.jp", audittest.SMTPConfig{DropSTARTTLSFrom: 2})    // the SSLv2 probe's connection
	mxd("dropstarttls.example.go.jp", audittest.SMTPConfig{DropSTARTTLSFrom: 1}) // every connection
	mxd("wrongcert.example.go.jp", audittest.SMTPConfig{Cert: e.ca.Leaf(t, "www.example.go.jp")})
	mxd("expired.example.go.jp", audittest.SMTPConfig{Cert: e.ca.ExpiredLeaf(t, "mx.expired.example.go.jp")})
	e.dns.AddZone("nomxaddr.example.go.jp", "@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ MX 10 gone.nomxaddr.example.go.jp.\n")
	// DNS failures: never reported as missing
	base("sfdmarc.example.go.jp", `@ TXT "v=spf1 mx -all"`)
	e.dns.SetServFail("_dmarc.sfdmarc.example.go.jp", true)
	base("dropspf.example.go.jp", ``)
	e.dns.SetDrop("dropspf.example.go.jp", true)
	// DNSSEC
	base("signed.example.go.jp", ``)
	e.dns.SignZone("signed.example.go.jp")
	e.dns.SetAuthentic("signed.example.go.jp", true)
	base("island.example.go.jp", ``)
	e.dns.SignZone("island.example.go.jp")
	e.dns.Remove("island.example.go.jp", "DS")
	base("example.com", ``)
	e.dns.Add(`caa.example.go.jp. CAA 0 issuemail "ca.example.go.jp"`, `sub.caa.example.go.jp. MX 10 mx.shared.example.go.jp.`)
	// kakuin's own selector of this month is found without --selectors.
	rsaSel, _ := pki.DKIMSelectors(time.Now())
	base("kakuinsel.example.go.jp", rsaSel+`._domainkey TXT "v=DKIM1; k=rsa; p=`+fakeRSA(2048)+`"`)

	a, err := New(e.options("strict"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reports := map[string]*Report{}
	test := func(domain, id string, want Status, evidence string) {
		t.Helper()
		rep, ok := reports[domain]
		if !ok {
			rep = a.Domain(ctx, domain)
			reports[domain] = rep
		}
		c := statusOf(t, rep, id)
		if c.Status != want {
			t.Errorf("%s %s: %s, want %s\n%s", domain, id, c.Status, want, dump(rep))
			return
		}
		if evidence != "" && !strings.Contains(strings.Join(c.Evidence, "\n"), evidence) {
			t.Errorf("%s %s: evidence %q lacks %q", domain, id, c.Evidence, evidence)
		}
		if (want == Warn || want == Fail) && c.Advice == "" {
			t.Errorf("%s %s: %s without advice", domain, id, want)
		}
	}

	test("spf11.example.go.jp", "spf.lookups", Fail, "11 DNS lookups")
	test("spf11.example.go.jp", "spf.record", Pass, "")
	test("plusall.example.go.jp", "spf.all", Fail, "+all")
	test("softall.example.go.jp", "spf.all", Warn, "~all")
	test("noall.example.go.jp", "spf.all", Fail, "neutral")
	test("twospf.example.go.jp", "spf.record", Fail, "2 SPF records")
	test("spfloop.example.go.jp", "spf.lookups", Fail, "loop")
	test("ptr.example.go.jp", "spf.ptr", Warn, "ptr")
	test("nospf.example.go.jp", "spf.record", Fail, "no SPF record")
	test("twodmarc.example.go.jp", "dmarc.record", Fail, "more than one")
	test("pnone.example.go.jp", "dmarc.policy", Fail, "p=none")
	test("quarantine.example.go.jp", "dmarc.policy", Warn, "p=quarantine")
	test("pct.example.go.jp", "dmarc.policy", Warn, "pct=50")
	test("norua.example.go.jp", "dmarc.rua", Fail, "no rua")
	test("norua.example.go.jp", "dmarc.policy", Pass, "")
	test("extrua.example.go.jp", "dmarc.rua_authorized", Fail, "has not authorised")
	test("extok.example.go.jp", "dmarc.rua_authorized", Pass, "authorised")
	test("extok.example.go.jp", "dmarc.rua_cisa", Pass, "")
	test("pnone.example.go.jp", "dmarc.rua_cisa", Fail, "")
	test("spnone.example.go.jp", "dmarc.subdomains", Warn, "sp=none")
	test("sub.org.example.go.jp", "dmarc.record", Pass, "found at the parent org.example.go.jp")
	test("sub.org.example.go.jp", "dmarc.policy", Warn, "p=quarantine")
	test("nodkim.example.go.jp", "dmarc.record", Fail, "no DMARC record")
	test("rsa1024.example.go.jp", "dkim.keys", Warn, "rsa 1024 bits")
	test("rsa1024.example.go.jp", "dkim.present", Pass, "")
	test("rsa512.example.go.jp", "dkim.keys", Fail, "under 1024")
	test("rsa2048.example.go.jp", "dkim.keys", Pass, "rsa 2048 bits")
	test("testing.example.go.jp", "dkim.keys", Warn, "t=y")
	test("service.example.go.jp", "dkim.keys", Fail, "s= excludes email")
	test("revoked.example.go.jp", "dkim.present", Fail, "no usable DKIM key")
	test("revoked.example.go.jp", "dkim.keys", Fail, "revoked")
	test("badkey.example.go.jp", "dkim.keys", Fail, "base64")
	test("nodkim.example.go.jp", "dkim.present", Fail, "")
	test("nomail.example.go.jp", "mx.present", Pass, "null MX")
	test("nomail.example.go.jp", "dkim.present", Pass, "sends no mail")
	test("nomail.example.go.jp", "spf.all", Pass, "")
	test("nomail.example.go.jp", "starttls.offered", Pass, "null MX")
	test("nomail.example.go.jp", "mtasts.record", Pass, "null MX")
	test("badnull.example.go.jp", "mx.present", Fail, "")
	test("nomx.example.go.jp", "mx.present", Fail, "no MX")
	test("nomx.example.go.jp", "starttls.offered", Fail, "no MX host")
	test("nomtasts.example.go.jp", "mtasts.record", Fail, "no MTA-STS record")
	test("nomtasts.example.go.jp", "tlsrpt.record", Fail, "no TLS-RPT record")
	test("stsgood.example.go.jp", "mtasts.policy", Pass, "mode: enforce")
	test("stsgood.example.go.jp", "mtasts.mx", Pass, "matches")
	test("stsgood.example.go.jp", "tlsrpt.record", Pass, "")
	test("ststesting.example.go.jp", "mtasts.policy", Warn, "testing")
	test("stsmx.example.go.jp", "mtasts.mx", Fail, "matches no mx pattern")
	test("stsnopolicy.example.go.jp", "mtasts.policy", Fail, "fetching policy")
	test("badtlsrpt.example.go.jp", "tlsrpt.record", Fail, "ftp")
	test("danegood.example.go.jp", "dane.match", Pass, "matches a TLSA record")
	test("danegood.example.go.jp", "dane.tlsa", Pass, "")
	test("danebad.example.go.jp", "dane.tlsa", Pass, "")
	test("danebad.example.go.jp", "dane.match", Fail, "matches no TLSA")
	test("daneinsecure.example.go.jp", "dane.tlsa", Fail, "not DNSSEC-validated")
	test("daneonly.example.go.jp", "starttls.certificate", Pass, "matches its DNSSEC-validated TLSA")
	test("nomtasts.example.go.jp", "dane.tlsa", Fail, "MX records not DNSSEC-validated") // danegood's MX, from an unsigned zone
	test("nomtasts.example.go.jp", "dane.match", Pass, "")
	test("plain.example.go.jp", "starttls.offered", Fail, "not offered")
	test("busy.example.go.jp", "starttls.offered", Error, "421")
	test("busy.example.go.jp", "starttls.weak", Error, "")
	test("oldtls.example.go.jp", "starttls.tls12", Fail, "TLS 1.1")
	test("weak3des.example.go.jp", "starttls.weak", Fail, "accepts 3DES")
	test("weak3des.example.go.jp", "starttls.tls12", Pass, "TLS 1.3")
	test("weakrc4.example.go.jp", "starttls.weak", Fail, "accepts RC4")
	test("sslv3.example.go.jp", "starttls.weak", Fail, "accepts SSLv3")
	test("sslv2.example.go.jp", "starttls.weak", Fail, "accepts SSLv2")
	test("sslv2.example.go.jp", "starttls.tls12", Pass, "TLS 1.3")
	test("dropprobe.example.go.jp", "starttls.offered", Pass, "")
	test("dropprobe.example.go.jp", "starttls.weak", Error, "could not test: SSLv2 probe")
	test("dropstarttls.example.go.jp", "starttls.offered", Error, "could not test: STARTTLS at")
	test("dropstarttls.example.go.jp", "starttls.weak", Error, "could not test")
	test("danegood.example.go.jp", "starttls.weak", Pass, "refuses SSLv2, SSLv3, RC4 and 3DES")
	test("wrongcert.example.go.jp", "starttls.certificate", Fail, "certificate is valid for www.example.go.jp")
	test("expired.example.go.jp", "starttls.certificate", Fail, "expired")
	test("nomxaddr.example.go.jp", "mx.resolves", Fail, "no A or AAAA")
	test("nomxaddr.example.go.jp", "starttls.offered", Error, "no address")
	test("sfdmarc.example.go.jp", "dmarc.record", Error, "SERVFAIL")
	test("sfdmarc.example.go.jp", "dmarc.policy", Error, "")
	test("sfdmarc.example.go.jp", "spf.record", Pass, "")
	test("dropspf.example.go.jp", "spf.record", Error, "could not test")
	test("dropspf.example.go.jp", "mx.present", Error, "")
	test("signed.example.go.jp", "dnssec.signed", Pass, "DS")
	test("signed.example.go.jp", "dnssec.validated", Pass, "")
	test("nodkim.example.go.jp", "dnssec.signed", Fail, "not signed")
	test("nodkim.example.go.jp", "dnssec.validated", Fail, "")
	test("island.example.go.jp", "dnssec.signed", Fail, "island")
	test("example.com", "domain.suffix", Fail, "not under go.jp")
	test("nodkim.example.go.jp", "domain.suffix", Pass, "")
	test("nodkim.example.go.jp", "domain.ns", Warn, "")
	test("nxdomain.example.go.jp", "domain.soa", Fail, "NXDOMAIN")
	test("signed.example.go.jp", "caa.issuemail", Warn, "no CAA issuemail")
	test("sub.caa.example.go.jp", "caa.issuemail", Pass, "CAA set found at caa.example.go.jp")
	test("kakuinsel.example.go.jp", "dkim.present", Pass, "1 usable key")

	// The island advice is the exact DS record to publish.
	if c, _ := reports["island.example.go.jp"].Check("dnssec.signed"); !strings.Contains(c.Advice, "IN\tDS\t") {
		t.Errorf("island advice: %q", c.Advice)
	}
	// Verdicts: an error in a counted check is error, a fail is fail.
	if v := reports["sfdmarc.example.go.jp"].Verdict; v != Fail {
		t.Errorf("sfdmarc verdict %s (other counted checks fail)", v)
	}
}

func TestNoMailDomainPassesNISC(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.dns.AddZone("nomail.example.go.jp", `
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ NS ns1
@ NS ns2
@ MX 0 .
@ TXT "v=spf1 -all"
_dmarc TXT "v=DMARC1; p=reject; rua=mailto:d@nomail.example.go.jp"
*._domainkey TXT "v=DKIM1; p="
`)
	rep, err := Domain(context.Background(), "nomail.example.go.jp", e.options("nisc"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verdict != Pass || !rep.NoMail {
		t.Fatalf("verdict %s nomail %v\n%s", rep.Verdict, rep.NoMail, dump(rep))
	}
	// Without the wildcard key it only warns; with an SPF that allows
	// senders it is a sending domain and needs DKIM.
	e.dns.Remove("*._domainkey.nomail.example.go.jp", "")
	e.dns.Add(`nomail2.example.go.jp. SOA ns1 hostmaster 1 3600 600 86400 60`, `nomail2.example.go.jp. MX 0 .`, `nomail2.example.go.jp. TXT "v=spf1 ip4:192.0.2.1 -all"`)
	c, _ := lookup.New([]string{e.dns.Addr()}, lookup.Options{})
	o := e.options("nisc")
	o.Resolver = c
	rep, _ = Domain(context.Background(), "nomail.example.go.jp", o)
	if st := statusOf(t, rep, "dkim.present"); st.Status != Warn || !strings.Contains(st.Advice, `*._domainkey.nomail.example.go.jp. 3600 IN TXT "v=DKIM1; p="`) {
		t.Fatalf("no wildcard: %+v", st)
	}
	rep, _ = Domain(context.Background(), "nomail2.example.go.jp", o)
	if rep.NoMail || statusOf(t, rep, "dkim.present").Status != Fail {
		t.Fatalf("null MX with senders: nomail %v\n%s", rep.NoMail, dump(rep))
	}
}

func TestSharedMXProbedOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srv := audittest.NewSMTPServer(t, audittest.SMTPConfig{Name: "mx.hoster.example", Cert: e.ca.Leaf(t, "mx.hoster.example")})
	e.smtp["mx.hoster.example"] = srv.Addr
	var domains []string
	for i := 0; i < 20; i++ {
		d := fmt.Sprintf("d%d.example.go.jp", i)
		domains = append(domains, d)
		e.dns.Add(d + `. MX 10 mx.hoster.example.`)
	}
	o := e.options("bod1801")
	o.ProbeInterval = 20 * time.Millisecond
	a, _ := New(o)
	got := 0
	a.Run(context.Background(), domains, 8, func(i int, r *Report) {
		got++
		if c := statusOf(t, r, "starttls.offered"); c.Status != Pass {
			t.Errorf("%s: %+v", r.Domain, c)
		}
	})
	if got != 20 {
		t.Fatalf("%d reports", got)
	}
	// One session plus the four weak-protocol probes (SSLv2, SSLv3, RC4,
	// 3DES), one at a time, ProbeInterval apart.
	if n := srv.Conns(); n != 5 {
		t.Fatalf("shared MX got %d connections, want 5", n)
	}
	// Each connection is accepted after the previous one's greeting,
	// exchange and release plus the interval: the gaps prove both.
	at := srv.Accepted()
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < 20*time.Millisecond {
			t.Errorf("connections %d and %d only %v apart", i-1, i, gap)
		}
	}
}

// TestSSLv2UnderBOD1801: BOD 18-01 forbids SSLv2; the SSLv2 probe's
// result decides the verdict of a domain otherwise compliant.
func TestSSLv2UnderBOD1801(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct {
		name     string
		cfg      audittest.SMTPConfig
		want     Status
		evidence string // the whole evidence, after "<mx>: "
	}{
		{"modern", audittest.SMTPConfig{}, Pass, "refuses SSLv2, SSLv3, RC4 and 3DES"},
		{"sslv2", audittest.SMTPConfig{AcceptWeak: []string{"SSLv2"}}, Fail, "accepts SSLv2"},
		{"sslv2all", audittest.SMTPConfig{AcceptWeak: []string{"SSLv2", "SSLv3", "RC4", "3DES"}}, Fail, "accepts SSLv2, SSLv3, RC4, 3DES"},
		{"drop", audittest.SMTPConfig{DropSTARTTLSFrom: 2}, Error, "could not test: SSLv2 probe: "},
		{"stall", audittest.SMTPConfig{StallTLSFrom: 2}, Error, "could not test: SSLv2 probe: "},
		// The first connection stalls: the whole probe could not test,
		// never a failed handshake or a pass.
		{"stallall", audittest.SMTPConfig{StallTLSFrom: 1}, Error, "could not test: TLS handshake with "},
	}
	for _, tc := range cases {
		d := tc.name + ".bod.example.go.jp"
		e.dns.AddZone(d, `
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ MX 10 mx
@ TXT "v=spf1 mx -all"
_dmarc TXT "v=DMARC1; p=reject; rua=`+CISAReportAddress+`"
`)
		e.mx("mx."+d, tc.cfg)
	}
	o := e.options("bod1801")
	o.ProbeTimeout = 500 * time.Millisecond // for "stall"
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		d := tc.name + ".bod.example.go.jp"
		rep := a.Domain(context.Background(), d)
		c := statusOf(t, rep, "starttls.weak")
		ev := strings.Join(c.Evidence, "\n")
		okEv := ev == "mx."+d+": "+tc.evidence || tc.want == Error && strings.HasPrefix(ev, "mx."+d+": "+tc.evidence)
		if c.Status != tc.want || !c.Counted || !okEv {
			t.Errorf("%s: starttls.weak %s counted=%v %q, want %s %q", tc.name, c.Status, c.Counted, ev, tc.want, tc.evidence)
		}
		if rep.Verdict != tc.want {
			t.Errorf("%s: bod1801 verdict %s, want %s\n%s", tc.name, rep.Verdict, tc.want, dump(rep))
		}
		if tc.name == "stall" && !strings.Contains(ev, "timeout") {
			t.Errorf("stall: %q is not a timeout", ev)
		}
		if tc.want == Fail && !strings.Contains(c.Advice, "smtpd_tls_protocols = >=TLSv1.2") {
			t.Errorf("%s: advice %q", tc.name, c.Advice)
		}
	}
}

func TestDNSFailureDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.dns.Add(`slow.example.go.jp. TXT "v=spf1 -all"`, `fast.example.go.jp. TXT "v=spf1 -all"`)
	e.dns.SetDrop("slow.example.go.jp", true)
	o := e.options("nisc")
	o.NoProbes = true
	a, _ := New(o)
	start := time.Now()
	var slow, fast *Report
	a.Run(context.Background(), []string{"slow.example.go.jp", "fast.example.go.jp"}, 2, func(i int, r *Report) {
		if i == 0 {
			slow = r
		} else {
			fast = r
			if time.Since(start) > 2*time.Second {
				t.Errorf("fast domain waited for the slow one: %v", time.Since(start))
			}
		}
	})
	if c := statusOf(t, slow, "spf.record"); c.Status != Error {
		t.Errorf("slow: %+v", c)
	}
	if slow.Verdict != Error && slow.Verdict != Fail {
		t.Errorf("slow verdict %s", slow.Verdict)
	}
	if c := statusOf(t, fast, "spf.record"); c.Status != Pass {
		t.Errorf("fast: %+v", c)
	}
}

func TestSecondResolverUsed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.perfect("two.example.go.jp")
	bad := lookuptest.New(t)
	bad.AddZone("two.example.go.jp", "@ SOA ns1 hostmaster 1 3600 600 86400 60\n")
	bad.SetServFail("_dmarc.two.example.go.jp", true)
	c, _ := lookup.New([]string{bad.Addr(), e.dns.Addr()}, lookup.Options{Timeout: 200 * time.Millisecond, Attempts: 1})
	o := e.options("nisc")
	o.Resolver = c
	o.NoProbes = true
	rep, _ := Domain(context.Background(), "two.example.go.jp", o)
	if st := statusOf(t, rep, "dmarc.record"); st.Status != Pass {
		t.Fatalf("dmarc via the second resolver: %+v", st)
	}
}

func TestProfiles(t *testing.T) {
	t.Parallel()
	for _, name := range ProfileNames() {
		p := Profiles[name]
		if p.Name != name || len(p.Checks) == 0 {
			t.Errorf("%s: %+v", name, p)
		}
		for _, id := range p.Checks {
			found := false
			for _, k := range CheckIDs {
				found = found || k == id
			}
			if !found {
				t.Errorf("%s counts unknown check %s", name, id)
			}
		}
	}
	if _, err := New(Options{Resolver: nil}); err == nil {
		t.Error("no resolver accepted")
	}
	c, _ := lookup.New([]string{"127.0.0.1:1"}, lookup.Options{})
	if _, err := New(Options{Resolver: c, Profile: "nope"}); err == nil {
		t.Error("unknown profile accepted")
	}
}

func TestInvalidDomainFailsEveryProfile(t *testing.T) {
	t.Parallel()
	c, _ := lookup.New([]string{"127.0.0.1:1"}, lookup.Options{})
	for _, p := range ProfileNames() {
		rep, err := Domain(context.Background(), "not..a domain", Options{Resolver: c, Profile: p})
		if err != nil || rep.Verdict != Fail {
			t.Errorf("%s: %v %+v", p, err, rep)
		}
	}
}
