package smtpgw

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRelaysSignedMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.dial()
	c.expect(250, "EHLO client.example.go.jp")
	msg := message("Taro <taro@mhlw.go.jp>")
	code, text := c.send("taro@mhlw.go.jp", []string{"citizen@example.com", "other@example.com"}, msg)
	if code != 250 {
		t.Fatalf("DATA: %d %s", code, text)
	}
	got := e.up.Messages()
	if len(got) != 1 {
		t.Fatalf("upstream has %d messages", len(got))
	}
	m := got[0]
	if m.From != "taro@mhlw.go.jp" || strings.Join(m.To, ",") != "citizen@example.com,other@example.com" || !m.TLS {
		t.Fatalf("envelope %+v", m)
	}
	e.verifyDKIM(m.Data)
	id := receivedID(m.Data)
	if id == "" || !strings.Contains(text, "id="+id) {
		t.Fatalf("Received id %q, reply %q", id, text)
	}
	e.verifySMIME(m.Data, "Hello.")
	// One JSON log line for the transaction, with the id, and no content.
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var v map[string]any
		if json.Unmarshal([]byte(l), &v) == nil && v["msg"] == "transaction" {
			if line != nil {
				t.Fatalf("two transaction lines:\n%s", e.logs.String())
			}
			line = v
		}
	}
	if line == nil || line["id"] != id || line["result"] != "accepted" || line["header_from"] != "taro@mhlw.go.jp" || line["rcpts"] != 2.0 || line["smime"] != true {
		t.Fatalf("log line %v", line)
	}
	if strings.Contains(e.logs.String(), "Hello.") {
		t.Fatal("message content in the log")
	}
	// A second transaction on the same session works too.
	if code, text := c.send("", []string{"citizen@example.com"}, message("hanako@mhlw.go.jp")); code != 250 {
		t.Fatalf("second transaction: %d %s", code, text)
	}
	if n := len(e.up.Messages()); n != 2 {
		t.Fatalf("upstream has %d messages", n)
	}
}
