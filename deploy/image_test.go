package deploy_test

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// No Docker engine runs on the development machines and no registry is
// reachable from them, so deploy/Dockerfile cannot be built in the
// tests. TestContainerImageRecipe checks what can be checked without one:
// the recipe's shape (a build stage, then a distroless static final
// stage with no shell, as a non-root user, an exec-form entry point), the
// binary its build stage makes with its own command (statically linked,
// libcrypto included: no ELF interpreter, no shared libraries), and that
// this binary does its work as the image's user (uid 65532), not root:
// pki init, and a gateway that signs RSA through libcrypto.

// stage is one FROM ... section of a Dockerfile.
type stage struct {
	from  string
	instr []string // instruction lines after FROM, continuations joined
}

func readStages(t *testing.T, path string) []stage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stages []stage
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		word, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(word) {
		case "FROM":
			stages = append(stages, stage{from: strings.TrimSpace(rest)})
		case "ARG":
			if len(stages) == 0 {
				return // global ARG before the first FROM
			}
			fallthrough
		default:
			if len(stages) == 0 {
				t.Fatalf("%s: instruction before FROM: %s", path, line)
			}
			s := &stages[len(stages)-1]
			s.instr = append(s.instr, line)
		}
	}
	for sc.Scan() {
		line := sc.Text()
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	flush()
	return stages
}

func TestContainerImageRecipe(t *testing.T) {
	stages := readStages(t, "Dockerfile")
	if len(stages) < 2 {
		t.Fatalf("%d stages: want a build stage and a final one", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	// The final stage: distroless static (no shell, no libc), the
	// nonroot variant, a numeric non-root USER, nothing run inside it,
	// and an exec-form entry point (a shell form would need /bin/sh).
	if !strings.Contains(final.from, "distroless/static") || !strings.Contains(final.from, ":nonroot") {
		t.Errorf("final stage FROM %s: want distroless/static:nonroot", final.from)
	}
	var user, entry string
	for _, in := range final.instr {
		word, rest, _ := strings.Cut(in, " ")
		switch strings.ToUpper(word) {
		case "RUN", "SHELL":
			t.Errorf("final stage runs something (no shell there): %s", in)
		case "USER":
			user = strings.TrimSpace(rest)
		case "ENTRYPOINT":
			entry = strings.TrimSpace(rest)
		case "COPY":
			if !strings.Contains(rest, "--from=") {
				t.Errorf("final stage copies from the build context, not the build stage: %s", in)
			}
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("final stage USER %q: want a numeric non-root uid", user)
	}
	var argv []string
	if err := json.Unmarshal([]byte(entry), &argv); err != nil || len(argv) == 0 {
		t.Errorf("ENTRYPOINT %s: want the exec form", entry)
	}

	// The build stage: a static binary, cgo only for libcrypto. Build it
	// with the Dockerfile's own command (from CGO_ENABLED= on, into a
	// scratch path) and look at the ELF file.
	var goBuild string
	for _, in := range build.instr {
		if strings.Contains(in, "go build") {
			goBuild = in
		}
	}
	i := strings.Index(goBuild, "CGO_ENABLED=")
	if i < 0 || !strings.Contains(goBuild, "./cmd/kakuin") || !strings.Contains(goBuild, "-o /out/kakuin ") {
		t.Fatalf("build stage: no CGO_ENABLED=... go build -o /out/kakuin ./cmd/kakuin: %q", goBuild)
	}
	bin := filepath.Join(t.TempDir(), "kakuin")
	cmd := exec.Command("sh", "-c", strings.Replace(goBuild[i:], "-o /out/kakuin ", "-o '"+bin+"' ", 1))
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", goBuild[i:], err, out)
	}
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v program header: not static", p.Type)
		}
	}
	if libs, _ := ef.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("binary needs shared libraries %v", libs)
	}

	// As the image's user: lay out a development PKI (keys 0600, owned
	// by that user) and answer --help, without root.
	n, _ := strconv.Atoi(uid)
	if os.Geteuid() != 0 {
		t.Fatalf("running the binary as uid %d needs root (make test runs as root)", n)
	}
	dir := t.TempDir()
	// The test's temporary directories are root's, mode 0700: let the
	// user through to the binary (and to its own directory, chowned).
	for _, p := range []string{filepath.Dir(filepath.Dir(bin)), filepath.Dir(bin)} {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(dir, n, n); err != nil {
		t.Fatal(err)
	}
	as := func(args ...string) []byte {
		t.Helper()
		c := exec.Command(bin, args...)
		c.Env = []string{"PATH=/nonexistent"} // nothing from the host's PATH
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(n), Gid: uint32(n)}}
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("kakuin %v as uid %d: %v\n%s", args, n, err, out)
		}
		return out
	}
	pkiDir := filepath.Join(dir, "pki")
	as("pki", "init", "--dir", pkiDir, "--domain", "example.go.jp")
	keys, _ := filepath.Glob(filepath.Join(pkiDir, "*", "*.key"))
	more, _ := filepath.Glob(filepath.Join(pkiDir, "*.key"))
	keys = append(keys, more...)
	if len(keys) == 0 {
		t.Fatalf("pki init as uid %d wrote no key files", n)
	}
	for _, k := range keys {
		fi, err := os.Stat(k)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != 0o600 || int(st.Uid) != n {
			t.Errorf("%s: mode %v, uid %d; want 0600 owned by %d", k, fi.Mode().Perm(), st.Uid, n)
		}
	}
	if out := as("gateway", "--help"); !strings.Contains(string(out), "KAKUIN_LISTEN") {
		t.Errorf("gateway --help as uid %d:\n%s", n, out)
	}

	// The gateway starts as that user, with the image's environment but
	// on loopback, and its RSA keys sign through the libcrypto linked in.
	gw := exec.Command(bin, "gateway")
	gw.Env = []string{"PATH=/nonexistent", "KAKUIN_PKI_DIR=" + pkiDir, "KAKUIN_LISTEN=127.0.0.1:0",
		"KAKUIN_METRICS_LISTEN=off", "KAKUIN_UPSTREAM=maildir:" + filepath.Join(dir, "outbox")}
	gw.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(n), Gid: uint32(n)}}
	stderr, err := gw.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	defer gw.Wait() //nolint:errcheck // killed
	defer gw.Process.Kill()
	timer := time.AfterFunc(30*time.Second, func() { gw.Process.Kill() })
	defer timer.Stop()
	var seen strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(sc.Text(), "kakuin gateway: listening") {
		seen.WriteString(sc.Text() + "\n")
	}
	if line := sc.Text(); !strings.Contains(line, `"rsa":"libcrypto"`) {
		t.Errorf("the image's gateway does not sign through libcrypto:\n%s%s", seen.String(), line)
	}
}
