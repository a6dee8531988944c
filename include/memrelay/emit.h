/* Layer: core (src/core/; may use base, dist, config, protocol, net, cluster). */
/* emit.h: a finished request's reply, appended to its client's output queue
 * (emit.c): references to the servers' reply bytes, merged back into key
 * order for multi-server gets.
 */
#ifndef MEMRELAY_EMIT_H
#define MEMRELAY_EMIT_H

#include "memrelay/outq.h"
#include "memrelay/request.h"
#include "memrelay/stats.h"

/* Append req's reply to `out` (its client's output queue), counting hits,
 * misses and failed multi-get servers in `stats` (its worker's). 0, or -1
 * when out of memory. */
int mr_emit(mr_outq *out, mr_req *req, mr_stats *stats);

#endif
