package smtpgw

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/textproto"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWriteTimeout: a client that pipelines commands and never reads the
// replies fills the socket buffers; the gateway's next reply cannot be
// written, and the session is closed within about WriteTimeout (not kept
// until ReadTimeout, replies lost, as go-smtp alone would). Another client
// is served meanwhile. In clear and after STARTTLS.
func TestWriteTimeout(t *testing.T) {
	t.Parallel()
	t.Run("plain", func(t *testing.T) { t.Parallel(); testWriteTimeout(t, false) })
	t.Run("starttls", func(t *testing.T) { t.Parallel(); testWriteTimeout(t, true) })
}

func testWriteTimeout(t *testing.T, useTLS bool) {
	const writeTimeout = 500 * time.Millisecond
	e := newEnv(t, func(o *Options) {
		o.Limits.WriteTimeout = writeTimeout
		o.Limits.ReadTimeout = time.Minute // so that only the write timeout can end it
	})

	// A tiny receive buffer, set before connecting, so that the window
	// the client offers stays small.
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024) })
		if err != nil {
			return err
		}
		return serr
	}}
	stuck, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stuck.Close() })
	// The stuck client's connection, as the gateway holds it.
	var gc *gwConn
	for wait := time.Now().Add(5 * time.Second); gc == nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(wait) {
			t.Fatal("the gateway did not take the connection")
		}
		e.gw.mu.Lock()
		for c := range e.gw.conns {
			gc = c
		}
		e.gw.mu.Unlock()
	}
	open := func() bool {
		e.gw.mu.Lock()
		defer e.gw.mu.Unlock()
		_, ok := e.gw.conns[gc]
		return ok
	}
	var w io.Writer = stuck
	if useTLS {
		stuck.SetDeadline(time.Now().Add(10 * time.Second))
		tp := textproto.NewConn(stuck)
		for _, step := range []struct {
			cmd  string
			code int
		}{{"", 220}, {"EHLO client.example.go.jp", 250}, {"STARTTLS", 220}} {
			if step.cmd != "" {
				tp.PrintfLine("%s", step.cmd)
			}
			if _, _, err := tp.ReadResponse(step.code); err != nil {
				t.Fatalf("%q: %v", step.cmd, err)
			}
		}
		tc := tls.Client(stuck, &tls.Config{RootCAs: e.roots, ServerName: "127.0.0.1"})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		stuck.SetDeadline(time.Time{})
		w = tc
	}

	// Pipeline NOOPs (answered by go-smtp, not counted against
	// MaxCommandsWithoutMail) and never read. The writer stops when the
	// gateway closes the connection (reset) or after 30 s.
	start := time.Now()
	wrote := make(chan error, 1)
	go func() {
		chunk := bytes.Repeat([]byte("NOOP\r\n"), 10000)
		stuck.SetWriteDeadline(time.Now().Add(30 * time.Second))
		for {
			if _, err := w.Write(chunk); err != nil {
				wrote <- err
				return
			}
		}
	}()

	// Time the stuck session's end from here on.
	gone := make(chan time.Duration, 1)
	go func() {
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if !open() {
				gone <- time.Since(start)
				return
			}
		}
		close(gone)
	}()

	// Meanwhile another client is served normally.
	time.Sleep(writeTimeout / 2)
	c := e.dial()
	c.expect(250, "EHLO client.example.go.jp")
	if code, text := c.send("taro@mhlw.go.jp", []string{"citizen@example.com"}, message("taro@mhlw.go.jp")); code != 250 {
		t.Fatalf("other client: %d %s", code, text)
	}

	// The stuck session goes, after its reply has waited WriteTimeout:
	// filling the buffers takes a moment, then one WriteTimeout. Far less
	// than the one-minute ReadTimeout that ends it without the fix.
	took, ok := <-gone
	if !ok {
		t.Fatalf("client that does not read still connected after 20s (write timeout %v)", writeTimeout)
	}
	t.Logf("stuck client disconnected after %v", took.Round(time.Millisecond))
	if took < writeTimeout || took > writeTimeout+5*time.Second {
		t.Fatalf("disconnected after %v, want the write timeout %v plus the time to fill the buffers", took, writeTimeout)
	}
	// The client sees the connection gone: its writes fail.
	select {
	case err := <-wrote:
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("client writes still blocked after the gateway closed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client writes neither fail nor block after the gateway closed")
	}
	// And the other client still works on its open session.
	c.expect(250, "NOOP")
	if !strings.Contains(e.logs.String(), `"result":"accepted"`) {
		t.Fatal("no accepted transaction logged")
	}
}
