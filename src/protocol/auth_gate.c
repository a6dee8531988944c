/* auth_gate.c: memcached's handling of a connection before it authenticates.
 *
 * Established by experiment against Debian's memcached 1.6.18 started with
 * `-Y authfile` (tests/integration/test_auth.py repeats the experiments
 * against memrelay). Until the connection authenticates, memcached does not
 * run its command parser at all; it reads one line at a time:
 *
 *  - a line (up to '\n', cut at the first NUL) split at single spaces whose
 *    first token is exactly `set` and whose fifth token is a length (C
 *    strtoul rules: optional sign, digits, then the end of the token or a
 *    whitespace byte such as the '\r' of "\r\n") starts an authentication:
 *    the key, flags and exptime are not looked at, `noreply` is ignored;
 *  - any other line, `quit`, `version`, meta commands and blank lines
 *    included, is answered `CLIENT_ERROR unauthenticated` and the connection
 *    stays open;
 *  - no newline within 2048 bytes closes the connection;
 *  - the data block must end in "\r\n" (else `CLIENT_ERROR bad command line
 *    termination`) and hold at least two space-separated tokens (else
 *    `CLIENT_ERROR bad authentication token format`); the first two are the
 *    user and the password, anything after them is ignored;
 *  - a match answers `STORED` (nothing is stored) and from then on the
 *    connection is an ordinary one; a mismatch answers `CLIENT_ERROR
 *    authentication failure` and another attempt may follow.
 */
#include "memrelay/auth_gate.h"

#include <string.h>

static const char R_UNAUTH[] = "CLIENT_ERROR unauthenticated\r\n";
static const char R_TERM[] = "CLIENT_ERROR bad command line termination\r\n";
static const char R_FORMAT[] = "CLIENT_ERROR bad authentication token format\r\n";
static const char R_FAILURE[] = "CLIENT_ERROR authentication failure\r\n";
static const char R_STORED[] = "STORED\r\n";

typedef struct {
    const char *p;
    uint32_t len;
} token;

/* memcached's tokenizer: tokens separated by one or more spaces (only
 * spaces: tabs and '\r' belong to tokens). Fills up to `max` and returns how
 * many tokens there are, up to `max`. */
static uint32_t tokenize(const char *s, uint32_t len, token *out, uint32_t max)
{
    uint32_t n = 0, i = 0;
    while (i < len && n < max) {
        while (i < len && s[i] == ' ')
            i++;
        if (i == len)
            break;
        uint32_t start = i;
        while (i < len && s[i] != ' ')
            i++;
        out[n].p = s + start;
        out[n].len = i - start;
        n++;
    }
    return n;
}

static bool c_isspace(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* memcached's safe_strtoul() on a token, with the result cut to 32 bits as
 * memcached stores it: strtoul's leading whitespace and sign, at least one
 * digit, no overflow of unsigned long; after the digits only the token's end
 * or whitespace; a '-' is allowed only where strtoul's negation leaves a
 * value that is not negative as a long (in practice "-0"). */
static bool length_token(const token *t, uint32_t *out)
{
    uint32_t i = 0;
    while (i < t->len && c_isspace(t->p[i]))
        i++;
    bool neg = false;
    if (i < t->len && (t->p[i] == '+' || t->p[i] == '-'))
        neg = t->p[i++] == '-';
    uint32_t digits = i;
    uint64_t v = 0;
    for (; i < t->len && t->p[i] >= '0' && t->p[i] <= '9'; i++) {
        uint64_t d = (uint64_t)(t->p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false; /* ERANGE */
        v = v * 10 + d;
    }
    if (i == digits)
        return false;
    if (i < t->len && !c_isspace(t->p[i]))
        return false;
    if (neg) {
        v = 0 - v;
        if ((int64_t)v < 0)
            return false;
    }
    *out = (uint32_t)v;
    return true;
}

void mr_auth_gate(const char *p, uint32_t avail, const mr_auth_table *t, mr_auth_step *out)
{
    memset(out, 0, sizeof(*out));
    const char *nl = avail ? memchr(p, '\n', avail) : NULL;
    if (nl == NULL) {
        out->action = avail > MR_AUTH_GATE_LINE_MAX ? MR_AUTH_CLOSE : MR_AUTH_NEED_MORE;
        return;
    }
    uint32_t line_len = (uint32_t)(nl - p) + 1;
    token tok[5];
    uint32_t ntok = tokenize(p, (uint32_t)strnlen(p, line_len - 1), tok, 5);
    uint32_t size = 0;
    if (ntok < 5 || tok[0].len != 3 || memcmp(tok[0].p, "set", 3) != 0 || !length_token(&tok[4], &size)) {
        out->action = MR_AUTH_REPLY;
        out->consumed = line_len;
        out->reply = R_UNAUTH;
        return;
    }
    if (size > MR_AUTH_GATE_DATA_MAX) {
        out->action = MR_AUTH_CLOSE;
        return;
    }
    uint32_t total = line_len + size + 2;
    if (avail < total) {
        out->action = MR_AUTH_NEED_MORE;
        out->need = total;
        return;
    }
    const char *data = p + line_len;
    out->action = MR_AUTH_REPLY;
    out->consumed = total;
    if (data[size] != '\r' || data[size + 1] != '\n') {
        out->reply = R_TERM;
        return;
    }
    token cred[2];
    if (tokenize(data, (uint32_t)strnlen(data, size), cred, 2) < 2) {
        out->reply = R_FORMAT;
        return;
    }
    if (mr_auth_check(t, cred[0].p, cred[0].len, cred[1].p, cred[1].len)) {
        out->reply = R_STORED;
        out->outcome = MR_AUTH_GRANTED;
    } else {
        out->reply = R_FAILURE;
        out->outcome = MR_AUTH_DENIED;
    }
}

mr_auth_penalty mr_auth_failure_penalty(uint32_t failures)
{
    if (failures >= MR_AUTH_MAX_FAILURES)
        return MR_AUTH_SHUT;
    return failures > MR_AUTH_FREE_FAILURES ? MR_AUTH_DELAY : MR_AUTH_GO_ON;
}

double mr_auth_failure_delay(uint32_t failures)
{
    if (mr_auth_failure_penalty(failures) != MR_AUTH_DELAY)
        return 0;
    double d = MR_AUTH_DELAY_FIRST;
    for (uint32_t i = MR_AUTH_FREE_FAILURES + 1; i < failures; i++)
        d *= 2;
    return d;
}
