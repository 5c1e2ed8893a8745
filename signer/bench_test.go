package signer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/kakuin/kakuin/pki/pkitest"
)

// benchMessage returns a message of about size octets: a short Japanese
// text in UTF-8 8bit (which mime7bit re-encodes) and, for sizes over 8 KB,
// a base64 PDF-like attachment that fills the rest.
func benchMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: =?UTF-8?B?5Y6a55Sf5Yq05YON55yB?= <info@example.go.jp>\r\n" +
		"To: citizen@example.com\r\n" +
		"Subject: =?UTF-8?B?44GK55+l44KJ44Gb?=\r\n" +
		"Date: Thu, 26 Nov 2026 09:00:00 +0900\r\n" +
		"Message-ID: <bench@example.go.jp>\r\n" +
		"MIME-Version: 1.0\r\n")
	text := strings.Repeat("お知らせ：本日の手続きについてご案内します。\r\n", 1+min(size, 8<<10)/200)
	if size <= 8<<10 {
		b.WriteString("Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
		for b.Len() < size {
			b.WriteString(text[:min(len(text), size-b.Len())])
		}
		return b.Bytes()
	}
	b.WriteString("Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n" +
		"--outer\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text +
		"--outer\r\nContent-Type: application/pdf; name=notice.pdf\r\nContent-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=notice.pdf\r\n\r\n")
	raw := make([]byte, (size-b.Len()-16)*76/78*3/4)
	rand.Read(raw)
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--outer--\r\n")
	return b.Bytes()
}

var benchSizes = []struct {
	name    string
	size    int
	unsized bool // src does not tell its length
}{{"4KB", 4 << 10, false}, {"1MB", 1 << 20, false}, {"25MB", 25 << 20, false}, {"25MB-unsized", 25 << 20, true}}

// unsized hides the length of a reader.
type unsized struct{ io.Reader }

func source(msg []byte, hide bool) io.Reader {
	if hide {
		return unsized{bytes.NewReader(msg)}
	}
	return bytes.NewReader(msg)
}

// BenchmarkSign signs with RSA-2048 S/MIME, RSA-2048 DKIM and Ed25519 DKIM.
// peak-heap/msg is the most live heap seen during one Sign, over the
// message size (the goal: at most 3).
func BenchmarkSign(b *testing.B) {
	fx := newFixture(b, pkitest.RSA2048)
	s, err := New(fx.options())
	if err != nil {
		b.Fatal(err)
	}
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			msg := benchMessage(bs.size)
			if _, err := s.Sign(context.Background(), io.Discard, source(msg, bs.unsized)); err != nil {
				b.Fatal(err)
			}
			peak := peakHeap(b, func() {
				s.Sign(context.Background(), io.Discard, source(msg, bs.unsized)) //nolint:errcheck
			})
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			for b.Loop() {
				if _, err := s.Sign(context.Background(), io.Discard, source(msg, bs.unsized)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(peak)/float64(len(msg)), "peak-heap/msg")
		})
	}
}

// peakHeap runs fn once and returns the highest live heap growth over the
// baseline seen while it ran (heap objects, sampled every 200µs, after a
// GC before the start).
func peakHeap(b *testing.B, fn func()) uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	base := read()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			if v := read(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	fn()
	close(stop)
	wg.Wait()
	if p := peak.Load(); p > base {
		return p - base
	}
	return 0
}

// BenchmarkPrivateKeyOps is the floor under BenchmarkSign: the two RSA-2048
// PKCS#1 v1.5 SHA-256 signatures (S/MIME and DKIM) and the Ed25519 one.
func BenchmarkPrivateKeyOps(b *testing.B) {
	fx := newFixture(b, pkitest.RSA2048)
	smimeKey := fx.ids["info@example.go.jp"].Signer
	rsaDKIM, edDKIM := fx.keys[0].Signer, fx.keys[1].Signer
	sum := sha256.Sum256([]byte("attributes"))
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		if _, err := smimeKey.Sign(rand.Reader, sum[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
		if _, err := rsaDKIM.Sign(rand.Reader, sum[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
		if _, err := edDKIM.Sign(rand.Reader, sum[:], crypto.Hash(0)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the CPU time (user and system) of the whole process so far,
// in nanoseconds. On a shared machine wall time per operation depends on
// the neighbours; CPU time per operation much less so.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// TestBenchMessage keeps the generator honest: the sizes are what the
// benchmark names say, and the messages sign.
func TestBenchMessage(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, pkitest.ECDSAP256)
	s, _ := New(fx.options())
	for _, size := range []int{4 << 10, 1 << 20} {
		msg := benchMessage(size)
		if d := len(msg) - size; d < -100 || d > 100 {
			t.Errorf("benchMessage(%d) is %d octets", size, len(msg))
		}
		var out bytes.Buffer
		if _, err := s.Sign(context.Background(), &out, bytes.NewReader(msg)); err != nil {
			t.Fatalf("%d: %v", size, err)
		}
		fx.verifyDKIM(t, out.String())
		fx.smime(t, out.String())
	}
}

// BenchmarkSignOverhead alternates one Sign of the 4 KB message with the
// bare private-key operations it contains (RSA-2048 for S/MIME, RSA-2048
// and Ed25519 for DKIM), and reports the CPU time of each, counted for the
// whole process (go-msgauth signs in goroutines of its own, on other
// threads; nothing else runs in the process): the ratio does not depend on
// what the neighbours on a shared machine do. The goal: overhead-% at most
// 20.
func BenchmarkSignOverhead(b *testing.B) {
	fx := newFixture(b, pkitest.RSA2048)
	s, err := New(fx.options())
	if err != nil {
		b.Fatal(err)
	}
	msg := benchMessage(4 << 10)
	smimeKey := fx.ids["info@example.go.jp"].Signer
	rsaDKIM, edDKIM := fx.keys[0].Signer, fx.keys[1].Signer
	sum := sha256.Sum256([]byte("attributes"))
	var signCPU, keyCPU int64
	for b.Loop() {
		t0 := processCPU()
		if _, err := s.Sign(context.Background(), io.Discard, bytes.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
		t1 := processCPU()
		smimeKey.Sign(rand.Reader, sum[:], crypto.SHA256) //nolint:errcheck
		rsaDKIM.Sign(rand.Reader, sum[:], crypto.SHA256)  //nolint:errcheck
		edDKIM.Sign(rand.Reader, sum[:], crypto.Hash(0))  //nolint:errcheck
		t2 := processCPU()
		signCPU += t1 - t0
		keyCPU += t2 - t1
	}
	b.ReportMetric(float64(signCPU)/float64(b.N), "sign-cpu-ns/op")
	b.ReportMetric(float64(keyCPU)/float64(b.N), "keys-cpu-ns/op")
	b.ReportMetric(100*float64(signCPU-keyCPU)/float64(keyCPU), "overhead-%")
}

// processCPU is the CPU time of the process, all threads, in nanoseconds.
func processCPU() int64 {
	var ts syscall.Timespec
	// CLOCK_PROCESS_CPUTIME_ID = 2 (Linux).
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 2, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return ts.Nano()
}
