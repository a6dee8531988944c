"""Real client libraries and tools work through memrelay unchanged."""

import re
import shutil
import subprocess

import pytest

pymemcache = pytest.importorskip("pymemcache")
from pymemcache.client.base import Client  # noqa: E402


@pytest.fixture(params=[(1,), (1, 2, 3)], ids=["1_server", "3_servers"])
def cl(cluster, request):
    return cluster(weights=request.param)


@pytest.fixture
def client(cl):
    c = Client(cl.addr, connect_timeout=5, timeout=5, default_noreply=False)
    yield c
    c.close()


def test_pymemcache_set_get_delete(client):
    assert client.set("a", b"1") is True
    assert client.get("a") == b"1"
    assert client.get("missing") is None
    assert client.delete("a") is True
    assert client.delete("a") is False
    assert client.get("a") is None


def test_pymemcache_get_many(client):
    values = {"gm:%d" % i: b"v%d" % i for i in range(300)}
    assert client.set_many(values) == []
    got = client.get_many(list(values) + ["gm:none:%d" % i for i in range(50)])
    assert got == values


def test_pymemcache_incr_decr(client):
    assert client.incr("n", 1) is None
    client.set("n", b"10")
    assert client.incr("n", 5) == 15
    assert client.decr("n", 20) == 0
    assert client.incr("n", 2 ** 64 - 1) == 2 ** 64 - 1


def test_pymemcache_cas(client):
    client.set("c", b"x")
    value, token = client.gets("c")
    assert value == b"x"
    assert client.cas("c", b"y", token) is True
    assert client.cas("c", b"z", token) is False
    assert client.get("c") == b"y"
    assert client.cas("c-missing", b"z", b"1") is None


def test_pymemcache_add_replace_append_prepend(client):
    assert client.add("k", b"b") is True
    assert client.add("k", b"x") is False
    assert client.replace("k", b"c") is True
    assert client.replace("k-missing", b"x") is False
    assert client.append("k", b"d") is True
    assert client.prepend("k", b"a") is True
    assert client.get("k") == b"acd"


def test_pymemcache_touch(client):
    client.set("t", b"x", expire=1000)
    assert client.touch("t", 2000) is True
    assert client.touch("t-missing", 10) is False
    assert client.get("t") == b"x"


def test_pymemcache_noreply_variants(client):
    keys = ["nr:%d" % i for i in range(50)]
    for k in keys:
        assert client.set(k, b"1", noreply=True) is True
    client.add(keys[0], b"x", noreply=True)
    client.replace(keys[1], b"2", noreply=True)
    client.append(keys[2], b"3", noreply=True)
    client.prepend(keys[3], b"0", noreply=True)
    client.incr(keys[4], 5, noreply=True)
    client.decr(keys[5], 1, noreply=True)
    client.delete(keys[6], noreply=True)
    client.touch(keys[7], 100, noreply=True)
    got = client.get_many(keys)
    assert got["nr:0"] == b"1"
    assert got["nr:1"] == b"2"
    assert got["nr:2"] == b"13"
    assert got["nr:3"] == b"01"
    assert got["nr:4"] == b"6"
    assert got["nr:5"] == b"0"
    assert "nr:6" not in got
    assert len(got) == 49


def test_pymemcache_binary_values(client, cl):
    data = bytes(range(256)) * 40
    client.set("bin", data)
    assert client.get("bin") == data
    with cl.conn() as c:
        assert c.request(b"get bin\r\n") == b"VALUE bin 0 10240\r\n" + data + b"\r\nEND\r\n"


# ---- libmemcached tools


def _tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.skip("%s not installed (package libmemcached-tools)" % name)
    return path


@pytest.mark.time_limit(90)
def test_memccapable_ascii_passes_all(cl):
    tool = _tool("memccapable")
    host, port = cl.addr  # its own backends: memccapable flushes them
    res = subprocess.run([tool, "-a", "-h", host, "-p", str(port)], capture_output=True, timeout=60)
    out = (res.stdout + res.stderr).decode("utf-8", "replace")
    failed = [line for line in out.splitlines() if "[" in line and "[pass]" not in line]
    assert res.returncode == 0 and not failed and "All tests passed" in out, out


@pytest.mark.time_limit(60)
def test_memcaslap_short_run_without_errors(cl):
    tool = shutil.which("memcaslap") or shutil.which("memaslap")
    if tool is None:
        pytest.skip("memcaslap not installed (package libmemcached-tools)")
    host, port = cl.addr
    res = subprocess.run([tool, "-s", "%s:%d" % (host, port), "-t", "3s", "-T", "2", "-c", "16",
                          "-v", "0.1", "-d", "4"], capture_output=True, timeout=40)
    out = (res.stdout + res.stderr).decode("utf-8", "replace")
    assert res.returncode == 0, out
    m = re.search(r"verify_failed:\s*(\d+)", out)
    assert m and int(m.group(1)) == 0, out
    m = re.search(r"cmd_get:\s*(\d+)", out)
    assert m and int(m.group(1)) > 0, out
    assert not re.search(r"(?i)\berror\b|connection (refused|reset)", out), out


@pytest.mark.time_limit(60)
def test_memcslap_set_and_get_without_errors(cl):
    tool = _tool("memcslap")
    host, port = cl.addr
    for test in ("set", "mget"):
        res = subprocess.run([tool, "-s", "%s:%d" % (host, port), "-t", test, "-c", "4", "-e", "2000"],
                             capture_output=True, timeout=30)
        out = (res.stdout + res.stderr).decode("utf-8", "replace")
        assert res.returncode == 0, out
        assert "Time to" in out, out
        assert not re.search(r"(?i)\berror\b|failure", out), out
