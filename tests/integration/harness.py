"""Process and socket helpers for memrelay's integration tests.

Everything here is plain standard library so the suite runs on Debian's
/usr/bin/python3 with nothing but python3-pytest (and python3-pymemcache for
the real-client tests).

- Memcached: one real memcached process on a free loopback port.
- Relay: one memrelay process (or, in DIRECT mode, a stand-in) built from a
  small description of pools, written out as YAML.
- Conn: a raw-socket client that sends bytes (all at once or dribbled) and
  reads until a byte count, a terminator, a reply count, a close or a quiet
  period, always under a deadline.
- Reply helpers: split a reply stream into whole replies, mask the numbers
  that legitimately differ between two runs (CAS ids, clocks).

Every wait here is bounded; nothing kills processes by name.
"""

import errno
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

MEMCACHED_BIN = shutil.which("memcached") or "/usr/bin/memcached"
NUTCRACKER_BIN = shutil.which("nutcracker") or "/usr/sbin/nutcracker"

# How the suite runs (see conftest.py):
#   MEMRELAY_TEST_DIRECT unset or "0": start the real memrelay binary.
#   MEMRELAY_TEST_DIRECT=1: the "proxy" of a one-server pool is that server
#       itself; tests that need a real multi-server proxy are skipped.
#   MEMRELAY_TEST_DIRECT=nutcracker: multi-server pools are served by
#       twemproxy instead (a development aid to check the harness: placement,
#       multi-gets and pipelining must pass there; memrelay-only behaviour
#       will not).
_MODE = os.environ.get("MEMRELAY_TEST_DIRECT", "0").strip().lower()
DIRECT = _MODE not in ("", "0", "no", "false")
STANDIN_NUTCRACKER = _MODE == "nutcracker"

START_TIMEOUT = 10.0  # seconds for a process to start listening


class HarnessError(Exception):
    """A process would not start or stop; the message says which and why."""


# --------------------------------------------------------------------------
# ports and readiness


# Ports free_port has handed out in this process. A port handed out but not
# yet bound (a RefusedPort, a listener about to start) looks free to the
# kernel, which may pick it again: a memrelay then listened on the port of
# its own "refused" server and refused to start (requests would loop back).
_handed_out = set()


def free_port(host="127.0.0.1"):
    """An ephemeral port that was free a moment ago (the kernel picks it),
    never one this process was given before."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(1000):  # ~28,000 ephemeral ports; a test run uses a few thousand
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise HarnessError("no ephemeral port left that this test run has not handed out already")


def ipv6_loopback_available():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def connect(addr, timeout=5.0):
    """A connected socket to addr: (host, port) or a unix socket path."""
    if isinstance(addr, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    elif ":" in addr[0]:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(addr)
    except BaseException:
        s.close()
        raise
    if not isinstance(addr, str):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def wait_accepting(addr, proc=None, timeout=START_TIMEOUT):
    """Wait until addr accepts a connection; fail early if proc exits."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise HarnessError("process exited with status %s before %s accepted" % (proc.returncode, addr))
        try:
            connect(addr, timeout=0.5).close()
            return
        except OSError as e:
            last = e
        time.sleep(0.02)
    raise HarnessError("%s did not accept within %.0fs (%s)" % (addr, timeout, last))


def addr_text(addr):
    if isinstance(addr, str):
        return addr
    host, port = addr
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def _stop_process(proc, grace=3.0):
    """SIGTERM (resuming it first if stopped), then SIGKILL; always reaped."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)
    except ProcessLookupError:
        pass


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def sanitizer_report(text, limit=6000):
    """The first AddressSanitizer, LeakSanitizer or UBSan report in a process's stderr, or None."""
    hits = [i for i in (text.find(m) for m in SANITIZER_MARKERS) if i >= 0]
    if not hits:
        return None
    start = text.rfind("\n", 0, max(0, min(hits) - 300)) + 1
    return text[start:start + limit]


# --------------------------------------------------------------------------
# memcached


class Memcached:
    """A real memcached on 127.0.0.1; start(), kill(), pause(), restart()..."""

    def __init__(self, workdir, port=None, extra_args=(), memory_mb=64, host="127.0.0.1"):
        self.host = host  # another loopback address (127.0.0.2, ...) stands for another machine
        self.workdir = workdir
        self.port = port
        self.extra_args = list(extra_args)
        self.memory_mb = memory_mb
        self.proc = None
        self.log_path = None

    @property
    def addr(self):
        return (self.host, self.port)

    def spec(self, weight=1, name=None):
        """The server line for a pool config."""
        s = "%s:%d:%d" % (self.host, self.port, weight)
        return s + " " + name if name else s

    def ident(self, name=None):
        """The ketama identity of this server (port is never 11211 here)."""
        return name or "%s:%d" % (self.host, self.port)

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        tries = 1 if self.port else 5
        last = None
        for _ in range(tries):
            port = self.port or free_port(self.host)
            self.log_path = os.path.join(self.workdir, "memcached-%s-%d.log" % (self.host, port))
            log = open(self.log_path, "ab")
            cmd = [MEMCACHED_BIN, "-l", self.host, "-p", str(port), "-U", "0", "-u", "root",
                   "-m", str(self.memory_mb), "-c", "4096", "-t", "2"] + self.extra_args
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            try:
                wait_accepting((self.host, port), proc)
            except HarnessError as e:
                last = e
                _stop_process(proc)
                continue
            self.proc, self.port = proc, port
            return self
        raise HarnessError("memcached would not start: %s\n%s" % (last, self.log()))

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL, as a crash would; the port becomes free at once."""
        if self.running:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def _all_threads_stopped(self):
        task_dir = "/proc/%d/task" % self.proc.pid
        try:
            for tid in os.listdir(task_dir):
                with open("%s/%s/stat" % (task_dir, tid)) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                if state not in ("T", "t"):
                    return False
        except OSError:
            return False
        return True

    def pause(self):
        """SIGSTOP, returning only once every thread has stopped (kill() returns before that)."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        if not wait_for(self._all_threads_stopped, 5.0, 0.005):
            raise HarnessError("memcached %d did not stop" % self.proc.pid)

    def resume(self):
        if self.running:
            os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self):
        """Start again on the same port (after kill())."""
        self.kill()
        self.proc = None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                return self.start()
            except HarnessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self):
        """Teardown: SIGKILL (memcached takes a second to exit on SIGTERM; nothing to save)."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill()

    # direct access to the backend, bypassing the proxy

    def conn(self, timeout=5.0):
        return Conn(self.addr, timeout=timeout)

    def flush(self):
        with self.conn() as c:
            c.send(b"flush_all\r\n")
            reply = c.recv_until_term(b"\r\n")
            assert reply == b"OK\r\n", reply

    def get_raw(self, keys):
        """{key: (flags, value)} for the keys this server holds."""
        out = {}
        keys = list(keys)
        with self.conn(timeout=10.0) as c:
            for i in range(0, len(keys), 100):
                chunk = keys[i:i + 100]
                c.send(b"get " + b" ".join(chunk) + b"\r\n")
                reply = c.recv_replies(1)
                for k, flags, _cas, value in parse_values(reply):
                    out[k] = (flags, value)
        return out

    def keys_held(self, keys):
        return set(self.get_raw(keys))


# --------------------------------------------------------------------------
# the proxy under test


class Pool:
    """How a test describes one pool; turned into YAML by Relay."""

    def __init__(self, servers, listen="tcp", **settings):
        # servers: list of (Memcached, weight, name-or-None) or Memcached
        self.servers = [s if isinstance(s, tuple) else (s, 1, None) for s in servers]
        self.servers = [s + (None,) * (3 - len(s)) for s in self.servers]
        self.listen = listen  # "tcp", "tcp6", ("unix", path, mode) or None (route target only)
        self.settings = settings
        self.routes = settings.pop("routes", [])


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return '"%s"' % str(v).replace("\\", "\\\\").replace('"', '\\"')


def render_config(pools, listen_addrs, threads=1, memrelay_only=True, process_settings=None):
    """YAML text for {name: Pool}; listen_addrs gives each listening pool's address.

    process_settings: more keys for the `memrelay:` section (e.g. admin_listen)."""
    lines = []
    if memrelay_only:
        lines += ["memrelay:", "  threads: %d" % threads]
        for k, v in (process_settings or {}).items():
            lines.append("  %s: %s" % (k, _yaml_scalar(v)))
    for name, pool in pools.items():
        lines.append("%s:" % name)
        if pool.listen is not None:
            a = listen_addrs[name]
            if isinstance(a, str):
                mode = pool.listen[2] if isinstance(pool.listen, tuple) and len(pool.listen) > 2 else None
                lines.append("  listen: %s" % (a + (" " + mode if mode else "")))
            else:
                # "[::1]:port" must be quoted: unquoted, YAML reads a flow sequence.
                text = addr_text(a)
                lines.append("  listen: %s" % (_yaml_scalar(text) if text.startswith("[") else text))
        settings = {"hash": "fnv1a_64", "distribution": "ketama", "timeout": 1000,
                    "server_connections": 1}
        if memrelay_only:
            settings["multiget_errors"] = "miss"
        settings.update(pool.settings)
        for k, v in settings.items():
            if not memrelay_only and k in ("multiget_errors", "item_size_max"):
                continue
            lines.append("  %s: %s" % (k, _yaml_scalar(v)))
        lines.append("  servers:")
        for mc, weight, sname in pool.servers:
            lines.append("    - %s" % mc.spec(weight, sname))
        if pool.routes and memrelay_only:
            lines.append("  routes:")
            for prefix, target in pool.routes:
                lines.append("    - {prefix: %s, pool: %s}" % (_yaml_scalar(prefix), target))
    return "\n".join(lines) + "\n"


class Relay:
    """memrelay (or its DIRECT-mode stand-in) serving a set of pools."""

    def __init__(self, binary, workdir, pools, threads=1, extra_args=(), process_settings=None):
        self.binary = binary
        self.workdir = workdir
        self.pools = pools
        self.threads = threads
        self.extra_args = list(extra_args)
        self.process_settings = dict(process_settings or {})
        self.proc = None
        self.listen = {}
        self.config_path = os.path.join(workdir, "memrelay.yml")
        self.stderr_path = os.path.join(workdir, "memrelay.stderr")
        self.kind = "memrelay"

    # addresses

    def addr(self, pool=None):
        if pool is None:
            pool = next(n for n, p in self.pools.items() if p.listen is not None)
        return self.listen[pool]

    def conn(self, pool=None, timeout=5.0):
        return Conn(self.addr(pool), timeout=timeout)

    # life cycle

    def _pick_listen(self):
        for name, pool in self.pools.items():
            if pool.listen is None:
                continue
            if pool.listen == "tcp":
                self.listen[name] = ("127.0.0.1", free_port())
            elif pool.listen == "tcp6":
                self.listen[name] = ("::1", free_port("::1"))
            elif isinstance(pool.listen, tuple) and pool.listen[0] == "unix":
                self.listen[name] = pool.listen[1]
            else:
                raise ValueError("bad listen %r" % (pool.listen,))

    def start(self):
        if DIRECT:
            return self._start_direct()
        last = None
        for _ in range(3):  # a listen port taken in the meantime: pick again
            self._pick_listen()
            with open(self.config_path, "w") as f:
                f.write(render_config(self.pools, self.listen, self.threads,
                                      process_settings=self.process_settings))
            err = open(self.stderr_path, "ab")
            cmd = [self.binary, "-c", self.config_path, "-t", str(self.threads)] + self.extra_args
            self.proc = subprocess.Popen(cmd, stdout=err, stderr=err, stdin=subprocess.DEVNULL)
            err.close()
            try:
                for a in self.listen.values():
                    wait_accepting(a, self.proc)
                return self
            except HarnessError as e:
                last = e
                _stop_process(self.proc)
                if "in use" not in self.stderr().lower():
                    break
        raise HarnessError("memrelay would not start: %s\n--- config ---\n%s--- stderr ---\n%s"
                           % (last, open(self.config_path).read(), self.stderr()))

    def _start_direct(self):
        for name, pool in self.pools.items():
            if pool.listen is None:
                continue
            if pool.routes:
                raise Skip("routes need memrelay (MEMRELAY_TEST_DIRECT is set)")
            if STANDIN_NUTCRACKER:
                self.kind = "nutcracker"
            elif len(pool.servers) == 1:
                if pool.listen != "tcp":
                    raise Skip("non-TCP listeners need memrelay (MEMRELAY_TEST_DIRECT is set)")
                self.listen[name] = pool.servers[0][0].addr
                self.kind = "direct"
            else:
                raise Skip("a %d-server pool needs memrelay (MEMRELAY_TEST_DIRECT=1)" % len(pool.servers))
        if self.kind == "nutcracker":
            return self._start_nutcracker()
        return self

    def _start_nutcracker(self):
        self._pick_listen()
        for name, a in self.listen.items():
            if isinstance(a, str) or ":" in a[0]:
                raise Skip("nutcracker stand-in: TCP/IPv4 listeners only")
        with open(self.config_path, "w") as f:
            f.write(render_config(self.pools, self.listen, memrelay_only=False))
        err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(
            [NUTCRACKER_BIN, "-c", self.config_path, "-v", "4", "-s", str(free_port()), "-a", "127.0.0.1"],
            stdout=err, stderr=err, stdin=subprocess.DEVNULL)
        err.close()
        for a in self.listen.values():
            wait_accepting(a, self.proc)
        return self

    def reconfigure(self, pools, sighup=True, path=None):
        """Write a new config for {name: Pool} (new listening pools get free
        addresses; kept ones keep theirs), atomically (a rename, as editors
        and config managers do), then SIGHUP memrelay unless told not to."""
        self.pools = pools
        for name, pool in pools.items():
            if pool.listen is not None and name not in self.listen:
                if pool.listen == "tcp":
                    self.listen[name] = ("127.0.0.1", free_port())
                elif isinstance(pool.listen, tuple) and pool.listen[0] == "unix":
                    self.listen[name] = pool.listen[1]
        text = render_config(pools, {n: a for n, a in self.listen.items() if n in pools}, self.threads,
                             process_settings=self.process_settings)
        target = path or self.config_path
        tmp = target + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, target)
        if sighup:
            self.proc.send_signal(signal.SIGHUP)
        return text

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    @property
    def running(self):
        return self.proc is None or self.proc.poll() is None

    def assert_running(self):
        assert self.running, "memrelay exited with status %s" % self.proc.returncode

    def stop(self):
        """SIGTERM; returns the exit status (None in DIRECT mode).

        Raises HarnessError, once, if memrelay's stderr holds a sanitizer report
        (an ASan/UBSan build reports leaks at exit), so the test fails with it."""
        if self.proc is None:
            return None
        _stop_process(self.proc)
        report = sanitizer_report(self.stderr())
        if report is not None and not getattr(self, "_sanitizer_reported", False):
            self._sanitizer_reported = True
            raise HarnessError("%s's stderr has a sanitizer report (%s):\n%s"
                               % (self.kind, self.stderr_path, report))
        return self.proc.returncode


class Skip(Exception):
    """Raised by the harness when a test cannot run in this mode; conftest turns it into a skip."""


# --------------------------------------------------------------------------
# raw socket client


class Conn:
    """A raw ASCII-protocol connection with bounded reads.

    Received bytes accumulate in self.buf; the recv_* methods return (and
    consume) a prefix of it. self.closed becomes True when the peer closed or
    reset the connection.
    """

    def __init__(self, addr, timeout=5.0):
        self.addr = addr
        self.timeout = timeout
        self.sock = connect(addr, timeout)
        self.sock.setblocking(False)
        self.buf = b""
        self.closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def fileno(self):
        return self.sock.fileno()

    def _pump(self, out, deadline):
        """Send `out` while reading whatever arrives; returns when all is sent."""
        view = memoryview(out)
        while view:
            if time.monotonic() > deadline:
                raise TimeoutError("send timed out with %d bytes unsent" % len(view))
            r, w, _ = select.select([self.sock], [self.sock], [], max(0.0, deadline - time.monotonic()))
            if r:
                self._read_some()
            if w:
                try:
                    n = self.sock.send(view[:262144])
                    view = view[n:]
                except (BlockingIOError, InterruptedError):
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    self.closed = True
                    return

    def send(self, data, chunk=None, delay=0.0, timeout=None):
        """Send data; with chunk=N send N bytes at a time, sleeping `delay` between."""
        deadline = time.monotonic() + (timeout or max(self.timeout, 10.0))
        if not chunk:
            self._pump(data, deadline)
            return
        for i in range(0, len(data), chunk):
            self._pump(data[i:i + chunk], deadline)
            if delay:
                time.sleep(delay)

    def _read_some(self):
        try:
            d = self.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return True
        except (ConnectionResetError, ConnectionAbortedError):
            self.closed = True
            return False
        if not d:
            self.closed = True
            return False
        self.buf += d
        return True

    def _wait(self, done, timeout, idle=None):
        """Read until done(buf) is true, the peer closes, or time runs out.

        With idle set, also stop once nothing arrived for `idle` seconds.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not done(self.buf) and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([self.sock], [], [], min(left, idle) if idle else left)
            if not r:
                if idle:
                    return False
                continue
            self._read_some()
        return done(self.buf)

    def _take(self, n):
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_exact(self, n, timeout=None):
        """Exactly n bytes, or fewer if the deadline passed or the peer closed."""
        self._wait(lambda b: len(b) >= n, timeout)
        return self._take(n)

    def recv_until_term(self, term, timeout=None):
        """Up to and including the first `term`, or everything read by the deadline."""
        self._wait(lambda b: term in b, timeout)
        i = self.buf.find(term)
        return self._take(i + len(term) if i >= 0 else len(self.buf))

    def recv_until_endswith(self, term, timeout=None):
        """Read until the buffer ends with `term` (a sentinel reply)."""
        self._wait(lambda b: b.endswith(term), timeout)
        return self._take(len(self.buf))

    def recv_replies(self, n, timeout=None):
        """The first n whole replies (see split_replies), or all read by the deadline."""
        def enough(b):
            return count_replies(b) >= n
        self._wait(enough, timeout)
        end = reply_offsets(self.buf, n)
        return self._take(end if end is not None else len(self.buf))

    def recv_idle(self, idle=0.2, timeout=None):
        """Everything that arrives until `idle` seconds pass quietly."""
        self._wait(lambda b: False, timeout, idle=idle)
        return self._take(len(self.buf))

    def wait_closed(self, timeout=1.0):
        """True if the peer closes within timeout (bytes read meanwhile stay in buf)."""
        self._wait(lambda b: False, timeout)
        return self.closed

    def request(self, data, replies=1, timeout=None):
        self.send(data)
        return self.recv_replies(replies, timeout)


# --------------------------------------------------------------------------
# reply parsing


_LINE_WITH_DATA = re.compile(rb"^(VALUE \S+ \d+ (\d+)(?: \d+)?|VA (\d+)(?: .*)?)$")


def _reply_ends(buf):
    """Yield the end offset of each whole reply in buf.

    A reply is one line, except: VALUE lines (each with its data block) up to
    END form one retrieval reply; STAT lines up to END form one stats reply;
    "VA <n> ..." carries an n-byte data block.
    """
    pos = 0
    n = len(buf)
    while pos < n:
        eol = buf.find(b"\n", pos)
        if eol < 0:
            return
        line = buf[pos:eol].rstrip(b"\r")
        nxt = eol + 1
        m = _LINE_WITH_DATA.match(line)
        if m:
            nxt += int(m.group(2) or m.group(3)) + 2
            if nxt > n:
                return
            pos = nxt
            if line.startswith(b"VA "):
                yield pos
            continue
        pos = nxt
        if line.startswith(b"STAT ") or line.startswith(b"ITEM "):
            continue
        # END closes a retrieval or stats reply; any other line is a reply of
        # its own (an error after VALUE lines also ends that reply).
        yield pos


def count_replies(buf):
    return sum(1 for _ in _reply_ends(buf))


def reply_offsets(buf, n):
    """Offset just past the n-th whole reply, or None."""
    if n == 0:
        return 0
    for i, end in enumerate(_reply_ends(buf), 1):
        if i == n:
            return end
    return None


def split_replies(buf):
    """([reply bytes, ...], leftover)"""
    out, pos = [], 0
    for end in _reply_ends(buf):
        out.append(buf[pos:end])
        pos = end
    return out, buf[pos:]


def parse_values(reply):
    """[(key, flags, cas-or-None, value)] from a get/gets/gat reply."""
    out, pos = [], 0
    while True:
        eol = reply.find(b"\r\n", pos)
        if eol < 0:
            break
        parts = reply[pos:eol].split(b" ")
        if parts[0] != b"VALUE":
            break
        size = int(parts[3])
        value = reply[eol + 2:eol + 2 + size]
        out.append((parts[1], int(parts[2]), int(parts[4]) if len(parts) > 4 else None, value))
        pos = eol + 2 + size + 2
    return out


_META_CODES = (b"VA", b"HD", b"EN", b"NS", b"EX", b"NF", b"MN")
_VOLATILE_META_FLAG = re.compile(rb"^(c|l|t)(\d+)$")
_VOLATILE_ME = re.compile(rb"\b(cas|la|exp)=(\d+)")


def mask_volatile(data, numeric_padding=False):
    """Replace numbers that legitimately differ between two runs of the same bytes.

    CAS ids (VALUE's 5th token, meta `c` flags, `me` cas=), seconds of clocks
    (meta `l`/`t` flags, `me` la=/exp=) become placeholders; everything else,
    including the structure, stays byte for byte. Data blocks are skipped by
    their declared length, so values are never rewritten, except with
    numeric_padding: a value of digits and trailing spaces loses the spaces
    (memcached pads a shrinking decr result in place only when no one else
    holds the item, which under pipelining depends on timing).
    """
    out, pos, n = [], 0, len(data)
    while pos < n:
        eol = data.find(b"\n", pos)
        if eol < 0:
            out.append(data[pos:])
            break
        raw = data[pos:eol + 1]
        line = raw.rstrip(b"\r\n")
        ending = raw[len(line):]
        toks = line.split(b" ")
        size = None
        if toks[0] == b"VALUE" and len(toks) in (4, 5) and toks[3].isdigit():
            size = int(toks[3])
            if len(toks) == 5:
                toks[4] = b"<cas>"
        elif toks[0] in _META_CODES:
            if toks[0] == b"VA" and len(toks) > 1 and toks[1].isdigit():
                size = int(toks[1])
            toks = [toks[0]] + [_VOLATILE_META_FLAG.sub(rb"\1<n>", t) for t in toks[1:]]
        elif toks[0] == b"ME":
            toks = [_VOLATILE_ME.sub(rb"\1=<n>", t) for t in toks]
        block = data[eol + 1:eol + 1 + size + 2] if size is not None else b""
        if size is not None and numeric_padding:
            value = block[:size]
            stripped = value.rstrip(b" ")
            if stripped != value and stripped.isdigit():
                toks[3 if toks[0] == b"VALUE" else 1] = b"%d" % len(stripped)
                block = stripped + block[size:]
        out.append(b" ".join(toks) + ending)
        pos = eol + 1
        if size is not None:
            out.append(block)
            pos += size + 2
    return b"".join(out)


# --------------------------------------------------------------------------
# ketama oracle (pure python; conftest also offers libmemcached through ctypes)


def fnv1a_64(key):
    """twemproxy/libmemcached fnv1a_64: 32-bit state, bytes sign-extended."""
    h = 0x84222325
    for b in key:
        sb = b - 256 if b >= 0x80 else b
        h ^= sb & 0xFFFFFFFF
        h = (h * 0x1B3) & 0xFFFFFFFF
    return h


def md5_hash(key):
    import hashlib
    d = hashlib.md5(key).digest()
    return int.from_bytes(d[0:4], "little")


def _f32(x):
    import struct
    return struct.unpack("f", struct.pack("f", x))[0]


class Ketama:
    """A ketama ring bit-exact with libmemcached KETAMA_WEIGHTED / twemproxy.

    servers: [(ident bytes-or-str, weight)], in config order.
    """

    def __init__(self, servers, hash_fn=fnv1a_64):
        import bisect
        import hashlib
        self._bisect = bisect.bisect_left
        self.hash_fn = hash_fn
        self.n = len(servers)
        total = sum(w for _, w in servers)
        points = []
        for idx, (ident, weight) in enumerate(servers):
            if isinstance(ident, str):
                ident = ident.encode()
            pct = _f32(_f32(float(weight)) / _f32(float(total)))
            v = _f32(pct * 160.0)
            v = _f32(v / 4.0)
            v = _f32(v * _f32(float(self.n)))
            import math
            pps = int(math.floor(v + 1e-10)) * 4
            for i in range(pps // 4):
                d = hashlib.md5(ident + b"-" + str(i).encode()).digest()
                for k in range(4):
                    points.append((int.from_bytes(d[4 * k:4 * k + 4], "little"), idx))
        points.sort()
        self.points = points
        self.values = [p for p, _ in points]

    def server_for(self, key):
        if isinstance(key, str):
            key = key.encode()
        if self.n == 1:
            return 0
        h = self.hash_fn(key)
        i = self._bisect(self.values, h)
        if i == len(self.values):
            i = 0
        return self.points[i][1]


class LibmemcachedOracle:
    """libmemcached's own placement (ctypes on libmemcached.so.11).

    Enum values from /usr/include/libmemcached-1.0/types/{behavior,hash}.h.
    KETAMA_WEIGHTED must be set before HASH: it resets the key hash to MD5.
    """

    BEHAVIOR_HASH = 2
    BEHAVIOR_KETAMA_WEIGHTED = 16
    HASH = {"md5": 1, "fnv1a_64": 4}

    def __init__(self, servers, hash_name="fnv1a_64"):
        import ctypes
        import ctypes.util
        path = None
        for cand in ("libmemcached.so.11", ctypes.util.find_library("memcached")):
            if not cand:
                continue
            try:
                self.lib = ctypes.CDLL(cand)
                path = cand
                break
            except OSError:
                continue
        if path is None:
            raise OSError("libmemcached not found")
        lib = self.lib
        lib.memcached_create.restype = ctypes.c_void_p
        lib.memcached_create.argtypes = [ctypes.c_void_p]
        lib.memcached_free.argtypes = [ctypes.c_void_p]
        lib.memcached_behavior_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64]
        lib.memcached_server_add_with_weight.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint16,
                                                          ctypes.c_uint32]
        lib.memcached_generate_hash.restype = ctypes.c_uint32
        lib.memcached_generate_hash.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        self.st = lib.memcached_create(None)
        assert self.st
        assert lib.memcached_behavior_set(self.st, self.BEHAVIOR_KETAMA_WEIGHTED, 1) == 0
        assert lib.memcached_behavior_set(self.st, self.BEHAVIOR_HASH, self.HASH[hash_name]) == 0
        for host, port, weight in servers:
            rc = lib.memcached_server_add_with_weight(self.st, host.encode(), port, weight)
            assert rc == 0, "memcached_server_add_with_weight(%s, %d) = %d" % (host, port, rc)

    def server_for(self, key):
        if isinstance(key, str):
            key = key.encode()
        return self.lib.memcached_generate_hash(self.st, key, len(key))

    def close(self):
        if self.st:
            self.lib.memcached_free(self.st)
            self.st = None


def store_many(conn, items, flags=0, batch=200):
    """Pipelined sets of {key: value} through conn; asserts every STORED."""
    items = list(items.items()) if isinstance(items, dict) else list(items)
    for i in range(0, len(items), batch):
        chunk = items[i:i + batch]
        conn.send(b"".join(b"set %s %d 0 %d\r\n%s\r\n" % (k, flags, len(v), v) for k, v in chunk))
        reply = conn.recv_replies(len(chunk), timeout=10)
        assert reply == b"STORED\r\n" * len(chunk), reply[:300]


def tempdir(prefix="memrelay-it-"):
    return tempfile.mkdtemp(prefix=prefix)


def wait_for(pred, timeout, interval=0.05):
    """Poll pred() until true or timeout; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def stats_servers(relay, pool=None):
    """memrelay's `stats servers` as {server spec: {field: value}} (ints where
    they parse), for one pool's rows or (pool=None) every pool's."""
    with relay.conn(timeout=5) as c:
        c.send(b"stats servers\r\n")
        reply = c.recv_until_endswith(b"END\r\n", timeout=5)
    assert reply.endswith(b"END\r\n"), reply[-300:]
    out = {}
    for line in reply.split(b"\r\n"):
        if not line.startswith(b"STAT "):
            continue
        name, _, value = line[5:].decode().partition(" ")
        row_pool, _, rest = name.partition(":")
        if pool is not None and row_pool != pool:
            continue
        spec, _, field = rest.rpartition(":")
        out.setdefault(spec, {})[field] = int(value) if re.fullmatch(r"-?\d+", value) else value
    return out


def server_timeouts(relay, servers, pool=None):
    """{spec: timeouts} for these servers (Memcached objects): how many requests
    memrelay answered SERVER_ERROR timeout for each, counted at the deadline."""
    rows = stats_servers(relay, pool)
    return {mc.spec(): rows[mc.spec()]["timeouts"] for mc in servers}


def is_conn_refused(e):
    return isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED


def split_units(buf):
    """[(reply index, unit)]: each line is a unit, a VALUE/VA line together with its data block."""
    units, pos, reply = [], 0, 0
    ends = set(_reply_ends(buf))
    n = len(buf)
    while pos < n:
        eol = buf.find(b"\n", pos)
        if eol < 0:
            units.append((reply, buf[pos:]))
            break
        nxt = eol + 1
        m = _LINE_WITH_DATA.match(buf[pos:eol].rstrip(b"\r"))
        if m:
            nxt = min(n, nxt + int(m.group(2) or m.group(3)) + 2)
        units.append((reply, buf[pos:nxt]))
        pos = nxt
        if pos in ends:
            reply += 1
    return units


def describe_difference(got, want, context=150):
    """None if equal, else a short description of where two reply streams part."""
    if got == want:
        return None
    g, w = split_units(got), split_units(want)
    for i, (a, b) in enumerate(zip(g, w)):
        if a[1] != b[1]:
            return "line/value #%d (in reply #%d) differs:\n  got  %r\n  want %r" % (
                i, b[0], a[1][:context], b[1][:context])
    if len(g) > len(w):
        return "%d surplus lines after the expected %d bytes, first: %r" % (len(g) - len(w), len(want), g[len(w)][1][:context])
    return "%d lines missing (got %d of %d bytes), first missing: %r" % (
        len(w) - len(g), len(got), len(want), w[len(g)][1][:context])


def assert_same(got, want, what="reply"):
    """assert got == want, reporting the first differing reply instead of a huge diff."""
    d = describe_difference(got, want)
    if d is not None:
        raise AssertionError("%s differs: %s" % (what, d))
