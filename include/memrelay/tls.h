/* Layer: net (src/net/; may use base, dist, config, protocol). */
/* tls.h: TLS towards clients and towards memcached servers (OpenSSL 3).
 *
 * Contexts. An SSL_CTX holds one pool's certificates and policy (its files
 * are read and checked by tls_files.c): a
 * listener context (pool keys tls_*) accepts clients, a server context
 * (server_tls_*) connects to the pool's servers. They are built on the
 * main thread from the configuration and only read afterwards; OpenSSL lets
 * many threads create connections from one context. Every SSL object holds
 * its own reference to its context (SSL_new takes one), so a context lives
 * as long as the last connection made from it, whatever happens to the
 * table it came from.
 *
 * Reload (SIGHUP) gives new connections new certificates: reload.c builds
 * the new generation's set with mr_tls_set_build() (every file is read
 * again; a failure refuses the reload and the running set stays), stores it
 * in the generation (mr_gen.tls) and its router (mr_router.tls, where
 * backends and the prober look), and the set is freed with its generation
 * (generation.c), once no worker can still make a connection from it.
 * Established connections keep the context they were made with until they
 * close. Single contexts: mr_tls_listener_ctx_new() / mr_tls_server_ctx_new()
 * return one reference each, released with SSL_CTX_free().
 *
 * I/O. A TLS connection is an mr_tls_conn next to the socket, in an mr_conn
 * (conn.h): clients, backends and the prober read and write through
 * conn.h, which branches once on `tls != NULL` and calls these:
 *   - mr_tls_handshake(), mr_tls_read(), mr_tls_writev() never block; a
 *     status says which readiness to wait for. A read may need the socket
 *     writable and a write readable (read_wants_write, write_wants_read say
 *     so), so callers arm the matching ev_io watcher.
 *   - OpenSSL can hold decrypted bytes libev knows nothing about: after a
 *     read that returned data, mr_tls_readable() says to read again.
 *   - TLS has no writev: mr_tls_writev() copies up to MR_TLS_WBUF bytes of the
 *     iovecs into the connection's buffer per SSL_write. The bytes it returns
 *     are taken from the caller for good; if the socket was full they wait in
 *     that buffer (mr_tls_has_output()) and go first on the next call, with the
 *     exact arguments OpenSSL requires for a retried write.
 */
#ifndef MEMRELAY_TLS_H
#define MEMRELAY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <openssl/ssl.h>

#include "memrelay/config.h"

/* Plaintext copied per SSL_write: one full TLS record. */
#define MR_TLS_WBUF (16u * 1024u)
/* A client's handshake must finish within client_idle_timeout, or this
 * many seconds when the pool has none: a silent connection would otherwise
 * hold its TLS state forever. */
#define MR_TLS_HANDSHAKE_TIMEOUT 10.0

typedef enum {
    MR_TLS_OK,         /* done */
    MR_TLS_WANT_READ,  /* call again when the socket is readable */
    MR_TLS_WANT_WRITE, /* call again when the socket is writable */
    MR_TLS_CLOSED,     /* the peer closed the connection */
    MR_TLS_ERROR,      /* protocol or socket error: close the connection */
} mr_tls_status;

typedef struct mr_tls_conn {
    SSL *ssl;
    bool established;      /* the handshake is complete */
    bool read_wants_write; /* the last read waits for writability */
    bool write_wants_read; /* the last write waits for readability */
    uint32_t wlen;         /* bytes of wbuf taken from the caller that SSL_write has not accepted yet */
    char wbuf[MR_TLS_WBUF];
} mr_tls_conn;

/* The contexts of one configuration, by pool index; NULL where unused. */
typedef struct mr_tls_set {
    size_t npools;
    SSL_CTX **clients; /* pools with a TLS listener (tls: true or tls_listen) */
    SSL_CTX **servers; /* pools with server_tls: true */
} mr_tls_set;

/* ---- contexts (main thread) ---- */

/* A listener context for `pool`: certificate and key, client CA and
 * verification, ciphers, minimum version. NULL with `err` set on failure. */
SSL_CTX *mr_tls_listener_ctx_new(const mr_pool_conf *pool, char *err, size_t errlen);
/* A context for connecting to `pool`'s servers. Logs a warning when the
 * pool turns verification off. NULL with `err` set on failure. */
SSL_CTX *mr_tls_server_ctx_new(const mr_pool_conf *pool, char *err, size_t errlen);
/* Every context `cfg` needs (also when it needs none: an empty set). */
mr_tls_set *mr_tls_set_build(const mr_config *cfg, char *err, size_t errlen);
/* Drop the set's references (connections keep theirs). NULL is fine. */
void mr_tls_set_free(mr_tls_set *set);

/* ---- connections (worker threads, and the health prober) ---- */

/* Server side of an accepted socket. NULL when out of memory. */
mr_tls_conn *mr_tls_accept_new(SSL_CTX *ctx, int fd);
/* Client side of a connected socket; `name` is checked against the
 * certificate when `verify` (IP literal: the address; else the DNS name,
 * also sent as SNI). NULL when out of memory. */
mr_tls_conn *mr_tls_connect_new(SSL_CTX *ctx, int fd, const char *name, bool verify);
/* The same for a connection to server `sc` of pool `pool` (its index in
 * `set`, whose settings are `pc`), as backends and the prober make them: the
 * pool's server context, and the name checked and sent as SNI is the pool's
 * server_tls_name, else the server's host. 1 with *out set; 0 when the pool
 * has no server_tls (the connection stays plain); -1 when out of memory. */
int mr_tls_connect_server(const mr_tls_set *set, uint32_t pool, const mr_pool_conf *pc,
                          const mr_server_conf *sc, int fd, mr_tls_conn **out);
/* Send close_notify if it fits in the socket now (never waits), free. */
void mr_tls_conn_free(mr_tls_conn *t);

/* Advance the handshake. On MR_TLS_ERROR or MR_TLS_CLOSED `why` says what
 * failed (a certificate verification error, an alert, a closed socket). */
mr_tls_status mr_tls_handshake(mr_tls_conn *t, char *why, size_t len);
/* Read up to len bytes: returns how many (> 0), or 0 with *st saying why not. */
ssize_t mr_tls_read(mr_tls_conn *t, void *buf, size_t len, mr_tls_status *st);
/* Write buffered bytes, then take up to MR_TLS_WBUF bytes from iov. Returns
 * the bytes taken from iov (the caller counts them written); *st is
 * MR_TLS_OK when everything taken went to OpenSSL, else what to wait for. */
ssize_t mr_tls_writev(mr_tls_conn *t, const struct iovec *iov, int iovcnt, mr_tls_status *st);

static inline bool mr_tls_has_output(const mr_tls_conn *t)
{
    return t->wlen > 0;
}

/* Decrypted or buffered bytes that libev cannot see. */
static inline bool mr_tls_readable(const mr_tls_conn *t)
{
    return SSL_has_pending(t->ssl) != 0;
}

/* Log a failed handshake at warning level, at most once a second for the
 * whole process (a scan or a misconfigured client fleet must not flood
 * the log); the next line says how many were not logged. */
void mr_tls_log_failure(const char *what, const char *who, const char *why);

#endif
