"""The command line: --version, --help, --check-config, signals."""

import os
import re
import signal
import subprocess
import time

import pytest

from harness import Conn, free_port, wait_accepting

SOURCE_DIR = os.environ.get("MEMRELAY_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def _run(binary, *args, timeout=10):
    res = subprocess.run([binary] + list(args), capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return res.returncode, (res.stdout + res.stderr).decode("utf-8", "replace")


def _project_version():
    with open(os.path.join(SOURCE_DIR, "CMakeLists.txt")) as f:
        m = re.search(r"project\(memrelay\s+VERSION\s+([0-9.]+)", f.read())
    return m.group(1) if m else None


GOOD = """\
memrelay:
  threads: 1
alpha:
  listen: 127.0.0.1:{port}
  hash: fnv1a_64
  distribution: ketama
  timeout: 1000
  servers:
    - 127.0.0.1:{p1}:1
    - 127.0.0.1:{p2}:2 second
  routes:
    - {{prefix: "sess:", pool: sessions}}
sessions:
  servers:
    - 127.0.0.1:{p3}:1
"""


def _write(tmp_path, text, name="memrelay.yml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_version_flag_exits_0(memrelay_bin):
    rc, out = _run(memrelay_bin, "--version")
    assert rc == 0, out
    version = _project_version()
    assert "memrelay" in out and (version is None or version in out), out


def test_help_flag_exits_0_and_lists_options(memrelay_bin):
    rc, out = _run(memrelay_bin, "--help")
    assert rc == 0, out
    for opt in ("-c", "--check-config", "-t", "-v"):
        assert opt in out, (opt, out)


def test_unknown_flag_exits_nonzero(memrelay_bin):
    rc, out = _run(memrelay_bin, "--no-such-flag")
    assert rc != 0 and out.strip(), out


def test_check_config_good_exits_0_and_prints_pools(memrelay_bin, tmp_path):
    path = _write(tmp_path, GOOD.format(port=free_port(), p1=free_port(), p2=free_port(), p3=free_port()))
    rc, out = _run(memrelay_bin, "-c", path, "--check-config")
    assert rc == 0, out
    assert "alpha" in out and "sessions" in out, out
    assert "sess:" in out, "the route is not shown: " + out


def test_check_config_does_not_listen(memrelay_bin, tmp_path):
    port = free_port()
    path = _write(tmp_path, GOOD.format(port=port, p1=free_port(), p2=free_port(), p3=free_port()))
    rc, out = _run(memrelay_bin, "--check-config", "-c", path)
    assert rc == 0, out
    with pytest.raises(OSError):
        Conn(("127.0.0.1", port), timeout=0.5).close()


def test_check_config_unknown_key_exits_1_with_position(memrelay_bin, tmp_path):
    text = "alpha:\n  listen: 127.0.0.1:%d\n  servers:\n    - 127.0.0.1:%d:1\n  bogus_key: 1\n" % (
        free_port(), free_port())
    path = _write(tmp_path, text)
    rc, out = _run(memrelay_bin, "-c", path, "--check-config")
    assert rc == 1, out
    assert "%s:5:3" % path in out, out
    assert "bogus_key" in out, out


def test_check_config_bad_server_line_exits_1_with_position(memrelay_bin, tmp_path):
    text = "alpha:\n  listen: 127.0.0.1:%d\n  servers:\n    - 127.0.0.1:notaport:1\n" % free_port()
    path = _write(tmp_path, text)
    rc, out = _run(memrelay_bin, "-c", path, "--check-config")
    assert rc == 1, out
    assert "%s:4:7" % path in out, out


def test_check_config_yaml_syntax_error_exits_1_with_position(memrelay_bin, tmp_path):
    path = _write(tmp_path, "alpha:\n  listen: [127.0.0.1:1\n  servers: {\n")
    rc, out = _run(memrelay_bin, "-c", path, "--check-config")
    assert rc == 1, out
    assert re.search(re.escape(path) + r":\d+:\d+", out), out


def test_check_config_unknown_route_pool_exits_1_with_position(memrelay_bin, tmp_path):
    text = ("alpha:\n  listen: 127.0.0.1:%d\n  servers:\n    - 127.0.0.1:%d:1\n"
            "  routes:\n    - {prefix: \"s:\", pool: nowhere}\n" % (free_port(), free_port()))
    path = _write(tmp_path, text)
    rc, out = _run(memrelay_bin, "-c", path, "--check-config")
    assert rc == 1, out
    assert re.search(re.escape(path) + r":6:\d+", out), out


def test_missing_config_file_exits_1(memrelay_bin, tmp_path):
    rc, out = _run(memrelay_bin, "-c", str(tmp_path / "absent.yml"), "--check-config")
    assert rc == 1, out
    assert "absent.yml" in out, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_process(memrelay_bin, memcached_factory, tmp_path, sig):
    mc = memcached_factory()
    port = free_port()
    path = _write(tmp_path, "alpha:\n  listen: 127.0.0.1:%d\n  servers:\n    - %s\n" % (port, mc.spec()))
    err = open(str(tmp_path / "stderr"), "wb")
    proc = subprocess.Popen([memrelay_bin, "-c", path], stdout=err, stderr=err, stdin=subprocess.DEVNULL)
    err.close()
    try:
        wait_accepting(("127.0.0.1", port), proc)
        with Conn(("127.0.0.1", port)) as c:
            assert c.request(b"set k 0 0 1\r\nx\r\n") == b"STORED\r\n"
        proc.send_signal(sig)
        t0 = time.monotonic()
        rc = proc.wait(timeout=5)
        assert time.monotonic() - t0 < 3.0
        assert rc == 0, "exit status %d; stderr: %s" % (rc, open(str(tmp_path / "stderr")).read())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_threads_flag_serves_many_connections(memrelay_bin, memcached_factory, relay_factory):
    from harness import Pool
    mc = memcached_factory()
    relay = relay_factory({"alpha": Pool([mc])}, threads=4)
    conns = [relay.conn() for _ in range(16)]
    try:
        for i, c in enumerate(conns):
            assert c.request(b"set t%d 0 0 1\r\n%d\r\n" % (i, i % 10)) == b"STORED\r\n"
        for i, c in enumerate(conns):
            assert c.request(b"get t%d\r\n" % i) == b"VALUE t%d 0 1\r\n%d\r\nEND\r\n" % (i, i % 10)
    finally:
        for c in conns:
            c.close()
