/* Layer: dist (src/dist/; may use base). */
/* hash.h: 32-bit key hashes, bit-exact with twemproxy and libmemcached.
 *
 * One X-macro table is the single source for the enum, the config names
 * (twemproxy's spelling) and the functions. Adding a hash means adding a
 * row here and a function in src/dist/hash_*.c.
 */
#ifndef MEMRELAY_HASH_H
#define MEMRELAY_HASH_H

#include <stddef.h>
#include <stdint.h>

/* X(enum suffix, config name, function) */
#define MR_HASHES(X)                                      \
    X(ONE_AT_A_TIME, "one_at_a_time", hash_one_at_a_time) \
    X(MD5, "md5", hash_md5)                               \
    X(CRC16, "crc16", hash_crc16)                         \
    X(CRC32, "crc32", hash_crc32)                         \
    X(CRC32A, "crc32a", hash_crc32a)                      \
    X(FNV1_64, "fnv1_64", hash_fnv1_64)                   \
    X(FNV1A_64, "fnv1a_64", hash_fnv1a_64)                \
    X(FNV1_32, "fnv1_32", hash_fnv1_32)                   \
    X(FNV1A_32, "fnv1a_32", hash_fnv1a_32)                \
    X(HSIEH, "hsieh", hash_hsieh)                         \
    X(MURMUR, "murmur", hash_murmur)                      \
    X(JENKINS, "jenkins", hash_jenkins)

typedef enum {
#define MR_HASH_ENUM(e, name, fn) MR_HASH_##e,
    MR_HASHES(MR_HASH_ENUM)
#undef MR_HASH_ENUM
        MR_HASH_COUNT
} mr_hash_kind;

typedef uint32_t (*mr_hash_fn)(const char *key, size_t len);

#define MR_HASH_DECL(e, name, fn) uint32_t fn(const char *key, size_t len);
MR_HASHES(MR_HASH_DECL)
#undef MR_HASH_DECL

/* The function for a kind (never NULL for a valid kind). */
mr_hash_fn mr_hash_function(mr_hash_kind kind);

/* Config name -> kind. Returns 0 on success, -1 for an unknown name. */
int mr_hash_from_name(const char *name, mr_hash_kind *out);

/* Kind -> config name. */
const char *mr_hash_name(mr_hash_kind kind);

/* Hash `key` with `kind`. */
static inline uint32_t mr_hash(mr_hash_kind kind, const char *key, size_t len)
{
    return mr_hash_function(kind)(key, len);
}

/* twemproxy hash_tag: if `key` holds tag[0] and later tag[1] with a
 * non-empty span between them, returns that span; else the whole key. */
void mr_hash_tag_span(const char *key, size_t len, const char tag[2], const char **out, size_t *out_len);

#endif
