package smtpgw

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// FuzzChecker: the message checker gives the same verdict however the
// bytes are split, and what it passes has no bare CR or LF and respects
// the limits.
func FuzzChecker(f *testing.F) {
	f.Add([]byte("From: a@b.go.jp\r\n\r\nbody\r\n"), uint8(3))
	f.Add([]byte("From: a@b.go.jp\r\n\r\nbody\n.\nMAIL FROM:<x>\r\n"), uint8(1))
	f.Add([]byte("\r\n"), uint8(0))
	f.Add([]byte("X: "+strings.Repeat("y", 300)+"\r\n\r\n"), uint8(7))
	f.Fuzz(func(t *testing.T, msg []byte, split uint8) {
		whole := &checker{maxSize: 1 << 20, maxLine: 100, maxHeader: 200}
		whole.Write(msg)
		errWhole := whole.end()
		parts := &checker{maxSize: 1 << 20, maxLine: 100, maxHeader: 200}
		step := int(split)%7 + 1
		for i := 0; i < len(msg); i += step {
			parts.Write(msg[i:min(i+step, len(msg))])
		}
		errParts := parts.end()
		if !errors.Is(errParts, errWhole) || (errWhole == nil) != (errParts == nil) {
			t.Fatalf("whole: %v, in parts of %d: %v", errWhole, step, errParts)
		}
		// Against the byte-wise definition, with these limits and with
		// small ones that the size limit reaches too.
		for _, lim := range []struct {
			size, header int64
			line         int
		}{{1 << 20, 200, 100}, {int64(split) + 40, 60, 30}} {
			ref := &refChecker{maxSize: lim.size, maxLine: lim.line, maxHeader: lim.header}
			fast := &checker{maxSize: lim.size, maxLine: lim.line, maxHeader: lim.header}
			for i := 0; i < len(msg); i += step {
				ref.Write(msg[i:min(i+step, len(msg))])
				fast.Write(msg[i:min(i+step, len(msg))])
			}
			errRef, errFast := ref.end(), fast.end()
			if errRef != errFast || errRef == nil && ref.headerLen != fast.headerLen {
				t.Fatalf("limits %+v, parts of %d: byte-wise definition: %v (header %d), checker: %v (header %d)",
					lim, step, errRef, ref.headerLen, errFast, fast.headerLen)
			}
		}
		if errWhole == nil {
			if whole.headerLen != parts.headerLen {
				t.Fatalf("header length %d vs %d", whole.headerLen, parts.headerLen)
			}
			for i, b := range msg {
				if b == '\n' && (i == 0 || msg[i-1] != '\r') || b == '\r' && (i+1 == len(msg) || msg[i+1] != '\n') {
					t.Fatalf("bare line end at %d passed", i)
				}
			}
			for _, l := range bytes.Split(msg, []byte("\r\n")) {
				if len(l) > 100 {
					t.Fatalf("line of %d passed", len(l))
				}
			}
			if whole.headerLen > 200 {
				t.Fatalf("header of %d passed", whole.headerLen)
			}
		}
	})
}

// FuzzOriginators: header parsing never panics; what it accepts is one
// mailbox with an addr-spec, and the header holds exactly one From.
func FuzzOriginators(f *testing.F) {
	f.Add([]byte("From: a@b.go.jp\r\n\r\n"))
	f.Add([]byte("From: \"x\" <a@b.go.jp>\r\nSender: s@b.go.jp\r\n\r\n"))
	f.Add([]byte("From: g: a@b.go.jp;\r\n\r\n"))
	f.Add([]byte("From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <a@b.go.jp>\r\n"))
	f.Fuzz(func(t *testing.T, head []byte) {
		from, sender, _, err := originators(head)
		if err != nil {
			if !errors.Is(err, ErrHeader) {
				t.Fatalf("error %v does not wrap ErrHeader", err)
			}
			return
		}
		if !strings.Contains(from, "@") {
			t.Fatalf("From %q without @", from)
		}
		if sender != "" && !strings.Contains(sender, "@") {
			t.Fatalf("Sender %q without @", sender)
		}
	})
}

// FuzzParseClientPolicy: no panic; a parsed policy answers for any client.
func FuzzParseClientPolicy(f *testing.F) {
	f.Add(testPolicy)
	f.Add("* a.go.jp\nnet:::1/128 b.go.jp\ncert:x c.go.jp\n")
	f.Fuzz(func(t *testing.T, src string) {
		p, err := ParseClientPolicy(strings.NewReader(src))
		if err != nil {
			if !errors.Is(err, ErrPolicyFile) {
				t.Fatalf("error %v does not wrap ErrPolicyFile", err)
			}
			return
		}
		for _, c := range []Client{{}, {User: "mhlw-relay"}, {Addr: netip.MustParseAddr("127.0.0.1")}, {CertNames: []string{"x"}}} {
			p.Allows(c, "mhlw.go.jp")
		}
	})
}

// FuzzParseCredentials: no panic, no hash in an error.
func FuzzParseCredentials(f *testing.F) {
	f.Add("a:$2a$04$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234\n")
	f.Add("# c\n\nname:hash\n")
	f.Fuzz(func(t *testing.T, src string) {
		_, err := ParseCredentials(strings.NewReader(src))
		if err != nil && !errors.Is(err, ErrCredentialsFile) {
			t.Fatalf("error %v does not wrap ErrCredentialsFile", err)
		}
		if err == nil {
			return
		}
		for _, line := range strings.Split(src, "\n") {
			name, hash, ok := strings.Cut(strings.TrimSpace(line), ":")
			// A bcrypt-looking hash ("$2...") never shows, beyond what
			// the account name itself contains.
			if ok && strings.HasPrefix(hash, "$2") && len(hash) >= 8 &&
				strings.Contains(strings.ReplaceAll(err.Error(), name, ""), hash) {
				t.Fatalf("hash material in the error: %v", err)
			}
		}
	})
}

// refChecker is checker's definition, one byte at a time: the first
// violation in byte order wins.
type refChecker checker

func (c *refChecker) Write(p []byte) {
	if c.err != nil {
		return
	}
	for i, b := range p {
		switch {
		case b == '\n' && c.prev != '\r':
			c.err = ErrBareLineEnd
		case c.prev == '\r' && b != '\n':
			c.err = ErrBareLineEnd
		case b == '\n':
			if !c.headerDone && c.lineLen == 0 {
				c.headerDone, c.headerLen = true, c.n+int64(i)+1
				if c.headerLen > c.maxHeader {
					c.err = ErrHeaderTooBig
				}
			}
			c.lineLen = 0
		case b != '\r':
			c.lineLen++
			if c.lineLen > c.maxLine {
				c.err = ErrLineTooLong
			}
		}
		c.prev = b
		switch seen := c.n + int64(i) + 1; {
		case c.err != nil:
		case !c.headerDone && seen > c.maxHeader:
			c.err = ErrHeaderTooBig
		case seen > c.maxSize:
			c.err = ErrTooBig
		}
		if c.err != nil {
			break
		}
	}
	c.n += int64(len(p))
}

// end is checker's: only Write differs.
func (c *refChecker) end() error { return (*checker)(c).end() }

// BenchmarkChecker: the checker against its byte-wise definition on a
// 1 MB message in 32 KB writes (what io.Copy hands it).
func BenchmarkChecker(b *testing.B) {
	msg := []byte("From: a@example.go.jp\r\nSubject: x\r\n\r\n" +
		strings.Repeat(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 2)[:76]+"\r\n", 1<<20/78))
	for _, name := range []string{"vectorised", "byte-wise"} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				var err error
				if name == "vectorised" {
					c := &checker{maxSize: 1 << 30, maxLine: 998, maxHeader: 1 << 20}
					for p := msg; len(p) > 0; p = p[min(len(p), 32<<10):] {
						c.Write(p[:min(len(p), 32<<10)])
					}
					err = c.end()
				} else {
					c := &refChecker{maxSize: 1 << 30, maxLine: 998, maxHeader: 1 << 20}
					for p := msg; len(p) > 0; p = p[min(len(p), 32<<10):] {
						c.Write(p[:min(len(p), 32<<10)])
					}
					err = c.end()
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
