/* forward.h: the command lines messages carry to the servers (forward.c).
 */
#ifndef MEMRELAY_FORWARD_H
#define MEMRELAY_FORWARD_H

#include <stdint.h>

#include "memrelay/backend.h"
#include "memrelay/mbuf.h"
#include "memrelay/request.h"
#include "memrelay/worker.h"

/* The command line as the backend should see it: the client's bytes when
 * they need no change (no copy), else a rewritten copy in a block from
 * `mbufs`. 0, or -1 when out of memory. */
int mr_forward_slice(mr_mbuf_pool *mbufs, const mr_req *req, mr_slice *out);
/* For a request whose server applies q (head.quiet_by_server): fill msg's
 * out[] with the line, q kept, and an "mn" fence, and mark it fenced. 0, or
 * -1 when out of memory. */
int mr_forward_fenced(mr_mbuf_pool *mbufs, const mr_req *req, mr_msg *msg);
/* Build the command line of every message in slots [first, first+nslots)
 * of a retrieval from the keys key_msg maps to them, in the client's key
 * order ("get k1 k4\r\n", "gat 10 k2\r\n"), into one block from `mbufs`
 * the messages share. 0, or -1 when out of memory. */
int mr_build_split_lines(mr_mbuf_pool *mbufs, mr_req *req, uint32_t first, uint32_t nslots);

/* Hand a message to its server's backend, on connection conn_hint % nconns
 * (mr_backend_send). Every message of dispatch and replication goes out
 * here, so a test catches them all with mr_core_hooks.send; the binary
 * leaves it NULL and pays one predictable branch per message. */
static inline void mr_forward_send(mr_worker *w, uint32_t conn_hint, mr_msg *msg)
{
    if (__builtin_expect(w->hooks->send != NULL, 0)) {
        w->hooks->send(w, conn_hint, msg);
        return;
    }
    mr_backend_send(w->backends[msg->server], conn_hint, msg);
}

#endif
