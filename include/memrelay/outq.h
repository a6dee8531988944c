/* Layer: core (src/core/; may use base, dist, config, protocol, net, cluster). */
/* outq.h: a connection's queue of reply bytes waiting to be written.
 *
 * A ring of runs, each a slice: a reference into a server's reply block, or
 * static text (END, an error line). Nothing is copied: writev takes the
 * runs as they are, and a run's reference is dropped once all its bytes
 * are written. Unbounded by itself: its owner bounds it (a client stops
 * reading past client_output_limit bytes queued).
 */
#ifndef MEMRELAY_OUTQ_H
#define MEMRELAY_OUTQ_H

#include <stdint.h>
#include <sys/uio.h>

#include "memrelay/mbuf.h"

typedef struct mr_outq {
    mr_slice *v; /* the ring: cap runs, count of them queued from head */
    uint32_t cap, head, count;
    uint64_t bytes; /* bytes queued (written ones leave) */
    uint32_t skip;  /* bytes of v[head] already written */
} mr_outq;

/* Queue `len` bytes at p, taking a reference on mb (NULL: static bytes).
 * An empty run is not queued. 0, or -1 when out of memory. */
int mr_outq_push(mr_outq *q, mr_mbuf *mb, const char *p, uint32_t len);
/* The next unwritten runs as iovecs, at most `max`; returns how many. */
int mr_outq_iov(const mr_outq *q, struct iovec *iov, int max);
/* `n` bytes of the runs iov described were written: drop what is done. */
void mr_outq_wrote(mr_outq *q, size_t n);
/* Drop every run and the ring (a connection closing). */
void mr_outq_release(mr_outq *q);

#endif
