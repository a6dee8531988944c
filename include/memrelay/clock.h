/* Layer: base (src/base/; may use no other layer). */
/* clock.h: the wall clock in milliseconds, as every module that shows or
 * compares wall-clock times reads it.
 *
 * Other clocks are read where they are used, on purpose: log.c's line
 * stamps (CLOCK_REALTIME) and its cheap CLOCK_MONOTONIC_COARSE, tls.c's
 * once-a-second log limiter (CLOCK_MONOTONIC), metrics.c's process start
 * (seconds), stats_reply.c's `time` and `uptime` (CLOCK_REALTIME), and the
 * workers' libev loop time for every timeout on the data path.
 */
#ifndef MEMRELAY_CLOCK_H
#define MEMRELAY_CLOCK_H

#include <stdint.h>

/* Milliseconds since the epoch (gettimeofday). */
int64_t mr_wall_ms(void);

#endif
