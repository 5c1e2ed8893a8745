package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/caarlos0/env/v11"
)

// envPrefix is the prefix of every environment variable kakuin reads.
const envPrefix = "KAKUIN_"

// parseEnv fills cfg, a pointer to a struct with `env` tags, from the
// environment. Each field also carries a `help` tag, which envHelp prints.
func parseEnv(cfg any) error {
	if err := env.ParseWithOptions(cfg, env.Options{Prefix: envPrefix}); err != nil {
		return fmt.Errorf("configuration: %w", variableErrors(cfg, err))
	}
	return nil
}

// variableErrors rewrites env's parse errors, which name the Go field
// ("parse error on field \"CertValidity\" ..."), to name the variable the
// operator set: "KAKUIN_CERT_VALIDITY: time: invalid duration ...".
// Other errors are returned unchanged.
func variableErrors(cfg any, err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	vars := map[string]string{} // Go field name -> variable
	walkEnv(reflect.TypeOf(cfg), envPrefix, func(name string, sf reflect.StructField) { vars[sf.Name] = name })
	msgs := make([]string, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) && vars[pe.Name] != "" {
			msgs = append(msgs, vars[pe.Name]+": "+pe.Err.Error())
			continue
		}
		msgs = append(msgs, e.Error())
	}
	return fmt.Errorf("%s%.0w", strings.Join(msgs, "; "), err)
}

// envHelp writes one line per variable of cfg's struct type: name, default
// and the `help` tag. Nested structs (without an env tag) are walked, with
// their envPrefix tag if any.
func envHelp(w io.Writer, cfg any) {
	fmt.Fprintln(w, "\nenvironment:")
	walkEnv(reflect.TypeOf(cfg), envPrefix, func(name string, sf reflect.StructField) {
		help, def := sf.Tag.Get("help"), sf.Tag.Get("envDefault")
		if def != "" {
			help += " (default " + def + ")"
		}
		fmt.Fprintf(w, "  %-28s %s\n", name, help)
	})
}

// walkEnv calls f with the variable name and the struct field of every
// field of t with an env tag, nested structs included (with their
// envPrefix tag, if any).
func walkEnv(t reflect.Type, prefix string, f func(name string, sf reflect.StructField)) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag, ok := sf.Tag.Lookup("env")
		if !ok {
			if sf.Type.Kind() == reflect.Struct || (sf.Type.Kind() == reflect.Pointer && sf.Type.Elem().Kind() == reflect.Struct) {
				walkEnv(sf.Type, prefix+sf.Tag.Get("envPrefix"), f)
			}
			continue
		}
		name := strings.Split(tag, ",")[0]
		if name == "" {
			continue
		}
		f(prefix+name, sf)
	}
}

// parseFlags parses a subcommand's flags. With -h or --help it writes
// intro, the flags and the environment variables of cfg (a pointer to the
// subcommand's configuration struct) to stdout and returns exitOK; with a
// bad flag it says so on stderr and returns badExit. done is false when
// the subcommand should go on.
func parseFlags(fs *flag.FlagSet, args []string, intro string, cfg any, stdout, stderr io.Writer, badExit int) (code int, done bool) {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(stdout, intro)
		var flags strings.Builder
		fs.SetOutput(&flags)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		if flags.Len() > 0 {
			fmt.Fprint(stdout, "\nflags:\n", flags.String())
		}
		envHelp(stdout, cfg)
		return exitOK, true
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v (see %s --help)\n", fs.Name(), err, fs.Name())
		return badExit, true
	}
	return 0, false
}
