"""Servers that move and pools discovered from DNS, against a real DNS server
(dnsmasq, dns_server.py says how it is run) and real memcached on several
loopback addresses (127.0.0.2, 127.0.0.3, ... stand for other machines).

memrelay is pointed at dnsmasq with memrelay.dns_servers; the test rewrites
the records and checks what memrelay does, never how long it took."""
import os
import re
import signal
import subprocess
import threading
import time

import pytest

import harness
from dns_server import Dnsmasq, SlowDns
from harness import Conn, Memcached, free_port, wait_accepting, wait_for

SERVICE = "_memcache._tcp.pool.test"


@pytest.fixture
def dns(tmp_path):
    d = Dnsmasq(str(tmp_path), ttl=1)
    yield d
    d.stop()


@pytest.fixture
def mcs(tmp_path_factory):
    started = []

    def make(host):
        mc = Memcached(str(tmp_path_factory.mktemp("mc")), host=host).start()
        started.append(mc)
        return mc

    yield make
    for mc in started:
        mc.stop()


class Memrelay:
    """memrelay with a hand-written config (the harness renders `servers:` lists only)."""

    def __init__(self, workdir, text):
        self.workdir = workdir
        self.port = free_port()
        self.path = os.path.join(workdir, "memrelay.yml")
        with open(self.path, "w") as f:
            f.write(text.replace("PORT", str(self.port)))
        self.err_path = os.path.join(workdir, "stderr")
        err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([harness_bin(), "-c", self.path], stdout=err, stderr=err,
                                     stdin=subprocess.DEVNULL)
        err.close()
        wait_accepting(("127.0.0.1", self.port), self.proc)
        # The listeners accept while memrelay still waits for its first DNS
        # answers (ops/membership.c); a test that changes DNS must not start
        # before they are in, or it changes what memrelay starts with.
        wait_for(lambda: " started: " in self.log() or self.proc.poll() is not None, 30.0, 0.02)
        if self.proc.poll() is not None or " started: " not in self.log():
            raise harness.HarnessError("memrelay did not start:\n" + self.log())

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    def log(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stats(self, what=""):
        with Conn(self.addr) as c:
            c.send(b"stats %s\r\n" % what.encode() if what else b"stats\r\n")
            return c.recv_until_term(b"END\r\n", timeout=5).decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        report = harness.sanitizer_report(self.log())
        assert not report, report


def harness_bin():
    return os.environ.get("MEMRELAY_BIN") or os.path.join(os.environ.get("MEMRELAY_SOURCE_DIR", "."), "build",
                                                         "memrelay")


@pytest.fixture
def relay(tmp_path):
    started = []

    def make(text):
        r = Memrelay(str(tmp_path), text)
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()


def srv_config(dns, refresh=300, extra=""):
    return ("memrelay:\n  dns_servers: [%s]\n  dns_timeout: 400\n"
            "alpha:\n  listen: 127.0.0.1:PORT\n  hash: md5\n  timeout: 1000\n  server_retry_timeout: 200\n"
            "  server_failure_limit: 1\n  dns_refresh: %d\n  servers_srv: %s\n%s" % (dns.server, refresh, SERVICE,
                                                                                       extra))


def set_get(addr, keys, value=b"v"):
    with Conn(addr, timeout=10) as c:
        for k in keys:
            assert c.request(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(value), value)) == b"STORED\r\n", k


def holders(mcs_list, keys):
    return [len(mc.keys_held(keys)) for mc in mcs_list]


def ring_for(targets):
    """The ketama ring memrelay must build for SRV targets [(name, port, weight)]."""
    return harness.Ketama([("%s:%d" % (n, p), w) for n, p, w in targets], harness.md5_hash)


def test_srv_pool_of_three_targets_serves_keys_spread_over_all_three(dns, mcs, relay):
    servers = [mcs("127.0.0.%d" % i) for i in (2, 3, 4)]
    names = ["mc%d.pool.test" % i for i in range(3)]
    dns.start(hosts={n: [mc.host] for n, mc in zip(names, servers)},
              srv=[(SERVICE, n, mc.port, 0, 1) for n, mc in zip(names, servers)])
    r = relay(srv_config(dns))
    keys = [b"spread:%d" % i for i in range(300)]
    set_get(r.addr, keys)
    ring = ring_for([(n, mc.port, 1) for n, mc in zip(names, servers)])
    for i, mc in enumerate(servers):
        want = {k for k in keys if ring.server_for(k) == i}
        assert want and mc.keys_held(keys) == want, "server %d holds other keys than ketama says" % i
    text = r.stats("servers")
    assert "mc0.pool.test" in text and "127.0.0.2:%d" % servers[0].port in text, text
    assert "srv" in text


def test_a_host_name_that_moves_while_down_comes_back_without_a_reload(dns, mcs, relay, tmp_path):
    old = mcs("127.0.0.2")
    dns.start(hosts={"mcmove.pool.test": ["127.0.0.2"]})
    r = relay("memrelay:\n  dns_servers: [%s]\n  dns_timeout: 400\n"
              "alpha:\n  listen: 127.0.0.1:PORT\n  timeout: 1000\n  server_retry_timeout: 200\n"
              "  server_failure_limit: 1\n  dns_refresh: 60000\n  servers:\n    - mcmove.pool.test:%d:1 mc0\n"
              % (dns.server, old.port))
    with Conn(r.addr) as c:
        assert c.request(b"set moving 0 0 3\r\nold\r\n") == b"STORED\r\n"
    # The server dies, and comes back on another address under the same name.
    port = old.port
    old.kill()
    new = Memcached(str(tmp_path), port=port, host="127.0.0.3").start()
    try:
        dns.set_hosts({"mcmove.pool.test": ["127.0.0.3"]})
        with Conn(r.addr) as c:  # refused: marked down; probes re-resolve the name
            c.request(b"get moving\r\n")

        def served():
            with Conn(r.addr) as c:
                return c.request(b"set moving 0 0 3\r\nnew\r\n") == b"STORED\r\n"

        assert wait_for(served, 15.0, 0.1), r.log()[-2000:]
        assert new.keys_held([b"moving"]) == {b"moving"}
        assert "127.0.0.3:%d" % port in r.stats("servers")
        assert re.search(r"mcmove\.pool\.test.*127\.0\.0\.3", r.log()), r.log()[-2000:]
    finally:
        new.stop()


class Load(threading.Thread):
    """Sets and gets in a loop until stopped; counts replies that are not what they should be."""

    def __init__(self, addr, keys):
        super().__init__(daemon=True)
        self.addr, self.keys = addr, keys
        self.stopping = False
        self.requests = 0
        self.failures = []

    def run(self):
        with Conn(self.addr, timeout=10) as c:
            i = 0
            while not self.stopping:
                k = self.keys[i % len(self.keys)]
                reply = c.request(b"set %s 0 0 1\r\nx\r\n" % k)
                if reply != b"STORED\r\n":
                    self.failures.append((k, reply))
                reply = c.request(b"get %s\r\n" % k)
                if not reply.startswith(b"VALUE ") and reply != b"END\r\n":
                    self.failures.append((k, reply))
                self.requests += 2
                i += 1

    def stop(self):
        self.stopping = True
        self.join(timeout=10)


def test_dns_adds_and_removes_targets_moving_only_the_keys_ketama_says_with_no_failed_request(dns, mcs, relay):
    servers = [mcs("127.0.0.%d" % i) for i in (2, 3, 4, 5)]
    names = ["mc%d.pool.test" % i for i in range(4)]
    hosts = {n: [mc.host] for n, mc in zip(names, servers)}
    first = [(names[i], servers[i].port, 1) for i in (0, 1, 2)]
    dns.start(hosts=hosts, srv=[(SERVICE, n, p, 0, w) for n, p, w in first])
    # warmup_window 0: misses show where ketama moved keys (test_warmup.py has the window).
    r = relay(srv_config(dns, refresh=200, extra="  warmup_window: 0\n"))
    keys = [b"move:%d" % i for i in range(400)]
    set_get(r.addr, keys)
    load = Load(r.addr, [b"load:%d" % i for i in range(50)])
    load.start()
    try:
        # mc3 joins and mc0 leaves in one change of the records.
        second = [(names[i], servers[i].port, 1) for i in (1, 2, 3)]
        dns.set_srv([(SERVICE, n, p, 0, w) for n, p, w in second])

        def switched():
            return "added [mc3.pool.test" in r.log() and "removed [mc0.pool.test" in r.log()

        assert wait_for(switched, 15.0, 0.1), r.log()[-3000:]
        time.sleep(0.3)
    finally:
        load.stop()
    assert load.requests > 0
    assert load.failures == [], load.failures[:5]
    before, after = ring_for(first), ring_for(second)
    moved = [k for k in keys if first[before.server_for(k)][0] != second[after.server_for(k)][0]]
    # Only keys whose owner changed in ketama miss; every other key is still served.
    with Conn(r.addr) as c:
        for k in keys:
            hit = c.request(b"get %s\r\n" % k).startswith(b"VALUE")
            assert hit == (k not in moved), k
    # mc0's keys, plus the share the new mc3 takes from the others: about half.
    assert 0 < len(moved) < len(keys) * 3 // 4


def test_a_dns_membership_change_opens_a_warm_up_window_no_key_misses(dns, mcs, relay):
    servers = [mcs("127.0.0.%d" % i) for i in (2, 3, 4, 5)]
    names = ["mc%d.pool.test" % i for i in range(4)]
    hosts = {n: [mc.host] for n, mc in zip(names, servers)}
    first = [(names[i], servers[i].port, 1) for i in (0, 1, 2)]
    dns.start(hosts=hosts, srv=[(SERVICE, n, p, 0, w) for n, p, w in first])
    r = relay(srv_config(dns, refresh=200))
    keys = [b"warm:%d" % i for i in range(400)]
    set_get(r.addr, keys)
    # mc3 joins and mc0 (still running) leaves in one change of the records.
    second = [(names[i], servers[i].port, 1) for i in (1, 2, 3)]
    dns.set_srv([(SERVICE, n, p, 0, w) for n, p, w in second])
    assert wait_for(lambda: "warm-up window opened for pool alpha" in r.log(), 15.0, 0.1), r.log()[-3000:]
    # DNS adds mc3 at the first answer and removes mc0 only at the second (two answers in a row without
    # it): two switches. Read once the second is serving, so the ring is `second`'s.
    assert wait_for(lambda: "removed [mc0.pool.test" in r.log(), 15.0, 0.05), r.log()[-3000:]
    assert wait_for(lambda: "serving on every worker" in r.log().split("removed [mc0.pool.test")[-1], 15.0, 0.05)
    before, after = ring_for(first), ring_for(second)
    moved = [k for k in keys if first[before.server_for(k)][0] != second[after.server_for(k)][0]]
    assert moved
    with Conn(r.addr) as c:
        for k in keys:
            assert c.request(b"get %s\r\n" % k).startswith(b"VALUE"), k
    # The moved keys now live on their new owners.
    for k in moved:
        assert k in servers[1 + after.server_for(k)].keys_held([k]), k


def test_a_target_missing_from_one_answer_stays_until_the_second(dns, mcs, relay):
    servers = [mcs("127.0.0.%d" % i) for i in (2, 3)]
    names = ["mc0.pool.test", "mc1.pool.test"]
    dns.start(hosts={n: [mc.host] for n, mc in zip(names, servers)},
              srv=[(SERVICE, n, mc.port, 0, 1) for n, mc in zip(names, servers)])
    r = relay(srv_config(dns, refresh=1500))
    assert "mc1.pool.test" in r.stats("servers")
    before = dns.queries(SERVICE)
    dns.set_srv([(SERVICE, names[0], servers[0].port, 0, 1)])  # mc1 disappears from DNS
    assert wait_for(lambda: dns.queries(SERVICE) >= before + 1, 10.0, 0.01)
    time.sleep(0.2)  # that answer has been applied; the next lookup is 1.5 s away
    assert "mc1.pool.test" in r.stats("servers"), "removed after one answer"
    assert wait_for(lambda: "removed [mc1.pool.test" in r.log(), 10.0, 0.05), r.log()[-2000:]
    assert dns.queries(SERVICE) >= before + 2
    assert "mc1.pool.test" not in r.stats("servers")


def test_a_dns_server_that_stops_answering_keeps_the_pool_serving(dns, mcs, relay):
    servers = [mcs("127.0.0.%d" % i) for i in (2, 3)]
    names = ["mc0.pool.test", "mc1.pool.test"]
    dns.start(hosts={n: [mc.host] for n, mc in zip(names, servers)},
              srv=[(SERVICE, n, mc.port, 0, 1) for n, mc in zip(names, servers)])
    r = relay(srv_config(dns, refresh=200))
    keys = [b"outage:%d" % i for i in range(100)]
    set_get(r.addr, keys)
    dns.pause()
    try:
        assert wait_for(lambda: "DNS lookup of srv %s failed" % SERVICE in r.log(), 10.0, 0.1), r.log()[-2000:]
        # The targets' own lookups fail too (every dns_refresh, at least a second): the servers stay up.
        assert wait_for(lambda: re.search(r":lookup_failures [1-9]", r.stats("servers")), 10.0, 0.1)
        assert ":state down" not in r.stats("servers")
        with Conn(r.addr) as c:
            for k in keys:
                assert c.request(b"get %s\r\n" % k).startswith(b"VALUE"), k
        assert sum(holders(servers, keys)) == len(keys)
    finally:
        dns.resume()
    assert wait_for(lambda: "answers again" in r.log(), 10.0, 0.1)
    assert r.log().count("DNS lookup of srv %s failed" % SERVICE) == 1, "logged once per change of state"


def test_a_slow_dns_server_does_not_delay_requests_for_other_servers(dns, mcs, relay):
    static = mcs("127.0.0.2")
    named = mcs("127.0.0.3")
    dns.start(hosts={"slow.pool.test": ["127.0.0.3"]})
    slow = SlowDns(dns.port)
    try:
        r = relay("memrelay:\n  dns_servers: [%s]\n  dns_timeout: 60000\n"
                  "fast:\n  listen: 127.0.0.1:PORT\n  servers:\n    - %s\n"
                  "other:\n  listen: 127.0.0.1:%d\n  dns_refresh: 1000\n  servers:\n    - slow.pool.test:%d:1\n"
                  % (slow.server, static.spec(), free_port(), named.port))
        # From now on no lookup is answered (c-ares waits 60 s before it retries);
        # wait until the next refresh is stuck in one.
        slow.hold()
        assert wait_for(lambda: slow.held > 0, 10.0, 0.02), "no lookup went out"
        with Conn(r.addr, timeout=10) as c:
            for i in range(200):
                assert c.request(b"set fast:%d 0 0 1\r\nx\r\n" % i) == b"STORED\r\n"
        # The named server keeps its address meanwhile: its requests do not wait either.
        other = ("127.0.0.1", int(re.search(r"other:\n  listen: 127.0.0.1:(\d+)", open(r.path).read()).group(1)))
        with Conn(other, timeout=10) as c:
            for i in range(50):
                assert c.request(b"set slow:%d 0 0 1\r\nx\r\n" % i) == b"STORED\r\n"
        # A request that waited for the lookup would have timed out (10 s; no
        # lookup is answered before release()), so each was answered without it.
        assert slow.held_answered == 0 and slow.held > 0
    finally:
        slow.stop()


def test_servers_dns_pool_has_one_server_per_address(dns, mcs, relay):
    servers = [mcs("127.0.0.%d" % i) for i in (2, 3, 4)]
    port = servers[0].port
    for mc in servers[1:]:  # one port for all: a headless Service's pods share the port
        mc.stop()
    same = [servers[0]] + [Memcached(mc.workdir, port=port, host=mc.host).start() for mc in servers[1:]]
    try:
        dns.start(hosts={"mc.pool.test": [mc.host for mc in same]})
        r = relay("memrelay:\n  dns_servers: [%s]\n  dns_timeout: 400\n"
                  "alpha:\n  listen: 127.0.0.1:PORT\n  hash: md5\n  servers_dns: mc.pool.test:%d\n"
                  % (dns.server, port))
        keys = [b"perip:%d" % i for i in range(300)]
        set_get(r.addr, keys)
        ring = harness.Ketama([("%s:%d" % (mc.host, port), 1) for mc in same], harness.md5_hash)
        for i, mc in enumerate(same):
            assert mc.keys_held(keys) == {k for k in keys if ring.server_for(k) == i}
        assert "dns" in r.stats("servers")
    finally:
        for mc in same[1:]:
            mc.stop()


def test_stats_and_metrics_show_where_each_server_is_and_the_dns_counters(dns, mcs, relay):
    from test_admin_http import scrape, value
    servers = [mcs("127.0.0.%d" % i) for i in (2, 3)]
    names = ["mc0.pool.test", "mc1.pool.test"]
    dns.start(hosts={n: [mc.host] for n, mc in zip(names, servers)},
              srv=[(SERVICE, n, mc.port, 0, 1) for n, mc in zip(names, servers)])
    admin = free_port()
    r = relay(srv_config(dns, refresh=300).replace("memrelay:\n", "memrelay:\n  admin_listen: %d\n" % admin, 1))
    wait_accepting(("127.0.0.1", admin), r.proc)
    pools = r.stats("pools")
    assert "STAT alpha:servers_from srv\r\n" in pools and "STAT alpha:dns_name %s\r\n" % SERVICE in pools, pools
    assert re.search(r"STAT alpha:dns_lookups [1-9]", pools) and "STAT alpha:dns_membership_changes 1\r\n" in pools
    text = r.stats("servers")
    spec = "mc0.pool.test:%d:1" % servers[0].port
    assert "STAT alpha:%s:address 127.0.0.2:%d\r\n" % (spec, servers[0].port) in text, text
    assert "STAT alpha:%s:source srv\r\n" % spec in text
    assert "STAT alpha:%s:host mc0.pool.test\r\n" % spec in text
    assert "STAT alpha:%s:resolve_error none\r\n" % spec in text
    fams = scrape(admin)
    assert value(fams, "memrelay_server_info", pool="alpha", server=spec, address="127.0.0.2:%d" % servers[0].port,
                 source="srv", host="mc0.pool.test") == 1
    assert value(fams, "memrelay_server_dns_lookups", pool="alpha", server=spec) >= 1
    assert value(fams, "memrelay_pool_dns_membership_changes", pool="alpha") == 1
    # DNS stops answering: the failures are counted, the servers stay.
    dns.pause()
    try:
        assert wait_for(lambda: value(scrape(admin), "memrelay_pool_dns_lookup_failures", pool="alpha") >= 1, 10.0,
                        0.1)
        assert re.search(r"STAT alpha:dns_last_error \S", r.stats("pools"))
        assert "STAT alpha:servers 2\r\n" in r.stats("pools")
    finally:
        dns.resume()
