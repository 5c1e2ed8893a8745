package main

// Interoperability: `kakuin sign` output checked by the verifiers a
// recipient would use. OpenSSL (`openssl cms -verify`) and NSS (`cmsutil`,
// what Thunderbird verifies with) check the S/MIME signature against the
// development root alone; dkimpy checks both DKIM signatures, and Perl's
// Mail::DKIM (rsa-sha256 only in Debian 12) the RSA one, with the keys from
// the DIR/dns.zone that `kakuin pki init` tells operators to publish.
// These are real programs from Debian packages (`make deps`): when one is
// missing the tests fail, they never skip.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kakuin/kakuin/govdomain"
	"github.com/kakuin/kakuin/pki"
)

// interopDomains are the domains the interop PKI is made for; the corpus
// uses senders under both.
var interopDomains = []string{"example.go.jp", "kakuin-test.go.jp"}

// testDir is removed when the tests end; the kakuin binary, the shared PKI
// and the NSS database live in it.
var testDir string

func TestMain(m *testing.M) {
	var err error
	testDir, err = os.MkdirTemp("", "kakuin-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(testDir)
	os.Exit(code)
}

// fixture is what every interop test shares: built once, on first use.
type fixture struct {
	bin    string // the kakuin binary
	pkiDir string // laid out by kakuin pki init for interopDomains
	nssDB  string // "sql:DIR", trusting the development root only
	python string // Python with dkimpy
	err    error
}

var (
	fixtureOnce sync.Once
	shared      fixture
)

// interop returns the shared fixture, failing the test if a tool is
// missing or the set-up failed.
func interop(t *testing.T) *fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("interop tests run real OpenSSL, NSS and dkimpy; not in -short mode")
	}
	fixtureOnce.Do(func() { shared.err = shared.setUp() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return &shared
}

// requiredTools returns an error naming every missing tool.
func requiredTools() (python string, err error) {
	python = os.Getenv("KAKUIN_TEST_PYTHON")
	if python == "" {
		python = "/usr/bin/python3"
	}
	var missing []string
	for _, tool := range []string{"openssl", "cmsutil", "certutil"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if out, err := exec.Command(python, "-c", "import dkim, nacl, dns.zone").CombinedOutput(); err != nil {
		missing = append(missing, fmt.Sprintf("%s with dkim, nacl and dns (%v: %s)", python, err, bytes.TrimSpace(out)))
	}
	if out, err := exec.Command("perl", "-MMail::DKIM::Verifier", "-MNet::DNS::ZoneFile", "-e", "1").CombinedOutput(); err != nil {
		missing = append(missing, fmt.Sprintf("perl with Mail::DKIM (%v: %s)", err, bytes.TrimSpace(out)))
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("missing %s: run make deps (KAKUIN_TEST_PYTHON names a Python with python3-dkim)", strings.Join(missing, ", "))
	}
	return python, nil
}

func (f *fixture) setUp() error {
	var err error
	if f.python, err = requiredTools(); err != nil {
		return err
	}
	if f.bin, err = buildKakuin(); err != nil {
		return err
	}
	f.pkiDir = filepath.Join(testDir, "pki")
	args := []string{"pki", "init", "--dir", f.pkiDir}
	for _, d := range interopDomains {
		args = append(args, "--domain", d)
	}
	if res := runKakuin(f.bin, nil, nil, args...); res.code != 0 {
		return fmt.Errorf("kakuin %s: exit %d: %s", strings.Join(args, " "), res.code, res.stderr)
	}
	// A fresh NSS database that trusts the development root, and nothing
	// else, for e-mail (the third trust field).
	db := filepath.Join(testDir, "nssdb")
	if err := os.Mkdir(db, 0o700); err != nil {
		return err
	}
	f.nssDB = "sql:" + db
	for _, args := range [][]string{
		{"-N", "-d", f.nssDB, "--empty-password"},
		{"-A", "-d", f.nssDB, "-n", "kakuin development root", "-t", "C,C,C", "-i", filepath.Join(f.pkiDir, "trust-anchors.pem")},
	} {
		if out, err := exec.Command("certutil", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("certutil %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// buildKakuin builds the command under test once into testDir.
func buildKakuin() (string, error) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	bin := filepath.Join(testDir, "kakuin")
	out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v: %s", err, out)
	}
	return bin, nil
}

type result struct {
	code           int
	stdout, stderr []byte
}

// runKakuin runs the binary with the environment stripped of KAKUIN_*
// variables, plus env.
func runKakuin(bin string, env []string, stdin []byte, args ...string) result {
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return result{code, out.Bytes(), errb.Bytes()}
}

func (f *fixture) sign(msg []byte) result {
	return runKakuin(f.bin, []string{"KAKUIN_PKI_DIR=" + f.pkiDir}, msg, "sign")
}

// corpus returns the committed corpus messages by name, plus the 5 MB
// one generated here.
func corpus(t *testing.T) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "testdata", "corpus", "*.eml"))
	if err != nil || len(files) < 15 {
		t.Fatalf("corpus: %d files, %v", len(files), err)
	}
	msgs := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		msgs[filepath.Base(f)] = b
	}
	msgs["generated-5mb-attachment.eml"] = bigMessage(5 << 20)
	return msgs
}

// bigMessage is a multipart/mixed message with a pseudo-random attachment
// of n octets, base64 in 76-character lines.
func bigMessage(n int) []byte {
	rng := rand.New(rand.NewChaCha8([32]byte{'k', 'a', 'k', 'u', 'i', 'n'}))
	att := make([]byte, n)
	for i := range att {
		att[i] = byte(rng.Uint32())
	}
	var b bytes.Buffer
	b.WriteString("From: =?UTF-8?B?5L6L56S655yBIOe1seioiOWxgA==?= <toukei@example.go.jp>\r\n" +
		"To: archive@example.com\r\nSubject: Survey microdata (5 MB)\r\n" +
		"Date: Thu, 26 Nov 2026 12:00:00 +0900\r\nMessage-ID: <big-5mb@example.go.jp>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"big-boundary\"\r\n\r\n" +
		"--big-boundary\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"調査データを添付します。\r\n\r\n" +
		"--big-boundary\r\nContent-Type: application/octet-stream; name=\"microdata.bin\"\r\n" +
		"Content-Disposition: attachment; filename=\"microdata.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(att)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--big-boundary--\r\n")
	return b.Bytes()
}

func TestInteropCorpus(t *testing.T) {
	f := interop(t)
	for name, msg := range corpus(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f.checkMessage(t, msg)
		})
	}
}

// checkMessage signs msg and checks the result with every verifier, then
// tampers with it and checks that they all notice.
func (f *fixture) checkMessage(t *testing.T, msg []byte) {
	res := f.sign(msg)
	if res.code != 0 || len(res.stdout) == 0 {
		t.Fatalf("kakuin sign: exit %d, %d bytes out: %s", res.code, len(res.stdout), res.stderr)
	}
	signed := res.stdout
	dir := t.TempDir()
	s := parseSigned(t, signed)
	signedPath := write(t, dir, "signed.eml", signed)
	entityPath := write(t, dir, "entity", s.entity)
	sigPath := write(t, dir, "sig.der", s.signature)

	// RFC 8551 3.1: the signed entity is 7-bit, CRLF, no line over 998.
	checkSevenBit(t, s.entity)

	// OpenSSL against the development root only.
	out, err := f.openssl(dir, signedPath)
	if err != nil {
		t.Fatalf("openssl cms -verify: %v", err)
	}
	if !bytes.Equal(out, s.entity) {
		t.Errorf("openssl's content differs from the signed entity (%d vs %d bytes)", len(out), len(s.entity))
	}
	from := headerAddress(t, s.header.Get("From"))
	checkSignerAddress(t, signedPath+".signer.pem", from)
	// NSS.
	if err := f.nss(sigPath, entityPath); err != nil {
		t.Errorf("nss cmsutil: %v", err)
	}
	// The header stayed outside, the content went in unchanged.
	checkHeader(t, msg, s)
	checkContent(t, msg, s.entity)

	// Tamper with one body byte of the signed entity: every verifier fails.
	tampered := flipBodyByte(t, signed, s)
	tPath := write(t, dir, "tampered.eml", tampered)
	tEntity := parseSigned(t, tampered).entity
	tEntityPath := write(t, dir, "tampered-entity", tEntity)
	if _, err := f.openssl(dir, tPath); err == nil {
		t.Error("openssl verified a tampered message")
	}
	if err := f.nss(sigPath, tEntityPath); err == nil {
		t.Error("nss verified a tampered entity")
	}
	// Change the author: DKIM fails (From is signed and oversigned).
	fromPath := write(t, dir, "from-changed.eml", replaceFrom(t, signed, "Fake <info@example.go.jp>"))

	// dkimpy, both algorithms, keys from dns.zone: one run for the three.
	dk, err := f.dkim(signedPath, tPath, fromPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := dkimPass(dk[signedPath], domainOf(from)); err != nil {
		t.Errorf("dkimpy, signed message: %v", err)
	}
	if err := dkimAllFail(dk[tPath]); err != nil {
		t.Errorf("dkimpy, one body byte changed: %v", err)
	}
	if err := dkimAllFail(dk[fromPath]); err != nil {
		t.Errorf("dkimpy, From changed: %v", err)
	}
	// Mail::DKIM, the same three.
	md, err := f.mailDKIM(signedPath, tPath, fromPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := mailDKIMResults(md[signedPath], "pass"); err != nil {
		t.Errorf("Mail::DKIM, signed message: %v", err)
	}
	if err := mailDKIMResults(md[tPath], "fail"); err != nil {
		t.Errorf("Mail::DKIM, one body byte changed: %v", err)
	}
	if err := mailDKIMResults(md[fromPath], "fail"); err != nil {
		t.Errorf("Mail::DKIM, From changed: %v", err)
	}
}

// checkSignerAddress: the certificate OpenSSL verified names the From
// address as its rfc822Name SAN (RFC 8550 3, RULES S6): local part exact,
// domain case-insensitive.
func checkSignerAddress(t *testing.T, pemPath, from string) {
	t.Helper()
	certs, err := pki.LoadCertificates(pemPath)
	if err != nil || len(certs) != 1 {
		t.Fatalf("openssl -signer output: %d certificates, %v", len(certs), err)
	}
	at := strings.LastIndexByte(from, '@')
	for _, e := range certs[0].EmailAddresses {
		if i := strings.LastIndexByte(e, '@'); i >= 0 && e[:i] == from[:at] && strings.EqualFold(e[i:], from[at:]) {
			return
		}
	}
	t.Errorf("signer certificate SANs %v do not name From %s", certs[0].EmailAddresses, from)
}

func write(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// openssl verifies signedPath with the development root alone: no default
// CA file, directory or store (OpenSSL 3.0 flags), S/MIME signing purpose.
// It returns the content openssl outputs, and leaves the signer
// certificate it verified in signedPath.signer.pem. Text mode, as in the README: with
// -binary, OpenSSL 3.0 splits a CRLF multipart/signed with LF line ends
// and keeps the CR of the closing delimiter, so it never verifies a CRLF
// message; checkSevenBit and NSS cover the exact bytes.
func (f *fixture) openssl(dir, signedPath string) ([]byte, error) {
	outPath := signedPath + ".content"
	cmd := exec.Command("openssl", "cms", "-verify", "-in", signedPath,
		"-CAfile", filepath.Join(f.pkiDir, "trust-anchors.pem"), "-no-CApath", "-no-CAstore",
		"-purpose", "smimesign", "-out", outPath, "-signer", signedPath+".signer.pem")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
	} else if !bytes.Contains(out, []byte("Verification successful")) {
		return nil, fmt.Errorf("no success message: %s", out)
	}
	return os.ReadFile(outPath)
}

// nss verifies the detached signature over the entity for e-mail signing
// (certUsageEmailSigner = 4).
func (f *fixture) nss(sigPath, entityPath string) error {
	out, err := exec.Command("cmsutil", "-D", "-i", sigPath, "-c", entityPath, "-d", f.nssDB,
		"-u", "4", "-n", "-h", "2").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
	}
	if !bytes.Contains(out, []byte("signer0.status=GoodSignature")) || bytes.Contains(out, []byte("signer1.")) {
		return fmt.Errorf("not exactly one good signer: %s", out)
	}
	return nil
}

// dkim runs dkimpy once over the named message files and returns, per
// file, the signatures' result lines ("pass a=ALG d=D s=S", "fail ...").
func (f *fixture) dkim(files ...string) (map[string][]string, error) {
	return runDKIMScript(f.python, "dkimverify.py", f.pkiDir, files)
}

// mailDKIM does the same with Perl's Mail::DKIM.
func (f *fixture) mailDKIM(files ...string) (map[string][]string, error) {
	return runDKIMScript("perl", "dkimverify.pl", f.pkiDir, files)
}

func runDKIMScript(interp, script, pkiDir string, files []string) (map[string][]string, error) {
	cmd := exec.Command(interp, append([]string{filepath.Join("..", "..", "testdata", "scripts", script),
		filepath.Join(pkiDir, "dns.zone")}, files...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
		return nil, fmt.Errorf("%s: %v: %s", script, err, stderr.Bytes())
	}
	res := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		file, result, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok || !slices.Contains(files, file) {
			return nil, fmt.Errorf("%s: unexpected line %q", script, line)
		}
		res[file] = append(res[file], result)
	}
	return res, nil
}

// mailDKIMResults checks Mail::DKIM's lines: Debian 12's Mail::DKIM knows
// rsa-sha256 only, so the rsa-sha256 signature has result want and the
// ed25519-sha256 one is "invalid (unsupported algorithm)", which such a
// receiver ignores (RFC 6376 6.1): the reason Ed25519 never signs alone
// (RULES D3).
func mailDKIMResults(lines []string, want string) error {
	var rsa, ed int
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, want+" a=rsa-sha256 "):
			rsa++
		case strings.HasPrefix(l, "invalid a=ed25519-sha256 ") && strings.Contains(l, "unsupported algorithm"),
			strings.HasPrefix(l, want+" a=ed25519-sha256 "): // a Mail::DKIM that knows ed25519
			ed++
		default:
			return fmt.Errorf("unexpected result %q (want rsa-sha256 %s)", l, want)
		}
	}
	if rsa != 1 || ed != 1 {
		return fmt.Errorf("%d rsa-sha256 and %d ed25519-sha256 results, want 1 and 1: %q", rsa, ed, lines)
	}
	return nil
}

// dkimPass checks dkimpy's lines for a signed message: exactly one passing
// rsa-sha256 and one passing ed25519-sha256 signature, d= the From domain
// or a parent.
func dkimPass(lines []string, fromDomain string) error {
	var algs []string
	for _, line := range lines {
		var alg, d, sel string
		if _, err := fmt.Sscanf(line, "pass a=%s d=%s s=%s", &alg, &d, &sel); err != nil {
			return fmt.Errorf("not a pass: %q", line)
		}
		if !govdomain.Within(fromDomain, d) {
			// RULES D6: d= is the From domain or a parent.
			return fmt.Errorf("d=%s does not align with From domain %s", d, fromDomain)
		}
		algs = append(algs, alg)
	}
	slices.Sort(algs)
	if !slices.Equal(algs, []string{"ed25519-sha256", "rsa-sha256"}) {
		// RULES D2, D3: rsa-sha256 and ed25519-sha256, nothing else.
		return fmt.Errorf("signatures %v, want one ed25519-sha256 and one rsa-sha256", algs)
	}
	return nil
}

// dkimAllFail: every signature of a tampered message fails.
func dkimAllFail(lines []string) error {
	if len(lines) != 2 {
		return fmt.Errorf("%d signatures, want 2: %q", len(lines), lines)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "fail ") {
			return fmt.Errorf("signature still verifies: %q", l)
		}
	}
	return nil
}

// signedMessage is kakuin's output taken apart.
type signedMessage struct {
	header    textproto.MIMEHeader
	entity    []byte // the first part of multipart/signed, exactly as signed
	bodyStart int    // offset of the entity in the message
	signature []byte // the DER SignedData of the second part
}

// parseSigned splits a multipart/signed message (RFC 8551 3.5.3, RFC 1847)
// by hand, so that the first part keeps its exact bytes.
func parseSigned(t *testing.T, msg []byte) signedMessage {
	t.Helper()
	hdrEnd := bytes.Index(msg, []byte("\r\n\r\n"))
	if hdrEnd < 0 {
		t.Fatal("signed message: no end of header (CRLF CRLF)")
	}
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(msg[:hdrEnd+4]))).ReadMIMEHeader()
	if err != nil {
		t.Fatalf("signed message header: %v", err)
	}
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "multipart/signed" {
		t.Fatalf("Content-Type %q: want multipart/signed (%v)", h.Get("Content-Type"), err)
	}
	// RULES S1.
	if params["protocol"] != "application/pkcs7-signature" || params["micalg"] != "sha-256" {
		t.Errorf("multipart/signed parameters %v: want protocol=application/pkcs7-signature micalg=sha-256", params)
	}
	body := msg[hdrEnd+4:]
	delim := []byte("--" + params["boundary"])
	var start int
	if bytes.HasPrefix(body, delim) {
		start = len(delim)
	} else if i := bytes.Index(body, append([]byte("\r\n"), delim...)); i >= 0 {
		start = i + 2 + len(delim)
	} else {
		t.Fatal("multipart/signed: no first delimiter")
	}
	eol := bytes.Index(body[start:], []byte("\r\n"))
	if eol < 0 || strings.TrimRight(string(body[start:start+eol]), " \t") != "" {
		t.Fatal("multipart/signed: bad first delimiter line")
	}
	start += eol + 2
	end := bytes.Index(body[start:], append([]byte("\r\n"), delim...))
	if end < 0 {
		t.Fatal("multipart/signed: no second delimiter")
	}
	s := signedMessage{header: h, entity: body[start : start+end], bodyStart: hdrEnd + 4 + start}
	rest := body[start+end+2+len(delim):]
	eol = bytes.Index(rest, []byte("\r\n"))
	if eol < 0 {
		t.Fatal("multipart/signed: no signature part")
	}
	rest = rest[eol+2:]
	closing := bytes.Index(rest, append(append([]byte("\r\n"), delim...), '-', '-'))
	if closing < 0 {
		t.Fatal("multipart/signed: no close delimiter")
	}
	sigHdr, sigBody := splitEntity(t, rest[:closing])
	if mt, _, _ := mime.ParseMediaType(sigHdr.Get("Content-Type")); mt != "application/pkcs7-signature" {
		t.Errorf("signature part Content-Type %q", sigHdr.Get("Content-Type"))
	}
	if cte := strings.ToLower(sigHdr.Get("Content-Transfer-Encoding")); cte != "base64" {
		t.Errorf("signature part Content-Transfer-Encoding %q, want base64", cte)
	}
	s.signature = decodeBody(t, "base64", sigBody)
	return s
}

// splitEntity parses a MIME entity's header and returns its body (LF or
// CRLF line ends).
func splitEntity(t *testing.T, e []byte) (textproto.MIMEHeader, []byte) {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(e))
	h, err := textproto.NewReader(r).ReadMIMEHeader()
	if err != nil && !(err == io.EOF && len(h) > 0) {
		t.Fatalf("entity header: %v", err)
	}
	body, _ := io.ReadAll(r)
	return h, body
}

func decodeBody(t *testing.T, cte string, body []byte) []byte {
	t.Helper()
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		clean := bytes.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, body)
		out, err := base64.StdEncoding.DecodeString(string(clean))
		if err != nil {
			t.Fatalf("base64 body: %v", err)
		}
		return out
	case "quoted-printable":
		out, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		if err != nil {
			t.Fatalf("quoted-printable body: %v", err)
		}
		return out
	case "", "7bit", "8bit", "binary":
		return body
	}
	t.Fatalf("unknown Content-Transfer-Encoding %q", cte)
	return nil
}

// leaf is one decoded non-multipart part.
type leaf struct {
	path, mediaType, charset string
	data                     []byte
}

// leaves decodes an entity part by part: multiparts and message/rfc822
// are walked, text is compared modulo CRLF, anything else byte for byte.
func leaves(t *testing.T, path string, h textproto.MIMEHeader, body []byte) []leaf {
	t.Helper()
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain; charset=us-ascii" // RFC 2045 5.2
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		t.Fatalf("%s: Content-Type %q: %v", path, ct, err)
	}
	cte := h.Get("Content-Transfer-Encoding")
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		var out []leaf
		mr := multipart.NewReader(bytes.NewReader(decodeBody(t, cte, body)), params["boundary"])
		for i := 0; ; i++ {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: part %d: %v", path, i, err)
			}
			b, err := io.ReadAll(p)
			if err != nil {
				t.Fatalf("%s: part %d: %v", path, i, err)
			}
			out = append(out, leaves(t, fmt.Sprintf("%s.%d", path, i), textproto.MIMEHeader(p.Header), b)...)
		}
		return out
	case mt == "message/rfc822":
		ih, ib := splitEntity(t, decodeBody(t, cte, body))
		return append([]leaf{{path: path + "/subject", mediaType: "header", data: []byte(ih.Get("Subject"))}},
			leaves(t, path+"/", ih, ib)...)
	}
	data := decodeBody(t, cte, body)
	if strings.HasPrefix(mt, "text/") {
		data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	}
	return []leaf{{path: path, mediaType: mt, charset: strings.ToLower(params["charset"]), data: data}}
}

// checkContent compares the original message's content with the signed
// entity's, part by part.
func checkContent(t *testing.T, orig, entity []byte) {
	t.Helper()
	oh, ob := splitEntity(t, orig)
	eh, eb := splitEntity(t, entity)
	want, got := leaves(t, "", oh, ob), leaves(t, "", eh, eb)
	if len(want) != len(got) {
		t.Fatalf("signed entity has %d parts, original %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.path != g.path || w.mediaType != g.mediaType || w.charset != g.charset {
			t.Errorf("part %d: %s %s charset=%q, want %s %s charset=%q", i, g.path, g.mediaType, g.charset, w.path, w.mediaType, w.charset)
		}
		if !bytes.Equal(w.data, g.data) {
			t.Errorf("part %s (%s): decoded content differs: %d bytes (sha256 %x), want %d bytes (sha256 %x)",
				w.path, w.mediaType, len(g.data), sha256.Sum256(g.data), len(w.data), sha256.Sum256(w.data))
		}
	}
}

// checkHeader: every original field except Content-*, MIME-Version and
// DKIM-Signature is still in the outer header, with the same value; the
// Content-* fields moved into the entity; old DKIM signatures are gone.
func checkHeader(t *testing.T, orig []byte, s signedMessage) {
	t.Helper()
	oh, _ := splitEntity(t, orig)
	norm := func(vs []string) []string {
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i] = strings.Join(strings.Fields(v), " ")
		}
		return out
	}
	for k, vs := range oh {
		switch {
		case strings.HasPrefix(k, "Content-"), k == "Mime-Version", k == "Dkim-Signature":
			continue
		}
		if got := norm(s.header.Values(k)); !slices.Equal(got, norm(vs)) {
			t.Errorf("header %s: %q, want %q", k, got, norm(vs))
		}
	}
	eh, _ := splitEntity(t, s.entity)
	for k := range eh {
		if !strings.HasPrefix(k, "Content-") {
			t.Errorf("signed entity has a %s field: only Content-* fields belong there", k)
		}
	}
	if n := len(s.header.Values("Dkim-Signature")); n != 2 {
		t.Errorf("%d DKIM-Signature fields, want 2 (old ones removed)", n)
	}
	for _, k := range []string{"Date", "Message-Id", "From"} {
		if n := len(s.header.Values(k)); n != 1 {
			t.Errorf("%d %s fields, want 1", n, k)
		}
	}
}

// checkSevenBit: RFC 8551 3.1.1-3.1.3, RFC 5322 2.1.1.
func checkSevenBit(t *testing.T, e []byte) {
	t.Helper()
	for i, line := range bytes.Split(e, []byte("\r\n")) {
		if len(line) > 998 {
			t.Errorf("signed entity line %d: %d octets", i+1, len(line))
		}
		if j := bytes.IndexFunc(line, func(r rune) bool { return r >= 0x80 || r == '\n' || r == '\r' || r == 0 }); j >= 0 {
			t.Errorf("signed entity line %d: octet %#x at %d is not 7-bit text", i+1, line[j], j)
			return
		}
	}
}

// flipBodyByte changes one letter in the body of the signed entity (or,
// if the body has none, in its header; an empty entity gets a body of one
// letter), keeping the MIME structure intact.
func flipBodyByte(t *testing.T, signed []byte, s signedMessage) []byte {
	t.Helper()
	isLetter := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Y' }
	from := s.bodyStart
	if i := bytes.Index(s.entity, []byte("\r\n\r\n")); i >= 0 {
		from += i + 4
	}
	end := s.bodyStart + len(s.entity)
	pos := -1
	for i := (from + end) / 2; i < end && pos < 0; i++ {
		if isLetter(signed[i]) {
			pos = i
		}
	}
	for i := end - 1; i >= s.bodyStart && pos < 0; i-- {
		if isLetter(signed[i]) && signed[i-1] != '-' {
			pos = i
		}
	}
	out := bytes.Clone(signed)
	if pos < 0 {
		// An empty entity (no Content-* field, no body): give it a body.
		return slices.Insert(out, end, 'x')
	}
	out[pos]++
	return out
}

// replaceFrom swaps the From field (with its continuation lines) for one
// with the given value.
func replaceFrom(t *testing.T, msg []byte, value string) []byte {
	t.Helper()
	lines := strings.SplitAfter(string(msg), "\r\n")
	var b strings.Builder
	inFrom, done := false, false
	for i, l := range lines {
		if !done && strings.HasPrefix(strings.ToLower(l), "from:") {
			b.WriteString("From: " + value + "\r\n")
			inFrom, done = true, true
			continue
		}
		if inFrom && (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) {
			continue
		}
		inFrom = false
		if l == "\r\n" && !done {
			t.Fatal("no From field")
		}
		if l == "\r\n" {
			b.WriteString(strings.Join(lines[i:], ""))
			return []byte(b.String())
		}
		b.WriteString(l)
	}
	t.Fatal("no end of header")
	return nil
}

func headerAddress(t *testing.T, v string) string {
	t.Helper()
	a, err := mailAddress(v)
	if err != nil {
		t.Fatalf("From %q: %v", v, err)
	}
	return a
}

func domainOf(addr string) string { return addr[strings.LastIndexByte(addr, '@')+1:] }

func TestInteropRefused(t *testing.T) {
	f := interop(t)
	dir := filepath.Join("..", "..", "testdata", "refused")
	tsv, err := os.ReadFile(filepath.Join(dir, "expected.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for line := range strings.Lines(string(tsv)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cols := strings.Split(line, "\t")
		if len(cols) < 3 {
			t.Fatalf("expected.tsv: %q", line)
		}
		name, code, words := cols[0], cols[1], cols[2:]
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			msg, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			res := f.sign(msg)
			if fmt.Sprint(res.code) != code {
				t.Errorf("exit %d, want %s (stderr %q)", res.code, code, res.stderr)
			}
			if len(res.stdout) != 0 {
				t.Errorf("%d bytes on stdout, want none", len(res.stdout))
			}
			reason := string(res.stderr)
			if strings.Count(reason, "\n") != 1 || !strings.HasSuffix(reason, "\n") {
				t.Errorf("stderr is not one line: %q", reason)
			}
			for _, w := range words {
				if !strings.Contains(strings.ToLower(reason), strings.ToLower(w)) {
					t.Errorf("reason %q lacks %q", strings.TrimSpace(reason), w)
				}
			}
		})
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	for _, p := range files {
		if !seen[filepath.Base(p)] {
			t.Errorf("%s has no line in expected.tsv", filepath.Base(p))
		}
	}
}

// mailAddress returns the addr-spec of a From value; display names in any
// charset are accepted and ignored.
func mailAddress(v string) (string, error) {
	p := mail.AddressParser{WordDecoder: &mime.WordDecoder{
		CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
	}}
	a, err := p.Parse(v)
	if err != nil {
		return "", err
	}
	return a.Address, nil
}
