package rfc5322

import (
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

// addressParser decodes RFC 2047 display names, including the Japanese
// charsets net/mail does not know (ISO-2022-JP, Shift_JIS, EUC-JP).
var addressParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: charsetReader}}

// charsetReader decodes the charsets of RFC 2047 encoded words. A charset
// it does not know is passed through undecoded rather than refused: only
// the addr-spec decides anything, never the display name.
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
	return input, nil
}

// ParseMailbox parses the body of a field that must hold exactly one
// mailbox (RFC 5322 3.4) and returns its addr-spec (local@domain), never
// the display name: `"ministry@mhlw.go.jp" <evil@example.com>` gives
// evil@example.com. Groups, empty lists and lists of several mailboxes are
// errors wrapping ErrAddress.
func ParseMailbox(value string) (string, error) {
	if hasGroup(value) {
		// RFC 5322 3.6.2: From and Sender hold mailboxes, not groups.
		return "", fmt.Errorf("%w: group syntax", ErrAddress)
	}
	list, err := addressParser.ParseList(value)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrAddress, err)
	}
	if len(list) != 1 {
		return "", fmt.Errorf("%w: %d mailboxes, want exactly one", ErrAddress, len(list))
	}
	return list[0].Address, nil
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
