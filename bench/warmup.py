#!/usr/bin/python3
"""bench/warmup.py: what the warm-up window (docs/operations.md, "Resizing a pool without a miss storm") costs.

    bench/warmup.py                 2,000 keys, 4 memcached, one memrelay (about 10 s)
    bench/warmup.py --keys 5000 --memrelay build/memrelay

Starts 4 memcached on free 127.0.0.1 ports and memrelay over the first 3 (ketama), writes the keys,
adds the fourth server by reload, and times one `get` at a time (a request, then its reply) for:

- hit, no window:        keys on their owner, warmup_window 0 (today's path)
- hit, window open:      keys on their owner while a window is open (the hot path's one extra compare)
- moved miss, window 0:  a moved key's first read without the window: a plain miss
- moved warm, window:    a moved key's first read with the window: the miss, the previous owner's
                         mg, the ms copy to the new owner, then the reply
- moved hit after warm:  the same keys read again: they now hit on their new owner
- the same three with `replicas: 2` (replicated hit, window open; replicated moved warm: the miss on
  the new primary, the mg on the previous set's member that is not in the new set, and the reply; the
  copy goes through replication in the background; replicated moved hit after warm)

Prints the mean and p50/p99 per request in microseconds. Round-trip time on loopback dominates: the point
is the shape (a warm read costs about three round trips once, a hit costs the same with or without a
window), not absolute numbers. Everything started here is stopped by process id on exit.
"""

import argparse
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nothing listens on %d" % port)


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), 5)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def call(self, data, end):
        self.s.sendall(data)
        while not self.buf.endswith(end):
            chunk = self.s.recv(65536)
            if not chunk:
                raise SystemExit("connection closed")
            self.buf += chunk
        out, self.buf = self.buf, b""
        return out


def config(listen, ports, window, replicas=1):
    lines = ["alpha:", "  listen: 127.0.0.1:%d" % listen, "  hash: fnv1a_64", "  distribution: ketama",
             "  warmup_window: %d" % window, "  replicas: %d" % replicas, "  servers:"]
    lines += ["    - 127.0.0.1:%d:1" % p for p in ports]
    return "\n".join(lines) + "\n"


def timed_gets(conn, keys):
    out, misses = [], 0
    for k in keys:
        t = time.perf_counter()
        reply = conn.call(b"get " + k + b"\r\n", b"END\r\n")
        out.append((time.perf_counter() - t) * 1e6)
        misses += reply == b"END\r\n"
    return out, misses


def summary(name, samples, misses):
    s = sorted(samples)
    mean = sum(s) / len(s)
    print("| %-22s | %6d | %8.1f | %8.1f | %8.1f | %6d |" % (name, len(s), mean, s[len(s) // 2],
                                                           s[min(len(s) - 1, int(len(s) * 0.99))], misses))


def run(args, window, procs, tmp, replicas=1):
    mc_ports = free_ports(4)
    listen = free_ports(1)[0]
    for p in mc_ports:
        procs.append(subprocess.Popen(["memcached", "-u", "nobody", "-l", "127.0.0.1", "-p", str(p), "-U", "0",
                                       "-m", "64"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for p in mc_ports:
        wait_port(p)
    path = os.path.join(tmp, "warm-%d.yml" % window)
    with open(path, "w") as f:
        f.write(config(listen, mc_ports[:3], window, replicas))
    relay = subprocess.Popen([args.memrelay, "-c", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(relay)
    wait_port(listen)
    keys = [b"bench:" + hashlib.sha1(b"%d" % i).hexdigest().encode()[:12] for i in range(args.keys)]
    c = Conn(listen)
    for k in keys:
        c.call(b"set %s 0 0 8\r\nvalue-%02d\r\n" % (k, len(k) % 100), b"\r\n")
    # Which keys the reload moves: ask the new server afterwards (it holds none before).
    with open(path, "w") as f:
        f.write(config(listen, mc_ports, window, replicas))
    relay.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    # Where each key lives now: stats route names its server (its primary first).
    moved, stay = [], []
    for k in keys:
        r = c.call(b"stats route " + k + b"\r\n", b"END\r\n")
        primary = r.split(b"STAT primary ", 1)[1].split(b" ", 1)[0]
        (moved if primary.endswith(b":%d" % mc_ports[3]) or primary.endswith(b":%d:1" % mc_ports[3])
         else stay).append(k)
    return c, moved, stay, relay


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=2000)
    ap.add_argument("--memrelay", default=os.path.join(os.path.dirname(__file__), "..", "build", "memrelay"))
    args = ap.parse_args()
    procs = []
    tmp = tempfile.mkdtemp(prefix="memrelay-warm-bench-")
    try:
        print("| %-22s | %6s | %8s | %8s | %8s | %6s |" % ("read", "gets", "mean µs", "p50 µs", "p99 µs", "misses"))
        print("|%s|" % "|".join("-" * w for w in (24, 8, 10, 10, 10, 8)))
        c, moved, stay, _ = run(args, 0, procs, tmp)
        summary("hit, no window", *timed_gets(c, stay))
        summary("moved miss, window 0", *timed_gets(c, moved))
        c, moved, stay, _ = run(args, 600000, procs, tmp)
        summary("hit, window open", *timed_gets(c, stay))
        summary("moved warm, window", *timed_gets(c, moved))
        summary("moved hit after warm", *timed_gets(c, moved))
        c, moved, stay, _ = run(args, 600000, procs, tmp, replicas=2)
        summary("repl hit, window open", *timed_gets(c, stay))
        summary("repl moved warm", *timed_gets(c, moved))
        time.sleep(0.2)  # the copies' replication
        summary("repl moved hit after", *timed_gets(c, moved))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
