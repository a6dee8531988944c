/* outq.c: the reply ring of a connection (outq.h). */
#include "memrelay/outq.h"

#include "memrelay/check.h"

#include <stdlib.h>

/* The ring's capacity is a power of two (16, doubled), so a position wraps
 * with a mask: this runs for every reply element, and a division costs tens
 * of cycles. */
static inline uint32_t at(const mr_outq *q, uint32_t i)
{
    MR_CHECK(q->cap && (q->cap & (q->cap - 1)) == 0);
    return (q->head + i) & (q->cap - 1);
}

int mr_outq_push(mr_outq *q, mr_mbuf *mb, const char *p, uint32_t len)
{
    if (len == 0)
        return 0;
    if (q->count == q->cap) {
        uint32_t cap = q->cap ? q->cap * 2 : 16;
        mr_slice *v = malloc(cap * sizeof(*v));
        if (!v)
            return -1;
        for (uint32_t i = 0; i < q->count; i++)
            v[i] = q->v[at(q, i)];
        free(q->v);
        q->v = v;
        q->cap = cap;
        q->head = 0;
    }
    mr_slice *s = &q->v[at(q, q->count)];
    s->mb = mb ? mr_mbuf_ref(mb) : NULL;
    s->p = p;
    s->len = len;
    q->count++;
    q->bytes += len;
    return 0;
}

int mr_outq_iov(const mr_outq *q, struct iovec *iov, int max)
{
    int n = 0;
    for (uint32_t i = 0; i < q->count && n < max; i++) {
        const mr_slice *s = &q->v[at(q, i)];
        uint32_t skip = i == 0 ? q->skip : 0;
        iov[n].iov_base = (void *)(s->p + skip);
        iov[n].iov_len = s->len - skip;
        n++;
    }
    return n;
}

void mr_outq_wrote(mr_outq *q, size_t n)
{
    size_t left = n;
    while (left > 0) {
        mr_slice *s = &q->v[q->head];
        uint32_t rest = s->len - q->skip;
        if (left < rest) {
            q->skip += (uint32_t)left;
            break;
        }
        left -= rest;
        q->bytes -= s->len;
        mr_mbuf_unref(s->mb);
        q->skip = 0;
        q->head = at(q, 1);
        q->count--;
    }
}

void mr_outq_release(mr_outq *q)
{
    for (uint32_t i = 0; i < q->count; i++)
        mr_mbuf_unref(q->v[at(q, i)].mb);
    free(q->v);
    q->v = NULL;
    q->cap = q->head = q->count = q->skip = 0;
    q->bytes = 0;
}
