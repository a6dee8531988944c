/* replay_queue.h: the writes one server missed, kept to be replayed.
 *
 * Per server and per worker (the backend owns it, backend.h): a FIFO of
 * replicated writes the server did not get while it was unreachable, each
 * holding references to the bytes as sent. The backend bounds it (the
 * pool's replay_queue) and replays it, in order and before anything else,
 * when the server is back; a write that did not fit marks the queue
 * overflowed, and the server is then flushed (or quarantined) instead.
 * This module is only the storage.
 */
#ifndef MEMRELAY_REPLAY_QUEUE_H
#define MEMRELAY_REPLAY_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "memrelay/mbuf.h"

typedef struct mr_replay_entry {
    struct mr_replay_entry *next;
    mr_slice out[2]; /* the command line and data block, as sent */
    uint32_t nout;
} mr_replay_entry;

typedef struct {
    mr_replay_entry *head, *tail;
    uint32_t count;
    bool overflowed; /* writes were lost: the server must be flushed on return */
} mr_replay_queue;

/* Keep a write (`nout` slices, at most 2; references are taken) at the
 * tail. 0, or -1 when out of memory (the queue is unchanged). */
int mr_replay_push(mr_replay_queue *q, const mr_slice *out, uint32_t nout);
/* Detach every entry, oldest first, and empty the queue (overflowed
 * cleared too). The caller frees the entries. */
mr_replay_entry *mr_replay_take(mr_replay_queue *q);
/* Release an entry's references and free it. */
void mr_replay_entry_free(mr_replay_entry *e);
/* Drop everything. */
void mr_replay_clear(mr_replay_queue *q);

#endif
