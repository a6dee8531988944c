"""Hot reload: SIGHUP and file changes switch every worker to a new config.

What is checked, always through the built binary against real memcached:
- a new server (or one fewer) moves exactly the keys ketama says and no other;
- an invalid file is refused with its position, counted, and the old config
  keeps serving; a later good file is taken;
- pipelined load from many clients across many reloads: every reply is right
  and every key lives on the server the config says (zero failed or
  misrouted requests), while reloads retire and replace backend connections;
- requests in flight finish on the config they started with, even when the
  reload removed their server;
- servers kept by a reload keep their connections and their health state;
- the file is watched: an atomic rename and a Kubernetes-style symlink swap
  are reloads without any signal;
- listeners added and removed by a reload, and clients of a removed pool.
"""

import hashlib
import os
import re
import signal
import socket
import threading
import time

import pytest

import harness
from harness import Ketama, Pool, store_many, wait_for

pytestmark = pytest.mark.skipif(harness.DIRECT, reason="reload needs memrelay")


def stats_lines(relay, what, pool=None):
    with relay.conn(pool, timeout=5) as c:
        c.send(b"stats " + what + b"\r\n")
        reply = c.recv_until_endswith(b"END\r\n", timeout=10)
    assert reply.endswith(b"END\r\n"), (what, reply[-500:], relay.stderr()[-2000:])
    out = {}
    for line in reply.split(b"\r\n"):
        if line.startswith(b"STAT "):
            name, _, value = line[5:].decode().partition(" ")
            out[name] = int(value) if re.fullmatch(r"-?\d+", value) else value
    return out


def generation(relay):
    return stats_lines(relay, b"config")["config_generation"]


def wait_generation(relay, gen, timeout=10):
    assert wait_for(lambda: generation(relay) == gen, timeout), (
        "config generation stayed %s (wanted %s)\n%s" % (generation(relay), gen, relay.stderr()[-2000:]))
    # Every worker switched once the main thread logged it.
    assert wait_for(lambda: "config generation %d (md5" % gen in relay.stderr()
                    and "serving on every worker" in relay.stderr().split("config generation %d (md5" % gen)[-1],
                    timeout), relay.stderr()[-2000:]


def ring(servers):
    return Ketama([(mc.ident(), w) for mc, w, _ in servers])


def get_value(conn, key):
    reply = conn.request(b"get " + key + b"\r\n")
    if reply == b"END\r\n":
        return None
    head, _, rest = reply.partition(b"\r\n")
    assert head.startswith(b"VALUE " + key + b" "), reply
    return rest[: int(head.split()[3])]


def test_adding_and_removing_a_server_moves_only_the_keys_ketama_says(factory):
    mcs = [factory.memcached() for _ in range(4)]
    three = [(mc, 1, None) for mc in mcs[:3]]
    # warmup_window 0: the ring alone decides (test_warmup.py has the window).
    relay = factory.relay({"alpha": Pool(three, warmup_window=0)})
    # Varied keys: fnv1a of near-identical short keys clusters on the ring.
    keys = [b"move:" + hashlib.sha1(b"%d" % i).hexdigest().encode()[:12] for i in range(600)]
    with relay.conn() as c:
        store_many(c, [(k, b"v-" + k) for k in keys])
        before = ring(three)
        four = three + [(mcs[3], 1, None)]
        relay.reconfigure({"alpha": Pool(four, warmup_window=0)})
        wait_generation(relay, 2)
        after = ring(four)
        moved = [k for k in keys if after.server_for(k) != before.server_for(k)]
        # Ketama moves about a quarter of the keys (it varies with the ports
        # in the ring) to the new server, and all of them to it.
        assert 0.05 * len(keys) < len(moved) < 0.5 * len(keys), len(moved)
        assert all(after.server_for(k) == 3 for k in moved)
        for k in keys:
            got = get_value(c, k)
            if k in moved:
                assert got is None, k  # it lives on its old server; the new owner has not seen it
            else:
                assert got == b"v-" + k, k
        # The same connection keeps working, and new writes land on the new owner.
        store_many(c, [(k, b"w-" + k) for k in moved])
        assert mcs[3].get_raw(moved) == {k: (0, b"w-" + k) for k in moved}

        # Remove the first server: only its keys move.
        last = four[1:]
        relay.reconfigure({"alpha": Pool(last, warmup_window=0)})
        wait_generation(relay, 3)
        final = ring(last)
        for k in keys:
            owner_before = after.server_for(k)
            owner_after = final.server_for(k) + 1  # index in `four`
            if owner_before != 0:
                assert owner_after == owner_before, k  # keys of the remaining servers stay put
                want = b"w-" + k if k in moved else b"v-" + k
                assert get_value(c, k) == want, k
    assert relay.running


def test_invalid_file_is_refused_and_the_old_config_keeps_serving(factory):
    mc = factory.memcached()
    relay = factory.relay({"alpha": Pool([mc])})
    with relay.conn() as c:
        assert c.request(b"set a 0 0 1\r\nx\r\n") == b"STORED\r\n"
        good = open(relay.config_path).read()
        # A bad value on a known line: refused with the position.
        with open(relay.config_path, "w") as f:
            f.write(good.replace("timeout: 1000", "timeout: soon"))
        relay.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: stats_lines(relay, b"config")["reload_failures"] >= 1, 10), relay.stderr()[-2000:]
        st = stats_lines(relay, b"config")
        assert st["config_generation"] == 1
        assert re.search(r":\d+:\d+", st["last_reload_error"]), st  # file:line:column
        assert "timeout" in st["last_reload_error"], st
        assert re.search(r"reload \(.*\) refused, still serving generation 1: .*timeout", relay.stderr())
        # Still serving, on the same connection and new ones.
        assert c.request(b"get a\r\n") == b"VALUE a 0 1\r\nx\r\nEND\r\n"
        with relay.conn() as c2:
            assert c2.request(b"get a\r\n") == b"VALUE a 0 1\r\nx\r\nEND\r\n"
        # Not YAML at all: refused too.
        with open(relay.config_path, "w") as f:
            f.write("alpha: [unclosed\n")
        relay.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: stats_lines(relay, b"config")["reload_failures"] >= 2, 10)
        assert c.request(b"get a\r\n") == b"VALUE a 0 1\r\nx\r\nEND\r\n"
        # A good file again: taken, and the error is cleared.
        with open(relay.config_path, "w") as f:
            f.write(good.replace("timeout: 1000", "timeout: 900"))
        relay.proc.send_signal(signal.SIGHUP)
        wait_generation(relay, 2)
        st = stats_lines(relay, b"config")
        assert st["last_reload_error"] == "none" and st["reloads"] == 1 and st["reload_failures"] == 2, st
        assert c.request(b"get a\r\n") == b"VALUE a 0 1\r\nx\r\nEND\r\n"


def test_a_listener_that_cannot_be_bound_refuses_the_whole_reload(factory):
    mc = factory.memcached()
    relay = factory.relay({"alpha": Pool([mc])})
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        text = open(relay.config_path).read()
        port = busy.getsockname()[1]
        text += "beta:\n  listen: 127.0.0.1:%d\n  servers:\n    - %s\n" % (port, mc.spec())
        with open(relay.config_path + ".tmp", "w") as f:
            f.write(text)
        os.replace(relay.config_path + ".tmp", relay.config_path)
        relay.proc.send_signal(signal.SIGHUP)
        # Refused once for the SIGHUP (the file watch may try the same file again: also refused).
        assert wait_for(lambda: stats_lines(relay, b"config")["reload_failures"] >= 1, 10), relay.stderr()[-2000:]
        assert generation(relay) == 1
        assert "cannot listen" in stats_lines(relay, b"config")["last_reload_error"]
        with relay.conn() as c:
            assert c.request(b"version\r\n").startswith(b"VERSION ")
    finally:
        busy.close()


def _load_client(relay, idx, stop, errors, counts, written):
    """Pipelined batches of 8 set+get pairs on fresh keys; every reply checked."""
    n = 0
    try:
        with relay.conn(timeout=10) as c:
            while not stop.is_set():
                batch = [b"ld:%d:%d" % (idx, n + i) for i in range(8)]
                n += 8
                req = b"".join(b"set %s 0 0 %d\r\n%s\r\nget %s\r\n" % (k, len(k), k, k) for k in batch)
                reply = c.request(req, replies=16, timeout=10)
                want = b"".join(b"STORED\r\nVALUE %s 0 %d\r\n%s\r\nEND\r\n" % (k, len(k), k) for k in batch)
                if reply != want:
                    errors.append((idx, reply[:300], want[:300]))
                    return
                written.extend(batch)
                counts[idx] += 16
    except Exception as e:  # noqa: BLE001 - any failure is the test's failure
        errors.append((idx, repr(e)))


@pytest.mark.time_limit(120)
def test_reloads_under_pipelined_load_lose_and_misroute_nothing(factory):
    mcs = [factory.memcached() for _ in range(3)]
    servers = [(mc, 1, None) for mc in mcs]
    relay = factory.relay({"alpha": Pool(servers, server_connections=1)}, threads=2)
    stop = threading.Event()
    errors, written = [], []
    counts = [0] * 16
    threads = [threading.Thread(target=_load_client, args=(relay, i, stop, errors, counts, written))
               for i in range(16)]
    for t in threads:
        t.start()
    try:
        # Ten reloads that keep the ring: connection counts (new backends,
        # old ones retire and drain), timeouts, a second pool with its own
        # listener coming and going.
        for gen in range(2, 12):
            time.sleep(0.3)
            settings = {"server_connections": 1 + gen % 2, "timeout": 1000 + gen}
            pools = {"alpha": Pool(servers, **settings)}
            if gen % 3 == 0:
                pools["beta"] = Pool([servers[0]])
            relay.reconfigure(pools)
            wait_generation(relay, gen)
            assert not errors, errors[:3]
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:3]
    assert sum(counts) > 16 * 16, counts
    assert all(counts), counts  # every client got through
    # Zero misrouted: each key is on the server ketama names, and only there.
    r = ring(servers)
    sample = written[:: max(1, len(written) // 2000)]
    for i, mc in enumerate(mcs):
        held = set(mc.get_raw(sample))
        assert held == {k for k in sample if r.server_for(k) == i}, i
    st = stats_lines(relay, b"config")
    assert st["reloads"] == 10 and st["reload_failures"] == 0, st
    assert relay.running


def test_requests_in_flight_finish_on_their_config_when_a_reload_removes_their_server(factory):
    mcs = [factory.memcached() for _ in range(2)]
    servers = [(mc, 1, None) for mc in mcs]
    relay = factory.relay({"alpha": Pool(servers, timeout=1500, server_failure_limit=100)})
    r = ring(servers)
    key = next(b"fl:%d" % i for i in range(1000) if r.server_for(b"fl:%d" % i) == 0)
    with relay.conn(timeout=10) as c:
        assert c.request(b"set %s 0 0 2\r\nv1\r\n" % key) == b"STORED\r\n"
        mcs[0].pause()
        try:
            c.send(b"get %s\r\n" % key)  # in flight to the paused server
            time.sleep(0.2)
            relay.reconfigure({"alpha": Pool(servers[1:], timeout=1500, server_failure_limit=100)})
            wait_generation(relay, 2)
            # Answered on its own config: the old server's timeout, not dropped.
            assert c.recv_replies(1, timeout=5) == b"SERVER_ERROR timeout\r\n"
            # The next request on the same connection uses the new config.
            assert c.request(b"get %s\r\n" % key) == b"END\r\n"
            assert c.request(b"set %s 0 0 2\r\nv2\r\n" % key) == b"STORED\r\n"
            assert mcs[1].get_raw([key]) == {key: (0, b"v2")}
        finally:
            mcs[0].resume()
    # The removed server's connection closes once it has nothing in flight.
    assert wait_for(lambda: mc_stat(mcs[0], b"curr_connections") == mc_stat_baseline(), 10)


def mc_stat(mc, name):
    with mc.conn() as c:
        c.send(b"stats\r\n")
        reply = c.recv_until_endswith(b"END\r\n", timeout=5)
    for line in reply.split(b"\r\n"):
        parts = line.split()
        if len(parts) == 3 and parts[1] == name:
            return int(parts[2])
    raise AssertionError("no %r in stats" % name)


def mc_stat_baseline():
    # memcached's curr_connections counts the connection asking.
    return 1


def test_kept_servers_keep_their_connections_and_health(factory):
    mcs = [factory.memcached() for _ in range(3)]
    servers = [(mc, 1, None) for mc in mcs]
    # No idle probes: each would be a new connection to count.
    relay = factory.relay({"alpha": Pool(servers, server_retry_timeout=60000, probe_interval=0)})
    r = ring(servers)
    keys = [b"keep:%d" % i for i in range(2000)]
    keys = [next(k for k in keys if r.server_for(k) == i) for i in range(3)]  # one on each server
    with relay.conn() as c:
        store_many(c, [(k, b"x") for k in keys])
    conns_before = [mc_stat(mc, b"total_connections") for mc in mcs[:2]]
    mcs[2].kill()
    dead = mcs[2].spec()

    def marked_down():
        with relay.conn() as c:
            for k in keys:
                c.request(b"get %s\r\n" % k)
        return stats_lines(relay, b"servers")["alpha:%s:state" % dead] == "down"
    assert wait_for(marked_down, 10), relay.stderr()
    # Reload with another setting: same servers.
    relay.reconfigure({"alpha": Pool(servers, server_retry_timeout=60000, probe_interval=0, timeout=800)})
    wait_generation(relay, 2)
    with relay.conn() as c:
        for k in keys:
            c.request(b"get %s\r\n" % k)
    rows = stats_lines(relay, b"servers")
    assert rows["alpha:%s:state" % dead] == "down", rows  # still down: not a fresh server
    assert rows["alpha:%s:downs" % dead] == 1, rows
    # No new connections to the live servers (the +1 is each stats probe here).
    assert [mc_stat(mc, b"total_connections") for mc in mcs[:2]] == [n + 1 for n in conns_before]


def test_file_watch_reloads_on_rename_and_on_a_kubernetes_symlink_swap(factory, tmp_path):
    mcs = [factory.memcached() for _ in range(2)]
    relay = factory.relay({"alpha": Pool([mcs[0]])})
    # An atomic rename over the file, no signal.
    relay.reconfigure({"alpha": Pool([mcs[0]], timeout=700)}, sighup=False)
    wait_generation(relay, 2)
    relay.stop()

    # kubelet's layout: memrelay.yml -> ..data/memrelay.yml, ..data -> ..v1.
    cfgdir = tmp_path / "cm"
    (cfgdir / "..v1").mkdir(parents=True)
    (cfgdir / "..v2").mkdir()
    text = open(relay.config_path).read()
    (cfgdir / "..v1" / "memrelay.yml").write_text(text)
    os.symlink("..v1", str(cfgdir / "..data"))
    os.symlink("..data/memrelay.yml", str(cfgdir / "memrelay.yml"))
    relay2 = harness.Relay(relay.binary, str(tmp_path), relay.pools, extra_args=["-c", str(cfgdir / "memrelay.yml")])
    relay2.config_path = str(tmp_path / "unused.yml")
    relay2.listen = dict(relay.listen)
    proc = harness.subprocess.Popen([relay.binary, "-c", str(cfgdir / "memrelay.yml")],
                                    stdout=open(relay2.stderr_path, "ab"), stderr=harness.subprocess.STDOUT)
    relay2.proc = proc
    factory.relays.append(relay2)
    harness.wait_accepting(relay2.addr(), proc)
    assert generation(relay2) == 1
    # New content in ..v2, then swap ..data atomically.
    (cfgdir / "..v2" / "memrelay.yml").write_text(text.replace("timeout: 700", "timeout: 600")
                                                  .replace(mcs[0].spec(), "%s\n    - %s" % (mcs[0].spec(), mcs[1].spec())))
    os.symlink("..v2", str(cfgdir / "..data_tmp"))
    os.replace(str(cfgdir / "..data_tmp"), str(cfgdir / "..data"))
    assert wait_for(lambda: generation(relay2) == 2, 10), relay2.stderr()[-2000:]
    rows = stats_lines(relay2, b"servers")
    assert "alpha:%s:state" % mcs[1].spec() in rows, rows


def test_listeners_come_and_go_with_the_config(factory):
    mc = factory.memcached()
    relay = factory.relay({"alpha": Pool([mc])})
    relay.reconfigure({"alpha": Pool([mc]), "beta": Pool([mc])})
    wait_generation(relay, 2)
    beta = relay.conn("beta")
    assert beta.request(b"set b 0 0 1\r\n1\r\n") == b"STORED\r\n"
    with relay.conn("alpha") as a:
        assert a.request(b"get b\r\n") == b"VALUE b 0 1\r\n1\r\nEND\r\n"
    # Remove beta: its listener closes; its open client is answered, then closed.
    beta.send(b"get b\r\n")
    assert beta.recv_replies(1, timeout=5) == b"VALUE b 0 1\r\n1\r\nEND\r\n"
    addr = relay.listen["beta"]
    relay.reconfigure({"alpha": Pool([mc])})
    wait_generation(relay, 3)
    assert beta.wait_closed(timeout=5)
    assert wait_for(lambda: _refused(addr), 5)
    with relay.conn("alpha") as a:
        assert a.request(b"get b\r\n") == b"VALUE b 0 1\r\n1\r\nEND\r\n"


def _refused(addr):
    try:
        socket.create_connection(addr, timeout=1).close()
        return False
    except OSError:
        return True
