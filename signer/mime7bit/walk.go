package mime7bit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"unicode/utf8"
)

// walker holds the state of one Normalize call.
type walker struct {
	w         *bufio.Writer
	maxDepth  int
	maxParts  int
	maxHeader int
	utf8Top   bool
	// utf8Params: rewrite UTF-8 parameter values (Normalizer.EncodeUTF8Params)
	utf8Params bool

	parts int
	path  []int // body part numbers from the top, for error messages

	qpBuf   [80]byte      // one quoted-printable output line
	b64Buf  [78 * 64]byte // base64 output lines
	lineBuf []byte        // one decoded quoted-printable line
}

// entityCtx describes where an entity sits.
type entityCtx struct {
	top    bool // the top-level entity (AllowUTF8Header applies)
	inPart bool // a delimiter line follows the entity's content
	digest bool // a body part of multipart/digest: default message/rfc822
	frozen bool // inside multipart/signed: only line ends may change
	depth  int
}

// errorf returns an ErrMIME error naming the current part.
func (c *walker) errorf(format string, args ...any) error {
	where := "top-level entity"
	if len(c.path) > 0 {
		var sb strings.Builder
		sb.WriteString("part ")
		for i, p := range c.path {
			if i > 0 {
				sb.WriteByte('.')
			}
			sb.WriteString(strconv.Itoa(p))
		}
		where = sb.String()
	}
	return fmt.Errorf("%w: %s: %s", ErrMIME, where, fmt.Sprintf(format, args...))
}

// header is the parsed header of one entity. Offsets index the entity.
type header struct {
	fieldsEnd int // end of the last field line, its line end included
	bodyStart int // start of the body, after the empty line
	noBlank   bool
	lastNoEOL bool // the last field line has no line end (input ended)

	ct  string // unfolded Content-Type value, "" if absent
	cte []byte // Content-Transfer-Encoding value, trimmed; nil if absent

	cteStart, cteEnd int // the whole Content-Transfer-Encoding field
	cteName          []byte

	edits []fieldEdit // fields rewritten in 7 bits, in order
}

// fieldEdit replaces b[start:end], a field without its final line end,
// with field.
type fieldEdit struct {
	start, end int
	field      string
}

// nextLine returns the end of the line content starting at i and the start
// of the next line: a line ends at CRLF, LF or a bare CR. At the end of b
// without a line end, end == next == len(b).
func nextLine(b []byte, i int) (end, next int) {
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '\n':
			return j, j + 1
		case '\r':
			if j+1 < len(b) && b[j+1] == '\n' {
				return j, j + 2
			}
			return j, j + 1
		}
	}
	return len(b), len(b)
}

var contentPrefix = []byte("content-")

// parseHeader reads the header fields at the start of b, up to the first
// empty line or the end of b (RFC 5322 2.2, RFC 2045 3).
func (c *walker) parseHeader(b []byte, ec entityCtx) (header, error) {
	var h header
	var (
		cur      []byte // name of the current field, nil before the first
		curStart int
		curEnd   int // end of the current field's last line, line end excluded
		curIsCT  bool
		curIsCTE bool
		curIsCD  bool
		curUTF8  bool   // the current field has octets over 127 to encode
		cdBuf    []byte // unfolded Content-Disposition value
		ctBuf    []byte
		cteBuf   []byte
		haveCT   bool
		haveCTE  bool
		ctNew    string // Content-Type value as rewritten, if it was
	)
	finish := func(end int) error {
		if curIsCTE {
			h.cteEnd = end
		}
		if !curUTF8 {
			return nil
		}
		v := ctBuf
		if curIsCD {
			v = cdBuf
		}
		f, err := c.encodeParams(cur, v)
		if err != nil {
			return err
		}
		h.edits = append(h.edits, fieldEdit{start: curStart, end: curEnd, field: string(cur) + ": " + f})
		if curIsCT {
			ctNew = f
		}
		curUTF8 = false
		return nil
	}
	i := 0
	for {
		if i >= len(b) {
			if err := finish(i); err != nil {
				return h, err
			}
			h.fieldsEnd, h.bodyStart, h.noBlank = i, i, true
			break
		}
		if i > c.maxHeader {
			return h, c.errorf("header longer than %d octets", c.maxHeader)
		}
		end, next := nextLine(b, i)
		if end == i {
			if err := finish(i); err != nil {
				return h, err
			}
			h.fieldsEnd, h.bodyStart = i, next
			break
		}
		if next == end+1 && b[end] == '\r' {
			// RFC 5322 2.2: CR only in CRLF. Readers split such a line
			// differently (a new field, or one value), so refuse it.
			return h, c.errorf("bare CR in header")
		}
		line := b[i:end]
		if len(line) > maxLine {
			// RFC 5322 2.1.1: a header line cannot be refolded without
			// changing the field.
			return h, c.errorf("header line longer than %d octets", maxLine)
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur == nil {
				return h, c.errorf("header starts with a continuation line")
			}
		} else {
			if err := finish(i); err != nil {
				return h, err
			}
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 {
				return h, c.errorf("malformed header line: no field name before a colon")
			}
			for _, ch := range line[:colon] {
				// RFC 5322 3.6.8: ftext is %d33-57 / %d59-126.
				if ch < 33 || ch > 126 {
					return h, c.errorf("malformed header field name")
				}
			}
			cur, curStart = line[:colon], i
			curIsCT = bytes.EqualFold(cur, []byte("Content-Type"))
			curIsCTE = bytes.EqualFold(cur, []byte("Content-Transfer-Encoding"))
			curIsCD = bytes.EqualFold(cur, []byte("Content-Disposition"))
			if curIsCD {
				cdBuf = cdBuf[:0]
			}
			if curIsCT {
				if haveCT {
					return h, c.errorf("more than one Content-Type field")
				}
				haveCT = true
			}
			if curIsCTE {
				if haveCTE {
					return h, c.errorf("more than one Content-Transfer-Encoding field")
				}
				haveCTE = true
				h.cteStart, h.cteName = curStart, cur
			}
			line = line[colon+1:]
		}
		for _, ch := range line {
			if ch == 0 {
				return h, c.errorf("NUL in header field %q", clip(cur))
			}
			// RFC 8551 3.1.1, RFC 6376 5.3: the signed entity is 7-bit,
			// and a field cannot be re-encoded without changing it, except
			// the parameters of Content-Type and Content-Disposition
			// (RFC 2231), and not inside multipart/signed.
			if ch >= 0x80 {
				switch {
				case (curIsCT || curIsCD) && c.utf8Params && !ec.frozen:
					curUTF8 = true
				case !ec.top || !c.utf8Top || hasPrefixFold(cur, contentPrefix):
					return h, c.errorf("8-bit octet in header field %q (header fields must be 7-bit, RFC 8551 3.1.1)", clip(cur))
				}
			}
		}
		curEnd = end
		switch {
		case curIsCT:
			ctBuf = append(ctBuf, line...)
		case curIsCTE:
			cteBuf = append(cteBuf, line...)
		case curIsCD:
			cdBuf = append(cdBuf, line...)
		}
		if next == end {
			h.lastNoEOL = true
		}
		i = next
	}
	h.ct = string(ctBuf)
	if ctNew != "" {
		h.ct = ctNew
	}
	if haveCTE {
		h.cte = bytes.Trim(cteBuf, " \t")
		if h.cte == nil {
			h.cte = []byte{}
		}
	}
	return h, nil
}

func hasPrefixFold(s, prefix []byte) bool {
	return len(s) >= len(prefix) && bytes.EqualFold(s[:len(prefix)], prefix)
}

// clip shortens a field name quoted in an error. Errors quote field names
// (which passed the ftext check), never field values or body lines: error
// texts reach logs and reports, and message content must not.
func clip(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// Content-Transfer-Encoding values (RFC 2045 6.1).
type encoding int

const (
	enc7bit encoding = iota
	enc8bit
	encBinary
	encQP
	encBase64
)

func (c *walker) parseCTE(v []byte) (encoding, error) {
	switch {
	case v == nil, bytes.EqualFold(v, []byte("7bit")):
		return enc7bit, nil // RFC 2045 6.1: the default is 7bit
	case bytes.EqualFold(v, []byte("8bit")):
		return enc8bit, nil
	case bytes.EqualFold(v, []byte("binary")):
		return encBinary, nil
	case bytes.EqualFold(v, []byte("quoted-printable")):
		return encQP, nil
	case bytes.EqualFold(v, []byte("base64")):
		return encBase64, nil
	}
	return 0, c.errorf("unknown Content-Transfer-Encoding (RFC 2045 6.1 defines 7bit, 8bit, binary, quoted-printable, base64)")
}

// encodeParams returns the value v of field name (Content-Type or
// Content-Disposition) with its UTF-8 parameter values as RFC 2231
// extended parameters: mime.FormatMediaType writes any value outside
// US-ASCII as an extended parameter: name*, the charset utf-8, an empty
// language and %XX escapes (RFC 2231 4).
func (c *walker) encodeParams(name, v []byte) (string, error) {
	if !utf8.Valid(v) {
		return "", c.errorf("header field %q is not UTF-8", clip(name))
	}
	mt, params, err := mime.ParseMediaType(string(v))
	if err != nil {
		// Raw octets outside a quoted value, say: no parse, no rewrite.
		return "", c.errorf("8-bit octets in header field %q that do not parse as parameters: %v", clip(name), err)
	}
	f := mime.FormatMediaType(mt, params)
	if f == "" || len(name)+2+len(f) > maxLine {
		return "", c.errorf("header field %q cannot be written in 7 bits within %d octets", clip(name), maxLine)
	}
	return f, nil
}

// writeFields writes b[from:to], header fields, with the rewritten fields
// in place of the originals.
func (c *walker) writeFields(b []byte, h *header, from, to int) {
	for _, e := range h.edits {
		if e.end <= from || e.start >= to {
			continue
		}
		writeCanon(c.w, b[from:e.start])
		c.w.WriteString(e.field)
		from = e.end
	}
	writeCanon(c.w, b[from:to])
}

// writeHeader writes the header with Content-Transfer-Encoding set to cte,
// or unchanged if cte is empty, then the empty line.
func (c *walker) writeHeader(b []byte, h *header, cte string) {
	if cte == "" {
		c.writeFields(b, h, 0, h.fieldsEnd)
	} else if h.cte != nil {
		c.writeFields(b, h, 0, h.cteStart)
		c.w.Write(h.cteName)
		c.w.WriteString(": ")
		c.w.WriteString(cte)
		c.w.WriteString("\r\n")
		c.writeFields(b, h, h.cteEnd, h.fieldsEnd)
	} else {
		c.writeFields(b, h, 0, h.fieldsEnd)
		if h.lastNoEOL {
			c.w.WriteString("\r\n")
		}
		c.w.WriteString("Content-Transfer-Encoding: ")
		c.w.WriteString(cte)
		c.w.WriteString("\r\n")
		c.w.WriteString("\r\n")
		return
	}
	if h.lastNoEOL && (cte == "" || h.cteEnd < h.fieldsEnd) {
		c.w.WriteString("\r\n")
	}
	if h.fieldsEnd > 0 || !h.noBlank {
		c.w.WriteString("\r\n")
	}
}

// entity normalises one entity: the whole input, a body part, or an
// enclosed message.
func (c *walker) entity(b []byte, ec entityCtx) error {
	c.parts++
	if c.parts > c.maxParts {
		return c.errorf("more than %d parts", c.maxParts)
	}
	if ec.depth > c.maxDepth {
		return c.errorf("nesting deeper than %d levels", c.maxDepth)
	}
	h, err := c.parseHeader(b, ec)
	if err != nil {
		return err
	}
	body := b[h.bodyStart:]
	enc, err := c.parseCTE(h.cte)
	if err != nil {
		return err
	}

	media := "text/plain" // RFC 2045 5.2
	if ec.digest {
		media = "message/rfc822" // RFC 2046 5.1.5
	}
	var params map[string]string
	if h.ct != "" {
		mt, p, err := mime.ParseMediaType(h.ct)
		if err != nil && !(errors.Is(err, mime.ErrInvalidMediaParameter) && mt != "" && !strings.HasPrefix(mt, "multipart/")) {
			return c.errorf("invalid Content-Type: %v", err)
		}
		if !strings.Contains(mt, "/") {
			return c.errorf("invalid Content-Type: no subtype")
		}
		media, params = mt, p
	}

	switch {
	case strings.HasPrefix(media, "multipart/"):
		return c.multipart(b, &h, body, media, params, enc, ec)
	case media == "message/rfc822" && enc != encQP && enc != encBase64:
		// RFC 2046 5.2.1: no encoding other than 7bit, 8bit or binary is
		// permitted, so walk into the message rather than encode it.
		cte := ""
		if enc != enc7bit {
			if ec.frozen {
				return c.errorf("message/rfc822 labelled %s inside multipart/signed: relabelling would break the signature", h.cte)
			}
			cte = "7bit"
		}
		c.writeHeader(b, &h, cte)
		inner := ec
		inner.top, inner.digest = false, false
		inner.depth++
		return c.entity(body, inner)
	case media == "message/partial" || media == "message/external-body":
		// RFC 2046 5.2.2.1, 5.2.3.1: 7bit only.
		if s := scan(body); !s.clean() || enc == encQP || enc == encBase64 {
			return c.errorf("%s must be 7bit (RFC 2046 5.2.2-5.2.3)", media)
		}
		cte := ""
		if enc != enc7bit {
			if ec.frozen {
				return c.errorf("%s labelled %s inside multipart/signed: relabelling would break the signature", media, h.cte)
			}
			cte = "7bit"
		}
		c.writeHeader(b, &h, cte)
		writeCanon(c.w, body)
		return nil
	}
	// RFC 2046 5.2.4: other message subtypes are application/octet-stream.
	return c.leaf(b, &h, body, strings.HasPrefix(media, "text/"), enc, ec)
}

// leaf normalises a discrete body (RFC 8551 3.1.2-3.1.3).
func (c *walker) leaf(b []byte, h *header, body []byte, text bool, enc encoding, ec entityCtx) error {
	frozenErr := func(what string) error {
		return c.errorf("part inside multipart/signed would need %s, which would break the signature", what)
	}
	switch enc {
	case encBase64:
		s := scan(body)
		if s.eight || s.nul {
			return c.errorf("octet outside base64 alphabet in a base64 part")
		}
		if !s.long {
			c.writeHeader(b, h, "")
			writeScanned(c.w, body, s)
			return nil
		}
		if ec.frozen {
			return frozenErr("its base64 lines shortened")
		}
		c.writeHeader(b, h, "")
		if err := c.rewrapBase64(body, !ec.inPart); err != nil {
			return c.errorf("base64 part: %v", err)
		}
		return nil
	case encQP:
		s := scan(body)
		if s.clean() {
			c.writeHeader(b, h, "")
			writeScanned(c.w, body, s)
			return nil
		}
		if ec.frozen {
			return frozenErr("quoted-printable re-encoding")
		}
		// RFC 2045 6.7: raw 8-bit octets and long lines are not valid
		// quoted-printable; decode leniently and encode again.
		c.writeHeader(b, h, "")
		c.reencodeQP(body)
		return nil
	}

	s := scan(body)
	if s.clean() && (text || enc != encBinary || !s.bare) {
		// Clean already: at most the label changes (RFC 2045 2.7).
		cte := ""
		if enc != enc7bit {
			if ec.frozen {
				return frozenErr("relabelling as 7bit")
			}
			cte = "7bit"
		}
		c.writeHeader(b, h, cte)
		writeScanned(c.w, body, s)
		return nil
	}
	if ec.frozen {
		return frozenErr("re-encoding")
	}
	if text {
		// RFC 8551 3.1.2, RFC 2045 6.7: text is line-oriented; encode its
		// lines, each ending in CRLF (RFC 2049 4).
		c.writeHeader(b, h, "quoted-printable")
		c.encodeQP(body)
		return nil
	}
	// RFC 8551 3.1.2, RFC 2045 6.8: base64 of the exact octets.
	c.writeHeader(b, h, "base64")
	c.encodeBase64(body, !ec.inPart)
	return nil
}

// multipart walks a multipart body (RFC 2046 5.1.1).
func (c *walker) multipart(b []byte, h *header, body []byte, media string, params map[string]string, enc encoding, ec entityCtx) error {
	// RFC 2045 6.4: a multipart is never encoded.
	if enc == encQP || enc == encBase64 {
		return c.errorf("%s with Content-Transfer-Encoding %s (RFC 2045 6.4 allows only 7bit, 8bit, binary)", media, h.cte)
	}
	boundary, ok := params["boundary"]
	if !ok {
		return c.errorf("%s without boundary parameter (RFC 2046 5.1.1)", media)
	}
	if err := checkBoundary(boundary); err != "" {
		return c.errorf("%s boundary: %s (RFC 2046 5.1.1)", media, err)
	}
	if ec.depth+1 > c.maxDepth {
		return c.errorf("nesting deeper than %d levels", c.maxDepth)
	}
	cte := ""
	if enc != enc7bit {
		// The walked content is all 7-bit. The multipart/signed header
		// is outside what its signature covers, so it may be relabelled.
		if ec.frozen {
			return c.errorf("%s labelled %s inside multipart/signed: relabelling would break the signature", media, h.cte)
		}
		cte = "7bit"
	}
	dash := make([]byte, 2+len(boundary))
	copy(dash, "--")
	copy(dash[2:], boundary)

	// Preamble: up to the first delimiter line.
	d, found := findDelim(body, 0, dash)
	if !found {
		return c.errorf("%s: no delimiter line", media)
	}
	if d.close {
		// RFC 2046 5.1.1: at least one body part. Readers disagree on
		// what follows such a close delimiter (Go's mime/multipart reads
		// on), so refuse rather than guess.
		return c.errorf("%s: close delimiter before the first body part", media)
	}
	c.writeHeader(b, h, cte)
	if d.at > 0 {
		pre := body[:d.eol]
		if s := scan(pre); s.clean() {
			writeCanon(c.w, pre)
			c.w.WriteString("\r\n")
		} else if ec.frozen {
			return c.errorf("%s preamble is not 7-bit inside multipart/signed", media)
		}
		// else: dropped, RFC 2046 5.1.1 (preamble to be ignored)
	}
	inner := entityCtx{
		inPart: true,
		digest: media == "multipart/digest",
		frozen: ec.frozen || media == "multipart/signed",
		depth:  ec.depth + 1,
	}
	n := 0
	for !d.close {
		c.w.Write(body[d.at:d.lineEnd]) // the delimiter, padding kept
		if d.next == d.lineEnd {
			return c.errorf("%s: missing close delimiter", media)
		}
		c.w.WriteString("\r\n")
		start := d.next
		nd, found := findDelim(body, start, dash)
		if !found {
			return c.errorf("%s: missing close delimiter", media)
		}
		n++
		c.path = append(c.path, n)
		if err := c.entity(body[start:nd.eol], inner); err != nil {
			return err
		}
		c.path = c.path[:len(c.path)-1]
		c.w.WriteString("\r\n")
		d = nd
	}
	c.w.Write(body[d.at:d.lineEnd])
	if d.next > d.lineEnd {
		c.w.WriteString("\r\n")
	}
	if epi := body[d.next:]; len(epi) > 0 {
		if s := scan(epi); s.clean() {
			writeCanon(c.w, epi)
		} else if ec.frozen {
			return c.errorf("%s epilogue is not 7-bit inside multipart/signed", media)
		}
		// else: dropped, RFC 2046 5.1.1 (epilogue to be ignored)
	}
	return nil
}

// checkBoundary returns why a boundary is unusable, or "". RFC 2046 5.1.1:
// 1 to 70 characters, not ending in a space. The character set is not
// enforced beyond printable US-ASCII: real mail strays from bchars, and any
// printable string delimits just as well.
func checkBoundary(s string) string {
	if len(s) == 0 || len(s) > 70 {
		return "must be 1 to 70 characters"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return "not printable US-ASCII"
		}
	}
	if s[len(s)-1] == ' ' {
		return "ends with a space"
	}
	return ""
}

// delim is a delimiter line found in a multipart body.
type delim struct {
	eol     int // start of the line end before it (the end of the content before)
	at      int // start of "--boundary"
	lineEnd int // end of the delimiter line, padding included, line end excluded
	next    int // start of the following line
	close   bool
}

// findDelim finds the next delimiter line at or after from: "--boundary"
// at the start of a line, optionally "--", then only linear white space up
// to the line end (RFC 2046 5.1.1, transport-padding).
func findDelim(body []byte, from int, dash []byte) (delim, bool) {
	pos := from
	for pos < len(body) {
		k := bytes.Index(body[pos:], dash)
		if k < 0 {
			return delim{}, false
		}
		at := pos + k
		pos = at + 1
		if at > 0 && body[at-1] != '\n' && body[at-1] != '\r' {
			continue
		}
		j := at + len(dash)
		isClose := false
		if j+1 < len(body) && body[j] == '-' && body[j+1] == '-' {
			isClose = true
			j += 2
		}
		for j < len(body) && (body[j] == ' ' || body[j] == '\t') {
			j++
		}
		lineEnd := j
		var next int
		switch {
		case j == len(body):
			next = j
		case body[j] == '\n':
			next = j + 1
		case body[j] == '\r':
			next = j + 1
			if j+1 < len(body) && body[j+1] == '\n' {
				next = j + 2
			}
		default:
			continue
		}
		eol := at
		if at > from {
			eol = at - 1
			if body[eol] == '\n' && eol > from && body[eol-1] == '\r' {
				eol--
			}
		}
		return delim{eol: eol, at: at, lineEnd: lineEnd, next: next, close: isClose}, true
	}
	return delim{}, false
}
