package smtpgw

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/smtpgw/smtptest"
)

// BenchmarkGatewayLoad is the load test behind `make bench`: the real
// binary (bin/kakuin gateway, built by `make bench`) with the development
// PKI (RSA-2048 keys for S/MIME and DKIM, plus Ed25519 DKIM) relays to a
// loopback SMTP sink over STARTTLS, driven by concurrent SMTP sessions
// (STARTTLS, one connection per session, many pipelined messages each).
// For 4 KB and 1 MB messages with 20 and 100 sessions it prints messages
// per second, p50/p99 latency (MAIL to the final 250), the gateway
// process's peak RSS over its idle RSS, and the CPU per message of the
// gateway and of this process (load generator and sink), next to R, the
// RSA-2048 signatures per second this machine makes on all its cores the
// way the gateway makes them (through libcrypto in a cgo build, see
// pki.UseLibcrypto; the benchmark fails if the gateway signs otherwise),
// measured just before and just after each scenario. Goal: msgs/s >=
// 0.7 x R/2 (each message needs two RSA signatures).
// KAKUIN_BENCH_TLS=0 runs both legs in plaintext.
//
// The scenario sizes are fixed (not b.N): each sub-benchmark runs once.
// KAKUIN_BENCH_SCALE multiplies the message counts.
func BenchmarkGatewayLoad(b *testing.B) {
	bin, err := filepath.Abs(filepath.Join("..", "bin", "kakuin"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		b.Skipf("%s not built: run `make bench` (it builds first)", bin)
	}
	scale := 1.0
	if s := os.Getenv("KAKUIN_BENCH_SCALE"); s != "" {
		scale, _ = strconv.ParseFloat(s, 64)
	}
	dir := b.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	if out, err := exec.Command(bin, "pki", "init", "--dir", pkiDir, "--domain", "example.go.jp").CombinedOutput(); err != nil {
		b.Fatalf("pki init: %v\n%s", err, out)
	}
	// KAKUIN_BENCH_TLS=0 runs both legs in plaintext, which takes the
	// load generator's and the sink's TLS off the same cores.
	useTLS := os.Getenv("KAKUIN_BENCH_TLS") != "0"
	// The sink shares the cores with the gateway: a lean one, like
	// Postfix's smtp-sink, reading a line at a time.
	sink := smtptest.NewSink(b, useTLS)
	upCA := filepath.Join(dir, "upstream-ca.pem")
	if useTLS {
		if err := os.WriteFile(upCA, sink.RootPEM(), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	addr := freePort(b)
	cmd := exec.Command(bin, "gateway")
	cmd.Env = append(os.Environ(),
		"KAKUIN_PKI_DIR="+pkiDir,
		"KAKUIN_LISTEN="+addr,
		"KAKUIN_METRICS_LISTEN=off",
		"KAKUIN_CLIENT_NETWORKS=127.0.0.0/8",
		"KAKUIN_UPSTREAM=smtp://"+sink.Addr,
		"KAKUIN_UPSTREAM_POOL=128",
		"KAKUIN_MAX_SESSIONS=256",
		"KAKUIN_RATE_PER_MINUTE=100000000",
		"KAKUIN_MAX_MESSAGE_BYTES=8388608",
	)
	if useTLS {
		cmd.Env = append(cmd.Env, "KAKUIN_UPSTREAM_CA="+upCA)
	} else {
		cmd.Env = append(cmd.Env, "KAKUIN_UPSTREAM_PLAINTEXT=true")
	}
	var logs bytes.Buffer
	cmd.Stderr = &limitedBuffer{b: &logs, max: 1 << 20}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	})
	waitListening(b, addr, &logs)
	roots, err := pki.LoadTrustAnchors(filepath.Join(pkiDir, "trust-anchors.pem"))
	if err != nil {
		b.Fatal(err)
	}
	tlsCfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	if !useTLS {
		tlsCfg = nil
	}

	// Warm up: the first message issues the sender's certificate.
	if _, err := load(addr, tlsCfg, 1, 1, 4<<10); err != nil {
		b.Fatalf("warm-up: %v\n%s", err, logs.String())
	}
	// R is measured again around each scenario: on a shared machine it
	// moves with the neighbours' load, and the scenario is judged against
	// the mean of the R just before and just after it.
	rBefore := rsaPerSecond(b, 2*time.Second)
	// R must be made the way the gateway signs: its listening line says
	// how ("rsa"), and this binary must do the same.
	engine := "crypto/rsa"
	if pki.UseLibcrypto(true) {
		engine = "libcrypto"
	}
	if want := `"rsa":"` + engine + `"`; !strings.Contains(logs.String(), want) {
		b.Fatalf("the gateway does not sign as R is measured here (%s):\n%s", want, logs.String())
	}
	fmt.Printf("R is measured with %s, as the gateway signs; Go's crypto/rsa makes %.0f signatures/s here\n",
		engine, goRSAPerSecond(b, 2*time.Second))

	for _, sc := range []struct {
		name     string
		size     int
		sessions int
		perSess  int
	}{
		{"4KB-20sessions", 4 << 10, 20, 60},
		{"4KB-100sessions", 4 << 10, 100, 12},
		{"1MB-20sessions", 1 << 20, 20, 4},
		{"1MB-100sessions", 1 << 20, 100, 1},
	} {
		b.Run(sc.name, func(b *testing.B) {
			per := max(1, int(float64(sc.perSess)*scale))
			idle := rss(cmd.Process.Pid)
			var peak atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				t := time.NewTicker(10 * time.Millisecond)
				defer t.Stop()
				for {
					if v := rss(cmd.Process.Pid); v > peak.Load() {
						peak.Store(v)
					}
					select {
					case <-stop:
						return
					case <-t.C:
					}
				}
			}()
			before := sink.Count()
			gwCPU0, selfCPU0 := procCPU(cmd.Process.Pid), selfCPU()
			start := time.Now()
			// The load generator and the sink wait on the network: one P
			// serves them, and spares the gateway the Go scheduler's
			// spinning on a second one.
			procs := runtime.GOMAXPROCS(1)
			lat, err := load(addr, tlsCfg, sc.sessions, per, sc.size)
			runtime.GOMAXPROCS(procs)
			elapsed := time.Since(start)
			gwCPU, selfCPUd := procCPU(cmd.Process.Pid)-gwCPU0, selfCPU()-selfCPU0
			close(stop)
			wg.Wait()
			rAfter := rsaPerSecond(b, 2*time.Second)
			r := (rBefore + rAfter) / 2
			goal := 0.7 * r / 2
			fmt.Printf("%-16s R (RSA-2048 signatures/s, %d cores) = %.0f before, %.0f after: goal 0.7 x R/2 = %.0f msgs/s\n",
				sc.name, runtime.NumCPU(), rBefore, rAfter, goal)
			rBefore = rAfter
			if err != nil {
				b.Fatalf("%v\n%s", err, logs.String())
			}
			if got := sink.Count() - before; got != len(lat) {
				b.Fatalf("%d messages accepted but the sink has %d", len(lat), got)
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			rate := float64(len(lat)) / elapsed.Seconds()
			p50, p99 := lat[len(lat)*50/100], lat[min(len(lat)-1, len(lat)*99/100)]
			over := float64(peak.Load()-idle) / (1 << 20)
			b.ReportMetric(rate, "msgs/s")
			b.ReportMetric(rate/(r/2), "x-R/2")
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(over, "peakMB-over-idle")
			gwMs := float64(gwCPU.Microseconds()) / 1000 / float64(len(lat))
			selfMs := float64(selfCPUd.Microseconds()) / 1000 / float64(len(lat))
			b.ReportMetric(gwMs, "gateway-cpu-ms/msg")
			b.ReportMetric(selfMs, "loadgen+sink-cpu-ms/msg")
			verdict := "below goal"
			if rate >= goal {
				verdict = "meets goal"
			}
			fmt.Printf("%-16s %5d msgs in %6.2fs: %7.1f msgs/s (%s %.0f), p50 %7.1f ms, p99 %7.1f ms, gateway RSS idle %.0f MB, peak +%.0f MB\n",
				sc.name, len(lat), elapsed.Seconds(), rate, verdict, goal,
				float64(p50.Microseconds())/1000, float64(p99.Microseconds())/1000, float64(idle)/(1<<20), over)
			// The load generator and the sink share the cores: what the
			// gateway alone could do is its CPU per message over the cores.
			capacity := float64(runtime.NumCPU()) * 1000 / gwMs
			b.ReportMetric(capacity/(r/2), "gateway-capacity-x-R/2")
			fmt.Printf("%-16s CPU per message: gateway %.2f ms (two RSA signatures = %.2f ms), load generator + sink %.2f ms; the gateway alone on %d cores: %.0f msgs/s = %.2f x R/2\n",
				sc.name, gwMs, 2*float64(runtime.NumCPU())*1000/r, selfMs, runtime.NumCPU(), capacity, capacity/(r/2))
		})
	}
}

// load runs sessions concurrent SMTP sessions of perSession messages of
// size bytes each and returns every message's latency (MAIL to the final
// 250). Each session is a lean client (pipeClient) so that the load
// generator, which shares the cores with the gateway, costs little.
func load(addr string, tlsCfg *tls.Config, sessions, perSession, size int) ([]time.Duration, error) {
	body := stuffed(benchMessage(size))
	var mu sync.Mutex
	var lat []time.Duration
	errs := make(chan error, sessions)
	var wg sync.WaitGroup
	for s := 0; s < sessions; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialPipe(addr, tlsCfg)
			if err != nil {
				errs <- err
				return
			}
			defer c.close()
			for i := 0; i < perSession; i++ {
				t0 := time.Now()
				if err := c.send("bench@example.go.jp", "sink@example.com", body); err != nil {
					errs <- err
					return
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return lat, err
	}
	return lat, nil
}

// pipeClient is a minimal SMTP client for the load test: EHLO and
// STARTTLS once, then per message MAIL, RCPT and DATA in one write (RFC
// 2920 PIPELINING, which the gateway offers), the already dot-stuffed
// message and its end in another. Postfix's smtp client sends the same
// way.
type pipeClient struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialPipe(addr string, tlsCfg *tls.Config) (*pipeClient, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c := &pipeClient{conn: conn, r: bufio.NewReader(conn)}
	ehlo := func() error {
		if _, err := io.WriteString(c.conn, "EHLO loadgen.example.go.jp\r\n"); err != nil {
			return err
		}
		return c.expect(250)
	}
	if err := c.expect(220); err != nil {
		conn.Close()
		return nil, err
	}
	if err := ehlo(); err != nil {
		conn.Close()
		return nil, err
	}
	if tlsCfg != nil {
		if _, err := io.WriteString(conn, "STARTTLS\r\n"); err != nil {
			conn.Close()
			return nil, err
		}
		if err := c.expect(220); err != nil {
			conn.Close()
			return nil, err
		}
		tc := tls.Client(conn, tlsCfg)
		c.conn, c.r = tc, bufio.NewReader(tc)
		if err := ehlo(); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return c, nil
}

// expect reads one reply, all its lines, and checks its code.
func (c *pipeClient) expect(code int) error {
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return err
		}
		if len(line) < 4 {
			return fmt.Errorf("short reply %q", line)
		}
		if got, _ := strconv.Atoi(line[:3]); got != code {
			return fmt.Errorf("reply %q, want %d", strings.TrimSpace(line), code)
		}
		if line[3] == ' ' {
			return nil
		}
	}
}

func (c *pipeClient) send(from, to string, stuffedBody []byte) error {
	c.conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := fmt.Fprintf(c.conn, "MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n", from, to); err != nil {
		return err
	}
	for _, code := range []int{250, 250, 354} {
		if err := c.expect(code); err != nil {
			return err
		}
	}
	if _, err := c.conn.Write(stuffedBody); err != nil {
		return err
	}
	return c.expect(250)
}

func (c *pipeClient) close() {
	io.WriteString(c.conn, "QUIT\r\n")
	c.conn.Close()
}

// stuffed is msg (CRLF lines) as the content of DATA with its end: a
// leading '.' doubled on each line, then ".\r\n" (RFC 5321 4.5.2).
func stuffed(msg []byte) []byte {
	out := make([]byte, 0, len(msg)+16)
	for _, line := range bytes.SplitAfter(msg, []byte("\r\n")) {
		if len(line) > 0 && line[0] == '.' {
			out = append(out, '.')
		}
		out = append(out, line...)
	}
	if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, "\r\n"...)
	}
	return append(out, ".\r\n"...)
}

func benchMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: Bench <bench@example.go.jp>\r\nTo: sink@example.com\r\nSubject: load test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	line := strings.Repeat("The quick brown fox jumps over the lazy dog 0123456789. ", 2)[:76] + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.Bytes()
}

// rsaPerSecond is R: the RSA-2048 PKCS#1 v1.5 signatures per second this
// machine makes on all its cores, made the way the gateway makes them: a
// key read by pki, which signs through libcrypto when the binary has cgo
// (as bin/kakuin and this test binary have) and with crypto/rsa without.
func rsaPerSecond(b *testing.B, d time.Duration) float64 {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	pemKey, err := pki.MarshalKeyPEM(key)
	if err != nil {
		b.Fatal(err)
	}
	s, err := pki.ParseSigner(pemKey)
	if err != nil {
		b.Fatal(err)
	}
	return signaturesPerSecond(s, d)
}

// goRSAPerSecond is what Go's crypto/rsa makes, for comparison with
// earlier runs (before libcrypto signed).
func goRSAPerSecond(b *testing.B, d time.Duration) float64 {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	return signaturesPerSecond(key, d)
}

func signaturesPerSecond(key crypto.Signer, d time.Duration) float64 {
	digest := sha256.Sum256([]byte("kakuin"))
	var n atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := key.Sign(rand.Reader, digest[:], crypto.SHA256); err == nil {
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}

// procCPU is the user+system CPU time a process has used, from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s on Linux).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count from the ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rss is the resident set size of a process, from /proc.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func freePort(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitListening(b *testing.B, addr string, logs *bytes.Buffer) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("gateway not listening on %s:\n%s", addr, logs.String())
}

// limitedBuffer keeps the first max bytes written (the gateway's logs,
// for error reports) and drops the rest.
type limitedBuffer struct {
	mu  sync.Mutex
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// BenchmarkRSA2048 measures R alone, as BenchmarkGatewayLoad does around
// each scenario: deploy/bench/bench.sh runs it around each kakuin run, to
// judge the gateway under smtp-source's load against the same goal.
func BenchmarkRSA2048(b *testing.B) {
	b.ReportMetric(rsaPerSecond(b, 2*time.Second), "sigs/s")
}
