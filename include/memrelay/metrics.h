/* Layer: ops (src/ops/; may use base, dist, config, protocol, net, cluster, core, proxy). */
/* metrics.h: memrelay's counters in the Prometheus text exposition format
 * (version 0.0.4), as served by GET /metrics (admin_http.h).
 *
 * Everything is read with relaxed atomic loads from the same counters
 * `stats`, `stats pools` and `stats servers` show, so totals may lag by a
 * request or two; counters are never reset (`stats reset` does not touch
 * them). Each family is one row of a table in metrics.c;
 * docs/operations.md lists them all.
 */
#ifndef MEMRELAY_METRICS_H
#define MEMRELAY_METRICS_H

#include <stddef.h>

#include "memrelay/admin_http.h"

/* Most bytes one exposition may take; beyond it rendering fails. */
#define MR_METRICS_MAX_BYTES (16u * 1024u * 1024u)

/* The whole exposition for `view`, NUL-terminated, in a malloc'd buffer
 * (*len bytes without the NUL); NULL when out of memory or too large. */
char *mr_metrics_render(const mr_admin_view *view, size_t *len);

#endif
