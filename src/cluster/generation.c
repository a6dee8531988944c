/* generation.c: freeing a configuration generation, and `stats config`. */
#include "memrelay/generation.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "memrelay/listener.h"
#include "memrelay/tls.h"

void mr_gen_free(mr_gen *gen)
{
    if (!gen)
        return;
    for (size_t i = 0; gen->listen_fds && i < gen->cfg->npools; i++)
        if (gen->listen_fds[i] >= 0)
            mr_listener_close(&gen->cfg->pools[i], gen->listen_fds[i]);
    for (size_t i = 0; gen->tls_listen_fds && i < gen->cfg->npools; i++)
        if (gen->tls_listen_fds[i] >= 0)
            mr_listener_close_at(&gen->cfg->pools[i].tls_listen, gen->tls_listen_fds[i]);
    free(gen->listen_fds);
    free(gen->tls_listen_fds);
    mr_tls_set_free(gen->tls);
    mr_router_free(gen->router);
    mr_config_free(gen->cfg);
    free(gen);
}

bool mr_gen_release(mr_gen *gen)
{
    if (!gen || __atomic_sub_fetch(&gen->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return false;
    mr_gen_free(gen);
    return true;
}

int mr_reload_status_stats(mr_reload_status *st, char *buf, size_t cap)
{
    pthread_mutex_lock(&st->lock);
    int n = snprintf(buf, cap,
                     "STAT config_file %s\r\n"
                     "STAT config_hash %s\r\n"
                     "STAT config_generation %" PRIu64 "\r\n"
                     "STAT config_loaded_at_ms %" PRId64 "\r\n"
                     "STAT reloads %" PRIu64 "\r\n"
                     "STAT reload_failures %" PRIu64 "\r\n"
                     "STAT last_reload_attempt_ms %" PRId64 "\r\n"
                     "STAT last_reload_failure_ms %" PRId64 "\r\n"
                     "STAT last_reload_error %s\r\n"
                     "END\r\n",
                     st->path, st->hash, st->seq, st->loaded_at_ms, st->reloads, st->failures, st->last_attempt_ms,
                     st->last_failure_ms, st->last_error[0] ? st->last_error : "none");
    pthread_mutex_unlock(&st->lock);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}
