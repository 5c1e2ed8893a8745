package pki_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kakuin/kakuin/pki"
)

// template is a development PKI made once by Init (an RSA-3072 root is
// not cheap) and copied for each test that needs one.
var template struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if template.dir != "" {
		os.RemoveAll(template.dir)
	}
	os.Exit(code)
}

// devPKI returns a private copy of a development PKI laid out by Init,
// with DKIM keys for domains added by a further Init run on the copy.
func devPKI(t *testing.T, domains ...string) pki.Layout {
	t.Helper()
	template.once.Do(func() {
		template.dir, template.err = os.MkdirTemp("", "kakuin-pki-template-")
		if template.err == nil {
			_, template.err = pki.Init(pki.InitOptions{Dir: template.dir, Now: func() time.Time { return time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC) }})
		}
	})
	if template.err != nil {
		t.Fatal(template.err)
	}
	dir := filepath.Join(t.TempDir(), "pki")
	if err := os.CopyFS(dir, os.DirFS(template.dir)); err != nil {
		t.Fatal(err)
	}
	// CopyFS drops the modes to 0644/0755 (umask applied): restore them.
	err := filepath.WalkDir(template.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(template.dir, p)
		return os.Chmod(filepath.Join(dir, rel), st.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(domains) > 0 {
		if _, err := pki.Init(pki.InitOptions{Dir: dir, Domains: domains}); err != nil {
			t.Fatal(err)
		}
	}
	return pki.Layout{Dir: dir}
}

// clock is an injectable, settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}
