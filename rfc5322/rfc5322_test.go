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
	list, err := parseList(mimeWord("iso-2022-jp", string(enc))+" <info@mhlw.go.jp>", true)
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

// TestReceived: the received-mail reading takes obs-optional and long
// lines, and refuses, like the strict one, what two readers could split
// differently.
func TestReceived(t *testing.T) {
	t.Parallel()
	rcv := &Options{Received: true}
	msg := "From : A <a@example.go.jp>\r\nSubject\t: hi\r\nX: " + strings.Repeat("x", 2000) + "\r\n\r\nbody"
	if _, _, err := Parse([]byte(msg), nil); !errors.Is(err, ErrSyntax) {
		t.Errorf("strict: %v", err)
	}
	h, off, err := Parse([]byte(msg), rcv)
	if err != nil {
		t.Fatal(err)
	}
	if msg[off:] != "body" || len(h) != 3 || h[0].Name != "From" || h[0].Value != "A <a@example.go.jp>" ||
		string(h[0].Raw) != "From : A <a@example.go.jp>\r\n" || h[1].Name != "Subject" || h[1].Value != "hi" {
		t.Fatalf("fields %q", h)
	}
	// A From written with obs-optional white space is a From: two of
	// them are seen, not one.
	h, _, err = Parse([]byte("From: a@example.go.jp\r\nFrom : evil@example.com\r\n\r\n"), rcv)
	if err != nil || h.Count("From") != 2 {
		t.Fatalf("%q %v", h, err)
	}
	if _, err := From(h); !errors.Is(err, ErrAddress) {
		t.Errorf("From with two: %v", err)
	}
	if err := CheckSingletons(h); !errors.Is(err, ErrDuplicate) {
		t.Errorf("CheckSingletons: %v", err)
	}
	// ReadHeader takes the same options.
	h, err = ReadHeader(bufio.NewReaderSize(strings.NewReader(msg), 16), rcv)
	if err != nil || len(h) != 3 || h[1].Name != "Subject" {
		t.Errorf("ReadHeader: %q %v", h, err)
	}
	// An explicit line limit still holds.
	if _, _, err := Parse([]byte(msg), &Options{Received: true, MaxLineLength: 100}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("MaxLineLength 100: %v", err)
	}
	test := func(msg string, want error) {
		t.Helper()
		if _, _, err := Parse([]byte(msg), rcv); !errors.Is(err, want) {
			t.Errorf("Parse(%q) = %v, want %v", msg, err, want)
		}
	}
	// Bare CR: a reader that breaks the line there would see a From field
	// hidden in the Subject; one reading is refused rather than guessed.
	test("Subject: hello\rFrom: evil@example.com\r\nFrom: a@example.go.jp\r\n\r\n", ErrSyntax)
	test("From: a@example.go.jp\r\r\nX: y\r\n\r\n", ErrSyntax)
	test("Subject: a\x00From: evil@example.com\r\n\r\n", ErrSyntax)
	test("not a field\r\n\r\n", ErrSyntax)
	test(" folded: first\r\n\r\n", ErrSyntax)
	test("Fr om: a@b\r\n\r\n", ErrSyntax)
	test("Subj\xe9ct: a\r\n\r\n", ErrSyntax)
	test(" : a\r\n\r\n", ErrSyntax)
	test("A: 1\r\nB: 2\r\n\r\n", nil)
	if _, _, err := Parse([]byte("A: 1\r\nB: 2\r\nC: 3\r\n\r\n"), &Options{Received: true, MaxFields: 2}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("MaxFields: %v", err)
	}
}

func TestCRLF(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                   "",
		"a\r\nb\nc\n":        "a\r\nb\r\nc\r\n",
		"\n\n":               "\r\n\r\n",
		"a\rb\r\n":           "a\rb\r\n", // a bare CR is not a line end
		"From: a\r\n\r\nx\n": "From: a\r\n\r\nx\r\n",
	} {
		if got := string(CRLF([]byte(in))); got != want {
			t.Errorf("CRLF(%q) = %q, want %q", in, got, want)
		}
	}
	same := []byte("a\r\nb\r\n")
	if got := CRLF(same); &got[0] != &same[0] {
		t.Error("CRLF copied an input already in CRLF form")
	}
}

func TestValuesAndDuplicated(t *testing.T) {
	t.Parallel()
	h, _, err := Parse([]byte("To: a@example.go.jp\r\nSubject: x\r\nto: b@example.go.jp\r\nSubject: y\r\nDate: z\r\nReceived: 1\r\nReceived: 2\r\n\r\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(h.Values("TO"), "|"); got != "a@example.go.jp|b@example.go.jp" {
		t.Errorf("Values = %q", got)
	}
	if h.Values("Cc") != nil {
		t.Error("Values of an absent field")
	}
	if got := strings.Join(Duplicated(h), " "); got != "To Subject" {
		t.Errorf("Duplicated = %q", got)
	}
	if Duplicated(h[:2]) != nil {
		t.Error("Duplicated without duplicates")
	}
}

func TestParseAddressList(t *testing.T) {
	t.Parallel()
	l, err := ParseAddressList("=?ISO-2022-JP?B?GyRCO1RMMRsoQg==?= <taro@example.go.jp>, b@example.com")
	if err != nil || len(l) != 2 || l[0].Address != "taro@example.go.jp" || l[0].Name != "市民" || l[1].Address != "b@example.com" {
		t.Fatalf("%v %v", l, err)
	}
	// Groups in To and Cc: their members.
	l, err = ParseAddressList("staff: a@example.go.jp, b@example.go.jp;, c@example.com")
	if err != nil || len(l) != 3 || l[2].Address != "c@example.com" {
		t.Fatalf("group: %v %v", l, err)
	}
	l, err = ParseAddressList("undisclosed-recipients:;")
	if err != nil || len(l) != 0 {
		t.Fatalf("empty group: %v %v", l, err)
	}
	// A display name that cannot be read cannot be checked.
	_, err = ParseAddressList("=?x-unknown?Q?abc?= <info@mhlw.go.jp>")
	if !errors.Is(err, ErrAddress) || !errors.Is(err, ErrCharset) {
		t.Errorf("unknown charset: %v", err)
	}
	if _, err := ParseAddressList("not an address"); !errors.Is(err, ErrAddress) {
		t.Errorf("garbage: %v", err)
	}
}

func TestParseMailboxList(t *testing.T) {
	t.Parallel()
	l, err := ParseMailboxList(`"taro@example.go.jp" <evil@example.com>`)
	if err != nil || len(l) != 1 || l[0].Name != "taro@example.go.jp" || l[0].Address != "evil@example.com" {
		t.Fatalf("%v %v", l, err)
	}
	l, err = ParseMailboxList("a@example.go.jp, b@example.go.jp")
	if err != nil || len(l) != 2 {
		t.Fatalf("two: %v %v", l, err)
	}
	for _, v := range []string{
		"Ministry: taro@example.go.jp;", // a group that would list one author
		"undisclosed-recipients:;",
		"a@example.go.jp, g: b@example.go.jp;",
	} {
		if _, err := ParseMailboxList(v); !errors.Is(err, ErrAddress) {
			t.Errorf("%q: %v", v, err)
		}
	}
	// A colon inside a quoted string, comment or angle brackets is no group.
	for _, v := range []string{`"a: b" <a@example.go.jp>`, `a@example.go.jp (note: x)`} {
		if l, err := ParseMailboxList(v); err != nil || len(l) != 1 {
			t.Errorf("%q: %v %v", v, l, err)
		}
	}
	if _, err := ParseMailboxList("=?x-unknown?Q?abc?= <info@mhlw.go.jp>"); !errors.Is(err, ErrCharset) {
		t.Errorf("unknown charset: %v", err)
	}
}

func TestDecodeText(t *testing.T) {
	t.Parallel()
	enc, _ := japanese.ShiftJIS.NewEncoder().Bytes([]byte("お知らせ"))
	for in, want := range map[string]string{
		"plain text":                           "plain text",
		"=?UTF-8?B?dGVzdA==?=":                 "test",
		"=?ISO-2022-JP?B?GyRCO1RMMRsoQg==?= x": "市民 x",
		mimeWord("cp932", string(enc)):         "お知らせ",
		"=?x-unknown?Q?abc?=":                  "=?x-unknown?Q?abc?=", // unchanged
	} {
		if got := DecodeText(in); got != want {
			t.Errorf("DecodeText(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSameAddress(t *testing.T) {
	t.Parallel()
	test := func(a, b string, want bool) {
		t.Helper()
		if SameAddress(a, b) != want || SameAddress(b, a) != want {
			t.Errorf("SameAddress(%q, %q) != %v", a, b, want)
		}
	}
	test("taro@EXAMPLE.go.jp", "taro@example.go.jp", true)
	test("Taro@example.go.jp", "taro@example.go.jp", false) // local part exact
	test(`"a@mhlw.go.jp"@example.com`, `"a@mhlw.go.jp"@EXAMPLE.com`, true)
	test("a@mhlw.go.jp@example.com", "a@mhlw.go.jp", false)
	test("noat", "noat", true)
	test("noat", "NOAT", false)
	test("noat", "noat@example.com", false)
}

// Error texts reach gateway logs and verification reports: they name the
// line, never quote it.
func TestErrorsDoNotQuoteContent(t *testing.T) {
	t.Parallel()
	for _, msg := range []string{
		"From: a@example.go.jp\r\nsecret-content-line\r\n\r\n",
		"From: a@example.go.jp\r\nsecret\x01name: x\r\n\r\n",
		"From: a@example.go.jp\r\nSubject: secret\rcontent\r\n\r\n",
	} {
		_, _, err := Parse([]byte(msg), nil)
		if !errors.Is(err, ErrSyntax) {
			t.Fatalf("%q: %v, want ErrSyntax", msg, err)
		}
		if strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: error %q quotes content or does not name line 2", msg, err)
		}
	}
}
