#!/usr/bin/python3
"""replication_convergence.py: the replication convergence checker, for long.

    /usr/bin/python3 tests/soak/replication_convergence.py [--seconds N] [--threads 1,2,4]
        [--clients 8] [--keys 20] [--rounds 1] [--memrelay PATH]

For each thread count (and each round): 3 memcached and one memrelay
(replicas: 2, write_ack: one) on loopback; --clients clients race every
replicated write command (set add replace append prepend cas incr decr delete
touch, ms plain and in append/prepend/add mode, ma, md, noreply set) over
--keys shared keys for --seconds while one memcached at a time is SIGSTOPped
and continued, or killed and restarted. Then every server is healed, memrelay
must settle (every server up, nothing queued for replay or in flight), and
every key is read from every memcached directly: two that hold a key must
hold the same value and flags, and no more than 2 may hold it. Misses (a
replica that was held down or restarted comes back without the keys it
missed) are counted, not failures. tests/integration/convergence.py is the
checker; tests/integration/test_replication_convergence.py its bounded form.

Prints one line per run and 'replication_convergence: N passed, M failed';
exit status 0 only when nothing failed.
"""

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import convergence  # noqa: E402
import harness  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))


def one_run(binary, threads, seconds, clients, nkeys, seed):
    work = tempfile.mkdtemp(prefix="mr-conv-")
    mcs, relay = [], None
    try:
        mcs = [harness.Memcached(work).start() for _ in range(3)]
        relay = harness.Relay(binary, work, {"alpha": harness.Pool(mcs, **convergence.POOL_SETTINGS)}, threads)
        relay.start()
        got = convergence.run(relay, mcs, seconds, clients=clients, nkeys=nkeys, seed=seed,
                              log=lambda s: print("threads %d: %s" % (threads, s), flush=True))
        problems = []
        if not got["clients_finished"]:
            problems.append("clients did not finish")
        if not got["settled"]:
            problems.append("memrelay never settled")
        if got["differences"]:
            problems.append("%d keys differ, e.g. %r" % (len(got["differences"]), got["differences"][:3]))
        if not relay.running:
            problems.append("memrelay died:\n" + relay.stderr()[-3000:])
        return problems
    finally:
        if relay:
            relay.stop()
        for mc in mcs:
            mc.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "60")))
    ap.add_argument("--threads", default="1,2,4", help="memrelay worker thread counts, comma-separated")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--keys", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--memrelay", default=os.environ.get("MEMRELAY_BIN", os.path.join(ROOT, "build", "memrelay")))
    args = ap.parse_args()
    passed = failed = 0
    for rnd in range(args.rounds):
        for t in [int(x) for x in args.threads.split(",")]:
            problems = one_run(args.memrelay, t, args.seconds, args.clients, args.keys, seed=rnd * 100 + t)
            for p in problems:
                print("FAIL threads %d round %d: %s" % (t, rnd, p), flush=True)
            if problems:
                failed += 1
            else:
                passed += 1
    print("replication_convergence: %d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
