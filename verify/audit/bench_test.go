package audit

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kakuin/kakuin/verify/audit/audittest"
	"github.com/kakuin/kakuin/verify/lookup"
	"github.com/kakuin/kakuin/verify/lookup/lookuptest"
)

// BenchmarkAudit audits N invented domains (full records, one shared MX
// probed once, an MTA-STS policy fetched over HTTPS per domain) against
// the in-process DNS server at the default concurrency. The servers run
// in a child process (this test binary, TestBenchServers), so that
// peak-live-MB, the largest live heap seen during the run above the live
// heap before it, is the audit's memory alone: flat in N means it does not
// grow with the number of domains.
//
// KAKUIN_BENCH_AUDIT_4000=1 adds N=4000; BENCH_NOPROBES=1 skips the SMTP
// and HTTPS probes; BENCH_CACHE sets the DNS cache size (default 4096).
func BenchmarkAudit(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("domains=%d", n), func(b *testing.B) { benchAudit(b, n) })
	}
}

var benchCache = func() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_CACHE")); err == nil {
		return n
	}
	return 4096
}()

var benchNoProbes = os.Getenv("BENCH_NOPROBES") != ""

var benchSizes = func() []int {
	if os.Getenv("KAKUIN_BENCH_AUDIT_4000") != "" {
		return []int{250, 1000, 4000}
	}
	return []int{250, 1000}
}()

// benchWorld is what the child process serves.
type benchWorld struct {
	DNS, HTTPS, SMTP string
	CA               string // PEM
}

const benchMX = "mx.hoster.example.jp"

func benchDomain(i int) string { return fmt.Sprintf("agency%d.go.jp", i) }

// TestBenchServers is the child process of BenchmarkAudit: with
// KAKUIN_BENCH_SERVERS=N it serves N domains, prints a benchWorld as one
// JSON line and serves until its stdin closes. Otherwise it is skipped.
func TestBenchServers(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("KAKUIN_BENCH_SERVERS"))
	if err != nil {
		t.Skip("the child process of BenchmarkAudit")
	}
	dns := lookuptest.New(t)
	dns.SetCounting(false)
	ca := audittest.NewCA(t)
	https := audittest.NewPolicyServer(t)
	mx := audittest.NewSMTPServer(t, audittest.SMTPConfig{Name: benchMX, Cert: ca.Leaf(t, benchMX)})
	dns.Add(benchMX + `. A 127.0.0.1`)
	key := ed25519Key()
	var zone strings.Builder
	for i := 0; i < n; i++ {
		d := benchDomain(i)
		fmt.Fprintf(&zone, `%[1]s. SOA ns1.%[1]s. hostmaster.%[1]s. 1 3600 600 86400 60
%[1]s. NS ns1.hoster.example.jp.
%[1]s. NS ns2.hoster.example.jp.
%[1]s. MX 10 %[3]s.
%[1]s. TXT "v=spf1 include:_spf.hoster.example.jp -all"
_dmarc.%[1]s. TXT "v=DMARC1; p=reject; rua=mailto:d@%[1]s"
ed._domainkey.%[1]s. TXT "v=DKIM1; k=ed25519; p=%[2]s"
_mta-sts.%[1]s. TXT "v=STSv1; id=1"
_smtp._tls.%[1]s. TXT "v=TLSRPTv1; rua=mailto:t@%[1]s"
`, d, key, benchMX)
		https.SetCertificate("mta-sts."+d, ca.Leaf(t, "mta-sts."+d))
		https.SetPolicy(d, "version: STSv1\nmode: enforce\nmx: "+benchMX+"\nmax_age: 604800\n")
	}
	dns.Add(`_spf.hoster.example.jp. TXT "v=spf1 ip4:192.0.2.0/24 -all"`)
	dns.AddZone(".", zone.String())
	w := benchWorld{DNS: dns.Addr(), HTTPS: https.Addr, SMTP: mx.Addr,
		CA: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}))}
	line, _ := json.Marshal(w)
	fmt.Fprintf(os.Stdout, "%s\n", line)
	io.Copy(io.Discard, os.Stdin)
}

func startBenchServers(b *testing.B, n int) benchWorld {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchServers$", "-test.bench=^$", "-test.count=1")
	cmd.Env = append(os.Environ(), "KAKUIN_BENCH_SERVERS="+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "{") {
				lines <- sc.Text()
				break
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	var w benchWorld
	select {
	case l := <-lines:
		if err := json.Unmarshal([]byte(l), &w); err != nil {
			b.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		b.Fatal("bench servers did not start")
	}
	return w
}

func benchAudit(b *testing.B, n int) {
	w := startBenchServers(b, n)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(w.CA))
	domains := make([]string, n)
	for i := range domains {
		domains[i] = benchDomain(i)
	}
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		c, err := lookup.New([]string{w.DNS}, lookup.Options{CacheSize: benchCache})
		if err != nil {
			b.Fatal(err)
		}
		a, err := New(Options{Resolver: c, Profile: "nisc", RootCAs: roots, MTASTSAddr: w.HTTPS,
			SMTPAddrs: map[string]string{benchMX: w.SMTP}, Selectors: []string{"ed"}, NoProbes: benchNoProbes})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		metrics.Read(live)
		base := live[0].Value.Uint64()
		var peak uint64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
			for {
				metrics.Read(s)
				peak = max(peak, s[0].Value.Uint64())
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		start := time.Now()
		pass := 0
		a.Run(context.Background(), domains, 0, func(i int, r *Report) {
			if r.Verdict == Pass {
				pass++
			} else if i == 0 {
				b.Errorf("%s: %s\n%s", r.Domain, r.Verdict, dump(r))
			}
		})
		el := time.Since(start)
		close(stop)
		wg.Wait()
		if pass != n && !benchNoProbes {
			b.Fatalf("%d of %d domains pass", pass, n)
		}
		b.ReportMetric(float64(n)/el.Seconds(), "domains/s")
		b.ReportMetric(float64(peak-min(peak, base))/(1<<20), "peak-live-MB")
	}
}
