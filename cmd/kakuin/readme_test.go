package main

import (
	"bufio"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// commandConfigs maps each registered command to the configuration
// structs it reads from the environment. A new command must be added here
// (TestReadmeListsEveryVariable fails until it is), so that its variables
// are checked against the README too.
var commandConfigs = map[string][]any{
	"sign":    {signConfig{}},
	"gateway": {gatewayConfig{}},
	"verify":  {verifyConfig{}},
	"audit":   {auditConfig{}},
	"records": {recordsConfig{}},
	"pki":     {pkiConfig{}},
}

// readmeRows returns how many README table rows have each variable as
// their first cell: lines that start with "| `KAKUIN_X` |".
func readmeRows(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "| `"+envPrefix) {
			continue
		}
		name, _, ok := strings.Cut(strings.TrimPrefix(line, "| `"), "` |")
		if ok {
			rows[name]++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// readmeMissing returns the variables of cfgs that have no README table
// row, and those that have several (a shared variable is listed once).
func readmeMissing(cfgs map[string][]any, rows map[string]int) (missing, repeated []string) {
	seen := map[string]bool{}
	for cmd, list := range cfgs {
		for _, cfg := range list {
			walkEnv(reflect.TypeOf(cfg), envPrefix, func(name string, _ reflect.StructField) {
				if seen[name] {
					return
				}
				seen[name] = true
				switch rows[name] {
				case 0:
					missing = append(missing, name+" ("+cmd+")")
				case 1:
				default:
					repeated = append(repeated, name)
				}
			})
		}
	}
	sort.Strings(missing)
	sort.Strings(repeated)
	return missing, repeated
}

// TestReadmeListsEveryVariable: the README has exactly one table row for
// every variable of every command's configuration.
func TestReadmeListsEveryVariable(t *testing.T) {
	t.Parallel()
	for name := range commands {
		if _, ok := commandConfigs[name]; !ok {
			t.Errorf("command %q is not in commandConfigs: add its configuration struct", name)
		}
	}
	rows := readmeRows(t, "../../README.md")
	missing, repeated := readmeMissing(commandConfigs, rows)
	for _, v := range missing {
		t.Errorf("README.md has no table row for %s", v)
	}
	for _, v := range repeated {
		t.Errorf("README.md lists %s in %d table rows; list a shared variable once", v, rows[v])
	}
}

// TestReadmeCheckFindsGaps: the check above fails for a variable without
// a row, and for one with two rows, so that it cannot pass vacuously.
func TestReadmeCheckFindsGaps(t *testing.T) {
	t.Parallel()
	rows := readmeRows(t, "../../README.md")
	if len(rows) < 20 {
		t.Fatalf("found %d variable rows in README.md; the row format changed?", len(rows))
	}
	cfgs := map[string][]any{"verify": {verifyConfig{}}}
	if missing, repeated := readmeMissing(cfgs, rows); len(missing)+len(repeated) > 0 {
		t.Fatalf("complete README: missing %v, repeated %v", missing, repeated)
	}

	gap := map[string]int{}
	for k, v := range rows {
		gap[k] = v
	}
	delete(gap, "KAKUIN_OFFLINE")
	gap["KAKUIN_RESOLVER"] = 2
	missing, repeated := readmeMissing(cfgs, gap)
	if want := []string{"KAKUIN_OFFLINE (verify)"}; !reflect.DeepEqual(missing, want) {
		t.Errorf("missing = %v, want %v", missing, want)
	}
	if want := []string{"KAKUIN_RESOLVER"}; !reflect.DeepEqual(repeated, want) {
		t.Errorf("repeated = %v, want %v", repeated, want)
	}
}

// readmeBlocks returns the contents of the ```lang fenced blocks of the
// README section that starts at heading, up to the next "## " heading.
func readmeBlocks(t *testing.T, heading, lang string) []string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), heading)
	if !ok {
		t.Fatalf("README has no %q", heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```"+lang+"\n(.*?)```").FindAllStringSubmatch(section, -1) {
		blocks = append(blocks, m[1])
	}
	if len(blocks) == 0 {
		t.Fatalf("README %q has no ```%s block", heading, lang)
	}
	return blocks
}
