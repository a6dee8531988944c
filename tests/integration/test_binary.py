"""Binary protocol clients, served (docs/protocol.md, "Binary protocol clients").

A connection whose first byte is 0x80 speaks memcached's binary protocol for
its whole life. Each test sends the same raw packets to memrelay (in front of
one memcached) and to a memcached of its own, and compares the responses
byte for byte; only CAS values are masked, as each memcached numbers its
items itself (the tests that look at CAS compare how CAS behaves instead).
Real clients (pylibmc binary=True, memccapable -b, memccp --binary) are
then run against both and must see the same results.
"""

import json
import os
import shutil
import socket
import struct
import subprocess

import pytest

from harness import Pool
from test_tls import certs  # noqa: F401 (the session's test certificates)

GET, SET, ADD, REPLACE, DELETE, INCR, DECR, QUIT, FLUSH, GETQ, NOOP, VERSION = range(0x0C)
GETK, GETKQ, APPEND, PREPEND, STAT, SETQ, ADDQ = 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12
DELETEQ, INCRQ, QUITQ, FLUSHQ, APPENDQ = 0x14, 0x15, 0x17, 0x18, 0x19
TOUCH, GAT, GATQ, SASL_LIST, SASL_AUTH, SASL_STEP, GATK, GATKQ = 0x1C, 0x1D, 0x1E, 0x20, 0x21, 0x22, 0x23, 0x24


def req(opcode, key=b"", extras=b"", value=b"", opaque=0, cas=0, bodylen=None):
    body = extras + key + value
    n = len(body) if bodylen is None else bodylen
    return struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), len(extras), 0, 0, n, opaque, cas) + body


def set_req(key, value, flags=0, exptime=0, opcode=SET, opaque=0, cas=0):
    return req(opcode, key, struct.pack(">II", flags, exptime), value, opaque, cas)


def arith_req(key, delta, initial=0, exptime=0, opcode=INCR, opaque=0):
    return req(opcode, key, struct.pack(">QQI", delta, initial, exptime), opaque=opaque)


def packets(data):
    """Split a byte stream into (header fields, body) responses; a torn tail is kept raw."""
    out, i = [], 0
    while i + 24 <= len(data):
        magic, op, klen, elen, dt, status, blen, opaque, cas = struct.unpack(">BBHBBHIIQ", data[i : i + 24])
        if i + 24 + blen > len(data):
            break
        out.append((magic, op, klen, elen, status, opaque, cas, data[i + 24 : i + 24 + blen]))
        i += 24 + blen
    if i < len(data):
        out.append(("tail", data[i:]))
    return out


def masked(data):
    """The responses with CAS values replaced by whether they are set."""
    return [p if p[0] == "tail" else p[:6] + (p[6] != 0,) + p[7:] for p in packets(data)]


def exchange(target, data, closes=False):
    with target.conn() as c:
        c.send(data)
        if closes:
            c.wait_closed(timeout=3.0)
            got = c.recv_idle(idle=0.05, timeout=0.2)
            return got, c.closed
        got = c.recv_idle(idle=0.3, timeout=3.0)
        return got, c.closed


@pytest.fixture
def pair(memcached_factory, relay_factory):
    """(memrelay in front of one memcached, a memcached of its own)."""
    relay = relay_factory({"alpha": Pool([memcached_factory()], client_idle_timeout=5000)})
    return relay, memcached_factory()


def same(pair, data, closes=False):
    relay, direct = pair
    want, want_closed = exchange(direct, data, closes)
    got, got_closed = exchange(relay, data, closes)
    assert masked(got) == masked(want)
    assert got_closed == want_closed
    return got


@pytest.mark.needs_memrelay
def test_get_miss_set_get_hit_getk(pair):
    got = same(
        pair,
        req(GET, b"nope", opaque=1)
        + set_req(b"k1", b"hello", flags=0xDEADBEEF, opaque=2)
        + req(GET, b"k1", opaque=3)
        + req(GETK, b"k1", opaque=4)
        + req(GETK, b"missing", opaque=5),
    )
    assert len(packets(got)) == 5


@pytest.mark.needs_memrelay
def test_add_replace_append_prepend_delete(pair):
    same(
        pair,
        set_req(b"a", b"1", opcode=ADD, opaque=1)
        + set_req(b"a", b"2", opcode=ADD, opaque=2)
        + set_req(b"zz", b"3", opcode=REPLACE, opaque=3)
        + set_req(b"a", b"4", opcode=REPLACE, opaque=4)
        + req(APPEND, b"a", value=b"-tail", opaque=5)
        + req(PREPEND, b"a", value=b"head-", opaque=6)
        + req(APPEND, b"nokey", value=b"x", opaque=7)
        + req(GET, b"a", opaque=8)
        + req(DELETE, b"a", opaque=9)
        + req(DELETE, b"a", opaque=10)
        + req(GET, b"a", opaque=11),
    )


@pytest.mark.needs_memrelay
def test_incr_decr_with_initial_value_and_no_create(pair):
    same(
        pair,
        arith_req(b"n", 5, initial=10, opaque=1)
        + arith_req(b"n", 5, opaque=2)
        + arith_req(b"n", 100, opcode=DECR, opaque=3)
        + arith_req(b"m", 1, exptime=0xFFFFFFFF, opaque=4)
        + set_req(b"s", b"abc", opaque=5)
        + arith_req(b"s", 1, opaque=6),
    )


@pytest.mark.needs_memrelay
def test_quiet_commands_are_silent_and_noop_flushes_in_order(pair):
    got = same(
        pair,
        set_req(b"q1", b"v1", opcode=SETQ, opaque=1)
        + set_req(b"q2", b"v2", opcode=SETQ, opaque=2)
        + req(GETKQ, b"q1", opaque=3)
        + req(GETKQ, b"absent", opaque=4)
        + req(GETKQ, b"q2", opaque=5)
        + req(GETQ, b"absent", opaque=6)
        + set_req(b"q1", b"x", opcode=ADDQ, opaque=7)
        + req(DELETEQ, b"absent", opaque=8)
        + req(NOOP, opaque=9),
    )
    assert [p[5] for p in packets(got)] == [3, 5, 7, 8, 9]


@pytest.mark.needs_memrelay
def test_touch_and_gat_family(pair):
    exp = struct.pack(">I", 100)
    same(
        pair,
        set_req(b"t", b"val", opaque=1)
        + req(TOUCH, b"t", exp, opaque=2)
        + req(TOUCH, b"none", exp, opaque=3)
        + req(GAT, b"t", exp, opaque=4)
        + req(GATK, b"t", exp, opaque=5)
        + req(GATQ, b"none", exp, opaque=6)
        + req(GATKQ, b"t", exp, opaque=7)
        + req(NOOP, opaque=8),
    )


@pytest.mark.needs_memrelay
def test_cas_mismatch_and_match(pair):
    relay, direct = pair
    for target in (relay, direct):
        with target.conn() as c:
            c.send(set_req(b"c", b"1", opaque=1))
            (r,) = packets(c.recv_idle(idle=0.2, timeout=3.0))
            cas = r[6]
            assert cas != 0
            c.send(set_req(b"c", b"2", cas=cas + 999, opaque=2) + set_req(b"c", b"3", cas=cas, opaque=3))
            a, b = packets(c.recv_idle(idle=0.3, timeout=3.0))
            assert (a[4], b[4]) == (0x0002, 0x0000)


@pytest.mark.needs_memrelay
def test_flush_noop_version_quit(pair):
    relay, direct = pair
    got = same(pair, set_req(b"f", b"1") + req(FLUSH, opaque=2) + req(GET, b"f", opaque=3) + req(NOOP, opaque=4))
    with relay.conn() as c:
        c.send(req(VERSION, opaque=9))
        (v,) = packets(c.recv_idle(idle=0.2, timeout=3.0))
        assert v[4] == 0 and v[5] == 9 and v[7][:2] == b"1."
    same(pair, req(NOOP, opaque=1) + req(QUIT, opaque=2) + req(NOOP, opaque=3), closes=True)
    same(pair, req(QUITQ, opaque=2) + req(NOOP, opaque=3), closes=True)


@pytest.mark.needs_memrelay
def test_unknown_opcode_and_malformed_headers(pair):
    same(pair, req(0x50, opaque=1) + req(NOOP, opaque=2))
    same(pair, req(GET, b"k", extras=b"xxxx", opaque=3) + req(NOOP, opaque=4), closes=True)
    same(pair, req(GET, b"k" * 251, opaque=5), closes=True)
    same(pair, b"\x80" + b"\x00" * 7 + b"\x00\x00\x00\x01" + b"\x00" * 12 + b"k" + b"\x81" + b"\x00" * 23, closes=True)


@pytest.mark.needs_memrelay
def test_value_too_large_is_e2big_and_swallowed(pair):
    same(pair, set_req(b"big", b"x" * (1024 * 1024 + 10), opaque=1) + req(GET, b"big", opaque=2) + req(NOOP, opaque=3))


@pytest.mark.needs_memrelay
def test_binary_keys_and_stat(pair):
    relay, _ = pair
    same(pair, set_req(b"sp ace\x01", b"v", opaque=1) + req(GETK, b"sp ace\x01", opaque=2))
    with relay.conn() as c:
        c.send(req(STAT, opaque=7))
        got = c.recv_idle(idle=0.3, timeout=3.0)
    ps = packets(got)
    assert ps[-1][2] == 0 and ps[-1][7] == b"" and all(p[5] == 7 for p in ps)
    names = {p[7][: p[2]] for p in ps[:-1]}
    assert b"pid" in names and b"curr_connections" in names


def counters(target, names):
    with target.conn() as c:
        text = c.request(b"stats\r\n", replies=1)
    got = dict(line.split(b" ")[1:3] for line in text.split(b"\r\n") if line.startswith(b"STAT "))
    return {n: int(got[n.encode()]) for n in names}


@pytest.mark.needs_memrelay
def test_binary_requests_are_counted_as_memcached_counts_them(pair):
    """cmd_get/cmd_set/cmd_touch and hits move as on memcached (not as the meta commands sent)."""
    relay, direct = pair
    names = ["cmd_get", "cmd_set", "cmd_touch", "get_hits", "get_misses"]
    data = (set_req(b"ck", b"v", opaque=1) + req(GET, b"ck", opaque=2) + req(GETK, b"nokey", opaque=3)
            + req(APPEND, b"ck", value=b"w", opaque=4) + req(ADD, b"ck2", struct.pack(">II", 0, 0), b"x", opaque=5)
            + req(TOUCH, b"ck", struct.pack(">I", 100), opaque=6) + req(DELETE, b"ck2", opaque=7)
            + req(NOOP, opaque=8))
    deltas = []
    for target in (direct, relay):
        before = counters(target, names)
        with target.conn() as c:
            c.send(data)
            assert packets(c.recv_idle(idle=0.3, timeout=3.0))[-1][5] == 8
        after = counters(target, names)
        deltas.append({n: after[n] - before[n] for n in names})
    assert deltas[1] == deltas[0] == dict(cmd_get=2, cmd_set=3, cmd_touch=1, get_hits=1, get_misses=1)
    names = ["cmd_get", "cmd_touch", "cmd_meta"]
    before = counters(relay, names)
    exchange(relay, req(GET, b"ck") + req(GAT, b"ck", struct.pack(">I", 100)))
    after = counters(relay, names)
    # memrelay's rule for a gat, text or binary: a key asked for (cmd_get) and a touch (cmd_touch);
    # nothing in cmd_meta, though both went to memcached as mg.
    assert {n: after[n] - before[n] for n in names} == dict(cmd_get=2, cmd_touch=1, cmd_meta=0)


@pytest.mark.needs_memrelay
def test_getkq_run_over_three_servers_keeps_order(memcached_factory, relay_factory):
    servers = [memcached_factory() for _ in range(3)]
    relay = relay_factory({"alpha": Pool(servers)})
    keys = [b"run:%d:key" % i for i in range(100)]
    with relay.conn() as c:
        c.send(b"".join(set_req(k, k * 2, opcode=SETQ) for k in keys[::2]) + req(NOOP, opaque=1))
        assert [p[5] for p in packets(c.recv_idle(idle=0.3, timeout=3.0))] == [1]
        c.send(b"".join(req(GETKQ, k, opaque=i) for i, k in enumerate(keys)) + req(NOOP, opaque=999))
        ps = packets(c.recv_idle(idle=0.3, timeout=3.0))
    assert [p[5] for p in ps] == list(range(0, 100, 2)) + [999]
    assert [p[7][4 + p[2] :] for p in ps[:-1]] == [k * 2 for k in keys[::2]]
    held = [s for s in servers if s.keys_held(keys[::2])]
    assert len(held) > 1
    # The run went out as multi-gets (counted per key in cmd_get), not as one mg per key.
    with relay.conn() as c:
        stats = c.request(b"stats\r\n", replies=1)
    assert b"STAT cmd_get 100\r\n" in stats, stats


@pytest.mark.needs_memrelay
def test_getkq_run_with_a_dead_server_answers_its_keys_with_errors(memcached_factory, relay_factory):
    servers = [memcached_factory() for _ in range(2)]
    relay = relay_factory({"alpha": Pool(servers, timeout=500)})
    keys = [b"dead:%d" % i for i in range(30)]
    with relay.conn() as c:
        c.send(b"".join(set_req(k, b"v" + k, opcode=SETQ) for k in keys) + req(NOOP, opaque=1))
        assert [p[5] for p in packets(c.recv_idle(idle=0.3, timeout=3.0))] == [1]
    alive = servers[0].keys_held(keys)
    servers[1].stop()
    with relay.conn() as c:
        c.send(b"".join(req(GETKQ, k, opaque=i) for i, k in enumerate(keys)) + req(NOOP, opaque=999))
        ps = packets(c.recv_idle(idle=0.5, timeout=5.0))
    assert ps[-1][1] == NOOP and ps[-1][5] == 999
    for p in ps[:-1]:
        key = keys[p[5]]
        if key in alive:
            assert p[4] == 0 and p[7][4 + p[2]:] == b"v" + key
        else:
            assert p[4] in (0x0084, 0x0086), p  # the failure, never silent
    assert sorted(p[5] for p in ps[:-1] if p[4] == 0) == sorted(i for i, k in enumerate(keys) if k in alive)


@pytest.mark.needs_memrelay
def test_0x80_after_the_first_byte_is_text(pair):
    relay, _ = pair
    with relay.conn() as c:
        assert c.request(b"mn\r\n\x80\r\nmn\r\n", replies=3) == b"MN\r\nERROR\r\nMN\r\n"


@pytest.mark.needs_memrelay
def test_pylibmc_binary_same_as_memcached(pair):
    pylibmc = pytest.importorskip("pylibmc")
    results = []
    for target in pair:
        c = pylibmc.Client(["%s:%d" % addr_of(target)], binary=True, behaviors={"cas": True})
        r = []
        r.append(c.set("k", "v"))
        r.append(c.get("k"))
        r.append(c.add("k", "w"))
        r.append(c.replace("k", "x"))
        r.append(c.append("k", "y"))
        r.append(c.prepend("k", "w"))
        r.append(c.get("k"))
        r.append(c.set_multi({"a": 1, "b": "2", "c": b"3"}))
        r.append(sorted(c.get_multi(["a", "b", "c", "zz"]).items()))
        r.append(c.incr("a", 5))
        r.append(c.decr("a", 2))
        r.append(c.delete("b"))
        r.append(c.get("b"))
        v, cas = c.gets("k")
        r.append(v)
        r.append(c.cas("k", "new", cas))
        r.append(c.cas("k", "newer", cas))
        r.append(c.touch("k", 100))
        r.append(c.get("k"))
        r.append(c.flush_all())
        r.append(c.get("k"))
        results.append(r)
    assert results[0] == results[1]


def addr_of(target):
    return target.addr() if callable(target.addr) else target.addr


def _tool(name):
    path = shutil.which(name)
    if not path:
        pytest.skip(name + " not installed")
    return path


@pytest.mark.needs_memrelay
def test_memccapable_binary_passes_as_against_memcached(pair):
    tool = _tool("memccapable")
    outcomes = []
    for target in pair:
        host, port = addr_of(target)
        p = subprocess.run([tool, "-h", host, "-p", str(port), "-b"], capture_output=True, text=True, timeout=120)
        outcomes.append(sorted(l for l in p.stdout.splitlines() if l.startswith("binary")))
    relay_out, direct_out = outcomes
    assert relay_out == direct_out and len(relay_out) > 10


@pytest.mark.needs_memrelay
def test_memccp_binary_copies_a_file_as_to_memcached(pair, tmp_path):
    tool = _tool("memccp")
    cat = _tool("memccat")
    f = tmp_path / "payload.txt"
    f.write_bytes(b"binary payload\n" * 100)
    outs = []
    for target in pair:
        servers = "--servers=%s:%d" % addr_of(target)
        subprocess.run([tool, servers, "--binary", str(f)], check=True, timeout=30)
        outs.append(subprocess.run([cat, servers, "--binary", "payload.txt"], capture_output=True, timeout=30).stdout)
    assert outs[0] == outs[1] and f.read_bytes() in outs[0]


# ---- clients from other ecosystems: the same output through memrelay (1 and 3 servers) as from memcached ----

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENTS = os.path.join(HERE, "clients")
SOURCE_DIR = os.environ.get("MEMRELAY_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
CACHE_DIR = os.environ.get("MEMRELAY_CLIENTS_CACHE") or os.path.join(SOURCE_DIR, "build", "ecosystem-clients")
MEMJS = "1.3.2"  # the npm package's version, pinned


def _memjs():
    node = shutil.which("node") or shutil.which("nodejs")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm (Debian nodejs, npm) not installed")
    prefix = os.path.join(CACHE_DIR, "node")
    manifest = os.path.join(prefix, "node_modules", "memjs", "package.json")
    try:
        with open(manifest) as f:
            version = json.load(f).get("version")
    except (OSError, ValueError):
        version = None
    if version != MEMJS:
        os.makedirs(prefix, exist_ok=True)
        subprocess.run([npm, "install", "--prefix", prefix, "--no-audit", "--no-fund", "--no-save",
                        "--no-package-lock", "--loglevel=error", "memjs@" + MEMJS],
                       check=True, timeout=300, cwd=prefix, stdin=subprocess.DEVNULL)
    env = dict(os.environ, NODE_PATH=os.path.join(prefix, "node_modules"))
    return [node, os.path.join(CLIENTS, "memjs_check.js")], env


def _run(argv, env=None):
    res = subprocess.run(argv, env=env, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr.decode("utf-8", "replace")[-3000:]
    return res.stdout.decode("utf-8", "replace").splitlines()


@pytest.fixture(params=[1, 3], ids=["1server", "3servers"])
def spread(request, memcached_factory, relay_factory):
    """(memrelay over 1 or 3 memcacheds, a memcached of its own)."""
    relay = relay_factory({"alpha": Pool([memcached_factory() for _ in range(request.param)])})
    return relay, memcached_factory()


@pytest.mark.needs_memrelay
def test_memjs_same_as_memcached(spread):
    argv, env = _memjs()
    relay, direct = spread
    want = _run(argv + ["%s:%d" % addr_of(direct)], env)
    got = _run(argv + ["%s:%d" % addr_of(relay)], env)
    assert got == want
    assert "get k: \"hello\"" in got and not any(": error" in l for l in got)


@pytest.mark.needs_memrelay
def test_php_sessions_default_settings_same_as_memcached(spread):
    php = shutil.which("php")
    if php is None:
        pytest.skip("php (Debian php-cli) not installed")
    if subprocess.run([php, "-r", "exit(class_exists('Memcached') ? 0 : 1);"], timeout=30).returncode != 0:
        pytest.skip("PHP's memcached extension (Debian php-memcached) not installed")
    script = [php, "-d", "display_errors=stderr", "-d", "error_reporting=-1", os.path.join(CLIENTS, "php_session_binary.php")]
    relay, direct = spread
    want = _run(script + ["%s:%d" % addr_of(direct)])
    got = _run(script + ["%s:%d" % addr_of(relay)])
    assert got == want
    assert got[0] == "session binary protocol: on" and not any("failed" in l for l in got)


# ---- SASL PLAIN against the pool's auth_file ----

CREDS = b"alice:secret\nbob:hun:ter2\n"


@pytest.fixture
def sasl_relay(memcached_factory, relay_factory, tmp_path):
    path = tmp_path / "memrelay.creds"
    path.write_bytes(CREDS)
    os.chmod(path, 0o600)
    return relay_factory({"p": Pool([memcached_factory()], auth_file=str(path))})


def _auth(user, password, opaque=0):
    return req(SASL_AUTH, b"PLAIN", value=b"\0" + user + b"\0" + password, opaque=opaque)


@pytest.mark.needs_memrelay
def test_sasl_list_auth_and_then_commands(sasl_relay):
    with sasl_relay.conn() as c:
        c.send(req(SASL_LIST, opaque=1) + req(VERSION, opaque=2) + _auth(b"alice", b"wrong", 3) + _auth(b"alice", b"secret", 4)
               + set_req(b"k", b"v", opaque=5) + req(GET, b"k", opaque=6))
        ps = packets(c.recv_idle(idle=0.3, timeout=3.0))
    assert [(p[1], p[4], p[5]) for p in ps] == [(SASL_LIST, 0, 1), (VERSION, 0, 2), (SASL_AUTH, 0x20, 3),
                                                (SASL_AUTH, 0, 4), (SET, 0, 5), (GET, 0, 6)]
    assert ps[0][7] == b"PLAIN" and ps[2][7] == b"Auth failure." and ps[3][7] == b"Authenticated"
    assert ps[5][7][4:] == b"v"


@pytest.mark.needs_memrelay
def test_sasl_step_after_empty_auth(sasl_relay):
    with sasl_relay.conn() as c:
        c.send(req(SASL_AUTH, b"PLAIN", opaque=1) + req(SASL_STEP, b"PLAIN", value=b"\0bob\0hun:ter2", opaque=2)
               + req(NOOP, opaque=3))
        ps = packets(c.recv_idle(idle=0.3, timeout=3.0))
    assert [(p[1], p[4]) for p in ps] == [(SASL_AUTH, 0x21), (SASL_STEP, 0), (NOOP, 0)]


@pytest.mark.needs_memrelay
def test_unauthenticated_binary_request_gets_auth_error_and_close(sasl_relay):
    with sasl_relay.conn() as c:
        c.send(req(GET, b"k", opaque=9))
        c.wait_closed(timeout=3.0)
        ps = packets(c.recv_idle(idle=0.05, timeout=0.2))
        assert c.closed
    assert [(p[1], p[4], p[5], p[7]) for p in ps] == [(GET, 0x20, 9, b"Auth failure.")]


@pytest.mark.needs_memrelay
def test_sasl_attempts_counted_and_never_logged(sasl_relay):
    before = _stats_authed(sasl_relay)
    with sasl_relay.conn() as c:
        c.send(_auth(b"alice", b"nottheone", 1) + _auth(b"mallory", b"secret", 2) + _auth(b"alice", b"secret", 3))
        ps = packets(c.recv_idle(idle=0.3, timeout=3.0))
    assert [p[4] for p in ps] == [0x20, 0x20, 0]
    after = _stats_authed(sasl_relay)
    assert int(after[b"auth_cmds"]) - int(before[b"auth_cmds"]) == 3 + 1
    assert int(after[b"auth_errors"]) - int(before[b"auth_errors"]) == 2
    log = sasl_relay.stderr()
    assert b"nottheone".decode() not in log and "secret" not in log and "mallory" not in log


def _stats_authed(relay):
    with relay.conn() as c:
        c.send(_auth(b"alice", b"secret", 0) + req(STAT, opaque=1))
        data = b""
        for _ in range(50):
            more = c.recv_idle(idle=0.2, timeout=3.0)
            data += more
            if not more or data.endswith(struct.pack(">BBHBBHIIQ", 0x81, STAT, 0, 0, 0, 0, 0, 1, 0)):
                break
    return {p[7][: p[2]]: p[7][p[2]:] for p in packets(data)[1:] if p[2]}


@pytest.mark.needs_memrelay
def test_pylibmc_sasl(sasl_relay):
    pylibmc = pytest.importorskip("pylibmc")
    if not pylibmc.support_sasl:
        pytest.skip("pylibmc without SASL")
    good = pylibmc.Client(["%s:%d" % addr_of(sasl_relay)], binary=True, username="alice", password="secret")
    assert good.set("sk", "sv") and good.get("sk") == "sv"
    bad = pylibmc.Client(["%s:%d" % addr_of(sasl_relay)], binary=True, username="alice", password="nope")
    with pytest.raises(pylibmc.Error):
        bad.set("sk", "x")
    assert good.get("sk") == "sv"


@pytest.mark.needs_memrelay
def test_memjs_sasl(sasl_relay):
    argv, env = _memjs()
    got = _run(argv + ["%s:%d" % addr_of(sasl_relay), "alice", "secret"], env)
    assert "get k: \"hello\"" in got and not any(": error" in l for l in got), got


# ---- every kind of listener ----

def _read_packets(sock, n, timeout=5.0):
    sock.settimeout(timeout)
    data = b""
    while len([p for p in packets(data) if p[0] != "tail"]) < n:
        more = sock.recv(65536)
        if not more:
            break
        data += more
    return packets(data)


@pytest.mark.needs_memrelay
def test_binary_over_a_unix_socket(memcached_factory, relay_factory, tmp_path):
    path = str(tmp_path / "mr.sock")
    relay_factory({"alpha": Pool([memcached_factory()], listen=("unix", path, "0600"))})
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        s.sendall(set_req(b"u", b"unix", opaque=1) + req(GETK, b"u", opaque=2) + req(NOOP, opaque=3))
        ps = _read_packets(s, 3)
    finally:
        s.close()
    assert [(p[1], p[4], p[5]) for p in ps] == [(SET, 0, 1), (GETK, 0, 2), (NOOP, 0, 3)]
    assert ps[1][7] == b"\0\0\0\0u" + b"unix"


@pytest.mark.needs_memrelay
def test_binary_over_tls(memcached_factory, relay_factory, certs):
    from test_tls import client_ctx, tls_addr, tls_listener

    pool = Pool([memcached_factory()], **tls_listener(certs))
    relay_factory({"alpha": pool})
    raw = socket.create_connection(tls_addr(pool), timeout=5.0)
    s = client_ctx(certs).wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        s.sendall(set_req(b"t", b"tls", opaque=1) + req(GETK, b"t", opaque=2) + req(GETKQ, b"t", opaque=3)
                  + req(GETKQ, b"none", opaque=4) + req(NOOP, opaque=5))
        ps = _read_packets(s, 4)
    finally:
        s.close()
    assert [(p[1], p[4], p[5]) for p in ps] == [(SET, 0, 1), (GETK, 0, 2), (GETKQ, 0, 3), (NOOP, 0, 5)]


# ---- SASL compared with memcached -S (Cyrus SASL PLAIN, a sasldb holding the same user) ----

@pytest.fixture
def sasl_pair(memcached_factory, relay_factory, tmp_path, monkeypatch):
    saslpasswd2 = shutil.which("saslpasswd2") or "/usr/sbin/saslpasswd2"
    if not os.access(saslpasswd2, os.X_OK):
        pytest.skip("saslpasswd2 (Debian sasl2-bin) not installed")
    db = tmp_path / "sasldb"
    subprocess.run([saslpasswd2, "-p", "-a", "memcached", "-c", "-f", str(db), "alice"], input=b"secret",
                   check=True, timeout=30)
    (tmp_path / "memcached.conf").write_text("mech_list: plain\nsasldb_path: %s\n" % db)
    monkeypatch.setenv("SASL_CONF_PATH", str(tmp_path))
    direct = memcached_factory(extra_args=["-S"])
    monkeypatch.delenv("SASL_CONF_PATH")
    creds = tmp_path / "memrelay.creds"
    creds.write_bytes(b"alice:secret\n")
    os.chmod(creds, 0o600)
    relay = relay_factory({"p": Pool([memcached_factory()], auth_file=str(creds), client_idle_timeout=5000)})
    return relay, direct


@pytest.mark.needs_memrelay
@pytest.mark.parametrize("name,data,closes", [
    ("list_wrong_right_then_commands",
     req(SASL_LIST, opaque=1) + _auth(b"alice", b"wrong", 2) + _auth(b"alice", b"secret", 3) + req(NOOP, opaque=4)
     + set_req(b"k", b"v", opaque=5) + req(GETK, b"k", opaque=6) + req(NOOP, opaque=7), False),
    ("request_before_auth_closes", req(GET, b"k", opaque=9) + req(NOOP, opaque=10), True),
    ("noop_before_auth_closes", req(NOOP, opaque=9), True),
    ("empty_auth_then_step", req(SASL_AUTH, b"PLAIN", opaque=1)
     + req(SASL_STEP, b"PLAIN", value=b"\0alice\0secret", opaque=2) + req(NOOP, opaque=3), False),
    ("step_out_of_nowhere", req(SASL_STEP, b"PLAIN", value=b"\0alice\0secret", opaque=2)
     + req(SASL_LIST, opaque=3), False),
    ("lowercase_mechanism", req(SASL_AUTH, b"plain", value=b"\0alice\0secret", opaque=1) + req(NOOP, opaque=2), False),
    ("unknown_user_then_relogin", _auth(b"mallory", b"secret", 1) + _auth(b"alice", b"secret", 2)
     + _auth(b"alice", b"bad", 3) + req(GET, b"k", opaque=4), True),
])
def test_sasl_same_bytes_as_memcached_S(sasl_pair, name, data, closes):
    same(sasl_pair, data, closes)


# ---- features apply unchanged: replication ----

@pytest.mark.needs_memrelay
def test_getkq_run_in_a_replicated_pool_fails_over_to_the_next_replica(memcached_factory, relay_factory):
    mcs = [memcached_factory() for _ in range(3)]
    relay = relay_factory({"alpha": Pool(mcs, replicas=2, write_ack="all", timeout=1000)})
    keys = [b"rrun:%d" % i for i in range(40)]
    with relay.conn() as c:
        c.send(b"".join(set_req(k, b"v" + k, opcode=SETQ) for k in keys) + req(NOOP, opaque=1))
        assert [p[5] for p in packets(c.recv_idle(idle=0.3, timeout=5.0))] == [1]
    # Stopped, not killed: its batch of the run times out (a refused connection would have taken the
    # server out of the ring before the run was split).
    mcs[0].pause()
    try:
        with relay.conn() as c:
            c.send(b"".join(req(GETKQ, k, opaque=i) for i, k in enumerate(keys)) + req(NOOP, opaque=999))
            ps = packets(c.recv_idle(idle=1.5, timeout=10.0))
    finally:
        mcs[0].resume()
    # Every key has a second copy: all are hits, in request order, none an error.
    assert [(p[4], p[5]) for p in ps] == [(0, i) for i in range(len(keys))] + [(0, 999)]
    assert [p[7][4 + p[2] :] for p in ps[:-1]] == [b"v" + k for k in keys]


@pytest.mark.needs_memrelay
def test_binary_writes_replicate_and_reads_fail_over(memcached_factory, relay_factory):
    mcs = [memcached_factory() for _ in range(3)]
    relay = relay_factory({"alpha": Pool(mcs, replicas=3, write_ack="all", timeout=1000)})
    with relay.conn() as c:
        c.send(set_req(b"rk", b"replicated", flags=7, opaque=1) + req(NOOP, opaque=2))
        ps = packets(c.recv_idle(idle=0.3, timeout=5.0))
    assert [(p[1], p[4]) for p in ps] == [(SET, 0), (NOOP, 0)]
    assert all(mc.keys_held([b"rk"]) == {b"rk"} for mc in mcs)
    mcs[0].kill()
    mcs[1].kill()
    with relay.conn() as c:
        c.send(req(GETK, b"rk", opaque=3))
        ps = packets(c.recv_idle(idle=0.5, timeout=5.0))
    assert [(p[1], p[4], p[5]) for p in ps] == [(GETK, 0, 3)]
    assert ps[0][7] == b"\0\0\0\x07rk" + b"replicated"


@pytest.mark.needs_memrelay
def test_large_values_near_the_item_limit(pair):
    got = same(pair, set_req(b"L", b"x" * 1000000, opaque=1) + req(GET, b"L", opaque=2)
               + set_req(b"M", b"y" * 1048000, opaque=3) + req(NOOP, opaque=4))
    assert [p[4] for p in packets(got)][:2] == [0, 0]


@pytest.mark.needs_memrelay
def test_flush_reaches_every_server_and_flushq_is_silent(memcached_factory, relay_factory):
    servers = [memcached_factory() for _ in range(3)]
    relay = relay_factory({"alpha": Pool(servers)})
    keys = [b"fl:%d" % i for i in range(30)]
    with relay.conn() as c:
        c.send(b"".join(set_req(k, b"v", opcode=SETQ) for k in keys) + req(FLUSHQ, opaque=1) + req(NOOP, opaque=2))
        ps = packets(c.recv_idle(idle=0.3, timeout=3.0))
    assert [(p[1], p[4], p[5]) for p in ps] == [(NOOP, 0, 2)]
    assert all(not s.keys_held(keys) for s in servers)
    with relay.conn() as c:
        c.send(set_req(b"again", b"v") + req(FLUSH, opaque=3))
        ps = packets(c.recv_idle(idle=0.3, timeout=3.0))
    assert [(p[1], p[4], p[5]) for p in ps] == [(SET, 0, 0), (FLUSH, 0, 3)]
