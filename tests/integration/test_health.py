"""Health checking: detection, what clients see meanwhile, probes, return.

The contract is docs/health.md (and include/memrelay/health.h): a refused or
reset connection marks a server down at once; `server_failure_limit`
timeouts or malformed replies in a row do too; a down server is probed with
`version` (first after `server_retry_timeout`, then x1.5 with jitter up to
`probe_backoff_max`) and returns only after `probe_success` good probes in a
row, 250 ms apart, once every worker has replayed the writes it missed.
In failover mode (`auto_eject_hosts: false`) a down server's gets are misses
and its writes `SERVER_ERROR backend unavailable`, answered at once; with
`auto_eject_hosts: true` it leaves the ketama ring (bounded by
`max_ejected_fraction`).

Every test watches `stats servers` for the transitions and for memrelay's
own per-server counters (timeouts, errors by class, probes). Backends are
real memcached processes, except the two listeners that are not memcached
(FakeServer below: one that accepts and never answers, one that answers
junk). Everything runs on loopback; every process is stopped by its PID;
every wait has a deadline.

Nothing here asserts an elapsed-time upper bound (CI is a shared, loaded
machine): "fails fast" is proved by the reply being the fast-failure reply
and by memrelay counting it as such (`errors_down`, no `timeouts`);
"answered at its timeout" keeps only the lower bound (a reply is never early
because the machine is slow); "marked down at once" is proved by the order
of events (no request, no timeout counted before it went down). The few
numeric bounds left on probe waits come from memrelay-reported values; each
says in a comment why a slow machine cannot break it. Waits for a state are
bounded polls with generous deadlines (hang guards, not assertions).

These need memrelay itself, so they are skipped in DIRECT mode.
"""

import bisect
import hashlib
import os
import re
import select
import socket
import threading
import time

import pytest

import harness
from harness import Pool, wait_for

pytestmark = pytest.mark.needs_memrelay

# Short everywhere: the defaults (30 s retry, 5 s idle probes) would make
# every test wait for minutes.
TIMEOUT_MS = 300
RETRY_MS = 200
BACKOFF_MAX_MS = 400
PROBE_SUCCESS = 2          # the default, spelled out
PROBE_GAP = 0.25           # between two good probes of a returning server
JITTER = 1.1               # probe waits are +-10%

# Deadlines of bounded polls for a state change. They are hang guards only:
# every test passes or fails on what memrelay reports, not on how soon.
STATE_WAIT = 10.0
RETURN_WAIT = 15.0

UNAVAILABLE = b"SERVER_ERROR backend unavailable\r\n"
TIMEOUT_REPLY = b"SERVER_ERROR timeout\r\n"
INVALID_REPLY = b"SERVER_ERROR backend sent an invalid reply\r\n"
ANY_SERVER_ERROR = re.compile(rb"^SERVER_ERROR [^\r\n]+\r\n$")
# The request that discovers a failure gets the failure itself (docs/health.md).
DISCOVERY = re.compile(rb"^(SERVER_ERROR (connection refused|backend unavailable)|END)\r\n$")


def base_settings(**over):
    s = {"timeout": TIMEOUT_MS, "server_retry_timeout": RETRY_MS, "probe_backoff_max": BACKOFF_MAX_MS,
         "probe_success": PROBE_SUCCESS, "probe_interval": 0}
    s.update(over)
    return s


# --------------------------------------------------------------------------
# a listener that is not memcached


class FakeServer:
    """A loopback listener standing in for a broken memcached.

    mode "silent": accepts connections, reads everything, never answers.
    mode "reply": answers every request line it reads with `reply`.
    It quacks like harness.Memcached where a Pool needs it (spec, ident, addr).
    """

    def __init__(self, mode, reply=b""):
        self.mode = mode
        self.reply = reply
        self.lines = 0
        self.accepted = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self._stop_r, self._stop_w = os.pipe()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="fake-%s-%d" % (mode, self.port), daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    @property
    def running(self):
        return self.thread.is_alive()

    def spec(self, weight=1, name=None):
        s = "127.0.0.1:%d:%d" % (self.port, weight)
        return s + " " + name if name else s

    def ident(self, name=None):
        return name or "127.0.0.1:%d" % self.port

    def _drop(self, s):
        if s in self.conns:
            self.conns.remove(s)
        try:
            s.close()
        except OSError:
            pass

    def _run(self):
        bufs = {}
        while True:
            r, _, _ = select.select([self.sock, self._stop_r] + self.conns, [], [], 1.0)
            if self._stop_r in r:
                return
            for s in r:
                if s is self.sock:
                    try:
                        c, _ = self.sock.accept()
                    except OSError:
                        continue
                    c.settimeout(1.0)
                    self.conns.append(c)
                    bufs[c] = b""
                    with self._lock:
                        self.accepted += 1
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._drop(s)
                    bufs.pop(s, None)
                    continue
                buf = bufs.get(s, b"") + data
                n = buf.count(b"\n")
                bufs[s] = buf[buf.rfind(b"\n") + 1:]
                with self._lock:
                    self.lines += n
                if self.mode == "reply" and n:
                    try:
                        s.sendall(self.reply * n)
                    except OSError:
                        self._drop(s)
                        bufs.pop(s, None)

    def stop(self):
        if self.thread.is_alive():
            os.write(self._stop_w, b"x")
            self.thread.join(timeout=5)
        for s in list(self.conns):
            self._drop(s)
        for fd in (self._stop_r, self._stop_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.sock.close()


@pytest.fixture
def fake_factory():
    made = []

    def make(mode, reply=b""):
        f = FakeServer(mode, reply)
        made.append(f)
        return f
    yield make
    for f in made:
        f.stop()


class RefusedPort:
    """A loopback port with nothing listening (free a moment ago)."""

    def __init__(self):
        self.port = harness.free_port()

    def spec(self, weight=1, name=None):
        s = "127.0.0.1:%d:%d" % (self.port, weight)
        return s + " " + name if name else s

    def ident(self, name=None):
        return name or "127.0.0.1:%d" % self.port


# --------------------------------------------------------------------------
# helpers


def ring_of(servers):
    return harness.Ketama([(s.ident(), 1) for s in servers])


def hashed_keys(prefix, count, start=0):
    """Distinct keys spread over the ring (plain "p:0".."p:N" cluster under fnv1a)."""
    return [b"%s:%s" % (prefix.encode(), hashlib.md5(b"%d" % i).hexdigest()[:12].encode())
            for i in range(start, start + count)]


def keys_on(ring, index, count, prefix):
    out, i = [], 0
    while len(out) < count:
        batch = hashed_keys(prefix, 256, i)
        i += 256
        out += [k for k in batch if ring.server_for(k) == index]
    return out[:count]


def replica_set(ring, key, n):
    """The key's replica set: ketama owner, then the next distinct servers clockwise."""
    h = ring.hash_fn(key)
    start = bisect.bisect_left(ring.values, h)
    out = []
    for step in range(len(ring.points)):
        s = ring.points[(start + step) % len(ring.points)][1]
        if s not in out:
            out.append(s)
            if len(out) == n:
                break
    return out


def parse_stats_servers(reply):
    """{server spec: {field: value}}; numeric values as int."""
    out = {}
    for line in reply.split(b"\r\n"):
        if not line.startswith(b"STAT "):
            continue
        name, _, value = line[5:].decode().partition(" ")
        _pool, _, rest = name.partition(":")
        spec, _, field = rest.rpartition(":")
        out.setdefault(spec, {})[field] = int(value) if re.fullmatch(r"-?\d+", value) else value
    return out


def stats_servers(relay):
    with relay.conn(timeout=5) as c:
        c.send(b"stats servers\r\n")
        reply = c.recv_until_endswith(b"END\r\n", timeout=5)
    assert reply.endswith(b"END\r\n"), reply[-300:]
    return parse_stats_servers(reply)


def server_stats(relay, server):
    st = stats_servers(relay)
    spec = server.spec()
    assert spec in st, (spec, sorted(st))
    return st[spec]


class Watch:
    """Poll one server's `stats servers` row until pred(row) holds."""

    def __init__(self, relay, server):
        self.relay = relay
        self.server = server
        self.samples = []  # (seconds since start, row)

    def until(self, pred, timeout=STATE_WAIT, interval=0.02):
        """(seconds waited, row); the seconds are for messages, never asserted on."""
        t0 = time.monotonic()
        while True:
            row = server_stats(self.relay, self.server)
            t = time.monotonic() - t0
            self.samples.append((t, row))
            if pred(row):
                return t, row
            if t > timeout:
                raise AssertionError("server %s: condition not met within %.2fs; last row %r"
                                     % (self.server.spec(), timeout, row))
            time.sleep(interval)


def state_is(state):
    return lambda row: row["state"] == state


def timed_request(c, data, timeout=5):
    t0 = time.monotonic()
    reply = c.request(data, timeout=timeout)
    return reply, time.monotonic() - t0


def set_cmd(k, v, flags=0):
    return b"set %s %d 0 %d\r\n%s\r\n" % (k, flags, len(v), v)


def item(k, v, flags=0):
    return b"VALUE %s %d %d\r\n%s\r\n" % (k, flags, len(v), v)


def get_reply(k, v, flags=0):
    return item(k, v, flags) + b"END\r\n"


def assert_answered_as_down(relay, server, before, n, what):
    """The n requests for `server` since `before` (its stats row) were answered
    at once as "server down" without waiting for it: memrelay counted each
    under errors_down, counted no timeout, and the server stayed down."""
    after = server_stats(relay, server)
    assert after["state"] == "down", (what, after)
    assert after["timeouts"] == before["timeouts"], (
        "%s: %d request(s) for a down server waited for the timeout: %r -> %r"
        % (what, after["timeouts"] - before["timeouts"], before, after))
    assert after["errors_down"] - before["errors_down"] == n, (
        "%s: %d of %d requests counted as answered for a down server: %r -> %r"
        % (what, after["errors_down"] - before["errors_down"], n, before, after))
    return after


def assert_fast_failure(c, relay, server, keys, what):
    """Gets of a down server's keys are misses and its writes errors, each
    answered at once: the fast-failure replies (never SERVER_ERROR timeout),
    counted by memrelay as answered for a down server, with no timeout."""
    before = server_stats(relay, server)
    assert before["state"] == "down", (what, before)
    for k in keys:
        reply = c.request(b"get %s\r\n" % k, timeout=5)
        assert reply == b"END\r\n", (what, k, reply)
        reply = c.request(set_cmd(k, b"never"), timeout=5)
        assert reply == UNAVAILABLE, (what, k, reply)
        reply = c.request(b"delete %s\r\n" % k, timeout=5)
        assert reply == UNAVAILABLE, (what, k, reply)
    assert_answered_as_down(relay, server, before, 3 * len(keys), what)


def assert_round_trips(c, keys, tag):
    for k in keys:
        v = b"%s-%s" % (tag, k)
        assert c.request(set_cmd(k, v)) == b"STORED\r\n", k
        assert c.request(b"get %s\r\n" % k) == get_reply(k, v), k


def assert_returned_after_probes(row, what):
    """The row of a server that is back: it got there through good probes."""
    assert row["state"] == "up", (what, row)
    assert row["ejected"] == 0, (what, row)
    assert row["probes"] >= PROBE_SUCCESS, (what, row)
    # With idle probes off, every probe that did not fail was a return probe.
    assert row["probes"] - row["probe_failures"] >= PROBE_SUCCESS, (what, row)
    assert row["rejoins"] >= 1, (what, row)


def wait_returned(watch, what, since, probe_success=PROBE_SUCCESS):
    """Wait for state up after a restart/SIGCONT made at `since` (a
    time.monotonic() taken just before it); checks that no sample saw it
    leave DOWN before probe_success good probes, and that the good probes
    were spread PROBE_GAP apart.

    The lower bound cannot flake: the server could not answer a probe before
    `since`, memrelay's timers fire late on a busy machine but never early,
    and the sample that sees "up" is read after memrelay set it. There is no
    upper bound: the poll's deadline is a hang guard."""
    first = len(watch.samples)
    watch.until(state_is("up"), RETURN_WAIT)
    took = time.monotonic() - since
    assert took >= (probe_success - 1) * PROBE_GAP - 0.02, (
        "%s: back after %.2fs, sooner than %d probes %.2fs apart allow" % (what, took, probe_success, PROBE_GAP))
    row = watch.samples[-1][1]
    for t, r in watch.samples[first:]:
        if r["state"] != "down":
            assert r["probes"] - r["probe_failures"] >= probe_success, (
                "%s: state %s at %.2fs with only %d good probes: %r"
                % (what, r["state"], t, r["probes"] - r["probe_failures"], r))
    assert_returned_after_probes(row, what)
    return took, row


def log_count(relay, text):
    return relay.stderr().count(text)


def assert_logged_once(relay, server, pool="alpha", downs=1):
    spec = server.spec()
    assert log_count(relay, "server %s (pool %s) is down" % (spec, pool)) == downs, relay.stderr()[-3000:]


def assert_logged_return(relay, server, times=1):
    spec = server.spec()
    err = relay.stderr()
    assert err.count("server %s answered" % spec) == times, err[-3000:]
    assert err.count("server %s is back in service" % spec) == times, err[-3000:]


def three_servers(factory, **settings):
    mcs = [factory.memcached() for _ in range(3)]
    relay = factory.relay({"alpha": Pool(mcs, **base_settings(**settings))})
    return relay, mcs, ring_of(mcs)


# --------------------------------------------------------------------------
# 1. kill -9, restart on the same port


@pytest.mark.time_limit(30)
def test_killed_backend_is_down_at_once_fails_fast_and_returns_after_probes(factory):
    relay, mcs, ring = three_servers(factory)
    victim = mcs[1]
    dead_keys = keys_on(ring, 1, 6, "k1dead")
    live_keys = keys_on(ring, 0, 3, "k1live") + keys_on(ring, 2, 3, "k1live")
    watch = Watch(relay, victim)
    with relay.conn() as c:
        harness.store_many(c, {k: b"old-" + k for k in dead_keys + live_keys})
        before = server_stats(relay, victim)
        assert before["state"] == "up"

        # The open connection sees the reset: down with no request needed
        # (no client request is sent until it is down, and idle probes are
        # off, so the reset is the only way memrelay can learn of it).
        victim.kill()
        _, row = watch.until(state_is("down"))
        assert row["downs"] == 1 and row["last_error"].startswith("SERVER_ERROR"), row
        assert row["down_since_ms"] > 0, row
        assert row["requests"] == before["requests"] and row["timeouts"] == 0, (before, row)

        # Meanwhile: its keys fail fast (misses, write errors), the others work.
        assert_fast_failure(c, relay, victim, dead_keys, "killed")
        assert_round_trips(c, live_keys, b"meanwhile")
        multi = c.request(b"get " + b" ".join(dead_keys + live_keys) + b"\r\n")
        assert multi == b"".join(item(k, b"meanwhile-" + k) for k in live_keys) + b"END\r\n", multi

        # Probes run and fail while it is dead; it is not let back.
        _, row = watch.until(lambda r: r["probe_failures"] >= 2)
        assert row["state"] == "down", row

        since = time.monotonic()
        victim.restart()
        wait_returned(watch, "restarted", since)

        # Requests reach it again; it lost its data in the crash, so the old
        # values are misses, never anything else.
        for k in dead_keys:
            assert c.request(b"get %s\r\n" % k) == b"END\r\n", k
        assert_round_trips(c, dead_keys, b"new")
        assert victim.get_raw(dead_keys) == {k: (0, b"new-" + k) for k in dead_keys}
    assert_logged_once(relay, victim)
    assert_logged_return(relay, victim)
    relay.assert_running()


# --------------------------------------------------------------------------
# 2. SIGSTOP / SIGCONT: timeouts counted up to server_failure_limit


@pytest.mark.time_limit(30)
def test_stopped_backend_is_down_after_failure_limit_timeouts_and_returns_after_sigcont(factory):
    relay, mcs, ring = three_servers(factory, server_failure_limit=2)
    victim = mcs[2]
    keys = keys_on(ring, 2, 6, "k2stop")
    live_keys = keys_on(ring, 0, 3, "k2live")
    watch = Watch(relay, victim)
    with relay.conn() as c:
        harness.store_many(c, {k: b"old-" + k for k in keys})
        victim.pause()
        try:
            # Two requests in a row, pipelined so that both reach their own
            # deadline before the first could count as a stalled connection
            # (a full timeout after its deadline; a stall marks the server down
            # whatever server_failure_limit says, src/core/backend.c). Sent one
            # after the other, the second would only ever be answered by the
            # stall, and the failure limit would go untested.
            t0 = time.monotonic()
            c.send(b"get %s\r\nget %s\r\n" % (keys[0], keys[1]))
            # Meanwhile other keys are served, over another connection.
            with relay.conn() as other:
                assert_round_trips(other, live_keys, b"meanwhile")
            # Both answered at the pool timeout: SERVER_ERROR timeout, never
            # sooner (the deadlines start after our clock did and timers fire
            # late, never early; no upper bound, the read is bounded).
            replies = c.recv_replies(2, timeout=5)
            took = time.monotonic() - t0
            assert replies == TIMEOUT_REPLY * 2, replies
            assert took >= 0.8 * TIMEOUT_MS / 1000.0, took
            _, row = watch.until(state_is("down"))
            # It was these two timeouts, and nothing else, that marked it
            # down, through the failure limit (not as a stalled connection,
            # which memrelay logs without "failure limit reached").
            assert row["last_error"] == "SERVER_ERROR timeout", row
            assert row["downs"] == 1 and row["timeouts"] == 2, row
            assert log_count(relay, "server %s (pool alpha) is down: SERVER_ERROR timeout (failure limit reached)"
                             % victim.spec()) == 1, relay.stderr()[-3000:]

            # From now on nothing waits for the timeout.
            assert_fast_failure(c, relay, victim, keys[2:], "stopped")
            assert_round_trips(c, live_keys, b"meanwhile2")

            # Probes time out too; it stays down.
            _, row = watch.until(lambda r: r["probe_failures"] >= 1)
            assert row["state"] == "down", row
        finally:
            since = time.monotonic()
            victim.resume()
        wait_returned(watch, "resumed", since)
        # Nothing was written to it while it was away: the old values are right.
        for k in keys:
            assert c.request(b"get %s\r\n" % k) == get_reply(k, b"old-" + k), k
        assert_round_trips(c, keys, b"new")
    assert_logged_once(relay, victim)
    assert_logged_return(relay, victim)


@pytest.mark.time_limit(30)
def test_timeouts_that_are_not_consecutive_do_not_mark_a_server_down(factory):
    # A 2 s pool timeout: a timed-out request left unanswered for a second
    # full timeout makes the connection stalled and the server down whatever
    # the failure limit says, so the resume below must come within it; 2 s
    # leaves room for a starved test client (no assertion on time here).
    relay, mcs, ring = three_servers(factory, server_failure_limit=2, timeout=2000)
    victim = mcs[0]
    keys = keys_on(ring, 0, 3, "k2b")
    with relay.conn() as c:
        harness.store_many(c, {k: b"v" for k in keys})
        for round_ in range(3):
            victim.pause()
            try:
                assert c.request(b"get %s\r\n" % keys[0], timeout=5) == TIMEOUT_REPLY
            finally:
                victim.resume()
            # A good reply clears the count.
            assert wait_for(lambda: c.request(b"get %s\r\n" % keys[1], timeout=5) == get_reply(keys[1], b"v"),
                            STATE_WAIT, 0.05), round_
            row = server_stats(relay, victim)
            assert row["state"] == "up" and row["downs"] == 0, (round_, row)


# --------------------------------------------------------------------------
# 3. a listener that accepts and never answers


@pytest.mark.time_limit(40)
def test_silent_listener_times_out_then_is_down_and_probes_back_off(factory, fake_factory):
    mcs = [factory.memcached(), factory.memcached()]
    silent = fake_factory("silent")
    servers = [mcs[0], silent, mcs[1]]
    ring = ring_of(servers)
    relay = factory.relay({"alpha": Pool(servers, **base_settings(server_failure_limit=2, probe_backoff_max=3000))})
    keys = keys_on(ring, 1, 6, "k3")
    live_keys = keys_on(ring, 0, 2, "k3live") + keys_on(ring, 2, 2, "k3live")
    watch = Watch(relay, silent)
    with relay.conn() as c:
        # Each request is answered SERVER_ERROR timeout and counted as one
        # timeout each. "Never later" is the harness's bounded read: a request
        # left hanging gets no reply and fails here. The first is answered at
        # its deadline, never sooner (a lower bound a slow machine cannot
        # break: the deadline starts after our clock did and timers fire
        # late, never early). The second may be answered before its own
        # deadline, when the first has gone a second full timeout unanswered
        # and memrelay declares the connection stalled (src/core/backend.c),
        # so it has no lower bound.
        for i, k in enumerate(keys[:2]):
            reply, took = timed_request(c, b"get %s\r\n" % k if i == 0 else set_cmd(k, b"x"))
            assert reply == TIMEOUT_REPLY, reply
            if i == 0:
                assert took >= 0.8 * TIMEOUT_MS / 1000.0, took
        _, row = watch.until(state_is("down"))
        assert row["last_error"] == "SERVER_ERROR timeout", row
        assert row["timeouts"] == 2 and row["downs"] == 1, row
        assert_fast_failure(c, relay, silent, keys[2:], "silent")
        assert_round_trips(c, live_keys, b"ok")

        # Probes keep failing (each waits the timeout), with growing waits.
        # next_probe_in_ms counts down, so keep the largest value seen after
        # each failed probe: it is never more than that wait (a late sample
        # only sees less of it).
        longest = {}
        deadline = time.monotonic() + 30.0  # hang guard; about 4 s when idle
        while time.monotonic() < deadline:
            row = server_stats(relay, silent)
            assert row["state"] == "down", row
            n = row["probe_failures"]
            longest[n] = max(longest.get(n, 0), row["next_probe_in_ms"])
            if n >= 5:
                break
            time.sleep(0.01)
        assert max(longest) >= 5, longest
        # Backoff from server_retry_timeout by x1.5 per failed probe (+-10%
        # jitter): the wait after the n-th failure is RETRY_MS * 1.5**n.
        def nominal(n):
            return min(RETRY_MS * 1.5 ** n, 3000)
        # Upper bounds: a reported remainder is at most its wait, whenever it
        # is sampled, so these cannot flake; they fail if the waits grow
        # faster than x1.5 or the jitter exceeds 10%.
        for n, ms in longest.items():
            if n <= 4:
                assert ms <= JITTER * nominal(n) + 5, (n, longest)
        # Growth: the waits after the 3rd and 4th failures (at least ~607 and
        # ~911 ms) are each longer than the wait two steps earlier can ever be
        # (at most 330 and 495 ms). A sample within the first ~45% of each wait
        # shows it; the poll samples every 10 ms, so only a sampler starved
        # for 270+ ms in the one wait and 410+ ms in the other could miss it.
        # Without backoff every wait would stay at most 220 ms.
        for n in (3, 4):
            assert longest.get(n, 0) > JITTER * nominal(n - 2) + 5, (n, longest)
        assert silent.accepted >= 4, "probes did not connect to the listener"
        # Still fast, still not answered by the silent server.
        assert_fast_failure(c, relay, silent, keys[2:3], "silent, later")
    relay.assert_running()
    assert_logged_once(relay, silent)


@pytest.mark.time_limit(30)
def test_probe_backoff_is_capped_by_probe_backoff_max(factory):
    mc = factory.memcached()
    refused = RefusedPort()
    servers = [mc, refused]
    ring = ring_of(servers)
    relay = factory.relay({"alpha": Pool(servers, **base_settings(server_retry_timeout=100, probe_backoff_max=250))})
    with relay.conn() as c:
        c.request(b"get %s\r\n" % keys_on(ring, 1, 1, "k3cap")[0])
    watch = Watch(relay, refused)
    watch.until(lambda r: r["probe_failures"] >= 12, 30.0, interval=0.01)
    waits = [row["next_probe_in_ms"] for _, row in watch.samples]
    # 100 ms, then 150, 225, capped at 250 (+10% jitter).
    # The cap: a reported remainder is never more than its wait, however
    # late it is sampled, so this cannot flake; without the cap the waits
    # after 12 failures would reach ~12 s.
    assert max(waits) <= 250 * JITTER + 5, sorted(waits)[-5:]
    # And it grew to the cap: some wait was longer than the first two can be
    # (at most 110 and 165 ms). At least 9 of the 12 waits are 225-275 ms; a
    # 10 ms poll misses every one of them only if it was starved for 60+ ms
    # at the start of each of the nine.
    assert max(waits) > 150 * JITTER + 5, sorted(waits)[-5:]
    assert watch.samples[-1][1]["state"] == "down"


@pytest.mark.time_limit(30)
def test_probe_success_good_probes_in_a_row_are_needed_before_return(factory):
    relay, mcs, ring = three_servers(factory, probe_success=4)
    victim = mcs[0]
    key = keys_on(ring, 0, 1, "k3ps")[0]
    watch = Watch(relay, victim)
    with relay.conn() as c:
        assert c.request(set_cmd(key, b"v")) == b"STORED\r\n"
        victim.kill()
        watch.until(state_is("down"))
        since = time.monotonic()
        victim.restart()
        # 4 good probes 250 ms apart: no sooner than 0.75 s after the restart
        # (wait_returned explains why that lower bound cannot flake), and no
        # sample saw it leave DOWN with fewer than 4 good probes.
        _, row = wait_returned(watch, "restarted, probe_success 4", since, probe_success=4)
        assert row["probes"] - row["probe_failures"] >= 4, row
        assert c.request(b"get %s\r\n" % key) == b"END\r\n"


@pytest.mark.time_limit(30)
def test_down_server_with_multiget_errors_fail_answers_gets_with_server_error_at_once(factory):
    relay, mcs, ring = three_servers(factory, multiget_errors="fail")
    victim = mcs[1]
    keys = keys_on(ring, 1, 3, "k3mf")
    live = keys_on(ring, 0, 2, "k3mf")
    with relay.conn() as c:
        harness.store_many(c, {k: b"v" for k in keys + live})
        victim.kill()
        Watch(relay, victim).until(state_is("down"))
        # At once: memrelay answers each for the down server without waiting
        # (errors_down, no timeout counted).
        before = server_stats(relay, victim)
        for k in keys:
            reply = c.request(b"get %s\r\n" % k, timeout=5)
            assert reply == UNAVAILABLE, reply
        reply = c.request(b"get %s %s\r\n" % (live[0], keys[0]), timeout=5)
        assert ANY_SERVER_ERROR.match(reply) and reply != TIMEOUT_REPLY, reply
        assert_answered_as_down(relay, victim, before, len(keys) + 1, "multiget_errors fail")
        assert c.request(b"get %s\r\n" % live[1]) == get_reply(live[1], b"v")


# --------------------------------------------------------------------------
# 4. a listener that answers garbage


@pytest.mark.time_limit(30)
def test_garbage_replies_count_as_failures_then_server_is_down_and_clients_never_hang(factory, fake_factory):
    mcs = [factory.memcached(), factory.memcached()]
    junk = fake_factory("reply", b"\x00\xff\xfe junk \x01\n\x02\x03")
    servers = [mcs[0], mcs[1], junk]
    ring = ring_of(servers)
    relay = factory.relay({"alpha": Pool(servers, **base_settings(server_failure_limit=2))})
    keys = keys_on(ring, 2, 6, "k4")
    live_keys = keys_on(ring, 0, 2, "k4live") + keys_on(ring, 1, 2, "k4live")
    watch = Watch(relay, junk)
    with relay.conn() as c:
        # The junk is an invalid reply, answered as such when it arrives, not
        # at the timeout: the reply says so and no timeout is counted.
        for req in (b"get %s\r\n" % keys[0], set_cmd(keys[1], b"x")):
            reply = c.request(req, timeout=5)
            assert ANY_SERVER_ERROR.match(reply) and reply != TIMEOUT_REPLY, reply
        _, row = watch.until(state_is("down"))
        assert row["last_error"] == INVALID_REPLY.decode().strip(), row
        assert row["timeouts"] == 0 and row["errors_timeout"] == 0 and row["errors_bad_reply"] >= 1, row
        assert junk.lines >= 2
        assert_fast_failure(c, relay, junk, keys[2:], "garbage")
        assert_round_trips(c, live_keys, b"ok")
        # The probes get junk for `version`: they fail, it stays down.
        _, row = watch.until(lambda r: r["probe_failures"] >= 2)
        assert row["state"] == "down" and row["rejoins"] == 0, row
        assert not c.closed
    relay.assert_running()
    assert_logged_once(relay, junk)


@pytest.mark.time_limit(30)
def test_wellformed_but_wrong_reply_lines_are_malformed_and_mark_the_server_down(factory, fake_factory):
    """A backend that is not memcached but speaks lines (here: an HTTP server
    on the wrong port). `HTTP/1.1 400 Bad Request` is no reply to a get or a
    set: the client must get a SERVER_ERROR (or, once the server is down, a
    miss), and the server must count malformed replies up to
    server_failure_limit and go down."""
    mc = factory.memcached()
    http = fake_factory("reply", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    servers = [mc, http]
    ring = ring_of(servers)
    relay = factory.relay({"alpha": Pool(servers, **base_settings(server_failure_limit=2))})
    keys = keys_on(ring, 1, 4, "k4http")
    with relay.conn() as c:
        replies = []
        for k in keys:
            for req in (b"get %s\r\n" % k, set_cmd(k, b"x")):
                # A request left hanging gets no reply within the bounded
                # read, and b"" counts as leaked below.
                reply = c.request(req, timeout=5)
                replies.append(reply)
        row = server_stats(relay, http)
        leaked = [r for r in replies if not (ANY_SERVER_ERROR.match(r) or r == b"END\r\n")]
        assert not leaked and row["state"] == "down", (
            "%d of %d replies were the listener's bytes (or none), e.g. %r; server state %s, downs %d"
            % (len(leaked), len(replies), leaked[:1], row["state"], row["downs"]))
        # The lines are malformed replies, answered as such when they arrive:
        # nothing waited for the timeout.
        assert TIMEOUT_REPLY not in replies, replies
        assert row["timeouts"] == 0 and row["errors_timeout"] == 0, row
    relay.assert_running()


# --------------------------------------------------------------------------
# 5. a refused port from the start


@pytest.mark.time_limit(30)
def test_refused_port_from_start_is_down_at_first_contact_and_the_rest_of_the_pool_works(factory):
    mcs = [factory.memcached(), factory.memcached()]
    refused = RefusedPort()
    servers = [mcs[0], refused, mcs[1]]
    ring = ring_of(servers)
    relay = factory.relay({"alpha": Pool(servers, **base_settings())})
    keys = keys_on(ring, 1, 5, "k5")
    live_keys = keys_on(ring, 0, 4, "k5live") + keys_on(ring, 2, 4, "k5live")
    with relay.conn() as c:
        # The first request is the discovery: its own error, at once (the
        # refusal, not a wait for the timeout: none is counted).
        reply = c.request(b"get %s\r\n" % keys[0], timeout=5)
        assert DISCOVERY.match(reply), reply
        row = server_stats(relay, refused)
        assert row["state"] == "down", row
        assert row["last_error"] == "SERVER_ERROR connection refused", row
        assert row["timeouts"] == 0 and row["errors_timeout"] == 0 and row["requests"] == 1, row
        assert_fast_failure(c, relay, refused, keys[1:], "refused")
        assert_round_trips(c, live_keys, b"ok")
        # Everything the client sees on the other servers is exact, multi-gets included.
        multi = c.request(b"get " + b" ".join(keys + live_keys) + b"\r\n")
        assert multi == b"".join(item(k, b"ok-" + k) for k in live_keys) + b"END\r\n", multi
        # It is probed, fails, and never comes back.
        _, row = Watch(relay, refused).until(lambda r: r["probe_failures"] >= 2)
        assert row["state"] == "down" and row["downs"] == 1 and row["rejoins"] == 0, row
    relay.assert_running()
    assert_logged_once(relay, refused)


@pytest.mark.time_limit(30)
def test_refused_port_from_start_is_down_without_traffic_with_idle_probes(factory):
    mcs = [factory.memcached(), factory.memcached()]
    refused = RefusedPort()
    servers = [mcs[0], mcs[1], refused]
    relay = factory.relay({"alpha": Pool(servers, **base_settings(probe_interval=300))})
    # No client traffic at all: only the idle probes can have found it.
    _, row = Watch(relay, refused).until(state_is("down"))
    assert row["requests"] == 0 and row["downs"] == 1, row
    assert row["probes"] >= 1 and row["probe_failures"] >= 1, row
    for mc in mcs:
        assert server_stats(relay, mc)["state"] == "up"


# --------------------------------------------------------------------------
# 6. auto_eject_hosts


def eject_pool(factory, n=4, **settings):
    mcs = [factory.memcached() for _ in range(n)]
    relay = factory.relay({"alpha": Pool(mcs, **base_settings(auto_eject_hosts=True, **settings))})
    return relay, mcs, ring_of(mcs)


def where(mcs, keys):
    """{key: index of the backend holding it} (read directly)."""
    out = {}
    for i, mc in enumerate(mcs):
        if mc.running:
            for k in mc.keys_held(keys):
                assert k not in out, "key %r on two servers" % k
                out[k] = i
    return out


@pytest.mark.time_limit(40)
def test_auto_eject_rehashes_a_dead_servers_keys_and_keeps_other_placements(factory):
    relay, mcs, ring = eject_pool(factory)
    victim_index = 2
    victim = mcs[victim_index]
    keys = hashed_keys("k6", 400)
    others = [k for k in keys if ring.server_for(k) != victim_index]
    moved = [k for k in keys if ring.server_for(k) == victim_index]
    assert len(moved) > 40
    survivors = [mc for i, mc in enumerate(mcs) if i != victim_index]
    ring_without = ring_of(survivors)
    watch = Watch(relay, victim)
    with relay.conn() as c:
        harness.store_many(c, {k: b"v1" for k in keys})
        assert where(mcs, keys) == {k: ring.server_for(k) for k in keys}
        victim.kill()
        _, row = watch.until(lambda r: r["state"] == "down" and r["ejected"] == 1)
        for mc in survivors:
            mc.flush()
        # Every key is served: the victim's keys by the survivors, none of
        # them waiting for the dead server (it got no request: it is out of
        # the ring; store_many's reads are bounded).
        harness.store_many(c, {k: b"v2-" + k for k in keys})
        row = server_stats(relay, victim)
        assert row["timeouts"] == 0 and row["errors_down"] == 0, row
        reply = c.request(b"get " + b" ".join(keys) + b"\r\n", timeout=10)
        assert reply == b"".join(item(k, b"v2-" + k) for k in keys) + b"END\r\n"
        placed = where(mcs, keys)
        # Other keys did not move; the victim's went where ketama without it puts them.
        for k in others:
            assert placed[k] == ring.server_for(k), k
        for k in moved:
            assert placed[k] == mcs.index(survivors[ring_without.server_for(k)]), k

        since = time.monotonic()
        victim.restart()
        took, row = wait_returned(watch, "ejected, restarted", since)
        assert row["ejected"] == 0
        # Back in the ring: its keys go to it again (it restarted empty, so a
        # read of a moved key is a miss there, never a value from elsewhere).
        for k in moved[:20]:
            assert c.request(b"get %s\r\n" % k) == b"END\r\n", k
        harness.store_many(c, {k: b"v3" for k in keys})
        assert where([victim], moved) == {k: 0 for k in moved}
        for k in others[:50]:
            assert c.request(b"get %s\r\n" % k) == get_reply(k, b"v3"), k
    err = relay.stderr()
    assert err.count("pool alpha: server %s ejected from the ring" % victim.spec()) == 1, err[-3000:]
    assert err.count("pool alpha: server %s back in the ring" % victim.spec()) == 1, err[-3000:]


@pytest.mark.time_limit(40)
def test_max_ejected_fraction_keeps_a_second_dead_server_in_the_ring_failing_fast(factory):
    relay, mcs, ring = eject_pool(factory, max_ejected_fraction=0.25)
    keys = hashed_keys("k6f", 400)
    # The first to die comes first in the config (the other order is the
    # next test).
    first, second = 1, 3
    with relay.conn() as c:
        harness.store_many(c, {k: b"v" for k in keys})
        mcs[first].kill()
        Watch(relay, mcs[first]).until(lambda r: r["ejected"] == 1)
        mcs[second].kill()
        Watch(relay, mcs[second]).until(state_is("down"))
        time.sleep(0.2)  # let the ring be rebuilt
        st = stats_servers(relay)
        rows = [st[mc.spec()] for mc in mcs]
        assert [r["state"] for r in rows] == ["up", "down", "up", "down"], rows
        assert sum(r["ejected"] for r in rows) == 1, rows
        assert rows[first]["ejected"] == 1 and rows[second]["ejected"] == 0, rows
        in_ring = second
        # The dead server left in the ring fails fast.
        stuck = [k for k in keys if ring.server_for(k) == in_ring][:5]
        assert_fast_failure(c, relay, mcs[second], stuck, "dead, kept in the ring")
        # Everything else is served.
        serve = [k for k in keys if ring.server_for(k) not in (first, second)][:20]
        assert_round_trips(c, serve, b"ok")
    err = relay.stderr()
    assert err.count("pool alpha: server %s stays in the ring (max_ejected_fraction" % mcs[second].spec()) == 1, \
        err[-3000:]
    assert err.count("ejected from the ring") == 1, err[-3000:]
    relay.assert_running()


@pytest.mark.time_limit(40)
def test_max_ejected_fraction_keeps_the_already_ejected_server_out_when_another_dies(factory):
    """docs/health.md: beyond max_ejected_fraction, *further* DOWN servers stay
    in the ring. The server ejected first must stay out (its keys already
    moved); the one that died later must be the one kept in with fast failure,
    whatever their order in the config."""
    relay, mcs, ring = eject_pool(factory, max_ejected_fraction=0.25)
    first, second = 3, 1
    mcs[first].kill()
    with relay.conn() as c:
        # Traffic to both, so both are noticed (no idle probes here).
        k_first = keys_on(ring, first, 1, "k6o")[0]
        k_second = keys_on(ring, second, 1, "k6o")[0]
        c.request(b"get %s\r\n" % k_first)
        Watch(relay, mcs[first]).until(lambda r: r["ejected"] == 1)
        mcs[second].kill()
        c.request(b"get %s\r\n" % k_second)
        Watch(relay, mcs[second]).until(state_is("down"))
        time.sleep(0.2)
        st = stats_servers(relay)
        assert st[mcs[first].spec()]["ejected"] == 1, st[mcs[first].spec()]
        assert st[mcs[second].spec()]["ejected"] == 0, st[mcs[second].spec()]
    err = relay.stderr()
    assert "server %s back in the ring" % mcs[first].spec() not in err, err[-3000:]


@pytest.mark.time_limit(40)
def test_max_ejected_fraction_after_restart_the_ejected_server_returns_to_the_ring(factory):
    relay, mcs, ring = eject_pool(factory, max_ejected_fraction=0.25)
    victim = mcs[0]
    moved = keys_on(ring, 0, 20, "k6r")
    watch = Watch(relay, victim)
    with relay.conn() as c:
        victim.kill()
        c.request(b"get %s\r\n" % moved[0])
        watch.until(lambda r: r["ejected"] == 1)
        harness.store_many(c, {k: b"elsewhere" for k in moved})
        since = time.monotonic()
        victim.restart()
        wait_returned(watch, "restarted", since)
        for k in moved:
            assert c.request(b"get %s\r\n" % k) == b"END\r\n", k
        harness.store_many(c, {k: b"home" for k in moved})
        assert victim.get_raw(moved) == {k: (0, b"home") for k in moved}


# --------------------------------------------------------------------------
# 7. replicated pool: missed writes replayed before the server serves


def repl_pool(factory, n=3, threads=1, **settings):
    mcs = [factory.memcached() for _ in range(n)]
    s = base_settings(replicas=2, write_ack="one", server_failure_limit=1)
    s.update(settings)
    relay = factory.relay({"alpha": Pool(mcs, **s)}, threads=threads)
    return relay, mcs, ring_of(mcs)


def _missed_writes_scenario(relay, mcs, ring, victim_index, take_down, bring_back, prefix):
    """Write, overwrite and delete keys of the victim's replica sets while it
    is away, through several client connections (with threads > 1 they
    land on different workers, each with its own replay queue); return
    (acked values, deleted keys)."""
    victim = mcs[victim_index]
    keys = [k for k in hashed_keys(prefix, 600) if victim_index in replica_set(ring, k, 2)]
    assert len(keys) >= 60
    pre, rewrite, delete, fresh = keys[:40], keys[:20], keys[20:40], keys[40:60]
    watch = Watch(relay, victim)
    acked = {}
    writers = [relay.conn() for _ in range(4)]
    with relay.conn() as c:
        harness.store_many(c, {k: b"old-" + k for k in pre})
        # write_ack one: the second copy is written in the background.
        assert wait_for(lambda: set(victim.keys_held(pre)) == set(pre), STATE_WAIT, 0.05)
        take_down(victim)
        watch.until(state_is("down"))
        down_row = server_stats(relay, victim)
        for i, k in enumerate(rewrite + fresh):
            v = b"new-" + k
            reply = writers[i % len(writers)].request(set_cmd(k, v, flags=5), timeout=5)
            assert reply == b"STORED\r\n", (k, reply)
            acked[k] = v
        for i, k in enumerate(delete):
            reply = writers[i % len(writers)].request(b"delete %s\r\n" % k, timeout=5)
            assert reply == b"DELETED\r\n", (k, reply)
        for w in writers:
            w.close()
        # While it is away, reads come from the other replica, at once.
        for k in rewrite + fresh:
            reply = c.request(b"get %s\r\n" % k, timeout=5)
            assert reply == get_reply(k, acked[k], 5), (k, reply)
        for k in delete:
            assert c.request(b"get %s\r\n" % k) == b"END\r\n", k
        # "At once": none of those writes or reads waited for the down
        # replica (no timeout counted for it meanwhile), and it stayed down.
        row = server_stats(relay, victim)
        assert row["state"] == "down" and row["timeouts"] == down_row["timeouts"], (down_row, row)
        since = time.monotonic()
        bring_back(victim)
        wait_returned(watch, "replica back", since)
        # Back: every key written or deleted while it was away was replayed
        # as a delete (any order of the workers' replays gives the same
        # result): it holds none of them, in particular no old value.
        def replayed():
            return victim.get_raw(rewrite + fresh + delete) == {}
        ok = wait_for(replayed, 1.0, 0.05)
        assert ok, {"held after return": victim.get_raw(rewrite + fresh + delete)}
        # Through memrelay every read returns the acknowledged value (a miss
        # on the returned replica fails over: read_miss_failover).
        for k in rewrite + fresh:
            assert c.request(b"get %s\r\n" % k) == get_reply(k, acked[k], 5), k
        for k in delete:
            assert c.request(b"get %s\r\n" % k) == b"END\r\n", k
        multi = c.request(b"get " + b" ".join(rewrite + delete + fresh) + b"\r\n")
        got = {k: v for k, _f, _c, v in harness.parse_values(multi)}
        assert got == acked, {k: (got.get(k), acked.get(k)) for k in set(got) | set(acked) if got.get(k) != acked.get(k)}
        # The other replicas agree too.
        for i, mc in enumerate(mcs):
            if i == victim_index:
                continue
            mine = [k for k in rewrite + fresh + delete if i in replica_set(ring, k, 2)]
            assert mc.get_raw(mine) == {k: (5, acked[k]) for k in mine if k in acked}, i
    return acked, delete


@pytest.mark.time_limit(40)
@pytest.mark.parametrize("threads", [1, 2])
def test_replicated_pool_killed_replica_gets_the_keys_it_missed_deleted_before_it_serves(factory, threads):
    relay, mcs, ring = repl_pool(factory, threads=threads, read_miss_failover=True)
    _missed_writes_scenario(relay, mcs, ring, 1, lambda mc: mc.kill(), lambda mc: mc.restart(), "k7")
    assert_logged_return(relay, mcs[1])


@pytest.mark.time_limit(40)
def test_replicated_pool_stopped_replica_serves_no_stale_value_after_it_returns(factory):
    """As above, but the replica keeps its memory (SIGSTOP): the deleted and
    overwritten keys are still in it when it returns, so the replay is all
    that stands between clients and a stale read."""
    relay, mcs, ring = repl_pool(factory, read_miss_failover=True)

    def stop(mc):
        mc.pause()
        # A write with a copy on it times out there once (server_failure_limit
        # 1, in the background: the client has its ack from the other replica).
        k = [k for k in hashed_keys("k7trigger", 200) if 0 in replica_set(ring, k, 2)][0]
        with relay.conn() as c:
            assert c.request(set_cmd(k, b"t"), timeout=5) == b"STORED\r\n"

    try:
        _missed_writes_scenario(relay, mcs, ring, 0, stop, lambda mc: mc.resume(), "k7s")
    finally:
        mcs[0].resume()


# --------------------------------------------------------------------------
# 8. idle probes


@pytest.mark.time_limit(30)
def test_idle_probe_marks_a_killed_server_down_without_client_traffic(factory):
    relay, mcs, ring = three_servers(factory, probe_interval=300)
    victim = mcs[1]
    watch = Watch(relay, victim)
    # A couple of idle probes of the live servers.
    _, row = watch.until(lambda r: r["probes"] >= 2)
    assert row["state"] == "up" and row["probe_failures"] == 0, row
    victim.kill()
    # No client traffic at all: only the idle probes can have found it.
    _, row = watch.until(state_is("down"))
    assert row["downs"] == 1 and row["requests"] == 0, row
    # It comes back through the probes, still without client traffic.
    since = time.monotonic()
    victim.restart()
    _, row = watch.until(state_is("up"), RETURN_WAIT)
    assert time.monotonic() - since >= (PROBE_SUCCESS - 1) * PROBE_GAP - 0.02  # see wait_returned
    assert row["rejoins"] == 1 and row["requests"] == 0, row
    with relay.conn() as c:
        assert_round_trips(c, keys_on(ring, 1, 3, "k8"), b"back")


@pytest.mark.time_limit(30)
def test_server_marked_down_while_an_idle_probe_is_in_flight_is_still_probed_back(factory):
    """A worker marks the server down (a timeout) while the main thread's idle
    probe of it is waiting for its answer. When that probe ends, the server
    must still get return probes."""
    relay, mcs, ring = three_servers(factory, server_failure_limit=1, probe_interval=100, timeout=1000)
    victim = mcs[2]
    keys = keys_on(ring, 2, 2, "k8r")
    watch = Watch(relay, victim)
    with relay.conn() as c:
        harness.store_many(c, {k: b"v" for k in keys})
        victim.pause()
        try:
            # The request's clock starts now; an idle probe starts within
            # 100 ms and waits its own 1 s timeout: the request times out first.
            assert c.request(b"get %s\r\n" % keys[0], timeout=5) == TIMEOUT_REPLY
            watch.until(state_is("down"))
            time.sleep(0.3)
        finally:
            victim.resume()
        _, row = watch.until(state_is("up"), RETURN_WAIT)
        assert row["rejoins"] == 1, row
        assert c.request(b"get %s\r\n" % keys[1]) == get_reply(keys[1], b"v")


# --------------------------------------------------------------------------
# stats servers: each server's traffic (requests, errors, timeouts, latency)


TRAFFIC_FIELDS = ["requests", "timeouts", "latency_p50_us", "latency_p99_us"] + [
    "errors_" + c for c in ("timeout", "refused", "unavailable", "bad_reply", "queue_full", "nomem", "down")]


@pytest.mark.time_limit(30)
def test_stats_servers_counts_requests_errors_timeouts_and_latency_per_server(factory, fake_factory):
    mc = factory.memcached()
    silent = fake_factory("silent")
    servers = [mc, silent]
    ring = ring_of(servers)
    relay = factory.relay({"alpha": Pool(servers, **base_settings(server_failure_limit=3))})
    fresh = stats_servers(relay)
    for spec in (mc.spec(), silent.spec()):
        assert all(fresh[spec][f] == 0 for f in TRAFFIC_FIELDS), fresh[spec]

    live = keys_on(ring, 0, 30, "traffic")
    with relay.conn() as c:
        harness.store_many(c, {k: b"v" for k in live[:20]})
        for k in live:
            assert c.request(b"get %s\r\n" % k).endswith(b"END\r\n")
        # One request to the silent server: answered at its timeout.
        dead_key = keys_on(ring, 1, 1, "traffic")[0]
        assert c.request(b"get %s\r\n" % dead_key) == TIMEOUT_REPLY

    row = server_stats(relay, mc)
    assert row["requests"] == 20 + 30, row
    assert all(row[f] == 0 for f in TRAFFIC_FIELDS if f.startswith("errors_") or f == "timeouts"), row
    assert 0 < row["latency_p50_us"] <= row["latency_p99_us"], row
    # The deadline passed: a timeout at once. The request then waits on the
    # silent connection for a late reply, and counts among requests and
    # errors only when it finishes (unless that happened already).
    row = server_stats(relay, silent)
    assert row["timeouts"] == 1 and row["requests"] == row["errors_timeout"] <= 1, row
    # One more timeout later the connection counts as stalled and closes:
    # the request finishes as a timeout, with no reply (no latency sample).
    _, row = Watch(relay, silent).until(lambda r: r["requests"] == 1)
    assert row["errors_timeout"] == 1 and row["timeouts"] == 1 and row["state"] == "down", row
    assert row["latency_p50_us"] == 0, row
    relay.assert_running()
