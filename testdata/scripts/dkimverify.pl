#!/usr/bin/perl
# Verify every DKIM-Signature of messages with Mail::DKIM (Debian
# libmail-dkim-perl), keys from a zone file. Debian 12's Mail::DKIM
# (1.20230212) does not know ed25519-sha256: it reports such a signature as
# "invalid (unsupported algorithm ...)", which RFC 6376 6.1 says to ignore -
# a receiver like that relies on the rsa-sha256 signature (RULES D3).
#
# usage: dkimverify.pl ZONEFILE MESSAGE...
#
# The TXT records are read from ZONEFILE (zone-file syntax, as `kakuin pki
# init` writes DIR/dns.zone) with Net::DNS::ZoneFile and served to
# Mail::DKIM in place of its DNS queries: no network, and exactly the
# records operators are told to publish. Prints, per message, one line per
# signature in the order Mail::DKIM reports them:
#
#     MESSAGE: RESULT a=ALG d=DOMAIN s=SELECTOR [detail]
#
# RESULT being Mail::DKIM's: pass, fail, invalid, temperror, none (the
# format of dkimverify.py otherwise). Exits 0 only if every message has at
# least one signature and every signature passes, 1 otherwise, 2 on a usage
# or zone error.
use strict;
use warnings;

use Mail::DKIM::Verifier;
use Mail::DKIM::DNS;
use Net::DNS::ZoneFile;

@ARGV >= 2 or do { print STDERR "usage: dkimverify.pl ZONEFILE MESSAGE...\n"; exit 2 };
my ($zonefile, @messages) = @ARGV;

my %txt;    # lower-case owner name without the final dot -> [Net::DNS::RR]
my $zone = eval { Net::DNS::ZoneFile->new($zonefile) };
if (!$zone) { print STDERR "zone: $@\n"; exit 2 }
while (my $rr = eval { $zone->read }) {
    next unless $rr->type eq 'TXT';
    push @{ $txt{ lc $rr->owner } }, $rr;
}
if ($@) { print STDERR "zone: $@\n"; exit 2 }

{
    no warnings 'redefine';
    # Mail::DKIM::DNS::query_async calls query: answer from the zone.
    *Mail::DKIM::DNS::query = sub {
        my ($name, $type) = @_;
        $name = lc $name;
        $name =~ s/\.$//;
        my $rrs = $type eq 'TXT' ? $txt{$name} : undef;
        if (!$rrs) { $@ = 'NXDOMAIN'; return () }
        return @$rrs;
    };
}

my $ok = 1;
for my $path (@messages) {
    open(my $fh, '<:raw', $path) or do { print STDERR "$path: $!\n"; exit 2 };
    my $dkim = Mail::DKIM::Verifier->new();
    while (my $line = <$fh>) {
        $line =~ s/\015?\012\z/\015\012/;    # CRLF, as Mail::DKIM expects
        $dkim->PRINT($line);
    }
    close $fh;
    $dkim->CLOSE;
    my @sigs = $dkim->signatures;
    if (!@sigs) { print "$path: fail no DKIM-Signature\n"; $ok = 0; next }
    for my $sig (@sigs) {
        my $res = $sig->result // 'none';
        my $detail = $sig->result_detail // '';
        my $line = sprintf('%s a=%s d=%s s=%s', $res,
            $sig->algorithm // '?', $sig->domain // '?', $sig->selector // '?');
        $line .= " $detail" if $res ne 'pass';
        print "$path: $line\n";
        $ok = 0 if $res ne 'pass';
    }
}
exit($ok ? 0 : 1);
