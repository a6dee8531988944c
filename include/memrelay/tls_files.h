/* tls_files.h: the certificate, key and CA files a configuration names
 * (tls_files.c).
 *
 * The checks run when a configuration is validated, so a bad file is
 * reported with the key that names it before anything listens; the loaders
 * are what the TLS contexts (tls.c) are built with, so both read a file the
 * same way and fail with the same words. Every function says why it failed
 * in `why`, and leaves OpenSSL's error queue empty.
 */
#ifndef MEMRELAY_TLS_FILES_H
#define MEMRELAY_TLS_FILES_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

/* ---- configuration checks (config_validate.c); 0, or -1 with `why` ---- */

int mr_tls_check_cert(const char *cert, char *why, size_t len);
int mr_tls_check_key(const char *cert, const char *key, char *why, size_t len); /* loads and matches */
int mr_tls_check_ca(const char *ca, char *why, size_t len);
/* A TLS 1.2 cipher list (tls13 false) or TLS 1.3 suite list (tls13 true). */
int mr_tls_check_ciphers(const char *list, bool tls13, char *why, size_t len);

/* ---- loading into a context (tls.c); 0, or -1 with `why` ---- */

/* A PEM certificate chain and its unencrypted PEM key, checked to match. */
int mr_tls_load_cert_key(SSL_CTX *ctx, const char *cert, const char *key, char *why, size_t len);
/* The PEM CA certificates that verify peers. */
int mr_tls_load_ca(SSL_CTX *ctx, const char *ca, char *why, size_t len);

/* The oldest error OpenSSL queued on this thread, as text, or `fallback`;
 * the queue is left empty. */
void mr_tls_error_text(char *why, size_t len, const char *fallback);

#endif
