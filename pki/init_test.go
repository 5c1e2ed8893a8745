package pki_test

import (
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/kakuin/kakuin/pki"
)

type fileState struct {
	mode    fs.FileMode
	modTime time.Time
	data    string
}

// snapshot records every file and directory under dir.
func snapshot(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	m := make(map[string]fileState)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		var data []byte
		if d.Type().IsRegular() {
			if data, err = os.ReadFile(p); err != nil {
				return err
			}
		}
		m[p] = fileState{st.Mode(), st.ModTime(), string(data)}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestInit(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pki")
	now := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	opts := pki.InitOptions{Dir: dir, Domains: []string{"Example.GO.JP", "mhlw.go.jp"}, Now: func() time.Time { return now }}
	r, err := pki.Init(opts)
	if err != nil {
		t.Fatal(err)
	}
	l := pki.Layout{Dir: dir}
	if len(r.Kept) != 0 || len(r.Rewritten) != 0 {
		t.Fatalf("first run kept %v rewrote %v", r.Kept, r.Rewritten)
	}
	for _, p := range []string{l.RootCert(), l.RootKey(), l.IssuerCert(), l.IssuerKey(), l.TLSCert(), l.TLSKey(), l.TrustAnchors(), l.DNSZone(),
		filepath.Join(l.DKIMDir(), "example.go.jp", "rsa-202611.key"), filepath.Join(l.DKIMDir(), "example.go.jp", "ed-202611.key"),
		filepath.Join(l.DKIMDir(), "mhlw.go.jp", "rsa-202611.key"), filepath.Join(l.DKIMDir(), "mhlw.go.jp", "ed-202611.key")} {
		if !slices.Contains(r.Created, p) {
			t.Errorf("not reported created: %s", p)
		}
	}
	if got := r.Selectors["example.go.jp"]; !slices.Equal(got, []string{"rsa-202611", "ed-202611"}) {
		t.Fatalf("selectors %v", got)
	}
	// Modes: keys 0600, key directories 0700.
	for p, st := range snapshot(t, dir) {
		switch {
		case strings.HasSuffix(p, ".key") || p == l.TLSKey():
			if st.mode.Perm() != 0o600 {
				t.Errorf("%s: mode %v", p, st.mode)
			}
		case st.mode.IsDir():
			if st.mode.Perm() != 0o700 {
				t.Errorf("%s: mode %v", p, st.mode)
			}
		}
	}
	// The hierarchy: root -> issuing CA; trust anchors = the root only.
	anchors, err := pki.LoadCertificates(l.TrustAnchors())
	if err != nil || len(anchors) != 1 {
		t.Fatalf("trust anchors: %d, %v", len(anchors), err)
	}
	root, rootKey, err := pki.LoadCA(l.RootCert(), l.RootKey())
	if err != nil || !root.Equal(anchors[0]) {
		t.Fatalf("root: %v", err)
	}
	if k, ok := pki.SoftRSAKey(rootKey); !ok || k.N.BitLen() < 2048 {
		t.Fatalf("root key %T", rootKey)
	}
	issuing, _, err := pki.LoadCA(l.IssuerCert(), l.IssuerKey())
	if err != nil {
		t.Fatal(err)
	}
	if err := issuing.CheckSignatureFrom(root); err != nil {
		t.Fatal(err)
	}
	tlsCerts, err := pki.LoadCertificates(l.TLSCert())
	if err != nil {
		t.Fatal(err)
	}
	if tc := tlsCerts[0]; !slices.Equal(tc.DNSNames, []string{"localhost"}) || len(tc.IPAddresses) != 2 || tc.CheckSignatureFrom(root) != nil {
		t.Fatalf("tls certificate: %v %v", tc.DNSNames, tc.IPAddresses)
	}
	if _, err := pki.LoadSigner(l.TLSKey()); err != nil {
		t.Fatal(err)
	}

	// The DKIM keyring loads from the layout; the zone publishes its keys.
	kr, err := pki.LoadDKIMKeyring(l.DKIMDir())
	if err != nil {
		t.Fatal(err)
	}
	checkZone(t, l.DNSZone(), kr, []string{"example.go.jp", "mhlw.go.jp"})

	// Second run: nothing changes, not even a modification time.
	before := snapshot(t, dir)
	r2, err := pki.Init(opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(r2.Created) != 0 || len(r2.Rewritten) != 0 {
		t.Fatalf("second run created %v rewrote %v", r2.Created, r2.Rewritten)
	}
	if diff := diffSnapshots(before, snapshot(t, dir)); len(diff) != 0 {
		t.Fatalf("second run changed %v", diff)
	}

	// A later month, a new domain: only its keys are new; dns.zone is
	// regenerated with all three domains; existing domains keep their
	// selectors.
	now = now.AddDate(0, 2, 0)
	opts.Domains = []string{"example.go.jp", "soumu.go.jp"}
	r3, err := pki.Init(opts)
	if err != nil {
		t.Fatal(err)
	}
	newKeys := []string{filepath.Join(l.DKIMDir(), "soumu.go.jp", "ed-202701.key"), filepath.Join(l.DKIMDir(), "soumu.go.jp", "rsa-202701.key")}
	slices.Sort(r3.Created)
	if !slices.Equal(r3.Created, newKeys) || !slices.Equal(r3.Rewritten, []string{l.DNSZone()}) {
		t.Fatalf("third run created %v rewrote %v", r3.Created, r3.Rewritten)
	}
	after := snapshot(t, dir)
	diff := diffSnapshots(before, after)
	want := append([]string{filepath.Join(l.DKIMDir(), "soumu.go.jp"), l.DNSZone()}, newKeys...)
	slices.Sort(want)
	// Directory modification times change with new entries (dkim/) and
	// with the rename of the new dns.zone (DIR).
	diff = slices.DeleteFunc(diff, func(p string) bool { return p == l.DKIMDir() || p == dir })
	if !slices.Equal(diff, want) {
		t.Fatalf("third run changed %v, want %v", diff, want)
	}
	if got := r3.Selectors["example.go.jp"]; !slices.Equal(got, []string{"rsa-202611", "ed-202611"}) {
		t.Fatalf("existing domain selectors %v", got)
	}
	kr, err = pki.LoadDKIMKeyring(l.DKIMDir())
	if err != nil {
		t.Fatal(err)
	}
	checkZone(t, l.DNSZone(), kr, []string{"example.go.jp", "mhlw.go.jp", "soumu.go.jp"})
}

func diffSnapshots(a, b map[string]fileState) []string {
	var d []string
	for p, sa := range a {
		if sb, ok := b[p]; !ok || sa != sb {
			d = append(d, p)
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			d = append(d, p)
		}
	}
	slices.Sort(d)
	return d
}

// checkZone parses dns.zone with miekg/dns and checks that it publishes
// exactly the keyring's keys (strings <= 255 octets, joined value equal to
// pki.DKIMRecord) and SPF -all and DMARC p=reject for each domain.
func checkZone(t *testing.T, path string, kr *pki.DKIMKeyring, domains []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	txt := make(map[string]string)
	zp := dns.NewZoneParser(f, ".", path)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		r, isTXT := rr.(*dns.TXT)
		if !isTXT {
			t.Fatalf("unexpected record %v", rr)
		}
		for _, s := range r.Txt {
			if len(s) > 255 {
				t.Fatalf("%s: character-string of %d octets", r.Hdr.Name, len(s))
			}
		}
		if _, dup := txt[r.Hdr.Name]; dup {
			t.Fatalf("%s twice", r.Hdr.Name)
		}
		txt[r.Hdr.Name] = strings.Join(r.Txt, "")
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("dns.zone does not parse: %v", err)
	}
	if got := kr.Domains(); !slices.Equal(got, domains) {
		t.Fatalf("keyring domains %v", got)
	}
	want := 0
	for _, d := range domains {
		keys, err := kr.DKIMKeys(d)
		if err != nil {
			t.Fatal(err)
		}
		var sawRSA, sawEd bool
		for _, k := range keys {
			v, err := pki.DKIMRecord(k.Signer.Public())
			if err != nil {
				t.Fatal(err)
			}
			if got := txt[pki.DKIMRecordName(d, k.Selector)+"."]; got != v {
				t.Fatalf("%s/%s: zone has %q", d, k.Selector, got)
			}
			switch k.Signer.Public().(type) {
			case *rsa.PublicKey:
				sawRSA = true
			case ed25519.PublicKey:
				sawEd = true
			}
			want++
		}
		if !sawRSA || !sawEd {
			t.Fatalf("%s: rsa %v ed25519 %v", d, sawRSA, sawEd)
		}
		if spf := txt[d+"."]; !strings.HasPrefix(spf, "v=spf1 ") || !strings.HasSuffix(spf, " -all") {
			t.Fatalf("%s: spf %q", d, spf)
		}
		if dm := txt["_dmarc."+d+"."]; !strings.HasPrefix(dm, "v=DMARC1; p=reject;") {
			t.Fatalf("%s: dmarc %q", d, dm)
		}
		want += 2
	}
	if len(txt) != want {
		t.Fatalf("zone has %d records, want %d", len(txt), want)
	}
}

func TestInitRefusesPartialState(t *testing.T) {
	t.Parallel()
	l := devPKI(t, "example.go.jp")
	if err := os.Remove(l.IssuerKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.Init(pki.InitOptions{Dir: l.Dir}); !errors.Is(err, pki.ErrInit) {
		t.Fatalf("issuing cert without key: %v", err)
	}
	if _, err := os.Stat(l.IssuerKey()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("Init recreated a key for an existing certificate")
	}

	l2 := devPKI(t)
	if err := os.Chmod(l2.RootKey(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.Init(pki.InitOptions{Dir: l2.Dir}); !errors.Is(err, pki.ErrKeyPermissions) {
		t.Fatalf("0644 root key: %v", err)
	}
	if _, err := pki.Init(pki.InitOptions{}); !errors.Is(err, pki.ErrInit) {
		t.Fatalf("no dir: %v", err)
	}
	if _, err := pki.Init(pki.InitOptions{Dir: t.TempDir(), Domains: []string{"bad..domain"}}); !errors.Is(err, pki.ErrInit) {
		t.Fatalf("bad domain: %v", err)
	}
}

// TestOpenStore: the store of an Init layout issues into certs/, and a
// store opened later without issuance finds what was issued.
func TestOpenStore(t *testing.T) {
	t.Parallel()
	l := devPKI(t, "example.go.jp")
	st, err := pki.OpenStore(l, pki.OpenOptions{Issue: true, Issuer: pki.IssuerOptions{Domains: []string{"example.go.jp"}}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := st.Identity(t.Context(), "soumu-ka@example.go.jp")
	if err != nil {
		t.Fatal(err)
	}
	ro, err := pki.OpenStore(l, pki.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ro.Identity(t.Context(), "soumu-ka@example.go.jp")
	if err != nil || !got.Certificate.Equal(id.Certificate) {
		t.Fatalf("reopened: %v", err)
	}
	if _, err := ro.Identity(t.Context(), "other@example.go.jp"); !errors.Is(err, pki.ErrNoCertificate) {
		t.Fatalf("no issuer: %v", err)
	}
	if _, err := pki.OpenStore(pki.Layout{Dir: t.TempDir()}, pki.OpenOptions{}); !errors.Is(err, pki.ErrCertFile) {
		t.Fatalf("empty dir: %v", err)
	}
}
