/* Layer: base (src/base/; may use no other layer). */
/* limits.h: the limits several layers share, each defined once.
 *
 * memcached's own limits come first (as measured on 1.6.18), then
 * memrelay's. Limits one module alone needs stay in that module.
 */
#ifndef MEMRELAY_LIMITS_H
#define MEMRELAY_LIMITS_H

/* memcached's longest key (meta: the key as written, base64 or not). It
 * bounds parsed keys, route prefixes, `stats route <key>` and the decode
 * buffers of base64 keys. */
#define MR_KEY_MAX 250u

/* Most copies of a key a pool may keep (replicas + replicate_to). */
#define MR_MAX_REPLICAS 16

#endif
