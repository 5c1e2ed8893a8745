package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kakuin/kakuin/pki"
)

// TestReadmeHSMCommands runs the README's SoftHSM2 commands ("Keys in an
// HSM") with its paths pointed at a scratch directory (the PIN file, the
// PKI directory, SoftHSM's token directory) and the SO PIN filled in:
// after them the DKIM key is in the token, its file holds the pkcs11: URI,
// and `kakuin sign` signs through the token.
func TestReadmeHSMCommands(t *testing.T) {
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		t.Fatal("softhsm2-util not found (Debian softhsm2, make deps)")
	}
	block := readmeBlocks(t, "#### Keys in an HSM", "sh")[0]
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	var out, errb bytes.Buffer
	if code := run([]string{"pki", "init", "--dir", pkiDir, "--domain", "mhlw.go.jp"}, nil, &out, &errb); code != exitOK {
		t.Fatalf("pki init: %s", errb.String())
	}
	keys, _ := filepath.Glob(filepath.Join(pkiDir, "dkim", "mhlw.go.jp", "rsa-*.key"))
	if len(keys) != 1 {
		t.Fatalf("DKIM RSA keys: %v", keys)
	}
	sel := strings.TrimSuffix(filepath.Base(keys[0]), ".key")
	pin := filepath.Join(dir, "hsm.pin")
	if err := os.WriteFile(pin, []byte("48151623\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	t.Cleanup(pki.ClosePKCS11)

	sh := strings.NewReplacer(
		"/etc/kakuin/hsm.pin", pin,
		"var/pki", pkiDir,
		"rsa-202612", sel,
		"--so-pin ...", "--so-pin 87654321",
	).Replace(block)
	cmd := exec.Command("sh", "-e", "-c", sh)
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s\n%v\n%s", sh, err, o)
	}
	ref, err := os.ReadFile(keys[0])
	if err != nil || !strings.HasPrefix(string(ref), "pkcs11:token=mhlw-signing;object=dkim-"+sel) {
		t.Fatalf("the key file does not hold the URI: %q %v", ref, err)
	}
	if fi, _ := os.Stat(keys[0]); fi.Mode().Perm() != 0o600 {
		t.Fatalf("the key file is %v after the README's echo, want 0600", fi.Mode().Perm())
	}
	t.Setenv("KAKUIN_PKI_DIR", pkiDir)
	out.Reset()
	errb.Reset()
	msg := "From: taro@mhlw.go.jp\r\nTo: citizen@example.com\r\nSubject: hsm\r\n\r\nHello.\r\n"
	if code := run([]string{"sign"}, strings.NewReader(msg), &out, &errb); code != exitOK {
		t.Fatalf("kakuin sign through the token: %d %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "s="+sel) {
		t.Fatalf("no DKIM signature with s=%s", sel)
	}
}
