/* auth.h: client authentication compatible with memcached's `-Y authfile`.
 *
 * Two halves:
 *  - the credentials (auth.c): a `user:password` file loaded into an
 *    immutable, reference-counted table. A pool's `auth_file` key loads one
 *    with its configuration; a reload simply loads a new configuration (and
 *    with it a new table), so authentications after the reload use the new
 *    credentials while connections already authenticated stay so.
 *  - the gate (auth_gate.c): what memcached 1.6 does with the bytes of a
 *    connection that has not authenticated yet. memcached reads them with a
 *    parser of its own (not its command parser): only `set <key> <flags>
 *    <exptime> <bytes>` carrying "<user> <password>" is understood; every
 *    other line gets `CLIENT_ERROR unauthenticated`. mr_auth_gate() is that
 *    parser, as a pure function over the client's input.
 *
 * Passwords never leave this module: nothing here logs, and errors name
 * only the credentials file and a line number.
 */
#ifndef MEMRELAY_AUTH_H
#define MEMRELAY_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds of the credentials file. memcached keeps at most 8 entries of at
 * most 255 bytes a line (silently ignoring the rest); we keep more and refuse
 * what does not fit instead of ignoring it. */
#define MR_AUTH_FIELD_MAX  255u          /* bytes of a user name or a password */
#define MR_AUTH_ENTRIES_MAX 128u         /* lines */
#define MR_AUTH_FILE_MAX   (64u * 1024u) /* bytes */

typedef struct mr_auth_table mr_auth_table;

/* Why a credentials file was refused. `line` is 1-based, 0 when the problem
 * is the file as a whole (permissions, unreadable). The message never
 * contains a password. */
typedef struct {
    int line;
    char message[256];
} mr_auth_error;

/* Load `path`: refuse it (NULL, `err` filled) when it cannot be read, is not
 * a regular file, or its mode gives group or others any access (mode & 077:
 * the file holds passwords in clear), or when a line is malformed. The
 * returned table holds one reference. */
mr_auth_table *mr_auth_load(const char *path, mr_auth_error *err);

/* The same from memory, with no permission check (tests, fuzzing). */
mr_auth_table *mr_auth_parse(const char *text, size_t len, mr_auth_error *err);

/* Reference counting (atomic: a table may be shared by configurations that
 * several threads read). The last unref wipes the passwords and frees. */
mr_auth_table *mr_auth_ref(mr_auth_table *t);
void mr_auth_unref(mr_auth_table *t);

/* Number of credentials (for --check-config; names are never printed). */
size_t mr_auth_count(const mr_auth_table *t);

/* Is (user, password) in the table? Runs in time independent of where, or
 * whether, the pair matches and of the stored passwords: every entry is
 * compared over its full fixed width. */
bool mr_auth_check(const mr_auth_table *t, const char *user, size_t ulen, const char *pass, size_t plen);

/* ---- the gate (auth_gate.c) ---- */

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
    const char *reply;  /* static text with its "\r\n" */
    mr_auth_outcome outcome;
} mr_auth_step;

/* Look at the first request of an unauthenticated connection's input
 * (`avail` bytes at `p`) and say what memcached -Y would do with it. */
void mr_auth_gate(const char *p, uint32_t avail, const mr_auth_table *t, mr_auth_step *out);

#endif
