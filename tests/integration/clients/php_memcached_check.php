<?php
// php_memcached_check: a fixed script of operations through PHP's memcached
// extension (Debian's php-memcached, on libmemcached) in text mode, against
// one address, one line per operation on stdout; then PHP session storage
// (session.save_handler=memcached, also in text mode) on the same address.
//
//   php php_memcached_check.php HOST:PORT
//
// The output is deterministic for a given server behaviour (CAS ids are
// masked, maps printed in key order), so two runs, one straight to memcached
// and one through memrelay, must print the same lines.

// Sessions refuse to start once output has gone out ("headers already
// sent"); buffered, everything is printed at exit, a fatal error included.
ob_start();

if ($argc != 2 || !preg_match('/^(.+):(\d+)$/', $argv[1], $hp)) {
    fwrite(STDERR, "usage: php php_memcached_check.php HOST:PORT\n");
    exit(2);
}
$host = $hp[1];
$port = (int)$hp[2];

function say($step, $result)
{
    echo $step, ": ", $result, "\n";
}

// A value: quoted with \xNN escapes when short, length and digest when long.
function show($v)
{
    if (!is_string($v)) {
        return gettype($v) . "(" . var_export($v, true) . ")";
    }
    if (strlen($v) > 64) {
        return sprintf("len=%d md5=%s", strlen($v), md5($v));
    }
    $out = '"';
    for ($i = 0; $i < strlen($v); $i++) {
        $c = $v[$i];
        $o = ord($c);
        if ($c === '"' || $c === '\\') {
            $out .= '\\' . $c;
        } elseif ($o < 0x20 || $o > 0x7e) {
            $out .= sprintf('\\x%02x', $o);
        } else {
            $out .= $c;
        }
    }
    return $out . '"';
}

$RES = [];
foreach ((new ReflectionClass('Memcached'))->getConstants() as $name => $value) {
    if (strncmp($name, 'RES_', 4) === 0 && !isset($RES[$value])) {
        $RES[$value] = $name;
    }
}

// The result of the last call in the script's words.
function word($m, $miss = "notfound")
{
    global $RES;
    $code = $m->getResultCode();
    switch ($code) {
        case Memcached::RES_SUCCESS:
            return "ok";
        case Memcached::RES_NOTFOUND:
            return $miss;
        case Memcached::RES_NOTSTORED:
            return "notstored";
        case Memcached::RES_DATA_EXISTS:
            return "exists";
    }
    return "error(" . ($RES[$code] ?? $code) . ": " . $m->getResultMessage() . ")";
}

function client($host, $port)
{
    $m = new Memcached();
    $m->setOptions([
        Memcached::OPT_BINARY_PROTOCOL => false,
        Memcached::OPT_COMPRESSION => false,
        Memcached::OPT_TCP_NODELAY => true,
        Memcached::OPT_CONNECT_TIMEOUT => 5000,
        Memcached::OPT_POLL_TIMEOUT => 5000,
        Memcached::OPT_SEND_TIMEOUT => 5000000,
        Memcached::OPT_RECV_TIMEOUT => 5000000,
    ]);
    $m->addServer($host, $port);
    return $m;
}

function get($m, $step, $key)
{
    $v = $m->get($key);
    $w = word($m, "miss");
    say($step, $w === "ok" ? show($v) : $w);
    return $v;
}

function number($m, $step, $v)
{
    say($step, $v === false ? word($m) : (string)$v);
}

function pattern($n, $seed)
{
    // n bytes of a fixed pseudo-random sequence (the same LCG as the other drivers)
    $out = '';
    $x = $seed;
    for ($i = 0; $i < $n; $i++) {
        $x = ($x * 1103515245 + 12345) & 0xffffffff;
        $out .= chr(($x >> 16) & 0xff);
    }
    return $out;
}

$m = client($host, $port);
say("binary protocol", $m->getOption(Memcached::OPT_BINARY_PROTOCOL) ? "on" : "off");
say("compression", $m->getOption(Memcached::OPT_COMPRESSION) ? "on" : "off");

// set / get / delete
$m->set("eco:a", "1");
say("set a", word($m));
get($m, "get a", "eco:a");
get($m, "get missing", "eco:missing");
$m->delete("eco:a");
say("delete a", word($m));
$m->delete("eco:a");
say("delete a again", word($m));
get($m, "get a after delete", "eco:a");
$m->set("eco:empty", "");
say("set empty value", word($m));
get($m, "get empty value", "eco:empty");
$m->set("eco:int", 12345);
say("set integer", word($m));
get($m, "get integer", "eco:int");
$m->set("eco:array", ["x" => 1, "y" => [2, 3]]);
say("set array (serialized)", word($m));
$v = $m->get("eco:array");
say("get array (serialized)", word($m) === "ok" ? json_encode($v) : word($m));

// get-multi: 100 keys, 60 stored (the first two of every five missing, the last key stored), 40 never stored
$keys = [];
$stored = 0;
for ($i = 0; $i < 100; $i++) {
    $k = "eco:gm:$i";
    $keys[] = $k;
    if ($i % 5 >= 2 && $m->set($k, "value-$i")) {
        $stored++;
    }
}
say("getmulti set 60", "$stored stored");
function multi_line($items, $keys)
{
    $right = 0;
    foreach ($keys as $i => $k) {
        if (isset($items[$k]) && $items[$k] === "value-$i") {
            $right++;
        }
    }
    return count($items) . " hits, $right right";
}
function digest($items)
{
    ksort($items, SORT_STRING);
    $s = '';
    foreach ($items as $k => $v) {
        $s .= "$k=$v;";
    }
    return md5($s);
}
$items = $m->getMulti($keys);
say("getmulti 100 keys", $items === false ? word($m) : multi_line($items, $keys));
say("getmulti digest", $items === false ? word($m) : digest($items));
$items = $m->getMulti($keys, Memcached::GET_PRESERVE_ORDER);
if ($items === false) {
    say("getmulti preserve order", word($m));
} else {
    $nulls = count(array_filter($items, function ($v) { return $v === null; }));
    say("getmulti preserve order", count($items) . " keys, $nulls null, order "
        . (array_keys($items) === $keys ? "kept" : "changed"));
}
$m->getDelayed($keys);
say("getdelayed", word($m));
$rows = $m->fetchAll();
if ($rows === false) {
    say("fetchall", word($m));
} else {
    $items = [];
    foreach ($rows as $row) {
        $items[$row["key"]] = $row["value"];
    }
    say("fetchall", multi_line($items, $keys));
}
$sm = [];
for ($i = 0; $i < 50; $i++) {
    $sm["eco:sm:$i"] = str_repeat(chr(65 + $i % 26), $i + 1);
}
$m->setMulti($sm);
say("setmulti 50", word($m));
$items = $m->getMulti(array_keys($sm));
say("getmulti after setmulti", $items === false ? word($m) : count($items) . " hits, " . ($items == $sm ? "same" : "different"));
$del = $m->deleteMulti(array_merge(array_slice(array_keys($sm), 0, 10), ["eco:sm:none"]));
$words = [];
foreach ($del as $k => $r) {
    $words[] = $r === true ? "ok" : ($r === Memcached::RES_NOTFOUND ? "notfound" : "error($r)");
}
say("deletemulti 10 + 1 missing", implode(",", $words));

// incr / decr
$m->set("eco:n", "10");
say("set n 10", word($m));
number($m, "incr n 5", $m->increment("eco:n", 5));
number($m, "decr n 20", $m->decrement("eco:n", 20));
number($m, "incr n 2^62", $m->increment("eco:n", 4611686018427387904));
number($m, "incr missing", $m->increment("eco:nmissing", 1));
$m->set("eco:text", "abc");
number($m, "incr non-numeric", $m->increment("eco:text", 1));

// add / replace / append / prepend
$m->add("eco:k", "b");
say("add new", word($m));
$m->add("eco:k", "x");
say("add existing", word($m));
$m->replace("eco:k", "c");
say("replace existing", word($m));
$m->replace("eco:kmissing", "x");
say("replace missing", word($m));
$m->append("eco:k", "d");
say("append k", word($m));
$m->prepend("eco:k", "a");
say("prepend k", word($m));
get($m, "get k after append/prepend", "eco:k");
$m->append("eco:kmissing", "x");
say("append missing", word($m));
$m->prepend("eco:kmissing", "x");
say("prepend missing", word($m));

// cas: gets, a swap with the token, a swap with the now stale token
$m->set("eco:c", "x");
$r = $m->get("eco:c", null, Memcached::GET_EXTENDED);
if ($r === false) {
    say("gets c", word($m));
} else {
    say("gets c", show($r["value"]) . " cas=" . ($r["cas"] ? "set" : "zero"));
    $m->cas($r["cas"], "eco:c", "y");
    say("cas c with its token", word($m));
    $m->cas($r["cas"], "eco:c", "z");
    say("cas c with a stale token", word($m));
    get($m, "get c after cas", "eco:c");
    $m->delete("eco:c");
    $m->cas($r["cas"], "eco:c", "w");
    say("cas c after delete", word($m));
}
$items = $m->getMulti(["eco:k", "eco:n", "eco:none"], Memcached::GET_EXTENDED);
if ($items === false) {
    say("getmulti extended", word($m));
} else {
    ksort($items);
    $parts = [];
    foreach ($items as $k => $r) {
        $parts[] = "$k=" . show($r["value"]) . "/cas=" . ($r["cas"] ? "set" : "zero");
    }
    say("getmulti extended", implode(" ", $parts));
}

// touch
$m->set("eco:t", "x", 1000);
say("set t", word($m));
$m->touch("eco:t", 2000);
say("touch t", word($m));
$m->touch("eco:tmissing", 10);
say("touch missing", word($m));
get($m, "get t after touch", "eco:t");

// a large value (about 500 KB) and binary bytes
$big = pattern(500000, 7);
$m->set("eco:big", $big);
say("set big (500000 bytes)", word($m));
$v = $m->get("eco:big");
say("get big", word($m) === "ok" ? show($v) . " same=" . ($v === $big ? "true" : "false") : word($m));
$bin = '';
for ($i = 0; $i < 256; $i++) {
    $bin .= chr($i);
}
$m->set("eco:bin", $bin);
say("set all 256 byte values", word($m));
$v = $m->get("eco:bin");
say("get all 256 byte values", word($m) === "ok" ? show($v) . " same=" . ($v === $bin ? "true" : "false") : word($m));
$m->set("eco:crlf", "line\r\nEND\r\nVALUE x 0 1\r\n");
say("set value with CRLF END", word($m));
get($m, "get value with CRLF END", "eco:crlf");

// keys with odd but legal bytes
$odd = [
    "eco:punct!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    "eco:" . str_repeat("k", 246),
    "\"quoted\"",
    "END",
    "VALUE",
    "eco:\xc3\xa9t\xc3\xa9",
    "eco:\xff\x80\x7f",
];
foreach ($odd as $i => $k) {
    $m->set($k, "odd-$i");
    say("set odd key $i", word($m));
}
foreach ($odd as $i => $k) {
    get($m, "get odd key $i", $k);
}
$items = $m->getMulti($odd);
say("getmulti odd keys", $items === false ? word($m) : count($items) . " hits");
$m->set(str_repeat("k", 251), "x");
say("set key 251 bytes", word($m));

// the connection is still good after all that
get($m, "get k final", "eco:k");

// PHP sessions stored in memcached, in text mode
ini_set('session.save_handler', 'memcached');
ini_set('session.save_path', "$host:$port");
ini_set('session.use_cookies', '0');
ini_set('session.cache_limiter', '');
ini_set('memcached.sess_binary_protocol', '0');
ini_set('memcached.sess_locking', '1');
say("session binary protocol", ini_get('memcached.sess_binary_protocol') ? "on" : "off");
session_id('ecosession1');
say("session start (new)", session_start() ? "ok" : "failed");
say("session data (new)", json_encode($_SESSION));
$_SESSION['n'] = 1;
$_SESSION['name'] = "memrelay";
say("session write", session_write_close() ? "ok" : "failed");
get($m, "session item after write", "memc.sess.key.ecosession1");
get($m, "session lock after write", "memc.sess.key.lock.ecosession1");
say("session start (again)", session_start() ? "ok" : "failed");
say("session data (again)", json_encode($_SESSION));
get($m, "session lock while open", "memc.sess.key.lock.ecosession1");
$_SESSION['n']++;
say("session write (again)", session_write_close() ? "ok" : "failed");
get($m, "session item after second write", "memc.sess.key.ecosession1");
say("session start (destroy)", session_start() ? "ok" : "failed");
say("session destroy", session_destroy() ? "ok" : "failed");
get($m, "session item after destroy", "memc.sess.key.ecosession1");
ob_end_flush();
