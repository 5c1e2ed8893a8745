package audittest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// SMTPConfig says how an SMTPServer behaves.
type SMTPConfig struct {
	// Name is the host name in the greeting. Empty means "mx.example".
	Name string
	// Busy makes the server greet with 421 and close (RFC 5321 3.8).
	Busy bool
	// NoSTARTTLS leaves STARTTLS out of the EHLO reply.
	NoSTARTTLS bool
	// Cert is the certificate for STARTTLS (Go's crypto/tls).
	Cert tls.Certificate
	// MinVersion and MaxVersion bound the TLS versions; zero means Go's
	// defaults. MinVersion tls.VersionTLS10 with MaxVersion
	// tls.VersionTLS11 makes an outdated server.
	MinVersion, MaxVersion uint16
	// AcceptWeak lists what the server accepts from a ClientHello that
	// offers nothing better: "SSLv3" (client_version 3.0), "RC4" or
	// "3DES" cipher suites. Such a hello gets a ServerHello choosing it,
	// built at the handshake-record level (Go's TLS has none of these),
	// and the connection ends there. Any other hello goes to crypto/tls.
	AcceptWeak []string
}

// SMTPServer is an SMTP server on 127.0.0.1:0 that speaks just enough
// (EHLO, STARTTLS, QUIT) for the audit's probes.
type SMTPServer struct {
	Addr string
	cfg  SMTPConfig

	mu        sync.Mutex
	conns     int
	active    int
	maxActive int
	accepted  []time.Time
}

// NewSMTPServer starts a server; it stops in tb.Cleanup.
func NewSMTPServer(tb testing.TB, cfg SMTPConfig) *SMTPServer {
	tb.Helper()
	if cfg.Name == "" {
		cfg.Name = "mx.example"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &SMTPServer{Addr: ln.Addr().String(), cfg: cfg}
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns++
			s.active++
			s.maxActive = max(s.maxActive, s.active)
			s.accepted = append(s.accepted, time.Now())
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { s.mu.Lock(); s.active--; s.mu.Unlock() }()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				go func() { <-done; c.Close() }()
				s.serve(c)
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		close(done)
		wg.Wait()
	})
	return s
}

// Conns is how many connections the server accepted.
func (s *SMTPServer) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// MaxActive is the most connections the server held at once.
func (s *SMTPServer) MaxActive() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxActive
}

// Accepted returns when each connection was accepted.
func (s *SMTPServer) Accepted() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.accepted...)
}

func (s *SMTPServer) serve(c net.Conn) {
	if s.cfg.Busy {
		io.WriteString(c, "421 4.3.2 "+s.cfg.Name+" busy, try later\r\n")
		return
	}
	io.WriteString(c, "220 "+s.cfg.Name+" ESMTP audittest\r\n")
	br := bufio.NewReader(c)
	var w io.Writer = c
	tlsOn := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.TrimSpace(line))
		if i := strings.IndexByte(verb, ' '); i >= 0 {
			verb = verb[:i]
		}
		switch verb {
		case "EHLO", "HELO":
			ext := "250-" + s.cfg.Name + "\r\n250-PIPELINING\r\n"
			if !s.cfg.NoSTARTTLS && !tlsOn {
				ext += "250-STARTTLS\r\n"
			}
			io.WriteString(w, ext+"250 8BITMIME\r\n")
		case "STARTTLS":
			if s.cfg.NoSTARTTLS || tlsOn {
				io.WriteString(w, "502 5.5.1 not here\r\n")
				continue
			}
			io.WriteString(w, "220 2.0.0 go ahead\r\n")
			tc, ok := s.handshake(c, br)
			if !ok {
				return
			}
			br, w, tlsOn = bufio.NewReader(tc), tc, true
		case "QUIT":
			io.WriteString(w, "221 2.0.0 bye\r\n")
			return
		default:
			io.WriteString(w, "502 5.5.2 not implemented\r\n")
		}
	}
}

// weak cipher suites by name.
var weakSuites = map[string][]uint16{
	"RC4":  {0xc011, 0xc007, 0x0005, 0x0004},
	"3DES": {0xc012, 0xc008, 0x0016, 0x000a},
}

// handshake reads the ClientHello record; if it offers only what
// AcceptWeak allows, answers with a ServerHello choosing it and ends;
// otherwise replays the hello into crypto/tls.
func (s *SMTPServer) handshake(c net.Conn, br *bufio.Reader) (*tls.Conn, bool) {
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return nil, false
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, false
	}
	if version, suites, ok := parseClientHello(body); ok {
		for _, w := range s.cfg.AcceptWeak {
			if w == "SSLv3" && version == 0x0300 {
				c.Write(serverHello(0x0300, suites[0]))
				return nil, false
			}
			for _, ws := range weakSuites[w] {
				for _, offered := range suites {
					if offered == ws && version >= 0x0301 && onlyLegacy(suites) {
						c.Write(serverHello(0x0303, ws))
						return nil, false
					}
				}
			}
		}
	}
	rest, _ := br.Peek(br.Buffered())
	pre := append(append(append([]byte(nil), hdr...), body...), rest...)
	br.Discard(len(rest))
	tc := tls.Server(&prefixConn{Conn: c, r: io.MultiReader(bytes.NewReader(pre), c)}, &tls.Config{
		Certificates: []tls.Certificate{s.cfg.Cert},
		MinVersion:   s.cfg.MinVersion,
		MaxVersion:   s.cfg.MaxVersion,
	})
	if err := tc.Handshake(); err != nil {
		return nil, false
	}
	return tc, true
}

// onlyLegacy reports whether a hello offers no AEAD suite: a modern client
// would get a modern suite from this server.
func onlyLegacy(suites []uint16) bool {
	for _, s := range suites {
		switch s {
		case 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02c, 0xc02f, 0xc030, 0xcca8, 0xcca9:
			return false
		}
	}
	return true
}

func parseClientHello(b []byte) (uint16, []uint16, bool) {
	if len(b) < 4+2+32+1 || b[0] != 1 {
		return 0, nil, false
	}
	p := b[4:]
	version := uint16(p[0])<<8 | uint16(p[1])
	p = p[34:]
	sid := int(p[0])
	if len(p) < 1+sid+2 {
		return 0, nil, false
	}
	p = p[1+sid:]
	n := int(p[0])<<8 | int(p[1])
	p = p[2:]
	if len(p) < n || n%2 != 0 || n == 0 {
		return 0, nil, false
	}
	var suites []uint16
	for i := 0; i < n; i += 2 {
		suites = append(suites, uint16(p[i])<<8|uint16(p[i+1]))
	}
	return version, suites, true
}

func serverHello(version, suite uint16) []byte {
	body := []byte{byte(version >> 8), byte(version)}
	body = append(body, make([]byte, 32)...)
	body = append(body, 0, byte(suite>>8), byte(suite), 0)
	hs := append([]byte{2, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	return append([]byte{0x16, byte(version >> 8), byte(version), byte(len(hs) >> 8), byte(len(hs))}, hs...)
}

type prefixConn struct {
	net.Conn
	r io.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }
