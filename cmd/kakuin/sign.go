package main

import "strings"

// Exit statuses of kakuin's commands (documented in README.md and in
// `kakuin sign --help`).
const (
	// exitOK: done.
	exitOK = 0
	// exitRefused: the message was refused (malformed, a duplicated
	// singleton field, a sender outside the allowed suffixes, no
	// certificate under the reject policy). Resending it will not help.
	exitRefused = 1
	// exitUsage: bad flags or configuration.
	exitUsage = 2
	// exitTemp: a key, certificate or the issuing CA could not be used, or
	// another failure that may pass (I/O). Retry once it is fixed.
	exitTemp = 3
)

// oneLine renders err on a single line: the reason kakuin prints on
// stderr must be one line, whatever the cause wraps.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.NewReplacer("\r", " ", "\n", " ").Replace(err.Error())), " ")
}
