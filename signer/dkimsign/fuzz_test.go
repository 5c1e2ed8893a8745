package dkimsign

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/kakuin/kakuin/pki/pkitest"
)

// FuzzSign: any message is refused with ErrMessage or signed; a signed
// message verifies with go-msgauth, and its body hash equals go-msgauth's.
func FuzzSign(f *testing.F) {
	keys := pkitest.DKIMKeys(f, "example.go.jp")
	opts := lookup(f, keys)
	f.Add([]byte(message))
	f.Add([]byte("From: a@example.go.jp\r\n\r\n \t x \r\n\r\n"))
	f.Add([]byte("From: a@example.go.jp\r\nSubject: \r\n folded\r\n\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		sigs, err := Sign(bytes.NewReader(msg), keys)
		if err != nil {
			if !errors.Is(err, ErrMessage) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		var b strings.Builder
		for _, s := range sigs {
			b.WriteString(s.Field)
		}
		b.Write(msg)
		vs, err := dkim.VerifyWithOptions(strings.NewReader(b.String()), opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != len(keys) {
			t.Fatalf("%d verifications", len(vs))
		}
		for _, v := range vs {
			if v.Err != nil {
				t.Fatalf("go-msgauth: %v", v.Err)
			}
		}
		if got, want := tags(sigs[0].Field)["bh"], msgauthBodyHash(t, string(msg), keys[1]); got != want {
			t.Fatalf("bh=%s, go-msgauth %s", got, want)
		}
	})
}
