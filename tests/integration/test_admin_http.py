"""The HTTP admin listener: /metrics, /healthz, /readyz (docs/operations.md).

/metrics is parsed with prometheus_client's own text parser (Debian's
python3-prometheus-client), and its counters are compared with traffic sent
through memrelay to real memcached processes. Readiness is watched while a
pool's only server is killed and restarted (the health checker's idle probes
notice without client traffic). Everything listens on loopback; every wait
has a deadline; processes are stopped by PID.

These need memrelay itself, so they are skipped in DIRECT mode.
"""

import http.client
import os
import re
import signal
import socket
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

import harness
from harness import Pool, wait_for

pytestmark = pytest.mark.needs_memrelay

# Quick health checking (docs/health.md): a killed server is found by the
# idle probes within probe_interval, and probed back within about
# server_retry_timeout + probe_backoff_max + probe_success * 250 ms.
HEALTH = {"timeout": 300, "server_retry_timeout": 200, "probe_backoff_max": 400, "probe_success": 1,
          "probe_interval": 100}
STATE_WAIT = 10.0


# --------------------------------------------------------------------------
# helpers


def http_request(port, method, path, host="127.0.0.1", body=None, timeout=5):
    """(status, headers {lower name: value}, body bytes); bounded by a timeout."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def scrape(port):
    """{family name: Family} from GET /metrics, parsed by prometheus_client."""
    status, headers, body = http_request(port, "GET", "/metrics")
    assert status == 200, (status, body[:300])
    assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers
    return {f.name: f for f in text_string_to_metric_families(body.decode("utf-8"))}


def value(fams, family, sample=None, **labels):
    """The value of the one sample of `family` named `sample` (default: the
    family's own name, or name_total for counters) with exactly these labels
    among its own."""
    fam = fams[family]
    if sample is None:
        sample = family + "_total" if fam.type == "counter" else family
    hits = [s.value for s in fam.samples
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(hits) == 1, (family, sample, labels, fam.samples[:6])
    return hits[0]


def server_value(fams, family, mc, sample=None, **labels):
    return value(fams, family, sample, server=mc.spec(), **labels)


def listening_ports(pid):
    """TCP ports the process has a listening socket on (from /proc)."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    ports = set()
    for table in ("tcp", "tcp6"):
        with open("/proc/%d/net/%s" % (pid, table)) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def start_relay(factory, pools, admin=True, **kw):
    """memrelay with --admin on a free loopback port; returns (relay, admin port)."""
    port = harness.free_port()
    args = ["--admin", "127.0.0.1:%d" % port] if admin else []
    relay = factory.relay(pools, extra_args=args, **kw)
    if admin:
        harness.wait_accepting(("127.0.0.1", port), relay.proc)
    return relay, port


def ring_of(servers):
    return harness.Ketama([(s.ident(), 1) for s in servers])


def keys_on(ring, index, count, prefix):
    """`count` keys that ketama puts on server `index`."""
    out, i = [], 0
    while len(out) < count:
        k = b"%s:%d" % (prefix.encode(), i)
        if ring.server_for(k) == index:
            out.append(k)
        i += 1
    return out


def wait_value(port, pred, what, timeout=STATE_WAIT):
    """Scrape until pred(families) holds; returns the families that passed."""
    last = {}

    def check():
        last["fams"] = scrape(port)
        return pred(last["fams"])
    assert wait_for(check, timeout, 0.05), "never true: %s" % what
    return last["fams"]


# --------------------------------------------------------------------------
# /metrics against known traffic


def test_metrics_parse_and_counters_match_the_traffic_sent(factory):
    mcs = [factory.memcached() for _ in range(3)]
    relay, port = start_relay(factory, {"alpha": Pool(mcs, **HEALTH)})
    ring = ring_of(mcs)
    # Keys on every server, interleaved: 13 stored and 4 absent per server.
    stored = [k for trio in zip(*(keys_on(ring, i, 13, "mk") for i in range(3))) for k in trio]
    absent = [k for trio in zip(*(keys_on(ring, i, 4, "absent") for i in range(3))) for k in trio]
    hits, misses = stored[:20], absent[2:]
    multi = stored[20:24] + absent[:2]  # one multi-get: 4 hits, 2 misses
    per_server = [0, 0, 0]
    # The harness's start-up check connected once already (memrelay may accept it only after the check
    # has returned: wait until it is counted); count from here.
    accepted_before = value(wait_value(port, lambda f: value(f, "memrelay_connections") >= 1,
                                       "the start-up check's connection counted"), "memrelay_connections")
    with relay.conn() as c:
        harness.store_many(c, {k: b"v-" + k for k in stored})
        for k in stored:
            per_server[ring.server_for(k)] += 1
        for k in hits + misses:
            c.send(b"get %s\r\n" % k)
            reply = c.recv_replies(1)
            assert reply.endswith(b"END\r\n"), reply
            per_server[ring.server_for(k)] += 1
        reply = c.request(b"get " + b" ".join(multi) + b"\r\n")
        assert reply.count(b"VALUE ") == 4, reply
        owners = {ring.server_for(k) for k in multi}
        for s in owners:  # one message per server holding some of its keys
            per_server[s] += 1
        total = sum(per_server)

        fams = wait_value(port, lambda f: value(f, "memrelay_backend_requests") >= total
                          and sum(server_value(f, "memrelay_server_requests", mc) for mc in mcs) >= total,
                          "every request counted")

        # Every family is described, typed and named as Prometheus expects.
        for name, fam in fams.items():
            assert name.startswith("memrelay_"), name
            assert fam.documentation, name
            assert fam.type in ("counter", "gauge", "histogram"), (name, fam.type)
            for s in fam.samples:
                if fam.type == "counter":
                    assert s.name == name + "_total", s.name

        # Process-wide: the same numbers `stats` shows.
        assert value(fams, "memrelay_cmd_set") == len(stored)
        assert value(fams, "memrelay_cmd_get") == len(hits) + len(misses) + len(multi)
        assert value(fams, "memrelay_get_hits") == len(hits) + 4
        assert value(fams, "memrelay_get_misses") == len(misses) + 2
        assert all(n > 0 for n in per_server), per_server
        assert value(fams, "memrelay_backend_requests") == total
        assert value(fams, "memrelay_curr_connections") == 1
        assert value(fams, "memrelay_connections") == accepted_before + 1
        assert value(fams, "memrelay_backend_timeouts") == 0
        assert value(fams, "memrelay_uptime_seconds") >= 0
        assert value(fams, "memrelay_build_info", version=relay_version(relay)) == 1

        # Per server: requests where ketama sent them, no errors, up.
        for i, mc in enumerate(mcs):
            assert server_value(fams, "memrelay_server_requests", mc, pool="alpha") == per_server[i], i
            assert server_value(fams, "memrelay_server_timeouts", mc) == 0
            for cls in ("timeout", "refused", "unavailable", "bad_reply", "queue_full", "nomem", "down"):
                assert server_value(fams, "memrelay_server_errors", mc, **{"class": cls}) == 0, cls
            assert server_value(fams, "memrelay_server_state", mc, state="up") == 1
            assert server_value(fams, "memrelay_server_state", mc, state="down") == 0
            assert server_value(fams, "memrelay_server_downs", mc) == 0
            # Latency: one sample per reply, cumulative buckets ending in +Inf == count.
            count = server_value(fams, "memrelay_server_latency_seconds", mc, "memrelay_server_latency_seconds_count")
            assert count == per_server[i]
            buckets = sorted(((float(s.labels["le"]), s.value) for s in fams["memrelay_server_latency_seconds"].samples
                              if s.name.endswith("_bucket") and s.labels["server"] == mc.spec()))
            assert buckets[-1] == (float("inf"), count)
            assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), buckets
            assert len(buckets) == 23  # 1 us .. 10 s in 1-2-5 steps, and +Inf
            assert server_value(fams, "memrelay_server_latency_seconds", mc,
                                "memrelay_server_latency_seconds_sum") > 0, per_server

        # Per pool: its servers' histograms summed.
        pool_count = value(fams, "memrelay_pool_latency_seconds", "memrelay_pool_latency_seconds_count", pool="alpha")
        assert pool_count == total
        assert value(fams, "memrelay_pool_servers", pool="alpha") == 3
        assert value(fams, "memrelay_pool_servers_up", pool="alpha") == 3
        assert value(fams, "memrelay_pool_repl_writes", pool="alpha") == 0

    # The connection closed: the gauge goes back down.
    wait_value(port, lambda f: value(f, "memrelay_curr_connections") == 0, "curr_connections back to 0")


def relay_version(relay):
    out = subprocess.run([relay.binary, "--version"], capture_output=True, timeout=10, check=True)
    return out.stdout.decode().split()[-1]


def test_metrics_label_values_are_escaped(factory, tmp_path):
    mc = factory.memcached()
    # A server name with a quote and a backslash (names are free text in the config).
    relay, port = start_relay(factory, {"alpha": Pool([(mc, 1, 'odd"na\\me')], **HEALTH)})
    fams = scrape(port)
    assert value(fams, "memrelay_server_requests", server=mc.spec(1, 'odd"na\\me')) == 0


# --------------------------------------------------------------------------
# readiness and health as servers come and go


@pytest.mark.time_limit(60)
def test_killed_server_shows_in_metrics_and_flips_readyz_until_it_returns(factory):
    a1, a2, b1 = (factory.memcached() for _ in range(3))
    relay, port = start_relay(factory, {"alpha": Pool([a1, a2], **HEALTH), "beta": Pool([b1], **HEALTH)})
    status, _, body = http_request(port, "GET", "/readyz")
    assert (status, body) == (200, b"ready\n")

    # One of alpha's two servers dies: still ready, the server shows down.
    a1.kill()
    wait_value(port, lambda f: server_value(f, "memrelay_server_state", a1, state="down") == 1, "a1 down")
    status, _, body = http_request(port, "GET", "/readyz")
    assert status == 200, body

    # beta's only server dies: not ready, and the body says which pool.
    b1.kill()
    fams = wait_value(port, lambda f: server_value(f, "memrelay_server_state", b1, state="down") == 1, "b1 down")
    assert value(fams, "memrelay_pool_servers_up", pool="beta") == 0
    assert server_value(fams, "memrelay_server_downs", b1) == 1
    status, headers, body = http_request(port, "GET", "/readyz")
    assert status == 503, body
    assert b"pool 'beta' has no server up" in body and b"alpha" not in body, body
    assert headers["content-type"].startswith("text/plain"), headers

    # Requests for beta fail at once, and are counted as such.
    with relay.conn("beta") as c:
        assert c.request(b"get k\r\n") == b"END\r\n"  # failover mode: a miss
        assert c.request(b"set k 0 0 1\r\nx\r\n") == b"SERVER_ERROR backend unavailable\r\n"
    fams = wait_value(port, lambda f: server_value(f, "memrelay_server_requests", b1) >= 2, "beta requests")
    assert server_value(fams, "memrelay_server_requests", b1) == 2
    assert server_value(fams, "memrelay_server_errors", b1, **{"class": "down"}) == 2
    assert server_value(fams, "memrelay_server_latency_seconds", b1, "memrelay_server_latency_seconds_count") == 0
    assert server_value(fams, "memrelay_server_probe_failures", b1) >= 0

    # Probes fail while it stays dead.
    wait_value(port, lambda f: server_value(f, "memrelay_server_probe_failures", b1) >= 1, "failed probes")

    # Restarted: probed back, ready again.
    b1.restart()
    assert wait_for(lambda: http_request(port, "GET", "/readyz")[0] == 200, STATE_WAIT, 0.05), "never ready again"
    fams = scrape(port)
    assert server_value(fams, "memrelay_server_state", b1, state="up") == 1
    assert server_value(fams, "memrelay_server_rejoins", b1) == 1
    assert server_value(fams, "memrelay_server_probes", b1) >= 2
    with relay.conn("beta") as c:
        assert c.request(b"set k 0 0 1\r\nx\r\n") == b"STORED\r\n"
    relay.assert_running()


def test_pool_whose_servers_all_refuse_from_the_start_is_not_ready(factory):
    mc = factory.memcached()
    dead = harness.free_port()  # nothing listens there
    relay, port = start_relay(factory, {
        "alpha": Pool([mc], **HEALTH),
        "beta": Pool([DeadServer(dead)], **HEALTH),
    })
    assert wait_for(lambda: http_request(port, "GET", "/readyz")[0] == 503, STATE_WAIT, 0.05)
    status, _, body = http_request(port, "GET", "/readyz")
    assert status == 503 and b"pool 'beta'" in body, body


class DeadServer:
    """A server line for a loopback port nobody listens on."""

    def __init__(self, port):
        self.port = port

    def spec(self, weight=1, name=None):
        s = "127.0.0.1:%d:%d" % (self.port, weight)
        return s + " " + name if name else s

    def ident(self, name=None):
        return name or "127.0.0.1:%d" % self.port


# --------------------------------------------------------------------------
# the endpoints and their limits


def test_healthz_answers_ok_and_other_paths_and_methods_are_refused(factory):
    mc = factory.memcached()
    relay, port = start_relay(factory, {"alpha": Pool([mc], **HEALTH)})
    assert http_request(port, "GET", "/healthz")[::2] == (200, b"ok\n")
    status, headers, body = http_request(port, "HEAD", "/healthz")
    assert (status, body) == (200, b"")
    for path in ("/", "/metrics/", "/health", "/readyz/x", "/favicon.ico"):
        assert http_request(port, "GET", path)[0] == 404, path
    assert http_request(port, "GET", "/healthz?verbose=1")[0] == 200  # the query is not part of the path
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, headers, body = http_request(port, method, "/metrics", body=b"x=1")
        assert status == 405, (method, status, body)
        assert headers.get("allow") == "GET, HEAD", headers
    # Garbage instead of HTTP: refused, and the listener carries on.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"\x00\x01 this is not http\r\n\r\n")
        s.settimeout(5)
        try:
            reply = s.recv(4096)
        except OSError:
            reply = b""
        assert not reply.startswith(b"HTTP/1.1 200"), reply
    assert http_request(port, "GET", "/healthz")[0] == 200
    relay.assert_running()


def test_admin_connections_are_limited_and_the_listener_survives_them(factory):
    mc = factory.memcached()
    relay, port = start_relay(factory, {"alpha": Pool([mc], **HEALTH)})
    # The listener keeps at most 16 connections: with 16 idle ones open, a
    # new one is closed unanswered; once they go, requests are answered again.
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(16)]
    try:
        assert wait_for(lambda: not _healthz_ok(port), 10.0, 0.1), "a 17th connection was served"
    finally:
        for s in idle:
            s.close()
    assert wait_for(lambda: _healthz_ok(port), 10.0, 0.1)
    with relay.conn() as c:
        assert c.request(b"get k\r\n") == b"END\r\n"  # clients never noticed
    relay.assert_running()


def _healthz_ok(port):
    """Served at once? (A connection over the limit is closed or left waiting.)"""
    try:
        return http_request(port, "GET", "/healthz", timeout=1)[0] == 200
    except OSError:
        return False


# --------------------------------------------------------------------------
# configuration: off by default, admin_listen, --admin


def test_admin_listener_is_off_by_default(factory):
    mc = factory.memcached()
    relay, _ = start_relay(factory, {"alpha": Pool([mc], **HEALTH)}, admin=False)
    assert listening_ports(relay.proc.pid) == {relay.addr()[1]}
    assert "admin listener" not in relay.stderr()


def test_admin_listen_bare_port_in_the_config_listens_on_loopback(factory):
    mc = factory.memcached()
    port = harness.free_port()
    relay = factory.relay({"alpha": Pool([mc], **HEALTH)}, process_settings={"admin_listen": str(port)})
    harness.wait_accepting(("127.0.0.1", port), relay.proc)
    assert http_request(port, "GET", "/healthz")[0] == 200
    assert listening_ports(relay.proc.pid) == {relay.addr()[1], port}
    # Logged once the daemon runs, which may be after it answered.
    line = "admin listener on 127.0.0.1:%d" % port
    assert harness.wait_for(lambda: line in relay.stderr(), 10), relay.stderr()


def test_admin_flag_overrides_admin_listen(factory):
    mc = factory.memcached()
    config_port = harness.free_port()
    relay, port = start_relay(factory, {"alpha": Pool([mc], **HEALTH)},
                              process_settings={"admin_listen": "127.0.0.1:%d" % config_port})
    assert http_request(port, "GET", "/healthz")[0] == 200
    assert listening_ports(relay.proc.pid) == {relay.addr()[1], port}


def test_admin_listener_on_ipv6_loopback(factory):
    if not harness.ipv6_loopback_available():
        pytest.skip("no IPv6 loopback")
    mc = factory.memcached()
    port = harness.free_port("::1")
    relay = factory.relay({"alpha": Pool([mc], **HEALTH)}, extra_args=["--admin", "[::1]:%d" % port])
    harness.wait_accepting(("::1", port), relay.proc)
    assert http_request(port, "GET", "/readyz", host="::1")[0] == 200


def test_bad_admin_flag_is_an_error_before_anything_starts(factory, memrelay_bin, tmp_path):
    mc = factory.memcached()
    cfg = tmp_path / "m.yml"
    cfg.write_text("alpha:\n  listen: 127.0.0.1:%d\n  servers:\n    - %s\n" % (harness.free_port(), mc.spec()))
    for bad in ("nope", "0", "127.0.0.1:99999", "/tmp/admin.sock"):
        out = subprocess.run([memrelay_bin, "-c", str(cfg), "--admin", bad], capture_output=True, timeout=10)
        assert out.returncode == 1, (bad, out)
        assert b"bad --admin address '%s'" % bad.encode() in out.stderr, out.stderr


def test_admin_port_in_use_stops_memrelay_with_a_message(factory, memrelay_bin, tmp_path):
    mc = factory.memcached()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        cfg = tmp_path / "m.yml"
        cfg.write_text("alpha:\n  listen: 127.0.0.1:%d\n  servers:\n    - %s\n" % (harness.free_port(), mc.spec()))
        out = subprocess.run([memrelay_bin, "-c", str(cfg), "--admin", "127.0.0.1:%d" % port],
                             capture_output=True, timeout=20)
    assert out.returncode == 1, out
    assert b"admin listener: cannot listen on 127.0.0.1:%d" % port in out.stderr, out.stderr


# --------------------------------------------------------------------------
# reload status and readiness across reloads


def test_metrics_and_readiness_follow_reloads(factory):
    mc = factory.memcached()
    dead = factory.memcached()
    port = harness.free_port()
    relay = factory.relay({"alpha": Pool([mc], **HEALTH)}, process_settings={"admin_listen": str(port)})
    harness.wait_accepting(("127.0.0.1", port), relay.proc)  # it starts after the pools' listeners
    fams = scrape(port)
    assert value(fams, "memrelay_config_generation") == 1
    assert value(fams, "memrelay_config_reloads", "memrelay_config_reloads_total") == 0
    assert http_request(port, "GET", "/readyz")[0] == 200

    # A second pool whose only server is dead: not ready, and the pool is named.
    dead.kill()
    relay.reconfigure({"alpha": Pool([mc], **HEALTH), "beta": Pool([dead], **HEALTH)})
    assert wait_for(lambda: value(scrape(port), "memrelay_config_generation") == 2, STATE_WAIT)
    with relay.conn("beta") as c:
        c.request(b"get x\r\n")  # the refused connect marks it down at once
    assert wait_for(lambda: http_request(port, "GET", "/readyz")[0] == 503, STATE_WAIT)
    assert b"beta" in http_request(port, "GET", "/readyz")[2]
    fams = scrape(port)
    assert value(fams, "memrelay_config_reloads", "memrelay_config_reloads_total") == 1
    servers = {s.labels["server"] for s in fams["memrelay_server_requests"].samples}
    assert servers == {mc.spec(), dead.spec()}, servers

    # An invalid file: counted, still generation 2, still serving metrics.
    good = open(relay.config_path).read()
    with open(relay.config_path, "w") as f:
        f.write(good + "gamma: [\n")
    relay.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: value(scrape(port), "memrelay_config_reload_failures",
                                  "memrelay_config_reload_failures_total") == 1, STATE_WAIT)
    fams = scrape(port)
    assert value(fams, "memrelay_config_generation") == 2
    assert value(fams, "memrelay_config_last_reload_failed") == 1

    # Drop beta again: ready, and its server is gone from the metrics.
    relay.reconfigure({"alpha": Pool([mc], **HEALTH)})
    assert wait_for(lambda: value(scrape(port), "memrelay_config_generation") == 3, STATE_WAIT)
    assert wait_for(lambda: http_request(port, "GET", "/readyz")[0] == 200, STATE_WAIT)
    fams = scrape(port)
    assert {s.labels["server"] for s in fams["memrelay_server_requests"].samples} == {mc.spec()}
    assert value(fams, "memrelay_config_last_reload_failed") == 0


def test_readyz_turns_503_while_draining_and_healthz_stays_200(factory):
    mc = factory.memcached()
    port = harness.free_port()
    relay = factory.relay({"alpha": Pool([mc], timeout=4000)}, process_settings={"admin_listen": str(port)})
    harness.wait_accepting(("127.0.0.1", port), relay.proc)  # it starts after the pools' listeners
    assert http_request(port, "GET", "/readyz")[0] == 200
    with relay.conn(timeout=10) as c:
        mc.pause()  # a request in flight keeps the drain going
        try:
            c.send(b"get slow\r\n")
            # In flight (sent to the paused server) before the signal, or the drain has nothing to wait for.
            assert wait_for(lambda: value(scrape(port), "memrelay_backend_requests") >= 1, STATE_WAIT)
            relay.proc.send_signal(signal.SIGTERM)
            assert wait_for(lambda: http_request(port, "GET", "/readyz")[0] == 503, STATE_WAIT)
            status, _, body = http_request(port, "GET", "/readyz")
            assert status == 503 and b"draining" in body, body
            assert http_request(port, "GET", "/healthz")[0] == 200
        finally:
            mc.resume()
        assert c.recv_replies(1, timeout=10) == b"END\r\n"  # answered before exit
    relay.proc.wait(timeout=10)
    assert relay.proc.returncode == 0
