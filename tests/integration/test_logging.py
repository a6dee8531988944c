"""Logging through the binary: the line format, memrelay.log_file / log_level
and --log-file / -v, SIGUSR1 reopening the file after logrotate moved it, and
the rate limit that turns a flood of identical warnings into a bounded number
of lines plus a note of how many were suppressed."""
import os
import re
import signal
import subprocess
import time

import pytest

from harness import Conn, free_port, sanitizer_report, wait_accepting, wait_for

pytestmark = pytest.mark.needs_memrelay

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (ERROR|WARN |INFO |DEBUG|TRACE) \S")

# From include/memrelay/log.h.
BURST = 10
WINDOW_S = 5.0


def _read(path):
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


class _Proc:
    """memrelay with a hand-written memrelay section, stderr to a file."""

    def __init__(self, memrelay_bin, tmp_path, mc, memrelay_section="", args=()):
        self.port = free_port()
        text = ""
        if memrelay_section:
            text += "memrelay:\n" + memrelay_section
        text += "alpha:\n  listen: 127.0.0.1:%d\n  servers:\n    - %s\n" % (self.port, mc.spec())
        self.config = str(tmp_path / "memrelay.yml")
        with open(self.config, "w") as f:
            f.write(text)
        self.stderr_path = str(tmp_path / "stderr")
        err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([memrelay_bin, "-c", self.config] + list(args), stdout=err, stderr=err,
                                     stdin=subprocess.DEVNULL)
        err.close()
        wait_accepting(("127.0.0.1", self.port), self.proc)

    def stderr(self):
        return _read(self.stderr_path)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def start(memrelay_bin, memcached_factory, tmp_path):
    procs = []

    def make(memrelay_section="", args=()):
        p = _Proc(memrelay_bin, tmp_path, memcached_factory(), memrelay_section, args)
        procs.append(p)
        return p
    yield make
    for p in procs:
        p.stop()
    for p in procs:
        report = sanitizer_report(p.stderr())
        assert report is None, report


def _ping(port):
    with Conn(("127.0.0.1", port), timeout=5) as c:
        assert c.request(b"version\r\n").startswith(b"VERSION ")


def test_every_line_has_a_utc_millisecond_timestamp_and_a_level(start):
    p = start()
    assert wait_for(lambda: "listening on" in p.stderr(), 5)
    lines = p.stderr().splitlines()
    assert lines, "memrelay logged nothing at start-up"
    for line in lines:
        assert LINE.match(line), line


def test_log_file_from_the_config_receives_the_lines_and_stderr_stays_empty(start, tmp_path):
    log = str(tmp_path / "memrelay.log")
    p = start("  log_file: %s\n" % log)
    assert wait_for(lambda: "pool alpha listening on" in _read(log), 5), _read(log)
    assert p.stderr() == ""
    for line in _read(log).splitlines():
        assert LINE.match(line), line
    assert (os.stat(log).st_mode & 0o777) & 0o007 == 0, "the log file must not be world-readable"


def test_log_file_flag_overrides_the_config(start, tmp_path):
    from_config, from_flag = str(tmp_path / "config.log"), str(tmp_path / "flag.log")
    start("  log_file: %s\n" % from_config, args=["--log-file", from_flag])
    assert wait_for(lambda: "listening on" in _read(from_flag), 5)
    assert not os.path.exists(from_config)


def test_log_level_from_the_config_and_verbose_flag_overrides_it(start, tmp_path):
    quiet = start("  log_level: warn\n")
    _ping(quiet.port)
    quiet.stop()
    assert "INFO" not in quiet.stderr(), quiet.stderr()

    loud = start("  log_level: error\n", args=["-v"])
    assert wait_for(lambda: "INFO  pool alpha listening on" in loud.stderr(), 5), loud.stderr()


def test_sigusr1_after_a_rename_writes_new_lines_to_a_new_file_at_the_old_path(start, tmp_path):
    log, rotated = str(tmp_path / "memrelay.log"), str(tmp_path / "memrelay.log.1")
    p = start("  log_file: %s\n" % log)
    assert wait_for(lambda: "listening on" in _read(log), 5)
    os.rename(log, rotated)
    p.signal(signal.SIGUSR1)
    assert wait_for(lambda: "reopened" in _read(log), 5), "no new file at %s" % log
    _ping(p.port)  # still serving
    p.signal(signal.SIGTERM)
    assert p.proc.wait(timeout=10) == 0
    new, old = _read(log), _read(rotated)
    assert "draining" in new, new
    assert "draining" not in old and "reopened" not in old, old
    assert "listening on" in old and "listening on" not in new


def test_a_failed_reopen_keeps_the_old_file_and_logs_why(start, tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    log, moved = str(logdir / "memrelay.log"), str(tmp_path / "moved.log")
    p = start("  log_file: %s\n" % log)
    assert wait_for(lambda: "listening on" in _read(log), 5)
    os.rename(log, moved)
    os.rmdir(str(logdir))  # the path cannot be created again
    p.signal(signal.SIGUSR1)
    assert wait_for(lambda: "cannot reopen log file" in _read(moved), 5), _read(moved)
    _ping(p.port)
    p.signal(signal.SIGTERM)
    assert p.proc.wait(timeout=10) == 0
    assert "draining" in _read(moved), "lines go on to the old file"


def test_sigusr1_without_a_log_file_is_harmless(start):
    p = start()
    p.signal(signal.SIGUSR1)
    _ping(p.port)
    assert p.proc.poll() is None


def test_an_unopenable_log_file_stops_start_up_with_a_message(memrelay_bin, memcached_factory, tmp_path):
    mc = memcached_factory()
    config = tmp_path / "memrelay.yml"
    config.write_text("memrelay:\n  log_file: /nonexistent-dir/memrelay.log\nalpha:\n  listen: 127.0.0.1:%d\n"
                      "  servers:\n    - %s\n" % (free_port(), mc.spec()))
    r = subprocess.run([memrelay_bin, "-c", str(config)], capture_output=True, timeout=10)
    assert r.returncode == 1
    assert b"cannot open log file /nonexistent-dir/memrelay.log" in r.stderr


FLOOD_LINE = "WARN  multi-get: 1 of 2 servers failed"
NOTE = re.compile(r"(\d+) similar messages? suppressed \([^ ]*emit\.c:\d+: multi-get: ")


def _flood_accounting(text):
    """(lines written, sum of suppressed counts) for the multi-get warning."""
    written = sum(1 for line in text.splitlines() if FLOOD_LINE in line)
    noted = sum(int(m.group(1)) for m in NOTE.finditer(text))
    return written, noted


@pytest.mark.time_limit(90)
def test_a_flood_of_identical_warnings_is_bounded_and_counted(cluster):
    c = cluster(weights=(1, 1))
    live_key, dead_key = c.keys_on(0, 1)[0], c.keys_on(1, 1)[0]
    with c.conn() as conn:
        assert conn.request(b"set " + live_key + b" 0 0 1\r\nv\r\n") == b"STORED\r\n"
    c.backends[1].kill()

    requests = 600
    want = b"VALUE " + live_key + b" 0 1\r\nv\r\nEND\r\n"
    t0 = time.monotonic()
    with c.conn(timeout=10) as conn:
        for _ in range(requests):
            assert conn.request(b"get " + live_key + b" " + dead_key + b"\r\n") == want
    flood_s = time.monotonic() - t0

    # Every warning is either a line or part of a note; the last note comes
    # when the window ends (checked once a second).
    assert wait_for(lambda: sum(_flood_accounting(c.relay.stderr())) >= requests, WINDOW_S + 10), \
        _flood_accounting(c.relay.stderr())
    written, noted = _flood_accounting(c.relay.stderr())
    assert written + noted == requests
    assert noted > 0, "nothing was suppressed"
    windows = int(flood_s / WINDOW_S) + 2
    assert written <= BURST * windows, "%d lines in %.1f s" % (written, flood_s)
