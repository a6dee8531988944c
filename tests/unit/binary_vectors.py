#!/usr/bin/env python3
"""binary_vectors.py: record the memcached vectors of tests/unit/test_binary.c.

Starts two fresh memcached 1.6 servers on ephemeral loopback ports (Debian's
/usr/bin/memcached: `memcached -u root -l 127.0.0.1 -p PORT -U 0`) and plays
the same sequence of steps on both: each step's binary request to the first,
the meta command memrelay's translation must produce to the second. Both
start empty and see the same mutations, so their CAS values agree. For every
step it records the binary request, the meta command, the second server's
meta reply and the first server's binary response (what the reply
translation must produce, byte for byte; empty for a silent quiet request).
Writes tests/unit/binary_vectors.inc; the servers are stopped by PID.

    python3 tests/unit/binary_vectors.py     # from the repository root
"""
import os
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NOOP_OPAQUE = 0xFEEDF00D


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start():
    port = free_port()
    p = subprocess.Popen(['memcached', '-u', 'root', '-l', '127.0.0.1', '-p', str(port), '-U', '0'])
    for _ in range(100):
        try:
            socket.create_connection(('127.0.0.1', port)).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError('memcached did not start')


def req(op, key=b'', extras=b'', value=b'', opaque=0, cas=0):
    body = len(key) + len(extras) + len(value)
    return struct.pack('>BBHBBHIIQ', 0x80, op, len(key), len(extras), 0, 0, body, opaque, cas) + extras + key + value


NOOP = req(0x0a, opaque=NOOP_OPAQUE)
NOOP_RESP = struct.pack('>BBHBBHIIQ', 0x81, 0x0a, 0, 0, 0, 0, 0, NOOP_OPAQUE, 0)


def binary(port, data):
    """The binary response to data, without the NOOP that fences it."""
    s = socket.create_connection(('127.0.0.1', port))
    s.sendall(data + NOOP)
    out = b''
    while not out.endswith(NOOP_RESP):
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError('binary connection closed after %r' % out)
        out += chunk
    s.close()
    return out[:-len(NOOP_RESP)]


def meta(port, line, value):
    """The meta reply to line (+ value): up to and without the mn fence."""
    s = socket.create_connection(('127.0.0.1', port))
    data = line + (value + b'\r\n' if value is not None else b'')
    s.sendall(data + b'mn\r\n')
    out = b''
    while not out.endswith(b'MN\r\n'):
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError('meta connection closed')
        out += chunk
    s.close()
    reply = out[:-4]
    if line == b'mn\r\n':  # the mn itself: its own reply is the first MN
        reply = b'MN\r\n'
    return reply


E = lambda flags, exptime: struct.pack('>II', flags, exptime)
T = lambda exptime: struct.pack('>I', exptime)
A = lambda delta, initial, exptime: struct.pack('>QQI', delta, initial, exptime)
BINKEY = b'a b\x00\r\n\xff'  # a key no text command can carry: sent base64 (YSBiAA0K/w==)

# (name, binary request, meta command, value sent after the meta line or None)
STEPS = [
    ('get_miss', req(0x00, b'foo', opaque=1), b'mg foo v f c\r\n', None),
    ('getq_miss', req(0x09, b'foo', opaque=2), b'mg foo v f c\r\n', None),
    ('getk_miss', req(0x0c, b'foo', opaque=3), b'mg foo v f c\r\n', None),
    ('getkq_miss', req(0x0d, b'foo', opaque=4), b'mg foo v f c\r\n', None),
    ('set', req(0x01, b'foo', E(0xdeadbeef, 0), b'hello', opaque=5), b'ms foo 5 F3735928559 T0 MS c\r\n', b'hello'),
    ('get_hit', req(0x00, b'foo', opaque=6), b'mg foo v f c\r\n', None),
    ('getq_hit', req(0x09, b'foo', opaque=7), b'mg foo v f c\r\n', None),
    ('getk_hit', req(0x0c, b'foo', opaque=8), b'mg foo v f c\r\n', None),
    ('getkq_hit', req(0x0d, b'foo', opaque=9), b'mg foo v f c\r\n', None),
    ('setq', req(0x11, b'bar', E(7, 0), b'xyz', opaque=10), b'ms bar 3 F7 T0 MS c\r\n', b'xyz'),
    ('add_exists', req(0x02, b'foo', E(1, 0), b'v', opaque=11), b'ms foo 1 F1 T0 ME c\r\n', b'v'),
    ('addq_exists', req(0x12, b'foo', E(1, 0), b'v', opaque=12), b'ms foo 1 F1 T0 ME c\r\n', b'v'),
    ('add_new', req(0x02, b'baz', E(0, 0), b'', opaque=13), b'ms baz 0 F0 T0 ME c\r\n', b''),
    ('replace_miss', req(0x03, b'nokey', E(1, 0), b'v', opaque=14), b'ms nokey 1 F1 T0 MR c\r\n', b'v'),
    ('replace_hit', req(0x03, b'baz', E(2, 300), b'new', opaque=15), b'ms baz 3 F2 T300 MR c\r\n', b'new'),
    ('replaceq_miss', req(0x13, b'nokey', E(1, 0), b'v', opaque=16), b'ms nokey 1 F1 T0 MR c\r\n', b'v'),
    ('set_cas_miss', req(0x01, b'nokey', E(0, 0), b'v', opaque=17, cas=12345), b'ms nokey 1 F0 T0 C12345 MS c\r\n', b'v'),
    ('set_cas_mismatch', req(0x01, b'foo', E(0, 0), b'v', opaque=18, cas=999999), b'ms foo 1 F0 T0 C999999 MS c\r\n', b'v'),
    ('add_cas_on_missing', req(0x02, b'nokey', E(0, 0), b'v', opaque=19, cas=5), b'ms nokey 1 F0 T0 C5 MS c\r\n', b'v'),
    ('set_cas_match', req(0x01, b'baz', E(3, 0), b'casd', opaque=20, cas=4), b'ms baz 4 F3 T0 C4 MS c\r\n', b'casd'),
    ('append_miss', req(0x0e, b'nokey', value=b'v', opaque=21), b'ms nokey 1 MA c\r\n', b'v'),
    ('append', req(0x0e, b'foo', value=b'XX', opaque=22), b'ms foo 2 MA c\r\n', b'XX'),
    ('prepend', req(0x0f, b'foo', value=b'YY', opaque=23), b'ms foo 2 MP c\r\n', b'YY'),
    ('appendq', req(0x19, b'foo', value=b'!', opaque=24), b'ms foo 1 MA c\r\n', b'!'),
    ('prependq_miss', req(0x1a, b'nokey', value=b'!', opaque=25), b'ms nokey 1 MP c\r\n', b'!'),
    ('append_cas_mismatch', req(0x0e, b'foo', value=b'?', opaque=26, cas=1), b'ms foo 1 MA C1 c\r\n', b'?'),
    ('get_after_concat', req(0x00, b'foo', opaque=27), b'mg foo v f c\r\n', None),
    ('touch', req(0x1c, b'foo', T(100), opaque=28), b'mg foo f c T100\r\n', None),
    ('touch_miss', req(0x1c, b'nokey', T(100), opaque=29), b'mg nokey f c T100\r\n', None),
    ('gat', req(0x1d, b'foo', T(200), opaque=30), b'mg foo v f c T200\r\n', None),
    ('gatq_hit', req(0x1e, b'foo', T(200), opaque=31), b'mg foo v f c T200\r\n', None),
    ('gatk', req(0x23, b'foo', T(0), opaque=32), b'mg foo v f c T0\r\n', None),
    ('gatkq_hit', req(0x24, b'foo', T(0), opaque=33), b'mg foo v f c T0\r\n', None),
    ('gat_miss', req(0x1d, b'nokey', T(1), opaque=34), b'mg nokey v f c T1\r\n', None),
    ('gatq_miss', req(0x1e, b'nokey', T(1), opaque=35), b'mg nokey v f c T1\r\n', None),
    ('gatk_miss', req(0x23, b'nokey', T(1), opaque=36), b'mg nokey v f c T1\r\n', None),
    ('gatkq_miss', req(0x24, b'nokey', T(1), opaque=37), b'mg nokey v f c T1\r\n', None),
    ('incr_create', req(0x05, b'ctr', A(5, 10, 0), opaque=38), b'ma ctr N0 J10 D5 MI v c\r\n', None),
    ('incr', req(0x05, b'ctr', A(5, 10, 0), opaque=39), b'ma ctr N0 J10 D5 MI v c\r\n', None),
    ('decr', req(0x06, b'ctr', A(3, 10, 0), opaque=40), b'ma ctr N0 J10 D3 MD v c\r\n', None),
    ('decr_below_zero', req(0x06, b'ctr', A(100, 0, 0), opaque=41), b'ma ctr N0 J0 D100 MD v c\r\n', None),
    ('incr_no_create', req(0x05, b'nctr', A(1, 0, 0xffffffff), opaque=42), b'ma nctr D1 MI v c\r\n', None),
    ('incrq', req(0x15, b'ctr', A(7, 0, 0), opaque=43), b'ma ctr N0 J0 D7 MI v c\r\n', None),
    ('decrq_no_create', req(0x16, b'nctr', A(1, 0, 0xffffffff), opaque=44), b'ma nctr D1 MD v c\r\n', None),
    ('incr_non_numeric', req(0x05, b'foo', A(1, 0, 0), opaque=45), b'ma foo N0 J0 D1 MI v c\r\n', None),
    ('incr_cas_mismatch', req(0x05, b'ctr', A(1, 0, 0), opaque=46, cas=1), b'ma ctr N0 J0 D1 MI C1 v c\r\n', None),
    ('incr_wraps', req(0x05, b'ctr', A(0xffffffffffffffff, 0, 0), opaque=47), b'ma ctr N0 J0 D18446744073709551615 MI v c\r\n', None),
    ('incr_create_far_exptime', req(0x05, b'ctr2', A(1, 42, 0x80000000), opaque=48), b'ma ctr2 N2147483647 J42 D1 MI v c\r\n', None),
    ('delete_miss', req(0x04, b'nokey', opaque=49), b'md nokey\r\n', None),
    ('deleteq_miss', req(0x14, b'nokey', opaque=50), b'md nokey\r\n', None),
    ('delete_cas_mismatch', req(0x04, b'foo', opaque=51, cas=1), b'md foo C1\r\n', None),
    ('delete', req(0x04, b'foo', opaque=52), b'md foo\r\n', None),
    ('deleteq', req(0x14, b'bar', opaque=53), b'md bar\r\n', None),
    ('set_binary_key', req(0x01, BINKEY, E(9, 0), b'bin', opaque=54), b'ms YSBiAA0K/w== 3 b F9 T0 MS c\r\n', b'bin'),
    ('getk_binary_key', req(0x0c, BINKEY, opaque=55), b'mg YSBiAA0K/w== b v f c\r\n', None),
    ('delete_binary_key', req(0x04, BINKEY, opaque=56), b'md YSBiAA0K/w== b\r\n', None),
    ('set_utf8_key', req(0x01, 'clé'.encode(), E(0, 0), b'u', opaque=57), 'ms clé 1 F0 T0 MS c\r\n'.encode(), b'u'),
    ('get_utf8_key', req(0x00, 'clé'.encode(), opaque=58), 'mg clé v f c\r\n'.encode(), None),
    ('set_empty_value', req(0x01, b'empty', E(0, 0), b'', opaque=59), b'ms empty 0 F0 T0 MS c\r\n', b''),
    ('get_empty_value', req(0x00, b'empty', opaque=60), b'mg empty v f c\r\n', None),
    ('set_binary_value', req(0x01, b'bv', E(0, 0), b'\r\n\x00\xff', opaque=61), b'ms bv 4 F0 T0 MS c\r\n', b'\r\n\x00\xff'),
    ('get_binary_value', req(0x00, b'bv', opaque=62), b'mg bv v f c\r\n', None),
    ('noop', req(0x0a, opaque=63), b'mn\r\n', None),
    ('version', req(0x0b, opaque=64), b'version\r\n', None),
    ('flush', req(0x08, opaque=65), b'flush_all\r\n', None),
    ('flushq', req(0x18, opaque=66), b'flush_all\r\n', None),
    ('flush_delay', req(0x08, extras=T(3600), opaque=67), b'flush_all 3600\r\n', None),
    ('flush_zero_delay', req(0x08, extras=T(0), opaque=68), b'flush_all\r\n', None),
]


def c_bytes(b):
    """A C string literal holding exactly b (hex escapes, split so a digit never extends one)."""
    out = '"'
    for i, ch in enumerate(b):
        if 0x20 <= ch < 0x7f and ch not in (0x22, 0x5c, 0x3f):
            prev_hex = i > 0 and not (0x20 <= b[i - 1] < 0x7f and b[i - 1] not in (0x22, 0x5c, 0x3f))
            if prev_hex and chr(ch) in '0123456789abcdefABCDEF':
                out += '""'
            out += chr(ch)
        else:
            out += '\\x%02x' % ch
    return out + '"'


def main():
    servers = [start(), start()]
    try:
        (_, bport), (_, mport) = servers
        rows = []
        for name, breq, line, value in STEPS:
            bresp = binary(bport, breq)
            mreply = meta(mport, line, value)
            rows.append((name, breq, line, value, mreply, bresp))
    finally:
        for p, _ in servers:
            p.terminate()
            p.wait()
    with open(os.path.join(HERE, 'binary_vectors.inc'), 'w') as f:
        f.write('/* Generated by tests/unit/binary_vectors.py from memcached %s: do not edit.\n' %
                subprocess.run(['memcached', '-V'], capture_output=True, text=True).stdout.strip())
        f.write(' * VECTOR(name, binary request, meta command, has value, value, meta reply, binary response) */\n')
        for name, breq, line, value, mreply, bresp in rows:
            f.write('VECTOR(%s,\n       %s,\n       %s, %d, %s,\n       %s,\n       %s)\n' % (
                name, c_bytes(breq), c_bytes(line), value is not None, c_bytes(value or b''),
                c_bytes(mreply), c_bytes(bresp)))
    print('wrote %d vectors' % len(rows))


if __name__ == '__main__':
    main()
