package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAlertRules checks deploy/prometheus/kakuin-alerts.yml with Debian's
// promtool (`make deps` puts it in bin/tools; $PROMTOOL names it): the
// rules parse, and the unit tests in kakuin-alerts.test.yml, which feed
// invented series and expect each alert to fire on trouble and not
// without it, pass. smtpgw's TestAlertRulesMatchMetrics checks that the
// series the rules select are those the gateway exports.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		promtool = filepath.Join("..", "bin", "tools", "promtool")
	}
	promtool, err := exec.LookPath(promtool)
	if err == nil {
		promtool, err = filepath.Abs(promtool)
	}
	if err != nil {
		t.Fatalf("promtool not found (make deps puts it in bin/tools): %v", err)
	}
	for _, args := range [][]string{
		{"check", "rules", "kakuin-alerts.yml"},
		{"test", "rules", "kakuin-alerts.test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
