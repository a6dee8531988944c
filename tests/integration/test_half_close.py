"""A client that sends its requests and then shuts down its write side
(half-close: `nc -q1`, `nc -N`, shutdown(SHUT_WR)) gets every reply it is
owed, in order, before memrelay closes: what memcached itself does.

Each scenario is sent the same way to a real memcached directly and through
memrelay (one server, and three servers so multi-gets are split), and the
bytes must be the same. Keys carry a per-run prefix so the two runs see the
same (empty) starting state. (TLS half-close: test_tls.py.)
"""
import shutil
import socket
import subprocess
import time

import pytest

from harness import Pool, connect

NC = shutil.which("nc")


def _scenarios(p):
    """name -> request bytes; `p` is a unique key prefix."""
    big = b"x" * 65536
    multi = [p + b"mk%d" % i for i in range(12)]
    return {
        "single_get": b"set %sa 0 0 5\r\nhello\r\nget %sa\r\n" % (p, p),
        "multi_get_across_servers": b"".join(b"set %s 0 0 2\r\nv%d\r\n" % (k, i % 10) for i, k in enumerate(multi))
        + b"get " + b" ".join(multi) + b" " + p + b"missing\r\n",
        "pipelined_100_set_get_pairs": b"".join(
            b"set %sp%d 0 0 %d\r\n%d\r\nget %sp%d\r\n" % (p, i, len(b"%d" % i), i, p, i) for i in range(100)),
        "value_64k": b"set %sbig 3 0 %d\r\n%s\r\nget %sbig\r\n" % (p, len(big), big, p),
        "meta_with_mn": b"ms %sm 2 T0\r\nhi\r\nmg %sm v f\r\nmg %snone v\r\nmn\r\n" % (p, p, p),
        "error_line_in_the_middle": b"set %se 0 0 1\r\n1\r\nbogus command here\r\nget %se\r\n" % (p, p),
        "unfinished_data_block_at_end": b"set %su 0 0 1\r\n1\r\nget %su\r\nset %su2 0 0 10\r\nabc" % (p, p, p),
    }


# What each scenario's reply must at least hold (so equal-but-empty fails).
_REPLIES = {
    "single_get": 2,
    "multi_get_across_servers": 13,
    "pipelined_100_set_get_pairs": 200,
    "value_64k": 2,
    "meta_with_mn": 4,
    "error_line_in_the_middle": 3,
    "unfinished_data_block_at_end": 2,
}


def _read_to_eof(s, timeout=10.0):
    s.settimeout(timeout)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk
    raise AssertionError("no EOF after %d bytes" % len(out))


def _via_shutdown(addr, data):
    s = connect(addr)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return _read_to_eof(s)
    finally:
        s.close()


def _via_nc(addr, data, flag):
    if NC is None:
        pytest.fail("nc is missing (scripts/setup-deps.sh test installs netcat-openbsd)")
    # -q1: after EOF on stdin, shut the socket's write side and quit a second
    # later (what the README's example uses); -N: shut it and read to EOF.
    where = ["-U", addr] if isinstance(addr, str) else [addr[0], str(addr[1])]
    return subprocess.run([NC, flag] + where, input=data, capture_output=True, timeout=20).stdout


_METHODS = {
    "shutdown_wr": _via_shutdown,
    "nc_N": lambda addr, data: _via_nc(addr, data, "-N"),
    "nc_q1": lambda addr, data: _via_nc(addr, data, "-q1"),
}


def _count(reply):
    return sum(reply.count(t) for t in (b"STORED\r\n", b"END\r\n", b"ERROR\r\n", b"HD\r\n", b"VA ", b"EN\r\n",
                                        b"MN\r\n"))


@pytest.fixture(scope="module", params=[1, 3], ids=["1_server", "3_servers"])
def pool_addr(request, tmp_path_factory):
    from conftest import _Factory
    f = _Factory(tmp_path_factory)
    servers = [f.memcached() for _ in range(request.param)]
    relay = f.relay({"alpha": Pool(servers, hash="md5")})
    reference = f.memcached()
    yield relay.addr(), reference.addr, servers
    f.close()


@pytest.mark.parametrize("method", sorted(_METHODS))
@pytest.mark.parametrize("scenario", sorted(_REPLIES))
def test_half_closed_client_gets_every_reply_memcached_gives(pool_addr, method, scenario):
    relay_addr, mc_addr, servers = pool_addr
    send = _METHODS[method]
    prefix = b"hc%d:" % (time.monotonic_ns() % 10**12)
    want = send(mc_addr, _scenarios(prefix)[scenario])
    assert _count(want) >= _REPLIES[scenario], want[:300]
    prefix2 = prefix + b"r:"
    got = send(relay_addr, _scenarios(prefix2)[scenario])
    assert got.replace(prefix2, prefix) == want
    if scenario == "multi_get_across_servers" and len(servers) > 1:
        keys = [prefix2 + b"mk%d" % i for i in range(12)]
        holders = [mc for mc in servers if mc.keys_held(keys)]
        assert len(holders) >= 2, "the multi-get did not span servers"


def test_half_close_with_replies_still_owed_by_a_paused_server(memcached_factory, relay_factory):
    """The EOF arrives while the server has not answered yet: the replies
    still come, then the close."""
    mc = memcached_factory()
    relay = relay_factory({"alpha": Pool([mc], timeout=5000)})
    with connect(relay.addr()) as s:
        s.sendall(b"set slow 0 0 3\r\nabc\r\n")
        s.settimeout(5)
        assert s.recv(100) == b"STORED\r\n"
        mc.pause()
        try:
            s.sendall(b"get slow\r\nget slow nothing\r\n")
            s.shutdown(socket.SHUT_WR)
            time.sleep(0.3)  # memrelay has read the EOF by now; the server still owes both replies
        finally:
            mc.resume()
        assert _read_to_eof(s) == b"VALUE slow 0 3\r\nabc\r\nEND\r\nVALUE slow 0 3\r\nabc\r\nEND\r\n"


def test_unix_socket_half_close(memcached_factory, relay_factory, short_tmp):
    mc = memcached_factory()
    path = short_tmp + "/hc.sock"
    relay = relay_factory({"alpha": Pool([mc], listen=("unix", path, "0600"))})
    data = b"set u 0 0 2\r\nok\r\nget u\r\nmn\r\n"
    want = b"STORED\r\nVALUE u 0 2\r\nok\r\nEND\r\nMN\r\n"
    assert _via_shutdown(relay.addr(), data) == want
    assert _via_nc(relay.addr(), data, "-N") == want
