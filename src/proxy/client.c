/* client.c: a client connection's life: read, parse, queue, write in order.
 *
 * Requests are answered strictly in arrival order: each parsed request goes
 * on the client's queue, and replies leave only from the head of it. Reading
 * stops (backpressure) while the client has too many requests or reply
 * bytes waiting, so a client that does not read its replies costs a bounded
 * amount of memory and slows nobody else.
 */
#include "memrelay/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "memrelay/auth_gate.h"
#include "memrelay/binary.h"
#include "memrelay/dispatch.h"
#include "memrelay/emit.h"
#include "memrelay/log.h"
#include "memrelay/tls.h"
#include "memrelay/worker.h"

#define WRITE_IOV_MAX 512
/* Requests a new client may have in flight before its first reply tells
 * their size (window()). */
#define CLIENT_FIRST_WINDOW 16u

static void client_read_cb(struct ev_loop *loop, ev_io *io, int revents);
static void client_write_cb(struct ev_loop *loop, ev_io *io, int revents);
static void idle_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void auth_wait_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void stuck_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void stalled_cb(struct ev_loop *loop, ev_timer *t, int revents);
static const char *peer_text(int fd, char *buf, size_t cap);
static void mem_wait_unlink(mr_client *c);

void mr_client_accept(mr_worker *w, int fd, uint32_t listen_pool, uint32_t pool_slot, SSL_CTX *tls)
{
    mr_client *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->worker = w;
    c->conn.fd = fd;
    c->id = w->next_client_id++;
    c->listen_pool = listen_pool;
    c->pool_slot = pool_slot;
    c->authed = w->gen->cfg->pools[listen_pool].auth == NULL;
    c->reply_est = w->gen->cfg->pools[listen_pool].item_size_max; /* until its first reply tells */
    ev_io_init(&c->rio, client_read_cb, fd, EV_READ);
    ev_io_init(&c->wio, client_write_cb, fd, EV_WRITE);
    c->rio.data = c->wio.data = c;
    ev_io_start(w->loop, &c->rio);
    c->last_active = ev_now(w->loop);
    ev_init(&c->idle, idle_cb);
    c->idle.data = c;
    ev_init(&c->auth_wait, auth_wait_cb);
    c->auth_wait.data = c;
    ev_init(&c->stuck, stuck_cb);
    c->stuck.data = c;
    ev_init(&c->stalled, stalled_cb);
    c->stalled.data = c;
    uint32_t idle_ms = w->gen->cfg->pools[listen_pool].client_idle_timeout_ms;
    /* A TLS client has its idle timeout, or MR_TLS_HANDSHAKE_TIMEOUT, to
     * finish the handshake (idle_cb). */
    if (idle_ms || tls) {
        ev_timer_set(&c->idle, idle_ms ? idle_ms / 1000.0 : MR_TLS_HANDSHAKE_TIMEOUT, 0);
        ev_timer_start(w->loop, &c->idle);
    }
    c->next = w->clients;
    if (w->clients)
        w->clients->prev = c;
    w->clients = c;
    MR_STAT_INC(&w->stats, curr_connections);
    MR_STAT_INC(&w->stats, total_connections);
    if (mr_conn_accept(&c->conn, fd, tls) < 0) {
        mr_log_error("client: out of memory starting TLS");
        mr_client_close(c);
    }
}

bool mr_client_has_output(const mr_client *c)
{
    return c->out.count > 0 || mr_conn_has_output(&c->conn);
}

bool mr_client_is_quiet(const mr_client *c)
{
    if (c->q_head || c->swallow || mr_inbuf_len(&c->in) > 0 || mr_client_has_output(c))
        return false;
    if (c->eof)
        return true;
    if (mr_conn_established(&c->conn) && mr_conn_pending_input(&c->conn))
        return false;
    /* Bytes the kernel holds that the loop has not read yet: the client
     * sent them before it saw the connection close, so they are answered. */
    int unread = 0;
    return ioctl(c->conn.fd, FIONREAD, &unread) != 0 || unread == 0;
}

void mr_client_close(mr_client *c)
{
    mr_worker *w = c->worker;
    ev_io_stop(w->loop, &c->rio);
    ev_io_stop(w->loop, &c->wio);
    ev_timer_stop(w->loop, &c->idle);
    ev_timer_stop(w->loop, &c->auth_wait);
    ev_timer_stop(w->loop, &c->stuck);
    ev_timer_stop(w->loop, &c->stalled);
    mr_conn_close(&c->conn);
    /* Requests still waiting on backends become orphans; their replies are dropped. */
    for (mr_req *r = c->q_head; r;) {
        mr_req *next = r->next;
        mr_req_client_done(r);
        r = next;
    }
    for (mr_req *r = c->s_head; r;) {
        mr_req *next = r->next;
        mr_req_client_done(r);
        r = next;
    }
    mr_outq_release(&c->out);
    mr_inbuf_release(&c->in);
    if (c->mem_wait)
        mem_wait_unlink(c);
    if (c->mem && w->shared->membudget)
        mr_memcredit_give(w->shared->membudget, &w->mem, c->mem, w->index);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->dirty) {
        /* Unlink from the flush list. */
        mr_client **pp = &w->dirty_clients;
        while (*pp && *pp != c)
            pp = &(*pp)->next_dirty;
        if (*pp)
            *pp = c->next_dirty;
    }
    MR_STAT_DEC(&w->stats, curr_connections);
    __atomic_sub_fetch(&w->shared->pool_clients[c->pool_slot], 1, __ATOMIC_RELAXED);
    free(c);
}

void mr_client_mark_dirty(mr_client *c)
{
    if (c->dirty)
        return;
    mr_worker *w = c->worker;
    c->dirty = true;
    c->next_dirty = w->dirty_clients;
    w->dirty_clients = c;
}

/* A request whose reply may carry a value: memory_limit counts its reply
 * owed (storage and the rest bring a line). */
static inline uint32_t brings_value(const mr_req *req)
{
    return ((1u << MR_CLASS_RETRIEVAL | 1u << MR_CLASS_META_KEYED) >> req->cls) & 1u;
}

static void queue_push(mr_client *c, mr_req *req)
{
    MR_CHECK(req->client == c);
    req->next = NULL;
    if (c->q_tail)
        c->q_tail->next = req;
    else
        c->q_head = req;
    c->q_tail = req;
    c->nqueued++;
    c->nowed += brings_value(req);
    c->request_bytes += req->line.len;
}

static void silent_push(mr_client *c, mr_req *req)
{
    req->next = NULL;
    if (c->s_tail)
        c->s_tail->next = req;
    else
        c->s_head = req;
    c->s_tail = req;
    c->request_bytes += req->line.len;
}

/* Answered noreply requests at the head of the silent list leave it (they
 * are orphans from then on): their bytes no longer count. */
static void silent_sweep(mr_client *c)
{
    while (c->s_head && c->s_head->done) {
        mr_req *req = c->s_head;
        c->s_head = req->next;
        if (!c->s_head)
            c->s_tail = NULL;
        c->request_bytes -= req->line.len < c->request_bytes ? req->line.len : c->request_bytes;
        mr_req_client_done(req);
    }
}

/* A reply made by memrelay itself, from static text. */
static mr_req *local_reply(mr_client *c, const char *text)
{
    mr_req *req = mr_req_new(c->worker);
    if (!req) {
        c->closing = true;
        return NULL;
    }
    req->client = c;
    req->local = mr_slice_static(text, (uint32_t)strlen(text));
    req->done = true;
    queue_push(c, req);
    mr_client_mark_dirty(c);
    return req;
}

/* Requests this client may have in flight: client_output_limit's worth of
 * replies of the size its replies have had (reply_avg), or of the pool's
 * largest item before its first reply (but at least CLIENT_FIRST_WINDOW,
 * so a short pipeline goes out at once); at least 1, at most
 * client_queue_limit. Replies are always read from the servers, so this is
 * what bounds the bytes a client that does not read can make memrelay hold:
 * about client_output_limit in flight plus client_output_limit queued. */
static uint32_t window(const mr_client *c, const mr_pool_conf *pc)
{
    uint64_t each = c->reply_avg ? c->reply_avg : (pc->item_size_max ? pc->item_size_max : 1);
    uint64_t n = pc->client_output_limit / each;
    if (n < (c->reply_avg ? 1 : CLIENT_FIRST_WINDOW))
        n = c->reply_avg ? 1 : CLIENT_FIRST_WINDOW;
    return n < pc->client_queue_limit ? (uint32_t)n : pc->client_queue_limit;
}

/* ---- memory_limit (membudget.h; docs/reliability.md) ----
 *
 * A client's charge (c->mem) is what memrelay holds for it: the data block
 * it is sending (reserved whole, c->block), its requests waiting for
 * replies (request_bytes), the values its retrieval and meta requests will
 * bring (nowed, each guessed at reply_est: the running size of its
 * replies, the pool's item_size_max before its first, as window() does)
 * and its replies not yet written (out.bytes). It is brought up to date after each read and each flush
 * (mem_sync), against the worker's credit: no atomic per request. A
 * client's first MEM_UNCOUNTED bytes are not charged, so a client doing
 * small round trips costs the budget nothing (as its input block, at most
 * one standard block, is not charged either).
 *
 * A request larger than a standard input block reserves its whole size
 * before more of it is read; with no budget left the client is not read
 * (its bytes wait in its socket) and joins the worker's wait list, oldest
 * first. An admitted block can always complete, so budget always comes
 * back. While the budget is used up (replies, small requests), clients
 * holding more than MEM_PRESSURE_FLOOR besides an admitted block are not
 * read either; servers are always read. */
#define BLOCK_RESERVE_MIN MR_MBUF_SIZE
#define MEM_PRESSURE_FLOOR (64u * 1024u)
#define MEM_UNCOUNTED 4096u
#define MEM_REFUSED "SERVER_ERROR out of memory storing object\r\n"

static void mem_charge(mr_client *c, uint64_t want)
{
    mr_worker *w = c->worker;
    if (!w->shared->membudget)
        return;
    if (want > c->mem)
        mr_memcredit_add(w->shared->membudget, &w->mem, want - c->mem);
    else
        mr_memcredit_sub(w->shared->membudget, &w->mem, c->mem - want, w->index);
    c->mem = want;
}

/* What the client holds or is owed, its admitted block aside. */
static inline uint64_t mem_held(const mr_client *c)
{
    return c->request_bytes + c->out.bytes + (uint64_t)c->nowed * c->reply_est;
}

static inline void mem_sync(mr_client *c)
{
    uint64_t want = c->block + mem_held(c);
    if (want <= MEM_UNCOUNTED)
        want = 0;
    if (__builtin_expect(want != c->mem, 0))
        mem_charge(c, want);
}

/* Held back by a used-up budget: it holds or is owed more than
 * MEM_PRESSURE_FLOOR besides an admitted block (counted live). Also one of
 * over_bounds', so requests already buffered are not sent on either (each
 * would bring a reply). Counted live, the client's own growth since its
 * last charge included, so a window dispatched at once cannot overshoot. */
static inline bool mem_pressed(const mr_client *c)
{
    uint64_t held = mem_held(c);
    if (__builtin_expect(held <= MEM_PRESSURE_FLOOR, 1))
        return false;
    const mr_membudget *b = c->worker->shared->membudget;
    uint64_t charged = c->mem > c->block ? c->mem - c->block : 0; /* what mem_sync last charged */
    return b && mr_memcredit_exhausted(b, &c->worker->mem, held > charged ? held - charged : 0);
}

/* client_block_timeout: a client holding a reserved block holds budget
 * other clients may wait for; one that stops sending inside its block (a
 * slow-loris, a hung client) must not keep it forever. The timer runs while
 * a block is reserved, re-armed lazily from last_active (as idle_cb), and
 * closes the client only while somebody waits for budget: without waiters
 * its block costs nobody anything, and memcached would wait too. */
static void block_clock(mr_client *c)
{
    uint32_t ms = c->worker->gen->cfg->pools[c->listen_pool].client_block_timeout_ms;
    if (ms && !ev_is_active(&c->stalled)) {
        ev_timer_set(&c->stalled, ms / 1000.0, 0);
        ev_timer_start(c->worker->loop, &c->stalled);
    }
}

static void stalled_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    mr_client *c = t->data;
    mr_worker *w = c->worker;
    const mr_pool_conf *pc = &w->gen->cfg->pools[c->listen_pool];
    mr_membudget *b = w->shared->membudget;
    if (!c->block || !pc->client_block_timeout_ms || !b)
        return; /* its block is complete (or the key was turned off by a reload) */
    ev_tstamp timeout = pc->client_block_timeout_ms / 1000.0;
    if (!ev_is_active(&c->rio) || c->paused || c->mem_wait || c->closing)
        c->last_active = ev_now(loop); /* memrelay is not reading it: its silence is not its own */
    ev_tstamp left = c->last_active + timeout - ev_now(loop);
    if (left > 0 || !(w->mem_wait_head || mr_membudget_has_waiters(b))) {
        ev_timer_set(t, left > 0 ? left : timeout, 0);
        ev_timer_start(loop, t);
        return;
    }
    char peer[INET6_ADDRSTRLEN + 16];
    mr_log_warn("client %s (pool %s): sent nothing for %u ms inside a %u-byte data block it holds "
                "memory_limit for, while other clients wait for memory (client_block_timeout): closed",
                peer_text(c->conn.fd, peer, sizeof(peer)), pc->name, (unsigned)pc->client_block_timeout_ms,
                (unsigned)c->block);
    MR_STAT_INC(&w->stats, client_block_closed);
    mr_client_close(c);
}

/* Does the client wait for a block reservation, or is it held back by a
 * used-up budget? Reserves the block when it can. */
static bool mem_blocked(mr_client *c, mr_membudget *b, bool queue_behind)
{
    mr_worker *w = c->worker;
    if (c->need > BLOCK_RESERVE_MIN && c->block < c->need) {
        uint64_t extra = c->need - c->block;
        if (queue_behind || !mr_memcredit_take(b, &w->mem, extra))
            return true;
        c->block = c->need;
        c->mem += extra;
        block_clock(c);
        return false;
    }
    return mem_pressed(c);
}

static void mem_wait_push(mr_client *c, mr_membudget *b)
{
    mr_worker *w = c->worker;
    mr_membudget_view v;
    mr_membudget_read(b, &v);
    c->mem_wait = true;
    ev_io_stop(w->loop, &c->rio);
    c->next_mem_wait = NULL;
    if (w->mem_wait_tail)
        w->mem_wait_tail->next_mem_wait = c;
    else
        w->mem_wait_head = c;
    w->mem_wait_tail = c;
    mr_membudget_waiting(b, w->index, true);
    MR_STAT_INC(&w->stats, memory_waits);
    mr_log_warn("memory_limit (%llu bytes) used up (%llu in use): reading paused for clients waiting for "
                "memory (memory_waits)",
                (unsigned long long)v.limit, (unsigned long long)v.used);
}

static void mem_wait_unlink(mr_client *c)
{
    mr_worker *w = c->worker;
    mr_client *prev = NULL;
    for (mr_client *p = w->mem_wait_head; p; prev = p, p = p->next_mem_wait) {
        if (p != c)
            continue;
        if (prev)
            prev->next_mem_wait = c->next_mem_wait;
        else
            w->mem_wait_head = c->next_mem_wait;
        if (w->mem_wait_tail == c)
            w->mem_wait_tail = prev;
        break;
    }
    c->mem_wait = false;
    if (!w->mem_wait_head && w->shared->membudget)
        mr_membudget_waiting(w->shared->membudget, w->index, false);
}

/* A block that can never fit the budget (a reload raised item_size_max
 * past memory_limit): pushing back cannot help. A text client gets
 * memcached's reply for it and the rest of the block is swallowed; a
 * binary one is closed. Counted in memory_refused. */
static void mem_refuse(mr_client *c, uint64_t limit)
{
    mr_worker *w = c->worker;
    MR_STAT_INC(&w->stats, memory_refused);
    mr_log_warn("client (pool %s): a %u-byte request can never fit memory_limit (%llu bytes): refused",
                w->gen->cfg->pools[c->listen_pool].name, (unsigned)c->need, (unsigned long long)limit);
    if (c->binary) {
        c->closing = true;
        ev_io_stop(w->loop, &c->rio);
        mr_client_mark_dirty(c);
        return;
    }
    uint32_t have = mr_inbuf_len(&c->in);
    mr_req *err = local_reply(c, MEM_REFUSED);
    if (err && c->need > have) {
        err->done = false; /* sent once the block is swallowed, as memcached */
        c->swallow_req = err;
        c->swallow = c->need - have;
    }
    mr_inbuf_consume(&c->in, have);
    c->need = 0;
}

/* Before a read: false when the client must not be read now (it waits on
 * the worker's list, or was refused and closes). */
static bool mem_admit_slow(mr_client *c)
{
    mr_worker *w = c->worker;
    mr_membudget *b = w->shared->membudget;
    if (!b)
        return true;
    if (c->mem_wait) {
        ev_io_stop(w->loop, &c->rio);
        return false;
    }
    if (!mem_blocked(c, b, w->mem_wait_head != NULL))
        return true;
    mr_membudget_view v;
    mr_membudget_read(b, &v);
    if (c->need > BLOCK_RESERVE_MIN && c->block < c->need && c->need > v.limit) {
        mem_refuse(c, v.limit);
        return !c->closing;
    }
    mem_wait_push(c, b);
    return false;
}

static inline bool mem_admit(mr_client *c)
{
    if (__builtin_expect(c->need <= BLOCK_RESERVE_MIN && c->mem <= MEM_PRESSURE_FLOOR && !c->mem_wait, 1))
        return true;
    return mem_admit_slow(c);
}

void mr_client_mem_retry(mr_worker *w)
{
    mr_membudget *b = w->shared->membudget;
    while (b && w->mem_wait_head) {
        mr_client *c = w->mem_wait_head;
        if (mem_blocked(c, b, false))
            return;
        w->mem_wait_head = c->next_mem_wait;
        if (!w->mem_wait_head)
            w->mem_wait_tail = NULL;
        c->mem_wait = false;
        if (c->paused) {
            mr_client_mark_dirty(c); /* the flush resumes it once nothing else holds it back */
        } else if (!c->closing) {
            ev_io_start(w->loop, &c->rio);
            ev_feed_event(w->loop, &c->rio, EV_READ);
        }
    }
    if (b)
        mr_membudget_waiting(b, w->index, false);
}

/* client_output_timeout's clock runs while the undelivered output is above
 * client_output_limit, and stops as soon as it is not. */
static inline void output_clock(mr_client *c)
{
    if (__builtin_expect(c->out.bytes == 0 && !ev_is_active(&c->stuck), 1))
        return;
    const mr_pool_conf *pc = &c->worker->gen->cfg->pools[c->listen_pool];
    bool over = c->out.bytes > pc->client_output_limit;
    if (over == (bool)ev_is_active(&c->stuck))
        return;
    if (!over) {
        ev_timer_stop(c->worker->loop, &c->stuck);
    } else if (pc->client_output_timeout_ms) {
        ev_timer_set(&c->stuck, pc->client_output_timeout_ms / 1000.0, 0);
        ev_timer_start(c->worker->loop, &c->stuck);
    }
}

static bool over_bounds(const mr_client *c)
{
    const mr_pool_conf *pc = &c->worker->gen->cfg->pools[c->listen_pool];
    return c->nqueued >= window(c, pc) || c->out.bytes >= pc->client_output_limit ||
           c->request_bytes >= pc->client_input_limit || ev_is_active(&c->auth_wait) || mem_pressed(c);
}

/* A reply of `bytes` went out to the client's output: rise to a larger
 * size at once, fall by a sixteenth of the gap (a run of small replies
 * cannot hide the large ones that may follow for long). */
static void note_reply_size(mr_client *c, uint64_t bytes)
{
    uint32_t b = bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)bytes;
    if (b == 0)
        return;
    if (b >= c->reply_avg)
        c->reply_avg = b;
    else
        c->reply_avg -= (c->reply_avg - b) / 16;
    c->reply_est = c->reply_avg;
}

/* client_output_timeout: its undelivered output stayed above
 * client_output_limit for that long (output_clock), whether it reads
 * nothing or trickles: closed, logged, counted. */
static void stuck_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    mr_client *c = t->data;
    mr_worker *w = c->worker;
    const mr_pool_conf *pc = &w->gen->cfg->pools[c->listen_pool];
    char peer[INET6_ADDRSTRLEN + 16];
    mr_log_warn("client %s (pool %s): %llu reply bytes unread, above client_output_limit (%u) for %u ms "
                "(client_output_timeout): closed",
                peer_text(c->conn.fd, peer, sizeof(peer)), pc->name, (unsigned long long)c->out.bytes,
                (unsigned)pc->client_output_limit, (unsigned)pc->client_output_timeout_ms);
    MR_STAT_INC(&w->stats, client_output_closed);
    mr_client_close(c);
}

/* client_idle_timeout: one timer per client, re-armed only when it fires
 * (libev's "be smart about timeouts"): activity just moves last_active. */
static void idle_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    mr_client *c = t->data;
    const mr_pool_conf *pc = &c->worker->gen->cfg->pools[c->listen_pool];
    if (!mr_conn_established(&c->conn)) {
        MR_STAT_INC(&c->worker->stats, tls_handshake_failures);
        mr_tls_log_failure("client TLS handshake", pc->name, "not finished in time");
        mr_client_close(c);
        return;
    }
    ev_tstamp timeout = pc->client_idle_timeout_ms / 1000.0;
    ev_tstamp left = c->last_active + timeout - ev_now(loop);
    if (left > 0 || c->q_head) {
        /* Active since, or still waiting for its replies: not idle. */
        ev_timer_set(t, left > 0 ? left : timeout, 0);
        ev_timer_start(loop, t);
        return;
    }
    MR_STAT_INC(&c->worker->stats, client_idle_closed);
    mr_client_close(c);
}

/* The client's address for a log line: "ip:port", "[ip6]:port" or "unix". */
static const char *peer_text(int fd, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return "?";
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(buf, cap, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        snprintf(buf, cap, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
    } else {
        return "unix";
    }
    return buf;
}

/* A failed attempt (its reply is queued): count it, log it (rate-limited,
 * with the peer's address, never the credentials) and apply the
 * connection's penalty: go on, stop reading for a while, or close.
 * Returns 0 to go on with the input, -1 to stop. */
static int auth_denied(mr_client *c)
{
    mr_worker *w = c->worker;
    MR_STAT_INC(&w->stats, auth_errors);
    c->auth_failures++;
    mr_auth_penalty pen = mr_auth_failure_penalty(c->auth_failures);
    char peer[INET6_ADDRSTRLEN + 16];
    mr_log_warn("client %s (pool %s): authentication failure %u on this connection%s",
                peer_text(c->conn.fd, peer, sizeof(peer)), w->gen->cfg->pools[c->listen_pool].name,
                c->auth_failures,
                pen == MR_AUTH_SHUT    ? ", closing"
                : pen == MR_AUTH_DELAY ? ", delaying"
                                       : "");
    if (pen == MR_AUTH_SHUT) {
        MR_STAT_INC(&w->stats, auth_failure_closes);
        c->closing = true;
        mr_client_mark_dirty(c);
        return -1;
    }
    if (pen == MR_AUTH_DELAY) {
        MR_STAT_INC(&w->stats, auth_delays);
        c->paused = true;
        ev_io_stop(w->loop, &c->rio);
        ev_timer_set(&c->auth_wait, mr_auth_failure_delay(c->auth_failures), 0);
        ev_timer_start(w->loop, &c->auth_wait);
        return -1;
    }
    return 0;
}

/* The delay after a failed attempt is over: the flush resumes reading
 * (and parses what is buffered) once nothing else holds it back. */
static void auth_wait_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    mr_client_mark_dirty(t->data);
}

/* memcached -Y: until a client authenticates, its input goes through the
 * gate (auth_gate.c) instead of the command parser, so it gets memcached's
 * replies byte for byte. The credentials are looked up in the current
 * configuration at each attempt, so after a reload new attempts use the new
 * file. Returns 0 to go on with the input, -1 to stop (waiting for bytes,
 * or closing). */
static int auth_gate(mr_client *c, const char *p, uint32_t avail)
{
    mr_worker *w = c->worker;
    const mr_auth_table *t = w->gen->cfg->pools[c->listen_pool].auth;
    if (t == NULL) { /* authentication was turned off since it connected */
        c->authed = true;
        return 0;
    }
    mr_auth_step st;
    mr_auth_gate(p, avail, t, &st);
    if (st.action == MR_AUTH_NEED_MORE) {
        c->need = st.need;
        return -1;
    }
    if (st.action == MR_AUTH_CLOSE) {
        c->closing = true;
        mr_client_mark_dirty(c);
        return -1;
    }
    /* memcached's names and meaning: attempts that reached the credential
     * check, and those of them that failed. */
    if (st.outcome != MR_AUTH_NOT_TRIED)
        MR_STAT_INC(&w->stats, auth_cmds);
    c->authed = st.outcome == MR_AUTH_GRANTED;
    local_reply(c, st.reply);
    mr_inbuf_consume(&c->in, st.consumed);
    c->block = 0;
    if (st.outcome == MR_AUTH_DENIED)
        return auth_denied(c);
    return 0;
}

/* ---- binary protocol clients (binary.h's contract) ---- */

/* A request answered by memrelay with binary responses built into `mb`
 * (n bytes at p). Takes over the caller's reference on mb. */
static mr_req *bin_local(mr_client *c, mr_req *req, mr_mbuf *mb, const char *p, size_t n)
{
    if (!req && !(req = mr_req_new(c->worker))) {
        mr_mbuf_unref(mb);
        c->closing = true;
        return NULL;
    }
    req->client = c;
    if (n > 0) {
        req->local = mr_slice_ref(mb, p, (uint32_t)n);
        req->local_framed = true;
    }
    mr_mbuf_unref(mb);
    req->done = true;
    queue_push(c, req);
    mr_client_mark_dirty(c);
    return req;
}

/* The response to a request that failed to parse. */
static void bin_error_reply(mr_client *c, const mr_bin_request *r)
{
    mr_mbuf *mb = mr_mbuf_get(&c->worker->mbufs, MR_BIN_REPLY_HEAD_MAX);
    if (!mb) {
        c->closing = true;
        return;
    }
    size_t n = mr_bin_error_reply(r, mb->data, mb->cap);
    mb->len = (uint32_t)n;
    bin_local(c, NULL, mb, mb->data, n);
}

/* STAT: memrelay's own `stats <group>` text, as memcached's packets. */
static size_t bin_stats(mr_client *c, const mr_bin_plan *plan, mr_mbuf **out)
{
    mr_worker *w = c->worker;
    mr_slice text = {0};
    *out = NULL;
    if (w->hooks->stats_reply(w, c->listen_pool, &text, plan->key, plan->key_len, plan->key + plan->key_len,
                              0) < 0)
        return 0;
    size_t n = mr_bin_stats_reply(plan, text.p, text.len, NULL, 0);
    mr_mbuf *mb = n <= UINT32_MAX ? mr_mbuf_get(&w->mbufs, (uint32_t)n) : NULL;
    if (mb) {
        mr_bin_stats_reply(plan, text.p, text.len, mb->data, mb->cap);
        mb->len = (uint32_t)n;
    }
    mr_slice_release(&text);
    *out = mb;
    return mb ? n : 0;
}

/* SASL_AUTH/SASL_STEP against the pool's credentials (pool auth_file, the
 * table ASCII authentication uses): memcached's counters; a failure is
 * logged (peer address, never the credentials) and penalised as in ASCII
 * (auth_denied). */
static size_t bin_sasl(mr_client *c, const mr_bin_request *r, const mr_bin_plan *plan, char *out, size_t cap)
{
    mr_worker *w = c->worker;
    const mr_auth_table *t = w->gen->cfg->pools[c->listen_pool].auth;
    mr_bin_sasl_result res;
    mr_bin_sasl(&c->sasl, r, t, &res);
    if (res.counts)
        MR_STAT_INC(&w->stats, auth_cmds);
    c->authed = res.authenticated || t == NULL;
    if (res.status == MR_BIN_AUTH_ERROR)
        (void)auth_denied(c); /* counted, logged; the brute-force penalty takes effect after this reply */
    return mr_bin_sasl_reply(plan, &res, out, cap);
}

/* A request memrelay answers itself (NOOP, QUIT, STAT, SASL_*). */
static void bin_local_cmd(mr_client *c, mr_req *req, mr_mbuf *mb, const mr_bin_request *r, mr_bin_plan *plan,
                          char *head)
{
    size_t n = 0;
    switch (plan->kind) {
    case MR_BIN_KIND_NOOP:
        n = mr_bin_ok_reply(plan, head, MR_BIN_REPLY_HEAD_MAX);
        break;
    case MR_BIN_KIND_QUIT:
        c->closing = true; /* nothing after quit is read */
        if (plan->quiet) {
            mr_mbuf_unref(mb);
            mr_req_client_done(req);
            return;
        }
        req->close_after = true;
        n = mr_bin_ok_reply(plan, head, MR_BIN_REPLY_HEAD_MAX);
        break;
    case MR_BIN_KIND_SASL_LIST:
        n = mr_bin_sasl_list_reply(plan, head, MR_BIN_REPLY_HEAD_MAX);
        break;
    case MR_BIN_KIND_SASL_AUTH:
        n = bin_sasl(c, r, plan, head, MR_BIN_REPLY_HEAD_MAX);
        break;
    case MR_BIN_KIND_STAT: {
        mr_mbuf *sm;
        size_t sn = bin_stats(c, plan, &sm);
        if (sn > 0) {
            mr_mbuf_unref(mb); /* the plan is not needed past here */
            req->bin = NULL;
            bin_local(c, req, sm, sm->data, sn);
            return;
        }
        n = mr_bin_status_reply(plan, MR_BIN_ENOMEM, NULL, head, MR_BIN_REPLY_HEAD_MAX);
        break;
    }
    default:
        n = mr_bin_status_reply(plan, MR_BIN_UNKNOWN_COMMAND, NULL, head, MR_BIN_REPLY_HEAD_MAX);
        break;
    }
    bin_local(c, req, mb, head, n);
}

/* A run of GETQ/GETKQ requests already in the input (the first parsed in
 * `first`) becomes one `gets` of their keys, which dispatch splits per
 * server and emit merges back, one response per hit in request order, as
 * for a text multi-get. Only keys a text line can carry join a run; a run
 * stops at MR_BIN_RUN_MAX requests, at any other request, or where the
 * input ends. Returns 0 when the run was dispatched, -1 when there is no run
 * (fewer than two), and the caller goes on request by request. */
static int bin_run(mr_client *c, const char *p, uint32_t avail, const mr_bin_opts *o,
                   const mr_bin_request *first)
{
    mr_worker *w = c->worker;
    const mr_pool_conf *pc = &w->gen->cfg->pools[c->listen_pool];
    mr_bin_run_key keys[MR_BIN_RUN_MAX];
    uint32_t n = 0, off = 0, line_len = 4 + 2; /* "gets" ... "\r\n" */
    mr_bin_request r = *first;
    for (;;) {
        char tmp[MR_BIN_KEY_MAX];
        bool b64 = false;
        if (n == MR_BIN_RUN_MAX || (r.h.opcode != MR_BIN_OP_GETQ && r.h.opcode != MR_BIN_OP_GETKQ))
            break;
        if (r.h.keylen > MR_KEY_MAX || mr_bin_meta_key(r.key, r.h.keylen, tmp, sizeof(tmp), &b64) == 0 || b64)
            break;
        keys[n].opaque = r.h.opaque;
        keys[n].opcode = r.h.opcode;
        keys[n].key_len = (uint8_t)r.h.keylen;
        keys[n].key_off = (uint32_t)(r.key - p); /* in the input, for now */
        n++;
        off += r.consumed;
        line_len += 1 + r.h.keylen;
        if (off >= avail || mr_bin_parse(p + off, avail - off, o, &r) != MR_BIN_OK)
            break;
    }
    if (n < 2)
        return -1;
    uint32_t cap = 8 + n * (uint32_t)sizeof(mr_bin_run_key) + n * MR_BIN_REPLY_HEAD_MAX + line_len;
    mr_mbuf *mb = mr_mbuf_get(&w->mbufs, cap);
    if (!mb)
        return -1;
    size_t pad = (8 - ((uintptr_t)mb->data & 7)) & 7;
    mr_bin_run_key *run = (mr_bin_run_key *)(void *)(mb->data + pad);
    char *heads = (char *)(run + n);
    char *line = heads + (size_t)n * MR_BIN_REPLY_HEAD_MAX;
    uint32_t l = 4;
    memcpy(line, "gets", 4);
    for (uint32_t i = 0; i < n; i++) {
        line[l++] = ' ';
        memcpy(line + l, p + keys[i].key_off, keys[i].key_len);
        run[i] = keys[i];
        run[i].key_off = l;
        l += keys[i].key_len;
    }
    line[l++] = '\r';
    line[l++] = '\n';
    mb->len = (uint32_t)(line + l - mb->data);
    mr_request_head h;
    mr_req *req = NULL;
    if (mr_parse_request(line, l, pc->item_size_max, MR_ASCII_DEFAULT_MAX_LINE, &h) != MR_PARSE_OK ||
        h.nkeys != n || !(req = mr_req_new(w))) {
        mr_mbuf_unref(mb);
        return -1;
    }
    req->cmd = h.cmd;
    req->cls = mr_cmd_class_of(h.cmd);
    req->head = h;
    req->listen_pool = c->listen_pool;
    req->conn_hint = c->id;
    req->line = mr_slice_ref(mb, line, l);
    mr_mbuf_unref(mb);
    req->bin_run = run;
    req->bin_run_len = n;
    req->bin_out = heads;
    req->client = c;
    mr_inbuf_consume(&c->in, off);
    c->block = 0;
    queue_push(c, req);
    mr_dispatch(req);
    return 0;
}

/* One binary request at the start of the input: 0 to go on, -1 to stop
 * (waiting for bytes, or closing). A request that parsed becomes an mr_req
 * whose line is the meta command it translates to, in a block of its own
 * (plan | response head | meta line, value, "\r\n"), and goes through the
 * normal dispatch; emit translates its reply back (emit.c). */
static int bin_process(mr_client *c, const char *p, uint32_t avail)
{
    mr_worker *w = c->worker;
    const mr_pool_conf *pc = &w->gen->cfg->pools[c->listen_pool];
    mr_bin_opts o = {
        .item_size_max = pc->item_size_max, .sasl = pc->auth != NULL, .authenticated = c->authed};
    mr_bin_request r;
    mr_bin_parse_status st = mr_bin_parse(p, avail, &o, &r);
    if (st == MR_BIN_NEED_MORE) {
        c->need = r.need;
        return -1;
    }
    if (st == MR_BIN_ERROR) {
        MR_STAT_INC(&w->stats, client_errors);
        if (r.reply)
            bin_error_reply(c, &r);
        if (r.error_unlinks_key) { /* memcached drops the old item too */
            char key[MR_BIN_KEY_MAX];
            bool b64 = false;
            size_t kn = mr_bin_meta_key(r.key, r.h.keylen, key, sizeof(key), &b64);
            if (kn)
                mr_dispatch_unlink(w, c->listen_pool, c->id, key, (uint32_t)kn, b64);
        }
        mr_inbuf_consume(&c->in, r.consumed);
        c->block = 0;
        if (r.after == MR_BIN_AFTER_SWALLOW)
            c->swallow = r.swallow;
        else if (r.after == MR_BIN_AFTER_CLOSE)
            c->closing = true;
        return 0;
    }
    if ((r.h.opcode == MR_BIN_OP_GETQ || r.h.opcode == MR_BIN_OP_GETKQ) && bin_run(c, p, avail, &o, &r) == 0)
        return 0;
    /* The block: the plan (aligned), the response head, then the meta line
     * with the value and its "\r\n". */
    uint32_t cap =
        8 + (uint32_t)sizeof(mr_bin_plan) + MR_BIN_REPLY_HEAD_MAX + MR_BIN_META_LINE_MAX + r.value_len + 2;
    mr_mbuf *mb = mr_mbuf_get(&w->mbufs, cap);
    mr_req *req = mb ? mr_req_new(w) : NULL;
    if (!req) {
        mr_mbuf_unref(mb);
        c->closing = true;
        return -1;
    }
    size_t pad = (8 - ((uintptr_t)mb->data & 7)) & 7;
    mr_bin_plan *plan = (mr_bin_plan *)(void *)(mb->data + pad);
    char *head = (char *)(plan + 1);
    char *line = head + MR_BIN_REPLY_HEAD_MAX;
    mr_bin_meta m;
    mr_bin_status bs = mr_bin_translate(&r, line, MR_BIN_META_LINE_MAX, &m, plan);
    req->bin = plan;
    req->bin_out = head;
    req->listen_pool = c->listen_pool;
    req->conn_hint = c->id;
    uint32_t total = (uint32_t)m.line_len;
    if (bs == MR_BIN_SUCCESS && m.has_data) {
        memcpy(line + total, m.data, m.data_len);
        total += m.data_len;
        line[total++] = '\r';
        line[total++] = '\n';
    }
    mb->len = (uint32_t)(line + total - mb->data);
    mr_inbuf_consume(&c->in, r.consumed);
    c->block = 0;
    if (bs != MR_BIN_SUCCESS) {
        bin_local(c, req, mb, head, mr_bin_status_reply(plan, bs, NULL, head, MR_BIN_REPLY_HEAD_MAX));
        return 0;
    }
    if (m.cls == MR_BIN_CLASS_LOCAL) {
        bin_local_cmd(c, req, mb, &r, plan, head);
        return 0;
    }
    /* The meta command goes through the text parser, so dispatch sees an
     * ordinary meta request: routing (on the key's raw bytes), replication,
     * health and every limit apply unchanged. */
    mr_request_head h;
    if (mr_parse_request(line, total, pc->item_size_max, MR_ASCII_DEFAULT_MAX_LINE, &h) != MR_PARSE_OK ||
        h.line_len + h.data_len != total) {
        /* The server would refuse it the same way (a value too large for
         * the text rule): answer that refusal, translated. */
        const char *why = h.error_reply ? h.error_reply : "SERVER_ERROR translation failed\r\n";
        req->local = mr_slice_static(why, (uint32_t)strlen(why));
        req->client = c;
        req->line = mr_slice_ref(mb, mb->data, mb->len);
        mr_mbuf_unref(mb);
        req->done = true;
        queue_push(c, req);
        mr_client_mark_dirty(c);
        return 0;
    }
    req->cmd = h.cmd;
    req->cls = mr_cmd_class_of(h.cmd);
    req->head = h;
    req->line = mr_slice_ref(mb, line, total);
    mr_mbuf_unref(mb);
    req->client = c;
    queue_push(c, req);
    mr_dispatch(req);
    return 0;
}

/* Parse and dispatch every complete request in the input. A reserved block
 * (c->block) is always the request at the head of the input: where a whole
 * request is consumed it has become a queued request (counted as such) or
 * was dropped, and the reservation ends. */
static void client_process(mr_client *c)
{
    mr_worker *w = c->worker;
    const mr_pool_conf *pc = &w->gen->cfg->pools[c->listen_pool];
    c->need = 0;
    while (!c->closing && mr_inbuf_len(&c->in) > 0) {
        uint32_t avail = mr_inbuf_len(&c->in);
        const char *p = mr_inbuf_data(&c->in);
        if (c->swallow) {
            uint32_t n = c->swallow < avail ? c->swallow : avail;
            c->swallow -= n;
            mr_inbuf_consume(&c->in, n);
            if (c->swallow == 0 && c->swallow_req) {
                c->swallow_req->done = true;
                c->swallow_req = NULL;
                mr_client_mark_dirty(c);
            }
            continue;
        }
        if (over_bounds(c)) {
            MR_STAT_INC(&w->stats, client_backpressure);
            c->paused = true;
            ev_io_stop(w->loop, &c->rio);
            /* Held back by the budget: mr_client_mem_retry lets it go on
             * (through the flush) once the budget frees. */
            if (!c->mem_wait && mem_pressed(c))
                mem_wait_push(c, w->shared->membudget);
            return;
        }
        if (!c->started) {
            /* memcached switches to its binary protocol for the whole
             * connection on a first byte of 0x80. */
            c->binary = mr_is_binary_protocol(p, avail);
            c->started = true;
        }
        if (c->binary) {
            if (bin_process(c, p, avail) != 0)
                return;
            continue;
        }
        if (__builtin_expect(!c->authed, 0)) {
            if (auth_gate(c, p, avail) != 0)
                return;
            continue;
        }
        mr_request_head h;
        mr_parse_status st = mr_parse_request(p, avail, pc->item_size_max, MR_ASCII_DEFAULT_MAX_LINE, &h);
        if (st == MR_PARSE_NEED_MORE)
            return;
        if (st == MR_PARSE_ERROR) {
            MR_STAT_INC(&w->stats, client_errors);
            mr_req *err = h.error_reply ? local_reply(c, h.error_reply) : NULL;
            if (h.error_unlinks_key) /* memcached drops the old item too */
                mr_dispatch_unlink(w, c->listen_pool, c->id, p + h.key_off, h.key_len, h.meta_base64);
            mr_inbuf_consume(&c->in, h.line_len);
            if (h.after == MR_AFTER_SWALLOW && h.swallow_len > 0) {
                /* memcached sends this reply only once the data is swallowed. */
                c->swallow = h.swallow_len;
                if (err) {
                    err->done = false;
                    c->swallow_req = err;
                }
            } else if (h.after == MR_AFTER_CLOSE) {
                c->closing = true;
            }
            continue;
        }
        uint32_t total = h.line_len + h.data_len;
        if (avail < total) {
            c->need = total;
            return;
        }
        const char *bad = h.data_len ? mr_check_data_block(p + h.line_len, h.data_len) : NULL;
        if (bad) {
            MR_STAT_INC(&w->stats, client_errors);
            bad = mr_bad_data_reply(&h); /* NULL where memcached keeps quiet (noreply) */
            if (bad)
                local_reply(c, bad);
            mr_inbuf_consume(&c->in, total);
            c->block = 0;
            continue;
        }
        mr_req *req = mr_req_new(w);
        if (!req) {
            local_reply(c, mr_error_reply(MR_ERR_NOMEM));
            mr_inbuf_consume(&c->in, total);
            c->block = 0;
            continue;
        }
        req->cmd = h.cmd;
        req->cls = mr_cmd_class_of(h.cmd);
        req->listen_pool = c->listen_pool;
        req->conn_hint = c->id;
        req->head = h;
        req->line = mr_slice_ref(c->in.mb, p, total);
        mr_inbuf_consume(&c->in, total);
        c->block = 0;
        /* A noreply request needs nothing from the client's queue: replies
         * behind it do not wait for it. It stays on the client's silent
         * list until answered, so its bytes count (client_input_limit). */
        bool silent = h.noreply && req->cls != MR_CLASS_META_KEYED;
        if (silent) {
            req->client = c;
            silent_push(c, req);
        } else {
            req->client = c;
            queue_push(c, req);
        }
        mr_dispatch(req);
        if (h.cmd == MR_CMD_QUIT)
            c->closing = true; /* nothing after quit is read */
    }
}

/* `n` new bytes are in the input block: parse and dispatch them. */
static void client_got(mr_client *c, ssize_t n)
{
    mr_worker *w = c->worker;
    c->in.mb->len += (uint32_t)n;
    c->last_active = ev_now(w->loop);
    MR_STAT_ADD(&w->stats, bytes_read, (uint64_t)n);
    client_process(c);
    mem_sync(c);
    if (c->closing) {
        ev_io_stop(w->loop, &c->rio);
        mr_client_mark_dirty(c);
    }
    /* Everything read was consumed: give the block back, so an idle client
     * holds no input buffer (requests still in flight keep their own
     * references to it). */
    if (mr_inbuf_len(&c->in) == 0)
        mr_inbuf_release(&c->in);
}

/* The peer shut down its sending side (`nc -q1`, `nc -N`, a script that
 * writes its requests then calls shutdown(SHUT_WR)), or closed altogether,
 * which cannot be told apart yet. memcached answers everything it had read
 * before it closes, so memrelay does too: nothing more is read, every
 * request already parsed is answered in order (replies owed by servers
 * included), and mr_client_flush closes the connection once the last reply
 * is written. A peer that closed altogether shows up as a failed write.
 * An unfinished request left in the input gets no reply (memcached's
 * behaviour: it never saw the end of it). */
static void client_peer_eof(mr_client *c)
{
    mr_worker *w = c->worker;
    c->eof = true;
    c->closing = true;
    ev_io_stop(w->loop, &c->rio);
    mr_client_mark_dirty(c);
}

/* Drive the handshake: 1 when established, 0 waiting, -1 failed (closed). */
static int client_handshake(mr_client *c)
{
    mr_worker *w = c->worker;
    const mr_pool_conf *pc = &w->gen->cfg->pools[c->listen_pool];
    char why[256];
    mr_io_status st = mr_conn_handshake(&c->conn, why, sizeof(why));
    if (st == MR_IO_OK) {
        MR_STAT_INC(&w->stats, tls_handshakes);
        ev_io_stop(w->loop, &c->wio); /* no reply can be queued before the handshake */
        c->last_active = ev_now(w->loop);
        if (!pc->client_idle_timeout_ms)
            ev_timer_stop(w->loop, &c->idle);
        return 1;
    }
    if (st == MR_IO_WANT_READ) {
        ev_io_stop(w->loop, &c->wio);
        return 0;
    }
    if (st == MR_IO_WANT_WRITE) {
        ev_io_start(w->loop, &c->wio);
        return 0;
    }
    /* A peer that hangs up before a hello (a port check, a load balancer's
     * TCP probe) is not a failed handshake; anything else is. */
    if (st == MR_IO_ERROR) {
        MR_STAT_INC(&w->stats, tls_handshake_failures);
        mr_tls_log_failure("client TLS handshake", pc->name, why);
    }
    mr_client_close(c);
    return -1;
}

/* Read once per readiness event (the request parser then takes all that
 * arrived): plain or TLS alike, but a TLS connection first finishes its
 * handshake, and may have decrypted more than fitted. */
static void client_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    mr_client *c = io->data;
    if (!mr_conn_established(&c->conn) && client_handshake(c) <= 0)
        return;
    if (mr_conn_take_write_wants_read(&c->conn)) { /* a blocked write can go on now */
        mr_client_mark_dirty(c);
        if (c->paused || c->closing) {
            ev_io_stop(loop, &c->rio);
            return;
        }
    }
    if (!mem_admit(c))
        return;
    if (mr_inbuf_reserve(&c->in, &c->worker->mbufs, c->need, 1) < 0) {
        mr_log_error("client: out of memory reading a request");
        mr_client_close(c);
        return;
    }
    mr_mbuf *mb = c->in.mb;
    mr_io_status st;
    ssize_t n = mr_conn_read(&c->conn, mb->data + mb->len, mr_mbuf_room(mb), &st);
    if (n > 0) {
        client_got(c, n);
        /* OpenSSL may hold more decrypted bytes than fitted: libev will not
         * report them, so come back on the next loop iteration. */
        if (mr_conn_pending_input(&c->conn) && ev_is_active(&c->rio))
            ev_feed_event(loop, &c->rio, EV_READ);
        return;
    }
    if (st == MR_IO_WANT_WRITE)
        ev_io_start(loop, &c->wio);
    else if (st == MR_IO_EOF)
        client_peer_eof(c); /* a read of 0, a TLS close_notify or a bare FIN */
    else if (st == MR_IO_ERROR)
        mr_client_close(c); /* reset or broken: nobody is left to read a reply */
}

void mr_client_req_done(mr_client *c, mr_req *req)
{
    (void)req;
    mr_client_mark_dirty(c);
}

/* Move the replies of finished requests at the head of the queue to output. */
static int emit_ready(mr_client *c)
{
    while (c->q_head && c->q_head->done) {
        mr_req *req = c->q_head;
        MR_CHECK(req->client == c);
        c->q_head = req->next;
        if (!c->q_head)
            c->q_tail = NULL;
        c->nqueued--;
        c->nowed -= brings_value(req); /* the class queue_push counted */
        c->request_bytes -= req->line.len < c->request_bytes ? req->line.len : c->request_bytes;
        uint64_t before = c->out.bytes;
        int rc = mr_emit(&c->out, req, &c->worker->stats);
        note_reply_size(c, c->out.bytes - before);
        bool close_after = req->close_after;
        mr_req_client_done(req);
        if (rc < 0)
            return -1;
        if (close_after) {
            c->closing = true;
            break;
        }
    }
    return 0;
}

/* `wr` bytes of the output were written: release them. */
static void client_wrote(mr_client *c, size_t wr)
{
    mr_worker *w = c->worker;
    MR_STAT_ADD(&w->stats, bytes_written, (uint64_t)wr);
    c->last_active = ev_now(w->loop);
    mr_outq_wrote(&c->out, wr);
}

/* Write the output: 0 all written, 1 waiting for the socket, -1 closed.
 * Through TLS each round copies up to MR_TLS_WBUF bytes, and a round that
 * waits still counts what it took (and refreshes last_active, as a write). */
static int client_write(mr_client *c)
{
    if (!mr_conn_established(&c->conn))
        return 1; /* the handshake's watchers are running; nothing can be queued yet */
    while (c->out.count > 0 || mr_conn_has_output(&c->conn)) {
        struct iovec iov[WRITE_IOV_MAX];
        mr_io_status st;
        ssize_t wr = mr_conn_writev(&c->conn, iov, mr_outq_iov(&c->out, iov, WRITE_IOV_MAX), &st);
        if (st == MR_IO_OK || c->conn.tls)
            client_wrote(c, (size_t)wr);
        if (st == MR_IO_OK)
            continue;
        if (st == MR_IO_WANT_WRITE) {
            ev_io_start(c->worker->loop, &c->wio);
            return 1;
        }
        if (st == MR_IO_WANT_READ) {
            ev_io_start(c->worker->loop, &c->rio); /* client_read_cb marks us dirty again */
            return 1;
        }
        mr_client_close(c);
        return -1;
    }
    return 0;
}

void mr_client_flush(mr_client *c)
{
    mr_worker *w = c->worker;
    silent_sweep(c);
    if (emit_ready(c) < 0) {
        mr_client_close(c);
        return;
    }
    int wrc = client_write(c);
    if (wrc < 0)
        return;
    mem_sync(c);
    output_clock(c);
    if (wrc > 0)
        return;
    ev_io_stop(w->loop, &c->wio);
    if (c->closing && !c->q_head) {
        mr_client_close(c);
        return;
    }
    if (c->paused && !over_bounds(c)) {
        /* Caught up: resume reading (a drain reads on too: what the client
         * already sent is answered), and parse what is already buffered. */
        c->paused = false;
        if (!c->mem_wait) /* else mr_client_mem_retry resumes it */
            ev_io_start(w->loop, &c->rio);
        if (mr_conn_pending_input(&c->conn)) /* decrypted while paused: libev cannot tell */
            ev_feed_event(w->loop, &c->rio, EV_READ);
        client_process(c);
        if (c->out.count || (c->q_head && c->q_head->done))
            mr_client_mark_dirty(c);
    }
}

static void client_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    mr_client *c = io->data;
    if (!mr_conn_established(&c->conn) || mr_conn_take_read_wants_write(&c->conn)) {
        /* The handshake, or a read, waits for writability. */
        client_read_cb(loop, &c->rio, EV_READ);
        return;
    }
    mr_client_flush(c);
}
