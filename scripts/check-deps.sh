#!/usr/bin/env bash
# check-deps: imports point inward (ARCHITECTURE.md, STYLE.md).
#   smtpgw -> signer -> pki; verify -> pki; nothing imports cmd;
#   govdomain and rfc5322 are leaves anyone may use;
#   only cmd/ imports caarlos0/env; only verify/lookup(/...) imports miekg/dns.
# Non-test imports only: tests may use whatever real peer fits.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
fail=0
while read -r pkg imports; do
  rel=${pkg#"$mod"}; rel=${rel#/}
  case "$rel" in
    govdomain|rfc5322|signer/mime7bit) allowed='^$' ;;
    pki|pki/*)        allowed='^(govdomain|pki(/.*)?)$' ;;
    signer|signer/*)  allowed='^(govdomain|rfc5322|pki|signer(/.*)?)$' ;;
    verify|verify/*)  allowed='^(govdomain|rfc5322|pki(/.*)?|verify(/.*)?)$' ;;
    smtpgw|smtpgw/*)  allowed='^(govdomain|rfc5322|pki|signer|smtpgw(/.*)?)$' ;;
    cmd/*|deploy|deploy/*) allowed='.' ;;
    *) echo "check-deps: $rel has no rule: add one"; fail=1; continue ;;
  esac
  for imp in $imports; do
    case "$imp" in
      "$mod"/*)
        dep=${imp#"$mod"/}
        case "$dep" in cmd/*) echo "check-deps: $rel imports $dep (nothing imports cmd)"; fail=1; continue ;; esac
        [[ "$dep" =~ $allowed ]] || { echo "check-deps: $rel must not import $dep"; fail=1; } ;;
      github.com/caarlos0/env*)
        [[ "$rel" == cmd/* ]] || { echo "check-deps: only cmd/ reads the environment ($rel imports $imp)"; fail=1; } ;;
      github.com/miekg/dns*)
        [[ "$rel" == verify/lookup* ]] || { echo "check-deps: only verify/lookup imports miekg/dns ($rel)"; fail=1; } ;;
    esac
  done
done < <(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./...)
[ "$fail" = 0 ] && echo "check-deps: ok"
exit "$fail"
