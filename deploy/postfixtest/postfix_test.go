package postfixtest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/mail"
	"strings"
	"testing"
	"time"
)

func testMessage(from, to, subject string) []byte {
	return []byte(fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: Thu, 26 Nov 2026 10:00:00 +0900\r\nMessage-ID: <%s@example.go.jp>\r\n\r\nこんにちは, a test body.\r\n",
		from, to, subject, strings.ReplaceAll(subject, " ", "-")))
}

// A private instance relays one submitted message to the sink on loopback,
// byte-for-byte in its body, with the envelope it was given.
func TestRelayToSink(t *testing.T) {
	t.Parallel()
	sink := StartSink(t, SinkOptions{})
	pf := Start(t, Options{Name: "relay", Relayhost: "[127.0.0.1]:" + fmt.Sprint(sink.Port())})

	const from, to = "sender@agency.example.go.jp", "citizen@example.com"
	if err := pf.Sendmail(from, []string{to}, testMessage(from, to, "relay one")); err != nil {
		t.Fatal(err)
	}
	msgs := sink.Wait(t, 1, 30*time.Second)
	pf.WaitQueueEmpty(t, 30*time.Second)
	if len(msgs) != 1 {
		t.Fatalf("sink got %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.From != from || len(m.To) != 1 || m.To[0] != to {
		t.Errorf("envelope = %q -> %q, want %q -> [%q]", m.From, m.To, from, to)
	}
	pm, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatalf("sink message does not parse: %v", err)
	}
	if got := pm.Header.Get("Subject"); got != "relay one" {
		t.Errorf("Subject = %q", got)
	}
	if !bytes.Contains(m.Data, []byte("こんにちは, a test body.")) {
		t.Errorf("body not relayed intact:\n%s", m.Data)
	}
	// Postfix added its Received header naming the instance.
	if !strings.Contains(pm.Header.Get("Received"), pf.Hostname()) {
		t.Errorf("Received = %q, want the instance's hostname %q", pm.Header.Get("Received"), pf.Hostname())
	}
	if !strings.Contains(pf.Maillog(), "status=sent") {
		t.Errorf("maillog has no status=sent line:\n%s", pf.Maillog())
	}
}

// A recipient the next hop refuses with 550 produces a bounce in the
// sender's local mailbox, naming the recipient and the refusal; the
// accepted recipient of the same message is delivered.
func TestRefusedRecipientBounces(t *testing.T) {
	t.Parallel()
	sink := StartSink(t, SinkOptions{})
	sink.SetFault(func(cmd, arg string) error {
		if cmd == "RCPT" && arg == "nobody@example.com" {
			return Reply(550, "5.1.1", "sink: no such user here")
		}
		return nil
	})
	const from = "sender@agency.example.go.jp"
	pf := Start(t, Options{
		Name:      "bounce",
		Relayhost: "[127.0.0.1]:" + fmt.Sprint(sink.Port()),
		Mailboxes: []string{from},
	})
	if err := pf.Sendmail(from, []string{"nobody@example.com", "citizen@example.com"}, testMessage(from, "nobody@example.com", "refused")); err != nil {
		t.Fatal(err)
	}
	bounces := pf.WaitMailbox(t, from, 1, 30*time.Second)
	pf.WaitQueueEmpty(t, 30*time.Second)

	b := string(bounces[0].Data)
	for _, want := range []string{"Undelivered Mail Returned to Sender", "nobody@example.com", "550 5.1.1 sink: no such user here", "Subject: refused"} {
		if !strings.Contains(b, want) {
			t.Errorf("bounce lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(b, "citizen@example.com") && strings.Contains(b, "Final-Recipient: rfc822; citizen@example.com") {
		t.Errorf("bounce reports the accepted recipient too:\n%s", b)
	}
	msgs := sink.Messages()
	if len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != "citizen@example.com" {
		t.Errorf("sink got %+v, want one message for citizen@example.com only", msgs)
	}
}

// Mail for a stopped next hop stays queued and is delivered once the next
// hop is back, after a flush: what the fault tests rely on.
func TestDeferredThenDelivered(t *testing.T) {
	t.Parallel()
	sink := StartSink(t, SinkOptions{})
	sink.Stop()
	pf := Start(t, Options{Name: "defer", Relayhost: "[127.0.0.1]:" + fmt.Sprint(sink.Port()),
		Main: map[string]string{"queue_run_delay": "1s", "minimal_backoff_time": "1s", "maximal_backoff_time": "2s"}})
	const from, to = "sender@agency.example.go.jp", "citizen@example.com"
	if err := pf.Sendmail(from, []string{to}, testMessage(from, to, "deferred")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(pf.Maillog(), "status=deferred") {
		if time.Now().After(deadline) {
			t.Fatalf("no deferral logged:\n%s", pf.Maillog())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n, err := pf.QueueLen(); err != nil || n != 1 {
		t.Fatalf("QueueLen = %d, %v; want 1 deferred message", n, err)
	}
	if err := sink.Restart(); err != nil {
		t.Fatal(err)
	}
	pf.WaitQueueEmptyFlushing(t, 30*time.Second)
	if got := len(sink.Messages()); got != 1 {
		t.Fatalf("sink got %d messages, want 1", got)
	}
}

// Stop then Start brings the same instance back on the same port.
func TestRestart(t *testing.T) {
	t.Parallel()
	pf := Start(t, Options{Name: "restart"})
	if err := pf.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", pf.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	greeting, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, "220 "+pf.Hostname()) {
		t.Fatalf("greeting after restart = %q, %v; want 220 %s", greeting, err, pf.Hostname())
	}
}
