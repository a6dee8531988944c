/* dispatch.h: a parsed request becomes a local reply or messages to the
 * servers that hold its keys (dispatch.c), and the command lines those
 * messages carry.
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
/* Build the command line of every message in slots [first, first+n) of a
 * retrieval from the keys key_msg maps to them. */
int mr_build_split_lines(struct mr_worker *w, mr_req *req, uint32_t first, uint32_t nslots);
/* The command line as the backend should see it: the client's bytes when
 * they need no change (no copy), else a rewritten copy. */
int mr_forward_slice(struct mr_worker *w, const mr_req *req, mr_slice *out);

#endif
