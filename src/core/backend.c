/* backend.c: pipelined connections to one memcached server.
 *
 * Timeouts measure the server, not the queue in front of it. A written
 * message's clock starts when its last byte was written or when the server
 * last sent bytes, whichever is later: replies come in order, so while the
 * server streams the replies of earlier requests (a deep pipeline of large
 * values) nothing behind them times out. An unwritten message on a
 * connected connection waits as long as the connection makes progress
 * (bytes read or written) within each timeout; while connecting, its clock
 * runs from when it was queued, so a connect that hangs fails it in time
 * (msg_deadline). A message past its deadline is answered
 * `SERVER_ERROR timeout` alone; it stays on the queue so the late reply, if
 * any, still pairs with it and is dropped. Only when the oldest timed-out
 * message has waited a second full timeout of silence is the connection
 * declared stalled and closed. Messages never written survive a
 * reconnect; messages written to a connection that died are failed, since
 * memrelay cannot know whether the server executed them.
 */
#include "memrelay/backend.h"

#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "memrelay/health.h"
#include "memrelay/log.h"
#include "memrelay/reply.h"
#include "memrelay/reply_fit.h"
#include "memrelay/tls.h"
#include "memrelay/worker.h"

/* Reconnect backoff after failed connects: doubling from the first, capped. */
#define BACKOFF_FIRST 0.1
#define BACKOFF_MAX 1.0
/* Largest value a reply may carry: twice the pool's item_size_max, at
 * least 2 MiB (memcached's item limit may be set higher than the pool's,
 * but a server announcing more is not to be believed: it would cost that
 * much memory). Longest reply line. */
#define REPLY_MIN_MAX_VALUE (2u * 1024u * 1024u)
#define REPLY_MAX_LINE 8192u
/* Replies stream in back to back: while values are large, a fresh input
 * block holds this many of them, so few straddle a block end (the only
 * ones copied) and one read takes several. */
#define BIG_REPLIES_AHEAD 4
/* Reads one readiness event may make while each fills its block: enough to
 * drain a burst of replies, bounded so one busy server cannot starve the
 * rest of the loop. */
#define BACKEND_READS_PER_EVENT 8
#define WRITE_IOV_MAX 256

static void bconn_read_cb(struct ev_loop *loop, ev_io *io, int revents);
static void bconn_write_cb(struct ev_loop *loop, ev_io *io, int revents);
static void bconn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void bconn_connect(mr_bconn *bc);
static void retry_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void replay_missed(mr_backend *be);
static void schedule_retry(mr_backend *be);

int mr_backend_init(mr_backend *be, mr_worker *w, const mr_server *server, const mr_pool *pool)
{
    memset(be, 0, sizeof(*be));
    be->worker = w;
    be->server = server;
    be->pool = pool;
    be->timeout = pool->conf->timeout_ms / 1000.0;
    be->nconns = pool->conf->server_connections ? pool->conf->server_connections : 1;
    be->conns = calloc(be->nconns, sizeof(mr_bconn));
    if (!be->conns)
        return -1;
    ev_init(&be->retry_timer, retry_cb);
    be->retry_timer.data = be;
    for (uint32_t i = 0; i < be->nconns; i++) {
        mr_bconn *bc = &be->conns[i];
        bc->be = be;
        bc->conn.fd = -1;
        ev_init(&bc->rio, bconn_read_cb);
        ev_init(&bc->wio, bconn_write_cb);
        ev_init(&bc->timer, bconn_timer_cb);
        bc->rio.data = bc->wio.data = bc->timer.data = bc;
    }
    return 0;
}

void mr_backend_start(mr_backend *be)
{
    if (!be->pool->conf->preconnect)
        return;
    for (uint32_t i = 0; i < be->nconns; i++)
        if (be->conns[i].state == MR_BCONN_IDLE)
            bconn_connect(&be->conns[i]);
}

void mr_backend_adopt(mr_backend *be, const mr_server *server, const mr_pool *pool)
{
    be->server = server;
    be->pool = pool;
    be->timeout = pool->conf->timeout_ms / 1000.0;
}

bool mr_backend_idle(const mr_backend *be)
{
    for (uint32_t i = 0; i < be->nconns; i++)
        if (be->conns[i].nqueued)
            return false;
    return true;
}

static mr_health *health_of(const mr_backend *be)
{
    return be->worker->shared->health;
}

/* Tell the health checker. Refused and reset connections count at once;
 * timeouts and bad replies count towards server_failure_limit. */
static void report_failure(mr_backend *be, mr_err err)
{
    mr_health *h = health_of(be);
    if (!h || err == MR_ERR_NOMEM)
        return;
    bool immediate =
        err == MR_ERR_REFUSED || err == MR_ERR_UNAVAILABLE || err == MR_ERR_TLS || err == MR_ERR_UNRESOLVED;
    mr_health_failure(h, be->server->id, err, immediate);
}

/* May this worker send client requests to the server? */
static bool usable(const mr_backend *be)
{
    mr_health *h = health_of(be);
    if (!h)
        return true;
    uint32_t st = mr_health_state_of(h, be->server->id);
    if (st == MR_HEALTH_UP)
        return true;
    return st == MR_HEALTH_REJOINING &&
           be->rejoin_acked ==
               __atomic_load_n(&mr_health_server(h, be->server->id)->rejoin_gen, __ATOMIC_ACQUIRE);
}

static void rejoin_ack_if_due(mr_backend *be)
{
    mr_health *h = health_of(be);
    if (!h)
        return;
    mr_server_health *sh = mr_health_server(h, be->server->id);
    uint32_t gen = __atomic_load_n(&sh->rejoin_gen, __ATOMIC_ACQUIRE);
    if (mr_health_state_of(h, be->server->id) != MR_HEALTH_REJOINING || be->rejoin_acked == gen)
        return;
    be->rejoin_acked = gen;
    mr_health_rejoin_ack(h, be->server->id);
}

/* ---- queues ---- */

/* Put the connection on its worker's flush list (once): the worker writes
 * every dirty connection once, at the end of the loop iteration. */
static void bconn_mark_dirty(mr_bconn *bc)
{
    if (bc->dirty)
        return;
    mr_worker *w = bc->be->worker;
    bc->dirty = true;
    bc->next_dirty = w->dirty_bconns;
    w->dirty_bconns = bc;
}

static void pending_push(mr_bconn *bc, mr_msg *msg)
{
    msg->next = NULL;
    if (bc->pending_tail)
        bc->pending_tail->next = msg;
    else
        bc->pending_head = msg;
    bc->pending_tail = msg;
}

static mr_msg *sent_pop(mr_bconn *bc)
{
    mr_msg *msg = bc->sent_head;
    MR_CHECK(msg->queued && bc->nqueued > 0);
    bc->sent_head = msg->next;
    if (!bc->sent_head)
        bc->sent_tail = NULL;
    bc->nqueued--;
    return msg;
}

static ev_tstamp later(ev_tstamp a, ev_tstamp b)
{
    return a > b ? a : b;
}

/* When `m` times out (see the head of the file). */
static ev_tstamp msg_deadline(const mr_bconn *bc, const mr_msg *m)
{
    ev_tstamp t = bc->be->timeout;
    if (m->sent_at)
        return later(m->sent_at, bc->last_read) + t;
    if (bc->state == MR_BCONN_CONNECTED)
        return later(m->queued_at, later(bc->last_read, bc->last_write)) + t;
    return m->deadline;
}

/* The first message still waiting for its answer: the earliest deadline,
 * since every message of a connection has the same timeout, the queues
 * are in enqueue order and written ones were written in that order. */
static mr_msg *first_unanswered(const mr_bconn *bc)
{
    for (mr_msg *m = bc->sent_head; m; m = m->next)
        if (!m->replied)
            return m;
    for (mr_msg *m = bc->pending_head; m; m = m->next)
        if (!m->replied)
            return m;
    return NULL;
}

static void arm_timer(mr_bconn *bc)
{
    struct ev_loop *loop = bc->be->worker->loop;
    ev_tstamp at = 0;
    mr_msg *m = first_unanswered(bc);
    if (m)
        at = msg_deadline(bc, m);
    if (bc->state == MR_BCONN_CONNECTING && (!at || bc->connect_deadline < at))
        at = bc->connect_deadline;
    /* A timed-out message at the head is waited on for one more timeout
     * before the connection counts as stalled. */
    if (bc->sent_head && bc->sent_head->replied) {
        ev_tstamp stall = msg_deadline(bc, bc->sent_head) + bc->be->timeout;
        if (!at || stall < at)
            at = stall;
    }
    ev_timer_stop(loop, &bc->timer);
    if (!at)
        return;
    ev_tstamp after = at - ev_now(loop);
    ev_timer_set(&bc->timer, after > 0 ? after : 0, 0);
    ev_timer_start(loop, &bc->timer);
}

/* ---- connection lifecycle ---- */

static void bconn_close_fd(mr_bconn *bc)
{
    struct ev_loop *loop = bc->be->worker->loop;
    ev_io_stop(loop, &bc->rio);
    ev_io_stop(loop, &bc->wio);
    mr_conn_close(&bc->conn);
    bc->state = MR_BCONN_IDLE;
    mr_inbuf_release(&bc->in);
}

/* Fail every message on `list` with err (those already answered just leave). */
static void fail_list(mr_bconn *bc, mr_msg *list, mr_err err)
{
    while (list) {
        mr_msg *next = list->next;
        MR_CHECK(list->queued && bc->nqueued > 0);
        bc->nqueued--;
        mr_msg_finish(list, err);
        list = next;
    }
}

/* The connection broke (err says how). Written messages fail; unwritten ones
 * are kept and a reconnect is started for them. */
static void bconn_reset(mr_bconn *bc, mr_err err)
{
    mr_backend *be = bc->be;
    mr_log_warn("backend %s: connection lost (%.*s)", be->server->conf->spec,
                (int)strlen(mr_error_reply(err)) - 2, mr_error_reply(err));
    MR_STAT_INC(&be->worker->stats, backend_errors);
    report_failure(be, err);
    bconn_close_fd(bc);
    mr_msg *sent = bc->sent_head;
    bc->sent_head = bc->sent_tail = NULL;
    fail_list(bc, sent, err);
    for (mr_msg *m = bc->pending_head; m; m = m->next) {
        m->written = 0;
        m->sent_at = 0;
    }
    if (bc->pending_head && !usable(be)) {
        /* Held down by the health checker: the unwritten ones fail now
         * (replicated writes go to the replay queue, in order). */
        mr_msg *pending = bc->pending_head;
        bc->pending_head = bc->pending_tail = NULL;
        fail_list(bc, pending, MR_ERR_DOWN);
    }
    if (bc->pending_head)
        bconn_connect(bc);
    else
        arm_timer(bc);
}

static void connect_failed(mr_bconn *bc, mr_err err, int sys_errno)
{
    mr_backend *be = bc->be;
    struct ev_loop *loop = be->worker->loop;
    be->failures++;
    double backoff = BACKOFF_FIRST;
    for (uint32_t i = 1; i < be->failures && backoff < BACKOFF_MAX; i++)
        backoff *= 2;
    if (backoff > BACKOFF_MAX)
        backoff = BACKOFF_MAX;
    be->down_error = err;
    be->retry_at = ev_now(loop) + backoff;
    if (be->failures == 1)
        mr_log_warn("backend %s: connect failed: %s", be->server->conf->spec,
                    sys_errno                  ? strerror(sys_errno)
                    : err == MR_ERR_TLS        ? "TLS handshake failed"
                    : err == MR_ERR_UNRESOLVED ? "its name has not resolved"
                                               : "timed out");
    MR_STAT_INC(&be->worker->stats, backend_connect_failures);
    report_failure(be, err);
    bconn_close_fd(bc);
    mr_msg *pending = bc->pending_head;
    bc->pending_head = bc->pending_tail = NULL;
    fail_list(bc, pending, err);
    arm_timer(bc);
    if ((be->replay.count || be->replay.overflowed) && !health_of(be))
        schedule_retry(be);
}

/* Try to reconnect after the backoff even with no request waiting, so a
 * server that missed writes gets them back as soon as it returns. */
static void schedule_retry(mr_backend *be)
{
    struct ev_loop *loop = be->worker->loop;
    if (ev_is_active(&be->retry_timer))
        return;
    ev_tstamp after = be->retry_at - ev_now(loop);
    ev_timer_set(&be->retry_timer, after > 0 ? after : 0, 0);
    ev_timer_start(loop, &be->retry_timer);
}

static void retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    mr_backend *be = t->data;
    if (!usable(be))
        return; /* the health checker brings it back */
    for (uint32_t i = 0; i < be->nconns; i++)
        if (be->conns[i].state != MR_BCONN_IDLE)
            return; /* already connected or connecting: replay happens there */
    bconn_connect(&be->conns[0]);
}

static void connected(mr_bconn *bc)
{
    mr_backend *be = bc->be;
    struct ev_loop *loop = be->worker->loop;
    if (be->failures)
        mr_log_warn("backend %s: connected again", be->server->conf->spec);
    be->failures = 0;
    be->down_error = MR_ERR_NONE;
    bc->state = MR_BCONN_CONNECTED;
    MR_STAT_INC(&be->worker->stats, backend_connects);
    ev_io_stop(loop, &bc->wio);
    ev_io_set(&bc->rio, bc->conn.fd, EV_READ);
    ev_io_start(loop, &bc->rio);
    ev_io_set(&bc->wio, bc->conn.fd, EV_WRITE);
    replay_missed(be);
    rejoin_ack_if_due(be);
    bconn_mark_dirty(bc);
    arm_timer(bc);
}

void mr_backend_rejoin(mr_backend *be)
{
    be->down_error = MR_ERR_NONE;
    be->retry_at = 0;
    be->failures = 0;
    if (!be->replay.head && !be->replay.overflowed) {
        rejoin_ack_if_due(be);
        return;
    }
    for (uint32_t i = 0; i < be->nconns; i++) {
        if (be->conns[i].state == MR_BCONN_CONNECTED) {
            replay_missed(be);
            rejoin_ack_if_due(be);
            return;
        }
        if (be->conns[i].state == MR_BCONN_CONNECTING)
            return; /* connected() replays and acknowledges */
    }
    bconn_connect(&be->conns[0]);
}

/* Queue a message in front of everything pending on a connection (replay
 * of missed writes on reconnect). The connection must be connected. */
static void bconn_push_front(mr_bconn *bc, mr_msg *msg)
{
    mr_backend *be = bc->be;
    MR_CHECK(!msg->queued);
    msg->queued_at = ev_now(be->worker->loop);
    msg->deadline = msg->queued_at + be->timeout;
    msg->sent_at = 0;
    msg->queued = true;
    msg->written = 0;
    msg->req->in_flight++;
    /* A partly written message must stay first to keep the stream whole. */
    if (bc->pending_head && bc->pending_head->written > 0) {
        msg->next = bc->pending_head->next;
        bc->pending_head->next = msg;
        if (bc->pending_tail == bc->pending_head)
            bc->pending_tail = msg;
    } else {
        msg->next = bc->pending_head;
        bc->pending_head = msg;
        if (!bc->pending_tail)
            bc->pending_tail = msg;
    }
    bc->nqueued++;
    bconn_mark_dirty(bc);
}

/* ---- replay of the writes the server missed ---- */

/* The queue no longer holds every write the server missed. With
 * on_rejoin: flush the server comes back empty, so nothing queued is
 * replayed after the flush (it is dropped now) and nothing more is kept. */
static void replay_overflow(mr_backend *be)
{
    mr_worker *w = be->worker;
    mr_replay_queue *q = &be->replay;
    if (!q->overflowed)
        mr_log_warn("backend %s: replay queue full (%u writes); it will be flushed when it returns",
                    be->server->conf->spec, q->count);
    MR_STAT_INC(&w->pool_stats[be->pool->slot], repl_queue_overflows);
    if (!be->pool->conf->on_rejoin_quarantine) {
        MR_STAT_ADD(&w->pool_stats[be->pool->slot], repl_queue_depth, (uint64_t) - (int64_t)q->count);
        mr_replay_clear(q);
    }
    q->overflowed = true;
}

void mr_backend_replay_later(mr_backend *be, const mr_slice *out, uint32_t nout)
{
    mr_worker *w = be->worker;
    mr_replay_queue *q = &be->replay;
    if (q->overflowed && !be->pool->conf->on_rejoin_quarantine)
        return; /* flushed on return: nothing to keep */
    if (nout == 0 || q->count >= be->pool->conf->replay_queue || mr_replay_push(q, out, nout) < 0) {
        replay_overflow(be);
        return;
    }
    if (be->down_error != MR_ERR_NONE && !w->shared->health)
        schedule_retry(be);
    MR_STAT_INC(&w->pool_stats[be->pool->slot], repl_queued);
    MR_STAT_INC(&w->pool_stats[be->pool->slot], repl_queue_depth);
}

static void replayed_finished(mr_req *req, mr_msg *msg, int err)
{
    /* A replay that fails again (no reply at all) goes back on the queue.
     * One that timed out but was answered later did run: not again. */
    if (err != MR_ERR_NONE)
        mr_backend_replay_later(req->worker->backends[msg->server], msg->out, msg->nout);
}

static const mr_req_ops replay_ops = {.finished = replayed_finished};

/* A flush_all that got no reply may not have run: the server is still to
 * be flushed, and nothing queued meanwhile is to be replayed after it. */
static void flush_finished(mr_req *req, mr_msg *msg, int err)
{
    mr_backend *be = req->worker->backends[msg->server];
    if (err == MR_ERR_NONE || !be)
        return;
    mr_replay_queue *q = &be->replay;
    MR_STAT_ADD(&req->worker->pool_stats[be->pool->slot], repl_queue_depth, (uint64_t) - (int64_t)q->count);
    mr_replay_clear(q);
    q->overflowed = true;
}

static const mr_req_ops flush_ops = {.finished = flush_finished};

/* A connection is up: put the writes the server missed in front of
 * everything pending on it, in their original order (after a flush_all if
 * some were lost, or with the server quarantined: on_rejoin). */
static void replay_missed(mr_backend *be)
{
    mr_replay_queue *q = &be->replay;
    if (!q->head && !q->overflowed)
        return;
    mr_worker *w = be->worker;
    mr_bconn *bc = NULL;
    for (uint32_t i = 0; i < be->nconns && !bc; i++)
        if (be->conns[i].state == MR_BCONN_CONNECTED)
            bc = &be->conns[i];
    if (!bc)
        return;
    /* Detach first: a replay failing again re-queues itself. */
    bool flush = q->overflowed && !be->pool->conf->on_rejoin_quarantine;
    if (q->overflowed && be->pool->conf->on_rejoin_quarantine && w->shared->health)
        mr_health_quarantine(w->shared->health, be->server->id, be->pool->conf->quarantine_ms);
    uint32_t count = q->count;
    mr_replay_entry *list = mr_replay_take(q);
    MR_STAT_ADD(&w->pool_stats[be->pool->slot], repl_queue_depth, (uint64_t) - (int64_t)count);
    mr_log_warn("backend %s: back; replaying %u missed writes%s", be->server->conf->spec, count,
                flush ? " after flush_all (its replay queue overflowed)" : "");
    /* Pushed to the front in reverse, so they go out in their original order. */
    mr_replay_entry *rev = NULL;
    while (list) {
        mr_replay_entry *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev) {
        mr_replay_entry *e = rev;
        rev = e->next;
        mr_req *req = mr_req_new_background(w, &replay_ops);
        if (req && mr_req_alloc_msgs(req, 1) == 0) {
            mr_msg *msg = &req->msgs[0];
            msg->server = be->server->id;
            for (uint32_t i = 0; i < e->nout; i++)
                msg->out[i] = e->out[i]; /* the entry's references move to the message */
            msg->nout = e->nout;
            e->nout = 0;
            bconn_push_front(bc, msg);
            MR_STAT_INC(&w->pool_stats[be->pool->slot], repl_replayed);
            mr_req_dispatched(req);
        } else if (req) {
            mr_req_client_done(req);
        }
        mr_replay_entry_free(e);
    }
    if (flush) {
        static const char flush_line[] = "flush_all\r\n";
        mr_req *req = mr_req_new_background(w, &flush_ops);
        if (req && mr_req_alloc_msgs(req, 1) == 0) {
            mr_msg *msg = &req->msgs[0];
            msg->server = be->server->id;
            msg->out[0] = mr_slice_static(flush_line, sizeof(flush_line) - 1);
            msg->nout = 1;
            bconn_push_front(bc, msg);
            mr_req_dispatched(req);
        }
    }
}

/* Drive the TLS handshake of a connecting connection; when done, it is
 * connected. The connect deadline (arm_timer) bounds the whole of it. */
static void bconn_handshake(mr_bconn *bc)
{
    mr_backend *be = bc->be;
    struct ev_loop *loop = be->worker->loop;
    char why[256];
    switch (mr_conn_handshake(&bc->conn, why, sizeof(why))) {
    case MR_IO_OK:
        ev_io_stop(loop, &bc->rio);
        ev_io_stop(loop, &bc->wio);
        MR_STAT_INC(&be->worker->stats, backend_tls_handshakes);
        connected(bc);
        return;
    case MR_IO_WANT_READ:
        ev_io_stop(loop, &bc->wio);
        ev_io_start(loop, &bc->rio);
        return;
    case MR_IO_WANT_WRITE:
        ev_io_stop(loop, &bc->rio);
        ev_io_start(loop, &bc->wio);
        return;
    default:
        MR_STAT_INC(&be->worker->stats, backend_tls_handshake_failures);
        mr_tls_log_failure("backend TLS handshake", be->server->conf->spec, why);
        connect_failed(bc, MR_ERR_TLS, 0);
        return;
    }
}

/* The TCP (or unix) connect is done: connected, or first TLS. */
static void tcp_connected(mr_bconn *bc)
{
    mr_backend *be = bc->be;
    /* Its config's contexts: the router's. */
    int tls = mr_conn_tls_connect(&bc->conn, be->pool->router->tls, be->pool->index, be->pool->conf,
                                  be->server->conf);
    if (tls == 0) {
        connected(bc);
        return;
    }
    if (tls < 0) {
        connect_failed(bc, MR_ERR_NOMEM, 0);
        return;
    }
    ev_io_stop(be->worker->loop, &bc->wio);
    ev_io_set(&bc->rio, bc->conn.fd, EV_READ);
    bconn_handshake(bc);
}

static void bconn_connect(mr_bconn *bc)
{
    mr_backend *be = bc->be;
    struct ev_loop *loop = be->worker->loop;
    mr_sockaddr where;
    const mr_sockaddr *addr = &where;
    bc->moving = false;
    if (!mr_health_addr(health_of(be), be->server->id, &where, &bc->addr_version, true)) {
        connect_failed(bc, MR_ERR_UNRESOLVED, 0); /* its name has not resolved (yet) */
        return;
    }
    int sys = 0;
    int rc = mr_conn_connect(&bc->conn, addr, true, be->pool->conf->tcpkeepalive, &sys);
    if (rc < 0) {
        connect_failed(bc, mr_net_connect_error(sys), sys);
        return;
    }
    bc->state = MR_BCONN_CONNECTING;
    bc->connect_deadline = ev_now(loop) + be->timeout;
    if (rc == 0) {
        tcp_connected(bc);
        return;
    }
    /* Wait for writability; the timer bounds the wait by the first message's deadline. */
    ev_io_set(&bc->wio, bc->conn.fd, EV_WRITE);
    ev_io_start(loop, &bc->wio);
    arm_timer(bc);
}

void mr_backend_close(mr_backend *be)
{
    ev_timer_stop(be->worker->loop, &be->retry_timer);
    for (uint32_t i = 0; i < be->nconns; i++) {
        mr_bconn *bc = &be->conns[i];
        ev_timer_stop(be->worker->loop, &bc->timer);
        bconn_close_fd(bc);
        mr_msg *sent = bc->sent_head, *pending = bc->pending_head;
        bc->sent_head = bc->sent_tail = bc->pending_head = bc->pending_tail = NULL;
        fail_list(bc, sent, MR_ERR_UNAVAILABLE);
        fail_list(bc, pending, MR_ERR_UNAVAILABLE);
    }
    free(be->conns);
    be->conns = NULL;
    mr_replay_clear(&be->replay);
}

/* ---- sending ---- */

void mr_backend_send(mr_backend *be, uint32_t conn_hint, mr_msg *msg)
{
    struct ev_loop *loop = be->worker->loop;
    if (__builtin_expect(be->conns == NULL, 0)) {
        mr_msg_finish(msg, MR_ERR_UNAVAILABLE); /* closed (shutting down): a failover found it */
        return;
    }
    mr_bconn *bc = &be->conns[conn_hint % be->nconns];
    ev_tstamp now = ev_now(loop);
    msg->queued_at = now; /* counted in the server's stats from here on, whatever happens next */
    if (!usable(be)) {
        /* Down: answered at once; the health checker's probes decide when it returns. */
        mr_msg_finish(msg, MR_ERR_DOWN);
        return;
    }
    if (msg->retrieval && health_of(be) && mr_health_quarantined(health_of(be), be->server->id)) {
        /* Quarantined: no reads from it (a miss, or the next replica). */
        mr_msg_finish(msg, MR_ERR_DOWN);
        return;
    }
    if (bc->state == MR_BCONN_IDLE && be->down_error != MR_ERR_NONE && now < be->retry_at) {
        /* Known down and inside the backoff: answer now rather than wait. */
        mr_msg_finish(msg, be->down_error);
        return;
    }
    if (bc->nqueued >= be->pool->conf->server_queue_limit) {
        MR_STAT_INC(&be->worker->stats, backend_queue_full);
        mr_msg_finish(msg, MR_ERR_QUEUE_FULL);
        return;
    }
    MR_CHECK(!msg->queued); /* a message sits on one queue at a time */
    msg->deadline = now + be->timeout;
    msg->sent_at = 0;
    msg->queued = true;
    msg->written = 0;
    msg->req->in_flight++;
    pending_push(bc, msg);
    bc->nqueued++;
    MR_STAT_INC(&be->worker->stats, backend_requests);
    if (bc->state == MR_BCONN_IDLE) {
        bconn_connect(bc);
        return;
    }
    if (bc->state == MR_BCONN_CONNECTED)
        bconn_mark_dirty(bc);
    if (!ev_is_active(&bc->timer))
        arm_timer(bc);
}

/* `w` bytes of the pending messages were written: move those fully
 * written to the sent queue. */
static void bconn_wrote(mr_bconn *bc, size_t w)
{
    size_t left = w;
    ev_tstamp now = ev_now(bc->be->worker->loop);
    if (w > 0)
        bc->last_write = now;
    while (bc->pending_head && left > 0) {
        mr_msg *m = bc->pending_head;
        uint32_t total = 0;
        for (uint32_t i = 0; i < m->nout; i++)
            total += m->out[i].len;
        uint32_t remaining = total - m->written;
        if (left < remaining) {
            m->written += (uint32_t)left;
            left = 0;
            break;
        }
        left -= remaining;
        m->written = total;
        m->sent_at = now;
        bc->pending_head = m->next;
        if (!bc->pending_head)
            bc->pending_tail = NULL;
        m->next = NULL;
        if (bc->sent_tail)
            bc->sent_tail->next = m;
        else
            bc->sent_head = m;
        bc->sent_tail = m;
    }
}

/* A moving connection (mr_backend_follow_address) that owes nothing more
 * closes, and connects again to the new address if requests wait. */
static void move_when_answered(mr_bconn *bc)
{
    if (bc->sent_head)
        return; /* replies still due on this one */
    bconn_close_fd(bc);
    bc->moving = false;
    if (bc->pending_head)
        bconn_connect(bc);
    else
        arm_timer(bc);
}

void mr_backend_follow_address(mr_backend *be)
{
    mr_health *h = health_of(be);
    if (!h)
        return;
    uint32_t now = mr_health_addr_version(h, be->server->id);
    for (uint32_t i = 0; i < be->nconns; i++) {
        mr_bconn *bc = &be->conns[i];
        if (bc->state != MR_BCONN_IDLE && bc->addr_version != now && !bc->moving) {
            bc->moving = true;
            bconn_mark_dirty(bc);
        }
    }
}

void mr_bconn_flush(mr_bconn *bc)
{
    if (bc->state != MR_BCONN_CONNECTED)
        return;
    /* Moving: the request being written is finished first, then nothing more. */
    if (bc->moving && !(bc->pending_head && bc->pending_head->written)) {
        move_when_answered(bc);
        return;
    }
    while (bc->pending_head || mr_conn_has_output(&bc->conn)) {
        struct iovec iov[WRITE_IOV_MAX];
        int n = 0;
        uint32_t skip = bc->pending_head ? bc->pending_head->written : 0;
        for (mr_msg *m = bc->pending_head; m && n < WRITE_IOV_MAX - 2; m = m->next) {
            for (uint32_t i = 0; i < m->nout; i++) {
                const mr_slice *s = &m->out[i];
                if (skip >= s->len) {
                    skip -= s->len;
                    continue;
                }
                iov[n].iov_base = (void *)(s->p + skip);
                iov[n].iov_len = s->len - skip;
                skip = 0;
                n++;
            }
        }
        /* Bytes taken count as written even when they wait in the TLS
         * buffer: they go first on the next call, in order. */
        mr_io_status st;
        bconn_wrote(bc, (size_t)mr_conn_writev(&bc->conn, iov, n, &st));
        if (st == MR_IO_OK)
            continue;
        if (st == MR_IO_WANT_WRITE)
            ev_io_start(bc->be->worker->loop, &bc->wio);
        else if (st != MR_IO_WANT_READ) /* WANT_READ (TLS): the read watcher is always on */
            bconn_reset(bc, MR_ERR_UNAVAILABLE);
        return;
    }
    ev_io_stop(bc->be->worker->loop, &bc->wio);
}

static void bconn_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    mr_bconn *bc = io->data;
    if (bc->state == MR_BCONN_CONNECTING && bc->conn.tls) {
        bconn_handshake(bc);
        return;
    }
    if (mr_conn_take_read_wants_write(&bc->conn)) {
        bconn_read_cb(loop, &bc->rio, EV_READ);
        return; /* still writable: called again for the flush */
    }
    if (bc->state == MR_BCONN_CONNECTING) {
        int err = mr_conn_connect_done(&bc->conn);
        if (err) {
            connect_failed(bc, mr_net_connect_error(err), err);
            return;
        }
        tcp_connected(bc);
        return;
    }
    mr_bconn_flush(bc);
}

/* ---- replies ---- */

/* Did we ask this message for a VALUE of `key`? Memcached answers the keys
 * of a get in the order asked, so the search resumes after the last match:
 * anything else is a reply for a key nobody asked for (a confused or
 * hostile server), which must never reach a client. */
static bool value_was_asked(mr_msg *msg, const char *key, uint32_t klen)
{
    const mr_slice *line = &msg->out[0];
    const char *p = line->p, *end = line->p + line->len;
    uint32_t pos = msg->key_scan;
    if (pos == 0) {
        /* Skip the command, and gat/gats's exptime. */
        uint32_t skip = (msg->req->cmd == MR_CMD_GAT || msg->req->cmd == MR_CMD_GATS) ? 2 : 1;
        while (skip-- > 0) {
            while (p + pos < end && p[pos] == ' ')
                pos++;
            while (p + pos < end && p[pos] != ' ' && p[pos] != '\r' && p[pos] != '\n')
                pos++;
        }
    }
    while (p + pos < end) {
        while (p + pos < end && p[pos] == ' ')
            pos++;
        /* The usual case, a hit on the next key asked: one compare. */
        if ((size_t)(end - (p + pos)) > klen && memcmp(p + pos, key, klen) == 0 &&
            (p[pos + klen] == ' ' || p[pos + klen] == '\r' || p[pos + klen] == '\n')) {
            msg->key_scan = pos + klen;
            return true;
        }
        uint32_t start = pos;
        while (p + pos < end && p[pos] != ' ' && p[pos] != '\r' && p[pos] != '\n')
            pos++;
        if (pos == start)
            break;
        if (pos - start == klen && memcmp(p + start, key, klen) == 0) {
            msg->key_scan = pos;
            return true;
        }
    }
    return false;
}

/* Parse every complete reply element and hand it to the head message. */
static void bconn_parse(mr_bconn *bc, uint32_t *need)
{
    *need = 0;
    while (mr_inbuf_len(&bc->in) > 0) {
        mr_msg *msg = bc->sent_head;
        if (!msg) {
            mr_log_warn("backend %s: unexpected bytes with no request outstanding",
                        bc->be->server->conf->spec);
            bconn_reset(bc, MR_ERR_MISMATCH);
            return;
        }
        mr_reply_elem e;
        const char *p = mr_inbuf_data(&bc->in);
        uint64_t max_value = 2ull * bc->be->pool->conf->item_size_max;
        if (max_value < REPLY_MIN_MAX_VALUE)
            max_value = REPLY_MIN_MAX_VALUE;
        if (max_value > UINT32_MAX)
            max_value = UINT32_MAX;
        mr_reply_kind kind = mr_reply_next(p, mr_inbuf_len(&bc->in), (uint32_t)max_value, REPLY_MAX_LINE, &e);
        if (kind == MR_REPLY_NEED_MORE) {
            *need = e.need;
            return;
        }
        bool complete;
        if (kind == MR_REPLY_BAD || (kind == MR_REPLY_LINE && !mr_reply_line_known(p, e.line_len))) {
            mr_log_warn("backend %s: invalid reply", bc->be->server->conf->spec);
            bconn_reset(bc, MR_ERR_BAD_REPLY);
            return;
        }
        /* A reply of the wrong kind for its command: the stream is out of
         * step (reply_fit.h). */
        if (!msg->fit)
            msg->fit = (uint8_t)mr_reply_fit_of(msg->out[0].p, msg->out[0].len);
        char why[96];
        if (mr_reply_misfit((mr_reply_fit)msg->fit, msg->fenced, msg->retrieval, kind, p, e.line_len, why,
                            sizeof(why))) {
            mr_log_warn("backend %s: reply does not fit its request (%s): closing the connection",
                        bc->be->server->conf->spec, why);
            bconn_reset(bc, MR_ERR_MISMATCH);
            return;
        }
        bool wanted = !msg->replied; /* timed-out messages drop their late reply */
        if (kind == MR_REPLY_VALUE && !value_was_asked(msg, p + e.key_off, e.key_len)) {
            mr_log_warn("backend %s: VALUE for a key that was not asked for", bc->be->server->conf->spec);
            bconn_reset(bc, MR_ERR_MISMATCH);
            return;
        }
        if (kind == MR_REPLY_VALUE) {
            complete = false;
            if (wanted && mr_msg_add_item(msg, bc->in.mb, p, e.len) < 0) {
                bconn_reset(bc, MR_ERR_NOMEM);
                return;
            }
        } else if (msg->fenced && !(kind == MR_REPLY_LINE && e.len == 4 && memcmp(p, "MN\r\n", 4) == 0)) {
            /* The one reply q let through, before the fence's MN. */
            if (msg->fence_got) {
                mr_log_warn("backend %s: two replies to one quiet request", bc->be->server->conf->spec);
                bconn_reset(bc, MR_ERR_MISMATCH);
                return;
            }
            msg->fence_got = true;
            complete = false;
            if (wanted)
                msg->line = mr_slice_ref(bc->in.mb, p, e.len);
        } else {
            complete = true;
            if (wanted && kind != MR_REPLY_END && !msg->fenced)
                msg->line = mr_slice_ref(bc->in.mb, p, e.len);
        }
        mr_inbuf_consume(&bc->in, e.len);
        if (complete) {
            sent_pop(bc);
            if (health_of(bc->be))
                mr_health_success(health_of(bc->be), bc->be->server->id);
            mr_msg_finish(msg, MR_ERR_NONE);
        }
    }
}

/* `n` reply bytes arrived in the input block: pair them with requests.
 * The caller re-arms the timer once it has read all it will (arm_timer). */
static void bconn_take(mr_bconn *bc, ssize_t n)
{
    bc->in.mb->len += (uint32_t)n;
    bc->last_read = ev_now(bc->be->worker->loop);
    bconn_parse(bc, &bc->need);
    if (bc->moving && !bc->sent_head && bc->state == MR_BCONN_CONNECTED)
        bconn_mark_dirty(bc); /* answered: the flush moves it */
}

static void bconn_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    mr_bconn *bc = io->data;
    if (bc->conn.tls && bc->state == MR_BCONN_CONNECTING) {
        bconn_handshake(bc); /* only TLS watches rio while connecting */
        return;
    }
    if (mr_conn_take_write_wants_read(&bc->conn))
        bconn_mark_dirty(bc); /* a blocked write can go on now */
    /* A read that fills the block may have left more replies in the
     * socket, and their clients are waiting for them: read on (a bounded
     * number of times) instead of leaving them for the next loop iteration,
     * behind every client read that iteration brings. A plain read that
     * comes back short drained the socket; a TLS read returns at most one
     * record, so TLS reads on until OpenSSL says it needs the socket again.
     * The timer is re-armed once, after the last read. */
    bool took = false;
    for (int reads = 0; reads < BACKEND_READS_PER_EVENT; reads++) {
        if (mr_inbuf_reserve(&bc->in, &bc->be->worker->mbufs, bc->need, BIG_REPLIES_AHEAD) < 0) {
            bconn_reset(bc, MR_ERR_NOMEM);
            return;
        }
        mr_mbuf *mb = bc->in.mb;
        uint32_t room = mr_mbuf_room(mb);
        mr_io_status st;
        ssize_t n = mr_conn_read(&bc->conn, mb->data + mb->len, room, &st);
        if (n == 0) {
            if (st == MR_IO_WANT_WRITE)
                ev_io_start(loop, &bc->wio);
            if (st == MR_IO_WANT_READ || st == MR_IO_WANT_WRITE)
                break;
            bconn_reset(bc, MR_ERR_UNAVAILABLE); /* closed, or broken */
            return;
        }
        bconn_take(bc, n);
        took = true;
        if (bc->state != MR_BCONN_CONNECTED)
            break; /* reset by what was read */
        if ((uint32_t)n < room && mr_conn_short_read_drains(&bc->conn))
            break; /* drained */
    }
    if (took && bc->state == MR_BCONN_CONNECTED) {
        arm_timer(bc);
        /* Decrypted bytes libev cannot see (the 8 reads ran out, or a
         * record is partly in): read again next iteration. */
        if (mr_conn_pending_input(&bc->conn))
            ev_feed_event(loop, &bc->rio, EV_READ);
    }
}

static void bconn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    mr_bconn *bc = t->data;
    mr_backend *be = bc->be;
    ev_tstamp now = ev_now(loop);
    /* Replies the server sent that the loop has not read yet (it was busy,
     * or the process was not scheduled) are not a timeout: take them first,
     * then look again (the read re-arms the timer). */
    if (bc->state == MR_BCONN_CONNECTED && bc->sent_head) {
        bconn_read_cb(loop, &bc->rio, EV_READ);
        if (bc->state != MR_BCONN_CONNECTED)
            return; /* reset by what it read */
        if (bc->last_read == now) {
            arm_timer(bc);
            return;
        }
    }
    if (bc->state == MR_BCONN_CONNECTING) {
        mr_msg *m = first_unanswered(bc);
        if (bc->connect_deadline <= now || (m && msg_deadline(bc, m) <= now)) {
            connect_failed(bc, MR_ERR_TIMEOUT, 0);
            return;
        }
    }
    /* A timed-out message still unanswered a full timeout later: stalled.
     * The server is down whatever the failure limit says: requests written
     * to it may still run when it wakes up, so nothing newer may reach it
     * over a fresh connection before it has been probed back and given its
     * replay, in order. */
    if (bc->sent_head && bc->sent_head->replied && msg_deadline(bc, bc->sent_head) + be->timeout <= now) {
        if (health_of(be))
            mr_health_failure(health_of(be), be->server->id, MR_ERR_TIMEOUT, true);
        bconn_reset(bc, MR_ERR_TIMEOUT);
        return;
    }
    for (mr_msg *m = bc->sent_head; m; m = m->next) {
        if (m->replied)
            continue;
        if (msg_deadline(bc, m) > now)
            goto rearm;
        MR_STAT_INC(&be->worker->stats, backend_timeouts);
        /* A server that answered within the last timeout is slow, not dead:
         * only silence counts towards server_failure_limit. */
        if (now - bc->last_read >= be->timeout)
            report_failure(be, MR_ERR_TIMEOUT);
        mr_msg_answer(m, MR_ERR_TIMEOUT);
    }
    /* Unwritten messages past their deadline leave the queue at once, except
     * one partly written, which must stay to keep the stream in sync. */
    mr_msg *prev = NULL, *m = bc->pending_head;
    while (m && msg_deadline(bc, m) <= now) {
        mr_msg *next = m->next;
        if (m->replied) {
            prev = m;
        } else if (m->written > 0) {
            MR_STAT_INC(&be->worker->stats, backend_timeouts);
            mr_msg_answer(m, MR_ERR_TIMEOUT);
            prev = m;
        } else {
            MR_STAT_INC(&be->worker->stats, backend_timeouts);
            if (prev)
                prev->next = next;
            else
                bc->pending_head = next;
            if (bc->pending_tail == m)
                bc->pending_tail = prev;
            bc->nqueued--;
            mr_msg_finish(m, MR_ERR_TIMEOUT);
        }
        m = next;
    }
rearm:
    arm_timer(bc);
}
