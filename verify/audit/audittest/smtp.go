package audittest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"slices"
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
	// and the connection ends there. "SSLv2" answers an SSLv2
	// CLIENT-HELLO with a well-formed SSLv2 SERVER-HELLO (Cert's leaf,
	// the first cipher-spec both sides have) and ends. Any other hello
	// goes to crypto/tls, which answers an SSLv2 hello with a
	// protocol_version alert.
	AcceptWeak []string
	// DropSTARTTLSFrom makes connection number DropSTARTTLSFrom (1 is
	// the first) and every later one close, without a reply, when the
	// client says STARTTLS: a server that goes away mid-audit. Zero
	// never drops.
	DropSTARTTLSFrom int
	// StallTLSFrom makes connection number StallTLSFrom and every later
	// one, after the STARTTLS go-ahead, read and say nothing until the
	// client leaves: a hello that times out. Zero never stalls.
	StallTLSFrom int
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
			n := s.conns
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { s.mu.Lock(); s.active--; s.mu.Unlock() }()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				go func() { <-done; c.Close() }()
				s.serve(c, n)
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

// serve speaks SMTP on c, the n-th connection (from 1).
func (s *SMTPServer) serve(c net.Conn, n int) {
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
			if s.cfg.DropSTARTTLSFrom > 0 && n >= s.cfg.DropSTARTTLSFrom {
				return
			}
			io.WriteString(w, "220 2.0.0 go ahead\r\n")
			if s.cfg.StallTLSFrom > 0 && n >= s.cfg.StallTLSFrom {
				io.Copy(io.Discard, br)
				return
			}
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
	first, err := br.Peek(2)
	if err != nil {
		return nil, false
	}
	var hdr, body []byte
	if first[0]&0x80 != 0 {
		// SSL 2.0 spec 1.2: a 2-byte record header with the high bit set.
		hdr = make([]byte, 2)
		io.ReadFull(br, hdr)
		body = make([]byte, int(hdr[0]&0x7f)<<8|int(hdr[1]))
		if _, err := io.ReadFull(br, body); err != nil {
			return nil, false
		}
		if kinds, ok := parseSSLv2ClientHello(body); ok && slices.Contains(s.cfg.AcceptWeak, "SSLv2") {
			if kind, ok := firstCommon(kinds, sslv2Kinds); ok && len(s.cfg.Cert.Certificate) > 0 {
				c.Write(sslv2ServerHello(s.cfg.Cert.Certificate[0], kind))
			}
			return nil, false
		}
		return s.replay(c, br, hdr, body)
	}
	hdr = make([]byte, 5)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return nil, false
	}
	body = make([]byte, int(hdr[3])<<8|int(hdr[4]))
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
	return s.replay(c, br, hdr, body)
}

// replay hands the hello already read, and whatever followed it, to
// crypto/tls.
func (s *SMTPServer) replay(c net.Conn, br *bufio.Reader, hdr, body []byte) (*tls.Conn, bool) {
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

// sslv2Kinds are the SSL 2.0 cipher kinds the server "supports", in its
// order of preference (SSL 2.0 spec, Appendix C).
var sslv2Kinds = []uint32{0x0700c0, 0x010080, 0x030080, 0x060040}

// parseSSLv2ClientHello parses an SSL 2.0 CLIENT-HELLO body (SSL 2.0
// spec, 2.5) with version 0x0002 and returns its cipher kinds.
func parseSSLv2ClientHello(b []byte) ([]uint32, bool) {
	if len(b) < 9 || b[0] != 1 || b[1] != 0 || b[2] != 2 {
		return nil, false
	}
	specs := int(b[3])<<8 | int(b[4])
	sid := int(b[5])<<8 | int(b[6])
	chal := int(b[7])<<8 | int(b[8])
	if specs == 0 || specs%3 != 0 || 9+specs+sid+chal != len(b) {
		return nil, false
	}
	var kinds []uint32
	for i := 9; i < 9+specs; i += 3 {
		kinds = append(kinds, uint32(b[i])<<16|uint32(b[i+1])<<8|uint32(b[i+2]))
	}
	return kinds, true
}

func firstCommon(offered, ours []uint32) (uint32, bool) {
	for _, k := range ours {
		if slices.Contains(offered, k) {
			return k, true
		}
	}
	return 0, false
}

// sslv2ServerHello is an SSL 2.0 SERVER-HELLO (SSL 2.0 spec, 2.6): no
// session-id hit, an X.509 certificate, one cipher kind, a 16-byte
// connection-id, behind a 2-byte record header.
func sslv2ServerHello(cert []byte, kind uint32) []byte {
	connID := bytes.Repeat([]byte{0x5a}, 16)
	body := []byte{
		4,    // MSG-SERVER-HELLO
		0,    // SESSION-ID-HIT
		1,    // CERTIFICATE-TYPE: SSL_CT_X509_CERTIFICATE
		0, 2, // SERVER-VERSION
		byte(len(cert) >> 8), byte(len(cert)),
		0, 3, // CIPHER-SPECS-LENGTH
		0, byte(len(connID)),
	}
	body = append(body, cert...)
	body = append(body, byte(kind>>16), byte(kind>>8), byte(kind))
	body = append(body, connID...)
	return append([]byte{0x80 | byte(len(body)>>8), byte(len(body))}, body...)
}

type prefixConn struct {
	net.Conn
	r io.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }
