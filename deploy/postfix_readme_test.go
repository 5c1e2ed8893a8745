package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmePostfixSnippet gives the main.cf and master.cf lines of the
// README's "Deploying behind Postfix" to Debian's postconf, in a scratch
// configuration directory: no parameter is unknown (a misspelt name is
// ignored by Postfix with only a warning), no value carries a comment
// (Postfix takes "#" only at the start of a line), and the master.cf
// service parses.
func TestReadmePostfixSnippet(t *testing.T) {
	t.Parallel()
	postconf, err := exec.LookPath("postconf")
	if err != nil {
		if postconf, err = exec.LookPath("/usr/sbin/postconf"); err != nil {
			t.Fatal("postconf not found (Debian postfix, make deps)")
		}
	}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "## Deploying behind Postfix")
	if !ok {
		t.Fatal("README has no Postfix section")
	}
	block := regexp.MustCompile("(?s)```\n(.*?)```").FindStringSubmatch(section)
	if block == nil {
		t.Fatal("no configuration block in the Postfix section")
	}
	mainCf, masterCf, ok := strings.Cut(block[1], "# /etc/postfix/master.cf")
	if !ok {
		t.Fatal("the block has no master.cf part")
	}
	masterCf = "# /etc/postfix/master.cf" + masterCf
	dir := t.TempDir()
	master, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		t.Fatalf("Debian's master.cf: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte("compatibility_level = 3.6\n"+mainCf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "master.cf"), append(master, "\n# README\n"+masterCf...), 0o644); err != nil {
		t.Fatal(err)
	}
	params := regexp.MustCompile(`(?m)^([a-z_]+) =`).FindAllStringSubmatch(mainCf, -1)
	if len(params) < 6 {
		t.Fatalf("found %d main.cf parameters in the README", len(params))
	}
	for _, args := range [][]string{{"-n"}, {"-M"}, {"-P"}} {
		out, err := exec.Command(postconf, append([]string{"-c", dir}, args...)...).CombinedOutput()
		if err != nil || strings.Contains(string(out), "warning") {
			t.Errorf("postconf %s: %v\n%s", args[0], err, out)
		}
	}
	for _, p := range params {
		out, err := exec.Command(postconf, "-c", dir, "-h", p[1]).CombinedOutput()
		if err != nil || strings.Contains(string(out), "#") {
			t.Errorf("%s = %q: %v", p[1], strings.TrimSpace(string(out)), err)
		}
	}
	if out, _ := exec.Command(postconf, "-c", dir, "-P", "10.0.0.5:10026/inet/smtpd_tls_security_level").CombinedOutput(); strings.TrimSpace(string(out)) != "10.0.0.5:10026/inet/smtpd_tls_security_level = encrypt" {
		t.Errorf("the return listener's settings did not parse: %q", out)
	}
}
