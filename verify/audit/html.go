package audit

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
)

type htmlWriter struct {
	w       io.Writer
	p       Profile
	now     time.Time
	sum     *Summary
	reports []*Report
}

func (h *htmlWriter) Write(r *Report) error {
	h.sum.add(r)
	h.reports = append(h.reports, r)
	return nil
}

type htmlBar struct {
	ID                       string
	Y                        int
	Pass, Warn, Fail, Error  int
	XWarn, XFail, XError     float64
	WPass, WWarn, WFail, WEr float64
}

type htmlData struct {
	Profile   Profile
	Generated string
	Sum       *Summary
	Bars      []htmlBar
	Height    int
	Reports   []*Report
	Areas     []string
}

func (h *htmlWriter) Close() error {
	d := htmlData{Profile: h.p, Generated: h.now.Format(time.RFC3339), Sum: h.sum, Reports: h.reports, Areas: Areas}
	const width = 400.0
	for i, id := range sortedIDs(h.sum) {
		m := h.sum.Checks[id]
		total := float64(m[Pass] + m[Warn] + m[Fail] + m[Error])
		if total == 0 {
			continue
		}
		b := htmlBar{ID: id, Y: i * 18, Pass: m[Pass], Warn: m[Warn], Fail: m[Fail], Error: m[Error]}
		b.WPass = width * float64(m[Pass]) / total
		b.WWarn = width * float64(m[Warn]) / total
		b.WFail = width * float64(m[Fail]) / total
		b.WEr = width * float64(m[Error]) / total
		b.XWarn = b.WPass
		b.XFail = b.XWarn + b.WWarn
		b.XError = b.XFail + b.WFail
		d.Bars = append(d.Bars, b)
	}
	d.Height = len(d.Bars)*18 + 4
	return htmlTemplate.Execute(h.w, d)
}

var htmlTemplate = template.Must(template.New("audit").Funcs(template.FuncMap{
	"area": func(r *Report, a string) string { return string(areaStatus(r, a)) },
	"mark": func(s string) string { return mark(Status(s)) },
	"join": func(s []string) string { return strings.Join(s, "\n") },
	"pct": func(n, total int) string {
		if total == 0 {
			return "0"
		}
		return fmt.Sprintf("%.0f", 100*float64(n)/float64(total))
	},
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>kakuin audit: {{.Sum.Domains}} domains, profile {{.Profile.Name}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
.pass{background:#d9f2d9}.warn{background:#fff3c4}.fail{background:#f8d0d0}.error{background:#e0e0ee}
pre{margin:0;white-space:pre-wrap;font-size:.85em}.big{font-size:1.4em}
details{margin:.4em 0}summary{cursor:pointer}
</style></head><body>
<h1>kakuin audit</h1>
<p>Profile <b>{{.Profile.Name}}</b>: {{.Profile.Description}}. Generated {{.Generated}}.</p>
<p class="big"><span class="pass">&nbsp;{{.Sum.Pass}} pass&nbsp;</span> <span class="fail">&nbsp;{{.Sum.Fail}} fail&nbsp;</span> <span class="error">&nbsp;{{.Sum.Error}} could not test&nbsp;</span> of {{.Sum.Domains}} domains</p>
<h2>Checks</h2>
<svg xmlns="http://www.w3.org/2000/svg" width="600" height="{{.Height}}" role="img" aria-label="status per check">
{{range .Bars}}<text x="0" y="{{.Y}}" dy="13" font-size="12">{{.ID}}</text>
<g transform="translate(190 {{.Y}})"><rect width="{{.WPass}}" height="15" fill="#4caf50"><title>{{.ID}}: {{.Pass}} pass</title></rect><rect x="{{.XWarn}}" width="{{.WWarn}}" height="15" fill="#f0c020"><title>{{.ID}}: {{.Warn}} warn</title></rect><rect x="{{.XFail}}" width="{{.WFail}}" height="15" fill="#e04040"><title>{{.ID}}: {{.Fail}} fail</title></rect><rect x="{{.XError}}" width="{{.WEr}}" height="15" fill="#8888aa"><title>{{.ID}}: {{.Error}} error</title></rect></g>
{{end}}</svg>
<table><tr><th>check</th><th>pass</th><th>warn</th><th>fail</th><th>error</th></tr>
{{range .Bars}}<tr><td>{{.ID}}</td><td class="pass">{{.Pass}}</td><td class="warn">{{.Warn}}</td><td class="fail">{{.Fail}}</td><td class="error">{{.Error}}</td></tr>
{{end}}</table>
<h2>Domains</h2>
<table><tr><th>domain</th><th>verdict</th>{{range .Areas}}<th>{{.}}</th>{{end}}</tr>
{{range $r := .Reports}}<tr><td><a href="#d-{{$r.Domain}}">{{$r.Domain}}</a></td><td class="{{$r.Verdict}}">{{$r.Verdict}}</td>{{range $.Areas}}{{$s := area $r .}}<td class="{{$s}}">{{mark $s}}</td>{{end}}</tr>
{{end}}</table>
{{range $r := .Reports}}<details id="d-{{$r.Domain}}"{{if ne (print $r.Verdict) "pass"}} open{{end}}><summary><b>{{$r.Domain}}</b>: {{$r.Verdict}}{{if $r.NoMail}} (sends no mail){{end}}</summary>
<table><tr><th>check</th><th>status</th><th>evidence</th><th>advice</th></tr>
{{range $r.Checks}}<tr><td>{{.ID}}{{if not .Counted}} <small>(not counted)</small>{{end}}</td><td class="{{.Status}}">{{.Status}}</td><td><pre>{{join .Evidence}}</pre></td><td><pre>{{.Advice}}</pre></td></tr>
{{end}}</table></details>
{{end}}</body></html>
`))
