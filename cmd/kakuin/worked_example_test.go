package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeWorkedExample runs the README's worked example as written
// (its first two sh blocks, in a scratch directory holding bin/kakuin
// and testdata/scripts/dkimverify.py, `make build` done beforehand) and
// checks the results it promises: openssl verifies the S/MIME signature,
// dkimpy passes both DKIM signatures, and a sender outside go.jp is
// refused with exit status 1, one line on stderr and nothing on stdout.
func TestReadmeWorkedExample(t *testing.T) {
	f := interop(t) // the kakuin binary, openssl and dkimpy
	blocks := readmeBlocks(t, "## Worked example", "sh")
	if len(blocks) < 2 {
		t.Fatalf("the worked example has %d sh blocks, want 2", len(blocks))
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(f.bin, filepath.Join(dir, "bin", "kakuin")); err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile(filepath.Join("..", "..", "testdata", "scripts", "dkimverify.py"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "testdata", "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "testdata", "scripts", "dkimverify.py"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	sh := func(block string) (stdout, stderr string, err error) {
		t.Helper()
		block = strings.Replace(block, "make build\n", "", 1) // done above
		block = strings.ReplaceAll(block, "/usr/bin/python3", f.python)
		cmd := exec.Command("sh", "-e", "-c", block)
		cmd.Dir = dir
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err = cmd.Run()
		return o.String(), e.String(), err
	}

	out, errs, err := sh(blocks[0])
	if err != nil {
		t.Fatalf("worked example: %v\nstdout:\n%s\nstderr:\n%s", err, out, errs)
	}
	if !strings.Contains(errs, "CMS Verification successful") {
		t.Errorf("openssl did not say CMS Verification successful:\n%s", errs)
	}
	for _, want := range []string{"pass a=rsa-sha256 d=example.go.jp s=rsa-", "pass a=ed25519-sha256 d=example.go.jp s=ed-"} {
		if !strings.Contains(out, want) {
			t.Errorf("dkimverify.py did not print %q:\n%s", want, out)
		}
	}

	out, errs, err = sh(blocks[1])
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("outside go.jp: %v, want exit status 1\n%s", err, errs)
	}
	if out != "" || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, "kakuin sign: refused: signer: sender not allowed") {
		t.Fatalf("outside go.jp: stdout %q, stderr %q", out, errs)
	}
}
