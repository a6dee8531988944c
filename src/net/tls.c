/* tls.c: OpenSSL contexts from pool settings, and non-blocking TLS I/O.
 *
 * OpenSSL keeps its errors in a per-thread queue, and SSL_get_error() is
 * only right when that queue was empty before the call: every I/O helper
 * clears it first and leaves it empty behind. Renegotiation is off, so
 * after the handshake a write can only wait for writability (the
 * write_wants_read path exists for completeness).
 */
#include "memrelay/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "memrelay/log.h"
#include "memrelay/tls_files.h"

/* What every context shares: TLS 1.2 at least, no renegotiation (it is
 * what lets a read or write need the other direction), no compression. */
static SSL_CTX *ctx_new(const SSL_METHOD *method, int min_version, char *why, size_t len)
{
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (ctx == NULL) {
        mr_tls_error_text(why, len, "out of memory");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, min_version);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* Idle connections give their read and write buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

SSL_CTX *mr_tls_listener_ctx_new(const mr_pool_conf *p, char *err, size_t errlen)
{
    char why[400];
    SSL_CTX *ctx = ctx_new(TLS_server_method(), p->tls_min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION,
                           why, sizeof(why));
    if (ctx == NULL)
        goto fail;
    /* A client that shuts its side with a bare FIN (no close_notify) has
     * half-closed, as over plain TCP: its replies are still written
     * (client.c, client_peer_eof). OpenSSL 3 would call that a protocol
     * error and make the connection unusable. A request stream has no use
     * for truncation detection: every request and reply is self-delimiting. */
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (p->tls_cert == NULL || p->tls_key == NULL) {
        snprintf(why, sizeof(why), "tls_cert and tls_key are required");
        goto fail;
    }
    if (mr_tls_load_cert_key(ctx, p->tls_cert, p->tls_key, why, sizeof(why)) != 0)
        goto fail;
    if (p->tls_ciphers && SSL_CTX_set_cipher_list(ctx, p->tls_ciphers) != 1) {
        ERR_clear_error();
        snprintf(why, sizeof(why), "tls_ciphers '%s' names no cipher OpenSSL knows", p->tls_ciphers);
        goto fail;
    }
    if (p->tls_ciphersuites && SSL_CTX_set_ciphersuites(ctx, p->tls_ciphersuites) != 1) {
        ERR_clear_error();
        snprintf(why, sizeof(why), "tls_ciphersuites '%s' is not a TLS 1.3 suite list", p->tls_ciphersuites);
        goto fail;
    }
    if (p->tls_verify_client) {
        if (p->tls_ca == NULL || mr_tls_load_ca(ctx, p->tls_ca, why, sizeof(why)) != 0)
            goto fail;
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(p->tls_ca);
        if (names == NULL) {
            mr_tls_error_text(why, sizeof(why), "no CA names");
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names); /* takes ownership */
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    /* Resumed sessions are tied to this pool's settings (OpenSSL refuses to
     * resume a verified session without a context id). */
    static const char sid[] = "memrelay";
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)sid, sizeof(sid) - 1);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    snprintf(err, errlen, "pool %s: TLS listener: %s", p->name, why);
    return NULL;
}

SSL_CTX *mr_tls_server_ctx_new(const mr_pool_conf *p, char *err, size_t errlen)
{
    char why[400];
    SSL_CTX *ctx = ctx_new(TLS_client_method(), TLS1_2_VERSION, why, sizeof(why));
    if (ctx == NULL)
        goto fail;
    if (p->server_tls_verify) {
        if (p->server_tls_ca) {
            if (mr_tls_load_ca(ctx, p->server_tls_ca, why, sizeof(why)) != 0)
                goto fail;
        } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
            mr_tls_error_text(why, sizeof(why), "cannot load the system's CA store");
            goto fail;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        mr_log_warn("pool %s: server_tls_verify is false: the servers' certificates are not checked, so "
                    "anyone on the path can impersonate them",
                    p->name);
    }
    if (p->server_tls_cert &&
        mr_tls_load_cert_key(ctx, p->server_tls_cert, p->server_tls_key, why, sizeof(why)) != 0)
        goto fail;
    return ctx;
fail:
    SSL_CTX_free(ctx);
    snprintf(err, errlen, "pool %s: TLS to servers: %s", p->name, why);
    return NULL;
}

void mr_tls_set_free(mr_tls_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->npools; i++) {
        SSL_CTX_free(set->clients[i]);
        SSL_CTX_free(set->servers[i]);
    }
    free(set->clients);
    free(set->servers);
    free(set);
}

mr_tls_set *mr_tls_set_build(const mr_config *cfg, char *err, size_t errlen)
{
    mr_tls_set *set = calloc(1, sizeof(*set));
    if (set == NULL)
        goto oom;
    set->npools = cfg->npools;
    set->clients = calloc(cfg->npools ? cfg->npools : 1, sizeof(SSL_CTX *));
    set->servers = calloc(cfg->npools ? cfg->npools : 1, sizeof(SSL_CTX *));
    if (set->clients == NULL || set->servers == NULL)
        goto oom;
    for (size_t i = 0; i < cfg->npools; i++) {
        const mr_pool_conf *p = &cfg->pools[i];
        if (mr_pool_tls_clients(p) && (set->clients[i] = mr_tls_listener_ctx_new(p, err, errlen)) == NULL)
            goto fail;
        if (p->server_tls && (set->servers[i] = mr_tls_server_ctx_new(p, err, errlen)) == NULL)
            goto fail;
    }
    return set;
oom:
    snprintf(err, errlen, "out of memory building TLS contexts");
fail:
    mr_tls_set_free(set);
    return NULL;
}

/* ---- connections ---- */

static mr_tls_conn *conn_new(SSL_CTX *ctx, int fd)
{
    mr_tls_conn *t = malloc(sizeof(*t));
    if (t == NULL)
        return NULL;
    t->established = t->read_wants_write = t->write_wants_read = false;
    t->wlen = 0;
    t->ssl = SSL_new(ctx);
    if (t->ssl == NULL || SSL_set_fd(t->ssl, fd) != 1) {
        ERR_clear_error();
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    return t;
}

mr_tls_conn *mr_tls_accept_new(SSL_CTX *ctx, int fd)
{
    mr_tls_conn *t = conn_new(ctx, fd);
    if (t)
        SSL_set_accept_state(t->ssl);
    return t;
}

mr_tls_conn *mr_tls_connect_new(SSL_CTX *ctx, int fd, const char *name, bool verify)
{
    mr_tls_conn *t = conn_new(ctx, fd);
    if (t == NULL)
        return NULL;
    SSL_set_connect_state(t->ssl);
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
    /* SNI carries DNS names only (RFC 6066); an address is checked against
     * the certificate's IP entries instead of its DNS names. */
    int ok = is_ip || SSL_set_tlsext_host_name(t->ssl, name) == 1;
    if (ok && verify)
        ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name) == 1
                   : SSL_set1_host(t->ssl, name) == 1;
    if (!ok) {
        ERR_clear_error();
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    return t;
}

int mr_tls_connect_server(const mr_tls_set *set, uint32_t pool, const mr_pool_conf *pc,
                          const mr_server_conf *sc, int fd, mr_tls_conn **out)
{
    SSL_CTX *ctx = set ? set->servers[pool] : NULL;
    if (ctx == NULL)
        return 0;
    const char *name = pc->server_tls_name ? pc->server_tls_name : sc->addr.host;
    return (*out = mr_tls_connect_new(ctx, fd, name, pc->server_tls_verify)) != NULL ? 1 : -1;
}

void mr_tls_conn_free(mr_tls_conn *t)
{
    if (t == NULL)
        return;
    if (t->established) {
        ERR_clear_error();
        SSL_shutdown(t->ssl); /* one try: close_notify if the socket takes it now */
        ERR_clear_error();
    }
    SSL_free(t->ssl);
    free(t);
}

/* Map a failed SSL call's result to a status. Errors empty the queue. */
static mr_tls_status status_of(mr_tls_conn *t, int rc)
{
    switch (SSL_get_error(t->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return MR_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return MR_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return MR_TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
        /* Nothing queued: the socket failed or hit EOF. */
        if (ERR_peek_error() == 0)
            return MR_TLS_CLOSED;
        ERR_clear_error();
        return MR_TLS_ERROR;
    default:
        ERR_clear_error();
        return MR_TLS_ERROR;
    }
}

mr_tls_status mr_tls_handshake(mr_tls_conn *t, char *why, size_t len)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        t->established = true;
        return MR_TLS_OK;
    }
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ)
        return MR_TLS_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE)
        return MR_TLS_WANT_WRITE;
    /* Say why as precisely as OpenSSL knows: a certificate that did not
     * verify first, then the queued error, then the socket. */
    long vr = SSL_get_verify_result(t->ssl);
    int sys = errno;
    /* OpenSSL 3 reports a hang-up without close_notify as an error, or
     * (SSL_OP_IGNORE_UNEXPECTED_EOF, listeners) as a clean close. */
    bool eof = e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && sys == 0) ||
               ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
    if (eof && vr == X509_V_OK) {
        snprintf(why, len, "the peer closed the connection during the handshake");
        ERR_clear_error();
        return MR_TLS_CLOSED;
    }
    if (vr != X509_V_OK) {
        snprintf(why, len, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
        ERR_clear_error();
    } else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        snprintf(why, len, "%s", strerror(sys));
    } else {
        mr_tls_error_text(why, len, "handshake failed");
    }
    return MR_TLS_ERROR;
}

ssize_t mr_tls_read(mr_tls_conn *t, void *buf, size_t len, mr_tls_status *st)
{
    if (len > INT32_MAX)
        len = INT32_MAX;
    ERR_clear_error();
    int rc = SSL_read(t->ssl, buf, (int)len);
    if (rc > 0) {
        *st = MR_TLS_OK;
        return rc;
    }
    *st = status_of(t, rc);
    t->read_wants_write = *st == MR_TLS_WANT_WRITE;
    return 0;
}

/* Hand the buffered bytes to SSL_write: always the same buffer and length
 * until it accepts them, as OpenSSL requires of a retried write. */
static mr_tls_status write_buffered(mr_tls_conn *t)
{
    ERR_clear_error();
    int rc = SSL_write(t->ssl, t->wbuf, (int)t->wlen);
    if (rc > 0) { /* without partial writes, all of it */
        t->wlen = 0;
        return MR_TLS_OK;
    }
    mr_tls_status st = status_of(t, rc);
    t->write_wants_read = st == MR_TLS_WANT_READ;
    return st;
}

ssize_t mr_tls_writev(mr_tls_conn *t, const struct iovec *iov, int iovcnt, mr_tls_status *st)
{
    if (t->wlen > 0 && (*st = write_buffered(t)) != MR_TLS_OK)
        return 0;
    size_t n = 0;
    for (int i = 0; i < iovcnt && n < MR_TLS_WBUF; i++) {
        size_t take = iov[i].iov_len < MR_TLS_WBUF - n ? iov[i].iov_len : MR_TLS_WBUF - n;
        memcpy(t->wbuf + n, iov[i].iov_base, take);
        n += take;
    }
    *st = MR_TLS_OK;
    if (n == 0)
        return 0;
    t->wlen = (uint32_t)n;
    *st = write_buffered(t);
    /* Taken either way: what SSL_write could not send yet waits in wbuf. */
    return *st == MR_TLS_OK || *st == MR_TLS_WANT_READ || *st == MR_TLS_WANT_WRITE ? (ssize_t)n : 0;
}

/* ---- logging ---- */

static int64_t last_log_ms; /* atomic: when the last failure was logged */
static uint64_t suppressed; /* atomic: failures not logged since */

void mr_tls_log_failure(const char *what, const char *who, const char *why)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int64_t last = __atomic_load_n(&last_log_ms, __ATOMIC_RELAXED);
    if ((last != 0 && now - last < 1000) ||
        !__atomic_compare_exchange_n(&last_log_ms, &last, now, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        __atomic_add_fetch(&suppressed, 1, __ATOMIC_RELAXED);
        return;
    }
    uint64_t quiet = __atomic_exchange_n(&suppressed, 0, __ATOMIC_RELAXED);
    if (quiet)
        mr_log_warn("%s failed (%s): %s (%llu more TLS failures in the last second not logged)", what, who,
                    why, (unsigned long long)quiet);
    else
        mr_log_warn("%s failed (%s): %s", what, who, why);
}
