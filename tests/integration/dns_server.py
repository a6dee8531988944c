"""A real DNS server for the DNS tests: Debian's dnsmasq on a loopback UDP
port, answering only the records a test gives it.

The command it runs, to reproduce a test by hand (PORT, HOSTS and the SRV
lines are the test's):

    dnsmasq --keep-in-foreground --no-resolv --no-hosts --conf-file=/dev/null \
        --listen-address=127.0.0.1 --bind-interfaces --port=PORT --user=root \
        --pid-file=DIR/pid --local-ttl=TTL --addn-hosts=HOSTS --log-queries --log-facility=- \
        --srv-host=_memcache._tcp.pool.test,mc0.pool.test,11211,0,1 ...

HOSTS is an /etc/hosts-style file (`127.0.0.2 mc0.pool.test`); dnsmasq reads
it again on SIGHUP, so set_hosts() changes A records without a restart.
SRV records come from the command line, so set_srv() restarts dnsmasq on
the same port. pause() (SIGSTOP) makes it stop answering; SlowDns is a
relay in front of it that answers late (a fault dnsmasq cannot produce).
"""
import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time

from harness import HarnessError

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


def free_udp_port():
    """A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise HarnessError("no free port for dnsmasq")


def _query(port, name, qtype=1, timeout=0.5):
    """One raw DNS query; True if any answer came back."""
    qid = os.urandom(2)
    q = qid + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + qtype.to_bytes(2, "big") + b"\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, ("127.0.0.1", port))
        try:
            data, _ = s.recvfrom(4096)
        except socket.timeout:
            return False
    return data[:2] == qid


class Dnsmasq:
    def __init__(self, workdir, ttl=2):
        if not os.access(DNSMASQ, os.X_OK):
            raise HarnessError("dnsmasq is missing (scripts/setup-deps.sh test installs dnsmasq-base)")
        self.workdir = workdir
        self.ttl = ttl
        self.port = free_udp_port()
        self.hosts_path = os.path.join(workdir, "hosts")
        self.hosts = {}
        self.srv = []
        self.proc = None
        self.log_path = os.path.join(workdir, "dnsmasq.log")

    @property
    def server(self):
        """The memrelay.dns_servers entry."""
        return "127.0.0.1:%d" % self.port

    def _write_hosts(self):
        with open(self.hosts_path + ".tmp", "w") as f:
            f.write("127.0.0.9 ready.dns.test\n")
            for name, ips in sorted(self.hosts.items()):
                for ip in ips:
                    f.write("%s %s\n" % (ip, name))
        os.replace(self.hosts_path + ".tmp", self.hosts_path)

    def start(self, hosts=None, srv=None):
        """hosts: {name: [ip, ...]}; srv: [(service, target, port, priority, weight)]."""
        if hosts is not None:
            self.hosts = dict(hosts)
        if srv is not None:
            self.srv = list(srv)
        self._write_hosts()
        cmd = [DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
               "--listen-address=127.0.0.1", "--bind-interfaces", "--port=%d" % self.port, "--user=root",
               "--pid-file=%s" % os.path.join(self.workdir, "pid"), "--local-ttl=%d" % self.ttl,
               "--addn-hosts=%s" % self.hosts_path, "--log-queries", "--log-facility=-"]
        for service, target, port, prio, weight in self.srv:
            cmd.append("--srv-host=%s,%s,%d,%d,%d" % (service, target, port, prio, weight))
        deadline = time.monotonic() + 10
        # A restart on the same port can find it still taken for a moment.
        while time.monotonic() < deadline:
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _query(self.port, "ready.dns.test"):
                    return self
                time.sleep(0.05)
            if self.proc.poll() is None:
                break
            if "Address already in use" not in self.log():
                raise HarnessError("dnsmasq exited: %s" % self.log())
            time.sleep(0.1)
        raise HarnessError("dnsmasq did not answer on %s: %s" % (self.server, self.log()))

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""

    def queries(self, name):
        """How many queries for `name` dnsmasq has logged (since the first start)."""
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return 0
        return text.count(" %s from " % name)

    def set_hosts(self, hosts):
        """New A records, read by dnsmasq on SIGHUP (no restart)."""
        self.hosts = dict(hosts)
        self._write_hosts()
        os.kill(self.proc.pid, signal.SIGHUP)
        time.sleep(0.1)

    def set_srv(self, srv):
        """New SRV records: dnsmasq takes them only at start."""
        self.stop()
        self.start(srv=srv)

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class SlowDns:
    """A UDP relay that forwards each query to `upstream_port` and sends its
    answer back: at once, or after hold() only when release() is called (a
    DNS server that does not answer for as long as the test needs, however
    slow the machine)."""

    def __init__(self, upstream_port):
        self.upstream = ("127.0.0.1", upstream_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.lock = threading.Lock()
        self.gate = None        # threading.Event while holding (hold/release)
        self.held = 0           # queries held, not yet answered
        self.held_answered = 0  # queries that were held and then answered
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port

    def hold(self):
        """From now on no query is answered until release()."""
        self.gate = threading.Event()

    def release(self):
        if self.gate is not None:
            self.gate.set()

    def _answer(self, data, client):
        gate = self.gate  # as it was when the query came
        held = gate is not None
        with self.lock:
            self.held += held
        try:
            if held:
                gate.wait(120)  # bounded: a test that forgot release() still ends
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up:
                up.settimeout(2)
                up.sendto(data, self.upstream)
                try:
                    reply, _ = up.recvfrom(4096)
                except socket.timeout:
                    return
            if not self.stopping:
                self.sock.sendto(reply, client)
                with self.lock:
                    self.held_answered += held
        finally:
            with self.lock:
                self.held -= held

    def _run(self):
        while not self.stopping:
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            try:
                data, client = self.sock.recvfrom(4096)
            except OSError:
                return
            threading.Thread(target=self._answer, args=(data, client), daemon=True).start()

    def stop(self):
        self.stopping = True
        self.release()
        self.thread.join(timeout=2)
        self.sock.close()
