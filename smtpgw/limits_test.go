package smtpgw

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/kakuin/kakuin/signer"
	"github.com/kakuin/kakuin/smtpgw/smtptest"
)

// TestSmuggling: bare LF and <LF>.<LF> variants are refused as one
// message; the commands hidden after them are never executed and the
// upstream sees no message at all.
func TestSmuggling(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.dial()
	c.expect(250, "EHLO client.example.go.jp")
	hidden := "MAIL FROM:<taro@mhlw.go.jp>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nFrom: taro@mhlw.go.jp\r\n\r\nsmuggled\r\n"
	for _, end := range []string{"\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r\n", "\n..\n"} {
		base := e.up.Transactions()
		c.expect(250, "MAIL FROM:<taro@mhlw.go.jp>")
		c.expect(250, "RCPT TO:<citizen@example.com>")
		raw := "From: taro@mhlw.go.jp\r\nTo: citizen@example.com\r\nSubject: s\r\n\r\nfirst" + end + hidden + ".\r\n"
		code, text := c.data(raw)
		if code != 554 || enhanced(text) != "5.6.0" {
			t.Fatalf("%q: %d %s, want 554 5.6.0", end, code, text)
		}
		// In sync: the next reply is to our NOOP, not to a hidden command.
		if code, text := c.cmd("NOOP"); code != 250 || !strings.Contains(text, "nothing") {
			t.Fatalf("%q: after the refusal: %d %s", end, code, text)
		}
		if n := e.up.Transactions() - base; n != 1 {
			t.Fatalf("%q: %d upstream transactions, want 1", end, n)
		}
		if n := len(e.up.Messages()); n != 0 {
			t.Fatalf("%q: upstream stored %d messages", end, n)
		}
	}

	// "<CRLF>.<CR>X": go-smtp itself removes the dot and the CR (it is
	// its dot-unstuffing), so what reaches the gateway is one message
	// whose body holds the would-be commands as text: normalised, one
	// message, no second transaction.
	base := e.up.Transactions()
	c.expect(250, "MAIL FROM:<taro@mhlw.go.jp>")
	c.expect(250, "RCPT TO:<citizen@example.com>")
	if code, text := c.data("From: taro@mhlw.go.jp\r\nTo: citizen@example.com\r\nSubject: s\r\n\r\nfirst\r\n.\r" + hidden + ".\r\n"); code != 250 {
		t.Fatalf("<CRLF>.<CR>: %d %s", code, text)
	}
	c.expect(250, "NOOP")
	if m := e.up.Messages(); len(m) != 1 || e.up.Transactions()-base != 1 || !strings.Contains(string(m[0].Data), "RCPT TO:<victim@example.com>") {
		t.Fatalf("<CRLF>.<CR>: %d messages, %d transactions", len(m), e.up.Transactions()-base)
	}
	// A message with only bare LF line ends is refused too.
	c.expect(250, "MAIL FROM:<taro@mhlw.go.jp>")
	c.expect(250, "RCPT TO:<citizen@example.com>")
	if code, _ := c.data("From: taro@mhlw.go.jp\nSubject: s\n\nbody\n\r\n.\r\n"); code != 554 {
		t.Fatalf("bare LF message: %d", code)
	}
	// BDAT (CHUNKING) is held to the same rule.
	c.expect(250, "MAIL FROM:<taro@mhlw.go.jp>")
	c.expect(250, "RCPT TO:<citizen@example.com>")
	chunk := "From: taro@mhlw.go.jp\r\nSubject: s\r\n\r\nbody\n.\n" + hidden
	fmt.Fprintf(c.conn, "BDAT %d LAST\r\n%s", len(chunk), chunk)
	if code, text := c.read(); code != 554 {
		t.Fatalf("BDAT with bare LF: %d %s", code, text)
	}
	if n := len(e.up.Messages()); n != 1 {
		t.Fatalf("upstream stored %d messages", n)
	}
	// And a clean message still goes through on the same connection.
	if code, text := c.send("taro@mhlw.go.jp", []string{"citizen@example.com"}, message("taro@mhlw.go.jp")); code != 250 {
		t.Fatalf("clean message: %d %s", code, text)
	}
}

func TestBDAT(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.dial()
	c.expect(250, "EHLO client.example.go.jp")
	c.expect(250, "MAIL FROM:<taro@mhlw.go.jp>")
	c.expect(250, "RCPT TO:<citizen@example.com>")
	msg := message("taro@mhlw.go.jp")
	half := len(msg) / 2
	fmt.Fprintf(c.conn, "BDAT %d\r\n%s", half, msg[:half])
	if code, text := c.read(); code != 250 {
		t.Fatalf("BDAT: %d %s", code, text)
	}
	fmt.Fprintf(c.conn, "BDAT %d LAST\r\n%s", len(msg)-half, msg[half:])
	if code, text := c.read(); code != 250 || !strings.Contains(text, "id=") {
		t.Fatalf("BDAT LAST: %d %s", code, text)
	}
	if m := e.up.Messages(); len(m) != 1 {
		t.Fatalf("upstream has %d messages", len(m))
	} else {
		e.verifyDKIM(m[0].Data)
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	t.Run("size", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(o *Options) { o.Limits.MaxMessageBytes = 4096 })
		c := e.dial()
		c.expect(250, "EHLO client.example.go.jp")
		if code, text := c.cmd("MAIL FROM:<taro@mhlw.go.jp> SIZE=5000"); code != 552 || enhanced(text) != "5.3.4" {
			t.Fatalf("MAIL SIZE=5000: %d %s", code, text)
		}
		big := message("taro@mhlw.go.jp", "X-Pad: "+strings.Repeat("x", 500)) + strings.Repeat(strings.Repeat("y", 70)+"\r\n", 60)
		if code, text := c.send("taro@mhlw.go.jp", []string{"citizen@example.com"}, big); code != 552 || enhanced(text) != "5.3.4" {
			t.Fatalf("big DATA: %d %s", code, text)
		}
		c.expect(250, "NOOP")
		if code, text := c.send("taro@mhlw.go.jp", []string{"citizen@example.com"}, message("taro@mhlw.go.jp")); code != 250 {
			t.Fatalf("small message after: %d %s", code, text)
		}
		if n := len(e.up.Messages()); n != 1 {
			t.Fatalf("upstream has %d messages", n)
		}
	})
	t.Run("recipients", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(o *Options) { o.Limits.MaxRecipients = 3 })
		c := e.dial()
		c.expect(250, "EHLO client.example.go.jp")
		c.expect(250, "MAIL FROM:<taro@mhlw.go.jp>")
		for i := 0; i < 3; i++ {
			c.expect(250, "RCPT TO:<r%d@example.com>", i)
		}
		if code, text := c.cmd("RCPT TO:<r3@example.com>"); code != 452 || enhanced(text) != "4.5.3" {
			t.Fatalf("4th recipient: %d %s", code, text)
		}
		if code, text := c.data(dotStuff(message("taro@mhlw.go.jp")) + ".\r\n"); code != 250 {
			t.Fatalf("DATA: %d %s", code, text)
		}
		if m := e.up.Messages(); len(m) != 1 || len(m[0].To) != 3 {
			t.Fatalf("upstream got %+v", m)
		}
		// Refused recipients count too, up to twice the limit.
		e.up.SetFaults(smtptest.Faults{Rcpt: map[string]*smtp.SMTPError{"gone@example.com": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no"}}})
		c.expect(250, "MAIL FROM:<taro@mhlw.go.jp>")
		for i := 0; i < 6; i++ {
			c.expect(550, "RCPT TO:<gone@example.com>")
		}
		if code, text := c.cmd("RCPT TO:<r0@example.com>"); code != 452 {
			t.Fatalf("7th recipient attempt: %d %s", code, text)
		}
	})
	t.Run("sessions", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(o *Options) { o.Limits.MaxSessions = 2 })
		a, b := e.dial(), e.dial()
		conn, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		line := make([]byte, 200)
		n, _ := conn.Read(line)
		if !strings.HasPrefix(string(line[:n]), "421 4.7.0") {
			t.Fatalf("third session got %q", line[:n])
		}
		// The two sessions are unaffected, and closing one frees a slot.
		a.expect(250, "EHLO a.example.go.jp")
		b.expect(250, "EHLO b.example.go.jp")
		a.cmd("QUIT")
		deadline := time.Now().Add(5 * time.Second)
		for {
			conn, err := net.Dial("tcp", e.addr)
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			n, _ := conn.Read(line)
			conn.Close()
			if strings.HasPrefix(string(line[:n]), "220 ") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no slot after QUIT: %q", line[:n])
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Run("commands without mail", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(o *Options) { o.Limits.MaxCommandsWithoutMail = 5 })
		c := e.dial()
		c.expect(250, "EHLO client.example.go.jp") // 1
		// A successful MAIL resets the count.
		c.expect(250, "MAIL FROM:<taro@mhlw.go.jp>")
		c.expect(250, "RSET")
		for i := 0; i < 5; i++ {
			c.expect(250, "RSET")
		}
		if code, text := c.cmd("RSET"); code != 421 || enhanced(text) != "4.7.0" {
			t.Fatalf("6th command without MAIL: %d %s", code, text)
		}
		if code, _ := c.cmd("NOOP"); code != 0 {
			t.Fatalf("connection still open: %d", code)
		}
		// Refused MAIL commands count too.
		c = e.dial()
		c.expect(250, "EHLO client.example.go.jp")
		for i := 0; i < 4; i++ {
			c.expect(550, "MAIL FROM:<a@example.com>")
		}
		if code, _ := c.cmd("MAIL FROM:<a@example.com>"); code != 421 {
			t.Fatalf("5th refused MAIL: %d", code)
		}
	})
	t.Run("time without mail", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(o *Options) { o.Limits.MaxTimeWithoutMail = 400 * time.Millisecond })
		c := e.dial()
		c.expect(250, "EHLO client.example.go.jp")
		// A transaction in progress is never cut.
		c.expect(250, "MAIL FROM:<taro@mhlw.go.jp>")
		time.Sleep(600 * time.Millisecond)
		c.expect(250, "RCPT TO:<citizen@example.com>")
		if code, text := c.data(dotStuff(message("taro@mhlw.go.jp")) + ".\r\n"); code != 250 {
			t.Fatalf("slow transaction: %d %s", code, text)
		}
		// NOOPs alone do not keep the slot.
		deadline := time.Now().Add(5 * time.Second)
		for {
			if code, _ := c.cmd("NOOP"); code == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("a NOOP-only session was never closed")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("header size", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(o *Options) { o.Limits.MaxHeaderBytes = 1024 })
		c := e.dial()
		c.expect(250, "EHLO client.example.go.jp")
		var extra []string
		for i := 0; i < 20; i++ {
			extra = append(extra, fmt.Sprintf("X-Filler-%d: %s", i, strings.Repeat("h", 60)))
		}
		if code, text := c.send("taro@mhlw.go.jp", []string{"citizen@example.com"}, message("taro@mhlw.go.jp", extra...)); code != 552 || enhanced(text) != "5.3.4" {
			t.Fatalf("big header: %d %s", code, text)
		}
		// A big body with a small header is fine.
		if code, text := c.send("taro@mhlw.go.jp", []string{"citizen@example.com"}, message("taro@mhlw.go.jp")+strings.Repeat("body line\r\n", 300)); code != 250 {
			t.Fatalf("big body: %d %s", code, text)
		}
		if n := len(e.up.Messages()); n != 1 {
			t.Fatalf("upstream has %d messages", n)
		}
	})
	t.Run("line length", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(o *Options) { o.Limits.MaxLineLength = 200 })
		c := e.dial()
		c.expect(250, "EHLO client.example.go.jp")
		long := message("taro@mhlw.go.jp") + strings.Repeat("z", 300) + "\r\n"
		if code, text := c.send("taro@mhlw.go.jp", []string{"citizen@example.com"}, long); code/100 != 5 {
			t.Fatalf("long line: %d %s", code, text)
		}
		// Through BDAT, where go-smtp does not count lines.
		c = e.dial()
		c.expect(250, "EHLO client.example.go.jp")
		c.expect(250, "MAIL FROM:<taro@mhlw.go.jp>")
		c.expect(250, "RCPT TO:<citizen@example.com>")
		// go-smtp may see the long line while reading the command (500,
		// connection closed) or hand it to us (554 5.6.0): 5xx either way.
		fmt.Fprintf(c.conn, "BDAT %d LAST\r\n%s", len(long), long)
		if code, text := c.read(); code/100 != 5 {
			t.Fatalf("long line in BDAT: %d %s", code, text)
		}
		if n := len(e.up.Messages()); n != 0 {
			t.Fatalf("upstream has %d messages", n)
		}
	})
	t.Run("read timeout", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(o *Options) { o.Limits.ReadTimeout = 300 * time.Millisecond })
		c := e.dial()
		c.expect(250, "EHLO client.example.go.jp")
		if code, text := c.read(); code != 421 {
			t.Fatalf("idle client: %d %s", code, text)
		}
		// Stalling in the middle of DATA: nothing goes upstream.
		c = e.dial()
		c.expect(250, "EHLO client.example.go.jp")
		c.expect(250, "MAIL FROM:<taro@mhlw.go.jp>")
		c.expect(250, "RCPT TO:<citizen@example.com>")
		c.expect(354, "DATA")
		fmt.Fprintf(c.conn, "From: taro@mhlw.go.jp\r\n")
		if code, _ := c.read(); code/100 != 4 {
			t.Fatalf("stalled DATA: %d", code)
		}
		if n := len(e.up.Messages()); n != 0 {
			t.Fatalf("upstream has %d messages", n)
		}
	})
	t.Run("rate", func(t *testing.T) {
		t.Parallel()
		var mu sync.Mutex
		now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
		e := newEnv(t, func(o *Options) {
			o.Limits.MessagesPerMinute, o.Limits.RateBurst = 2, 2
			o.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		})
		c := e.dial()
		c.expect(250, "EHLO client.example.go.jp")
		for i := 0; i < 2; i++ {
			if code, text := c.send("taro@mhlw.go.jp", []string{"citizen@example.com"}, message("taro@mhlw.go.jp")); code != 250 {
				t.Fatalf("message %d: %d %s", i, code, text)
			}
		}
		if code, text := c.cmd("MAIL FROM:<taro@mhlw.go.jp>"); code != 451 || enhanced(text) != "4.7.1" {
			t.Fatalf("over the rate: %d %s", code, text)
		}
		mu.Lock()
		now = now.Add(31 * time.Second)
		mu.Unlock()
		if code, text := c.send("taro@mhlw.go.jp", []string{"citizen@example.com"}, message("taro@mhlw.go.jp")); code != 250 {
			t.Fatalf("after 31s: %d %s", code, text)
		}
		if n := len(e.up.Messages()); n != 3 {
			t.Fatalf("upstream has %d messages", n)
		}
	})
}

// slowSealer signs with the test signer after a pause, and records how
// many signings overlap.
type slowSealer struct {
	Sealer
	pause     time.Duration
	mu        sync.Mutex
	now, peak int
}

func (s *slowSealer) Sign(ctx context.Context, dst io.Writer, src io.Reader) (signer.Result, error) {
	s.mu.Lock()
	s.now++
	s.peak = max(s.peak, s.now)
	s.mu.Unlock()
	defer func() { s.mu.Lock(); s.now--; s.mu.Unlock() }()
	select {
	case <-time.After(s.pause):
	case <-ctx.Done():
		return signer.Result{}, ctx.Err()
	}
	return s.Sealer.Sign(ctx, dst, src)
}

// TestSignConcurrency: no more messages are signed at once than
// SignConcurrency; the others wait their turn and go through. One that
// waits past the sign timeout gets 451 4.3.0 and nothing goes upstream.
func TestSignConcurrency(t *testing.T) {
	t.Parallel()
	var slow *slowSealer
	e := newEnv(t, func(o *Options) {
		slow = &slowSealer{Sealer: o.Sealer, pause: 100 * time.Millisecond}
		o.Sealer = slow
		o.SignConcurrency = 2
	})
	var wg sync.WaitGroup
	codes := make(chan int, 6)
	for range 6 {
		c := e.dial()
		c.expect(250, "EHLO client.example.go.jp")
		wg.Go(func() {
			code, _ := c.send("taro@example.go.jp", []string{"citizen@example.com"}, message("taro@example.go.jp"))
			codes <- code
		})
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != 250 {
			t.Fatalf("DATA: %d", code)
		}
	}
	if slow.peak != 2 || e.up.Count() != 6 {
		t.Fatalf("%d signings at once (want 2), %d messages upstream (want 6)", slow.peak, e.up.Count())
	}

	// One turn, held for 2 s; the sign timeout is 300 ms.
	var held *slowSealer
	e2 := newEnv(t, func(o *Options) {
		held = &slowSealer{Sealer: o.Sealer, pause: 2 * time.Second}
		o.Sealer = held
		o.SignConcurrency = 1
		o.Limits.SignTimeout = 300 * time.Millisecond
	})
	first, second := e2.dial(), e2.dial()
	first.expect(250, "EHLO client.example.go.jp")
	second.expect(250, "EHLO client.example.go.jp")
	done := make(chan int, 1)
	go func() {
		code, _ := first.send("taro@example.go.jp", []string{"citizen@example.com"}, message("taro@example.go.jp"))
		done <- code
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		held.mu.Lock()
		signing := held.now
		held.mu.Unlock()
		if signing == 1 {
			break // the first one has the turn
		}
		if time.Now().After(deadline) {
			t.Fatal("the first message never reached the signer")
		}
	}
	code, text := second.send("taro@example.go.jp", []string{"citizen@example.com"}, message("taro@example.go.jp"))
	if code != 451 || !strings.Contains(text, "4.3.0") {
		t.Fatalf("waiting past the sign timeout: %d %s", code, text)
	}
	if code := <-done; code != 451 {
		// The first one's own signing outlasts the timeout too: also
		// 451 4.3.0, not a 421 that would end the session.
		t.Fatalf("signing past the sign timeout: %d", code)
	}
	if n := e2.up.Count(); n != 0 {
		t.Fatalf("%d messages upstream after sign timeouts", n)
	}
}

// TestRcptPostmaster: RCPT TO:<Postmaster>, without a domain, must be
// accepted (RFC 5321 4.1.1.3, 4.5.1); it is relayed as it came, for the
// upstream's postmaster.
func TestRcptPostmaster(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.dial()
	c.expect(250, "EHLO client.example.go.jp")
	if code, text := c.send("taro@mhlw.go.jp", []string{"Postmaster"}, message("taro@mhlw.go.jp")); code != 250 {
		t.Fatalf("RCPT TO:<Postmaster>: %d %s", code, text)
	}
	m := e.up.Messages()
	if len(m) != 1 || len(m[0].To) != 1 || !strings.EqualFold(m[0].To[0], "postmaster") {
		t.Fatalf("upstream got %+v", m)
	}
}

// hungSealer blocks, deaf to its context, until release is closed, as a
// PKCS#11 call to an HSM that stopped answering does; then it signs.
type hungSealer struct {
	Sealer
	release chan struct{}
	started chan struct{}
}

func (s *hungSealer) Sign(ctx context.Context, dst io.Writer, src io.Reader) (signer.Result, error) {
	s.started <- struct{}{}
	<-s.release
	return s.Sealer.Sign(context.Background(), dst, src)
}

// TestSignerHung: a signer that ignores its context still gets the client
// a 451 4.3.0 at the sign timeout, and nothing is relayed; it keeps its
// turn until it returns, so the next message, waiting for a turn, gets
// 451 4.3.0 too; once it returns, the turn is free and mail flows again.
func TestSignerHung(t *testing.T) {
	t.Parallel()
	var hung *hungSealer
	e := newEnv(t, func(o *Options) {
		hung = &hungSealer{Sealer: o.Sealer, release: make(chan struct{}), started: make(chan struct{}, 4)}
		o.Sealer = hung
		o.SignConcurrency = 1
		o.Limits.SignTimeout = 300 * time.Millisecond
	})
	var once sync.Once
	release := func() { once.Do(func() { close(hung.release) }) }
	t.Cleanup(release) // so that a failing test does not leave the gateway hung
	c := e.dial()
	c.expect(250, "EHLO client.example.go.jp")
	type reply struct {
		code int
		text string
	}
	first := make(chan reply, 1)
	go func() {
		code, text := c.send("taro@example.go.jp", []string{"citizen@example.com"}, message("taro@example.go.jp"))
		first <- reply{code, text}
	}()
	var code int
	var text string
	select {
	case r := <-first:
		code, text = r.code, r.text
	case <-time.After(5 * time.Second):
		t.Fatal("no reply 5 s into a hung signing, with a sign timeout of 300 ms")
	}
	if code != 451 || !strings.Contains(text, "4.3.0") {
		t.Fatalf("hung signer: %d %s", code, text)
	}
	<-hung.started
	code, text = c.send("taro@example.go.jp", []string{"citizen@example.com"}, message("taro@example.go.jp"))
	if code != 451 || !strings.Contains(text, "4.3.0") {
		t.Fatalf("waiting for the hung signer's turn: %d %s", code, text)
	}
	if n := e.up.Count(); n != 0 {
		t.Fatalf("%d messages relayed while the signer hung", n)
	}
	release()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		code, text = c.send("taro@example.go.jp", []string{"citizen@example.com"}, message("taro@example.go.jp"))
		if code == 250 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the signer returned: %d %s", code, text)
		}
	}
	if n := e.up.Count(); n != 1 {
		t.Fatalf("%d messages upstream, want the one sent after the signer returned", n)
	}
}

type panickySealer struct{ Sealer }

func (panickySealer) Sign(context.Context, io.Writer, io.Reader) (signer.Result, error) {
	panic("signer bug, quoting the message: Hello.")
}

// TestSignerPanics: a signer that panics costs the message a 451 4.3.0,
// not the process, and gives its turn back.
func TestSignerPanics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) {
		o.Sealer = panickySealer{o.Sealer}
		o.SignConcurrency = 1
		o.Limits.SignTimeout = 4 * time.Second
	})
	c := e.dial()
	c.expect(250, "EHLO client.example.go.jp")
	for range 3 {
		t0 := time.Now()
		code, text := c.send("taro@example.go.jp", []string{"citizen@example.com"}, message("taro@example.go.jp"))
		if code != 451 || !strings.Contains(text, "4.3.0") {
			t.Fatalf("panicking signer: %d %s", code, text)
		}
		// With one turn, one not given back would make the next wait
		// for the whole sign timeout.
		if d := time.Since(t0); d > 2*time.Second {
			t.Fatalf("the reply took %v", d)
		}
	}
	if n := e.up.Count(); n != 0 {
		t.Fatalf("%d messages relayed", n)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "signer panicked: string") || strings.Contains(logs, "Hello.") {
		t.Fatalf("the panic is not logged by its type alone:\n%s", logs)
	}
}

// TestNegativeLimits: New refuses a negative limit, naming it.
func TestNegativeLimits(t *testing.T) {
	t.Parallel()
	var base Options
	newEnv(t, func(o *Options) { base = *o })
	opts := base
	opts.Limits.SignTimeout = -time.Second
	if _, err := New(opts); err == nil || !strings.Contains(err.Error(), "SignTimeout") {
		t.Fatalf("negative SignTimeout: %v", err)
	}
	opts = base
	opts.Limits.MaxRecipients = -1
	if _, err := New(opts); err == nil || !strings.Contains(err.Error(), "MaxRecipients") {
		t.Fatalf("negative MaxRecipients: %v", err)
	}
}
