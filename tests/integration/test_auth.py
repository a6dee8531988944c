"""Client authentication (a pool's auth_file) is memcached's `-Y` authentication.

Differential: the same byte sequences go to a real `memcached -Y CREDS` and to
memrelay with `auth_file: CREDS` in front of a memcached without -Y; the
replies must be identical byte for byte, and so must the connection's fate.

Before authenticating, memcached 1.6.18 reuses one response buffer for every
reply to the same read, so of several commands sent in one write it answers
only the last (memrelay answers each one: see docs/security.md). The
cases therefore send one unauthenticated command per write and read its reply
before the next; after authentication, pipelining in one write is compared as
it is.

Also: pymemcache logging in with a plain set, per-pool authentication, the
permission check on the credentials file (--check-config), and the warning
for a listener reachable beyond loopback without authentication.
"""

import os
import signal
import subprocess

import pytest

from harness import Conn, Pool, _stop_process, free_port, sanitizer_report, wait_accepting, wait_for

pytestmark = pytest.mark.needs_memrelay

CREDS = b"alice:secret\nbob:hun:ter2\n"
AUTH = b"set auth 0 0 12\r\nalice secret\r\n"
QUIET = 0.3  # seconds without bytes that end a step's reply when memcached gives none


@pytest.fixture
def creds(tmp_path):
    path = tmp_path / "memrelay.creds"
    path.write_bytes(CREDS)
    os.chmod(path, 0o600)
    return str(path)


@pytest.fixture
def pair(memcached_factory, relay_factory, creds):
    """(memcached -Y creds, memrelay with auth_file creds in front of a plain memcached)."""
    locked = memcached_factory(extra_args=["-Y", creds])
    backend = memcached_factory()
    relay = relay_factory({"p": Pool([backend], auth_file=creds)})
    return locked, relay, backend


def run_direct(addr, steps):
    """Each step's reply from memcached (read until quiet), and whether it closed."""
    out = []
    with Conn(addr) as c:
        for data in steps:
            c.send(data)
            out.append(c.recv_idle(idle=QUIET))
            if c.closed:
                break
        closed = c.closed or c.wait_closed(QUIET)
    return out, closed


def run_proxied(addr, steps, expected):
    """The same steps through memrelay: read as many bytes as memcached gave,
    then watch for surplus bytes or a close."""
    out = []
    with Conn(addr) as c:
        for data, want in zip(steps, expected):
            c.send(data)
            got = c.recv_exact(len(want), timeout=5.0)
            got += c.recv_idle(idle=0.1)
            out.append(got)
            if c.closed:
                break
        closed = c.closed or c.wait_closed(QUIET)
    return out, closed


CASES = [
    # ---- before authentication: one command per write
    ("get", [b"get foo\r\n"]),
    ("version", [b"version\r\n"]),
    ("quit_stays_open", [b"quit\r\n", b"get foo\r\n"]),
    ("stats", [b"stats\r\n"]),
    ("meta_noop", [b"mn\r\n"]),
    ("meta_get", [b"mg foo v\r\n"]),
    ("meta_set", [b"ms foo 2\r\n", b"hi\r\n"]),
    ("unknown_command", [b"bogus\r\n"]),
    ("blank_line", [b"\r\n"]),
    ("uppercase_set", [b"SET a 0 0 12\r\n", b"alice secret\r\n"]),
    ("add_is_not_auth", [b"add a 0 0 12\r\n", b"alice secret\r\n"]),
    ("set_noreply_is_auth_attempt", [b"set foo 0 0 2 noreply\r\n", b"hi\r\n"]),
    ("set_without_length", [b"set a 0 0\r\n"]),
    ("set_bad_length", [b"set a 0 0 abc\r\n"]),
    ("set_negative_length", [b"set a 0 0 -1\r\n"]),
    # ---- wrong credentials
    ("wrong_password", [b"set a 0 0 11\r\nalice wrong\r\n", b"get foo\r\n"]),
    ("unknown_user", [b"set a 0 0 12\r\nmallory evil\r\n", b"get foo\r\n"]),
    ("case_matters", [b"set a 0 0 12\r\nALICE secret\r\n"]),
    ("retry_after_failure", [b"set a 0 0 11\r\nalice wrong\r\n", AUTH, b"get foo\r\n"]),
    # ---- malformed authentication
    ("token_without_space", [b"set a 0 0 3\r\nfoo\r\n", b"get foo\r\n"]),
    ("empty_token", [b"set a 0 0 0\r\n\r\n"]),
    ("user_and_space_only", [b"set a 0 0 6\r\nalice \r\n"]),
    ("tab_separator", [b"set a 0 0 12\r\nalice\tsecret\r\n"]),
    ("bad_termination", [b"set a 0 0 12\r\nalice secretXY"]),
    ("data_in_pieces", [b"set a 0 0 12\r\nali", b"ce sec", b"ret\r\n", b"get foo\r\n"]),
    ("no_newline_in_3000_bytes", [b"x" * 3000]),
    # ---- what memcached does not look at in the auth set
    ("key_flags_exptime_ignored", [b"set whatever x y 12 noreply extra\r\nalice secret\r\n", b"get foo\r\n"]),
    ("trailing_tokens_ignored", [b"set a 0 0 18\r\nalice secret extra\r\n", b"get foo\r\n"]),
    ("password_with_colon", [b"set a 0 0 12\r\nbob hun:ter2\r\n", b"get foo\r\n"]),
    # ---- authenticated: an ordinary connection
    ("good_then_commands",
     [AUTH, b"get foo\r\n", b"set k 3 0 1\r\nv\r\n", b"get k\r\n", b"mn\r\n", b"delete k\r\n", b"get k\r\n"]),
    ("set_after_auth_is_a_set", [AUTH, b"set a 0 0 11\r\nalice wrong\r\n", b"get a\r\n"]),
    ("quit_after_auth_closes", [AUTH, b"quit\r\n"]),
    ("pipelined_auth_and_commands",
     [AUTH + b"set k 0 0 2\r\nhi\r\nget k\r\nmg k v\r\nmn\r\ndelete k\r\nget k k\r\nincr n 1\r\n"]),
    ("pipelined_auth_noreply_then_get", [b"set a 0 0 12 noreply\r\nalice secret\r\nset k 0 0 1 noreply\r\nx\r\nget k\r\n"]),
]


@pytest.mark.parametrize("name,steps", CASES, ids=[c[0] for c in CASES])
def test_same_bytes_as_memcached_Y(pair, name, steps):
    locked, relay, backend = pair
    expected, expected_closed = run_direct(locked.addr, steps)
    assert any(expected) or expected_closed, "memcached gave nothing at all: the case tests nothing"
    got, got_closed = run_proxied(relay.addr("p"), steps, expected)
    assert got == expected, "\nmemcached -Y: %r\nmemrelay:     %r" % (expected, got)
    assert got_closed == expected_closed, "connection closed: memcached %s, memrelay %s" % (
        expected_closed, got_closed)


def _stat(conn, name):
    conn.send(b"stats\r\n")
    reply = conn.recv_until_term(b"END\r\n")
    for line in reply.split(b"\r\n"):
        parts = line.split(b" ")
        if len(parts) == 3 and parts[1] == name.encode():
            return int(parts[2])
    raise AssertionError("no %s in stats: %r" % (name, reply))


def test_stats_count_attempts_and_failures_as_memcached(pair):
    locked, relay, _ = pair
    counts = {}
    for label, addr in (("memcached", locked.addr), ("memrelay", relay.addr("p"))):
        with Conn(addr) as admin:
            admin.send(AUTH)
            assert admin.recv_until_term(b"\r\n") == b"STORED\r\n"
            before = (_stat(admin, "auth_cmds"), _stat(admin, "auth_errors"))
            with Conn(addr) as c:
                for data, reply in ((b"set a 0 0 11\r\nalice wrong\r\n", b"CLIENT_ERROR authentication failure\r\n"),
                                    (b"set a 0 0 3\r\nfoo\r\n", b"CLIENT_ERROR bad authentication token format\r\n"),
                                    (b"get foo\r\n", b"CLIENT_ERROR unauthenticated\r\n"),
                                    (AUTH, b"STORED\r\n")):
                    c.send(data)
                    assert c.recv_until_term(b"\r\n") == reply, label
            after = (_stat(admin, "auth_cmds"), _stat(admin, "auth_errors"))
        counts[label] = (after[0] - before[0], after[1] - before[1])
    assert counts["memcached"] == (2, 1), counts
    assert counts["memrelay"] == counts["memcached"], counts


def test_stats_never_show_credentials(pair):
    _, relay, _ = pair
    with Conn(relay.addr("p")) as c:
        c.send(AUTH)
        assert c.recv_until_term(b"\r\n") == b"STORED\r\n"
        for sub in (b"stats\r\n", b"stats pools\r\n", b"stats servers\r\n"):
            c.send(sub)
            reply = c.recv_until_term(b"END\r\n")
            assert reply.endswith(b"END\r\n"), reply
            assert b"secret" not in reply and b"hun:ter2" not in reply, reply
    assert "secret" not in relay.stderr()


# --------------------------------------------------------------------------
# a real client


def test_pymemcache_logs_in_with_a_set(pair):
    """pymemcache 3.5 has no authentication of its own: a set carrying
    "user password" (with a reply: noreply=False) is the login, as with memcached."""
    pymemcache = pytest.importorskip("pymemcache.client.base")
    from pymemcache.exceptions import MemcacheClientError

    locked, relay, _ = pair
    for addr in (locked.addr, relay.addr("p")):
        bad = pymemcache.Client(addr, connect_timeout=5, timeout=5)
        with pytest.raises(MemcacheClientError, match="authentication failure"):
            bad.set(b"auth", b"alice nope", noreply=False)
        with pytest.raises(MemcacheClientError, match="unauthenticated"):
            bad.get(b"k")
        bad.close()

        client = pymemcache.Client(addr, connect_timeout=5, timeout=5)
        assert client.set(b"auth", b"alice secret", noreply=False) is True
        assert client.set(b"greeting", b"hello", noreply=False) is True
        assert client.get(b"greeting") == b"hello"
        assert client.get_many([b"greeting", b"missing"]) == {b"greeting": b"hello"}
        assert client.delete(b"greeting", noreply=False) is True
        client.close()


# --------------------------------------------------------------------------
# per pool


def test_auth_is_per_pool(memcached_factory, relay_factory, creds):
    backend = memcached_factory()
    relay = relay_factory({"locked": Pool([backend], auth_file=creds), "open": Pool([backend])})
    with Conn(relay.addr("open")) as c:
        c.send(b"set k 0 0 1\r\nv\r\nget k\r\n")
        assert c.recv_until_term(b"END\r\n") == b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
    with Conn(relay.addr("locked")) as c:
        c.send(b"get k\r\n")
        assert c.recv_until_term(b"\r\n") == b"CLIENT_ERROR unauthenticated\r\n"
        c.send(AUTH + b"get k\r\n")
        assert c.recv_until_term(b"END\r\n") == b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"


# --------------------------------------------------------------------------
# the credentials file and the command line


CONFIG = """\
p:
  listen: {listen}
{extra}  servers:
    - 127.0.0.1:{server}:1
"""


def _config(tmp_path, listen, extra=""):
    path = tmp_path / "memrelay.yml"
    path.write_text(CONFIG.format(listen=listen, extra=extra, server=free_port()))
    return str(path)


def _check(memrelay_bin, path):
    res = subprocess.run([memrelay_bin, "-c", path, "--check-config"], capture_output=True, timeout=10,
                         stdin=subprocess.DEVNULL)
    return res.returncode, (res.stdout + res.stderr).decode("utf-8", "replace")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_check_config_refuses_credentials_others_can_access(memrelay_bin, tmp_path, creds, mode):
    os.chmod(creds, mode)
    path = _config(tmp_path, "127.0.0.1:%d" % free_port(), "  auth_file: %s\n" % creds)
    rc, out = _check(memrelay_bin, path)
    assert rc == 1, out
    assert "%s:3:14:" % path in out, out
    assert "group or others" in out and "%04o" % mode in out, out
    assert "secret" not in out, out


def test_check_config_refuses_unreadable_and_malformed_credentials(memrelay_bin, tmp_path, creds):
    path = _config(tmp_path, "127.0.0.1:%d" % free_port(), "  auth_file: %s\n" % (creds + ".missing"))
    rc, out = _check(memrelay_bin, path)
    assert rc == 1 and "%s:3:14:" % path in out and "cannot be read" in out, out

    with open(creds, "wb") as f:
        f.write(b"alice:secret\nbob:top secret\n")
    path = _config(tmp_path, "127.0.0.1:%d" % free_port(), "  auth_file: %s\n" % creds)
    rc, out = _check(memrelay_bin, path)
    assert rc == 1 and "line 2" in out and "password contains a space" in out, out
    assert "secret" not in out.replace("password contains", ""), out


def test_check_config_shows_the_file_not_the_credentials(memrelay_bin, tmp_path, creds):
    path = _config(tmp_path, "127.0.0.1:%d" % free_port(), "  auth_file: %s\n" % creds)
    rc, out = _check(memrelay_bin, path)
    assert rc == 0, out
    assert creds in out and "2 credentials" in out, out
    assert "secret" not in out and "alice" not in out and "hun:ter2" not in out, out


def test_listen_without_host_binds_loopback(memrelay_bin, tmp_path):
    port = free_port()
    path = _config(tmp_path, '":%d"' % port)
    rc, out = _check(memrelay_bin, path)
    assert rc == 0 and "127.0.0.1:%d" % port in out, out


class _Started:
    """memrelay from a config file, stopped by PID."""

    def __init__(self, binary, config, stderr_path):
        self.stderr_path = stderr_path
        with open(stderr_path, "wb") as err:
            self.proc = subprocess.Popen([binary, "-c", config], stdout=err, stderr=err, stdin=subprocess.DEVNULL)

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        _stop_process(self.proc)
        report = sanitizer_report(self.stderr())
        assert report is None, report


def _start_and_read_log(memrelay_bin, tmp_path, listen_host, extra=""):
    port = free_port()
    config = _config(tmp_path, "%s:%d" % (listen_host, port), extra)
    relay = _Started(memrelay_bin, config, str(tmp_path / "memrelay.stderr"))
    try:
        wait_accepting(("127.0.0.1", port), relay.proc)
        # The listeners accept before main logs "started" (and the listeners
        # after it): read the log once start-up has written it all.
        wait_for(lambda: "started" in relay.stderr(), 10)
        return relay.stderr()
    finally:
        relay.stop()


def test_warning_for_non_loopback_listener_without_auth(memrelay_bin, tmp_path):
    log = _start_and_read_log(memrelay_bin, tmp_path, "0.0.0.0")
    assert "WARN" in log and "pool p listens on 0.0.0.0:" in log and "without TLS or authentication" in log, log


def test_no_warning_for_loopback_listener(memrelay_bin, tmp_path):
    log = _start_and_read_log(memrelay_bin, tmp_path, "127.0.0.1")
    assert "started" in log, log
    assert "without TLS or authentication" not in log, log


def test_no_warning_for_non_loopback_listener_with_auth(memrelay_bin, tmp_path, creds):
    log = _start_and_read_log(memrelay_bin, tmp_path, "0.0.0.0", "  auth_file: %s\n" % creds)
    assert "started" in log, log
    assert "without TLS or authentication" not in log, log
    assert "secret" not in log, log


# --------------------------------------------------------------------------
# reload


def test_sighup_reloads_credentials_and_keeps_logged_in_connections(memcached_factory, relay_factory, creds):
    backend = memcached_factory()
    relay = relay_factory({"p": Pool([backend], auth_file=creds)})
    with Conn(relay.addr()) as before:
        before.send(AUTH + b"set k 0 0 1\r\nv\r\n")
        assert before.recv_until_term(b"STORED\r\nSTORED\r\n") == b"STORED\r\nSTORED\r\n"
        # Rotate: alice's password changes, carol is added.
        with open(creds, "wb") as f:
            f.write(b"alice:newpass\ncarol:pw3\n")
        relay.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "config generation 2" in relay.stderr(), 10), relay.stderr()[-2000:]
        with Conn(relay.addr()) as fresh:
            fresh.send(AUTH)  # the old password
            assert fresh.recv_until_term(b"\r\n") == b"CLIENT_ERROR authentication failure\r\n"
            fresh.send(b"set auth 0 0 13\r\nalice newpass\r\nget k\r\n")
            assert fresh.recv_until_term(b"END\r\n") == b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
            fresh.send(b"set auth 0 0 9\r\ncarol pw3\r\n")
            assert fresh.recv_until_term(b"\r\n") == b"STORED\r\n"
        # Logged in before the reload: still logged in.
        before.send(b"get k\r\n")
        assert before.recv_until_term(b"END\r\n") == b"VALUE k 0 1\r\nv\r\nEND\r\n"
        # A credentials file others can read refuses the reload; the old table keeps working.
        os.chmod(creds, 0o644)
        relay.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload (SIGHUP) refused" in relay.stderr(), 10), relay.stderr()[-2000:]
        with Conn(relay.addr()) as third:
            third.send(b"set auth 0 0 9\r\ncarol pw3\r\n")
            assert third.recv_until_term(b"\r\n") == b"STORED\r\n"
