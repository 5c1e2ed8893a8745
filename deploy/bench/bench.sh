#!/usr/bin/env bash
# deploy/bench/bench.sh: the same smtp-source load into
#   (a) Postfix + OpenDKIM (Debian packages, RSA-2048, relaxed/relaxed, DKIM
#       only) relaying to smtp-sink, and
#   (b) kakuin gateway (S/MIME + DKIM rsa-sha256 + ed25519, RSA-2048)
#       relaying to smtp-sink,
# with 20 and 100 sessions, 4 KB and 100 KB messages. Prints messages per
# second (end to end: until the sink has every message), acceptance rate,
# p50/p99 latency, peak memory, and the ratio b/a. Around each kakuin run
# it measures R, the RSA-2048 signatures per second on all cores made as
# kakuin makes them (libcrypto in a cgo build, BenchmarkRSA2048), and prints
# the run against issue #3's goal (0.7 x R/2 messages per second).
#
# usage: deploy/bench/bench.sh [all|opendkim|kakuin]      (run as root)
#
# environment:
#   BENCH_MESSAGES  messages per run (default 2000)
#   BENCH_SESSIONS  concurrent sessions (default "20 100")
#   BENCH_SIZES     message sizes in bytes (default "4096 102400")
#   KAKUIN_BIN      kakuin binary (default bin/kakuin; `make build`)
#   BENCH_KEEP=1    keep the work directory
#   BENCH_SOURCE_FLAGS  extra smtp-source flags, e.g. "-d" (one connection
#                   per session for all its messages; the default is one
#                   connection per message)
#
# Installs opendkim and opendkim-tools from Debian when missing. Everything
# listens on 127.0.0.1 and is stopped on exit (by pid, never by name).
set -euo pipefail

WHICH=${1:-all}
MESSAGES=${BENCH_MESSAGES:-2000}
read -r -a SOURCE_FLAGS <<<"${BENCH_SOURCE_FLAGS:-}"
SESSIONS=${BENCH_SESSIONS:-"20 100"}
SIZES=${BENCH_SIZES:-"4096 102400"}
KAKUIN_BIN=${KAKUIN_BIN:-bin/kakuin}
PY=${KAKUIN_TEST_PYTHON:-/usr/bin/python3}
FROM=bench@example.go.jp
TO=citizen@example.com
RUN_TIMEOUT=${BENCH_RUN_TIMEOUT:-900}

[ "$(id -u)" = 0 ] || { echo "bench: must run as root (private Postfix instances)" >&2; exit 2; }
for p in postfix opendkim opendkim-tools; do
  if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed'; then
    echo "bench: installing $p" >&2
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null
  fi
done

W=$(mktemp -d /var/tmp/kakuin-bench.XXXXXX)
chmod 0755 "$W"
PIDS=()
PF_CONF=""
cleanup() {
  set +e
  [ -n "$PF_CONF" ] && postfix -c "$PF_CONF" stop >/dev/null 2>&1
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: work directory kept: $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT

freeport() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { # host:port, seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    if "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "bench: nothing listens on 127.0.0.1:$1 after $2 s" >&2; return 1
}

# ---------------------------------------------------------------- the sink
SINK_PORT=$(freeport)
SINK_OUT=$W/sink.out
start_sink() { # [dump dir]
  local dump=()
  if [ -n "${1:-}" ]; then mkdir -p "$1"; chown nobody "$1"; dump=(-d "$1/%M."); fi
  smtp-sink -u nobody -c -h sink.bench.invalid -m 500 "${dump[@]}" 127.0.0.1:"$SINK_PORT" 1024 >"$SINK_OUT" 2>&1 &
  SINK_PID=$!
  PIDS+=("$SINK_PID")
  wait_port "$SINK_PORT" 10
}
stop_sink() { kill "$SINK_PID" 2>/dev/null || true; wait "$SINK_PID" 2>/dev/null || true; }
sink_count() { tr '\r' '\n' <"$SINK_OUT" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2 || true; }

# ---------------------------------------------------------------- memory
# sample_mem COMMAND OUT: sums the proportional set size (Pss: shared
# pages divided among the processes that share them, so Postfix's many
# processes are not counted once per library) of the pids the command
# prints, every 0.2 s, and keeps the peak (kB) in OUT.
sample_mem() {
  local cmd=$1 out=$2 peak=0 sum p
  echo 0 >"$out"
  while :; do
    sum=0
    for p in $($cmd 2>/dev/null); do
      r=$(awk '/^Pss:/ {print $2}' /proc/"$p"/smaps_rollup 2>/dev/null || true)
      sum=$((sum + ${r:-0}))
    done
    if ((sum > peak)); then peak=$sum; echo "$peak" >"$out.tmp" && mv "$out.tmp" "$out"; fi
    sleep 0.2
  done
}

# cpu_ticks COMMAND: clock ticks of CPU (user + system, and of reaped
# children: a Postfix master's cutime/cstime hold its exited daemons)
# used so far by the pids the command prints. Machine-load independent:
# the fairest figure on a shared, noisy machine.
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {
  local p t=0 v
  for p in $($1 2>/dev/null); do
    v=$(sed 's/.*) //' /proc/"$p"/stat 2>/dev/null | awk '{print $12 + $13 + $14 + $15}')
    t=$((t + ${v:-0}))
  done
  echo "$t"
}

# ---------------------------------------------------------------- R
# R: RSA-2048 signatures per second on all cores, made as kakuin makes
# them: through libcrypto when built with cgo, as bin/kakuin and the test
# binary are (BenchmarkRSA2048, pki.UseLibcrypto). Measured just before and just
# after each kakuin run, to judge the gateway under smtp-source's load
# against issue #3's goal: 0.7 x R/2 messages per second. Needs the Go
# toolchain (make bench has it); without it R is not measured.
R_TEST=""
if command -v go >/dev/null 2>&1 && go test -c -o "$W/smtpgw.test" ./smtpgw >/dev/null 2>&1; then
  R_TEST=$W/smtpgw.test
fi
go_r() {
  [ -n "$R_TEST" ] || { echo ""; return; }
  (cd smtpgw && "$R_TEST" -test.run '^$' -test.bench '^BenchmarkRSA2048$' -test.benchtime 1x 2>/dev/null) |
    awk '{for (i = 2; i <= NF; i++) if ($i == "sigs/s") print $(i-1)}'
}

# ---------------------------------------------------------------- one run
# run NAME PORT SESSIONS SIZE MEMCMD LATENCYCMD-PREFIX
RESULTS=$W/results.tsv
: >"$RESULTS"
run_load() {
  local name=$1 port=$2 s=$3 size=$4 memcmd=$5 latfn=$6
  local base want t0 t1 t2 got r0="" r1=""
  if [ "$name" = kakuin ]; then r0=$(go_r); fi
  base=$(sink_count); base=${base:-0}
  want=$((base + MESSAGES))
  "$latfn" begin
  sample_mem "$memcmd" "$W/mem.peak" &
  local mpid=$!
  local c0 c1; c0=$(cpu_ticks "$memcmd")
  t0=$(date +%s.%N)
  smtp-source "${SOURCE_FLAGS[@]}" -s "$s" -m "$MESSAGES" -l "$size" -f "$FROM" -t "$TO" 127.0.0.1:"$port" >"$W/source.out" 2>&1 || true
  t1=$(date +%s.%N)
  local deadline=$(( $(date +%s) + RUN_TIMEOUT ))
  while :; do
    got=$(sink_count); got=${got:-0}
    ((got >= want)) && break
    if (($(date +%s) > deadline)); then echo "bench: $name: sink has $((got - base))/$MESSAGES after ${RUN_TIMEOUT}s" >&2; break; fi
    sleep 0.05
  done
  t2=$(date +%s.%N)
  c1=$(cpu_ticks "$memcmd")
  kill "$mpid" 2>/dev/null; wait "$mpid" 2>/dev/null || true
  local lat; lat=$("$latfn" end)
  if [ "$name" = kakuin ]; then r1=$(go_r); fi
  local errs; errs=$(grep -c -i 'error\|fatal\|warning' "$W/source.out" || true)
  "$PY" - "$name" "$s" "$size" "$MESSAGES" "$((got - base))" "$t0" "$t1" "$t2" "$(cat "$W/mem.peak" 2>/dev/null || echo 0)" "$lat" "$errs" "$(( (c1 - c0) * 1000 / CLK_TCK ))" "${r0:--}" "${r1:--}" >>"$RESULTS" <<'EOF'
import sys
name, s, size, n, got, t0, t1, t2, mem, lat, errs, cpums, r0, r1 = sys.argv[1:]
t0, t1, t2 = float(t0), float(t1), float(t2)
n, got = int(n), int(got)
print("\t".join([name, s, size, str(n), str(got), "%.1f" % (got / (t2 - t0)), "%.1f" % (n / (t1 - t0)),
                 lat, "%.0f" % (int(mem) / 1024), errs, "%.2f" % (int(cpums) / max(got, 1)), r0, r1]))
EOF
  tail -1 "$RESULTS" | awk -F'\t' '{printf "  %-9s sessions=%-3s size=%-6s delivered=%s/%s  %s msg/s end-to-end (accepted %s msg/s)  latency p50/p99 %s  peak memory (sum of Pss) %s MB  CPU %s ms/msg  source errors %s", $1,$2,$3,$5,$4,$6,$7,$8,$9,$11,$10; if ($12 != "-") printf "  R %s before, %s after", $12, $13; printf "\n"}'
}

# quantiles from a list of seconds on stdin: "p50/p99"
quantiles() { "$PY" -c '
import sys
v = sorted(float(x) for x in sys.stdin.read().split())
q = lambda p: v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")
print("%.3fs/%.3fs" % (q(0.50), q(0.99)) if v else "n/a")'; }

# warmup PORT: one message through the dumping sink; prints its file.
warmup() {
  local before i f
  before=$(ls "$DUMP" | wc -l)
  smtp-source -m 1 -l 2000 -f "$FROM" -t "$TO" 127.0.0.1:"$1" >&2
  for ((i = 0; i < 300; i++)); do (($(ls "$DUMP" | wc -l) > before)) && break; sleep 0.1; done
  sleep 0.3
  f=$(ls -t "$DUMP"/* 2>/dev/null | head -1)
  [ -n "$f" ] || { echo "bench: the warm-up message did not reach the sink" >&2; exit 1; }
  echo "$f"
}

# ============================================================ (a) OpenDKIM
A_PORT="" A_MASTER="" A_DKIM_PID="" A_LOG="" A_LOG_LINE=0
setup_opendkim() {
  echo "== (a) Postfix $(postconf -d -h mail_version) + OpenDKIM $(opendkim -V 2>&1 | head -1 | awk '{print $NF}'), RSA-2048 relaxed/relaxed, DKIM only"
  local D=$W/opendkim; mkdir -p "$D/conf" "$D/queue" "$D/data" "$D/keys"
  chown postfix "$D/data"
  local DKIM_PORT; DKIM_PORT=$(freeport); A_PORT=$(freeport)
  opendkim-genkey -b 2048 -h sha256 -d example.go.jp -s bench -D "$D/keys"
  cat >"$D/opendkim.conf" <<CONF
Syslog                 no
Background             yes
PidFile                $D/opendkim.pid
Mode                   s
Canonicalization       relaxed/relaxed
SignatureAlgorithm     rsa-sha256
Domain                 example.go.jp
Selector               bench
KeyFile                $D/keys/bench.private
Socket                 inet:$DKIM_PORT@127.0.0.1
InternalHosts          127.0.0.1
RequireSafeKeys        false
OversignHeaders        From
CONF
  opendkim -x "$D/opendkim.conf"
  wait_port "$DKIM_PORT" 10
  A_DKIM_PID=$(cat "$D/opendkim.pid")
  PIDS+=("$A_DKIM_PID")

  PF_CONF=$D/conf
  A_LOG=$D/maillog
  cat >"$D/conf/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $D/queue
data_directory = $D/data
myhostname = agency-opendkim.bench.invalid
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
maillog_file = $A_LOG
maillog_file_prefixes = $D
syslog_name = bench-opendkim
relayhost = [127.0.0.1]:$SINK_PORT
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
alias_maps =
alias_database =
local_transport = error:local delivery disabled
smtpd_milters = inet:127.0.0.1:$DKIM_PORT
non_smtpd_milters = \$smtpd_milters
milter_default_action = tempfail
in_flow_delay = 0
default_process_limit = 300
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtp_destination_concurrency_limit = 100
message_size_limit = 52428800
CONF
  # Debian's master.cf, chroot off, smtpd on the bench port.
  sed -e "s/^smtp      inet.*/127.0.0.1:$A_PORT inet n - n - - smtpd/" \
      -e 's/^\([a-z]*  *\(unix\|inet\|unix-dgram\|fifo\|pass\)  *[-ny]  *[-ny]\)  *y /\1 n /' \
      /etc/postfix/master.cf >"$D/conf/master.cf"
  grep -q "^postlog" "$D/conf/master.cf" || echo "postlog unix-dgram n - n - 1 postlogd" >>"$D/conf/master.cf"
  postfix -c "$D/conf" start >/dev/null
  wait_port "$A_PORT" 30
  A_MASTER=$(sed 1q "$D/queue/pid/master.pid" | tr -d ' ')

  # Warm-up, and proof that the baseline signs: its DKIM signature
  # verifies with dkimpy.
  local f; f=$(warmup "$A_PORT")
  "$PY" - "$f" "$D/keys/bench.txt" <<'PYEOF' || { echo "bench: OpenDKIM's signature does not verify" >&2; exit 1; }
import sys, re, dkim
f, txt = sys.argv[1], open(sys.argv[2]).read()
rec = "".join(re.findall(r'"([^"]*)"', txt)).encode()
raw = open(f, "rb").read()
# smtp-sink's dump starts with its own X- and Received fields: drop them.
msg = raw[raw.index(b"DKIM-Signature:"):] if b"DKIM-Signature:" in raw else raw
msg = msg.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
ok = dkim.verify(msg, dnsfunc=lambda name, timeout=5: rec)
print("  warm-up: OpenDKIM's signature (d=example.go.jp s=bench rsa-sha256 relaxed/relaxed) verifies with dkimpy:", ok)
sys.exit(0 if ok else 1)
PYEOF
}
a_pids() { echo "$A_MASTER" "$A_DKIM_PID"; pgrep -P "$A_MASTER"; }
a_lat() {
  case $1 in
    begin) A_LOG_LINE=$(wc -l <"$A_LOG") ;;
    # delay= of each delivery: arrival (with the milter) to the sink's 250.
    end) tail -n +"$((A_LOG_LINE + 1))" "$A_LOG" | grep 'status=sent' | sed 's/.* delay=\([0-9.]*\),.*/\1/' | quantiles ;;
  esac
}

# ============================================================ (b) kakuin
B_PORT="" B_PID="" B_METRICS="" B_DIR=""
setup_kakuin() {
  [ -x "$KAKUIN_BIN" ] || { echo "bench: $KAKUIN_BIN missing (make build)" >&2; exit 2; }
  echo "== (b) kakuin gateway ($KAKUIN_BIN), S/MIME + DKIM (rsa-sha256 + ed25519-sha256), RSA-2048"
  B_DIR=$W/kakuin; mkdir -p "$B_DIR"
  "$KAKUIN_BIN" pki init --dir "$B_DIR/pki" --domain example.go.jp >/dev/null
  local mport; B_PORT=$(freeport); mport=$(freeport); B_METRICS=127.0.0.1:$mport
  # Loopback is a client network here (no AUTH, as the Postfix baseline's
  # mynetworks); the rate and session limits are raised above the load.
  env KAKUIN_PKI_DIR="$B_DIR/pki" KAKUIN_LISTEN="127.0.0.1:$B_PORT" KAKUIN_METRICS_LISTEN="$B_METRICS" \
    KAKUIN_UPSTREAM="smtp://127.0.0.1:$SINK_PORT" KAKUIN_UPSTREAM_PLAINTEXT=true \
    KAKUIN_MAX_SESSIONS=400 KAKUIN_RATE_PER_MINUTE=10000000 KAKUIN_CLIENT_NETWORKS=127.0.0.0/8 ${KAKUIN_BENCH_ENV:-} \
    "$KAKUIN_BIN" gateway >"$B_DIR/gateway.log" 2>&1 &
  B_PID=$!
  PIDS+=("$B_PID")
  wait_port "$B_PORT" 30
  local f; f=$(warmup "$B_PORT")
  if ! grep -q '^DKIM-Signature:' "$f" || ! grep -qi 'multipart/signed' "$f"; then
    echo "bench: kakuin's warm-up message is not sealed:" >&2; head -40 "$f" >&2; exit 1
  fi
  echo "  warm-up: kakuin's message carries S/MIME (multipart/signed) and DKIM-Signature"
}
b_pids() { echo "$B_PID"; }
b_lat() { # the transaction_duration_seconds histogram's change over the run
  case $1 in
    begin) curl -s "http://$B_METRICS/metrics" >"$B_DIR/metrics.before" || true ;;
    end) curl -s "http://$B_METRICS/metrics" >"$B_DIR/metrics.after" || true
      "$PY" - "$B_DIR/metrics.before" "$B_DIR/metrics.after" <<'PYEOF'
import sys, re
def buckets(path):
    b = {}
    for line in open(path):
        m = re.match(r'kakuin_gateway_transaction_duration_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m:
            b[float(m.group(1))] = float(m.group(2))
    return b
a, b = buckets(sys.argv[1]), buckets(sys.argv[2])
d = [(le, b[le] - a.get(le, 0)) for le in sorted(b)]
total = d[-1][1] if d else 0
def q(p):  # linear interpolation inside the bucket, as histogram_quantile does
    want, prev_le, prev_c = p * total, 0.0, 0.0
    for le, c in d:
        if c >= want:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((want - prev_c) / (c - prev_c) if c > prev_c else 0)
        prev_le, prev_c = le, c
    return float("nan")
print("%.3fs/%.3fs" % (q(0.5), q(0.99)) if total else "n/a")
PYEOF
      ;;
  esac
}

# ============================================================ main
case $WHICH in
  opendkim) SYSTEMS="opendkim" ;;
  kakuin) SYSTEMS="kakuin" ;;
  all) SYSTEMS="opendkim kakuin" ;;
  *) echo "usage: $0 [all|opendkim|kakuin]" >&2; exit 2 ;;
esac

echo "bench: $(nproc) CPU(s), $(awk '/MemTotal/ {printf "%.1f GB", $2/1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg) before the run; $MESSAGES messages per run; smtp-source ${BENCH_SOURCE_FLAGS:-(one connection per message)}; $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "bench: RSA-2048 signatures/s on all cores (openssl speed -multi $(nproc)): $(openssl speed -seconds 2 -multi "$(nproc)" rsa2048 2>/dev/null | awk '/^rsa 2048/ {print $6}')"
DUMP=$W/dump
start_sink "$DUMP"
for sys in $SYSTEMS; do "setup_$sys"; done
stop_sink
start_sink
# Interleaved: each configuration runs on (a), then at once on (b), so
# that both see about the same machine load.
for size in $SIZES; do for s in $SESSIONS; do
  for sys in $SYSTEMS; do
    case $sys in
      opendkim) run_load opendkim "$A_PORT" "$s" "$size" a_pids a_lat ;;
      kakuin) run_load kakuin "$B_PORT" "$s" "$size" b_pids b_lat ;;
    esac
  done
done; done
if [ -n "$B_PID" ]; then
  echo "  kakuin VmHWM (peak RSS of the process over all runs): $(($(awk '/^VmHWM:/ {print $2}' /proc/"$B_PID"/status) / 1024)) MB"
fi

# Ratio b/a of end-to-end messages per second, same load, same run.
"$PY" - "$RESULTS" <<'PYEOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
r = {(x[0], x[1], x[2]): x for x in rows}
print("\nsummary (msg/s end to end; b/a = kakuin / Postfix+OpenDKIM)")
print("%-9s %-7s %11s %9s %6s %16s %16s %9s %9s %10s %10s %7s" % ("sessions", "size", "a opendkim", "b kakuin", "b/a", "a p50/p99", "b p50/p99", "a peakMB", "b peakMB", "a CPUms/m", "b CPUms/m", "a/b CPU"))
for (name, s, size), x in sorted(r.items(), key=lambda kv: (int(kv[0][2]), int(kv[0][1]))):
    if name != "opendkim":
        continue
    y = r.get(("kakuin", s, size))
    ratio = "%.2f" % (float(y[5]) / float(x[5])) if y and float(x[5]) > 0 else "-"
    cratio = "%.2f" % (float(x[10]) / float(y[10])) if y and float(y[10]) > 0 else "-"
    print("%-9s %-7s %11s %9s %6s %16s %16s %9s %9s %10s %10s %7s" % (s, size, x[5], y[5] if y else "-", ratio, x[7], y[7] if y else "-", x[8], y[8] if y else "-", x[10], y[10] if y else "-", cratio))
print("CPUms/m: CPU time of the system under test per message (Postfix master, its daemons and OpenDKIM; the kakuin process);")
print("a/b CPU: how many times more CPU (a) spends per message than (b): the machine-load-independent ratio.")
k = [x for x in rows if x[0] == "kakuin" and len(x) > 12 and x[11] != "-" and x[12] != "-"]
if k:
    print("\nkakuin against issue #3's goal, 0.7 x R/2 msg/s (R: RSA-2048 signatures/s on all cores as kakuin makes them, mean of before and after the run)")
    print("%-9s %-7s %9s %15s %7s %8s" % ("sessions", "size", "b kakuin", "R before/after", "x R/2", "goal"))
    for x in sorted(k, key=lambda x: (int(x[2]), int(x[1]))):
        r = (float(x[11]) + float(x[12])) / 2
        v = float(x[5]) / (r / 2)
        print("%-9s %-7s %9s %15s %7.2f %8s" % (x[1], x[2], x[5], x[11] + "/" + x[12], v, "met" if v >= 0.7 else "not met"))
PYEOF
