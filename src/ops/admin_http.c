/* admin_http.c: the HTTP admin listener (admin_http.h) on libmicrohttpd.
 *
 * libmicrohttpd parses HTTP and runs its own polling thread; we only map a
 * path to a handler (the table at the end) and build the body. Bounds: at
 * most ADMIN_MAX_CONNECTIONS connections at once, each closed after
 * ADMIN_IDLE_TIMEOUT seconds without traffic, ADMIN_CONNECTION_MEMORY bytes
 * for a request's headers, and the metrics text bounded by
 * MR_METRICS_MAX_BYTES.
 */
#include "memrelay/admin_http.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "memrelay/health.h"
#include "memrelay/log.h"
#include "memrelay/metrics.h"

#define ADMIN_MAX_CONNECTIONS 16
#define ADMIN_IDLE_TIMEOUT 10 /* seconds */
#define ADMIN_CONNECTION_MEMORY (32 * 1024)
#define READY_WHY_MAX 512

struct mr_admin_http {
    struct MHD_Daemon *daemon;
    mr_admin_source source;
};

/* What a handler produces: a status and a body (static or malloc'd). */
typedef struct {
    unsigned int status;
    const char *content_type;
    char *body;
    size_t len;
    bool owned; /* body was malloc'd: libmicrohttpd frees it */
} reply;

static reply static_reply(unsigned int status, const char *body)
{
    return (reply){status, "text/plain; charset=utf-8", (char *)body, strlen(body), false};
}

/* ---- readiness ---- */

bool mr_admin_ready(const mr_admin_view *v, char *why, size_t cap)
{
    size_t off = 0;
    why[0] = '\0';
    if (!v->cfg || !v->router || !v->health) {
        snprintf(why, cap, "no configuration loaded");
        return false;
    }
    if (v->draining) {
        /* Shutting down: take it out of service before the listeners go. */
        snprintf(why, cap, "draining (shutting down)");
        return false;
    }
    for (uint32_t p = 0; p < v->router->npools; p++) {
        const mr_pool *pool = &v->router->pools[p];
        if (pool->nservers == 0)
            continue; /* a pool of routes only */
        bool up = false;
        for (uint32_t s = 0; s < pool->nservers && !up; s++)
            up = mr_health_state_of(v->health, pool->server_ids[s]) == MR_HEALTH_UP;
        if (up)
            continue;
        int n =
            snprintf(why + off, cap - off, "%spool '%s' has no server up", off ? "; " : "", pool->conf->name);
        if (n < 0 || (size_t)n >= cap - off)
            break; /* the reason is cut short; the verdict stands */
        off += (size_t)n;
    }
    return why[0] == '\0';
}

/* ---- handlers ---- */

static reply serve_healthz(const mr_admin_view *v, bool have_view)
{
    return static_reply(MHD_HTTP_OK, "ok\n");
}

static reply serve_readyz(const mr_admin_view *v, bool have_view)
{
    char why[READY_WHY_MAX];
    if (!have_view)
        return static_reply(MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: no configuration loaded\n");
    if (mr_admin_ready(v, why, sizeof(why)))
        return static_reply(MHD_HTTP_OK, "ready\n");
    char *body = malloc(sizeof(why) + 16);
    if (!body)
        return static_reply(MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n");
    int n = snprintf(body, sizeof(why) + 16, "not ready: %s\n", why);
    return (reply){MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", body, (size_t)n, true};
}

static reply serve_metrics(const mr_admin_view *v, bool have_view)
{
    if (!have_view)
        return static_reply(MHD_HTTP_SERVICE_UNAVAILABLE, "no configuration loaded\n");
    size_t len = 0;
    char *text = mr_metrics_render(v, &len);
    if (!text)
        return static_reply(MHD_HTTP_INTERNAL_SERVER_ERROR,
                            "cannot render metrics (out of memory or too large)\n");
    return (reply){MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len, true};
}

static const struct {
    const char *path;
    reply (*serve)(const mr_admin_view *v, bool have_view);
} routes[] = {
    {"/metrics", serve_metrics},
    {"/healthz", serve_healthz},
    {"/readyz", serve_readyz},
};

/* ---- libmicrohttpd glue ---- */

static enum MHD_Result send_reply(struct MHD_Connection *conn, reply r, const char *allow)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        r.len, r.body, r.owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        if (r.owned)
            free(r.body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r.content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result rc = MHD_queue_response(conn, r.status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    mr_admin_http *admin = cls;
    /* GET and HEAD only (libmicrohttpd leaves HEAD's body out itself). A
     * body sent with any other method is never read: the reply goes first
     * and the connection is closed after it. */
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return send_reply(conn, static_reply(MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n"),
                          "GET, HEAD");
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(url, routes[i].path) != 0)
            continue;
        mr_admin_view view;
        memset(&view, 0, sizeof(view));
        bool have = admin->source.acquire && admin->source.acquire(admin->source.arg, &view);
        reply r = routes[i].serve(&view, have);
        if (have && admin->source.release)
            admin->source.release(admin->source.arg, &view);
        return send_reply(conn, r, NULL);
    }
    return send_reply(
        conn, static_reply(MHD_HTTP_NOT_FOUND, "not found: try /metrics, /healthz or /readyz\n"), NULL);
}

static void on_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    mr_log_warn("admin http: %s", line);
}

mr_admin_http *mr_admin_http_start(const mr_addr_conf *addr, const mr_admin_source *src)
{
    char port[8];
    snprintf(port, sizeof(port), "%u", addr->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL;
    int gai = getaddrinfo(addr->host, port, &hints, &res);
    if (gai != 0 || !res) {
        mr_log_error("admin listener: cannot resolve '%s': %s", addr->host, gai_strerror(gai));
        return NULL;
    }
    mr_admin_http *admin = calloc(1, sizeof(*admin));
    if (!admin) {
        freeaddrinfo(res);
        return NULL;
    }
    admin->source = *src;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
    if (res->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* The logger first, so libmicrohttpd never prints on its own. */
    admin->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, admin, MHD_OPTION_EXTERNAL_LOGGER, on_log, NULL,
        MHD_OPTION_SOCK_ADDR, res->ai_addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)ADMIN_MAX_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)ADMIN_IDLE_TIMEOUT, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)ADMIN_CONNECTION_MEMORY, MHD_OPTION_END);
    freeaddrinfo(res);
    if (!admin->daemon) {
        mr_log_error("admin listener: cannot listen on %s%s%s:%u", strchr(addr->host, ':') ? "[" : "",
                     addr->host, strchr(addr->host, ':') ? "]" : "", addr->port);
        free(admin);
        return NULL;
    }
    mr_log_info("admin listener on %s%s%s:%u (/metrics, /healthz, /readyz)",
                strchr(addr->host, ':') ? "[" : "", addr->host, strchr(addr->host, ':') ? "]" : "",
                addr->port);
    return admin;
}

void mr_admin_http_stop(mr_admin_http *admin)
{
    if (!admin)
        return;
    MHD_stop_daemon(admin->daemon);
    free(admin);
}
