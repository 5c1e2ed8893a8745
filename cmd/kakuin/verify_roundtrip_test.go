package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kakuin/kakuin/verify/lookup/lookuptest"
)

// TestVerifyRoundTrip: every message of the signing corpus, signed with
// `kakuin sign`, verifies as GENUINE with `kakuin verify` (the binary, the
// PKI directory of `kakuin pki init` and the records of its dns.zone served
// by a DNS server on loopback); with one body octet changed it is NOT
// VERIFIED (exit 1).
func TestVerifyRoundTrip(t *testing.T) {
	f := interop(t)
	zone, err := os.ReadFile(filepath.Join(f.pkiDir, "dns.zone"))
	if err != nil {
		t.Fatal(err)
	}
	srv := lookuptest.New(t)
	srv.AddZone(".", string(zone))
	env := []string{"KAKUIN_PKI_DIR=" + f.pkiDir, "KAKUIN_RESOLVER=" + srv.Addr()}
	for name, msg := range corpus(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			res := f.sign(msg)
			if res.code != 0 {
				t.Fatalf("kakuin sign: exit %d: %s", res.code, res.stderr)
			}
			v := runKakuin(f.bin, env, res.stdout, "verify", "--offline", "-")
			if v.code != 0 || !bytes.HasPrefix(v.stdout, []byte("GENUINE: signed by ")) {
				t.Fatalf("kakuin verify: exit %d\n%s%s", v.code, v.stdout, v.stderr)
			}
			bad := flipBodyByte(t, res.stdout, parseSigned(t, res.stdout))
			v = runKakuin(f.bin, env, bad, "verify", "--offline", "-")
			if v.code != 1 || !bytes.HasPrefix(v.stdout, []byte("NOT VERIFIED: ")) {
				t.Fatalf("tampered: exit %d\n%s%s", v.code, v.stdout, v.stderr)
			}
			if !strings.Contains(string(v.stdout), "smime") {
				t.Fatalf("no per-check lines:\n%s", v.stdout)
			}
		})
	}
}

// TestVerifyZoneFile: --zone answers DKIM and DMARC questions from the
// PKI's dns.zone, as the README's worked example and `make run` do: a
// signed message is GENUINE, a tampered one is not; --zone and --resolver
// together, or a missing zone file, are usage errors.
func TestVerifyZoneFile(t *testing.T) {
	f := interop(t)
	zone := filepath.Join(f.pkiDir, "dns.zone")
	env := []string{"KAKUIN_PKI_DIR=" + f.pkiDir}
	msg := corpus(t)["01-utf8-8bit.eml"]
	res := f.sign(msg)
	if res.code != 0 {
		t.Fatalf("kakuin sign: exit %d: %s", res.code, res.stderr)
	}
	v := runKakuin(f.bin, env, res.stdout, "verify", "--offline", "--zone", zone, "-")
	if v.code != 0 || !bytes.HasPrefix(v.stdout, []byte("GENUINE: ")) || !bytes.Contains(v.stdout, []byte("a=ed25519-sha256 aligned=true")) {
		t.Fatalf("kakuin verify --zone: exit %d\n%s%s", v.code, v.stdout, v.stderr)
	}
	bad := flipBodyByte(t, res.stdout, parseSigned(t, res.stdout))
	if v := runKakuin(f.bin, env, bad, "verify", "--offline", "--zone", zone, "-"); v.code != 1 {
		t.Fatalf("tampered: exit %d\n%s%s", v.code, v.stdout, v.stderr)
	}
	// Without the records, DKIM cannot pass: the zone is what made it GENUINE.
	empty := filepath.Join(t.TempDir(), "empty.zone")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if v := runKakuin(f.bin, env, res.stdout, "verify", "--offline", "--zone", empty, "-"); v.code != 1 {
		t.Fatalf("empty zone: exit %d\n%s%s", v.code, v.stdout, v.stderr)
	}
	if v := runKakuin(f.bin, env, res.stdout, "verify", "--zone", zone, "--resolver", "127.0.0.1:53", "-"); v.code != 2 {
		t.Fatalf("--zone with --resolver: exit %d, want 2", v.code)
	}
	if v := runKakuin(f.bin, env, res.stdout, "verify", "--zone", zone+".missing", "-"); v.code != 2 {
		t.Fatalf("missing zone file: exit %d, want 2", v.code)
	}
}
