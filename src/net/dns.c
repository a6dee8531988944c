/* dns.c: c-ares on a libev loop (dns.h says why).
 *
 * c-ares tells us which sockets it wants watched (the socket-state
 * callback): each gets an ev_io, and one ev_timer follows ares_timeout().
 * Answers are copied into the query and handed to the caller from a
 * zero-delay timer, so a callback never runs inside the call that started
 * the lookup (an IP literal or an /etc/hosts hit completes at once). */
#include "memrelay/dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ares.h>

typedef struct sock_watch {
    ev_io io;
    struct mr_dns *dns;
    struct sock_watch *next;
} sock_watch;

struct mr_dns_query {
    struct mr_dns *dns;
    bool is_srv;
    bool cancelled;
    bool finished; /* the answer is in; on the done list */
    mr_dns_host_cb host_cb;
    mr_dns_srv_cb srv_cb;
    void *ctx;
    uint16_t port;
    mr_dns_host_result host; /* owned copies, freed after delivery */
    mr_dns_srv_result srv;
    struct mr_dns_query *prev, *next; /* the dns's pending or done list */
};

struct mr_dns {
    struct ev_loop *loop;
    ares_channel channel;
    ev_timer timeout; /* ares_timeout() */
    ev_timer deliver; /* zero-delay: hand finished answers over */
    sock_watch *socks;
    mr_dns_query *pending; /* started, not finished */
    mr_dns_query *done;    /* finished, not delivered */
    uint64_t lookups, failures;
};

static bool ares_ready;

static void list_remove(mr_dns_query **head, mr_dns_query *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        *head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
}

static void list_push(mr_dns_query **head, mr_dns_query *q)
{
    q->prev = NULL;
    q->next = *head;
    if (*head)
        (*head)->prev = q;
    *head = q;
}

static void query_free(mr_dns_query *q)
{
    free(q->host.addrs);
    for (size_t i = 0; i < q->srv.ntargets; i++)
        free(q->srv.targets[i].target);
    free(q->srv.targets);
    free(q);
}

static void rearm_timeout(mr_dns *d)
{
    struct timeval tv;
    ev_timer_stop(d->loop, &d->timeout);
    if (ares_timeout(d->channel, NULL, &tv) == NULL)
        return;
    ev_timer_set(&d->timeout, (double)tv.tv_sec + tv.tv_usec / 1e6, 0);
    ev_timer_start(d->loop, &d->timeout);
}

/* A query's answer is in (or it failed): queue it for delivery. */
static void query_finished(mr_dns_query *q, int status)
{
    mr_dns *d = q->dns;
    list_remove(&d->pending, q);
    if (q->cancelled) {
        query_free(q);
        return;
    }
    if (q->is_srv)
        q->srv.status = status;
    else
        q->host.status = status;
    if (status != ARES_SUCCESS)
        d->failures++;
    q->finished = true;
    list_push(&d->done, q);
    if (!ev_is_active(&d->deliver)) {
        ev_timer_set(&d->deliver, 0, 0);
        ev_timer_start(d->loop, &d->deliver);
    }
}

static void deliver_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    mr_dns *d = t->data;
    /* Callbacks may start or cancel lookups: take the list first. */
    mr_dns_query *list = d->done;
    d->done = NULL;
    while (list) {
        mr_dns_query *q = list;
        list = q->next;
        q->prev = q->next = NULL;
        if (!q->cancelled) {
            if (q->is_srv)
                q->srv_cb(q->ctx, &q->srv);
            else
                q->host_cb(q->ctx, &q->host);
        }
        query_free(q);
    }
}

static void timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    mr_dns *d = t->data;
    ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    rearm_timeout(d);
}

static void sock_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    sock_watch *s = io->data;
    mr_dns *d = s->dns;
    ares_process_fd(d->channel, (revents & EV_READ) ? io->fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? io->fd : ARES_SOCKET_BAD);
    rearm_timeout(d);
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    mr_dns *d = data;
    sock_watch **pp = &d->socks;
    while (*pp && (*pp)->io.fd != fd)
        pp = &(*pp)->next;
    sock_watch *s = *pp;
    if (!readable && !writable) {
        if (s) {
            ev_io_stop(d->loop, &s->io);
            *pp = s->next;
            free(s);
        }
        return;
    }
    int events = (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            return; /* the query times out instead */
        s->dns = d;
        s->next = d->socks;
        d->socks = s;
        ev_io_init(&s->io, sock_io_cb, fd, events);
        s->io.data = s;
    } else {
        ev_io_stop(d->loop, &s->io);
        ev_io_set(&s->io, fd, events);
    }
    ev_io_start(d->loop, &s->io);
}

mr_dns *mr_dns_new(struct ev_loop *loop, const char *const *servers, size_t nservers, uint32_t timeout_ms,
                   uint32_t tries, char *err, size_t errlen)
{
    if (!ares_ready) {
        int rc = ares_library_init(ARES_LIB_INIT_ALL);
        if (rc != ARES_SUCCESS) {
            snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
            return NULL;
        }
        ares_ready = true;
    }
    mr_dns *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->loop = loop;
    struct ares_options opt;
    memset(&opt, 0, sizeof(opt));
    opt.sock_state_cb = sock_state_cb;
    opt.sock_state_cb_data = d;
    opt.timeout = (int)(timeout_ms ? timeout_ms : 1000);
    opt.tries = (int)(tries ? tries : 2);
    opt.lookups = (char *)"fb"; /* /etc/hosts, then DNS: what the C library does */
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS;
    int rc = ares_init_options(&d->channel, &opt, mask);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
        free(d);
        return NULL;
    }
    if (nservers > 0) {
        size_t cap = 1;
        for (size_t i = 0; i < nservers; i++)
            cap += strlen(servers[i]) + 1;
        char *csv = malloc(cap);
        if (csv == NULL) {
            snprintf(err, errlen, "out of memory");
            mr_dns_free(d);
            return NULL;
        }
        csv[0] = '\0';
        for (size_t i = 0; i < nservers; i++) {
            if (i)
                strcat(csv, ",");
            strcat(csv, servers[i]);
        }
        rc = ares_set_servers_ports_csv(d->channel, csv);
        free(csv);
        if (rc != ARES_SUCCESS) {
            snprintf(err, errlen, "dns_servers: %s", ares_strerror(rc));
            mr_dns_free(d);
            return NULL;
        }
    }
    ev_init(&d->timeout, timeout_cb);
    d->timeout.data = d;
    ev_init(&d->deliver, deliver_cb);
    d->deliver.data = d;
    return d;
}

void mr_dns_free(mr_dns *d)
{
    if (d == NULL)
        return;
    for (mr_dns_query *q = d->pending; q; q = q->next)
        q->cancelled = true;
    /* Calls every pending query back with ARES_EDESTRUCTION (freed there). */
    ares_destroy(d->channel);
    while (d->done) {
        mr_dns_query *q = d->done;
        list_remove(&d->done, q);
        query_free(q);
    }
    while (d->socks) {
        sock_watch *s = d->socks;
        d->socks = s->next;
        ev_io_stop(d->loop, &s->io);
        free(s);
    }
    ev_timer_stop(d->loop, &d->timeout);
    ev_timer_stop(d->loop, &d->deliver);
    free(d);
}

static mr_dns_query *query_new(mr_dns *d, void *ctx)
{
    mr_dns_query *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    q->dns = d;
    q->ctx = ctx;
    list_push(&d->pending, q);
    d->lookups++;
    return q;
}

static void set_port(mr_dns_addr *a, uint16_t port)
{
    if (a->sa.ss_family == AF_INET)
        ((struct sockaddr_in *)&a->sa)->sin_port = htons(port);
    else if (a->sa.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&a->sa)->sin6_port = htons(port);
}

static void host_answer_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    mr_dns_query *q = arg;
    if (status == ARES_SUCCESS && res) {
        size_t n = 0;
        for (struct ares_addrinfo_node *nd = res->nodes; nd; nd = nd->ai_next)
            n++;
        if (n > MR_DNS_MAX_ADDRS)
            n = MR_DNS_MAX_ADDRS;
        q->host.addrs = n ? calloc(n, sizeof(*q->host.addrs)) : NULL;
        if (n && q->host.addrs == NULL) {
            status = ARES_ENOMEM;
        } else {
            uint32_t ttl = 0;
            for (struct ares_addrinfo_node *nd = res->nodes; nd && q->host.naddrs < n; nd = nd->ai_next) {
                if ((size_t)nd->ai_addrlen > sizeof(struct sockaddr_storage))
                    continue;
                mr_dns_addr *a = &q->host.addrs[q->host.naddrs++];
                memcpy(&a->sa, nd->ai_addr, nd->ai_addrlen);
                a->len = (socklen_t)nd->ai_addrlen;
                set_port(a, q->port);
                if (nd->ai_ttl > 0 && (ttl == 0 || (uint32_t)nd->ai_ttl < ttl))
                    ttl = (uint32_t)nd->ai_ttl;
            }
            q->host.ttl_s = ttl;
            if (q->host.naddrs == 0)
                status = ARES_ENODATA;
        }
    }
    if (res)
        ares_freeaddrinfo(res);
    query_finished(q, status);
}

mr_dns_query *mr_dns_resolve(mr_dns *d, const char *host, uint16_t port, int family, mr_dns_host_cb cb,
                             void *ctx)
{
    mr_dns_query *q = query_new(d, ctx);
    if (q == NULL)
        return NULL;
    q->host_cb = cb;
    q->port = port;
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    ares_getaddrinfo(d->channel, host, NULL, &hints, host_answer_cb, q);
    rearm_timeout(d);
    return q;
}

static int srv_order(const void *a, const void *b)
{
    const mr_dns_srv_target *x = a, *y = b;
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    if (x->weight != y->weight)
        return x->weight > y->weight ? -1 : 1;
    int c = strcmp(x->target, y->target);
    if (c)
        return c;
    return (int)x->port - (int)y->port;
}

static void srv_answer_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    mr_dns_query *q = arg;
    struct ares_srv_reply *replies = NULL;
    if (status == ARES_SUCCESS)
        status = ares_parse_srv_reply(abuf, alen, &replies);
    if (status == ARES_SUCCESS) {
        size_t n = 0;
        for (struct ares_srv_reply *r = replies; r; r = r->next)
            n++;
        if (n > MR_DNS_MAX_SRV)
            n = MR_DNS_MAX_SRV;
        q->srv.targets = n ? calloc(n, sizeof(*q->srv.targets)) : NULL;
        for (struct ares_srv_reply *r = replies; r && q->srv.targets && q->srv.ntargets < n; r = r->next) {
            size_t len = strlen(r->host);
            while (len > 0 && r->host[len - 1] == '.')
                len--;
            if (len == 0) /* "." : the service is decidedly not available */
                continue;
            char *name = strndup(r->host, len);
            if (name == NULL)
                break;
            mr_dns_srv_target *t = &q->srv.targets[q->srv.ntargets++];
            t->target = name;
            t->port = r->port;
            t->weight = r->weight;
            t->priority = r->priority;
        }
        if (n && q->srv.targets == NULL)
            status = ARES_ENOMEM;
        else if (q->srv.ntargets == 0)
            status = ARES_ENODATA;
        else
            qsort(q->srv.targets, q->srv.ntargets, sizeof(*q->srv.targets), srv_order);
    }
    if (replies)
        ares_free_data(replies);
    query_finished(q, status);
}

mr_dns_query *mr_dns_srv(mr_dns *d, const char *name, mr_dns_srv_cb cb, void *ctx)
{
    mr_dns_query *q = query_new(d, ctx);
    if (q == NULL)
        return NULL;
    q->is_srv = true;
    q->srv_cb = cb;
    ares_search(d->channel, name, ns_c_in, ns_t_srv, srv_answer_cb, q);
    rearm_timeout(d);
    return q;
}

void mr_dns_cancel(mr_dns_query *q)
{
    if (q)
        q->cancelled = true;
}

uint64_t mr_dns_lookups(const mr_dns *d)
{
    return d->lookups;
}

uint64_t mr_dns_failures(const mr_dns *d)
{
    return d->failures;
}

const char *mr_dns_strerror(int status)
{
    return ares_strerror(status);
}
