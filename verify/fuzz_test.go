package verify_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/kakuin/kakuin/pki"
	"github.com/kakuin/kakuin/pki/pkitest"
	"github.com/kakuin/kakuin/verify"
	"github.com/kakuin/kakuin/verify/internal/testsign"
)

// FuzzMessage runs arbitrary input through every parser of the message
// path (header, From, MIME, CMS, DKIM tags). Without a resolver no DKIM
// signature can pass, so nothing may come out genuine; a report must
// always have a summary and the fixed checks.
func FuzzMessage(f *testing.F) {
	ca := pkitest.New(f)
	// ECDSA and Ed25519 only: RSA key generation would make every fuzz
	// worker's start slow.
	id := ca.Identity(f, "taro@example.go.jp", pkitest.WithKeyType(pkitest.ECDSAP256))
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	keys := []pki.DKIMKey{{Domain: "example.go.jp", Selector: "ed", Signer: edKey}}
	f.Add(testsign.DKIM(f, testsign.Detached(f, id, outer, testsign.Entity("hello")), keys, nil))
	f.Add(testsign.Opaque(f, id, outer, testsign.Entity("hello")))
	f.Add([]byte("From: \"a@example.go.jp\" <b@example.com>, c@example.go.jp\r\nFrom: x\r\n\r\n"))
	f.Add([]byte("From: =?iso-2022-jp?b?GyRCO1RMMRsoQg==?= <a@example.go.jp>\nContent-Type: multipart/mixed; boundary=x\n\n--x\n\n--x--\n"))
	// Received-mail header shapes: obs-optional, an mbox-looking From
	// field, a bare CR, a From group.
	f.Add([]byte("From : a@example.go.jp\r\nFrom: b@example.com\r\nSubject\t: x\r\n\r\n"))
	f.Add([]byte("Subject: a\rFrom: b@example.com\r\nFrom: g: a@example.go.jp;\r\n\r\n"))
	v := verify.New(verify.Options{TrustAnchors: ca.Roots()})
	f.Fuzz(func(t *testing.T, msg []byte) {
		rep, err := v.Bytes(context.Background(), msg)
		if err != nil {
			return
		}
		if rep.Verdict.Genuine {
			t.Fatalf("genuine without a resolver: %v", rep.Lines())
		}
		if rep.Verdict.Summary == "" || len(rep.Checks) < 8 {
			t.Fatalf("incomplete report: %v", rep.Lines())
		}
		_ = rep.AuthenticationResults("")
	})
}
