package smtpgw

import (
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/emersion/go-smtp"

	"github.com/kakuin/kakuin/signer"
	"github.com/kakuin/kakuin/smtpgw/relay"
)

// Causes of refusal found by the gateway itself. The reply table below
// turns them, the signer's and the relay's errors into SMTP replies; the
// full cause goes to the log, the peer sees a short reason.
var (
	// ErrNotAuthorised: the client is neither in a client network nor
	// authenticated (by AUTH or a client certificate).
	ErrNotAuthorised = errors.New("smtpgw: client not authorised")
	// ErrSenderSuffix: the sender domain is not under an allowed suffix.
	ErrSenderSuffix = errors.New("smtpgw: sender domain outside the allowed suffixes")
	// ErrSenderClient: the sender domain is not allowed for this client.
	ErrSenderClient = errors.New("smtpgw: sender domain not allowed for this client")
	// ErrHeader: the header is malformed (no or several From fields or
	// mailboxes, a bad Sender, unparsable fields).
	ErrHeader = errors.New("smtpgw: malformed header")
	// ErrNeedSMTPUTF8: a non-ASCII envelope address in a transaction
	// that did not ask for SMTPUTF8 (RFC 6531 3.4: such an address is
	// allowed only after MAIL FROM with the SMTPUTF8 parameter).
	ErrNeedSMTPUTF8 = errors.New("smtpgw: non-ASCII address without SMTPUTF8")
	// ErrHeader8bit: non-ASCII octets in the header section of a
	// transaction without SMTPUTF8 (RFC 6531 3.4, RFC 6532).
	ErrHeader8bit = errors.New("smtpgw: non-ASCII header without SMTPUTF8")
	// ErrTooBig: the message exceeds the size limit.
	ErrTooBig = errors.New("smtpgw: message too big")
	// ErrHeaderTooBig: the header section exceeds its limit.
	ErrHeaderTooBig = errors.New("smtpgw: header too big")
	// ErrLineTooLong: a line exceeds the line length limit.
	ErrLineTooLong = errors.New("smtpgw: line too long")
	// ErrBareLineEnd: a CR or LF that is not part of CRLF, the raw
	// material of SMTP smuggling.
	ErrBareLineEnd = errors.New("smtpgw: bare CR or LF")
	// ErrTooManyRecipients: the recipient limit is reached.
	ErrTooManyRecipients = errors.New("smtpgw: too many recipients")
	// ErrRate: the client exceeded its message rate.
	ErrRate = errors.New("smtpgw: message rate exceeded")
	// ErrShutdown: the gateway is stopping.
	ErrShutdown = errors.New("smtpgw: shutting down")
	// ErrTooManyCommands: too many commands without a transaction.
	ErrTooManyCommands = errors.New("smtpgw: too many commands")
	// ErrInternal: spooling or another local step failed.
	ErrInternal = errors.New("smtpgw: internal error")
	// errAborted: the client reset or left before the end of DATA. It is
	// logged, never sent.
	errAborted = errors.New("smtpgw: transaction aborted by the client")
)

// reply is an entry of the table: the SMTP reply and the metrics label.
type reply struct {
	code   int
	enh    smtp.EnhancedCode
	text   string
	reason string
}

// replies maps each cause to what the client sees (RFC 5321 4.2, enhanced
// codes RFC 3463). Order matters only where causes overlap.
var replies = []struct {
	err error
	r   reply
}{
	{ErrNotAuthorised, reply{530, smtp.EnhancedCode{5, 7, 0}, "Authentication required", "not_authorised"}}, // RFC 4954 6
	{ErrSenderSuffix, reply{550, smtp.EnhancedCode{5, 7, 1}, "Sender address rejected: domain is not under an allowed suffix", "sender_suffix"}},
	{ErrSenderClient, reply{550, smtp.EnhancedCode{5, 7, 1}, "Sender address rejected: domain not allowed for this client", "sender_client"}},
	// RFC 6531 3.5 and 4 (RFC 5248): X.6.7, non-ASCII addresses not
	// permitted; 553 is "mailbox name not allowed" (RFC 5321 4.2.3).
	{ErrNeedSMTPUTF8, reply{553, smtp.EnhancedCode{5, 6, 7}, "Non-ASCII address needs the SMTPUTF8 parameter", "smtputf8_required"}},
	// RFC 6531 4 (RFC 5248): X.6.9, a UTF-8 header message cannot be
	// transferred; found after the final dot, so 554 (RFC 5321 4.2.3).
	{ErrHeader8bit, reply{554, smtp.EnhancedCode{5, 6, 9}, "Non-ASCII header fields need SMTPUTF8", "header_8bit"}},
	{ErrHeader, reply{554, smtp.EnhancedCode{5, 6, 0}, "Malformed header", "header"}},
	{ErrTooBig, reply{552, smtp.EnhancedCode{5, 3, 4}, "Message too big", "size"}},
	{ErrHeaderTooBig, reply{552, smtp.EnhancedCode{5, 3, 4}, "Header too big", "header_size"}},
	{ErrLineTooLong, reply{554, smtp.EnhancedCode{5, 6, 0}, "Line too long", "line_length"}},
	{ErrBareLineEnd, reply{554, smtp.EnhancedCode{5, 6, 0}, "Bare CR or LF in message; use CRLF", "bare_line_end"}}, // RFC 5321 2.3.8
	{ErrTooManyRecipients, reply{452, smtp.EnhancedCode{4, 5, 3}, "Too many recipients", "recipients"}},             // RFC 5321 4.5.3.1.10
	{ErrRate, reply{451, smtp.EnhancedCode{4, 7, 1}, "Message rate exceeded, try again later", "rate"}},
	{ErrShutdown, reply{421, smtp.EnhancedCode{4, 3, 2}, "Shutting down, try again later", "shutdown"}},
	{ErrTooManyCommands, reply{421, smtp.EnhancedCode{4, 7, 0}, "Too many commands without a transaction", "commands"}},
	// The signer (fail closed, RULES M3: nothing is relayed unsigned).
	{signer.ErrMessage, reply{554, smtp.EnhancedCode{5, 6, 0}, "Malformed message", "signer_message"}},
	{signer.ErrSender, reply{550, smtp.EnhancedCode{5, 7, 1}, "Sender address rejected", "signer_sender"}},
	{signer.ErrNoCertificate, reply{550, smtp.EnhancedCode{5, 7, 1}, "No signing certificate for the sender", "no_certificate"}},
	{signer.ErrKey, reply{451, smtp.EnhancedCode{4, 3, 0}, "Signing temporarily unavailable", "signer_key"}},
	// The upstream.
	{relay.ErrConnect, reply{451, smtp.EnhancedCode{4, 4, 1}, "Upstream unavailable", "upstream_unavailable"}},
	{relay.ErrTimeout, reply{451, smtp.EnhancedCode{4, 4, 2}, "Upstream timed out", "upstream_timeout"}},
	{relay.ErrDropped, reply{451, smtp.EnhancedCode{4, 4, 2}, "Upstream connection lost", "upstream_dropped"}},
	{relay.ErrUnsupported, reply{553, smtp.EnhancedCode{5, 6, 7}, "Upstream does not support SMTPUTF8", "smtputf8"}}, // RFC 6531 3.4
	{relay.ErrStore, reply{451, smtp.EnhancedCode{4, 3, 0}, "Cannot store message", "upstream_store"}},
	{errAborted, reply{451, smtp.EnhancedCode{4, 3, 0}, "Aborted", "aborted"}},
	{ErrInternal, reply{451, smtp.EnhancedCode{4, 3, 0}, "Local error, try again later", "internal"}},
}

// reasons lists every reason label of messages_rejected_total, so that
// each series exists at 0 from the start: increase() over a series that
// appears at 1 misses that first rejection.
func reasons() []string {
	rs := []string{"upstream_5xx", "upstream_4xx", "client_timeout", "time_without_mail"}
	for _, e := range replies {
		if !slices.Contains(rs, e.r.reason) {
			rs = append(rs, e.r.reason)
		}
	}
	return rs
}

// toSMTP maps err to the reply the client sees and the metrics reason.
// An upstream's own reply passes through: 5xx keeps its code, enhanced
// code and text; 4xx becomes 451 4.4.0 with the upstream's text, like
// every other transient upstream failure. Anything unknown fails closed
// with 451 4.3.0.
func toSMTP(err error) (*smtp.SMTPError, string) {
	var up *upstreamReply
	if errors.As(err, &up) {
		se := up.err
		if se.Code >= 500 && se.Code < 600 {
			enh := se.EnhancedCode
			if enh == smtp.EnhancedCodeNotSet || enh == smtp.NoEnhancedCode {
				enh = smtp.EnhancedCode{5, 0, 0}
			}
			return &smtp.SMTPError{Code: se.Code, EnhancedCode: enh, Message: "Upstream: " + se.Message}, "upstream_5xx"
		}
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 0}, Message: fmt.Sprintf("Upstream deferred: %d %s", se.Code, se.Message)}, "upstream_4xx"
	}
	for _, e := range replies {
		if errors.Is(err, e.err) {
			return &smtp.SMTPError{Code: e.r.code, EnhancedCode: e.r.enh, Message: e.r.text}, e.r.reason
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Timeout"}, "client_timeout"
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error, try again later"}, "internal"
}

// upstreamReply marks an *smtp.SMTPError that came from the upstream, so
// that it is never confused with one of ours.
type upstreamReply struct{ err *smtp.SMTPError }

func (u *upstreamReply) Error() string { return "upstream replied: " + u.err.Error() }

// fromRelay wraps an upstream reply; other errors pass unchanged.
func fromRelay(err error) error {
	var se *smtp.SMTPError
	if err != nil && errors.As(err, &se) {
		return &upstreamReply{se}
	}
	return err
}
