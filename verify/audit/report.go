// Package audit checks that mail domains publish what government mail
// needs, the way Internet.nl's mail test, CISA's trustymail (BOD 18-01)
// and checkdmarc do: the domain and its DNSSEC, MX and null MX (RFC
// 7505), SPF (RFC 7208), DMARC (RFC 7489, RFC 9989), DKIM keys (RFC 6376,
// RFC 8301, RFC 8463), STARTTLS on every MX with weak-protocol probes,
// MTA-STS (RFC 8461), TLS-RPT (RFC 8460) and DANE (RFC 7672).
//
// Every check ends in pass, warn, fail or error ("could not test": a
// timeout, SERVFAIL, a 421 from a busy MX); a timeout is never reported as
// a missing record. Every warn and fail carries the record or setting to
// publish. A profile (nisc, bod1801, strict) says which checks make a
// domain's verdict.
package audit

import (
	"strings"
	"time"
)

// Status is the outcome of one check.
type Status string

// Statuses, from best to worst for a verdict: error ranks between warn
// and fail because it says nothing about compliance.
const (
	Pass  Status = "pass"
	Warn  Status = "warn"
	Fail  Status = "fail"
	Error Status = "error" // could not test
)

// Check is one check's result.
type Check struct {
	// ID is stable, area.name (see CheckIDs).
	ID string `json:"id"`
	// Status is pass, warn, fail or error.
	Status Status `json:"status"`
	// Evidence says what was found, one fact per string.
	Evidence []string `json:"evidence"`
	// Advice is what to publish or set to fix a warn or fail: a record in
	// zone-file syntax or a setting. Empty on pass and error.
	Advice string `json:"advice,omitempty"`
	// Counted is true when the check is part of the profile's verdict.
	Counted bool `json:"counted"`
}

// Area is the part before the dot of a check ID.
func (c Check) Area() string { a, _, _ := strings.Cut(c.ID, "."); return a }

// Report is the audit of one domain.
type Report struct {
	Domain  string  `json:"domain"`
	Profile string  `json:"profile"`
	Verdict Status  `json:"verdict"` // pass, fail or error (warn counts as pass)
	Checks  []Check `json:"checks"`
	// NoMail is true when the domain says it sends and receives no mail
	// (null MX and an SPF record that allows nothing).
	NoMail   bool          `json:"no_mail"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
}

// Check returns the check with the id, and whether it is there.
func (r *Report) Check(id string) (Check, bool) {
	for _, c := range r.Checks {
		if c.ID == id {
			return c, true
		}
	}
	return Check{}, false
}

// verdict applies the profile: fail if a counted check fails, else error
// if a counted check could not be tested, else pass (warn passes).
func (r *Report) verdict(p Profile) {
	v := Pass
	for i := range r.Checks {
		c := &r.Checks[i]
		c.Counted = p.counts(c.ID)
		if !c.Counted {
			continue
		}
		switch c.Status {
		case Fail:
			v = Fail
		case Error:
			if v != Fail {
				v = Error
			}
		}
	}
	r.Verdict = v
}

// rank orders statuses for "worst of".
func rank(s Status) int {
	switch s {
	case Pass:
		return 0
	case Warn:
		return 1
	case Error:
		return 2
	case Fail:
		return 3
	}
	return 4
}

func worst(a, b Status) Status {
	if rank(b) > rank(a) {
		return b
	}
	return a
}
