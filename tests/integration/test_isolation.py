"""Isolation and bounds (issue 18, docs/reliability.md "Isolation"): no client
or backend can hurt the others.

- Authentication cannot be brute-forced on one connection: the first
  failures are answered at once, later ones delay the connection, the fifth
  closes it; each failure is logged (rate-limited) with the peer's address
  and counted in `stats` and /metrics.
- A reply must fit its request: a backend that answers with the wrong kind of
  reply (a value for a delete, a second reply, a key not asked for) has its
  connection closed, its requests fail with SERVER_ERROR naming the cause,
  and nothing of the bad reply reaches a client (scripted fake backend: real
  memcached never does this).

Nothing here asserts on elapsed time; every wait is bounded.
"""

import os
import socket
import subprocess
import threading

import pytest

import harness
from harness import Conn, Pool, wait_for

pytestmark = pytest.mark.needs_memrelay

CREDS = b"alice:secret\n"
AUTH = b"set auth 0 0 12\r\nalice secret\r\n"
WRONG = b"set a 0 0 11\r\nalice wrong\r\n"
FAILURE = b"CLIENT_ERROR authentication failure\r\n"


@pytest.fixture
def creds(tmp_path):
    path = tmp_path / "memrelay.creds"
    path.write_bytes(CREDS)
    os.chmod(path, 0o600)
    return str(path)


def stats_of(addr):
    with Conn(addr) as c:
        c.send(AUTH)
        assert c.recv_until_term(b"\r\n") == b"STORED\r\n"
        c.send(b"stats\r\n")
        text = c.recv_until_term(b"END\r\n")
    out = {}
    for line in text.split(b"\r\n"):
        parts = line.split(b" ")
        if len(parts) == 3 and parts[0] == b"STAT":
            out[parts[1].decode()] = parts[2].decode()
    return out


def metrics_text(port):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


# --------------------------------------------------------------------------
# 5. authentication


def test_pipelined_wrong_guesses_get_five_answers_then_the_connection_closes(factory, creds):
    backend = factory.memcached()
    port = harness.free_port()
    relay = factory.relay({"p": Pool([backend], auth_file=creds)}, extra_args=["--admin", "127.0.0.1:%d" % port])
    harness.wait_accepting(("127.0.0.1", port), relay.proc)
    before = stats_of(relay.addr("p"))
    with Conn(relay.addr("p"), timeout=15.0) as c:
        c.send(WRONG * 1000)  # 1,000 guesses in one write
        got = c.recv_exact(5 * len(FAILURE), timeout=15.0)
        assert got == FAILURE * 5
        assert c.wait_closed(10.0), "still open after 5 failures"
        assert c.recv_idle(idle=0.1) == b"", "answered a sixth guess"
    after = stats_of(relay.addr("p"))
    assert int(after["auth_errors"]) - int(before["auth_errors"]) == 5
    assert int(after["auth_delays"]) - int(before["auth_delays"]) == 2
    assert int(after["auth_failure_closes"]) - int(before["auth_failure_closes"]) == 1
    text = metrics_text(port)
    assert "memrelay_auth_failure_closes_total 1" in text, text[-2000:]
    assert "memrelay_auth_delays_total 2" in text
    assert "memrelay_auth_errors_total 5" in text
    err = relay.stderr()
    assert "authentication failure 5 on this connection, closing" in err, err[-2000:]
    assert "127.0.0.1:" in err and "wrong" not in err and "alice" not in err


def test_two_failures_then_the_right_password_still_logs_in(factory, creds):
    backend = factory.memcached()
    relay = factory.relay({"p": Pool([backend], auth_file=creds)})
    with Conn(relay.addr("p")) as c:
        c.send(WRONG * 2 + AUTH + b"set k 0 0 1\r\nv\r\nget k\r\n")
        want = FAILURE * 2 + b"STORED\r\nSTORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
        assert c.recv_exact(len(want), timeout=5.0) == want


def test_a_delayed_connection_does_not_delay_others(factory, creds):
    backend = factory.memcached()
    relay = factory.relay({"p": Pool([backend], auth_file=creds)})
    with Conn(relay.addr("p"), timeout=15.0) as guesser, Conn(relay.addr("p")) as user:
        guesser.send(WRONG * 4)
        assert guesser.recv_exact(3 * len(FAILURE), timeout=5.0) == FAILURE * 3  # the third delays it
        user.send(AUTH + b"get k\r\n")
        assert user.recv_exact(len(b"STORED\r\nEND\r\n"), timeout=5.0) == b"STORED\r\nEND\r\n"
        assert guesser.recv_exact(len(FAILURE), timeout=10.0) == FAILURE


# --------------------------------------------------------------------------
# 4. a reply must fit its request

MISMATCH = b"SERVER_ERROR backend reply did not fit its request\r\n"
STORAGE = (b"set", b"add", b"replace", b"append", b"prepend", b"cas")
NORMAL = {b"get": b"END\r\n", b"set": b"STORED\r\n", b"delete": b"DELETED\r\n", b"mg": b"EN\r\n",
          b"version": b"VERSION 1.6.18-fake\r\n"}


class ScriptedBackend:
    """A loopback server answering each request with answer(cmd, key): bytes.

    batch: wait until that many requests are in before answering any (so
    the stream memrelay sees is the same whatever the timing). `version`
    (the health probes) is always answered normally."""

    def __init__(self, answer, batch=1):
        self.answer, self.batch = answer, batch
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def spec(self, weight=1, name=None):
        s = "127.0.0.1:%d:%d" % (self.port, weight)
        return s + " " + name if name else s

    def ident(self, name=None):
        return name or "127.0.0.1:%d" % self.port

    def _accept(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(0.2)
        buf, waiting = b"", []
        try:
            while not self.stopping.is_set():
                nl = buf.find(b"\n")
                parts = buf[:nl].split() if nl >= 0 else []
                need = nl + 1 + (int(parts[4]) + 2 if parts and parts[0] in STORAGE and len(parts) >= 5 else 0)
                if nl < 0 or len(buf) < need:
                    try:
                        data = conn.recv(65536)
                    except socket.timeout:
                        continue
                    if not data:
                        return
                    buf += data
                    continue
                buf = buf[need:]
                if not parts:
                    continue
                cmd, key = parts[0], parts[1] if len(parts) > 1 else b""
                if cmd == b"version":
                    conn.sendall(NORMAL[cmd])
                    continue
                waiting.append((cmd, key))
                if len(waiting) >= self.batch:
                    conn.sendall(b"".join(self.answer(c, k) for c, k in waiting))
                    waiting = []
        except OSError:
            return
        finally:
            conn.close()

    def stop(self):
        self.stopping.set()
        self.sock.close()
        self.thread.join(2)


@pytest.fixture
def scripted():
    made = []

    def make(answer, batch=1):
        b = ScriptedBackend(answer, batch)
        made.append(b)
        return b
    yield make
    for b in made:
        b.stop()


def relay_for(factory, backend):
    return factory.relay({"p": Pool([backend], server_failure_limit=1000, timeout=2000)})


def test_a_reply_sent_twice_reaches_no_other_request(factory, scripted):
    # Each reply twice: the get's second copy would pair with the delete
    # (a value for a delete), and the delete's with the set.
    def twice(cmd, key):
        one = b"VALUE %s 0 1\r\nx\r\nEND\r\n" % key if cmd == b"get" else NORMAL[cmd]
        return one * 2
    relay = relay_for(factory, scripted(twice, batch=3))
    with relay.conn() as c:
        c.send(b"get a\r\ndelete b\r\nset c 0 0 1\r\nv\r\n")
        want = b"VALUE a 0 1\r\nx\r\nEND\r\n" + MISMATCH * 2
        assert c.recv_exact(len(want), timeout=5.0) == want
        assert c.recv_idle(idle=0.2) == b""
    err = relay.stderr()
    assert "reply does not fit its request (VALUE for a delete)" in err, err[-2000:]


@pytest.mark.parametrize("request_, wrong", [
    (b"set k 0 0 1\r\nv\r\n", b"NOT_FOUND\r\n"),                  # NOT_FOUND is a cas's
    (b"set k 0 0 1\r\nv\r\n", b"VA 1\r\nx\r\n"),                  # VA for a classic set
    (b"delete k\r\n", b"VALUE other 0 1\r\nx\r\nEND\r\n"),         # a value for a delete
    (b"get k\r\n", b"STORED\r\n"),
    (b"get k\r\n", b"VALUE other 0 1\r\nx\r\nEND\r\n"),            # a key that was not asked
    (b"mg k v\r\n", b"VALUE k 0 1\r\nx\r\nEND\r\n"),
    (b"incr k 1\r\n", b"DELETED\r\n"),
], ids=["notfound_for_set", "va_for_set", "value_for_delete", "stored_for_get", "unasked_key",
        "value_for_mg", "deleted_for_incr"])
def test_a_reply_of_the_wrong_kind_fails_its_request_and_nothing_of_it_reaches_the_client(
        factory, scripted, request_, wrong):
    relay = relay_for(factory, scripted(lambda cmd, key: wrong))
    with relay.conn() as c:
        c.send(request_)
        got = c.recv_until_term(b"\r\n", timeout=5.0)
        assert got.startswith(b"SERVER_ERROR backend"), got
        assert c.recv_idle(idle=0.2) == b""
        assert b"x" not in got and b"other" not in got


def test_replies_that_fit_still_pass(factory, scripted):
    relay = relay_for(factory, scripted(lambda cmd, key: NORMAL[cmd]))
    with relay.conn() as c:
        c.send(b"get a\r\nset b 0 0 1\r\nv\r\ndelete c\r\n")
        want = b"END\r\nSTORED\r\nDELETED\r\n"
        assert c.recv_exact(len(want), timeout=5.0) == want


# --------------------------------------------------------------------------
# 2. timeouts measure the server, not the queue


VLEN, NGETS = int(os.environ.get("ISO_VLEN", 200 * 1024)), int(os.environ.get("ISO_N", 800))


def read_replies(c, n, vlen, timeout=60.0):
    """Read n get replies of vlen-byte values; returns (values, errors)."""
    values = errors = 0
    buf = b""
    deadline = __import__("time").monotonic() + timeout
    sock = c.sock if hasattr(c, "sock") else c
    while values + errors < n:
        nl = buf.find(b"\r\n")
        if nl < 0:
            assert __import__("time").monotonic() < deadline, "replies stopped: %d values, %d errors" % (values, errors)
            data = sock.recv(1 << 20)
            assert data, "closed after %d values, %d errors" % (values, errors)
            buf += data
            continue
        line = buf[:nl]
        if line.startswith(b"VALUE "):
            need = nl + 2 + vlen + 2 + 5
            while len(buf) < need:
                data = sock.recv(1 << 20)
                assert data, "closed inside a value"
                buf += data
            assert buf[need - 5:need] == b"END\r\n"
            buf = buf[need:]
            values += 1
        else:
            assert line.startswith(b"SERVER_ERROR"), line[:100]
            buf = buf[nl + 2:]
            errors += 1
    return values, errors


@pytest.mark.parametrize("pause", [0.0, 1.5], ids=["reading", "reading_later"])
def test_deep_pipeline_of_large_values_on_a_healthy_server_gets_no_timeout(factory, pause):
    import time
    backend = factory.memcached(memory_mb=64)
    relay = factory.relay({"p": Pool([backend], timeout=100, server_failure_limit=2)})
    # 160 MB of replies through one server connection with a 100 ms timeout.
    # Before timeouts ran from write time (2026-12), this answered 364 of
    # 800 with SERVER_ERROR timeout while reading and 165 reading later;
    # 2,000 gets: 1,403 and 1,355.
    vlen, n = VLEN, NGETS
    with relay.conn() as c:
        c.send(b"set big 0 0 %d\r\n%s\r\n" % (vlen, b"v" * vlen))
        assert c.recv_until_term(b"\r\n") == b"STORED\r\n"
    s = socket.create_connection(relay.addr("p"), timeout=30)
    try:
        s.sendall(b"get big\r\n" * n)
        time.sleep(pause)  # not reading: memrelay drains the server meanwhile
        values, errors = read_replies(s, n, vlen)
    finally:
        s.close()
    assert (values, errors) == (n, 0)
    with relay.conn() as c:
        c.send(b"stats\r\n")
        text = c.recv_until_term(b"END\r\n")
    assert b"STAT backend_timeouts 0\r\n" in text, text


# --------------------------------------------------------------------------
# 1. a client that does not read slows only itself


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def stat_values(relay):
    with relay.conn() as c:
        c.send(b"stats\r\n")
        text = c.recv_until_term(b"END\r\n")
    out = {}
    for line in text.split(b"\r\n"):
        parts = line.split(b" ")
        if len(parts) == 3 and parts[0] == b"STAT":
            out[parts[1].decode()] = parts[2].decode()
    return out


def non_reader(addr, data):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.connect(addr)
    s.setblocking(False)
    try:
        s.send(data)  # as much as the socket takes; the rest never goes
    except BlockingIOError:
        pass
    return s


@pytest.mark.time_limit(60)
def test_clients_that_do_not_read_slow_only_themselves(factory):
    import time
    backend = factory.memcached(memory_mb=64)
    relay = factory.relay({"p": Pool([backend], timeout=1000, server_failure_limit=2)})
    vlen = 1000 * 1000
    with relay.conn() as c:
        c.send(b"set big 0 0 %d\r\n%s\r\n" % (vlen, b"v" * vlen))
        assert c.recv_until_term(b"\r\n") == b"STORED\r\n"
    rss0 = rss_kib(relay.proc.pid)
    hogs = [non_reader(relay.addr("p"), b"get big\r\n" * 5000) for _ in range(5)]
    try:
        peak, errors, rounds = rss0, 0, 0
        with relay.conn() as other:
            for i in range(300):
                v = b"%06d" % i
                other.send(b"set o%d 0 0 6\r\n%s\r\nget o%d\r\n" % (i % 7, v, i % 7))
                got = other.recv_exact(len(b"STORED\r\nVALUE o0 0 6\r\n000000\r\nEND\r\n"), timeout=5.0)
                if got != b"STORED\r\nVALUE o%d 0 6\r\n%s\r\nEND\r\n" % (i % 7, v):
                    errors += 1
                rounds += 1
                peak = max(peak, rss_kib(relay.proc.pid))
                time.sleep(0.005)
        st = stat_values(relay)
    finally:
        for s in hogs:
            s.close()
    growth = (peak - rss0) / 1024.0
    print("5 non-reading clients x 5,000 gets of 1 MB: RSS +%.1f MiB (%.1f per client); other client: %d/%d ok"
          % (growth, growth / 5, rounds - errors, rounds))
    assert errors == 0
    assert st["backend_timeouts"] == "0", st
    # client_output_limit 8 MiB: about 16 MiB held per non-reading client
    # (in flight plus queued), plus the first window and socket buffers.
    assert growth < 5 * 40, "RSS grew %.1f MiB" % growth
    assert "is down" not in relay.stderr()


def test_a_client_held_back_by_its_output_too_long_is_closed_logged_and_counted(factory):
    backend = factory.memcached(memory_mb=64)
    relay = factory.relay({"p": Pool([backend], client_output_timeout=300, client_output_limit=65536)})
    vlen = 100 * 1000
    with relay.conn() as c:
        c.send(b"set big 0 0 %d\r\n%s\r\n" % (vlen, b"v" * vlen))
        assert c.recv_until_term(b"\r\n") == b"STORED\r\n"
    hog = non_reader(relay.addr("p"), b"get big\r\n" * 2000)
    try:
        def closed():
            try:
                return hog.recv(1 << 20) == b""
            except BlockingIOError:
                return False
            except OSError:
                return True
        # It never reads: what arrives is drained here only to see the close.
        assert wait_for(lambda: stat_values(relay).get("client_output_closed") == "1", 10.0, 0.05)
        assert wait_for(closed, 10.0, 0.01)
    finally:
        hog.close()
    err = relay.stderr()
    assert err.count("(client_output_timeout): closed") == 1, err[-2000:]
    with relay.conn() as c:  # the others go on
        c.send(b"get big\r\n")
        assert c.recv_exact(vlen + len(b"VALUE big 0 100000\r\n\r\nEND\r\n"), timeout=5.0).endswith(b"END\r\n")


# --------------------------------------------------------------------------
# 3. memory bounded in bytes


def _rss_allowance():
    """MiB of RSS growth that is not memrelay's: AddressSanitizer keeps freed memory in its quarantine
    (256 MiB by default), so under the ASan build (test.sh's asan stage) the bound below is memrelay's
    own plus that. The plain build checks memrelay's bound alone."""
    binary = os.environ.get("MEMRELAY_BIN", "")
    try:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return 256 if "libasan" in out else 0


@pytest.mark.time_limit(60)
def test_pipelined_large_sets_towards_a_stopped_server_are_bounded_in_bytes(factory):
    import time
    backend = factory.memcached(memory_mb=64)
    relay = factory.relay({"p": Pool([backend], timeout=1000, server_failure_limit=1000)})
    pid = relay.proc.pid
    with relay.conn() as c:
        assert c.request(b"version\r\n").startswith(b"VERSION")
    rss0 = rss_kib(pid)
    v = b"s" * (1000 * 1000)
    data = b"".join(b"set s%d 0 0 %d\r\n%s\r\n" % (i, len(v), v) for i in range(300))
    backend.pause()
    s = socket.socket()
    s.connect(relay.addr("p"))
    s.setblocking(False)
    view, peak = memoryview(data), rss0
    try:
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            try:
                view = view[s.send(view[:1 << 20]):]
            except BlockingIOError:
                pass
            peak = max(peak, rss_kib(pid))
            time.sleep(0.01)
    finally:
        backend.resume()
        s.close()
    growth = (peak - rss0) / 1024.0
    print("300 pipelined 1 MB sets towards a stopped server: RSS +%.1f MiB" % growth)
    # client_input_limit 8 MiB: the queued requests, the one being read and
    # the input block; 300 MB were offered.
    assert growth < 40 + _rss_allowance(), "RSS grew %.1f MiB" % growth


@pytest.mark.time_limit(60)
def test_a_noreply_flood_towards_a_stopped_server_is_bounded_in_bytes(factory):
    import time
    backend = factory.memcached(memory_mb=64)
    relay = factory.relay({"p": Pool([backend], timeout=1000, server_failure_limit=1000)})
    pid = relay.proc.pid
    with relay.conn() as c:
        assert c.request(b"version\r\n").startswith(b"VERSION")
    rss0 = rss_kib(pid)
    v = b"n" * 100000
    data = b"".join(b"set n%d 0 0 %d noreply\r\n%s\r\n" % (i % 50, len(v), v) for i in range(5000))
    backend.pause()
    s = socket.socket()
    s.connect(relay.addr("p"))
    s.setblocking(False)
    view, peak = memoryview(data), rss0
    try:
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            try:
                view = view[s.send(view[:1 << 20]):]
            except BlockingIOError:
                pass
            peak = max(peak, rss_kib(pid))
            time.sleep(0.01)
    finally:
        backend.resume()
    try:
        growth = (peak - rss0) / 1024.0
        print("noreply flood (100 KB sets) towards a stopped server: RSS +%.1f MiB" % growth)
        assert growth < 40 + _rss_allowance(), "RSS grew %.1f MiB" % growth
        # The connection goes on: the rest is read, and answered.
        s.setblocking(True)
        s.settimeout(20)
        s.sendall(view.tobytes() + b"version\r\n")
        buf = b""
        while not buf.endswith(b"\r\n"):
            d = s.recv(4096)
            assert d, "closed"
            buf += d
        # The server was stopped past two timeouts: marked down until probed back.
        assert buf.startswith(b"VERSION") or buf == b"SERVER_ERROR backend unavailable\r\n", buf[:200]
    finally:
        s.close()


def test_binary_sasl_guesses_are_bounded_as_ascii_ones(factory, creds):
    import struct
    backend = factory.memcached()
    relay = factory.relay({"p": Pool([backend], auth_file=creds)})

    def sasl_auth(password, opaque):
        key, value = b"PLAIN", b"\0alice\0" + password
        return struct.pack(">BBHBBHIIQ", 0x80, 0x21, len(key), 0, 0, 0, len(key) + len(value), opaque, 0) + key + value

    with Conn(relay.addr("p"), timeout=15.0) as c:
        c.send(b"".join(sasl_auth(b"guess%d" % i, i) for i in range(100)))
        assert c.wait_closed(15.0), "still open after 5 failures"
        data = c.recv_idle(idle=0.1)
    statuses, off = [], 0
    while off + 24 <= len(data):
        magic, opcode, klen, elen, _, status, blen = struct.unpack(">BBHBBHI", data[off:off + 12])
        assert magic == 0x81 and opcode == 0x21
        statuses.append(status)
        off += 24 + blen
    assert statuses == [0x20] * 5, statuses
    st = stats_of(relay.addr("p"))
    assert st["auth_failure_closes"] == "1" and st["auth_delays"] == "2"


# --------------------------------------------------------------------------
# 3b. memory_limit: one bound for the whole process


def _send_some(socks, views, upto):
    """One non-blocking pass: each socket sends what it can of its data, up to upto[i] bytes in all."""
    progress = 0
    for i, s in enumerate(socks):
        while views[i][0] < upto[i]:
            off = views[i][0]
            try:
                n = s.send(views[i][1][off:min(upto[i], off + 65536)])
            except BlockingIOError:
                break
            views[i][0] += n
            progress += n
    return progress


@pytest.mark.time_limit(180)
@pytest.mark.parametrize("threads", [1, 2])
def test_unfinished_large_sets_of_many_clients_are_bounded_by_memory_limit_and_all_stored(factory, threads):
    """300 connections each send 900 KB of a 1 MB set and stop: with memory_limit 64 MiB memrelay holds
    about the limit (each reserves its block whole before reading it; the others wait, unread, in their
    sockets), another client's small set and get are answered meanwhile, and once the 300 send the rest
    every set is STORED (whole-block reservations: every admitted block completes and frees its bytes).
    With 2 workers the budget is shared: one worker's freed bytes wake the other's waiting clients."""
    import select
    import time
    backend = factory.memcached(memory_mb=64)
    relay = factory.relay({"p": Pool([backend], timeout=5000, server_failure_limit=1000)}, threads=threads,
                          process_settings={"memory_limit": "64m"})
    pid = relay.proc.pid
    with relay.conn() as c:
        assert c.request(b"version\r\n").startswith(b"VERSION")
    rss0 = rss_kib(pid)
    n, vlen, first = 300, 1000 * 1000, 900 * 1000
    datas = [memoryview(b"set m%d 0 0 %d\r\n%s\r\n" % (i, vlen, b"m" * vlen)) for i in range(n)]
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        s.connect(relay.addr("p"))
        s.setblocking(False)
        socks.append(s)
    views = [[0, d] for d in datas]
    peak = rss0
    try:
        # Phase 1: up to 900 KB each, until nothing more is taken for a second (bounded: 30 s).
        end, idle_since = time.monotonic() + 30.0, time.monotonic()
        while time.monotonic() < end and time.monotonic() - idle_since < 1.0:
            if _send_some(socks, views, [first] * n):
                idle_since = time.monotonic()
            peak = max(peak, rss_kib(pid))
            time.sleep(0.01)
        held = peak
        st = stat_values(relay)
        # A well-behaved client meanwhile.
        with relay.conn() as c:
            c.send(b"set small 0 0 5\r\nhello\r\nget small\r\n")
            want = b"STORED\r\nVALUE small 0 5\r\nhello\r\nEND\r\n"
            assert c.recv_exact(len(want), timeout=20.0) == want
        # Phase 2: everything, and every reply (bounded: 120 s).
        replies = [b""] * n
        end = time.monotonic() + 120.0
        while time.monotonic() < end and not all(r.endswith(b"\r\n") for r in replies):
            _send_some(socks, views, [len(d) for d in datas])
            ready, _, _ = select.select([s for i, s in enumerate(socks) if not replies[i].endswith(b"\r\n")],
                                        [], [], 0.01)
            for s in ready:
                i = socks.index(s)
                try:
                    replies[i] += s.recv(4096)
                except BlockingIOError:
                    pass
            peak = max(peak, rss_kib(pid))
    finally:
        for s in socks:
            s.close()
    stored = sum(1 for r in replies if r == b"STORED\r\n")
    growth, held_growth = (peak - rss0) / 1024.0, (held - rss0) / 1024.0
    print("%d worker(s), 300 x 900 KB of unfinished 1 MB sets, memory_limit 64 MiB: RSS +%.1f MiB while held, +%.1f MiB peak;"
          " %d/%d STORED; memory_waits %s, memory_peak %s" % (threads, held_growth, growth, stored, n,
                                                            st.get("memory_waits"), st.get("memory_peak")))
    assert stored == n, [r for r in replies if r != b"STORED\r\n"][:5]
    assert int(st["memory_waits"]) > 0, st
    assert int(st["memory_limit"]) == 64 << 20, st
    # The limit, plus per connection one standard input block (16 KiB), and
    # per worker its free lists and malloc arena's slack (+69 MiB measured
    # with 1 worker, +94 MiB with 2): well under the +260 MiB of no bound.
    assert growth < 64 + 40 * threads + _rss_allowance(), "RSS grew %.1f MiB" % growth
    after = stat_values(relay)
    # memory_peak may pass the limit by what each worker charges between two looks at the shared count
    # (its credit: two 256 KiB chunks) and the small reads charged as they come (docs/reliability.md,
    # "Not counted exactly"): 1 MiB per worker. Seen: +1 MiB + 35 bytes with 2 workers.
    assert int(after["memory_peak"]) <= (64 << 20) + threads * (1 << 20), after


@pytest.mark.time_limit(60)
def test_a_trickling_reader_above_the_output_limit_is_closed_after_the_timeout(factory):
    """client_output_timeout runs while the undelivered output stays above client_output_limit, whether
    the client reads nothing or a trickle: a client reading 32 KB every 100 ms (a write reaches it far more
    often than the timeout) is closed, logged once, counted; a normal client goes on meanwhile."""
    import time
    backend = factory.memcached(memory_mb=64)
    relay = factory.relay({"p": Pool([backend], client_output_timeout=500, client_output_limit=65536)})
    vlen = 100 * 1000
    with relay.conn() as c:
        c.send(b"set big 0 0 %d\r\n%s\r\n" % (vlen, b"v" * vlen))
        assert c.recv_until_term(b"\r\n") == b"STORED\r\n"
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.connect(relay.addr("p"))
    s.sendall(b"get big\r\n" * 200)
    s.setblocking(False)
    got, rounds, counted = 0, 0, False
    try:
        with relay.conn() as other:
            end = time.monotonic() + 30.0
            while time.monotonic() < end and not counted:
                try:
                    got += len(s.recv(32768))
                except (BlockingIOError, OSError):
                    pass
                other.send(b"set o 0 0 1\r\nx\r\nget o\r\n")
                want = b"STORED\r\nVALUE o 0 1\r\nx\r\nEND\r\n"
                assert other.recv_exact(len(want), timeout=5.0) == want
                rounds += 1
                counted = stat_values(relay).get("client_output_closed") == "1"
                time.sleep(0.1)

        def closed():  # what memrelay had sent is drained at once now, to see the close
            try:
                return s.recv(1 << 20) == b""
            except BlockingIOError:
                return False
            except OSError:
                return True
        assert counted, "the trickling reader was never closed"
        assert wait_for(closed, 10.0, 0.01)
    finally:
        s.close()
    print("trickling reader: read %d bytes before the close; the other client made %d round trips" % (got, rounds))
    assert got > 0, "it read nothing: not a trickle"
    err = relay.stderr()
    assert err.count("above client_output_limit (65536) for 500 ms (client_output_timeout): closed") == 1, err[-2000:]


def test_memory_limit_below_twice_item_size_max_is_refused(factory, tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("memrelay:\n  memory_limit: 1m\np:\n  listen: 127.0.0.1:1\n  servers:\n    - 127.0.0.1:2:1\n")
    from conftest import MEMRELAY_BIN
    out = subprocess.run([MEMRELAY_BIN, "--check-config", "-c", str(path)], capture_output=True, text=True, timeout=10)
    assert out.returncode != 0
    assert "memory_limit (1048576 bytes) must be at least twice item_size_max of pool 'p'" in out.stderr, out.stderr


def test_a_reload_applies_a_new_memory_limit(factory):
    backend = factory.memcached()
    relay = factory.relay({"p": Pool([backend])}, process_settings={"memory_limit": "64m"})
    assert stat_values(relay)["memory_limit"] == str(64 << 20)
    relay.process_settings = {"memory_limit": "128m"}
    relay.reconfigure({"p": Pool([backend])})
    assert wait_for(lambda: stat_values(relay)["memory_limit"] == str(128 << 20), 10.0, 0.05)
    with relay.conn() as c:
        assert c.request(b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"


@pytest.mark.time_limit(60)
def test_non_reading_clients_together_are_bounded_by_memory_limit(factory):
    """5 clients pipelining 5,000 gets of 1 MB and reading nothing: each alone may hold about twice
    client_output_limit (8 MiB), 5 about 85 MiB; with memory_limit 16 MiB, once the budget is used up
    they send no more requests to the server (their replies owed count, guessed from their replies'
    size), so together they hold about the limit plus a few values each; another client is served
    meanwhile."""
    import time
    backend = factory.memcached(memory_mb=64)
    relay = factory.relay({"p": Pool([backend], timeout=1000, server_failure_limit=2)},
                          process_settings={"memory_limit": "16m"})
    vlen = 1000 * 1000
    with relay.conn() as c:
        c.send(b"set big 0 0 %d\r\n%s\r\n" % (vlen, b"v" * vlen))
        assert c.recv_until_term(b"\r\n") == b"STORED\r\n"
    rss0 = rss_kib(relay.proc.pid)
    hogs = []
    try:
        peak = rss0
        for _ in range(5):
            hogs.append(non_reader(relay.addr("p"), b"get big\r\n" * 5000))
            time.sleep(0.2)
            peak = max(peak, rss_kib(relay.proc.pid))
        with relay.conn() as other:
            for i in range(50):
                other.send(b"set o 0 0 1\r\nx\r\nget o\r\n")
                want = b"STORED\r\nVALUE o 0 1\r\nx\r\nEND\r\n"
                assert other.recv_exact(len(want), timeout=5.0) == want
                peak = max(peak, rss_kib(relay.proc.pid))
                time.sleep(0.01)
        st = stat_values(relay)
    finally:
        for s in hogs:
            s.close()
    growth = (peak - rss0) / 1024.0
    print("5 non-reading clients, memory_limit 16 MiB: RSS +%.1f MiB, memory_peak %.1f MiB, memory_waits %s"
          % (growth, int(st["memory_peak"]) / 1048576.0, st["memory_waits"]))
    assert int(st["memory_waits"]) > 0, st
    # The limit, plus what each client had asked for when the budget ran out
    # (its replies owed are guessed at 16 KiB each until its first reply).
    assert int(st["memory_peak"]) <= (16 + 16) << 20, st
    assert growth < 16 + 40 + _rss_allowance(), "RSS grew %.1f MiB" % growth


@pytest.mark.time_limit(90)
def test_clients_stalled_inside_reserved_blocks_are_closed_only_while_others_wait_for_memory(factory):
    """client_block_timeout: clients that send 900 KB of a 1 MB set and then nothing hold memory_limit's
    budget; while another client's set waits for that budget, each staller silent for the timeout is
    closed (logged, counted), and the waiting set is STORED. A staller nobody waits behind stays open."""
    import time
    backend = factory.memcached(memory_mb=64)
    relay = factory.relay({"p": Pool([backend], client_block_timeout=500)},
                          process_settings={"memory_limit": "4m"})
    vlen, first = 1000 * 1000, 900 * 1000

    def staller(key):
        s = socket.create_connection(relay.addr("p"))
        s.sendall(b"set %s 0 0 %d\r\n" % (key, vlen) + b"s" * first)
        return s

    # Alone: nobody waits for its bytes, so it is not closed, however long it stalls (3 timeouts here).
    lone = staller(b"lone")
    time.sleep(1.5)
    assert stat_values(relay)["client_block_closed"] == "0"
    lone.sendall(b"s" * (vlen - first) + b"\r\n")
    lone.settimeout(10.0)
    assert lone.recv(64) == b"STORED\r\n"
    lone.close()

    # Four stallers fill the 4 MiB budget; a fifth client's whole set must wait for it.
    stallers = [staller(b"st%d" % i) for i in range(4)]
    time.sleep(0.3)
    with relay.conn() as c:
        c.send(b"set waiter 0 0 %d\r\n%s\r\n" % (vlen, b"w" * vlen))
        assert c.recv_exact(len(b"STORED\r\n"), timeout=30.0) == b"STORED\r\n"
        c.send(b"get waiter\r\n")
        assert c.recv_until_term(b"END\r\n").startswith(b"VALUE waiter 0 %d\r\nwwww" % vlen)
    st = stat_values(relay)
    assert int(st["memory_waits"]) > 0, st
    assert int(st["client_block_closed"]) >= 1, st
    closed = 0
    for s in stallers:
        s.settimeout(0.2)
        try:
            closed += s.recv(64) == b""
        except socket.timeout:
            pass
        s.close()
    assert closed == int(st["client_block_closed"]), (closed, st)
    assert "client_block_timeout): closed" in relay.stderr(), relay.stderr()[-2000:]
    relay.assert_running()
