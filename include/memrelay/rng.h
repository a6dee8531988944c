/* Layer: base (src/base/; may use no other layer). */
/* rng.h: the cheap per-worker random numbers of the `random` distribution
 * (xorshift32: no lock, no shared state; not for anything secret).
 */
#ifndef MEMRELAY_RNG_H
#define MEMRELAY_RNG_H

#include <stdint.h>

/* The next number from *state (never 0; start it non-zero). */
static inline uint32_t mr_rng_next(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

#endif
