package main

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
)

// TestGatewayHSM: the development PKI with its DKIM RSA key, its issuing
// CA's key and the STARTTLS key moved into a SoftHSM2 token (the key files
// now hold pkcs11: URIs). The gateway starts, does STARTTLS, issues the
// sender's certificate and signs DKIM through the HSM, and the message
// verifies as GENUINE. Then the token goes away: STARTTLS fails, and the
// next message (in plaintext, from the trusted network) gets 451 4.3.0
// and nothing reaches the upstream (fail closed); the log holds no PIN.
func TestGatewayHSM(t *testing.T) {
	dir := t.TempDir()
	hsm := pkitest.NewSoftHSM(t)
	pin, err := os.ReadFile(hsm.PINFile)
	if err != nil {
		t.Fatal(err)
	}
	pkiDir := filepath.Join(dir, "pki")
	var out, errb bytes.Buffer
	if code := run([]string{"pki", "init", "--dir", pkiDir, "--domain", "example.go.jp"}, nil, &out, &errb); code != exitOK {
		t.Fatalf("pki init: %d %s", code, errb.String())
	}
	l := pki.Layout{Dir: pkiDir}
	dkimKeys, _ := filepath.Glob(filepath.Join(l.DKIMDir(), "example.go.jp", "rsa-*.key"))
	if len(dkimKeys) != 1 {
		t.Fatalf("dkim rsa keys: %v", dkimKeys)
	}
	for label, path := range map[string]string{"dkim-rsa": dkimKeys[0], "issuing-ca": l.IssuerKey(), "starttls": l.TLSKey()} {
		k, err := pki.LoadSigner(path)
		if err != nil {
			t.Fatal(err)
		}
		uri := hsm.Import(t, label, k)
		if err := os.WriteFile(path, []byte(uri+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	outbox := filepath.Join(dir, "outbox")
	gw := startGateway(t, map[string]string{
		"KAKUIN_PKI_DIR":         pkiDir,
		"KAKUIN_LISTEN":          "127.0.0.1:0",
		"KAKUIN_METRICS_LISTEN":  "127.0.0.1:0",
		"KAKUIN_CLIENT_NETWORKS": "127.0.0.0/8",
		"KAKUIN_UPSTREAM":        "maildir:" + outbox,
		"KAKUIN_HOSTNAME":        "gw.example.go.jp",
	})
	addr, logs := gw.addr, gw.logs
	roots, err := pki.LoadTrustAnchors(l.TrustAnchors())
	if err != nil {
		t.Fatal(err)
	}
	send := func(subject string, startTLS bool) error {
		var c *smtp.Client
		var err error
		if startTLS {
			c, err = smtp.DialStartTLS(addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
		} else {
			c, err = smtp.Dial(addr)
		}
		if err != nil {
			return err
		}
		defer c.Close()
		msg := "From: taro@example.go.jp\r\nTo: citizen@example.com\r\nSubject: " + subject + "\r\n\r\nSigned in the HSM.\r\n"
		return c.SendMail("taro@example.go.jp", []string{"citizen@example.com"}, strings.NewReader(msg))
	}
	stored := func() []string {
		files, _ := filepath.Glob(filepath.Join(outbox, "new", "*"))
		return files
	}

	if err := send("through the HSM", true); err != nil {
		t.Fatalf("send: %v\n%s", err, logs.String())
	}
	files := stored()
	if len(files) != 1 {
		t.Fatalf("outbox has %d messages", len(files))
	}
	msg, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var vout, verr bytes.Buffer
	if code := run([]string{"verify", "--offline", "--zone", filepath.Join(pkiDir, "dns.zone"), "-"}, bytes.NewReader(msg), &vout, &verr); code != 0 || !strings.HasPrefix(vout.String(), "GENUINE: ") {
		t.Fatalf("kakuin verify: exit %d\n%s%s", code, vout.String(), verr.String())
	}
	// The RSA DKIM signature, made in the HSM, verifies on its own.
	rsaPass := false
	for _, line := range strings.Split(vout.String(), "\n") {
		f := strings.Fields(line)
		rsaPass = rsaPass || len(f) >= 5 && f[0] == "dkim" && f[1] == "pass" && f[4] == "a=rsa-sha256"
	}
	if !rsaPass {
		t.Fatalf("no passing rsa-sha256 DKIM signature:\n%s", vout.String())
	}

	if code, body := readyz(t, gw.metrics); code != 200 {
		t.Fatalf("/readyz with the HSM present: %d %s", code, body)
	}

	hsm.DeleteToken(t)
	// /readyz signs with each key in the HSM: not ready any more, so that
	// an orchestrator takes this replica out of service. (Its answer is
	// kept 5 s.)
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := readyz(t, gw.metrics)
		if code == 503 {
			if !strings.Contains(body, "keys:") || !strings.Contains(body, "object=") {
				t.Fatalf("/readyz with the HSM gone does not name the key: %s", body)
			}
			if p := strings.TrimSpace(string(pin)); strings.Contains(body, p) {
				t.Fatal("/readyz shows the PIN")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz with the HSM gone: %d %s", code, body)
		}
		time.Sleep(250 * time.Millisecond)
	}
	// The STARTTLS key went with the token: no handshake any more. A
	// client from the trusted network may still speak in plaintext.
	if err := send("STARTTLS after the HSM went away", true); err == nil {
		t.Fatal("STARTTLS worked with its key gone")
	}
	err = send("after the HSM went away", false)
	se, ok := err.(*smtp.SMTPError)
	if !ok || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 0}) {
		t.Fatalf("with the HSM gone: %v, want 451 4.3.0", err)
	}
	if n := len(stored()); n != 1 {
		t.Fatalf("with the HSM gone the upstream got a message: %d in the outbox", n)
	}
	if !strings.Contains(logs.String(), `"reason":"signer_key"`) {
		t.Fatalf("the refusal is not logged as signer_key (what KakuinSigningUnavailable counts):\n%s", logs.String())
	}
	gw.stop()
	if p := strings.TrimSpace(string(pin)); strings.Contains(logs.String(), p) {
		t.Fatal("the PIN is in the log")
	}
}

// readyz GETs http://addr/readyz.
func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 15 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
