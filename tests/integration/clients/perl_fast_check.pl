#!/usr/bin/perl
# perl_fast_check: a fixed script of operations through Perl's
# Cache::Memcached::Fast (Debian's libcache-memcached-fast-perl) against one
# address, one line per operation on stdout.
#
#   perl perl_fast_check.pl HOST:PORT
#
# The output is deterministic for a given server behaviour (CAS ids are
# masked, maps printed in key order), so two runs, one straight to memcached
# and one through memrelay, must print the same lines. The *_multi calls
# pipeline their commands on one connection; a second client uses noreply.
use strict;
use warnings;

use Cache::Memcached::Fast;
use Digest::MD5 qw(md5_hex);

@ARGV == 1 && $ARGV[0] =~ /^.+:\d+$/ or die "usage: perl perl_fast_check.pl HOST:PORT\n";
my $addr = $ARGV[0];
$| = 1;

sub client {
    my (%extra) = @_;
    return Cache::Memcached::Fast->new({
        servers         => [ { address => $addr, %extra } ],
        connect_timeout => 5,
        io_timeout      => 5,
        max_failures    => 0,
        utf8            => 0,
    });
}
my $m = client();

sub say_ {
    my ($step, $result) = @_;
    print "$step: $result\n";
}

# A value: quoted with \xNN escapes when short, length and digest when long.
sub show {
    my ($v) = @_;
    return "undef" unless defined $v;
    return ref($v) . "(...)" if ref $v;
    return sprintf("len=%d md5=%s", length($v), md5_hex($v)) if length($v) > 64;
    my $out = join '', map {
        my $o = ord;
        $_ eq '"' || $_ eq '\\' ? "\\$_" : ($o < 0x20 || $o > 0x7e) ? sprintf('\\x%02x', $o) : $_
    } split //, $v;
    return "\"$out\"";
}

# A boolean result (true / false / undef for an error) in the script's words.
# Call it with scalar(...): in list context the client returns () for an error.
sub word {
    my ($r, $false) = @_;
    return "error" unless defined $r;
    return $r ? "ok" : $false;
}

sub get {
    my ($step, $key) = @_;
    my $v = $m->get($key);
    say_($step, defined $v ? show($v) : "miss");
    return $v;
}

sub number {
    my ($step, $r) = @_;
    say_($step, !defined $r ? "error" : !$r ? "notfound" : $r eq "0E0" ? "0" : $r);
}

# n bytes of a fixed pseudo-random sequence (the same LCG as the other drivers)
sub pattern {
    my ($n, $x) = @_;
    my $out = '';
    for (1 .. $n) {
        $x = ($x * 1103515245 + 12345) % 4294967296;
        $out .= chr(($x >> 16) & 0xff);
    }
    return $out;
}

sub multi_line {
    my ($h, $keys) = @_;
    my $right = grep { defined $h->{ $keys->[$_] } && $h->{ $keys->[$_] } eq "value-$_" } 0 .. $#$keys;
    return scalar(keys %$h) . " hits, $right right";
}

sub digest {
    my ($h) = @_;
    return md5_hex(join '', map { "$_=$h->{$_};" } sort keys %$h);
}

# set / get / delete
say_("set a", word(scalar($m->set("eco:a", "1")), "notstored"));
get("get a", "eco:a");
get("get missing", "eco:missing");
say_("delete a", word(scalar($m->delete("eco:a")), "notfound"));
say_("delete a again", word(scalar($m->delete("eco:a")), "notfound"));
get("get a after delete", "eco:a");
say_("set empty value", word(scalar($m->set("eco:empty", "")), "notstored"));
get("get empty value", "eco:empty");
say_("set hash (serialized)", word(scalar($m->set("eco:ref", { x => 1, y => [ 2, 3 ] })), "notstored"));
my $ref = $m->get("eco:ref");
say_("get hash (serialized)", ref $ref eq 'HASH' ? "x=$ref->{x} y=@{$ref->{y}}" : show($ref));

# get-multi: 100 keys, 60 stored (the first two of every five missing, the last key stored), 40 never stored
my @keys = map { "eco:gm:$_" } 0 .. 99;
my $stored = grep { $_ % 5 >= 2 && $m->set($keys[$_], "value-$_") } 0 .. 99;
say_("getmulti set 60", "$stored stored");
my $h = $m->get_multi(@keys);
say_("getmulti 100 keys", multi_line($h, \@keys));
say_("getmulti digest", digest($h));
$h = $m->gets_multi(@keys);
say_("gets_multi 100 keys", scalar(keys %$h) . " hits, "
    . (grep({ ref $h->{$_} eq 'ARRAY' && $h->{$_}[0] } keys %$h) . " with cas"));
my @sm = map { [ "eco:sm:$_", chr(65 + $_ % 26) x ($_ + 1) ] } 0 .. 49;
my @r = $m->set_multi(@sm);
say_("set_multi 50", scalar(grep { $_ } @r) . " ok");
$h = $m->get_multi(map { $_->[0] } @sm);
say_("get_multi after set_multi", scalar(keys %$h) . " hits, "
    . (grep({ ($h->{ $_->[0] } // '') eq $_->[1] } @sm) . " right"));
@r = $m->delete_multi((map { $_->[0] } @sm[ 0 .. 9 ]), "eco:sm:none");
say_("delete_multi 10 + 1 missing", join ",", map { word($_, "notfound") } @r);
@r = $m->add_multi([ "eco:sm:0", "new" ], [ "eco:sm:10", "new" ]);
say_("add_multi gone + existing", join ",", map { word($_, "notstored") } @r);

# noreply: a client whose void-context commands ask for no reply
my $nr = client(noreply => 1);
$nr->set("eco:nr:$_", "nr-$_") for 0 .. 19;
$nr->delete("eco:nr:3");
$nr->append("eco:nr:4", "+");
$nr->incr("eco:nr:5");
$h = $nr->get_multi(map { "eco:nr:$_" } 0 .. 19);
say_("noreply sets then get_multi", scalar(keys %$h) . " hits, nr:4=" . show($h->{"eco:nr:4"})
    . " nr:5=" . show($h->{"eco:nr:5"}));

# incr / decr
say_("set n 10", word(scalar($m->set("eco:n", "10")), "notstored"));
number("incr n 5", scalar($m->incr("eco:n", 5)));
number("decr n 20", scalar($m->decr("eco:n", 20)));
number("incr n 2^64-1", scalar($m->incr("eco:n", "18446744073709551615")));
number("incr n wraps", scalar($m->incr("eco:n", 1)));
number("incr missing", scalar($m->incr("eco:nmissing", 1)));
$m->set("eco:text", "abc");
number("incr non-numeric", scalar($m->incr("eco:text", 1)));
@r = $m->incr_multi("eco:n", [ "eco:n", 10 ], [ "eco:nmissing", 1 ]);
say_("incr_multi", join ",", map { !defined $_ ? "error" : !$_ ? "notfound" : $_ eq "0E0" ? "0" : $_ } @r);

# add / replace / append / prepend
say_("add new", word(scalar($m->add("eco:k", "b")), "notstored"));
say_("add existing", word(scalar($m->add("eco:k", "x")), "notstored"));
say_("replace existing", word(scalar($m->replace("eco:k", "c")), "notstored"));
say_("replace missing", word(scalar($m->replace("eco:kmissing", "x")), "notstored"));
say_("append k", word(scalar($m->append("eco:k", "d")), "notstored"));
say_("prepend k", word(scalar($m->prepend("eco:k", "a")), "notstored"));
get("get k after append/prepend", "eco:k");
say_("append missing", word(scalar($m->append("eco:kmissing", "x")), "notstored"));
say_("prepend missing", word(scalar($m->prepend("eco:kmissing", "x")), "notstored"));

# cas: gets, a swap with the token, a swap with the now stale token
$m->set("eco:c", "x");
my $g = $m->gets("eco:c");
if (!$g) {
    say_("gets c", "miss");
} else {
    say_("gets c", show($g->[1]) . " cas=" . ($g->[0] ? "set" : "zero"));
    # cas answers false for EXISTS and NOT_FOUND alike
    say_("cas c with its token", word(scalar($m->cas("eco:c", $g->[0], "y")), "false"));
    say_("cas c with a stale token", word(scalar($m->cas("eco:c", $g->[0], "z")), "false"));
    get("get c after cas", "eco:c");
    $m->delete("eco:c");
    say_("cas c after delete", word(scalar($m->cas("eco:c", $g->[0], "w")), "false"));
}

# touch, gat, gats
say_("set t", word(scalar($m->set("eco:t", "x", 1000)), "notstored"));
say_("touch t", word(scalar($m->touch("eco:t", 2000)), "notfound"));
say_("touch missing", word(scalar($m->touch("eco:tmissing", 10)), "notfound"));
get("get t after touch", "eco:t");
my $v = $m->gat(3000, "eco:t");
say_("gat t", defined $v ? show($v) : "miss");
$v = $m->gat(3000, "eco:tmissing");
say_("gat missing", defined $v ? show($v) : "miss");
$g = $m->gats(3000, "eco:t");
say_("gats t", $g ? show($g->[1]) . " cas=" . ($g->[0] ? "set" : "zero") : "miss");
$h = $m->gat_multi(3000, @keys);
say_("gat_multi 100 keys", multi_line($h, \@keys));
@r = $m->touch_multi([ "eco:t", 100 ], [ "eco:tmissing", 100 ], ["eco:k"]);
say_("touch_multi", join ",", map { word($_, "notfound") } @r);

# a large value (about 500 KB) and binary bytes
my $big = pattern(500000, 7);
say_("set big (500000 bytes)", word(scalar($m->set("eco:big", $big)), "notstored"));
$v = $m->get("eco:big");
say_("get big", defined $v ? show($v) . " same=" . ($v eq $big ? "true" : "false") : "miss");
my $bin = join '', map { chr } 0 .. 255;
say_("set all 256 byte values", word(scalar($m->set("eco:bin", $bin)), "notstored"));
$v = $m->get("eco:bin");
say_("get all 256 byte values", defined $v ? show($v) . " same=" . ($v eq $bin ? "true" : "false") : "miss");
say_("set value with CRLF END", word(scalar($m->set("eco:crlf", "line\r\nEND\r\nVALUE x 0 1\r\n")), "notstored"));
get("get value with CRLF END", "eco:crlf");

# keys with odd but legal bytes
my @odd = (
    "eco:punct!#\$%&'()*+,-./:;<=>?\@[\\]^_`{|}~",
    "eco:" . ("k" x 246),
    "\"quoted\"",
    "END",
    "VALUE",
    "eco:\xc3\xa9t\xc3\xa9",
    "eco:\xff\x80\x7f",
);
say_("set odd key $_", word(scalar($m->set($odd[$_], "odd-$_")), "notstored")) for 0 .. $#odd;
get("get odd key $_", $odd[$_]) for 0 .. $#odd;
$h = $m->get_multi(@odd);
say_("get_multi odd keys", scalar(keys %$h) . " hits, " . (grep({ ($h->{ $odd[$_] } // '') eq "odd-$_" } 0 .. $#odd) . " right"));

# the connection is still good after all that
get("get k final", "eco:k");
