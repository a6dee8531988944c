/* binary_meta.c: a parsed binary request becomes the meta command that does
 * the same on a memcached 1.6 server, plus the plan its reply is read with.
 *
 * Every command asks for exactly what the binary response carries (value,
 * client flags, CAS) and never for the key or an opaque: the plan keeps the
 * key's raw bytes, and replies pair with requests in order. No command is
 * sent quiet (`q`): the proxy applies binary quiet mode itself, so every
 * forwarded request has exactly one reply, as for text clients. One writer
 * function per kind, chosen from a table.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "binary_internal.h"

/* A bounded line being written. */
typedef struct {
    char *p;
    size_t cap, len;
    bool overflow;
} line_buf;

static void put(line_buf *l, const char *s, size_t n)
{
    if (l->overflow || l->cap - l->len < n) {
        l->overflow = true;
        return;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

static void put_str(line_buf *l, const char *s)
{
    put(l, s, strlen(s));
}

/* " <flag><number>" */
static void put_num(line_buf *l, const char *flag, uint64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), " %s%" PRIu64, flag, v);
    put(l, tmp, (size_t)n);
}

/* memcached reads a text exptime as a signed 32-bit number (safe_strtol):
 * a binary exptime of 2^31 or more would turn negative there and expire the
 * item at once, where binary stores it until that (far) absolute time. The
 * latest time text can say is 2147483647 (2038-01-19). */
static uint32_t text_exptime(uint32_t exptime)
{
    return exptime > INT32_MAX ? (uint32_t)INT32_MAX : exptime;
}

/* Printable ASCII but space, or any byte >= 0x80: memcached's tokenizer
 * splits keys only on spaces and ends lines at "\n" (and "\r\n", NUL), so
 * these bytes travel unchanged in a text key. Control bytes and DEL are
 * sent base64 to be safe. */
static bool raw_key_ok(const char *key, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c <= 0x20 || c == 0x7f)
            return false;
    }
    return len > 0;
}

size_t mr_bin_meta_key(const char *key, size_t len, char *out, size_t cap, bool *base64)
{
    *base64 = !raw_key_ok(key, len);
    if (!*base64) {
        if (len > MR_BIN_KEY_MAX || len > cap)
            return 0;
        memcpy(out, key, len);
        return len;
    }
    if (len > MR_BIN_B64_KEY_MAX)
        return 0;
    return mr_base64_encode(key, len, out, cap);
}

/* "<cmd> <key>" and, for a base64 key, " b" (after `mid`, ms's length). */
typedef struct {
    const char *key;
    size_t len;
    bool base64;
} meta_key;

static void put_head(line_buf *l, const char *cmd, const meta_key *k, const char *mid)
{
    put_str(l, cmd);
    put(l, " ", 1);
    put(l, k->key, k->len);
    if (mid)
        put_str(l, mid);
    if (k->base64)
        put_str(l, " b");
}

typedef void (*write_fn)(const mr_bin_request *r, const meta_key *k, line_buf *l);

static void write_get(const mr_bin_request *r, const meta_key *k, line_buf *l)
{
    put_head(l, "mg", k, NULL);
    put_str(l, " v f c");
    if (r->h.extlen == 4) /* GAT family */
        put_num(l, "T", text_exptime(mr_be32(r->extras)));
}

static void write_touch(const mr_bin_request *r, const meta_key *k, line_buf *l)
{
    put_head(l, "mg", k, NULL);
    put_str(l, " f c");
    put_num(l, "T", text_exptime(mr_be32(r->extras)));
}

static void write_store(const mr_bin_request *r, const meta_key *k, line_buf *l)
{
    char len[16];
    snprintf(len, sizeof(len), " %" PRIu32, r->value_len);
    put_head(l, "ms", k, len);
    put_num(l, "F", mr_be32(r->extras));
    put_num(l, "T", text_exptime(mr_be32(r->extras + 4)));
    /* memcached makes any binary store with a CAS a CAS store (NREAD_CAS),
     * ADD included; meta's CAS store is mode S with C. */
    uint8_t base = mr_bin_base_opcode(r->h.opcode);
    const char *mode = r->h.cas                    ? " MS"
                       : base == MR_BIN_OP_ADD     ? " ME"
                       : base == MR_BIN_OP_REPLACE ? " MR"
                                                   : " MS";
    if (r->h.cas)
        put_num(l, "C", r->h.cas);
    put_str(l, mode);
    put_str(l, " c");
}

static void write_concat(const mr_bin_request *r, const meta_key *k, line_buf *l)
{
    char len[16];
    snprintf(len, sizeof(len), " %" PRIu32, r->value_len);
    put_head(l, "ms", k, len);
    put_str(l, mr_bin_base_opcode(r->h.opcode) == MR_BIN_OP_APPEND ? " MA" : " MP");
    if (r->h.cas) /* append/prepend check a given CAS, in binary as in meta */
        put_num(l, "C", r->h.cas);
    put_str(l, " c");
}

static void write_delete(const mr_bin_request *r, const meta_key *k, line_buf *l)
{
    put_head(l, "md", k, NULL);
    if (r->h.cas)
        put_num(l, "C", r->h.cas);
}

/* Extras: delta (8), initial (8), exptime (4). Binary creates a missing
 * counter with the initial value unless the exptime is 0xffffffff; meta's N
 * creates it with J, the delta not applied, exactly the same. */
static void write_arith(const mr_bin_request *r, const meta_key *k, line_buf *l)
{
    uint32_t exptime = mr_be32(r->extras + 16);
    put_head(l, "ma", k, NULL);
    if (exptime != UINT32_MAX) {
        put_num(l, "N", text_exptime(exptime));
        put_num(l, "J", mr_be64(r->extras + 8));
    }
    put_num(l, "D", mr_be64(r->extras));
    put_str(l, mr_bin_base_opcode(r->h.opcode) == MR_BIN_OP_INCREMENT ? " MI" : " MD");
    if (r->h.cas)
        put_num(l, "C", r->h.cas);
    put_str(l, " v c");
}

static void write_flush(const mr_bin_request *r, const meta_key *k, line_buf *l)
{
    put_str(l, "flush_all");
    /* memcached treats a delay of 0 as none, in binary as in text. */
    if (r->h.extlen == 4 && mr_be32(r->extras) != 0) {
        char tmp[16];
        int n = snprintf(tmp, sizeof(tmp), " %" PRIu32, text_exptime(mr_be32(r->extras)));
        put(l, tmp, (size_t)n);
    }
}

static void write_version(const mr_bin_request *r, const meta_key *k, line_buf *l)
{
    put_str(l, "version");
}

static void write_noop(const mr_bin_request *r, const meta_key *k, line_buf *l)
{
    put_str(l, "mn");
}

static const struct {
    mr_bin_class cls;
    write_fn write; /* NULL: no line (answered by memrelay) */
    bool keyed;     /* the line carries the key */
} kinds[] = {
    [MR_BIN_KIND_GET] = {MR_BIN_CLASS_KEYED, write_get, true},
    [MR_BIN_KIND_TOUCH] = {MR_BIN_CLASS_KEYED, write_touch, true},
    [MR_BIN_KIND_STORE] = {MR_BIN_CLASS_KEYED, write_store, true},
    [MR_BIN_KIND_CONCAT] = {MR_BIN_CLASS_KEYED, write_concat, true},
    [MR_BIN_KIND_DELETE] = {MR_BIN_CLASS_KEYED, write_delete, true},
    [MR_BIN_KIND_ARITH] = {MR_BIN_CLASS_KEYED, write_arith, true},
    [MR_BIN_KIND_NOOP] = {MR_BIN_CLASS_LOCAL, write_noop, false},
    [MR_BIN_KIND_VERSION] = {MR_BIN_CLASS_ANY_SERVER, write_version, false},
    [MR_BIN_KIND_QUIT] = {MR_BIN_CLASS_LOCAL, NULL, false},
    [MR_BIN_KIND_FLUSH] = {MR_BIN_CLASS_BROADCAST, write_flush, false},
    [MR_BIN_KIND_STAT] = {MR_BIN_CLASS_LOCAL, NULL, false},
    [MR_BIN_KIND_SASL_LIST] = {MR_BIN_CLASS_LOCAL, NULL, false},
    [MR_BIN_KIND_SASL_AUTH] = {MR_BIN_CLASS_LOCAL, NULL, false},
};

static void fill_plan(const mr_bin_request *r, mr_bin_plan *plan)
{
    memset(plan, 0, sizeof(*plan));
    uint8_t base = mr_bin_base_opcode(r->h.opcode);
    plan->opcode = r->h.opcode;
    plan->kind = r->kind;
    plan->quiet = mr_bin_is_quiet(r->h.opcode);
    plan->wants_key = base == MR_BIN_OP_GETK || base == MR_BIN_OP_GATK;
    plan->opaque = r->h.opaque;
    /* proto_bin.c's complete_update_bin(): NOT_STORED reads as "exists" for
     * an ADD and "not found" for a REPLACE, unless a CAS made it a CAS store. */
    plan->ns_status = MR_BIN_NOT_STORED;
    if (r->kind == MR_BIN_KIND_STORE && r->h.cas == 0 && base == MR_BIN_OP_ADD)
        plan->ns_status = MR_BIN_KEY_EEXISTS;
    if (r->kind == MR_BIN_KIND_STORE && r->h.cas == 0 && base == MR_BIN_OP_REPLACE)
        plan->ns_status = MR_BIN_KEY_ENOENT;
    plan->key_len = r->h.keylen <= MR_BIN_KEY_MAX ? r->h.keylen : 0;
    memcpy(plan->key, r->key, plan->key_len);
}

mr_bin_status mr_bin_translate(const mr_bin_request *req, char *out, size_t cap, mr_bin_meta *meta,
                               mr_bin_plan *plan)
{
    memset(meta, 0, sizeof(*meta));
    fill_plan(req, plan);
    if (req->kind == MR_BIN_KIND_UNKNOWN || req->kind >= sizeof(kinds) / sizeof(kinds[0]))
        return MR_BIN_UNKNOWN_COMMAND;
    meta->cls = kinds[req->kind].cls;
    if (!kinds[req->kind].write)
        return MR_BIN_SUCCESS;
    if (cap < MR_BIN_META_LINE_MAX)
        return MR_BIN_EINTERNAL;

    char keybuf[MR_BIN_KEY_MAX];
    meta_key k = {keybuf, 0, false};
    if (kinds[req->kind].keyed) {
        k.len = mr_bin_meta_key(req->key, req->h.keylen, keybuf, sizeof(keybuf), &k.base64);
        if (k.len == 0)
            return MR_BIN_NOT_SUPPORTED;
    }
    line_buf l = {out, cap - 2, 0, false};
    kinds[req->kind].write(req, &k, &l);
    if (l.overflow)
        return MR_BIN_EINTERNAL;
    out[l.len++] = '\r';
    out[l.len++] = '\n';
    meta->line_len = l.len;
    if (req->kind == MR_BIN_KIND_STORE || req->kind == MR_BIN_KIND_CONCAT) {
        meta->has_data = true;
        meta->data = req->value;
        meta->data_len = req->value_len;
    }
    return MR_BIN_SUCCESS;
}
