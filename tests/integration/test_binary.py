"""Binary protocol clients, served (docs/protocol.md, "Binary protocol clients").

A connection whose first byte is 0x80 speaks memcached's binary protocol for
its whole life. Each test sends the same raw packets to memrelay (in front of
one memcached) and to a memcached of its own, and compares the responses
byte for byte; only CAS values are masked, as each memcached numbers its
items itself (the tests that look at CAS compare how CAS behaves instead).
Real clients (pylibmc binary=True, memccapable -b, memccp --binary) are
then run against both and must see the same results.
"""

import shutil
import struct
import subprocess

import pytest

from harness import Pool

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


@pytest.mark.needs_memrelay
def test_getkq_run_over_three_servers_keeps_order(memcached_factory, relay_factory):
    servers = [memcached_factory() for _ in range(3)]
    relay = relay_factory({"alpha": Pool(servers)})
    keys = [b"key%d" % i for i in range(40)]
    with relay.conn() as c:
        c.send(b"".join(set_req(k, k * 2, opcode=SETQ) for k in keys[::2]) + req(NOOP, opaque=1))
        assert [p[5] for p in packets(c.recv_idle(idle=0.3, timeout=3.0))] == [1]
        c.send(b"".join(req(GETKQ, k, opaque=i) for i, k in enumerate(keys)) + req(NOOP, opaque=999))
        ps = packets(c.recv_idle(idle=0.3, timeout=3.0))
    assert [p[5] for p in ps] == list(range(0, 40, 2)) + [999]
    assert [p[7][4 + p[2] :] for p in ps[:-1]] == [k * 2 for k in keys[::2]]
    held = [s for s in servers if s.keys_held(keys[::2])]
    assert len(held) > 1


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
