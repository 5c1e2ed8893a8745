// Command kakuin seals government mail and checks the seal.
//
//	kakuin pki init   lay out a development PKI and DKIM keys
//	kakuin sign       sign one message (stdin to stdout) as the gateway would
//	kakuin gateway    the signing SMTP relay
//	kakuin verify     is this message really from the government?
//	kakuin audit      are these domains' mail records compliant?
//
// Configuration comes from KAKUIN_* environment variables; `kakuin CMD
// --help` lists them with their defaults. This package is the only importer
// of caarlos0/env.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one subcommand. Each lives in its own file and registers
// itself in an init function, so that subcommands are added without
// touching this file.
type command struct {
	summary string
	// run gets the arguments after the subcommand's name and returns the
	// exit status.
	run func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

var commands = map[string]command{}

func register(name, summary string, run func(args []string, stdin io.Reader, stdout, stderr io.Writer) int) {
	if _, dup := commands[name]; dup {
		panic("kakuin: command registered twice: " + name)
	}
	commands[name] = command{summary: summary, run: run}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "kakuin: unknown command %q (see kakuin --help)\n", args[0])
		return 2
	}
	return c.run(args[1:], stdin, stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: kakuin COMMAND [ARGS]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\n`kakuin COMMAND --help` lists its flags and KAKUIN_* environment variables.")
}
