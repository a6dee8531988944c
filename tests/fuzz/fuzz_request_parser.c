/* fuzz_request_parser.c: libFuzzer target for the client request parser.
 *
 * The input is a client's byte stream. It is parsed the way client.c does,
 * command after command, under two sets of bounds (the defaults, and tight
 * ones that make the size limits reachable), and every result is checked:
 *   - line_len is within the buffer; every offset lies inside the line;
 *   - a retrieval's keys, walked with mr_next_key, number nkeys and start
 *     with key_off/key_len;
 *   - mr_forward_line writes at most line_len + 2 bytes, ending in "\r\n",
 *     with no other "\n";
 *   - every prefix of an accepted line asks for more bytes (or, past
 *     memcached's peek window, closes), and the exact line parses the same;
 *   - a meta base64 key decodes within its bounds.
 * Any violation aborts, so libFuzzer reports it as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memrelay/ascii.h"

#define CHECK(cond)                                                                                       \
    do {                                                                                                  \
        if (!(cond)) {                                                                                    \
            fprintf(stderr, "fuzz_request_parser: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                                      \
        }                                                                                                 \
    } while (0)

/* Lines up to this long have every prefix checked; longer ones a sample. */
#define ALL_PREFIXES_MAX 256u

static bool ends_crlf(const char *s)
{
    size_t n = strlen(s);
    return n >= 2 && s[n - 2] == '\r' && s[n - 1] == '\n';
}

/* Parse buf[0..len) from a copy that ends where `scratch` (cap >= len bytes,
 * from malloc) ends, so that ASan sees any read past the end. */
static mr_parse_status parse_copy(const char *buf, size_t len, char *scratch, size_t cap, uint32_t item_max,
                                  uint32_t max_line, mr_request_head *h)
{
    char *copy = scratch + (cap - len);
    memmove(copy, buf, len);
    return mr_parse_request(copy, len, item_max, max_line, h);
}

static void check_prefix(const char *buf, size_t prefix, char *scratch, size_t cap, uint32_t item_max,
                         uint32_t max_line)
{
    mr_request_head p;
    mr_parse_status st = parse_copy(buf, prefix, scratch, cap, item_max, max_line, &p);
    /* Without its "\n" a line is incomplete; memcached (and so memrelay)
     * may give up on a long one, but only by closing the connection. */
    if (prefix <= MR_ASCII_MC_LINE_PEEK && prefix < max_line)
        CHECK(st == MR_PARSE_NEED_MORE);
    else
        CHECK(st == MR_PARSE_NEED_MORE || (st == MR_PARSE_ERROR && p.after == MR_AFTER_CLOSE));
}

static void check_ok(const char *buf, size_t len, const mr_request_head *h, uint32_t item_max,
                     uint32_t max_line)
{
    uint32_t L = h->line_len;
    CHECK(L >= 1 && L <= len);
    CHECK(buf[L - 1] == '\n');
    CHECK(memchr(buf, '\n', L - 1) == NULL);
    CHECK(h->cmd < MR_CMD_COUNT);
    CHECK(h->end_off < L);
    CHECK(h->error_reply == NULL);
    if (h->key_len)
        CHECK((uint64_t)h->key_off + h->key_len <= h->end_off);
    if (h->arg_len)
        CHECK((uint64_t)h->arg_off + h->arg_len <= h->end_off);
    if (h->strip_len)
        CHECK((uint64_t)h->strip_off + h->strip_len <= h->end_off);
    CHECK(!h->strip_len || h->noreply);
    mr_cmd_class cls = mr_cmd_class_of(h->cmd);
    CHECK(cls != MR_CLASS_UNSUPPORTED);
    if (cls == MR_CLASS_STORAGE)
        CHECK(h->data_len >= 2);
    if (h->data_len)
        CHECK(cls == MR_CLASS_STORAGE || h->cmd == MR_CMD_MS);
    if (cls == MR_CLASS_KEYED || cls == MR_CLASS_META_KEYED || cls == MR_CLASS_STORAGE)
        CHECK(h->key_len >= 1 && h->key_len <= MR_KEY_MAX);

    if (cls == MR_CLASS_RETRIEVAL) {
        CHECK(h->nkeys >= 1);
        CHECK(h->keys_off <= h->end_off);
        uint32_t pos = h->keys_off, off, klen, n = 0;
        while (mr_next_key(buf, h, &pos, &off, &klen)) {
            CHECK(klen >= 1 && klen <= MR_KEY_MAX);
            CHECK(off >= h->keys_off && (uint64_t)off + klen <= h->end_off);
            CHECK(memchr(buf + off, ' ', klen) == NULL);
            if (n == 0)
                CHECK(off == h->key_off && klen == h->key_len);
            CHECK(pos <= h->end_off);
            n++;
            CHECK(n <= h->nkeys);
        }
        CHECK(n == h->nkeys);
        CHECK(pos == h->end_off);
    }

    if (h->meta_base64) {
        size_t cap = (size_t)h->key_len; /* decoding never grows */
        char *out = malloc(cap ? cap : 1);
        CHECK(out != NULL);
        long n = mr_base64_decode(buf + h->key_off, h->key_len, out, cap);
        CHECK(n >= 1 && (size_t)n <= cap);
        free(out);
    }

    /* The forwarded line: into a buffer exactly as large as promised. */
    size_t cap = (size_t)L + 2;
    char *fwd = malloc(cap);
    CHECK(fwd != NULL);
    size_t n = mr_forward_line(buf, h, fwd, cap);
    CHECK(n >= 2 && n <= cap);
    CHECK(fwd[n - 2] == '\r' && fwd[n - 1] == '\n');
    CHECK(memchr(fwd, '\n', n - 1) == NULL);
    CHECK(n == (size_t)h->end_off - h->strip_len + 2);
    /* One byte short of that: refused, not truncated. */
    CHECK(mr_forward_line(buf, h, fwd, n - 1) == 0);
    free(fwd);

    /* The line alone parses the same; its prefixes are incomplete. */
    char *scratch = malloc(L);
    CHECK(scratch != NULL);
    mr_request_head again;
    CHECK(parse_copy(buf, L, scratch, L, item_max, max_line, &again) == MR_PARSE_OK);
    CHECK(again.cmd == h->cmd && again.line_len == L && again.data_len == h->data_len);
    CHECK(again.key_off == h->key_off && again.key_len == h->key_len && again.nkeys == h->nkeys);
    CHECK(again.strip_off == h->strip_off && again.strip_len == h->strip_len);
    CHECK(again.end_off == h->end_off && again.noreply == h->noreply);
    if (L <= ALL_PREFIXES_MAX) {
        for (size_t p = 0; p < L; p++)
            check_prefix(buf, p, scratch, L, item_max, max_line);
    } else {
        size_t samples[] = {0, 1, L / 4, L / 2, L - 2, L - 1};
        for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++)
            check_prefix(buf, samples[i], scratch, L, item_max, max_line);
    }
    free(scratch);
}

static void check_error(size_t len, const mr_request_head *h)
{
    if (h->error_reply)
        CHECK(ends_crlf(h->error_reply));
    CHECK(h->after == MR_AFTER_CONTINUE || h->after == MR_AFTER_SWALLOW || h->after == MR_AFTER_CLOSE);
    CHECK(h->line_len <= len);
    if (h->after != MR_AFTER_CLOSE)
        CHECK(h->line_len >= 1);
    if (h->after != MR_AFTER_SWALLOW)
        CHECK(h->swallow_len == 0);
    CHECK(h->cmd <= MR_CMD_COUNT);
    if (h->error_unlinks_key)
        CHECK(h->key_len >= 1 && (uint64_t)h->key_off + h->key_len <= h->line_len);
}

/* Walk a pipelined buffer as a client connection would. */
static void walk(const char *buf, size_t len, uint32_t item_max, uint32_t max_line)
{
    size_t off = 0;
    for (;;) {
        mr_request_head h;
        mr_parse_status st = mr_parse_request(buf + off, len - off, item_max, max_line, &h);
        if (st == MR_PARSE_NEED_MORE)
            return;
        if (st == MR_PARSE_OK) {
            check_ok(buf + off, len - off, &h, item_max, max_line);
            off += h.line_len;
            if (h.data_len) {
                if (len - off < h.data_len)
                    return;
                const char *bad = mr_check_data_block(buf + off, h.data_len);
                CHECK(bad == NULL || ends_crlf(bad));
                const char *reply = mr_bad_data_reply(&h);
                CHECK(reply == NULL || ends_crlf(reply));
                off += h.data_len;
            }
            continue;
        }
        CHECK(st == MR_PARSE_ERROR);
        check_error(len - off, &h);
        if (h.after == MR_AFTER_CLOSE)
            return;
        off += h.line_len;
        if (h.after == MR_AFTER_SWALLOW) {
            if (len - off < h.swallow_len)
                return;
            off += h.swallow_len;
        }
    }
}

/* The decoder on raw bytes: output within cap, never more than 3/4 of the
 * input, and a small output buffer fails rather than overflows. */
static void fuzz_base64(const char *buf, size_t len)
{
    if (len > 1024)
        len = 1024;
    size_t cap = len;
    char *out = malloc(cap ? cap : 1);
    CHECK(out != NULL);
    long n = mr_base64_decode(buf, len, out, cap);
    CHECK(n == -1 || (n >= 0 && (size_t)n <= cap && (size_t)n <= len / 4 * 3));
    if (n > 0) {
        size_t small = (size_t)n - 1;
        char *tight = malloc(small ? small : 1);
        CHECK(tight != NULL);
        CHECK(mr_base64_decode(buf, len, tight, small) == -1);
        free(tight);
        char *exact = malloc((size_t)n);
        CHECK(exact != NULL);
        CHECK(mr_base64_decode(buf, len, exact, (size_t)n) == n);
        CHECK(memcmp(exact, out, (size_t)n) == 0);
        free(exact);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    walk(buf, size, 0, 0);     /* defaults: 1 MiB items, 2 MiB lines */
    walk(buf, size, 200, 300); /* tight: reach the size limits */
    fuzz_base64(buf, size);
    if (size > 0)
        (void)mr_is_binary_protocol(buf, size);
    return 0;
}
