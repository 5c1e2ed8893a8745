package smimeverify_test

import (
	"bytes"
	"crypto/x509/pkix"

	"github.com/kakuin/kakuin/pki"
)

type pkitestIdentity = pki.Identity

func pkixName(org string) pkix.Name {
	return pkix.Name{Country: []string{"JP"}, Organization: []string{org}, CommonName: "Taro"}
}

func splitMsg(m []byte) (h, body []byte) {
	i := bytes.Index(m, []byte("\r\n\r\n"))
	return m[:i+2], m[i+4:]
}

// contentHeader returns the Content-* and MIME-Version lines of h.
func contentHeader(h []byte) []byte {
	var out []byte
	lines := bytes.SplitAfter(h, []byte("\r\n"))
	keep := false
	for _, l := range lines {
		if len(l) == 0 {
			continue
		}
		if l[0] != ' ' && l[0] != '\t' {
			keep = bytes.HasPrefix(bytes.ToLower(l), []byte("content-"))
		}
		if keep {
			out = append(out, l...)
		}
	}
	return out
}
