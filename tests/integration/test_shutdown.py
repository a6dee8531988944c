"""Graceful shutdown: SIGTERM stops accepting and reading, answers every
request already read (up to memrelay.shutdown_timeout), then exits 0."""
import signal
import socket
import subprocess
import time

import pytest

from harness import Conn, free_port, wait_accepting


def _start(memrelay_bin, tmp_path, mc, shutdown_timeout=None, timeout=5000):
    port = free_port()
    text = ""
    if shutdown_timeout is not None:
        text += "memrelay:\n  shutdown_timeout: %d\n" % shutdown_timeout
    text += "alpha:\n  listen: 127.0.0.1:%d\n  timeout: %d\n  server_failure_limit: 1000\n  servers:\n    - %s\n" % (
        port, timeout, mc.spec())
    path = tmp_path / "memrelay.yml"
    path.write_text(text)
    err = open(str(tmp_path / "stderr"), "wb")
    proc = subprocess.Popen([memrelay_bin, "-c", str(path)], stdout=err, stderr=err, stdin=subprocess.DEVNULL)
    err.close()
    wait_accepting(("127.0.0.1", port), proc)
    return proc, port


def _stop(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_sigterm_answers_requests_in_flight_then_exits_0(memrelay_bin, memcached_factory, tmp_path):
    mc = memcached_factory()
    proc, port = _start(memrelay_bin, tmp_path, mc)
    try:
        with Conn(("127.0.0.1", port), timeout=10) as c:
            assert c.request(b"set k 0 0 2\r\nv1\r\n") == b"STORED\r\n"
            mc.pause()  # requests now wait on the backend
            try:
                c.send(b"get k\r\nset k2 0 0 1\r\nx\r\nget k2\r\n")
                time.sleep(0.2)
                proc.send_signal(signal.SIGTERM)
                time.sleep(0.3)
                # Draining: no new connections are accepted.
                with pytest.raises(OSError):
                    s = socket.create_connection(("127.0.0.1", port), timeout=1)
                    s.settimeout(1)
                    if s.recv(1) == b"":
                        raise OSError("closed")
                assert proc.poll() is None, "exited with requests still in flight"
            finally:
                mc.resume()
            want = b"VALUE k 0 2\r\nv1\r\nEND\r\nSTORED\r\nVALUE k2 0 1\r\nx\r\nEND\r\n"
            assert c.recv_replies(3, timeout=5) == want
        assert proc.wait(timeout=5) == 0
    finally:
        _stop(proc)


def test_sigterm_stops_reading_new_requests(memrelay_bin, memcached_factory, tmp_path):
    mc = memcached_factory()
    proc, port = _start(memrelay_bin, tmp_path, mc)
    try:
        with Conn(("127.0.0.1", port), timeout=10) as c:
            mc.pause()
            try:
                c.send(b"get a\r\n")
                time.sleep(0.2)
                proc.send_signal(signal.SIGTERM)
                time.sleep(0.3)
                c.send(b"get b\r\n")  # read after the signal: never answered
            finally:
                mc.resume()
            assert c.recv_replies(1, timeout=5) == b"END\r\n"
            assert c.recv_idle(idle=0.5, timeout=1.0) == b""
        assert proc.wait(timeout=5) == 0
    finally:
        _stop(proc)


def test_shutdown_timeout_bounds_the_drain(memrelay_bin, memcached_factory, tmp_path):
    mc = memcached_factory()
    proc, port = _start(memrelay_bin, tmp_path, mc, shutdown_timeout=500, timeout=10000)
    try:
        with Conn(("127.0.0.1", port), timeout=10) as c:
            mc.pause()
            try:
                c.send(b"get stuck\r\n")
                time.sleep(0.2)
                t0 = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=5) == 0
                took = time.monotonic() - t0
                assert 0.4 <= took < 2.0, took
            finally:
                mc.resume()
        assert "shutdown_timeout reached" in open(str(tmp_path / "stderr")).read()
    finally:
        _stop(proc)


def test_second_signal_exits_at_once(memrelay_bin, memcached_factory, tmp_path):
    mc = memcached_factory()
    proc, port = _start(memrelay_bin, tmp_path, mc, shutdown_timeout=30000, timeout=20000)
    try:
        with Conn(("127.0.0.1", port), timeout=10) as c:
            mc.pause()
            try:
                c.send(b"get stuck\r\n")
                time.sleep(0.2)
                proc.send_signal(signal.SIGTERM)
                time.sleep(0.2)
                t0 = time.monotonic()
                proc.send_signal(signal.SIGINT)
                assert proc.wait(timeout=5) == 0
                assert time.monotonic() - t0 < 2.0
            finally:
                mc.resume()
    finally:
        _stop(proc)
