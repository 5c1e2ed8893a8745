package postfixtest

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// SinkOptions configure a Sink. The zero value is a plain-text sink that
// accepts everything, greeting as "sink.test.invalid".
type SinkOptions struct {
	// Hostname is the greeting and EHLO name. It must differ from the
	// sending Postfix's myhostname (mail loop detection). Default
	// "sink.test.invalid".
	Hostname string
	// TLSConfig, if set, enables STARTTLS.
	TLSConfig *tls.Config
	// Dir, if set, receives each accepted message as a file
	// (written to a temporary name, then renamed).
	Dir string
	// MaxMessageBytes caps a message. Default 64 MiB.
	MaxMessageBytes int64
}

// Received is one message a Sink accepted.
type Received struct {
	From string
	To   []string
	Data []byte
	At   time.Time
}

// FaultFunc decides the reply to one command: cmd is "MAIL", "RCPT" or
// "DATA" (called after the whole message was read), arg the address (""
// for DATA). A non-nil error, typically a *smtp.SMTPError, is the reply;
// nil lets the command succeed.
type FaultFunc func(cmd, arg string) error

// Sink is a capturing SMTP server on loopback, a stand-in for "the
// internet" behind a relay. It can be stopped and restarted on the same
// port and told to fail commands, for fault tests.
type Sink struct {
	opts SinkOptions
	addr string

	mu     sync.Mutex
	srv    *smtp.Server
	ln     net.Listener
	msgs   []Received
	fault  FaultFunc
	nfile  atomic.Int64
	closed bool
	// reserved is the descriptor holding the port while stopped, or -1.
	reserved int
}

// StartSink starts a sink on a free loopback port; t.Cleanup stops it.
func StartSink(t testing.TB, opts SinkOptions) *Sink {
	t.Helper()
	if opts.Hostname == "" {
		opts.Hostname = "sink.test.invalid"
	}
	if opts.MaxMessageBytes == 0 {
		opts.MaxMessageBytes = 64 << 20
	}
	s := &Sink{opts: opts, reserved: -1}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("postfixtest: sink: %v", err)
	}
	s.addr = l.Addr().String()
	s.serve(l)
	t.Cleanup(func() {
		s.stop(false)
		s.mu.Lock()
		if s.reserved >= 0 {
			_ = syscall.Close(s.reserved)
			s.reserved = -1
		}
		s.mu.Unlock()
	})
	return s
}

// Addr is the sink's "127.0.0.1:PORT".
func (s *Sink) Addr() string { return s.addr }

// Port is the sink's port.
func (s *Sink) Port() int {
	_, p, _ := net.SplitHostPort(s.addr)
	n, _ := strconv.Atoi(p)
	return n
}

func (s *Sink) serve(l net.Listener) {
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &sinkSession{s: s}, nil
	}))
	srv.Domain = s.opts.Hostname
	srv.TLSConfig = s.opts.TLSConfig
	srv.MaxMessageBytes = s.opts.MaxMessageBytes
	srv.MaxRecipients = 1000
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = discardLogger{}
	s.mu.Lock()
	s.srv = srv
	s.ln = l
	s.closed = false
	s.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

// Stop closes the listener and every connection: the next hop is down and
// connections to it are refused. The port stays reserved (bound, not
// listening) so that no other test can take it before Restart.
func (s *Sink) Stop() {
	s.stop(true)
}

func (s *Sink) stop(reserve bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	// Close the listener too: Serve may not have registered it yet.
	_ = s.ln.Close()
	_ = s.srv.Close()
	if reserve && s.reserved < 0 {
		s.reserved = reservePort(s.Port())
	}
}

// Restart listens again on the same port after Stop.
func (s *Sink) Restart() error {
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if l, err = net.Listen("tcp", s.addr); err == nil {
			s.serve(l)
			s.mu.Lock()
			if s.reserved >= 0 {
				_ = syscall.Close(s.reserved)
				s.reserved = -1
			}
			s.mu.Unlock()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("postfixtest: sink restart on %s: %w", s.addr, err)
}

// reservePort binds a TCP socket to 127.0.0.1:port without listening on
// it: connections are refused, and the kernel does not hand the port to
// anyone else. Both sides set SO_REUSEADDR, so Restart can listen on it
// again. It returns the descriptor, or -1 if the port could not be held.
func reservePort(port int) int {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	if syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1) != nil ||
		syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}) != nil {
		_ = syscall.Close(fd)
		return -1
	}
	return fd
}

// SetFault installs f (nil: accept everything) for the following
// commands.
func (s *Sink) SetFault(f FaultFunc) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

func (s *Sink) check(cmd, arg string) error {
	s.mu.Lock()
	f := s.fault
	s.mu.Unlock()
	if f == nil {
		return nil
	}
	return f(cmd, arg)
}

// Messages returns a copy of the list of accepted messages.
func (s *Sink) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.msgs...)
}

// Wait waits up to timeout until the sink accepted at least n messages.
func (s *Sink) Wait(t testing.TB, n int, timeout time.Duration) []Received {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msgs := s.Messages()
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfixtest: sink %s: %v: %d message(s) after %s, want %d", s.addr, ErrTimeout, len(msgs), timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Sink) store(r Received) error {
	if s.opts.Dir != "" {
		n := s.nfile.Add(1)
		name := fmt.Sprintf("%06d.eml", n)
		tmp := filepath.Join(s.opts.Dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, r.Data, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(s.opts.Dir, name)); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, r)
	s.mu.Unlock()
	return nil
}

type sinkSession struct {
	s    *Sink
	from string
	to   []string
}

var _ smtp.Session = (*sinkSession)(nil)

func (ss *sinkSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *sinkSession) Logout() error { return nil }

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	if err := ss.s.check("MAIL", from); err != nil {
		return err
	}
	ss.from, ss.to = from, nil
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := ss.s.check("RCPT", to); err != nil {
		return err
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		return err
	}
	if err := ss.s.check("DATA", ""); err != nil {
		return err
	}
	err := ss.s.store(Received{From: ss.from, To: append([]string(nil), ss.to...), Data: buf.Bytes(), At: time.Now()})
	if err != nil {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "sink: cannot store: " + err.Error()}
	}
	return nil
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...interface{}) {}
func (discardLogger) Println(...interface{})        {}

// Reply is a convenience to build a FaultFunc reply: Reply(550, "5.1.1",
// "no such user").
func Reply(code int, enhanced, text string) error {
	var ec smtp.EnhancedCode
	if _, err := fmt.Sscanf(enhanced, "%d.%d.%d", &ec[0], &ec[1], &ec[2]); err != nil {
		ec = smtp.NoEnhancedCode
	}
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: text}
}
