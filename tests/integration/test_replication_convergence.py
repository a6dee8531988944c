"""Replication converges at any thread count (docs/replication.md, "What is
guaranteed"): 8 clients race every replicated write command over 20 shared
keys for a few seconds while one memcached at a time is stopped and
continued, or killed and restarted; once the writes stop and every server is
back, every key read from every memcached directly agrees (a replica may miss
a key: held down, restarted or flushed, it comes back empty, never stale).

The checker is convergence.py; tests/soak/replication_convergence.py runs it
for longer. Each run here is bounded (CONVERGENCE_SECONDS, default 4).
"""

import os

import pytest

import convergence
from harness import Pool

pytestmark = pytest.mark.needs_memrelay

SECONDS = float(os.environ.get("CONVERGENCE_SECONDS", "4"))


@pytest.mark.time_limit(120)
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_every_write_command_under_faults_leaves_no_difference_between_replicas(factory, threads):
    mcs = [factory.memcached() for _ in range(3)]
    relay = factory.relay({"alpha": Pool(mcs, **convergence.POOL_SETTINGS)}, threads=threads)
    got = convergence.run(relay, mcs, SECONDS, clients=8, nkeys=20, seed=threads, log=print)
    assert got["clients_finished"], got
    assert got["settled"], "memrelay never settled (servers up, nothing queued): %r" % got
    assert got["ops"] > 0, got
    assert not got["differences"], "%d of %d keys differ between replicas, e.g. %r" % (
        len(got["differences"]), got["keys"], got["differences"][:3])
    relay.assert_running()


@pytest.mark.time_limit(120)
@pytest.mark.parametrize("threads", [2, 4])
def test_racing_writes_without_faults_leave_every_replica_holding_the_same_item(factory, threads):
    """The issue's case: no faults, several workers, append/incr races."""
    mcs = [factory.memcached() for _ in range(3)]
    relay = factory.relay({"alpha": Pool(mcs, **convergence.POOL_SETTINGS)}, threads=threads)
    key_list = convergence.keys(20)
    load = convergence.Load(relay, key_list, clients=8, seed=threads).start()
    import time
    time.sleep(min(SECONDS, 3))
    assert load.stop()
    assert convergence.quiet(relay)
    differences, misses, held = convergence.compare(mcs, key_list)
    print("no faults, threads %d: %d ops, %d held, %d misses, %d differences" % (
        threads, load.ops, held, misses, len(differences)))
    assert not differences, differences[:3]
    assert load.errors == 0, "SERVER_ERROR without any fault"
