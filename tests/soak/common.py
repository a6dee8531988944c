"""Process helpers shared by soak.py and bad_backends.py.

Plain standard library (Debian's /usr/bin/python3). Everything listens on
127.0.0.1, every wait is bounded, and processes are stopped by their PID.
"""

import os
import shutil
import signal
import socket
import subprocess
import time

MEMCACHED_BIN = shutil.which("memcached") or "/usr/bin/memcached"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_accepting(port, proc=None, timeout=10.0):
    """True once 127.0.0.1:port accepts a connection (False if proc exits or time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def stop_process(proc, grace=5.0):
    """SIGCONT + SIGTERM, then SIGKILL after `grace` seconds; always reaped. Returns the exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)
        except ProcessLookupError:
            pass
    return proc.returncode


def rss_kib(pid):
    """VmRSS of a process in KiB, or None when it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def all_threads_stopped(pid):
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                    return False
    except OSError:
        return False
    return True


class Memcached:
    """One real memcached on a loopback port that survives kill/restart."""

    def __init__(self, workdir, memory_mb=64):
        self.workdir = workdir
        self.memory_mb = memory_mb
        self.port = None
        self.proc = None
        self.stopped = False

    def start(self, tries=50):
        for _ in range(tries):
            port = self.port or free_port()
            log = open(os.path.join(self.workdir, "memcached-%d.log" % port), "ab")
            cmd = [MEMCACHED_BIN, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-u", "root",
                   "-m", str(self.memory_mb), "-c", "4096", "-t", "1"]
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            if wait_accepting(port, proc, timeout=5.0):
                self.proc, self.port, self.stopped = proc, port, False
                return self
            stop_process(proc)
            time.sleep(0.1)  # the port may still be held for a moment after a kill
        raise RuntimeError("memcached would not start on port %s" % self.port)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.running:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.stopped = False

    def pause(self):
        if self.running:
            os.kill(self.proc.pid, signal.SIGSTOP)
            deadline = time.monotonic() + 5
            while not all_threads_stopped(self.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.005)
            self.stopped = True

    def resume(self):
        if self.running:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.stopped = False

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=5)


class Memrelay:
    """memrelay with a YAML configuration written into workdir; stderr kept in a file."""

    def __init__(self, binary, workdir, config_text, port):
        self.binary = binary
        self.port = port
        self.config_path = os.path.join(workdir, "memrelay.yaml")
        self.stderr_path = os.path.join(workdir, "memrelay.stderr")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.proc = None

    def start(self):
        err = open(self.stderr_path, "ab")
        env = dict(os.environ)
        # Sanitizer builds: report leaks at exit, abort on the first error.
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.proc = subprocess.Popen([self.binary, "-c", self.config_path], stdout=err, stderr=err,
                                     stdin=subprocess.DEVNULL, env=env)
        err.close()
        if not wait_accepting(self.port, self.proc, timeout=15.0):
            raise RuntimeError("memrelay would not start:\n" + self.stderr())
        return self

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def sanitizer_report(self):
        """The first sanitizer report in memrelay's stderr, or None."""
        text = self.stderr()
        for marker in SANITIZER_MARKERS:
            i = text.find(marker)
            if i >= 0:
                start = text.rfind("\n", 0, max(0, i - 200)) + 1
                return text[start:i + 3000]
        return None

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        return stop_process(self.proc, grace=10.0)


def pool_config(listen_port, server_ports, threads=1, timeout_ms=1000, extra=None):
    lines = ["memrelay:", "  threads: %d" % threads, "soak:",
             "  listen: 127.0.0.1:%d" % listen_port, "  hash: fnv1a_64", "  distribution: ketama",
             "  timeout: %d" % timeout_ms]
    for k, v in (extra or {}).items():
        lines.append("  %s: %s" % (k, v))
    lines.append("  servers:")
    for i, p in enumerate(server_ports):
        lines.append("    - 127.0.0.1:%d:1 s%d" % (p, i))
    return "\n".join(lines) + "\n"
