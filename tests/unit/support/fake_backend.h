/* fake_backend.h: a worker without sockets, for the core's unit tests.
 *
 * fb_new() builds one worker by hand from a YAML string, the way
 * mr_worker_init and main.c do but with nothing that touches the network or
 * a thread: the config, a router with the health registry's server ids, a
 * generation, an mbuf pool, an ev loop that never runs, server_slot, and a
 * backend per server from mr_backend_init (which opens no socket). It
 * installs its own mr_core_hooks:
 *
 * - send (the core's test seam, forward.h) captures every message dispatch
 *   and replication hand to a server: its server, connection hint and the
 *   exact bytes of msg->out. The message counts as queued, as on a backend
 *   connection, until the test answers it (fb_reply) or fails it (fb_fail).
 * - reply_ready and req_freed count their calls and write them to an event
 *   log (fb->log), where the test's own request hooks may write too.
 * - stats_reply answers "STAT fb <arg>|<rest>\r\nEND\r\n".
 *
 * One fake client sends requests (fb_request: parsed and queued as client.c
 * does) and reads what it would be sent (fb_output: mr_emit into an mr_outq,
 * in queue order). fb_free tears it all down and fails the test if a
 * request or an mbuf reference was leaked.
 */
#ifndef MEMRELAY_TEST_FAKE_BACKEND_H
#define MEMRELAY_TEST_FAKE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memrelay/outq.h"
#include "memrelay/request.h"
#include "memrelay/worker.h"

#define FB_MAX_SENT 1024u

/* One message handed to a server through the send hook. */
typedef struct fb_sent {
    mr_msg *msg;        /* the message; valid until finished */
    uint32_t server;    /* global server id */
    uint32_t conn_hint; /* the connection hint it was sent with */
    char *bytes;        /* msg->out[0..nout) as sent, NUL-terminated (owned) */
    uint32_t len;       /* bytes in `bytes` */
    bool finished;      /* fb_reply/fb_fail ended it, or its server was down */
} fb_sent;

typedef struct fb {
    mr_worker w;               /* the worker; first member, for fb_of() */
    mr_shared shared;          /* what w->shared points at */
    mr_core_hooks hooks;       /* the test hooks, w->hooks */
    mr_config *cfg;            /* the config (owned by gen) */
    mr_gen *gen;               /* the one generation (owned) */
    mr_health *health;         /* the server registry: ids, quarantine, traffic (owned) */
    fb_sent sent[FB_MAX_SENT]; /* every send, in order */
    uint32_t nsent;            /* entries of sent[] used */
    mr_err *down;              /* by server id: sends to it fail at once with this (MR_ERR_NONE: up) */
    bool *real;                /* by server id: sends go to its real backend (mr_backend_send) */
    uint32_t nready;           /* reply_ready calls */
    uint32_t nfreed;           /* req_freed calls (requests of an older generation) */
    mr_gen *freed_gen;         /* the generation the last req_freed call named */
    char log[4096];            /* events in order, each followed by ';' */
    size_t loglen;             /* bytes in log */
    uint32_t nstats;           /* stats_reply calls */
    char client_tag;           /* the fake client is &client_tag */
    uint32_t client_id;        /* its conn_hint */
    mr_req *q_head, *q_tail;   /* its in-order request queue */
    mr_outq out;               /* its output queue (mr_emit writes here) */
    char *output;              /* fb_output's last result (owned) */
    size_t output_len;         /* its length (binary responses hold NULs) */
} fb;

/* A worker for `yaml` (fails the test if it does not load). */
fb *fb_new(const char *yaml);
/* Tear down: the client closes, every message still out fails, backends
 * close. Fails the test if a request was never freed, an mbuf reference is
 * still held, or (ASan builds) LeakSanitizer finds a leak. */
void fb_free(fb *f);
fb *fb_of(mr_worker *w);
struct mr_client *fb_client(fb *f);

/* The client sends `text` (one complete command, data block included) on
 * listening pool 0 / `listen_pool`: parsed, queued and dispatched as
 * client.c does (a noreply request runs as an orphan). Returns the request,
 * which may already be freed when it was an orphan finished at once. */
mr_req *fb_request(fb *f, const char *text);
mr_req *fb_request_on(fb *f, uint32_t listen_pool, const char *text);
/* The same without the dispatch: the test drives the request itself. */
mr_req *fb_new_req(fb *f, uint32_t listen_pool, const char *text);
/* The client goes away: every request on its queue is done with
 * (mr_req_client_done), as when client.c closes a connection. */
void fb_client_gone(fb *f);
/* Everything the client would be sent since the last call: the replies of
 * the finished requests at the head of its queue, through mr_emit, in
 * order; each emitted request is then done with by the client. */
const char *fb_output(fb *f);

/* Captured sends, in order. */
uint32_t fb_nsent(const fb *f);
fb_sent *fb_sent_at(fb *f, uint32_t i);
/* The only unfinished send to `server` (fails the test if there is not
 * exactly one). */
fb_sent *fb_to(fb *f, uint32_t server);
/* Unfinished sends to `server`. */
uint32_t fb_pending_to(const fb *f, uint32_t server);

/* Answer a send with the server's reply bytes: parsed with mr_reply_next
 * and stored as bconn_parse does (VALUE items with mr_msg_add_item, any
 * other line as the reply), then mr_msg_finish. */
void fb_reply(fb *f, fb_sent *s, const char *reply);
/* The send's connection failed (mr_msg_finish with err). */
void fb_fail(fb *f, fb_sent *s, mr_err err);
/* The send's deadline passed: it is answered SERVER_ERROR timeout but stays
 * queued, as backend.c's timer does; a later fb_reply is its late reply,
 * which is dropped. */
void fb_timeout(fb *f, fb_sent *s);
/* From now on sends to `server` fail at once with `err` inside the send,
 * as mr_backend_send does for a server held down (MR_ERR_NONE: up again). */
void fb_set_down(fb *f, uint32_t server, mr_err err);
/* From now on sends to `server` go to its real backend (mr_backend_send). */
void fb_use_backend(fb *f, uint32_t server);

/* Append an event to fb->log ("name;"). */
void fb_log(fb *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Placement, from the router the worker uses. */
uint32_t fb_owner(const fb *f, uint32_t pool, const char *key);
uint32_t fb_replicas(const fb *f, uint32_t pool, const char *key, uint32_t *out);
/* The global id of server `index` (config order) of pool `pool`. */
uint32_t fb_server(const fb *f, uint32_t pool, uint32_t index);
/* Keys "<prefix><n>" (n = 0, 1, ...) owned by `server` in `pool`, into
 * out[0..count) (each a static buffer of 32 bytes). */
void fb_keys_on(const fb *f, uint32_t pool, uint32_t server, const char *prefix, char (*out)[32],
                uint32_t count);

#endif
