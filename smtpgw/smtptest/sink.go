package smtptest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Sink is an SMTP server that takes every message and drops it, as
// Postfix's smtp-sink does: the upstream of the load test (`make bench`),
// where it shares the cores with the gateway it measures. Server does the
// same on go-smtp, whose DATA reader goes a byte at a time; Sink reads a
// line at a time and answers pipelined commands in one write (RFC 2920
// 3.2), so that it costs the load test little. It offers PIPELINING,
// 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES and, if asked, STARTTLS; it
// checks nothing but the order MAIL, RCPT, DATA, and counts the messages
// whose end (".", RFC 5321 4.5.2) it read.
type Sink struct {
	Addr string

	ln     net.Listener
	tls    *tls.Config
	root   []byte
	count  atomic.Int64
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// NewSink starts a Sink on 127.0.0.1, with STARTTLS (a self-signed
// certificate for 127.0.0.1, RootPEM) if startTLS. It stops at the end of
// the test.
func NewSink(tb testing.TB, startTLS bool) *Sink {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &Sink{Addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}}
	if startTLS {
		cert, _ := selfSigned(tb)
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}}
		s.root = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	}
	s.wg.Add(1)
	go s.accept()
	tb.Cleanup(s.Close)
	return s
}

// RootPEM is the certificate to trust for STARTTLS (nil without it).
func (s *Sink) RootPEM() []byte { return s.root }

// Count is how many messages the sink has taken.
func (s *Sink) Count() int { return int(s.count.Load()) }

// Close stops the sink and closes every connection.
func (s *Sink) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

func (s *Sink) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// idle bounds the wait for each command or line, so that a session ends
// by itself.
const idle = time.Minute

func (s *Sink) serve(c net.Conn) {
	r, w := bufio.NewReaderSize(c, 64<<10), bufio.NewWriter(c)
	secure := false
	// reply queues a reply; it goes out before the next read that would
	// wait for the client.
	reply := func(line string) { w.WriteString(line) }
	readLine := func() ([]byte, error) {
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return nil, err
			}
		}
		c.SetDeadline(time.Now().Add(idle))
		return r.ReadSlice('\n')
	}
	reply("220 sink.example.com ESMTP smtptest.Sink\r\n")
	mail, rcpt := false, false
	for {
		line, err := readLine()
		if err != nil {
			return // ErrBufferFull too: no command is 64 KB long
		}
		verb := line
		if i := bytes.IndexAny(line, " \r\n"); i >= 0 {
			verb = line[:i]
		}
		switch string(bytes.ToUpper(verb)) {
		case "EHLO", "HELO":
			mail, rcpt = false, false
			reply("250-sink.example.com\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n")
			if s.tls != nil && !secure {
				reply("250-STARTTLS\r\n")
			}
			reply("250 ENHANCEDSTATUSCODES\r\n")
		case "STARTTLS":
			if s.tls == nil || secure {
				reply("502 5.5.1 no STARTTLS here\r\n")
				continue
			}
			if r.Buffered() > 0 { // RFC 3207 4: nothing may follow it
				return
			}
			reply("220 2.0.0 ready to start TLS\r\n")
			if err := w.Flush(); err != nil {
				return
			}
			tc := tls.Server(c, s.tls)
			c.SetDeadline(time.Now().Add(idle))
			if err := tc.Handshake(); err != nil {
				return
			}
			c, secure = tc, true
			r.Reset(tc)
			w.Reset(tc)
			mail, rcpt = false, false
		case "MAIL":
			mail, rcpt = true, false
			reply("250 2.1.0 ok\r\n")
		case "RCPT":
			if !mail {
				reply("503 5.5.1 MAIL first\r\n")
				continue
			}
			rcpt = true
			reply("250 2.1.5 ok\r\n")
		case "DATA":
			if !rcpt {
				reply("503 5.5.1 RCPT first\r\n")
				continue
			}
			reply("354 end with <CRLF>.<CRLF>\r\n")
			if err := skipData(readLine); err != nil {
				return
			}
			s.count.Add(1)
			mail, rcpt = false, false
			reply("250 2.0.0 ok: dropped\r\n")
		case "RSET":
			mail, rcpt = false, false
			reply("250 2.0.0 ok\r\n")
		case "NOOP":
			reply("250 2.0.0 ok\r\n")
		case "QUIT":
			reply("221 2.0.0 bye\r\n")
			w.Flush()
			return
		default:
			reply("502 5.5.2 command not recognised\r\n")
		}
	}
}

// skipData reads the content of DATA up to its end, a line that is a
// single "." (RFC 5321 4.5.2), a line at a time.
func skipData(readLine func() ([]byte, error)) error {
	start := true // at the start of a line
	for {
		line, err := readLine()
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			start = false // the rest of a long line follows
			continue
		case errors.Is(err, io.EOF):
			return io.ErrUnexpectedEOF
		case err != nil:
			return err
		}
		if start && len(line) == 3 && line[0] == '.' && line[1] == '\r' {
			return nil
		}
		start = true
	}
}
