/* reply.c: one backend reply element at a time. */
#include "memrelay/reply.h"

#include <stdbool.h>
#include <string.h>

/* Parse a decimal uint32 token at *p, advancing past it. */
static int parse_u32(const char **p, const char *end, uint32_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (s >= end || *s < '0' || *s > '9')
        return -1;
    while (s < end && *s >= '0' && *s <= '9') {
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > UINT32_MAX)
            return -1;
        s++;
    }
    *p = s;
    *out = (uint32_t)v;
    return 0;
}

static const char *skip_token(const char *s, const char *end)
{
    while (s < end && *s != ' ')
        s++;
    return s;
}

/* Element with a data block: the line is complete at line_len; the data of
 * `bytes` bytes plus "\r\n" follows. */
static mr_reply_kind with_data(const char *buf, size_t len, uint32_t line_len, uint32_t bytes,
                               mr_reply_kind kind, mr_reply_elem *out)
{
    uint64_t total = (uint64_t)line_len + bytes + 2;
    out->line_len = line_len;
    if (len < total) {
        out->need = (uint32_t)total;
        return out->kind = MR_REPLY_NEED_MORE;
    }
    if (buf[total - 2] != '\r' || buf[total - 1] != '\n')
        return out->kind = MR_REPLY_BAD;
    out->len = (uint32_t)total;
    return out->kind = kind;
}

mr_reply_kind mr_reply_next(const char *buf, size_t len, uint32_t max_value, uint32_t max_line,
                            mr_reply_elem *out)
{
    memset(out, 0, sizeof(*out));
    size_t scan = len < max_line ? len : max_line;
    const char *nl = memchr(buf, '\n', scan);
    if (!nl) {
        if (len >= max_line)
            return out->kind = MR_REPLY_BAD;
        return out->kind = MR_REPLY_NEED_MORE;
    }
    uint32_t line_len = (uint32_t)(nl - buf) + 1;
    if (line_len < 2 || nl[-1] != '\r')
        return out->kind = MR_REPLY_BAD;
    const char *end = nl - 1; /* at '\r' */

    if (line_len >= 6 + 2 && memcmp(buf, "VALUE ", 6) == 0) {
        const char *p = buf + 6;
        const char *key_end = skip_token(p, end);
        uint32_t flags, bytes;
        if (key_end == p || key_end >= end)
            return out->kind = MR_REPLY_BAD;
        out->key_off = 6;
        out->key_len = (uint32_t)(key_end - p);
        p = key_end + 1;
        if (parse_u32(&p, end, &flags) < 0 || p >= end || *p != ' ')
            return out->kind = MR_REPLY_BAD;
        p++;
        if (parse_u32(&p, end, &bytes) < 0 || bytes > max_value)
            return out->kind = MR_REPLY_BAD;
        if (p != end && *p != ' ')
            return out->kind = MR_REPLY_BAD;
        return with_data(buf, len, line_len, bytes, MR_REPLY_VALUE, out);
    }
    if (line_len >= 3 + 2 && memcmp(buf, "VA ", 3) == 0) {
        const char *p = buf + 3;
        uint32_t bytes;
        if (parse_u32(&p, end, &bytes) < 0 || bytes > max_value || (p != end && *p != ' '))
            return out->kind = MR_REPLY_BAD;
        return with_data(buf, len, line_len, bytes, MR_REPLY_VA, out);
    }
    out->line_len = out->len = line_len;
    if (line_len == 5 && memcmp(buf, "END\r\n", 5) == 0)
        return out->kind = MR_REPLY_END;
    return out->kind = MR_REPLY_LINE;
}

int mr_reply_line_known(const char *line, size_t len)
{
    /* First tokens of every reply line of the classic and meta protocols. */
    static const char *const words[] = {
        "STORED",  "NOT_STORED", "EXISTS",       "NOT_FOUND",    "DELETED", "TOUCHED", "OK", "END",
        "VERSION", "ERROR",      "CLIENT_ERROR", "SERVER_ERROR", "RESET",   "STAT",    "HD", "EN",
        "NF",      "NS",         "EX",           "MN",           "ME",      "BUSY",    NULL,
    };
    size_t n = 0;
    while (n < len && line[n] != ' ' && line[n] != '\r')
        n++;
    if (n == 0)
        return 0;
    bool digits = true;
    for (size_t i = 0; i < n; i++)
        digits &= line[i] >= '0' && line[i] <= '9';
    if (digits)
        return 1;
    for (const char *const *w = words; *w; w++)
        if (strlen(*w) == n && memcmp(*w, line, n) == 0)
            return 1;
    return 0;
}

int mr_reply_is_error(const char *line, size_t len)
{
    return (len >= 5 && memcmp(line, "ERROR", 5) == 0) ||
           (len >= 12 && memcmp(line, "CLIENT_ERROR", 12) == 0) ||
           (len >= 12 && memcmp(line, "SERVER_ERROR", 12) == 0);
}
