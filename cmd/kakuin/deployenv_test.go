package main

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestDeployEnvironments: the KAKUIN_* settings the deployment recipes
// give the gateway (the systemd EnvironmentFile, the Kubernetes ConfigMap,
// the container image's ENV) are variables `kakuin gateway` reads, and
// their values parse and pass its checks. A misspelt name would be
// ignored silently and its default used; a bad value would stop the
// gateway only when deployed.
func TestDeployEnvironments(t *testing.T) {
	known := map[string]bool{}
	walkEnv(reflect.TypeOf(gatewayConfig{}), envPrefix, func(name string, _ reflect.StructField) { known[name] = true })
	deploy := filepath.Join("..", "..", "deploy")
	for _, c := range []struct {
		file string
		// set matches a setting (name, value); named matches any mention
		// of a variable, comments included, whose name must exist.
		set *regexp.Regexp
	}{
		{"systemd/gateway.env", regexp.MustCompile(`(?m)^(KAKUIN_[A-Z0-9_]+)=(.*)$`)},
		{"kubernetes/configmap.yaml", regexp.MustCompile(`(?m)^\s+(KAKUIN_[A-Z0-9_]+):\s*"([^"]*)"\s*$`)},
		{"Dockerfile", regexp.MustCompile(`(?m)\b(KAKUIN_[A-Z0-9_]+)=(\S*?)\s*\\?$`)},
	} {
		t.Run(filepath.Base(c.file), func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(deploy, c.file))
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range regexp.MustCompile(`KAKUIN_[A-Z0-9_]+`).FindAllString(string(b), -1) {
				if !known[name] {
					t.Errorf("%s mentions %s, which kakuin gateway does not read", c.file, name)
				}
			}
			settings := c.set.FindAllStringSubmatch(string(b), -1)
			if len(settings) < 3 {
				t.Fatalf("%s: found only %d settings: is the pattern still right?", c.file, len(settings))
			}
			// The PKI directory and other files named are the deployment's,
			// not this machine's: a fresh development PKI stands in.
			pkiDir := filepath.Join(t.TempDir(), "pki")
			if code := run([]string{"pki", "init", "--dir", pkiDir, "--domain", "example.go.jp"}, nil, new(strings.Builder), new(strings.Builder)); code != exitOK {
				t.Fatal("pki init failed")
			}
			for _, s := range settings {
				v := s[2]
				if s[1] == "KAKUIN_PKI_DIR" || s[1] == "KAKUIN_CREDENTIALS" {
					continue // paths on the target machine
				}
				t.Setenv(s[1], v)
			}
			t.Setenv("KAKUIN_PKI_DIR", pkiDir)
			var cfg gatewayConfig
			if err := parseEnv(&cfg); err != nil {
				t.Fatalf("%s: %v", c.file, err)
			}
			if err := cfg.checkLimits(); err != nil {
				t.Fatalf("%s: %v", c.file, err)
			}
			if err := cfg.Sign.validate(); err != nil {
				t.Fatalf("%s: %v", c.file, err)
			}
			if _, err := cfg.upstream(); err != nil {
				t.Fatalf("%s: KAKUIN_UPSTREAM: %v", c.file, err)
			}
		})
	}
}
