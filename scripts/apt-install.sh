#!/usr/bin/env bash
# apt-install PKG...: install the Debian packages that are missing, once,
# non-interactively; silent when everything is there. Used by make deps
# and make bench-deps.
set -euo pipefail
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing from Debian: ${missing[*]}"
# Postfix without a system instance: tests run private instances (POSTFIX-IN-TESTS.md).
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
