"""Fixtures for memrelay's integration tests.

Environment:
  MEMRELAY_BIN          the memrelay binary (default: <source>/build/memrelay)
  MEMRELAY_SOURCE_DIR   the source tree (default: two levels above this file)
  MEMRELAY_TEST_DIRECT  1: the proxy of a one-server pool is that memcached
                        itself, so differential tests pass trivially and
                        harness bugs show; tests needing a real proxy skip.
                        nutcracker: multi-server pools run on twemproxy
                        (development aid only).

Fixtures:
  memcached_factory()   start a real memcached; all are stopped at teardown
  relay_factory(pools)  start memrelay for {name: Pool}; stopped at teardown
  backend, proxy        one memcached and a one-server pool in front of it
  direct_conn, proxy_conn  raw connections to each

Every test runs under an alarm (default 60 s, @pytest.mark.time_limit(N)).
When a test fails, the tail of each memrelay's stderr is attached to the report.
"""

import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import DIRECT, Memcached, Pool, Relay  # noqa: E402

SOURCE_DIR = os.environ.get("MEMRELAY_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MEMRELAY_BIN = os.environ.get("MEMRELAY_BIN") or os.path.join(SOURCE_DIR, "build", "memrelay")

DEFAULT_TIME_LIMIT = 60

# Relays whose stderr belongs in a failure report (the ones alive for the current test).
_ACTIVE_RELAYS = []


def pytest_configure(config):
    config.addinivalue_line("markers", "time_limit(seconds): per-test alarm (default %d s)" % DEFAULT_TIME_LIMIT)
    config.addinivalue_line("markers", "needs_memrelay: exercises memrelay itself; skipped in DIRECT mode")


def pytest_report_header(config):
    mode = os.environ.get("MEMRELAY_TEST_DIRECT", "0")
    if DIRECT:
        return "memrelay integration: DIRECT mode (%s): no memrelay is started" % mode
    return "memrelay integration: binary %s" % MEMRELAY_BIN


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for relay in list(_ACTIVE_RELAYS):
            text = relay.stderr()
            if text:
                report.sections.append(("%s stderr (%s)" % (relay.kind, relay.stderr_path), text[-6000:]))


class _TestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _time_limit(request):
    marker = request.node.get_closest_marker("time_limit")
    limit = int(marker.args[0]) if marker else DEFAULT_TIME_LIMIT

    def on_alarm(signum, frame):
        raise _TestTimeout("test ran longer than its %d s limit" % limit)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(autouse=True)
def _skip_needs_memrelay(request):
    if DIRECT and request.node.get_closest_marker("needs_memrelay"):
        pytest.skip("tests memrelay itself; MEMRELAY_TEST_DIRECT is set")


# --------------------------------------------------------------------------
# processes


class _Factory:
    def __init__(self, tmp_path_factory):
        self.tmp_path_factory = tmp_path_factory
        self.memcacheds = []
        self.relays = []

    def memcached(self, **kw):
        mc = Memcached(str(self.tmp_path_factory.mktemp("mc")), **kw).start()
        self.memcacheds.append(mc)
        return mc

    def relay(self, pools, threads=1, extra_args=(), process_settings=None):
        relay = Relay(MEMRELAY_BIN, str(self.tmp_path_factory.mktemp("relay")), pools, threads, extra_args,
                      process_settings)
        self.relays.append(relay)
        _ACTIVE_RELAYS.append(relay)
        try:
            relay.start()
        except harness.Skip as e:
            pytest.skip(str(e))
        return relay

    def close(self):
        for relay in self.relays:
            relay.stop()
            if relay in _ACTIVE_RELAYS:
                _ACTIVE_RELAYS.remove(relay)
        for mc in self.memcacheds:
            mc.stop()


@pytest.fixture
def factory(tmp_path_factory):
    f = _Factory(tmp_path_factory)
    yield f
    f.close()


@pytest.fixture
def memcached_factory(factory):
    return factory.memcached


@pytest.fixture
def relay_factory(factory):
    return factory.relay


class Proxy:
    """A one-server pool: `addr` is memrelay's (or, in DIRECT mode, the backend's)."""

    def __init__(self, relay, backend):
        self.relay = relay
        self.backend = backend

    @property
    def addr(self):
        return self.relay.addr()

    def conn(self, timeout=5.0):
        return self.relay.conn(timeout=timeout)


class _SharedProxy:
    """A backend and a one-server relay kept for a whole module; restarted if memrelay dies."""

    def __init__(self, tmp_path_factory):
        self.factory = _Factory(tmp_path_factory)
        self.backend = self.factory.memcached()
        self.relay = None

    def get(self):
        if not self.backend.running:
            self.backend.restart()
        if self.relay is not None and not self.relay.running:
            _ACTIVE_RELAYS.remove(self.relay)
            self.relay = None
        if self.relay is None:
            self.relay = self.factory.relay({"alpha": Pool([self.backend])})
        return Proxy(self.relay, self.backend)


@pytest.fixture(scope="module")
def _shared_proxy(tmp_path_factory):
    shared = _SharedProxy(tmp_path_factory)
    yield shared
    shared.factory.close()


@pytest.fixture
def proxy(_shared_proxy):
    """memrelay in front of one memcached (module-wide), backend flushed before the test."""
    p = _shared_proxy.get()
    p.backend.flush()
    yield p
    if p.relay.proc is not None and not p.relay.running:
        pytest.fail("memrelay exited during the test (status %s)" % p.relay.proc.returncode)


@pytest.fixture
def backend(proxy):
    return proxy.backend


@pytest.fixture
def direct_conn(backend):
    with backend.conn() as c:
        yield c


@pytest.fixture
def proxy_conn(proxy):
    with proxy.conn() as c:
        yield c


# --------------------------------------------------------------------------
# misc


@pytest.fixture(scope="session")
def memrelay_bin():
    if DIRECT:
        pytest.skip("tests the memrelay binary; MEMRELAY_TEST_DIRECT is set")
    if not os.access(MEMRELAY_BIN, os.X_OK):
        pytest.fail("memrelay binary not found at %s (set MEMRELAY_BIN)" % MEMRELAY_BIN)
    return MEMRELAY_BIN


@pytest.fixture
def short_tmp():
    """A short directory path (unix socket paths are limited to 107 bytes)."""
    import shutil
    d = harness.tempdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Cluster:
    """memrelay over several memcacheds, with the ketama ring it must follow."""

    def __init__(self, relay, servers, hash_name="fnv1a_64"):
        self.relay = relay
        self.servers = servers  # [(Memcached, weight, name)]
        self.backends = [mc for mc, _, _ in servers]
        hash_fn = {"fnv1a_64": harness.fnv1a_64, "md5": harness.md5_hash}[hash_name]
        self.ring = harness.Ketama([(mc.ident(name), w) for mc, w, name in servers], hash_fn)

    @property
    def addr(self):
        return self.relay.addr()

    def conn(self, timeout=5.0):
        return self.relay.conn(timeout=timeout)

    def owner_index(self, key):
        return self.ring.server_for(key)

    def owner(self, key):
        return self.backends[self.ring.server_for(key)]

    def keys_on(self, index, count, prefix="key"):
        """`count` keys that ketama places on backend `index`."""
        out, i = [], 0
        while len(out) < count:
            k = b"%s:%d" % (prefix.encode(), i)
            if self.owner_index(k) == index:
                out.append(k)
            i += 1
        return out

    def flush(self):
        for mc in self.backends:
            if mc.running:
                mc.flush()


@pytest.fixture
def cluster(factory):
    """cluster(weights=(1, 1, 1), names=None, **pool settings) -> Cluster."""
    def make(weights=(1, 1, 1), names=None, threads=1, **settings):
        servers = []
        for i, w in enumerate(weights):
            servers.append((factory.memcached(), w, names[i] if names else None))
        relay = factory.relay({"alpha": Pool(servers, **settings)}, threads=threads)
        return Cluster(relay, servers, settings.get("hash", "fnv1a_64"))
    return make

