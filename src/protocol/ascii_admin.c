/* ascii_admin.c: memcached's admin commands, which memrelay does not run.
 *
 * They change or dump one memcached's internals (memory limit, slab
 * rebalancing, LRU tuning, crawler dumps, log streams, extstore), which has
 * no single meaning behind a pool of servers. The rule: a line memcached
 * would refuse gets memcached's own refusal (ERROR, or its CLIENT_ERROR for
 * a bad number), so a client cannot tell the difference on malformed input;
 * a line memcached would accept gets "SERVER_ERROR <cmd> not supported by
 * memrelay". Where `noreply` is allowed it silences both, as in memcached.
 * `shutdown` and `refresh_certs` answer exactly what a memcached started
 * without -A and without TLS answers. Answers that depend on a server's
 * state (BADCLASS, NOSPARE, MEMLIMIT_TOO_SMALL...) are not imitated.
 */
#include <string.h>

#include "ascii_internal.h"

#define R_SHUTDOWN "ERROR: shutdown not enabled\r\n"
#define R_NO_TLS "Error TLS not enabled\r\n"
#define R_SLEEP "CLIENT_ERROR sleep must be one second or less\r\n"

static const char *const unsupported_reply[MR_CMD_COUNT] = {
#define MR_UNSUPPORTED_REPLY(e, name, cls) \
    [MR_CMD_##e] = "SERVER_ERROR " name " not supported by memrelay\r\n",
    MR_COMMANDS(MR_UNSUPPORTED_REPLY)
#undef MR_UNSUPPORTED_REPLY
};

static bool noreply_last(const mr_line *l)
{
    return l->ntok >= 2 && mr_tok_is(l, l->ntok - 1, "noreply");
}

static bool tok_u64(const mr_line *l, uint32_t t, uint64_t *v)
{
    return t < l->ntok && mr_num_u64(l->buf + l->tok[t].off, l->tok[t].len, v);
}

static bool tok_i64(const mr_line *l, uint32_t t)
{
    int64_t v;
    return t < l->ntok && mr_num_i64(l->buf + l->tok[t].off, l->tok[t].len, &v);
}

/* A decimal with an optional fraction, as strtod reads the values of
 * `lru tune` and `extstore max_frag` (approximately: no exponents). */
static bool tok_decimal(const mr_line *l, uint32_t t)
{
    if (t >= l->ntok)
        return false;
    const char *p = l->buf + l->tok[t].off;
    uint32_t n = l->tok[t].len, i = 0, digits = 0;
    if (i < n && (p[i] == '+' || p[i] == '-'))
        i++;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++)
        digits++;
    if (i < n && p[i] == '.')
        for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++)
            digits++;
    return digits > 0 && i == n;
}

static bool tok_in(const mr_line *l, uint32_t t, const char *const *names)
{
    for (; *names; names++)
        if (mr_tok_is(l, t, *names))
            return true;
    return false;
}

/* Is the line well-formed? *reply gets memcached's refusal when it is not. */
static bool slabs_ok(const mr_line *l, const char **reply)
{
    uint64_t level;
    if (mr_tok_is(l, 1, "reassign") && l->ntok == 4) {
        *reply = MR_R_BAD_FORMAT;
        return tok_i64(l, 2) && tok_i64(l, 3);
    }
    if (mr_tok_is(l, 1, "automove") && l->ntok >= 3) {
        if (!tok_u64(l, 2, &level)) {
            *reply = MR_R_BAD_FORMAT;
            return false;
        }
        return level <= 2;
    }
    return false;
}

static bool lru_crawler_ok(const mr_line *l, const char **reply)
{
    static const char *const toggles[] = {"enable", "disable", NULL};
    uint64_t v;
    if (l->ntok == 2)
        return tok_in(l, 1, toggles);
    if (l->ntok != 3)
        return false;
    if (mr_tok_is(l, 1, "crawl") || mr_tok_is(l, 1, "metadump"))
        return true;
    if (mr_tok_is(l, 1, "tocrawl") || mr_tok_is(l, 1, "sleep")) {
        if (!tok_u64(l, 2, &v)) {
            *reply = MR_R_BAD_FORMAT;
            return false;
        }
        if (mr_tok_is(l, 1, "sleep") && v > 1000000) {
            *reply = R_SLEEP;
            return false;
        }
        return true;
    }
    return false;
}

static bool lru_ok(const mr_line *l)
{
    static const char *const modes[] = {"flat", "segmented", NULL};
    uint64_t v;
    if (mr_tok_is(l, 1, "mode"))
        return tok_in(l, 2, modes);
    if (mr_tok_is(l, 1, "tune"))
        return l->ntok >= 6 && tok_u64(l, 2, &v) && tok_u64(l, 3, &v) && tok_decimal(l, 4) &&
               tok_u64(l, 5, &v);
    if (mr_tok_is(l, 1, "temp_ttl"))
        return tok_i64(l, 2);
    return false;
}

static bool extstore_ok(const mr_line *l)
{
    static const char *const settings[] = {"item_size",    "item_age",      "low_ttl",
                                           "recache_rate", "compact_under", "drop_under",
                                           "max_sleep",    "drop_unread",   NULL};
    uint64_t v;
    if (l->ntok < 3)
        return false;
    if (mr_tok_is(l, 1, "max_frag"))
        return tok_decimal(l, 2);
    return tok_in(l, 1, settings) && tok_u64(l, 2, &v);
}

static bool watch_ok(const mr_line *l)
{
    static const char *const streams[] = {"rawcmds",    "evictions", "fetchers",    "mutations", "sysevents",
                                          "connevents", "proxyreqs", "proxyevents", "proxyuser", NULL};
    uint32_t n = noreply_last(l) ? l->ntok - 1 : l->ntok;
    for (uint32_t t = 1; t < n; t++)
        if (t >= MR_TOK_MAX || !tok_in(l, t, streams))
            return false;
    return true;
}

mr_parse_status mr_parse_admin(const mr_line *l, mr_cmd cmd, mr_request_head *h)
{
    const char *refusal = MR_R_ERROR;
    bool ok = false, quietable = true;
    uint64_t v;
    switch (cmd) {
    case MR_CMD_SHUTDOWN:
        return mr_fail(h, R_SHUTDOWN, MR_AFTER_CONTINUE);
    case MR_CMD_REFRESH_CERTS:
        return mr_fail(h, R_NO_TLS, MR_AFTER_CONTINUE);
    case MR_CMD_CACHE_MEMLIMIT:
        ok = (l->ntok == 2 || l->ntok == 3) && tok_u64(l, 1, &v);
        quietable = l->ntok == 2 || l->ntok == 3;
        break;
    case MR_CMD_SLABS:
        ok = slabs_ok(l, &refusal);
        quietable = mr_tok_is(l, 1, "automove") && l->ntok >= 3;
        break;
    case MR_CMD_LRU_CRAWLER:
        ok = lru_crawler_ok(l, &refusal);
        quietable = false;
        break;
    case MR_CMD_LRU:
        ok = lru_ok(l);
        break;
    case MR_CMD_EXTSTORE:
        ok = extstore_ok(l);
        break;
    case MR_CMD_WATCH:
        ok = watch_ok(l);
        break;
    default:
        break;
    }
    if (quietable && noreply_last(l))
        return mr_fail(h, NULL, MR_AFTER_CONTINUE);
    return mr_fail(h, ok ? unsupported_reply[cmd] : refusal, MR_AFTER_CONTINUE);
}
