"""Keys live exactly where ketama (libmemcached KETAMA_WEIGHTED, twemproxy) says.

Keys are written through memrelay, then every backend is read directly: each
key must be on the server the oracle names and on no other. Two oracles are
used: libmemcached itself (ctypes) and a pure-python ring; they are first
checked against each other and against the reference vectors.
"""

import random

import pytest

from harness import Ketama, LibmemcachedOracle, fnv1a_64, md5_hash, store_many

# ---- the oracles themselves (no proxy needed)


def test_oracle_hashes_match_reference_vectors():
    assert fnv1a_64(b"apple") == 1488911807
    assert fnv1a_64(b"foo") == 4275688823
    assert md5_hash(b"apple") == 3195025439
    assert md5_hash(b"foo") == 3675831724


def test_oracle_rings_match_reference_vectors():
    two = Ketama([("127.0.0.1:21211", 1), ("127.0.0.1:21212", 1)])
    assert len(two.points) == 320
    assert [two.server_for(k) for k in ("foo", "bar", "user:1", "key:42", "session:abc")] == [0, 1, 1, 1, 0]
    four = Ketama([("127.0.0.1:21211", 1), ("127.0.0.1:21212", 2), ("127.0.0.1:21213", 3), ("127.0.0.1:21214", 5)])
    assert len(four.points) == 632
    assert [four.server_for(k) for k in ("foo", "bar", "user:1")] == [3, 2, 1]
    named = Ketama([("127.0.0.2", 1), ("127.0.0.3", 1), ("127.0.0.1:21214", 1)])
    assert len(named.points) == 480
    assert [named.server_for(k) for k in ("foo", "bar")] == [0, 2]
    assert len(Ketama([("s%d" % i, 1) for i in range(25)]).points) == 25 * 156


def _random_keys(n, seed):
    rnd = random.Random(seed)
    keys = []
    for _ in range(n):
        length = rnd.randrange(1, 60)
        keys.append(bytes(rnd.choice(range(33, 256)) for _ in range(length)))
    return keys


@pytest.mark.parametrize("hash_name", ["fnv1a_64", "md5"])
def test_python_ring_agrees_with_libmemcached(hash_name):
    rnd = random.Random(7)
    servers = [("127.0.0.1", 20000 + i, rnd.randrange(1, 6)) for i in range(5)]
    try:
        lib = LibmemcachedOracle(servers, hash_name)
    except OSError as e:
        pytest.skip("libmemcached.so.11 not loadable: %s" % e)
    ring = Ketama([("%s:%d" % (h, p), w) for h, p, w in servers], {"fnv1a_64": fnv1a_64, "md5": md5_hash}[hash_name])
    keys = _random_keys(3000, 1)
    assert [k for k in keys if lib.server_for(k) != ring.server_for(k)] == []
    lib.close()


# ---- memrelay's placement


def _placement_keys(n):
    """ASCII keys plus keys with bytes >= 0x80 (the sign-extension trap)."""
    keys = [b"user:%d" % i for i in range(n - n // 5)]
    rnd = random.Random(3)
    while len(keys) < n:
        k = b"u8:" + bytes(rnd.choice(range(0x21, 0x100)) for _ in range(rnd.randrange(1, 20)))
        if k not in keys:
            keys.append(k)
    return keys


def _check_placement(cl, keys):
    with cl.conn(timeout=10) as c:
        store_many(c, {k: b"v-" + k for k in keys})
    held = [mc.keys_held(keys) for mc in cl.backends]
    wrong = []
    for k in keys:
        where = [i for i, h in enumerate(held) if k in h]
        want = cl.owner_index(k)
        if where != [want]:
            wrong.append((k, want, where))
    assert not wrong, "%d of %d keys misplaced, e.g. (key, ketama owner, found on) %r" % (
        len(wrong), len(keys), wrong[:5])
    # Sanity: a mixed-weight pool spreads keys over every server.
    assert all(held), [len(h) for h in held]


def _check_libmemcached_agrees(cl, keys):
    try:
        servers = []
        for mc, w, name in cl.servers:
            servers.append((name, 11211, w) if name else ("127.0.0.1", mc.port, w))
        lib = LibmemcachedOracle(servers)
    except OSError as e:
        pytest.skip("libmemcached.so.11 not loadable: %s" % e)
    assert [k for k in keys if lib.server_for(k) != cl.owner_index(k)] == []
    lib.close()


def test_keys_placed_by_ketama_three_servers_mixed_weights(cluster):
    cl = cluster(weights=(1, 2, 3))
    keys = _placement_keys(2000)
    _check_libmemcached_agrees(cl, keys)
    _check_placement(cl, keys)


def test_keys_placed_by_ketama_four_servers_mixed_weights(cluster):
    cl = cluster(weights=(2, 1, 5, 3))
    keys = _placement_keys(2000)
    _check_libmemcached_agrees(cl, keys)
    _check_placement(cl, keys)


def test_keys_placed_by_server_name_when_named(cluster):
    cl = cluster(weights=(1, 1, 2), names=("cache-a", None, "cache-c"))
    keys = _placement_keys(2000)
    _check_libmemcached_agrees(cl, keys)
    _check_placement(cl, keys)


def test_keys_placed_by_ketama_md5_hash(cluster):
    cl = cluster(weights=(1, 3, 2), hash="md5")
    keys = _placement_keys(1000)
    _check_placement(cl, keys)


def test_keys_placed_by_modula(cluster):
    weights = (1, 2, 1)
    cl = cluster(weights=weights, distribution="modula")
    slots = [i for i, w in enumerate(weights) for _ in range(w)]
    keys = _placement_keys(1000)
    with cl.conn(timeout=10) as c:
        store_many(c, {k: b"m" for k in keys})
    held = [mc.keys_held(keys) for mc in cl.backends]
    wrong = [k for k in keys if [i for i, h in enumerate(held) if k in h] != [slots[fnv1a_64(k) % len(slots)]]]
    assert not wrong, "%d keys misplaced, e.g. %r" % (len(wrong), wrong[:5])


def test_every_key_reads_back_through_proxy(cluster):
    cl = cluster(weights=(1, 2, 3))
    keys = _placement_keys(600)
    with cl.conn(timeout=10) as c:
        store_many(c, {k: b"v-" + k for k in keys})
        for k in keys:
            assert c.request(b"get " + k + b"\r\n") == b"VALUE %s 0 %d\r\nv-%s\r\nEND\r\n" % (k, len(k) + 2, k)


def test_meta_commands_placed_like_classic_ones(cluster):
    cl = cluster(weights=(1, 1, 1))
    keys = [b"meta:%d" % i for i in range(300)]
    with cl.conn(timeout=10) as c:
        c.send(b"".join(b"ms %s 1 q\r\nx\r\n" % k for k in keys) + b"mn\r\n")
        assert c.recv_replies(1, timeout=10) == b"MN\r\n"
    held = [mc.keys_held(keys) for mc in cl.backends]
    wrong = [k for k in keys if [i for i, h in enumerate(held) if k in h] != [cl.owner_index(k)]]
    assert not wrong, wrong[:5]


def test_base64_meta_key_placed_by_decoded_key(cluster):
    import base64
    cl = cluster(weights=(1, 1, 1))
    keys = [b"b64:%d" % i for i in range(200)]
    with cl.conn(timeout=10) as c:
        c.send(b"".join(b"ms %s 1 b q\r\nx\r\n" % base64.b64encode(k) for k in keys) + b"mn\r\n")
        assert c.recv_replies(1, timeout=10) == b"MN\r\n"
    held = [mc.keys_held(keys) for mc in cl.backends]
    wrong = [k for k in keys if [i for i, h in enumerate(held) if k in h] != [cl.owner_index(k)]]
    assert not wrong, wrong[:5]
