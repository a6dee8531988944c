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

/* The reply words the table knows, one bit each: a reply is checked with
 * one mask test (this runs for every reply element). */
enum {
    W_VALUE = 1u << 0,
    W_END = 1u << 1,
    W_STORED = 1u << 2,
    W_NOT_STORED = 1u << 3,
    W_EXISTS = 1u << 4,
    W_NOT_FOUND = 1u << 5,
    W_DELETED = 1u << 6,
    W_NUMBER = 1u << 7, /* an incr/decr result */
    W_TOUCHED = 1u << 8,
    W_VA = 1u << 9,
    W_HD = 1u << 10,
    W_EN = 1u << 11,
    W_NS = 1u << 12,
    W_EX = 1u << 13,
    W_NF = 1u << 14,
    W_ME = 1u << 15,
    W_MN = 1u << 16,
    W_OK = 1u << 17,
    W_VERSION = 1u << 18,
    W_ERROR = 1u << 19, /* ERROR, CLIENT_ERROR, SERVER_ERROR, BUSY: fit every command */
};

typedef struct {
    const char *word;
    uint8_t len;
    uint32_t bit;
} word_row;

static const word_row words[] = {
    {"VALUE", 5, W_VALUE},
    {"END", 3, W_END},
    {"STORED", 6, W_STORED},
    {"NOT_STORED", 10, W_NOT_STORED},
    {"EXISTS", 6, W_EXISTS},
    {"NOT_FOUND", 9, W_NOT_FOUND},
    {"DELETED", 7, W_DELETED},
    {"TOUCHED", 7, W_TOUCHED},
    {"VA", 2, W_VA},
    {"HD", 2, W_HD},
    {"EN", 2, W_EN},
    {"NS", 2, W_NS},
    {"EX", 2, W_EX},
    {"NF", 2, W_NF},
    {"ME", 2, W_ME},
    {"MN", 2, W_MN},
    {"OK", 2, W_OK},
    {"VERSION", 7, W_VERSION},
    {"ERROR", 5, W_ERROR},
    {"CLIENT_ERROR", 12, W_ERROR},
    {"SERVER_ERROR", 12, W_ERROR},
    {"BUSY", 4, W_ERROR},
};

typedef struct {
    const char *cmd; /* first token of the request line */
    uint8_t len;
    mr_reply_fit fit;
} cmd_row;

static const cmd_row cmds[] = {
    {"get", 3, MR_FIT_RETRIEVAL},   {"gets", 4, MR_FIT_RETRIEVAL}, {"gat", 3, MR_FIT_RETRIEVAL},
    {"gats", 4, MR_FIT_RETRIEVAL},  {"set", 3, MR_FIT_STORE},      {"add", 3, MR_FIT_STORE},
    {"replace", 7, MR_FIT_STORE},   {"append", 6, MR_FIT_STORE},   {"prepend", 7, MR_FIT_STORE},
    {"cas", 3, MR_FIT_CAS},         {"delete", 6, MR_FIT_DELETE},  {"incr", 4, MR_FIT_ARITH},
    {"decr", 4, MR_FIT_ARITH},      {"touch", 5, MR_FIT_TOUCH},    {"mg", 2, MR_FIT_MG},
    {"ms", 2, MR_FIT_MS},           {"md", 2, MR_FIT_MD},          {"ma", 2, MR_FIT_MA},
    {"me", 2, MR_FIT_ME},           {"mn", 2, MR_FIT_MN},          {"flush_all", 9, MR_FIT_FLUSH},
    {"version", 7, MR_FIT_VERSION},
};

/* The reply words each family may get, besides error lines. */
static const uint32_t fits[MR_FIT_COUNT] = {
    [MR_FIT_RETRIEVAL] = W_VALUE | W_END,
    [MR_FIT_STORE] = W_STORED | W_NOT_STORED,
    [MR_FIT_CAS] = W_STORED | W_NOT_STORED | W_EXISTS | W_NOT_FOUND,
    [MR_FIT_DELETE] = W_DELETED | W_NOT_FOUND,
    [MR_FIT_ARITH] = W_NUMBER | W_NOT_FOUND,
    [MR_FIT_TOUCH] = W_TOUCHED | W_NOT_FOUND,
    [MR_FIT_MG] = W_VA | W_HD | W_EN,
    [MR_FIT_MS] = W_HD | W_NS | W_EX | W_NF,
    [MR_FIT_MD] = W_HD | W_NF | W_EX,
    [MR_FIT_MA] = W_VA | W_HD | W_NF | W_NS | W_EX | W_EN,
    [MR_FIT_ME] = W_ME | W_EN,
    [MR_FIT_MN] = W_MN,
    [MR_FIT_FLUSH] = W_OK,
    [MR_FIT_VERSION] = W_VERSION,
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
        if (cmds[i].len == n && cmds[i].cmd[0] == line[0] && memcmp(cmds[i].cmd, line, n) == 0)
            return cmds[i].fit;
    return MR_FIT_ANY;
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

/* The element's word as a bit: its kind says it for items (no scan of the
 * line: a get's VALUE and END cost a compare each), a line is looked up. */
static uint32_t word_bit(mr_reply_kind kind, const char *line, uint32_t line_len)
{
    if (kind == MR_REPLY_VALUE)
        return W_VALUE;
    if (kind == MR_REPLY_END)
        return W_END;
    if (kind == MR_REPLY_VA)
        return W_VA;
    if (kind != MR_REPLY_LINE)
        return 0;
    const char *w = line;
    uint32_t n = token_len(line, line_len);
    if (is_number(w, n))
        return W_NUMBER;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (words[i].len == n && words[i].word[0] == w[0] && memcmp(words[i].word, w, n) == 0)
            return words[i].bit;
    return 0;
}

const char *mr_reply_misfit(mr_reply_fit fit, bool fenced, bool retrieval, mr_reply_kind kind,
                            const char *line, uint32_t line_len, char *buf, uint32_t cap)
{
    uint32_t bit = word_bit(kind, line, line_len);
    bool ok;
    if (fit == MR_FIT_ANY || fit == MR_FIT_UNKNOWN || fit >= MR_FIT_COUNT) {
        /* Not a command of the table: the older, coarser rule. */
        if (retrieval)
            ok = kind == MR_REPLY_VALUE || kind == MR_REPLY_END ||
                 (kind == MR_REPLY_LINE && mr_reply_line_known(line, line_len));
        else
            ok = kind == MR_REPLY_VA || (kind == MR_REPLY_LINE && mr_reply_line_known(line, line_len));
    } else {
        ok = (fits[fit] & bit) != 0;
    }
    /* The usual case, a fitting reply, has been decided by one mask. */
    if (ok || (kind == MR_REPLY_LINE && bit == W_ERROR) || (fenced && kind == MR_REPLY_LINE && bit == W_MN))
        return NULL;
    const char *word = line;
    uint32_t n = token_len(line, line_len);
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
