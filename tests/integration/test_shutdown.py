"""Graceful shutdown: SIGTERM makes the listeners refuse new connections at
once; connections already open are read and answered until each is quiet
(nothing unread, nothing owed), up to memrelay.shutdown_timeout; then exit 0.

Nothing here asserts an elapsed-time upper bound (CI is a shared, loaded
machine): what ended a drain is proved by memrelay's log and by what the
stuck client got (no reply: the backend timeout, far longer than any wait
here, never fired), with only lower bounds on time, which a slow machine
cannot break. Every wait is bounded."""
import signal
import socket
import subprocess
import time

import pytest

from harness import Conn, free_port, wait_accepting


def _start(memrelay_bin, tmp_path, mc, shutdown_timeout=None, timeout=5000, pool_extra=""):
    port = free_port()
    text = ""
    if shutdown_timeout is not None:
        text += "memrelay:\n  shutdown_timeout: %d\n" % shutdown_timeout
    text += "alpha:\n  listen: 127.0.0.1:%d\n  timeout: %d\n  server_failure_limit: 1000\n%s  servers:\n    - %s\n" % (
        port, timeout, pool_extra, mc.spec())
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


def _wait_draining(tmp_path, proc, timeout=5.0):
    """Until memrelay logs that the drain began (the signal is handled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "draining" in open(str(tmp_path / "stderr")).read():
            return
        assert proc.poll() is None, "memrelay exited"
        time.sleep(0.01)
    raise AssertionError("no drain logged")


def test_sigterm_answers_requests_sent_during_the_drain(memrelay_bin, memcached_factory, tmp_path):
    """A connection that still owes replies is read on: what the client sent
    after the signal (before it saw a close) is answered too."""
    mc = memcached_factory()
    proc, port = _start(memrelay_bin, tmp_path, mc)
    try:
        with Conn(("127.0.0.1", port), timeout=10) as c:
            mc.pause()
            try:
                c.send(b"get a\r\n")
                time.sleep(0.2)
                proc.send_signal(signal.SIGTERM)
                _wait_draining(tmp_path, proc)
                c.send(b"get b\r\n")
            finally:
                mc.resume()
            assert c.recv_replies(2, timeout=5) == b"END\r\nEND\r\n"
            assert c.wait_closed(5), "not closed once quiet"
        assert proc.wait(timeout=5) == 0
    finally:
        _stop(proc)


def test_sigterm_answers_2000_pipelined_requests_and_refuses_new_connections(memrelay_bin, memcached_factory,
                                                                               tmp_path):
    mc = memcached_factory()
    # A small queue limit: memrelay stops reading the client after 100
    # requests (backpressure), so most of the batch is still unread in the
    # socket when the signal comes, and the drain must read it.
    proc, port = _start(memrelay_bin, tmp_path, mc, pool_extra="  client_queue_limit: 100\n")
    try:
        with Conn(("127.0.0.1", port), timeout=10) as c:
            batch = b"".join(b"set drain%d 0 0 5\r\nhello\r\n" % i for i in range(2000))
            mc.pause()
            try:
                c.send(batch)
                time.sleep(0.2)
                proc.send_signal(signal.SIGTERM)
                _wait_draining(tmp_path, proc)
                # The listener refuses at once (no connection left hanging in a backlog).
                with pytest.raises(ConnectionRefusedError):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
            finally:
                mc.resume()
            got = c.recv_replies(2000, timeout=10)
            assert got == b"STORED\r\n" * 2000
            assert c.wait_closed(5)
        assert proc.wait(timeout=5) == 0
        assert mc.keys_held([b"drain0", b"drain1999"]) == {b"drain0", b"drain1999"}
    finally:
        _stop(proc)


def test_sigterm_closes_idle_connections_at_once(memrelay_bin, memcached_factory, tmp_path):
    mc = memcached_factory()
    proc, port = _start(memrelay_bin, tmp_path, mc, shutdown_timeout=30000)
    try:
        with Conn(("127.0.0.1", port), timeout=10) as idle:
            assert idle.request(b"version\r\n").startswith(b"VERSION ")
            proc.send_signal(signal.SIGTERM)
            assert idle.wait_closed(5)
        assert proc.wait(timeout=5) == 0
    finally:
        _stop(proc)


def test_shutdown_timeout_bounds_the_drain(memrelay_bin, memcached_factory, tmp_path):
    mc = memcached_factory()
    # The backend timeout (120 s) is far beyond the hang guard below (30 s):
    # a drain that waited for the stuck request to time out, or forever,
    # fails the bounded wait; one cut short by shutdown_timeout exits 0.
    proc, port = _start(memrelay_bin, tmp_path, mc, shutdown_timeout=500, timeout=120000)
    try:
        with Conn(("127.0.0.1", port), timeout=10) as c:
            mc.pause()
            try:
                c.send(b"get stuck\r\n")
                time.sleep(0.2)
                t0 = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=30) == 0
                took = time.monotonic() - t0
                # Not before shutdown_timeout: the clock started before the
                # signal and memrelay's timer fires late, never early.
                assert took >= 0.5 - 0.02, took
                # The stuck request was never answered (its timeout did not
                # fire): the connection just closed.
                assert c.wait_closed(5)
                assert c.buf == b"", c.buf
            finally:
                mc.resume()
        err = open(str(tmp_path / "stderr")).read()
        assert "shutdown_timeout reached" in err, err
        assert "shutting down now" not in err, err
    finally:
        _stop(proc)


def test_second_signal_exits_at_once(memrelay_bin, memcached_factory, tmp_path):
    mc = memcached_factory()
    # shutdown_timeout (120 s) and the backend timeout (120 s) are far beyond
    # the hang guard below (30 s): only the second signal can end the drain
    # within it, and the log and the client say that is what ended it.
    proc, port = _start(memrelay_bin, tmp_path, mc, shutdown_timeout=120000, timeout=120000)
    try:
        with Conn(("127.0.0.1", port), timeout=10) as c:
            mc.pause()
            try:
                c.send(b"get stuck\r\n")
                time.sleep(0.2)
                proc.send_signal(signal.SIGTERM)
                _wait_draining(tmp_path, proc)
                assert proc.poll() is None, "exited on the first signal with a request in flight"
                proc.send_signal(signal.SIGINT)
                assert proc.wait(timeout=30) == 0
                assert c.wait_closed(5)
                assert c.buf == b"", c.buf
            finally:
                mc.resume()
        err = open(str(tmp_path / "stderr")).read()
        assert "signal %d: shutting down now" % signal.SIGINT in err, err
        assert "shutdown_timeout reached" not in err, err
    finally:
        _stop(proc)
