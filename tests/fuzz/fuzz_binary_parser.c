/* fuzz_binary_parser.c: libFuzzer target for the binary protocol layer.
 *
 * The input is a binary client's byte stream (the first byte says which of
 * four parser settings to use: SASL on or off, authenticated or not, tight
 * item and request bounds). It is walked the way a client connection will
 * walk it, request after request, and every result is checked:
 *   - NEED_MORE asks for more than is there, and never more than memcached
 *     would buffer; every prefix of an accepted request asks for more;
 *   - OK spans (extras, key, value) lie inside what was consumed, and
 *     consumed is the header plus extras and key, or the whole request;
 *   - errors echo into a well-formed response; swallows only follow a reply;
 *   - translation writes one "\r\n"-terminated line that memrelay's own text
 *     parser accepts, within MR_BIN_META_LINE_MAX;
 *   - the translated reply to every meta reply kind is a well-formed binary
 *     response (its body length matches) or, when suppressed, nothing.
 * Any violation aborts, so libFuzzer reports it as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memrelay/ascii.h"
#include "memrelay/binary.h"

#define CHECK(cond)                                                                                      \
    do {                                                                                                 \
        if (!(cond)) {                                                                                   \
            fprintf(stderr, "fuzz_binary_parser: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                                     \
        }                                                                                                \
    } while (0)

static uint32_t be32(const char *p)
{
    const uint8_t *b = (const uint8_t *)p;
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* A response: magic, and a body length that matches what was built. */
static void check_response(const char *out, size_t n, uint32_t value_len)
{
    CHECK(n >= MR_BIN_HEADER_LEN && n <= MR_BIN_REPLY_HEAD_MAX);
    CHECK((uint8_t)out[0] == MR_BIN_RES_MAGIC);
    CHECK(be32(out + 8) == n - MR_BIN_HEADER_LEN + value_len);
}

/* Every meta reply kind a server can send, through the reply translator. */
static void check_replies(const mr_bin_plan *plan)
{
    static const char *const lines[] = {
        "VA 3 f5 c7\r\nabc\r\n",
        "VA 2 c9\r\n12\r\n",
        "HD c1\r\n",
        "HD f3 c2\r\n",
        "EN\r\n",
        "NF\r\n",
        "NS\r\n",
        "EX\r\n",
        "MN\r\n",
        "OK\r\n",
        "VERSION 1.6.18\r\n",
        "ERROR\r\n",
        "SERVER_ERROR timeout\r\n",
        "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        "END\r\n",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        mr_reply_elem e;
        mr_reply_kind k = mr_reply_next(lines[i], strlen(lines[i]), 1u << 20, 8192, &e);
        CHECK(k != MR_REPLY_NEED_MORE && k != MR_REPLY_BAD);
        char out[MR_BIN_REPLY_HEAD_MAX];
        mr_bin_reply r;
        mr_bin_translate_elem(plan, lines[i], &e, out, sizeof(out), &r);
        if (r.suppressed) {
            CHECK(r.head_len == 0 && r.value_len == 0);
            CHECK(plan->quiet);
            continue;
        }
        check_response(out, r.head_len, r.value_len);
        CHECK((uint8_t)out[1] == plan->opcode);
    }
}

static void check_translation(const mr_bin_request *r)
{
    char line[MR_BIN_META_LINE_MAX];
    mr_bin_meta meta;
    mr_bin_plan plan;
    mr_bin_status st = mr_bin_translate(r, line, sizeof(line), &meta, &plan);
    CHECK(plan.opcode == r->h.opcode && plan.opaque == r->h.opaque);
    CHECK(plan.key_len == r->h.keylen);
    if (st != MR_BIN_SUCCESS) {
        CHECK(st == MR_BIN_NOT_SUPPORTED);
        CHECK(r->h.keylen > MR_BIN_B64_KEY_MAX);
        return;
    }
    check_replies(&plan);
    if (meta.line_len == 0) {
        CHECK(meta.cls == MR_BIN_CLASS_LOCAL);
        return;
    }
    CHECK(meta.line_len >= 4 && meta.line_len <= MR_BIN_META_LINE_MAX);
    CHECK(line[meta.line_len - 2] == '\r' && line[meta.line_len - 1] == '\n');
    CHECK(memchr(line, '\n', meta.line_len - 1) == NULL);
    CHECK(memchr(line, '\0', meta.line_len) == NULL);
    /* The line is one memrelay's text parser takes as it is. */
    size_t total = meta.line_len + (meta.has_data ? meta.data_len + 2 : 0);
    char *text = malloc(total);
    CHECK(text != NULL);
    memcpy(text, line, meta.line_len);
    if (meta.has_data) {
        memcpy(text + meta.line_len, meta.data, meta.data_len);
        memcpy(text + meta.line_len + meta.data_len, "\r\n", 2);
    }
    mr_request_head h;
    CHECK(mr_parse_request(text, total, 0, 0, &h) == MR_PARSE_OK);
    CHECK(h.line_len == meta.line_len);
    CHECK(!meta.has_data || h.data_len == meta.data_len + 2);
    free(text);
}

static void check_ok(const char *buf, size_t len, const mr_bin_request *r, const mr_bin_opts *o)
{
    uint32_t head = MR_BIN_HEADER_LEN + r->h.extlen + r->h.keylen;
    CHECK(r->consumed >= head && r->consumed <= len);
    CHECK(r->consumed == head || r->consumed == MR_BIN_HEADER_LEN + r->h.bodylen);
    CHECK(r->h.keylen <= MR_BIN_KEY_MAX);
    CHECK((const char *)r->extras == buf + MR_BIN_HEADER_LEN);
    CHECK(r->key == buf + MR_BIN_HEADER_LEN + r->h.extlen);
    if (r->value_len)
        CHECK(r->value == buf + head && (uint64_t)head + r->value_len == r->consumed);
    CHECK(r->kind != MR_BIN_KIND_UNKNOWN);
    CHECK(!o->max_request || r->consumed <= o->max_request);
    /* Every prefix asks for more (all of them for small requests, a sample
     * of large ones), parsed from a copy that ends where its malloc block
     * ends, so that ASan sees any read past the end. */
    char *copy = malloc(r->consumed);
    CHECK(copy != NULL);
    size_t step = r->consumed > 512 ? r->consumed / 64 : 1;
    for (size_t p = 0; p < r->consumed; p += step) {
        char *at = copy + r->consumed - p;
        memcpy(at, buf, p);
        mr_bin_request q;
        CHECK(mr_bin_parse(at, p, o, &q) == MR_BIN_NEED_MORE);
        CHECK(q.need > p && q.need <= r->consumed);
    }
    free(copy);
    check_translation(r);
}

static void check_error(size_t len, const mr_bin_request *r)
{
    CHECK(r->after == MR_BIN_AFTER_CONTINUE || r->after == MR_BIN_AFTER_SWALLOW ||
          r->after == MR_BIN_AFTER_CLOSE);
    if (r->after != MR_BIN_AFTER_CLOSE)
        CHECK(r->reply && r->consumed >= MR_BIN_HEADER_LEN && r->consumed <= len);
    CHECK(r->after == MR_BIN_AFTER_SWALLOW ? r->swallow > 0 : r->swallow == 0);
    if (r->reply) {
        char out[MR_BIN_REPLY_HEAD_MAX];
        size_t n = mr_bin_error_reply(r, out, sizeof(out));
        check_response(out, n, 0);
        CHECK((uint16_t)((uint8_t)out[6] << 8 | (uint8_t)out[7]) == r->status);
    }
    if (r->error_unlinks_key)
        CHECK(r->status == MR_BIN_E2BIG && r->h.keylen >= 1);
}

static void walk(const char *buf, size_t len, const mr_bin_opts *o)
{
    size_t off = 0;
    for (;;) {
        mr_bin_request r;
        mr_bin_parse_status st = mr_bin_parse(buf + off, len - off, o, &r);
        if (st == MR_BIN_NEED_MORE) {
            CHECK(r.need > len - off);
            /* Never more than memcached would buffer (or memrelay's bound). */
            uint32_t item_max = o->item_size_max ? o->item_size_max : MR_ASCII_DEFAULT_ITEM_SIZE_MAX;
            CHECK(r.need <= MR_BIN_MC_READ_BUF ||
                  (o->max_request ? r.need <= o->max_request : r.need <= MR_BIN_MC_READ_BUF + item_max));
            return;
        }
        if (st == MR_BIN_OK) {
            check_ok(buf + off, len - off, &r, o);
            off += r.consumed;
            continue;
        }
        check_error(len - off, &r);
        if (r.after == MR_BIN_AFTER_CLOSE)
            return;
        off += r.consumed;
        if (r.after == MR_BIN_AFTER_SWALLOW) {
            if (len - off < r.swallow)
                return;
            off += r.swallow;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const mr_bin_opts settings[4] = {
        {0, 0, false, false},
        {0, 0, true, false},
        {0, 0, true, true},
        {300, 400, false, false}, /* tight: reach the value limits */
    };
    if (size == 0)
        return 0;
    const mr_bin_opts *o = &settings[data[0] & 3];
    walk((const char *)data + 1, size - 1, o);
    return 0;
}
