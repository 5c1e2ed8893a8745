package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests set environment variables: no t.Parallel.

func TestSignConfigPKIDirAloneConfiguresEverything(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("KAKUIN_PKI_DIR", dir)
	c, err := loadSignConfig()
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		c.trustAnchors(): filepath.Join(dir, "trust-anchors.pem"),
		c.certDir():      filepath.Join(dir, "certs"),
		c.dkimDir():      filepath.Join(dir, "dkim"),
		c.tlsCert():      filepath.Join(dir, "tls", "cert.pem"),
		c.tlsKey():       filepath.Join(dir, "tls", "key.pem"),
	} {
		if got != want {
			t.Errorf("path %q, want %q", got, want)
		}
	}
	// No issuing CA in the directory: reject is the default.
	if p := c.noCertPolicy(); p != policyReject {
		t.Errorf("policy without issuing CA = %q, want reject", p)
	}
	if c.CertValidity != 168*time.Hour || len(c.SenderSuffixes) != 1 || c.SenderSuffixes[0] != "go.jp" {
		t.Errorf("defaults: validity %v suffixes %v", c.CertValidity, c.SenderSuffixes)
	}
	// With the issuing CA's files present, issue becomes the default.
	if err := os.MkdirAll(filepath.Join(dir, "issuing"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.pem", "ca.key"} {
		if err := os.WriteFile(filepath.Join(dir, "issuing", f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if p := c.noCertPolicy(); p != policyIssue {
		t.Errorf("policy with issuing CA = %q, want issue", p)
	}
	cert, key, ok := c.issuer()
	if !ok || cert != filepath.Join(dir, "issuing", "ca.pem") || key != filepath.Join(dir, "issuing", "ca.key") {
		t.Errorf("issuer = %q %q %v", cert, key, ok)
	}
}

func TestSignConfigOverrides(t *testing.T) {
	t.Setenv("KAKUIN_PKI_DIR", "/pki")
	t.Setenv("KAKUIN_TRUST_ANCHORS", "/etc/anchors.pem")
	t.Setenv("KAKUIN_CERT_DIR", "/certs")
	t.Setenv("KAKUIN_DKIM_DIR", "/dkim")
	t.Setenv("KAKUIN_TLS_CERT", "/tls.pem")
	t.Setenv("KAKUIN_TLS_KEY", "/tls.key")
	t.Setenv("KAKUIN_ISSUER_CERT", "/ca.pem")
	t.Setenv("KAKUIN_ISSUER_KEY", "/ca.key")
	t.Setenv("KAKUIN_SENDER_SUFFIXES", "go.jp, LG.JP.")
	t.Setenv("KAKUIN_CERT_VALIDITY", "24h")
	t.Setenv("KAKUIN_PKCS12_PASSWORD", "s3cret")
	c, err := loadSignConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.trustAnchors() != "/etc/anchors.pem" || c.certDir() != "/certs" || c.dkimDir() != "/dkim" ||
		c.tlsCert() != "/tls.pem" || c.tlsKey() != "/tls.key" {
		t.Errorf("overrides not applied: %+v", c)
	}
	if cert, key, ok := c.issuer(); !ok || cert != "/ca.pem" || key != "/ca.key" {
		t.Errorf("issuer = %q %q %v", cert, key, ok)
	}
	if c.noCertPolicy() != policyIssue {
		t.Errorf("policy = %q, want issue (issuing CA configured)", c.noCertPolicy())
	}
	if got := strings.Join(c.SenderSuffixes, ","); got != "go.jp,lg.jp" {
		t.Errorf("suffixes = %q", got)
	}
	if c.PKCS12Password != "s3cret" {
		t.Error("PKCS#12 password not read")
	}
	if _, set := os.LookupEnv("KAKUIN_PKCS12_PASSWORD"); set {
		t.Error("KAKUIN_PKCS12_PASSWORD left in the environment after reading")
	}
	if !c.senders().AllowsAddress("a@example.go.jp") || c.senders().AllowsAddress("a@evilgo.jp") {
		t.Error("sender policy wrong")
	}
}

func TestSignConfigRejectsBadValues(t *testing.T) {
	test := func(name string, env map[string]string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			t.Setenv("KAKUIN_PKI_DIR", t.TempDir())
			for k, v := range env {
				t.Setenv(k, v)
			}
			_, err := loadSignConfig()
			if !errors.Is(err, errConfig) {
				t.Fatalf("err = %v, want errConfig", err)
			}
		})
	}
	test("unknown policy", map[string]string{"KAKUIN_NO_CERT_POLICY": "maybe"})
	test("issue without CA", map[string]string{"KAKUIN_NO_CERT_POLICY": "issue"})
	test("issuer cert alone", map[string]string{"KAKUIN_ISSUER_CERT": "/ca.pem"})
	test("validity too long", map[string]string{"KAKUIN_CERT_VALIDITY": "20000h"})
	test("validity zero", map[string]string{"KAKUIN_CERT_VALIDITY": "0s"})
	test("validity unparsable", map[string]string{"KAKUIN_CERT_VALIDITY": "a week"})
	test("tld suffix", map[string]string{"KAKUIN_SENDER_SUFFIXES": "jp"})
	test("invalid suffix", map[string]string{"KAKUIN_SENDER_SUFFIXES": "go..jp"})
}

func TestSignConfigHelpListsEveryVariable(t *testing.T) {
	var b bytes.Buffer
	envHelp(&b, &signConfig{})
	for _, v := range []string{"KAKUIN_PKI_DIR", "KAKUIN_TRUST_ANCHORS", "KAKUIN_CERT_DIR", "KAKUIN_ISSUER_CERT",
		"KAKUIN_ISSUER_KEY", "KAKUIN_DKIM_DIR", "KAKUIN_TLS_CERT", "KAKUIN_TLS_KEY", "KAKUIN_PKCS12_PASSWORD",
		"KAKUIN_NO_CERT_POLICY", "KAKUIN_CERT_VALIDITY", "KAKUIN_SENDER_SUFFIXES", "KAKUIN_HOSTNAME",
		"(default var/pki)", "(default go.jp)", "(default 168h)"} {
		if !strings.Contains(b.String(), v) {
			t.Errorf("help lacks %s:\n%s", v, b.String())
		}
	}
}
