#!/usr/bin/python3
"""bad_backends.py: memrelay in front of a backend that breaks the protocol.

    /usr/bin/python3 tests/soak/bad_backends.py [--memrelay PATH] [-v]

One pool, two servers: a scripted fake memcached (a thread in this process,
on loopback) and one real memcached. The fake answers like an empty memcached
until a scenario tells it to misbehave:
  garbage       binary junk, no CRLF
  garbage_line  a well-formed line that is no reply to a get ("HELLO THERE")
  wrong_key     a VALUE for a key that was not asked, then END
  misfit        a well-formed reply of the wrong kind (DELETED to a get, NOT_FOUND to a set, STORED to an mg)
  half_hang     half a VALUE, then silence with the connection open
  endless       "VALUE k 0 200000000" and then value bytes, forever
  endless_line  bytes with no newline, forever
  huge          "VALUE k 0 4294967295" and then bytes, forever
For each scenario one client connection (the same one throughout) checks:
  - a get, a set and a single-key mg routed to the fake get a SERVER_ERROR
    (the set may not get the junk passed through), within a few seconds;
  - a multi-get over a fake key and a real key returns the real key's value,
    and never a VALUE for a key that was not asked;
  - requests to the real memcached keep working on the same connection;
  - memrelay stays up, and its RSS stays bounded (--rss-limit-mb);
  - once the fake behaves again, its keys work again (memrelay reconnects,
    and probes it back into service if it had marked it down).
Each request to the bad server is the first of its episode (the fake behaves
and is back in service before it), so it really reaches the fake; with
server_failure_limit 1000 bad replies alone do not take the server down.
At the end memrelay must exit 0 on SIGTERM with no sanitizer report.
Prints 'bad_backends: N passed, M failed'; exit status 0 only if none failed.
"""

import argparse
import hashlib
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

TIMEOUT_MS = 500
# Checks that fail because of known, reported memrelay bugs: they are printed
# as "known bug" and do not fail the run unless --strict is given. Remove an
# entry once its bug is fixed (the run says so when one starts passing).
KNOWN_BUGS = set()  # garbage_line fixed in ee73ecf, wrong_key in db4eab1
SCENARIOS = ["garbage", "garbage_line", "wrong_key", "misfit", "half_hang", "endless", "endless_line", "huge"]


class FakeBackend:
    """A loopback server that speaks enough memcached to be routed to, or not, by mode."""

    def __init__(self):
        self.mode = "ok"
        self.keys_seen = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self.accept_loop, daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        self.lsock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass

    def accept_loop(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(0.2)
            with self.lock:
                self.conns.append(conn)
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        buf = b""
        mode_at_hang = None
        try:
            while not self.stop.is_set():
                if mode_at_hang is not None:
                    # Silent until the scenario ends; then drop the connection.
                    if self.mode != mode_at_hang:
                        return
                    try:
                        if not conn.recv(65536):
                            return
                    except socket.timeout:
                        pass
                    continue
                nl = buf.find(b"\n")
                if nl < 0:
                    try:
                        data = conn.recv(65536)
                    except socket.timeout:
                        continue
                    if not data:
                        return
                    buf += data
                    continue
                line, buf = buf[:nl].rstrip(b"\r"), buf[nl + 1:]
                parts = line.split()
                if not parts:
                    continue
                cmd = parts[0]
                if cmd in (b"set", b"add", b"replace", b"append", b"prepend", b"cas") and len(parts) >= 5:
                    need = int(parts[4]) + 2
                    while len(buf) < need and not self.stop.is_set():
                        try:
                            data = conn.recv(65536)
                        except socket.timeout:
                            continue
                        if not data:
                            return
                        buf += data
                    buf = buf[need:]
                if cmd in (b"get", b"gets", b"mg", b"set", b"delete") and len(parts) > 1:
                    with self.lock:
                        self.keys_seen.update(parts[1:] if cmd in (b"get", b"gets") else parts[1:2])
                mode = self.mode
                if mode == "ok":
                    conn.sendall(self.ok_reply(cmd))
                    continue
                key = parts[1] if len(parts) > 1 else b"x"
                if mode == "garbage":
                    conn.sendall(b"\x16\x03\x01\x00\xa5garbage\x00\xff\n")
                elif mode == "garbage_line":
                    conn.sendall(b"HELLO THERE\r\n")
                elif mode == "wrong_key":
                    conn.sendall(b"VALUE not-%s 0 5\r\nHIJCK\r\nEND\r\n" % key if cmd in (b"get", b"gets")
                                 else b"VALUE not-%s 0 5\r\nHIJCK\r\n" % key)
                elif mode == "misfit":
                    conn.sendall({b"get": b"DELETED\r\n", b"gets": b"DELETED\r\n", b"set": b"NOT_FOUND\r\n",
                                  b"mg": b"STORED\r\n"}.get(cmd, b"DELETED\r\n"))
                elif mode == "half_hang":
                    conn.sendall(b"VALUE %s 0 10\r\nabc" % key)
                    mode_at_hang = mode
                elif mode in ("endless", "endless_line", "huge"):
                    head = {"endless": b"VALUE %s 0 200000000\r\n" % key, "endless_line": b"",
                            "huge": b"VALUE %s 0 4294967295\r\n" % key}[mode]
                    self.stream(conn, head, mode)
                    return
        except OSError:
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def stream(self, conn, head, mode):
        """Send head, then bytes without end, until the peer closes or the scenario ends."""
        chunk = b"x" * 65536
        conn.settimeout(0.2)
        pending = head + chunk
        while not self.stop.is_set() and self.mode == mode:
            try:
                n = conn.send(pending)
                pending = pending[n:] or chunk
            except socket.timeout:
                continue
            except OSError:
                return

    @staticmethod
    def ok_reply(cmd):
        return {b"get": b"END\r\n", b"gets": b"END\r\n", b"set": b"STORED\r\n", b"add": b"STORED\r\n",
                b"delete": b"NOT_FOUND\r\n", b"mg": b"EN\r\n", b"ms": b"HD\r\n", b"md": b"NF\r\n",
                b"mn": b"MN\r\n", b"version": b"VERSION 1.6.18-fake\r\n"}.get(cmd, b"ERROR\r\n")


class Client:
    """A blocking client with a deadline on every read."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply in time (have %r)" % self.buf[:100])
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no reply in time (have %r)" % self.buf[:100])
        if not data:
            raise ConnectionError("memrelay closed the client connection")
        self.buf += data

    def line(self, deadline):
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def exact(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def get(self, keys, timeout=5.0):
        """Returns ('error', line) or ('values', {key: data}, [order])."""
        deadline = time.monotonic() + timeout
        self.send(b"get " + b" ".join(keys) + b"\r\n")
        values, order = {}, []
        while True:
            ln = self.line(deadline)
            if ln == b"END":
                return ("values", values, order)
            if ln.startswith(b"SERVER_ERROR") and not order:
                return ("error", ln)
            parts = ln.split(b" ")
            if len(parts) < 4 or parts[0] != b"VALUE":
                return ("bad", ln)
            data = self.exact(int(parts[3]) + 2, deadline)[:-2]
            values[parts[1]] = data
            order.append(parts[1])

    def simple(self, req, timeout=5.0):
        self.send(req)
        return self.line(time.monotonic() + timeout)


class Checks:
    def __init__(self, verbose, strict):
        self.passed = 0
        self.failed = 0
        self.known = 0
        self.verbose = verbose
        self.strict = strict

    def check(self, name, ok, detail=""):
        known = name in KNOWN_BUGS
        if ok:
            self.passed += 1
            if known:
                print("bad_backends: ok: %s (listed in KNOWN_BUGS: remove it)" % name)
            elif self.verbose:
                print("bad_backends: ok: %s" % name)
        elif known and not self.strict:
            self.known += 1
            print("bad_backends: known bug: %s%s" % (name, (": " + detail) if detail else ""))
        else:
            self.failed += 1
            print("bad_backends: FAILED: %s%s" % (name, (": " + detail) if detail else ""))
        return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--memrelay", default=os.environ.get("MEMRELAY_BIN", os.path.join(common.ROOT, "build", "memrelay")))
    ap.add_argument("--rss-limit-mb", type=float, default=None,
                    help="bound on memrelay's RSS (default 320; 1024 for a sanitizer build)")
    ap.add_argument("--scenario", action="append", choices=SCENARIOS, help="run only these (repeatable)")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--strict", action="store_true", help="known bugs (KNOWN_BUGS) fail the run too")
    args = ap.parse_args()
    sanitized = "asan" in args.memrelay or "sanit" in args.memrelay
    rss_limit = args.rss_limit_mb or (1024.0 if sanitized else 320.0)

    checks = Checks(args.verbose, args.strict)
    workdir = tempfile.mkdtemp(prefix="memrelay-bad-backends-")
    fake = FakeBackend()
    real = common.Memcached(workdir).start()
    port = common.free_port()
    relay = common.Memrelay(args.memrelay, workdir,
                            common.pool_config(port, [fake.port, real.port], threads=1, timeout_ms=TIMEOUT_MS,
                                               extra={"multiget_errors": "miss", "server_retry_timeout": 500,
                                                      "probe_backoff_max": 1000,
                                                      # bad replies and timeouts alone do not take the
                                                      # server down: each request reaches the fake
                                                      "server_failure_limit": 1000}),
                            port)
    rss_peak = [0]
    sampling = threading.Event()

    def sample_rss():  # every 20 ms: an endless value must not grow memrelay between two checks
        while True:
            r = common.rss_kib(relay.proc.pid)
            if r:
                rss_peak[0] = max(rss_peak[0], r)
            if sampling.wait(0.02):
                return

    sampler = threading.Thread(target=sample_rss, daemon=True)
    try:
        relay.start()
        rss_base = common.rss_kib(relay.proc.pid)
        sampler.start()
        c = Client(port)
        # Which keys live where: the fake records every key it is asked for.
        fake_keys, real_keys = [], []
        for i in range(64):
            k = b"bb:%s" % hashlib.sha1(b"%d" % i).hexdigest()[:12].encode()  # fnv1a spreads these
            with fake.lock:
                fake.keys_seen.clear()
            c.get([k])
            with fake.lock:
                (fake_keys if k in fake.keys_seen else real_keys).append(k)
        if not checks.check("keys split over both servers", len(fake_keys) >= 2 and len(real_keys) >= 2,
                            "fake %d, real %d" % (len(fake_keys), len(real_keys))):
            return 1
        fk, rk = fake_keys[0], real_keys[0]

        scenarios = args.scenario or SCENARIOS

        def ensure_up(label, timeout=15.0):
            """The fake behaves; wait until a get of its key reaches it and comes back (memrelay may
            have marked it down and need its probes to succeed first). Returns seconds waited."""
            nonlocal c
            fake.mode = "ok"
            t0 = time.monotonic()
            r = None
            while time.monotonic() - t0 < timeout:
                with fake.lock:
                    fake.keys_seen.clear()
                try:
                    r = c.get([fk])
                except (TimeoutError, ConnectionError, OSError) as e:
                    r = ("exception", str(e))
                    c = Client(port)
                with fake.lock:
                    reached = fk in fake.keys_seen
                if reached and r[0] == "values":
                    return time.monotonic() - t0
                time.sleep(0.1)
            checks.check("%s: the bad server's keys work again once it behaves" % label, False, repr(r)[:200])
            return None

        for n, mode in enumerate(scenarios):
            value = b"real-value-%d" % n
            recovered = []
            try:
                # Each request to the bad server is the first of its episode: before it the
                # server behaves and memrelay routes to it again.
                for what, req in (("get", None), ("set", b"set %s 0 0 3\r\nabc\r\n" % fk),
                                  ("mg", b"mg %s v\r\n" % fk)):
                    recovered.append(ensure_up(mode))
                    fake.mode = mode
                    if req is None:
                        r = c.get([fk])
                        ok = r[0] == "error"
                    else:
                        r = c.simple(req)
                        ok = r.startswith(b"SERVER_ERROR")
                    checks.check("%s: %s of a key on the bad server gets SERVER_ERROR" % (mode, what), ok,
                                 repr(r)[:200])
                ln = c.simple(b"set %s 0 0 %d\r\n%s\r\n" % (rk, len(value), value))
                checks.check("%s: set on the real server still works" % mode, ln == b"STORED", repr(ln))
                r = c.get([rk])
                checks.check("%s: get on the real server still works" % mode,
                             r[0] == "values" and r[1] == {rk: value}, repr(r)[:200])
                r = c.get([fk, rk, fake_keys[1]])
                checks.check("%s: multi-get: the real key's value, no foreign keys" % mode,
                             r[0] == "values" and r[1] == {rk: value}, repr(r)[:200])
            except (TimeoutError, ConnectionError, OSError) as e:
                checks.check("%s: client connection stays usable" % mode, False, str(e))
                c = Client(port)
            else:
                checks.check("%s: client connection stays usable" % mode, True)
            rss = rss_peak[0]
            checks.check("%s: memrelay is up" % mode, relay.running, "exit status %s" % relay.proc.poll())
            checks.check("%s: memrelay RSS peak so far %.1f MiB <= %.0f MiB" % (mode, rss / 1024, rss_limit),
                         rss / 1024 <= rss_limit)
            if not relay.running:
                break
            waited = ensure_up(mode)
            recovered.append(waited)
            if waited is not None:
                checks.check("%s: the bad server's keys work again once it behaves" % mode, True)
            if args.verbose:
                print("bad_backends: %s: back in service after %s s" % (
                    mode, ", ".join("-" if w is None else "%.1f" % w for w in recovered[1:])))
        c.sock.close()
        sampling.set()
        sampler.join(timeout=2)
        print("bad_backends: memrelay RSS: baseline %.1f MiB, peak %.1f MiB" % (rss_base / 1024, rss_peak[0] / 1024))
        rc = relay.stop()
        checks.check("memrelay exits 0 on SIGTERM", rc == 0, "exit status %s" % rc)
        report = relay.sanitizer_report()
        checks.check("no sanitizer report in memrelay's stderr", report is None, report or "")
    finally:
        sampling.set()
        relay.stop()
        fake.close()
        real.close()
    if checks.failed:
        print("bad_backends: memrelay's stderr is in %s" % relay.stderr_path)
    else:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    if checks.known:
        print("bad_backends: %d checks failed on known bugs (KNOWN_BUGS; --strict fails on them)" % checks.known)
    print("bad_backends: %d passed, %d failed" % (checks.passed, checks.failed))
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
