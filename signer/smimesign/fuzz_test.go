package smimesign

import (
	"bytes"
	"testing"
)

// canonical is the plain octet-by-octet statement of what scan accepts.
func canonical(e []byte) bool {
	prevCR, lineLen := false, 0
	for _, c := range e {
		switch {
		case c == '\n':
			if !prevCR {
				return false
			}
			lineLen = 0
		case prevCR:
			return false
		case c >= 0x80 || c == 0:
			return false
		case c != '\r':
			lineLen++
			if lineLen > maxLine {
				return false
			}
		}
		prevCR = c == '\r'
	}
	return !prevCR
}

// FuzzScan: scan accepts exactly the 7-bit CRLF entities, and finds a boundary candidate exactly when a line starts with it.
func FuzzScan(f *testing.F) {
	f.Add([]byte(entity), 3)
	f.Add([]byte("a\r\n--=_kakuin_x\r\n"), 1)
	f.Add(bytes.Repeat([]byte("x"), 999), 0)
	f.Add([]byte("a\r\r\n\x80"), 2)
	f.Fuzz(func(t *testing.T, e []byte, repeat int) {
		if repeat > 0 && repeat < 64 && len(e) < 2048 {
			e = bytes.Repeat(e, repeat) // long lines, chunk edges
		}
		cands := []string{"=_kakuin_x", "=_kakuin_y"}
		used, err := scan(e, cands)
		if want := canonical(e); (err == nil) != want {
			t.Fatalf("scan error %v, canonical %v", err, want)
		}
		if err != nil {
			return
		}
		for i, c := range cands {
			want := bytes.HasPrefix(e, []byte("--"+c)) || bytes.Contains(e, []byte("\n--"+c))
			if used[i] != want {
				t.Fatalf("candidate %q used=%v, want %v", c, used[i], want)
			}
		}
	})
}
