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

/* registry.c: free every server entry and pool slot name. */
void mr_health_registry_free(mr_health *h);

#endif
