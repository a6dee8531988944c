/* forward.h: the command lines messages carry to the servers (forward.c).
 */
#ifndef MEMRELAY_FORWARD_H
#define MEMRELAY_FORWARD_H

#include <stdint.h>

#include "memrelay/mbuf.h"
#include "memrelay/request.h"

/* The command line as the backend should see it: the client's bytes when
 * they need no change (no copy), else a rewritten copy in a block from
 * `mbufs`. 0, or -1 when out of memory. */
int mr_forward_slice(mr_mbuf_pool *mbufs, const mr_req *req, mr_slice *out);
/* Build the command line of every message in slots [first, first+nslots)
 * of a retrieval from the keys key_msg maps to them, in the client's key
 * order ("get k1 k4\r\n", "gat 10 k2\r\n"), into one block from `mbufs`
 * the messages share. 0, or -1 when out of memory. */
int mr_build_split_lines(mr_mbuf_pool *mbufs, mr_req *req, uint32_t first, uint32_t nslots);

#endif
