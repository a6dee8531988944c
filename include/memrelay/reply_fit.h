/* Layer: protocol (src/protocol/; may use base, dist, config). */
/* reply_fit.h: does a backend's reply element fit the request it pairs with?
 *
 * Replies pair with requests by order alone, so a server that sends one
 * reply too many (or too few) shifts every later pairing: a `delete` would
 * be handed the value of another key, a `set` a NOT_FOUND. Each command has
 * the reply kinds memcached can answer it with; anything else means the
 * stream is out of step and the connection must close before a client sees
 * any of it. The command is read from the line that was written (what the
 * server actually got), not from the client's request.
 */
#ifndef MEMRELAY_REPLY_FIT_H
#define MEMRELAY_REPLY_FIT_H

#include <stdbool.h>
#include <stdint.h>

#include "memrelay/reply.h"

/* X(enum suffix, what it is, in a log line) */
#define MR_REPLY_FITS(X)                  \
    X(UNKNOWN, "a request not looked at") \
    X(ANY, "an unknown command")          \
    X(RETRIEVAL, "a get")                 \
    X(STORE, "a storage command")         \
    X(CAS, "a cas")                       \
    X(DELETE, "a delete")                 \
    X(ARITH, "an incr/decr")              \
    X(TOUCH, "a touch")                   \
    X(MG, "an mg")                        \
    X(MS, "an ms")                        \
    X(MD, "an md")                        \
    X(MA, "an ma")                        \
    X(ME, "an me")                        \
    X(MN, "an mn")                        \
    X(FLUSH, "a flush_all")               \
    X(VERSION, "a version")

typedef enum {
#define MR_FIT_ENUM(e, what) MR_FIT_##e,
    MR_REPLY_FITS(MR_FIT_ENUM)
#undef MR_FIT_ENUM
        MR_FIT_COUNT
} mr_reply_fit;

/* The reply family of the command line written to the server (its first
 * token); MR_FIT_ANY for a command this table does not know. */
mr_reply_fit mr_reply_fit_of(const char *line, uint32_t len);

/* NULL when the element (kind, and its first line at line[0..line_len))
 * fits a request of family `fit`; else why not, for a log line ("VA for a
 * classic command", "NOT_FOUND for a storage command"...; written into
 * buf). `fenced`: the request was sent with q and a trailing mn, so its MN
 * also fits. `retrieval` is used for MR_FIT_ANY only. An error line
 * (ERROR, CLIENT_ERROR, SERVER_ERROR, BUSY) fits every request. */
const char *mr_reply_misfit(mr_reply_fit fit, bool fenced, bool retrieval, mr_reply_kind kind,
                            const char *line, uint32_t line_len, char *buf, uint32_t cap);

/* "a get", "a delete"... */
const char *mr_reply_fit_name(mr_reply_fit fit);

#endif
