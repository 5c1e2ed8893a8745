package rfc5322

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzParse: Parse never panics; what it accepts formats back to a header
// that parses to the same fields (parse -> format -> parse), ReadHeader
// agrees with Parse, and From/Sender/CheckSingletons never panic. The
// received-mail reading accepts everything the strict one does, with the
// same fields, and round-trips too; the address functions never panic on
// its values.
func FuzzParse(f *testing.F) {
	f.Add([]byte("From: A <a@example.go.jp>\r\nSubject: x\r\n y\r\n\r\nbody"))
	f.Add([]byte("From: \"a@b.go.jp\" <e@example.com>\nTo: g: a@b;\n\nbody"))
	f.Add([]byte("From: =?ISO-2022-JP?B?GyRCODxAOE8rRn5ALRsoQg==?= <a@b.go.jp>\r\n\r\n"))
	f.Add([]byte("X: a\r\n\r"))
	f.Add([]byte("\r\n"))
	f.Add([]byte("From : a@example.go.jp\r\nSubject\t: =?shift_jis?B?g2WDWINn?=\r\nTo: g: a@b, c@d;\r\n\r\n"))
	f.Add([]byte("Subject: a\rFrom: b\r\n\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		received(t, msg)
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

func received(t *testing.T, msg []byte) {
	rcv := &Options{Received: true}
	h, _, err := Parse(msg, rcv)
	if strict, _, serr := Parse(msg, nil); serr == nil {
		if err != nil || !sameFields(strict, h) {
			t.Fatalf("strict reading accepted what the received one refused or read otherwise: %v", err)
		}
	}
	if err != nil {
		return
	}
	hr, err := ReadHeader(bufio.NewReaderSize(bytes.NewReader(msg), 16), rcv)
	if err != nil || !sameFields(h, hr) {
		t.Fatalf("ReadHeader disagrees with Parse: %v", err)
	}
	out := Format(h)
	h2, off2, err := Parse(out, rcv)
	if err != nil || off2 != len(out) || len(h2) != len(h) {
		t.Fatalf("reparse of %q: %d fields at %d, %v", out, len(h2), off2, err)
	}
	for i := range h {
		if h[i].Name != h2[i].Name || h[i].Value != h2[i].Value {
			t.Fatalf("field %d: %q != %q", i, h[i], h2[i])
		}
		v := h[i].Value
		ParseAddressList(v) //nolint:errcheck // must not panic
		if l, err := ParseMailboxList(v); err == nil {
			for _, a := range l {
				if !SameAddress(a.Address, a.Address) {
					t.Fatalf("SameAddress(%q) with itself", a.Address)
				}
			}
		}
		DecodeText(v)
	}
	Duplicated(h)
}

func sameFields(a, b Header) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Value != b[i].Value || !bytes.Equal(a[i].Raw, b[i].Raw) {
			return false
		}
	}
	return true
}
