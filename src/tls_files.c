/* tls_files.c: the certificate, key and CA files a configuration names:
 * reading them safely into an OpenSSL context, and checking them (and
 * cipher lists) before a configuration is accepted.
 */
#include "memrelay/tls_files.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>

/* Certificate, key and CA files larger than this are surely not PEM (the
 * system's whole CA bundle is about 200 KiB). */
#define MR_TLS_FILE_MAX (8 * 1024 * 1024)

/* ---- errors ---- */

/* The oldest error OpenSSL queued on this thread, as text, or `fallback`;
 * the queue is left empty. */
void mr_tls_error_text(char *why, size_t len, const char *fallback)
{
    unsigned long e = ERR_get_error();
    if (e == 0) {
        snprintf(why, len, "%s", fallback);
    } else {
        const char *reason = ERR_reason_error_string(e);
        if (reason)
            snprintf(why, len, "%s", reason);
        else
            ERR_error_string_n(e, why, len);
    }
    ERR_clear_error();
}

/* A file we are about to hand to OpenSSL: a readable regular file of a
 * sane size? (OpenSSL's own message for a missing file is "system lib",
 * which helps nobody, and a FIFO or /dev/zero would make it read forever.) */
static int readable(const char *path, char *why, size_t len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(why, len, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    int rc = fstat(fileno(f), &st);
    fclose(f);
    if (rc != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, len, "%s is not a regular file", path);
        return -1;
    }
    if (st.st_size > MR_TLS_FILE_MAX) {
        snprintf(why, len, "%s is larger than %d bytes: not a PEM file", path, MR_TLS_FILE_MAX);
        return -1;
    }
    return 0;
}

static int no_password(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

int mr_tls_load_cert_key(SSL_CTX *ctx, const char *cert, const char *key, char *why, size_t len)
{
    if (readable(cert, why, len) != 0)
        return -1;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        char e[200];
        mr_tls_error_text(e, sizeof(e), "unreadable");
        snprintf(why, len, "%s is not a PEM certificate: %s", cert, e);
        return -1;
    }
    if (readable(key, why, len) != 0)
        return -1;
    FILE *f = fopen(key, "r");
    if (f == NULL) {
        snprintf(why, len, "cannot read %s: %s", key, strerror(errno));
        return -1;
    }
    /* Read the key ourselves to tell "not a key" from "not this
     * certificate's key"; no_password keeps an encrypted key from making
     * OpenSSL prompt on the terminal. */
    EVP_PKEY *pk = PEM_read_PrivateKey(f, NULL, no_password, NULL);
    fclose(f);
    if (pk == NULL) {
        char e[200];
        mr_tls_error_text(e, sizeof(e), "unreadable");
        snprintf(why, len, "%s is not an unencrypted PEM private key: %s", key, e);
        return -1;
    }
    int ok = SSL_CTX_use_PrivateKey(ctx, pk) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(pk);
    if (!ok) {
        ERR_clear_error();
        snprintf(why, len, "the key in %s does not belong to the certificate in %s", key, cert);
        return -1;
    }
    return 0;
}

int mr_tls_load_ca(SSL_CTX *ctx, const char *ca, char *why, size_t len)
{
    if (readable(ca, why, len) != 0)
        return -1;
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        char e[200];
        mr_tls_error_text(e, sizeof(e), "unreadable");
        snprintf(why, len, "%s holds no PEM CA certificate: %s", ca, e);
        return -1;
    }
    return 0;
}

/* ---- configuration checks ---- */

int mr_tls_check_cert(const char *cert, char *why, size_t len)
{
    if (readable(cert, why, len) != 0)
        return -1;
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    int rc = ctx && SSL_CTX_use_certificate_chain_file(ctx, cert) == 1 ? 0 : -1;
    if (rc != 0) {
        char e[200];
        mr_tls_error_text(e, sizeof(e), "out of memory");
        snprintf(why, len, "%s is not a PEM certificate: %s", cert, e);
    }
    SSL_CTX_free(ctx);
    return rc;
}

int mr_tls_check_key(const char *cert, const char *key, char *why, size_t len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL) {
        mr_tls_error_text(why, len, "out of memory");
        return -1;
    }
    int rc = mr_tls_load_cert_key(ctx, cert, key, why, len);
    SSL_CTX_free(ctx);
    return rc;
}

int mr_tls_check_ca(const char *ca, char *why, size_t len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL) {
        mr_tls_error_text(why, len, "out of memory");
        return -1;
    }
    int rc = mr_tls_load_ca(ctx, ca, why, len);
    SSL_CTX_free(ctx);
    return rc;
}

int mr_tls_check_ciphers(const char *list, bool tls13, char *why, size_t len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    int ok = ctx && (tls13 ? SSL_CTX_set_ciphersuites(ctx, list) : SSL_CTX_set_cipher_list(ctx, list)) == 1;
    ERR_clear_error();
    SSL_CTX_free(ctx);
    if (ok)
        return 0;
    snprintf(why, len,
             tls13 ? "'%s' is not a list of TLS 1.3 cipher suites (e.g. TLS_AES_256_GCM_SHA384)"
                   : "'%s' names no TLS 1.2 cipher OpenSSL knows (e.g. ECDHE+AESGCM)",
             list);
    return -1;
}
