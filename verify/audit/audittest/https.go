package audittest

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"testing"
)

// PolicyServer is an HTTPS server for MTA-STS policies on 127.0.0.1:0. It
// picks the certificate by SNI and serves, for Host mta-sts.<domain>, the
// body set with SetPolicy at /.well-known/mta-sts.txt.
type PolicyServer struct {
	Addr string

	mu       sync.Mutex
	certs    map[string]*tls.Certificate // SNI -> certificate
	policies map[string]policy           // host -> response
	Hits     int
}

type policy struct {
	body, contentType, redirect string
	status                      int
}

// NewPolicyServer starts the server.
func NewPolicyServer(tb testing.TB) *PolicyServer {
	tb.Helper()
	ps := &PolicyServer{certs: map[string]*tls.Certificate{}, policies: map[string]policy{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ps.Addr = ln.Addr().String()
	srv := &http.Server{
		Handler:  http.HandlerFunc(ps.serve),
		ErrorLog: log.New(io.Discard, "", 0),
		TLSConfig: &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			ps.mu.Lock()
			defer ps.mu.Unlock()
			return ps.certs[h.ServerName], nil
		}},
	}
	go srv.ServeTLS(ln, "", "")
	tb.Cleanup(func() { srv.Close() })
	return ps
}

// SetCertificate sets the certificate served for SNI host.
func (ps *PolicyServer) SetCertificate(host string, c tls.Certificate) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.certs[host] = &c
}

// SetPolicy serves body as text/plain for mta-sts.<domain>.
func (ps *PolicyServer) SetPolicy(domain, body string) {
	ps.SetResponse(domain, 200, "text/plain; charset=utf-8", body, "")
}

// SetResponse serves any status, content type and body; a non-empty
// redirect sets Location.
func (ps *PolicyServer) SetResponse(domain string, status int, contentType, body, redirect string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.policies["mta-sts."+domain] = policy{body: body, contentType: contentType, status: status, redirect: redirect}
}

func (ps *PolicyServer) serve(w http.ResponseWriter, r *http.Request) {
	ps.mu.Lock()
	ps.Hits++
	p, ok := ps.policies[r.Host]
	ps.mu.Unlock()
	if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
		http.NotFound(w, r)
		return
	}
	if p.redirect != "" {
		w.Header().Set("Location", p.redirect)
	}
	w.Header().Set("Content-Type", p.contentType)
	w.WriteHeader(p.status)
	w.Write([]byte(p.body))
}
