/* config.c: loading entry points, error messages and the object's lifetime.
 *
 * mr_config_load() reads the whole file (bounded by MR_CONFIG_MAX_BYTES)
 * and hands it to mr_config_load_string(), which runs the parser and the
 * validator over one context. Every failure is reported once, in
 * mr_config_error, as "file:line:column: what is wrong".
 */
#include "config_internal.h"

#include "memrelay/auth.h"
#include "memrelay/md5.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A configuration larger than this is surely a mistake (wrong file). */
#define MR_CONFIG_MAX_BYTES (16u * 1024u * 1024u) /* the message in read_all() says 16 MiB */

int mr_conf_fail(mr_conf_ctx *ctx, mr_conf_pos pos, const char *fmt, ...)
{
    mr_config_error *err = ctx->err;
    int n = 0;

    err->line = pos.line;
    err->column = pos.column;
    if (pos.line > 0)
        n = snprintf(err->message, sizeof(err->message), "%s:%d:%d: ", ctx->name, pos.line, pos.column);
    else
        n = snprintf(err->message, sizeof(err->message), "%s: ", ctx->name);
    if (n < 0 || (size_t)n >= sizeof(err->message))
        return -1;

    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message + n, sizeof(err->message) - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Load from memory: parse, validate, and on failure free what was built. */
static mr_config *load(const char *yaml, size_t len, const char *name, const mr_pool_members *members,
                       size_t nmembers, mr_config_error *err)
{
    mr_conf_ctx ctx = {.name = name, .err = err, .members = members, .nmembers = nmembers};

    int rc = mr_conf_parse(&ctx, yaml, len);
    if (rc == 0)
        rc = mr_conf_validate(&ctx);

    if (ctx.marks != NULL) {
        for (size_t i = 0; ctx.cfg != NULL && i < ctx.cfg->npools; i++) {
            free(ctx.marks[i].route_prefix);
            free(ctx.marks[i].route_pool);
        }
        free(ctx.marks);
    }
    mr_config *cfg = ctx.cfg;
    if (rc != 0 || cfg == NULL) {
        mr_config_free(cfg);
        return NULL;
    }
    cfg->path = strdup(name);
    cfg->text = malloc(len ? len : 1);
    if (cfg->path == NULL || cfg->text == NULL) {
        mr_conf_fail(&ctx, (mr_conf_pos){0, 0}, "out of memory");
        mr_config_free(cfg);
        return NULL;
    }
    memcpy(cfg->text, yaml, len);
    cfg->text_len = len;
    uint8_t digest[16];
    mr_md5(yaml, len, digest);
    for (int i = 0; i < 16; i++)
        snprintf(cfg->hash + 2 * i, 3, "%02x", digest[i]);
    return cfg;
}

mr_config *mr_config_load_string(const char *yaml, size_t len, const char *name, mr_config_error *err)
{
    mr_config_error scratch;
    if (err == NULL)
        err = &scratch;
    memset(err, 0, sizeof(*err));
    if (name == NULL)
        name = "<string>";
    return load(yaml, len, name, NULL, 0, err);
}

mr_config *mr_config_load_members(const char *yaml, size_t len, const char *name,
                                  const mr_pool_members *members, size_t nmembers, mr_config_error *err)
{
    mr_config_error scratch;
    if (err == NULL)
        err = &scratch;
    memset(err, 0, sizeof(*err));
    return load(yaml, len, name, members, nmembers, err);
}

bool mr_config_discovers(const mr_config *cfg)
{
    for (size_t i = 0; i < cfg->npools; i++)
        if (cfg->pools[i].discovery != MR_SERVERS_STATIC)
            return true;
    return false;
}

/* The whole of `f` in a malloc'd buffer, or NULL with `why` set. */
static char *read_all(FILE *f, size_t *len_out, const char **why)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= MR_CONFIG_MAX_BYTES) {
                *why = "the file is larger than 16 MiB";
                break;
            }
            size_t bigger_cap = cap ? cap * 2 : 4096;
            char *bigger = realloc(buf, bigger_cap);
            if (bigger == NULL) {
                *why = "out of memory";
                break;
            }
            buf = bigger;
            cap = bigger_cap;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (!ferror(f)) {
                *len_out = len;
                return buf;
            }
            *why = strerror(errno);
            break;
        }
    }
    free(buf);
    return NULL;
}

mr_config *mr_config_load(const char *path, mr_config_error *err)
{
    return mr_config_load_file_members(path, NULL, 0, err);
}

mr_config *mr_config_load_file_members(const char *path, const mr_pool_members *members, size_t nmembers,
                                       mr_config_error *err)
{
    mr_config_error scratch;
    if (err == NULL)
        err = &scratch;
    memset(err, 0, sizeof(*err));
    mr_conf_ctx ctx = {.name = path, .err = err};

    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        mr_conf_fail(&ctx, (mr_conf_pos){0, 0}, "cannot open configuration file: %s", strerror(errno));
        return NULL;
    }
    size_t len = 0;
    const char *why = NULL;
    char *buf = read_all(f, &len, &why);
    fclose(f);
    if (buf == NULL) {
        mr_conf_fail(&ctx, (mr_conf_pos){0, 0}, "cannot read configuration file: %s", why);
        return NULL;
    }
    mr_config *cfg = load(buf, len, path, members, nmembers, err);
    free(buf);
    return cfg;
}

long mr_config_pool_index(const mr_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->npools; i++)
        if (strcmp(cfg->pools[i].name, name) == 0)
            return (long)i;
    return -1;
}

static void free_pool(mr_pool_conf *p)
{
    free(p->name);
    free(p->listen.host);
    for (size_t i = 0; i < p->nservers; i++) {
        free(p->servers[i].spec);
        free(p->servers[i].addr.host);
        free(p->servers[i].name);
        free(p->servers[i].ident);
    }
    free(p->servers);
    free(p->discovery_name);
    for (size_t i = 0; i < p->nroutes; i++) {
        free(p->routes[i].prefix);
        free(p->routes[i].pool_name);
    }
    free(p->routes);
    for (size_t i = 0; i < p->nreplicate_to; i++)
        free(p->replicate_to_names[i]);
    free(p->replicate_to_names);
    free(p->replicate_to);
    free(p->tls_listen.host);
    free(p->tls_cert);
    free(p->tls_key);
    free(p->tls_ca);
    free(p->tls_ciphers);
    free(p->tls_ciphersuites);
    free(p->server_tls_ca);
    free(p->server_tls_name);
    free(p->server_tls_cert);
    free(p->server_tls_key);
    free(p->auth_file);
    mr_auth_unref(p->auth);
}

void mr_config_free(mr_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->npools; i++)
        free_pool(&cfg->pools[i]);
    free(cfg->pools);
    free(cfg->admin_listen.host);
    free(cfg->path);
    free(cfg->log_file);
    for (size_t i = 0; i < cfg->ndns_servers; i++)
        free(cfg->dns_servers[i]);
    free(cfg->dns_servers);
    free(cfg->text);
    free(cfg);
}

/* IP literal -> family and bytes; 0 when `host` is a name. */
static int ip_literal(const char *host, unsigned char out[16])
{
    if (inet_pton(AF_INET, host, out) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, host, out) == 1)
        return AF_INET6;
    return 0;
}

bool mr_conf_addr_equal(const mr_addr_conf *a, const mr_addr_conf *b)
{
    if (a->is_unix != b->is_unix)
        return false;
    if (a->is_unix)
        return strcmp(a->host, b->host) == 0;
    if (a->port != b->port)
        return false;

    unsigned char ba[16], bb[16];
    int fa = ip_literal(a->host, ba), fb = ip_literal(b->host, bb);
    if (fa != 0 || fb != 0)
        return fa == fb && memcmp(ba, bb, fa == AF_INET ? 4 : 16) == 0;
    return strcasecmp(a->host, b->host) == 0;
}

const char *mr_conf_addr_format(const mr_addr_conf *a, char *buf, size_t size)
{
    if (a->is_unix && a->mode != 0)
        snprintf(buf, size, "%s %04o", a->host, (unsigned)a->mode);
    else if (a->is_unix)
        snprintf(buf, size, "%s", a->host);
    else if (strchr(a->host, ':') != NULL)
        snprintf(buf, size, "[%s]:%u", a->host, (unsigned)a->port);
    else
        snprintf(buf, size, "%s:%u", a->host, (unsigned)a->port);
    return buf;
}
