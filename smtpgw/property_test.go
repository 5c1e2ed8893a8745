package smtpgw

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/kakuin/kakuin/smtpgw/smtptest"
)

// TestNoLossProperty drives random command sequences, with the upstream
// misbehaving at random, and checks the rule the gateway exists for
// (RULES M2): the client gets 250 for DATA exactly when the upstream
// stored that message, whole and signed. KAKUIN_PROPERTY_SEED replays a
// run; KAKUIN_PROPERTY_STEPS makes it longer.
func TestNoLossProperty(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("KAKUIN_PROPERTY_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	steps := 400
	if s := os.Getenv("KAKUIN_PROPERTY_STEPS"); s != "" {
		steps, _ = strconv.Atoi(s)
	}
	t.Logf("seed %d (KAKUIN_PROPERTY_SEED to replay), %d steps", seed, steps)
	rng := rand.New(rand.NewPCG(seed, 0))
	e := newEnv(t, func(o *Options) { o.Limits.MaxCommandsWithoutMail = 1000 })

	rej4 := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}
	rej5 := &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "no"}
	faults := []smtptest.Faults{
		{}, {}, {}, // mostly well behaved
		{Mail: rej4}, {Mail: rej5},
		{Rcpt: map[string]*smtp.SMTPError{"r1@example.com": rej4, "r2@example.com": rej5}},
		{Data: rej4}, {Data: rej5}, {DropMidData: true}, {DropAtRcpt: true},
	}
	senders := []string{"taro@mhlw.go.jp", "", "a@example.go.jp", "x@evilgo.jp", "boss@soumu.go.jp"}
	froms := []string{"taro@mhlw.go.jp", "Hanako <hanako@mhlw.go.jp>", "x@example.com", "a@mhlw.go.jp, b@mhlw.go.jp"}
	accepted := map[string]bool{} // ids the client got 250 for
	var c *client
	dial := func() {
		if c != nil {
			c.conn.Close()
		}
		c = e.dial()
		c.expect(250, "EHLO client.example.go.jp")
	}
	dial()
	for i := 0; i < steps; i++ {
		var code int
		var text string
		switch op := rng.IntN(15); op {
		case 12, 13, 14:
			// A whole transaction, with random parts.
			rcpts := []string{fmt.Sprintf("r%d@example.com", rng.IntN(4))}
			if rng.IntN(2) == 0 {
				rcpts = append(rcpts, "r0@example.com")
			}
			from := senders[rng.IntN(2)]
			code, text = c.send(from, rcpts, message(froms[rng.IntN(2)]))
			if code == 250 {
				id := strings.TrimSuffix(strings.TrimPrefix(strings.Fields(text)[2], "id="), ";")
				accepted[id] = true
			}
		case 0:
			e.up.SetFaults(faults[rng.IntN(len(faults))])
			continue
		case 1, 2:
			code, text = c.cmd("MAIL FROM:<%s>", senders[rng.IntN(len(senders))])
		case 3, 4:
			code, text = c.cmd("RCPT TO:<r%d@example.com>", rng.IntN(4))
		case 5, 6:
			msg := message(froms[rng.IntN(len(froms))])
			if rng.IntN(5) == 0 {
				msg = strings.Replace(msg, "Hello.\r\n", "Hello.\n.\nMAIL FROM:<taro@mhlw.go.jp>\r\n", 1)
			}
			code, text = c.data(dotStuff(msg) + ".\r\n")
			if code == 250 {
				id := strings.TrimSuffix(strings.TrimPrefix(strings.Fields(text)[2], "id="), ";")
				accepted[id] = true
			}
		case 7:
			msg := message(froms[rng.IntN(len(froms))])
			fmt.Fprintf(c.conn, "BDAT %d LAST\r\n%s", len(msg), msg)
			code, text = c.read()
			if code == 250 {
				id := strings.TrimSuffix(strings.TrimPrefix(strings.Fields(text)[2], "id="), ";")
				accepted[id] = true
			}
		case 8:
			code, text = c.cmd("RSET")
		case 9:
			code, text = c.cmd("NOOP")
		case 10:
			// The client vanishes in the middle of DATA.
			if code, _ := c.cmd("DATA"); code == 354 {
				fmt.Fprintf(c.conn, "From: taro@mhlw.go.jp\r\nSubject: half\r\n")
			}
			dial()
			continue
		case 11:
			dial()
			continue
		}
		if code == 0 {
			// The connection broke (a 421); start again.
			t.Logf("step %d: connection lost: %s", i, text)
			dial()
		}
	}
	c.conn.Close()
	// Let the server finish what is in flight.
	time.Sleep(100 * time.Millisecond)
	stored := map[string]bool{}
	for _, m := range e.up.Messages() {
		id := receivedID(m.Data)
		if id == "" || stored[id] {
			t.Fatalf("stored message without a fresh kakuin id (%q)", id)
		}
		stored[id] = true
		e.verifyDKIM(m.Data)
		if !accepted[id] {
			t.Errorf("upstream stored %s but the client never got 250 for it", id)
		}
	}
	for id := range accepted {
		if !stored[id] {
			t.Errorf("client got 250 for %s but the upstream does not have it", id)
		}
	}
	t.Logf("%d messages accepted and stored", len(accepted))
	if len(accepted) == 0 {
		t.Fatal("no message accepted at all: the sequence tested nothing")
	}
}
