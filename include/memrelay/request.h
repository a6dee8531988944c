/* Layer: core (src/core/; may use base, dist, config, protocol, net, cluster). */
/* request.h: client requests and the backend messages they become.
 *
 * Ownership, in one place:
 * - An mr_req is created by its client's parser and sits on the client's
 *   in-order queue until its reply has been copied (as references) into the
 *   client's output. A request whose client needs no reply (noreply) or has
 *   gone is an orphan: client == NULL.
 * - Each mr_msg (one request to one server) lives inside its mr_req and sits
 *   on one backend connection's queue from enqueue until its reply arrives
 *   or the connection fails. The backend never frees a message: it hands it
 *   back with mr_msg_finish(), and the request is freed once the client is
 *   done with it and no message of it is on any queue (in_flight == 0).
 * - Every mr_slice holds one reference on its mbuf.
 */
#ifndef MEMRELAY_REQUEST_H
#define MEMRELAY_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

#include "memrelay/ascii.h"
#include "memrelay/binary.h"
#include "memrelay/error.h"
#include "memrelay/limits.h"
#include "memrelay/mbuf.h"

struct mr_client;
struct mr_worker;
struct mr_req;
struct mr_msg;
struct mr_gen;
struct mr_pool;

/* What core reports to the layers above it, and the one thing it asks of
 * them. One table per process, built by main.c before the workers start
 * and never changed (mr_shared.hooks); mr_worker_init copies the pointer
 * into mr_worker.hooks. Core never names a function of a higher layer:
 * it calls these. Unit tests may install their own. */
typedef struct mr_core_hooks {
    /* req->done just became true and req->client is set: its reply may go
     * out (proxy: mr_client_req_done marks the client dirty). One indirect
     * call per answered request. */
    void (*reply_ready)(struct mr_client *c, struct mr_req *req);
    /* A request that started under generation `gen`, older than the
     * worker's current one, went back to the pool (proxy:
     * mr_worker_req_freed, the generation holds). Requests of the current
     * generation are counted without it. */
    void (*req_freed)(struct mr_worker *w, struct mr_gen *gen);
    /* `stats [arg] [rest]` into *out: 0, or -1 out of memory (ops:
     * mr_stats_reply). */
    int (*stats_reply)(struct mr_worker *w, uint32_t listen_pool, mr_slice *out, const char *arg,
                       uint32_t arg_len, const char *rest, uint32_t rest_len);
    /* Test seam, NULL in the binary: when set, every message dispatch and
     * replication send goes here instead of to its server's backend
     * (mr_forward_send). */
    void (*send)(struct mr_worker *w, uint32_t conn_hint, struct mr_msg *msg);
} mr_core_hooks;

/* Hooks a request may carry (replication uses them). All optional. */
typedef struct mr_req_ops {
    /* A message got its answer; called before it stops counting as pending,
     * so the hook may send more messages (read failover). */
    void (*answered)(struct mr_req *req, struct mr_msg *msg);
    /* May the client have its reply before every message is answered? */
    bool (*ready)(const struct mr_req *req);
    /* A message left its backend for good; err says how (NONE: it was
     * replied to, even if it had timed out before). */
    void (*finished)(struct mr_req *req, struct mr_msg *msg, int err);
} mr_req_ops;

typedef struct mr_msg {
    struct mr_req *req;  /* owner */
    struct mr_msg *next; /* link in a backend connection queue */
    uint32_t server;     /* global server id */
    bool retrieval;      /* reply is VALUE items ended by END */
    bool queued;         /* on a backend queue */
    bool replied;        /* reply complete or failed */
    bool fenced;         /* sent with its q and then "mn": zero or one reply element, then MN */
    bool fence_got;      /* fenced: that one element has arrived */
    uint8_t fit;         /* mr_reply_fit of out[0] (reply_fit.h), set at its first reply; 0 before */
    bool warm_raced;     /* warm-up copy (warmup.c): a write to its key raced it, it was undone */
    bool warm_counted;   /* warm-up copy: counted in its stripe's mr_key_writes.copies until answered */
    mr_err error;        /* MR_ERR_NONE unless it failed without a reply */
    mr_slice out[2];     /* command line, data block */
    uint32_t nout;
    uint32_t written;    /* bytes of out[] already written */
    ev_tstamp deadline;  /* enqueue time + pool timeout: bounds a connect's wait (backend.c msg_deadline) */
    ev_tstamp sent_at;   /* loop time its last byte was written to the server (0: not yet) */
    ev_tstamp queued_at; /* loop time it was handed to its backend (0: never was); per-server stats */
    /* The reply. Retrievals: the VALUE items, and `line` only if the backend
     * answered with an error line instead. Others: `line` is the reply. */
    mr_slice line;
    mr_slice *items;
    uint32_t nitems, items_cap;
    uint32_t cursor; /* merge position in items */
    union {
        uint32_t key_scan; /* retrievals: where the next expected key is looked for in out[0] */
        uint32_t warm_seq; /* warm-up lookups and copies (never retrievals, warmup.c): the writes its key's
                              stripe had started when the lookup began */
    };
    mr_slice inline_items[4];
} mr_msg;

/* Where a retrieval's key is in its command line: found once at dispatch,
 * then used by every later pass (split lines, merge) instead of a rescan. */
typedef struct {
    uint32_t off, len;
} mr_key_ref;

/* Small multi-gets keep their per-key table inline. */
#define MR_REQ_INLINE_KEYS 16
#define MR_REQ_INLINE_MSGS 4

/* One request of a binary GETQ/GETKQ run (a run becomes one `gets` split
 * per server and merged like a text multi-get; client.c, emit.c). */
typedef struct {
    uint32_t opaque;
    uint32_t key_off; /* the key in the request's line */
    uint8_t key_len;
    uint8_t opcode; /* GETQ or GETKQ */
} mr_bin_run_key;

/* The longest run batched into one request. */
#define MR_BIN_RUN_MAX 64u

typedef struct mr_req {
    struct mr_client *client; /* NULL: orphan, nobody wants the reply */
    struct mr_worker *worker;
    struct mr_gen *gen;  /* the config it started under: it finishes on it (worker holds a reference) */
    struct mr_req *next; /* client's queue, or the worker's free list */
    mr_cmd cmd;
    mr_cmd_class cls;
    bool quiet;           /* meta q: some replies are suppressed */
    bool done;            /* every message answered (or a local reply set) */
    bool close_after;     /* close the client once this reply is out */
    bool fail_multiget;   /* pool's multiget_errors: fail */
    uint32_t pending;     /* messages not yet replied */
    uint32_t in_flight;   /* messages still on a backend queue */
    mr_slice line;        /* the client's command line (keys for merging) */
    mr_request_head head; /* parse result (offsets relative to line.p) */
    mr_slice local;       /* a reply made by memrelay itself */
    mr_msg *msgs;         /* one per server involved */
    uint32_t nmsgs;
    uint32_t *key_msg; /* retrievals over several servers: message of each key */
    mr_key_ref *keys;  /* and where each key is in `line` */
    uint32_t nkeys;
    /* Replication (replicate.c); ops NULL for plain requests. */
    const mr_req_ops *ops;
    uint32_t reply_msg;   /* the message whose reply the client gets (single-key commands) */
    uint32_t msgs_cap;    /* message slots allocated (failover adds messages) */
    uint32_t conn_hint;   /* picks the backend connection */
    uint32_t listen_pool; /* pool whose listener the request came in on */
    uint8_t nreplicas;    /* replicas[] in preference order, primary first */
    uint8_t acks, fails;  /* replicated writes: replies counted so far */
    uint8_t acks_needed;
    uint32_t replicas[MR_MAX_REPLICAS];
    union {
        uint32_t write_gen; /* replicated: the key's write generation when this write or read-back started */
        uint32_t warm_hint; /* not replicated, held for warm copies (warmup.c): its key's hash (key stripe) */
        uint32_t
            warm_copy_seq; /* a replicated warm copy (warm_copy), until it starts: its lookup's warm_seq */
    };
    uint8_t readback_tries;   /* read-backs redone because a newer write raced them */
    bool warm_copy;           /* a warm-up copy to a replicated key's new replica set (warmup.c) */
    uint8_t warm_again;       /* replicated mg being warmed: index + 1 of its line sent again (0: none) */
    uint32_t key_lock;        /* key stripe + 1 this replicated write holds (key_locks.h), 0: none */
    struct mr_req *park_next; /* the worker's wait list while parked for a key stripe, or while
                                        held for warm copies (warmup.c; never both) */
    union {
        const struct mr_pool *park_pool; /* parked (replicated): the pool it was dispatched to */
        ev_tstamp warm_held_at;          /* held for warm copies (not replicated): since when (loop time) */
    };
    /* A binary protocol client's request (NULL: text). `line` is then the
     * meta command mr_bin_translate wrote, in a block of its own that also
     * holds the plan and room for the response's head (bin_out, at least
     * MR_BIN_REPLY_HEAD_MAX bytes), so emit translates the reply back
     * without allocating. */
    const mr_bin_plan *bin;
    char *bin_out;
    /* A binary GETQ/GETKQ run (bin NULL): its requests in order, and room
     * for one response head each at bin_out (MR_BIN_REPLY_HEAD_MAX apart). */
    const mr_bin_run_key *bin_run;
    uint32_t bin_run_len;
    bool local_framed; /* binary: `local` already is binary responses (else a text line to translate) */
    mr_msg inline_msgs[MR_REQ_INLINE_MSGS];
    uint32_t inline_key_msg[MR_REQ_INLINE_KEYS];
    mr_key_ref inline_keys[MR_REQ_INLINE_KEYS];
} mr_req;

/* Request pool (per worker). */
mr_req *mr_req_new(struct mr_worker *w);
/* A request nobody waits for (an orphan of class KEYED, carrying `ops`),
 * for writes memrelay makes itself: repairs, replays. NULL when out of memory. */
mr_req *mr_req_new_background(struct mr_worker *w, const mr_req_ops *ops);
/* The client is done with it (reply emitted, or client gone). */
void mr_req_client_done(mr_req *req);
/* Size the message table; returns -1 when out of memory. The request then
 * holds one extra `pending` count (a guard) so that messages failing at once
 * during dispatch cannot complete or free it under the dispatcher's feet. */
int mr_req_alloc_msgs(mr_req *req, uint32_t nmsgs);
/* The same with room for `cap` messages, of which `nmsgs` are in use now. */
int mr_req_alloc_msgs_cap(mr_req *req, uint32_t nmsgs, uint32_t cap);
/* Take the next free message slot (failover); NULL when none is left. The
 * new message counts as pending. */
mr_msg *mr_req_add_msg(mr_req *req);
/* Size the per-key tables (key_msg, keys) of a retrieval. */
int mr_req_alloc_keys(mr_req *req, uint32_t nkeys);
/* Dispatch is over: drop the guard. The request may be freed on return. */
void mr_req_dispatched(mr_req *req);
/* Dispatch failed before any message was sent: answer them all with err,
 * then drop the guard. The request may be freed on return. */
void mr_req_fail_unsent(mr_req *req, mr_err err);
/* No message could even be made: the client gets `err`'s reply (or the
 * orphan is freed). The request may be freed on return. */
void mr_req_fail_local(mr_req *req, mr_err err);
/* The request's reply is already set (req->local, or none): it is done.
 * Its client is told, or the orphan is freed. It may be freed on return. */
void mr_req_done_local(mr_req *req);

/* Give a message its answer (err MR_ERR_NONE: the reply stored in it)
 * without taking it off its backend queue: a timed-out message stays queued
 * so the late reply still pairs with it, and is then discarded. */
void mr_msg_answer(mr_msg *msg, mr_err err);
/* A backend is done with a message: replied, failed, or dropped. Answers it
 * if not yet answered, takes it off the queue count, and frees the request
 * when nothing else holds it. The message may be freed on return. */
void mr_msg_finish(mr_msg *msg, mr_err err);
/* Append a VALUE item reference to a message's reply. */
int mr_msg_add_item(mr_msg *msg, mr_mbuf *mb, const char *p, uint32_t len);

#endif
