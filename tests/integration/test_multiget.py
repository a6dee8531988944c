"""Multi-key retrievals over several servers come back as memcached would send them.

One reply, values in the client's key order (duplicates repeated, misses
left out), a single END; gets carries each backend's CAS unique; gat/gats
touch every key on its own server.
"""

import random

import pytest

from harness import assert_same, parse_values, store_many

KEYS_PER_REQUEST = 1000


def _dataset(seed=11, stored=700):
    # 700 stored keys give a 1,000-key request.
    """(items {key: (flags, value)}, request key list with misses and duplicates)."""
    rnd = random.Random(seed)
    items = {}
    for i in range(stored):
        key = b"mget:%d:%s" % (i, b"x" * rnd.randrange(0, 30))
        size = rnd.choice([0, 1, 10, 100, 1000, 5000])
        items[key] = (rnd.randrange(0, 2 ** 32), bytes(rnd.randrange(256) for _ in range(size)))
    request = list(items)
    request += [b"mget:missing:%d" % i for i in range(200)]
    request += rnd.sample(list(items), 60)
    request += [b"mget:missing:%d" % i for i in range(40)]  # repeated misses
    rnd.shuffle(request)
    return items, request


def _store(conn, items):
    by_flags = {}
    for k, (flags, v) in items.items():
        by_flags.setdefault(flags, {})[k] = v
    for flags, chunk in by_flags.items():
        store_many(conn, chunk, flags=flags)


def _expected(items, request):
    out = []
    for k in request:
        if k in items:
            flags, v = items[k]
            out.append(b"VALUE %s %d %d\r\n%s\r\n" % (k, flags, len(v), v))
    return b"".join(out) + b"END\r\n"


@pytest.fixture(params=[(1,), (1, 2, 1, 3)], ids=["1_server", "4_servers"])
def cl(cluster, request):
    """A pool of four mixed-weight servers (and of one, the trivial case that DIRECT mode checks)."""
    return cluster(weights=request.param)


def test_thousand_key_get_in_client_order_with_one_end(cl):
    items, request = _dataset()
    with cl.conn(timeout=20) as c:
        _store(c, items)
        c.send(b"get " + b" ".join(request) + b"\r\n")
        reply = c.recv_replies(1, timeout=20)
        assert_same(reply, _expected(items, request))
        assert c.recv_idle(idle=0.2, timeout=0.2) == b"", "bytes after the END"
    # The keys really were spread: every backend holds some.
    assert all(mc.keys_held(list(items)) for mc in cl.backends)


def test_thousand_key_gets_returns_each_backends_cas(cl):
    items, request = _dataset(seed=12)
    with cl.conn(timeout=20) as c:
        _store(c, items)
        c.send(b"gets " + b" ".join(request) + b"\r\n")
        reply = c.recv_replies(1, timeout=20)
    values = parse_values(reply)
    assert_same(b"".join(b"VALUE %s %d %d\r\n%s\r\n" % (k, f, len(v), v) for k, f, _, v in values) + b"END\r\n",
                _expected(items, request), "gets reply without the CAS uniques")
    assert reply.endswith(b"END\r\n")
    # Each CAS is what that key's own server reports.
    direct = {}
    for mc in cl.backends:
        with mc.conn(timeout=10) as d:
            keys = [k for k in items if cl.owner(k) is mc]
            for i in range(0, len(keys), 100):
                r = d.request(b"gets " + b" ".join(keys[i:i + 100]) + b"\r\n", timeout=10)
                direct.update({k: cas for k, _, cas, _ in parse_values(r)})
    assert all(cas == direct[k] for k, _, cas, _ in values)


def test_gat_touches_every_key_on_its_server(cl):
    items, request = _dataset(seed=13, stored=300)
    request = request[:400]
    with cl.conn(timeout=20) as c:
        _store(c, items)
        c.send(b"gat 1000 " + b" ".join(request) + b"\r\n")
        reply = c.recv_replies(1, timeout=20)
    assert_same(reply, _expected(items, request))
    touched = sorted(set(k for k in request if k in items))
    for k in touched:
        with cl.owner(k).conn() as d:
            line = d.request(b"mg " + k + b" t\r\n")
        ttl = int(line.split()[1][1:])
        assert 990 <= ttl <= 1000, (k, line)


def test_gats_returns_values_with_cas(cl):
    items, request = _dataset(seed=14, stored=200)
    request = request[:300]
    with cl.conn(timeout=20) as c:
        _store(c, items)
        c.send(b"gats 100 " + b" ".join(request) + b"\r\n")
        reply = c.recv_replies(1, timeout=20)
    values = parse_values(reply)
    assert_same(b"".join(b"VALUE %s %d %d\r\n%s\r\n" % (k, f, len(v), v) for k, f, _, v in values) + b"END\r\n",
                _expected(items, request), "gats reply without the CAS uniques")
    assert all(cas is not None and cas > 0 for _, _, cas, _ in values)


def test_all_miss_multiget_is_just_end(cl):
    with cl.conn() as c:
        assert c.request(b"get " + b" ".join(b"nothing:%d" % i for i in range(300)) + b"\r\n") == b"END\r\n"


def test_multiget_with_duplicate_keys_repeats_values(cl):
    with cl.conn() as c:
        keys = cl.keys_on(0, 1, "dup") + cl.keys_on(len(cl.backends) - 1, 1, "dup")
        store_many(c, {keys[0]: b"A", keys[1]: b"B"})
        req = [keys[0], keys[1], keys[0], b"dup:none", keys[1], keys[1]]
        reply = c.request(b"get " + b" ".join(req) + b"\r\n")
        assert_same(reply, _expected({keys[0]: (0, b"A"), keys[1]: (0, b"B")}, req))


def test_multiget_large_values_across_servers(cl):
    big = {}
    for idx in range(len(cl.backends)):
        for j, k in enumerate(cl.keys_on(idx, 2, "big%d" % idx)):
            big[k] = (j, bytes([65 + idx]) * (200_000 + 1000 * idx + j))
    with cl.conn(timeout=20) as c:
        _store(c, big)
        req = sorted(big, reverse=True)
        c.send(b"get " + b" ".join(req) + b"\r\n")
        assert_same(c.recv_replies(1, timeout=20), _expected(big, req))


def test_back_to_back_multigets_each_get_one_end(cl):
    items, request = _dataset(seed=15, stored=100)
    with cl.conn(timeout=20) as c:
        _store(c, items)
        reqs = [request[i:i + 37] for i in range(0, 370, 37)]
        c.send(b"".join(b"get " + b" ".join(r) + b"\r\n" for r in reqs))
        reply = c.recv_replies(len(reqs), timeout=20)
        assert_same(reply, b"".join(_expected(items, r) for r in reqs))


def test_multiget_key_of_251_bytes_is_rejected_like_memcached(cl, memcached_factory):
    """memcached rejects the whole line (values already found are dropped); the same must come back.

    The set is acknowledged before the get goes out: memcached also drops a
    pipelined reply still waiting in its output batch (here STORED), which
    depends on timing.
    """
    ref = memcached_factory()
    data = b"get a " + b"k" * 251 + b" a\r\nget a\r\n"
    with ref.conn() as d:
        assert d.request(b"set a 0 0 1\r\nA\r\n") == b"STORED\r\n"
        d.send(data)
        want = d.recv_replies(2)
    assert want == b"CLIENT_ERROR bad command line format\r\nVALUE a 0 1\r\nA\r\nEND\r\n", want
    with cl.conn() as c:
        assert c.request(b"set a 0 0 1\r\nA\r\n") == b"STORED\r\n"
        c.send(data)
        assert_same(c.recv_replies(2), want)
        assert c.recv_idle(idle=0.2, timeout=0.2) == b""
