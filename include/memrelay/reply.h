/* Layer: protocol (src/protocol/; may use base, dist, config). */
/* reply.h: the backend reply parser.
 *
 * A backend reply is a sequence of elements: VALUE items (a line and a data
 * block) ended by END for retrievals, or one line (possibly a meta VA line
 * with its data block) for everything else. The parser reads one element at
 * a time from the start of the buffer, so the caller can keep items of a
 * large multi-get reply as separate slices and never needs the whole reply
 * in one contiguous block.
 */
#ifndef MEMRELAY_REPLY_H
#define MEMRELAY_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum {
    MR_REPLY_NEED_MORE, /* the element is not complete yet */
    MR_REPLY_VALUE,     /* "VALUE key flags bytes [cas]\r\n" + data + "\r\n" */
    MR_REPLY_END,       /* "END\r\n" */
    MR_REPLY_VA,        /* meta "VA size flags*\r\n" + data + "\r\n" */
    MR_REPLY_LINE,      /* any other complete line (STORED, HD, EN, a number, an error ...) */
    MR_REPLY_BAD,       /* not a memcached reply: the connection is out of sync */
} mr_reply_kind;

typedef struct {
    mr_reply_kind kind;
    uint32_t len;              /* bytes of the whole element, line and data */
    uint32_t line_len;         /* bytes of its first line including "\r\n" */
    uint32_t key_off, key_len; /* VALUE: the key */
    uint32_t need;             /* NEED_MORE: total bytes needed when known (VALUE/VA), else 0 */
} mr_reply_elem;

/* Parse the element at the start of buf[0..len). `max_value` bounds the data
 * block a VALUE/VA may announce; `max_line` bounds a line (both BAD past it). */
mr_reply_kind mr_reply_next(const char *buf, size_t len, uint32_t max_value, uint32_t max_line,
                            mr_reply_elem *out);

/* Is this complete line one memcached could send as a reply (a known
 * keyword, or a number for incr/decr)? Anything else means the stream is
 * not memcached's. */
int mr_reply_line_known(const char *line, size_t len);

/* Is this complete line a memcached error (ERROR, CLIENT_ERROR, SERVER_ERROR)? */
int mr_reply_is_error(const char *line, size_t len);

/* Does a VALUE item (as mr_reply_next delimits it) carry this key? The key
 * starts after "VALUE " and ends at a space. The multi-get merge (emit.c)
 * and multi-get failover (replicate.c) must agree on this, so both use it. */
static inline bool mr_reply_value_has_key(const char *item, uint32_t len, const char *key, uint32_t klen)
{
    return len > 6 + klen && memcmp(item + 6, key, klen) == 0 && item[6 + klen] == ' ';
}

#endif
