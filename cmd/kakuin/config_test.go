package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
)

func TestEnvHelpListsNestedVariables(t *testing.T) {
	type inner struct {
		Dir string `env:"DIR" envDefault:"var/pki" help:"the PKI directory"`
	}
	type cfg struct {
		Listen string `env:"LISTEN" envDefault:"127.0.0.1:2525" help:"where to listen"`
		PKI    inner  `envPrefix:"PKI_"`
	}
	var b bytes.Buffer
	envHelp(&b, &cfg{})
	out := b.String()
	for _, want := range []string{"KAKUIN_LISTEN", "(default 127.0.0.1:2525)", "KAKUIN_PKI_DIR", "the PKI directory (default var/pki)"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
	t.Setenv("KAKUIN_PKI_DIR", "/x")
	var c cfg
	if err := parseEnv(&c); err != nil || c.PKI.Dir != "/x" || c.Listen != "127.0.0.1:2525" {
		t.Fatalf("parseEnv: %v %+v", err, c)
	}
}

func TestParseEnvNamesTheVariable(t *testing.T) {
	type cfg struct {
		Validity time.Duration `env:"CERT_VALIDITY" envDefault:"1h"`
		Port     int           `env:"PORT"`
	}
	t.Setenv("KAKUIN_CERT_VALIDITY", "a week")
	t.Setenv("KAKUIN_PORT", "eighty")
	var c cfg
	err := parseEnv(&c)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"KAKUIN_CERT_VALIDITY: ", "invalid duration", "KAKUIN_PORT: "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		t.Errorf("env's error is no longer wrapped: %v", err)
	}
}
