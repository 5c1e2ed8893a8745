package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/kakuin/kakuin/pki"
)

// TestGatewayRollover follows docs/operations.md on a running gateway:
// the DKIM selector rollover (a new key made outside the PKI directory,
// its record printed by `kakuin records`, the key moved in, SIGHUP: both
// selectors sign and verify; the old key moved out, SIGHUP: only the new
// one) and the STARTTLS certificate renewal (new files, SIGHUP: new
// sessions get the new certificate).
func TestGatewayRollover(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl not installed (make deps)")
	}
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	var out, errb bytes.Buffer
	if code := run([]string{"pki", "init", "--dir", pkiDir, "--domain", "example.go.jp"}, nil, &out, &errb); code != exitOK {
		t.Fatalf("pki init: %d %s", code, errb.String())
	}
	outbox := filepath.Join(dir, "outbox")
	gw := startGateway(t, map[string]string{
		"KAKUIN_PKI_DIR":         pkiDir,
		"KAKUIN_LISTEN":          "127.0.0.1:0",
		"KAKUIN_METRICS_LISTEN":  "off",
		"KAKUIN_CLIENT_NETWORKS": "127.0.0.0/8",
		"KAKUIN_UPSTREAM":        "maildir:" + outbox,
		"KAKUIN_HOSTNAME":        "gw.example.go.jp",
	})
	// By default RSA keys sign through libcrypto where the binary has cgo
	// (pki.UseLibcrypto); every signature below is made that way.
	// One signing turn more than cores then (KAKUIN_SIGN_CONCURRENCY=0).
	engine, turns := "crypto/rsa", runtime.GOMAXPROCS(0)
	if pki.UseLibcrypto(true) {
		engine, turns = "libcrypto", turns+1
	}
	if want := fmt.Sprintf(`"rsa":"%s","sign_turns":%d`, engine, turns); !strings.Contains(gw.logs.String(), want) {
		t.Fatalf("the gateway does not say %s:\n%s", want, gw.logs.String())
	}
	roots, err := pki.LoadTrustAnchors(filepath.Join(pkiDir, "trust-anchors.pem"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	// send sends one message over STARTTLS and returns it as stored.
	send := func(tlsCfg *tls.Config) []byte {
		t.Helper()
		n++
		from := "taro@example.go.jp"
		msg := "From: " + from + "\r\nTo: citizen@example.com\r\nSubject: rollover " + string(rune('0'+n)) + "\r\n\r\nHello.\r\n"
		c, err := smtp.DialStartTLS(gw.addr, tlsCfg)
		if err != nil {
			t.Fatalf("STARTTLS: %v", err)
		}
		defer c.Close()
		if err := c.SendMail(from, []string{"citizen@example.com"}, strings.NewReader(msg)); err != nil {
			t.Fatalf("send: %v\n%s", err, gw.logs.String())
		}
		files, _ := filepath.Glob(filepath.Join(outbox, "new", "*"))
		if len(files) != n {
			t.Fatalf("outbox has %d messages, want %d", len(files), n)
		}
		for _, f := range files {
			stored, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(stored, []byte("Subject: rollover "+string(rune('0'+n))+"\r\n")) {
				return stored
			}
		}
		t.Fatal("the message just sent is not in the outbox")
		return nil
	}
	// passing returns the selectors whose DKIM signature passes, as
	// `kakuin verify` reports them against the zone file.
	passing := func(msg []byte, zone string) []string {
		t.Helper()
		var vout, verr bytes.Buffer
		if code := run([]string{"verify", "--offline", "--trust-anchors", filepath.Join(pkiDir, "trust-anchors.pem"), "--zone", zone, "-"}, bytes.NewReader(msg), &vout, &verr); code != 0 || !strings.HasPrefix(vout.String(), "GENUINE: ") {
			t.Fatalf("kakuin verify: exit %d\n%s%s", code, vout.String(), verr.String())
		}
		var sels []string
		for _, line := range strings.Split(vout.String(), "\n") {
			f := strings.Fields(line)
			if len(f) >= 4 && f[0] == "dkim" && f[1] == "pass" && strings.HasPrefix(f[3], "s=") {
				sels = append(sels, strings.TrimPrefix(f[3], "s="))
			}
		}
		slices.Sort(sels)
		return sels
	}
	tlsCfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	zone := filepath.Join(pkiDir, "dns.zone")
	keyDir := filepath.Join(pkiDir, "dkim", "example.go.jp")
	old, _ := filepath.Glob(filepath.Join(keyDir, "rsa-*.key"))
	ed, _ := filepath.Glob(filepath.Join(keyDir, "ed-*.key"))
	if len(old) != 1 || len(ed) != 1 {
		t.Fatalf("pki init made DKIM keys %v %v", old, ed)
	}
	oldSel := strings.TrimSuffix(filepath.Base(old[0]), ".key")
	edSel := strings.TrimSuffix(filepath.Base(ed[0]), ".key")
	if got := passing(send(tlsCfg), zone); !slices.Equal(got, []string{edSel, oldSel}) {
		t.Fatalf("before the rollover: %v", got)
	}

	// 1. The new key, made outside the PKI directory, as the docs say.
	stage := filepath.Join(dir, "stage", "dkim", "example.go.jp")
	if err := os.MkdirAll(stage, 0o700); err != nil {
		t.Fatal(err)
	}
	newKey := filepath.Join(stage, "rsa-209901.key")
	if o, err := exec.Command("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", newKey).CombinedOutput(); err != nil {
		t.Fatalf("openssl genpkey: %v\n%s", err, o)
	}
	if err := os.Chmod(newKey, 0o600); err != nil {
		t.Fatal(err)
	}
	// 2. Its record, to publish.
	out.Reset()
	if code := run([]string{"records", "--pki-dir", filepath.Join(dir, "stage"), "--domain", "example.go.jp"}, nil, &out, &errb); code != exitOK || !strings.Contains(out.String(), "rsa-209901._domainkey.example.go.jp.") {
		t.Fatalf("kakuin records: %d\n%s%s", code, out.String(), errb.String())
	}
	// 3. The key moved in, the zone regenerated (what is published now),
	// SIGHUP: both RSA selectors sign, and all three signatures verify.
	if err := os.Rename(newKey, filepath.Join(keyDir, "rsa-209901.key")); err != nil {
		t.Fatal(err)
	}
	if code := run([]string{"pki", "init", "--dir", pkiDir, "--domain", "example.go.jp"}, nil, &out, &errb); code != exitOK {
		t.Fatalf("pki init (zone): %d %s", code, errb.String())
	}
	gw.reload(t)
	if got := passing(send(tlsCfg), zone); !slices.Equal(got, []string{edSel, oldSel, "rsa-209901"}) {
		t.Fatalf("with both RSA keys: %v", got)
	}
	// 4. The old key moved out, SIGHUP: only the new RSA selector signs.
	if err := os.Rename(old[0], filepath.Join(dir, oldSel+".key.retired")); err != nil {
		t.Fatal(err)
	}
	gw.reload(t)
	if got := passing(send(tlsCfg), zone); !slices.Equal(got, []string{edSel, "rsa-209901"}) {
		t.Fatalf("after the old key left: %v", got)
	}

	// The STARTTLS certificate renewed: new files, SIGHUP, and the next
	// session gets the new certificate.
	other := filepath.Join(dir, "other")
	if code := run([]string{"pki", "init", "--dir", other, "--domain", "example.go.jp"}, nil, &out, &errb); code != exitOK {
		t.Fatalf("pki init (other): %d %s", code, errb.String())
	}
	for _, f := range []string{"cert.pem", "key.pem"} {
		b, err := os.ReadFile(filepath.Join(other, "tls", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pkiDir, "tls", f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(filepath.Join(other, "tls", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	served := func() [32]byte {
		t.Helper()
		conn, err := net.DialTimeout("tcp", gw.addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		text := textproto.NewConn(conn)
		if _, _, err := text.ReadResponse(220); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			cmd  string
			code int
		}{{"EHLO client.example.go.jp", 250}, {"STARTTLS", 220}} {
			if err := text.PrintfLine("%s", c.cmd); err != nil {
				t.Fatal(err)
			}
			if _, _, err := text.ReadResponse(c.code); err != nil {
				t.Fatalf("%s: %v", c.cmd, err)
			}
		}
		// Not verified: the new certificate chains to another root.
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		return sha256.Sum256(tc.ConnectionState().PeerCertificates[0].Raw)
	}
	before := served()
	gw.reload(t)
	after := served()
	newCerts, err := pki.ParseCertificatesPEM(want)
	if err != nil || len(newCerts) == 0 {
		t.Fatalf("new certificate: %v", err)
	}
	if before == after || after != sha256.Sum256(newCerts[0].Raw) {
		t.Fatal("after SIGHUP the gateway still serves the old STARTTLS certificate")
	}
}
