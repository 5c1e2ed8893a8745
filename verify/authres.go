package verify

import (
	"strings"

	"github.com/emersion/go-msgauth/authres"
)

// AuthenticationResults returns the value of an Authentication-Results
// header field (RFC 8601) for the report, formatted by go-msgauth/authres:
// dkim= per signature with header.d, header.s, header.b (RULES R2); spf=
// with smtp.mailfrom; dmarc= with header.from; smime= per RFC 7281 with
// body.smime-identifier, body.smime-serial and body.smime-issuer.
func (r *Report) AuthenticationResults(authServID string) string {
	if authServID == "" {
		authServID = "kakuin"
	}
	var results []authres.Result
	for _, c := range r.Checks {
		switch c.Name {
		case CheckDKIM:
			p := map[string]string{}
			for k, ev := range map[string]string{"header.d": "d", "header.s": "s", "header.b": "b", "header.a": "a", "header.i": "i"} {
				if v := c.Evidence[ev]; v != "" {
					p[k] = v
				}
			}
			if c.Status != authres.ResultPass && c.Reason != "" {
				p["reason"] = c.Reason
			}
			results = append(results, &authres.GenericResult{Method: "dkim", Value: c.Status, Params: p})
		case CheckSPF:
			if c.Evidence == nil {
				continue // not checked
			}
			results = append(results, &authres.SPFResult{Value: c.Status, From: c.Evidence["mailfrom"], Helo: c.Evidence["helo"]})
		case CheckDMARC:
			results = append(results, &authres.DMARCResult{Value: c.Status, Reason: c.Reason, From: domainOf(r.From)})
		case CheckSMIME:
			p := map[string]string{}
			// RFC 7281 3: the signer's identity, serial and issuer.
			if r.SMIME != nil && r.SMIME.Signer != nil {
				p["body.smime-identifier"] = r.SMIME.Address
				p["body.smime-serial"] = c.Evidence["serial"]
				p["body.smime-issuer"] = strings.ReplaceAll(c.Evidence["issuer"], " ", "_")
			}
			if c.Status != authres.ResultPass && c.Reason != "" {
				p["reason"] = c.Reason
			}
			results = append(results, &authres.GenericResult{Method: "smime", Value: c.Status, Params: p})
		}
	}
	return authres.Format(authServID, results)
}
