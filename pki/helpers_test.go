package pki_test

import (
	"sync"
	"testing"
	"time"

	"github.com/kakuin/kakuin/pki"
)

// devPKI lays out a development PKI with Init in a temporary directory.
func devPKI(t *testing.T, domains ...string) pki.Layout {
	t.Helper()
	dir := t.TempDir()
	if _, err := pki.Init(pki.InitOptions{Dir: dir, Domains: domains, Now: func() time.Time { return time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC) }}); err != nil {
		t.Fatal(err)
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
