/* auth.c: the credentials table behind a pool's `auth_file`.
 *
 * The file is memcached's `-Y` format: one `user:password` per line, the
 * user ending at the first ':', the password running to the end of the line
 * (a trailing "\r" excluded), so a password may hold ':'. Every file
 * memcached accepts and can authenticate against loads here, except that we
 * refuse, with the line number, what memcached silently ignores or could
 * never match: blank lines (memcached refuses them too), empty fields,
 * fields with spaces (the client's "user password" token is split at
 * spaces), NUL bytes, over-long lines and more than MR_AUTH_ENTRIES_MAX
 * entries (memcached drops every entry after the 8th).
 *
 * Entries are stored zero-padded to a fixed width and checked with a
 * branch-free comparison over that whole width, for every entry, so the
 * time an attempt takes says nothing about which part was wrong. A user
 * listed twice with two passwords accepts both (as memcached does), which is
 * how a password is rotated without a window where clients fail.
 */
#include "memrelay/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    unsigned char user[MR_AUTH_FIELD_MAX + 1]; /* zero-padded */
    unsigned char pass[MR_AUTH_FIELD_MAX + 1]; /* zero-padded */
    uint32_t ulen, plen;
} auth_entry;

struct mr_auth_table {
    uint32_t refs; /* atomic */
    size_t n;
    auth_entry e[]; /* n entries */
};

static void *fail(mr_auth_error *err, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void *fail(mr_auth_error *err, int line, const char *fmt, ...)
{
    err->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return NULL;
}

/* What is wrong with one field (a user name or a password), or NULL. */
static const char *bad_field(const char *s, size_t len)
{
    if (len == 0)
        return "is empty";
    if (len > MR_AUTH_FIELD_MAX)
        return "is longer than 255 bytes";
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ')
            return "contains a space (clients send \"user password\", split at spaces, so it could never "
                   "match)";
        if (s[i] == '\0')
            return "contains a NUL byte";
        if (s[i] == '\r')
            return "contains a carriage return";
    }
    return NULL;
}

static size_t count_lines(const char *text, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n')
            n++;
    return n + (len > 0 && text[len - 1] != '\n');
}

mr_auth_table *mr_auth_parse(const char *text, size_t len, mr_auth_error *err)
{
    memset(err, 0, sizeof(*err));
    size_t lines = count_lines(text, len);
    if (lines == 0)
        return fail(err, 0, "has no credentials (expected lines of user:password)");
    if (lines > MR_AUTH_ENTRIES_MAX)
        return fail(err, 0, "has %zu lines; at most %u credentials are allowed", lines, MR_AUTH_ENTRIES_MAX);
    mr_auth_table *t = calloc(1, sizeof(*t) + lines * sizeof(auth_entry));
    if (t == NULL)
        return fail(err, 0, "out of memory");
    t->refs = 1;

    const char *p = text, *end = text + len;
    for (int line = 1; p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        const char *next = nl ? nl + 1 : end;
        if (eol > p && eol[-1] == '\r')
            eol--;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        const char *why = NULL, *field = NULL;
        if (eol == p)
            why = "is empty (expected user:password)";
        else if (colon == NULL)
            why = "has no ':' between the user name and the password";
        else if ((why = bad_field(p, (size_t)(colon - p))) != NULL)
            field = "the user name";
        else if ((why = bad_field(colon + 1, (size_t)(eol - colon - 1))) != NULL)
            field = "the password";
        if (why != NULL) {
            mr_auth_unref(t);
            if (field != NULL)
                return fail(err, line, "line %d: %s %s", line, field, why);
            return fail(err, line, "line %d %s", line, why);
        }
        auth_entry *e = &t->e[t->n++];
        e->ulen = (uint32_t)(colon - p);
        e->plen = (uint32_t)(eol - colon - 1);
        memcpy(e->user, p, e->ulen);
        memcpy(e->pass, colon + 1, e->plen);
        p = next;
    }
    return t;
}

mr_auth_table *mr_auth_load(const char *path, mr_auth_error *err)
{
    memset(err, 0, sizeof(*err));
    /* O_NONBLOCK: a FIFO put there by mistake must not hang the loader. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return fail(err, 0, "cannot be read: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fail(err, 0, "cannot be read: %s", strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, 0, "is not a regular file");
    }
    /* The file holds passwords in clear: anyone who can read it can log
     * in, and anyone who can write it can add themselves. Refuse it until
     * only its owner has access, as ssh does with private keys. */
    if ((st.st_mode & 077) != 0) {
        close(fd);
        return fail(err, 0,
                    "is accessible by group or others (mode %04o): it holds passwords; allow only its owner "
                    "(chmod 600)",
                    (unsigned)(st.st_mode & 07777));
    }
    if (st.st_size > (off_t)MR_AUTH_FILE_MAX) {
        close(fd);
        return fail(err, 0, "is larger than %u bytes", MR_AUTH_FILE_MAX);
    }
    char *buf = malloc(MR_AUTH_FILE_MAX + 1);
    if (buf == NULL) {
        close(fd);
        return fail(err, 0, "out of memory");
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, MR_AUTH_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            explicit_bzero(buf, len);
            free(buf);
            return fail(err, 0, "cannot be read: %s", strerror(e));
        }
        if (n == 0 || (len += (size_t)n) > MR_AUTH_FILE_MAX)
            break;
    }
    close(fd);
    mr_auth_table *t = len > MR_AUTH_FILE_MAX ? fail(err, 0, "is larger than %u bytes", MR_AUTH_FILE_MAX)
                                              : mr_auth_parse(buf, len, err);
    explicit_bzero(buf, len < MR_AUTH_FILE_MAX + 1 ? len : MR_AUTH_FILE_MAX + 1);
    free(buf);
    return t;
}

mr_auth_table *mr_auth_ref(mr_auth_table *t)
{
    if (t != NULL)
        __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
    return t;
}

void mr_auth_unref(mr_auth_table *t)
{
    if (t == NULL || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    explicit_bzero(t->e, t->n * sizeof(auth_entry));
    free(t);
}

size_t mr_auth_count(const mr_auth_table *t)
{
    return t ? t->n : 0;
}

/* 0 when the first `len` bytes (zero-padded to the fixed width) equal
 * `field`, nonzero otherwise; always touches the whole width. */
static unsigned diff_field(const unsigned char field[MR_AUTH_FIELD_MAX + 1], uint32_t flen,
                           const unsigned char given[MR_AUTH_FIELD_MAX + 1], uint32_t glen)
{
    unsigned d = flen ^ glen;
    for (size_t i = 0; i < MR_AUTH_FIELD_MAX + 1; i++)
        d |= (unsigned)(field[i] ^ given[i]);
    return d;
}

bool mr_auth_check(const mr_auth_table *t, const char *user, size_t ulen, const char *pass, size_t plen)
{
    if (t == NULL)
        return false;
    /* Too long to be stored: copy a truncated version anyway and let the
     * length make it fail, so the comparison below runs all the same. */
    unsigned char u[MR_AUTH_FIELD_MAX + 1] = {0}, pw[MR_AUTH_FIELD_MAX + 1] = {0};
    uint32_t ul = ulen > MR_AUTH_FIELD_MAX ? MR_AUTH_FIELD_MAX + 1 : (uint32_t)ulen;
    uint32_t pl = plen > MR_AUTH_FIELD_MAX ? MR_AUTH_FIELD_MAX + 1 : (uint32_t)plen;
    memcpy(u, user, ul > MR_AUTH_FIELD_MAX ? MR_AUTH_FIELD_MAX : ul);
    memcpy(pw, pass, pl > MR_AUTH_FIELD_MAX ? MR_AUTH_FIELD_MAX : pl);
    unsigned ok = 0;
    for (size_t i = 0; i < t->n; i++) {
        const auth_entry *e = &t->e[i];
        unsigned d = diff_field(e->user, e->ulen, u, ul) | diff_field(e->pass, e->plen, pw, pl);
        ok |= ((d | (0u - d)) >> 31) ^ 1u; /* 1 when d == 0, without a branch (d < 2^31) */
    }
    explicit_bzero(pw, sizeof(pw));
    return ok != 0;
}
