/* health_internal.h: what the files of the health checker (health.c, the
 * state machine; registry.c; eject.c) call of each other. Nothing outside
 * them uses it.
 */
#ifndef MEMRELAY_HEALTH_INTERNAL_H
#define MEMRELAY_HEALTH_INTERNAL_H

#include "memrelay/health.h"

/* eject.c: rebuild pool `pool_index` of `r`'s live ring from the current
 * states (auto_eject_hosts); the replaced ring is freed after a grace. */
void mr_health_eject_update(mr_health *h, const mr_router *r, uint32_t pool_index);
/* eject.c: set up and stop the timer that frees replaced rings; free them. */
void mr_health_eject_start(mr_health *h);
void mr_health_eject_stop(mr_health *h);
void mr_health_eject_free(mr_health *h);

/* resolve.c: a server's lookup state is ready (its timer set up). */
void mr_health_resolve_init(mr_server_health *sh);
/* resolve.c: look the server's name up now (unless a lookup is in flight);
 * `then_probe`: start its probe when the answer is in (health.c,
 * mr_health_probe_connect), good or not. No resolver yet: nothing now. */
void mr_health_resolve(mr_server_health *sh, bool then_probe);
/* resolve.c: a server (again) in the config: make sure its name is looked
 * up now and then (its refresh timer runs). */
void mr_health_resolve_follow(mr_server_health *sh);
/* resolve.c: stop the server's lookups and refresh timer. */
void mr_health_resolve_stop(mr_server_health *sh);
/* health.c: the probe itself, to the server's current address. */
void mr_health_probe_connect(mr_server_health *sh);
/* health.c: its pool's settings in the current config, or NULL. */
const mr_pool_conf *mr_health_pool_conf(const mr_health *h, uint32_t server);

/* registry.c: free every server entry and pool slot name. */
void mr_health_registry_free(mr_health *h);

#endif
