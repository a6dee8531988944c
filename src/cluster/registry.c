/* registry.c: the servers of every configuration since start, by stable id.
 *
 * A server (its pool, address, connection count and TLS) gets the same id
 * in every configuration that has it, so a reload keeps its connections,
 * replay queue, health and counters. A host name's address is looked up
 * asynchronously (resolve.c), never here. Ids are never reused and their entries never move (fixed
 * chunks), so workers read them without locking. Pools get stable counter
 * slots the same way, by name. Main thread only, except reading.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health_internal.h"
#include "memrelay/log.h"

/* What makes two config entries the same server: its pool, its address, its
 * connection count and whether it speaks TLS (a change of any means new
 * connections). */
static char *identity_of(const mr_pool_conf *pc, const mr_server_conf *sc)
{
    char buf[1024];
    int n;
    if (sc->addr.is_unix)
        n = snprintf(buf, sizeof(buf), "%s\n%s\n%u", pc->name, sc->addr.host, pc->server_connections);
    else
        n = snprintf(buf, sizeof(buf), "%s\n%s:%u\n%u%s", pc->name, sc->addr.host, sc->addr.port,
                     pc->server_connections, pc->server_tls ? "\ntls" : "");
    return n > 0 && (size_t)n < sizeof(buf) ? strdup(buf) : NULL;
}

uint32_t mr_health_server_id(void *ctx, const mr_pool_conf *pc, const mr_server_conf *sc)
{
    mr_health *h = ctx;
    char *ident = identity_of(pc, sc);
    if (!ident)
        return UINT32_MAX;
    for (uint32_t id = 0; id < h->nids; id++) {
        if (strcmp(mr_health_server(h, id)->identity, ident) == 0) {
            free(ident);
            return id;
        }
    }
    uint32_t id = h->nids;
    if (id >= MR_MAX_SERVER_IDS) {
        mr_log_error("server %s: more than %u distinct servers since start; restart to reuse ids", sc->spec,
                     MR_MAX_SERVER_IDS);
        free(ident);
        return UINT32_MAX;
    }
    mr_sockaddr addr;
    int fixed = mr_net_resolve(sc, &addr);
    if (fixed < 0) {
        free(ident);
        return UINT32_MAX;
    }
    uint32_t chunk = id / MR_HEALTH_CHUNK;
    if (!h->chunks[chunk] && !(h->chunks[chunk] = calloc(MR_HEALTH_CHUNK, sizeof(mr_server_health)))) {
        free(ident);
        return UINT32_MAX;
    }
    mr_server_health *sh = mr_health_server(h, id);
    sh->name = strdup(sc->spec);
    sh->pool = strdup(pc->name);
    sh->host = fixed == 1 ? strdup(sc->addr.host) : NULL;
    if (!sh->name || !sh->pool || (fixed == 1 && !sh->host)) {
        free(sh->name);
        free(sh->pool);
        free(sh->host);
        sh->name = sh->pool = sh->host = NULL;
        free(ident);
        return UINT32_MAX;
    }
    sh->identity = ident;
    sh->addr = addr;
    sh->port = sc->addr.port;
    sh->source = (uint8_t)sc->source;
    pthread_mutex_init(&sh->addr_lock, NULL);
    sh->failure_limit = pc->server_failure_limit;
    sh->health = h;
    sh->id = id;
    mr_probe_init(&sh->probe, h->probe_ops);
    ev_init(&sh->timer, h->probe_timer_cb);
    sh->timer.data = sh;
    mr_health_resolve_init(sh);
    /* Published last: readers iterate ids below nids. */
    __atomic_store_n(&h->nids, id + 1, __ATOMIC_RELEASE);
    if (sh->host)
        mr_health_resolve(sh, false); /* with no resolver yet: when mr_health_set_resolver gives one */
    return id;
}

uint32_t mr_health_pool_slot(mr_health *h, const char *pool)
{
    for (uint32_t i = 0; i < h->npool_slots; i++)
        if (strcmp(h->pool_slots[i], pool) == 0)
            return i;
    if (h->npool_slots >= MR_MAX_POOL_SLOTS - 1 || !(h->pool_slots[h->npool_slots] = strdup(pool)))
        return MR_MAX_POOL_SLOTS - 1;
    return h->npool_slots++;
}

void mr_health_registry_free(mr_health *h)
{
    for (uint32_t i = 0; i < h->nids; i++) {
        free(mr_health_server(h, i)->identity);
        free(mr_health_server(h, i)->name);
        free(mr_health_server(h, i)->pool);
        free(mr_health_server(h, i)->host);
        pthread_mutex_destroy(&mr_health_server(h, i)->addr_lock);
    }
    for (uint32_t c = 0; c < MR_HEALTH_MAX_CHUNKS; c++)
        free(h->chunks[c]);
    for (uint32_t i = 0; i < h->npool_slots; i++)
        free(h->pool_slots[i]);
}
