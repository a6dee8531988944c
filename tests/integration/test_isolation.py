"""Isolation and bounds (issue 18, docs/reliability.md "Isolation"): no client
or backend can hurt the others.

- Authentication cannot be brute-forced on one connection: the first
  failures are answered at once, later ones delay the connection, the fifth
  closes it; each failure is logged (rate-limited) with the peer's address
  and counted in `stats` and /metrics.
- A reply must fit its request: a backend that answers with the wrong kind of
  reply (a value for a delete, a second reply, a key not asked for) has its
  connection closed, its requests fail with SERVER_ERROR naming the cause,
  and nothing of the bad reply reaches a client (scripted fake backend: real
  memcached never does this).

Nothing here asserts on elapsed time; every wait is bounded.
"""

import os
import socket
import threading

import pytest

import harness
from harness import Conn, Pool, wait_for

pytestmark = pytest.mark.needs_memrelay

CREDS = b"alice:secret\n"
AUTH = b"set auth 0 0 12\r\nalice secret\r\n"
WRONG = b"set a 0 0 11\r\nalice wrong\r\n"
FAILURE = b"CLIENT_ERROR authentication failure\r\n"


@pytest.fixture
def creds(tmp_path):
    path = tmp_path / "memrelay.creds"
    path.write_bytes(CREDS)
    os.chmod(path, 0o600)
    return str(path)


def stats_of(addr):
    with Conn(addr) as c:
        c.send(AUTH)
        assert c.recv_until_term(b"\r\n") == b"STORED\r\n"
        c.send(b"stats\r\n")
        text = c.recv_until_term(b"END\r\n")
    out = {}
    for line in text.split(b"\r\n"):
        parts = line.split(b" ")
        if len(parts) == 3 and parts[0] == b"STAT":
            out[parts[1].decode()] = parts[2].decode()
    return out


def metrics_text(port):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


# --------------------------------------------------------------------------
# 5. authentication


def test_pipelined_wrong_guesses_get_five_answers_then_the_connection_closes(factory, creds):
    backend = factory.memcached()
    port = harness.free_port()
    relay = factory.relay({"p": Pool([backend], auth_file=creds)}, extra_args=["--admin", "127.0.0.1:%d" % port])
    harness.wait_accepting(("127.0.0.1", port), relay.proc)
    before = stats_of(relay.addr("p"))
    with Conn(relay.addr("p"), timeout=15.0) as c:
        c.send(WRONG * 1000)  # 1,000 guesses in one write
        got = c.recv_exact(5 * len(FAILURE), timeout=15.0)
        assert got == FAILURE * 5
        assert c.wait_closed(10.0), "still open after 5 failures"
        assert c.recv_idle(idle=0.1) == b"", "answered a sixth guess"
    after = stats_of(relay.addr("p"))
    assert int(after["auth_errors"]) - int(before["auth_errors"]) == 5
    assert int(after["auth_delays"]) - int(before["auth_delays"]) == 2
    assert int(after["auth_failure_closes"]) - int(before["auth_failure_closes"]) == 1
    text = metrics_text(port)
    assert "memrelay_auth_failure_closes_total 1" in text, text[-2000:]
    assert "memrelay_auth_delays_total 2" in text
    assert "memrelay_auth_errors_total 5" in text
    err = relay.stderr()
    assert "authentication failure 5 on this connection, closing" in err, err[-2000:]
    assert "127.0.0.1:" in err and "wrong" not in err and "alice" not in err


def test_two_failures_then_the_right_password_still_logs_in(factory, creds):
    backend = factory.memcached()
    relay = factory.relay({"p": Pool([backend], auth_file=creds)})
    with Conn(relay.addr("p")) as c:
        c.send(WRONG * 2 + AUTH + b"set k 0 0 1\r\nv\r\nget k\r\n")
        want = FAILURE * 2 + b"STORED\r\nSTORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
        assert c.recv_exact(len(want), timeout=5.0) == want


def test_a_delayed_connection_does_not_delay_others(factory, creds):
    backend = factory.memcached()
    relay = factory.relay({"p": Pool([backend], auth_file=creds)})
    with Conn(relay.addr("p"), timeout=15.0) as guesser, Conn(relay.addr("p")) as user:
        guesser.send(WRONG * 4)
        assert guesser.recv_exact(3 * len(FAILURE), timeout=5.0) == FAILURE * 3  # the third delays it
        user.send(AUTH + b"get k\r\n")
        assert user.recv_exact(len(b"STORED\r\nEND\r\n"), timeout=5.0) == b"STORED\r\nEND\r\n"
        assert guesser.recv_exact(len(FAILURE), timeout=10.0) == FAILURE
