/* hash_misc.c: one_at_a_time, md5, hsieh and murmur, as twemproxy and
 * libmemcached compute them on x86 (where plain char is signed). */
#include "memrelay/hash.h"
#include "memrelay/md5.h"

/* Bob Jenkins' one-at-a-time. Bytes are widened as signed chars. */
uint32_t hash_one_at_a_time(const char *key, size_t len)
{
    uint32_t h = 0;
    for (size_t i = 0; i < len; i++) {
        h += (uint32_t)(int32_t)(signed char)key[i];
        h += h << 10;
        h ^= h >> 6;
    }
    h += h << 3;
    h ^= h >> 11;
    h += h << 15;
    return h;
}

/* The first four digest bytes as a little-endian word. */
uint32_t hash_md5(const char *key, size_t len)
{
    uint8_t d[16];
    mr_md5(key, len, d);
    return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}

static inline uint32_t le16(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

/* Paul Hsieh's SuperFastHash, with the variations of the reference code:
 * the state starts at 0 (not at the length) and the odd third byte of a
 * 3-byte tail is widened as a signed char. */
uint32_t hash_hsieh(const char *key, size_t len)
{
    const unsigned char *p = (const unsigned char *)key;
    uint32_t h = 0;
    if (len == 0)
        return 0;

    for (size_t blocks = len / 4; blocks > 0; blocks--, p += 4) {
        h += le16(p);
        uint32_t tmp = (le16(p + 2) << 11) ^ h;
        h = (h << 16) ^ tmp;
        h += h >> 11;
    }

    switch (len & 3) {
    case 3:
        h += le16(p);
        h ^= h << 16;
        h ^= (uint32_t)(int32_t)(signed char)p[2] << 18;
        h += h >> 11;
        break;
    case 2:
        h += le16(p);
        h ^= h << 11;
        h += h >> 17;
        break;
    case 1:
        h += p[0];
        h ^= h << 10;
        h += h >> 1;
        break;
    default:
        break;
    }

    /* Final avalanche. */
    h ^= h << 3;
    h += h >> 5;
    h ^= h << 4;
    h += h >> 17;
    h ^= h << 25;
    h += h >> 6;
    return h;
}

/* MurmurHash2 (32-bit) with libmemcached's seed, 0xdeadbeef * length.
 * Blocks are read little-endian, as on x86; bytes are unsigned here. */
uint32_t hash_murmur(const char *key, size_t len)
{
    const uint32_t m = 0x5bd1e995;
    const unsigned char *p = (const unsigned char *)key;
    uint32_t h = (0xdeadbeefu * (uint32_t)len) ^ (uint32_t)len;

    for (; len >= 4; len -= 4, p += 4) {
        uint32_t k = le16(p) | le16(p + 2) << 16;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }

    switch (len) {
    case 3:
        h ^= (uint32_t)p[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)p[1] << 8;
        /* fall through */
    case 1:
        h ^= p[0];
        h *= m;
        break;
    default:
        break;
    }

    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}
