/* Layer: ops (src/ops/; may use base, dist, config, protocol, net, cluster, core, proxy). */
/* stats_reply.h: the `stats` command's replies, in memcached's format
 * (stats_reply.c).
 */
#ifndef MEMRELAY_STATS_REPLY_H
#define MEMRELAY_STATS_REPLY_H

#include <stdint.h>

#include "memrelay/mbuf.h"

struct mr_worker;

/* The reply to `stats [arg] [rest]` (`rest`: what follows the first
 * argument, as in `stats route <key>`) from a client of listener pool
 * `listen_pool`, into *out: 0, or -1 when out of memory. */
int mr_stats_reply(struct mr_worker *w, uint32_t listen_pool, mr_slice *out, const char *arg,
                   uint32_t arg_len, const char *rest, uint32_t rest_len);

#endif
