package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/smtpgw"
	"github.com/kakuin/kakuin/smtpgw/relay"
	"github.com/kakuin/kakuin/smtpgw/smtptest"
)

// TestGatewayCommand runs `kakuin gateway` as configured from the
// environment, on the development PKI laid out by `kakuin pki init`:
// a message sent over STARTTLS lands in the Maildir signed (S/MIME checked
// by openssl against the dev root), a SIGHUP reloads the sender policy,
// and cancelling stops it cleanly.
func TestGatewayCommand(t *testing.T) {
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	var out, errb bytes.Buffer
	if code := run([]string{"pki", "init", "--dir", pkiDir, "--domain", "example.go.jp"}, nil, &out, &errb); code != exitOK {
		t.Fatalf("pki init: %d %s", code, errb.String())
	}
	outbox := filepath.Join(dir, "outbox")
	policy := filepath.Join(dir, "policy")
	if err := os.WriteFile(policy, []byte("net:127.0.0.0/8 example.go.jp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gw := startGateway(t, map[string]string{
		"KAKUIN_PKI_DIR":         pkiDir,
		"KAKUIN_LISTEN":          "127.0.0.1:0",
		"KAKUIN_METRICS_LISTEN":  "127.0.0.1:0",
		"KAKUIN_CLIENT_NETWORKS": "127.0.0.0/8",
		"KAKUIN_UPSTREAM":        "maildir:" + outbox,
		"KAKUIN_SENDER_POLICY":   policy,
		"KAKUIN_HOSTNAME":        "gw.example.go.jp",
		// crypto/rsa here, so that it stays tested end to end: the other
		// gateway tests sign through libcrypto, the default.
		"KAKUIN_RSA_LIBCRYPTO": "false",
	})
	addr, hup, logs := gw.addr, gw.hup, gw.logs
	if want := fmt.Sprintf(`"rsa":"crypto/rsa","sign_turns":%d`, runtime.GOMAXPROCS(0)); !strings.Contains(logs.String(), want) {
		t.Fatalf("KAKUIN_RSA_LIBCRYPTO=false: want %s (one turn per core), the gateway says:\n%s", want, logs.String())
	}
	roots, err := pki.LoadTrustAnchors(filepath.Join(pkiDir, "trust-anchors.pem"))
	if err != nil {
		t.Fatal(err)
	}
	send := func(from string) error {
		c, err := smtp.DialStartTLS(addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
		if err != nil {
			return err
		}
		defer c.Close()
		// KAKUIN_SMTPUTF8 is auto by default, and a Maildir takes it.
		if ok, _ := c.Extension("SMTPUTF8"); !ok {
			t.Error("SMTPUTF8 not advertised in front of a Maildir")
		}
		msg := "From: " + from + "\r\nTo: citizen@example.com\r\nSubject: gateway command test\r\n\r\nHello.\r\n"
		return c.SendMail(from, []string{"citizen@example.com"}, strings.NewReader(msg))
	}
	if err := send("taro@example.go.jp"); err != nil {
		t.Fatalf("send: %v\n%s", err, logs.String())
	}
	files, _ := filepath.Glob(filepath.Join(outbox, "new", "*"))
	if len(files) != 1 {
		t.Fatalf("outbox has %d messages", len(files))
	}
	stored, _ := os.ReadFile(files[0])
	if !bytes.Contains(stored, []byte("DKIM-Signature:")) || !bytes.Contains(stored, []byte("multipart/signed")) {
		t.Fatalf("stored message is not signed:\n%.600s", stored)
	}
	cmd := exec.Command("openssl", "cms", "-verify", "-CAfile", filepath.Join(pkiDir, "trust-anchors.pem"), "-purpose", "smimesign")
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stored), io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("openssl cms -verify: %v %s", err, stderr.String())
	}

	// SIGHUP: the new policy no longer allows example.go.jp.
	if err := os.WriteFile(policy, []byte("net:127.0.0.0/8 other.go.jp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gw.reload(t)
	err = send("taro@example.go.jp")
	if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 550 {
		t.Fatalf("after reload: %v", err)
	}
	// A broken policy file: the reload fails and the running one stays.
	os.WriteFile(policy, []byte("bogus line\n"), 0o644)
	hup <- os.Interrupt
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "reload failed") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "reload failed") {
		t.Fatalf("no reload failure logged:\n%s", logs.String())
	}
	if code := gw.stop(); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if strings.Contains(logs.String(), "Hello.") {
		t.Fatal("message content in the log")
	}
}

func TestGatewayConfigErrors(t *testing.T) {
	t.Setenv("KAKUIN_CLIENT_NETWORKS", "not-a-cidr")
	t.Setenv("KAKUIN_PKI_DIR", filepath.Join(t.TempDir(), "missing"))
	var out, errb bytes.Buffer
	if code := run([]string{"gateway"}, nil, &out, &errb); code != exitUsage {
		t.Fatalf("exit %d, stderr %s", code, errb.String())
	}
	if code := run([]string{"gateway", "extra"}, nil, &out, &errb); code != exitUsage {
		t.Fatalf("extra argument: exit %d", code)
	}
	// A negative limit is refused, naming the variable.
	t.Setenv("KAKUIN_CLIENT_NETWORKS", "127.0.0.0/8")
	t.Setenv("KAKUIN_SIGN_TIMEOUT", "-1s")
	errb.Reset()
	if code := run([]string{"gateway"}, nil, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "KAKUIN_SIGN_TIMEOUT must not be negative") {
		t.Fatalf("negative sign timeout: exit %d, stderr %s", code, errb.String())
	}
	out.Reset()
	if code := run([]string{"gateway", "--help"}, nil, &out, &errb); code != exitOK || !strings.Contains(out.String(), "KAKUIN_UPSTREAM") {
		t.Fatalf("--help: %d %s", code, out.String())
	}
}

// testGateway is `kakuin gateway` run in-process by startGateway.
type testGateway struct {
	addr    string
	metrics string // /metrics, /healthz, /readyz; empty when off
	hup     chan os.Signal
	logs    *syncWriter
	stop    func() int // cancels it and returns its exit status
}

// startGateway sets env (t.Setenv: the test may not be parallel), starts
// serveGateway as `kakuin gateway` would and waits until it listens.
func startGateway(t *testing.T, env map[string]string) *testGateway {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var cfg gatewayConfig
	if err := parseEnv(&cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Sign.validate(); err != nil {
		t.Fatal(err)
	}
	cfg.Sign.useRSAEngine()
	t.Cleanup(func() { pki.UseLibcrypto(true) }) // the default, for the tests after this one
	ctx, cancel := context.WithCancel(context.Background())
	gw := &testGateway{hup: make(chan os.Signal, 1), logs: &syncWriter{}}
	addrs := make(chan [2]string, 1)
	done := make(chan int, 1)
	go func() {
		done <- serveGateway(ctx, &cfg, slog.New(slog.NewJSONHandler(gw.logs, nil)), gw.hup, func(smtpAddr, metricsAddr string) { addrs <- [2]string{smtpAddr, metricsAddr} })
	}()
	var once sync.Once
	code := -1
	gw.stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Error("gateway did not stop")
			}
		})
		return code
	}
	t.Cleanup(func() { gw.stop() })
	select {
	case a := <-addrs:
		gw.addr, gw.metrics = a[0], a[1]
	case code := <-done:
		t.Fatalf("gateway exited %d: %s", code, gw.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not start")
	}
	return gw
}

// reload sends SIGHUP and waits until the gateway logs that it reloaded;
// a failed reload fails the test.
func (gw *testGateway) reload(t *testing.T) {
	t.Helper()
	before := strings.Count(gw.logs.String(), "kakuin gateway: reloaded")
	gw.hup <- os.Interrupt
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(gw.logs.String(), "kakuin gateway: reloaded") == before {
		if strings.Contains(gw.logs.String(), "reload failed") || time.Now().After(deadline) {
			t.Fatalf("reload:\n%s", gw.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncWriter is a bytes.Buffer safe for the gateway's goroutines.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func TestGatewayHashPassword(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	if code := run([]string{"gateway", "hash-password", "mhlw-relay"}, strings.NewReader("a long test passphrase\n"), &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	creds, err := smtpgw.ParseCredentials(&out)
	if err != nil {
		t.Fatal(err)
	}
	if !creds.Verify("mhlw-relay", "a long test passphrase") || creds.Verify("mhlw-relay", "a long test passphras") {
		t.Fatal("hash does not verify")
	}
	if code := run([]string{"gateway", "hash-password", "x"}, strings.NewReader("short\n"), &out, &errb); code != exitUsage {
		t.Fatalf("short password: exit %d", code)
	}
}

// TestSMTPUTF8Setting: KAKUIN_SMTPUTF8=auto advertises SMTPUTF8 exactly
// when the upstream offers it at start (an upstream that cannot be asked
// does not, with a warning); true and false are taken as said; anything
// else is a configuration error.
func TestSMTPUTF8Setting(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	opts := relay.Options{Hostname: "gw.example.go.jp", DialTimeout: 2 * time.Second}
	newUp := func(url string, o relay.Options) relay.Upstream {
		up, err := relay.New(url, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { up.Close() })
		return up
	}
	with := smtptest.New(t, smtptest.Options{SMTPUTF8: true})
	without := smtptest.New(t, smtptest.Options{})
	plain := opts
	plain.InsecurePlaintext = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		setting string
		up      relay.Upstream
		want    bool
		warn    bool
	}{
		{"auto", newUp("maildir:"+t.TempDir(), opts), true, false},
		{"auto", newUp("smtp://"+with.Addr, plain), true, false},
		{"auto", newUp("smtp://"+without.Addr, plain), false, false},
		{"AUTO", newUp("smtp://"+dead, plain), false, true},
		{"true", newUp("smtp://"+without.Addr, plain), true, false},
		{"false", newUp("maildir:"+t.TempDir(), opts), false, false},
	} {
		var logs syncWriter
		cfg := gatewayConfig{SMTPUTF8: tc.setting}
		got, err := cfg.smtputf8(ctx, tc.up, slog.New(slog.NewJSONHandler(&logs, nil)))
		if err != nil || got != tc.want {
			t.Errorf("%s: got %v, %v; want %v", tc.setting, got, err, tc.want)
		}
		if warned := strings.Contains(logs.String(), `"level":"WARN"`); warned != tc.warn {
			t.Errorf("%s: warning logged %v, want %v:\n%s", tc.setting, warned, tc.warn, logs.String())
		}
	}
	cfg := gatewayConfig{SMTPUTF8: "sometimes"}
	if _, err := cfg.smtputf8(ctx, newUp("maildir:"+t.TempDir(), opts), slog.Default()); err == nil || !strings.Contains(err.Error(), "KAKUIN_SMTPUTF8") {
		t.Fatalf("bad setting: %v", err)
	}
}

// TestGCDefault: the gateway collects at GOGC=400 unless GOGC is set in
// its environment, which is then left to the runtime.
func TestGCDefault(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	if _, set := gcDefault(func(string) (string, bool) { return "50", true }); set {
		t.Fatal("GOGC in the environment overridden")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC in the environment: GC percent changed to %d", got)
	}
	if p, set := gcDefault(func(string) (string, bool) { return "", false }); !set || p != gatewayGOGC {
		t.Fatalf("no GOGC: %d, %v", p, set)
	}
	if got := debug.SetGCPercent(100); got != gatewayGOGC {
		t.Fatalf("no GOGC: GC percent %d, want %d", got, gatewayGOGC)
	}
}
