/* forward.c: the command lines messages carry to the servers.
 *
 * A message forwards the client's own bytes whenever they need no change
 * (no copy: a reference into the client's input block); a line that must
 * change (noreply or meta q stripped, a multi-get split per server) is
 * written once into a fresh block the messages share.
 */
#include "memrelay/forward.h"

#include <stdlib.h>
#include <string.h>

/* Servers a split retrieval keeps its line offsets for on the stack. */
#define SPLIT_STACK_SLOTS 16

static const char *line_of(const mr_req *req)
{
    return req->line.p;
}

static int forward_line(mr_mbuf_pool *mbufs, const mr_req *req, const mr_request_head *h, mr_slice *out)
{
    const char *line = line_of(req);
    if (h->strip_len == 0 && h->line_len >= 2 && line[h->line_len - 2] == '\r') {
        *out = mr_slice_ref(req->line.mb, line, h->line_len);
        return 0;
    }
    mr_mbuf *mb = mr_mbuf_get(mbufs, h->line_len + 2);
    if (!mb)
        return -1;
    size_t n = mr_forward_line(line, h, mb->data, mb->cap);
    if (n == 0) {
        mr_mbuf_unref(mb);
        return -1;
    }
    mb->len = (uint32_t)n;
    *out = mr_slice_ref(mb, mb->data, (uint32_t)n);
    mr_mbuf_unref(mb);
    return 0;
}

int mr_forward_slice(mr_mbuf_pool *mbufs, const mr_req *req, mr_slice *out)
{
    return forward_line(mbufs, req, &req->head, out);
}

/* The line with the q kept, then "mn\r\n": the server answers zero or one
 * element and then MN, so the pipeline stays in step. */
int mr_forward_fenced(mr_mbuf_pool *mbufs, const mr_req *req, mr_msg *msg)
{
    static const char fence[] = "mn\r\n";
    mr_request_head keep_q = req->head;
    keep_q.strip_len = 0;
    if (forward_line(mbufs, req, &keep_q, &msg->out[0]) < 0)
        return -1;
    msg->out[1] = mr_slice_static(fence, sizeof(fence) - 1);
    msg->nout = 2;
    msg->fenced = true;
    return 0;
}

/* Write each server's command line ("get k1 k4\r\n", "gat 10 k2\r\n")
 * into one block shared by the messages. */
int mr_build_split_lines(mr_mbuf_pool *mbufs, mr_req *req, uint32_t first, uint32_t nslots)
{
    const mr_request_head *h = &req->head;
    const char *line = line_of(req);
    const char *name = mr_cmd_name(req->cmd);
    uint32_t name_len = (uint32_t)strlen(name);
    /* gat and gats carry their exptime before the keys. */
    uint32_t arg_len = (req->cmd == MR_CMD_GAT || req->cmd == MR_CMD_GATS) ? h->arg_len : 0;
    uint32_t prefix_len = name_len + (arg_len ? 1 + arg_len : 0);
    /* Per-slot offsets: on the stack for the usual few servers. */
    uint32_t on_stack[2 * SPLIT_STACK_SLOTS] = {0};
    uint32_t *start = nslots <= SPLIT_STACK_SLOTS ? on_stack : calloc(2 * (size_t)nslots, sizeof(uint32_t));
    if (!start)
        return -1;
    uint32_t *cursor = start + nslots;
    for (uint32_t i = 0; i < req->nkeys; i++)
        if (req->key_msg[i] - first < nslots)
            cursor[req->key_msg[i] - first] += 1 + req->keys[i].len; /* bytes of this server's keys */
    uint32_t total = 0;
    for (uint32_t s = 0; s < nslots; s++) {
        start[s] = total;
        total += prefix_len + cursor[s] + 2;
    }
    mr_mbuf *mb = mr_mbuf_get(mbufs, total);
    if (!mb) {
        if (start != on_stack)
            free(start);
        return -1;
    }
    for (uint32_t s = 0; s < nslots; s++) {
        char *p = mb->data + start[s];
        memcpy(p, name, name_len);
        if (arg_len) {
            p[name_len] = ' ';
            memcpy(p + name_len + 1, line + h->arg_off, arg_len);
        }
        cursor[s] = start[s] + prefix_len;
    }
    for (uint32_t i = 0; i < req->nkeys; i++) {
        uint32_t s = req->key_msg[i] - first;
        if (s >= nslots)
            continue;
        uint32_t klen = req->keys[i].len;
        mb->data[cursor[s]] = ' ';
        memcpy(mb->data + cursor[s] + 1, line + req->keys[i].off, klen);
        cursor[s] += 1 + klen;
    }
    for (uint32_t s = 0; s < nslots; s++) {
        mb->data[cursor[s]] = '\r';
        mb->data[cursor[s] + 1] = '\n';
        mr_msg *msg = &req->msgs[first + s];
        msg->out[0] = mr_slice_ref(mb, mb->data + start[s], cursor[s] + 2 - start[s]);
        msg->nout = 1;
    }
    mb->len = total;
    mr_mbuf_unref(mb);
    if (start != on_stack)
        free(start);
    return 0;
}
