package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kakuin/kakuin/signer"
)

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

func init() {
	register("sign", "sign one message (stdin to stdout) as the gateway would", runSign)
}

func runSign(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kakuin sign", flag.ContinueOnError)
	verbose := fs.Bool("v", false, "after signing, print what was applied (From, S/MIME, DKIM signatures) on stderr")
	const intro = "usage: kakuin sign [-v] < message.eml > signed.eml\n\n" +
		"Signs one message as the gateway would: checks the header (one From under the\n" +
		"allowed suffixes, no duplicated single-instance field), makes the content 7-bit,\n" +
		"wraps it in S/MIME multipart/signed, then adds rsa-sha256 and ed25519-sha256 DKIM\n" +
		"signatures. On refusal nothing is written to stdout and one line to stderr.\n\n" +
		"exit status: 0 signed, 1 message refused, 2 usage or configuration error,\n" +
		"3 key, certificate or issuing CA unusable, or another failure that may pass."
	if code, done := parseFlags(fs, args, intro, &signConfig{}, stdout, stderr, exitUsage); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kakuin sign: unexpected argument %q: the message is read from stdin\n", fs.Arg(0))
		return exitUsage
	}
	cfg, err := loadSignConfig()
	if err != nil {
		fmt.Fprintf(stderr, "kakuin sign: %s\n", oneLine(err))
		return exitUsage
	}
	opts, closer, err := cfg.signerOptions()
	if err != nil {
		fmt.Fprintf(stderr, "kakuin sign: %s\n", oneLine(err))
		if errors.Is(err, errConfig) {
			return exitUsage
		}
		return exitTemp
	}
	defer closer.Close()
	s, err := signer.New(opts)
	if err != nil {
		fmt.Fprintf(stderr, "kakuin sign: %s\n", oneLine(err))
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The output is held until signing succeeded: a refused message
	// leaves stdout empty.
	var out bytes.Buffer
	res, err := s.Sign(ctx, &out, stdin)
	if err != nil {
		if errors.Is(err, signer.ErrMessage) || errors.Is(err, signer.ErrSender) || errors.Is(err, signer.ErrNoCertificate) {
			fmt.Fprintf(stderr, "kakuin sign: refused: %s\n", oneLine(err))
			return exitRefused
		}
		fmt.Fprintf(stderr, "kakuin sign: failed: %s\n", oneLine(err))
		return exitTemp
	}
	if _, err := out.WriteTo(stdout); err != nil {
		fmt.Fprintf(stderr, "kakuin sign: writing the signed message: %s\n", oneLine(err))
		return exitTemp
	}
	if *verbose {
		smime := "none"
		if res.SMIME {
			smime = res.SMIMEAlgorithm
		}
		fmt.Fprintf(stderr, "kakuin sign: signed from=%s smime=%s dkim=[%s]\n", res.From, smime, strings.Join(res.DKIM, "; "))
	}
	return exitOK
}
