package audit

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
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
// the in-process DNS server at the default concurrency. peak-live-MB is
// the largest live heap (as of each GC) seen during the run above the
// live heap before it (the test servers' zones, certificates and
// policies): flat in N means the audit's memory does not grow with the
// number of domains.
func BenchmarkAudit(b *testing.B) {
	for _, n := range []int{250, 1000} {
		b.Run(fmt.Sprintf("domains=%d", n), func(b *testing.B) { benchAudit(b, n) })
	}
}

var benchNoProbes = os.Getenv("BENCH_NOPROBES") != ""

func benchAudit(b *testing.B, n int) {
	dns := lookuptest.New(b)
	ca := audittest.NewCA(b)
	https := audittest.NewPolicyServer(b)
	mx := audittest.NewSMTPServer(b, audittest.SMTPConfig{Name: "mx.hoster.example.jp", Cert: ca.Leaf(b, "mx.hoster.example.jp")})
	dns.Add(`mx.hoster.example.jp. A 127.0.0.1`)
	key := ed25519Key()
	domains := make([]string, n)
	var zone strings.Builder
	for i := range domains {
		d := fmt.Sprintf("agency%d.go.jp", i)
		domains[i] = d
		fmt.Fprintf(&zone, `%[1]s. SOA ns1.%[1]s. hostmaster.%[1]s. 1 3600 600 86400 60
%[1]s. NS ns1.hoster.example.jp.
%[1]s. NS ns2.hoster.example.jp.
%[1]s. MX 10 mx.hoster.example.jp.
%[1]s. TXT "v=spf1 include:_spf.hoster.example.jp -all"
_dmarc.%[1]s. TXT "v=DMARC1; p=reject; rua=mailto:d@%[1]s"
ed._domainkey.%[1]s. TXT "v=DKIM1; k=ed25519; p=%[2]s"
_mta-sts.%[1]s. TXT "v=STSv1; id=1"
_smtp._tls.%[1]s. TXT "v=TLSRPTv1; rua=mailto:t@%[1]s"
`, d, key)
		https.SetCertificate("mta-sts."+d, ca.Leaf(b, "mta-sts."+d))
		https.SetPolicy(d, "version: STSv1\nmode: enforce\nmx: mx.hoster.example.jp\nmax_age: 604800\n")
	}
	dns.Add(`_spf.hoster.example.jp. TXT "v=spf1 ip4:192.0.2.0/24 -all"`)
	dns.AddZone(".", zone.String())
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		c, err := lookup.New([]string{dns.Addr()}, lookup.Options{CacheSize: 4096})
		if err != nil {
			b.Fatal(err)
		}
		a, err := New(Options{Resolver: c, Profile: "nisc", RootCAs: ca.Pool, MTASTSAddr: https.Addr,
			SMTPAddrs: map[string]string{"mx.hoster.example.jp": mx.Addr}, Selectors: []string{"ed"}, NoProbes: benchNoProbes})
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
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
		start := time.Now()
		pass := 0
		a.Run(context.Background(), domains, 0, func(i int, r *Report) {
			if r.Verdict == Pass {
				pass++
			} else if pass == 0 && i == 0 {
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
		// The audit's own memory: the peak above what the test servers
		// and their N zones, certificates and policies hold already.
		b.ReportMetric(float64(peak-min(peak, base))/(1<<20), "peak-live-MB")
	}
}
