/* reply_fit.c: the reply kinds memcached answers each command with.
 *
 * One row per command family: the reply keywords it may get. A VALUE item
 * or END is `VALUE`/`END`, a meta value `VA`, an incr/decr result a number
 * (`#`). Error lines fit everything (memcached sends SERVER_ERROR out of
 * memory, CLIENT_ERROR for a line it refuses, to any command).
 */
#include "memrelay/reply_fit.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *cmd; /* first token of the request line */
    mr_reply_fit fit;
} cmd_row;

static const cmd_row cmds[] = {
    {"get", MR_FIT_RETRIEVAL},   {"gets", MR_FIT_RETRIEVAL}, {"gat", MR_FIT_RETRIEVAL},
    {"gats", MR_FIT_RETRIEVAL},  {"set", MR_FIT_STORE},      {"add", MR_FIT_STORE},
    {"replace", MR_FIT_STORE},   {"append", MR_FIT_STORE},   {"prepend", MR_FIT_STORE},
    {"cas", MR_FIT_CAS},         {"delete", MR_FIT_DELETE},  {"incr", MR_FIT_ARITH},
    {"decr", MR_FIT_ARITH},      {"touch", MR_FIT_TOUCH},    {"mg", MR_FIT_MG},
    {"ms", MR_FIT_MS},           {"md", MR_FIT_MD},          {"ma", MR_FIT_MA},
    {"me", MR_FIT_ME},           {"mn", MR_FIT_MN},          {"flush_all", MR_FIT_FLUSH},
    {"version", MR_FIT_VERSION},
};

/* Space-separated reply keywords each family may get, besides error lines. */
static const char *const fits[MR_FIT_COUNT] = {
    [MR_FIT_RETRIEVAL] = "VALUE END",
    [MR_FIT_STORE] = "STORED NOT_STORED",
    [MR_FIT_CAS] = "STORED NOT_STORED EXISTS NOT_FOUND",
    [MR_FIT_DELETE] = "DELETED NOT_FOUND",
    [MR_FIT_ARITH] = "# NOT_FOUND",
    [MR_FIT_TOUCH] = "TOUCHED NOT_FOUND",
    [MR_FIT_MG] = "VA HD EN",
    [MR_FIT_MS] = "HD NS EX NF",
    [MR_FIT_MD] = "HD NF EX",
    [MR_FIT_MA] = "VA HD NF NS EX EN",
    [MR_FIT_ME] = "ME EN",
    [MR_FIT_MN] = "MN",
    [MR_FIT_FLUSH] = "OK",
    [MR_FIT_VERSION] = "VERSION",
};

static const char *const names[MR_FIT_COUNT] = {
#define MR_FIT_NAME(e, what) [MR_FIT_##e] = what,
    MR_REPLY_FITS(MR_FIT_NAME)
#undef MR_FIT_NAME
};

const char *mr_reply_fit_name(mr_reply_fit fit)
{
    return fit < MR_FIT_COUNT ? names[fit] : "?";
}

static uint32_t token_len(const char *s, uint32_t len)
{
    uint32_t n = 0;
    while (n < len && s[n] != ' ' && s[n] != '\r' && s[n] != '\n')
        n++;
    return n;
}

mr_reply_fit mr_reply_fit_of(const char *line, uint32_t len)
{
    uint32_t n = token_len(line, len);
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strlen(cmds[i].cmd) == n && memcmp(cmds[i].cmd, line, n) == 0)
            return cmds[i].fit;
    return MR_FIT_ANY;
}

/* Is the word w[0..n) one of the space-separated words of `list`? */
static bool in_list(const char *list, const char *w, uint32_t n)
{
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ' ');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && memcmp(p, w, n) == 0)
            return true;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

static bool is_number(const char *w, uint32_t n)
{
    if (n == 0)
        return false;
    for (uint32_t i = 0; i < n; i++)
        if (w[i] < '0' || w[i] > '9')
            return false;
    return true;
}

static bool is_error_word(const char *w, uint32_t n)
{
    return in_list("ERROR CLIENT_ERROR SERVER_ERROR BUSY", w, n);
}

const char *mr_reply_misfit(mr_reply_fit fit, bool fenced, bool retrieval, mr_reply_kind kind,
                            const char *line, uint32_t line_len, char *buf, uint32_t cap)
{
    uint32_t n = token_len(line, line_len);
    const char *word = line;
    bool ok;
    if (fit == MR_FIT_ANY || fit == MR_FIT_UNKNOWN || fit >= MR_FIT_COUNT) {
        /* Not a command of the table: the older, coarser rule. */
        if (retrieval)
            ok = kind == MR_REPLY_VALUE || kind == MR_REPLY_END ||
                 (kind == MR_REPLY_LINE && mr_reply_line_known(line, line_len));
        else
            ok = kind == MR_REPLY_VA || (kind == MR_REPLY_LINE && mr_reply_line_known(line, line_len));
    } else if (kind == MR_REPLY_LINE && is_number(word, n)) {
        ok = in_list(fits[fit], "#", 1);
    } else {
        ok = in_list(fits[fit], word, n);
    }
    /* The usual case, a fitting reply, has been decided by one list. */
    if (ok || (kind == MR_REPLY_LINE && is_error_word(word, n)) ||
        (fenced && kind == MR_REPLY_LINE && n == 2 && memcmp(word, "MN", 2) == 0))
        return NULL;
    uint32_t show = n > 32 ? 32 : n;
    if (n == 0)
        snprintf(buf, cap, "an empty line for %s", mr_reply_fit_name(fit));
    else
        snprintf(buf, cap, "%.*s%s for %s", (int)show, word, show < n ? "..." : "", mr_reply_fit_name(fit));
    for (char *c = buf; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
            *c = '?';
    return buf;
}
