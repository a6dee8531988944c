/* binary.c: the binary protocol's opcode table and request parser.
 *
 * memcached 1.6 (proto_bin.c) reads a binary request in two steps: first the
 * 24-byte header with the extras and the key, which it checks; then, for the
 * commands that carry one, the value. The parser follows those steps and
 * their order, because the order decides which error a malformed request
 * gets and whether the connection survives it. Per-opcode rules live in one
 * table: which extras lengths memcached accepts, whether a key is required
 * or forbidden, and what it does with the rest of the body.
 */
#include <string.h>

#include "ascii_internal.h"
#include "binary_internal.h"

/* Extras lengths an opcode accepts (a mask). */
enum { E0 = 1, E4 = 2, E8 = 4, E20 = 8 };

enum { KEY_NONE, KEY_REQUIRED, KEY_ANY };

enum {
    BODY_EXACT,   /* the body is exactly extras + key */
    BODY_VALUE,   /* what follows extras and key is the value */
    BODY_IGNORED, /* memcached reads extras and key only; the rest is parsed as the next request */
};

typedef struct {
    uint8_t kind; /* mr_bin_kind; MR_BIN_KIND_UNKNOWN for opcodes memcached 1.6 does not serve */
    uint8_t base; /* the non-quiet twin */
    uint8_t ext;  /* E* mask */
    uint8_t key;  /* KEY_* */
    uint8_t body; /* BODY_* */
    bool quiet;
} op_row;

#define ROW(op, kind, base, ext, key, body, quiet) \
    [MR_BIN_OP_##op] = {MR_BIN_KIND_##kind, MR_BIN_OP_##base, ext, KEY_##key, BODY_##body, quiet}

/* From proto_bin.c's dispatch_bin_command(), measured on 1.6.18. */
static const op_row ops[256] = {
    ROW(GET, GET, GET, E0, REQUIRED, EXACT, false),
    ROW(GETQ, GET, GET, E0, REQUIRED, EXACT, true),
    ROW(GETK, GET, GETK, E0, REQUIRED, EXACT, false),
    ROW(GETKQ, GET, GETK, E0, REQUIRED, EXACT, true),
    ROW(GAT, GET, GAT, E4, REQUIRED, IGNORED, false),
    ROW(GATQ, GET, GAT, E4, REQUIRED, IGNORED, true),
    ROW(GATK, GET, GATK, E4, REQUIRED, IGNORED, false),
    ROW(GATKQ, GET, GATK, E4, REQUIRED, IGNORED, true),
    ROW(TOUCH, TOUCH, TOUCH, E4, REQUIRED, IGNORED, false),
    ROW(SET, STORE, SET, E8, REQUIRED, VALUE, false),
    ROW(SETQ, STORE, SET, E8, REQUIRED, VALUE, true),
    ROW(ADD, STORE, ADD, E8, REQUIRED, VALUE, false),
    ROW(ADDQ, STORE, ADD, E8, REQUIRED, VALUE, true),
    ROW(REPLACE, STORE, REPLACE, E8, REQUIRED, VALUE, false),
    ROW(REPLACEQ, STORE, REPLACE, E8, REQUIRED, VALUE, true),
    ROW(APPEND, CONCAT, APPEND, E0, REQUIRED, VALUE, false),
    ROW(APPENDQ, CONCAT, APPEND, E0, REQUIRED, VALUE, true),
    ROW(PREPEND, CONCAT, PREPEND, E0, REQUIRED, VALUE, false),
    ROW(PREPENDQ, CONCAT, PREPEND, E0, REQUIRED, VALUE, true),
    ROW(DELETE, DELETE, DELETE, E0, REQUIRED, EXACT, false),
    ROW(DELETEQ, DELETE, DELETE, E0, REQUIRED, EXACT, true),
    ROW(INCREMENT, ARITH, INCREMENT, E20, REQUIRED, EXACT, false),
    ROW(INCREMENTQ, ARITH, INCREMENT, E20, REQUIRED, EXACT, true),
    ROW(DECREMENT, ARITH, DECREMENT, E20, REQUIRED, EXACT, false),
    ROW(DECREMENTQ, ARITH, DECREMENT, E20, REQUIRED, EXACT, true),
    ROW(NOOP, NOOP, NOOP, E0, NONE, EXACT, false),
    ROW(VERSION, VERSION, VERSION, E0, NONE, EXACT, false),
    ROW(QUIT, QUIT, QUIT, E0, NONE, EXACT, false),
    ROW(QUITQ, QUIT, QUIT, E0, NONE, EXACT, true),
    ROW(FLUSH, FLUSH, FLUSH, E0 | E4, NONE, EXACT, false),
    ROW(FLUSHQ, FLUSH, FLUSH, E0 | E4, NONE, EXACT, true),
    ROW(STAT, STAT, STAT, E0, ANY, IGNORED, false),
    ROW(SASL_LIST_MECHS, SASL_LIST, SASL_LIST_MECHS, E0, NONE, EXACT, false),
    ROW(SASL_AUTH, SASL_AUTH, SASL_AUTH, E0, REQUIRED, VALUE, false),
    ROW(SASL_STEP, SASL_AUTH, SASL_STEP, E0, REQUIRED, VALUE, false),
    /* VERBOSITY (0x1b): memcached 1.6 answers "Unknown command"; no row. */
};

static const char *const op_names[256] = {
#define MR_BIN_OP_NAME(name, code) [code] = #name,
    MR_BIN_OPCODES(MR_BIN_OP_NAME)
#undef MR_BIN_OP_NAME
};

static const struct {
    uint16_t status;
    const char *text;
} status_texts[] = {
#define MR_BIN_STATUS_TEXT(name, code, text) {code, text},
    MR_BIN_STATUSES(MR_BIN_STATUS_TEXT)
#undef MR_BIN_STATUS_TEXT
};

const char *mr_bin_status_text(mr_bin_status status)
{
    for (size_t i = 0; i < sizeof(status_texts) / sizeof(status_texts[0]); i++)
        if (status_texts[i].status == status)
            return status_texts[i].text;
    return "";
}

const char *mr_bin_opcode_name(uint8_t opcode)
{
    return op_names[opcode];
}

mr_bin_kind mr_bin_kind_of(uint8_t opcode)
{
    return (mr_bin_kind)ops[opcode].kind;
}

uint8_t mr_bin_base_opcode(uint8_t opcode)
{
    return ops[opcode].kind == MR_BIN_KIND_UNKNOWN ? opcode : ops[opcode].base;
}

bool mr_bin_is_quiet(uint8_t opcode)
{
    return ops[opcode].quiet;
}

/* ---- parsing ---- */

static void read_header(const uint8_t *b, mr_bin_header *h)
{
    h->magic = b[0];
    h->opcode = b[1];
    h->keylen = mr_be16(b + 2);
    h->extlen = b[4];
    h->datatype = b[5];
    h->vbucket = mr_be16(b + 6);
    h->bodylen = mr_be32(b + 8);
    h->opaque = mr_be32(b + 12);
    h->cas = mr_be64(b + 16);
}

static mr_bin_parse_status fail(mr_bin_request *r, mr_bin_status status, mr_bin_after after)
{
    r->reply = true;
    r->status = status;
    r->after = after;
    return MR_BIN_ERROR;
}

static mr_bin_parse_status close_silently(mr_bin_request *r)
{
    fail(r, MR_BIN_SUCCESS, MR_BIN_AFTER_CLOSE);
    r->reply = false;
    return MR_BIN_ERROR;
}

/* An error after which memcached discards n more bytes: n is memcached's
 * int, so a length of 2^31 or more reads negative and nothing is discarded. */
static mr_bin_parse_status fail_swallow(mr_bin_request *r, mr_bin_status status, uint32_t n)
{
    if ((int32_t)n <= 0)
        return fail(r, status, MR_BIN_AFTER_CONTINUE);
    r->swallow = n;
    return fail(r, status, MR_BIN_AFTER_SWALLOW);
}

static bool ext_ok(const op_row *row, uint8_t extlen)
{
    uint8_t bit = extlen == 0 ? E0 : extlen == 4 ? E4 : extlen == 8 ? E8 : extlen == 20 ? E20 : 0;
    return (row->ext & bit) != 0;
}

/* The per-opcode checks of dispatch_bin_command(): any failure is
 * "Invalid arguments" and memcached closes the connection. */
static bool lengths_ok(const op_row *row, const mr_bin_header *h)
{
    if (!ext_ok(row, h->extlen))
        return false;
    if ((row->key == KEY_NONE && h->keylen != 0) || (row->key == KEY_REQUIRED && h->keylen == 0))
        return false;
    return row->body != BODY_EXACT || h->bodylen == (uint32_t)h->extlen + h->keylen;
}

/* Before authenticating, memcached -S serves only these. */
static bool allowed_unauthenticated(uint8_t kind)
{
    return kind == MR_BIN_KIND_SASL_LIST || kind == MR_BIN_KIND_SASL_AUTH || kind == MR_BIN_KIND_VERSION;
}

static bool over_bound(const mr_bin_opts *o, const mr_bin_header *h)
{
    return o->max_request && (uint64_t)MR_BIN_HEADER_LEN + h->bodylen > o->max_request;
}

/* The value checks of process_bin_update/append_prepend/sasl_auth, which
 * memcached makes before reading the value. */
static mr_bin_parse_status check_value(mr_bin_request *r, const op_row *row, const mr_bin_opts *o,
                                       uint32_t item_max)
{
    const mr_bin_header *h = &r->h;
    uint32_t vlen = h->bodylen - h->extlen - h->keylen;
    if (row->kind == MR_BIN_KIND_SASL_AUTH) {
        if (!o->sasl)
            return fail_swallow(r, MR_BIN_UNKNOWN_COMMAND, vlen);
        if (h->keylen > MR_BIN_SASL_MECH_MAX)
            return fail_swallow(r, MR_BIN_EINVAL, vlen);
        /* memcached reads the data into an item: one it cannot allocate is ENOMEM. */
        if ((int32_t)vlen < 0 || mr_item_too_large(h->keylen, 0, vlen, item_max) || over_bound(o, h))
            return fail_swallow(r, MR_BIN_ENOMEM, vlen);
        return MR_BIN_OK;
    }
    uint32_t flags = row->kind == MR_BIN_KIND_STORE ? mr_be32(r->extras) : 0;
    if ((int32_t)vlen < 0 || mr_item_too_large(h->keylen, flags, vlen, item_max) || over_bound(o, h)) {
        r->error_unlinks_key = row->base == MR_BIN_OP_SET;
        return fail_swallow(r, MR_BIN_E2BIG, vlen);
    }
    return MR_BIN_OK;
}

mr_bin_parse_status mr_bin_parse(const char *buf, size_t len, const mr_bin_opts *opts, mr_bin_request *out)
{
    memset(out, 0, sizeof(*out));
    if (len < MR_BIN_HEADER_LEN) {
        out->need = MR_BIN_HEADER_LEN;
        return MR_BIN_NEED_MORE;
    }
    const uint8_t *b = (const uint8_t *)buf;
    mr_bin_header *h = &out->h;
    read_header(b, h);
    if (h->magic != MR_BIN_REQ_MAGIC)
        return close_silently(out);
    uint32_t head = MR_BIN_HEADER_LEN + h->extlen + h->keylen;
    if (head > MR_BIN_MC_READ_BUF)
        return close_silently(out);
    if (len < head) {
        out->need = head;
        return MR_BIN_NEED_MORE;
    }
    const op_row *row = &ops[h->opcode];
    out->kind = (mr_bin_kind)row->kind;
    out->extras = b + MR_BIN_HEADER_LEN;
    out->key = buf + MR_BIN_HEADER_LEN + h->extlen;
    out->consumed = head;

    if ((uint32_t)h->extlen + h->keylen > h->bodylen)
        return fail(out, MR_BIN_UNKNOWN_COMMAND, MR_BIN_AFTER_CLOSE);
    if (opts->sasl && !opts->authenticated && !allowed_unauthenticated(row->kind))
        return fail(out, MR_BIN_AUTH_ERROR, MR_BIN_AFTER_CLOSE);
    if (h->keylen > MR_BIN_KEY_MAX)
        return fail(out, MR_BIN_EINVAL, MR_BIN_AFTER_CLOSE);
    /* memcached discards bodylen more bytes past extras and key here: more
     * than the request has when those are not empty (it eats into the next
     * request). Measured; kept for exactness. */
    if (row->kind == MR_BIN_KIND_UNKNOWN)
        return fail_swallow(out, MR_BIN_UNKNOWN_COMMAND, h->bodylen);
    if (!lengths_ok(row, h))
        return fail(out, MR_BIN_EINVAL, MR_BIN_AFTER_CLOSE);
    if (row->kind == MR_BIN_KIND_SASL_LIST && !opts->sasl)
        return fail(out, MR_BIN_UNKNOWN_COMMAND, MR_BIN_AFTER_CONTINUE);

    if (row->body == BODY_VALUE) {
        uint32_t item_max = opts->item_size_max ? opts->item_size_max : MR_ASCII_DEFAULT_ITEM_SIZE_MAX;
        if (check_value(out, row, opts, item_max) != MR_BIN_OK)
            return MR_BIN_ERROR;
        uint64_t total = (uint64_t)MR_BIN_HEADER_LEN + h->bodylen;
        if (len < total) {
            out->need = (uint32_t)total;
            return MR_BIN_NEED_MORE;
        }
        out->value = buf + head;
        out->value_len = h->bodylen - h->extlen - h->keylen;
        out->consumed = (uint32_t)total;
    }
    return MR_BIN_OK;
}
