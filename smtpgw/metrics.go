package smtpgw

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's Prometheus series, all prefixed kakuin_gateway_.
type metrics struct {
	accepted       prometheus.Counter
	rejected       *prometheus.CounterVec // reason
	signatures     *prometheus.CounterVec // type: smime, dkim
	upstream       *prometheus.CounterVec // class: 2xx, 4xx, 5xx, error
	bytes          *prometheus.CounterVec // direction: in, out
	txnDuration    prometheus.Histogram
	signDuration   prometheus.Histogram
	signWait       prometheus.Histogram
	dateSkew       prometheus.Counter
	upDuration     prometheus.Histogram
	sessions       prometheus.Gauge
	sessionsDenied *prometheus.CounterVec // reason: limit, shutdown
	authFailures   prometheus.Counter
	reloads        *prometheus.CounterVec // result: ok, error
	ready          *prometheus.GaugeVec   // check: upstream, keys
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "kakuin", "gateway"
	m := &metrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "messages_accepted_total",
			Help: "Messages signed and accepted by the upstream (the client got 250)."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "messages_rejected_total",
			Help: "Transactions refused or failed, by reason."}, []string{"reason"}),
		signatures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "signatures_total",
			Help: "Signatures applied, by type (smime, dkim)."}, []string{"type"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "upstream_replies_total",
			Help: "Final upstream replies to DATA, by class (2xx, 4xx, 5xx, error)."}, []string{"class"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "bytes_total",
			Help: "Message bytes received from clients (in) and sent upstream (out)."}, []string{"direction"}),
		txnDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "transaction_duration_seconds",
			Help: "From MAIL to the final reply.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		signDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "sign_duration_seconds",
			Help: "Time spent signing one message.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		signWait: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "sign_wait_seconds",
			Help: "Time a message waited for its turn to be signed (Options.SignConcurrency): CPU saturation.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		dateSkew: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "date_skew_total",
			Help: "Messages S/MIME-signed more than an hour away from their Date field (Thunderbird marks such signatures, RULES S8)."}),
		upDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "upstream_data_duration_seconds",
			Help: "Time from upstream DATA to its final reply.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "sessions",
			Help: "Client sessions open now."}),
		sessionsDenied: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "sessions_refused_total",
			Help: "Connections answered 421 at once, by reason (limit, shutdown)."}, []string{"reason"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "auth_failures_total",
			Help: "Failed SMTP AUTH attempts."}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "reloads_total",
			Help: "Configuration reloads, by result."}, []string{"result"}),
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "ready_check",
			Help: "1 if the readiness check passed when /readyz last ran it (at most every 5 s), 0 if not, by check: upstream (reachable), keys (the keys held in an HSM sign). Absent until /readyz is first asked."}, []string{"check"}),
	}
	reg.MustRegister(m.accepted, m.rejected, m.signatures, m.upstream, m.bytes, m.txnDuration, m.signDuration,
		m.signWait, m.dateSkew, m.upDuration, m.sessions, m.sessionsDenied, m.authFailures, m.reloads, m.ready)
	// Every labelled counter starts at 0 with all its labels, so that
	// rate() and increase() see its first event.
	for vec, labels := range map[*prometheus.CounterVec][]string{
		m.rejected:       reasons(),
		m.signatures:     {"smime", "dkim"},
		m.upstream:       {"2xx", "4xx", "5xx", "error"},
		m.bytes:          {"in", "out"},
		m.sessionsDenied: {"limit", "shutdown"},
		m.reloads:        {"ok", "error"},
	} {
		for _, l := range labels {
			vec.WithLabelValues(l)
		}
	}
	return m
}
