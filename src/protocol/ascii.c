/* ascii.c: the client-side request parser for memcached's text protocol.
 *
 * One call looks at the first line of the buffer only: it finds the "\n",
 * splits the line on spaces and validates it by the rules of the command,
 * which were measured one by one against memcached 1.6.18 (see
 * docs/protocol-errors.md). Meta commands live in ascii_meta.c, the admin
 * commands memrelay refuses in ascii_admin.c, base64 in base64.c.
 */
#include <limits.h>
#include <string.h>

#include "ascii_internal.h"

static const char *const cmd_names[MR_CMD_COUNT] = {
#define MR_CMD_NAME(e, name, cls) [MR_CMD_##e] = name,
    MR_COMMANDS(MR_CMD_NAME)
#undef MR_CMD_NAME
};

static const mr_cmd_class cmd_classes[MR_CMD_COUNT] = {
#define MR_CMD_CLASS(e, name, cls) [MR_CMD_##e] = cls,
    MR_COMMANDS(MR_CMD_CLASS)
#undef MR_CMD_CLASS
};

static const uint8_t cmd_name_lens[MR_CMD_COUNT] = {
#define MR_CMD_LEN(e, name, cls) [MR_CMD_##e] = sizeof(name) - 1,
    MR_COMMANDS(MR_CMD_LEN)
#undef MR_CMD_LEN
};

#define R_BAD_DELETE "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
#define R_BAD_EXPTIME "CLIENT_ERROR invalid exptime argument\r\n"
#define R_BAD_DELTA "CLIENT_ERROR invalid numeric delta argument\r\n"
#define R_LINE_TOO_LONG "SERVER_ERROR line too long\r\n"
#define R_END "END\r\n"

/* memcached lets a line without "\n" grow past MR_ASCII_MC_LINE_PEEK only
 * when, after at most this many spaces, it starts with "get " or "gets ". */
#define MC_GET_MAX_LEADING_SPACES 100

const char *mr_cmd_name(mr_cmd cmd)
{
    return cmd < MR_CMD_COUNT ? cmd_names[cmd] : "?";
}

mr_cmd_class mr_cmd_class_of(mr_cmd cmd)
{
    return cmd < MR_CMD_COUNT ? cmd_classes[cmd] : MR_CLASS_UNSUPPORTED;
}

mr_parse_status mr_fail(mr_request_head *h, const char *reply, mr_after_error after)
{
    h->error_reply = reply;
    h->after = after;
    return MR_PARSE_ERROR;
}

bool mr_tok_is(const mr_line *l, uint32_t t, const char *s)
{
    size_t n = strlen(s);
    return t < l->ntok && t < MR_TOK_MAX && l->tok[t].len == n && memcmp(l->buf + l->tok[t].off, s, n) == 0;
}

/* ---- numbers ---- */

/* isspace() in the C locale. */
static bool c_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* The shape strtoll/strtoull accept, plus memcached's check of what ends
 * the number. *mag is the magnitude; false if malformed or over 2^64 - 1. */
static bool scan_number(const char *p, uint32_t n, bool *neg, uint64_t *mag)
{
    uint32_t i = 0;
    while (i < n && c_space(p[i]))
        i++;
    *neg = false;
    if (i < n && (p[i] == '+' || p[i] == '-')) {
        *neg = p[i] == '-';
        i++;
    }
    uint32_t first = i;
    uint64_t v = 0;
    bool overflow = false;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            v = v * 10 + d;
    }
    if (i == first || overflow)
        return false;
    if (i < n && !c_space(p[i]))
        return false;
    *mag = v;
    return true;
}

bool mr_num_i64(const char *p, uint32_t n, int64_t *out)
{
    bool neg;
    uint64_t mag;
    if (!scan_number(p, n, &neg, &mag))
        return false;
    if (neg) {
        if (mag > (uint64_t)INT64_MAX + 1)
            return false;
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else {
        if (mag > (uint64_t)INT64_MAX)
            return false;
        *out = (int64_t)mag;
    }
    return true;
}

bool mr_num_u64(const char *p, uint32_t n, uint64_t *out)
{
    bool neg;
    uint64_t mag;
    if (!scan_number(p, n, &neg, &mag))
        return false;
    uint64_t v = neg ? (uint64_t)0 - mag : mag;
    if (neg && v > (uint64_t)INT64_MAX)
        return false;
    *out = v;
    return true;
}

bool mr_num_vlen(const char *p, uint32_t n, uint32_t *out)
{
    int64_t v;
    if (!mr_num_i64(p, n, &v))
        return false;
    int32_t t = (int32_t)(uint32_t)(uint64_t)v; /* memcached keeps the low 32 bits */
    if (t < 0 || t > INT_MAX - 2)
        return false;
    *out = (uint32_t)t;
    return true;
}

bool mr_item_too_large(uint32_t nkey, uint32_t flags, uint32_t vlen, uint32_t max)
{
    uint64_t total = 48u + 8u + (flags ? 4u : 0u) + (uint64_t)nkey + 1u + (uint64_t)vlen + 2u;
    return total > max;
}

/* ---- the line ---- */

static bool is_get_prefix(const char *buf, size_t len)
{
    size_t i = 0;
    while (i < len && buf[i] == ' ')
        i++;
    if (i > MC_GET_MAX_LEADING_SPACES)
        return false;
    return (len - i >= 4 && memcmp(buf + i, "get ", 4) == 0) ||
           (len - i >= 5 && memcmp(buf + i, "gets ", 5) == 0);
}

/* Split buf[from .. l->end) on spaces into l->tok[l->ntok ...]. */
static void tokenize(mr_line *l, uint32_t from)
{
    uint32_t i = from;
    for (;;) {
        while (i < l->end && l->buf[i] == ' ')
            i++;
        if (i >= l->end)
            return;
        uint32_t s = i;
        while (i < l->end && l->buf[i] != ' ')
            i++;
        if (l->ntok < MR_TOK_MAX)
            l->tok[l->ntok] = (mr_tok){s, i - s};
        l->ntok++;
    }
}

static const struct {
    const char *name;
    mr_cmd cmd;
} aliases[] = {
    {"bget", MR_CMD_GET}, /* memcached still answers the old name */
};

static mr_cmd lookup(const char *p, uint32_t n)
{
    for (int c = 0; c < MR_CMD_COUNT; c++)
        if (cmd_name_lens[c] == n && memcmp(cmd_names[c], p, n) == 0)
            return (mr_cmd)c;
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (strlen(aliases[i].name) == n && memcmp(aliases[i].name, p, n) == 0)
            return aliases[i].cmd;
    return MR_CMD_COUNT;
}

/* `noreply` as the last token: memcached's rule for every command that has it. */
static bool last_is_noreply(const mr_line *l, mr_request_head *h)
{
    uint32_t t = l->ntok - 1;
    if (t >= MR_TOK_MAX || !mr_tok_is(l, t, "noreply"))
        return false;
    h->noreply = true;
    /* The strip span runs from the end of the previous token. */
    uint32_t prev_end = l->tok[t - 1].off + l->tok[t - 1].len;
    h->strip_off = prev_end;
    h->strip_len = l->tok[t].off + l->tok[t].len - prev_end;
    return true;
}

static void set_key(mr_request_head *h, const mr_tok *t)
{
    h->key_off = t->off;
    h->key_len = t->len;
}

static void set_arg(mr_request_head *h, const mr_tok *t)
{
    h->arg_off = t->off;
    h->arg_len = t->len;
}

/* An error memcached silences under `noreply`. */
static mr_parse_status fail_quietable(mr_request_head *h, const char *reply)
{
    return mr_fail(h, h->noreply ? NULL : reply, MR_AFTER_CONTINUE);
}

/* ---- the classic commands ---- */

/* get gets gat gats: keys to the end of the line, however many. */
static mr_parse_status parse_retrieval(mr_line *l, uint32_t pos, mr_request_head *h)
{
    const char *buf = l->buf;
    uint32_t end = l->end, nkeys = 0;
    bool touch = h->cmd == MR_CMD_GAT || h->cmd == MR_CMD_GATS;
    while (pos < end && buf[pos] == ' ')
        pos++;
    if (pos >= end)
        return mr_fail(h, MR_R_ERROR, MR_AFTER_CONTINUE);
    if (touch) {
        uint32_t s = pos;
        while (pos < end && buf[pos] != ' ')
            pos++;
        h->arg_off = s;
        h->arg_len = pos - s;
        int64_t exptime;
        if (!mr_num_i64(buf + s, pos - s, &exptime))
            return mr_fail(h, R_BAD_EXPTIME, MR_AFTER_CONTINUE);
    }
    h->keys_off = end;
    for (;;) {
        while (pos < end && buf[pos] == ' ')
            pos++;
        if (pos >= end)
            break;
        uint32_t s = pos;
        while (pos < end && buf[pos] != ' ')
            pos++;
        if (pos - s > MR_KEY_MAX)
            return mr_fail(h, MR_R_BAD_FORMAT, MR_AFTER_CONTINUE);
        if (nkeys++ == 0) {
            h->keys_off = h->key_off = s;
            h->key_len = pos - s;
        }
    }
    h->nkeys = nkeys;
    /* "gat 0" with no key: memcached answers END and touches nothing. */
    if (nkeys == 0)
        return mr_fail(h, R_END, MR_AFTER_CONTINUE);
    return MR_PARSE_OK;
}

/* set add replace append prepend cas: <key> <flags> <exptime> <bytes> [<cas>] [noreply] */
static mr_parse_status parse_storage(const mr_line *l, uint32_t item_size_max, mr_request_head *h)
{
    bool is_cas = h->cmd == MR_CMD_CAS;
    uint32_t want = is_cas ? 6 : 5;
    if (l->ntok != want && l->ntok != want + 1)
        return mr_fail(h, MR_R_ERROR, MR_AFTER_CONTINUE);
    last_is_noreply(l, h);
    const char *b = l->buf;
    const mr_tok *t = l->tok;
    uint64_t flags, cas;
    int64_t exptime;
    uint32_t vlen;
    if (t[1].len > MR_KEY_MAX || !mr_num_u64(b + t[2].off, t[2].len, &flags) ||
        !mr_num_i64(b + t[3].off, t[3].len, &exptime) || !mr_num_vlen(b + t[4].off, t[4].len, &vlen) ||
        (is_cas && !mr_num_u64(b + t[5].off, t[5].len, &cas)))
        return fail_quietable(h, MR_R_BAD_FORMAT);
    set_key(h, &t[1]);
    if (mr_item_too_large(t[1].len, (uint32_t)flags, vlen, item_size_max)) {
        /* memcached swallows the data block; a failed set also unlinks the key. */
        h->swallow_len = vlen + 2;
        h->error_unlinks_key = h->cmd == MR_CMD_SET;
        return mr_fail(h, h->noreply ? NULL : MR_R_TOO_LARGE, MR_AFTER_SWALLOW);
    }
    h->data_len = vlen + 2;
    return MR_PARSE_OK;
}

/* delete <key> [0] [noreply] */
static mr_parse_status parse_delete(const mr_line *l, mr_request_head *h)
{
    if (l->ntok < 2 || l->ntok > 4)
        return mr_fail(h, MR_R_ERROR, MR_AFTER_CONTINUE);
    if (l->ntok > 2) {
        bool noreply = last_is_noreply(l, h);
        bool hold_is_zero = mr_tok_is(l, 2, "0");
        bool valid = l->ntok == 3 ? hold_is_zero || noreply : hold_is_zero && noreply;
        if (!valid)
            return fail_quietable(h, R_BAD_DELETE);
    }
    if (l->tok[1].len > MR_KEY_MAX)
        return fail_quietable(h, MR_R_BAD_FORMAT);
    set_key(h, &l->tok[1]);
    return MR_PARSE_OK;
}

/* incr|decr <key> <delta> [noreply], touch <key> <exptime> [noreply] */
static mr_parse_status parse_key_number(const mr_line *l, mr_request_head *h)
{
    if (l->ntok != 3 && l->ntok != 4)
        return mr_fail(h, MR_R_ERROR, MR_AFTER_CONTINUE);
    last_is_noreply(l, h);
    const mr_tok *num = &l->tok[2];
    if (l->tok[1].len > MR_KEY_MAX)
        return fail_quietable(h, MR_R_BAD_FORMAT);
    if (h->cmd == MR_CMD_TOUCH) {
        int64_t exptime;
        if (!mr_num_i64(l->buf + num->off, num->len, &exptime))
            return fail_quietable(h, R_BAD_EXPTIME);
    } else {
        uint64_t delta;
        if (!mr_num_u64(l->buf + num->off, num->len, &delta))
            return fail_quietable(h, R_BAD_DELTA);
    }
    set_key(h, &l->tok[1]);
    set_arg(h, num);
    return MR_PARSE_OK;
}

/* flush_all [delay] [noreply] */
static mr_parse_status parse_flush_all(const mr_line *l, mr_request_head *h)
{
    if (l->ntok > 3)
        return mr_fail(h, MR_R_ERROR, MR_AFTER_CONTINUE);
    bool noreply = l->ntok > 1 && last_is_noreply(l, h);
    if (l->ntok == (noreply ? 2u : 1u))
        return MR_PARSE_OK;
    int64_t delay;
    if (!mr_num_i64(l->buf + l->tok[1].off, l->tok[1].len, &delay))
        return fail_quietable(h, R_BAD_EXPTIME);
    set_arg(h, &l->tok[1]);
    return MR_PARSE_OK;
}

/* verbosity <level> [noreply] */
static mr_parse_status parse_verbosity(const mr_line *l, mr_request_head *h)
{
    if (l->ntok != 2 && l->ntok != 3)
        return mr_fail(h, MR_R_ERROR, MR_AFTER_CONTINUE);
    last_is_noreply(l, h);
    uint64_t level;
    if (!mr_num_u64(l->buf + l->tok[1].off, l->tok[1].len, &level))
        return fail_quietable(h, MR_R_BAD_FORMAT);
    set_arg(h, &l->tok[1]);
    return MR_PARSE_OK;
}

/* ---- entry points ---- */

static uint32_t min_u32(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

/* Where the first line ends, or a status when there is no usable line. */
static mr_parse_status find_line(const char *buf, size_t len, uint32_t max_line, uint32_t *line_len,
                                 mr_request_head *h)
{
    if (max_line == 0)
        max_line = MR_ASCII_DEFAULT_MAX_LINE;
    uint32_t peek = min_u32(max_line, MR_ASCII_MC_LINE_PEEK);
    uint32_t rbuf = min_u32(max_line, MR_ASCII_MC_READ_BUF);
    size_t scan = len < max_line ? len : max_line;
    const char *nl = memchr(buf, '\n', scan);
    if (nl) {
        *line_len = (uint32_t)(nl - buf) + 1;
        if (*line_len > rbuf && !is_get_prefix(buf, scan)) {
            h->line_len = *line_len;
            return mr_fail(h, NULL, MR_AFTER_CLOSE);
        }
        return MR_PARSE_OK;
    }
    bool get = is_get_prefix(buf, scan);
    if (len >= max_line) {
        h->line_len = (uint32_t)scan;
        return mr_fail(h, get ? R_LINE_TOO_LONG : NULL, MR_AFTER_CLOSE);
    }
    if (!get && len > peek) {
        h->line_len = (uint32_t)len;
        return mr_fail(h, NULL, MR_AFTER_CLOSE);
    }
    return MR_PARSE_NEED_MORE;
}

mr_parse_status mr_parse_request(const char *buf, size_t len, uint32_t item_size_max, uint32_t max_line,
                                 mr_request_head *out)
{
    memset(out, 0, sizeof(*out));
    out->cmd = MR_CMD_COUNT;
    if (item_size_max == 0)
        item_size_max = MR_ASCII_DEFAULT_ITEM_SIZE_MAX;

    uint32_t line_len = 0;
    mr_parse_status st = find_line(buf, len, max_line, &line_len, out);
    if (st != MR_PARSE_OK)
        return st;
    out->line_len = line_len;

    mr_line l;
    l.buf = buf;
    l.ntok = 0;
    l.end = line_len - 1;
    if (l.end > 0 && buf[l.end - 1] == '\r')
        l.end--;
    const char *nul = memchr(buf, '\0', l.end);
    if (nul)
        l.end = (uint32_t)(nul - buf);
    out->end_off = l.end;

    /* The command name first: retrievals walk their keys themselves. */
    uint32_t pos = 0;
    while (pos < l.end && buf[pos] == ' ')
        pos++;
    uint32_t name = pos;
    while (pos < l.end && buf[pos] != ' ')
        pos++;
    mr_cmd cmd = lookup(buf + name, pos - name);
    if (cmd == MR_CMD_COUNT)
        return mr_fail(out, MR_R_ERROR, MR_AFTER_CONTINUE);
    out->cmd = cmd;
    mr_cmd_class cls = cmd_classes[cmd];
    if (cls == MR_CLASS_RETRIEVAL)
        return parse_retrieval(&l, pos, out);

    l.tok[0] = (mr_tok){name, pos - name};
    l.ntok = 1;
    tokenize(&l, pos);

    if (cls == MR_CLASS_STORAGE)
        return parse_storage(&l, item_size_max, out);
    if (cls == MR_CLASS_META_KEYED)
        return mr_parse_meta(&l, cmd, item_size_max, out);
    if (cls == MR_CLASS_UNSUPPORTED)
        return mr_parse_admin(&l, cmd, out);
    switch (cmd) {
    case MR_CMD_DELETE:
        return parse_delete(&l, out);
    case MR_CMD_INCR:
    case MR_CMD_DECR:
    case MR_CMD_TOUCH:
        return parse_key_number(&l, out);
    case MR_CMD_FLUSH_ALL:
        return parse_flush_all(&l, out);
    case MR_CMD_VERBOSITY:
        return parse_verbosity(&l, out);
    case MR_CMD_STATS:
        if (l.ntok > 1)
            set_arg(out, &l.tok[1]);
        return MR_PARSE_OK;
    default: /* mn version quit: any arguments are ignored */
        return MR_PARSE_OK;
    }
}

const char *mr_check_data_block(const char *data, uint32_t data_len)
{
    if (data_len < 2 || data[data_len - 2] != '\r' || data[data_len - 1] != '\n')
        return MR_R_BAD_DATA;
    return NULL;
}

const char *mr_bad_data_reply(const mr_request_head *head)
{
    if (head->noreply && mr_cmd_class_of(head->cmd) == MR_CLASS_STORAGE)
        return NULL;
    return MR_R_BAD_DATA;
}

bool mr_is_binary_protocol(const char *buf, size_t len)
{
    return len > 0 && (unsigned char)buf[0] == 0x80;
}

bool mr_next_key(const char *buf, const mr_request_head *head, uint32_t *pos, uint32_t *key_off,
                 uint32_t *key_len)
{
    uint32_t i = *pos, end = head->end_off;
    while (i < end && buf[i] == ' ')
        i++;
    if (i >= end) {
        *pos = end;
        return false;
    }
    uint32_t s = i;
    while (i < end && buf[i] != ' ')
        i++;
    *key_off = s;
    *key_len = i - s;
    *pos = i;
    return true;
}

size_t mr_forward_line(const char *buf, const mr_request_head *head, char *out, size_t cap)
{
    size_t n = (size_t)head->end_off - head->strip_len + 2;
    if (cap < n)
        return 0;
    uint32_t cut = head->strip_len ? head->strip_off : head->end_off;
    memcpy(out, buf, cut);
    size_t w = cut;
    if (head->strip_len) {
        uint32_t rest = head->strip_off + head->strip_len;
        memcpy(out + w, buf + rest, head->end_off - rest);
        w += head->end_off - rest;
    }
    out[w++] = '\r';
    out[w++] = '\n';
    return w;
}
