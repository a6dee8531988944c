"""Key-prefix routes send matching keys to another pool."""

import pytest

from harness import Ketama, Pool, store_many


@pytest.fixture
def routed(memcached_factory, relay_factory):
    default = [memcached_factory(), memcached_factory()]
    sessions = memcached_factory()
    relay = relay_factory({
        "alpha": Pool(default, routes=[("sess:", "sessions")]),
        "sessions": Pool([sessions], listen=None),
    })
    ring = Ketama([(mc.ident(), 1) for mc in default])
    return relay, default, sessions, ring


def test_prefixed_keys_land_on_the_route_pool(routed):
    relay, default, sessions, ring = routed
    sess = [b"sess:%d" % i for i in range(200)]
    other = [b"user:%d" % i for i in range(200)]
    with relay.conn() as c:
        store_many(c, {k: b"v" for k in sess + other})
    assert sessions.keys_held(sess + other) == set(sess)
    for i, mc in enumerate(default):
        assert mc.keys_held(sess + other) == {k for k in other if ring.server_for(k) == i}


def test_prefix_match_is_exact_and_case_sensitive(routed):
    relay, default, sessions, ring = routed
    near = [b"Sess:1", b"sess1", b"ses:1", b"xsess:1", b"sess"]
    with relay.conn() as c:
        store_many(c, {k: b"v" for k in near + [b"sess:"]})
    assert sessions.keys_held(near + [b"sess:"]) == {b"sess:"}


def test_multiget_spanning_route_and_default_pools(routed):
    relay, default, sessions, ring = routed
    items = {b"sess:a": b"1", b"user:a": b"2", b"sess:b": b"3", b"user:b": b"4"}
    with relay.conn() as c:
        store_many(c, items)
        order = [b"user:b", b"sess:a", b"nope", b"sess:b", b"user:a", b"sess:zz"]
        want = b"".join(b"VALUE %s 0 1\r\n%s\r\n" % (k, items[k]) for k in order if k in items) + b"END\r\n"
        assert c.request(b"get " + b" ".join(order) + b"\r\n") == want


def test_meta_and_arithmetic_commands_follow_routes(routed):
    relay, default, sessions, ring = routed
    with relay.conn() as c:
        assert c.request(b"ms sess:m 2 T0\r\n10\r\n") == b"HD\r\n"
        assert c.request(b"incr sess:m 5\r\n") == b"15\r\n"
        assert c.request(b"mg sess:m v\r\n") == b"VA 2\r\n15\r\n"
        assert c.request(b"delete sess:m\r\n") == b"DELETED\r\n"
    with sessions.conn() as d:
        assert d.request(b"set sess:direct 0 0 1\r\nd\r\n") == b"STORED\r\n"
    with relay.conn() as c:
        assert c.request(b"get sess:direct\r\n") == b"VALUE sess:direct 0 1\r\nd\r\nEND\r\n"


def test_route_pool_backend_failure_does_not_touch_default_pool(routed):
    relay, default, sessions, ring = routed
    sessions.kill()
    with relay.conn() as c:
        assert c.request(b"get sess:1\r\n", timeout=5).startswith(b"SERVER_ERROR ")
        assert c.request(b"set user:1 0 0 1\r\nx\r\n") == b"STORED\r\n"
        assert c.request(b"get user:1 sess:1\r\n", timeout=5) == b"VALUE user:1 0 1\r\nx\r\nEND\r\n"


def test_stats_route_explains_where_a_key_goes(memcached_factory, relay_factory):
    """`stats route <key>` names the route, pool, hash and the server that holds the key."""
    from harness import Pool
    main = [memcached_factory() for _ in range(2)]
    sess = memcached_factory()
    relay = relay_factory({
        "front": Pool(main, routes=[("sess:", "sessions")]),
        "sessions": Pool([sess], listen=None),
    })
    with relay.conn() as c:
        out = c.request(b"stats route sess:42\r\n")
        lines = dict(l.split(b" ", 2)[1:] for l in out.split(b"\r\n") if l.startswith(b"STAT "))
        assert lines[b"pool"] == b"sessions"
        assert lines[b"route"] == b'prefix "sess:"'
        assert lines[b"primary"].split(b" ")[0] == sess.spec().encode()
        # A key of the front pool: the primary is the server the key is then stored on.
        out = c.request(b"stats route user:7\r\n")
        lines = dict(l.split(b" ", 2)[1:] for l in out.split(b"\r\n") if l.startswith(b"STAT "))
        assert lines[b"pool"] == b"front" and lines[b"route"] == b"own servers"
        assert c.request(b"set user:7 0 0 1\r\nx\r\n") == b"STORED\r\n"
        holder = [m for m in main if m.keys_held([b"user:7"])]
        assert len(holder) == 1
        assert lines[b"primary"].split(b" ")[0] == holder[0].spec().encode()
        assert c.request(b"stats route\r\n") == b"CLIENT_ERROR usage: stats route <key>\r\n"
