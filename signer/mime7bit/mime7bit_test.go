package mime7bit

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"mime"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/text/encoding/japanese"
)

// crlf writes a test message with CRLF line ends.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func encodeJP(t testing.TB, enc interface{ Bytes([]byte) ([]byte, error) }, s string) string {
	t.Helper()
	b, err := enc.Bytes([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// randomBytes returns n reproducible pseudo-random octets with NUL, CR, LF
// and CRLF among them, ending in an octet that is neither CR nor LF.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	for i, s := range []string{"\x00", "\r", "\n", "\r\n", "\n\r", "\r\r\n", "\x00\x00\r"} {
		if at := (i + 1) * n / 9; at+len(s) < n {
			copy(b[at:], s)
		}
	}
	b[n-1] = 'Z'
	return b
}

// checkNormalized checks everything a successful Normalize promises:
// the 7-bit form, the same content when decoded, and idempotence.
func checkNormalized(t testing.TB, n *Normalizer, in, out []byte) {
	t.Helper()
	if err := check7bit(out, n.AllowUTF8Header); err != nil {
		t.Fatalf("output not 7-bit/CRLF/998: %v\n%q", err, clipS(out))
	}
	din, err := decodeMIME(in)
	if err != nil {
		t.Fatalf("decoding input: %v", err)
	}
	dout, err := decodeMIME(out)
	if err != nil {
		t.Fatalf("decoding output: %v\n%s", err, clipS(out))
	}
	if err := compareDecoded(din, dout); err != nil {
		t.Fatalf("content changed: %v\noutput:\n%s", err, clipS(out))
	}
	var again bytes.Buffer
	if err := n.Normalize(&again, bytes.NewReader(out)); err != nil {
		t.Fatalf("normalising the output again: %v", err)
	}
	if !bytes.Equal(again.Bytes(), out) {
		t.Fatalf("not idempotent:\nfirst  %q\nsecond %q", clipS(out), clipS(again.Bytes()))
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	test := func(name string, n Normalizer, in string, expErr error, check func(t *testing.T, out string)) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			err := n.Normalize(&out, strings.NewReader(in))
			if !errors.Is(err, expErr) || (err != nil && expErr == nil) {
				t.Fatalf("got error %v, want %v", err, expErr)
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "mime7bit: ") {
					t.Fatalf("error %q lacks the package prefix", err)
				}
				return
			}
			checkNormalized(t, &n, []byte(in), out.Bytes())
			if check != nil {
				check(t, out.String())
			}
		})
	}
	same := func(t *testing.T, in string) func(t *testing.T, out string) {
		return func(t *testing.T, out string) {
			t.Helper()
			if want := crlf(in); out != want {
				t.Fatalf("got\n%q\nwant\n%q", out, want)
			}
		}
	}
	equal := func(want string) func(t *testing.T, out string) {
		return func(t *testing.T, out string) {
			t.Helper()
			if out != want {
				t.Fatalf("got\n%q\nwant\n%q", out, want)
			}
		}
	}
	contains := func(subs ...string) func(t *testing.T, out string) {
		return func(t *testing.T, out string) {
			t.Helper()
			for _, s := range subs {
				if !strings.Contains(out, s) {
					t.Fatalf("output lacks %q:\n%s", s, out)
				}
			}
		}
	}
	var none Normalizer
	hdr := "From: Sato Hanako <hanako@example.go.jp>\nTo: taro@example.com\nSubject: test\nMIME-Version: 1.0\n"

	// Text re-encoded as quoted-printable, the CTE field replaced in place.
	in := hdr + "Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\nX-After: kept\n\nこんにちは、世界。\n二行目\n"
	test("utf8 8bit text", none, in, nil, equal(crlf(hdr+"Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: quoted-printable\nX-After: kept\n\n"+
		"=E3=81=93=E3=82=93=E3=81=AB=E3=81=A1=E3=81=AF=E3=80=81=E4=B8=96=E7=95=8C=E3=\n=80=82\n=E4=BA=8C=E8=A1=8C=E7=9B=AE\n")))

	jis := encodeJP(t, japanese.ISO2022JP.NewEncoder(), "日本語のテキストです。\n二行目も日本語。\n")
	in = hdr + "Content-Type: text/plain; charset=ISO-2022-JP\nContent-Transfer-Encoding: 7bit\n\n" + jis
	test("iso-2022-jp untouched but CRLF", none, in, nil, same(t, in))

	sjis := encodeJP(t, japanese.ShiftJIS.NewEncoder(), "シフトJISの本文です。\n表示\n")
	in = hdr + "Content-Type: text/plain; charset=Shift_JIS\nContent-Transfer-Encoding: 8bit\n\n" + sjis
	test("shift_jis 8bit", none, in, nil, contains("Content-Type: text/plain; charset=Shift_JIS\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=83V=83t=83g"))

	in = hdr + "Content-Type: text/plain; charset=us-ascii\n\n" + strings.Repeat("abcdefghij", 150) + "\nend\n"
	test("line of 1500 octets", none, in, nil, func(t *testing.T, out string) {
		if !strings.Contains(out, "charset=us-ascii\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n") {
			t.Fatalf("CTE not appended at the end of the header:\n%s", out)
		}
		for _, l := range strings.Split(out, "\r\n") {
			if len(l) > 76 {
				t.Fatalf("line of %d characters", len(l))
			}
		}
	})
	in = "Subject: x\n\n" + strings.Repeat("y", 999)
	test("999 octets without line end", none, in, nil, contains("Content-Transfer-Encoding: quoted-printable\r\n"))
	in = "Subject: x\n\n" + strings.Repeat("y", 998) + "\n" + strings.Repeat("z", 998)
	test("998 octets is allowed", none, in, nil, same(t, in))

	in = hdr + "Content-Type: text/plain\n\nline one\nline two\n\n"
	test("bare LF", none, in, nil, same(t, in))
	test("bare CR", none, "Subject: x\r\n\r\nline1\rline2\r\r\nline3\r", nil, equal("Subject: x\r\n\r\nline1\r\nline2\r\n\r\nline3\r\n"))
	test("mixed line ends", none, "Subject: x\r\nTo: y@example.com\n\na\r\nb\nc", nil, equal("Subject: x\r\nTo: y@example.com\r\n\r\na\r\nb\r\nc"))

	in = "Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\nテスト  \n\t\n\n\n"
	test("trailing blank lines and spaces", none, in, nil, equal("Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=E3=83=86=E3=82=B9=E3=83=88 =20\r\n=09\r\n\r\n\r\n"))
	in = "Content-Type: text/plain\n\nend\n\n\n\n"
	test("trailing blank lines 7bit", none, in, nil, same(t, in))

	in = "Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\né\nFrom here\n.\n-- \nsig\n"
	test("qp guards line starts", none, in, nil, contains("\r\n\r\n=C3=A9\r\n=46rom here\r\n=2E\r\n=2D-=20\r\nsig\r\n"))

	in = hdr + `Content-Type: multipart/alternative; boundary="alt-1"

This is a multi-part message in MIME format.

--alt-1
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 8bit

お知らせ
--alt-1
Content-Type: text/html; charset=UTF-8
Content-Transfer-Encoding: quoted-printable

<html><body><p>=E3=81=8A=E7=9F=A5=E3=82=89=E3=81=9B</p>
<p>A long line that is soft broken here =
and continues.</p></body></html>
--alt-1--
`
	test("multipart/alternative", none, in, nil, contains(
		"This is a multi-part message in MIME format.\r\n\r\n--alt-1\r\n",
		"Content-Transfer-Encoding: quoted-printable\r\n\r\n=E3=81=8A=E7=9F=A5=E3=82=89=E3=81=9B\r\n--alt-1\r\n",
		"<p>A long line that is soft broken here =\r\nand continues.</p></body></html>\r\n--alt-1--\r\n"))

	bin := string(randomBytes(3000, 1))
	bin2 := string(randomBytes(500, 2))
	in = hdr + "Content-Type: multipart/mixed; boundary=\"=_mixed_0\"\n\n--=_mixed_0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\n添付します。\n" +
		"--=_mixed_0\nContent-Type: application/octet-stream; name=\"data.bin\"\nContent-Disposition: attachment; filename=\"data.bin\"\nContent-Transfer-Encoding: binary\n\n" + bin +
		"\n--=_mixed_0\nContent-Type: image/png\n\n" + bin2 + "\n--=_mixed_0--\n"
	test("multipart/mixed binary attachment", none, in, nil, func(t *testing.T, out string) {
		if strings.Count(out, "Content-Transfer-Encoding: base64\r\n") != 2 {
			t.Fatalf("want two base64 parts:\n%s", out)
		}
	})
	in = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\nabc\r\r\n--b--\r\n"
	test("binary content ending in CR before a CRLF delimiter", none, in, nil, contains("Content-Transfer-Encoding: base64\r\n\r\nYWJjDQ==\r\n--b--"))
	in = "Content-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\nab\r\ncd\r\n"
	test("binary clean CRLF relabelled", none, in, nil, equal("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: 7bit\r\n\r\nab\r\ncd\r\n"))
	in = "Content-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\nab\ncd\n"
	test("binary with bare LF stays octets", none, in, nil, equal("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nYWIKY2QK\r\n"))
	in = "Content-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\nplain ascii\n"
	test("8bit label on clean text relabelled", none, in, nil, equal("Content-Type: text/plain\r\nContent-Transfer-Encoding: 7bit\r\n\r\nplain ascii\r\n"))
	in = "Content-Type: text/plain\ncontent-transfer-encoding:\n 8BIT\nX-Z: z\n\ncafé\n"
	test("folded CTE replaced, name spelling kept", none, in, nil, equal("Content-Type: text/plain\r\ncontent-transfer-encoding: quoted-printable\r\nX-Z: z\r\n\r\ncaf=C3=A9\r\n"))
	in = "Content-Type: text/plain\nContent-Transfer-Encoding: 7bit\n\n\x00nul\n"
	test("NUL in 7bit text", none, in, nil, contains("Content-Transfer-Encoding: quoted-printable\r\n\r\n=00nul\r\n"))
	in = "Content-Type: text/plain\nContent-Transfer-Encoding: 7bit\n\n8-bit \xe9 in 7bit\n"
	test("declared 7bit with 8-bit octets", none, in, nil, contains("Content-Transfer-Encoding: quoted-printable\r\n\r\n8-bit =E9 in 7bit\r\n"))

	png := "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E\nrkJggg==\n"
	in = "Content-Type: image/png\nContent-Transfer-Encoding: base64\n\n" + png
	test("already base64 with LF", none, in, nil, same(t, in))
	long := strings.Repeat("QUJD", 300)
	in = "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n" + long + "\n"
	test("base64 line over 998 rewrapped", none, in, nil, func(t *testing.T, out string) {
		if want := strings.Repeat(strings.Repeat("QUJD", 19)+"\r\n", 15) + strings.Repeat("QUJD", 15) + "\r\n"; !strings.HasSuffix(out, "\r\n\r\n"+want) {
			t.Fatalf("got %q", out)
		}
	})
	in = "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nabc=3D é=\nx=0D=0Ay \n"
	test("quoted-printable with raw 8-bit", none, in, nil, equal("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nabc=3D =C3=A9x=0D=0Ay\r\n"))
	// Found by FuzzNormalize: an encoded CR before a LF line end is kept.
	in = "Content-TrAnsfer-EnCoding:quoted-printABle\n\n0000000=0D\n"
	test("quoted-printable =0D before LF", none, in, nil, same(t, in))
	in = "Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n" + strings.Repeat("a", 1200) + "\n"
	test("quoted-printable line over 998", none, in, nil, contains(strings.Repeat("a", 75)+"=\r\n"))

	// A soft line break must not start a line with a delimiter found in
	// the middle of a text line.
	in = "Content-Type: multipart/mixed; boundary=b1\n\n--b1\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\né" + strings.Repeat("x", 69) + "--b1 and more\n--b1--\n"
	test("qp cannot forge a delimiter", none, in, nil, func(t *testing.T, out string) {
		n := 0
		for _, l := range strings.Split(out, "\r\n") {
			if strings.HasPrefix(l, "--b1") {
				n++
			}
		}
		if n != 2 || !strings.Contains(out, "=\r\n=2D-b1 and more") {
			t.Fatalf("%d lines start with --b1:\n%s", n, out)
		}
	})

	in = hdr + `Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 8bit

本文
--alt
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html; charset=UTF-8
Content-Transfer-Encoding: 8bit

<p>本文<img src="cid:logo@example.go.jp"></p>
--rel
Content-Type: image/png
Content-ID: <logo@example.go.jp>
Content-Transfer-Encoding: base64

` + png + `--rel--
--alt--
--outer
Content-Type: text/csv; charset=Shift_JIS
Content-Disposition: attachment; filename="list.csv"
Content-Transfer-Encoding: 8bit

` + sjis + `
--outer--
`
	test("nested multipart 3 levels", none, in, nil, func(t *testing.T, out string) {
		if n := strings.Count(out, "Content-Transfer-Encoding: quoted-printable\r\n"); n != 3 {
			t.Fatalf("%d quoted-printable parts, want 3:\n%s", n, out)
		}
	})

	in = hdr + `Content-Type: multipart/mixed; boundary=fwd

--fwd
Content-Type: text/plain

See the forwarded message.
--fwd
Content-Type: message/rfc822
Content-Transfer-Encoding: 8bit

From: Suzuki <suzuki@example.go.jp>
Subject: original
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 8bit

転送元の本文
--fwd--
`
	test("message/rfc822 walked", none, in, nil, contains(
		"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\nFrom: Suzuki",
		"Content-Transfer-Encoding: quoted-printable\r\n\r\n=E8=BB=A2"))
	in = "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\nいち\n--d\n\nSubject: two\n\ntwo\n--d--\n"
	test("multipart/digest defaults to message/rfc822", none, in, nil, contains("--d\r\n\r\nSubject: one\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=E3=81=84=E3=81=A1\r\n--d"))
	in = "Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeAoKeQo=\n"
	test("message/rfc822 in base64 kept opaque", none, in, nil, same(t, in))
	in = "Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.go.jp\nX-Note: caf\xc3\xa9\n"
	test("other message subtype as octets", none, in, nil, contains("Content-Transfer-Encoding: base64\r\n"))

	in = "Content-Type: multipart/mixed; boundary=p\n\nプリアンブル\n--p\nContent-Type: text/plain\n\nx\n--p--\nエピローグ\n"
	test("8-bit preamble and epilogue dropped", none, in, nil, equal("Content-Type: multipart/mixed; boundary=p\r\n\r\n--p\r\nContent-Type: text/plain\r\n\r\nx\r\n--p--\r\n"))
	in = "Content-Type: multipart/mixed; boundary=p\n\npreamble\n\n--p \t\nContent-Type: text/plain\n\nx\n--p--\nepilogue\n"
	test("7-bit preamble, padding and epilogue kept", none, in, nil, same(t, in))
	in = "Content-Type: multipart/mixed; boundary=p\n\n--p\n\n--p\n\nx\n--p--"
	test("empty part", none, in, nil, same(t, in))
	in = "Content-Type: multipart/mixed; boundary=p\nContent-Transfer-Encoding: 8bit\n\n--p\nContent-Type: text/plain\n\nx\n--p--\n"
	test("multipart 8bit relabelled", none, in, nil, contains("Content-Transfer-Encoding: 7bit\r\n\r\n--p\r\n"))

	in = "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=s\n\n--s\nContent-Type: text/plain\n\nsigned text\n--s\nContent-Type: application/pkcs7-signature\nContent-Transfer-Encoding: base64\n\nMIIB\n--s--\n"
	test("multipart/signed clean: only line ends", none, in, nil, same(t, in))
	in = "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=s\n\n--s\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\n署名済み\n--s\nContent-Type: application/pkcs7-signature\nContent-Transfer-Encoding: base64\n\nMIIB\n--s--\n"
	test("multipart/signed needing re-encoding", none, in, ErrMIME, nil)
	in = "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=s\n\n--s\nContent-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\nascii\n--s\nContent-Type: application/pkcs7-signature\nContent-Transfer-Encoding: base64\n\nMIIB\n--s--\n"
	test("multipart/signed needing a relabel", none, in, ErrMIME, nil)

	test("empty input", none, "", nil, equal(""))
	test("header without body", none, "Subject: x\nContent-Type: text/plain", nil, equal("Subject: x\r\nContent-Type: text/plain\r\n\r\n"))
	test("empty body", none, "Subject: x\n\n", nil, equal("Subject: x\r\n\r\n"))
	test("no header", none, "\nbody é\n", nil, equal("Content-Transfer-Encoding: quoted-printable\r\n\r\nbody =C3=A9\r\n"))

	utf := Normalizer{AllowUTF8Header: true}
	in = "Subject: 日本語の件名\nContent-Type: text/plain; charset=UTF-8\n\n本文\n"
	test("utf-8 header refused by default", none, in, ErrMIME, nil)
	test("utf-8 header allowed by option", utf, in, nil, contains("Subject: 日本語の件名\r\n", "=E6=9C=AC=E6=96=87"))
	test("utf-8 content-type refused even with option", utf, "Content-Type: text/plain; name=日本\n\nx\n", ErrMIME, nil)
	test("utf-8 part header refused even with option", utf, "Content-Type: multipart/mixed; boundary=p\n\n--p\nX-Name: 名前\n\nx\n--p--\n", ErrMIME, nil)
	test("utf-8 header of enclosed message refused", utf, "Content-Type: message/rfc822\n\nSubject: 件名\n\nx\n", ErrMIME, nil)

	// UTF-8 parameter values (RFC 6532) in 7 bits (RFC 2231).
	params := Normalizer{EncodeUTF8Params: true}
	attach := "Content-Type: multipart/mixed; boundary=p\n\n--p\n\nsee attached\n--p\n" +
		"Content-Type: application/pdf; name=\"報告書 (案).pdf\"\nContent-Disposition: attachment;\n filename=\"報告書 (案).pdf\"; size=4\nContent-Transfer-Encoding: base64\n\nJVBERg==\n--p--\n"
	test("utf-8 parameters refused by default", none, attach, ErrMIME, nil)
	test("utf-8 parameters in RFC 2231 form", params, attach, nil, func(t *testing.T, out string) {
		t.Helper()
		var ct, cd string
		for _, l := range strings.Split(out, "\r\n") {
			if v, ok := strings.CutPrefix(l, "Content-Type: application/pdf"); ok {
				ct = "application/pdf" + v
			}
			if v, ok := strings.CutPrefix(l, "Content-Disposition: "); ok {
				cd = v
			}
		}
		_, p1, err1 := mime.ParseMediaType(ct)
		d, p2, err2 := mime.ParseMediaType(cd)
		if err1 != nil || err2 != nil || p1["name"] != "報告書 (案).pdf" || d != "attachment" || p2["filename"] != "報告書 (案).pdf" || p2["size"] != "4" {
			t.Fatalf("rewritten fields do not say the same:\n%s\n%s", ct, cd)
		}
		if !strings.Contains(cd, "filename*=utf-8''%E5%A0%B1") {
			t.Fatalf("not RFC 2231: %s", cd)
		}
	})
	test("utf-8 top-level content-type in RFC 2231 form", params, "Content-Type: text/plain; charset=utf-8; name=\"é.txt\"\n\nx\n", nil,
		contains("Content-Type: text/plain; charset=utf-8; name*=utf-8''%C3%A9.txt\r\n"))
	test("utf-8 parameter not quoted", params, "Content-Type: text/plain; name=é.txt\n\nx\n", ErrMIME, nil)
	test("utf-8 parameter not UTF-8", params, "Content-Type: text/plain; name=\"\xe9.txt\"\n\nx\n", ErrMIME, nil)
	test("utf-8 other content field still refused", params, "Content-Description: 説明\n\nx\n", ErrMIME, nil)
	test("utf-8 parameters inside multipart/signed left alone", params,
		"Content-Type: multipart/signed; boundary=s\n\n--s\nContent-Type: text/plain; name=\"é.txt\"\n\nx\n--s\nContent-Type: application/pkcs7-signature\n\nMIIB\n--s--\n", ErrMIME, nil)

	// Malformed: each a clear ErrMIME, never a mangled message.
	test("multipart without boundary", none, "Content-Type: multipart/mixed\n\n--x\n\ny\n--x--\n", ErrMIME, nil)
	test("multipart missing close delimiter", none, "Content-Type: multipart/mixed; boundary=x\n\n--x\n\ny\n", ErrMIME, nil)
	test("multipart ending after a delimiter", none, "Content-Type: multipart/mixed; boundary=x\n\n--x", ErrMIME, nil)
	test("multipart with no body part", none, "Content-Type: multipart/mixed; boundary=x\n\n--x--\n--x\n\ny\n--x--\n", ErrMIME, nil)
	test("multipart without any delimiter", none, "Content-Type: multipart/mixed; boundary=x\n\nno parts\n", ErrMIME, nil)
	test("boundary too long", none, "Content-Type: multipart/mixed; boundary="+strings.Repeat("b", 71)+"\n\n--x\n", ErrMIME, nil)
	test("empty boundary", none, "Content-Type: multipart/mixed; boundary=\"\"\n\n--\n\nx\n----\n", ErrMIME, nil)
	test("x-uuencode", none, "Content-Type: application/octet-stream\nContent-Transfer-Encoding: x-uuencode\n\nbegin 644 a\n", ErrMIME, nil)
	test("empty CTE", none, "Content-Transfer-Encoding:\n\nx\n", ErrMIME, nil)
	test("two CTE fields", none, "Content-Transfer-Encoding: 7bit\nContent-Transfer-Encoding: base64\n\nx\n", ErrMIME, nil)
	test("two Content-Type fields", none, "Content-Type: text/plain\nContent-Type: text/html\n\nx\n", ErrMIME, nil)
	test("invalid Content-Type", none, "Content-Type: text\n\nx\n", ErrMIME, nil)
	test("unparsable Content-Type", none, "Content-Type: /\n\nx\n", ErrMIME, nil)
	test("multipart in base64", none, "Content-Type: multipart/mixed; boundary=x\nContent-Transfer-Encoding: base64\n\n--x\n\ny\n--x--\n", ErrMIME, nil)
	test("base64 with 8-bit octets", none, "Content-Type: image/png\nContent-Transfer-Encoding: base64\n\niVBO\xff\n", ErrMIME, nil)
	test("invalid base64 on a long line", none, "Content-Type: image/png\nContent-Transfer-Encoding: base64\n\n"+strings.Repeat("!", 1000)+"\n", ErrMIME, nil)
	test("message/partial with 8-bit", none, "Content-Type: message/partial; id=\"a@example.go.jp\"; number=1\n\nSubject: \xe9\n", ErrMIME, nil)
	test("8-bit header", none, "Subject: \xe9\n\nx\n", ErrMIME, nil)
	test("bare CR in header", none, "Subject: a\rX-Injected: b\n\nx\n", ErrMIME, nil)
	test("NUL in header", none, "Subject: a\x00b\n\nx\n", ErrMIME, nil)
	test("header line over 998", none, "Subject: "+strings.Repeat("s", 990)+"\n\nx\n", ErrMIME, nil)
	test("continuation first", none, " folded\nSubject: x\n\nx\n", ErrMIME, nil)
	test("line without colon", none, "hello world\n\nx\n", ErrMIME, nil)
	test("space in field name", none, "Sub ject: x\n\nx\n", ErrMIME, nil)
	test("header too large", Normalizer{MaxHeaderBytes: 100}, strings.Repeat("X-A: b\n", 30)+"\nx\n", ErrMIME, nil)

	nest := func(levels int) string {
		var sb strings.Builder
		for i := range levels {
			sb.WriteString("Content-Type: multipart/mixed; boundary=b" + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + "\n\n--b" + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + "\n")
		}
		sb.WriteString("\nleaf\n")
		for i := levels - 1; i >= 0; i-- {
			sb.WriteString("--b" + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + "--\n")
		}
		return sb.String()
	}
	test("nesting within MaxDepth", Normalizer{MaxDepth: 3}, nest(3), nil, nil)
	test("nesting deeper than MaxDepth", Normalizer{MaxDepth: 3}, nest(4), ErrMIME, nil)
	test("nesting deeper than the default", none, nest(DefaultMaxDepth+1), ErrMIME, nil)
	test("message/rfc822 counts as nesting", Normalizer{MaxDepth: 1}, "Content-Type: message/rfc822\n\nContent-Type: message/rfc822\n\nx\n", ErrMIME, nil)
	many := "Content-Type: multipart/mixed; boundary=m\n\n" + strings.Repeat("--m\n\nx\n", 10) + "--m--\n"
	test("parts within MaxParts", Normalizer{MaxParts: 11}, many, nil, nil)
	test("more parts than MaxParts", Normalizer{MaxParts: 10}, many, ErrMIME, nil)
}

// TestCorpus normalises the project's signing corpus and checks every
// promise on each message; the refusal corpus's MIME cases must fail.
func TestCorpus(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../testdata/corpus/*.eml")
	if err != nil || len(files) < 15 {
		t.Fatalf("corpus: %d files, %v", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			var n Normalizer
			if err := n.Normalize(&out, bytes.NewReader(in)); err != nil {
				t.Fatal(err)
			}
			checkNormalized(t, &n, in, out.Bytes())
		})
	}
	for _, name := range []string{"multipart-unterminated.eml", "multipart-no-boundary.eml"} {
		in, err := os.ReadFile("../../testdata/refused/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if err := Normalize(io.Discard, bytes.NewReader(in)); !errors.Is(err, ErrMIME) {
			t.Errorf("%s: got %v, want ErrMIME", name, err)
		}
	}
}

// TestReaders: every kind of source gives the same output.
func TestReaders(t *testing.T) {
	t.Parallel()
	in := "Content-Type: text/plain; charset=UTF-8\n\nこんにちは\n"
	var want bytes.Buffer
	if err := Normalize(&want, strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "msg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.WriteString("skip" + in); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(4, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	buf := bytes.NewBufferString(in)
	for name, src := range map[string]io.Reader{
		"bytes.Buffer": buf,
		"bytes.Reader": bytes.NewReader([]byte(in)),
		"os.File":      f,
		"other":        io.MultiReader(strings.NewReader(in[:5]), strings.NewReader(in[5:])),
	} {
		var got bytes.Buffer
		if err := Normalize(&got, src); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.String() != want.String() {
			t.Errorf("%s: got %q, want %q", name, got.String(), want.String())
		}
	}
	if buf.Len() != 0 {
		t.Errorf("bytes.Buffer not consumed: %d left", buf.Len())
	}
}

type failWriter struct{}

var errWrite = errors.New("disk full")

func (failWriter) Write([]byte) (int, error) { return 0, errWrite }

type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, errWrite }

// TestIOErrors: failures of dst and src are reported as such, not as
// malformed MIME.
func TestIOErrors(t *testing.T) {
	t.Parallel()
	err := Normalize(failWriter{}, strings.NewReader("Subject: x\n\nbody\n"))
	if !errors.Is(err, errWrite) || errors.Is(err, ErrMIME) {
		t.Errorf("write: got %v", err)
	}
	err = Normalize(io.Discard, failReader{})
	if !errors.Is(err, errWrite) || errors.Is(err, ErrMIME) {
		t.Errorf("read: got %v", err)
	}
}

// TestLargeAttachment: a 5 MiB binary attachment comes out base64,
// octet for octet.
func TestLargeAttachment(t *testing.T) {
	t.Parallel()
	att := randomBytes(5<<20, 7)
	in := append([]byte("Content-Type: multipart/mixed; boundary=big\n\n--big\nContent-Type: text/plain\n\nsee attached\n--big\nContent-Type: application/zip\nContent-Transfer-Encoding: binary\n\n"), att...)
	in = append(in, "\n--big--\n"...)
	var out bytes.Buffer
	if err := Normalize(&out, bytes.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	checkNormalized(t, &Normalizer{}, in, out.Bytes())
}

// naiveScan is scan without the fast path, line by line.
func naiveScan(b []byte) (s stats) {
	for i := 0; i < len(b); {
		end, next := nextLine(b, i)
		if end-i > maxLine {
			s.long = true
		}
		for _, ch := range b[i:end] {
			s.eight = s.eight || ch >= 0x80
			s.nul = s.nul || ch == 0
		}
		if next == end+1 {
			s.bare = true // LF alone or CR alone
		}
		i = next
	}
	return s
}

// TestScan compares scan, with its 8-octet fast path, to naiveScan.
func TestScan(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	alphabet := []byte("ab \t\r\n\x00\x0d\x0e\x0c\x7f\x80\xff-=")
	for range 20000 {
		n := r.IntN(40)
		b := make([]byte, n)
		for i := range b {
			if r.IntN(4) == 0 {
				b[i] = alphabet[r.IntN(len(alphabet))]
			} else {
				b[i] = 'x'
			}
		}
		if r.IntN(50) == 0 {
			b = append(b, bytes.Repeat([]byte("y"), 990+r.IntN(20))...)
		}
		got, want := scan(b), naiveScan(b)
		if got.clean() != want.clean() || got.eight != want.eight && got.clean() {
			t.Fatalf("scan(%q) = %+v, want %+v", b, got, want)
		}
		if got.clean() && got != want {
			t.Fatalf("scan(%q) = %+v, want %+v", b, got, want)
		}
		if !got.clean() && (got.eight && !want.eight || got.nul && !want.nul || got.long && !want.long) {
			t.Fatalf("scan(%q) = %+v, want %+v", b, got, want)
		}
	}
}

// TestMemory: normalising holds no copy of the input. Not parallel, so that
// no other test allocates while it measures.
func TestMemory(t *testing.T) {
	att := randomBytes(8<<20, 9)
	msg := append([]byte("Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n本文\r\n--m\r\nContent-Type: application/octet-stream\r\n\r\n"), att...)
	msg = append(msg, "\r\n--m--\r\n"...)
	measure := func(name string, f func() error) {
		t.Helper()
		if err := f(); err != nil { // warm the pool
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if err := f(); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		t.Logf("%s: %d bytes", name, after.TotalAlloc-before.TotalAlloc)
		if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
			t.Errorf("%s: allocated %d bytes for an %d-byte message", name, got, len(msg))
		}
	}
	var n Normalizer
	measure("NormalizeBytes", func() error { return n.NormalizeBytes(io.Discard, msg) })
	measure("Normalize from a bytes.Buffer", func() error { return Normalize(io.Discard, bytes.NewBuffer(msg)) })
}
