package rfc5322

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"

	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/japanese"
)

// Singletons are the fields a message may carry at most once: the RFC 5322
// 3.6 table (orig-date, from, sender, reply-to, to, cc, bcc, message-id,
// in-reply-to, references, subject) and the MIME header fields of RFC 2045
// (MIME-Version 4, Content-Type 5, Content-Transfer-Encoding 6).
var Singletons = []string{
	"Date", "From", "Sender", "Reply-To", "To", "Cc", "Bcc",
	"Message-ID", "In-Reply-To", "References", "Subject",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
}

// CheckSingletons returns an error wrapping ErrDuplicate, naming the field,
// when a field of Singletons occurs more than once. Duplicated originator
// fields are how author spoofing slips past DKIM: a verifier and a mail
// reader may pick different copies.
func CheckSingletons(h Header) error {
	for _, name := range Singletons {
		if n := h.Count(name); n > 1 {
			return fmt.Errorf("%w: %d %s fields", ErrDuplicate, n, name)
		}
	}
	return nil
}

// Duplicated returns the names of Singletons (as spelled there, in that
// order) that occur more than once in h: every one CheckSingletons would
// refuse, for a report that names them all.
func Duplicated(h Header) []string {
	var dup []string
	for _, name := range Singletons {
		if h.Count(name) > 1 {
			dup = append(dup, name)
		}
	}
	return dup
}

// ErrCharset: an RFC 2047 encoded word names a charset this package does
// not know. ParseAddressList and ParseMailboxList wrap it (with
// ErrAddress); ParseMailbox and DecodeText never return it.
var ErrCharset = errors.New("rfc5322: unknown charset")

// charsetReader decodes the charsets of RFC 2047 encoded words: the
// Japanese ones under every name mailers use (ISO-2022-JP, Shift_JIS with
// cp932, EUC-JP), then whatever the WHATWG encoding index knows. Any other
// charset is an error wrapping ErrCharset. It is the one charset table of
// kakuin's header code.
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(charset) {
	case "iso-2022-jp", "csiso2022jp":
		return japanese.ISO2022JP.NewDecoder().Reader(input), nil
	case "shift_jis", "shift-jis", "sjis", "cp932", "windows-31j", "ms_kanji", "csshiftjis":
		return japanese.ShiftJIS.NewDecoder().Reader(input), nil
	case "euc-jp", "cseucpkdfmtjapanese", "x-euc-jp":
		return japanese.EUCJP.NewDecoder().Reader(input), nil
	}
	if enc, err := htmlindex.Get(charset); err == nil {
		return enc.NewDecoder().Reader(input), nil
	}
	return nil, fmt.Errorf("%w %q", ErrCharset, charset)
}

// wordDecoder decodes RFC 2047 encoded words; unknown charsets are errors.
var wordDecoder = &mime.WordDecoder{CharsetReader: charsetReader}

// parseList parses an address list with charsetReader. With pass, an
// unknown charset is passed through undecoded (for ParseMailbox, where
// only the addr-spec decides anything, never the display name); without,
// it is an error wrapping ErrCharset (net/mail keeps only the error's
// text, so it is noted on the way).
func parseList(value string, pass bool) ([]*mail.Address, error) {
	var unknown error
	p := mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: func(charset string, input io.Reader) (io.Reader, error) {
		r, err := charsetReader(charset, input)
		if err != nil {
			if pass {
				return input, nil
			}
			unknown = err
		}
		return r, err
	}}}
	list, err := p.ParseList(value)
	if unknown != nil {
		return nil, fmt.Errorf("%w: %w", ErrAddress, unknown)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAddress, err)
	}
	return list, nil
}

// ParseAddressList parses the body of an address-list field (To, Cc,
// Reply-To, RFC 5322 3.4), groups included (their members are listed, the
// group names dropped), and decodes RFC 2047 display names (RFC 2047 5).
// An encoded word in a charset charsetReader does not know is an error
// wrapping ErrCharset: a display name that cannot be read cannot be
// checked. Errors wrap ErrAddress.
func ParseAddressList(value string) ([]*mail.Address, error) {
	return parseList(value, false)
}

// ParseMailboxList parses the body of a mailbox-list field (From, RFC 5322
// 3.6.2) as ParseAddressList does, but refuses group syntax (RFC 5322
// 3.4; RFC 6854's groups in From are not taken: no one author can be
// named from a group). An empty list is no error: the caller counts. Its
// group rule is ParseMailbox's (so From's and Sender's), its charset rule
// ParseAddressList's. Errors wrap ErrAddress.
func ParseMailboxList(value string) ([]*mail.Address, error) {
	return parseMailboxes(value, false)
}

func parseMailboxes(value string, pass bool) ([]*mail.Address, error) {
	if hasGroup(value) {
		// RFC 5322 3.6.2: From and Sender hold mailboxes, not groups.
		return nil, fmt.Errorf("%w: group syntax", ErrAddress)
	}
	return parseList(value, pass)
}

// ParseMailbox parses the body of a field that must hold exactly one
// mailbox (RFC 5322 3.4) and returns its addr-spec (local@domain), never
// the display name: `"ministry@mhlw.go.jp" <evil@example.com>` gives
// evil@example.com. Groups, empty lists and lists of several mailboxes are
// errors wrapping ErrAddress. A display name in an unknown charset is
// passed through undecoded, not refused.
func ParseMailbox(value string) (string, error) {
	list, err := parseMailboxes(value, true)
	if err != nil {
		return "", err
	}
	if len(list) != 1 {
		return "", fmt.Errorf("%w: %d mailboxes, want exactly one", ErrAddress, len(list))
	}
	return list[0].Address, nil
}

// DecodeText decodes the RFC 2047 encoded words of an unstructured field
// body (Subject, RFC 2047 5(1)) with charsetReader. If it cannot (a
// malformed word, an unknown charset) it returns value unchanged.
func DecodeText(value string) string {
	d, err := wordDecoder.DecodeHeader(value)
	if err != nil {
		return value
	}
	return d
}

// SameAddress reports whether two addr-specs name the same mailbox: the
// local parts equal exactly (RFC 5321 2.4: only the destination host may
// interpret them), the domains equal case-insensitively (RFC 5321 2.4,
// RFC 1035 2.3.3). Without an @ the two must be equal.
func SameAddress(a, b string) bool {
	i, j := strings.LastIndexByte(a, '@'), strings.LastIndexByte(b, '@')
	if i < 0 || j < 0 {
		return a == b
	}
	return a[:i] == b[:j] && strings.EqualFold(a[i+1:], b[j+1:])
}

// From returns the addr-spec of the single mailbox of the single From
// field. RFC 5322 3.6.2 allows several mailboxes (with a Sender); kakuin
// signs for one author only, so anything but exactly one From field with
// exactly one mailbox is an error wrapping ErrAddress.
func From(h Header) (string, error) {
	fs := h.Get("From")
	if len(fs) != 1 {
		return "", fmt.Errorf("%w: %d From fields, want exactly one", ErrAddress, len(fs))
	}
	a, err := ParseMailbox(fs[0].Value)
	if err != nil {
		return "", fmt.Errorf("From: %w", err)
	}
	return a, nil
}

// Sender returns the addr-spec of the Sender field, or "" when there is
// none. More than one Sender field, or one that is not exactly one mailbox
// (RFC 5322 3.6.2), is an error wrapping ErrAddress.
func Sender(h Header) (string, error) {
	fs := h.Get("Sender")
	switch len(fs) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", fmt.Errorf("%w: %d Sender fields", ErrAddress, len(fs))
	}
	a, err := ParseMailbox(fs[0].Value)
	if err != nil {
		return "", fmt.Errorf("Sender: %w", err)
	}
	return a, nil
}

// hasGroup reports whether an address list uses group syntax (RFC 5322
// 3.4: display-name ":" [group-list] ";"): a colon outside quoted strings,
// comments, domain literals and angle brackets.
func hasGroup(s string) bool {
	depth, angle := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++ // quoted-pair
		case depth > 0:
			switch c {
			case '(':
				depth++
			case ')':
				depth--
			}
		case c == '(':
			depth = 1
		case c == '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
			}
		case c == '[':
			for i++; i < len(s) && s[i] != ']'; i++ {
			}
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case c == ':' && !angle:
			return true
		}
	}
	return false
}
