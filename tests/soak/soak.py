#!/usr/bin/python3
"""soak.py: memrelay under steady mixed load while its backends misbehave.

    /usr/bin/python3 tests/soak/soak.py [--seconds N] [--memrelay PATH] [--clients N] ...

Starts 4 memcached and one memrelay (build/memrelay, or --memrelay
build-asan/memrelay) on loopback, then runs --clients connections (200) for
--seconds (SOAK_SECONDS, default 120). Each client owns 8 keys and sends
pipelined batches of 1-6 requests, waiting for each batch's replies: set and
ms (values 40 B - 200 KiB, mostly small), get, multi-get over its keys (they
span the servers), mg and delete. Meanwhile a chaos loop SIGKILLs and
restarts, or SIGSTOPs and SIGCONTs, one backend at a time (at most two
disturbed at once), every 1-3 s.

Every value is unique and says whose it is ("client:key:seq:length|" repeated),
so each reply is checked exactly:
  - it is well-formed for its request (VALUE/END, VA/EN, STORED, HD, DELETED,
    NOT_FOUND, or a SERVER_ERROR);
  - a read returns a miss, a SERVER_ERROR, the client's last acknowledged
    value for that key, or a value whose write was answered with an error
    (its outcome is unknown); never another key's or client's data, never
    a stale value;
  - every batch is answered within 20 s and the connection stays open.
memrelay must stay up throughout; its RSS (from /proc) must stay below
--rss-limit-mb, and 10 s after the load stops it must be back within
--rss-return-mb of its idle baseline. At the end every backend is healed and
a fresh connection must store and read keys on every server again; memrelay
must exit cleanly on SIGTERM with no sanitizer report in its stderr.

Prints figures, then 'soak: N passed, M failed' (N counts verified replies and
passed end checks). Exit status 0 only when nothing failed.
"""

import argparse
import collections
import os
import random
import selectors
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

KEYS_PER_CLIENT = 8
BATCH_DEADLINE = 20.0
MAX_FAILURE_LINES = 30
ERROR_PREFIX = b"SERVER_ERROR"


def value_bytes(cid, kidx, seq, length):
    head = b"%d:%d:%d:%d|" % (cid, kidx, seq, length)
    return (head * (length // len(head) + 1))[:length]


def decode_value(data):
    """(cid, kidx, seq) when data is a well-formed soak value, else None."""
    bar = data.find(b"|", 0, 64)
    if bar < 0:
        return None
    try:
        cid, kidx, seq, length = (int(x) for x in data[:bar].split(b":"))
    except ValueError:
        return None
    if length != len(data) or value_bytes(cid, kidx, seq, length) != data:
        return None
    return cid, kidx, seq


class Stats:
    def __init__(self):
        self.ops = collections.Counter()      # requests answered, by command
        self.outcomes = collections.Counter()  # hit, miss, stored, error, ...
        self.failures = []
        self.nfail = 0
        self.passed = 0
        self.bytes_in = 0
        self.bytes_out = 0

    def fail(self, what):
        self.nfail += 1
        if len(self.failures) < MAX_FAILURE_LINES:
            self.failures.append(what)


class Client:
    """One connection, its keys, and what each key may hold."""

    def __init__(self, cid, port, rng, stats, sel, key_owner=None):
        self.cid = cid
        self.port = port
        self.rng = rng
        self.stats = stats
        self.sel = sel
        owner = cid if key_owner is None else key_owner
        self.keys = [b"soak:%d:%d" % (owner, i) for i in range(KEYS_PER_CLIENT)]
        self.acked = [None] * KEYS_PER_CLIENT    # seq of the last acknowledged value, None: miss
        self.unknown = [set() for _ in range(KEYS_PER_CLIENT)]  # seqs whose write failed
        self.seq = 0
        self.sock = None
        self.expect = collections.deque()
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.batch_at = None
        self.connect()

    def connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sel.register(self.sock, selectors.EVENT_READ, self)
        self.expect.clear()
        self.inbuf.clear()
        self.outbuf.clear()
        self.batch_at = None

    def reconnect(self, why):
        self.stats.fail("client %d: %s" % (self.cid, why))
        self.close()
        try:
            self.connect()
        except OSError as e:
            self.stats.fail("client %d: reconnect failed: %s" % (self.cid, e))
            self.sock = None

    def close(self):
        if self.sock is not None:
            try:
                self.sel.unregister(self.sock)
            except (KeyError, ValueError):
                pass
            self.sock.close()
            self.sock = None

    # ---- requests ----

    def value_len(self):
        r = self.rng.random()
        if r < 0.90:
            return self.rng.randint(40, 400)
        if r < 0.98:
            return self.rng.randint(1024, 16384)
        return self.rng.randint(100 * 1024, 200 * 1024)

    def send_batch(self):
        n = self.rng.randint(1, 6)
        for _ in range(n):
            r = self.rng.random()
            k = self.rng.randrange(KEYS_PER_CLIENT)
            key = self.keys[k]
            if r < 0.30 or r >= 0.95:
                self.seq += 1
                length = self.value_len()
                data = value_bytes(self.cid, k, self.seq, length)
                if r < 0.30:
                    self.outbuf += b"set %s %d 0 %d\r\n" % (key, self.cid, length) + data + b"\r\n"
                    self.expect.append(("set", k, self.seq))
                else:
                    self.outbuf += b"ms %s %d F%d T0\r\n" % (key, length, self.cid) + data + b"\r\n"
                    self.expect.append(("ms", k, self.seq))
            elif r < 0.55:
                self.outbuf += b"get %s\r\n" % key
                self.expect.append(("get", [k]))
            elif r < 0.75:
                ks = self.rng.sample(range(KEYS_PER_CLIENT), self.rng.randint(2, KEYS_PER_CLIENT))
                self.outbuf += b"get " + b" ".join(self.keys[i] for i in ks) + b"\r\n"
                self.expect.append(("get", ks))
            elif r < 0.87:
                self.outbuf += b"mg %s v f\r\n" % key
                self.expect.append(("mg", k))
            else:
                self.outbuf += b"delete %s\r\n" % key
                self.expect.append(("delete", k))
        self.batch_at = time.monotonic()
        self.flush()

    def flush(self):
        if self.outbuf:
            try:
                n = self.sock.send(self.outbuf)
            except BlockingIOError:
                n = 0
            self.stats.bytes_out += n
            del self.outbuf[:n]
        self.sel.modify(self.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if self.outbuf else 0), self)

    # ---- replies ----

    def on_read(self):
        try:
            data = self.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError as e:
            self.reconnect("read error: %s" % e)
            return
        if not data:
            self.reconnect("memrelay closed the connection with %d replies due" % len(self.expect))
            return
        self.stats.bytes_in += len(data)
        self.inbuf += data
        pos = 0
        while self.expect:
            used = self.parse_one(pos)
            if used is None:
                break
            if used < 0:  # out of sync: nothing more on this connection can be trusted
                self.reconnect("malformed reply stream")
                return
            pos = used
            self.expect.popleft()
        del self.inbuf[:pos]
        if not self.expect and self.inbuf:
            self.stats.fail("client %d: %d unexpected bytes: %r" % (self.cid, len(self.inbuf), bytes(self.inbuf[:80])))
            self.reconnect("unexpected bytes")

    def line(self, pos):
        end = self.inbuf.find(b"\r\n", pos)
        if end < 0:
            return None, None
        return bytes(self.inbuf[pos:end]), end + 2

    def bad(self, what, line):
        self.stats.fail("client %d: %s: %r" % (self.cid, what, line[:120]))
        return -1

    def check_value(self, k, data, how):
        """A hit: it must be this key's last acknowledged value or an unknown-outcome one."""
        got = decode_value(data)
        if got is None:
            self.stats.fail("client %d key %d (%s): corrupt value %r..." % (self.cid, k, how, data[:60]))
            return
        cid, kidx, seq = got
        if cid != self.cid or kidx != k:
            self.stats.fail("client %d key %d (%s): foreign data from client %d key %d" % (self.cid, k, how, cid, kidx))
            return
        if seq != self.acked[k] and seq not in self.unknown[k]:
            self.stats.fail("client %d key %d (%s): stale value seq %d (acknowledged %s)" % (self.cid, k, how, seq, self.acked[k]))
            return
        self.stats.passed += 1
        self.stats.outcomes["hit"] += 1

    def parse_one(self, pos):
        """Consume the reply to the oldest request: new position, None (need more) or -1 (bad)."""
        exp = self.expect[0]
        op = exp[0]
        if op == "get":
            # Parse the whole reply first: nothing is counted until it is complete.
            ks = exp[1]
            hits = []
            p = pos
            while True:
                ln, nxt = self.line(p)
                if ln is None:
                    return None
                if ln == b"END":
                    break
                if ln.startswith(ERROR_PREFIX) and p == pos:
                    self.stats.passed += 1
                    self.stats.outcomes["error" if len(ks) == 1 else "multiget_error"] += 1
                    self.stats.ops["multiget" if len(ks) > 1 else "get"] += 1
                    return nxt
                parts = ln.split(b" ")
                if len(parts) != 4 or parts[0] != b"VALUE":
                    return self.bad("bad get reply line", ln)
                try:
                    kidx = self.keys.index(parts[1])
                    flags, length = int(parts[2]), int(parts[3])
                except ValueError:
                    return self.bad("VALUE for a key not asked", ln)
                seen = [h[0] for h in hits]
                if kidx not in ks or kidx in seen or (seen and ks.index(kidx) < ks.index(seen[-1])):
                    return self.bad("VALUE key not asked, repeated or out of order", ln)
                if len(self.inbuf) < nxt + length + 2:
                    return None
                if self.inbuf[nxt + length:nxt + length + 2] != b"\r\n":
                    return self.bad("value not followed by CRLF", ln)
                if flags != self.cid:
                    return self.bad("flags %d, expected %d" % (flags, self.cid), ln)
                hits.append((kidx, bytes(self.inbuf[nxt:nxt + length])))
                p = nxt + length + 2
            for kidx, data in hits:
                self.check_value(kidx, data, "get")
            self.stats.passed += len(ks) - len(hits)
            self.stats.outcomes["miss"] += len(ks) - len(hits)
            self.stats.ops["multiget" if len(ks) > 1 else "get"] += 1
            return nxt
        ln, nxt = self.line(pos)
        if ln is None:
            return None
        if op == "mg":
            k = exp[1]
            if not ln.startswith(b"VA "):
                self.stats.ops[op] += 1
            if ln == b"EN":
                self.stats.passed += 1
                self.stats.outcomes["miss"] += 1
                return nxt
            if ln.startswith(ERROR_PREFIX):
                self.stats.passed += 1
                self.stats.outcomes["error"] += 1
                return nxt
            parts = ln.split(b" ")
            if len(parts) != 3 or parts[0] != b"VA" or parts[2] != b"f%d" % self.cid:
                return self.bad("bad mg reply", ln)
            try:
                length = int(parts[1])
            except ValueError:
                return self.bad("bad mg reply", ln)
            if len(self.inbuf) < nxt + length + 2:
                return None
            self.stats.ops[op] += 1
            if self.inbuf[nxt + length:nxt + length + 2] != b"\r\n":
                return self.bad("mg value not followed by CRLF", ln)
            self.check_value(k, bytes(self.inbuf[nxt:nxt + length]), "mg")
            return nxt + length + 2
        self.stats.ops[op] += 1
        if op in ("set", "ms"):
            k, seq = exp[1], exp[2]
            if ln == (b"STORED" if op == "set" else b"HD"):
                self.acked[k] = seq
                self.stats.outcomes["stored"] += 1
            elif ln.startswith(ERROR_PREFIX):
                self.unknown[k].add(seq)
                self.stats.outcomes["error"] += 1
            else:
                return self.bad("bad %s reply" % op, ln)
            self.stats.passed += 1
            return nxt
        if op == "delete":
            k = exp[1]
            if ln in (b"DELETED", b"NOT_FOUND"):
                self.acked[k] = None
                self.stats.outcomes["deleted"] += 1
            elif ln.startswith(ERROR_PREFIX):
                self.stats.outcomes["error"] += 1
            else:
                return self.bad("bad delete reply", ln)
            self.stats.passed += 1
            return nxt
        raise AssertionError(op)


class Chaos:
    """Kill/restart and stop/continue backends, one action every 1-3 s."""

    def __init__(self, backends, rng):
        self.backends = backends
        self.rng = rng
        self.next_at = time.monotonic() + 2.0
        self.undo = []  # (when, action, backend)
        self.counts = collections.Counter()

    def step(self, now):
        for item in list(self.undo):
            when, action, b = item
            if now >= when:
                self.undo.remove(item)
                if action == "restart":
                    b.start()
                    self.counts["restart"] += 1
                else:
                    b.resume()
                    self.counts["sigcont"] += 1
        if now < self.next_at:
            return
        self.next_at = now + self.rng.uniform(1.0, 3.0)
        busy = {id(b) for _, _, b in self.undo}
        calm = [b for b in self.backends if id(b) not in busy]
        if len(busy) >= 2 or not calm:
            return
        b = self.rng.choice(calm)
        if self.rng.random() < 0.5:
            b.kill()
            self.counts["sigkill"] += 1
            self.undo.append((now + self.rng.uniform(0.3, 2.5), "restart", b))
        else:
            b.pause()
            self.counts["sigstop"] += 1
            self.undo.append((now + self.rng.uniform(0.2, 3.0), "cont", b))

    def heal(self):
        for _, action, b in self.undo:
            if action == "restart":
                b.start()
            else:
                b.resume()
        self.undo.clear()


def probe(port, nkeys=64, timeout=30.0):
    """With every backend healthy: can a new connection store and read keys on every server?"""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.settimeout(5)
                req = b"".join(b"set probe:%d 0 0 5\r\nvalue\r\nget probe:%d\r\n" % (i, i) for i in range(nkeys))
                s.sendall(req)
                want = b"STORED\r\nVALUE probe:%d 0 5\r\nvalue\r\nEND\r\n"
                expected = b"".join(want % i for i in range(nkeys))
                got = b""
                while len(got) < len(expected):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += chunk
                    if b"SERVER_ERROR" in got:
                        break
                if got == expected:
                    return True, ""
                last = got[:200].decode("latin-1")
        except OSError as e:
            last = str(e)
        time.sleep(0.5)  # a DOWN server answers at once with an error until its probes succeed
    return False, last


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "120")))
    ap.add_argument("--memrelay", default=os.environ.get("MEMRELAY_BIN", os.path.join(common.ROOT, "build", "memrelay")))
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--backends", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2, help="memrelay worker threads")
    ap.add_argument("--rss-limit-mb", type=float, default=None,
                    help="bound on memrelay's RSS during the run (default 256, 1024 for a sanitizer build)")
    ap.add_argument("--rss-return-mb", type=float, default=None,
                    help="how far above its idle baseline RSS may stay 10 s after the load (default 48; "
                         "not judged for a sanitizer build)")
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--no-chaos", action="store_true")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--collide-keys", action="store_true",
                    help="check the checker: clients share keys in pairs, so the run must report foreign data")
    args = ap.parse_args()

    sanitized = "asan" in args.memrelay or "sanit" in args.memrelay
    rss_limit = args.rss_limit_mb or (1024.0 if sanitized else 256.0)
    rss_return = args.rss_return_mb or 48.0
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    print("soak: memrelay %s, %d clients, %d backends, %.0f s, seed %d, RSS bound %.0f MiB"
          % (args.memrelay, args.clients, args.backends, args.seconds, seed, rss_limit), flush=True)

    stats = Stats()
    end_checks = []  # (name, ok, detail)
    workdir = tempfile.mkdtemp(prefix="memrelay-soak-")
    backends = [common.Memcached(workdir, memory_mb=256) for _ in range(args.backends)]
    relay = None
    clients = []
    sel = selectors.DefaultSelector()
    try:
        for b in backends:
            b.start()
        port = common.free_port()
        relay = common.Memrelay(args.memrelay, workdir,
                                common.pool_config(port, [b.port for b in backends], threads=args.threads,
                                                   timeout_ms=1000, extra={"server_connections": 2, "server_retry_timeout": 500,
                                                          "probe_backoff_max": 2000}),
                                port).start()
        time.sleep(0.5)
        rss_base = common.rss_kib(relay.proc.pid)
        clients = [Client(i, port, random.Random(seed * 1000 + i), stats, sel, i // 2 if args.collide_keys else None)
                   for i in range(args.clients)]
        chaos = Chaos(backends, rng)
        rss_peak = rss_base
        t0 = time.monotonic()
        end = t0 + args.seconds
        next_rss = t0
        next_report = t0 + 30
        for c in clients:
            c.send_batch()
        crashed = False
        draining = False
        drain_end = end + BATCH_DEADLINE
        while True:
            now = time.monotonic()
            if now >= end and not draining:
                draining = True
            if draining and (now >= drain_end or all(not c.expect for c in clients if c.sock)):
                break
            if not args.no_chaos and not draining:
                chaos.step(now)
            if now >= next_rss:
                next_rss = now + 0.25
                r = common.rss_kib(relay.proc.pid)
                if r is not None:
                    rss_peak = max(rss_peak, r)
                if not relay.running:
                    crashed = True
                    break
            if now >= next_report:
                next_report = now + 30
                print("soak: %4.0f s: %d replies checked, %d failures, memrelay RSS %.1f MiB (peak %.1f)"
                      % (now - t0, stats.passed, stats.nfail, (r or 0) / 1024, rss_peak / 1024), flush=True)
            for key, events in sel.select(timeout=0.05):
                c = key.data
                if c.sock is None:
                    continue
                if events & selectors.EVENT_WRITE:
                    c.flush()
                if events & selectors.EVENT_READ:
                    c.on_read()
                if c.sock is not None and not c.expect and not draining:
                    c.send_batch()
            for c in clients:
                if c.sock is None and not draining:
                    try:
                        c.connect()
                        c.send_batch()
                    except OSError:
                        pass
                elif c.sock is not None and c.expect and now - c.batch_at > BATCH_DEADLINE:
                    c.reconnect("no reply within %.0f s (%d due, first %s)" % (BATCH_DEADLINE, len(c.expect), c.expect[0][0]))
        elapsed = time.monotonic() - t0
        for c in clients:
            if c.sock is not None and c.expect:
                stats.fail("client %d: %d replies still due after the drain" % (c.cid, len(c.expect)))
            c.close()
        chaos.heal()

        end_checks.append(("memrelay stayed up", not crashed and relay.running,
                           "exit status %s" % (relay.proc.poll(),)))
        if relay.running:
            ok, detail = probe(port)
            end_checks.append(("new connection stores and reads on every server after the chaos", ok, detail))
            time.sleep(args.idle_seconds)
            rss_idle = common.rss_kib(relay.proc.pid) or 0
        else:
            rss_idle = 0
        end_checks.append(("RSS peak %.1f MiB <= %.0f MiB" % (rss_peak / 1024, rss_limit), rss_peak / 1024 <= rss_limit, ""))
        if sanitized:
            # ASan keeps freed memory in its quarantine (256 MiB) and does not
            # return it to the system: the figure is printed, not judged.
            print("soak: (sanitizer build: RSS after idle not judged; ASan's quarantine keeps freed memory)")
        else:
            end_checks.append(("RSS %.1f MiB after %.0f s idle <= baseline %.1f + %.0f MiB"
                               % (rss_idle / 1024, args.idle_seconds, rss_base / 1024, rss_return),
                               0 < rss_idle and (rss_idle - rss_base) / 1024 <= rss_return, ""))
        rc = relay.stop()
        end_checks.append(("memrelay exits 0 on SIGTERM", rc == 0, "exit status %s" % rc))
        report = relay.sanitizer_report()
        end_checks.append(("no sanitizer report in memrelay's stderr", report is None, report or ""))

        total_ops = sum(stats.ops.values())
        print("soak: %d requests in %.0f s (%.0f/s): %s" % (total_ops, elapsed, total_ops / max(elapsed, 1e-9),
              ", ".join("%s %d" % kv for kv in sorted(stats.ops.items()))))
        print("soak: outcomes: %s" % ", ".join("%s %d" % kv for kv in sorted(stats.outcomes.items())))
        print("soak: %.1f MiB sent, %.1f MiB received" % (stats.bytes_out / 2**20, stats.bytes_in / 2**20))
        print("soak: chaos: %s" % (", ".join("%s %d" % kv for kv in sorted(chaos.counts.items())) or "none"))
        print("soak: memrelay RSS: baseline %.1f MiB, peak %.1f MiB, %.1f MiB after %.0f s idle"
              % (rss_base / 1024, rss_peak / 1024, rss_idle / 1024, args.idle_seconds))
        request_failures = stats.nfail
        for name, ok, detail in end_checks:
            print("soak: %s: %s%s" % ("ok" if ok else "FAILED", name, ("\n    " + detail.replace("\n", "\n    ")) if detail and not ok else ""))
            if ok:
                stats.passed += 1
            else:
                stats.nfail += 1
        for f in stats.failures:
            print("soak: failure: %s" % f)
        if request_failures > len(stats.failures):
            print("soak: ... and %d more failures" % (request_failures - len(stats.failures)))
    finally:
        for c in clients:
            c.close()
        if relay is not None:
            relay.stop()
        for b in backends:
            b.close()
    if stats.nfail:
        print("soak: logs kept in %s" % workdir)
    else:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    print("soak: %d passed, %d failed" % (stats.passed, stats.nfail))
    return 1 if stats.nfail else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
