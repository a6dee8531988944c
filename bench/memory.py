#!/usr/bin/python3
"""bench/memory.py: memrelay's user-space memory per idle client, and after a load spike.

    bench/memory.py                      2,000 idle clients; spike of 1,000 connections, 16 KiB values
    bench/memory.py --clients 5000 --settle 60 --memrelay build-asan/memrelay

1. Idle clients. Starts one memcached and memrelay (one worker) on free 127.0.0.1 ports, reads
   memrelay's anonymous resident memory (RssAnon in /proc/PID/status: heap and thread stacks, what the
   process itself allocates; socket buffers are the kernel's and not in it), opens --clients
   connections that each make one get and then stay open and idle, reads it again and prints the
   difference per client.
2. A load spike. With the idle clients closed, runs bench/loadgen with --spike-conns connections,
   pipelined, on 16 KiB values for --spike-seconds, then prints RssAnon at once and every few seconds
   for --settle seconds, against the baseline taken before the spike.

Everything started here listens on 127.0.0.1 only and is stopped by process id. Needs memcached, a
built build/memrelay and cmake + libev-dev for bench/loadgen (built in build-bench/ as by run.py).
"""

import argparse
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"memory: {proc.args[0]} exited at start-up")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"memory: nothing listens on 127.0.0.1:{port}")


def rss_anon_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError("no RssAnon")


def recv_until(s, end, deadline):
    data = b""
    while not data.endswith(end):
        s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("connection closed")
        data += chunk
    return data


def build_loadgen():
    build = os.path.join(ROOT, "build-bench")
    if not os.path.exists(os.path.join(build, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", ROOT, "-B", build], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", build, "--target", "loadgen", "-j2"], check=True,
                   stdout=subprocess.DEVNULL)
    return os.path.join(build, "bench", "loadgen")


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
    ap.add_argument("--clients", type=int, default=2000, help="idle clients to open (2000)")
    ap.add_argument("--spike-conns", type=int, default=1000, help="connections of the load spike (1000)")
    ap.add_argument("--spike-seconds", type=float, default=3, help="length of the load spike (3)")
    ap.add_argument("--settle", type=float, default=60, help="seconds to watch memory after the spike (60)")
    args = ap.parse_args()

    need = max(args.clients, args.spike_conns) * 2 + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        sys.exit(f"memory: the open-file hard limit ({hard}) is below the {need} needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))  # inherited by what starts below

    work = tempfile.mkdtemp(prefix="memrelay-memory-")
    procs = []
    try:
        loadgen = build_loadgen()
        mc_port, port = free_port(), free_port()
        user = ["-u", "root"] if os.geteuid() == 0 else []
        mc = subprocess.Popen(["memcached", "-l", "127.0.0.1", "-p", str(mc_port), "-U", "0", "-m", "256",
                               "-c", str(need), "-t", "1"] + user, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(mc)
        wait_port(mc_port, mc)
        conf = os.path.join(work, "memrelay.yaml")
        with open(conf, "w") as f:
            f.write(f"mem:\n  listen: 127.0.0.1:{port}\n  hash: fnv1a_64\n  distribution: ketama\n"
                    f"  timeout: 10000\n  servers:\n    - 127.0.0.1:{mc_port}:1\n")
        relay = subprocess.Popen([args.memrelay, "-c", conf, "-q", "-t", "1"], stdout=subprocess.DEVNULL,
                                 stderr=open(os.path.join(work, "memrelay.log"), "wb"), start_new_session=True)
        procs.append(relay)
        wait_port(port, relay)

        # 1. idle clients: each has made one request, then waits
        with socket.create_connection(("127.0.0.1", port)) as s:  # warm the backend connection
            s.sendall(b"get memory:probe\r\n")
            recv_until(s, b"END\r\n", time.monotonic() + 10)
        time.sleep(0.5)
        before = rss_anon_kib(relay.pid)
        socks = []
        deadline = time.monotonic() + 120
        for i in range(args.clients):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"get memory:idle%d\r\n" % i)
            socks.append(s)
        for s in socks:
            recv_until(s, b"END\r\n", deadline)
        time.sleep(0.5)
        after = rss_anon_kib(relay.pid)
        per = (after - before) * 1024 / args.clients
        print(f"idle clients: {args.clients}; memrelay RssAnon {before} KiB before, {after} KiB with them open: "
              f"{per:,.0f} bytes per idle client")
        for s in socks:
            s.close()
        socks = []
        time.sleep(1)

        # 2. a load spike, then memory over time
        base = rss_anon_kib(relay.pid)
        argv = [loadgen, "-s", f"127.0.0.1:{port}", "-c", str(args.spike_conns), "-p", "4", "-v", "16384",
                "-r", "1:1", "-k", "2000", "-d", str(args.spike_seconds), "--prefix", "memory:"]
        peak = base
        lg = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(lg)
        while lg.poll() is None:
            peak = max(peak, rss_anon_kib(relay.pid))
            time.sleep(0.2)
        out, err = lg.communicate()
        if lg.returncode != 0:
            sys.exit(f"memory: loadgen failed: {(err.strip().splitlines() or ['?'])[-1]}")
        print(f"spike: {args.spike_conns} connections x 4 deep, 16 KiB values 1:1, {args.spike_seconds:g} s; "
              f"RssAnon baseline {base} KiB, peak seen {peak} KiB")
        t0 = time.monotonic()
        samples = []
        while True:
            t = time.monotonic() - t0
            samples.append((t, rss_anon_kib(relay.pid)))
            if t >= args.settle:
                break
            time.sleep(min(5.0, args.settle - t) if t > 0 else 1.0)
        print("after the spike: " + ", ".join(f"{t:.0f} s {kib} KiB" for t, kib in samples))
        last = samples[-1][1]
        print(f"after {samples[-1][0]:.0f} s: {last} KiB, {last - base:+} KiB from the baseline "
              f"({(last - base) / max(1, peak - base) * 100:.0f}% of the spike's growth left)")
        return 0
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
