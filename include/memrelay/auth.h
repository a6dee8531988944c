/* Layer: config (src/config/; may use base, dist). */
/* auth.h: the credentials of client authentication compatible with
 * memcached's `-Y authfile` (auth.c).
 *
 * A `user:password` file is loaded into an immutable, reference-counted
 * table. A pool's `auth_file` key loads one with its configuration; a
 * reload simply loads a new configuration (and with it a new table), so
 * authentications after the reload use the new credentials while
 * connections already authenticated stay so. The gate that reads an
 * unauthenticated connection's bytes is auth_gate.h's.
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
#define MR_AUTH_FIELD_MAX 255u         /* bytes of a user name or a password */
#define MR_AUTH_ENTRIES_MAX 128u       /* lines */
#define MR_AUTH_FILE_MAX (64u * 1024u) /* bytes */

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

#endif
