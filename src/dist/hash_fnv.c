/* hash_fnv.c: the FNV-1 and FNV-1a family as twemproxy and libmemcached
 * compute them.
 *
 * Two quirks are kept on purpose, because placement must match theirs:
 * - each byte is widened as a signed char (x86), so bytes >= 0x80 are
 *   sign-extended before the xor;
 * - the "_64" variants keep only the low 32 bits. The low 32 bits of a
 *   64-bit FNV step depend only on the low 32 bits of the state, and the
 *   64-bit prime 0x100000001b3 is 0x1b3 mod 2^32, so a 32-bit state seeded
 *   with the low half of the 64-bit offset basis gives the same result.
 */
#include "memrelay/hash.h"

#define FNV_64_INIT_LOW 0x84222325u /* low half of 0xcbf29ce484222325 */
#define FNV_64_PRIME_LOW 0x1b3u     /* 0x100000001b3 mod 2^32 */
#define FNV_32_INIT 0x811c9dc5u
#define FNV_32_PRIME 0x01000193u

/* The byte as x86 builds of the reference code see it: signed, widened. */
static inline uint32_t sbyte(char c)
{
    return (uint32_t)(int32_t)(signed char)c;
}

static uint32_t fnv1(uint32_t h, uint32_t prime, const char *key, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h *= prime;
        h ^= sbyte(key[i]);
    }
    return h;
}

static uint32_t fnv1a(uint32_t h, uint32_t prime, const char *key, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= sbyte(key[i]);
        h *= prime;
    }
    return h;
}

uint32_t hash_fnv1_64(const char *key, size_t len)
{
    return fnv1(FNV_64_INIT_LOW, FNV_64_PRIME_LOW, key, len);
}

uint32_t hash_fnv1a_64(const char *key, size_t len)
{
    return fnv1a(FNV_64_INIT_LOW, FNV_64_PRIME_LOW, key, len);
}

uint32_t hash_fnv1_32(const char *key, size_t len)
{
    return fnv1(FNV_32_INIT, FNV_32_PRIME, key, len);
}

uint32_t hash_fnv1a_32(const char *key, size_t len)
{
    return fnv1a(FNV_32_INIT, FNV_32_PRIME, key, len);
}
