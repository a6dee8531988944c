/* Layer: core (src/core/; may use base, dist, config, protocol, net, cluster). */
/* dispatch.h: a parsed request becomes a local reply or messages to the
 * servers that hold its keys (dispatch.c).
 */
#ifndef MEMRELAY_DISPATCH_H
#define MEMRELAY_DISPATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "memrelay/request.h"

struct mr_worker;

/* Turn a parsed request into messages or a local reply. It reads from the
 * request what it needs of the client: worker, listen_pool, and conn_hint
 * (the client's id, which picks its connection to each server). */
void mr_dispatch(mr_req *req);
/* Delete `key` on every server holding it, in the background, as a client
 * of `listen_pool` with connection hint `conn_hint` (memcached unlinks the
 * item when a set's value is too large). */
void mr_dispatch_unlink(struct mr_worker *w, uint32_t listen_pool, uint32_t conn_hint, const char *key,
                        uint32_t key_len, bool base64);

#endif
