package audit

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"net/textproto"
	"strconv"
	"sync"
	"time"
)

// probeResult is what one MX host said, probed once per run.
type probeResult struct {
	host, addr string
	// err: could not test (no address, connection failed, timeout, 4xx).
	err      error
	starttls bool
	// tlsErr: STARTTLS was offered but the handshake failed.
	tlsErr  error
	version uint16
	cipher  uint16
	chain   []*x509.Certificate
	// certErr: the chain does not verify for the host name.
	certErr error
	// weak lists what the server accepted of SSLv3, RC4, 3DES;
	// weakErr says a weak probe could not run.
	weak    []string
	weakErr error
}

type probeCall struct {
	done chan struct{}
	res  *probeResult
}

// hostGate serialises connections to one address and spaces them.
type hostGate struct {
	mu   sync.Mutex
	last time.Time
}

func (a *Auditor) gate(addr string) *hostGate {
	a.mu.Lock()
	defer a.mu.Unlock()
	g, ok := a.hosts[addr]
	if !ok {
		g = &hostGate{}
		a.hosts[addr] = g
	}
	return g
}

// connect dials addr through its gate: one connection at a time per
// address, ProbeInterval apart. release must be called when done.
func (a *Auditor) connect(ctx context.Context, addr string) (net.Conn, func(), error) {
	g := a.gate(addr)
	g.mu.Lock()
	release := func() { g.last = time.Now(); g.mu.Unlock() }
	if wait := time.Until(g.last.Add(a.opts.ProbeInterval)); wait > 0 && a.opts.ProbeInterval > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			release()
			return nil, nil, ctx.Err()
		}
	}
	d := &net.Dialer{Timeout: a.opts.ProbeTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		release()
		return nil, nil, err
	}
	dl := time.Now().Add(a.opts.ProbeTimeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(dl) {
		dl = cd
	}
	c.SetDeadline(dl)
	return c, release, nil
}

// probe returns host's probe result, probing at most once per run.
func (a *Auditor) probe(ctx context.Context, host string) *probeResult {
	a.mu.Lock()
	if pc, ok := a.probes[host]; ok {
		a.mu.Unlock()
		select {
		case <-pc.done:
			return pc.res
		case <-ctx.Done():
			return &probeResult{host: host, err: ctx.Err()}
		}
	}
	pc := &probeCall{done: make(chan struct{})}
	a.probes[host] = pc
	a.mu.Unlock()
	pc.res = a.doProbe(ctx, host)
	close(pc.done)
	return pc.res
}

func (a *Auditor) smtpAddr(ctx context.Context, host string) (string, error) {
	if addr, ok := a.opts.SMTPAddrs[host]; ok {
		return addr, nil
	}
	ips, err := a.r.LookupIP(ctx, host)
	if err != nil {
		return "", err
	}
	if len(ips.Records) == 0 {
		return "", fmt.Errorf("%s has no address", host)
	}
	return net.JoinHostPort(ips.Records[0], strconv.Itoa(a.opts.SMTPPort)), nil
}

func (a *Auditor) doProbe(ctx context.Context, host string) *probeResult {
	res := &probeResult{host: host}
	addr, err := a.smtpAddr(ctx, host)
	if err != nil {
		res.err = err
		return res
	}
	res.addr = addr
	conn, release, err := a.connect(ctx, addr)
	if err != nil {
		res.err = fmt.Errorf("connecting to %s: %w", addr, err)
		return res
	}
	func() {
		defer release()
		defer conn.Close()
		c, err := smtp.NewClient(conn, host)
		if err != nil {
			res.err = fmt.Errorf("greeting from %s: %w", addr, err) // a 421 lands here
			return
		}
		if err := c.Hello(a.opts.HeloName); err != nil {
			res.err = fmt.Errorf("EHLO to %s: %w", addr, err)
			return
		}
		res.starttls, _ = c.Extension("STARTTLS")
		if !res.starttls {
			c.Quit()
			return
		}
		cfg := &tls.Config{
			ServerName: host,
			// Verified below, so that an invalid certificate is reported
			// and DANE can still judge the chain.
			InsecureSkipVerify: true,
			MinVersion:         tls.VersionTLS10, // to see servers stuck at TLS 1.0/1.1
		}
		// RFC 3207 4: STARTTLS, 220, then the handshake. Said by hand
		// rather than with c.StartTLS so that a refusal (454) or a
		// connection lost before the 220 is "could not test", and only a
		// failed handshake after it says the server's TLS is broken.
		id, err := c.Text.Cmd("STARTTLS")
		if err == nil {
			c.Text.StartResponse(id)
			_, _, err = c.Text.ReadResponse(220)
			c.Text.EndResponse(id)
		}
		if err != nil {
			res.err = fmt.Errorf("STARTTLS at %s: %w", addr, err)
			return
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || ctx.Err() != nil {
				res.err = fmt.Errorf("TLS handshake with %s: %w", addr, err) // could not test
			} else {
				res.tlsErr = err
			}
			return
		}
		st := tc.ConnectionState()
		res.version, res.cipher, res.chain = st.Version, st.CipherSuite, st.PeerCertificates
		io.WriteString(tc, "QUIT\r\n") // best effort: the probe has what it came for
	}()
	if len(res.chain) > 0 {
		inter := x509.NewCertPool()
		for _, ic := range res.chain[1:] {
			inter.AddCert(ic)
		}
		_, res.certErr = res.chain[0].Verify(x509.VerifyOptions{
			DNSName: host, Roots: a.opts.RootCAs, Intermediates: inter,
			CurrentTime: a.opts.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
	}
	if res.starttls && res.err == nil {
		for _, w := range weakProbes {
			ok, err := a.weakProbe(ctx, addr, host, w)
			if err != nil {
				res.weakErr = fmt.Errorf("%s probe: %w", w.name, err)
				break
			}
			if ok {
				res.weak = append(res.weak, w.name)
			}
		}
	}
	return res
}

// weakProbe is one handshake built by hand, offering only what Go's TLS
// stack will not: SSLv2, SSLv3, or RC4 or 3DES cipher suites.
type weakProbeSpec struct {
	name    string
	version uint16
	// suites are TLS cipher suites; for SSLv2 (version 0x0002), 3-byte
	// SSLv2 cipher kinds.
	suites []uint32
}

// sslv2Version is the SSL 2.0 protocol version (SSL 2.0 spec, Appendix
// C; RFC 6176 prohibits it).
const sslv2Version = 0x0002

// sslv2CipherKinds are the SSL 2.0 cipher kinds (SSL 2.0 spec, Appendix
// C), all of them offered: a server that speaks SSLv2 at all picks one.
var sslv2CipherKinds = []uint32{
	0x010080, // SSL_CK_RC4_128_WITH_MD5
	0x0700c0, // SSL_CK_DES_192_EDE3_CBC_WITH_MD5
	0x030080, // SSL_CK_RC2_128_CBC_WITH_MD5
	0x050080, // SSL_CK_IDEA_128_CBC_WITH_MD5
	0x060040, // SSL_CK_DES_64_CBC_WITH_MD5
	0x020080, // SSL_CK_RC4_128_EXPORT40_WITH_MD5
	0x040080, // SSL_CK_RC2_128_CBC_EXPORT40_WITH_MD5
}

var weakProbes = []weakProbeSpec{
	// RFC 6176: SSL 2.0 must never be negotiated (BOD 18-01: no SSLv2).
	{"SSLv2", sslv2Version, sslv2CipherKinds},
	// RFC 7568: SSLv3 must not be used. Offer its usual suites.
	{"SSLv3", 0x0300, []uint32{0x000a, 0x0005, 0x0004, 0x002f, 0x0035}},
	// RFC 7465: RC4 must not be used.
	{"RC4", 0x0303, []uint32{0xc011, 0xc007, 0x0005, 0x0004}},
	// 3DES (Sweet32, CVE-2016-2183; BOD 18-01).
	{"3DES", 0x0303, []uint32{0xc012, 0xc008, 0x0016, 0x000a}},
}

// weakProbe opens an SMTP session, says STARTTLS and sends a ClientHello
// offering only w's version and suites (for SSLv2, an SSLv2 CLIENT-HELLO).
// The server accepted if it answers with a ServerHello choosing them (an
// SSLv2 SERVER-HELLO); an alert, a closed connection or anything else is
// a refusal. A failure before the STARTTLS go-ahead, or a timeout, is an
// error: the probe could not run.
func (a *Auditor) weakProbe(ctx context.Context, addr, host string, w weakProbeSpec) (bool, error) {
	conn, release, err := a.connect(ctx, addr)
	if err != nil {
		return false, err
	}
	defer release()
	defer conn.Close()
	br := bufio.NewReader(conn)
	tp := textproto.NewConn(conn)
	read := func(want int) error {
		_, _, err := textproto.NewReader(br).ReadResponse(want)
		return err
	}
	if err := read(220); err != nil {
		return false, err
	}
	if err := tp.PrintfLine("EHLO %s", a.opts.HeloName); err != nil {
		return false, err
	}
	if err := read(250); err != nil {
		return false, err
	}
	if err := tp.PrintfLine("STARTTLS"); err != nil {
		return false, err
	}
	if err := read(220); err != nil {
		return false, err
	}
	if w.version == sslv2Version {
		if _, err := conn.Write(sslv2ClientHello(w.suites)); err != nil {
			return false, err
		}
		_, err := readSSLv2ServerHello(br)
		if errors.Is(err, errRefused) {
			return false, nil
		}
		return err == nil, err
	}
	suites := make([]uint16, len(w.suites))
	for i, s := range w.suites {
		suites[i] = uint16(s)
	}
	if _, err := conn.Write(ClientHello(w.version, suites, host)); err != nil {
		return false, err
	}
	version, suite, err := readServerHello(br)
	if err != nil {
		if errors.Is(err, errRefused) {
			return false, nil
		}
		return false, err
	}
	if w.version == 0x0300 {
		return version == 0x0300, nil
	}
	for _, s := range suites {
		if s == suite {
			return true, nil
		}
	}
	return false, nil
}

var errRefused = errors.New("handshake refused")

// ClientHello builds a TLS ClientHello record (RFC 5246 7.4.1.2; SSLv3
// RFC 6101 5.6.1.2) with the given version and cipher suites and, above
// SSLv3, the extensions a server needs to pick an ECDHE suite: SNI (RFC
// 6066 3), renegotiation_info (RFC 5746), supported_groups and
// ec_point_formats (RFC 8422), signature_algorithms (RFC 5246 7.4.1.4.1).
func ClientHello(version uint16, suites []uint16, host string) []byte {
	var body []byte
	body = append(body, byte(version>>8), byte(version))
	random := make([]byte, 32)
	for i := range random {
		random[i] = byte(i*7 + 1)
	}
	body = append(body, random...)
	body = append(body, 0) // no session id
	body = append(body, byte(len(suites)*2>>8), byte(len(suites)*2))
	for _, s := range suites {
		body = append(body, byte(s>>8), byte(s))
	}
	body = append(body, 1, 0) // compression: null only
	if version > 0x0300 {
		var ext []byte
		add := func(typ uint16, data []byte) {
			ext = append(ext, byte(typ>>8), byte(typ), byte(len(data)>>8), byte(len(data)))
			ext = append(ext, data...)
		}
		if host != "" && net.ParseIP(host) == nil {
			n := []byte(host)
			sni := []byte{byte((len(n) + 3) >> 8), byte(len(n) + 3), 0, byte(len(n) >> 8), byte(len(n))}
			add(0x0000, append(sni, n...))
		}
		add(0xff01, []byte{0})
		add(0x000a, []byte{0, 6, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18})
		add(0x000b, []byte{1, 0})
		add(0x000d, []byte{0, 12, 0x04, 0x01, 0x05, 0x01, 0x02, 0x01, 0x04, 0x03, 0x05, 0x03, 0x02, 0x03})
		body = append(body, byte(len(ext)>>8), byte(len(ext)))
		body = append(body, ext...)
	}
	hs := append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	recVersion := uint16(0x0301)
	if version == 0x0300 {
		recVersion = 0x0300
	}
	return append([]byte{0x16, byte(recVersion >> 8), byte(recVersion), byte(len(hs) >> 8), byte(len(hs))}, hs...)
}

// readServerHello reads the server's first record: a ServerHello gives
// its version and cipher suite; an alert, a closed connection or anything
// else is errRefused.
func readServerHello(r *bufio.Reader) (uint16, uint16, error) {
	hdr := make([]byte, 5)
	if _, err := ioReadFull(r, hdr); err != nil {
		return 0, 0, refusedUnlessTimeout(err) // closed or reset: refused
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	if hdr[0] != 0x16 || n < 4+2+32+1+2 || n > 1<<14 {
		return 0, 0, errRefused // an alert (0x15) or garbage
	}
	rec := make([]byte, n)
	if _, err := ioReadFull(r, rec); err != nil {
		return 0, 0, refusedUnlessTimeout(err)
	}
	if rec[0] != 2 { // ServerHello
		return 0, 0, errRefused
	}
	p := rec[4:]
	version := uint16(p[0])<<8 | uint16(p[1])
	p = p[2+32:]
	sid := int(p[0])
	if len(p) < 1+sid+2 {
		return 0, 0, errRefused
	}
	p = p[1+sid:]
	return version, uint16(p[0])<<8 | uint16(p[1]), nil
}

// sslv2ClientHello builds an SSL 2.0 CLIENT-HELLO (SSL 2.0 spec, 2.5;
// RFC 6176): a 2-byte record header with the high bit set, then
// MSG-CLIENT-HELLO, version 0x0002, the cipher-specs (3 bytes each), no
// session id and a 16-byte challenge. The handshake is never completed,
// so the challenge needs no secrecy.
func sslv2ClientHello(kinds []uint32) []byte {
	specs := len(kinds) * 3
	const challenge = 16
	body := []byte{
		1,                                      // MSG-CLIENT-HELLO
		sslv2Version >> 8, sslv2Version & 0xff, // CLIENT-VERSION
		byte(specs >> 8), byte(specs), // CIPHER-SPECS-LENGTH
		0, 0, // SESSION-ID-LENGTH
		0, challenge, // CHALLENGE-LENGTH
	}
	for _, k := range kinds {
		body = append(body, byte(k>>16), byte(k>>8), byte(k))
	}
	for i := 0; i < challenge; i++ {
		body = append(body, byte(i*13+5))
	}
	// SSL 2.0 spec 1.2: 2-byte header, no padding, length in 15 bits.
	return append([]byte{0x80 | byte(len(body)>>8), byte(len(body))}, body...)
}

// sslv2Hello is what a parsed SSLv2 SERVER-HELLO says.
type sslv2Hello struct {
	certificate []byte
	kinds       []uint32
}

// readSSLv2ServerHello reads the server's answer to an SSLv2
// CLIENT-HELLO. It returns the hello if the answer is a well-formed
// SERVER-HELLO (SSL 2.0 spec, 2.6): the server speaks SSLv2. A TLS alert
// or record (no high bit: not a 2-byte SSLv2 header), an SSLv2 ERROR
// message, a malformed hello, or a closed connection is errRefused; a
// timeout is returned as such (could not test).
func readSSLv2ServerHello(r *bufio.Reader) (*sslv2Hello, error) {
	hdr := make([]byte, 2)
	if _, err := ioReadFull(r, hdr); err != nil {
		return nil, refusedUnlessTimeout(err)
	}
	if hdr[0]&0x80 == 0 {
		return nil, errRefused // a TLS record (alert 0x15), or garbage
	}
	n := int(hdr[0]&0x7f)<<8 | int(hdr[1])
	const fixed = 11 // type, session-id-hit, cert type, version, 3 lengths
	if n < fixed {
		return nil, errRefused
	}
	rec := make([]byte, n)
	if _, err := ioReadFull(r, rec); err != nil {
		return nil, refusedUnlessTimeout(err)
	}
	if rec[0] != 4 { // MSG-SERVER-HELLO; 0 is MSG-ERROR
		return nil, errRefused
	}
	hit, certType := rec[1], rec[2]
	version := int(rec[3])<<8 | int(rec[4])
	certLen := int(rec[5])<<8 | int(rec[6])
	specsLen := int(rec[7])<<8 | int(rec[8])
	connIDLen := int(rec[9])<<8 | int(rec[10])
	// We sent no session id, so the server cannot have hit one: it must
	// send its certificate (type 1, SSL_CT_X509_CERTIFICATE) and the
	// cipher-specs it shares with us; the connection-id is 16 to 32
	// bytes.
	if hit != 0 || certType != 1 || version != sslv2Version ||
		certLen == 0 || specsLen == 0 || specsLen%3 != 0 ||
		connIDLen < 16 || connIDLen > 32 ||
		fixed+certLen+specsLen+connIDLen != n {
		return nil, errRefused
	}
	p := rec[fixed:]
	h := &sslv2Hello{certificate: p[:certLen]}
	p = p[certLen:]
	for i := 0; i < specsLen; i += 3 {
		h.kinds = append(h.kinds, uint32(p[i])<<16|uint32(p[i+1])<<8|uint32(p[i+2]))
	}
	return h, nil
}

// refusedUnlessTimeout: a timeout means the probe could not finish; a
// closed or reset connection is the server's refusal.
func refusedUnlessTimeout(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	return errRefused
}

func ioReadFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// versionName names a TLS version.
func versionName(v uint16) string {
	switch v {
	case 0x0300:
		return "SSLv3"
	case tls.VersionTLS10:
		return "TLS 1.0"
	case tls.VersionTLS11:
		return "TLS 1.1"
	case tls.VersionTLS12:
		return "TLS 1.2"
	case tls.VersionTLS13:
		return "TLS 1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}
