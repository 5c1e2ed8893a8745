package lookup

import (
	"context"
	"strings"
	"testing"
)

func TestZone(t *testing.T) {
	t.Parallel()
	const zone = `$TTL 3600
example.go.jp.                      IN MX  10 mx.example.go.jp.
example.go.jp.                      IN TXT "v=spf1 ip4:192.0.2.1 -all"
rsa-202611._domainkey.example.go.jp. IN TXT ( "v=DKIM1; k=rsa; " "p=AAAA" )
alias.example.go.jp.                IN CNAME mx.example.go.jp.
mx.example.go.jp.                   IN A   192.0.2.25
`
	c, err := NewZone(strings.NewReader(zone), "example.go.jp")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	txt, err := c.LookupTXT(ctx, "RSA-202611._domainkey.example.go.jp")
	if err != nil || len(txt.Records) != 1 || txt.Records[0] != "v=DKIM1; k=rsa; p=AAAA" || txt.NXDomain || txt.Authentic {
		t.Errorf("TXT: %+v %v", txt, err)
	}
	mx, err := c.LookupMX(ctx, "example.go.jp.")
	if err != nil || len(mx.Records) != 1 || mx.Records[0].Host != "mx.example.go.jp" {
		t.Errorf("MX: %+v %v", mx, err)
	}
	ip, err := c.LookupIP(ctx, "alias.example.go.jp") // through the CNAME
	if err != nil || len(ip.Records) != 1 || ip.Records[0] != "192.0.2.25" {
		t.Errorf("IP via CNAME: %+v %v", ip, err)
	}
	none, err := c.LookupTXT(ctx, "_dmarc.example.go.jp")
	if err != nil || !none.NXDomain || len(none.Records) != 0 {
		t.Errorf("missing name: %+v %v", none, err)
	}
	empty, err := c.LookupTXT(ctx, "mx.example.go.jp") // the name exists, no TXT
	if err != nil || empty.NXDomain || len(empty.Records) != 0 {
		t.Errorf("no such type: %+v %v", empty, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.LookupTXT(cctx, "example.go.jp"); err == nil {
		t.Error("a cancelled context answered")
	}
	if _, err := NewZone(strings.NewReader("example.go.jp. IN TXT \"unterminated\n"), "example.go.jp"); err == nil {
		t.Error("a broken zone file parsed")
	}
}
