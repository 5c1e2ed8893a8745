package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnit runs `systemd-analyze verify` on
// deploy/systemd/kakuin-gateway.service (ExecStart pointed at an
// executable that exists here): an unknown directive, a misspelt system
// call group or a bad value is reported as a warning, and any warning
// fails the test.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze not found (Debian systemd, make deps)")
	}
	unit, err := os.ReadFile(filepath.Join("systemd", "kakuin-gateway.service"))
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const bin = "/usr/local/bin/kakuin"
	if !strings.Contains(string(unit), "ExecStart="+bin+" gateway") {
		t.Fatalf("the unit does not start %s gateway", bin)
	}
	path := filepath.Join(t.TempDir(), "kakuin-gateway.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), bin, self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
