package header

import (
	"bytes"
	"errors"
	"testing"
)

func TestSplit(t *testing.T) {
	t.Parallel()
	msg := Canonical([]byte("From: a@example.go.jp\nSubject: one\n two\nX:\n\nbody\n"))
	h, body, err := Split(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 3 || h[1].Value != "one two" || h.Get("subject") != "one two" || h.Count("FROM") != 1 || string(body) != "body\r\n" {
		t.Fatalf("%+v %q", h, body)
	}
	if string(h[1].Raw) != "Subject: one\r\n two\r\n" {
		t.Fatalf("raw %q", h[1].Raw)
	}
	if _, _, err := Split([]byte("not a header\r\n\r\n")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err %v", err)
	}
	if h, b, err := Split([]byte("\r\nbody")); err != nil || len(h) != 0 || string(b) != "body" {
		t.Fatalf("%v %q %v", h, b, err)
	}
	if string(Canonical([]byte("a\r\nb\nc\n"))) != "a\r\nb\r\nc\r\n" {
		t.Fatal("canonical")
	}
}

func TestAddresses(t *testing.T) {
	t.Parallel()
	l, err := ParseAddressList("=?ISO-2022-JP?B?GyRCO1RMMRsoQg==?= <taro@example.go.jp>")
	if err != nil || len(l) != 1 || l[0].Address != "taro@example.go.jp" || l[0].Name != "市民" {
		t.Fatalf("%v %v", l, err)
	}
	if !SameAddress("taro@EXAMPLE.go.jp", "taro@example.go.jp") || SameAddress("Taro@example.go.jp", "taro@example.go.jp") {
		t.Fatal("SameAddress")
	}
}

// FuzzSplit: the raw fields and the body put back together are the input
// up to the body.
func FuzzSplit(f *testing.F) {
	f.Add([]byte("From: a\r\nSubject: b\r\n c\r\n\r\nbody"))
	f.Add([]byte("From: a\nbad line\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		in = Canonical(in)
		h, body, err := Split(in)
		if err != nil {
			return
		}
		var b bytes.Buffer
		for _, f := range h {
			b.Write(f.Raw)
		}
		if body != nil {
			b.WriteString("\r\n")
			b.Write(body)
		}
		if !bytes.Equal(b.Bytes(), in) {
			t.Fatalf("round trip %q != %q", b.Bytes(), in)
		}
	})
}
