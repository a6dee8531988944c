/* ascii_meta.c: validation of the meta commands mg ms md ma me, and which
 * replies meta quiet mode hides.
 *
 * memcached 1.6.18 checks a meta line in stages, and the stage decides both
 * the error text and, for ms, whether the data block is swallowed:
 *   1. the key: longer than 250 bytes (as written) -> bad command line format
 *   2. more than 19 tokens -> "options flags (are) too long"
 *   3. ms: <datalen> as set's <bytes> -> bad command line format
 *      (ms errors up to here leave the data block to be read as commands)
 *   4. each flag in order. A byte >= 0x80, a repeated flag or an unknown
 *      flag stops at once ("duplicate flag", "invalid flag"); a bad token
 *      only records its message and goes on, so the last one wins
 *      (F records none: its failure keeps the default "bad command line
 *      format"). md and ma replace any stage-4 error by "invalid or
 *      duplicate flag".
 *   5. only if stage 4 passed: O longer than 32 bytes records "opaque token
 *      too long"; ms and ma stop at once at an unknown M mode.
 *   6. ms: a value too large for the item size limit.
 * ms errors from stage 4 on swallow <datalen> + 2 bytes. Meta errors are
 * sent even with q.
 */
#include <string.h>

#include "ascii_internal.h"

#define R_INVALID_FLAG "CLIENT_ERROR invalid flag\r\n"
#define R_DUP_FLAG "CLIENT_ERROR duplicate flag\r\n"
#define R_DECODE_KEY "CLIENT_ERROR error decoding key\r\n"
#define R_BAD_TOKEN "CLIENT_ERROR bad token in command line format\r\n"
#define R_BAD_DELTA "CLIENT_ERROR invalid numeric delta value\r\n"
#define R_BAD_INITIAL "CLIENT_ERROR invalid numeric initial value\r\n"
#define R_M_LENGTH "CLIENT_ERROR incorrect length for M token\r\n"
#define R_OPAQUE_LONG "CLIENT_ERROR opaque token too long\r\n"
#define R_MG_TOO_LONG "CLIENT_ERROR options flags are too long\r\n"
#define R_TOO_LONG "CLIENT_ERROR options flags too long\r\n"
#define R_MD_MA_FLAG "CLIENT_ERROR invalid or duplicate flag\r\n"
#define R_MS_MODE "CLIENT_ERROR invalid mode for ms M token\r\n"
#define R_MA_MODE "CLIENT_ERROR invalid mode for ma M token\r\n"

/* memcached refuses a meta line with more tokens than this. */
#define META_MAX_TOKENS 19
#define OPAQUE_MAX 32

/* Flags memcached's meta parser knows; any other first byte is invalid. */
static bool known_flag(unsigned char c)
{
    return c && strchr("bcfhklqstuvCDFIJLMNOPRT", c) != NULL;
}

/* What stage 4 found. */
typedef struct {
    const char *fatal; /* an error that stopped the scan, or NULL */
    const char *soft;  /* the last recorded token error, or NULL */
    bool base64;       /* b, and the key decoded */
    bool vivify;       /* N (autovivify on a miss) */
    uint32_t nkey;     /* the key's length as memcached stores it (decoded with b) */
    uint32_t flags;    /* F, truncated to 32 bits as memcached keeps it */
} flag_scan;

static void scan_flags(const mr_line *l, uint32_t first, flag_scan *fs, mr_request_head *h)
{
    bool seen[128] = {false};
    const char *b = l->buf;
    const mr_tok *key = &l->tok[1];
    fs->nkey = key->len;
    for (uint32_t t = first; t < l->ntok; t++) {
        const char *p = b + l->tok[t].off;
        uint32_t n = l->tok[t].len;
        unsigned char c = (unsigned char)p[0];
        if (c >= 128 || seen[c]) {
            fs->fatal = R_DUP_FLAG;
            return;
        }
        if (!known_flag(c)) {
            fs->fatal = R_INVALID_FLAG;
            return;
        }
        seen[c] = true;
        int64_t i64;
        uint64_t u64;
        switch (c) {
        case 'b': {
            char decoded[MR_KEY_MAX];
            long dn = mr_base64_decode(b + key->off, key->len, decoded, sizeof(decoded));
            if (dn < 0) {
                fs->soft = R_DECODE_KEY;
            } else {
                fs->base64 = true;
                fs->nkey = (uint32_t)dn;
            }
            break;
        }
        case 'N':
        case 'R':
        case 'T':
            if (!mr_num_i64(p + 1, n - 1, &i64))
                fs->soft = R_BAD_TOKEN;
            fs->vivify |= c == 'N';
            break;
        case 'C':
            if (!mr_num_u64(p + 1, n - 1, &u64))
                fs->soft = R_BAD_TOKEN;
            break;
        case 'D':
            if (!mr_num_u64(p + 1, n - 1, &u64))
                fs->soft = R_BAD_DELTA;
            break;
        case 'J':
            if (!mr_num_u64(p + 1, n - 1, &u64))
                fs->soft = R_BAD_INITIAL;
            break;
        case 'F':
            if (!mr_num_u64(p + 1, n - 1, &u64))
                fs->soft = fs->soft ? fs->soft : MR_R_BAD_FORMAT;
            else
                fs->flags = (uint32_t)u64;
            break;
        case 'M':
            if (n != 2)
                fs->soft = R_M_LENGTH;
            break;
        case 'q': {
            h->noreply = true;
            uint32_t prev_end = l->tok[t - 1].off + l->tok[t - 1].len;
            h->strip_off = prev_end;
            h->strip_len = l->tok[t].off + n - prev_end;
            break;
        }
        default:
            break;
        }
    }
}

/* Stage 5: O's length, and the M mode of ms and ma. */
static const char *check_modes(const mr_line *l, uint32_t first, mr_cmd cmd)
{
    const char *err = NULL;
    const char *modes = cmd == MR_CMD_MS ? "EAPRS" : cmd == MR_CMD_MA ? "I+D-" : NULL;
    for (uint32_t t = first; t < l->ntok; t++) {
        const char *p = l->buf + l->tok[t].off;
        uint32_t n = l->tok[t].len;
        if (p[0] == 'O' && n - 1 > OPAQUE_MAX)
            err = R_OPAQUE_LONG;
        else if (p[0] == 'M' && modes && (n != 2 || !memchr(modes, p[1], strlen(modes))))
            return cmd == MR_CMD_MS ? R_MS_MODE : R_MA_MODE;
    }
    return err;
}

/* me <key> [b]: no flag rules at all; only a third token reading "b" counts. */
static mr_parse_status parse_me(const mr_line *l, mr_request_head *h)
{
    if (l->ntok < 2 || l->tok[1].len > MR_KEY_MAX)
        return mr_fail(h, MR_R_BAD_FORMAT, MR_AFTER_CONTINUE);
    h->key_off = l->tok[1].off;
    h->key_len = l->tok[1].len;
    if (mr_tok_is(l, 2, "b")) {
        char decoded[MR_KEY_MAX];
        if (mr_base64_decode(l->buf + h->key_off, h->key_len, decoded, sizeof(decoded)) < 0)
            return mr_fail(h, MR_R_BAD_FORMAT, MR_AFTER_CONTINUE);
        h->meta_base64 = true;
    }
    return MR_PARSE_OK;
}

mr_parse_status mr_parse_meta(const mr_line *l, mr_cmd cmd, uint32_t item_size_max, mr_request_head *h)
{
    if (cmd == MR_CMD_ME)
        return parse_me(l, h);
    if (l->ntok < 2)
        return mr_fail(h, MR_R_ERROR, MR_AFTER_CONTINUE);
    /* Stages 1-3. */
    if (l->tok[1].len > MR_KEY_MAX)
        return mr_fail(h, MR_R_BAD_FORMAT, MR_AFTER_CONTINUE);
    if (l->ntok > META_MAX_TOKENS)
        return mr_fail(h, cmd == MR_CMD_MG ? R_MG_TOO_LONG : R_TOO_LONG, MR_AFTER_CONTINUE);
    uint32_t first = 2, vlen = 0;
    if (cmd == MR_CMD_MS) {
        if (l->ntok < 3 || !mr_num_vlen(l->buf + l->tok[2].off, l->tok[2].len, &vlen))
            return mr_fail(h, MR_R_BAD_FORMAT, MR_AFTER_CONTINUE);
        first = 3;
        h->swallow_len = vlen + 2; /* what any later ms error swallows */
    }
    mr_after_error after = cmd == MR_CMD_MS ? MR_AFTER_SWALLOW : MR_AFTER_CONTINUE;

    /* Stages 4-5. */
    flag_scan fs = {0};
    scan_flags(l, first, &fs, h);
    const char *err = fs.fatal ? fs.fatal : fs.soft;
    if (err && (cmd == MR_CMD_MD || cmd == MR_CMD_MA))
        err = R_MD_MA_FLAG;
    if (!err)
        err = check_modes(l, first, cmd);
    if (err) {
        h->noreply = false;
        h->strip_off = h->strip_len = 0;
        return mr_fail(h, err, after);
    }
    h->key_off = l->tok[1].off;
    h->key_len = l->tok[1].len;
    h->meta_base64 = fs.base64;
    h->quiet_by_server = cmd == MR_CMD_MA && h->noreply && fs.vivify;

    /* Stage 6. */
    if (cmd == MR_CMD_MS) {
        if (mr_item_too_large(fs.nkey, fs.flags, vlen, item_size_max)) {
            h->error_unlinks_key = true;
            return mr_fail(h, MR_R_TOO_LARGE, MR_AFTER_SWALLOW);
        }
        h->swallow_len = 0;
        h->data_len = vlen + 2;
    }
    return MR_PARSE_OK;
}

/* The reply's two-letter code, when the line starts with it. */
static bool code_is(const char *line, size_t len, const char *code)
{
    return len >= 2 && line[0] == code[0] && line[1] == code[1] &&
           (len == 2 || line[2] == ' ' || line[2] == '\r' || line[2] == '\n');
}

bool mr_meta_quiet_suppresses(mr_cmd cmd, const char *reply_line, size_t len)
{
    switch (cmd) {
    case MR_CMD_MG:
        return code_is(reply_line, len, "EN");
    case MR_CMD_MS:
    case MR_CMD_MD:
        return code_is(reply_line, len, "HD");
    case MR_CMD_MA:
        return code_is(reply_line, len, "HD") || code_is(reply_line, len, "VA");
    default:
        return false;
    }
}
