"""A binary protocol client gets a binary "not supported" reply, then EOF.

memcached switches a connection to its binary protocol when the first byte
is 0x80. memrelay has no binary protocol: it waits for the first 24-byte
request header, answers it with a well-formed binary response (magic 0x81,
the request's opcode and opaque, status 0x0083 "Not supported", the body
text below) and closes once that is written (docs/protocol.md).
"""

import struct
import time

import pytest

from harness import Pool

TEXT = b"binary protocol not supported by memrelay"


def request_header(opcode, key=b"", extras=b"", value=b"", opaque=0xDEADBEEF):
    body = extras + key + value
    return struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), len(extras), 0, 0, len(body), opaque, 0) + body


def refusal(opcode, opaque=0xDEADBEEF):
    return struct.pack(">BBHBBHIIQ", 0x81, opcode, 0, 0, 0, 0x0083, len(TEXT), opaque, 0) + TEXT


def read_to_eof(conn, timeout=3.0):
    closed = conn.wait_closed(timeout=timeout)
    return conn.recv_idle(idle=0.05, timeout=0.1), closed


@pytest.fixture
def relay(memcached_factory, relay_factory):
    return relay_factory({"alpha": Pool([memcached_factory()], client_idle_timeout=400)})


@pytest.mark.needs_memrelay
def test_binary_get_gets_not_supported_then_eof(relay):
    with relay.conn() as c:
        c.send(request_header(0x00, key=b"foo"))
        assert read_to_eof(c) == (refusal(0x00), True)


@pytest.mark.needs_memrelay
def test_binary_set_echoes_its_opcode_and_opaque(relay):
    with relay.conn() as c:
        c.send(request_header(0x01, key=b"k", extras=b"\0" * 8, value=b"v" * 100, opaque=7))
        assert read_to_eof(c) == (refusal(0x01, opaque=7), True)


@pytest.mark.needs_memrelay
def test_binary_header_in_pieces_is_answered_once_complete(relay):
    req = request_header(0x0C, key=b"piece", opaque=0x01020304)
    with relay.conn() as c:
        c.send(req[:1])
        assert c.recv_idle(idle=0.1, timeout=0.15) == b"" and not c.closed
        c.send(req[1:23])
        assert c.recv_idle(idle=0.1, timeout=0.15) == b"" and not c.closed
        c.send(req[23:])
        assert read_to_eof(c) == (refusal(0x0C, opaque=0x01020304), True)


@pytest.mark.needs_memrelay
def test_short_binary_header_is_closed_by_the_idle_timeout(relay):
    with relay.conn() as c:
        c.send(b"\x80\x00\x00")
        t0 = time.monotonic()
        assert read_to_eof(c, timeout=3.0) == (b"", True)
        assert time.monotonic() - t0 < 2.0


@pytest.mark.needs_memrelay
def test_binary_client_is_logged_once_with_peer_and_pool(relay):
    with relay.conn() as c:
        c.send(request_header(0x00, key=b"a") + request_header(0x0A))  # a GET and a NOOP
        assert read_to_eof(c) == (refusal(0x00), True)
    time.sleep(0.1)
    lines = [l for l in relay.stderr().splitlines() if "binary protocol" in l]
    assert len(lines) == 1, lines
    assert " WARN " in lines[0] and "client 127.0.0.1:" in lines[0] and "(pool alpha)" in lines[0], lines[0]
    assert "opcode 0x00" in lines[0], lines[0]


@pytest.mark.needs_memrelay
def test_0x80_after_the_first_byte_is_text(relay):
    with relay.conn() as c:
        assert c.request(b"mn\r\n\x80\r\nmn\r\n", replies=3) == b"MN\r\nERROR\r\nMN\r\n"


@pytest.mark.needs_memrelay
def test_pylibmc_binary_client_fails_fast_instead_of_hanging(relay):
    pylibmc = pytest.importorskip("pylibmc")
    c = pylibmc.Client(["%s:%d" % relay.addr()], binary=True)
    t0 = time.monotonic()
    # libmemcached 1.0.18 reports any binary error status as UNKNOWN READ
    # FAILURE on a write, and a failed get as a miss.
    with pytest.raises(pylibmc.Error):
        c.set("k", "v")
    assert c.get("k") is None
    assert time.monotonic() - t0 < 2.0
