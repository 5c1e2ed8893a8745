package header

import (
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"

	"golang.org/x/text/encoding/htmlindex"
)

// wordDecoder decodes RFC 2047 encoded-words in any charset the WHATWG
// encoding index knows: ISO-2022-JP, Shift_JIS and EUC-JP among them.
var wordDecoder = &mime.WordDecoder{CharsetReader: charsetReader}

func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	enc, err := htmlindex.Get(charset)
	if err != nil {
		return nil, fmt.Errorf("header: unknown charset %q", charset)
	}
	return enc.NewDecoder().Reader(input), nil
}

var addrParser = mail.AddressParser{WordDecoder: wordDecoder}

// ParseAddressList parses an address-list field value (RFC 5322 3.4) with
// encoded-words in any known charset.
func ParseAddressList(v string) ([]*mail.Address, error) {
	return addrParser.ParseList(v)
}

// DecodeText decodes the encoded-words of an unstructured field value
// (RFC 2047); on error it returns v unchanged.
func DecodeText(v string) string {
	d, err := wordDecoder.DecodeHeader(v)
	if err != nil {
		return v
	}
	return d
}

// SameAddress compares two addr-specs: the local part exactly, the
// domain case-insensitively (RFC 5321 2.4).
func SameAddress(a, b string) bool {
	i, j := strings.LastIndexByte(a, '@'), strings.LastIndexByte(b, '@')
	if i < 0 || j < 0 {
		return a == b
	}
	return a[:i] == b[:j] && strings.EqualFold(a[i+1:], b[j+1:])
}
