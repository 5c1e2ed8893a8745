package relay

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// maildirUpstream delivers into a Maildir (tmp/, new/, cur/): the
// message is written to tmp/, synced, then renamed into new/, so a reader
// never sees a partial file and a crash leaves at most a file in tmp/.
type maildirUpstream struct {
	dir  string
	opts Options
	seq  atomic.Uint64
}

// NewMaildir returns an upstream that stores each message in the Maildir
// at dir, creating tmp/, new/ and cur/ (mode 0700) if needed. Each file
// starts with Return-Path and one Delivered-To per recipient, as a final
// delivery agent writes them (RFC 5321 4.4).
func NewMaildir(dir string, opts Options) (Upstream, error) {
	opts.defaults()
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	return &maildirUpstream{dir: dir, opts: opts}, nil
}

func (m *maildirUpstream) Begin(ctx context.Context, from string, opts MailOptions) (Txn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return &maildirTxn{m: m, from: from}, nil
}

func (m *maildirUpstream) Ping(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(m.dir, "new")); err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	return nil
}

func (m *maildirUpstream) Close() error { return nil }

// SupportsSMTPUTF8 implements UTF8Prober: a Maildir file holds any octets
// (RFC 6532 header fields included).
func (m *maildirUpstream) SupportsSMTPUTF8(context.Context) (bool, error) { return true, nil }

type maildirTxn struct {
	m    *maildirUpstream
	from string
	to   []string
	done bool
}

func (t *maildirTxn) Rcpt(ctx context.Context, to string) error {
	if t.done {
		return fmt.Errorf("%w: transaction already ended", ErrDropped)
	}
	if strings.ContainsAny(to, "\r\n") {
		return fmt.Errorf("%w: line break in recipient", ErrStore)
	}
	t.to = append(t.to, to)
	return nil
}

func (t *maildirTxn) Abort() { t.done = true }

// Data writes the message into tmp/, syncs it and renames it into new/.
func (t *maildirTxn) Data(ctx context.Context, r io.Reader) (string, error) {
	if t.done {
		return "", fmt.Errorf("%w: transaction already ended", ErrDropped)
	}
	t.done = true
	if strings.ContainsAny(t.from, "\r\n") {
		return "", fmt.Errorf("%w: line break in sender", ErrStore)
	}
	name := t.m.name()
	tmp := filepath.Join(t.m.dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrStore, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	w := bufio.NewWriterSize(f, 64<<10)
	fmt.Fprintf(w, "Return-Path: <%s>\r\n", t.from)
	for _, to := range t.to {
		fmt.Fprintf(w, "Delivered-To: %s\r\n", to)
	}
	if _, err := io.Copy(w, contextReader{ctx, r}); err != nil {
		return "", fmt.Errorf("%w: %w", ErrStore, err)
	}
	if err := w.Flush(); err != nil {
		return "", fmt.Errorf("%w: %w", ErrStore, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("%w: %w", ErrStore, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("%w: %w", ErrStore, err)
	}
	if err := os.Rename(tmp, filepath.Join(t.m.dir, "new", name)); err != nil {
		return "", fmt.Errorf("%w: %w", ErrStore, err)
	}
	ok = true
	// The rename is durable only once the directory is synced.
	if d, err := os.Open(filepath.Join(t.m.dir, "new")); err == nil {
		d.Sync()
		d.Close()
	}
	return "2.0.0 stored as " + name, nil
}

// name is a unique Maildir file name: time, a random part, a sequence
// number and the host name (the classic maildir(5) recipe).
func (m *maildirUpstream) name() string {
	var b [6]byte
	rand.Read(b[:])
	now := m.opts.Now()
	host := strings.NewReplacer("/", "\\057", ":", "\\072").Replace(m.opts.Hostname)
	return fmt.Sprintf("%d.M%dR%sQ%d.%s", now.Unix(), now.Nanosecond()/1000, hex.EncodeToString(b[:]), m.seq.Add(1), host)
}

// contextReader stops reading when ctx is done.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, errors.Join(ErrTimeout, err)
	}
	return c.r.Read(b)
}
