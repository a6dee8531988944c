"""Clients from other ecosystems get the same results through memrelay as from memcached.

Each client has a driver in clients/ that runs a fixed script of operations
(set/get/delete, a 100-key get-multi with misses, incr/decr, add/replace,
append/prepend, gets + cas, touch, a 500 KB value, keys with odd bytes, ...)
against the address on its command line and prints one line per operation,
CAS ids masked. The driver runs straight against a fresh memcached and then
through memrelay over 1 and over 3 memcacheds: the lines must be identical,
as many as expected, and include the lines every correct run prints.

| client | package | driver |
|---|---|---|
| Go gomemcache | Debian golang-go, golang-github-bradfitz-gomemcache-dev | gomemcache_check.go (built here, GO111MODULE=off) |
| PHP memcached, text mode; PHP sessions | Debian php-cli, php-memcached | php_memcached_check.php |
| Perl Cache::Memcached::Fast | Debian libcache-memcached-fast-perl | perl_fast_check.pl |
| Node memcached | Debian nodejs (npm), npm registry memcached@2.2.2 (installed here) | node_memcached_check.js |

The Go driver and the npm package go to MEMRELAY_CLIENTS_CACHE (default
<source>/build/ecosystem-clients). A client that is not installed is skipped,
except under CI=true, where it fails: scripts/setup-deps.sh installs them all.
"""

import difflib
import os
import re
import shutil
import subprocess

import pytest

from harness import addr_text

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENTS = os.path.join(HERE, "clients")
SOURCE_DIR = os.environ.get("MEMRELAY_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
CACHE_DIR = os.environ.get("MEMRELAY_CLIENTS_CACHE") or os.path.join(SOURCE_DIR, "build", "ecosystem-clients")
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

GOPATH = "/usr/share/gocode"  # Debian's Go source packages
NODE_MEMCACHED = "2.2.2"  # the npm package's version, pinned

RUN_TIMEOUT = 60  # seconds for one driver run


def E(line):
    """An anchor matching exactly this line."""
    return re.escape(line)


# Lines every correct run prints, for all four clients (they share the script's words).
COMMON = [E(s) for s in (
    'set a: ok', 'get a: "1"', 'get missing: miss', 'delete a: ok', 'delete a again: notfound',
    'get a after delete: miss', 'get empty value: ""',
    'getmulti set 60: 60 stored', 'getmulti 100 keys: 60 hits, 60 right',
    # md5 of the sorted "key=value;" pairs: the same 60 items in every client
    'getmulti digest: 2f2d173cf868cf939b8cd6559c8bd129',
    'incr n 5: 15', 'decr n 20: 0', 'incr missing: notfound',
    'add new: ok', 'add existing: notstored', 'replace existing: ok', 'replace missing: notstored',
    'gets c: "x" cas=set', 'cas c with its token: ok', 'get c after cas: "y"',
    'set t: ok', 'touch t: ok', 'touch missing: notfound', 'get t after touch: "x"',
    'set big (500000 bytes): ok',
    'set odd key 0: ok', 'get odd key 0: "odd-0"', 'get odd key 1: "odd-1"', 'get odd key 4: "odd-4"',
)] + [r"get big: len=500000 md5=[0-9a-f]{32} same=true"]

APPEND = [E('get k after append/prepend: "acd"'), E("append missing: notstored")]
BINARY = [E("get all 256 byte values: len=256 md5=e2c865db4162bed963bfaa9ef6ac18f0 same=true"),
          E(r'get value with CRLF END: "line\x0d\x0aEND\x0d\x0aVALUE x 0 1\x0d\x0a"')]


class Client:
    """One client: how to tell it is installed, prepare it (once) and run its driver."""

    def __init__(self, name, lines, anchors):
        self.name = name
        self.lines = lines  # how many lines a complete run prints
        self.anchors = COMMON + anchors  # regular expressions, each matching one whole line of a correct run
        self.argv = None
        self.env = None

    def prepare(self):
        """argv prefix and env for the driver, or pytest.skip/fail."""
        raise NotImplementedError

    def run(self, addr):
        res = subprocess.run(self.argv + [addr_text(addr)], env=self.env, capture_output=True,
                             timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
        out = res.stdout.decode("utf-8", "replace")
        err = res.stderr.decode("utf-8", "replace")
        assert res.returncode == 0, "%s driver exited %d against %s\n--- stdout ---\n%s--- stderr ---\n%s" % (
            self.name, res.returncode, addr_text(addr), out[-4000:], err[-4000:])
        return out.splitlines()


def _not_installed(what):
    if IN_CI:
        pytest.fail("%s is not installed, and CI=true: every client must be (scripts/setup-deps.sh test)" % what)
    pytest.skip("%s is not installed (scripts/setup-deps.sh test installs it)" % what)


def _run_tool(cmd, what, env=None, timeout=300, cwd=None):
    res = subprocess.run(cmd, env=env, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)
    if res.returncode != 0:
        pytest.fail("%s failed (exit %d): %s\n%s%s" % (what, res.returncode, " ".join(cmd),
                                                      res.stdout.decode("utf-8", "replace")[-3000:],
                                                      res.stderr.decode("utf-8", "replace")[-3000:]))
    return res


class GoClient(Client):
    def prepare(self):
        go = shutil.which("go")
        if go is None:
            _not_installed("go (Debian golang-go)")
        if not os.path.isdir(os.path.join(GOPATH, "src", "github.com", "bradfitz", "gomemcache", "memcache")):
            _not_installed("gomemcache (Debian golang-github-bradfitz-gomemcache-dev)")
        os.makedirs(CACHE_DIR, exist_ok=True)
        binary = os.path.join(CACHE_DIR, "gomemcache_check")
        # Offline: GOPATH mode against Debian's source tree, no module proxy.
        env = dict(os.environ, GOPATH=GOPATH, GO111MODULE="off", GOPROXY="off", GOFLAGS="",
                   GOCACHE=os.path.join(CACHE_DIR, "go-build"), GOTOOLCHAIN="local")
        _run_tool([go, "build", "-o", binary, os.path.join(CLIENTS, "gomemcache_check.go")],
                  "building the gomemcache driver", env=env, timeout=300, cwd=CLIENTS)
        self.argv = [binary]


class PhpClient(Client):
    def prepare(self):
        php = shutil.which("php")
        if php is None:
            _not_installed("php (Debian php-cli)")
        res = subprocess.run([php, "-r", "exit(class_exists('Memcached') ? 0 : 1);"], capture_output=True,
                             timeout=30, stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            _not_installed("PHP's memcached extension (Debian php-memcached)")
        self.argv = [php, "-d", "display_errors=stderr", "-d", "error_reporting=-1",
                     os.path.join(CLIENTS, "php_memcached_check.php")]


class PerlClient(Client):
    def prepare(self):
        perl = shutil.which("perl") or "/usr/bin/perl"
        res = subprocess.run([perl, "-MCache::Memcached::Fast", "-e", "1"], capture_output=True, timeout=30,
                             stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            _not_installed("Cache::Memcached::Fast (Debian libcache-memcached-fast-perl)")
        self.argv = [perl, os.path.join(CLIENTS, "perl_fast_check.pl")]


class NodeClient(Client):
    def prepare(self):
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            _not_installed("node (Debian nodejs)")
        npm = shutil.which("npm")
        if npm is None:
            _not_installed("npm (Debian npm)")
        prefix = os.path.join(CACHE_DIR, "node")
        manifest = os.path.join(prefix, "node_modules", "memcached", "package.json")
        if _npm_version(manifest) != NODE_MEMCACHED:
            os.makedirs(prefix, exist_ok=True)
            # Installed on demand, once; a failure fails (the registry is reachable wherever the suite runs).
            _run_tool([npm, "install", "--prefix", prefix, "--no-audit", "--no-fund", "--no-save",
                       "--no-package-lock", "--loglevel=error", "memcached@" + NODE_MEMCACHED],
                      "npm install memcached@%s" % NODE_MEMCACHED, timeout=300, cwd=prefix)
            got = _npm_version(manifest)
            if got != NODE_MEMCACHED:
                pytest.fail("npm installed memcached %r, not %s, under %s" % (got, NODE_MEMCACHED, prefix))
        self.argv = [node, os.path.join(CLIENTS, "node_memcached_check.js")]
        self.env = dict(os.environ, NODE_PATH=os.path.join(prefix, "node_modules"))


def _npm_version(manifest):
    import json
    try:
        with open(manifest) as f:
            return json.load(f).get("version")
    except (OSError, ValueError):
        return None


CLIENT_TABLE = {
    "gomemcache": GoClient("gomemcache", 60, BINARY + [
        E("cas c with a stale token: exists"), E("cas c after delete: notfound"),
        E('get flags 42: "f" flags=42'), E('get flags max: "f" flags=4294967295'),
        E("incr n 2^64-1: 18446744073709551615"), E("incr n wraps: 0"),
        E("getmulti odd keys: 5 hits"), E('get a final: "c"'),
    ]),
    "php-memcached": PhpClient("php-memcached", 85, APPEND + BINARY + [
        E("binary protocol: off"), E("cas c with a stale token: exists"), E("cas c after delete: notfound"),
        E("getmulti preserve order: 100 keys, 40 null, order kept"), E("fetchall: 60 hits, 60 right"),
        E("getmulti after setmulti: 50 hits, same"),
        E("get odd key 5: error(RES_BAD_KEY_PROVIDED: A BAD KEY WAS PROVIDED/CHARACTERS OUT OF RANGE)"),
        E('get k final: "acd"'),
        E("session binary protocol: off"), E("session start (again): ok"),
        E('session data (again): {"n":1,"name":"memrelay"}'), E("session lock after write: miss"),
        E('session item after second write: "n|i:2;name|s:8:\\"memrelay\\";"'),
        E("session item after destroy: miss"),
    ]),
    "perl-fast": PerlClient("perl-fast", 72, APPEND + BINARY + [
        E("cas c with a stale token: false"), E("gets_multi 100 keys: 60 hits, 60 with cas"),
        E("set_multi 50: 50 ok"), E("get_multi after set_multi: 50 hits, 50 right"),
        E("delete_multi 10 + 1 missing: ok,ok,ok,ok,ok,ok,ok,ok,ok,ok,notfound"),
        E('noreply sets then get_multi: 19 hits, nr:4="nr-4+" nr:5="nr-5"'),
        E("incr n 2^64-1: 18446744073709551615"), E("incr_multi: 1,11,notfound"),
        E('gats t: "x" cas=set'), E("gat_multi 100 keys: 60 hits, 60 right"), E("touch_multi: ok,notfound,ok"),
        E("get_multi odd keys: 7 hits, 7 right"), E('get k final: "acd"'),
    ]),
    "node-memcached": NodeClient("node-memcached", 66, APPEND + [
        E("cas c with a stale token: false"), E("get number: number(12345)"),
        E("50 sets in flight: 50 ok"), E("50 gets in flight: 50 right"),
        E("get Buffer 0x20-0x7e: Buffer(len=95 md5=e5df5a39f2b8cb71b24e1d8038f93131) same=true"),
        r"get UTF-8 text: \".*\" same=true", E("getmulti odd keys: 7 hits, 7 right"),
        E('get key 251 bytes: "long"'), E('get k final: "acd"'),
    ]),
}


@pytest.fixture(scope="session")
def _prepared():
    return {}


@pytest.fixture(params=sorted(CLIENT_TABLE))
def client(request, _prepared):
    """A prepared client (built or installed once per session); skipped or failed if missing."""
    c = CLIENT_TABLE[request.param]
    if request.param not in _prepared:
        try:
            c.prepare()
            _prepared[request.param] = None
        except (pytest.skip.Exception, pytest.fail.Exception) as e:
            _prepared[request.param] = (type(e) is pytest.skip.Exception, str(e))
            raise
    outcome = _prepared[request.param]
    if outcome is not None:  # the same skip or failure for each of its tests
        skipped, msg = outcome
        (pytest.skip if skipped else pytest.fail)(msg)
    return c


@pytest.fixture(params=[1, 3], ids=["1_server", "3_servers"])
def cl(cluster, request):
    """memrelay over 1 or 3 memcacheds. Three use md5: with fnv1a_64 (the default) keys that differ
    only in their last bytes, like eco:gm:0..99, sit close together on the ring and mostly on one server."""
    if request.param == 1:
        return cluster(weights=(1,))
    return cluster(weights=(1, 1, 1), hash="md5")


def check_transcript(client, lines, where):
    """The run was complete (as many lines as expected) and says what a correct run says."""
    text = "\n".join(lines)
    assert len(lines) == client.lines, "%s printed %d lines against %s, expected %d:\n%s" % (
        client.name, len(lines), where, client.lines, text[-4000:])
    missing = [a for a in client.anchors if not any(re.fullmatch(a, line) for line in lines)]
    assert not missing, "%s against %s lacks lines matching %s:\n%s" % (client.name, where, missing, text)


def assert_same_lines(got, want, what):
    if got != want:
        diff = list(difflib.unified_diff(want, got, "memcached", "memrelay", lineterm="", n=2))
        raise AssertionError("%s differs from memcached:\n%s" % (what, "\n".join(diff[:80])))


GM_KEYS = [b"eco:gm:%d" % i for i in range(100) if i % 5 >= 2]


@pytest.mark.time_limit(150)
def test_same_lines_as_memcached(client, cl, memcached_factory):
    want = client.run(memcached_factory().addr)
    check_transcript(client, want, "memcached")
    got = client.run(cl.addr)
    assert_same_lines(got, want, "%s through memrelay over %d server(s)" % (client.name, len(cl.backends)))
    # The items are where the pool puts them: every server of the pool got its share.
    held = [mc.keys_held(GM_KEYS) for mc in cl.backends]
    assert sum(len(h) for h in held) == len(GM_KEYS) and all(held), [len(h) for h in held]
    for key in GM_KEYS:
        assert key in held[cl.owner_index(key)], key


@pytest.mark.time_limit(120)
def test_driver_tells_another_server_apart(client, memcached_factory):
    """The comparison can fail: a memcached that refuses items over 256 KiB prints other lines.

    (Not memcached -C: there, after a cas with CAS id 0 got ERROR, PHP's libmemcached 1.1.4 aborts on an
    assertion in memcached_send_ascii at its next cas.)"""
    want = client.run(memcached_factory().addr)
    odd = client.run(memcached_factory(extra_args=["-I", "256k", "-o", "slab_chunk_max=131072"]).addr)
    differ = {a.split(":")[0] for a, b in zip(want, odd) if a != b}
    assert "get big" in differ, (differ, odd)
    assert odd != want
