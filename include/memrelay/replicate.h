/* Layer: core (src/core/; may use base, dist, config, protocol, net, cluster). */
/* replicate.h: keeping several copies of a key (pool `replicas: N`).
 *
 * A key's replica set is its ketama owner followed by the next distinct
 * servers clockwise. Idempotent writes go to every replica at once and the
 * client is answered by the pool's `write_ack`; writes that are not
 * idempotent go to the owner alone and, once it succeeds, the other
 * replicas are brought to the same value in the background; reads fail
 * over along the replica set. Writes a replica missed are remembered per
 * server (bounded) and replayed before anything else when it reconnects.
 * docs/replication.md is the full contract.
 */
#ifndef MEMRELAY_REPLICATE_H
#define MEMRELAY_REPLICATE_H

#include <stdbool.h>
#include <stdint.h>

#include "memrelay/request.h"
#include "memrelay/router.h"

struct mr_worker;

/* Send a keyed command (storage, delete/incr/decr/touch, meta) for a key of
 * a replicated pool. */
void mr_replicate_keyed(mr_req *req, const mr_pool *pool, const char *key, size_t key_len);

/* Start the replicated writes of this worker that waited for their key
 * stripe and may go now (the worker's key_wake). */
void mr_replicate_resume(struct mr_worker *w);
/* Shutdown: answer the writes still waiting for a stripe (UNAVAILABLE). */
void mr_replicate_drop_parked(struct mr_worker *w);

/* Arm read failover on a retrieval whose keys live in replicated pools:
 * returns the message slots it may need beyond the first batch. */
uint32_t mr_replicate_retrieval_slots(const mr_req *req, uint32_t npool_servers, uint32_t max_replicas);
void mr_replicate_retrieval_arm(mr_req *req);

#endif
