#!/bin/sh
# Regenerates the interop fixtures of the verifier (see README.md). Run it
# from this directory; it overwrites every fixture. The keys it makes are
# TEST-ONLY keys, committed on purpose so that the fixtures can be
# verified: they sign nothing but these files.
set -eu
cd "$(dirname "$0")"
PY=${KAKUIN_TEST_PYTHON:-/usr/bin/python3}
umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- A throwaway openssl CA: root -> issuing CA -> signer ---------------
mkdir -p smime
cat >"$tmp/ext.cnf" <<'CNF'
[root]
basicConstraints=critical,CA:true
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
[inter]
basicConstraints=critical,CA:true,pathlen:0
keyUsage=critical,keyCertSign,cRLSign
extendedKeyUsage=emailProtection
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[leaf]
basicConstraints=critical,CA:false
keyUsage=critical,digitalSignature,nonRepudiation
extendedKeyUsage=emailProtection
subjectAltName=email:taro@example.go.jp
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[other]
basicConstraints=critical,CA:false
keyUsage=critical,digitalSignature
extendedKeyUsage=emailProtection
subjectAltName=email:jiro@example.go.jp
authorityKeyIdentifier=keyid
CNF
openssl req -x509 -newkey rsa:2048 -nodes -keyout smime/test-only-root.key -out smime/root.pem -days 3650 \
  -subj "/C=JP/O=kakuin interop test/CN=interop test root (openssl)" -extensions root -config /dev/null -extfile "$tmp/ext.cnf" 2>/dev/null \
  || openssl req -x509 -newkey rsa:2048 -nodes -keyout smime/test-only-root.key -out smime/root.pem -days 3650 \
  -subj "/C=JP/O=kakuin interop test/CN=interop test root (openssl)" -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout smime/test-only-issuing.key -out "$tmp/inter.csr" \
  -subj "/C=JP/O=kakuin interop test/CN=interop test issuing CA (openssl)"
openssl x509 -req -in "$tmp/inter.csr" -CA smime/root.pem -CAkey smime/test-only-root.key -CAcreateserial -days 3000 \
  -extfile "$tmp/ext.cnf" -extensions inter -out smime/issuing.pem 2>/dev/null
openssl req -new -newkey rsa:2048 -nodes -keyout smime/test-only-signer.key -out "$tmp/leaf.csr" \
  -subj "/C=JP/O=Ministry of Interop Testing/CN=Taro Yamada"
openssl x509 -req -in "$tmp/leaf.csr" -CA smime/issuing.pem -CAkey smime/test-only-issuing.key -CAcreateserial -days 2000 \
  -extfile "$tmp/ext.cnf" -extensions leaf -out smime/signer.pem 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout smime/test-only-jiro.key -out "$tmp/jiro.csr" \
  -subj "/C=JP/O=Ministry of Interop Testing/CN=Jiro Suzuki"
openssl x509 -req -in "$tmp/jiro.csr" -CA smime/issuing.pem -CAkey smime/test-only-issuing.key -CAcreateserial -days 2000 \
  -extfile "$tmp/ext.cnf" -extensions other -out smime/jiro.pem 2>/dev/null
rm -f smime/*.srl

outer() { # $1 = From address
  printf 'From: Taro Yamada <%s>\r\nTo: Hanako Sato <hanako@example.com>\r\nSubject: Interop test\r\nDate: Thu, 26 Nov 2026 10:00:00 +0900\r\nMessage-ID: <interop-%s@example.go.jp>\r\n' "$1" "$2"
}
printf 'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\nThis message was signed by openssl cms -sign.\r\nIt is only a test.\r\n' >"$tmp/entity"

# Detached (multipart/signed), opaque (signed-data), and one signed with
# a certificate for another address.
{ outer taro@example.go.jp detached
  openssl cms -sign -in "$tmp/entity" -signer smime/signer.pem -inkey smime/test-only-signer.key \
    -certfile smime/issuing.pem -md sha256 -crlfeol; } >smime/openssl-detached.eml
{ outer taro@example.go.jp opaque
  openssl cms -sign -nodetach -in "$tmp/entity" -signer smime/signer.pem -inkey smime/test-only-signer.key \
    -certfile smime/issuing.pem -md sha256 -crlfeol; } >smime/openssl-opaque.eml
{ outer taro@example.go.jp pss
  openssl cms -sign -in "$tmp/entity" -signer smime/signer.pem -inkey smime/test-only-signer.key \
    -certfile smime/issuing.pem -md sha256 -keyopt rsa_padding_mode:pss -crlfeol; } >smime/openssl-pss.eml
{ outer taro@example.go.jp jiro
  openssl cms -sign -in "$tmp/entity" -signer smime/jiro.pem -inkey smime/test-only-jiro.key \
    -certfile smime/issuing.pem -md sha256 -crlfeol; } >smime/openssl-wrong-address.eml

# OpenSSL itself must accept what it made (against the root alone).
for m in detached opaque pss; do
  openssl cms -verify -in smime/openssl-$m.eml -CAfile smime/root.pem -purpose smimesign -out /dev/null 2>/dev/null \
    || { echo "openssl cannot verify smime/openssl-$m.eml" >&2; exit 1; }
done

# --- DKIM keys and records ------------------------------------------------
mkdir -p dkim
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out dkim/test-only-rsa.key 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$tmp/ed.pem"
# dkimpy wants the raw 32-byte ed25519 seed, base64.
openssl pkey -in "$tmp/ed.pem" -outform DER | tail -c 32 | base64 >dkim/test-only-ed25519.seed
rsap=$(openssl pkey -in dkim/test-only-rsa.key -pubout -outform DER | base64 -w0)
edp=$(openssl pkey -in "$tmp/ed.pem" -pubout -outform DER | tail -c 32 | base64 -w0)
split() { printf '%s' "$1" | fold -w 250 | sed 's/.*/"&"/' | tr '\n' ' '; }
{
  echo "; DKIM key records of the interop fixtures (TEST-ONLY keys in this directory)."
  echo "dkimpy._domainkey.example.go.jp. 300 IN TXT $(split "v=DKIM1; k=rsa; p=$rsap")"
  echo "maildkim._domainkey.example.go.jp. 300 IN TXT $(split "v=DKIM1; k=rsa; p=$rsap")"
  echo "dkimpy-ed._domainkey.example.go.jp. 300 IN TXT \"v=DKIM1; k=ed25519; p=$edp\""
  echo "; RFC 8463 appendix A.2 (the published example keys)"
  echo "brisbane._domainkey.football.example.com. 300 IN TXT \"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\""
  echo "test._domainkey.football.example.com. 300 IN TXT \"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB\""
} >dkim/dkim.zone

plain="$tmp/plain.eml"
{ outer taro@example.go.jp plain; printf '\r\nA plain message, DKIM-signed by another implementation.\r\n'; } >"$plain"

# dkimpy: rsa-sha256 and ed25519-sha256, relaxed/relaxed.
dkimpy() { # in out selector alg keyfile
  "$PY" - "$@" <<'PYEOF'
import sys, base64, dkim
src, dst, sel, alg, keyfile = sys.argv[1:6]
msg = open(src, 'rb').read()
key = open(keyfile, 'rb').read()
if alg == 'ed25519-sha256':
    key = key.strip()
hdrs = [b'from', b'from', b'to', b'subject', b'subject', b'date', b'message-id', b'mime-version', b'content-type', b'content-transfer-encoding']
sig = dkim.sign(msg, sel.encode(), b'example.go.jp', key, canonicalize=(b'relaxed', b'relaxed'),
                signature_algorithm=alg.encode(), include_headers=hdrs)
open(dst, 'wb').write(sig + msg)
PYEOF
}
dkimpy "$plain" dkim/dkimpy-rsa.eml dkimpy rsa-sha256 dkim/test-only-rsa.key
dkimpy "$plain" dkim/dkimpy-ed25519.eml dkimpy-ed ed25519-sha256 dkim/test-only-ed25519.seed

# Mail::DKIM (Debian libmail-dkim-perl): rsa-sha256, relaxed.
perl -MMail::DKIM::Signer -MMail::DKIM::TextWrap -e '
  my ($in, $out, $key) = @ARGV;
  my $dkim = Mail::DKIM::Signer->new(Algorithm => "rsa-sha256", Method => "relaxed", Domain => "example.go.jp",
    Selector => "maildkim", KeyFile => $key, Headers => "from:to:subject:date:message-id");
  open my $fh, "<", $in or die; binmode $fh; my $msg = do { local $/; <$fh> }; close $fh;
  $dkim->PRINT($msg); $dkim->CLOSE;
  open my $o, ">", $out or die; binmode $o;
  (my $sig = $dkim->signature->as_string) =~ s/\r?\n/\r\n/g;
  print $o $sig, "\r\n", $msg; close $o;
' "$plain" dkim/maildkim-rsa.eml dkim/test-only-rsa.key

# A genuine message made entirely by other tools: openssl S/MIME, then
# dkimpy DKIM with both algorithms over the result.
dkimpy smime/openssl-detached.eml "$tmp/g1" dkimpy rsa-sha256 dkim/test-only-rsa.key
dkimpy "$tmp/g1" genuine-openssl-dkimpy.eml dkimpy-ed ed25519-sha256 dkim/test-only-ed25519.seed

chmod 0600 smime/test-only-*.key dkim/test-only-*
chmod 0644 smime/*.pem smime/*.eml dkim/*.eml dkim/dkim.zone genuine-openssl-dkimpy.eml
echo "fixtures written"
