package verify_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kakuin/kakuin/pki/pkitest"
	"github.com/kakuin/kakuin/verify"
	"github.com/kakuin/kakuin/verify/internal/testsign"
)

// BenchmarkMessage4K: a 4 KB message with S/MIME and two DKIM signatures
// (rsa-sha256, ed25519-sha256), the DNS answers in the resolver's cache,
// one Verifier reused (its chain cache warm). Goal: >= 5,000/s per core.
func BenchmarkMessage4K(b *testing.B) {
	for _, kt := range []struct {
		name string
		kt   pkitest.KeyType
	}{{"rsa2048", pkitest.RSA2048}, {"ecdsaP256", pkitest.ECDSAP256}} {
		b.Run(kt.name, func(b *testing.B) {
			e := newEnv(b)
			id := e.ca.Identity(b, addr, pkitest.WithKeyType(kt.kt))
			// Fill the body until the sealed message is 4 KB.
			line := "This is a line of an official notice, seventy characters long or so.\n"
			overhead := len(e.seal(b, id, outer, testsign.Entity("")))
			body := strings.Repeat(line, max(0, (4096-overhead)/(len(line)+1)))
			msg := e.seal(b, id, outer, testsign.Entity(body))
			if len(msg) < 3900 || len(msg) > 4300 {
				b.Fatalf("message is %d bytes", len(msg))
			}
			v := verify.New(e.opts())
			rep, err := v.Bytes(context.Background(), msg)
			if err != nil || !rep.Verdict.Genuine {
				b.Fatalf("%v %+v", err, rep.Verdict)
			}
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				rep, err := v.Bytes(context.Background(), msg)
				if err != nil || !rep.Verdict.Genuine {
					b.Fatal("not genuine")
				}
			}
			reportCPU(b, cpuTime()-cpu0)
		})
	}
}

// BenchmarkCryptoFloor: the bare public-key operations one verification
// of BenchmarkMessage4K/rsa2048 cannot avoid (two RSA-2048 verifications:
// S/MIME and DKIM rsa-sha256; one Ed25519 verification: DKIM
// ed25519-sha256), on the same machine at the same time, so that the
// verifier's own overhead can be read off.
func BenchmarkCryptoFloor(b *testing.B) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	h := sha256.Sum256([]byte("x"))
	sig, _ := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, h[:])
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	esig := ed25519.Sign(priv, h[:])
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		for j := 0; j < 2; j++ {
			if rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, h[:], sig) != nil {
				b.Fatal("rsa")
			}
		}
		if !ed25519.Verify(pub, h[:], esig) {
			b.Fatal("ed25519")
		}
	}
	reportCPU(b, cpuTime()-cpu0)
}

// cpuTime is the CPU time the process has used (user + system, every
// thread): on a shared machine, wall-clock rates measure the neighbours
// too, CPU time per operation does not.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports wall-clock verifications/s and, from CPU time,
// verifications per CPU-second: the throughput of one core.
func reportCPU(b *testing.B, cpu time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "verifications/cpu-s")
	}
}
