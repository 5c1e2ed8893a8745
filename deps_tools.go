//go:build tools

// This file pins the dependencies named in ARCHITECTURE.md and the issues
// while the packages that use them are being written, so that `go mod tidy`
// keeps them. Remove an import once real code imports the package.
package kakuin

import (
	_ "blitiri.com.ar/go/spf"
	_ "github.com/emersion/go-msgauth/dkim"
	_ "github.com/emersion/go-sasl"
	_ "github.com/emersion/go-smtp"
	_ "github.com/miekg/dns"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/schollz/progressbar/v3"
	_ "github.com/smallstep/pkcs7"
	_ "github.com/zmap/zlint/v3"
	_ "golang.org/x/text/encoding/japanese"
	_ "software.sslmate.com/src/go-pkcs12"
)
