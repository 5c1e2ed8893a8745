package deploy_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPKILayoutInitContainer runs the shell script of deployment.yaml's
// pki-layout init container on a Secret volume made as
// secret.example.yaml says (its `kubectl create secret --from-file`
// names, from a `kakuin pki init` directory, files 0644 as a Secret
// volume shows them), and checks that kakuin signs with the directory it
// lays out: keys 0600, the layout pki.Layout expects, no root key.
func TestPKILayoutInitContainer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "kakuin")
	build := exec.Command("go", "build", "-o", bin, "./cmd/kakuin")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	src := filepath.Join(dir, "src")
	if out, err := exec.Command(bin, "pki", "init", "--dir", src, "--domain", "example.go.jp").CombinedOutput(); err != nil {
		t.Fatalf("pki init: %v\n%s", err, out)
	}

	// The Secret, from the documented --from-file=NAME=PKI/PATH list.
	example, err := os.ReadFile(filepath.Join("kubernetes", "secret.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	if err := os.Mkdir(secret, 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(name, from string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatalf("secret entry %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(secret, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	entries := regexp.MustCompile(`--from-file=([^=\s]+)=(\S+)`).FindAllStringSubmatch(string(example), -1)
	if len(entries) < 6 {
		t.Fatalf("secret.example.yaml names %d entries", len(entries))
	}
	for _, e := range entries {
		name, from := e[1], e[2]
		switch {
		case from == "credentials":
			// bcrypt lines of the agency servers; any file will do here.
			if err := os.WriteFile(filepath.Join(secret, name), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		case strings.Contains(name, "SELECTOR"):
			keys, _ := filepath.Glob(filepath.Join(src, "dkim", "example.go.jp", "*.key"))
			if len(keys) != 2 {
				t.Fatalf("pki init made DKIM keys %v", keys)
			}
			for _, k := range keys {
				sel := strings.TrimSuffix(filepath.Base(k), ".key")
				put(strings.Replace(name, "SELECTOR", sel, 1), k)
			}
		default:
			put(name, filepath.Join(src, strings.TrimPrefix(from, "PKI/")))
		}
	}

	// The init container's script, pointed at the temporary directories.
	deployment, err := os.ReadFile(filepath.Join("kubernetes", "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)- name: pki-layout.*?- \|\n(.*?)\n {10}securityContext:`).FindSubmatch(deployment)
	if m == nil {
		t.Fatal("no pki-layout script in deployment.yaml")
	}
	var script strings.Builder
	for _, line := range strings.Split(string(m[1]), "\n") {
		script.WriteString(strings.TrimPrefix(line, strings.Repeat(" ", 14)) + "\n")
	}
	const vars = "P=/var/lib/kakuin/pki S=/secret"
	if !strings.Contains(script.String(), vars) {
		t.Fatalf("the script does not start with %q:\n%s", vars, script.String())
	}
	pkiDir := filepath.Join(dir, "pki")
	sh := strings.Replace(script.String(), vars, "P="+pkiDir+" S="+secret, 1)
	if out, err := exec.Command("/bin/sh", "-ec", sh).CombinedOutput(); err != nil {
		t.Fatalf("pki-layout script: %v\n%s\n%s", err, out, sh)
	}

	err = filepath.WalkDir(pkiDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if strings.HasSuffix(path, ".key") && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(pkiDir, "root", "ca.key")); err == nil {
		t.Error("the root CA's key reached the cluster")
	}
	sign := exec.Command(bin, "sign")
	sign.Env = append(os.Environ(), "KAKUIN_PKI_DIR="+pkiDir)
	sign.Stdin = strings.NewReader("From: taro@example.go.jp\r\nTo: citizen@example.com\r\nSubject: layout\r\n\r\nHello.\r\n")
	var out, errb bytes.Buffer
	sign.Stdout, sign.Stderr = &out, &errb
	if err := sign.Run(); err != nil {
		t.Fatalf("kakuin sign with the laid-out directory: %v\n%s", err, errb.String())
	}
	if got := strings.Count(out.String(), "DKIM-Signature:"); got != 2 || !strings.Contains(out.String(), "multipart/signed") {
		t.Fatalf("signed with %d DKIM signatures, S/MIME %v", got, strings.Contains(out.String(), "multipart/signed"))
	}
}
