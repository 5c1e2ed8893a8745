package audit

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

func sampleReports(t *testing.T) (Profile, []*Report) {
	t.Helper()
	e := newEnv(t)
	e.perfect("good.example.go.jp")
	e.dns.AddZone("bad.example.go.jp", `
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ MX 10 mx.good.example.go.jp.
@ TXT "v=spf1 +all"
_dmarc TXT "v=DMARC1; p=none"
`)
	a, err := New(e.options("strict"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	return a.profile, []*Report{a.Domain(ctx, "good.example.go.jp"), a.Domain(ctx, "bad.example.go.jp")}
}

func render(t *testing.T, format string, p Profile, reps []*Report) string {
	t.Helper()
	var b bytes.Buffer
	w, err := NewWriter(format, &b, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestOutputs(t *testing.T) {
	t.Parallel()
	p, reps := sampleReports(t)
	if reps[0].Verdict != Pass || reps[1].Verdict != Fail {
		t.Fatalf("verdicts %s %s", reps[0].Verdict, reps[1].Verdict)
	}

	// json: the documented schema.
	var doc struct {
		Schema  string    `json:"schema"`
		Profile string    `json:"profile"`
		Domains []*Report `json:"domains"`
		Summary Summary   `json:"summary"`
	}
	out := render(t, "json", p, reps)
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if doc.Schema != "kakuin-audit/1" || doc.Profile != "strict" || len(doc.Domains) != 2 || doc.Summary.Domains != 2 ||
		doc.Summary.Pass != 1 || doc.Summary.Fail != 1 || doc.Summary.Checks["spf.all"][Fail] != 1 || doc.Summary.Checks["spf.all"][Pass] != 1 {
		t.Fatalf("json doc: %+v", doc)
	}
	c, _ := doc.Domains[1].Check("dmarc.policy")
	if c.Status != Fail || !c.Counted || !strings.Contains(c.Advice, "p=reject") {
		t.Fatalf("json check: %+v", c)
	}
	var empty struct{ Domains []any }
	if err := json.Unmarshal([]byte(render(t, "json", p, nil)), &empty); err != nil {
		t.Fatalf("empty json: %v", err)
	}

	// csv: header, one row per domain, stable columns.
	rows, err := csv.NewReader(strings.NewReader(render(t, "csv", p, reps))).ReadAll()
	if err != nil || len(rows) != 3 {
		t.Fatalf("csv: %v %d rows", err, len(rows))
	}
	if strings.Join(rows[0], ",") != strings.Join(CSVHeader(), ",") || len(rows[1]) != len(CSVHeader()) {
		t.Fatalf("csv header %v", rows[0])
	}
	if rows[1][0] != "good.example.go.jp" || rows[1][1] != "pass" || rows[2][1] != "fail" || !strings.Contains(rows[2][len(rows[2])-1], "spf.all") {
		t.Fatalf("csv rows %v / %v", rows[1], rows[2])
	}

	// table: a row per domain with marks, then the advice.
	tab := render(t, "table", p, reps)
	for _, want := range []string{"DOMAIN", "good.example.go.jp PASS", "bad.example.go.jp  FAIL", "✗ spf.all", "fix: bad.example.go.jp. 3600 IN TXT \"v=spf1 -all\""} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}

	// html: well-formed, self-contained, with the chart and each domain.
	page := render(t, "html", p, reps)
	node, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var svg, rects int
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "svg":
				svg++
			case "rect":
				rects++
			case "script", "link", "img", "iframe":
				t.Errorf("html has a <%s>", n.Data)
			}
			for _, a := range n.Attr {
				if (a.Key == "src" || a.Key == "href") && !strings.HasPrefix(a.Val, "#") {
					t.Errorf("html refers outside: %s=%q", a.Key, a.Val)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(node)
	if svg != 1 || rects != 4*len(CheckIDs) || !strings.Contains(page, `id="d-bad.example.go.jp"`) || !strings.Contains(page, "1 fail") {
		t.Fatalf("html: %d svg, %d rects", svg, rects)
	}
	if _, err := NewWriter("xml", &bytes.Buffer{}, p); err == nil {
		t.Fatal("unknown format accepted")
	}
}
