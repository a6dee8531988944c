"""Pipelined requests: any framing in, replies strictly in request order out.

The expected bytes come from a reference memcached that is sent the very
same stream: replies do not depend on which server holds a key, only CAS
uniques do, and those are masked.
"""

import random
import threading

import pytest

from harness import assert_same, count_replies, describe_difference, mask_volatile


def _norm(data):
    return mask_volatile(data, numeric_padding=True)


def _mixed_requests(rnd, n, prefix=b"p"):
    """n requests over a small key space (so they interact), every one answered."""
    keys = [b"%s:%d" % (prefix, i) for i in range(40)]
    reqs = []
    for _ in range(n):
        k = rnd.choice(keys)
        op = rnd.randrange(16)
        v = b"%d" % rnd.randrange(10 ** rnd.randrange(1, 6))
        if op == 0:
            reqs.append(b"set %s %d 0 %d\r\n%s\r\n" % (k, rnd.randrange(100), len(v), v))
        elif op == 1:
            reqs.append(b"get %s\r\n" % k)
        elif op == 2:
            reqs.append(b"get %s\r\n" % b" ".join(rnd.sample(keys, rnd.randrange(2, 12))))
        elif op == 3:
            reqs.append(b"add %s 0 0 %d\r\n%s\r\n" % (k, len(v), v))
        elif op == 4:
            reqs.append(b"incr %s %d\r\n" % (k, rnd.randrange(1000)))
        elif op == 5:
            reqs.append(b"decr %s %d\r\n" % (k, rnd.randrange(1000)))
        elif op == 6:
            reqs.append(b"delete %s\r\n" % k)
        elif op == 7:
            reqs.append(b"append %s 0 0 %d\r\n%s\r\n" % (k, len(v), v))
        elif op == 8:
            reqs.append(b"prepend %s 0 0 %d\r\n%s\r\n" % (k, len(v), v))
        elif op == 9:
            reqs.append(b"touch %s 1000\r\n" % k)
        elif op == 10:
            reqs.append(b"gets %s\r\n" % b" ".join(rnd.sample(keys, rnd.randrange(1, 5))))
        elif op == 11:
            reqs.append(b"mg %s v f k O%d\r\n" % (k, rnd.randrange(10 ** 6)))
        elif op == 12:
            reqs.append(b"ms %s %d T0 F%d\r\n%s\r\n" % (k, len(v), rnd.randrange(9), v))
        elif op == 13:
            reqs.append(b"md %s q\r\nmn\r\n" % k)
        elif op == 14:
            reqs.append(b"replace %s 0 0 %d\r\n%s\r\n" % (k, len(v), v))
        else:
            reqs.append(b"set %s 1 0 %d noreply\r\n%s\r\nget %s\r\n" % (k, len(v), v, k))
    return reqs


@pytest.fixture(params=[
    ((1,), {}),
    ((1, 2, 3), {}),
    ((1, 2, 3), {"server_connections": 4, "threads": 2}),
], ids=["1_server", "3_servers", "3_servers_4_conns_2_threads"])
def cl(cluster, request):
    weights, settings = request.param
    return cluster(weights=weights, **settings)


def _run(cl, ref, reqs, **send_kw):
    stream = b"".join(reqs)
    ref.flush()
    with ref.conn(timeout=10) as d:
        d.send(stream)
        want = d.recv_idle(idle=0.3, timeout=10)
    cl.flush()
    with cl.conn(timeout=20) as c:
        c.send(stream, timeout=60, **send_kw)
        got = c.recv_replies(count_replies(want), timeout=20)
        got += c.recv_idle(idle=0.2, timeout=0.2)
        closed = c.closed
    assert_same(_norm(got), _norm(want))
    assert not closed, "connection closed"


def test_500_mixed_requests_in_one_send_replied_in_order(cl, memcached_factory):
    ref = memcached_factory()
    _run(cl, ref, _mixed_requests(random.Random(500), 500))


def test_requests_written_one_byte_at_a_time(cl, memcached_factory):
    ref = memcached_factory()
    reqs = _mixed_requests(random.Random(1), 40)
    reqs.append(b"set big 0 0 3000\r\n" + b"b" * 3000 + b"\r\nget big\r\n")
    _run(cl, ref, reqs, chunk=1, delay=0.0005)


def test_requests_split_at_every_boundary_size(cl, memcached_factory):
    ref = memcached_factory()
    reqs = _mixed_requests(random.Random(2), 200)
    for chunk in (2, 3, 7, 13, 64, 1000):
        _run(cl, ref, reqs, chunk=chunk, delay=0.0002 if chunk < 10 else 0.0)


def test_large_and_small_values_interleaved_stay_in_order(cl, memcached_factory):
    ref = memcached_factory()
    reqs = []
    for i in range(30):
        size = 300_000 if i % 3 == 0 else 3
        reqs.append(b"set v%d 0 0 %d\r\n%s\r\n" % (i, size, bytes([97 + i % 26]) * size))
    for i in range(30):
        reqs.append(b"get v%d\r\nget v%d v%d\r\n" % (i, i, (i + 1) % 30))
    _run(cl, ref, reqs)


def test_reply_bursts_many_blocks_long_arrive_whole_and_in_order(cl, memcached_factory):
    """A server answers a deep pipeline with far more than one 16 KiB input block of replies at once:
    memrelay reads on while a read fills its block, so values straddle block ends at every offset."""
    ref = memcached_factory()
    rnd = random.Random(7)
    sizes = [rnd.randrange(1, 7000) for _ in range(40)]
    reqs = [b"set burst:%d 0 0 %d\r\n%s\r\n" % (i, n, bytes([97 + i % 26]) * n) for i, n in enumerate(sizes)]
    for _ in range(400):
        keys = rnd.sample(range(40), rnd.choice((1, 1, 1, 3, 8)))
        reqs.append(b"get %s\r\n" % b" ".join(b"burst:%d" % k for k in keys))
    _run(cl, ref, reqs)


def test_concurrent_pipelining_clients_each_see_their_own_replies(cl, memcached_factory):
    ref = memcached_factory()
    nclients, rounds = 8, 3
    plans = []
    for ci in range(nclients):
        rnd = random.Random(100 + ci)
        plans.append([_mixed_requests(rnd, 150, prefix=b"c%d" % ci) for _ in range(rounds)])
    # Expected replies: each client's stream alone on the reference (keys are disjoint).
    ref.flush()
    wants = []
    for plan in plans:
        with ref.conn(timeout=10) as d:
            per_round = []
            for reqs in plan:
                d.send(b"".join(reqs))
                per_round.append(d.recv_idle(idle=0.2, timeout=10))
            wants.append(per_round)
    cl.flush()
    errors = []

    def client(ci):
        try:
            with cl.conn(timeout=20) as c:
                for r, reqs in enumerate(plans[ci]):
                    c.send(b"".join(reqs), timeout=30)
                    want = wants[ci][r]
                    got = c.recv_replies(count_replies(want), timeout=20)
                    if _norm(got) != _norm(want):
                        errors.append("client %d round %d: %s" % (ci, r, describe_difference(_norm(got), _norm(want))))
                        return
        except Exception as e:  # reported below
            errors.append("client %d: %r" % (ci, e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(nclients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=45)
    assert not any(t.is_alive() for t in threads), "clients hung"
    assert not errors, "\n".join(errors)


def test_noreply_requests_between_answered_ones(cl):
    with cl.conn() as c:
        stream = b"".join(b"set nr:%d 0 0 1 noreply\r\n%d\r\nget nr:%d\r\n" % (i, i % 10, i) for i in range(100))
        stream += b"".join(b"delete nr:%d noreply\r\n" % i for i in range(0, 100, 2))
        stream += b"get " + b" ".join(b"nr:%d" % i for i in range(100)) + b"\r\n"
        c.send(stream)
        want = b"".join(b"VALUE nr:%d 0 1\r\n%d\r\nEND\r\n" % (i, i % 10) for i in range(100))
        want += b"".join(b"VALUE nr:%d 0 1\r\n%d\r\n" % (i, i % 10) for i in range(1, 100, 2)) + b"END\r\n"
        got = c.recv_exact(len(want), timeout=10)
        assert_same(got, want)
        assert c.recv_idle(idle=0.2, timeout=0.2) == b""


def test_client_closing_with_replies_pending_leaves_proxy_healthy(cl):
    for round_ in range(5):
        c = cl.conn()
        c.send(b"".join(b"set gone:%d 0 0 5000\r\n%s\r\nget gone:%d gone:x\r\n" % (i, b"g" * 5000, i)
                        for i in range(300)))
        c.send(b"get gone:1 gone:2 gone:3\r\nset half 0 0 100\r\nonly-part")
        c.close()
    with cl.conn() as c:
        assert c.request(b"set after 0 0 2\r\nok\r\n") == b"STORED\r\n"
        assert c.request(b"get after half\r\n") == b"VALUE after 0 2\r\nok\r\nEND\r\n"
    cl.relay.assert_running()
