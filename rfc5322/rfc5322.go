// Package rfc5322 splits an Internet message into its header fields and
// body without losing their order or raw form (RFC 5322 2.2, 3.6), so that
// the signer can move Content-* fields into the signed entity, DKIM can see
// the exact bytes, and the gateway and the verifier can check the
// originator fields: exactly one From with exactly one mailbox, no
// duplicated singleton field (RFC 5322 3.6 table).
package rfc5322
