/* Layer: protocol (src/protocol/; may use base, dist, config). */
/* auth_gate.h: what memcached 1.6 does with the bytes of a connection that
 * has not authenticated yet (auth_gate.c).
 *
 * memcached reads them with a parser of its own (not its command parser):
 * only `set <key> <flags> <exptime> <bytes>` carrying "<user> <password>"
 * is understood; every other line gets `CLIENT_ERROR unauthenticated`.
 * mr_auth_gate() is that parser, as a pure function over the client's
 * input, checking the credentials against a table of auth.h. Passwords
 * never leave it: nothing here logs.
 */
#ifndef MEMRELAY_AUTH_GATE_H
#define MEMRELAY_AUTH_GATE_H

#include <stdint.h>

#include "memrelay/auth.h"

/* memcached closes a connection that sends this many bytes before
 * authenticating without a newline. */
#define MR_AUTH_GATE_LINE_MAX 2048u
/* memcached waits for the authentication data in its 16 KiB read buffer:
 * a larger data block closes the connection. */
#define MR_AUTH_GATE_DATA_MAX (16384u - 2u)

typedef enum {
    MR_AUTH_NEED_MORE, /* wait for `need` bytes in all (0: for a newline) */
    MR_AUTH_REPLY,     /* consume `consumed` bytes and answer `reply` */
    MR_AUTH_CLOSE,     /* close the connection, as memcached does */
} mr_auth_action;

typedef enum {
    MR_AUTH_NOT_TRIED, /* not a credential check (stats unchanged) */
    MR_AUTH_GRANTED,   /* credentials matched: the connection is authenticated */
    MR_AUTH_DENIED,    /* credentials did not match */
} mr_auth_outcome;

typedef struct {
    mr_auth_action action;
    uint32_t need;
    uint32_t consumed;
    const char *reply; /* static text with its "\r\n" */
    mr_auth_outcome outcome;
} mr_auth_step;

/* Brute-force bounds, per connection (memcached has none: it answers
 * every guess at once, ~900,000 a second on one pipelined connection).
 * The first MR_AUTH_FREE_FAILURES failures are answered at once; each later
 * one is answered, then the connection is not read for
 * mr_auth_failure_delay() seconds; failure MR_AUTH_MAX_FAILURES is answered
 * and the connection closed. A guesser gets at most 5 tries per connection
 * and per ~1.5 s. */
#define MR_AUTH_FREE_FAILURES 2u
#define MR_AUTH_MAX_FAILURES 5u
#define MR_AUTH_DELAY_FIRST 0.5

/* What to do after the connection's `failures`-th failed attempt. */
typedef enum {
    MR_AUTH_GO_ON, /* read the next attempt now */
    MR_AUTH_DELAY, /* stop reading for mr_auth_failure_delay(failures) seconds */
    MR_AUTH_SHUT,  /* close once the failure reply is written */
} mr_auth_penalty;

mr_auth_penalty mr_auth_failure_penalty(uint32_t failures);
/* Seconds the connection is not read after its `failures`-th failure:
 * 0 for the free ones, then MR_AUTH_DELAY_FIRST doubling. */
double mr_auth_failure_delay(uint32_t failures);

/* Look at the first request of an unauthenticated connection's input
 * (`avail` bytes at `p`) and say what memcached -Y would do with it. */
void mr_auth_gate(const char *p, uint32_t avail, const mr_auth_table *t, mr_auth_step *out);

#endif
