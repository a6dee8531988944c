/* fuzz_reply_parser.c: libFuzzer target for the backend reply parser.
 *
 * The input is a backend's byte stream. It is walked element by element
 * with mr_reply_next, as backend.c does, under its default bounds (2 MiB
 * values for the default 1 MiB items, 8 KiB lines) and under tight ones
 * (64-byte values, 32-byte lines), and each element is checked:
 *   - a complete element fits in the buffer, starts with its line, which
 *     ends in "\r\n" and holds no other "\n"; VALUE/VA data ends in "\r\n"
 *     and its length is the one announced; a VALUE key is a non-empty
 *     token inside the line;
 *   - NEED_MORE says how much it needs only when that is more than it has;
 *   - every prefix of a complete element is NEED_MORE, and the element
 *     alone parses the same.
 * Any violation aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memrelay/reply.h"

#define CHECK(cond)                                                                                     \
    do {                                                                                                \
        if (!(cond)) {                                                                                  \
            fprintf(stderr, "fuzz_reply_parser: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                                    \
        }                                                                                               \
    } while (0)

#define ALL_PREFIXES_MAX 256u

/* Parse from a copy that ends where `scratch` (cap >= len bytes, from
 * malloc) ends, so that ASan sees any read past the end. */
static mr_reply_kind next_copy(const char *buf, size_t len, char *scratch, size_t cap, uint32_t max_value,
                               uint32_t max_line, mr_reply_elem *e)
{
    char *copy = scratch + (cap - len);
    memmove(copy, buf, len);
    return mr_reply_next(copy, len, max_value, max_line, e);
}

/* A number in buf[0..n) that parse_u32 would accept, for cross-checking. */
static uint32_t announced_bytes(const char *line, uint32_t line_len, int field)
{
    const char *p = line, *end = line + line_len - 2;
    for (int f = 0; f < field; f++) {
        p = memchr(p, ' ', (size_t)(end - p));
        CHECK(p != NULL);
        p++;
    }
    uint64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9')
        v = v * 10 + (uint64_t)(*p++ - '0');
    CHECK(v <= UINT32_MAX);
    return (uint32_t)v;
}

static void check_element(const char *buf, size_t len, const mr_reply_elem *e, uint32_t max_value,
                          uint32_t max_line)
{
    CHECK(e->len >= 2 && e->len <= len);
    CHECK(e->line_len >= 2 && e->line_len <= e->len && e->line_len <= max_line);
    CHECK(buf[e->line_len - 2] == '\r' && buf[e->line_len - 1] == '\n');
    CHECK(memchr(buf, '\n', e->line_len - 1) == NULL);
    CHECK(e->need == 0);
    switch (e->kind) {
    case MR_REPLY_VALUE:
        CHECK(memcmp(buf, "VALUE ", 6) == 0);
        CHECK(e->key_len >= 1 && e->key_off == 6);
        CHECK((uint64_t)e->key_off + e->key_len <= e->line_len - 2);
        CHECK(memchr(buf + e->key_off, ' ', e->key_len) == NULL);
        CHECK(e->len - e->line_len - 2 == announced_bytes(buf, e->line_len, 3));
        CHECK(e->len - e->line_len - 2 <= max_value);
        CHECK(buf[e->len - 2] == '\r' && buf[e->len - 1] == '\n');
        break;
    case MR_REPLY_VA:
        CHECK(memcmp(buf, "VA ", 3) == 0);
        CHECK(e->len - e->line_len - 2 == announced_bytes(buf, e->line_len, 1));
        CHECK(e->len - e->line_len - 2 <= max_value);
        CHECK(buf[e->len - 2] == '\r' && buf[e->len - 1] == '\n');
        break;
    case MR_REPLY_END:
        CHECK(e->len == 5 && memcmp(buf, "END\r\n", 5) == 0);
        break;
    case MR_REPLY_LINE:
        CHECK(e->len == e->line_len);
        (void)mr_reply_is_error(buf, e->line_len);
        break;
    default:
        CHECK(0);
    }

    /* The element alone parses the same; its prefixes are incomplete. */
    char *scratch = malloc(e->len);
    CHECK(scratch != NULL);
    mr_reply_elem again;
    CHECK(next_copy(buf, e->len, scratch, e->len, max_value, max_line, &again) == e->kind);
    CHECK(again.len == e->len && again.line_len == e->line_len);
    CHECK(again.key_off == e->key_off && again.key_len == e->key_len);
    size_t step = e->len <= ALL_PREFIXES_MAX ? 1 : e->len / 64;
    for (size_t p = 0; p < e->len; p += step) {
        mr_reply_elem part;
        CHECK(next_copy(buf, p, scratch, e->len, max_value, max_line, &part) == MR_REPLY_NEED_MORE);
        CHECK(part.need == 0 || part.need == e->len);
        if (p >= e->line_len && e->kind != MR_REPLY_LINE && e->kind != MR_REPLY_END)
            CHECK(part.need == e->len);
    }
    free(scratch);
}

static void walk(const char *buf, size_t len, uint32_t max_value, uint32_t max_line)
{
    size_t off = 0;
    for (;;) {
        mr_reply_elem e;
        mr_reply_kind k = mr_reply_next(buf + off, len - off, max_value, max_line, &e);
        CHECK(k == e.kind);
        if (k == MR_REPLY_BAD)
            return;
        if (k == MR_REPLY_NEED_MORE) {
            CHECK(e.need == 0 || e.need > len - off);
            if (len - off < max_line)
                CHECK(e.need != 0 || memchr(buf + off, '\n', len - off) == NULL);
            return;
        }
        check_element(buf + off, len - off, &e, max_value, max_line);
        off += e.len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    walk(buf, size, 2u * 1024u * 1024u, 8192); /* backend.c's default bounds */
    walk(buf, size, 64, 32);
    return 0;
}
