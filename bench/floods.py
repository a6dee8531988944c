#!/usr/bin/python3
"""bench/floods.py: memory under the floods of issue 18, memrelay next to memcached.

    bench/floods.py [--memrelay build/memrelay] [--only NAME] [--memory-limit 64m]

Starts one memcached and memrelay (one worker, one-server pool, timeout 1000 ms) on free 127.0.0.1
ports, and for each flood measures the peak growth of the target's anonymous resident memory (RssAnon:
what the process allocates; socket buffers are the kernel's) while the flood runs, first through
memrelay, then straight at memcached. Floods (the flooding clients never read):
  nonreader     1 client pipelining 5,000 `get` of a 1 MB value
  nonreaders5   5 such clients
  noreply       1 client sending 20,000 `set ... noreply` of 100 KB
  stopped_sets  the server stopped (SIGSTOP): 1 client pipelining 300 sets of 1 MB
  unfinished    300 connections each sending 900 KB of a 1 MB set, never the rest
--memory-limit sets memrelay's memory_limit (default: memrelay's own, 1 GiB); the memrelay line then also
gives memrelay's own memory_peak (`stats`: the most memory_limit's budget held). Prints one line per flood
and target. Everything listens on 127.0.0.1 only and is stopped by pid.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALUE = 1000 * 1000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("floods: %s exited at start-up" % proc.args[0])
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("floods: nothing listens on 127.0.0.1:%d" % port)


def rss_anon_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError("no RssAnon")


def sender(port, data):
    """A client that sends what the socket takes (in the background of the loop) and never reads."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    return [s, memoryview(data)]


def pump(senders, seconds, pid):
    """Push the senders' data for `seconds`, sampling pid's RssAnon; returns the peak."""
    peak = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for snd in senders:
            if len(snd[1]):
                try:
                    n = snd[0].send(snd[1][:1 << 20])
                    snd[1] = snd[1][n:]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    snd[1] = snd[1][:0]
        peak = max(peak, rss_anon_kib(pid))
        time.sleep(0.01)
    return peak


def set_big(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"set big 0 0 %d\r\n%s\r\n" % (VALUE, b"v" * VALUE))
        s.settimeout(5)
        assert s.recv(100) == b"STORED\r\n"


def flood(name, port, pid, mc):
    set_big(port)
    time.sleep(0.3)
    base = rss_anon_kib(pid)
    stopped = False
    if name == "nonreader":
        senders = [sender(port, b"get big\r\n" * 5000)]
    elif name == "nonreaders5":
        senders = [sender(port, b"get big\r\n" * 5000) for _ in range(5)]
    elif name == "noreply":
        v = b"n" * 100000
        senders = [sender(port, b"".join(b"set n%d 0 0 %d noreply\r\n%s\r\n" % (i % 50, len(v), v)
                                         for i in range(20000)))]
    elif name == "stopped_sets":
        os.kill(mc.pid, signal.SIGSTOP)
        stopped = True
        v = b"s" * VALUE
        senders = [sender(port, b"".join(b"set s%d 0 0 %d\r\n%s\r\n" % (i, len(v), v) for i in range(300)))]
    elif name == "unfinished":
        senders = [sender(port, b"set u%d 0 0 %d\r\n%s" % (i, VALUE, b"u" * 900000)) for i in range(300)]
    try:
        peak = pump(senders, 4.0, pid)
    finally:
        if stopped:
            os.kill(mc.pid, signal.SIGCONT)
        for s, _ in senders:
            s.close()
    time.sleep(1.0)
    return (peak - base) / 1024.0, len(senders)


def memory_peak(port):
    """memrelay's `stats` memory_peak, in bytes (0 if absent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"stats\r\n")
        buf = b""
        while not buf.endswith(b"END\r\n"):
            d = s.recv(65536)
            if not d:
                break
            buf += d
    for line in buf.split(b"\r\n"):
        if line.startswith(b"STAT memory_peak "):
            return int(line.split()[2])
    return 0


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memrelay", default=os.path.join(ROOT, "build", "memrelay"))
    ap.add_argument("--only", action="append", help="run only this flood (repeatable)")
    ap.add_argument("--memory-limit", help="memrelay's memory_limit, e.g. 64m (default: memrelay's default)")
    args = ap.parse_args()
    names = args.only or ["nonreader", "nonreaders5", "noreply", "stopped_sets", "unfinished"]
    work = tempfile.mkdtemp(prefix="memrelay-floods-")
    user = ["-u", "root"] if os.geteuid() == 0 else []
    for name in names:
        procs = []
        try:
            mc_port, port = free_port(), free_port()
            mc = subprocess.Popen(["memcached", "-l", "127.0.0.1", "-p", str(mc_port), "-U", "0", "-m", "1024",
                                   "-c", "4096", "-t", "1"] + user, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
            procs.append(mc)
            wait_port(mc_port, mc)
            conf = os.path.join(work, "memrelay.yaml")
            with open(conf, "w") as f:
                f.write("memrelay:\n  threads: 1\n%smem:\n  listen: 127.0.0.1:%d\n  timeout: 1000\n"
                        "  servers:\n    - 127.0.0.1:%d:1\n"
                        % ("  memory_limit: %s\n" % args.memory_limit if args.memory_limit else "", port, mc_port))
            relay = subprocess.Popen([args.memrelay, "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
            procs.append(relay)
            wait_port(port, relay)
            grow, n = flood(name, port, relay.pid, mc)
            print("%-13s memrelay  peak +%7.1f MiB (%6.1f per client), memory_peak %.1f MiB"
                  % (name, grow, grow / n, memory_peak(port) / 1048576.0), flush=True)
            stop(relay)
            if name != "stopped_sets":
                grow, n = flood(name, mc_port, mc.pid, mc)
                print("%-13s memcached peak +%7.1f MiB (%6.1f per client)" % (name, grow, grow / n), flush=True)
        finally:
            for p in procs:
                stop(p)


if __name__ == "__main__":
    main()
