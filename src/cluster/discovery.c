/* discovery.c: DNS-discovered pool membership (discovery.h has the rules). */
#include "memrelay/discovery.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memrelay/log.h"

/* TODO(layers): wall_ms() from clock.h once the layers branch lands. */
static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Answers in a row a server must be missing from before it is removed. */
#define MISSING_ANSWERS_TO_REMOVE 2u

typedef struct {
    char *key;        /* identity: "host:port" ("[v6]:port") */
    char *line;       /* the server line handed to the config: key + ":weight" */
    uint32_t missing; /* answers in a row without it */
} member;

/* One answer, before it is applied. */
typedef struct {
    char key[300];
    uint32_t weight;
} found;

typedef struct disc_pool {
    struct mr_discovery *d;
    char *pool;
    char *name;
    mr_servers_source kind;
    uint16_t port; /* servers_dns */
    uint32_t refresh_ms;
    uint32_t max_ejected_pct;
    ev_timer timer;
    mr_dns_query *q; /* the lookup in flight, or NULL */
    member *members; /* sorted by key */
    size_t n;
    const char **lines; /* members' lines, same order (mr_pool_members) */
    bool answered;      /* the first lookup has ended */
    bool replace_all;   /* its name changed: the next good answer is the membership */
    bool failing;       /* the last lookup failed (logged once per change) */
    uint64_t lookups, failures, changes;
    int64_t last_answer_ms;
    char last_error[128];
    bool keep;   /* configure: still in the config */
    bool notify; /* the answer being applied changed the membership */
} disc_pool;

struct mr_discovery {
    /* Held by the main thread while it changes pools or their counters, and
     * by readers of mr_discovery_stats (the admin and worker threads). */
    pthread_mutex_t lock;
    struct ev_loop *loop;
    mr_dns *dns;
    mr_discovery_changed_fn changed;
    void *ctx;
    disc_pool **pools;
    size_t npools;
    mr_pool_members *members; /* by pool, rebuilt by mr_discovery_members */
};

static const char *kind_name(mr_servers_source k)
{
    return k == MR_SERVERS_SRV ? "srv" : "dns";
}

static void members_free(disc_pool *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->members[i].key);
        free(p->members[i].line);
    }
    free(p->members);
    free(p->lines);
    p->members = NULL;
    p->lines = NULL;
    p->n = 0;
}

static void pool_free(disc_pool *p)
{
    ev_timer_stop(p->d->loop, &p->timer);
    mr_dns_cancel(p->q);
    members_free(p);
    free(p->pool);
    free(p->name);
    free(p);
}

static int found_order(const void *a, const void *b)
{
    return strcmp(((const found *)a)->key, ((const found *)b)->key);
}

/* Text of a list of keys for the log line, bounded. */
static void append_key(char *buf, size_t cap, const char *key)
{
    size_t used = strlen(buf);
    if (used + 1 >= cap)
        return;
    snprintf(buf + used, cap - used, "%s%s", used ? " " : "", key);
}

static bool rebuild_lines(disc_pool *p)
{
    free(p->lines);
    p->lines = p->n ? malloc(p->n * sizeof(*p->lines)) : NULL;
    if (p->n && p->lines == NULL)
        return false;
    for (size_t i = 0; i < p->n; i++)
        p->lines[i] = p->members[i].line;
    return true;
}

static char *line_for(const char *key, uint32_t weight)
{
    size_t len = strlen(key) + 16;
    char *line = malloc(len);
    if (line)
        snprintf(line, len, "%s:%u", key, weight ? weight : 1u);
    return line;
}

/* Apply one good answer (sorted, without duplicates). Returns true when
 * the membership changed. */
static bool apply(disc_pool *p, found *f, size_t nf)
{
    char added[512] = "", removed[512] = "", reweighted[512] = "";
    size_t limit = p->n * p->max_ejected_pct / 100;
    if (limit == 0 && p->max_ejected_pct > 0)
        limit = 1;
    member *next = calloc(p->n + nf + 1, sizeof(*next));
    if (next == NULL)
        return false;
    size_t nn = 0, removals = 0, i = 0, j = 0;
    bool changed = false;
    /* Merge the sorted member list with the sorted answer. */
    while (i < p->n || j < nf) {
        int c = i == p->n ? 1 : j == nf ? -1 : strcmp(p->members[i].key, f[j].key);
        if (c == 0) { /* still there */
            member m = p->members[i++];
            m.missing = 0;
            char *line = line_for(f[j].key, f[j].weight);
            if (line && strcmp(line, m.line) != 0) {
                free(m.line);
                m.line = line;
                append_key(reweighted, sizeof(reweighted), m.key);
                changed = true;
            } else {
                free(line);
            }
            next[nn++] = m;
            j++;
        } else if (c < 0) { /* missing from this answer */
            member m = p->members[i++];
            m.missing++;
            bool gone = p->replace_all || m.missing >= MISSING_ANSWERS_TO_REMOVE;
            if (gone && (p->replace_all || removals < limit)) {
                append_key(removed, sizeof(removed), m.key);
                free(m.key);
                free(m.line);
                removals++;
                changed = true;
                continue;
            }
            next[nn++] = m;
        } else { /* new */
            member m = {strdup(f[j].key), line_for(f[j].key, f[j].weight), 0};
            j++;
            if (m.key == NULL || m.line == NULL) {
                free(m.key);
                free(m.line);
                continue;
            }
            append_key(added, sizeof(added), m.key);
            next[nn++] = m;
            changed = true;
        }
    }
    free(p->members);
    p->members = next;
    p->n = nn;
    p->replace_all = false;
    if (!rebuild_lines(p))
        mr_log_error("pool %s: out of memory keeping its DNS membership", p->pool);
    if (changed) {
        p->changes++;
        mr_log_info("pool %s: DNS membership from %s %s changed: %zu servers; added [%s], removed [%s]%s%s%s",
                    p->pool, kind_name(p->kind), p->name, p->n, added, removed,
                    reweighted[0] ? ", new weight [" : "", reweighted, reweighted[0] ? "]" : "");
    }
    return changed;
}

static void lookup_failed(disc_pool *p, const char *why)
{
    p->failures++;
    snprintf(p->last_error, sizeof(p->last_error), "%s", why);
    if (!p->failing)
        mr_log_warn("pool %s: DNS lookup of %s %s failed (%s): keeping its %zu servers", p->pool,
                    kind_name(p->kind), p->name, why, p->n);
    p->failing = true;
}

static void lookup_ok(disc_pool *p, found *f, size_t nf)
{
    if (p->failing)
        mr_log_info("pool %s: DNS lookup of %s %s answers again (%zu records)", p->pool, kind_name(p->kind),
                    p->name, nf);
    p->failing = false;
    p->last_error[0] = '\0';
    p->last_answer_ms = wall_ms();
    qsort(f, nf, sizeof(*f), found_order);
    size_t u = 0; /* drop duplicates (the same target twice) */
    for (size_t i = 0; i < nf; i++)
        if (u == 0 || strcmp(f[u - 1].key, f[i].key) != 0)
            f[u++] = f[i];
    if (apply(p, f, u))
        p->notify = true;
}

static void ended(disc_pool *p)
{
    p->q = NULL;
    p->answered = true;
}

static void srv_answer_locked(disc_pool *p, const mr_dns_srv_result *r);
static void dns_answer_locked(disc_pool *p, const mr_dns_host_result *r);

/* The answer is applied under the lock; the membership change callback
 * (which builds a generation) runs after it is released. */
static void srv_answer(void *ctx, const mr_dns_srv_result *r)
{
    disc_pool *p = ctx;
    mr_discovery *d = p->d;
    pthread_mutex_lock(&d->lock);
    p->notify = false;
    srv_answer_locked(p, r);
    bool notify = p->notify;
    pthread_mutex_unlock(&d->lock);
    if (notify)
        d->changed(d->ctx, p->pool);
}

static void dns_answer(void *ctx, const mr_dns_host_result *r)
{
    disc_pool *p = ctx;
    mr_discovery *d = p->d;
    pthread_mutex_lock(&d->lock);
    p->notify = false;
    dns_answer_locked(p, r);
    bool notify = p->notify;
    pthread_mutex_unlock(&d->lock);
    if (notify)
        d->changed(d->ctx, p->pool);
}

static void srv_answer_locked(disc_pool *p, const mr_dns_srv_result *r)
{
    ended(p);
    if (r->status != 0 || r->ntargets == 0) {
        lookup_failed(p, r->status ? mr_dns_strerror(r->status) : "no records");
        return;
    }
    found *f = calloc(r->ntargets, sizeof(*f));
    if (f == NULL) {
        lookup_failed(p, "out of memory");
        return;
    }
    size_t nf = 0;
    for (size_t i = 0; i < r->ntargets; i++) {
        const mr_dns_srv_target *t = &r->targets[i];
        if (strlen(t->target) > 253 || t->port == 0)
            continue;
        snprintf(f[nf].key, sizeof(f[nf].key), "%s:%u", t->target, t->port);
        f[nf++].weight = t->weight ? t->weight : 1;
    }
    if (nf == 0)
        lookup_failed(p, "no usable records");
    else
        lookup_ok(p, f, nf);
    free(f);
}

static void dns_answer_locked(disc_pool *p, const mr_dns_host_result *r)
{
    ended(p);
    if (r->status != 0 || r->naddrs == 0) {
        lookup_failed(p, r->status ? mr_dns_strerror(r->status) : "no records");
        return;
    }
    found *f = calloc(r->naddrs, sizeof(*f));
    if (f == NULL) {
        lookup_failed(p, "out of memory");
        return;
    }
    size_t nf = 0;
    for (size_t i = 0; i < r->naddrs; i++) {
        char ip[INET6_ADDRSTRLEN];
        const struct sockaddr_storage *ss = &r->addrs[i].sa;
        if (ss->ss_family == AF_INET &&
            inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, ip, sizeof(ip)))
            snprintf(f[nf].key, sizeof(f[nf].key), "%s:%u", ip, p->port);
        else if (ss->ss_family == AF_INET6 &&
                 inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, ip, sizeof(ip)))
            snprintf(f[nf].key, sizeof(f[nf].key), "[%s]:%u", ip, p->port);
        else
            continue;
        f[nf++].weight = 1;
    }
    lookup_ok(p, f, nf);
    free(f);
}

static void lookup(disc_pool *p)
{
    if (p->q)
        return; /* the last one has not answered yet */
    p->lookups++;
    p->q = p->kind == MR_SERVERS_SRV ? mr_dns_srv(p->d->dns, p->name, srv_answer, p)
                                     : mr_dns_resolve(p->d->dns, p->name, p->port, AF_UNSPEC, dns_answer, p);
    if (p->q == NULL) {
        ended(p);
        lookup_failed(p, "out of memory");
    }
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    disc_pool *p = t->data;
    mr_discovery *d = p->d;
    pthread_mutex_lock(&d->lock);
    lookup(p);
    pthread_mutex_unlock(&d->lock);
}

mr_discovery *mr_discovery_new(struct ev_loop *loop, mr_dns *dns, mr_discovery_changed_fn changed, void *ctx)
{
    mr_discovery *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    pthread_mutex_init(&d->lock, NULL);
    d->loop = loop;
    d->dns = dns;
    d->changed = changed;
    d->ctx = ctx;
    return d;
}

void mr_discovery_free(mr_discovery *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->npools; i++)
        pool_free(d->pools[i]);
    free(d->pools);
    free(d->members);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

static disc_pool *find_pool(mr_discovery *d, const char *name)
{
    for (size_t i = 0; i < d->npools; i++)
        if (strcmp(d->pools[i]->pool, name) == 0)
            return d->pools[i];
    return NULL;
}

static void start_timer(disc_pool *p, double first)
{
    ev_timer_stop(p->d->loop, &p->timer);
    ev_timer_set(&p->timer, first, p->refresh_ms / 1000.0);
    ev_timer_start(p->d->loop, &p->timer);
}

void mr_discovery_configure(mr_discovery *d, const mr_config *cfg)
{
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->npools; i++)
        d->pools[i]->keep = false;
    for (size_t i = 0; i < cfg->npools; i++) {
        const mr_pool_conf *pc = &cfg->pools[i];
        if (pc->discovery == MR_SERVERS_STATIC)
            continue;
        disc_pool *p = find_pool(d, pc->name);
        if (p == NULL) {
            disc_pool **grown = realloc(d->pools, (d->npools + 1) * sizeof(*grown));
            p = calloc(1, sizeof(*p));
            if (grown)
                d->pools = grown;
            if (!grown || !p || !(p->pool = strdup(pc->name)) || !(p->name = strdup(pc->discovery_name))) {
                mr_log_error("pool %s: out of memory starting its DNS discovery", pc->name);
                if (p) {
                    free(p->pool);
                    free(p);
                }
                continue;
            }
            p->d = d;
            p->kind = pc->discovery;
            p->port = pc->discovery_port;
            ev_init(&p->timer, timer_cb);
            p->timer.data = p;
            d->pools[d->npools++] = p;
        } else if (p->kind != pc->discovery || p->port != pc->discovery_port ||
                   strcmp(p->name, pc->discovery_name) != 0) {
            /* Another name: its first good answer replaces the members. */
            char *name = strdup(pc->discovery_name);
            if (name) {
                free(p->name);
                p->name = name;
            }
            p->kind = pc->discovery;
            p->port = pc->discovery_port;
            p->replace_all = true;
            p->answered = false;
            mr_dns_cancel(p->q);
            p->q = NULL;
            p->refresh_ms = 0; /* restart the timer below */
        }
        p->keep = true;
        p->max_ejected_pct = pc->max_ejected_pct;
        if (p->refresh_ms != pc->dns_refresh_ms) {
            bool first = p->refresh_ms == 0;
            p->refresh_ms = pc->dns_refresh_ms;
            start_timer(p, first ? 0 : p->refresh_ms / 1000.0);
        }
    }
    size_t kept = 0;
    for (size_t i = 0; i < d->npools; i++) {
        if (d->pools[i]->keep)
            d->pools[kept++] = d->pools[i];
        else
            pool_free(d->pools[i]);
    }
    d->npools = kept;
    pthread_mutex_unlock(&d->lock);
}

bool mr_discovery_settled(const mr_discovery *d)
{
    for (size_t i = 0; i < d->npools; i++)
        if (!d->pools[i]->answered)
            return false;
    return true;
}

const mr_pool_members *mr_discovery_members(const mr_discovery *d, size_t *n)
{
    mr_discovery *m = (mr_discovery *)d; /* the snapshot is a cache */
    free(m->members);
    m->members = d->npools ? calloc(d->npools, sizeof(*m->members)) : NULL;
    *n = m->members ? d->npools : 0;
    for (size_t i = 0; i < *n; i++) {
        m->members[i].pool = d->pools[i]->pool;
        m->members[i].servers = d->pools[i]->lines;
        m->members[i].nservers = d->pools[i]->lines ? d->pools[i]->n : 0;
    }
    return m->members;
}

size_t mr_discovery_stats(const mr_discovery *d, mr_discovery_pool_stats *out, size_t cap)
{
    mr_discovery *m = (mr_discovery *)d;
    pthread_mutex_lock(&m->lock);
    size_t n = 0;
    for (size_t i = 0; i < d->npools && n < cap; i++, n++) {
        const disc_pool *p = d->pools[i];
        mr_discovery_pool_stats *o = &out[n];
        snprintf(o->pool, sizeof(o->pool), "%s", p->pool);
        snprintf(o->name, sizeof(o->name), "%s", p->name);
        o->kind = kind_name(p->kind);
        o->lookups = p->lookups;
        o->failures = p->failures;
        o->changes = p->changes;
        o->members = p->n;
        o->last_answer_ms = p->last_answer_ms;
        snprintf(o->last_error, sizeof(o->last_error), "%s", p->last_error);
    }
    pthread_mutex_unlock(&m->lock);
    return n;
}
