#!/usr/bin/python3
"""Verify every DKIM-Signature of a message with dkimpy, keys from a zone file.

usage: dkimverify.py ZONEFILE < message
       dkimverify.py ZONEFILE MESSAGE...

The TXT records are read from ZONEFILE (zone-file syntax, as `kakuin pki
init` writes DIR/dns.zone) with dnspython and served to dkimpy through its
dnsfunc hook: no network, and exactly the records operators are told to
publish. Prints one line per signature, topmost first:

    pass|fail a=ALG d=DOMAIN s=SELECTOR [reason]

prefixed with "MESSAGE: " when messages are named on the command line (one
Python start for several messages), and exits 0 only if every message has
at least one signature and every signature passes, 1 if any fails, 2 on a
usage or zone error.
"""
import sys

import dkim
import dns.name
import dns.rdatatype
import dns.zone


def load_txt(path):
    with open(path, encoding="ascii") as f:
        text = f.read()
    # A fragment of a zone: no SOA or NS at an origin, absolute names or
    # names relative to its $ORIGIN.
    zone = dns.zone.from_text(text, origin=dns.name.root, relativize=False,
                              check_origin=False)
    records = {}
    for name, rdataset in zone.iterate_rdatasets(dns.rdatatype.TXT):
        key = name.to_text().lower()
        for rdata in rdataset:
            # RFC 6376 3.6.2.2: the character-strings are concatenated.
            records.setdefault(key, []).append(b"".join(rdata.strings))
    return records


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        records = load_txt(sys.argv[1])
    except Exception as e:  # noqa: BLE001 - any zone problem is a usage error
        print("zone: %s" % e, file=sys.stderr)
        return 2

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        name = name.lower()
        if not name.endswith("."):
            name += "."
        txts = records.get(name)
        if not txts:
            return None
        return txts[0]

    def check(msg, prefix):
        d = dkim.DKIM(msg)
        sigs = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
        if not sigs:
            print(prefix + "fail no DKIM-Signature")
            return False
        ok = True
        for i, raw in enumerate(sigs):
            tags = dkim.util.parse_tag_value(b"".join(raw.split()))
            desc = "a=%s d=%s s=%s" % tuple(tags.get(t, b"?").decode() for t in (b"a", b"d", b"s"))
            try:
                res = dkim.DKIM(msg).verify(idx=i, dnsfunc=dnsfunc)
                reason = ""
            except dkim.DKIMException as e:
                res, reason = False, " " + str(e).replace("\n", " ")
            print(prefix + ("pass " if res else "fail ") + desc + reason)
            ok = ok and res
        return ok

    if len(sys.argv) == 2:
        ok = check(sys.stdin.buffer.read(), "")
    else:
        ok = True
        for path in sys.argv[2:]:
            with open(path, "rb") as f:
                ok = check(f.read(), path + ": ") and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
