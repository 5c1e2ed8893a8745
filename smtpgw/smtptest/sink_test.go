package smtptest

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestSink: go-smtp's client sends through STARTTLS; the sink counts a
// message only once its end has been read, whatever the content holds
// (a line that is ".." once stuffed, a line longer than its buffer, a
// "." inside a line), and refuses DATA out of order.
func TestSink(t *testing.T) {
	t.Parallel()
	s := NewSink(t, true)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.RootPEM()) {
		t.Fatal("no root")
	}
	c, err := smtp.DialStartTLS(s.Addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.go.jp"); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.TLSConnectionState(); !ok {
		t.Fatal("not over TLS")
	}
	if ok, _ := c.Extension("PIPELINING"); !ok {
		t.Fatal("no PIPELINING after STARTTLS")
	}
	if _, err := c.Data(); err == nil {
		t.Fatal("DATA before MAIL accepted")
	}
	bodies := []string{
		"Subject: one\r\n\r\n.\r\nend . of line\r\n" + strings.Repeat("x", 200<<10) + "\r\n.",
		"Subject: two\r\n\r\nshort\r\n",
	}
	for i, body := range bodies {
		if err := c.Mail("taro@example.go.jp", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("hanako@example.com", nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, body); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if got := s.Count(); got != i+1 {
			t.Fatalf("after message %d the sink counts %d", i, got)
		}
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	// A session that stops mid-DATA is not counted.
	c2, err := smtp.Dial(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c2.Hello("client.example.go.jp")
	c2.Mail("taro@example.go.jp", nil)
	c2.Rcpt("hanako@example.com", nil)
	w, err := c2.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: cut\r\n\r\nhalf")
	c2.Close()
	time.Sleep(50 * time.Millisecond)
	if got := s.Count(); got != 2 {
		t.Fatalf("a cut message was counted: %d", got)
	}
}
