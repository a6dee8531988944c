/* binary_internal.h: what the binary protocol's files (binary.c,
 * binary_meta.c, binary_reply.c, binary_sasl.c) share: the big-endian
 * helpers. Not part of any public header.
 */
#ifndef MEMRELAY_BINARY_INTERNAL_H
#define MEMRELAY_BINARY_INTERNAL_H

#include <stdint.h>

#include "memrelay/binary.h"

static inline uint16_t mr_be16(const void *p)
{
    const uint8_t *b = p;
    return (uint16_t)(b[0] << 8 | b[1]);
}

static inline uint32_t mr_be32(const void *p)
{
    const uint8_t *b = p;
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static inline uint64_t mr_be64(const void *p)
{
    const uint8_t *b = p;
    return (uint64_t)mr_be32(b) << 32 | mr_be32(b + 4);
}

static inline void mr_put_be16(void *p, uint16_t v)
{
    uint8_t *b = p;
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
}

static inline void mr_put_be32(void *p, uint32_t v)
{
    uint8_t *b = p;
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

static inline void mr_put_be64(void *p, uint64_t v)
{
    uint8_t *b = p;
    mr_put_be32(b, (uint32_t)(v >> 32));
    mr_put_be32(b + 4, (uint32_t)v);
}

#endif
