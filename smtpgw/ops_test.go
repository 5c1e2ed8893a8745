package smtpgw

import (
	"context"
	"crypto"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kakuin/kakuin/smtpgw/relay"
	"github.com/kakuin/kakuin/smtpgw/smtptest"
)

func TestShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	idle := e.dial()
	idle.expect(250, "EHLO idle.example.go.jp")
	busy := e.dial()
	busy.expect(250, "EHLO busy.example.go.jp")
	busy.expect(250, "MAIL FROM:<taro@mhlw.go.jp>")
	busy.expect(250, "RCPT TO:<citizen@example.com>")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- e.gw.Shutdown(ctx)
	}()
	// New connections get 421 4.3.2.
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(conn)
		conn.Close()
		if strings.HasPrefix(string(b), "421 4.3.2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new connection during shutdown got %q", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The idle session was closed.
	if code, _ := idle.cmd("NOOP"); code != 0 {
		t.Fatalf("idle session still answers: %d", code)
	}
	// The transaction in flight finishes and is delivered.
	if code, text := busy.data(dotStuff(message("taro@mhlw.go.jp")) + ".\r\n"); code != 250 {
		t.Fatalf("in-flight DATA: %d %s", code, text)
	}
	// Then its connection is closed.
	if code, text := busy.cmd("MAIL FROM:<taro@mhlw.go.jp>"); code != 0 {
		t.Fatalf("MAIL after the last transaction during shutdown: %d %s", code, text)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if n := len(e.up.Messages()); n != 1 {
		t.Fatalf("upstream has %d messages", n)
	}
}

func TestShutdownDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	busy := e.dial()
	busy.expect(250, "EHLO busy.example.go.jp")
	busy.expect(250, "MAIL FROM:<taro@mhlw.go.jp>")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.gw.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown returned nil with a transaction still open")
	}
	if code, _ := busy.cmd("RCPT TO:<citizen@example.com>"); code != 0 {
		t.Fatalf("session survived the deadline: %d", code)
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.dial()
	c.expect(250, "EHLO client.example.go.jp")
	c.expect(550, "MAIL FROM:<boss@soumu.go.jp>")
	cfg := *e.gw.cfg.Load()
	pol, err := ParseClientPolicy(strings.NewReader("net:127.0.0.0/8 soumu.go.jp\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Clients = pol
	if err := e.gw.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	// The same session, next transaction: the new policy.
	if code, text := c.send("boss@soumu.go.jp", []string{"citizen@example.com"}, message("boss@soumu.go.jp")); code != 250 {
		t.Fatalf("after reload: %d %s", code, text)
	}
	c.expect(550, "MAIL FROM:<taro@mhlw.go.jp>")
	bad := cfg
	bad.Sealer = nil
	if err := e.gw.Reload(bad); err == nil {
		t.Fatal("reload without a sealer accepted")
	}
	bad = cfg
	bad.Certificate = nil
	if err := e.gw.Reload(bad); err == nil {
		t.Fatal("reload dropping the TLS certificate accepted")
	}
	c.expect(250, "MAIL FROM:<boss@soumu.go.jp>")
}

func TestMetricsAndHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.dial()
	c.expect(250, "EHLO client.example.go.jp")
	if code, text := c.send("taro@mhlw.go.jp", []string{"citizen@example.com"}, message("taro@mhlw.go.jp")); code != 250 {
		t.Fatalf("%d %s", code, text)
	}
	c.expect(550, "MAIL FROM:<x@evilgo.jp>")
	srv := httptest.NewServer(e.gw.Handler())
	t.Cleanup(srv.Close)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	_, m := get("/metrics")
	for _, want := range []string{
		"kakuin_gateway_messages_accepted_total 1",
		`kakuin_gateway_messages_rejected_total{reason="sender_suffix"} 1`,
		`kakuin_gateway_signatures_total{type="smime"} 1`,
		`kakuin_gateway_signatures_total{type="dkim"} 2`,
		`kakuin_gateway_upstream_replies_total{class="2xx"} 1`,
		"kakuin_gateway_transaction_duration_seconds_count 2",
		"kakuin_gateway_sign_wait_seconds_count 1",
		"kakuin_gateway_sign_duration_seconds_count 1",
		"kakuin_gateway_sessions 1",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Fatalf("/readyz %d %s", code, body)
	}
	// Series that have seen no event yet are there at 0, and the checks
	// of the last /readyz at 1.
	_, m = get("/metrics")
	for _, want := range []string{
		`kakuin_gateway_messages_rejected_total{reason="signer_key"} 0`,
		`kakuin_gateway_upstream_replies_total{class="5xx"} 0`,
		`kakuin_gateway_ready_check{check="upstream"} 1`,
		`kakuin_gateway_ready_check{check="keys"} 1`,
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Upstream gone: not ready (after the 5 s cache).
	e.up.Close()
	e.gw.readyMu.Lock()
	e.gw.readyAt = time.Time{}
	e.gw.readyMu.Unlock()
	if code, _ := get("/readyz"); code != 503 {
		t.Fatalf("/readyz with the upstream down: %d", code)
	}
	if _, m = get("/metrics"); !strings.Contains(m, `kakuin_gateway_ready_check{check="upstream"} 0`) {
		t.Errorf("/metrics with the upstream down lacks ready_check upstream 0")
	}
}

// TestCloseDuringData: the gateway is stopped hard while a message is on
// its way upstream: the client never gets 250 and the upstream keeps
// nothing.
func TestCloseDuringData(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.up.SetFaults(smtptest.Faults{Stall: true})
	c := e.dial()
	c.expect(250, "EHLO client.example.go.jp")
	c.expect(250, "MAIL FROM:<taro@mhlw.go.jp>")
	c.expect(250, "RCPT TO:<citizen@example.com>")
	c.expect(354, "DATA")
	if _, err := c.conn.Write([]byte(dotStuff(message("taro@mhlw.go.jp")) + ".\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the gateway is now waiting for the upstream
	start := time.Now()
	e.gw.Close()
	if code, text := c.read(); code == 250 {
		t.Fatalf("250 after a hard stop: %s", text)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if n := len(e.up.Messages()); n != 0 {
		t.Fatalf("upstream has %d messages", n)
	}
}

// TestDateSkew: a message whose Date field is more than an hour from the
// signing time is signed and relayed (mail queued during an outage comes
// late), and counted and logged, since Thunderbird marks its signature
// (RULES S8); one dated now is neither.
func TestDateSkew(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.dial()
	c.expect(250, "EHLO client.example.go.jp")
	dated := func(d time.Time) string {
		m := message("taro@mhlw.go.jp")
		return strings.Replace(m, "Date: Thu, 26 Nov 2026 10:00:00 +0900", "Date: "+d.Format(time.RFC1123Z), 1)
	}
	for _, d := range []time.Time{time.Now(), time.Now().Add(-3 * time.Hour)} {
		if code, text := c.send("taro@mhlw.go.jp", []string{"citizen@example.com"}, dated(d)); code != 250 {
			t.Fatalf("Date %v: %d %s", d, code, text)
		}
	}
	srv := httptest.NewServer(e.gw.Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(m), "kakuin_gateway_date_skew_total 1\n") {
		t.Errorf("/metrics lacks kakuin_gateway_date_skew_total 1")
	}
	var skewed []string
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(l, `"date_skew_s"`) {
			skewed = append(skewed, l)
		}
	}
	if len(skewed) != 1 || !strings.Contains(skewed[0], `"date_skew_s":1080`) {
		t.Fatalf("log lines with date_skew_s (want one, about 10800 s): %q", skewed)
	}
}

// probingSealer is a Sealer whose keys can be probed, like one with keys
// in an HSM: ProbeKeys returns err, or waits while block is open.
// TestReadyRefresh: with nothing polling /readyz (a gateway under systemd),
// the checks still run, so /metrics' ready_check gauges follow a key that
// stops signing; after Close they stop.
func TestReadyRefresh(t *testing.T) {
	t.Parallel()
	seal := &probingSealer{}
	e := newEnv(t, func(o *Options) {
		seal.Sealer = o.Config.Sealer
		o.Config.Sealer = seal
	})
	seal.probe.set(errors.New("CKR_TOKEN_NOT_PRESENT"), nil)
	e.gw.readyRefresh = 20 * time.Millisecond
	srv := httptest.NewServer(e.gw.Handler())
	t.Cleanup(srv.Close)
	metrics := func() string {
		t.Helper()
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(metrics(), `kakuin_gateway_ready_check{check="keys"} 0`) {
		if time.Now().After(deadline) {
			t.Fatalf("no ready_check keys 0 without a /readyz poll:\n%s", metrics())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(metrics(), `kakuin_gateway_ready_check{check="upstream"} 1`) {
		t.Fatal("the upstream is up, but ready_check upstream is not 1")
	}
	e.gw.Close()
	time.Sleep(50 * time.Millisecond) // a check under way ends
	calls := seal.probe.calls.Load()
	e.gw.readyMu.Lock()
	e.gw.readyAt = time.Time{} // the next check would probe again
	e.gw.readyMu.Unlock()
	time.Sleep(200 * time.Millisecond)
	if n := seal.probe.calls.Load(); n != calls {
		t.Fatalf("%d probes after Close", n-calls)
	}
}

type probingSealer struct {
	Sealer
	probe probe
}

func (s *probingSealer) ProbeKeys(ctx context.Context) error { return s.probe.run() }

// probingKey is a STARTTLS key that can be probed.
type probingKey struct {
	crypto.Signer
	probe probe
}

func (k *probingKey) ProbeKeys(ctx context.Context) error { return k.probe.run() }

type probe struct {
	mu    sync.Mutex
	err   error
	block chan struct{}
	calls atomic.Int32
}

func (p *probe) set(err error, block chan struct{}) {
	p.mu.Lock()
	p.err, p.block = err, block
	p.mu.Unlock()
}

func (p *probe) run() error {
	p.calls.Add(1)
	p.mu.Lock()
	err, block := p.err, p.block
	p.mu.Unlock()
	if block != nil {
		<-block
	}
	return err
}

// TestReadyProbesKeys: /readyz fails while a key that can be probed (a key
// in an HSM, pki.KeyProber) does not sign, the sealer's or the STARTTLS
// key; the answer is kept 5 s; a probe that does not return fails
// readiness when the check's time is up, and no second probe is started
// while it hangs.
func TestReadyProbesKeys(t *testing.T) {
	t.Parallel()
	seal, key := &probingSealer{}, &probingKey{}
	e := newEnv(t, func(o *Options) {
		seal.Sealer = o.Config.Sealer
		o.Config.Sealer = seal
		cert := *o.Config.Certificate
		key.Signer = cert.PrivateKey.(crypto.Signer)
		cert.PrivateKey = key
		o.Config.Certificate = &cert
	})
	// STARTTLS still works with the wrapped key.
	c := e.dial()
	c.expect(250, "EHLO client.example.go.jp")
	c.starttls(e.roots)
	c.expect(250, "EHLO client.example.go.jp")
	srv := httptest.NewServer(e.gw.Handler())
	t.Cleanup(srv.Close)
	readyz := func(fresh bool) (int, string) {
		t.Helper()
		if fresh {
			e.gw.readyMu.Lock()
			e.gw.readyAt = time.Time{}
			e.gw.readyMu.Unlock()
		}
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := readyz(true); code != 200 {
		t.Fatalf("/readyz %d %s", code, body)
	}
	if seal.probe.calls.Load() != 1 || key.probe.calls.Load() != 1 {
		t.Fatalf("probes: sealer %d, STARTTLS key %d, want 1 each", seal.probe.calls.Load(), key.probe.calls.Load())
	}
	// Within 5 s the answer is reused: no new probe.
	seal.probe.set(errors.New("CKR_TOKEN_NOT_PRESENT"), nil)
	if code, _ := readyz(false); code != 200 || seal.probe.calls.Load() != 1 {
		t.Fatalf("cached /readyz %d after %d probes", code, seal.probe.calls.Load())
	}
	if code, body := readyz(true); code != 503 || !strings.Contains(body, "keys:") || !strings.Contains(body, "CKR_TOKEN_NOT_PRESENT") {
		t.Fatalf("/readyz with the sealer's key gone: %d %q", code, body)
	}
	if resp, err := http.Get(srv.URL + "/metrics"); err != nil {
		t.Fatal(err)
	} else {
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(m), `kakuin_gateway_ready_check{check="keys"} 0`) {
			t.Fatal("/metrics lacks ready_check keys 0 with a key gone")
		}
	}
	seal.probe.set(nil, nil)
	key.probe.set(errors.New("CKR_DEVICE_REMOVED"), nil)
	if code, body := readyz(true); code != 503 || !strings.Contains(body, "CKR_DEVICE_REMOVED") {
		t.Fatalf("/readyz with the STARTTLS key gone: %d %q", code, body)
	}
	key.probe.set(nil, nil)
	if code, body := readyz(true); code != 200 {
		t.Fatalf("/readyz with the keys back: %d %s", code, body)
	}

	// A hung HSM: the check gives up at its deadline (10 s; 200 ms
	// here), even when the one asking gave up first.
	e.gw.readyMu.Lock()
	e.gw.readyTimeout = 200 * time.Millisecond
	e.gw.readyAt = time.Time{}
	e.gw.readyMu.Unlock()
	block := make(chan struct{})
	seal.probe.set(nil, block)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := e.gw.ready(ctx)
	if err == nil || !strings.Contains(err.Error(), "keys: key probe: context deadline exceeded") || strings.Contains(err.Error(), "upstream") {
		t.Fatalf("ready with a hung probe: %v", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 5*time.Second {
		t.Fatalf("ready with a hung probe returned after %v, want the check's 200 ms", d)
	}
	calls := seal.probe.calls.Load()
	if code, body := readyz(true); code != 503 || !strings.Contains(body, "has not returned") {
		t.Fatalf("/readyz while the probe hangs: %d %q", code, body)
	}
	if n := seal.probe.calls.Load(); n != calls {
		t.Fatalf("%d probes started while one hung", n-calls)
	}
	close(block)
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := readyz(true)
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after the HSM answered again: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A hung upstream does not use up the key probe's time: only the
	// upstream check fails, and the keys gauge stays 1.
	up := e.gw.opts.Upstream
	e.gw.opts.Upstream = hungPing{up}
	defer func() { e.gw.opts.Upstream = up }()
	code, body := readyz(true)
	if code != 503 || !strings.Contains(body, "upstream:") || strings.Contains(body, "keys:") {
		t.Fatalf("/readyz with a hung upstream: %d %q", code, body)
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`kakuin_gateway_ready_check{check="keys"} 1`, `kakuin_gateway_ready_check{check="upstream"} 0`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("/metrics with a hung upstream lacks %s", want)
		}
	}
}

// hungPing is an upstream whose Ping waits until its context ends.
type hungPing struct{ relay.Upstream }

func (hungPing) Ping(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestAlertRulesMatchMetrics: every series and label value that the
// Prometheus rules in deploy/prometheus select exists in what a fresh
// gateway exports (after one /readyz): a misspelt name or reason would
// make its alert silently never fire.
func TestAlertRulesMatchMetrics(t *testing.T) {
	t.Parallel()
	rules, err := os.ReadFile(filepath.Join("..", "deploy", "prometheus", "kakuin-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, nil)
	srv := httptest.NewServer(e.gw.Handler())
	t.Cleanup(srv.Close)
	for _, path := range []string{"/readyz", "/metrics"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		if path != "/metrics" {
			continue
		}
		exported := map[string][]string{} // name -> label sets
		for _, line := range strings.Split(string(body), "\n") {
			if line == "" || line[0] == '#' {
				continue
			}
			name, labels, _ := strings.Cut(strings.Fields(line)[0], "{")
			exported[name] = append(exported[name], labels)
		}
		selector := regexp.MustCompile(`\b((?:kakuin_gateway|process|go)_[a-z_]+)(\{[^}]*\})?`)
		matcher := regexp.MustCompile(`(\w+)(=~|=)"([^"]*)"`)
		n := 0
		for _, m := range selector.FindAllStringSubmatch(string(rules), -1) {
			name := m[1]
			if strings.HasSuffix(name, "_") {
				continue // the prefix, in a comment
			}
			n++
			sets, ok := exported[name]
			if !ok {
				t.Errorf("the rules use %s, which the gateway does not export", name)
				continue
			}
			for _, lm := range matcher.FindAllStringSubmatch(m[2], -1) {
				if lm[1] == "job" || lm[1] == "instance" {
					continue // added by the scrape
				}
				values := []string{lm[3]}
				if lm[2] == "=~" {
					values = strings.Split(lm[3], "|")
				}
				for _, v := range values {
					want := lm[1] + `="` + v + `"`
					if !slices.ContainsFunc(sets, func(s string) bool { return strings.Contains(s, want) }) {
						t.Errorf("the rules select %s{%s}, which the gateway does not export", name, want)
					}
				}
			}
		}
		if n < 10 {
			t.Fatalf("found only %d series in the rules: is the pattern still right?", n)
		}
	}
}
