package dkimverify_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/kakuin/kakuin/verify/dkimverify"
)

// FuzzParseTags: parse, format, parse gives the same tags.
func FuzzParseTags(f *testing.F) {
	f.Add("v=1; a=rsa-sha256; d=example.go.jp; s=sel;\r\n\th=From:Subject; bh=abc=; b=de f=")
	f.Add("v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
	f.Add("a=;;b")
	f.Fuzz(func(t *testing.T, s string) {
		tags, err := dkimverify.ParseTags(s)
		if err != nil {
			return
		}
		var b strings.Builder
		for _, k := range slices.Sorted(maps.Keys(tags)) {
			b.WriteString(k + "=" + tags[k] + "; ")
		}
		again, err := dkimverify.ParseTags(b.String())
		if err != nil {
			t.Fatalf("reparse %q: %v", b.String(), err)
		}
		if !maps.Equal(tags, again) {
			t.Fatalf("%v != %v", tags, again)
		}
		_, _ = dkimverify.ParseKey(s)
	})
}

// FuzzVerify runs arbitrary messages through the signature parsing (no
// resolver: nothing leaves the process).
func FuzzVerify(f *testing.F) {
	f.Add(string(plain))
	f.Add("DKIM-Signature: v=1; a=rsa-sha256; d=x; s=y; h=from; bh=; b=; l=5; x=12\r\nFrom: a\r\n\r\nbody")
	f.Fuzz(func(t *testing.T, msg string) {
		rs, err := dkimverify.Verify(context.Background(), []byte(msg), dkimverify.Options{})
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.Status == "pass" {
				t.Fatalf("pass without a resolver: %+v", r)
			}
		}
	})
}
