/* Layer: base (src/base/; may use no other layer). */
/* stats.h: counters, one set per worker thread.
 *
 * A worker is the only writer of its counters (plain load + store, no lock,
 * no atomic read-modify-write on the hot path); `stats` readers on any
 * thread sum relaxed atomic loads, so a total may lag by a request or two.
 * One X-macro list gives the fields and their names in `stats` output.
 */
#ifndef MEMRELAY_STATS_H
#define MEMRELAY_STATS_H

#include <stdint.h>

#define MR_STATS(X)                   \
    X(curr_connections)               \
    X(total_connections)              \
    X(rejected_connections)           \
    X(cmd_get)                        \
    X(cmd_set)                        \
    X(cmd_flush)                      \
    X(cmd_touch)                      \
    X(cmd_meta)                       \
    X(get_hits)                       \
    X(get_misses)                     \
    X(bytes_read)                     \
    X(bytes_written)                  \
    X(backend_requests)               \
    X(backend_timeouts)               \
    X(backend_errors)                 \
    X(backend_connects)               \
    X(backend_connect_failures)       \
    X(multiget_server_failures)       \
    X(client_errors)                  \
    X(client_backpressure)            \
    X(client_idle_closed)             \
    X(client_output_closed)           \
    X(client_block_closed)            \
    X(memory_waits)                   \
    X(memory_refused)                 \
    X(backend_queue_full)             \
    X(tls_handshakes)                 \
    X(tls_handshake_failures)         \
    X(backend_tls_handshakes)         \
    X(backend_tls_handshake_failures) \
    X(auth_cmds)                      \
    X(auth_errors)                    \
    X(auth_delays)                    \
    X(auth_failure_closes)

typedef struct {
#define MR_STAT_FIELD(name) uint64_t name;
    MR_STATS(MR_STAT_FIELD)
#undef MR_STAT_FIELD
} mr_stats;

#define MR_STAT_ADD(stats, field, n)                                                            \
    __atomic_store_n(&(stats)->field, __atomic_load_n(&(stats)->field, __ATOMIC_RELAXED) + (n), \
                     __ATOMIC_RELAXED)
#define MR_STAT_INC(stats, field) MR_STAT_ADD(stats, field, 1)
#define MR_STAT_DEC(stats, field) MR_STAT_ADD(stats, field, (uint64_t)-1)

/* Per pool (replication), one array per worker indexed by pool. */
#define MR_POOL_STATS(X)       \
    X(repl_writes)             \
    X(repl_write_failures)     \
    X(repl_acks_unmet)         \
    X(repl_repairs)            \
    X(repl_read_failovers)     \
    X(repl_background_pending) \
    X(repl_queued)             \
    X(repl_replayed)           \
    X(repl_queue_depth)        \
    X(repl_queue_overflows)    \
    X(warm_lookups)            \
    X(warm_hits)               \
    X(warm_copies)             \
    X(warm_stale_deletes)      \
    X(warm_races)

typedef struct {
#define MR_POOL_STAT_FIELD(name) uint64_t name;
    MR_POOL_STATS(MR_POOL_STAT_FIELD)
#undef MR_POOL_STAT_FIELD
} mr_pool_stats;

/* Register a worker's per-pool counters (npools entries). */
void mr_stats_register_pools(mr_pool_stats *pools);
/* Sum one pool's counters over every worker. */
void mr_pool_stats_sum(uint32_t pool, mr_pool_stats *out);

/* Sum of every worker's counters. */
void mr_stats_sum(mr_stats *out);

/* Register a worker's counters for summing (before threads start). */
void mr_stats_register(mr_stats *stats);

#endif
