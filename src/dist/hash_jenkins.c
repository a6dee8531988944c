/* hash_jenkins.c: Bob Jenkins' lookup3 "hashlittle" with the initial value
 * 13 that twemproxy and libmemcached pass. Bytes are taken unsigned and
 * words little-endian, which is what the reference code's word-at-a-time
 * paths produce on x86. */
#include "memrelay/hash.h"

#define JENKINS_INITVAL 13u

static inline uint32_t rot(uint32_t x, unsigned k)
{
    return (x << k) | (x >> (32 - k));
}

/* clang-format off */
/* Reversible mixing of three words, between 12-byte blocks. */
static inline void mix(uint32_t *a, uint32_t *b, uint32_t *c)
{
    *a -= *c; *a ^= rot(*c, 4);  *c += *b;
    *b -= *a; *b ^= rot(*a, 6);  *a += *c;
    *c -= *b; *c ^= rot(*b, 8);  *b += *a;
    *a -= *c; *a ^= rot(*c, 16); *c += *b;
    *b -= *a; *b ^= rot(*a, 19); *a += *c;
    *c -= *b; *c ^= rot(*b, 4);  *b += *a;
}

/* Final avalanche of the last block into c. */
static inline void final(uint32_t *a, uint32_t *b, uint32_t *c)
{
    *c ^= *b; *c -= rot(*b, 14);
    *a ^= *c; *a -= rot(*c, 11);
    *b ^= *a; *b -= rot(*a, 25);
    *c ^= *b; *c -= rot(*b, 16);
    *a ^= *c; *a -= rot(*c, 4);
    *b ^= *a; *b -= rot(*a, 14);
    *c ^= *b; *c -= rot(*b, 24);
}
/* clang-format on */

/* Up to four bytes as a little-endian word (missing bytes are zero). */
static inline uint32_t le_word(const unsigned char *p, size_t n)
{
    uint32_t w = 0;
    for (size_t i = n > 4 ? 4 : n; i > 0; i--)
        w = w << 8 | p[i - 1];
    return w;
}

uint32_t hash_jenkins(const char *key, size_t len)
{
    const unsigned char *p = (const unsigned char *)key;
    uint32_t a, b, c;
    a = b = c = 0xdeadbeefu + (uint32_t)len + JENKINS_INITVAL;

    /* Every block but the last goes through mix(); the last (1..12 bytes)
     * goes through final(). An empty key skips final() altogether. */
    for (; len > 12; len -= 12, p += 12) {
        a += le_word(p, 4);
        b += le_word(p + 4, 4);
        c += le_word(p + 8, 4);
        mix(&a, &b, &c);
    }
    if (len == 0)
        return c;

    a += le_word(p, len);
    if (len > 4)
        b += le_word(p + 4, len - 4);
    if (len > 8)
        c += le_word(p + 8, len - 8);
    final(&a, &b, &c);
    return c;
}
