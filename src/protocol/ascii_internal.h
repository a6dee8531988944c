/* ascii_internal.h: what the parser's files (ascii.c, ascii_meta.c,
 * ascii_admin.c) share: one tokenized line, memcached's number rules and the
 * exact reply texts. Not part of any public header.
 */
#ifndef MEMRELAY_ASCII_INTERNAL_H
#define MEMRELAY_ASCII_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "memrelay/ascii.h"

/* memcached looks at no more than 24 tokens of a line (its MAX_TOKENS); no
 * rule needs more, but the count goes on so that "too many" stays too many. */
#define MR_TOK_MAX 24

/* One token: buf[off .. off+len). */
typedef struct {
    uint32_t off, len;
} mr_tok;

/* A command line split on spaces, as memcached's tokenizer splits it (only
 * ' ' separates; tabs and '\r' belong to tokens). */
typedef struct {
    const char *buf; /* the parser's buffer; offsets are relative to it */
    uint32_t end;    /* end of the line's text (mr_request_head.end_off) */
    mr_tok tok[MR_TOK_MAX];
    uint32_t ntok; /* tokens on the line, command included (all of them, not only those stored) */
} mr_line;

/* Replies shared by several files. */
#define MR_R_ERROR "ERROR\r\n"
#define MR_R_BAD_FORMAT "CLIENT_ERROR bad command line format\r\n"
#define MR_R_TOO_LARGE "SERVER_ERROR object too large for cache\r\n"
#define MR_R_BAD_DATA "CLIENT_ERROR bad data chunk\r\n"

/* Does token `t` read exactly `s`? */
bool mr_tok_is(const mr_line *l, uint32_t t, const char *s);

/* memcached's number rules (glibc strtoll/strtoull behind its safe_strto*
 * checks): optional leading white space, an optional sign, at least one
 * decimal digit, then the token's end or a white-space byte (anything may
 * follow that). Out of range is an error. */
bool mr_num_i64(const char *p, uint32_t n, int64_t *out);
/* Unsigned: a '-' is allowed only when the negated value, read as signed,
 * is not negative ("-1" fails, "-18446744073709551615" reads 1). */
bool mr_num_u64(const char *p, uint32_t n, uint64_t *out);
/* A value length (set's <bytes>, ms's <datalen>): read signed, truncated
 * to 32 bits as memcached stores it, and valid in 0 .. INT_MAX - 2. */
bool mr_num_vlen(const char *p, uint32_t n, uint32_t *out);

/* Would memcached refuse this item as too large for an item_size_max of
 * `max`? Its item header on 64-bit builds with CAS: 48 bytes, + 8 for the
 * CAS, + 4 when the flags are not 0, + the key and its NUL, + the value and
 * its "\r\n" (measured: 60 bytes of overhead for a 1-byte key, flags 0). */
bool mr_item_too_large(uint32_t nkey, uint32_t flags, uint32_t vlen, uint32_t max);

/* Fill `h` for an error and return MR_PARSE_ERROR. */
mr_parse_status mr_fail(mr_request_head *h, const char *reply, mr_after_error after);

/* The meta commands mg ms md ma me (ascii_meta.c). */
mr_parse_status mr_parse_meta(const mr_line *l, mr_cmd cmd, uint32_t item_size_max, mr_request_head *h);

/* The MR_CLASS_UNSUPPORTED admin commands (ascii_admin.c): always an error. */
mr_parse_status mr_parse_admin(const mr_line *l, mr_cmd cmd, mr_request_head *h);

#endif
