"""convergence.py: the replication convergence checker (docs/replication.md).

N clients race every replicated write command over M shared keys through
memrelay while a fault thread SIGSTOPs/SIGCONTs, or kills and restarts, one
memcached at a time. When the writes stop and every server is back, every
key is read from every memcached directly: any two that hold the key must
hold the same value and flags (a *difference*); a memcached without the key
while another has it is a *miss*, which the contract allows (a replica that
was held down gets the keys it missed deleted, an overflowed or restarted one
comes back empty; an append/prepend/replace fan-out finds no key on a replica
that missed it). Nothing here asserts on timing.

Used by tests/integration/test_replication_convergence.py (bounded, a few
seconds per thread count) and tests/soak/replication_convergence.py (long).
Plain standard library plus harness.py.
"""

import random
import threading
import time

import harness

# The pool: short timeouts so a SIGSTOP is noticed (stalled after 2 x
# timeout) and a returning server is probed back quickly.
POOL_SETTINGS = dict(replicas=2, write_ack="one", timeout=300, server_retry_timeout=150,
                     probe_backoff_max=400, hash="md5", distribution="ketama")


def keys(m):
    return [b"cv:%d" % i for i in range(m)]


def _num():
    return b"%d" % random.randrange(1000)


def _one_op(rnd, c, k, cid):
    """Send one random write (or read) of key k on connection c; returns the reply."""
    v = b"%d" % rnd.randrange(1000)
    op = rnd.randrange(20)
    if op == 0:
        return c.request(b"set %s %d 0 %d\r\n%s\r\n" % (k, cid, len(v), v), timeout=5)
    if op == 1:
        return c.request(b"add %s %d 0 %d\r\n%s\r\n" % (k, cid, len(v), v), timeout=5)
    if op == 2:
        return c.request(b"replace %s %d 0 %d\r\n%s\r\n" % (k, cid, len(v), v), timeout=5)
    if op == 3:
        return c.request(b"append %s 0 0 1\r\n1\r\n" % k, timeout=5)
    if op == 4:
        return c.request(b"prepend %s 0 0 1\r\n2\r\n" % k, timeout=5)
    if op == 5:
        got = c.request(b"gets %s\r\n" % k, timeout=5)
        if not got.startswith(b"VALUE "):
            return got
        cas = int(got.split(b"\r\n", 1)[0].split(b" ")[4])
        return c.request(b"cas %s %d 0 %d %d\r\n%s\r\n" % (k, cid, len(v), cas, v), timeout=5)
    if op in (6, 7):
        return c.request(b"incr %s %d\r\n" % (k, rnd.randrange(1, 9)), timeout=5)
    if op == 8:
        return c.request(b"decr %s 1\r\n" % k, timeout=5)
    if op == 9:
        return c.request(b"delete %s\r\n" % k, timeout=5)
    if op == 10:
        return c.request(b"touch %s 0\r\n" % k, timeout=5)
    if op == 11:
        return c.request(b"ms %s %d F%d T0\r\n%s\r\n" % (k, len(v), cid, v), timeout=5)
    if op == 12:
        return c.request(b"ms %s 1 MA\r\n3\r\n" % k, timeout=5)      # append mode: read back
    if op == 13:
        return c.request(b"ms %s %d MP\r\n%s\r\n" % (k, len(v), v), timeout=5)  # prepend mode
    if op == 14:
        return c.request(b"ms %s %d ME F%d\r\n%s\r\n" % (k, len(v), cid, v), timeout=5)  # add mode
    if op == 15:
        return c.request(b"ma %s D%d\r\n" % (k, rnd.randrange(1, 9)), timeout=5)
    if op == 16:
        return c.request(b"ma %s MD v\r\n" % k, timeout=5)
    if op == 17:
        return c.request(b"md %s\r\n" % k, timeout=5)
    if op == 18:
        c.send(b"set %s %d 0 %d noreply\r\n%s\r\n" % (k, cid, len(v), v))
        return c.request(b"mn\r\n", timeout=5)
    return c.request(b"get %s\r\n" % k, timeout=5)


class Load:
    """`clients` threads writing `keys` through relay until stop()."""

    def __init__(self, relay, key_list, clients, seed=1):
        self.relay, self.keys, self.stop_at = relay, key_list, None
        self.running = True
        self.ops = 0
        self.errors = 0      # SERVER_ERROR replies (allowed: faults)
        self.reconnects = 0  # client-side timeouts or closes (allowed: faults)
        self.threads = [threading.Thread(target=self._client, args=(seed * 1000 + i, i), daemon=True)
                        for i in range(clients)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _client(self, seed, cid):
        rnd = random.Random(seed)
        c = None
        while self.running:
            try:
                if c is None:
                    c = self.relay.conn(timeout=5)
                reply = _one_op(rnd, c, rnd.choice(self.keys), cid)
                if not reply or c.closed:
                    raise OSError("no reply")
                if reply.startswith(b"SERVER_ERROR"):
                    self.errors += 1
                self.ops += 1
            except (OSError, harness.HarnessError, TimeoutError, ValueError, IndexError):
                self.reconnects += 1
                if c is not None:
                    c.close()
                c = None
                time.sleep(0.05)
        if c is not None:
            c.close()

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join(timeout=30)
        return not any(t.is_alive() for t in self.threads)


class Faults:
    """One memcached at a time: SIGSTOP for 0.1-1.2 s then SIGCONT, or kill,
    wait 0.1-0.6 s and restart; 0.1-0.6 s apart, until stop()."""

    def __init__(self, backends, seed=1):
        self.backends = backends
        self.rnd = random.Random(seed)
        self.running = True
        self.stops = self.kills = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        while self.running:
            time.sleep(self.rnd.uniform(0.1, 0.6))
            if not self.running:
                break
            mc = self.rnd.choice(self.backends)
            if self.rnd.random() < 0.6:
                self.stops += 1
                mc.pause()
                time.sleep(self.rnd.uniform(0.1, 1.2))
                mc.resume()
            else:
                self.kills += 1
                mc.kill()
                time.sleep(self.rnd.uniform(0.1, 0.6))
                mc.restart()

    def stop(self):
        self.running = False
        self.thread.join(timeout=30)
        for mc in self.backends:  # whatever state the last fault left
            if mc.running:
                mc.resume()
            else:
                mc.restart()


def _stats(conn, arg):
    conn.send(b"stats %s\r\n" % arg)
    reply = conn.recv_until_term(b"END\r\n", timeout=5)
    out = {}
    for line in reply.split(b"\r\n"):
        parts = line.split(b" ")
        if len(parts) == 3 and parts[0] == b"STAT":
            out[parts[1].decode()] = parts[2].decode()
    return out


def quiet(relay, timeout=30.0):
    """Wait until every server is up and nothing is queued for replay or in
    flight in the background; True when it got there."""
    def done():
        try:
            with relay.conn(timeout=5) as c:
                servers = _stats(c, b"servers")
                pools = _stats(c, b"pools")
        except (OSError, harness.HarnessError, TimeoutError):
            return False
        states = [v for k, v in servers.items() if k.endswith(":state")]
        if not states or any(s != "up" for s in states):
            return False
        for k, v in pools.items():
            if k.endswith(":repl_queue_depth") or k.endswith(":repl_background_pending"):
                if v != "0":
                    return False
        return True
    ok = harness.wait_for(done, timeout, 0.1)
    # Copies still on a connection when the counters read 0 cannot be seen;
    # one more quiet check a little later covers them.
    time.sleep(0.5)
    return ok and done()


def read_item(mc, key):
    """(value, flags) on memcached mc, or None."""
    with mc.conn(timeout=5) as d:
        d.send(b"mg %s v f\r\n" % key)
        reply = d.recv_replies(1, timeout=5)
    if reply.startswith(b"EN"):
        return None
    head, _, rest = reply.partition(b"\r\n")
    toks = head.split(b" ")
    assert toks[0] == b"VA", reply
    flags = next((int(t[1:]) for t in toks[2:] if t.startswith(b"f")), 0)
    # memcached pads a decr that shrinks a number in place with spaces
    return rest[:int(toks[1])].rstrip(b" "), flags


def compare(backends, key_list, replicas=POOL_SETTINGS["replicas"]):
    """(differences, misses, held): differences lists (key, readings) where two
    memcacheds hold different items, or more than `replicas` hold the key;
    misses counts keys fewer than `replicas` hold (but some do); held counts
    keys at least one holds."""
    differences, misses, held = [], 0, 0
    for k in key_list:
        readings = [read_item(mc, k) for mc in backends]
        present = [r for r in readings if r is not None]
        if not present:
            continue
        held += 1
        if any(r != present[0] for r in present[1:]) or len(present) > replicas:
            differences.append((k, readings))
        elif len(present) < replicas:
            misses += 1
    return differences, misses, held


def run(relay, backends, seconds, clients=8, nkeys=20, seed=1, log=None):
    """Load + faults for `seconds`, heal, wait for quiet, compare. Returns a
    dict of figures; 'differences' must be empty."""
    key_list = keys(nkeys)
    load = Load(relay, key_list, clients, seed).start()
    faults = Faults(backends, seed).start()
    time.sleep(seconds)
    faults.stop()
    finished = load.stop()
    settled = quiet(relay)
    differences, misses, held = compare(backends, key_list)
    out = dict(ops=load.ops, server_errors=load.errors, reconnects=load.reconnects, stops=faults.stops,
               kills=faults.kills, clients_finished=finished, settled=settled, keys=nkeys, held=held,
               misses=misses, differences=differences)
    if log:
        log("convergence: %(ops)d ops, %(stops)d stops, %(kills)d kills, %(server_errors)d SERVER_ERRORs, "
            "%(reconnects)d reconnects; %(held)d/%(keys)d keys held, %(misses)d with a miss on some replica, "
            "%(ndiff)d differences" % dict(out, ndiff=len(differences)))
    return out
