/* dispatch.h: a parsed request becomes a local reply or messages to the
 * servers that hold its keys (dispatch.c).
 */
#ifndef MEMRELAY_DISPATCH_H
#define MEMRELAY_DISPATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "memrelay/request.h"

struct mr_client;
struct mr_worker;

/* Turn a parsed request into messages or a local reply. */
void mr_dispatch(struct mr_client *c, mr_req *req);
/* Delete `key` on every server holding it, in the background (memcached
 * unlinks the item when a set's value is too large). */
void mr_dispatch_unlink(struct mr_client *c, const char *key, uint32_t key_len, bool base64);

#endif
