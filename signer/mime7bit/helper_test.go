package mime7bit

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
)

// The helpers here read MIME with the standard library (net/textproto,
// mime/multipart, mime/quotedprintable, encoding/base64), independently of
// the code under test, to compare the content of an input and its output.

// decodedPart is one entity as a reader sees it.
type decodedPart struct {
	path    string
	media   string
	params  string // Content-Type parameters, canonical
	header  string // every header field but Content-Transfer-Encoding
	cte     string // as labelled, lower case, "" if absent
	leaf    bool
	content []byte // decoded content of a leaf
}

// decodeMIME parses an entity and returns every entity in it, depth first.
func decodeMIME(raw []byte) ([]decodedPart, error) {
	var parts []decodedPart
	err := decodeEntityInto(&parts, raw, "0", false, 0)
	return parts, err
}

func decodeEntityInto(parts *[]decodedPart, raw []byte, path string, digest bool, depth int) error {
	br := bufio.NewReader(bytes.NewReader(raw))
	hdr, err := textproto.NewReader(br).ReadMIMEHeader()
	// io.EOF: the header ends with the input, the body is empty.
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: header: %w", path, err)
	}
	body, err := io.ReadAll(br)
	if err != nil {
		return err
	}
	return decodeBody(parts, hdr, body, path, digest, depth)
}

func decodeBody(parts *[]decodedPart, hdr textproto.MIMEHeader, body []byte, path string, digest bool, depth int) error {
	if depth > 64 {
		return errors.New("too deep")
	}
	p := decodedPart{path: path, media: "text/plain"}
	if digest {
		p.media = "message/rfc822"
	}
	if ct := hdr.Get("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
			return fmt.Errorf("%s: content-type: %w", path, err)
		}
		p.media = mt
		var keys []string
		for k := range params {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			p.params += k + "=" + params[k] + ";"
		}
	}
	p.cte = strings.ToLower(strings.TrimSpace(hdr.Get("Content-Transfer-Encoding")))
	var keys []string
	for k := range hdr {
		if k != "Content-Transfer-Encoding" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		vs := hdr[k]
		if k == "Content-Type" || k == "Content-Disposition" {
			vs = slices.Clone(vs)
			for i, v := range vs {
				vs[i] = canonicalParams(v)
			}
		}
		p.header += k + ": " + strings.Join(vs, "|") + "\n"
	}

	switch {
	case strings.HasPrefix(p.media, "multipart/"):
		*parts = append(*parts, p)
		_, params, _ := mime.ParseMediaType(hdr.Get("Content-Type"))
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for i := 1; ; i++ {
			part, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("%s: multipart: %w", path, err)
			}
			pb, err := io.ReadAll(part)
			if err != nil {
				return fmt.Errorf("%s: multipart: %w", path, err)
			}
			if err := decodeBody(parts, part.Header, pb, fmt.Sprintf("%s.%d", path, i), p.media == "multipart/digest", depth+1); err != nil {
				return err
			}
		}
	case p.media == "message/rfc822" && p.cte != "base64" && p.cte != "quoted-printable":
		*parts = append(*parts, p)
		return decodeEntityInto(parts, body, path+".m", false, depth+1)
	}
	p.leaf = true
	switch p.cte {
	case "", "7bit", "8bit", "binary":
		p.content = body
	case "quoted-printable":
		// The line ends of quoted-printable are those of the transport:
		// a hard line break is a CRLF in the content (RFC 2045 6.7 (4)).
		b, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(canonLines(body))))
		if err != nil {
			return fmt.Errorf("%s: quoted-printable: %w", path, err)
		}
		p.content = b
	case "base64":
		b, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, bytes.NewReader(body)))
		if err != nil {
			return fmt.Errorf("%s: base64: %w", path, err)
		}
		p.content = b
	default:
		return fmt.Errorf("%s: unknown cte %q", path, p.cte)
	}
	*parts = append(*parts, p)
	return nil
}

// canonLines turns CRLF, bare LF and bare CR into CRLF (RFC 2049 4).
func canonLines(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\r':
			if i+1 < len(b) && b[i+1] == '\n' {
				i++
			}
			out = append(out, '\r', '\n')
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, b[i])
		}
	}
	return out
}

// lineOriented: content that was labelled 7bit, 8bit or quoted-printable,
// or text, is a sequence of lines whose line ends are CRLF in canonical
// form (RFC 2045 2.7-2.8, 6.7; RFC 2049 4). Content labelled binary or
// base64, or re-encoded from raw octets into base64, is octets.
func lineOriented(in, out decodedPart) bool {
	if strings.HasPrefix(in.media, "text/") {
		return true
	}
	switch in.cte {
	case "", "7bit", "8bit", "quoted-printable":
		return out.cte != "base64"
	}
	return false
}

// compareDecoded checks that out has the same entities as in, with the
// same header fields (Content-Transfer-Encoding aside) and the same content.
func compareDecoded(in, out []decodedPart) error {
	if len(in) != len(out) {
		return fmt.Errorf("%d entities in, %d out", len(in), len(out))
	}
	for i := range in {
		a, b := in[i], out[i]
		if a.path != b.path || a.media != b.media || a.params != b.params || a.leaf != b.leaf {
			return fmt.Errorf("entity %s (%s %s) became %s (%s %s)", a.path, a.media, a.params, b.path, b.media, b.params)
		}
		if a.header != b.header {
			return fmt.Errorf("entity %s: header changed:\n%s\n---\n%s", a.path, a.header, b.header)
		}
		if !a.leaf {
			continue
		}
		if bytes.Equal(a.content, b.content) {
			continue
		}
		if lineOriented(a, b) && bytes.Equal(canonLines(a.content), canonLines(b.content)) {
			continue
		}
		return fmt.Errorf("entity %s (%s, %q -> %q): content differs:\n in %q\nout %q", a.path, a.media, a.cte, b.cte, clipS(a.content), clipS(b.content))
	}
	return nil
}

func clipS(b []byte) []byte {
	if len(b) > 300 {
		return b[:300]
	}
	return b
}

// check7bit checks the output form: octets under 128 (except in the fields
// allowed by allow8), CRLF line ends only, no line over 998 octets.
func check7bit(out []byte, allow8 bool) error {
	lineStart := 0
	for i, ch := range out {
		switch {
		case ch >= 0x80 && !allow8:
			return fmt.Errorf("octet %#x at %d", ch, i)
		case ch == 0:
			return fmt.Errorf("NUL at %d", i)
		case ch == '\r':
			if i+1 >= len(out) || out[i+1] != '\n' {
				return fmt.Errorf("bare CR at %d", i)
			}
		case ch == '\n':
			if i == 0 || out[i-1] != '\r' {
				return fmt.Errorf("bare LF at %d", i)
			}
			if i-1-lineStart > maxLine {
				return fmt.Errorf("line of %d octets at %d", i-1-lineStart, lineStart)
			}
			lineStart = i + 1
		}
	}
	if len(out)-lineStart > maxLine {
		return fmt.Errorf("last line of %d octets", len(out)-lineStart)
	}
	return nil
}

// canonicalParams is a Content-Type or Content-Disposition value with
// UTF-8 (RFC 6532) or RFC 2231 extended parameters in a form where both
// compare equal: EncodeUTF8Params rewrites the one as the other. Other
// values stay as they are.
func canonicalParams(v string) string {
	ascii := true
	for i := 0; i < len(v); i++ {
		if v[i] >= 0x80 {
			ascii = false
		}
	}
	if ascii && !strings.Contains(v, "*=") {
		return v
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		return v
	}
	keys := slices.Sorted(maps.Keys(params))
	out := mt
	for _, k := range keys {
		out += "; " + k + "=" + strconv.Quote(params[k])
	}
	return out
}
