"""Listeners: IPv6 loopback, unix sockets with a file mode, several pools at once."""

import os
import stat

import pytest

from harness import Conn, Pool, ipv6_loopback_available


def _round_trip(addr, key=b"lk", value=b"hello"):
    with Conn(addr) as c:
        assert c.request(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value)) == b"STORED\r\n"
        assert c.request(b"get %s\r\n" % key) == b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key, len(value), value)


def test_ipv6_loopback_listener(memcached_factory, relay_factory):
    if not ipv6_loopback_available():
        pytest.skip("this machine has no ::1 (IPv6 loopback) to listen on")
    mc = memcached_factory()
    relay = relay_factory({"alpha": Pool([mc], listen="tcp6")})
    assert relay.addr()[0] == "::1"
    _round_trip(relay.addr())
    assert b"lk" in mc.keys_held([b"lk"])


def test_unix_socket_listener_with_mode_0666(memcached_factory, relay_factory, short_tmp):
    mc = memcached_factory()
    path = os.path.join(short_tmp, "relay.sock")
    relay = relay_factory({"alpha": Pool([mc], listen=("unix", path, "0666"))})
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o666, oct(stat.S_IMODE(st.st_mode))
    _round_trip(relay.addr())
    assert b"lk" in mc.keys_held([b"lk"])


def test_unix_socket_listener_with_mode_0600(memcached_factory, relay_factory, short_tmp):
    mc = memcached_factory()
    path = os.path.join(short_tmp, "private.sock")
    relay_factory({"alpha": Pool([mc], listen=("unix", path, "0600"))})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_unix_socket_replaces_stale_socket_file(memcached_factory, relay_factory, short_tmp):
    import socket
    path = os.path.join(short_tmp, "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # leaves the file behind, like a crashed process would
    mc = memcached_factory()
    relay = relay_factory({"alpha": Pool([mc], listen=("unix", path, "0666"))})
    _round_trip(relay.addr())


def test_two_pools_listen_at_once(memcached_factory, relay_factory):
    a, b = memcached_factory(), memcached_factory()
    relay = relay_factory({"alpha": Pool([a]), "beta": Pool([b])})
    _round_trip(relay.addr("alpha"), b"ka", b"from-alpha")
    _round_trip(relay.addr("beta"), b"kb", b"from-beta")
    assert a.keys_held([b"ka", b"kb"]) == {b"ka"}
    assert b.keys_held([b"ka", b"kb"]) == {b"kb"}


def test_tcp_and_unix_pools_together(memcached_factory, relay_factory, short_tmp):
    a, b = memcached_factory(), memcached_factory()
    path = os.path.join(short_tmp, "beta.sock")
    relay = relay_factory({"alpha": Pool([a]), "beta": Pool([b], listen=("unix", path, "0666"))})
    _round_trip(relay.addr("alpha"), b"ka")
    _round_trip(relay.addr("beta"), b"kb")
    assert a.keys_held([b"ka", b"kb"]) == {b"ka"} and b.keys_held([b"ka", b"kb"]) == {b"kb"}


def test_many_client_connections(memcached_factory, relay_factory):
    mc = memcached_factory()
    relay = relay_factory({"alpha": Pool([mc])})
    conns = [Conn(relay.addr()) for _ in range(200)]
    try:
        for i, c in enumerate(conns):
            c.send(b"set many:%d 0 0 1\r\n%d\r\n" % (i, i % 10))
        for c in conns:
            assert c.recv_replies(1) == b"STORED\r\n"
        for i, c in enumerate(conns):
            assert c.request(b"get many:%d\r\n" % i) == b"VALUE many:%d 0 1\r\n%d\r\nEND\r\n" % (i, i % 10)
    finally:
        for c in conns:
            c.close()
