package audit

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Formats lists the output formats of NewWriter.
var Formats = []string{"table", "json", "csv", "html"}

// Writer writes reports in one format. Write is called once per report,
// in the order the reports should appear; Close ends the output.
type Writer interface {
	Write(r *Report) error
	Close() error
}

// NewWriter returns a Writer for format (table, json, csv or html).
//
// json is one object, written as the reports come (memory stays flat):
//
//	{
//	  "schema": "kakuin-audit/1",
//	  "profile": "strict",                      // the profile's name
//	  "generated": "2026-11-26T14:00:00Z",      // RFC 3339, when the output began
//	  "domains": [                              // one per domain, in input order
//	    {
//	      "domain": "example.go.jp",            // canonical A-label form
//	      "profile": "strict",
//	      "verdict": "pass"|"fail"|"error",     // the profile's: fail if a counted check
//	                                            // fails, else error if one could not be tested
//	      "no_mail": false,                     // null MX and "v=spf1 -all"
//	      "started": "...", "duration_ns": 123, // when and how long
//	      "checks": [                           // every check, in CheckIDs order
//	        {
//	          "id": "dmarc.policy",             // area.name, stable
//	          "status": "pass"|"warn"|"fail"|"error",
//	          "evidence": ["p=none"],           // what was found, one fact per string
//	          "advice": "_dmarc.example.go.jp. 3600 IN TXT \"v=DMARC1; p=reject; ...\"",
//	                                            // on warn and fail: what to publish
//	          "counted": true                   // part of the profile's verdict
//	        }
//	      ]
//	    }
//	  ],
//	  "summary": {                              // after the domains
//	    "domains": 2, "pass": 1, "fail": 1, "error": 0,
//	    "checks": {"dmarc.policy": {"pass": 1, "fail": 1}}   // statuses per check id
//	  }
//	}
//
// csv has a header row and one row per domain, columns in this stable
// order: domain, verdict, profile, no_mail, then one column per check ID
// of CheckIDs holding its status, then failing (the counted checks that
// failed or could not be tested, space-separated).
//
// table has one row per domain with one mark per area (✓ pass, ~ warn,
// ✗ fail, ? error, the worst of the area's counted checks; lower case
// letters of the same for checks the profile does not count are not
// shown), then, per domain, every counted check that did not pass with
// its advice.
//
// html is one self-contained file (no external resources): a summary with
// the verdicts, the count of each status per check and an inline SVG bar
// chart, then a section per domain with every check.
func NewWriter(format string, w io.Writer, p Profile) (Writer, error) {
	now := time.Now().UTC()
	switch format {
	case "table":
		return &tableWriter{w: w, p: p}, nil
	case "json":
		return &jsonWriter{w: w, p: p, now: now, sum: newSummary()}, nil
	case "csv":
		return &csvWriter{w: csv.NewWriter(w)}, nil
	case "html":
		return &htmlWriter{w: w, p: p, now: now, sum: newSummary()}, nil
	}
	return nil, fmt.Errorf("%w: unknown format %q (have %s)", ErrOptions, format, strings.Join(Formats, ", "))
}

// Summary counts verdicts and statuses per check.
type Summary struct {
	Domains int                       `json:"domains"`
	Pass    int                       `json:"pass"`
	Fail    int                       `json:"fail"`
	Error   int                       `json:"error"`
	Checks  map[string]map[Status]int `json:"checks"`
}

func newSummary() *Summary { return &Summary{Checks: map[string]map[Status]int{}} }

func (s *Summary) add(r *Report) {
	s.Domains++
	switch r.Verdict {
	case Pass:
		s.Pass++
	case Fail:
		s.Fail++
	default:
		s.Error++
	}
	for _, c := range r.Checks {
		m := s.Checks[c.ID]
		if m == nil {
			m = map[Status]int{}
			s.Checks[c.ID] = m
		}
		m[c.Status]++
	}
}

type jsonWriter struct {
	w     io.Writer
	p     Profile
	now   time.Time
	sum   *Summary
	begun bool
}

func (j *jsonWriter) begin() error {
	if j.begun {
		return nil
	}
	j.begun = true
	_, err := fmt.Fprintf(j.w, "{\n\"schema\": \"kakuin-audit/1\",\n\"profile\": %q,\n\"generated\": %q,\n\"domains\": [\n", j.p.Name, j.now.Format(time.RFC3339))
	return err
}

func (j *jsonWriter) Write(r *Report) error {
	first := !j.begun
	if err := j.begin(); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if !first && j.sum.Domains > 0 {
		if _, err := io.WriteString(j.w, ",\n"); err != nil {
			return err
		}
	}
	j.sum.add(r)
	_, err = j.w.Write(b)
	return err
}

func (j *jsonWriter) Close() error {
	if err := j.begin(); err != nil {
		return err
	}
	b, err := json.Marshal(j.sum)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(j.w, "\n],\n\"summary\": %s\n}\n", b)
	return err
}

type csvWriter struct {
	w     *csv.Writer
	begun bool
}

// CSVHeader is the csv format's header row.
func CSVHeader() []string {
	return append(append([]string{"domain", "verdict", "profile", "no_mail"}, CheckIDs...), "failing")
}

func (c *csvWriter) Write(r *Report) error {
	if !c.begun {
		c.begun = true
		if err := c.w.Write(CSVHeader()); err != nil {
			return err
		}
	}
	row := []string{r.Domain, string(r.Verdict), r.Profile, fmt.Sprint(r.NoMail)}
	var failing []string
	for _, id := range CheckIDs {
		ch, ok := r.Check(id)
		row = append(row, string(ch.Status))
		if ok && ch.Counted && (ch.Status == Fail || ch.Status == Error) {
			failing = append(failing, id)
		}
	}
	row = append(row, strings.Join(failing, " "))
	return c.w.Write(row)
}

func (c *csvWriter) Close() error {
	if !c.begun {
		c.begun = true
		c.w.Write(CSVHeader())
	}
	c.w.Flush()
	return c.w.Error()
}

// Areas lists the check areas in order.
var Areas = func() []string {
	var out []string
	seen := map[string]bool{}
	for _, id := range CheckIDs {
		a, _, _ := strings.Cut(id, ".")
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}()

func mark(s Status) string {
	switch s {
	case Pass:
		return "✓"
	case Warn:
		return "~"
	case Fail:
		return "✗"
	case Error:
		return "?"
	}
	return "·"
}

// areaStatus is the worst status of the area's counted checks, "" when
// the profile counts none of them.
func areaStatus(r *Report, area string) Status {
	var st Status
	for _, c := range r.Checks {
		if c.Area() == area && c.Counted {
			if st == "" {
				st = c.Status
			}
			st = worst(st, c.Status)
		}
	}
	return st
}

type tableWriter struct {
	w      io.Writer
	p      Profile
	tw     *tabwriter.Writer
	detail strings.Builder
}

func (t *tableWriter) Write(r *Report) error {
	if t.tw == nil {
		t.tw = tabwriter.NewWriter(t.w, 0, 0, 1, ' ', 0)
		fmt.Fprintf(t.tw, "DOMAIN\tVERDICT\t%s\n", strings.ToUpper(strings.Join(Areas, "\t")))
	}
	fmt.Fprintf(t.tw, "%s\t%s", r.Domain, strings.ToUpper(string(r.Verdict)))
	for _, a := range Areas {
		fmt.Fprintf(t.tw, "\t%s", mark(areaStatus(r, a)))
	}
	fmt.Fprintln(t.tw)
	first := true
	for _, c := range r.Checks {
		if !c.Counted || c.Status == Pass {
			continue
		}
		if first {
			fmt.Fprintf(&t.detail, "\n%s (%s):\n", r.Domain, r.Verdict)
			first = false
		}
		fmt.Fprintf(&t.detail, "  %s %-22s %s\n", mark(c.Status), c.ID, strings.Join(c.Evidence, "; "))
		if c.Advice != "" {
			for _, l := range strings.Split(c.Advice, "\n") {
				fmt.Fprintf(&t.detail, "      fix: %s\n", l)
			}
		}
	}
	return nil
}

func (t *tableWriter) Close() error {
	if t.tw == nil {
		fmt.Fprintln(t.w, "no domains audited")
		return nil
	}
	if err := t.tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(t.w, "\nprofile %s: %s\nmarks: ✓ pass  ~ warn  ✗ fail  ? could not test  · not counted by the profile\n", t.p.Name, t.p.Description)
	_, err := io.WriteString(t.w, t.detail.String())
	return err
}

// sortedIDs returns the ids of a summary in CheckIDs order.
func sortedIDs(s *Summary) []string {
	var ids []string
	for id := range s.Checks {
		ids = append(ids, id)
	}
	sort.SliceStable(ids, func(i, j int) bool { return checkOrder[ids[i]] < checkOrder[ids[j]] })
	return ids
}
