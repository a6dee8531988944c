<?php
// PHP sessions in memcached with the extension's DEFAULT settings (binary
// protocol, session locking on): argv[1] is "host:port[,host:port...]"; one
// line per step on stdout (test_binary.py compares memrelay with memcached).
$servers = $argv[1];
ini_set('session.save_handler', 'memcached');
ini_set('session.save_path', $servers);
ini_set('session.use_cookies', '0');
ini_set('session.cache_limiter', '');
function say($what, $v) { echo "$what: $v\n"; }
say("session binary protocol", ini_get('memcached.sess_binary_protocol') ? "on" : "off");
for ($i = 1; $i <= 3; $i++) {
    $id = "binsession$i";
    session_id($id);
    say("$id start (new)", session_start() ? "ok" : "failed");
    say("$id data (new)", json_encode($_SESSION));
    $_SESSION['n'] = $i;
    $_SESSION['blob'] = str_repeat("x", 1000 * $i);
    say("$id write", session_write_close() ? "ok" : "failed");
    say("$id start (again)", session_start() ? "ok" : "failed");
    say("$id data (again)", md5(json_encode($_SESSION)));
    $_SESSION['n']++;
    say("$id write (again)", session_write_close() ? "ok" : "failed");
    say("$id start (third)", session_start() ? "ok" : "failed");
    say("$id n", $_SESSION['n']);
    say("$id destroy", session_destroy() ? "ok" : "failed");
    session_id($id);
    say("$id start (after destroy)", session_start() ? "ok" : "failed");
    say("$id data (after destroy)", json_encode($_SESSION));
    session_write_close();
}
