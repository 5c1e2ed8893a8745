#!/usr/bin/env bash
# scripts/thunderbird-check.sh: what a citizen sees. Signs a message with a
# fresh development PKI (`kakuin sign`), makes a copy whose body was altered
# after signing, opens each in Debian's Thunderbird under Xvfb (a profile
# that trusts the development root, as a citizen's trusts the government
# root), opens the S/MIME security panel, and reads it (tesseract OCR):
#   the signed message must say "Message Is Signed ... valid digital
#   signature ... has not been altered", the altered one "Not Valid".
# Screenshots and the OCR text stay in OUT (default var/mua-check).
#
# usage: scripts/thunderbird-check.sh      (make mua-check; root, for the
#        Debian packages; not part of make test: a GUI is slow and its
#        layout changes between Thunderbird releases)
#
# The button is found by position in a window of fixed size: Thunderbird
# 140-153 (Debian 12) puts the S/MIME button at the right end of the
# subject line. Everything runs on a private X display and stops by itself.
set -euo pipefail

KAKUIN_BIN=${KAKUIN_BIN:-bin/kakuin}
OUT=${OUT:-var/mua-check}
[ -x "$KAKUIN_BIN" ] || { echo "thunderbird-check: $KAKUIN_BIN not built (make build)" >&2; exit 2; }
# ImageMagick's own convert (a machine may have another one first on PATH).
CONVERT=${CONVERT:-$(command -v /usr/bin/convert || command -v convert || true)}
for t in thunderbird Xvfb xdotool xwd "$CONVERT" tesseract certutil; do
  command -v "$t" >/dev/null || { echo "thunderbird-check: $t missing (make mua-check installs it)" >&2; exit 2; }
done

rm -rf "$OUT"; mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
W=$(mktemp -d)
XPID="" TPID=""
cleanup() {
  [ -n "$TPID" ] && kill "$TPID" 2>/dev/null || true
  [ -n "$XPID" ] && kill "$XPID" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

# The message: invented sender and recipient, Japanese and English text.
"$KAKUIN_BIN" pki init --dir "$W/pki" --domain example.go.jp >/dev/null
printf '%s\r\n' \
  'From: Yamada Hanako <hanako.yamada@example.go.jp>' \
  'To: citizen@example.com' \
  'Subject: kakuin seal check' \
  "Date: $(date -R)" \
  'MIME-Version: 1.0' \
  'Content-Type: text/plain; charset=UTF-8' \
  'Content-Transfer-Encoding: 8bit' \
  '' \
  'この通知は kakuin のテストです。This is a test notice sealed by kakuin.' >"$W/msg.txt"
KAKUIN_PKI_DIR=$W/pki "$KAKUIN_BIN" sign <"$W/msg.txt" >"$OUT/signed.eml"
sed -e 's/This is a test notice/This is a fake notice/' \
    -e 's/^Subject: kakuin seal check/Subject: kakuin altered check/' "$OUT/signed.eml" >"$OUT/altered.eml"
grep -q 'fake notice' "$OUT/altered.eml"

# A profile that trusts the development root for S/MIME and skips the
# first-run screens.
P=$W/profile; mkdir -p "$P"
cat >"$P/user.js" <<'EOF'
user_pref("mail.shell.checkDefaultClient", false);
user_pref("mailnews.start_page.enabled", false);
user_pref("app.update.enabled", false);
user_pref("mail.provider.enabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
EOF
certutil -N -d "sql:$P" --empty-password
certutil -A -d "sql:$P" -n "kakuin development root" -t "C,C,C" -i "$W/pki/trust-anchors.pem"

# A free display number.
D=90; while [ -e "/tmp/.X11-unix/X$D" ] || [ -e "/tmp/.X$D-lock" ]; do D=$((D + 1)); done
Xvfb ":$D" -screen 0 1280x900x24 -nolisten tcp >/dev/null 2>&1 & XPID=$!
export DISPLAY=:$D
for _ in $(seq 50); do xdotool getdisplaygeometry >/dev/null 2>&1 && break; sleep 0.2; done

# wait_window TITLE: the id of the visible window whose name contains
# TITLE, within 60 s.
wait_window() {
  for _ in $(seq 120); do
    id=$(xdotool search --onlyvisible --name "$1" 2>/dev/null | head -1 || true)
    [ -n "$id" ] && { echo "$id"; return 0; }
    sleep 0.5
  done
  return 1
}

# panel NAME SUBJECT: opens OUT/NAME.eml, clicks the S/MIME button, saves
# the security panel as OUT/NAME-panel.png and its text as OUT/NAME-panel.txt.
panel() {
  HOME=$W thunderbird --no-remote --profile "$P" -file "$OUT/$1.eml" >"$W/$1.log" 2>&1 & TPID=$!
  win=$(wait_window "$2") || { echo "thunderbird-check: no window for $1.eml" >&2; tail -5 "$W/$1.log" >&2; return 1; }
  xdotool windowmove "$win" 0 0 windowsize "$win" 1200 850 windowraise "$win"
  sleep 3
  xwd -root -silent | "$CONVERT" xwd:- "$OUT/$1-window.png"
  xdotool mousemove 1150 147 click 1
  # The panel is a small window of its own, named Thunderbird.
  pop=""
  for _ in $(seq 40); do
    for id in $(xdotool search --onlyvisible --name '^Thunderbird$' 2>/dev/null || true); do
      geo=$(xdotool getwindowgeometry "$id" | awk '/Geometry/ {print $2}')
      w=${geo%x*}; h=${geo#*x}
      if [ "$w" -gt 300 ] && [ "$w" -lt 800 ] && [ "$h" -gt 200 ] && [ "$h" -lt 700 ]; then pop=$id; fi
    done
    [ -n "$pop" ] && break
    sleep 0.25
  done
  [ -n "$pop" ] || { echo "thunderbird-check: no security panel for $1.eml" >&2; return 1; }
  sleep 1
  xwd -id "$pop" -silent | "$CONVERT" xwd:- "$OUT/$1-panel.png"
  tesseract "$OUT/$1-panel.png" - 2>/dev/null | tr -s ' \n' ' ' >"$OUT/$1-panel.txt"
  kill "$TPID" 2>/dev/null || true; wait "$TPID" 2>/dev/null || true; TPID=""
}

fail=0
panel signed "kakuin seal check -"
if grep -qi 'Message Is Signed' "$OUT/signed-panel.txt" && grep -qi 'valid digital signature' "$OUT/signed-panel.txt" &&
   grep -qi 'has not been altered' "$OUT/signed-panel.txt" && grep -qi 'hanako.yamada@example.go.jp' "$OUT/signed-panel.txt"; then
  echo "thunderbird-check: signed message: Thunderbird says the signature is valid: $(cut -c1-160 "$OUT/signed-panel.txt")"
else
  echo "thunderbird-check: signed message: Thunderbird does not say valid: $(cat "$OUT/signed-panel.txt")" >&2; fail=1
fi
panel altered "kakuin altered check -"
if grep -qi 'Not Valid' "$OUT/altered-panel.txt" && ! grep -qi 'Message Is Signed' "$OUT/altered-panel.txt"; then
  echo "thunderbird-check: altered message: Thunderbird says the signature is not valid: $(cut -c1-160 "$OUT/altered-panel.txt")"
else
  echo "thunderbird-check: altered message: Thunderbird does not say invalid: $(cat "$OUT/altered-panel.txt")" >&2; fail=1
fi
echo "thunderbird-check: Thunderbird $(thunderbird --version 2>/dev/null | awk '{print $NF}'); screenshots and text in $OUT"
exit $fail
