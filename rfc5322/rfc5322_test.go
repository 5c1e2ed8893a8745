package rfc5322

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"

	"golang.org/x/text/encoding/japanese"
)

func TestParse(t *testing.T) {
	t.Parallel()
	msg := "From: A <a@example.go.jp>\r\n" +
		"Subject: a long\r\n\tfolded subject \r\n" +
		"X-Empty:\r\n" +
		"To: b@example.com\n" + // bare LF is accepted as a line end
		"\r\n" +
		"body\r\n\r\nmore\r\n"
	h, off, err := Parse([]byte(msg), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := msg[off:]; got != "body\r\n\r\nmore\r\n" {
		t.Errorf("body = %q", got)
	}
	want := []struct{ name, raw, value string }{
		{"From", "From: A <a@example.go.jp>\r\n", "A <a@example.go.jp>"},
		{"Subject", "Subject: a long\r\n\tfolded subject \r\n", "a long\tfolded subject"},
		{"X-Empty", "X-Empty:\r\n", ""},
		{"To", "To: b@example.com\n", "b@example.com"},
	}
	if len(h) != len(want) {
		t.Fatalf("%d fields, want %d: %q", len(h), len(want), h)
	}
	for i, w := range want {
		f := h[i]
		if f.Name != w.name || string(f.Raw) != w.raw || f.Value != w.value {
			t.Errorf("field %d = %q %q %q, want %q %q %q", i, f.Name, f.Raw, f.Value, w.name, w.raw, w.value)
		}
	}
	if got := string(Format(h)); got != msg[:off-len("\r\n")]+"\r\n" {
		t.Errorf("Format = %q", got)
	}
	if h.Count("subject") != 1 || len(h.Get("SUBJECT")) != 1 || h.Count("Cc") != 0 {
		t.Error("Count/Get are not case-insensitive")
	}
}

func TestParseNoBody(t *testing.T) {
	t.Parallel()
	msg := "From: a@example.go.jp\r\nSubject: x\r\n"
	h, off, err := Parse([]byte(msg), nil)
	if err != nil || len(h) != 2 || off != len(msg) || h[1].Value != "x" {
		t.Fatalf("Parse = %q, %d, %v", h, off, err)
	}
	h, off, err = Parse([]byte("\r\nbody"), nil)
	if err != nil || len(h) != 0 || off != 2 {
		t.Fatalf("empty header: %q, %d, %v", h, off, err)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	test := func(msg string, opts *Options, want error) {
		t.Helper()
		_, _, err := Parse([]byte(msg), opts)
		if !errors.Is(err, want) {
			t.Errorf("Parse(%q) = %v, want %v", msg, err, want)
		}
		_, err = ReadHeader(bufio.NewReaderSize(strings.NewReader(msg), 16), opts)
		if !errors.Is(err, want) {
			t.Errorf("ReadHeader(%q) = %v, want %v", msg, err, want)
		}
	}
	test(" folded: first\r\n\r\n", nil, ErrSyntax)
	test("From : a@b\r\n\r\n", nil, ErrSyntax)      // obs-optional white space before colon
	test("From a@b\r\n\r\n", nil, ErrSyntax)        // no colon
	test(": value\r\n\r\n", nil, ErrSyntax)         // empty name
	test("Subject: a\rb\r\n\r\n", nil, ErrSyntax)   // bare CR
	test("Subject: a\x00b\r\n\r\n", nil, ErrSyntax) // NUL
	test("X: a\r", nil, ErrSyntax)                  // CR at EOF without LF (fuzz 9df3b8eb)
	test("Subj\xe9ct: a\r\n\r\n", nil, ErrSyntax)   // 8-bit field name
	test("Subject: "+strings.Repeat("x", 990)+"\r\n\r\n", nil, ErrTooLarge)
	test("Subject: "+strings.Repeat("x", 989)+"\r\n\r\n", &Options{MaxHeaderBytes: 100}, ErrTooLarge)
	test("A: 1\r\nB: 2\r\nC: 3\r\n\r\n", &Options{MaxFields: 2}, ErrTooLarge)
	if _, _, err := Parse([]byte("Subject: "+strings.Repeat("x", 2000)+"\r\n\r\n"), &Options{MaxLineLength: -1}); err != nil {
		t.Errorf("MaxLineLength -1: %v", err)
	}
	if _, _, err := Parse([]byte("Subject: "+strings.Repeat("x", 989)+"\r\n\r\n"), nil); err != nil {
		t.Errorf("998-character line: %v", err)
	}
}

func TestReadHeader(t *testing.T) {
	t.Parallel()
	long := "Subject: " + strings.Repeat("y", 900) + "\r\n"
	msg := "From: a@example.go.jp\r\n" + long + "X: a\r\n b\r\n\r\nbody\r\n"
	// A tiny buffer makes lines span several ReadSlice calls.
	br := bufio.NewReaderSize(strings.NewReader(msg), 16)
	h, err := ReadHeader(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 3 || string(h[1].Raw) != long || h[2].Value != "a b" {
		t.Errorf("fields = %q", h)
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "body\r\n" {
		t.Errorf("body = %q", rest)
	}
	// EOF without a blank line: no body.
	h, err = ReadHeader(bufio.NewReader(strings.NewReader("From: a@b\r\n")), nil)
	if err != nil || len(h) != 1 {
		t.Errorf("no body: %q %v", h, err)
	}
	// The size limit stops reading early.
	r := &countingReader{r: strings.NewReader("X: " + strings.Repeat("z", 1<<20) + "\r\n\r\n")}
	_, err = ReadHeader(bufio.NewReaderSize(r, 4096), &Options{MaxHeaderBytes: 8192, MaxLineLength: -1})
	if !errors.Is(err, ErrTooLarge) || r.n > 16384 {
		t.Errorf("limit: err %v after reading %d bytes", err, r.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestNewField(t *testing.T) {
	t.Parallel()
	f := NewField("Content-Type", "multipart/signed;\r\n boundary=x")
	if string(f.Raw) != "Content-Type: multipart/signed;\r\n boundary=x\r\n" || f.Value != "multipart/signed; boundary=x" || !f.Is("content-type") {
		t.Errorf("NewField = %q %q", f.Raw, f.Value)
	}
	h, _, err := Parse(Format(Header{f}), nil)
	if err != nil || len(h) != 1 || h[0].Value != f.Value {
		t.Errorf("reparse: %q %v", h, err)
	}
}

func TestCheckSingletons(t *testing.T) {
	t.Parallel()
	for _, name := range Singletons {
		msg := "From: a@example.go.jp\r\n" + name + ": 1\r\nX: y\r\n" + strings.ToUpper(name) + ": 2\r\n\r\n"
		if name == "From" {
			msg = "From: a@example.go.jp\r\nfrom: b@example.go.jp\r\n\r\n"
		}
		h, _, err := Parse([]byte(msg), nil)
		if err != nil {
			t.Fatal(err)
		}
		err = CheckSingletons(h)
		if !errors.Is(err, ErrDuplicate) || !strings.Contains(err.Error(), " "+name+" ") {
			t.Errorf("%s twice: %v", name, err)
		}
	}
	h, _, _ := Parse([]byte("From: a@example.go.jp\r\nReceived: x\r\nReceived: y\r\nComments: a\r\nComments: b\r\nKeywords: k\r\nKeywords: l\r\n\r\n"), nil)
	if err := CheckSingletons(h); err != nil {
		t.Errorf("repeatable fields refused: %v", err)
	}
}

func TestFrom(t *testing.T) {
	t.Parallel()
	iso := func(s string) string {
		b, err := japanese.ISO2022JP.NewEncoder().Bytes([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	test := func(header string, want string, wantErr error) {
		t.Helper()
		h, _, err := Parse([]byte(header+"\r\n"), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := From(h)
		if !errors.Is(err, wantErr) || got != want {
			t.Errorf("From(%q) = %q, %v; want %q, %v", header, got, err, want, wantErr)
		}
	}
	test("From: a@example.go.jp\r\n", "a@example.go.jp", nil)
	test("From: \"Ministry\" <info@mhlw.go.jp>\r\n", "info@mhlw.go.jp", nil)
	// The display name never counts.
	test("From: \"ministry@mhlw.go.jp\" <evil@example.com>\r\n", "evil@example.com", nil)
	test("From: evil@example.com (ministry@mhlw.go.jp)\r\n", "evil@example.com", nil)
	// A quoted local part with an @: the domain is after the last @.
	test("From: \"a@mhlw.go.jp\"@example.com\r\n", "a@mhlw.go.jp@example.com", nil)
	// RFC 2047 display names: UTF-8, ISO-2022-JP, an unknown charset.
	test("From: =?UTF-8?B?5Y6a55Sf5Yq05YON55yB?= <info@mhlw.go.jp>\r\n", "info@mhlw.go.jp", nil)
	test("From: "+mimeWord("ISO-2022-JP", iso("厚生労働省"))+"\r\n <info@mhlw.go.jp>\r\n", "info@mhlw.go.jp", nil)
	test("From: =?x-unknown?Q?abc?= <info@mhlw.go.jp>\r\n", "info@mhlw.go.jp", nil)
	test("From: =?shift_jis?B?g2WDWINn?= <info@mhlw.go.jp>\r\n", "info@mhlw.go.jp", nil)
	test("Subject: no from\r\n", "", ErrAddress)
	test("From: a@example.go.jp\r\nFrom: b@example.go.jp\r\n", "", ErrAddress)
	test("From: a@example.go.jp, b@example.go.jp\r\n", "", ErrAddress)
	test("From: group: a@example.go.jp;\r\n", "", ErrAddress)
	test("From: undisclosed-recipients:;\r\n", "", ErrAddress)
	test("From: \r\n", "", ErrAddress)
	test("From: a@b.go.jp <c@d.go.jp>\r\n", "", ErrAddress)
	test("From: not an address\r\n", "", ErrAddress)
}

func mimeWord(charset, s string) string {
	var b bytes.Buffer
	b.WriteString("=?" + charset + "?B?")
	enc := []byte(s)
	b.WriteString(base64.StdEncoding.EncodeToString(enc))
	b.WriteString("?=")
	return b.String()
}

func TestISO2022JPDisplayName(t *testing.T) {
	t.Parallel()
	enc, _ := japanese.ISO2022JP.NewEncoder().Bytes([]byte("厚生労働省"))
	list, err := addressParser.ParseList(mimeWord("iso-2022-jp", string(enc)) + " <info@mhlw.go.jp>")
	if err != nil || len(list) != 1 || list[0].Name != "厚生労働省" {
		t.Fatalf("decoded %v, %v", list, err)
	}
}

func TestSender(t *testing.T) {
	t.Parallel()
	h, _, _ := Parse([]byte("From: a@example.go.jp\r\n\r\n"), nil)
	if s, err := Sender(h); s != "" || err != nil {
		t.Errorf("no Sender: %q %v", s, err)
	}
	h, _, _ = Parse([]byte("Sender: \"x@example.go.jp\" <s@example.com>\r\n\r\n"), nil)
	if s, err := Sender(h); s != "s@example.com" || err != nil {
		t.Errorf("Sender: %q %v", s, err)
	}
	h, _, _ = Parse([]byte("Sender: a@example.go.jp, b@example.go.jp\r\n\r\n"), nil)
	if _, err := Sender(h); !errors.Is(err, ErrAddress) {
		t.Errorf("two mailboxes: %v", err)
	}
	h, _, _ = Parse([]byte("Sender: a@example.go.jp\r\nSender: b@example.go.jp\r\n\r\n"), nil)
	if _, err := Sender(h); !errors.Is(err, ErrAddress) {
		t.Errorf("two fields: %v", err)
	}
}
