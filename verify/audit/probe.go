package audit

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
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
		if err := c.StartTLS(cfg); err != nil {
			var tp *textproto.Error
			if errors.As(err, &tp) {
				res.err = fmt.Errorf("STARTTLS at %s: %w", addr, err)
			} else {
				res.tlsErr = err
			}
			return
		}
		st, _ := c.TLSConnectionState()
		res.version, res.cipher, res.chain = st.Version, st.CipherSuite, st.PeerCertificates
		c.Quit()
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
// stack will not: SSLv3, or RC4 or 3DES cipher suites.
type weakProbeSpec struct {
	name    string
	version uint16
	suites  []uint16
}

var weakProbes = []weakProbeSpec{
	// RFC 7568: SSLv3 must not be used. Offer its usual suites.
	{"SSLv3", 0x0300, []uint16{0x000a, 0x0005, 0x0004, 0x002f, 0x0035}},
	// RFC 7465: RC4 must not be used.
	{"RC4", 0x0303, []uint16{0xc011, 0xc007, 0x0005, 0x0004}},
	// 3DES (Sweet32, CVE-2016-2183; BOD 18-01).
	{"3DES", 0x0303, []uint16{0xc012, 0xc008, 0x0016, 0x000a}},
}

// weakProbe opens an SMTP session, says STARTTLS and sends a ClientHello
// offering only w's version and suites. The server accepted if it answers
// with a ServerHello choosing them; an alert or a closed connection is a
// refusal.
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
	if _, err := conn.Write(ClientHello(w.version, w.suites, host)); err != nil {
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
	for _, s := range w.suites {
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
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return 0, 0, err
		}
		return 0, 0, errRefused // closed or reset
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	if hdr[0] != 0x16 || n < 4+2+32+1+2 || n > 1<<14 {
		return 0, 0, errRefused // an alert (0x15) or garbage
	}
	rec := make([]byte, n)
	if _, err := ioReadFull(r, rec); err != nil {
		return 0, 0, errRefused
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
