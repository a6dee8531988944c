"""Replication: replicas, write_ack, read failover, repairs, replay, cross-pool.

Every test runs memrelay over 3 or 4 real memcached processes and then reads
each backend directly (bypassing memrelay) to see what every replica holds.
The contract tested is docs/replication.md; which command takes which path
is listed at the top of src/core/replicate.c.

These need memrelay itself, so they are skipped in DIRECT mode.

Nothing here asserts an elapsed-time upper bound (CI is a shared, loaded
machine): a request that must not wait for a dead or stopped replica is
proved not to by its reply and by memrelay's own counters (`stats servers`
timeouts of that replica), and "answered at the timeout" keeps only the
lower bound, which a slow machine cannot break. Every wait is bounded.
"""

import bisect
import hashlib
import os
import re
import subprocess
import threading
import time

import pytest

import harness
from harness import Pool, Relay, free_port, wait_accepting, wait_for

pytestmark = pytest.mark.needs_memrelay

REFUSED = re.compile(rb"^SERVER_ERROR (connection refused|backend unavailable)\r\n$")
TIMEOUT_REPLY = b"SERVER_ERROR timeout\r\n"
SERVER_ERROR = re.compile(rb"^SERVER_ERROR [^\r\n]+\r\n$")

SOURCE_DIR = os.environ.get("MEMRELAY_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MEMRELAY_BIN = os.environ.get("MEMRELAY_BIN") or os.path.join(SOURCE_DIR, "build", "memrelay")


# --------------------------------------------------------------------------
# helpers


def replica_indices(cl, key, n):
    """The key's replica set inside the pool: ketama owner, then the next
    distinct servers clockwise (indexes into cl.backends)."""
    ring = cl.ring
    if ring.n == 1:
        return [0]
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


def mg_direct(mc, key):
    """(value, flags, ttl) of key on memcached `mc` read directly, or None."""
    with mc.conn() as c:
        return _mg(c, key)


def _mg(c, key):
    c.send(b"mg %s v f t\r\n" % key)
    reply = c.recv_replies(1, timeout=5)
    if reply == b"EN\r\n":
        return None
    head, _, rest = reply.partition(b"\r\n")
    toks = head.split(b" ")
    assert toks[0] == b"VA", reply
    size = int(toks[1])
    flags = ttl = None
    for t in toks[2:]:
        if t.startswith(b"f"):
            flags = int(t[1:])
        elif t.startswith(b"t"):
            ttl = int(t[1:])
    return rest[:size], flags, ttl


def holdings(mc, keys):
    """{key: (value, flags, ttl)} for every key of `keys` that memcached `mc` holds."""
    out = {}
    with mc.conn(timeout=10) as c:
        for k in keys:
            got = _mg(c, k)
            if got is not None:
                out[k] = got
    return out


def same_item(a, b, ttl_slack=1):
    """Two (value, flags, ttl) readings agree: value and flags equal, TTL within a second."""
    if a is None or b is None:
        return a is b
    if a[0] != b[0] or a[1] != b[1]:
        return False
    if (a[2] == -1) != (b[2] == -1):
        return False
    return abs(a[2] - b[2]) <= ttl_slack


def replicas_agree(backends, key):
    readings = [mg_direct(mc, key) for mc in backends]
    return all(same_item(readings[0], r) for r in readings[1:]), readings


def wait_replicas_agree(backends, key, timeout=5.0):
    """Poll until every backend holds the same item for key; returns the readings."""
    state = {}

    def check():
        ok, state["readings"] = replicas_agree(backends, key)
        return ok

    ok = wait_for(check, timeout, 0.05)
    assert ok, "replicas of %r disagree: %r" % (key, state["readings"])
    return state["readings"]


def stats_pools(conn):
    """{pool: {counter: int}} from `stats pools` (numeric values only)."""
    conn.send(b"stats pools\r\n")
    reply = conn.recv_until_term(b"END\r\n", timeout=5)
    assert reply.endswith(b"END\r\n"), reply
    out = {}
    for line in reply.split(b"\r\n"):
        parts = line.split(b" ")
        if len(parts) != 3 or parts[0] != b"STAT" or b":" not in parts[1]:
            continue
        pool, counter = parts[1].decode().split(":", 1)
        try:
            out.setdefault(pool, {})[counter] = int(parts[2])
        except ValueError:
            out.setdefault(pool, {})[counter] = parts[2].decode()
    return out


def set_cmd(k, v, flags=0, exptime=0):
    return b"set %s %d %d %d\r\n%s\r\n" % (k, flags, exptime, len(v), v)


def timed(c, data, timeout=10):
    t0 = time.monotonic()
    reply = c.request(data, timeout=timeout)
    return reply, time.monotonic() - t0


def settle(cl, timeout=5.0):
    """Wait until no background replica write is in flight."""
    def idle():
        with cl.conn() as c:
            st = stats_pools(c)
        return all(p.get("repl_background_pending", 0) == 0 for p in st.values())
    assert wait_for(idle, timeout, 0.05), "background replica writes never settled"


def wait_stored_everywhere(cl, keys, replicas, value=None):
    """Wait until every replica of every key holds it (a fan-out write is
    answered once write_ack is met; the other copies may still be on the way)."""
    def done():
        for k in keys:
            for i in replica_indices(cl, k, replicas):
                got = mg_direct(cl.backends[i], k)
                if got is None or (value is not None and got[0] != value):
                    return False
        return True
    assert wait_for(done, 5.0, 0.05), "not every replica got the writes"


def keys_for(cl, prefix, count):
    """`count` distinct keys; a hashed suffix spreads them over the ring
    (fnv1a of "prefix:0".."prefix:N" clusters on few servers)."""
    return [b"%s:%s" % (prefix.encode(), hashlib.md5(b"%d" % i).hexdigest()[:10].encode()) for i in range(count)]


def keys_with_primary(cl, index, count, prefix, replicas):
    """`count` keys whose replica set starts at backend `index`."""
    out, i = [], 0
    while len(out) < count:
        k = b"%s:%d" % (prefix.encode(), i)
        if replica_indices(cl, k, replicas)[0] == index:
            out.append(k)
        i += 1
    return out


class ListRelay(Relay):
    """A Relay whose YAML may hold flow lists (`replicate_to: [beta]`), which
    harness.render_config does not write: `list_settings` is {pool: {key: [names]}}."""

    def __init__(self, binary, workdir, pools, list_settings, threads=1):
        super().__init__(binary, workdir, pools, threads)
        self.list_settings = list_settings

    def render(self):
        text = harness.render_config(self.pools, self.listen, self.threads)
        out = []
        pool = None
        for line in text.splitlines():
            out.append(line)
            if line and not line.startswith(" ") and line.endswith(":"):
                pool = line[:-1]
                for k, v in self.list_settings.get(pool, {}).items():
                    out.append("  %s: [%s]" % (k, ", ".join(v)))
        return "\n".join(out) + "\n"

    def start(self):
        self._pick_listen()
        with open(self.config_path, "w") as f:
            f.write(self.render())
        err = open(self.stderr_path, "ab")
        cmd = [self.binary, "-c", self.config_path, "-t", str(self.threads)]
        self.proc = subprocess.Popen(cmd, stdout=err, stderr=err, stdin=subprocess.DEVNULL)
        err.close()
        try:
            for a in self.listen.values():
                wait_accepting(a, self.proc)
        except harness.HarnessError as e:
            harness._stop_process(self.proc)
            raise harness.HarnessError("memrelay would not start: %s\n--- config ---\n%s--- stderr ---\n%s"
                                       % (e, open(self.config_path).read(), self.stderr()))
        return self


POOL_TIMEOUT_MS = 500


def repl_cluster(cluster, n=3, replicas=3, **settings):
    settings.setdefault("timeout", POOL_TIMEOUT_MS)
    # A dead server is probed back (health.c) soon, so a restarted replica
    # returns, and gets its replay, within a second or two.
    settings.setdefault("server_retry_timeout", 200)
    settings.setdefault("probe_backoff_max", 1000)
    return cluster(weights=(1,) * n, replicas=replicas, **settings)


# --------------------------------------------------------------------------
# 1. write_ack with a killed replica


def _sets_with_killed_replica(cl, victim):
    keys = keys_for(cl, "kill", 30)
    cl.backends[victim].kill()
    replies = {}
    with cl.conn() as c:
        for k in keys:
            replies[k] = c.request(set_cmd(k, b"v-" + k, flags=7), timeout=10)
    # refused is immediate: nothing waited for the pool timeout (no reply
    # says timeout, and memrelay counted no timeout for any server)
    assert TIMEOUT_REPLY not in replies.values(), replies
    assert set(harness.server_timeouts(cl.relay, cl.backends).values()) == {0}, \
        harness.server_timeouts(cl.relay, cl.backends)
    return keys, replies


def _live_replicas_hold(cl, keys, victim):
    live = [mc for i, mc in enumerate(cl.backends) if i != victim]

    def all_there():
        return all(holdings(mc, keys) == {k: (b"v-" + k, 7, -1) for k in keys} for mc in live)
    assert wait_for(all_there, 5.0, 0.1), [holdings(mc, keys) for mc in live]


def test_ack_one_set_with_killed_replica_is_stored_on_the_others(cluster):
    cl = repl_cluster(cluster, n=3, write_ack="one")
    keys, replies = _sets_with_killed_replica(cl, 1)
    assert all(r == b"STORED\r\n" for r in replies.values()), replies
    _live_replicas_hold(cl, keys, 1)


def test_ack_quorum_set_with_killed_replica_is_stored_on_the_others(cluster):
    cl = repl_cluster(cluster, n=3, write_ack="quorum")
    keys, replies = _sets_with_killed_replica(cl, 1)
    assert all(r == b"STORED\r\n" for r in replies.values()), replies
    _live_replicas_hold(cl, keys, 1)


def test_ack_all_set_with_killed_replica_fails_but_live_replicas_keep_it(cluster):
    cl = repl_cluster(cluster, n=3, write_ack="all")
    keys, replies = _sets_with_killed_replica(cl, 1)
    assert all(REFUSED.match(r) for r in replies.values()), replies
    # "The replicas that did ack keep the write."
    _live_replicas_hold(cl, keys, 1)


def test_ack_quorum_with_two_of_three_replicas_killed_fails(cluster):
    cl = repl_cluster(cluster, n=3, write_ack="quorum")
    cl.backends[0].kill()
    cl.backends[2].kill()
    with cl.conn() as c:
        for k in keys_for(cl, "q2", 10):
            reply = c.request(set_cmd(k, b"x"), timeout=10)
            assert REFUSED.match(reply), reply
        # refused at once: no timeout counted for any server
        assert set(harness.server_timeouts(cl.relay, cl.backends).values()) == {0}, \
            harness.server_timeouts(cl.relay, cl.backends)
        # "The replicas that did ack keep the write."
        want = {k: (b"x", 0, -1) for k in keys_for(cl, "q2", 10)}
        assert wait_for(lambda: holdings(cl.backends[1], want) == want, 3.0, 0.1), (
            holdings(cl.backends[1], want), stats_pools(c)["alpha"])


def test_ack_one_with_killed_replica_over_four_servers_only_touches_the_replica_set(cluster):
    cl = repl_cluster(cluster, n=4, write_ack="one")
    keys = keys_for(cl, "four", 60)
    cl.backends[3].kill()
    with cl.conn() as c:
        for k in keys:
            assert c.request(set_cmd(k, b"v-" + k, flags=7), timeout=5) == b"STORED\r\n", k
    want = [{k: (b"v-" + k, 7, -1) for k in keys if i in replica_indices(cl, k, 3)} for i in range(3)]
    assert all(want), want  # each live server is in some replica sets
    state = {}

    def placed():
        state["held"] = [holdings(mc, keys) for mc in cl.backends[:3]]
        return state["held"] == want
    assert wait_for(placed, 5.0, 0.1), [
        (i, sorted(set(h) ^ set(w))) for i, (h, w) in enumerate(zip(state["held"], want))]


# --------------------------------------------------------------------------
# 1b. write_ack with a stopped (SIGSTOP) replica


def _sets_with_stopped_replica(cl, victim, keys, value, limit):
    """Set every key while backends[victim] is stopped; returns [(reply, seconds)]."""
    out = []
    with cl.conn() as c:
        for k in keys:
            out.append(timed(c, set_cmd(k, value + k, flags=3), timeout=limit))
    return out


# For the "answers fast" tests: a pool timeout far longer than the test runs.
# The stopped replica cannot answer, and its deadline is still far off when
# every set has been acknowledged; so an acknowledgement that waited for the
# stopped replica (its answer or its timeout) could not have arrived within
# the harness's bounded read. memrelay's timeouts counter for it, still 0
# after the last ack, shows that no deadline passed meanwhile.
LONG_TIMEOUT_MS = 30000


def _assert_acked_without_the_stopped_replica(cl, victim, results):
    for reply, _took in results:
        assert reply == b"STORED\r\n", results
    # The live replicas answer every copy (with write_ack one the later
    # copies may still be on their way when the client has its ack).
    live = [mc.spec() for i, mc in enumerate(cl.backends) if i != victim]
    state = {}

    def live_answered():
        state["rows"] = harness.stats_servers(cl.relay)
        return all(state["rows"][spec]["requests"] >= len(results) for spec in live)
    assert wait_for(live_answered, 10.0, 0.05), state["rows"]
    rows = state["rows"]
    timeouts = {spec: r["timeouts"] for spec, r in rows.items()}
    assert set(timeouts.values()) == {0}, timeouts
    # The stopped replica's copies are all still owed (a request is counted
    # in `requests` when it leaves the server's queue) and its deadline has
    # not passed: the acks waited neither for its answer nor its timeout.
    stopped = rows[cl.backends[victim].spec()]
    assert stopped["requests"] == 0 and stopped["state"] == "up", stopped
    print("acks while a replica was stopped: worst %.1f ms" % (1000 * max(t for _, t in results)))


def _converged(cl, keys, value, may_miss=()):
    """Every replica holds `value + key` for every key; backends[i] for i in
    `may_miss` (a replica that was held down: its missed writes are replayed
    as deletes) may miss keys, but holds nothing else."""
    want = {k: (value + k, 3, -1) for k in keys}
    state = {}

    def check():
        state["held"] = [holdings(mc, keys) for mc in cl.backends]
        return all(h == want or (i in may_miss and all(want[k] == v for k, v in h.items()))
                   for i, h in enumerate(state["held"]))
    assert wait_for(check, 8.0, 0.1), "not converged: %r" % [
        {k: v for k, v in h.items() if want.get(k) != v} or ("missing", sorted(set(want) - set(h)))
        for h in state["held"]]


def test_ack_one_set_with_stopped_replica_answers_fast_and_converges_after_sigcont(cluster):
    cl = repl_cluster(cluster, n=3, write_ack="one", timeout=LONG_TIMEOUT_MS)
    keys = keys_for(cl, "stop1", 10)
    cl.backends[1].pause()
    try:
        results = _sets_with_stopped_replica(cl, 1, keys, b"a-", 5)
        _assert_acked_without_the_stopped_replica(cl, 1, results)
    finally:
        cl.backends[1].resume()
    _converged(cl, keys, b"a-")


def test_ack_quorum_set_with_stopped_replica_answers_fast_and_converges_after_sigcont(cluster):
    cl = repl_cluster(cluster, n=3, write_ack="quorum", timeout=LONG_TIMEOUT_MS)
    keys = keys_for(cl, "stopq", 10)
    cl.backends[2].pause()
    try:
        results = _sets_with_stopped_replica(cl, 2, keys, b"q-", 5)
        _assert_acked_without_the_stopped_replica(cl, 2, results)
    finally:
        cl.backends[2].resume()
    _converged(cl, keys, b"q-")


@pytest.mark.time_limit(90)
def test_ack_all_set_with_stopped_replica_times_out_then_fails_at_once_and_converges_after_sigcont(cluster):
    """The first set waits for the stopped replica and gets SERVER_ERROR
    timeout after about the pool timeout; once memrelay holds the replica
    down (failure limit, or a stalled connection) later sets fail at once.
    After SIGCONT every replica holds every set."""
    cl = repl_cluster(cluster, n=3, write_ack="all")
    keys = keys_for(cl, "stopall", 6)
    cl.backends[2].pause()
    try:
        results = _sets_with_stopped_replica(cl, 2, keys, b"all-", 5)
        # Read while it is still stopped: nothing it does can change them.
        timeouts = harness.server_timeouts(cl.relay, cl.backends)
        row = harness.stats_servers(cl.relay)[cl.backends[2].spec()]
    finally:
        cl.backends[2].resume()
    timeout = POOL_TIMEOUT_MS / 1000.0
    # The first set is answered at its deadline, never sooner (a lower bound
    # a slow machine cannot break); there is no upper bound. Later timeouts
    # get no lower bound: one may be answered before its own deadline when
    # the first has gone a second full timeout unanswered and memrelay
    # declares the connection stalled (src/core/backend.c).
    assert results[0][0] == TIMEOUT_REPLY, results
    assert results[0][1] >= timeout * 0.8, results
    for reply, took in results:
        assert SERVER_ERROR.match(reply), results
    # Once memrelay holds the replica down, the last sets fail at once: with
    # the fast-failure reply, not a timeout ...
    for reply, took in results[-2:]:
        assert reply != TIMEOUT_REPLY, results
    # ... and memrelay counted a timeout for the stopped replica for exactly
    # the sets answered SERVER_ERROR timeout, none for the others (each of
    # which would have been counted had it waited for the deadline).
    n_timeout = sum(1 for reply, _ in results if reply == TIMEOUT_REPLY)
    assert timeouts[cl.backends[2].spec()] == n_timeout, (timeouts, results)
    assert timeouts[cl.backends[0].spec()] == timeouts[cl.backends[1].spec()] == 0, timeouts
    assert row["state"] == "down" and row["errors_down"] >= 2, row
    _converged(cl, keys, b"all-", may_miss=(2,))


def _long_stop_with_rewrites(cl, keys):
    """Overwrite `keys` six times, 0.3 s apart, while backends[1] is stopped
    (several pool timeouts: memrelay declares its connection stalled)."""
    cl.backends[1].pause()
    try:
        with cl.conn() as c:
            for rnd in range(6):
                for k in keys:
                    assert c.request(set_cmd(k, b"r%d-" % rnd + k, flags=3), timeout=5) == b"STORED\r\n"
                time.sleep(0.3)
    finally:
        cl.backends[1].resume()


@pytest.mark.time_limit(90)
def test_long_stop_with_rewrites_of_the_same_keys_converges_to_the_last_value(cluster):
    """With the default server_failure_limit the stalled replica is marked
    down, probed back after SIGCONT and given its replay: it ends with the
    last value, not an older one left in the stalled connection's stream
    (or misses the key: its missed writes are replayed as deletes)."""
    cl = repl_cluster(cluster, n=3, write_ack="one")
    keys = keys_for(cl, "rewrite", 8)
    _long_stop_with_rewrites(cl, keys)
    _converged(cl, keys, b"r5-", may_miss=(1,))


@pytest.mark.time_limit(90)
def test_long_stop_with_a_high_failure_limit_converges_to_the_last_value(cluster):
    """However high server_failure_limit is, a stalled connection holds the
    server down: no fresh connection may carry newer writes while the old
    writes still sit unread in the stopped server's socket (they would run
    after the newer ones on SIGCONT; fixed in a81b4c9)."""
    # (each of the 8 writes per round that times out counts towards the limit)
    cl = repl_cluster(cluster, n=3, write_ack="one", server_failure_limit=1000)
    keys = keys_for(cl, "rewrite", 8)
    _long_stop_with_rewrites(cl, keys)
    _converged(cl, keys, b"r5-", may_miss=(1,))


# --------------------------------------------------------------------------
# 2. replay of missed writes to a restarted replica


@pytest.mark.time_limit(60)
def test_restarted_replica_gets_every_key_written_or_deleted_while_down_deleted_without_client_traffic(cluster):
    """Missed writes are replayed as deletes of their keys: whatever order
    replays from several workers take, the key comes back empty, never
    stale. (SIGSTOP variants, where the server keeps its old data, are in
    test_replication_convergence.py.)"""
    cl = repl_cluster(cluster, n=3, write_ack="one")
    victim = cl.backends[1]
    doomed = keys_for(cl, "doomed", 10)    # stored before, deleted while it was down
    fresh = keys_for(cl, "fresh", 20)      # stored while it was down
    churn = keys_for(cl, "churn", 5)       # set, deleted, set again while it was down
    gone = keys_for(cl, "gone", 5)         # set and deleted while it was down
    all_keys = doomed + fresh + churn + gone
    with cl.conn() as c:
        for k in doomed:
            assert c.request(set_cmd(k, b"old")) == b"STORED\r\n"
        settle(cl)
        victim.kill()
        for k in doomed:
            assert c.request(b"delete %s\r\n" % k, timeout=5) == b"DELETED\r\n", k
        for k in fresh:
            assert c.request(set_cmd(k, b"new-" + k, flags=5), timeout=5) == b"STORED\r\n"
        for k in churn:
            assert c.request(set_cmd(k, b"one"), timeout=5) == b"STORED\r\n"
            assert c.request(b"delete %s\r\n" % k, timeout=5) == b"DELETED\r\n"
            assert c.request(set_cmd(k, b"two-" + k, flags=9), timeout=5) == b"STORED\r\n"
        for k in gone:
            assert c.request(set_cmd(k, b"brief"), timeout=5) == b"STORED\r\n"
            assert c.request(b"delete %s\r\n" % k, timeout=5) == b"DELETED\r\n"
    # No client traffic from here on.
    victim.restart()
    others = {k: (b"new-" + k, 5, -1) for k in fresh}
    others.update({k: (b"two-" + k, 9, -1) for k in churn})
    for mc in (cl.backends[0], cl.backends[2]):
        assert wait_for(lambda: holdings(mc, all_keys) == others, 5.0, 0.1), holdings(mc, all_keys)

    with cl.conn() as c:
        assert wait_for(lambda: stats_pools(c)["alpha"]["repl_queue_depth"] == 0, 5.0, 0.1), stats_pools(c)
        assert stats_pools(c)["alpha"]["repl_replayed"] >= len(all_keys), stats_pools(c)
    assert holdings(victim, all_keys) == {}


@pytest.mark.time_limit(60)
def test_replay_answered_after_the_timeout_is_not_replayed_again_later(cluster):
    # server_failure_limit 10: the stopped replica is not marked down, so
    # memrelay replays on a fresh connection while it is still stopped.
    cl = repl_cluster(cluster, n=3, write_ack="one", server_failure_limit=10)
    victim = cl.backends[1]
    with cl.conn() as c:
        victim.pause()
        try:
            assert c.request(set_cmd(b"k", b"r0"), timeout=5) == b"STORED\r\n"
            # r0 times out there, then the connection is declared stalled: r0 is queued
            assert wait_for(lambda: stats_pools(c)["alpha"]["repl_queue_depth"] == 1, 3.0), stats_pools(c)
            # a fresh connection: the replay of r0, then r1, both unanswered for now
            assert c.request(set_cmd(b"k", b"r1"), timeout=5) == b"STORED\r\n"
            if stats_pools(c)["alpha"]["repl_replayed"] != 1:
                pytest.skip("memrelay holds a stalled server down (no replay reaches a stopped server "
                            "this way); see test_write_refused_with_server_error_is_not_replayed_over_newer_writes")
            time.sleep(0.7)  # both time out (0.5 s); the connection is not declared stalled yet (1 s)
        finally:
            victim.resume()
        # answered late, but answered: the replica holds r1 and nothing is left to replay
        assert wait_for(lambda: mg_direct(victim, b"k") == (b"r1", 0, -1), 3.0)
        assert c.request(set_cmd(b"k", b"r2"), timeout=5) == b"STORED\r\n"
        wait_stored_everywhere(cl, [b"k"], 3, b"r2")
        depth = stats_pools(c)["alpha"]["repl_queue_depth"]
        # down and back (empty): whatever is still queued is replayed to it
        victim.kill()
        victim.restart()
        assert c.request(set_cmd(b"other", b"x"), timeout=5) in (b"STORED\r\n",)
        assert wait_for(lambda: stats_pools(c)["alpha"]["repl_queue_depth"] == 0, 5.0, 0.1)
        time.sleep(0.3)
        assert mg_direct(victim, b"k") in (None, (b"r2", 0, -1)), (
            "the returning replica got an old write replayed again: %r (queue depth was %d)"
            % (mg_direct(victim, b"k"), depth))
        assert depth == 0


@pytest.mark.time_limit(60)
def test_writes_queued_after_a_stalled_connection_are_replayed_without_client_traffic(cluster):
    """With a high server_failure_limit too: the stalled server is held down,
    probed back and given its replay with no client traffic."""
    cl = repl_cluster(cluster, n=3, write_ack="one", server_failure_limit=10)
    victim = cl.backends[1]
    with cl.conn() as c:
        victim.pause()
        try:
            assert c.request(set_cmd(b"k", b"v", flags=1), timeout=5) == b"STORED\r\n"
            # past the timeout and one more: memrelay declares the connection stalled
            assert wait_for(lambda: stats_pools(c)["alpha"]["repl_queue_depth"] == 1, 3.0), stats_pools(c)
        finally:
            victim.kill()  # the stopped process dies with the write unread
        victim.restart()
    # no key traffic from here on: the replay (a delete of k) goes by itself
    with cl.conn() as c:
        assert wait_for(lambda: stats_pools(c)["alpha"]["repl_replayed"] == 1, 5.0, 0.1), stats_pools(c)
    assert mg_direct(victim, b"k") is None
    assert all(mg_direct(mc, b"k") == (b"v", 1, -1) for mc in (cl.backends[0], cl.backends[2]))


@pytest.mark.time_limit(60)
def test_stalled_replica_with_the_default_failure_limit_gets_its_replay_without_client_traffic(cluster):
    cl = repl_cluster(cluster, n=3, write_ack="one")
    victim = cl.backends[1]
    with cl.conn() as c:
        victim.pause()
        try:
            assert c.request(set_cmd(b"k", b"v", flags=1), timeout=5) == b"STORED\r\n"
            assert wait_for(lambda: stats_pools(c)["alpha"]["repl_queue_depth"] == 1, 3.0), stats_pools(c)
        finally:
            victim.kill()
        victim.restart()
    with cl.conn() as c:
        assert wait_for(lambda: stats_pools(c)["alpha"]["repl_replayed"] == 1, 5.0, 0.1), stats_pools(c)
    assert mg_direct(victim, b"k") is None


@pytest.mark.time_limit(60)
def test_write_refused_with_server_error_is_not_replayed_over_newer_writes(factory):
    # The middle server runs with -M and 2 MB: once full it answers
    # SERVER_ERROR out of memory instead of evicting.
    mcs = [factory.memcached(), factory.memcached(extra_args=["-M"], memory_mb=2), factory.memcached()]
    relay = factory.relay({"alpha": Pool(mcs, replicas=3, timeout=1000, server_retry_timeout=200,
                                         probe_backoff_max=1000)})
    victim = mcs[1]
    junk = b"j" * 100000
    with victim.conn() as d:
        for i in range(200):
            if d.request(set_cmd(b"junk%d" % i, junk)) != b"STORED\r\n":
                break
        else:
            pytest.fail("memcached -M never ran out of memory")
    old = b"1" * 100000
    with relay.conn() as c:
        assert c.request(set_cmd(b"k", old), timeout=5) == b"STORED\r\n"  # ack one: the others stored it
        # The refusal may come after the ack that answered the client.
        assert wait_for(lambda: stats_pools(c)["alpha"]["repl_write_failures"] == 1, 3.0), stats_pools(c)
        victim.flush()  # room again
        assert c.request(set_cmd(b"k", b"v2"), timeout=5) == b"STORED\r\n"
        assert wait_for(lambda: all(mg_direct(mc, b"k") == (b"v2", 0, -1) for mc in mcs), 3.0)
        depth = stats_pools(c)["alpha"]["repl_queue_depth"]
        # The replica goes away and returns (empty): whatever is queued for it is replayed.
        victim.kill()
        victim.restart()
        assert wait_for(lambda: stats_pools(c)["alpha"]["repl_queue_depth"] == 0, 5.0, 0.1)
        # a write while it is still held down is replayed as a delete: write
        # until one reaches it (it is back)

        def back():
            assert c.request(set_cmd(b"other", b"x"), timeout=5) == b"STORED\r\n"
            return mg_direct(victim, b"other") is not None
        assert wait_for(back, 5.0, 0.1)
        got = mg_direct(victim, b"k")
        assert got in (None, (b"v2", 0, -1)), (
            "the replica got the refused old write replayed over v2: %r... (queue depth was %d)"
            % (got[0][:20], depth))


@pytest.mark.time_limit(60)
def test_replay_queue_overflow_flushes_the_returning_replica(cluster):
    cl = repl_cluster(cluster, n=3, write_ack="one", replay_queue=5)
    victim = cl.backends[2]
    keys = keys_for(cl, "ovf", 12)
    with cl.conn() as c:
        victim.kill()
        for k in keys:
            assert c.request(set_cmd(k, b"x-" + k), timeout=5) == b"STORED\r\n"
        victim.restart()
        # something stale the server picked up while memrelay was not looking
        with victim.conn() as d:
            assert d.request(set_cmd(b"stale", b"zzz")) == b"STORED\r\n"

        def flushed():
            return mg_direct(victim, b"stale") is None
        assert wait_for(flushed, 5.0, 0.1), "the replica was not flushed after its queue overflowed"
        st = stats_pools(c)["alpha"]
        assert st["repl_queue_overflows"] >= 1, st
        # nothing it holds is stale: any key present has the others' value
        held = holdings(victim, keys)
        for k, item in held.items():
            assert item == (b"x-" + k, 0, -1), (k, item)


# --------------------------------------------------------------------------
# 3. primary-only writes and their repairs


@pytest.fixture
def cl3(cluster):
    return repl_cluster(cluster, n=3, write_ack="one", timeout=1000)


def _req(c, data):
    return c.request(data, timeout=5)


def test_add_copies_value_flags_and_ttl_to_every_replica(cl3):
    with cl3.conn() as c:
        assert _req(c, b"add addk 42 100 5\r\nhello\r\n") == b"STORED\r\n"
        readings = wait_replicas_agree(cl3.backends, b"addk")
        assert readings[0][:2] == (b"hello", 42) and 98 <= readings[0][2] <= 100, readings
        # add of an existing key: NOT_STORED, nothing changes anywhere
        assert _req(c, b"add addk 1 0 3\r\nbye\r\n") == b"NOT_STORED\r\n"
        settle(cl3)
        readings = wait_replicas_agree(cl3.backends, b"addk")
        assert readings[0][:2] == (b"hello", 42), readings


def test_cas_copies_value_flags_and_ttl_to_every_replica(cl3):
    with cl3.conn() as c:
        assert _req(c, set_cmd(b"cask", b"first", flags=1)) == b"STORED\r\n"
        reply = _req(c, b"gets cask\r\n")
        (_, _, cas, value), = harness.parse_values(reply)
        assert value == b"first"
        assert _req(c, b"cas cask 77 200 6 %d\r\nsecond\r\n" % cas) == b"STORED\r\n"
        readings = wait_replicas_agree(cl3.backends, b"cask")
        assert readings[0][:2] == (b"second", 77) and 198 <= readings[0][2] <= 200, readings
        # a stale cas: EXISTS, the replicas keep "second"
        assert _req(c, b"cas cask 0 0 5 %d\r\nthird\r\n" % cas) == b"EXISTS\r\n"
        settle(cl3)
        readings = wait_replicas_agree(cl3.backends, b"cask")
        assert readings[0][0] == b"second", readings


def test_incr_decr_copy_the_counter_flags_and_ttl_to_every_replica(cl3):
    with cl3.conn() as c:
        assert _req(c, set_cmd(b"ctr", b"10", flags=9, exptime=300)) == b"STORED\r\n"
        assert _req(c, b"incr ctr 5\r\n") == b"15\r\n"
        readings = wait_replicas_agree(cl3.backends, b"ctr")
        assert readings[0][:2] == (b"15", 9) and 298 <= readings[0][2] <= 300, readings
        assert _req(c, b"decr ctr 12\r\n") == b"3\r\n"
        readings = wait_replicas_agree(cl3.backends, b"ctr")
        assert readings[0][0].rstrip(b" ") == b"3" and readings[0][1] == 9, readings
        for _ in range(20):
            _req(c, b"incr ctr 1\r\n")
        readings = wait_replicas_agree(cl3.backends, b"ctr")
        assert readings[0][0] == b"23", readings
        # incr of a missing key: NOT_FOUND on the primary, nothing created elsewhere
        assert _req(c, b"incr nosuch 1\r\n") == b"NOT_FOUND\r\n"
        settle(cl3)
        assert [mg_direct(mc, b"nosuch") for mc in cl3.backends] == [None] * 3


def test_incr_on_a_replica_that_missed_a_write_repairs_it(cl3):
    """incr runs once on the primary; a replica that held another value ends with the primary's."""
    with cl3.conn() as c:
        assert _req(c, set_cmd(b"drift", b"100")) == b"STORED\r\n"
        settle(cl3)
        reps = replica_indices(cl3, b"drift", 3)
        # make a secondary disagree behind memrelay's back
        with cl3.backends[reps[1]].conn() as d:
            assert d.request(set_cmd(b"drift", b"5")) == b"STORED\r\n"
        assert _req(c, b"incr drift 1\r\n") == b"101\r\n"
        readings = wait_replicas_agree(cl3.backends, b"drift")
        assert readings[0][0] == b"101", readings


def test_touch_sets_the_same_ttl_on_every_replica(cl3):
    with cl3.conn() as c:
        assert _req(c, set_cmd(b"tch", b"val", flags=4)) == b"STORED\r\n"
        assert _req(c, b"touch tch 500\r\n") == b"TOUCHED\r\n"
        readings = wait_replicas_agree(cl3.backends, b"tch")
        assert readings[0][:2] == (b"val", 4) and 498 <= readings[0][2] <= 500, readings
        assert _req(c, b"touch missing 10\r\n") == b"NOT_FOUND\r\n"


def test_append_and_prepend_reach_every_replica(cl3):
    with cl3.conn() as c:
        assert _req(c, set_cmd(b"apk", b"mid", flags=6, exptime=400)) == b"STORED\r\n"
        assert _req(c, b"append apk 0 0 4\r\n-end\r\n") == b"STORED\r\n"
        assert _req(c, b"prepend apk 0 0 6\r\nstart-\r\n") == b"STORED\r\n"
        readings = wait_replicas_agree(cl3.backends, b"apk")
        assert readings[0][:2] == (b"start-mid-end", 6) and 398 <= readings[0][2] <= 400, readings


def test_meta_arithmetic_and_ms_modes_repair_every_replica(cl3):
    with cl3.conn() as c:
        assert _req(c, b"ms mak 1 F11 T600\r\n7\r\n") == b"HD\r\n"
        assert _req(c, b"ma mak D5\r\n") == b"HD\r\n"
        readings = wait_replicas_agree(cl3.backends, b"mak")
        assert readings[0][:2] == (b"12", 11) and 598 <= readings[0][2] <= 600, readings
        # ms in append mode runs on the primary alone and is read back
        assert _req(c, b"ms mak 2 MA\r\n!!\r\n") == b"HD\r\n"
        readings = wait_replicas_agree(cl3.backends, b"mak")
        assert readings[0][:2] == (b"12!!", 11), readings
        # ms in add mode (ME) on a new key
        assert _req(c, b"ms newk 3 ME F2 T0\r\nabc\r\n") == b"HD\r\n"
        readings = wait_replicas_agree(cl3.backends, b"newk")
        assert readings[0] == (b"abc", 2, -1), readings


def test_md_with_cas_deletes_on_every_replica(cl3):
    with cl3.conn() as c:
        assert _req(c, set_cmd(b"mdc", b"v")) == b"STORED\r\n"
        # STORED came with the first ack (write_ack one); the other copies may still be on the way.
        assert wait_for(lambda: all(mg_direct(mc, b"mdc") is not None for mc in cl3.backends), 5)
        reply = _req(c, b"mg mdc c\r\n")
        cas = int(re.search(rb"c(\d+)", reply).group(1))
        assert _req(c, b"md mdc C%d\r\n" % (cas + 1000)) == b"EX\r\n"
        settle(cl3)
        assert all(mg_direct(mc, b"mdc") is not None for mc in cl3.backends)
        assert _req(c, b"md mdc C%d\r\n" % cas) == b"HD\r\n"
        wait_replicas_agree(cl3.backends, b"mdc")
        assert all(mg_direct(mc, b"mdc") is None for mc in cl3.backends)


def test_noreply_and_quiet_writes_reach_every_replica_and_repair_silently(cl3):
    with cl3.conn() as c:
        c.send(b"set nr 3 0 2 noreply\r\nv1\r\n"
               b"ms mq 2 q F4\r\nm1\r\n"
               b"set ctrq 0 0 1\r\n5\r\n"
               b"incr ctrq 10 noreply\r\n"
               b"ma ctrq q\r\n"
               b"mn\r\n")
        assert c.recv_replies(2, timeout=5) == b"STORED\r\nMN\r\n"
        assert c.recv_idle(idle=0.2, timeout=0.5) == b""
        assert wait_replicas_agree(cl3.backends, b"nr")[0] == (b"v1", 3, -1)
        assert wait_replicas_agree(cl3.backends, b"mq")[0] == (b"m1", 4, -1)
        assert wait_replicas_agree(cl3.backends, b"ctrq")[0][0] == b"16"


def test_quiet_autovivifying_ma_answers_as_memcached_and_repairs_every_replica(cl3):
    # memcached shows the HD of an item ma's N creates even under q, and hides
    # the HD of an increment; either way the replicas get the primary's value.
    with cl3.conn() as c:
        c.send(b"ma viv N0 J7 q\r\nmn\r\n")
        assert c.recv_replies(2, timeout=5) == b"HD\r\nMN\r\n"
        assert wait_replicas_agree(cl3.backends, b"viv")[0][0] == b"7"
        c.send(b"ma viv N0 J7 q\r\nma viv N0 q v\r\nmn\r\n")
        assert c.recv_replies(1, timeout=5) == b"MN\r\n"
        assert c.recv_idle(idle=0.2, timeout=0.5) == b""
        assert wait_replicas_agree(cl3.backends, b"viv")[0][0] == b"9"


def test_base64_meta_keys_are_replicated_and_repaired(cl3):
    import base64
    key = b"b64 key\xff"
    enc = base64.b64encode(key)
    with cl3.conn() as c:
        assert _req(c, b"ms %s 1 b F7\r\n4\r\n" % enc) == b"HD\r\n"
        assert _req(c, b"ma %s b D3 v\r\n" % enc) == b"VA 1\r\n7\r\n"
        for mc in cl3.backends:
            with mc.conn() as d:
                def held():
                    r = d.request(b"mg %s b v f\r\n" % enc)
                    return r == b"VA 1 f7\r\n7\r\n"
                assert wait_for(held, 3.0, 0.05), (mc.port, d.request(b"mg %s b v f\r\n" % enc))
        assert _req(c, b"md %s b\r\n" % enc) == b"HD\r\n"
        for mc in cl3.backends:
            with mc.conn() as d:
                assert wait_for(lambda: d.request(b"mg %s b v\r\n" % enc) == b"EN\r\n", 3.0, 0.05)


def test_write_ack_all_answers_the_primarys_reply_when_replicas_disagree(cluster):
    cl = repl_cluster(cluster, n=3, replicas=3, write_ack="all", timeout=1000)
    k = keys_with_primary(cl, 1, 1, "disagree", 3)[0]
    reps = replica_indices(cl, k, 3)
    # only the secondaries hold the key
    for i in reps[1:]:
        with cl.backends[i].conn() as d:
            assert d.request(set_cmd(k, b"x")) == b"STORED\r\n"
    with cl.conn() as c:
        assert _req(c, b"replace %s 0 0 1\r\ny\r\n" % k) == b"NOT_STORED\r\n"
        assert [mg_direct(cl.backends[i], k) for i in reps] == [None, (b"y", 0, -1), (b"y", 0, -1)]
        assert _req(c, b"touch %s 100\r\n" % k) == b"NOT_FOUND\r\n"
        # and the other way round: the primary's DELETED wins over NOT_FOUND elsewhere
        with cl.backends[reps[0]].conn() as d:
            assert d.request(set_cmd(k, b"z")) == b"STORED\r\n"
        for i in reps[1:]:
            with cl.backends[i].conn() as d:
                assert d.request(b"delete %s\r\n" % k) == b"DELETED\r\n"
        assert _req(c, b"delete %s\r\n" % k) == b"DELETED\r\n"
        assert [mg_direct(cl.backends[i], k) for i in reps] == [None] * 3


# --------------------------------------------------------------------------
# 4. reads with failover


def test_get_and_mg_fail_over_to_the_next_replica_when_the_primary_is_killed(cluster):
    cl = repl_cluster(cluster, n=3, replicas=2, timeout=2000)
    keys = keys_with_primary(cl, 0, 8, "rd", 2)
    with cl.conn() as c:
        for k in keys:
            assert _req(c, set_cmd(k, b"val-" + k, flags=3)) == b"STORED\r\n"
        settle(cl)
        cl.backends[0].kill()
        for k in keys:
            reply = _req(c, b"get %s\r\n" % k)
            assert reply == b"VALUE %s 3 %d\r\nval-%s\r\nEND\r\n" % (k, 4 + len(k), k), reply
            reply = _req(c, b"mg %s v f\r\n" % k)
            assert reply == b"VA %d f3\r\nval-%s\r\n" % (4 + len(k), k), reply
        st = stats_pools(c)["alpha"]
        assert st["repl_read_failovers"] >= 2 * len(keys), st
    # The failover is on the refusal, at once: no read waited for the dead
    # primary's timeout (2 s here), none was counted for any server.
    timeouts = harness.server_timeouts(cl.relay, cl.backends)
    assert set(timeouts.values()) == {0}, timeouts


def test_multiget_of_200_keys_over_four_servers_with_one_dead_returns_every_key(cluster):
    cl = repl_cluster(cluster, n=4, replicas=2, timeout=2000)
    keys = keys_for(cl, "mget", 200)
    with cl.conn() as c:
        harness.store_many(c, {k: b"m-" + k for k in keys})
        settle(cl)
        # every server owns some of them
        assert {replica_indices(cl, k, 1)[0] for k in keys} == {0, 1, 2, 3}
        cl.backends[2].kill()
        for attempt in range(2):
            reply = _req(c, b"get " + b" ".join(keys) + b"\r\n")
            got = {k: v for k, _, _, v in harness.parse_values(reply)}
            assert reply.endswith(b"END\r\n"), reply[-200:]
            assert [k for k, _, _, _ in harness.parse_values(reply)] == keys
            assert got == {k: b"m-" + k for k in keys}
            # Nothing waited for the dead server's timeout.
            timeouts = harness.server_timeouts(cl.relay, cl.backends)
            assert set(timeouts.values()) == {0}, (attempt, timeouts)


def test_read_miss_failover_hits_the_next_replica_when_the_primary_restarted_empty(cluster):
    cl = repl_cluster(cluster, n=3, replicas=2, read_miss_failover=True, timeout=1000)
    keys = keys_with_primary(cl, 1, 5, "rmf", 2)
    with cl.conn() as c:
        for k in keys:
            assert _req(c, set_cmd(k, b"here")) == b"STORED\r\n"
        wait_stored_everywhere(cl, keys, 2)
        cl.backends[1].restart()
        for k in keys:
            assert mg_direct(cl.backends[1], k) is None
            assert _req(c, b"get %s\r\n" % k) == b"VALUE %s 0 4\r\nhere\r\nEND\r\n" % k
            assert _req(c, b"mg %s v\r\n" % k) == b"VA 4\r\nhere\r\n"
        # a multi-get of them too
        reply = _req(c, b"get " + b" ".join(keys) + b"\r\n")
        assert [k for k, _, _, _ in harness.parse_values(reply)] == keys, reply


def test_without_read_miss_failover_a_primary_restarted_empty_answers_a_miss(cluster):
    cl = repl_cluster(cluster, n=3, replicas=2, timeout=1000)
    keys = keys_with_primary(cl, 1, 5, "normf", 2)
    with cl.conn() as c:
        for k in keys:
            assert _req(c, set_cmd(k, b"here")) == b"STORED\r\n"
        wait_stored_everywhere(cl, keys, 2)
        cl.backends[1].restart()
        for k in keys:
            assert _req(c, b"get %s\r\n" % k) in (b"END\r\n", b"VALUE %s 0 4\r\nhere\r\nEND\r\n" % k)
            # the secondary still has it
            assert mg_direct(cl.backends[replica_indices(cl, k, 2)[1]], k) == (b"here", 0, -1)


def test_gets_and_gat_are_served_by_the_primary_alone(cluster):
    cl = repl_cluster(cluster, n=3, replicas=3, timeout=1000)
    k = keys_with_primary(cl, 0, 1, "prim", 3)[0]
    reps = replica_indices(cl, k, 3)
    with cl.conn() as c:
        assert _req(c, set_cmd(k, b"P", exptime=100)) == b"STORED\r\n"
        wait_stored_everywhere(cl, [k], 3)
        # the secondaries disagree behind memrelay's back: only the primary is asked
        for i in reps[1:]:
            with cl.backends[i].conn() as d:
                assert d.request(set_cmd(k, b"S", exptime=100)) == b"STORED\r\n"
        (_, _, cas, value), = harness.parse_values(_req(c, b"gets %s\r\n" % k))
        assert value == b"P"
        with cl.backends[0].conn() as d:
            (_, _, pcas, _), = harness.parse_values(d.request(b"gets %s\r\n" % k))
        assert cas == pcas
        (_, _, _, value), = harness.parse_values(_req(c, b"gat 500 %s\r\n" % k))
        assert value == b"P"
        assert 498 <= mg_direct(cl.backends[0], k)[2] <= 500
        # a cas with the primary's CAS value succeeds and repairs the others
        assert _req(c, b"cas %s 0 0 1 %d\r\nC\r\n" % (k, cas)) == b"STORED\r\n"
        readings = wait_replicas_agree(cl.backends, k)
        assert readings[0][0] == b"C", readings


# --------------------------------------------------------------------------
# 5. concurrent writers: no divergence


def _concurrent_writers(cl, keys, with_incr, nthreads=16, per_thread=125):
    """nthreads clients, each per_thread random set/delete(/incr) requests on
    the shared keys (16 x 125 = 2,000 in all), then every key read directly
    from each replica: returns [(key, replica indexes, readings)] that diverged."""
    errors = []

    def writer(t):
        import random
        rnd = random.Random(t)
        try:
            with cl.conn(timeout=10) as c:
                for i in range(per_thread):
                    k = rnd.choice(keys)
                    op = rnd.random()
                    if op < 0.5:
                        v = b"%d" % rnd.randrange(1000)
                        reply = c.request(set_cmd(k, v, flags=t), timeout=10)
                        ok = reply == b"STORED\r\n"
                    elif op < 0.75 or not with_incr:
                        reply = c.request(b"delete %s\r\n" % k, timeout=10)
                        ok = reply in (b"DELETED\r\n", b"NOT_FOUND\r\n")
                    else:
                        reply = c.request(b"incr %s 3\r\n" % k, timeout=10)
                        ok = reply == b"NOT_FOUND\r\n" or reply.rstrip(b"\r\n").isdigit()
                    if not ok:
                        errors.append((t, i, k, reply))
                        return
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append((t, repr(e)))

    threads = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(nthreads)]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=max(1.0, 90 - (time.monotonic() - t0)))
    assert not any(th.is_alive() for th in threads), "writers did not finish"
    assert not errors, errors[:5]
    settle(cl)
    time.sleep(0.5)  # fan-out copies beyond the ack level may still be on the way
    diverged = []
    nservers = len(cl.backends)
    for k in keys:
        reps = replica_indices(cl, k, 3)
        readings = [mg_direct(cl.backends[i], k) for i in reps]
        # memcached pads a shrinking decr in place; an incr result never shrinks, but be safe
        norm = [None if r is None else (r[0].rstrip(b" "), r[1]) for r in readings]
        if any(n != norm[0] for n in norm[1:]):
            diverged.append((k, reps, readings))
        # never on a server outside its replica set
        for i in set(range(nservers)) - set(reps):
            assert mg_direct(cl.backends[i], k) is None, (k, i)
    return diverged


@pytest.mark.time_limit(120)
def test_concurrent_sets_and_deletes_leave_no_divergence_between_replicas(cluster):
    cl = repl_cluster(cluster, n=4, replicas=3, timeout=2000, threads=1)
    keys = keys_for(cl, "conc", 24)
    diverged = _concurrent_writers(cl, keys, with_incr=False)
    assert not diverged, "%d of %d keys diverged, e.g. %r" % (len(diverged), len(keys), diverged[:3])


@pytest.mark.time_limit(120)
def test_concurrent_sets_deletes_and_incrs_leave_no_divergence_between_replicas(cluster):
    cl = repl_cluster(cluster, n=4, replicas=3, timeout=2000, threads=1)
    keys = keys_for(cl, "conci", 24)
    diverged = _concurrent_writers(cl, keys, with_incr=True)
    assert not diverged, "%d of %d keys diverged, e.g. %r" % (len(diverged), len(keys), diverged[:3])


@pytest.mark.time_limit(60)
def test_set_racing_an_incr_read_back_leaves_replicas_equal(cluster):
    """incr k on the primary; memrelay reads k back (mg) to copy it to the
    replicas. A set of k arriving while that read-back is outstanding reaches
    the replicas before the copy does: the copy must not win there (it did
    before a81b4c9: primary "fresh", replicas "11")."""
    cl = repl_cluster(cluster, n=3, replicas=3, timeout=5000)
    k = keys_with_primary(cl, 0, 1, "race", 3)[0]
    big = keys_with_primary(cl, 0, 1, "bigv", 3)[0]
    primary = cl.backends[0]
    with cl.conn() as a, cl.conn() as b, cl.conn(timeout=20) as slow:
        assert a.request(set_cmd(k, b"10")) == b"STORED\r\n"
        assert a.request(set_cmd(big, b"z" * 500000)) == b"STORED\r\n"
        settle(cl)
        primary.pause()
        try:
            a.send(b"incr %s 1\r\n" % k)
            time.sleep(0.1)
            # reads of the primary queued behind the incr, so the read-back waits behind them
            slow.send(b"get %s\r\n" % big * 40)
            time.sleep(0.1)
        finally:
            primary.resume()
        assert a.recv_replies(1, timeout=5) == b"11\r\n"
        assert b.request(set_cmd(k, b"fresh")) == b"STORED\r\n"
        got = slow.recv_replies(40, timeout=20)
        assert got.count(b"VALUE ") == 40
        settle(cl)
        readings = wait_replicas_agree(cl.backends, k, timeout=3.0)
        assert readings[0] == (b"fresh", 0, -1), readings


# --------------------------------------------------------------------------
# 6. cross-pool replication


@pytest.fixture
def two_pools(factory):
    a = [factory.memcached() for _ in range(2)]
    b = [factory.memcached() for _ in range(2)]
    pools = {
        "alpha": Pool(a, timeout=1000, server_retry_timeout=200, probe_backoff_max=1000),
        "beta": Pool(b, listen=None, timeout=1000, server_retry_timeout=200, probe_backoff_max=1000),
    }
    relay = ListRelay(MEMRELAY_BIN, str(factory.tmp_path_factory.mktemp("relay")), pools,
                      {"alpha": {"replicate_to": ["beta"]}})
    factory.relays.append(relay)
    relay.start()
    ring_a = harness.Ketama([(mc.ident(), 1) for mc in a])
    ring_b = harness.Ketama([(mc.ident(), 1) for mc in b])
    return relay, a, b, ring_a, ring_b


def test_replicate_to_stores_each_set_on_the_owner_in_both_pools(two_pools):
    relay, a, b, ring_a, ring_b = two_pools
    keys = keys_for(None, "xp", 40)
    with relay.conn() as c:
        for k in keys:
            assert _req(c, set_cmd(k, b"x-" + k, flags=2)) == b"STORED\r\n"
        for k in keys:
            if k.endswith(b"7"):
                assert _req(c, b"delete %s\r\n" % k) == b"DELETED\r\n"
    want = {k: (b"x-" + k, 2, -1) for k in keys if not k.endswith(b"7")}

    def placed():
        for mcs, ring in ((a, ring_a), (b, ring_b)):
            for i, mc in enumerate(mcs):
                owned = {k: v for k, v in want.items() if ring.server_for(k) == i}
                if holdings(mc, keys) != owned:
                    return False
        return True
    assert wait_for(placed, 5.0, 0.1), [holdings(mc, keys) for mc in a + b]
    # both owners in beta got some keys
    assert {ring_b.server_for(k) for k in want} == {0, 1}


def test_replicate_to_serves_gets_from_the_second_pool_when_the_first_is_dead(two_pools):
    relay, a, b, ring_a, ring_b = two_pools
    keys = keys_for(None, "dr", 30)
    with relay.conn() as c:
        harness.store_many(c, {k: b"dr-" + k for k in keys})
        time.sleep(0.2)
        for mc in a:
            mc.kill()
        for k in keys:
            reply = _req(c, b"get %s\r\n" % k)
            assert reply == b"VALUE %s 0 %d\r\ndr-%s\r\nEND\r\n" % (k, 3 + len(k), k), reply
        # Served by beta on alpha's refusal, at once: no read waited for a
        # dead alpha server's timeout.
        timeouts = harness.server_timeouts(relay, a + b)
        assert set(timeouts.values()) == {0}, timeouts
        reply = _req(c, b"mg %s v\r\n" % keys[0])
        assert reply == b"VA %d\r\ndr-%s\r\n" % (3 + len(keys[0]), keys[0]), reply
        reply = _req(c, b"get " + b" ".join(keys) + b"\r\n")
        assert {k: v for k, _, _, v in harness.parse_values(reply)} == {k: b"dr-" + k for k in keys}
        # writes still land in beta (ack one)
        assert _req(c, set_cmd(b"late", b"L")) == b"STORED\r\n"
        assert mg_direct(b[ring_b.server_for(b"late")], b"late") == (b"L", 0, -1)


def test_replicate_to_replays_missed_writes_to_a_restarted_server_of_the_second_pool(two_pools):
    relay, a, b, ring_a, ring_b = two_pools
    victim = b[0]
    keys = [k for k in keys_for(None, "xr", 60) if ring_b.server_for(k) == 0][:15]
    assert len(keys) >= 5
    with relay.conn() as c:
        harness.store_many(c, {k: b"before" for k in keys})
        victim.kill()
        for k in keys[:5]:
            assert _req(c, b"delete %s\r\n" % k) == b"DELETED\r\n"
        for k in keys[5:]:
            assert _req(c, set_cmd(k, b"during-" + k, flags=8)) == b"STORED\r\n"
        victim.restart()
    # the replays are deletes: it comes back without them (a stopped server
    # would drop its old values too)
    with relay.conn() as c:
        assert wait_for(lambda: stats_pools(c)["beta"]["repl_queue_depth"] == 0, 5.0, 0.1), stats_pools(c)
        assert stats_pools(c)["beta"]["repl_replayed"] >= len(keys), stats_pools(c)
    assert holdings(victim, keys) == {}


# --------------------------------------------------------------------------
# 7. configuration validation


def _check(tmp_path, text):
    path = tmp_path / "memrelay.yml"
    path.write_text(text)
    res = subprocess.run([MEMRELAY_BIN, "-c", str(path), "--check-config"], capture_output=True, timeout=10,
                         stdin=subprocess.DEVNULL)
    return res.returncode, (res.stdout + res.stderr).decode("utf-8", "replace"), str(path)


def _servers(n):
    return "".join("    - 127.0.0.1:%d:1\n" % free_port() for _ in range(n))


def test_config_rejects_more_replicas_than_servers_with_position(tmp_path):
    text = "alpha:\n  listen: 127.0.0.1:%d\n  replicas: 4\n  servers:\n%s" % (free_port(), _servers(3))
    rc, out, path = _check(tmp_path, text)
    assert rc == 1, out
    assert "%s:3:13" % path in out, out
    assert "replicas" in out, out


def test_config_rejects_replicate_to_a_missing_pool_with_position(tmp_path):
    text = ("alpha:\n  listen: 127.0.0.1:%d\n  replicate_to: [nowhere]\n  servers:\n%s"
            % (free_port(), _servers(2)))
    rc, out, path = _check(tmp_path, text)
    assert rc == 1, out
    assert re.search(re.escape(path) + r":3:\d+", out), out
    assert "nowhere" in out, out


def test_config_rejects_replicate_to_itself_with_position(tmp_path):
    text = ("alpha:\n  listen: 127.0.0.1:%d\n  servers:\n%s  replicate_to: [alpha]\n"
            % (free_port(), _servers(2)))
    rc, out, path = _check(tmp_path, text)
    assert rc == 1, out
    assert re.search(re.escape(path) + r":6:\d+", out), out
    assert "itself" in out, out


def test_config_rejects_replicate_to_a_pool_without_servers_with_position(tmp_path):
    text = ("alpha:\n  listen: 127.0.0.1:%d\n  replicate_to: [empty]\n  servers:\n%s"
            "empty:\n  listen: 127.0.0.1:%d\n  routes:\n    - {prefix: \"\", pool: alpha}\n"
            % (free_port(), _servers(2), free_port()))
    rc, out, path = _check(tmp_path, text)
    assert rc == 1, out
    assert re.search(re.escape(path) + r":3:\d+", out), out
    assert "no servers" in out, out


def test_check_config_prints_replicas_and_write_ack(tmp_path):
    text = ("alpha:\n  listen: 127.0.0.1:%d\n  replicas: 2\n  write_ack: quorum\n  read_miss_failover: true\n"
            "  replay_queue: 77\n  replicate_to: [beta]\n  servers:\n%sbeta:\n  servers:\n%s"
            % (free_port(), _servers(3), _servers(2)))
    rc, out, path = _check(tmp_path, text)
    assert rc == 0, out
    assert re.search(r"replicas\s+2\b", out), out
    assert re.search(r"write_ack\s+quorum\b", out), out
    assert re.search(r"read_miss_failover\s+true\b", out), out
    assert re.search(r"replay_queue\s+77\b", out), out
    assert re.search(r"replicate_to\s+beta\b", out), out


def test_check_config_default_write_ack_is_one(tmp_path):
    text = "alpha:\n  listen: 127.0.0.1:%d\n  replicas: 3\n  servers:\n%s" % (free_port(), _servers(3))
    rc, out, path = _check(tmp_path, text)
    assert rc == 0, out
    assert re.search(r"replicas\s+3\b", out) and re.search(r"write_ack\s+one\b", out), out


# --------------------------------------------------------------------------
# 8. stats pools counters


@pytest.mark.time_limit(60)
def test_stats_pools_counters_follow_writes_failures_replay_and_failovers(cluster):
    cl = repl_cluster(cluster, n=3, replicas=3, write_ack="one", timeout=1000)
    victim = cl.backends[1]
    keys = keys_for(cl, "st", 10)
    with cl.conn() as c:
        before = stats_pools(c)["alpha"]
        for name in ("repl_writes", "repl_write_failures", "repl_acks_unmet", "repl_repairs",
                     "repl_read_failovers", "repl_background_pending", "repl_queued", "repl_replayed",
                     "repl_queue_depth", "repl_queue_overflows"):
            assert name in before, (name, before)
        for k in keys:
            assert _req(c, set_cmd(k, b"s")) == b"STORED\r\n"
        st = stats_pools(c)["alpha"]
        assert st["repl_writes"] - before["repl_writes"] == len(keys), st
        assert st["repl_write_failures"] == before["repl_write_failures"], st

        assert _req(c, b"add addst 0 0 1\r\na\r\n") == b"STORED\r\n"
        settle(cl)
        st2 = stats_pools(c)["alpha"]
        assert st2["repl_writes"] - st["repl_writes"] == 1, st2
        assert st2["repl_repairs"] - st["repl_repairs"] == 1, st2

        victim.kill()
        for k in keys:
            assert _req(c, set_cmd(k, b"t")) == b"STORED\r\n"
        settle(cl)
        st3 = stats_pools(c)["alpha"]
        assert st3["repl_write_failures"] - st2["repl_write_failures"] == len(keys), st3
        assert st3["repl_queued"] - st2["repl_queued"] == len(keys), st3
        assert st3["repl_queue_depth"] == len(keys), st3
        assert st3["repl_acks_unmet"] == st2["repl_acks_unmet"], st3

        victim.restart()

        def replayed():
            s = stats_pools(c)["alpha"]
            return s["repl_replayed"] - st3["repl_replayed"] == len(keys) and s["repl_queue_depth"] == 0
        assert wait_for(replayed, 5.0, 0.1), stats_pools(c)["alpha"]

        # reads with the primary dead count failovers
        k = keys_with_primary(cl, 0, 1, "stread", 3)[0]
        assert _req(c, set_cmd(k, b"t")) == b"STORED\r\n"
        settle(cl)
        cl.backends[0].kill()
        st4 = stats_pools(c)["alpha"]
        assert _req(c, b"get %s\r\n" % k) == b"VALUE %s 0 1\r\nt\r\nEND\r\n" % k
        st5 = stats_pools(c)["alpha"]
        assert st5["repl_read_failovers"] - st4["repl_read_failovers"] == 1, st5


@pytest.mark.time_limit(60)
def test_stats_pools_counts_unmet_acks(cluster):
    cl = repl_cluster(cluster, n=3, replicas=3, write_ack="all", timeout=1000)
    with cl.conn() as c:
        before = stats_pools(c)["alpha"]
        cl.backends[2].kill()
        for k in keys_for(cl, "unmet", 5):
            assert REFUSED.match(_req(c, set_cmd(k, b"u")))
        st = stats_pools(c)["alpha"]
        assert st["repl_acks_unmet"] - before["repl_acks_unmet"] == 5, st
