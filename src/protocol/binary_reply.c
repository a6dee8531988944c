/* binary_reply.c: a server's meta reply becomes the binary response
 * memcached 1.6 would have sent, and the responses memrelay builds itself.
 *
 * A reply is read in two steps: its line is classified (code, f and c
 * values, error text), then a per-kind table says which code is success,
 * which failures the command can meet, and how its success is laid out
 * (proto_bin.c: GET family 4 bytes of flags as extras, then the key for K
 * opcodes, then the value; incr/decr an 8-byte counter as the body; stores
 * only the new CAS). Error texts are memcached's (mr_bin_status_text). The
 * value is never copied: the caller sends it after the built head.
 */
#include <string.h>
#include <strings.h>

#include "binary_internal.h"

/* The reply codes a meta line starts with. */
enum { C_OTHER, C_VA, C_HD, C_EN, C_NF, C_NS, C_EX, C_MN, C_OK, C_VERSION, C_ERROR };

/* An error body copied from a server's text is cut to this. */
#define TEXT_MAX 200u

typedef struct {
    int code;
    uint32_t flags;   /* f */
    uint64_t cas;     /* c */
    const char *text; /* C_ERROR: the whole line without "\r\n"; C_VERSION: the version */
    size_t text_len;
} meta_line;

static const struct {
    const char *word;
    int code;
} codes[] = {
    {"VA", C_VA},
    {"HD", C_HD},
    {"EN", C_EN},
    {"NF", C_NF},
    {"NS", C_NS},
    {"EX", C_EX},
    {"MN", C_MN},
    {"OK", C_OK},
    {"VERSION", C_VERSION},
    {"ERROR", C_ERROR},
    {"CLIENT_ERROR", C_ERROR},
    {"SERVER_ERROR", C_ERROR},
};

static bool read_u64(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static void classify(const char *line, size_t len, meta_line *m)
{
    memset(m, 0, sizeof(*m));
    if (len >= 2 && line[len - 2] == '\r')
        len -= 2;
    size_t w = 0;
    while (w < len && line[w] != ' ')
        w++;
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (strlen(codes[i].word) == w && memcmp(codes[i].word, line, w) == 0)
            m->code = codes[i].code;
    m->text = line;
    m->text_len = len;
    if (m->code == C_VERSION) {
        m->text = line + (w < len ? w + 1 : w);
        m->text_len = len - (size_t)(m->text - line);
    }
    if (m->code != C_VA && m->code != C_HD)
        return;
    /* Return flags: f<flags> and c<cas> are the ones a binary response carries. */
    for (size_t i = w; i < len;) {
        while (i < len && line[i] == ' ')
            i++;
        size_t s = i;
        while (i < len && line[i] != ' ')
            i++;
        uint64_t v;
        if (i - s >= 2 && line[s] == 'f' && read_u64(line + s + 1, i - s - 1, &v))
            m->flags = (uint32_t)v;
        else if (i - s >= 2 && line[s] == 'c' && read_u64(line + s + 1, i - s - 1, &v))
            m->cas = v;
    }
}

/* ---- building ---- */

size_t mr_bin_build(const mr_bin_response *r, char *out, size_t cap)
{
    uint64_t body = (uint64_t)r->extlen + r->keylen + r->bodylen;
    if (body > UINT32_MAX || MR_BIN_HEADER_LEN + body > cap)
        return 0;
    uint8_t *h = (uint8_t *)out;
    h[0] = MR_BIN_RES_MAGIC;
    h[1] = r->opcode;
    mr_put_be16(h + 2, r->keylen);
    h[4] = r->extlen;
    h[5] = 0; /* raw bytes */
    mr_put_be16(h + 6, r->status);
    mr_put_be32(h + 8, (uint32_t)body);
    mr_put_be32(h + 12, r->opaque);
    mr_put_be64(h + 16, r->cas);
    size_t w = MR_BIN_HEADER_LEN;
    if (r->extlen)
        memcpy(out + w, r->extras, r->extlen);
    w += r->extlen;
    if (r->keylen)
        memcpy(out + w, r->key, r->keylen);
    w += r->keylen;
    if (r->bodylen)
        memcpy(out + w, r->body, r->bodylen);
    return w + r->bodylen;
}

static size_t status_reply(uint8_t opcode, uint32_t opaque, mr_bin_status status, const char *text, size_t n,
                           char *out, size_t cap)
{
    mr_bin_response r = {
        .opcode = opcode, .status = (uint16_t)status, .opaque = opaque, .body = text, .bodylen = (uint32_t)n};
    return mr_bin_build(&r, out, cap);
}

size_t mr_bin_error_reply(const mr_bin_request *req, char *out, size_t cap)
{
    const char *text = mr_bin_status_text(req->status);
    return status_reply(req->h.opcode, req->h.opaque, req->status, text, strlen(text), out, cap);
}

size_t mr_bin_status_reply(const mr_bin_plan *plan, mr_bin_status status, const char *text, char *out,
                           size_t cap)
{
    if (!text)
        text = mr_bin_status_text(status);
    return status_reply(plan->opcode, plan->opaque, status, text, strlen(text), out, cap);
}

size_t mr_bin_ok_reply(const mr_bin_plan *plan, char *out, size_t cap)
{
    return status_reply(plan->opcode, plan->opaque, MR_BIN_SUCCESS, NULL, 0, out, cap);
}

size_t mr_bin_version_reply(const mr_bin_plan *plan, const char *version, size_t len, char *out, size_t cap)
{
    return status_reply(plan->opcode, plan->opaque, MR_BIN_SUCCESS, version, len, out, cap);
}

size_t mr_bin_sasl_list_reply(const mr_bin_plan *plan, char *out, size_t cap)
{
    return status_reply(plan->opcode, plan->opaque, MR_BIN_SUCCESS, "PLAIN", 5, out, cap);
}

/* ---- errors ---- */

/* Server (and memrelay) errors, by prefix (case-insensitive: memcached
 * writes both "out of memory" and "Out of memory"). `own_text`: the body is
 * memcached's text for the status, as memcached's binary side would send;
 * otherwise the error's own words after its keyword. */
static const struct {
    const char *prefix;
    mr_bin_status status;
    bool own_text;
} errors[] = {
    {"CLIENT_ERROR cannot increment or decrement non-numeric value", MR_BIN_DELTA_BADVAL, true},
    {"CLIENT_ERROR flush_all not allowed", MR_BIN_AUTH_ERROR, true},
    {"SERVER_ERROR object too large for cache", MR_BIN_E2BIG, true},
    {"SERVER_ERROR out of memory", MR_BIN_ENOMEM, true},
    {"SERVER_ERROR timeout", MR_BIN_ETMPFAIL, false},
    {"SERVER_ERROR backend unavailable", MR_BIN_ETMPFAIL, false},
    {"SERVER_ERROR connection refused", MR_BIN_ETMPFAIL, false},
    {"SERVER_ERROR backend queue full", MR_BIN_EBUSY, false},
    {"ERROR", MR_BIN_NOT_SUPPORTED, true}, /* a server without meta commands */
};

static size_t error_reply(const mr_bin_plan *plan, const meta_line *m, char *out, size_t cap,
                          mr_bin_status *st)
{
    mr_bin_status status = MR_BIN_EINTERNAL;
    const char *text = NULL;
    size_t n = 0;
    bool found = false;
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]) && !found; i++) {
        size_t pl = strlen(errors[i].prefix);
        if (m->text_len >= pl && strncasecmp(m->text, errors[i].prefix, pl) == 0 &&
            (m->text_len == pl || m->text[pl] == ' ')) {
            status = errors[i].status;
            found = true;
            if (errors[i].own_text)
                text = mr_bin_status_text(status);
        }
    }
    if (!text) { /* the words after the keyword ("timeout"), or the whole line */
        const char *sp = memchr(m->text, ' ', m->text_len);
        text = sp ? sp + 1 : m->text;
        n = m->text_len - (size_t)(text - m->text);
        n = n > TEXT_MAX ? TEXT_MAX : n;
    } else {
        n = strlen(text);
    }
    *st = status;
    return status_reply(plan->opcode, plan->opaque, status, text, n, out, cap);
}

/* ---- success layouts ---- */

typedef size_t (*success_fn)(const mr_bin_plan *plan, const meta_line *m, const char *data, uint32_t data_len,
                             char *out, size_t cap, mr_bin_reply *r);

static size_t ok_get(const mr_bin_plan *plan, const meta_line *m, const char *data, uint32_t data_len,
                     char *out, size_t cap, mr_bin_reply *r)
{
    uint8_t flags[4];
    mr_put_be32(flags, m->flags);
    mr_bin_response b = {
        .opcode = plan->opcode, .opaque = plan->opaque, .cas = m->cas, .extras = flags, .extlen = 4};
    if (plan->wants_key) {
        b.key = plan->key;
        b.keylen = plan->key_len;
    }
    size_t n = mr_bin_build(&b, out, cap);
    if (n == 0)
        return 0;
    /* The value follows the head: count it in the body length. */
    mr_put_be32(out + 8, mr_be32(out + 8) + data_len);
    r->value = data;
    r->value_len = data_len;
    return n;
}

static size_t ok_touch(const mr_bin_plan *plan, const meta_line *m, const char *data, uint32_t data_len,
                       char *out, size_t cap, mr_bin_reply *r)
{
    uint8_t flags[4];
    mr_put_be32(flags, m->flags);
    mr_bin_response b = {
        .opcode = plan->opcode, .opaque = plan->opaque, .cas = m->cas, .extras = flags, .extlen = 4};
    return mr_bin_build(&b, out, cap);
}

static size_t ok_cas(const mr_bin_plan *plan, const meta_line *m, const char *data, uint32_t data_len,
                     char *out, size_t cap, mr_bin_reply *r)
{
    mr_bin_response b = {.opcode = plan->opcode, .opaque = plan->opaque, .cas = m->cas};
    return mr_bin_build(&b, out, cap);
}

static size_t ok_empty(const mr_bin_plan *plan, const meta_line *m, const char *data, uint32_t data_len,
                       char *out, size_t cap, mr_bin_reply *r)
{
    return mr_bin_ok_reply(plan, out, cap);
}

/* incr/decr: the new value as 8 bytes, big-endian, and the new CAS. */
static size_t ok_counter(const mr_bin_plan *plan, const meta_line *m, const char *data, uint32_t data_len,
                         char *out, size_t cap, mr_bin_reply *r)
{
    uint64_t v;
    if (!read_u64(data, data_len, &v))
        return 0;
    uint8_t body[8];
    mr_put_be64(body, v);
    mr_bin_response b = {
        .opcode = plan->opcode, .opaque = plan->opaque, .cas = m->cas, .body = (char *)body, .bodylen = 8};
    return mr_bin_build(&b, out, cap);
}

static size_t ok_version(const mr_bin_plan *plan, const meta_line *m, const char *data, uint32_t data_len,
                         char *out, size_t cap, mr_bin_reply *r)
{
    return mr_bin_version_reply(plan, m->text, m->text_len, out, cap);
}

#define BIT(c) (1u << (c))

/* Per kind: the code of success, its layout, and the failure codes the
 * command can meet (a code outside them means the reply is not this
 * request's: EINTERNAL). */
static const struct {
    int ok;
    success_fn build;
    unsigned failures;
} kinds[] = {
    [MR_BIN_KIND_GET] = {C_VA, ok_get, BIT(C_EN)},
    [MR_BIN_KIND_TOUCH] = {C_HD, ok_touch, BIT(C_EN)},
    [MR_BIN_KIND_STORE] = {C_HD, ok_cas, BIT(C_NS) | BIT(C_EX) | BIT(C_NF)},
    [MR_BIN_KIND_CONCAT] = {C_HD, ok_cas, BIT(C_NS) | BIT(C_EX) | BIT(C_NF)},
    [MR_BIN_KIND_DELETE] = {C_HD, ok_empty, BIT(C_NF) | BIT(C_EX)},
    [MR_BIN_KIND_ARITH] = {C_VA, ok_counter, BIT(C_NF) | BIT(C_NS) | BIT(C_EX)},
    [MR_BIN_KIND_NOOP] = {C_MN, ok_empty, 0},
    [MR_BIN_KIND_VERSION] = {C_VERSION, ok_version, 0},
    [MR_BIN_KIND_FLUSH] = {C_OK, ok_empty, 0},
};

static mr_bin_status failure_status(const mr_bin_plan *plan, int code)
{
    switch (code) {
    case C_EN:
    case C_NF:
        return MR_BIN_KEY_ENOENT;
    case C_EX:
        return MR_BIN_KEY_EEXISTS;
    default: /* C_NS */
        return (mr_bin_status)plan->ns_status;
    }
}

/* A miss of a K opcode carries the key as its body and no text, as
 * memcached's write_bin_miss_response(). */
static size_t failure_reply(const mr_bin_plan *plan, mr_bin_status st, char *out, size_t cap)
{
    if (st == MR_BIN_KEY_ENOENT && plan->wants_key) {
        mr_bin_response b = {.opcode = plan->opcode,
                             .status = (uint16_t)st,
                             .opaque = plan->opaque,
                             .key = plan->key,
                             .keylen = plan->key_len};
        return mr_bin_build(&b, out, cap);
    }
    return mr_bin_status_reply(plan, st, NULL, out, cap);
}

/* proto_bin.c: quiet GETs hide misses only; every other quiet command hides
 * its success only; errors are always sent. */
static bool quiet_hides(const mr_bin_plan *plan, mr_bin_status st)
{
    if (!plan->quiet)
        return false;
    return plan->kind == MR_BIN_KIND_GET ? st == MR_BIN_KEY_ENOENT : st == MR_BIN_SUCCESS;
}

void mr_bin_translate_reply(const mr_bin_plan *plan, const char *line, size_t line_len, const char *data,
                            uint32_t data_len, char *out, size_t cap, mr_bin_reply *r)
{
    memset(r, 0, sizeof(*r));
    meta_line m;
    classify(line, line_len, &m);
    bool known = plan->kind < sizeof(kinds) / sizeof(kinds[0]) && kinds[plan->kind].build;
    if (m.code == C_ERROR) {
        r->head_len = error_reply(plan, &m, out, cap, &r->status);
    } else if (known && m.code == kinds[plan->kind].ok) {
        r->status = MR_BIN_SUCCESS;
        r->head_len = kinds[plan->kind].build(plan, &m, data, data_len, out, cap, r);
        if (r->head_len == 0) { /* a VA without a number for incr/decr, or no room */
            r->value = NULL;
            r->value_len = 0;
            r->status = MR_BIN_EINTERNAL;
            r->head_len = mr_bin_status_reply(plan, r->status, "invalid reply", out, cap);
        }
    } else if (known && (kinds[plan->kind].failures & BIT(m.code))) {
        r->status = failure_status(plan, m.code);
        r->head_len = failure_reply(plan, r->status, out, cap);
    } else {
        r->status = MR_BIN_EINTERNAL;
        r->head_len = mr_bin_status_reply(plan, r->status, "unexpected reply", out, cap);
    }
    if (quiet_hides(plan, r->status)) {
        r->suppressed = true;
        r->head_len = 0;
        r->value = NULL;
        r->value_len = 0;
    }
}

void mr_bin_translate_elem(const mr_bin_plan *plan, const char *buf, const mr_reply_elem *e, char *out,
                           size_t cap, mr_bin_reply *r)
{
    if (e->kind == MR_REPLY_VA) {
        mr_bin_translate_reply(plan, buf, e->line_len, buf + e->line_len, e->len - e->line_len - 2, out, cap,
                               r);
    } else if (e->kind == MR_REPLY_LINE) {
        mr_bin_translate_reply(plan, buf, e->line_len, NULL, 0, out, cap, r);
    } else {
        memset(r, 0, sizeof(*r));
        r->status = MR_BIN_EINTERNAL;
        r->head_len = mr_bin_status_reply(plan, r->status, "unexpected reply", out, cap);
    }
}

/* ---- STAT ---- */

static size_t stat_packet(const mr_bin_plan *plan, const char *k, size_t kl, const char *v, size_t vl,
                          char *out, size_t cap, size_t w)
{
    size_t n = MR_BIN_HEADER_LEN + kl + vl;
    if (w + n <= cap) {
        mr_bin_response b = {.opcode = plan->opcode,
                             .opaque = plan->opaque,
                             .key = k,
                             .keylen = (uint16_t)kl,
                             .body = v,
                             .bodylen = (uint32_t)vl};
        mr_bin_build(&b, out + w, cap - w);
    }
    return n;
}

size_t mr_bin_stats_reply(const mr_bin_plan *plan, const char *text, size_t len, char *out, size_t cap)
{
    size_t w = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        size_t tl = ll && p[ll - 1] == '\r' ? ll - 1 : ll;
        if (tl >= 5 && memcmp(p, "STAT ", 5) == 0) {
            const char *k = p + 5, *le = p + tl;
            const char *sp = memchr(k, ' ', (size_t)(le - k));
            const char *v = sp ? sp + 1 : le;
            size_t kl = (size_t)((sp ? sp : le) - k);
            if (kl > UINT16_MAX)
                kl = UINT16_MAX;
            w += stat_packet(plan, k, kl, v, (size_t)(le - v), out, cap, w);
        } else if ((tl == 3 && memcmp(p, "END", 3) == 0) || (tl == 5 && memcmp(p, "RESET", 5) == 0)) {
            return w + stat_packet(plan, NULL, 0, NULL, 0, out, cap, w);
        } else {
            /* "ERROR" (no such group: memcached's "Not found") or a failure:
             * one error response replaces the whole reply. */
            meta_line m;
            classify(p, tl, &m);
            mr_bin_status st;
            char tmp[MR_BIN_REPLY_HEAD_MAX];
            size_t n = tl == 5 && memcmp(p, "ERROR", 5) == 0
                           ? mr_bin_status_reply(plan, MR_BIN_KEY_ENOENT, NULL, tmp, sizeof(tmp))
                           : error_reply(plan, &m, tmp, sizeof(tmp), &st);
            if (n <= cap)
                memcpy(out, tmp, n);
            return n;
        }
        p += ll + 1;
    }
    /* No END: the text was cut; end the packets anyway. */
    return w + stat_packet(plan, NULL, 0, NULL, 0, out, cap, w);
}
