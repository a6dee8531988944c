/* hash.c: the hash table built from MR_HASHES, name lookup and hash tags.
 * The functions themselves live in src/dist/hash_*.c, one family per file. */
#include "memrelay/hash.h"

#include <string.h>

static const struct {
    const char *name;
    mr_hash_fn fn;
} hashes[MR_HASH_COUNT] = {
#define MR_HASH_ROW(e, name, fn) [MR_HASH_##e] = {name, fn},
    MR_HASHES(MR_HASH_ROW)
#undef MR_HASH_ROW
};

mr_hash_fn mr_hash_function(mr_hash_kind kind)
{
    if ((unsigned)kind >= MR_HASH_COUNT)
        return NULL;
    return hashes[kind].fn;
}

int mr_hash_from_name(const char *name, mr_hash_kind *out)
{
    for (int i = 0; i < MR_HASH_COUNT; i++) {
        if (strcmp(hashes[i].name, name) == 0) {
            *out = (mr_hash_kind)i;
            return 0;
        }
    }
    return -1;
}

const char *mr_hash_name(mr_hash_kind kind)
{
    if ((unsigned)kind >= MR_HASH_COUNT)
        return NULL;
    return hashes[kind].name;
}

/* As twemproxy: the first open char, then the first close char after it.
 * An empty span ("{}") means the whole key is hashed; the search does not
 * go on to a later pair. */
void mr_hash_tag_span(const char *key, size_t len, const char tag[2], const char **out, size_t *out_len)
{
    *out = key;
    *out_len = len;
    if (tag == NULL || len == 0)
        return;

    const char *open = memchr(key, tag[0], len);
    if (open == NULL)
        return;
    const char *start = open + 1;
    const char *close = memchr(start, tag[1], (size_t)(key + len - start));
    if (close == NULL || close == start)
        return;
    *out = start;
    *out_len = (size_t)(close - start);
}
