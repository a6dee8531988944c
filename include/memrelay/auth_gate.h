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

/* Look at the first request of an unauthenticated connection's input
 * (`avail` bytes at `p`) and say what memcached -Y would do with it. */
void mr_auth_gate(const char *p, uint32_t avail, const mr_auth_table *t, mr_auth_step *out);

#endif
