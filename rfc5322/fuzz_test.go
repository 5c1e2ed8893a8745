package rfc5322

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzParse: Parse never panics; what it accepts formats back to a header
// that parses to the same fields (parse -> format -> parse), ReadHeader
// agrees with Parse, and From/Sender/CheckSingletons never panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte("From: A <a@example.go.jp>\r\nSubject: x\r\n y\r\n\r\nbody"))
	f.Add([]byte("From: \"a@b.go.jp\" <e@example.com>\nTo: g: a@b;\n\nbody"))
	f.Add([]byte("From: =?ISO-2022-JP?B?GyRCODxAOE8rRn5ALRsoQg==?= <a@b.go.jp>\r\n\r\n"))
	f.Add([]byte("X: a\r\n\r"))
	f.Add([]byte("\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		h, off, err := Parse(msg, nil)
		hr, rerr := ReadHeader(bufio.NewReaderSize(bytes.NewReader(msg), 16), nil)
		if (err == nil) != (rerr == nil) {
			t.Fatalf("Parse error %v, ReadHeader error %v", err, rerr)
		}
		if err != nil {
			return
		}
		if off > len(msg) || len(hr) != len(h) {
			t.Fatalf("off %d of %d; ReadHeader %d fields, Parse %d", off, len(msg), len(hr), len(h))
		}
		From(h)            //nolint:errcheck // must not panic
		Sender(h)          //nolint:errcheck
		CheckSingletons(h) //nolint:errcheck
		out := Format(h)
		h2, off2, err := Parse(out, nil)
		if err != nil {
			t.Fatalf("reparse of %q: %v", out, err)
		}
		if off2 != len(out) || len(h2) != len(h) {
			t.Fatalf("reparse: %d fields at %d, want %d at %d", len(h2), off2, len(h), len(out))
		}
		for i := range h {
			raw := h[i].Raw
			if !bytes.HasSuffix(raw, []byte("\n")) {
				raw = append(raw[:len(raw):len(raw)], "\r\n"...) // WriteTo ends every field
			}
			if h[i].Name != h2[i].Name || h[i].Value != h2[i].Value || !bytes.Equal(raw, h2[i].Raw) || !bytes.Equal(h[i].Raw, hr[i].Raw) {
				t.Fatalf("field %d: %q != %q", i, h[i], h2[i])
			}
		}
	})
}
