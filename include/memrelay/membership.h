/* membership.h: the main thread's DNS wiring. One resolver (dns.h) on the
 * main loop, the discovery of pools that find their servers in DNS
 * (discovery.h), and the reloader (reload.h), which builds every
 * generation with the members discovery found and switches to a new one
 * when they change. */
#ifndef MEMRELAY_MEMBERSHIP_H
#define MEMRELAY_MEMBERSHIP_H

#include <ev.h>

#include "memrelay/discovery.h"
#include "memrelay/dns.h"
#include "memrelay/reload.h"

typedef struct mr_membership mr_membership;

/* Before the workers start, after mr_reload_init: make the resolver from
 * the config's dns_servers/dns_timeout, hook discovery into `r`, and when a
 * pool discovers its servers, wait (running `loop`, at most two lookup
 * timeouts) for the first answers and rebuild the generation with them.
 * NULL (logged) only when the resolver cannot be made. */
mr_membership *mr_membership_start(mr_reloader *r, struct ev_loop *loop);
void mr_membership_free(mr_membership *m);

mr_dns *mr_membership_dns(const mr_membership *m);
const mr_discovery *mr_membership_discovery(const mr_membership *m);

#endif
