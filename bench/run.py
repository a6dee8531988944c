#!/usr/bin/python3
"""bench/run.py: memrelay against memcached direct and nutcracker, interleaved round by round.

    bench/run.py                 quick: 3 rounds x 3 s per workload and target (about 4 minutes)
    bench/run.py --full          5 rounds x 5 s (about 10 minutes)
    bench/run.py --callgrind     user-space instructions per request (valgrind), memrelay and nutcracker
    bench/run.py --callgrind --only large,multiget    the same on those workloads
    bench/run.py --syscalls --only small,pipelined     system calls per request (perf, else strace)
    bench/run.py --only small,pipelined --rounds 2 --seconds 2

Starts 4 memcached on free 127.0.0.1 ports, nutcracker (-v 4, stats on 127.0.0.1) and memrelay with
the same ketama/fnv1a_64 pool, then runs every workload against each target in turn, round by round,
with bench/loadgen pinned to one CPU and every server and proxy to another. Prints a markdown table
(median throughput of the rounds and its spread, p50/p99 latency, CPU per request of the proxy and of
the memcached servers, the load generator's CPU, median paired ratios) and writes it, with the raw
per-round results as JSON, to build-bench/bench-results/. docs/benchmarks.md explains every column.

Everything started here is stopped by process id on exit, Ctrl-C included. Each load run is bounded in
time. Needs: memcached, nutcracker, taskset (util-linux), valgrind for --callgrind, and a built
build/memrelay (--memrelay PATH for another binary); without a memrelay that answers, the other
targets still run and memrelay's cells say why they are empty.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = 4

# The workloads. Every field not given takes its value from SMALL. `goal`: the throughput issue 6 asks
# of memrelay against nutcracker there (the shared-core table turns it into a CPU budget).
SMALL = dict(conns=50, pipeline=1, keys=10000, value=100, ratio="9:1", mget=1)
WORKLOADS = [
    dict(name="small", title="small get/set 9:1 (100 B values, 50 connections)", goal=1.3),
    dict(name="pipelined", title="small get/set 9:1, 16 requests deep per connection", pipeline=16,
         extra_targets=["memrelay-t2"], goal=1.8),
    dict(name="multiget", title="10-key multi-gets over 4 backends (gets only)", ratio="1:0", mget=10, goal=2.5),
    dict(name="large", title="16 KiB values, get/set 1:1", value=16384, ratio="1:1", keys=2000, goal=1.2),
    dict(name="conns1000", title="small get/set 9:1, 1,000 connections", conns=1000, goal=1.3),
    dict(name="replicated", title="small get/set 9:1, pool of 2 replicas (ack one)", replicated=True),
    # The same with 2 worker threads on both sides: the cost of the key locks (key_locks.h) that keep
    # replicas converged across workers.
    dict(name="replicated-t2", title="small get/set 9:1, pool of 2 replicas (ack one), -t 2", replicated=True,
         threads2=True),
    # memcached's binary protocol (loadgen --binary): memrelay against memcached direct only (nutcracker
    # has no binary protocol); compare memrelay's CPU per request with the text rows above.
    dict(name="binary", title="small get/set 9:1 in the binary protocol (SET, GETK)", binary=True),
    dict(name="binary-multiget", title="10-key multi-gets in the binary protocol (GETKQ x10 + NOOP, gets only)",
         ratio="1:0", mget=10, binary=True),
]

# What each target is called in the table.
TARGET_TITLES = {
    "direct": "memcached direct",
    "nutcracker": "nutcracker",
    "memrelay": "memrelay",
    "memrelay-t2": "memrelay -t 2",
    "memrelay-repl": "memrelay (replicas: 2)",
    "memrelay-repl-t2": "memrelay -t 2 (replicas: 2)",
}


class BenchError(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- processes ---------------------------------------------------------------------------------------

class Proc:
    """A server or proxy we started; stopped by its own PID, never by name."""

    def __init__(self, name, argv, log_path, cpu, nofile=None):
        self.name = name
        self.log_path = log_path
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv  # taskset execs argv: the PID stays the server's
        self.argv = argv
        self.log = open(log_path, "ab")
        def limit():
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True, preexec_fn=limit)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def log_tail(self, n=10):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def stop(self, timeout=10):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.log.close()


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (held together while choosing, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited at start-up:\n{proc.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{proc.name} is not listening on 127.0.0.1:{port} after {timeout} s")


def probe(port):
    """None if a set and a get through 127.0.0.1:port work, else what went wrong."""
    want = b"STORED\r\nVALUE bench:probe 0 2\r\nok\r\nEND\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.sendall(b"set bench:probe 0 0 2\r\nok\r\nget bench:probe\r\n")
            got = b""
            while len(got) < len(want) and not got.endswith(b"END\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
    except OSError as e:
        return f"probe failed: {e}"
    return None if got == want else f"probe answered {got[:80]!r}"


def raise_nofile(need):
    """Raises the open-file limit (inherited by everything started here) to at least need."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))  # raising the hard limit needs root
        except (ValueError, OSError):
            pass
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    if soft != resource.RLIM_INFINITY and soft < need:
        raise BenchError(f"ulimit -n is {soft} and cannot be raised to the {need} the workloads need")
    return soft


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_list(text):
    """The CPUs of a taskset -c list such as 0-3,6."""
    cpus = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def cpus_busy(cpus):
    """Seconds the given CPUs have spent on anything but idle and iowait since boot."""
    busy = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu" and int(name[3:]) in cpus:
                v = [int(x) for x in fields]
                busy += v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system (idle iowait) irq softirq
    return busy / CLK_TCK


def cpus_steal(cpus):
    """Seconds the hypervisor gave the given CPUs' time to other guests since boot."""
    steal = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu" and int(name[3:]) in cpus and len(fields) > 7:
                steal += int(fields[7])
    return steal / CLK_TCK


def proc_cpu(pid):
    """utime + stime of a process (all its threads), seconds; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


# ---- configuration files -----------------------------------------------------------------------------

def pool_yaml(name, listen_port, mc_ports, replicas=None):
    """One pool, written the same for nutcracker and memrelay (memrelay reads twemproxy's format)."""
    lines = [
        f"{name}:",
        f"  listen: 127.0.0.1:{listen_port}",
        "  hash: fnv1a_64",
        "  distribution: ketama",
        "  timeout: 10000",  # a contended machine can stall a request for seconds: measure speed, not ejection
        "  backlog: 1024",
        "  server_connections: 1",
        "  auto_eject_hosts: false",
        "  preconnect: true",
    ]
    if replicas:
        lines.append(f"  replicas: {replicas}")
    lines.append("  servers:")
    lines += [f"    - 127.0.0.1:{p}:1" for p in mc_ports]
    return "\n".join(lines) + "\n"


# ---- the bench environment ---------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.procs = []
        self.dir = tempfile.mkdtemp(prefix="memrelay-bench-")
        ncpu = os.cpu_count() or 1
        if args.no_pin or ncpu < 2:
            self.gen_cpu = self.server_cpu = None
        else:
            self.gen_cpu, self.server_cpu = args.gen_cpu, args.server_cpu
        self.mc_cpu = None if self.server_cpu is None else (args.memcached_cpu or self.server_cpu)
        self.loadgen = args.loadgen
        self.mc_ports = []
        self.mc = []
        self.targets = {}      # name -> dict(port=, proc=) of every target that serves
        self.unavailable = {}  # name -> why it has no results

    # -- processes
    def start(self, name, argv, cpu, nofile=None):
        p = Proc(name, argv, os.path.join(self.dir, name + ".log"), cpu, nofile)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception as e:  # keep stopping the others
                log(f"bench: stopping {p.name} (pid {p.pid}): {e}")
        self.procs = []

    def start_memcached(self, n, wrap=None):
        """n memcached on free ports. memcached sets its fd limit (soft and hard) to -c; valgrind allows
        only the soft limit it started with as the hard limit, so under valgrind both are 1024."""
        ports = free_ports(n)
        user = ["-u", "root"] if os.geteuid() == 0 else []
        procs = []
        for i, port in enumerate(ports):
            argv = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "512", "-c", "1024" if wrap else "8192",
                    "-t", "1", "-b", "1024"] + user
            name = f"memcached-{port}"
            procs.append(self.start(name, (wrap(name) if wrap else []) + argv, self.mc_cpu,
                                    nofile=1024 if wrap else None))
        for port, p in zip(ports, procs):
            wait_port(port, p, 60 if wrap else 10)
        return ports, procs

    def start_nutcracker(self, name, wrap=None):
        port, stats = free_ports(2)
        conf = os.path.join(self.dir, name + ".yml")
        with open(conf, "w") as f:
            f.write(pool_yaml("bench", port, self.mc_ports))
        argv = ["nutcracker", "-c", conf, "-v", "4", "-s", str(stats), "-a", "127.0.0.1",
                "-o", os.path.join(self.dir, name + ".nutcracker.log")]
        p = self.start(name, (wrap(name) if wrap else []) + argv, self.server_cpu)
        wait_port(port, p, 60 if wrap else 10)
        return port, p

    def memrelay_conf(self, name, port, replicas=None):
        conf = os.path.join(self.dir, name + ".yaml")
        with open(conf, "w") as f:
            f.write("memrelay:\n  threads: 1\n\n" + pool_yaml("bench", port, self.mc_ports, replicas))
        return conf

    def start_memrelay(self, name, threads=1, replicas=None, wrap=None):
        """(port, proc), or raises BenchError saying why memrelay cannot be measured."""
        binary = self.args.memrelay
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise BenchError(f"no memrelay binary at {binary} (build it, or pass --memrelay)")
        port = free_ports(1)[0]
        conf = self.memrelay_conf(name, port, replicas)
        check = subprocess.run([binary, "-c", conf, "--check-config"], capture_output=True, text=True,
                               timeout=30)
        if check.returncode != 0:
            msg = (check.stderr or check.stdout).strip().splitlines()
            # "memrelay: FILE:LINE:COL: what" -> "what"
            what = msg[-1].split(": ")[-1] if msg else f"exit status {check.returncode}"
            raise BenchError(f"memrelay refuses the config: {what}")
        argv = [binary, "-c", conf, "-q", "-t", str(threads)]
        p = self.start(name, (wrap(name) if wrap else []) + argv, self.server_cpu)
        try:
            wait_port(port, p, 60 if wrap else 10)
        except BenchError as e:
            p.stop()
            raise BenchError(str(e).splitlines()[0])
        why = probe(port)
        if why:
            p.stop()
            raise BenchError(f"memrelay does not serve requests yet ({why})")
        return port, p

    # -- load
    def run_loadgen(self, servers, w, extra, seconds, watch, label):
        argv = [self.loadgen, "-s", ",".join(f"127.0.0.1:{p}" for p in servers),
                "-c", str(w["conns"]), "-p", str(w["pipeline"]), "-d", str(seconds), "-k", str(w["keys"]),
                "-v", str(w["value"]), "-r", w["ratio"], "-m", str(w["mget"]), "--label", label]
        argv += (["--binary"] if w.get("binary") else []) + extra + ["-T", str(self.args.loadgen_threads)]
        for pid in watch:
            argv += ["--watch-pid", str(pid)]
        if self.gen_cpu is not None:
            argv = ["taskset", "-c", str(self.gen_cpu)] + argv
        # Interference: what the CPUs did for processes other than ours during the run. On the
        # servers' CPUs ours are memcached and the proxies; on the generator's, loadgen alone.
        mine = [p.pid for p in self.procs if p.alive()]
        cpus = cpu_list(self.server_cpu) | cpu_list(self.mc_cpu) if self.server_cpu is not None else None
        gcpus = cpu_list(self.gen_cpu) if self.gen_cpu is not None else None
        allcpus = set(range(os.cpu_count() or 1))
        t0, mine0, all0 = time.monotonic(), sum(map(proc_cpu, mine)), cpus_busy(allcpus)
        steal0 = cpus_steal(allcpus)
        busy0, gbusy0 = (cpus_busy(cpus), cpus_busy(gcpus - cpus)) if cpus else (0, 0)
        child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 300)
        except subprocess.TimeoutExpired:
            raise BenchError("loadgen did not finish in time")
        if r.returncode != 0:
            raise BenchError((r.stderr.strip().splitlines() or [f"loadgen exited {r.returncode}"])[-1])
        out = json.loads(r.stdout.strip().splitlines()[-1])
        # How busy the whole machine was (warm-up included): near 100% means no target could go
        # faster by using more cores, e.g. more worker threads.
        out["machine_busy_pct"] = (cpus_busy(allcpus) - all0) / ((time.monotonic() - t0) * len(allcpus)) * 100
        # A virtual machine's CPUs can also lose time to other guests on the host (steal), which no
        # process here sees: it slows whatever runs then and widens the spread.
        out["steal_pct"] = (cpus_steal(allcpus) - steal0) / ((time.monotonic() - t0) * len(allcpus)) * 100
        if cpus:
            wall = time.monotonic() - t0
            other = (cpus_busy(cpus) - busy0) - (sum(map(proc_cpu, mine)) - mine0)
            out["others_cpu_pct"] = max(0.0, other) / (wall * len(cpus)) * 100
            child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            gen = (child1.ru_utime - child0.ru_utime) + (child1.ru_stime - child0.ru_stime)
            if gcpus & cpus:  # shared CPUs: one figure for all of them, in both places
                other += (cpus_busy(gcpus - cpus) - gbusy0) - gen
                pct = max(0.0, other) / (wall * len(gcpus | cpus)) * 100
                out["others_cpu_pct"] = out["others_gen_cpu_pct"] = pct
            else:
                gother = (cpus_busy(gcpus) - gbusy0) - gen
                out["others_gen_cpu_pct"] = max(0.0, gother) / (wall * len(gcpus)) * 100
        return out


# ---- the throughput benchmark ------------------------------------------------------------------------

def workload(wdef):
    w = dict(SMALL)
    w.update(wdef)
    return w


def targets_of(w, bench):
    if w.get("replicated"):
        # Unreplicated memrelay in the same rounds: the target is a ratio to it, and a ratio between
        # two workloads run minutes apart would mostly measure how the machine changed meanwhile.
        names = ["direct", "memrelay-t2", "memrelay-repl-t2"] if w.get("threads2") else \
            ["direct", "memrelay", "memrelay-repl"]
    elif w.get("binary"):
        names = ["direct", "memrelay"]
    else:
        names = ["direct", "nutcracker", "memrelay"] + w.get("extra_targets", [])
    return names


def start_targets(bench, workloads):
    """Starts the backends and every target any selected workload needs."""
    bench.mc_ports, bench.mc = bench.start_memcached(BACKENDS)
    log(f"bench: memcached on 127.0.0.1:{','.join(map(str, bench.mc_ports))} (pids "
        f"{' '.join(str(p.pid) for p in bench.mc)})")
    bench.targets["direct"] = dict(ports=bench.mc_ports, proc=None)
    needed = set()
    for w in workloads:
        needed.update(targets_of(w, bench))
    if "nutcracker" in needed:
        if not shutil.which("nutcracker"):
            bench.unavailable["nutcracker"] = "nutcracker is not installed (apt-get install nutcracker)"
        else:
            port, p = bench.start_nutcracker("nutcracker")
            bench.targets["nutcracker"] = dict(ports=[port], proc=p)
    for name, kw in (("memrelay", {}), ("memrelay-t2", dict(threads=bench.args.memrelay_threads)),
                     ("memrelay-repl", dict(replicas=2)),
                     ("memrelay-repl-t2", dict(replicas=2, threads=bench.args.memrelay_threads))):
        if name not in needed:
            continue
        try:
            port, p = bench.start_memrelay(name, **kw)
            bench.targets[name] = dict(ports=[port], proc=p)
        except BenchError as e:
            why = str(e)
            if name == "memrelay-repl" and "refuses the config" in why:
                why = f"not available yet ({why})"
            bench.unavailable[name] = why
    for name, t in bench.targets.items():
        if t["proc"]:
            log(f"bench: {TARGET_TITLES[name]} on 127.0.0.1:{t['ports'][0]} (pid {t['proc'].pid})")
    for name, why in bench.unavailable.items():
        log(f"bench: {TARGET_TITLES[name]}: {why}")


def run_rounds(bench, workloads, rounds, seconds):
    """results[workload][target] = list of per-round dicts (or {"error": text})."""
    results = {}
    mc_pids = [p.pid for p in bench.mc]
    for wi, w in enumerate(workloads):
        names = [n for n in targets_of(w, bench) if n in bench.targets]
        if names == ["direct"]:
            continue  # no proxy to compare with
        res = results.setdefault(w["name"], {n: [] for n in names})
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]  # rotate: no target always goes first
            for name in order:
                t = bench.targets[name]
                proc = t["proc"]
                if proc and not proc.alive():
                    res[name].append(dict(error=f"{TARGET_TITLES[name]} is not running any more"))
                    continue
                watch = ([proc.pid] if proc else []) + mc_pids
                # Own keys per workload and target, all prefixes the same length.
                prefix = f"b{wi:02d}t{list(TARGET_TITLES).index(name)}:"
                try:
                    out = bench.run_loadgen(t["ports"], w, ["--prefix", prefix], seconds, watch,
                                            f"{w['name']}/{name}/{r + 1}")
                except BenchError as e:
                    res[name].append(dict(error=str(e)))
                    log(f"  {w['name']:<10} round {r + 1}/{rounds} {name:<14} FAILED: {e}")
                    continue
                cpu = {x["pid"]: x["cpu_s"] for x in out["watch"]}
                out["proxy_cpu_s"] = cpu.get(proc.pid) if proc else None
                out["proxy_user_s"] = next((x["user_s"] for x in out["watch"] if proc and x["pid"] == proc.pid), None)
                out["mc_cpu_s"] = sum(cpu.get(p, 0) for p in mc_pids)
                res[name].append(out)
                log(f"  {w['name']:<10} round {r + 1}/{rounds} {name:<14} {out['rps']:>10,.0f} req/s  "
                    f"p50 {out['p50_us']:>8.1f} µs  p99 {out['p99_us']:>8.1f} µs  "
                    f"proxy cpu {fmt_cpu(out['proxy_cpu_s'], out['requests'])}  "
                    f"errors {out['errors']} misses {out['misses']}"
                    + (f"  others {out['others_gen_cpu_pct']:.0f}% / {out['others_cpu_pct']:.0f}%"
                       if "others_cpu_pct" in out else ""))
    return results


def fmt_cpu(cpu_s, requests):
    if cpu_s is None or requests == 0:
        return "-"
    return f"{cpu_s / requests * 1e6:.2f} s/M"


def ok_runs(runs):
    return [x for x in runs if "error" not in x]


def paired_ratio(a_runs, b_runs):
    """Median over rounds of a's throughput / b's in the same round (None without common rounds)."""
    ratios = [a["rps"] / b["rps"] for a, b in zip(a_runs, b_runs)
              if "error" not in a and "error" not in b and b["rps"] > 0]
    return statistics.median(ratios) if ratios else None


def summarize(results, workloads, bench):
    rows = []
    for w in workloads:
        res = results.get(w["name"], {})
        names = targets_of(w, bench)
        for name in names:
            title = TARGET_TITLES[name]
            if name in bench.unavailable or name not in res:
                if name in bench.unavailable or not res:
                    why = bench.unavailable.get(name, "not run: no proxy to compare with")
                else:
                    why = "not run"
                rows.append(dict(workload=w["title"], target=title, note=why))
                continue
            runs = ok_runs(res[name])
            if not runs:
                rows.append(dict(workload=w["title"], target=title, note=res[name][0]["error"] if res[name] else "no runs"))
                continue
            rps = [x["rps"] for x in runs]
            med = statistics.median(rps)
            row = dict(workload=w["title"], target=title, rps=med, pipeline=w["pipeline"],
                       spread=(max(rps) - min(rps)) / med if med else 0,
                       p50=statistics.median(x["p50_us"] for x in runs),
                       p99=statistics.median(x["p99_us"] for x in runs),
                       mc_cpu=statistics.median(x["mc_cpu_s"] / x["requests"] * 1e6 for x in runs if x["requests"]),
                       gen_cpu=statistics.median(x["gen_cpu_s"] / x["elapsed_s"] * 100 for x in runs),
                       others=statistics.median(x.get("others_cpu_pct", 0) for x in runs)
                       if any("others_cpu_pct" in x for x in runs) else None,
                       others_gen=statistics.median(x.get("others_gen_cpu_pct", 0) for x in runs)
                       if any("others_gen_cpu_pct" in x for x in runs) else None,
                       machine_busy=statistics.median(x.get("machine_busy_pct", 0) for x in runs),
                       steal=max(x.get("steal_pct", 0) for x in runs),
                       errors=sum(x["errors"] for x in runs), misses=sum(x["misses"] for x in runs),
                       failed=len(res[name]) - len(runs), rounds=len(res[name]))
            if name != "direct":
                row["proxy_cpu"] = statistics.median(x["proxy_cpu_s"] / x["requests"] * 1e6
                                                     for x in runs if x["requests"])
                users = [x["proxy_user_s"] / x["requests"] * 1e6 for x in runs
                         if x["requests"] and x.get("proxy_user_s") is not None]
                row["proxy_user"] = statistics.median(users) if users else None
                row["vs_direct"] = paired_ratio(res[name], res.get("direct", []))
                if name != "nutcracker" and "nutcracker" in res:
                    row["vs_nutcracker"] = paired_ratio(res[name], res["nutcracker"])
                if name == "memrelay-repl" and "memrelay" in res:
                    row["vs_unreplicated"] = paired_ratio(res[name], res["memrelay"])
                if name == "memrelay-repl-t2" and "memrelay-t2" in res:
                    row["vs_unreplicated"] = paired_ratio(res[name], res["memrelay-t2"])
            if row["failed"]:
                row["note"] = f"{row['failed']} of {row['rounds']} rounds failed: " + \
                              next(x["error"] for x in res[name] if "error" in x)
            rows.append(row)
    return rows


def markdown_table(rows):
    head = ("| workload | target | req/s (median) | spread | p50 µs | p99 µs | proxy CPU s/M req (user) "
            "| memcached CPU s/M req | loadgen CPU | others' CPU gen / srv | vs direct | vs nutcracker | misses / errors |")
    out = [head, "|" + "---|" * 13]
    last = None
    for r in rows:
        wl = r["workload"] if r["workload"] != last else ""
        last = r["workload"]
        if "rps" not in r:
            out.append(f"| {wl} | {r['target']} | {r['note']} |" + "  |" * 10)
            continue

        def f(key, fmt):
            v = r.get(key)
            return "—" if v is None else fmt.format(v)
        cells = [wl, r["target"], f"{r['rps']:,.0f}", f"{r['spread'] * 100:.1f}%", f"{r['p50']:.0f}",
                 f"{r['p99']:.0f}", f("proxy_cpu", "{:.2f}") + ("" if r.get("proxy_user") is None else f" ({r['proxy_user']:.2f})"),
                 f"{r['mc_cpu']:.2f}", f"{r['gen_cpu']:.0f}%",
                 (f"machine {r['machine_busy']:.0f}% busy" if r.get("others") is None
                  else f"{r['others_gen']:.0f}% / {r['others']:.0f}%")
                 + (f", steal ≤ {r['steal']:.0f}%" if r.get("steal", 0) >= 0.5 else ""),
                 f("vs_direct", "{:.2f}×"),
                 f("vs_nutcracker", "{:.2f}×") if r.get("vs_unreplicated") is None
                 else f"— ({r['vs_unreplicated']:.2f}× unreplicated memrelay)",
                 f"{r['misses']} / {r['errors']}"]
        if r.get("note"):
            cells[-1] += f" ({r['note']})"
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def shared_core_table(rows, floor=None):
    """Where the servers' core goes, memrelay against nutcracker, per workload.

    With pinning, each proxy and the memcached behind it share one core, so when that core is full,
    throughput is 1 / (proxy CPU + memcached CPU per request). The table compares that model with the
    measured ratio, and gives two bounds no proxy code change can pass: the throughput ratio if
    memrelay's own CPU were zero (memcached's work alone then fills the core) and the CPU ratio if
    memrelay spent nothing in user space (its system time alone). With `floor` (µs of CPU one loopback
    write+read pair costs), also the CPU ratio of a proxy doing nothing but reading each request and
    writing each reply, for the workloads that are not pipelined.

    The last column turns the workload's throughput goal into a CPU budget by the same model: the most
    CPU per request memrelay may spend for (nutcracker + its memcached) / (memrelay + its memcached) to
    reach the goal, with memcached's CPU behind memrelay as measured. A budget below zero, or below the
    pair floor, is a goal no proxy reaches on this machine."""
    by = {}
    for r in rows:
        if "rps" in r and r.get("proxy_cpu") is not None:
            by.setdefault(r["workload"], {})[r["target"]] = r
    out = ["| workload | core per request, nutcracker + memcached µs | memrelay + memcached µs | "
           "model ratio | measured ratio | ratio if memrelay cost 0 | CPU ratio | CPU ratio if no user time "
           "| CPU ratio of one read+write pair | memrelay CPU the throughput goal allows µs |",
           "|" + "---|" * 10]
    goals = {w["title"]: w.get("goal") for w in WORKLOADS}
    for wl, t in by.items():
        n, m = t.get(TARGET_TITLES["nutcracker"]), t.get(TARGET_TITLES["memrelay"])
        if not n or not m or m.get("proxy_user") is None:
            continue
        n_core, m_core = n["proxy_cpu"] + n["mc_cpu"], m["proxy_cpu"] + m["mc_cpu"]
        m_sys = m["proxy_cpu"] - m["proxy_user"]
        # Pipelined clients let a proxy read and write many requests per call: no per-request floor.
        pair_cell = "—" if floor is None or m["pipeline"] > 1 else f"{floor / n['proxy_cpu']:.2f}×"
        vs = m.get("vs_nutcracker")
        goal = goals.get(wl)
        budget_cell = "—" if not goal else f"{n_core / goal - m['mc_cpu']:.2f} for {goal:g}× (spends {m['proxy_cpu']:.2f})"
        out.append(f"| {wl} | {n['proxy_cpu']:.2f} + {n['mc_cpu']:.2f} = {n_core:.2f} "
                   f"| {m['proxy_cpu']:.2f} + {m['mc_cpu']:.2f} = {m_core:.2f} | {n_core / m_core:.2f}× "
                   f"| {'—' if vs is None else f'{vs:.2f}×'} | {n_core / m['mc_cpu']:.2f}× "
                   f"| {m['proxy_cpu'] / n['proxy_cpu']:.2f}× | {m_sys / n['proxy_cpu']:.2f}× | {pair_cell} | {budget_cell} |")
    return "\n".join(out) if len(out) > 2 else ""


# ---- instructions and system calls per request --------------------------------------------------------

# --callgrind/--syscalls without --only: the single-key gets all earlier instruction counts used.
GETS = dict(SMALL, name="gets", title="single-key gets (100 B values, 50 connections, all hits)", keys=1000,
            ratio="1:0")


def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise BenchError(f"no totals in {path}")


def profile_targets(bench, with_direct, wrap, replicated=None):
    """(title, starter) of every process profiled (--proxies); starters return (ports, measured proc).
    A replicated workload profiles memrelay twice instead: unreplicated and with `replicas: 2`, at the
    workload's thread count, so the two counts differ only by replication."""
    wanted = bench.args.proxies.split(",")
    if replicated is not None:
        threads = bench.args.memrelay_threads if replicated.get("threads2") else 1

        def memrelay_with(replicas):
            def start():
                port, proc = bench.start_memrelay(f"cg-memrelay-t{threads}-r{replicas or 1}", threads=threads,
                                                  replicas=replicas, wrap=wrap)
                return [port], proc
            return start
        if "memrelay" not in wanted:
            return []
        t = f"memrelay -t {threads}"
        return [(t, memrelay_with(None)), (f"{t} (replicas: 2)", memrelay_with(2))]

    def direct():
        ports, procs = bench.start_memcached(1, wrap=wrap)
        return ports, procs[0]

    def nutcracker():
        port, proc = bench.start_nutcracker("cg-nutcracker", wrap=wrap)
        return [port], proc

    def memrelay():
        port, proc = bench.start_memrelay("cg-memrelay", wrap=wrap)
        return [port], proc

    cases = [("memcached (1 server, direct)", "memcached", direct), ("nutcracker", "nutcracker", nutcracker),
             ("memrelay", "memrelay", memrelay)]
    return [(title, start) for title, name, start in cases
            if name in wanted and (with_direct or name != "memcached")]


def run_profiled(bench, workloads, requests, measure):
    """Runs `requests` requests of each workload through each process, `measure(proc, run)` around the
    measured part (after a warm-up); rows of (workload, process, figures, requests, error)."""
    bench.mc_ports, bench.mc = bench.start_memcached(BACKENDS)
    rows = []
    only_gets = [w["name"] for w in workloads] == ["gets"]
    plain = [w for w in workloads if not w.get("replicated")]
    groups = [(plain, profile_targets(bench, only_gets, measure.wrap))] if plain else []
    groups += [([w], profile_targets(bench, False, measure.wrap, replicated=w))
               for w in workloads if w.get("replicated")]
    for group, targets in groups:
        rows += profile_group(bench, group, targets, requests, measure)
    return rows


def profile_group(bench, workloads, targets, requests, measure):
    rows = []
    for title, start in targets:
        try:
            ports, proc = start()
        except BenchError as e:
            rows += [(w, title, None, None, str(e)) for w in workloads]
            log(f"bench: {measure.name} {title}: {e}")
            continue
        try:
            for wi, w in enumerate(workloads):
                prefix = f"p{wi:02d}:"
                try:
                    bench.run_loadgen(ports, w, ["--warmup-only", "--prefix", prefix], 600, [],
                                      f"{measure.name}/{w['name']}/{title}/warmup")
                    def run():
                        return bench.run_loadgen(ports, w, ["--no-warmup", "--prefix", prefix, "-n", str(requests)],
                                                 600, [], f"{measure.name}/{w['name']}/{title}")
                    figures, out = measure(proc, run)
                    rows.append((w, title, figures, out["requests"], None))
                    log(f"bench: {measure.name} {w['name']} {title}: {measure.show(figures, out['requests'])}")
                except (BenchError, subprocess.SubprocessError, OSError) as e:
                    rows.append((w, title, None, None, str(e)))
                    log(f"bench: {measure.name} {w['name']} {title}: {e}")
        finally:
            proc.stop(30)
    return rows


class Callgrind:
    """User-space instructions (Ir) of the whole process, zeroed after the warm-up, dumped after the run."""
    name = "callgrind"

    def __init__(self, outdir):
        self.outdir = outdir

    def wrap(self, name):
        # Uncompressed names: every dump can be read by callgrind_annotate on its own.
        return ["valgrind", "--tool=callgrind", "--quiet", "--compress-strings=no", "--compress-pos=no",
                f"--callgrind-out-file={self.outdir}/{name}.cg"]

    def __call__(self, proc, run):
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True, timeout=60)
        out = run()
        before = set(os.listdir(self.outdir))
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True, timeout=60)
        # A dump is written when the process next runs valgrind's scheduler, which can be after
        # callgrind_control returns (seen with two worker threads): wait for the file a while.
        deadline = time.monotonic() + 30
        while True:
            dumps = sorted(f for f in set(os.listdir(self.outdir)) - before if ".cg" in f)
            if dumps or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if not dumps:
            raise BenchError("callgrind wrote no dump")
        return callgrind_total(os.path.join(self.outdir, dumps[-1])), out

    @staticmethod
    def show(ir, n):
        return f"{ir:,} Ir / {n:,} requests = {ir / n:,.0f}"


PERF_SYSCALLS = ("read", "readv", "recvfrom", "recvmsg", "write", "writev", "sendto", "sendmsg", "epoll_wait",
                 "epoll_pwait", "epoll_ctl", "accept4", "futex", "clock_gettime", "getsockopt", "setsockopt")


class Syscalls:
    """System calls of every thread of the measured process, and of the memcached servers behind it,
    counted only for the measured run. With perf (the kernel's syscall tracepoints, `perf stat -p`) the
    processes run at full speed, so the counts are what an untraced run makes, batching included. Without
    perf, `strace -c -f -p`: strace slows the process down, which changes how many requests each wake-up
    finds, so those counts compare builds and proxies under the same handicap only."""
    name = "syscalls"
    wrap = None

    def __init__(self, outdir, servers, tool):
        self.outdir = outdir
        self.servers = servers  # () -> the memcached processes behind the proxy
        self.tool = tool
        self.n = 0

    def _perf(self, pids, path):
        # raw_syscalls counts every call; the named ones are what the table shows apart.
        events = ",".join(["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{c}" for c in PERF_SYSCALLS])
        return subprocess.Popen(["perf", "stat", "-x", ",", "-o", path, "-e", events,
                                 "-p", ",".join(map(str, pids))],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    @staticmethod
    def _read_perf(path):
        calls, everything = {}, 0
        with open(path) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) >= 3 and parts[0].isdigit() and parts[2].startswith("syscalls:sys_enter_"):
                    calls[parts[2][len("syscalls:sys_enter_"):]] = int(parts[0])
                elif len(parts) >= 3 and parts[0].isdigit() and parts[2] == "raw_syscalls:sys_enter":
                    everything = int(parts[0])
        # The calls not named in PERF_SYSCALLS (close, connect...), so that the counts add up to all.
        calls["(others)"] = max(0, everything - sum(calls.values()))
        return {k: v for k, v in calls.items() if v}

    @staticmethod
    def _read_strace(path):
        calls = {}
        with open(path) as f:
            for line in f:
                parts = line.split()
                # % time, seconds, usecs/call, calls, [errors], syscall
                if len(parts) >= 5 and parts[0][0].isdigit() and parts[3].isdigit() and parts[-1] != "total":
                    calls[parts[-1]] = int(parts[3])
        return calls

    def __call__(self, proc, run):
        self.n += 1
        paths, tracers = [], []
        if self.tool == "perf":
            # The proxy, and the servers apart (memcached direct: the proxy is one of them).
            direct = proc.name.startswith("memcached")
            groups = [[proc.pid]] + ([] if direct else [[p.pid for p in self.servers()]])
            for i, pids in enumerate(groups):
                paths.append(os.path.join(self.outdir, f"perf-{self.n}-{i}.txt"))
                tracers.append(self._perf(pids, paths[-1]))
        else:
            paths.append(os.path.join(self.outdir, f"strace-{self.n}.txt"))
            tracers.append(subprocess.Popen(["strace", "-c", "-f", "-q", "-o", paths[-1], "-p", str(proc.pid)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            start_new_session=True))
        try:
            time.sleep(1.0)  # attach to every thread before the load starts
            if any(t.poll() is not None for t in tracers):
                raise BenchError(f"{self.tool} could not attach (perf_event_paranoid or ptrace not permitted?)")
            out = run()
        finally:
            for t in tracers:
                if t.poll() is None:
                    t.send_signal(signal.SIGINT)
                try:
                    t.wait(30)
                except subprocess.TimeoutExpired:
                    t.kill()
                    t.wait(5)
        read = self._read_perf if self.tool == "perf" else self._read_strace
        return dict(proxy=read(paths[0]), servers=read(paths[1]) if len(paths) > 1 else None), out

    @staticmethod
    def show(fig, n):
        calls = fig["proxy"]
        total = sum(calls.values())
        top = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:5])
        srv = "" if fig["servers"] is None else f"; memcached servers {sum(fig['servers'].values()) / n:.2f}"
        return f"{total / n:.2f} syscalls per request ({top}){srv}"


def syscall_columns(calls, n):
    """Per request: all, read, write, epoll_wait, epoll_ctl, the rest (the table's column order)."""
    get = lambda *names: sum(calls.get(k, 0) for k in names)
    main = [get("read", "recvfrom", "readv", "recvmsg"), get("writev", "write", "sendmsg", "sendto"),
            get("epoll_wait", "epoll_pwait"), get("epoll_ctl")]
    total = sum(calls.values())
    return [f"{v / n:.2f}" for v in [total] + main + [total - sum(main)]]


def profile_table(rows, measure):
    if measure.name == "callgrind":
        out = ["| workload | process | Ir per request | total Ir | requests |", "|---|---|---|---|---|"]
    else:
        out = [f"System calls per request, counted by {measure.tool}"
               + (" (processes at full speed)" if measure.tool == "perf" else
                  " (which slows the traced process: see Syscalls in bench/run.py)")
               + "; the memcached columns are the servers' calls behind the proxy, added up.", "",
               "| workload | process | syscalls per request | read | writev / write | epoll_wait | epoll_ctl | other "
               "| memcached syscalls | memcached read | memcached write | memcached epoll_wait | requests |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for w, title, fig, n, err in rows:
        if fig is None:
            out.append(f"| {w['name']} | {title} | {err} |")
        elif measure.name == "callgrind":
            out.append(f"| {w['name']} | {title} | {fig / n:,.0f} | {fig:,} | {n:,} |")
        else:
            # The servers' columns: all, read, write, epoll_wait.
            srv = ["—"] * 4 if fig["servers"] is None else syscall_columns(fig["servers"], n)[:4]
            cells = [w["name"], title] + syscall_columns(fig["proxy"], n) + srv + [f"{n:,}"]
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


# ---- main --------------------------------------------------------------------------------------------

def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}"


def versions(bench):
    v = {}
    for name, argv in (("memcached", ["memcached", "-V"]), ("nutcracker", ["nutcracker", "-V"]),
                       ("memrelay", [bench.args.memrelay, "--version"])):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            v[name] = (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            v[name] = "not available"
    return v


def perf_counts_syscalls():
    """Can perf count this machine's syscall tracepoints (installed, permitted, tracefs mounted)?"""
    if not shutil.which("perf"):
        return False
    try:
        r = subprocess.run(["perf", "stat", "-x", ",", "-e", "syscalls:sys_enter_read", "--", "true"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0 and "syscalls:sys_enter_read" in r.stderr and "not supported" not in r.stderr


def build_loadgen(args):
    if args.loadgen:
        return args.loadgen
    build = os.path.join(ROOT, "build-bench")
    if not os.path.exists(os.path.join(build, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", ROOT, "-B", build], check=True, stdout=subprocess.DEVNULL)
    r = subprocess.run(["cmake", "--build", build, "--target", "loadgen", "pairfloor", "-j2"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError("building loadgen failed:\n" + r.stdout[-3000:] + r.stderr[-3000:])
    return os.path.join(build, "bench", "loadgen")


def measure_pair_floor(bench, size=130):
    """µs of CPU one loopback write+read pair of `size` bytes (default: a small reply's) costs on the
    servers' CPU (bench/pairfloor.c): no proxy answering unpipelined requests can spend less per request."""
    exe = os.path.join(os.path.dirname(bench.loadgen), "pairfloor")
    if not os.path.exists(exe):
        return None
    argv = [exe, "100000", "5", str(size)]
    if bench.server_cpu is not None:
        argv = ["taskset", "-c", str(bench.server_cpu)] + argv
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        return json.loads(r.stdout.strip().splitlines()[-1])["cpu_us_median"] if r.returncode == 0 else None
    except (subprocess.SubprocessError, ValueError, IndexError, KeyError):
        return None


def on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="5 rounds x 5 s (default: 3 rounds x 3 s)")
    ap.add_argument("--rounds", type=int, help="rounds per workload")
    ap.add_argument("--seconds", type=float, help="measured seconds per run")
    ap.add_argument("--only", help="comma-separated workloads: " + ",".join(w["name"] for w in WORKLOADS))
    ap.add_argument("--callgrind", action="store_true", help="instructions per request instead of throughput")
    ap.add_argument("--syscalls", action="store_true",
                    help="system calls per request (perf's syscall tracepoints, else strace -c) instead of throughput")
    ap.add_argument("--syscalls-tool", choices=("perf", "strace"), help="what --syscalls counts with (perf if it can)")
    ap.add_argument("--requests", type=int, default=20000,
                    help="requests per workload and proxy in --callgrind and --syscalls mode (20000)")
    ap.add_argument("--proxies", default="memcached,nutcracker,memrelay",
                    help="what --callgrind and --syscalls measure (memcached only on the plain gets)")
    ap.add_argument("--memrelay", default=os.path.join(ROOT, "build", "memrelay"), help="memrelay binary")
    ap.add_argument("--loadgen", help="loadgen binary (default: build it in build-bench/)")
    ap.add_argument("--out", help="results file (markdown; raw JSON next to it)")
    ap.add_argument("--gen-cpu", default="0", help="CPU list (taskset -c) for the load generator (0)")
    ap.add_argument("--server-cpu", default="1", help="CPU list (taskset -c) for memcached and the proxies (1)")
    ap.add_argument("--memcached-cpu", help="CPU list for memcached alone (default: --server-cpu)")
    ap.add_argument("--loadgen-threads", type=int, default=1, help="loadgen -T (1)")
    ap.add_argument("--memrelay-threads", type=int, default=2,
                    help="worker threads of the extra memrelay target on the pipelined workload (2)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    ap.add_argument("--keep-logs", action="store_true", help="keep the servers' configs and logs")
    args = ap.parse_args()
    TARGET_TITLES["memrelay-t2"] = f"memrelay -t {args.memrelay_threads}"

    rounds = args.rounds or (5 if args.full else 3)
    seconds = args.seconds or (5.0 if args.full else 3.0)
    profile = args.callgrind or args.syscalls
    # Profiled replicated workloads compare memrelay with itself (profile_targets); the binary ones need a
    # direct memcached target, which the profiled runs only start for the plain gets.
    workloads = [workload(w) for w in WORKLOADS if not (profile and w.get("binary"))]
    if profile:
        workloads = [GETS] + workloads
    if profile and not args.only:
        workloads = [GETS]
    elif args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {w["name"] for w in workloads}
        if unknown:
            ap.error(f"unknown workloads: {', '.join(sorted(unknown))}")
        workloads = [w for w in workloads if w["name"] in wanted]
    for tool in ("memcached",) + (("taskset",) if not args.no_pin else ()):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is not installed")

    bench = Bench(args)
    signal.signal(signal.SIGTERM, on_sigterm)
    started = datetime.datetime.now().astimezone()
    command = " ".join(["bench/run.py"] + sys.argv[1:])
    try:
        bench.loadgen = build_loadgen(args)
        raise_nofile(max(w["conns"] for w in workloads) * (BACKENDS + 2) + 4096)
        if profile:
            if args.callgrind and not (shutil.which("valgrind") and shutil.which("callgrind_control")):
                raise BenchError("valgrind is not installed (apt-get install valgrind)")
            tool = None
            if args.syscalls:
                tool = args.syscalls_tool or ("perf" if perf_counts_syscalls() else "strace")
                if not shutil.which(tool):
                    raise BenchError(f"{tool} is not installed (apt-get install {'linux-perf' if tool == 'perf' else tool})")
            measure = Callgrind(bench.dir) if args.callgrind else Syscalls(bench.dir, lambda: bench.mc, tool)
            rows = run_profiled(bench, workloads, args.requests, measure)
            body = profile_table(rows, measure)
            raw = {measure.name: [dict(workload=w["name"], process=t, figures=f, requests=n, error=e)
                                  for w, t, f, n, e in rows]}
        else:
            start_targets(bench, workloads)
            pins = "no pinning" if bench.gen_cpu is None else (
                f"loadgen on CPU {bench.gen_cpu}, proxies on CPU {bench.server_cpu}, memcached on CPU {bench.mc_cpu}")
            log(f"bench: {len(workloads)} workloads x {rounds} rounds x {seconds:g} s, {pins}")
            results = run_rounds(bench, workloads, rounds, seconds)
            rows = summarize(results, workloads, bench)
            body = markdown_table(rows)
            floor = measure_pair_floor(bench)
            floor_large = measure_pair_floor(bench, 16500) if any(w["value"] > 1000 for w in workloads) else None
            core = shared_core_table(rows, floor) if bench.gen_cpu is not None else ""
            if core:
                body += "\n\nWhere the servers' core goes (see docs/benchmarks.md):\n\n" + core
            if floor is not None:
                large = "" if floor_large is None else f"; one of 16,500 bytes (a 16 KiB value) {floor_large:.2f} µs"
                body += (f"\n\nOne loopback write+read pair of 130 bytes costs {floor:.2f} µs of CPU on the servers' "
                         f"CPU (bench/pairfloor, median of 5 x 100,000, measured after the rounds){large}.")
            raw = dict(results=results, summary=rows, unavailable=bench.unavailable, pair_floor_us=floor,
                       pair_floor_16k_us=floor_large)
    except KeyboardInterrupt:
        log(f"bench: interrupted; stopping everything started (logs in {bench.dir})")
        return 130
    except BenchError as e:
        log(f"bench: {e} (logs in {bench.dir})")
        return 1
    finally:
        bench.stop_all()

    info = dict(date=started.strftime("%Y-%m-%d %H:%M %Z"), machine=machine(), command=command,
                rounds=rounds, seconds=seconds, versions=versions(bench),
                pinning="none" if bench.gen_cpu is None else f"loadgen on CPU {bench.gen_cpu}, "
                f"proxies on CPU {bench.server_cpu}, memcached on CPU {bench.mc_cpu}")
    header = [f"- date: {info['date']}", f"- machine: {info['machine']}", f"- command: `{command}`",
              f"- pinning: {info['pinning']}",
              "- versions: " + "; ".join(f"{k}: {v}" for k, v in info["versions"].items())]
    if not profile:
        header.insert(3, f"- rounds: {rounds} x {seconds:g} s per workload and target, interleaved")
    text = "\n".join(header) + "\n\n" + body + "\n"
    print(text)

    out = args.out
    if not out:
        d = os.path.join(ROOT, "build-bench", "bench-results")
        os.makedirs(d, exist_ok=True)
        kind = "callgrind" if args.callgrind else "syscalls" if args.syscalls else "results"
        out = os.path.join(d, f"{kind}-{started.strftime('%Y%m%d-%H%M%S')}.md")
    with open(out, "w") as f:
        f.write(text)
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump(dict(info=info, **raw), f, indent=1)
    log(f"bench: written to {out} (raw results: {os.path.splitext(out)[0]}.json)")
    if args.keep_logs:
        log(f"bench: configs and logs in {bench.dir}")
    else:
        shutil.rmtree(bench.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
