package audit

import (
	"errors"
	"strings"
	"testing"
)

func TestParseDKIMKey(t *testing.T) {
	t.Parallel()
	k, err := ParseDKIMKey("v=DKIM1; k=rsa; h=sha256; t=y:s; p=" + fakeRSA(2048))
	if err != nil || k.Bits != 2048 || !k.Testing() || k.KeyType != "rsa" || k.Revoked {
		t.Fatalf("%+v %v", k, err)
	}
	k, err = ParseDKIMKey("k=ed25519; p=" + ed25519Key())
	if err != nil || k.Bits != 256 {
		t.Fatalf("%+v %v", k, err)
	}
	k, err = ParseDKIMKey("v=DKIM1; p=")
	if err != nil || !k.Revoked {
		t.Fatalf("%+v %v", k, err)
	}
	for _, s := range []string{"k=rsa; v=DKIM1; p=", "v=DKIM2; p=", "v=DKIM1", "v=DKIM1; k=dsa; p=AAAA", "v=DKIM1; k=ed25519; p=AAAA",
		"v=DKIM1; p=!!!", "v=DKIM1; p=; p=", "garbage"} {
		if _, err := ParseDKIMKey(s); !errors.Is(err, ErrRecord) {
			t.Errorf("%q: %v", s, err)
		}
	}
}

func TestParseTLSRPT(t *testing.T) {
	t.Parallel()
	r, err := ParseTLSRPT("v=TLSRPTv1; rua=mailto:t@example.go.jp,https://reports.example.com/tlsrpt")
	if err != nil || len(r.RUA) != 2 {
		t.Fatalf("%+v %v", r, err)
	}
	for _, s := range []string{"v=TLSRPTv2; rua=mailto:a@b", "rua=mailto:a@b.example; v=TLSRPTv1", "v=TLSRPTv1", "v=TLSRPTv1; rua=ftp://x", "v=TLSRPTv1; rua=mailto:a@b.example; rua=mailto:c@d.example"} {
		if _, err := ParseTLSRPT(s); !errors.Is(err, ErrRecord) {
			t.Errorf("%q: %v", s, err)
		}
	}
}

func FuzzParseDKIMKey(f *testing.F) {
	f.Add("v=DKIM1; k=rsa; p=" + fakeRSA(1024))
	f.Add("v=DKIM1; k=ed25519; t=y; p=" + ed25519Key())
	f.Add("v=DKIM1; p=")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseDKIMKey(s)
		if err != nil {
			return
		}
		if k.Revoked != (k.Public == nil) || (!k.Revoked && k.Bits <= 0) {
			t.Fatalf("%q: inconsistent %+v", s, k)
		}
	})
}

func FuzzParseTLSRPT(f *testing.F) {
	f.Add("v=TLSRPTv1; rua=mailto:t@example.go.jp,https://r.example/x")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseTLSRPT(s)
		if err != nil {
			return
		}
		r2, err := ParseTLSRPT(r.String())
		if err != nil || strings.Join(r2.RUA, ",") != strings.Join(r.RUA, ",") {
			t.Fatalf("%q -> %q: %v", s, r.String(), err)
		}
	})
}
