package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMakeRun runs scripts/run-dev.sh, what `make run` runs, on free
// loopback ports with its PKI and outbox in a scratch directory, then
// pastes the commands it prints, as a newcomer would: swaks sends a
// message through the gateway, and the check commands (kakuin verify,
// openssl cms -verify, dkimpy) all pass on what reached the outbox.
func TestMakeRun(t *testing.T) {
	f := interop(t) // the kakuin binary, openssl and dkimpy
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatalf("swaks not found (make deps): %v", err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	freePort := func() string {
		t.Helper()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	listen := freePort()
	cmd := exec.Command(filepath.Join(root, "scripts", "run-dev.sh"))
	cmd.Env = append(os.Environ(),
		"KAKUIN="+f.bin,
		"KAKUIN_PKI_DIR="+filepath.Join(dir, "pki"),
		"KAKUIN_UPSTREAM=maildir:"+filepath.Join(dir, "outbox"),
		"KAKUIN_LISTEN="+listen,
		"KAKUIN_METRICS_LISTEN="+freePort(),
	)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
		}
	})
	// What it prints, up to the closing paragraph.
	printed := make(chan string, 1)
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "dkimverify.py checks both DKIM") {
				break
			}
		}
		printed <- b.String()
		io.Copy(io.Discard, stdout)
	}()
	var text string
	select {
	case text = <-printed:
	case <-time.After(60 * time.Second):
		t.Fatalf("run-dev.sh printed no instructions\n%s", stderr.String())
	}
	// The gateway listens once run-dev.sh has exec'd it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway does not listen on %s\n%s", listen, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The commands, as pasted: indented lines, continuations joined.
	_, after, ok := strings.Cut(text, "Send a test message")
	if !ok {
		t.Fatalf("no send instructions:\n%s", text)
	}
	send, check, ok := strings.Cut(after, "Check the signed result")
	if !ok {
		t.Fatalf("no check instructions:\n%s", text)
	}
	commands := func(s string) string {
		var b strings.Builder
		for _, line := range strings.Split(s, "\n") {
			if strings.HasPrefix(line, "  ") {
				b.WriteString(strings.TrimSpace(line) + "\n")
			}
		}
		return strings.ReplaceAll(b.String(), "\\\n", " ")
	}
	paste := func(script string) string {
		t.Helper()
		script = strings.ReplaceAll(script, "/usr/bin/python3", f.python)
		c := exec.Command("sh", "-e", "-c", script)
		c.Dir = root // testdata/scripts/dkimverify.py is relative to it
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s\ngateway:\n%s", script, err, out, stderr.String())
		}
		return string(out)
	}
	out := paste(commands(send))
	if !strings.Contains(out, "<~  250 2.0.0 OK id=") {
		t.Fatalf("swaks did not get the gateway's final 250:\n%s", out)
	}
	out = paste(commands(check))
	for _, want := range []string{"GENUINE: signed by taro@example.go.jp", "CMS Verification successful", "pass a=rsa-sha256", "pass a=ed25519-sha256"} {
		if !strings.Contains(out, want) {
			t.Errorf("the check commands did not print %q:\n%s", want, out)
		}
	}
}
