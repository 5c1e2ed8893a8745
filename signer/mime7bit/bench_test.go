package mime7bit

import (
	"bytes"
	"encoding/base64"
	"io"
	"strings"
	"testing"
)

// benchMessage builds a message of about size octets: a Japanese 8bit
// text/plain body and, when attachment > 0, a binary attachment of that many
// octets (sent raw, so re-encoded as base64) or, if b64, already in base64.
func benchMessage(textSize, attachment int, b64 bool) []byte {
	var sb strings.Builder
	sb.WriteString("From: Sato Hanako <hanako@example.go.jp>\r\nTo: taro@example.com\r\nSubject: =?UTF-8?B?5qGI5YaF?=\r\nDate: Thu, 26 Nov 2026 10:00:00 +0900\r\nMessage-ID: <bench@example.go.jp>\r\nMIME-Version: 1.0\r\n")
	text := func() {
		sb.WriteString("Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
		line := "本日の会議資料をお送りします。ご確認ください。Meeting notes attached.\r\n"
		for n := 0; n < textSize; n += len(line) {
			sb.WriteString(line)
		}
	}
	if attachment == 0 {
		text()
		return []byte(sb.String())
	}
	sb.WriteString("Content-Type: multipart/mixed; boundary=\"=_bench\"\r\n\r\n--=_bench\r\n")
	text()
	att := randomBytes(attachment, 3)
	if b64 {
		sb.WriteString("\r\n--=_bench\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n")
		enc := base64.StdEncoding.EncodeToString(att)
		for len(enc) > 76 {
			sb.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		sb.WriteString(enc)
	} else {
		sb.WriteString("\r\n--=_bench\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n")
		sb.Write(att)
	}
	sb.WriteString("\r\n--=_bench--\r\n")
	return []byte(sb.String())
}

func benchNormalize(b *testing.B, msg []byte) {
	b.Helper()
	var n Normalizer
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for b.Loop() {
		if err := n.NormalizeBytes(io.Discard, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNormalize: the signer's cases, into io.Discard (the cost of
// normalising alone), then as the signer calls it: Normalize from the
// *bytes.Buffer holding the message (used in place) into an output buffer
// grown once to 1.4 times the input (see the package doc on output growth),
// so B/op there is the output.
func BenchmarkNormalize(b *testing.B) {
	cases := []struct {
		name string
		msg  []byte
	}{
		{"4KB-text-8bit", benchMessage(4<<10, 0, false)},
		{"4KB-text-7bit", []byte(strings.Repeat("Subject: x\r\n", 3) + "\r\n" + strings.Repeat("Plain US-ASCII text line for the benchmark.\r\n", 90))},
		{"1MB-attachment-binary", benchMessage(2<<10, 1<<20, false)},
		{"1MB-attachment-base64", benchMessage(2<<10, 1<<20, true)},
		{"25MB-attachment-binary", benchMessage(2<<10, 25<<20, false)},
		{"25MB-attachment-base64", benchMessage(2<<10, 25<<20*3/4, true)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) { benchNormalize(b, c.msg) })
	}
	for _, c := range cases {
		b.Run(c.name+"/buffer-to-buffer", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.msg)))
			for b.Loop() {
				var out bytes.Buffer
				out.Grow(len(c.msg) + len(c.msg)*2/5)
				if err := Normalize(&out, bytes.NewBuffer(c.msg)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
