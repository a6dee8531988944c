/* Layer: proxy (src/proxy/; may use base, dist, config, protocol, net, cluster, core). */
/* worker_thread.h: starting, stopping, draining and
 * switching the worker threads (worker.c), from the main thread. The
 * worker's data, which the data path reads, is worker.h's.
 */
#ifndef MEMRELAY_WORKER_THREAD_H
#define MEMRELAY_WORKER_THREAD_H

#include <stdbool.h>
#include <stdint.h>

#include "memrelay/backend.h"
#include "memrelay/generation.h"
#include "memrelay/worker.h"

/* What a worker needs to move to a new generation, all allocated by the
 * main thread beforehand so the switch itself cannot fail. */
typedef struct mr_worker_switch {
    mr_gen *gen;
    mr_backend **backends; /* the new table: nbackends slots, zeroed */
    uint32_t *server_slot; /* the new dispatch scratch, nbackends slots */
    uint32_t nbackends;
    mr_backend **fresh;       /* by id: set up for servers new to this config (NULL elsewhere) */
    ev_io *accept_io;         /* by pool of the new config */
    struct mr_gen_hold *hold; /* for the generation the worker leaves */
    mr_backend **retired;     /* its room for retired backends: nbackends slots */
} mr_worker_switch;

/* An older generation this worker still needs: requests it started under
 * it are in flight, and backends of servers the new config dropped drain. */
typedef struct mr_gen_hold {
    mr_gen *gen;
    uint32_t reqs;
    mr_backend **retired; /* owned backends of servers no newer config has */
    uint32_t nretired;
    bool warm; /* the newer generation's warm-up window holds it too (one of reqs) */
    struct mr_gen_hold *next;
} mr_gen_hold;

int mr_worker_init(mr_worker *w, uint32_t index, mr_shared *shared, mr_gen *gen);
int mr_worker_start(mr_worker *w);
void mr_worker_stop(mr_worker *w); /* from another thread */
void mr_worker_join(mr_worker *w);
void mr_worker_destroy(mr_worker *w);

/* From the main thread: a server is rejoining; replay what it missed. */
void mr_worker_health_changed(mr_worker *w);
/* From the main thread: switch to sw->gen at the next loop iteration. The
 * worker acknowledges by storing the generation's seq in switched_seq and
 * waking `ack` (the main loop's async). */
void mr_worker_switch_to(mr_worker *w, mr_worker_switch *sw);
/* Free a switch that was never taken (its generation reference is the caller's). */
void mr_worker_switch_free(mr_worker_switch *sw);
/* A request that started under `gen`, a generation older than the
 * worker's current one, was freed (mr_core_hooks.req_freed). */
void mr_worker_req_freed(mr_worker *w, mr_gen *gen);
/* From the main thread: begin a graceful shutdown (see main.c). */
void mr_worker_drain(mr_worker *w);
bool mr_worker_drained(mr_worker *w);

#endif
