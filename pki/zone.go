package pki

import (
	"bytes"
	"fmt"
	"strings"
)

// ZoneOptions configure ZoneFile. Every zero value is documented.
type ZoneOptions struct {
	// SPF is the suggested SPF record of each domain. If empty,
	// "v=spf1 mx -all": the domain's MX hosts send, nothing else may
	// (RFC 7208 5.1; -all passes an audit, ~all only warns).
	SPF string
	// DMARCReportAddress receives aggregate reports (rua). If empty,
	// dmarc-reports@DOMAIN.
	DMARCReportAddress string
	// TTL of every record in seconds. If zero, 3600.
	TTL int
}

// maxCharString is the longest character-string of a TXT record (RFC 1035
// 3.3); longer values are split into several, which receivers concatenate
// (RFC 7208 3.3, RFC 6376 3.6.2.2).
const maxCharString = 255

// ZoneFile returns the records to publish for every domain of kr, in zone
// file syntax (RFC 1035 5.1) with absolute owner names: the DKIM key
// records (RFC 6376 3.6.2.1, RFC 8463), a suggested SPF record (RFC 7208)
// and a DMARC p=reject record (RFC 7489 6.3, RULES: DMARC p=reject), with
// comments. The output depends only on the keys and options, so the same
// keys give the same bytes.
func ZoneFile(kr *DKIMKeyring, opts ZoneOptions) ([]byte, error) {
	if opts.TTL == 0 {
		opts.TTL = 3600
	}
	spf := opts.SPF
	if spf == "" {
		spf = "v=spf1 mx -all"
	}
	var b bytes.Buffer
	b.WriteString("; dns.zone: DNS records to publish for the domains kakuin signs for.\n")
	b.WriteString("; Written by `kakuin pki init` from DIR/dkim; regenerated on every run.\n")
	b.WriteString("; Owner names are absolute; long TXT values are split into <=255-octet strings.\n")
	for _, d := range kr.Domains() {
		keys, err := kr.DKIMKeys(d)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "\n; ---- %s\n", d)
		b.WriteString("; DKIM keys (RFC 6376 3.6.1; ed25519 RFC 8463): kakuin signs with all of them, rsa-sha256 first.\n")
		b.WriteString("; To rotate (RULES D7): publish the new selector, sign with both, then publish the old one with an empty p=.\n")
		for _, k := range keys {
			v, err := DKIMRecord(k.Signer.Public())
			if err != nil {
				return nil, err
			}
			writeTXT(&b, DKIMRecordName(d, k.Selector)+".", opts.TTL, v)
		}
		b.WriteString("; SPF (RFC 7208): suggested; list every host that sends mail for the domain, and keep -all.\n")
		writeTXT(&b, d+".", opts.TTL, spf)
		rua := opts.DMARCReportAddress
		if rua == "" {
			rua = "dmarc-reports@" + d
		}
		b.WriteString("; DMARC (RFC 7489 6.3): reject mail that fails SPF and DKIM alignment, for subdomains too;\n")
		b.WriteString("; aggregate reports to rua (a mailbox outside the domain needs an authorisation record, RFC 7489 7.1).\n")
		writeTXT(&b, "_dmarc."+d+".", opts.TTL, "v=DMARC1; p=reject; sp=reject; adkim=r; aspf=r; rua=mailto:"+rua)
	}
	return b.Bytes(), nil
}

// writeTXT writes one TXT record, its value split into character-strings
// of at most 255 octets, in parentheses over several lines when split.
func writeTXT(b *bytes.Buffer, owner string, ttl int, value string) {
	var parts []string
	for len(value) > maxCharString {
		parts = append(parts, value[:maxCharString])
		value = value[maxCharString:]
	}
	parts = append(parts, value)
	fmt.Fprintf(b, "%s %d IN TXT ", owner, ttl)
	if len(parts) == 1 {
		b.WriteString(quoteTXT(parts[0]) + "\n")
		return
	}
	b.WriteString("(\n")
	for _, p := range parts {
		b.WriteString("\t" + quoteTXT(p) + "\n")
	}
	b.WriteString("\t)\n")
}

// quoteTXT quotes a character-string (RFC 1035 5.1): backslash and double
// quote are escaped. Values here are ASCII.
func quoteTXT(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}
