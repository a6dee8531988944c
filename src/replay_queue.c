/* replay_queue.c: storage of the writes a server missed (replay_queue.h). */
#include "memrelay/replay_queue.h"

#include <stdlib.h>

int mr_replay_push(mr_replay_queue *q, const mr_slice *out, uint32_t nout)
{
    mr_replay_entry *e = calloc(1, sizeof(*e));
    if (!e)
        return -1;
    for (uint32_t i = 0; i < nout; i++)
        e->out[i] = mr_slice_ref(out[i].mb, out[i].p, out[i].len);
    e->nout = nout;
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    q->count++;
    return 0;
}

mr_replay_entry *mr_replay_take(mr_replay_queue *q)
{
    mr_replay_entry *list = q->head;
    q->head = q->tail = NULL;
    q->count = 0;
    q->overflowed = false;
    return list;
}

void mr_replay_entry_free(mr_replay_entry *e)
{
    for (uint32_t i = 0; i < e->nout; i++)
        mr_slice_release(&e->out[i]);
    free(e);
}

void mr_replay_clear(mr_replay_queue *q)
{
    while (q->head) {
        mr_replay_entry *e = q->head;
        q->head = e->next;
        mr_replay_entry_free(e);
    }
    q->tail = NULL;
    q->count = 0;
    q->overflowed = false;
}
