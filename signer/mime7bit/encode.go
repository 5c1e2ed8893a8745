package mime7bit

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
)

// stats describes a stretch of content. The scan stops at the first fact
// that makes it dirty, so bare is only complete when clean() is true.
type stats struct {
	eight bool // an octet over 127
	nul   bool // a NUL (RFC 2045 2.7-2.8 forbid it in 7bit and 8bit data)
	long  bool // a line over 998 octets (RFC 5322 2.1.1, RFC 2045 2.7)
	bare  bool // a bare CR or LF
}

// clean reports whether the content may be sent as 7bit once its line ends
// are CRLF (RFC 2045 2.7).
func (s stats) clean() bool { return !s.eight && !s.nul && !s.long }

func scan(b []byte) (s stats) {
	lineStart := 0
	for i := 0; i < len(b); i++ {
		// Fast path: skip 8 octets at a time while none is a control
		// character up to CR or over 127 ("hasless" of Bit Twiddling
		// Hacks: a byte under 0x0E sets its top bit in v-0x0E..).
		for i+8 <= len(b) {
			v := binary.LittleEndian.Uint64(b[i:])
			if (v|(v-0x0E0E0E0E0E0E0E0E)&^v)&0x8080808080808080 != 0 {
				break
			}
			i += 8
		}
		if i >= len(b) {
			break
		}
		ch := b[i]
		if ch > '\r' && ch < 0x80 {
			continue
		}
		switch ch {
		case 0:
			s.nul = true
			return s
		case '\n':
			end := i
			if i > 0 && b[i-1] == '\r' {
				end--
			} else {
				s.bare = true
			}
			if end-lineStart > maxLine {
				s.long = true
				return s
			}
			lineStart = i + 1
		case '\r':
			if i+1 < len(b) && b[i+1] == '\n' {
				continue
			}
			s.bare = true
			if i-lineStart > maxLine {
				s.long = true
				return s
			}
			lineStart = i + 1
		default:
			if ch >= 0x80 {
				s.eight = true
				return s
			}
		}
	}
	if len(b)-lineStart > maxLine {
		s.long = true
	}
	return s
}

// writeScanned writes content that scan found clean, with CRLF line ends.
func writeScanned(w *bufio.Writer, b []byte, s stats) {
	if !s.bare {
		w.Write(b)
		return
	}
	writeCanon(w, b)
}

// writeCanon writes b with every line end (CRLF, bare LF, bare CR) as CRLF,
// in as few writes as the input allows.
func writeCanon(w *bufio.Writer, b []byte) {
	start := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\n':
			if i > 0 && b[i-1] == '\r' {
				continue
			}
		case '\r':
			if i+1 < len(b) && b[i+1] == '\n' {
				i++
				continue
			}
		default:
			continue
		}
		w.Write(b[start:i])
		w.WriteString("\r\n")
		start = i + 1
	}
	w.Write(b[start:])
}

const upperHex = "0123456789ABCDEF"

// qpMax is the longest quoted-printable line, soft line break included
// (RFC 2045 6.7 (5)).
const qpMax = 76

// qpPlain holds the octets written as themselves anywhere but at the
// start of a line: "!" to "~" except "=" (RFC 2045 6.7 (2)).
var qpPlain = func() (t [256]bool) {
	for ch := '!'; ch <= '~'; ch++ {
		t[ch] = ch != '='
	}
	return t
}()

// qpEncode reports whether line[j] must be written as =XX.
func qpEncode(line []byte, j int, lineStart bool) bool {
	ch := line[j]
	switch {
	case ch == ' ' || ch == '\t':
		// RFC 2045 6.7 (3): white space ending a line is encoded.
		return j == len(line)-1
	case ch < 33 || ch > 126 || ch == '=':
		return true // RFC 2045 6.7 (1)
	case !lineStart:
		return false
	case ch == '-':
		// RFC 2046 5.1.1: a soft line break could otherwise start a line
		// with "--boundary" found in the middle of a text line.
		return true
	case ch == '.':
		// RFC 2049 3 (8): a lone "." ends SMTP DATA on careless relays.
		return true
	case ch == 'F':
		// RFC 2049 3 (8): mbox writers turn "From " into ">From ".
		return bytes.HasPrefix(line[j:], []byte("From "))
	}
	return false
}

// qpLine writes one line of content (without its line end; a CR or LF in it
// is data) as quoted-printable, with soft line breaks so that no line is
// over 76 characters (RFC 2045 6.7 (5)).
func (c *walker) qpLine(line []byte) {
	buf := c.qpBuf[:]
	n := 0
	for j := 0; j < len(line); j++ {
		ch := line[j]
		var enc bool
		switch {
		case n > 0 && qpPlain[ch]:
		case ch >= 0x80:
			enc = true
		default:
			enc = qpEncode(line, j, n == 0)
		}
		width := 1
		if enc {
			width = 3
		}
		if n+width > qpMax-1 && !(j == len(line)-1 && n+width <= qpMax) {
			buf[n], buf[n+1], buf[n+2] = '=', '\r', '\n'
			c.w.Write(buf[:n+3])
			n = 0
			if enc = qpEncode(line, j, true); enc {
				width = 3
			}
		}
		if enc {
			buf[n], buf[n+1], buf[n+2] = '=', upperHex[ch>>4], upperHex[ch&0x0f]
			n += 3
		} else {
			buf[n] = ch
			n++
		}
	}
	c.w.Write(buf[:n])
}

// encodeQP writes line-oriented content as quoted-printable: each line end
// (CRLF, LF or bare CR) becomes a hard line break, CRLF (RFC 2045 6.7 (4),
// RFC 2049 4).
func (c *walker) encodeQP(body []byte) {
	for i := 0; i < len(body); {
		end, next := nextLine(body, i)
		c.qpLine(body[i:end])
		if next > end {
			c.w.WriteString("\r\n")
		}
		i = next
	}
}

// reencodeQP decodes quoted-printable content leniently (as RFC 2045 6.7
// recommends and Go's mime/quotedprintable does: raw 8-bit octets and an
// "=" not followed by two hex digits are taken literally) and encodes it
// again, one decoded line at a time, so that a CR or LF that was encoded
// as =0D or =0A stays data.
func (c *walker) reencodeQP(body []byte) {
	logical := c.lineBuf[:0]
	for i := 0; i < len(body); {
		end, next := nextLine(body, i)
		// RFC 2045 6.7 (3): trailing white space is not content.
		line := bytes.TrimRight(body[i:end], " \t")
		soft := len(line) > 0 && line[len(line)-1] == '='
		if soft {
			line = line[:len(line)-1]
		}
		for j := 0; j < len(line); j++ {
			ch := line[j]
			if ch == '=' && j+2 < len(line) {
				hi, ok1 := unhex(line[j+1])
				lo, ok2 := unhex(line[j+2])
				if ok1 && ok2 {
					logical = append(logical, hi<<4|lo)
					j += 2
					continue
				}
			}
			logical = append(logical, ch)
		}
		if !soft {
			c.qpLine(logical)
			logical = logical[:0]
			if next > end {
				c.w.WriteString("\r\n")
			}
		}
		i = next
	}
	if len(logical) > 0 {
		c.qpLine(logical)
	}
	c.lineBuf = logical[:0]
}

func unhex(ch byte) (byte, bool) {
	switch {
	case '0' <= ch && ch <= '9':
		return ch - '0', true
	case 'A' <= ch && ch <= 'F':
		return ch - 'A' + 10, true
	case 'a' <= ch && ch <= 'f':
		return ch - 'a' + 10, true
	}
	return 0, false
}

// b64Line is the number of octets base64-encoded per line: 76 characters
// (RFC 2045 6.8).
const b64Line = 57

// encodeBase64 writes b as base64 in lines of 76 characters, CRLF between
// them, and after the last one if trailing.
func (c *walker) encodeBase64(b []byte, trailing bool) {
	buf := c.b64Buf[:]
	n := 0
	for len(b) > 0 {
		k := min(b64Line, len(b))
		base64.StdEncoding.Encode(buf[n:], b[:k])
		n += base64.StdEncoding.EncodedLen(k)
		b = b[k:]
		if len(b) > 0 || trailing {
			buf[n], buf[n+1] = '\r', '\n'
			n += 2
		}
		if n > len(buf)-78 {
			c.w.Write(buf[:n])
			n = 0
		}
	}
	c.w.Write(buf[:n])
}

// b64Char holds the base64 alphabet and its pad (RFC 2045 6.8, table 1).
var b64Char = func() (t [256]bool) {
	for _, ch := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=" {
		t[ch] = true
	}
	return t
}()

// rewrapBase64 writes base64 content again in lines of 76 characters, the
// same characters in the same order (so the same octets decoded), without
// decoding it. Anything but the alphabet and white space is an error.
func (c *walker) rewrapBase64(body []byte, trailing bool) error {
	for _, ch := range body {
		if !b64Char[ch] && ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n' {
			return errors.New("invalid base64")
		}
	}
	buf := c.b64Buf[:]
	n, col := 0, 0
	wrote := false
	for _, ch := range body {
		if !b64Char[ch] {
			continue
		}
		if col == 76 {
			buf[n], buf[n+1] = '\r', '\n'
			n += 2
			col = 0
		}
		buf[n] = ch
		n++
		col++
		wrote = true
		if n > len(buf)-4 {
			c.w.Write(buf[:n])
			n = 0
		}
	}
	if wrote && trailing {
		buf[n], buf[n+1] = '\r', '\n'
		n += 2
	}
	c.w.Write(buf[:n])
	return nil
}
