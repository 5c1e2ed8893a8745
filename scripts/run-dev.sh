#!/bin/sh
# run-dev.sh: `make run`. Starts the gateway on 127.0.0.1:2525 with the
# development PKI (created under ./var/pki on first run) and the Maildir
# ./var/outbox as its upstream, and prints a command that sends a test
# message through it and commands that check the result.
#
# Every KAKUIN_* variable set in the environment wins over these defaults
# (see `bin/kakuin gateway --help`).
set -eu
cd "$(dirname "$0")/.."
KAKUIN=${KAKUIN:-./bin/kakuin}
[ -x "$KAKUIN" ] || { echo "run-dev.sh: $KAKUIN not built; run make build" >&2; exit 2; }

: "${KAKUIN_PKI_DIR:=var/pki}"
: "${KAKUIN_LISTEN:=127.0.0.1:2525}"
: "${KAKUIN_METRICS_LISTEN:=127.0.0.1:9125}"
: "${KAKUIN_CLIENT_NETWORKS:=127.0.0.0/8,::1/128}"
: "${KAKUIN_UPSTREAM:=maildir:var/outbox}"
export KAKUIN_PKI_DIR KAKUIN_LISTEN KAKUIN_METRICS_LISTEN KAKUIN_CLIENT_NETWORKS KAKUIN_UPSTREAM
DOMAIN=${KAKUIN_DEV_DOMAIN:-example.go.jp}

if [ ! -f "$KAKUIN_PKI_DIR/trust-anchors.pem" ]; then
	echo "run-dev.sh: creating the development PKI in $KAKUIN_PKI_DIR (domain $DOMAIN)"
	"$KAKUIN" pki init --dir "$KAKUIN_PKI_DIR" --domain "$DOMAIN"
fi
outbox=${KAKUIN_UPSTREAM#maildir:}
[ "$outbox" != "$KAKUIN_UPSTREAM" ] && mkdir -p "$outbox"

host=${KAKUIN_LISTEN%:*}
port=${KAKUIN_LISTEN##*:}
cat <<MSG

kakuin gateway on $KAKUIN_LISTEN (clients $KAKUIN_CLIENT_NETWORKS), upstream $KAKUIN_UPSTREAM,
metrics on http://$KAKUIN_METRICS_LISTEN/metrics (/healthz, /readyz). Ctrl-C stops it.

Send a test message (in another terminal):

  swaks --server $host --port $port --tls --tls-ca-path $KAKUIN_PKI_DIR/trust-anchors.pem \\
    --from taro@$DOMAIN --to citizen@example.com \\
    --header 'Subject: kakuin test' --body 'Hello from the development gateway.'

Check the signed result (the newest file in the outbox):

  m=\$(ls -t $outbox/new/* | head -1)
  $KAKUIN verify --offline --trust-anchors $KAKUIN_PKI_DIR/trust-anchors.pem --zone $KAKUIN_PKI_DIR/dns.zone "\$m"
  openssl cms -verify -CAfile $KAKUIN_PKI_DIR/trust-anchors.pem -purpose smimesign -in "\$m" >/dev/null
  /usr/bin/python3 testdata/scripts/dkimverify.py $KAKUIN_PKI_DIR/dns.zone "\$m"

($DOMAIN is not in the public DNS, so --zone gives kakuin verify the records of
$KAKUIN_PKI_DIR/dns.zone, the ones you would publish. openssl checks the S/MIME
signature against the development root; dkimverify.py checks both DKIM
signatures with dkimpy against the same records.)

MSG
exec "$KAKUIN" gateway
