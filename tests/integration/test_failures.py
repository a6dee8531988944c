"""A failing backend fails only its own requests, with one SERVER_ERROR line.

Backends are killed (SIGKILL: connection refused), stopped (SIGSTOP: the
pool's timeout fires) and restarted on the same port. The client's
connection stays open throughout and keys on other servers keep working.
These need a multi-server pool, so they are skipped in DIRECT mode.

Nothing here asserts an elapsed-time upper bound (CI is a shared, loaded
machine): a timeout is proved by its reply, by memrelay's timeouts counter
for that server and by a lower bound (never answered before the pool
timeout, which a slow machine cannot break); "other clients are served" by
their replies and by no error or timeout counted for their servers. Every
wait is bounded.
"""

import re
import time

import pytest

import harness
from harness import assert_same, store_many, wait_for

POOL_TIMEOUT_MS = 500
REFUSED = re.compile(rb"^SERVER_ERROR (connection refused|backend unavailable)\r\n$")
# A get for a server known to be down is a miss, answered at once (REFERENCE
# §4); the request that discovers the failure gets the error itself.
DOWN_GET = re.compile(rb"^(SERVER_ERROR (connection refused|backend unavailable)|END)\r\n$")
TIMEOUT_REPLY = b"SERVER_ERROR timeout\r\n"
ANY_SERVER_ERROR = re.compile(rb"^SERVER_ERROR [^\r\n]+\r\n$")


@pytest.fixture
def cl(cluster):
    return cluster(weights=(1, 1, 1), timeout=POOL_TIMEOUT_MS, server_retry_timeout=200)


def _get(k, v):
    return b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (k, len(v), v)


def _healthy_round_trip(c, k, v):
    assert c.request(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(v), v)) == b"STORED\r\n"
    assert c.request(b"get %s\r\n" % k) == _get(k, v)


def test_killed_backend_answers_one_server_error_line(cl):
    dead_keys = cl.keys_on(1, 5, "dead")
    with cl.conn() as c:
        store_many(c, {k: b"x" for k in dead_keys})
        cl.backends[1].kill()
        for k in dead_keys:
            reply = c.request(b"get %s\r\n" % k, timeout=5)
            assert DOWN_GET.match(reply), reply
            reply = c.request(b"set %s 0 0 1\r\ny\r\n" % k, timeout=5)
            assert REFUSED.match(reply), reply
        assert not c.closed
        assert c.request(b"mn\r\n") == b"MN\r\n"


def test_killed_backend_leaves_other_keys_working(cl):
    other = cl.keys_on(0, 20, "alive0") + cl.keys_on(2, 20, "alive2")
    dead = cl.keys_on(1, 20, "dead")
    with cl.conn() as c:
        cl.backends[1].kill()
        for k_live, k_dead in zip(other, dead * 2):
            _healthy_round_trip(c, k_live, b"ok-" + k_live)
            assert DOWN_GET.match(c.request(b"get %s\r\n" % k_dead, timeout=5))
        # Pipelined: errors take their place among good replies, in order.
        c.send(b"get %s\r\nget %s\r\nget %s\r\n" % (other[0], dead[0], other[1]))
        r = c.recv_replies(3, timeout=5)
        first, rest = _get(other[0], b"ok-" + other[0]), _get(other[1], b"ok-" + other[1])
        assert r.startswith(first) and r.endswith(rest), r
        assert DOWN_GET.match(r[len(first):len(r) - len(rest)]), r


def test_killed_backend_noreply_request_sends_nothing(cl):
    dead = cl.keys_on(1, 1, "dead")[0]
    live = cl.keys_on(0, 1, "live")[0]
    with cl.conn() as c:
        cl.backends[1].kill()
        c.send(b"set %s 0 0 1 noreply\r\nx\r\nset %s 0 0 1\r\ny\r\n" % (dead, live))
        assert c.recv_replies(1, timeout=5) == b"STORED\r\n"
        assert c.recv_idle(idle=0.3, timeout=0.3) == b""


@pytest.mark.time_limit(60)
def test_stopped_backend_times_out_within_pool_timeout(cl):
    slow = cl.keys_on(2, 3, "slow")
    fast = cl.keys_on(0, 3, "fast")
    stopped = cl.backends[2]
    with cl.conn() as c, cl.conn() as other:
        store_many(c, {k: b"s" for k in slow})
        stopped.pause()
        try:
            t0 = time.monotonic()
            c.send(b"get %s\r\n" % slow[0])
            # Meanwhile another client is served: every reply right (its
            # latency is printed, not asserted).
            t1 = time.monotonic()
            _healthy_round_trip(other, fast[0], b"f")
            other_ms = (time.monotonic() - t1) * 1000.0
            # Answered at the pool timeout: SERVER_ERROR timeout, never
            # sooner (the clock started before the send; timers fire late on
            # a busy machine, never early). The bounded read is the hang guard.
            reply = c.recv_replies(1, timeout=5)
            elapsed = time.monotonic() - t0
            assert reply == TIMEOUT_REPLY, reply
            assert elapsed >= 0.8 * POOL_TIMEOUT_MS / 1000.0, elapsed
            # Each request has its own clock: a set times out too, the
            # connection stays usable. (No lower bound for this one: it may be
            # answered before its own deadline, when the get has gone a second
            # full timeout unanswered and memrelay declares the backend
            # connection stalled, src/core/backend.c.)
            assert c.request(b"set %s 0 0 1\r\nz\r\n" % slow[1], timeout=5) == TIMEOUT_REPLY
            _healthy_round_trip(c, fast[1], b"g")
            # memrelay counted exactly those two timeouts, both for the
            # stopped server; the other servers had no timeout or error.
            rows = harness.stats_servers(cl.relay)
            assert rows[stopped.spec()]["timeouts"] == 2, rows[stopped.spec()]
            for mc in cl.backends[:2]:
                row = rows[mc.spec()]
                assert row["timeouts"] == 0 and row["state"] == "up", row
                assert not {k: v for k, v in row.items() if k.startswith("errors_") and v}, row
        finally:
            stopped.resume()
    print("other client's round trip during the stall: %.1f ms" % other_ms)


@pytest.mark.time_limit(60)
def test_late_replies_after_timeout_are_not_misattributed(cl):
    """After SIGCONT the stopped server answers the timed-out requests; those answers must be dropped."""
    keys = cl.keys_on(1, 4, "late")
    stopped = cl.backends[1]
    with cl.conn() as c:
        store_many(c, {k: b"old-" + k for k in keys})
        stopped.pause()
        try:
            c.send(b"get %s\r\nget %s\r\n" % (keys[0], keys[1]))
            assert c.recv_replies(2, timeout=5) == TIMEOUT_REPLY * 2
        finally:
            stopped.resume()

        def recovered():
            r = c.request(b"set %s 0 0 3\r\nnew\r\n" % keys[2], timeout=5)
            return r == b"STORED\r\n"
        assert wait_for(recovered, 5.0, 0.2), "server not used again after SIGCONT"
        for k in keys:
            r = c.request(b"get %s\r\n" % k, timeout=5)
            want = _get(k, b"new") if k == keys[2] else _get(k, b"old-" + k)
            assert r == want, (k, r)


@pytest.mark.time_limit(60)
def test_restarted_backend_serves_again(cl):
    keys = cl.keys_on(1, 3, "back")
    mc = cl.backends[1]
    with cl.conn() as c:
        _healthy_round_trip(c, keys[0], b"1")
        mc.kill()
        assert DOWN_GET.match(c.request(b"get %s\r\n" % keys[0], timeout=5))
        mc.restart()

        def works():
            return c.request(b"set %s 0 0 1\r\n2\r\n" % keys[1], timeout=5) == b"STORED\r\n"
        assert wait_for(works, 10.0, 0.2), "requests still fail 10 s after the backend came back"
        assert c.request(b"get %s\r\n" % keys[1]) == _get(keys[1], b"2")
        assert keys[1] in mc.keys_held([keys[1]])
        assert not c.closed


def _multiget_setup(cl):
    keys = {i: cl.keys_on(i, 10, "mg%d" % i) for i in range(3)}
    order = [k for trio in zip(keys[0], keys[1], keys[2]) for k in trio]
    return keys, order


def test_multiget_with_dead_server_returns_its_keys_as_misses(cl):
    keys, order = _multiget_setup(cl)
    with cl.conn() as c:
        store_many(c, {k: b"v" + k for k in order})
        cl.backends[1].kill()
        reply = c.request(b"get " + b" ".join(order) + b"\r\n", timeout=5)
        want = b"".join(b"VALUE %s 0 %d\r\nv%s\r\n" % (k, len(k) + 1, k) for k in order if k not in keys[1])
        assert_same(reply, want + b"END\r\n")
        assert c.request(b"mn\r\n") == b"MN\r\n"


@pytest.mark.time_limit(60)
def test_multiget_with_stopped_server_returns_its_keys_as_misses_after_timeout(cl):
    keys, order = _multiget_setup(cl)
    with cl.conn() as c:
        store_many(c, {k: b"v" + k for k in order})
        cl.backends[0].pause()
        try:
            t0 = time.monotonic()
            reply = c.request(b"gets " + b" ".join(order) + b"\r\n", timeout=5)
            elapsed = time.monotonic() - t0
            timeouts = harness.server_timeouts(cl.relay, cl.backends)
        finally:
            cl.backends[0].resume()
        got = [line.split(b" ")[1] for line in reply.split(b"\r\n") if line.startswith(b"VALUE ")]
        assert got == [k for k in order if k not in keys[0]]
        assert reply.endswith(b"END\r\n")
        # The stopped server's part timed out (counted once, for it alone) and
        # the reply waited for that deadline, never less (a lower bound a slow
        # machine cannot break); the bounded read is the hang guard.
        assert timeouts == {cl.backends[0].spec(): 1, cl.backends[1].spec(): 0, cl.backends[2].spec(): 0}, timeouts
        assert elapsed >= 0.8 * POOL_TIMEOUT_MS / 1000.0, elapsed


def test_multiget_with_dead_server_fail_mode_answers_server_error(cluster):
    cl = cluster(weights=(1, 1, 1), timeout=POOL_TIMEOUT_MS, multiget_errors="fail")
    keys, order = _multiget_setup(cl)
    with cl.conn() as c:
        store_many(c, {k: b"v" + k for k in order})
        cl.backends[2].kill()
        reply = c.request(b"get " + b" ".join(order) + b"\r\n", timeout=5)
        assert ANY_SERVER_ERROR.match(reply), reply[:300]
        assert c.recv_idle(idle=0.2, timeout=0.2) == b""
        # The connection stays usable, and a multi-get avoiding the dead server works.
        live = keys[0][:3] + keys[1][:3]
        want = b"".join(b"VALUE %s 0 %d\r\nv%s\r\n" % (k, len(k) + 1, k) for k in live) + b"END\r\n"
        assert c.request(b"get " + b" ".join(live) + b"\r\n") == want


def test_all_backends_dead_proxy_keeps_accepting(cl):
    for mc in cl.backends:
        mc.kill()
    for _ in range(3):
        with cl.conn() as c:
            assert DOWN_GET.match(c.request(b"get anything\r\n", timeout=5))
            assert c.request(b"get a b c d e f\r\n", timeout=5) == b"END\r\n"
    cl.relay.assert_running()
