package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kakuin/kakuin/deploy/postfixtest"
)

// faultMessages is how many messages the fault test sends
// (KAKUIN_E2E_FAULT_MESSAGES overrides it).
func faultMessages(t *testing.T) int {
	if v := os.Getenv("KAKUIN_E2E_FAULT_MESSAGES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("KAKUIN_E2E_FAULT_MESSAGES=%q: want a positive number", v)
		}
		return n
	}
	return 300
}

const (
	faultSender = "info@example.go.jp"
	// refusedRcpt is refused by the upstream with 550 all along; every
	// refusedEvery-th message is also addressed to it.
	refusedRcpt  = "refused@example.net"
	refusedEvery = 20
)

var seqHeader = regexp.MustCompile(`(?m)^X-Kakuin-Seq: (\d+)\r?$`)

// While hundreds of messages flow agency Postfix -> kakuin -> upstream,
// the upstream stops and comes back, answers 4xx for a while and 5xx for
// one recipient all along, and kakuin is SIGKILLed and restarted twice.
// After the agency Postfix's retries, every message is at the sink
// (verifying) or, for the refused recipient, bounced to its sender with
// the upstream's reason; none is lost.
func TestFaults(t *testing.T) {
	t.Parallel()
	requireTools(t)
	n := faultMessages(t)
	start := time.Now()
	c := newChain(t, map[string]string{
		// Retry within seconds rather than minutes.
		"queue_run_delay":      "1s",
		"minimal_backoff_time": "1s",
		"maximal_backoff_time": "4s",
		"smtp_connect_timeout": "5s",
	}, true)

	var mailRefused, rcptRefused atomic.Int64
	var tempfail atomic.Bool
	c.sink.SetFault(func(cmd, arg string) error {
		switch {
		case cmd == "MAIL" && tempfail.Load():
			mailRefused.Add(1)
			return postfixtest.Reply(451, "4.3.2", "sink: busy, try again later")
		case cmd == "RCPT" && strings.EqualFold(arg, refusedRcpt):
			rcptRefused.Add(1)
			return postfixtest.Reply(550, "5.1.1", "sink: no such recipient here")
		}
		return nil
	})

	// Submit at a steady pace over the whole fault schedule (26 s), so
	// that mail flows through every fault however fast the machine is.
	const window = 26 * time.Second
	var wg sync.WaitGroup
	submitErr := make(chan error, 1)
	wg.Add(1)
	subStart := time.Now()
	go func() {
		defer wg.Done()
		for i := 1; i <= n; i++ {
			if d := time.Until(subStart.Add(time.Duration(i-1) * window / time.Duration(n))); d > 0 {
				time.Sleep(d)
			}
			to := []string{recipient}
			if i%refusedEvery == 0 {
				to = append(to, refusedRcpt)
			}
			msg := fmt.Sprintf("From: Info <%s>\r\nTo: %s\r\nSubject: fault test %d\r\nMessage-ID: <seq-%d@example.go.jp>\r\nX-Kakuin-Seq: %d\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nお知らせ %d: the upstream may be down, kakuin may be killed; this message must still arrive once.\r\n",
				faultSender, strings.Join(to, ", "), i, i, i, i)
			if err := c.agency.Sendmail(faultSender, to, []byte(msg)); err != nil {
				submitErr <- fmt.Errorf("message %d: %w", i, err)
				return
			}
		}
	}()

	step := func(at time.Duration, what string, f func()) {
		t.Helper()
		if d := time.Until(start.Add(at)); d > 0 {
			time.Sleep(d)
		}
		t.Logf("%5.1fs %s", time.Since(start).Seconds(), what)
		f()
	}
	t0 := time.Since(start)
	step(t0+3*time.Second, "upstream stops", c.sink.Stop)
	step(t0+8*time.Second, "upstream restarts", func() {
		if err := c.sink.Restart(); err != nil {
			t.Fatal(err)
		}
	})
	step(t0+10*time.Second, "upstream answers 451 to MAIL", func() { tempfail.Store(true) })
	step(t0+15*time.Second, "upstream accepts again", func() { tempfail.Store(false) })
	step(t0+17*time.Second, "kakuin SIGKILLed", func() { c.gw.stop(syscall.SIGKILL) })
	step(t0+19*time.Second, "kakuin restarted", func() {
		if err := c.gw.start(); err != nil {
			t.Fatal(err)
		}
	})
	step(t0+22*time.Second, "kakuin SIGKILLed again", func() { c.gw.stop(syscall.SIGKILL) })
	step(t0+24*time.Second, "kakuin restarted again", func() {
		if err := c.gw.start(); err != nil {
			t.Fatal(err)
		}
	})
	wg.Wait()
	select {
	case err := <-submitErr:
		t.Fatal(err)
	default:
	}
	t.Logf("%5.1fs all %d messages submitted; waiting for the agency queue to drain", time.Since(start).Seconds(), n)
	c.agency.WaitQueueEmptyFlushing(t, 150*time.Second)
	t.Logf("%5.1fs agency queue empty", time.Since(start).Seconds())

	// The faults really happened.
	log := c.agency.Maillog()
	for what, re := range map[string]string{
		"kakuin unreachable (killed)":            `status=deferred \((connect to localhost\[127\.0\.0\.1\]:\d+: Connection refused|lost connection with localhost)`,
		"upstream unavailable passed back (4xx)": `status=deferred .*said: 451 4\.4\.`,
		"upstream 451 passed back":               `status=deferred .*Upstream deferred: 451`,
		"upstream 550 for one recipient":         `to=<` + regexp.QuoteMeta(refusedRcpt) + `>.*status=bounced .*550`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("the agency maillog shows no %s (/%s/)", what, re)
		}
	}
	if mailRefused.Load() == 0 || rcptRefused.Load() == 0 {
		t.Errorf("sink refused MAIL %d times, RCPT %d times; want both > 0", mailRefused.Load(), rcptRefused.Load())
	}

	// Account for every message.
	got := c.sink.Messages()
	delivered := map[int]int{}
	for _, m := range got {
		s := seqHeader.FindSubmatch(m.Data)
		if s == nil {
			t.Errorf("sink message without X-Kakuin-Seq from %s", m.From)
			continue
		}
		i, _ := strconv.Atoi(string(s[1]))
		delivered[i]++
		for _, r := range m.To {
			if strings.EqualFold(r, refusedRcpt) {
				t.Errorf("message %d reached the sink for the refused recipient", i)
			}
		}
	}
	bounces, err := c.agency.Mailbox(faultSender)
	if err != nil {
		t.Fatal(err)
	}
	bounced := map[int]string{} // seq -> failed recipient
	for _, b := range bounces {
		s := seqHeader.FindSubmatch(b.Data)
		if s == nil {
			t.Errorf("bounce without the original X-Kakuin-Seq:\n%s", b.Data)
			continue
		}
		i, _ := strconv.Atoi(string(s[1]))
		body := string(b.Data)
		switch {
		case strings.Contains(body, "Final-Recipient: rfc822; "+refusedRcpt) && strings.Contains(body, "550 5.1.1"):
			bounced[i] = refusedRcpt
		default:
			bounced[i] = "other"
			t.Logf("message %d bounced for another reason:\n%s", i, lastLines(body, 40))
		}
	}
	var nDelivered, nTwice, nBounced, nLost int
	for i := 1; i <= n; i++ {
		switch d := delivered[i]; {
		case d == 0 && bounced[i] == "other":
			nBounced++ // with a reason, logged above
		case d == 0:
			nLost++
			t.Errorf("message %d LOST: neither at the sink nor bounced", i)
		case d > 1:
			nTwice++
			nDelivered++
		default:
			nDelivered++
		}
		if i%refusedEvery == 0 {
			if bounced[i] != refusedRcpt {
				t.Errorf("message %d: no bounce for %s with the upstream's 550", i, refusedRcpt)
			} else {
				nBounced++
			}
		} else if bounced[i] == refusedRcpt {
			t.Errorf("message %d bounced for %s but was not addressed to it", i, refusedRcpt)
		}
	}
	t.Logf("fault test: %d messages: delivered %d (of which delivered twice %d), bounced %d (%d for %s, as intended), lost %d; %.0fs",
		n, nDelivered, nTwice, nBounced, n/refusedEvery, refusedRcpt, nLost, time.Since(start).Seconds())
	fmt.Printf("fault test: delivered=%d delivered-twice=%d bounced=%d lost=%d\n", nDelivered, nTwice, nBounced, nLost)

	// What arrived is sealed: both DKIM signatures and S/MIME verify.
	files := writeMessages(t, filepath.Join(tempDir(t), "sink"), got)
	dk := dkimpyVerify(t, c.dns.Addr(), files)
	anchors := filepath.Join(c.pki, "trust-anchors.pem")
	bad := 0
	for _, f := range files {
		if v := dk[f]; !strings.HasPrefix(v, "ok 2 ed25519-sha256,rsa-sha256") {
			bad++
			if bad <= 5 {
				t.Errorf("%s: dkimpy: %q", filepath.Base(f), v)
			}
		}
		if err := opensslVerify(f, anchors); err != nil {
			bad++
			if bad <= 5 {
				t.Error(err)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d verification failures among %d delivered messages", bad, len(files))
	}
}
