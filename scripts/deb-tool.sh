#!/usr/bin/env bash
# deb-tool.sh PACKAGE PATH DEST: put the program at PATH inside the Debian
# package PACKAGE at DEST, without installing the package: for a tool
# whose package would also enable and start a service (promtool comes with
# the Prometheus server). Quiet when DEST is there already.
set -euo pipefail
pkg=$1 path=$2 dest=$3
[ -x "$dest" ] && exit 0
echo "extracting $path from Debian's $pkg into $dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
if ! apt-get download -qq "$pkg" 2>/dev/null; then
  apt-get update -qq
  apt-get download -qq "$pkg"
fi
dpkg-deb -x ./"$pkg"_*.deb root
cd - >/dev/null
install -D -m 0755 "$tmp/root/$path" "$dest"
