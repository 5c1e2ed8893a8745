// Package postfixtest runs private Postfix instances for tests, the way
// net/http/httptest runs HTTP servers: each instance has its own main.cf
// and master.cf in a temporary directory, its queue and data directories
// inside it, chroot off, a maillog_file instead of syslog, no DNS, and an
// smtpd on a loopback port. It also offers a capturing SMTP sink (Sink), a
// helper to submit with `sendmail -C DIR`, and bounded waits for the queue
// to drain and for mail (bounces) to reach a local mailbox.
//
// It needs root and Debian's postfix package (installed by `make deps`);
// see ../../../shared/reference/POSTFIX-IN-TESTS.md for the reasons behind
// each setting. Instances are stopped with `postfix -c DIR stop` in
// t.Cleanup, never by process name.
package postfixtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Errors a caller can compare with errors.Is.
var (
	// ErrUnavailable: postfix is not installed or the test does not run as
	// root; Start skips the test with this reason.
	ErrUnavailable = errors.New("postfixtest: postfix unavailable")
	// ErrTimeout: a bounded wait ran out.
	ErrTimeout = errors.New("postfixtest: timeout")
)

// Options configure an Instance. The zero value is a relay-less instance
// named "postfix" that listens on a free loopback port.
type Options struct {
	// Name is the instance's syslog_name and the first label of its
	// myhostname. Default "postfix".
	Name string
	// Hostname is myhostname. Downstream servers must greet with another
	// name, or Postfix detects a mail loop. Default Name + ".test.invalid".
	Hostname string
	// Relayhost is the literal next hop for all non-local mail, e.g.
	// "[127.0.0.1]:2525" (brackets: no MX lookup). Empty: no relayhost;
	// non-local mail then defers, since DNS is disabled.
	Relayhost string
	// Mailboxes are addresses delivered locally into Maildirs under the
	// instance directory (virtual(8)), typically senders who must receive
	// their bounces. Read them with Mailbox and WaitMailbox.
	Mailboxes []string
	// Main holds extra main.cf parameters; they override the defaults.
	// $config_directory names the instance's configuration directory.
	Main map[string]string
	// Master holds extra master.cf lines, appended as they are.
	Master []string
	// Files are written into the configuration directory before start,
	// mode 0600 (for example a SASL password map).
	Files map[string]string
	// StartTimeout bounds start and the first successful connection to
	// the smtpd port. Default 30s.
	StartTimeout time.Duration
}

// Instance is a running private Postfix instance.
type Instance struct {
	t    testing.TB
	opts Options
	dir  string // the instance's root: conf/, queue/, data/, mail/, maillog
	port int

	mu      sync.Mutex
	running bool
}

// mailUID is the owner of local Maildirs: virtual(8) refuses uids below
// virtual_minimum_uid (100), and "nobody" exists on every Debian system.
const mailUID = 65534

// Available reports whether private Postfix instances can run here: the
// postfix binary is installed and the process is root. The error wraps
// ErrUnavailable.
func Available() error {
	if _, err := exec.LookPath("postfix"); err != nil {
		if _, err2 := os.Stat("/usr/sbin/postfix"); err2 != nil {
			return fmt.Errorf("%w: not installed (make deps): %w", ErrUnavailable, err)
		}
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: postfix -c DIR start needs root", ErrUnavailable)
	}
	return nil
}

// Require skips the test when private Postfix instances cannot run here.
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err.Error())
	}
}

// Start creates, starts and registers the stop of a private instance. It
// fails the test if Postfix does not start or its smtpd does not accept
// connections within Options.StartTimeout. On test failure the end of the
// instance's maillog is printed.
func Start(t testing.TB, opts Options) *Instance {
	t.Helper()
	Require(t)
	if opts.Name == "" {
		opts.Name = "postfix"
	}
	if opts.Hostname == "" {
		opts.Hostname = opts.Name + ".test.invalid"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	dir, err := os.MkdirTemp("", "postfixtest-"+opts.Name+"-")
	if err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	in := &Instance{t: t, opts: opts, dir: dir}
	t.Cleanup(func() {
		// Runs last (registered first): the instance is stopped by then.
		removeAll(t, dir)
	})
	if err := in.layout(); err != nil {
		t.Fatalf("postfixtest: %s: %v", opts.Name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postfixtest: %s maillog (last lines):\n%s", opts.Name, tail(in.Maillog(), 150))
		}
		if err := in.Stop(); err != nil {
			t.Errorf("postfixtest: %s: %v", opts.Name, err)
		}
	})
	// A free port can be taken by someone else before master binds it:
	// try a few.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if in.port, err = FreePort(); err != nil {
			t.Fatalf("postfixtest: %v", err)
		}
		if err := in.writeConfig(); err != nil {
			t.Fatalf("postfixtest: %s: %v", opts.Name, err)
		}
		if lastErr = in.Start(); lastErr == nil {
			return in
		}
		if !strings.Contains(lastErr.Error(), "in use") {
			break
		}
	}
	t.Fatalf("postfixtest: %s: %v\nmaillog:\n%s", opts.Name, lastErr, tail(in.Maillog(), 60))
	return nil
}

// Dir is the instance's root directory.
func (in *Instance) Dir() string { return in.dir }

// ConfigDir is the directory with main.cf and master.cf (postfix -c).
func (in *Instance) ConfigDir() string { return filepath.Join(in.dir, "conf") }

// QueueDir is the instance's queue_directory.
func (in *Instance) QueueDir() string { return filepath.Join(in.dir, "queue") }

// MaillogPath is the instance's maillog_file.
func (in *Instance) MaillogPath() string { return filepath.Join(in.dir, "maillog") }

// Addr is the smtpd's loopback address, "127.0.0.1:PORT".
func (in *Instance) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(in.port)) }

// Port is the smtpd's port.
func (in *Instance) Port() int { return in.port }

// Hostname is the instance's myhostname.
func (in *Instance) Hostname() string { return in.opts.Hostname }

// Maillog returns the instance's log so far ("" if there is none yet).
func (in *Instance) Maillog() string {
	b, _ := os.ReadFile(in.MaillogPath())
	return string(b)
}

func (in *Instance) layout() error {
	// mktemp makes 0700 directories; postfix's own users must enter.
	if err := os.Chmod(in.dir, 0o755); err != nil {
		return err
	}
	for _, d := range []string{"conf", "queue", "data", "mail"} {
		if err := os.Mkdir(filepath.Join(in.dir, d), 0o755); err != nil {
			return err
		}
	}
	// data_directory must belong to the postfix user (master.lock).
	uid, gid, err := lookupIDs("postfix")
	if err != nil {
		return err
	}
	if err := os.Chown(filepath.Join(in.dir, "data"), uid, gid); err != nil {
		return err
	}
	// virtual(8) creates the Maildirs as mailUID.
	return os.Chown(filepath.Join(in.dir, "mail"), mailUID, mailUID)
}

// mainDefaults are the main.cf parameters of every instance. Options.Main
// overrides them.
func (in *Instance) mainDefaults() map[string]string {
	m := map[string]string{
		"compatibility_level":   "3.6",
		"queue_directory":       in.QueueDir(),
		"data_directory":        filepath.Join(in.dir, "data"),
		"myhostname":            in.opts.Hostname,
		"mydomain":              "test.invalid",
		"myorigin":              "$myhostname",
		"mydestination":         "",
		"inet_interfaces":       "127.0.0.1",
		"inet_protocols":        "ipv4",
		"mynetworks":            "127.0.0.0/8",
		"syslog_name":           in.opts.Name,
		"maillog_file":          in.MaillogPath(),
		"maillog_file_prefixes": in.dir,
		// No DNS here (POSTFIX-IN-TESTS): literal next hops only.
		"smtp_dns_support_level": "disabled",
		"smtpd_peername_lookup":  "no",
		"smtp_host_lookup":       "native",
		"relayhost":              in.opts.Relayhost,
		"alias_maps":             "",
		"alias_database":         "",
		"local_transport":        "error:5.1.1 local delivery is disabled in postfixtest",
		"biff":                   "no",
		"smtputf8_enable":        "yes",
		// Accept quickly even if the queue manager falls behind.
		"in_flow_delay":        "0",
		"virtual_mailbox_base": filepath.Join(in.dir, "mail"),
		"virtual_uid_maps":     "static:" + strconv.Itoa(mailUID),
		"virtual_gid_maps":     "static:" + strconv.Itoa(mailUID),
		"virtual_minimum_uid":  "100",
	}
	if len(in.opts.Mailboxes) > 0 {
		domains := map[string]bool{}
		for _, a := range in.opts.Mailboxes {
			if _, d, ok := strings.Cut(a, "@"); ok {
				domains[strings.ToLower(d)] = true
			}
		}
		m["virtual_mailbox_domains"] = strings.Join(sortedKeys(domains), ", ")
		m["virtual_mailbox_maps"] = "texthash:$config_directory/vmailbox"
	}
	return m
}

// masterCF is Debian's stock master.cf with chroot off everywhere, the
// smtpd on the instance's loopback port, and postlog for maillog_file.
const masterCF = `# service type  private unpriv  chroot  wakeup  maxproc command + args
%s inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
tlsproxy  unix  -       -       n       -       0       tlsproxy
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

func (in *Instance) writeConfig() error {
	conf := in.ConfigDir()
	params := in.mainDefaults()
	for k, v := range in.opts.Main {
		params[k] = v
	}
	var main bytes.Buffer
	fmt.Fprintf(&main, "# postfixtest instance %s\n", in.opts.Name)
	for _, k := range sortedKeys(params) {
		fmt.Fprintf(&main, "%s = %s\n", k, params[k])
	}
	if err := os.WriteFile(filepath.Join(conf, "main.cf"), main.Bytes(), 0o644); err != nil {
		return err
	}
	master := fmt.Sprintf(masterCF, in.Addr())
	if len(in.opts.Master) > 0 {
		master += strings.Join(in.opts.Master, "\n") + "\n"
	}
	if err := os.WriteFile(filepath.Join(conf, "master.cf"), []byte(master), 0o644); err != nil {
		return err
	}
	if len(in.opts.Mailboxes) > 0 {
		var vm bytes.Buffer
		for _, a := range in.opts.Mailboxes {
			fmt.Fprintf(&vm, "%s %s/\n", a, mailboxPath(a))
		}
		if err := os.WriteFile(filepath.Join(conf, "vmailbox"), vm.Bytes(), 0o644); err != nil {
			return err
		}
	}
	for name, content := range in.opts.Files {
		if err := os.WriteFile(filepath.Join(conf, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// mailboxPath is the Maildir of addr relative to the mail directory.
func mailboxPath(addr string) string {
	local, domain, _ := strings.Cut(strings.ToLower(addr), "@")
	return filepath.Join(domain, local)
}

// postfix runs the postfix command on this instance.
func (in *Instance) postfix(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "postfix", append([]string{"-c", in.ConfigDir()}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("postfix %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Start starts the instance (again, after Stop) and waits until its smtpd
// accepts connections.
func (in *Instance) Start() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.running {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), in.opts.StartTimeout)
	defer cancel()
	logStart := len(in.Maillog())
	if _, err := in.postfix(ctx, "start"); err != nil {
		return err
	}
	in.running = true
	for {
		if log := in.Maillog(); len(log) >= logStart && strings.Contains(log[logStart:], "fatal: bind") {
			_, _ = in.postfix(context.Background(), "stop")
			in.running = false
			return fmt.Errorf("smtpd on %s: address in use", in.Addr())
		}
		c, err := net.DialTimeout("tcp", in.Addr(), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: smtpd on %s does not accept connections: %w", ErrTimeout, in.Addr(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop stops the instance with `postfix -c DIR stop`, which waits for the
// master process to exit. Stopping a stopped instance does nothing.
func (in *Instance) Stop() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.running {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := in.postfix(ctx, "stop")
	if err == nil {
		in.running = false
	}
	return err
}

// Flush asks the instance to retry its deferred mail now (postqueue -f).
func (in *Instance) Flush() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "postqueue", "-c", in.ConfigDir(), "-f").CombinedOutput()
	if err != nil {
		return fmt.Errorf("postqueue -f: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// Queue returns `postqueue -p` output, for failure messages.
func (in *Instance) Queue() string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "postqueue", "-c", in.ConfigDir(), "-p").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("postqueue -p: %v: %s", err, out)
	}
	return string(out)
}

// Sendmail submits msg with `sendmail -C DIR -i -f from -- to...`, the way a
// local program hands mail to Postfix. The message then goes through
// pickup and cleanup like any other.
func (in *Instance) Sendmail(from string, to []string, msg []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"-C", in.ConfigDir(), "-i", "-f", from, "--"}, to...)
	cmd := exec.CommandContext(ctx, "sendmail", args...)
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("sendmail: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// queueDirs are the queues that hold mail not yet delivered or bounced.
var queueDirs = []string{"maildrop", "incoming", "active", "deferred", "hold"}

// QueueLen counts the messages the instance still holds (maildrop,
// incoming, active, deferred, hold).
func (in *Instance) QueueLen() (int, error) {
	n := 0
	for _, q := range queueDirs {
		err := filepath.WalkDir(filepath.Join(in.QueueDir(), q), func(_ string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.Type().IsRegular() {
				n++
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return n, nil
}

// WaitQueueEmpty waits up to timeout until the instance holds no message.
// On timeout it fails the test with the queue listing and the end of the
// maillog.
func (in *Instance) WaitQueueEmpty(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := in.waitQueueEmpty(timeout, false); err != nil {
		t.Fatalf("postfixtest: %s: %v\nqueue:\n%s\nmaillog:\n%s", in.opts.Name, err, in.Queue(), tail(in.Maillog(), 80))
	}
}

// WaitQueueEmptyFlushing is WaitQueueEmpty that also asks for a queue run
// (postqueue -f) every few seconds, so that deferred mail is retried
// without waiting for the backoff.
func (in *Instance) WaitQueueEmptyFlushing(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := in.waitQueueEmpty(timeout, true); err != nil {
		t.Fatalf("postfixtest: %s: %v\nqueue:\n%s\nmaillog:\n%s", in.opts.Name, err, in.Queue(), tail(in.Maillog(), 80))
	}
}

func (in *Instance) waitQueueEmpty(timeout time.Duration, flush bool) error {
	deadline := time.Now().Add(timeout)
	lastFlush := time.Now()
	for {
		n, err := in.QueueLen()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %d message(s) still queued after %s", ErrTimeout, n, timeout)
		}
		if flush && time.Since(lastFlush) > 3*time.Second {
			_ = in.Flush()
			lastFlush = time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Message is one message read from a local Maildir.
type Message struct {
	Path string
	Data []byte
}

// Mailbox returns the messages delivered so far to addr, one of
// Options.Mailboxes, oldest first by file name.
func (in *Instance) Mailbox(addr string) ([]Message, error) {
	var msgs []Message
	base := filepath.Join(in.dir, "mail", mailboxPath(addr))
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(base, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			p := filepath.Join(base, sub, e.Name())
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, Message{Path: p, Data: b})
		}
	}
	sort.Slice(msgs, func(i, j int) bool { return filepath.Base(msgs[i].Path) < filepath.Base(msgs[j].Path) })
	return msgs, nil
}

// WaitMailbox waits up to timeout until addr's mailbox holds at least n
// messages and returns them; on timeout it fails the test with the maillog.
func (in *Instance) WaitMailbox(t testing.TB, addr string, n int, timeout time.Duration) []Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msgs, err := in.Mailbox(addr)
		if err != nil {
			t.Fatalf("postfixtest: %s: mailbox %s: %v", in.opts.Name, addr, err)
		}
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfixtest: %s: %v: mailbox %s has %d message(s) after %s, want %d\nqueue:\n%s\nmaillog:\n%s",
				in.opts.Name, ErrTimeout, addr, len(msgs), timeout, n, in.Queue(), tail(in.Maillog(), 80))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("postfixtest: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lookupIDs(user string) (uid, gid int, err error) {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 3 && f[0] == user {
			uid, err1 := strconv.Atoi(f[2])
			gid, err2 := strconv.Atoi(f[3])
			if err1 != nil || err2 != nil {
				break
			}
			return uid, gid, nil
		}
	}
	return 0, 0, fmt.Errorf("%w: no %q user in /etc/passwd", ErrUnavailable, user)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// removeAll removes dir, retrying briefly while exiting Postfix processes
// may still create files in it.
func removeAll(t testing.TB, dir string) {
	var err error
	for i := 0; i < 20; i++ {
		if err = os.RemoveAll(dir); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("postfixtest: removing %s: %v", dir, err)
}
