// Package e2e holds kakuin's end-to-end tests with real software on both
// sides of the gateway: an agency Postfix relays through `kakuin gateway`
// (SASL over verified STARTTLS, configured from deploy/postfix/) to an
// outbound Postfix and a capturing sink; what arrives is verified with
// OpenSSL, dkimpy and `kakuin verify`. fault_test.go injects failures.
//
// They need root, Debian's postfix, openssl and python3-dkim (make deps);
// the kakuin binary is built once per run into a temporary directory.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kakuin/kakuin/deploy/postfixtest"
)

var (
	binDir   string
	kakuin   string // the built binary
	buildErr error
)

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "kakuin-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binDir = dir
		return m.Run()
	}()
	os.Exit(code)
}

var buildOnce sync.Once

// kakuinBin builds ./cmd/kakuin once per test binary.
func kakuinBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := repoRoot()
		if err != nil {
			buildErr = err
			return
		}
		out := filepath.Join(binDir, "kakuin")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/kakuin")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/kakuin: %w\n%s", err, b)
			return
		}
		kakuin = out
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return kakuin
}

// repoRoot is the module root (where go.mod is), found from this package.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
	}
}

// python is Debian's python3, which has python3-dkim.
func python() string {
	if p := os.Getenv("KAKUIN_TEST_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

// requireTools fails (not skips) when a verifier is missing: a skipped
// verification must never look like a passing one. Only the absence of
// Postfix or root skips, through postfixtest.Require.
func requireTools(t *testing.T) {
	t.Helper()
	postfixtest.Require(t)
	for _, tool := range []string{"openssl", "sendmail", "postfix"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (make deps): %v", tool, err)
		}
	}
	if out, err := exec.Command(python(), "-c", "import dkim, dns.resolver, nacl").CombinedOutput(); err != nil {
		t.Fatalf("%s lacks dkim, dnspython or nacl (make deps): %v\n%s", python(), err, out)
	}
}

// pkiInit runs `kakuin pki init` for the corpus domains into a fresh
// directory.
func pkiInit(t *testing.T, bin string, domains ...string) string {
	t.Helper()
	dir := filepath.Join(tempDir(t), "pki")
	args := []string{"pki", "init", "--dir", dir}
	for _, d := range domains {
		args = append(args, "--domain", d)
	}
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("kakuin %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return dir
}

// tempDir is t.TempDir that Postfix's and the sink's users can enter.
func tempDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// credentials writes a kakuin credentials file (NAME:BCRYPT-HASH, mode
// 0600) with one account.
func credentials(t *testing.T, dir, name, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "credentials")
	if err := os.WriteFile(p, []byte(name+":"+string(h)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// recipe reads one of the Postfix recipes in deploy/postfix (main.cf
// syntax: name = value, continuation lines start with white space), so
// that the tests run what the documentation tells agencies to paste.
func recipe(t *testing.T, name string) map[string]string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(root, "deploy", "postfix", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	params := map[string]string{}
	last := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "" || strings.HasPrefix(trimmed, "#"):
			continue
		case line[0] == ' ' || line[0] == '\t':
			if last == "" {
				t.Fatalf("%s: continuation line without a parameter: %q", name, line)
			}
			params[last] += " " + trimmed
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not name = value: %q", name, line)
			}
			last = strings.TrimSpace(k)
			params[last] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return params
}

// merge returns base with over applied on top.
func merge(base, over map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range base {
		m[k] = v
	}
	for k, v := range over {
		m[k] = v
	}
	return m
}

// gateway is a `kakuin gateway` process that the test can kill and start
// again on the same ports.
type gateway struct {
	t       *testing.T
	bin     string
	env     []string
	addr    string // SMTP
	metrics string // /healthz, /readyz, /metrics
	logPath string

	mu  sync.Mutex
	cmd *exec.Cmd
	log *os.File
}

// startGateway starts `kakuin gateway` with env (KAKUIN_* assignments) on
// free loopback ports and waits until /readyz answers 200.
func startGateway(t *testing.T, bin, dir string, env ...string) *gateway {
	t.Helper()
	sp, err := postfixtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	mp, err := postfixtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{
		t: t, bin: bin,
		addr:    fmt.Sprintf("127.0.0.1:%d", sp),
		metrics: fmt.Sprintf("127.0.0.1:%d", mp),
		logPath: filepath.Join(dir, "gateway.log"),
	}
	g.env = append([]string{"KAKUIN_LISTEN=" + g.addr, "KAKUIN_METRICS_LISTEN=" + g.metrics}, env...)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(g.logPath)
			t.Logf("kakuin gateway log (last lines):\n%s", lastLines(string(b), 60))
		}
		g.stop(syscall.SIGTERM)
	})
	if err := g.start(); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *gateway) port() int {
	_, p, _ := net.SplitHostPort(g.addr)
	var n int
	fmt.Sscan(p, &n)
	return n
}

func (g *gateway) start() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	lf, err := os.OpenFile(g.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(g.bin, "gateway")
	cmd.Env = append(os.Environ(), g.env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("kakuin gateway: %w", err)
	}
	g.cmd, g.log = cmd, lf
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(g.logPath)
			g.cmd = nil
			return fmt.Errorf("kakuin gateway exited at start: %v\n%s", err, lastLines(string(b), 40))
		default:
		}
		resp, err := http.Get("http://" + g.metrics + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				// Keep reaping the process in the background.
				go func() { <-exited }()
				return nil
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			b, _ := os.ReadFile(g.logPath)
			return fmt.Errorf("kakuin gateway not ready after 60s (last: %v)\n%s", err, lastLines(string(b), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends sig to the gateway (by its pid) and waits for it to exit.
func (g *gateway) stop(sig syscall.Signal) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd == nil {
		return
	}
	_ = g.cmd.Process.Signal(sig)
	deadline := time.Now().Add(30 * time.Second)
	for g.cmd.Process.Signal(syscall.Signal(0)) == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if g.cmd.Process.Signal(syscall.Signal(0)) == nil {
		_ = g.cmd.Process.Kill()
	}
	g.log.Close()
	g.cmd = nil
}

func (g *gateway) metricsText() string {
	resp, err := http.Get("http://" + g.metrics + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return b.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// serverTLS is a server configuration with the development PKI's TLS
// certificate (localhost, 127.0.0.1), for a sink that offers STARTTLS.
func serverTLS(t *testing.T, pki string) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(pki, "tls", "cert.pem"), filepath.Join(pki, "tls", "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// opensslVerify checks the S/MIME signature of the message in path with
// `openssl cms -verify`, trusting only the given anchors (no system
// store). It returns OpenSSL's output on failure.
func opensslVerify(path, anchors string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "openssl", "cms", "-verify", "-in", path, "-inform", "SMIME",
		"-CAfile", anchors, "-no-CApath", "-no-CAstore", "-purpose", "smimesign", "-out", os.DevNull).CombinedOutput()
	if err != nil {
		return fmt.Errorf("openssl cms -verify %s: %w\n%s", filepath.Base(path), err, out)
	}
	if !bytes.Contains(out, []byte("Verification successful")) {
		return fmt.Errorf("openssl cms -verify %s: %s", filepath.Base(path), out)
	}
	return nil
}

// dkimpyScript verifies every DKIM-Signature of every file named on the
// command line with dkimpy, keys looked up over DNS at the server given
// first (the loopback server that serves the PKI's dns.zone). It prints
// one line per file: "ok N-signatures a=..." or "FAIL reason".
const dkimpyScript = `
import sys, dkim, dns.resolver
host, port = sys.argv[1].rsplit(":", 1)
res = dns.resolver.Resolver(configure=False)
res.nameservers = [host]
res.port = int(port)
def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    try:
        ans = res.resolve(name, "TXT", lifetime=timeout)
    except Exception:
        return None
    return b"".join(b"".join(r.strings) for r in ans)
for path in sys.argv[2:]:
    msg = open(path, "rb").read()
    d = dkim.DKIM(msg)
    sigs = [v for (k, v) in dkim.rfc822_parse(msg)[0] if k.lower() == b"dkim-signature"]
    if not sigs:
        print(path, "FAIL no DKIM-Signature")
        continue
    algs, bad = [], []
    for i in range(len(sigs)):
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc)
        except Exception as e:
            ok = False
        alg = dict(x.strip().split("=", 1) for x in sigs[i].decode().replace("\r\n", "").split(";") if "=" in x).get("a", "?").strip()
        (algs if ok else bad).append(alg)
    if bad:
        print(path, "FAIL", "failed:", ",".join(bad), "passed:", ",".join(algs))
    else:
        print(path, "ok", len(algs), ",".join(sorted(algs)))
`

// dkimpyVerify runs dkimpyScript over files and returns, per file, the
// verdict line ("ok 2 ed25519-sha256,rsa-sha256" or "FAIL ...").
func dkimpyVerify(t *testing.T, dnsAddr string, files []string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, python(), append([]string{"-c", dkimpyScript, dnsAddr}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, out)
	}
	res := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, verdict, _ := strings.Cut(line, " ")
		res[path] = verdict
	}
	return res
}

// writeMessages stores the sink's messages as files for the verifiers.
func writeMessages(t *testing.T, dir string, msgs []postfixtest.Received) []string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var files []string
	for i, m := range msgs {
		p := filepath.Join(dir, fmt.Sprintf("%04d.eml", i))
		if err := os.WriteFile(p, m.Data, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	return files
}

// kakuinVerify runs `kakuin verify` on path with the given trust anchors
// and DNS server; it returns the exit status and the output. A missing
// verify command is reported as errNoVerify.
func kakuinVerify(bin, path, anchors, dnsAddr string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "verify", "--trust-anchors", anchors, "--resolver", dnsAddr, "--offline", path)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if strings.Contains(string(out), "unknown command") {
			return 0, string(out), errNoVerify
		}
		return ee.ExitCode(), string(out), nil
	}
	return 0, string(out), err
}

var errNoVerify = errors.New("kakuin verify is not available in this build")

// hasCommand reports whether the kakuin binary has the subcommand.
func hasCommand(bin, name string) bool {
	out, _ := exec.Command(bin, "--help").CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}
