"""Warm resize: a reload that moves keys costs no misses (issue 20).

What is checked, through the built binary against real memcached:
- 2,000 keys, a server added by reload: every key still reads back, and
  every moved key is then on its new owner (with its flags), so the next
  read hits there directly;
- the same when a server that is still running is removed;
- a moved key deleted or rewritten after the reload is never served from
  its previous owner (the previous owner lost it);
- gets of a warmed key carries the new owner's CAS, and a cas with it works;
- a previous owner that is down answers as a miss, not an error;
- warmup_window: 0 is today's behaviour (moved keys miss);
- replicated pools: get, gets, gat, gats, mg (T included) and binary GAT of a moved key
  are read from the previous replica set; gets/gat/gats answer with the new
  primary's CAS and touch;
- the counters in `stats pools` and the log lines.
"""

import hashlib
import time

import pytest

import harness
from harness import Ketama, Pool, store_many

from test_reload import stats_lines, wait_generation

pytestmark = pytest.mark.skipif(harness.DIRECT, reason="warm-up needs memrelay")

NKEYS = 2000


def keys_of(n, tag=b"warm"):
    return [tag + b":" + hashlib.sha1(b"%d" % i).hexdigest().encode()[:12] for i in range(n)]


def ring(servers):
    return Ketama([(mc.ident(), 1) for mc in servers])


def get_many(conn, keys, cmd=b"get", batch=100):
    """{key: (flags, value[, cas])} of a multi-get, in batches."""
    out = {}
    for i in range(0, len(keys), batch):
        chunk = keys[i:i + batch]
        conn.send(cmd + b" " + b" ".join(chunk) + b"\r\n")
        reply = conn.recv_until_endswith(b"END\r\n", timeout=10)
        assert reply.endswith(b"END\r\n"), reply[-300:]
        rest = reply
        while rest.startswith(b"VALUE "):
            head, _, rest = rest.partition(b"\r\n")
            parts = head.split()
            n = int(parts[3])
            value, rest = rest[:n], rest[n + 2:]
            out[parts[1]] = (int(parts[2]), value) + ((int(parts[4]),) if len(parts) > 4 else ())
        assert rest == b"END\r\n", rest[:300]
    return out


def pool_stats(relay):
    return stats_lines(relay, b"pools")


def test_adding_a_server_costs_no_misses_and_moves_the_keys_to_it(factory):
    mcs = [factory.memcached() for _ in range(4)]
    relay = factory.relay({"alpha": Pool(mcs[:3])})
    keys = keys_of(NKEYS)
    with relay.conn() as c:
        store_many(c, [(k, b"v-" + k) for k in keys], flags=7)
        before = ring(mcs[:3])
        relay.reconfigure({"alpha": Pool(mcs)})
        wait_generation(relay, 2)
        assert "warm-up window opened for pool alpha" in relay.stderr()
        after = ring(mcs)
        moved = [k for k in keys if after.server_for(k) != before.server_for(k)]
        assert len(moved) > 0.05 * NKEYS
        got = get_many(c, keys)
        assert got == {k: (7, b"v-" + k) for k in keys}  # 0 misses
        # The moved keys were copied to their new owner, flags and all.
        assert mcs[3].get_raw(moved) == {k: (7, b"v-" + k) for k in moved}
        st = pool_stats(relay)
        assert st["alpha:warm_lookups"] == len(moved), st
        assert st["alpha:warm_hits"] == len(moved), st
        assert st["alpha:warm_copies"] == len(moved), st
        assert st["alpha:warmup_window_left_ms"] > 0, st
        # Read again: hits on the new owner, no more warm-up traffic.
        assert get_many(c, keys) == {k: (7, b"v-" + k) for k in keys}
        assert pool_stats(relay)["alpha:warm_lookups"] == len(moved)
    assert relay.running


def test_removing_a_running_server_costs_no_misses(factory):
    mcs = [factory.memcached() for _ in range(3)]
    relay = factory.relay({"alpha": Pool(mcs)})
    keys = keys_of(NKEYS, b"rm")
    with relay.conn() as c:
        store_many(c, [(k, b"v-" + k) for k in keys])
        relay.reconfigure({"alpha": Pool(mcs[1:])})
        wait_generation(relay, 2)
        moved = [k for k in keys if ring(mcs).server_for(k) == 0]
        assert moved
        assert get_many(c, keys) == {k: (0, b"v-" + k) for k in keys}
        now = ring(mcs[1:])
        for i, mc in enumerate(mcs[1:]):
            mine = [k for k in moved if now.server_for(k) == i]
            assert mc.get_raw(mine) == {k: (0, b"v-" + k) for k in mine}
    assert relay.running


def test_a_key_deleted_or_rewritten_after_the_reload_never_comes_back(factory):
    mcs = [factory.memcached() for _ in range(4)]
    relay = factory.relay({"alpha": Pool(mcs[:3])})
    keys = keys_of(400, b"stale")
    with relay.conn() as c:
        store_many(c, [(k, b"old") for k in keys])
        before = ring(mcs[:3])
        relay.reconfigure({"alpha": Pool(mcs)})
        wait_generation(relay, 2)
        moved = [k for k in keys if ring(mcs).server_for(k) != before.server_for(k)]
        assert len(moved) >= 6
        deleted, rewritten, touched, counted = moved[0::4], moved[1::4], moved[2::4], moved[3::4]
        for k in deleted:
            assert c.request(b"delete " + k + b"\r\n") == b"NOT_FOUND\r\n"  # not on the new owner yet
        for k in rewritten:
            assert c.request(b"set %s 0 0 3\r\nnew\r\n" % k) == b"STORED\r\n"
        for k in counted:
            assert c.request(b"ms %s 1 T0\r\n5\r\n" % k) == b"HD\r\n"
        for k in touched:
            assert c.request(b"touch %s 100\r\n" % k) == b"NOT_FOUND\r\n"
        got = get_many(c, moved)
        for k in deleted + touched:
            assert k not in got, k  # the previous owner forgot it
        for k in rewritten:
            assert got[k] == (0, b"new"), k
        for k in counted:
            assert got[k] == (0, b"5"), k
        # The previous owners hold none of the moved keys that were written.
        for i, mc in enumerate(mcs[:3]):
            assert not mc.keys_held(moved[: len(moved) // 4 * 4]), i
        st = pool_stats(relay)
        assert st["alpha:warm_stale_deletes"] == len(moved), st
    assert relay.running


def test_gets_of_a_warmed_key_carries_the_new_owners_cas(factory):
    mcs = [factory.memcached() for _ in range(4)]
    relay = factory.relay({"alpha": Pool(mcs[:3])})
    keys = keys_of(200, b"cas")
    with relay.conn() as c:
        store_many(c, [(k, b"v") for k in keys])
        before = ring(mcs[:3])
        relay.reconfigure({"alpha": Pool(mcs)})
        wait_generation(relay, 2)
        moved = [k for k in keys if ring(mcs).server_for(k) != before.server_for(k)]
        assert moved
        got = get_many(c, moved, b"gets")
        assert set(got) == set(moved)
        k = moved[0]
        cas = got[k][2]
        with mcs[3].conn() as direct:
            assert direct.request(b"gets " + k + b"\r\n").split(b"\r\n")[0].split()[4] == b"%d" % cas
        assert c.request(b"cas %s 0 0 1 %d\r\nz\r\n" % (k, cas)) == b"STORED\r\n"
        assert get_many(c, [k]) == {k: (0, b"z")}
    assert relay.running


def test_a_previous_owner_that_is_down_answers_as_a_miss(factory):
    mcs = [factory.memcached() for _ in range(3)]
    relay = factory.relay({"alpha": Pool(mcs[:2], timeout=500)})
    keys = keys_of(300, b"down")
    with relay.conn() as c:
        store_many(c, [(k, b"v") for k in keys])
        relay.reconfigure({"alpha": Pool(mcs, timeout=500)})
        wait_generation(relay, 2)
        moved = [k for k in keys if ring(mcs).server_for(k) == 2]
        assert moved
        mcs[0].kill()
        mcs[1].kill()
        got = get_many(c, moved)  # an END, never an error
        assert got == {}
        # Single-key gets too.
        for k in moved[:5]:
            assert c.request(b"get " + k + b"\r\n") == b"END\r\n"
    assert relay.running


def test_window_zero_is_the_old_behaviour(factory):
    mcs = [factory.memcached() for _ in range(4)]
    relay = factory.relay({"alpha": Pool(mcs[:3], warmup_window=0)})
    keys = keys_of(500, b"cold")
    with relay.conn() as c:
        store_many(c, [(k, b"v") for k in keys])
        before = ring(mcs[:3])
        relay.reconfigure({"alpha": Pool(mcs, warmup_window=0)})
        wait_generation(relay, 2)
        moved = [k for k in keys if ring(mcs).server_for(k) != before.server_for(k)]
        got = get_many(c, keys)
        assert set(got) == set(keys) - set(moved)
        st = pool_stats(relay)
        assert st["alpha:warm_lookups"] == 0 and st["alpha:warmup_window_left_ms"] == 0, st
        assert "warm-up window opened" not in relay.stderr()
    assert relay.running


def test_a_reload_that_keeps_the_ring_keeps_the_window_open(factory):
    mcs = [factory.memcached() for _ in range(4)]
    relay = factory.relay({"alpha": Pool(mcs[:3])})
    keys = keys_of(600, b"keep")
    with relay.conn() as c:
        store_many(c, [(k, b"v-" + k) for k in keys])
        relay.reconfigure({"alpha": Pool(mcs)})
        wait_generation(relay, 2)
        # Only a timeout changes: nothing moves, and the open window carries on.
        relay.reconfigure({"alpha": Pool(mcs, timeout=1500)})
        wait_generation(relay, 3)
        assert pool_stats(relay)["alpha:warmup_window_left_ms"] > 0
        assert get_many(c, keys) == {k: (0, b"v-" + k) for k in keys}
    assert relay.running


def test_a_slow_previous_owner_answers_as_a_miss(factory):
    mcs = [factory.memcached() for _ in range(3)]
    relay = factory.relay({"alpha": Pool(mcs[:2], timeout=300, server_failure_limit=1000)})
    keys = keys_of(300, b"slow")
    with relay.conn() as c:
        store_many(c, [(k, b"v") for k in keys])
        relay.reconfigure({"alpha": Pool(mcs, timeout=300, server_failure_limit=1000)})
        wait_generation(relay, 2)
        before = ring(mcs[:2])
        moved = [k for k in keys if ring(mcs).server_for(k) == 2 and before.server_for(k) == 0]
        assert moved
        mcs[0].pause()
        try:
            for k in moved[:3]:
                assert c.request(b"get " + k + b"\r\n", timeout=10) == b"END\r\n"  # a miss, not a timeout error
        finally:
            mcs[0].resume()
    assert relay.running


def test_a_removed_server_that_is_stopped_answers_as_a_miss(factory):
    mcs = [factory.memcached() for _ in range(3)]
    relay = factory.relay({"alpha": Pool(mcs, timeout=500)})
    keys = keys_of(300, b"gone")
    with relay.conn() as c:
        store_many(c, [(k, b"v") for k in keys])
        relay.reconfigure({"alpha": Pool(mcs[1:], timeout=500)})
        wait_generation(relay, 2)
        moved = [k for k in keys if ring(mcs).server_for(k) == 0]
        assert moved
        mcs[0].kill()
        got = get_many(c, moved)  # misses, never an error
        assert got == {}
        for k in moved[:3]:
            assert c.request(b"get " + k + b"\r\n") == b"END\r\n"
        # Writes to those keys still work (their stale delete to the stopped server just fails).
        assert c.request(b"set %s 0 0 1\r\nn\r\n" % moved[0]) == b"STORED\r\n"
        assert get_many(c, [moved[0]]) == {moved[0]: (0, b"n")}
    assert relay.running


def test_a_binary_getkq_run_is_warmed_too(factory):
    from test_binary import GETKQ, NOOP, SETQ, packets, req, set_req

    mcs = [factory.memcached() for _ in range(4)]
    relay = factory.relay({"alpha": Pool(mcs[:3])})
    keys = keys_of(200, b"bin")
    with relay.conn() as c:
        c.send(b"".join(set_req(k, b"v-" + k, flags=3, opcode=SETQ) for k in keys) + req(NOOP, opaque=1))
        assert [p[5] for p in packets(c.recv_idle(idle=0.3, timeout=5.0))] == [1]
        relay.reconfigure({"alpha": Pool(mcs)})
        wait_generation(relay, 2)
        c.send(b"".join(req(GETKQ, k, opaque=i) for i, k in enumerate(keys)) + req(NOOP, opaque=999))
        ps = packets(c.recv_idle(idle=0.3, timeout=5.0))
    assert [p[5] for p in ps] == list(range(len(keys))) + [999]  # every key hit, in order
    assert [p[7][4 + p[2]:] for p in ps[:-1]] == [b"v-" + k for k in keys]
    assert all(p[7][:4] == b"\0\0\0\3" for p in ps[:-1])  # the flags
    moved = [k for k in keys if ring(mcs).server_for(k) == 3]
    assert moved and mcs[3].get_raw(moved) == {k: (3, b"v-" + k) for k in moved}


def mg_many(conn, keys, flags):
    """The reply (line and value, or the line alone) of `mg <key> <flags>` for
    every key, pipelined in batches ended by `mn`."""
    out = []
    for i in range(0, len(keys), 100):
        chunk = keys[i:i + 100]
        conn.send(b"".join(b"mg %s %s\r\n" % (k, flags) for k in chunk) + b"mn\r\n")
        rest = conn.recv_until_endswith(b"MN\r\n", timeout=10)
        for _ in chunk:
            line, _, rest = rest.partition(b"\r\n")
            if line.startswith(b"VA "):
                n = int(line.split()[1])
                line, rest = line + b"\r\n" + rest[:n], rest[n + 2:]
            out.append(line)
        assert rest == b"MN\r\n", rest[:300]
    return out


def test_an_mg_of_a_moved_key_is_warmed_with_memcacheds_reply_for_the_flags_asked(factory):
    mcs = [factory.memcached() for _ in range(4)]
    relay = factory.relay({"alpha": Pool(mcs[:3])})
    keys = keys_of(NKEYS, b"mg")
    with relay.conn() as c:
        store_many(c, [(k, b"v-" + k) for k in keys], flags=7)
        before = ring(mcs[:3])
        relay.reconfigure({"alpha": Pool(mcs)})
        wait_generation(relay, 2)
        after = ring(mcs)
        moved = [k for k in keys if after.server_for(k) != before.server_for(k)]
        assert len(moved) > 0.05 * NKEYS
        flags = b"v f t k s c O123"
        got = mg_many(c, keys, flags)
        assert not [k for k, r in zip(keys, got) if not r.startswith(b"VA ")]  # 0 misses
        # Exactly what the key's owner now answers itself: the moved keys with
        # their copy's CAS, flags, size and key.
        for i, mc in enumerate(mcs):
            mine = [(k, r) for k, r in zip(keys, got) if after.server_for(k) == i]
            with mc.conn() as direct:
                assert mg_many(direct, [k for k, _ in mine], flags) == [r for _, r in mine], i
        st = pool_stats(relay)
        assert st["alpha:warm_lookups"] == len(moved), st
        assert st["alpha:warm_copies"] == len(moved), st
        assert st["alpha:warm_races"] == 0, st
        # Read again: hits on the new owner, no more warm-up traffic.
        assert mg_many(c, moved, b"v") == [b"VA %d\r\nv-%s" % (len(k) + 2, k) for k in moved]
        assert pool_stats(relay)["alpha:warm_lookups"] == len(moved)
    assert relay.running


def test_an_mg_after_a_running_server_is_removed_costs_no_misses(factory):
    mcs = [factory.memcached() for _ in range(3)]
    relay = factory.relay({"alpha": Pool(mcs)})
    keys = keys_of(NKEYS, b"mgrm")
    with relay.conn() as c:
        store_many(c, [(k, b"v-" + k) for k in keys])
        relay.reconfigure({"alpha": Pool(mcs[1:])})
        wait_generation(relay, 2)
        moved = [k for k in keys if ring(mcs).server_for(k) == 0]
        assert moved
        # A base64 key (b) is warmed the same way; without v: HD for a hit.
        import base64
        b64 = [base64.b64encode(k) for k in moved[:50]]
        assert mg_many(c, b64, b"b v k") == [b"VA %d k%s b\r\nv-%s" % (len(k) + 2, e, k)
                                             for e, k in zip(b64, moved[:50])]
        # With q: hits still answer, misses are silent.
        assert mg_many(c, moved, b"") == [b"HD"] * len(moved)
        assert mg_many(c, keys, b"v q") == [b"VA %d\r\nv-%s" % (len(k) + 2, k) for k in keys]
        assert pool_stats(relay)["alpha:warm_copies"] == len(moved)
    assert relay.running


def test_a_binary_get_is_warmed_too(factory):
    from test_binary import GET, GETK, packets, req

    mcs = [factory.memcached() for _ in range(4)]
    relay = factory.relay({"alpha": Pool(mcs[:3])})
    keys = keys_of(300, b"bget")
    with relay.conn() as c:
        store_many(c, [(k, b"v-" + k) for k in keys], flags=3)
        relay.reconfigure({"alpha": Pool(mcs)})
        wait_generation(relay, 2)
        moved = [k for k in keys if ring(mcs).server_for(k) == 3]
        assert moved
    with relay.conn() as c:  # a connection speaks the protocol of its first byte
        for i, k in enumerate(moved):
            c.send(req(GET if i % 2 else GETK, k, opaque=i))
            head = c.recv_exact(24, timeout=5.0)
            (p,) = packets(head + c.recv_exact(int.from_bytes(head[8:12], "big"), timeout=5.0))
            assert p[4] == 0, (k, p)  # status: found
            assert p[7] == b"\0\0\0\3" + (b"" if i % 2 else k) + b"v-" + k
            assert p[6] != 0  # the new owner's CAS
    assert mcs[3].get_raw(moved) == {k: (3, b"v-" + k) for k in moved}
    assert relay.running


@pytest.mark.parametrize("reads", ["get/mg", "gets/gat"])
@pytest.mark.parametrize("replicas", [1, 2])
def test_a_delete_or_set_racing_warm_reads_never_brings_the_old_value_back(factory, replicas, reads):
    """Per moved key: an old value on its previous owner only (replicated:
    on every old server), readers on several connections (two workers)
    reading it through the warm-up path with get and mg (or gets, gat and
    mg with T), and a write
    (delete, or set) sent while they read. Every read sent after the write
    was acknowledged must see the write: never the old value."""
    import random
    import threading
    import time

    mcs = [factory.memcached() for _ in range(4)]
    # Replicated: write_ack all, so that an acknowledged write has reached
    # every replica (with `one`, a read may still find the value it replaced
    # on a replica the write has not reached yet: replication's own rule).
    repl = {"replicas": 2, "write_ack": "all"} if replicas > 1 else {}
    relay = factory.relay({"alpha": Pool(mcs[:3], **repl)}, threads=2)
    keys = keys_of(NKEYS, b"race")
    before, after = ring(mcs[:3]), ring(mcs)
    relay.reconfigure({"alpha": Pool(mcs, **repl)})
    wait_generation(relay, 2)
    moved = [k for k in keys if after.server_for(k) != before.server_for(k)]
    assert len(moved) > 300
    current = [None]  # (key, old value) being raced
    stop = threading.Event()
    seen = []  # (key, sent at, reply)
    errors = []

    def reader(n):
        try:
            with relay.conn() as c:
                while not stop.is_set():
                    cur = current[0]
                    if cur is None:
                        time.sleep(0.0002)
                        continue
                    k = cur[0]
                    t = time.monotonic()
                    primary = reads == "gets/gat"
                    if n % 2:
                        c.send(b"mg " + k + (b" v T100\r\n" if primary and n == 3 else b" v\r\n"))
                        r = c.recv_until_term(b"\r\n", timeout=10)
                        if r.startswith(b"VA "):
                            r = c.recv_exact(int(r.split()[1]) + 2, timeout=10)[:-2]
                        else:
                            r = None
                    else:  # a single-key get, or a multi-get (with a key nobody has)
                        cmd = (b"gets " if n == 2 else b"gat 100 ") if primary else b"get "
                        c.send(cmd + k + (b" race:none" if n == 2 else b"") + b"\r\n")
                        r = c.recv_until_endswith(b"END\r\n", timeout=10)
                        r = r.split(b"\r\n")[1] if r.startswith(b"VALUE ") else None
                    seen.append((k, t, r))
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    acked = {}  # key -> (acknowledged at, value a later read must see: None for a miss)
    rng = random.Random(20)
    deadline = time.monotonic() + 30
    try:
        with relay.conn() as w:
            for i, k in enumerate(moved[:400]):
                if time.monotonic() > deadline:
                    break
                old = b"old-%d" % i
                for mc in [mcs[before.server_for(k)]] if replicas == 1 else mcs[:3]:
                    with mc.conn() as direct:
                        assert direct.request(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(old), old)) == b"STORED\r\n"
                current[0] = (k, old)
                time.sleep(rng.random() * 0.002)
                if i % 3 == 2:
                    assert w.request(b"set %s 0 0 3\r\nnew\r\n" % k) == b"STORED\r\n"
                    acked[k] = (time.monotonic(), b"new", old)
                else:
                    assert w.request(b"delete " + k + b"\r\n") in (b"DELETED\r\n", b"NOT_FOUND\r\n")
                    acked[k] = (time.monotonic(), None, old)
                time.sleep(0.003)  # reads after the ack
                assert w.request(b"get " + k + b"\r\n").startswith(b"VALUE" if i % 3 == 2 else b"END")
    finally:
        current[0] = None
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors, errors
    late = [(k, r, round((t - acked[k][0]) * 1e6)) for k, t, r in seen
            if k in acked and t > acked[k][0] and r != acked[k][1]]
    assert not late, late[:5]
    reads_after = sum(1 for k, t, _ in seen if k in acked and t > acked[k][0])
    assert reads_after > len(acked)
    # The old values are gone from every server (replicated: every server
    # of the key's sets; a third old server was never in them).
    for mc in mcs if replicas == 1 else []:
        held = mc.get_raw(list(acked))
        assert not [k for k, (_, v) in held.items() if v.startswith(b"old-")]
    st = pool_stats(relay)
    print("warm-up race:", len(acked), "keys,", len(seen), "reads,", reads_after, "after the ack;",
          {k: st["alpha:" + k] for k in ("warm_lookups", "warm_hits", "warm_copies", "warm_races")})
    assert relay.running


def test_a_modula_pool_is_warmed_too_and_a_random_one_gets_no_window(factory):
    mcs = [factory.memcached() for _ in range(4)]
    relay = factory.relay({"alpha": Pool(mcs[:3], distribution="modula"),
                           "beta": Pool(mcs[:3], distribution="random")})
    keys = keys_of(NKEYS, b"mod")
    with relay.conn() as c:
        store_many(c, [(k, b"v-" + k) for k in keys])
        held = [mc.keys_held(keys) for mc in mcs[:3]]
        relay.reconfigure({"alpha": Pool(mcs, distribution="modula"),
                           "beta": Pool(mcs, distribution="random")})
        wait_generation(relay, 2)
        assert "warm-up window opened for pool alpha" in relay.stderr()
        assert "warm-up window opened for pool beta" not in relay.stderr()
        assert get_many(c, keys) == {k: (0, b"v-" + k) for k in keys}  # 0 misses
        # Modula moves most keys (3 -> 4 servers: three in four); read again,
        # every key hits its new owner: no more lookups.
        st = pool_stats(relay)
        assert get_many(c, keys) == {k: (0, b"v-" + k) for k in keys}
        assert pool_stats(relay)["alpha:warm_lookups"] == st["alpha:warm_lookups"]
        assert st["alpha:warm_copies"] == st["alpha:warm_lookups"] > NKEYS // 2, st
        assert st["beta:warmup_window_left_ms"] == 0 and st["beta:warm_lookups"] == 0, st
        assert sum(len(h) for h in held) == NKEYS
    assert relay.running


def get_each(conn, keys):
    """{key: value} of single-key gets, pipelined in batches."""
    out = {}
    for i in range(0, len(keys), 100):
        chunk = keys[i:i + 100]
        conn.send(b"".join(b"get " + k + b"\r\n" for k in chunk))
        for k in chunk:
            head = conn.recv_until_term(b"\r\n", timeout=10)
            if head == b"END\r\n":
                continue
            assert head.startswith(b"VALUE " + k + b" "), head
            n = int(head.split()[3])
            out[k] = conn.recv_exact(n + 2, timeout=10)[:-2]
            assert conn.recv_until_term(b"\r\n", timeout=10) == b"END\r\n"
    return out


@pytest.mark.parametrize("reads", ["get", "multi-get"])
@pytest.mark.parametrize("change", ["add", "remove"])
def test_a_replicated_pool_is_warmed_from_the_previous_replica_set(factory, change, reads):
    if reads == "multi-get":
        def get_each(c, keys):  # noqa: F811 - the same reads, 100 keys a request
            return {k: v for k, (_, v) in get_many(c, keys).items()}
    else:
        get_each = globals()["get_each"]
    mcs = [factory.memcached() for _ in range(4)]
    first, then = (mcs[:3], mcs) if change == "add" else (mcs, mcs[1:])
    relay = factory.relay({"alpha": Pool(first, replicas=2)})
    keys = keys_of(NKEYS, b"repl" + change.encode())
    with relay.conn() as c:
        store_many(c, [(k, b"v-" + k) for k in keys])
        relay.reconfigure({"alpha": Pool(then, replicas=2)})
        wait_generation(relay, 2)
        assert "warm-up window opened for pool alpha" in relay.stderr()
        assert get_each(c, keys) == {k: b"v-" + k for k in keys}  # 0 misses
        st = pool_stats(relay)
        on_new = [k for k in keys if ring(then).server_for(k) == 3] if change == "add" else []
        if change == "add":
            # Keys whose new primary is the new server miss there and are read
            # from the member of their previous set that is not in the new one.
            assert len(on_new) > 0.05 * NKEYS
            assert st["alpha:warm_lookups"] == len(on_new), st
        # (A removed server's keys have their next replica as new primary: they hit.)
        assert st["alpha:warm_hits"] == st["alpha:warm_lookups"], st
        assert st["alpha:warm_copies"] == st["alpha:warm_lookups"], st
        # The copies went through replication: read again, every key hits its
        # new primary (no more lookups), and each key is on two servers of the
        # new set at least.
        deadline = time.monotonic() + 5
        while pool_stats(relay)["alpha:repl_background_pending"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert get_each(c, keys) == {k: b"v-" + k for k in keys}
        assert pool_stats(relay)["alpha:warm_lookups"] == st["alpha:warm_lookups"]
        if change == "add":  # the new primary holds its keys now
            assert mcs[3].get_raw(on_new) == {k: (0, b"v-" + k) for k in on_new}
    assert relay.running


def test_a_replicated_write_to_a_moved_key_is_not_undone_by_the_previous_set(factory):
    mcs = [factory.memcached() for _ in range(4)]
    relay = factory.relay({"alpha": Pool(mcs[:3], replicas=2)})
    keys = keys_of(400, b"replw")
    with relay.conn() as c:
        store_many(c, [(k, b"old") for k in keys])
        relay.reconfigure({"alpha": Pool(mcs, replicas=2)})
        wait_generation(relay, 2)
        for i, k in enumerate(keys):
            if i % 2:
                assert c.request(b"delete " + k + b"\r\n") in (b"DELETED\r\n", b"NOT_FOUND\r\n")
            else:
                assert c.request(b"set %s 0 0 3\r\nnew\r\n" % k) == b"STORED\r\n"
        got = get_each(c, keys)
        assert got == {k: b"new" for i, k in enumerate(keys) if i % 2 == 0}
        # No server holds a deleted key or an old value any more.
        for mc in mcs:
            assert not {k: v for k, v in mc.get_raw(keys).items() if v[1] == b"old" or keys.index(k) % 2}
        st = pool_stats(relay)
        assert st["alpha:warm_stale_deletes"] > 0, st
        assert st["alpha:warm_copies"] == 0, st
    assert relay.running


def test_an_mg_in_a_replicated_pool_is_warmed_with_the_new_primarys_reply(factory):
    mcs = [factory.memcached() for _ in range(4)]
    relay = factory.relay({"alpha": Pool(mcs[:3], replicas=2)})
    keys = keys_of(NKEYS, b"replmg")
    with relay.conn() as c:
        store_many(c, [(k, b"v-" + k) for k in keys], flags=5)
        relay.reconfigure({"alpha": Pool(mcs, replicas=2)})
        wait_generation(relay, 2)
        flags = b"v f t k s c O7"
        got = mg_many(c, keys, flags)
        assert not [k for k, r in zip(keys, got) if not r.startswith(b"VA ")]  # 0 misses
        on_new = [(k, r) for k, r in zip(keys, got) if ring(mcs).server_for(k) == 3]
        assert len(on_new) > 0.05 * NKEYS
        with mcs[3].conn() as direct:  # exactly the new primary's reply, its CAS included
            assert mg_many(direct, [k for k, _ in on_new], flags) == [r for _, r in on_new]
        st = pool_stats(relay)
        assert st["alpha:warm_lookups"] == st["alpha:warm_copies"] == len(on_new), st
    assert relay.running


def mg_ttl(mc, keys):
    """{key: seconds left} on one memcached (`mg <key> t`, -1: never)."""
    with mc.conn() as direct:
        return {k: int(r.split()[1][1:]) for k, r in zip(keys, mg_many(direct, keys, b"t")) if r.startswith(b"HD")}


@pytest.mark.parametrize("cmd,batch", [(b"gets", 100), (b"gets", 1), (b"gat 1000", 100), (b"gats 1000", 1)])
def test_a_replicated_gets_or_gat_is_warmed_with_the_new_primarys_cas_and_touch(factory, cmd, batch):
    mcs = [factory.memcached() for _ in range(4)]
    relay = factory.relay({"alpha": Pool(mcs[:3], replicas=2)})
    keys = keys_of(NKEYS, b"replgets")
    with relay.conn() as c:
        store_many(c, [(k, b"v-" + k) for k in keys], flags=9)
        relay.reconfigure({"alpha": Pool(mcs, replicas=2)})
        wait_generation(relay, 2)
        got = get_many(c, keys, cmd, batch)
        assert {k: v[:2] for k, v in got.items()} == {k: (9, b"v-" + k) for k in keys}  # 0 misses
        on_new = [k for k in keys if ring(mcs).server_for(k) == 3]
        assert len(on_new) > 0.05 * NKEYS
        st = pool_stats(relay)
        assert st["alpha:warm_lookups"] == st["alpha:warm_hits"] == st["alpha:warm_copies"] == len(on_new), st
        if b"gat" in cmd:
            # The touch reached the new primary (and the copy carried it):
            # 1000 s left there, where the key had no TTL before.
            left = mg_ttl(mcs[3], on_new)
            assert set(left) == set(on_new)
            assert all(990 <= t <= 1000 for t in left.values()), left
        if cmd != b"gat 1000":
            # The CAS is the new primary's: exactly what it answers itself,
            # and a cas with it works through the proxy.
            with mcs[3].conn() as direct:
                assert get_many(direct, on_new, b"gets") == {k: got[k] for k in on_new}
            for k in on_new[:50]:
                assert c.request(b"cas %s 0 0 1 %d\r\nz\r\n" % (k, got[k][2])) == b"STORED\r\n"
            assert get_many(c, on_new[:50]) == {k: (0, b"z") for k in on_new[:50]}
        # Read again: every key hits its new primary, no more lookups.
        assert set(get_many(c, keys, b"gets")) == set(keys)
        assert pool_stats(relay)["alpha:warm_lookups"] == len(on_new)
    assert relay.running


def test_a_replicated_mg_with_t_is_warmed_and_touches_the_new_primary(factory):
    mcs = [factory.memcached() for _ in range(4)]
    relay = factory.relay({"alpha": Pool(mcs[:3], replicas=2)})
    keys = keys_of(NKEYS, b"replmgt")
    with relay.conn() as c:
        store_many(c, [(k, b"v-" + k) for k in keys], flags=5)
        relay.reconfigure({"alpha": Pool(mcs, replicas=2)})
        wait_generation(relay, 2)
        got = mg_many(c, keys, b"v f c T500")
        assert not [k for k, r in zip(keys, got) if not r.startswith(b"VA ")]  # 0 misses
        on_new = [k for k in keys if ring(mcs).server_for(k) == 3]
        assert len(on_new) > 0.05 * NKEYS
        with mcs[3].conn() as direct:  # the new primary's reply, its CAS included
            assert mg_many(direct, on_new, b"v f c") == [r for k, r in zip(keys, got) if k in set(on_new)]
        left = mg_ttl(mcs[3], on_new)
        assert set(left) == set(on_new) and all(490 <= t <= 500 for t in left.values()), left
        st = pool_stats(relay)
        assert st["alpha:warm_lookups"] == st["alpha:warm_copies"] == len(on_new), st
    assert relay.running


@pytest.mark.parametrize("cmd", [b"gets", b"gat 1000"])
def test_a_replicated_gets_or_gat_with_window_zero_misses_as_before(factory, cmd):
    mcs = [factory.memcached() for _ in range(4)]
    relay = factory.relay({"alpha": Pool(mcs[:3], replicas=2, warmup_window=0)})
    keys = keys_of(NKEYS, b"replcold")
    with relay.conn() as c:
        store_many(c, [(k, b"v-" + k) for k in keys])
        relay.reconfigure({"alpha": Pool(mcs, replicas=2, warmup_window=0)})
        wait_generation(relay, 2)
        on_new = [k for k in keys if ring(mcs).server_for(k) == 3]
        assert on_new
        assert set(get_many(c, keys, cmd)) == set(keys) - set(on_new)  # they miss on the new primary
        st = pool_stats(relay)
        assert st["alpha:warm_lookups"] == 0, st
    assert relay.running


def test_a_binary_gat_in_a_replicated_pool_is_warmed_and_touches_the_new_primary(factory):
    import struct

    from test_binary import GAT, GATK, packets, req

    mcs = [factory.memcached() for _ in range(4)]
    relay = factory.relay({"alpha": Pool(mcs[:3], replicas=2)})
    keys = keys_of(300, b"bgat")
    with relay.conn() as c:
        store_many(c, [(k, b"v-" + k) for k in keys], flags=3)
        relay.reconfigure({"alpha": Pool(mcs, replicas=2)})
        wait_generation(relay, 2)
        moved = [k for k in keys if ring(mcs).server_for(k) == 3]
        assert moved
    with relay.conn() as c:  # a connection speaks the protocol of its first byte
        for i, k in enumerate(moved):
            c.send(req(GAT if i % 2 else GATK, k, extras=struct.pack(">I", 700), opaque=i))
            head = c.recv_exact(24, timeout=5.0)
            (p,) = packets(head + c.recv_exact(int.from_bytes(head[8:12], "big"), timeout=5.0))
            assert p[4] == 0, (k, p)  # status: found
            assert p[7] == b"\0\0\0\3" + (b"" if i % 2 else k) + b"v-" + k
            assert p[6] != 0  # the new primary's CAS
    assert mcs[3].get_raw(moved) == {k: (3, b"v-" + k) for k in moved}
    left = mg_ttl(mcs[3], moved)
    assert set(left) == set(moved) and all(690 <= t <= 700 for t in left.values()), left
    assert pool_stats(relay)["alpha:warm_copies"] == len(moved)
    assert relay.running
