package e2e

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kakuin/kakuin/deploy/postfixtest"
)

var acceptedMetric = regexp.MustCompile(`(?m)^kakuin_gateway_messages_accepted_total (\d+)`)

func accepted(t *testing.T, g *gateway) int {
	t.Helper()
	m := acceptedMetric.FindStringSubmatch(g.metricsText())
	if m == nil {
		t.Fatalf("no kakuin_gateway_messages_accepted_total at %s", g.metrics)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// The gateway is stateless: two replicas with the same configuration and
// PKI directory are interchangeable. The agency Postfix lists both (as a
// Kubernetes Service would hide behind one address); when the first is
// stopped (SIGTERM, as in a scale-in or a rolling update), the second
// carries on, and every message arrives exactly once, sealed.
func TestScaleOut(t *testing.T) {
	t.Parallel()
	requireTools(t)
	bin := kakuinBin(t)
	if !hasCommand(bin, "gateway") {
		t.Fatalf("kakuin has no gateway command")
	}
	pki := pkiInit(t, bin, corpusDomains...)
	sink := postfixtest.StartSink(t, postfixtest.SinkOptions{TLSConfig: serverTLS(t, pki)})
	env := []string{
		"KAKUIN_PKI_DIR=" + pki,
		fmt.Sprintf("KAKUIN_UPSTREAM=smtp://localhost:%d", sink.Port()),
		"KAKUIN_UPSTREAM_CA=" + filepath.Join(pki, "trust-anchors.pem"),
		"KAKUIN_CLIENT_NETWORKS=127.0.0.0/8",
		"KAKUIN_HOSTNAME=kakuin.test.invalid",
	}
	a := startGateway(t, bin, tempDir(t), env...)
	b := startGateway(t, bin, tempDir(t), env...)

	relays := fmt.Sprintf("[localhost]:%d, [localhost]:%d", a.port(), b.port())
	ag := merge(recipe(t, "agency-main.cf"), map[string]string{
		"relayhost":             relays,
		"smtp_tls_CAfile":       filepath.Join(pki, "trust-anchors.pem"),
		"smtp_sasl_auth_enable": "no", // loopback is a client network here
		"queue_run_delay":       "1s",
		"minimal_backoff_time":  "1s",
		"maximal_backoff_time":  "2s",
	})
	agency := postfixtest.Start(t, postfixtest.Options{Name: "agency-scale", Hostname: "mta.agency.test.invalid", Main: ag})

	send := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			msg := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: scale %d\r\nMessage-ID: <scale-%d@example.go.jp>\r\nX-Kakuin-Seq: %d\r\n\r\nreplica test %d\r\n",
				faultSender, recipient, i, i, i, i)
			if err := agency.Sendmail(faultSender, []string{recipient}, []byte(msg)); err != nil {
				t.Fatal(err)
			}
		}
	}
	const half = 40
	send(1, half)
	sink.Wait(t, half, 2*time.Minute)
	agency.WaitQueueEmpty(t, time.Minute)
	gotA := accepted(t, a)

	// Scale in: replica A goes away gracefully; B takes every new message.
	a.stop(syscall.SIGTERM)
	send(half+1, 2*half)
	sink.Wait(t, 2*half, 2*time.Minute)
	agency.WaitQueueEmptyFlushing(t, time.Minute)
	gotB := accepted(t, b)

	msgs := sink.Messages()
	seen := map[int]int{}
	for _, m := range msgs {
		if s := seqHeader.FindSubmatch(m.Data); s != nil {
			i, _ := strconv.Atoi(string(s[1]))
			seen[i]++
		}
	}
	for i := 1; i <= 2*half; i++ {
		if seen[i] != 1 {
			t.Errorf("message %d arrived %d times, want 1", i, seen[i])
		}
	}
	if gotA+gotB != 2*half || gotB < half {
		t.Errorf("replica A accepted %d, replica B %d: want %d in all, at least %d by B after A stopped", gotA, gotB, 2*half, half)
	}
	// Both replicas sealed with the same keys: every message verifies.
	files := writeMessages(t, filepath.Join(tempDir(t), "sink"), msgs)
	anchors := filepath.Join(pki, "trust-anchors.pem")
	for _, f := range files {
		if err := opensslVerify(f, anchors); err != nil {
			t.Error(err)
		}
	}
	if !strings.Contains(agency.Maillog(), fmt.Sprintf("relay=localhost[127.0.0.1]:%d", b.port())) {
		t.Errorf("the agency maillog shows no delivery through replica B")
	}
	t.Logf("replica A accepted %d, replica B %d (after A stopped: %d); %d messages at the sink, each once", gotA, gotB, half, len(msgs))
}
