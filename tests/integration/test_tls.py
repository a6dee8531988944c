"""TLS: client listeners (plain and TLS side by side, mTLS), TLS to memcached -Z backends, probes over TLS.

Certificates are made once per session with the `openssl` CLI in a temporary directory:
a test CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and
another CA with its own server and client certificates (the "wrong CA" cases).
Clients are `openssl s_client`, Python's ssl module and pymemcache over TLS; backends are
Debian's memcached started with -Z.
"""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from harness import Conn, Pool, free_port, wait_for

pytestmark = pytest.mark.needs_memrelay

OPENSSL = "/usr/bin/openssl"
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(args, cwd):
    subprocess.run([OPENSSL] + args, cwd=cwd, check=True, timeout=30,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _make_ca(d, name):
    _openssl(["req", "-x509"] + EC_KEY + ["-keyout", name + ".key", "-out", name + ".pem", "-days", "30",
              "-subj", "/CN=memrelay test %s" % name,
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)


def _make_leaf(d, ca, name, cn, san=None, eku="serverAuth,clientAuth", days=30):
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        if san:
            f.write("subjectAltName=%s\n" % san)
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n" % eku)
    _openssl(["req"] + EC_KEY + ["-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn], d)
    _openssl(["x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
              "-CAcreateserial", "-out", name + ".pem", "-days", str(days), "-extfile", ext], d)


class Certs:
    def __init__(self, d):
        self.dir = d

    def __getattr__(self, name):
        # certs.server_pem -> <dir>/server.pem
        base, _, ext = name.rpartition("_")
        if ext not in ("pem", "key"):
            raise AttributeError(name)
        return os.path.join(self.dir, "%s.%s" % (base, ext))


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    if not os.access(OPENSSL, os.X_OK):
        pytest.fail("the openssl CLI is missing (scripts/setup-deps.sh test installs it)")
    d = str(tmp_path_factory.mktemp("certs"))
    _make_ca(d, "ca")
    _make_leaf(d, "ca", "server", "localhost", "IP:127.0.0.1,DNS:localhost")
    _make_leaf(d, "ca", "client", "memrelay-test-client", eku="clientAuth")
    # -days -1: valid until yesterday
    _make_leaf(d, "ca", "expired", "localhost", "IP:127.0.0.1,DNS:localhost", days=-1)
    _make_leaf(d, "ca", "expiredclient", "old-client", eku="clientAuth", days=-1)
    _make_ca(d, "otherca")
    _make_leaf(d, "otherca", "otherserver", "localhost", "IP:127.0.0.1,DNS:localhost")
    _make_leaf(d, "otherca", "otherclient", "intruder", eku="clientAuth")
    return Certs(d)


# --------------------------------------------------------------------------
# clients


def client_ctx(certs, ca=None, cert=None, key=None, check_hostname=True):
    ctx = ssl.create_default_context(cafile=ca or certs.ca_pem)
    ctx.check_hostname = check_hostname
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


class TlsConn:
    """A blocking TLS connection with a deadline on every read."""

    def __init__(self, addr, ctx, timeout=5.0, server_hostname="127.0.0.1"):
        raw = socket.create_connection(addr, timeout=timeout)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
        except BaseException:
            raw.close()
            raise
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def request(self, data, until=b"\r\n", timeout=5.0):
        """Send data; read until the buffer ends with `until`. Returns it (raises on EOF or timeout)."""
        self.sock.sendall(data)
        deadline = time.monotonic() + timeout
        while not self.buf.endswith(until):
            if time.monotonic() > deadline:
                raise TimeoutError("no %r after %r" % (until, self.buf[-200:]))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed after %r" % self.buf[-200:])
            self.buf += chunk
        out, self.buf = self.buf, b""
        return out


def round_trip(conn, key, value):
    assert conn.request(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value)) == b"STORED\r\n"
    assert conn.request(b"get %s\r\n" % key, until=b"END\r\n") == \
        b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key, len(value), value)


def refused(addr, ctx, server_hostname="127.0.0.1"):
    """True if a TLS client cannot get a request answered: the handshake fails, or (TLS 1.3,
    where the client finishes its side first) the connection dies at the first request."""
    try:
        with TlsConn(addr, ctx, server_hostname=server_hostname) as c:
            c.request(b"version\r\n")
    except (ssl.SSLError, ConnectionError, OSError):
        return True
    return False


def s_client(addr, data, *args, timeout=10):
    """openssl s_client: send data (ending with quit, so memrelay closes), return (rc, stdout)."""
    cmd = [OPENSSL, "s_client", "-connect", "%s:%d" % addr, "-quiet", "-ign_eof"] + list(args)
    p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def plain_stats(relay, pool):
    with relay.conn(pool) as c:
        c.send(b"stats\r\n")
        text = c.recv_until_term(b"END\r\n", timeout=5)
    out = {}
    for line in text.split(b"\r\n"):
        parts = line.split(b" ", 2)
        if len(parts) == 3 and parts[0] == b"STAT":
            out[parts[1].decode()] = parts[2].decode()
    return out


def server_row(relay, pool, mc):
    with relay.conn(pool) as c:
        c.send(b"stats servers\r\n")
        text = c.recv_until_term(b"END\r\n", timeout=5)
    prefix = "STAT %s:%s:" % (pool, mc.spec())
    row = {}
    for line in text.decode().split("\r\n"):
        if line.startswith(prefix):
            field, _, value = line[len(prefix):].partition(" ")
            row[field] = value
    assert row, text[:500]
    return row


def tls_listener(certs, **extra):
    settings = {"tls_listen": "127.0.0.1:%d" % free_port(), "tls_cert": certs.server_pem,
                "tls_key": certs.server_key}
    settings.update(extra)
    return settings


def tls_addr(pool):
    host, _, port = pool.settings["tls_listen"].rpartition(":")
    return (host, int(port))


# --------------------------------------------------------------------------
# client side


def test_s_client_handshake_and_set_get(memcached_factory, relay_factory, certs):
    mc = memcached_factory()
    pool = Pool([mc], **tls_listener(certs))
    relay_factory({"alpha": pool})
    rc, out, err = s_client(tls_addr(pool), b"set sk 0 0 5\r\nhello\r\nget sk\r\nquit\r\n",
                            "-CAfile", certs.ca_pem, "-verify_return_error", "-verifyCAfile", certs.ca_pem)
    assert out == b"STORED\r\nVALUE sk 0 5\r\nhello\r\nEND\r\n", (out, err[-500:])
    assert mc.keys_held([b"sk"]) == {b"sk"}


def test_plain_and_tls_listeners_serve_the_same_pool(memcached_factory, relay_factory, certs):
    mc = memcached_factory()
    pool = Pool([mc], **tls_listener(certs))
    relay = relay_factory({"alpha": pool})
    with Conn(relay.addr()) as plain:
        assert plain.request(b"set shared 0 0 5\r\nplain\r\n") == b"STORED\r\n"
    with TlsConn(tls_addr(pool), client_ctx(certs)) as t:
        assert t.request(b"get shared\r\n", until=b"END\r\n") == b"VALUE shared 0 5\r\nplain\r\nEND\r\n"
        assert t.request(b"set shared 0 0 3\r\ntls\r\n") == b"STORED\r\n"
    with Conn(relay.addr()) as plain:
        assert plain.request(b"get shared\r\n") == b"VALUE shared 0 3\r\ntls\r\nEND\r\n"
    # The plain port does not speak TLS, and the TLS port does not speak plain text.
    assert refused(relay.addr(), client_ctx(certs))
    with Conn(tls_addr(pool)) as c:
        c.send(b"get shared\r\n")
        assert c.wait_closed(5) and b"VALUE" not in c.buf, c.buf
    with TlsConn(tls_addr(pool), client_ctx(certs)) as t:  # still serving
        round_trip(t, b"after", b"junk")
    st = plain_stats(relay, "alpha")
    assert int(st["tls_handshakes"]) >= 2 and int(st["tls_handshake_failures"]) >= 1, st


def test_pymemcache_over_tls_set_get_multiget(memcached_factory, relay_factory, certs):
    from pymemcache.client.base import Client
    mcs = [memcached_factory() for _ in range(3)]
    pool = Pool(mcs, **tls_listener(certs))
    relay_factory({"alpha": pool})
    client = Client(tls_addr(pool), tls_context=client_ctx(certs), connect_timeout=5, timeout=5)
    try:
        items = {"pk:%d" % i: ("value-%d" % i).encode() * (1 + i % 50) for i in range(300)}
        for k, v in items.items():
            assert client.set(k, v, noreply=False)
        assert client.get("pk:7") == items["pk:7"]
        got = client.get_many(list(items) + ["missing"])
        assert got == items
        big = b"x" * (900 * 1024)  # many TLS records each way
        assert client.set("big", big, noreply=False)
        assert client.get("big") == big
    finally:
        client.close()
    held = set()
    for mc in mcs:
        held |= mc.keys_held([k.encode() for k in items])
    assert len(held) == len(items)


def test_tls_on_the_main_listener(memcached_factory, relay_factory, certs):
    mc = memcached_factory()
    admin_mc = memcached_factory()
    relay = relay_factory({"alpha": Pool([mc], tls=True, tls_cert=certs.server_pem, tls_key=certs.server_key),
                           "admin": Pool([admin_mc])})
    # The harness's readiness check connected and hung up without a hello: not a failed handshake.
    assert plain_stats(relay, "admin")["tls_handshake_failures"] == "0"
    with TlsConn(relay.addr("alpha"), client_ctx(certs)) as t:
        round_trip(t, b"main", b"tls-only")
    assert mc.keys_held([b"main"]) == {b"main"}
    with Conn(relay.addr("alpha")) as c:  # plain text on a TLS-only port gets nothing
        c.send(b"get main\r\n")
        assert c.wait_closed(5) and b"VALUE" not in c.buf, c.buf
    assert int(plain_stats(relay, "admin")["tls_handshake_failures"]) >= 1


def test_mtls_required(memcached_factory, relay_factory, certs):
    mc = memcached_factory()
    pool = Pool([mc], **tls_listener(certs, tls_verify_client=True, tls_ca=certs.ca_pem))
    relay = relay_factory({"alpha": pool})
    addr = tls_addr(pool)
    assert refused(addr, client_ctx(certs)), "no client certificate was accepted"
    assert refused(addr, client_ctx(certs, cert=certs.otherclient_pem, key=certs.otherclient_key)), \
        "a client certificate from another CA was accepted"
    assert refused(addr, client_ctx(certs, cert=certs.expiredclient_pem, key=certs.expiredclient_key)), \
        "an expired client certificate was accepted"
    with TlsConn(addr, client_ctx(certs, cert=certs.client_pem, key=certs.client_key)) as t:
        round_trip(t, b"mtls", b"trusted")
    assert int(plain_stats(relay, "alpha")["tls_handshake_failures"]) >= 3
    # openssl s_client with the right certificate, too
    rc, out, err = s_client(addr, b"get mtls\r\nquit\r\n", "-CAfile", certs.ca_pem, "-cert", certs.client_pem,
                            "-key", certs.client_key)
    assert out == b"VALUE mtls 0 7\r\ntrusted\r\nEND\r\n", err[-500:]


def test_minimum_version(memcached_factory, relay_factory, certs):
    mc = memcached_factory()
    # Ciphers at security level 0 allow TLS 1.1 as far as OpenSSL's policy goes, so only
    # memrelay's TLS 1.2 floor can refuse it.
    p12 = Pool([mc], **tls_listener(certs, tls_ciphers="DEFAULT:@SECLEVEL=0"))
    p13 = Pool([mc], **tls_listener(certs, tls_min_version="1.3"))
    relay_factory({"v12": p12, "v13": p13})
    args = ["-CAfile", certs.ca_pem, "-cipher", "DEFAULT:@SECLEVEL=0"]
    # Control: this TLS 1.1 client does get through to a server that allows TLS 1.1.
    permissive = memcached_factory(extra_args=["-Z", "-o", "ssl_chain_cert=%s,ssl_key=%s,ssl_min_version=1,"
                                               "ssl_ciphers=DEFAULT:@SECLEVEL=0" % (certs.server_pem, certs.server_key)])
    rc, out, err = s_client(permissive.addr, b"version\r\nquit\r\n", "-tls1_1", *args)
    assert out.startswith(b"VERSION "), err[-500:]
    rc, out, err = s_client(tls_addr(p12), b"version\r\nquit\r\n", "-tls1_1", *args)
    assert not out.startswith(b"VERSION"), "a TLS 1.1 client was served"
    rc, out, err = s_client(tls_addr(p12), b"version\r\nquit\r\n", "-tls1_2", *args)
    assert out.startswith(b"VERSION "), err[-500:]
    rc, out, err = s_client(tls_addr(p13), b"version\r\nquit\r\n", "-tls1_2", *args)
    assert not out.startswith(b"VERSION"), "tls_min_version 1.3 served a TLS 1.2 client"
    rc, out, err = s_client(tls_addr(p13), b"version\r\nquit\r\n", "-tls1_3", "-CAfile", certs.ca_pem)
    assert out.startswith(b"VERSION "), err[-500:]


def test_handshake_that_never_finishes_is_closed(memcached_factory, relay_factory, certs):
    mc = memcached_factory()
    pool = Pool([mc], client_idle_timeout=300, **tls_listener(certs))
    relay = relay_factory({"alpha": pool})
    with Conn(tls_addr(pool)) as silent:  # connects, never says hello
        assert silent.wait_closed(10)
    assert int(plain_stats(relay, "alpha")["tls_handshake_failures"]) >= 1


# --------------------------------------------------------------------------
# backend side: memcached -Z


def tls_memcached(factory, certs, cert="server", verify_client=False):
    opts = "ssl_chain_cert=%s,ssl_key=%s" % (getattr(certs, cert + "_pem"), getattr(certs, cert + "_key"))
    if verify_client:
        opts += ",ssl_verify_mode=2,ssl_ca_cert=%s" % certs.ca_pem
    return factory(extra_args=["-Z", "-o", opts])


def direct_tls_get(mc, certs, key, cert=None):
    ctx = client_ctx(certs, cert=cert and certs.client_pem, key=cert and certs.client_key, check_hostname=False)
    ctx.verify_mode = ssl.CERT_NONE  # the test looks behind memrelay's back, whatever the server's certificate
    with TlsConn(mc.addr, ctx) as t:
        return t.request(b"get %s\r\n" % key, until=b"END\r\n")


def test_backend_tls_verified(memcached_factory, relay_factory, certs):
    mc = tls_memcached(memcached_factory, certs)
    relay = relay_factory({"alpha": Pool([mc], server_tls=True, server_tls_ca=certs.ca_pem)})
    with Conn(relay.addr()) as c:
        assert c.request(b"set bk 0 0 6\r\nsecret\r\n") == b"STORED\r\n"
        assert c.request(b"get bk\r\n") == b"VALUE bk 0 6\r\nsecret\r\nEND\r\n"
    assert direct_tls_get(mc, certs, b"bk") == b"VALUE bk 0 6\r\nsecret\r\nEND\r\n"
    st = plain_stats(relay, "alpha")
    assert int(st["backend_tls_handshakes"]) >= 1 and st["backend_tls_handshake_failures"] == "0", st


def test_backend_tls_burst_of_pipelined_replies_arrives_whole_and_in_order(memcached_factory, relay_factory, certs):
    # Many replies, small and larger than a TLS record, come back to back on
    # one TLS backend connection: every one reaches the client, in order.
    mc = tls_memcached(memcached_factory, certs)
    relay = relay_factory({"alpha": Pool([mc], server_tls=True, server_tls_ca=certs.ca_pem, server_connections=1)})
    values = {b"tb%d" % i: bytes([97 + i % 26]) * (40000 if i % 7 == 0 else 1 + i * 13) for i in range(40)}
    with Conn(relay.addr(), timeout=20.0) as c:
        for k, v in values.items():
            assert c.request(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(v), v)) == b"STORED\r\n"
        keys = [b"tb%d" % (i % 40) for i in range(1500)]
        c.send(b"".join(b"get %s\r\n" % k for k in keys) + b"mn\r\n")
        got = c.recv_until_endswith(b"MN\r\n", timeout=20.0)
    want = b"".join(b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (k, len(values[k]), values[k]) for k in keys) + b"MN\r\n"
    assert got == want


@pytest.mark.parametrize("case", ["wrong_ca", "wrong_name", "expired"])
def test_backend_certificate_that_does_not_verify(memcached_factory, relay_factory, certs, case):
    mc = tls_memcached(memcached_factory, certs, cert="expired" if case == "expired" else "server")
    settings = {"server_tls": True, "server_tls_ca": certs.ca_pem}
    if case == "wrong_ca":
        settings["server_tls_ca"] = certs.otherca_pem
    elif case == "wrong_name":
        settings["server_tls_name"] = "not-this-server.example"
    relay = relay_factory({"alpha": Pool([mc], **settings)})
    with Conn(relay.addr()) as c:
        reply = c.request(b"set bad 0 0 1\r\nx\r\n", timeout=10)
        assert reply.startswith(b"SERVER_ERROR "), reply
        reply = c.request(b"set bad 0 0 1\r\nx\r\n", timeout=10)  # still answered, at once or after a retry
        assert reply.startswith(b"SERVER_ERROR "), reply
    assert relay.running
    assert direct_tls_get(mc, certs, b"bad") == b"END\r\n"  # nothing reached the server
    assert int(plain_stats(relay, "alpha")["backend_tls_handshake_failures"]) >= 1
    assert "certificate verify failed" in relay.stderr()


def test_backend_tls_without_verification(memcached_factory, relay_factory, certs):
    mc = tls_memcached(memcached_factory, certs, cert="otherserver")  # signed by a CA nobody trusts
    relay = relay_factory({"alpha": Pool([mc], server_tls=True, server_tls_verify=False)})
    with Conn(relay.addr()) as c:
        assert c.request(b"set nv 0 0 2\r\nok\r\n") == b"STORED\r\n"
        assert c.request(b"get nv\r\n") == b"VALUE nv 0 2\r\nok\r\nEND\r\n"
    assert "server_tls_verify is false" in relay.stderr()


def test_backend_mtls(memcached_factory, relay_factory, certs):
    mc = tls_memcached(memcached_factory, certs, verify_client=True)
    with_cert = relay_factory({"alpha": Pool([mc], server_tls=True, server_tls_ca=certs.ca_pem,
                                             server_tls_cert=certs.client_pem, server_tls_key=certs.client_key)})
    with Conn(with_cert.addr()) as c:
        assert c.request(b"set mk 0 0 3\r\nyes\r\n") == b"STORED\r\n"
        assert c.request(b"get mk\r\n") == b"VALUE mk 0 3\r\nyes\r\nEND\r\n"
    without = relay_factory({"alpha": Pool([mc], server_tls=True, server_tls_ca=certs.ca_pem)})
    with Conn(without.addr()) as c:
        reply = c.request(b"set mk 0 0 2\r\nno\r\n", timeout=10)
        assert reply.startswith(b"SERVER_ERROR "), reply
    assert direct_tls_get(mc, certs, b"mk", cert=True) == b"VALUE mk 0 3\r\nyes\r\nEND\r\n"


def test_health_probes_speak_tls(memcached_factory, relay_factory, certs):
    good = tls_memcached(memcached_factory, certs)
    bad = tls_memcached(memcached_factory, certs, cert="otherserver")
    relay = relay_factory({"alpha": Pool([good], server_tls=True, server_tls_ca=certs.ca_pem, probe_interval=100),
                           "beta": Pool([bad], server_tls=True, server_tls_ca=certs.ca_pem, probe_interval=100)})
    # Idle probes of a TLS server succeed (a plain `version` to a TLS port would fail them)...
    assert wait_for(lambda: int(server_row(relay, "alpha", good)["probes"]) >= 3, 10)
    row = server_row(relay, "alpha", good)
    assert row["state"] == "up" and row["probe_failures"] == "0", row
    # ...and those of a server whose certificate does not verify fail, keeping it down.
    assert wait_for(lambda: server_row(relay, "beta", bad)["state"] == "down", 10)
    assert wait_for(lambda: int(server_row(relay, "beta", bad)["probe_failures"]) >= 1, 10)


# --------------------------------------------------------------------------
# configuration


def _check(relay_bin, tmp_path, yaml_text):
    path = tmp_path / "tls.yaml"
    path.write_text(yaml_text)
    p = subprocess.run([relay_bin, "-c", str(path), "--check-config"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=10)
    return p.returncode, p.stdout.decode() + p.stderr.decode()


def test_config_errors_point_at_the_key(memrelay_bin, tmp_path, certs):
    base = "alpha:\n  listen: 127.0.0.1:22999\n  servers: [127.0.0.1:11299:1]\n"
    cases = [
        ("  tls: true\n", ":4:8:", "no tls_cert"),
        ("  tls: true\n  tls_cert: %s\n  tls_key: /nonexistent/key.pem\n" % certs.server_pem, ":6:12:",
         "No such file"),
        ("  tls: true\n  tls_cert: %s\n  tls_key: %s\n" % (certs.server_pem, certs.client_key), ":6:12:",
         "does not belong"),
        ("  tls: true\n  tls_cert: %s\n  tls_key: %s\n" % (certs.server_key, certs.server_key), ":5:13:",
         "not a PEM certificate"),
        ("  tls: true\n  tls_cert: /dev/zero\n  tls_key: %s\n" % certs.server_key, ":5:13:", "not a regular file"),
        ("  tls_cert: %s\n" % certs.server_pem, ":4:13:", "no TLS listener"),
        ("  tls: true\n  tls_cert: %s\n  tls_key: %s\n  tls_verify_client: true\n"
         % (certs.server_pem, certs.server_key), ":7:22:", "no tls_ca"),
        ("  tls_listen: 127.0.0.1:22999\n  tls_cert: %s\n  tls_key: %s\n" % (certs.server_pem, certs.server_key),
         ":4:15:", "listens on 127.0.0.1:22999"),
        ("  tls: true\n  tls_cert: %s\n  tls_key: %s\n  tls_min_version: 1.1\n"
         % (certs.server_pem, certs.server_key), ":7:20:", "1.2 or 1.3"),
        ("  tls: true\n  tls_cert: %s\n  tls_key: %s\n  tls_ciphers: NOT-A-CIPHER\n"
         % (certs.server_pem, certs.server_key), ":7:16:", "no TLS 1.2 cipher"),
        ("  server_tls_ca: %s\n" % certs.ca_pem, ":4:18:", "server_tls is not true"),
        ("  server_tls: true\n  server_tls_ca: /nonexistent/ca.pem\n", ":5:18:", "No such file"),
        ("  server_tls: true\n  server_tls_cert: %s\n" % certs.client_pem, ":5:20:", "both server_tls_cert"),
    ]
    for extra, where, what in cases:
        rc, text = _check(memrelay_bin, tmp_path, base + extra)
        assert rc == 1, (extra, text)
        assert where in text and what in text, (extra, where, what, text)
    ok = base + "  tls_listen: 127.0.0.1:22998\n  tls_cert: %s\n  tls_key: %s\n  server_tls: true\n" % (
        certs.server_pem, certs.server_key)
    rc, text = _check(memrelay_bin, tmp_path, ok)
    assert rc == 0, text
    assert "tls_listen             127.0.0.1:22998" in text and "server_tls_verify      true" in text, text


# --------------------------------------------------------------------------
# reload


def test_sighup_reloads_certificates_and_keeps_established_connections(memcached_factory, relay_factory, certs,
                                                                      tmp_path):
    """The certificate files named by the config are read again on SIGHUP: new
    handshakes get the new certificate, connections made before keep working."""
    mc = memcached_factory()
    cert, key = str(tmp_path / "live.pem"), str(tmp_path / "live.key")
    shutil.copy(certs.server_pem, cert)
    shutil.copy(certs.server_key, key)
    os.chmod(key, 0o600)
    settings = tls_listener(certs)
    settings.update(tls_cert=cert, tls_key=key)
    pool = Pool([mc], **settings)
    relay = relay_factory({"alpha": pool})
    addr = tls_addr(pool)
    ours, theirs = client_ctx(certs), client_ctx(certs, ca=certs.otherca_pem)
    with TlsConn(addr, ours) as before:
        round_trip(before, b"k1", b"v1")
        assert refused(addr, theirs)
        # Replace the files (as cert-manager or a renewal job does), then SIGHUP.
        shutil.copy(certs.otherserver_pem, cert)
        shutil.copy(certs.otherserver_key, key)
        relay.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: not refused(addr, theirs), 10), relay.stderr()[-2000:]
        assert refused(addr, ours)  # new handshakes see the new certificate only
        round_trip(before, b"k2", b"v2")  # the old connection is untouched
    with TlsConn(addr, theirs) as after:
        assert after.request(b"get k2\r\n", until=b"END\r\n") == b"VALUE k2 0 2\r\nv2\r\nEND\r\n"
    # A certificate that does not match its key: the reload is refused, the listener keeps the last good one.
    shutil.copy(certs.server_pem, cert)
    relay.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload (SIGHUP) refused" in relay.stderr(), 10), relay.stderr()[-2000:]
    assert not refused(addr, theirs)


def _tls_half_close(addr, ctx, data, close_notify):
    """Send `data` over TLS, then shut the write side: with a close_notify
    first (an SSL_shutdown), or with a bare TCP FIN. Returns every decrypted
    byte read until the server closes."""
    raw = socket.create_connection(addr, timeout=5)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="127.0.0.1")

    def pump_out():
        pending = out.read()
        if pending:
            raw.sendall(pending)

    def pump_in():
        chunk = raw.recv(65536)
        if chunk:
            inc.write(chunk)
        else:
            inc.write_eof()
        return bool(chunk)

    try:
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump_out()
                assert pump_in(), "closed during the handshake"
        obj.write(data)
        pump_out()
        if close_notify:
            try:
                obj.unwrap()
            except ssl.SSLWantReadError:
                pass  # ours is sent; the server's comes after its replies
            pump_out()
        raw.shutdown(socket.SHUT_WR)
        got, eof = b"", False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                chunk = obj.read(65536)
                if not chunk:
                    break
                got += chunk
            except ssl.SSLWantReadError:
                if eof:
                    break
                eof = not pump_in()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
        return got
    finally:
        raw.close()


@pytest.mark.parametrize("close_notify", [True, False], ids=["close_notify", "bare_fin"])
def test_tls_half_close_gets_every_reply(memcached_factory, relay_factory, certs, close_notify):
    """A TLS client that sends its requests and then shuts its side (with or
    without a close_notify) still gets every reply, as over plain TCP."""
    servers = [memcached_factory() for _ in range(3)]
    pool = Pool(servers, hash="md5", **tls_listener(certs))
    relay_factory({"alpha": pool})
    keys = [b"thc%d" % i for i in range(20)]
    data = b"".join(b"set %s 0 0 2\r\nv%d\r\n" % (k, i % 10) for i, k in enumerate(keys))
    data += b"get " + b" ".join(keys) + b"\r\nmn\r\n"
    want = b"STORED\r\n" * 20 + b"".join(b"VALUE %s 0 2\r\nv%d\r\n" % (k, i % 10) for i, k in enumerate(keys))
    want += b"END\r\nMN\r\n"
    assert _tls_half_close(tls_addr(pool), client_ctx(certs), data, close_notify) == want
    assert sum(1 for mc in servers if mc.keys_held(keys)) >= 2
