/* emit.h: a finished request's reply, appended to its client's output
 * (emit.c): references to the servers' reply bytes, merged back into key
 * order for multi-server gets.
 */
#ifndef MEMRELAY_EMIT_H
#define MEMRELAY_EMIT_H

#include "memrelay/request.h"

struct mr_client;

/* Append req's reply to c's output: 0, or -1 when out of memory. */
int mr_emit(struct mr_client *c, mr_req *req);

#endif
