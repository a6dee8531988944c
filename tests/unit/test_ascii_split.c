/* test_ascii_split.c: the parser is incremental and cheap. Every valid
 * command, cut at every byte, needs more until its line is complete and then
 * parses exactly as when it arrived whole; pipelined commands parse one by
 * one; the parser reads nothing past the first line, so a 1 MiB pipeline of
 * tiny commands costs linear time.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "memrelay/ascii.h"

#define ITEM_MAX 1048576u

/* Commands memcached accepts, data blocks included. */
static const char *const valid[] = {
    "get foo\r\n",
    "get a bb ccc\n",
    "gets foo bar\r\n",
    "gat 10 foo\r\n",
    "gats -1 foo bar\r\n",
    "bget foo\r\n",
    "set foo 0 0 5\r\nhello\r\n",
    "set foo 1 2 5 noreply\r\nhello\r\n",
    "add k 4294967295 0 0\r\n\r\n",
    "replace k 0 0 1\r\nx\r\n",
    "append k 0 0 2 noreply\r\nxy\r\n",
    "prepend k 0 0 2\nxy\r\n",
    "cas k 0 0 1 12345\r\nx\r\n",
    "cas k 0 0 1 12345 noreply\r\nx\r\n",
    "delete foo\r\n",
    "delete foo 0\r\n",
    "delete foo noreply\r\n",
    "delete foo 0 noreply\r\n",
    "incr n 1\r\n",
    "decr n 18446744073709551615 noreply\r\n",
    "touch foo 100\r\n",
    "touch foo 100 noreply\r\n",
    "mg foo v\r\n",
    "mg Zm9v b k v O123 q\r\n",
    "mg foo s v f t c k O1 N30 R10 T30 q\r\n",
    "ms foo 5 T30 F3 q\r\nhello\r\n",
    "ms Zm9v 2 b MS I C99 k O7\r\nhi\r\n",
    "md foo q O1\r\n",
    "md foo I T30 C5\r\n",
    "ma n\r\n",
    "ma n MD D5 N0 J10 v q\r\n",
    "me foo\r\n",
    "me Zm9v b\r\n",
    "mn\r\n",
    "stats\r\n",
    "stats items\r\n",
    "verbosity 1\r\n",
    "verbosity 1 noreply\r\n",
    "version\r\n",
    "quit\r\n",
    "flush_all\r\n",
    "flush_all 10 noreply\r\n",
    "  get   spaced   keys  \r\n",
};

/* Lines memcached refuses: still whole lines, found at every split. */
static const char *const invalid[] = {
    "bogus\r\n",        "GET foo\r\n",  "get\r\n",       "set k 0 0\r\n",         "set k 0 0 -1 noreply\r\n",
    "delete foo 1\r\n", "incr n x\r\n", "mg foo zz\r\n", "ms foo 2 zz\r\nhi\r\n", "set foo 0 0 2000000\r\n",
    "shutdown\r\n",     "\r\n",
};

static mr_parse_status parse_copy(const char *s, size_t n, mr_request_head *h)
{
    /* An exact-size copy, so that reading past `n` is an error for ASan. */
    char *p = malloc(n ? n : 1);
    memcpy(p, s, n);
    mr_parse_status st = mr_parse_request(p, n, ITEM_MAX, MR_ASCII_DEFAULT_MAX_LINE, h);
    free(p);
    return st;
}

static void check_every_split(const char *s, mr_parse_status want)
{
    size_t len = strlen(s);
    mr_request_head whole, part;
    mr_parse_status st = parse_copy(s, len, &whole);
    cr_assert_eq(st, want, "'%s': status %d, reply %s", s, st, whole.error_reply ? whole.error_reply : "-");
    for (size_t k = 0; k < len; k++) {
        st = parse_copy(s, k, &part);
        if (k < whole.line_len) {
            cr_assert_eq(st, MR_PARSE_NEED_MORE, "'%s' cut at %zu: status %d", s, k, st);
        } else {
            /* the line is complete: data still due does not change the answer */
            cr_assert_eq(st, want, "'%s' cut at %zu: status %d", s, k, st);
            cr_assert(memcmp(&part, &whole, sizeof(whole)) == 0, "'%s' cut at %zu: different head", s, k);
        }
    }
}

Test(ascii_split, every_valid_command_at_every_split_point)
{
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
        check_every_split(valid[i], MR_PARSE_OK);
}

Test(ascii_split, every_refused_command_at_every_split_point)
{
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
        check_every_split(invalid[i], MR_PARSE_ERROR);
}

Test(ascii_split, valid_commands_take_exactly_their_line_and_data)
{
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        mr_request_head h;
        size_t len = strlen(valid[i]);
        cr_assert_eq(parse_copy(valid[i], len, &h), MR_PARSE_OK);
        cr_assert_eq(h.line_len + h.data_len, len, "'%s'", valid[i]);
        if (h.data_len)
            cr_assert_null(mr_check_data_block(valid[i] + h.line_len, h.data_len));
    }
}

/* Parse a buffer to its end the way a client loop does; returns commands seen. */
static size_t drain(const char *buf, size_t len, mr_request_head *heads, size_t max)
{
    size_t pos = 0, n = 0;
    while (pos < len) {
        mr_request_head h;
        mr_parse_status st = mr_parse_request(buf + pos, len - pos, ITEM_MAX, MR_ASCII_DEFAULT_MAX_LINE, &h);
        cr_assert_neq(st, MR_PARSE_NEED_MORE, "stuck at %zu", pos);
        cr_assert_neq(h.after, MR_AFTER_CLOSE);
        if (heads && n < max)
            heads[n] = h;
        n++;
        pos += h.line_len + h.data_len + (h.after == MR_AFTER_SWALLOW ? h.swallow_len : 0);
    }
    cr_assert_eq(pos, len);
    return n;
}

Test(ascii_split, a_pipeline_parses_one_command_at_a_time_with_the_same_heads)
{
    const size_t nvalid = sizeof(valid) / sizeof(valid[0]);
    size_t cap = 0;
    for (size_t i = 0; i < nvalid; i++)
        cap += strlen(valid[i]);
    char *buf = malloc(cap);
    size_t len = 0;
    for (size_t i = 0; i < nvalid; i++) {
        memcpy(buf + len, valid[i], strlen(valid[i]));
        len += strlen(valid[i]);
    }
    mr_request_head heads[64];
    cr_assert_eq(drain(buf, len, heads, 64), nvalid);
    for (size_t i = 0; i < nvalid; i++) {
        mr_request_head alone;
        cr_assert_eq(parse_copy(valid[i], strlen(valid[i]), &alone), MR_PARSE_OK);
        cr_assert(memcmp(&alone, &heads[i], sizeof(alone)) == 0, "'%s' differs inside the pipeline",
                  valid[i]);
    }
    free(buf);
}

Test(ascii_split, a_pipeline_with_errors_keeps_its_boundaries)
{
    /* The data of a refused set is read as commands, as memcached reads it. */
    const char *s =
        "set k 0 0\r\nhello\r\nget foo\r\nms foo 2 zz\r\nhi\r\nmn\r\nset foo 0 0 1048577 noreply\r\n";
    size_t len = strlen(s);
    char *buf = malloc(len + 1048579);
    memcpy(buf, s, len);
    memset(buf + len, 'x', 1048579);
    mr_request_head heads[8];
    cr_assert_eq(drain(buf, len + 1048579, heads, 8), 6);
    cr_assert_str_eq(heads[0].error_reply, "ERROR\r\n");
    cr_assert_str_eq(heads[1].error_reply, "ERROR\r\n"); /* "hello" */
    cr_assert_eq(heads[2].cmd, MR_CMD_GET);
    cr_assert_str_eq(heads[3].error_reply, "CLIENT_ERROR invalid flag\r\n");
    cr_assert_eq(heads[4].cmd, MR_CMD_MN);
    cr_assert_null(heads[5].error_reply);
    cr_assert_eq(heads[5].after, MR_AFTER_SWALLOW);
    free(buf);
}

Test(ascii_split, nothing_past_the_first_line_is_read)
{
    /* The line ends exactly where an inaccessible page begins; len claims more. */
    long page = sysconf(_SC_PAGESIZE);
    char *map = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(map, MAP_FAILED);
    cr_assert_eq(mprotect(map + page, (size_t)page, PROT_NONE), 0);
    const char *lines[] = {"get foo\r\n", "set k 0 0 5\r\n", "mg Zm9v b v q\r\n", "bogus\r\n",
                           "delete k 0 noreply\r\n"};
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        size_t n = strlen(lines[i]);
        char *start = map + page - n;
        memcpy(start, lines[i], n);
        mr_request_head h;
        mr_parse_status st = mr_parse_request(start, n + 4096, ITEM_MAX, MR_ASCII_DEFAULT_MAX_LINE, &h);
        cr_assert_neq(st, MR_PARSE_NEED_MORE);
        cr_assert_eq(h.line_len, n);
    }
    munmap(map, (size_t)page * 2);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

Test(ascii_split, a_mebibyte_of_tiny_commands_parses_in_linear_time)
{
    const char *pattern[] = {"mn\r\n", "get k\r\n", "set k 0 0 1\r\nx\r\n", "incr n 1 noreply\r\n",
                             "mg k v q\r\n"};
    size_t len = 1 << 20, pos = 0, count = 0;
    char *buf = malloc(len);
    while (pos < len) {
        const char *p = pattern[count++ % 5];
        size_t n = strlen(p);
        if (pos + n > len)
            n = len - pos; /* the last command is cut short */
        memcpy(buf + pos, p, n);
        pos += n;
    }
    double t0 = now();
    size_t seen = 0;
    pos = 0;
    for (;;) {
        mr_request_head h;
        mr_parse_status st = mr_parse_request(buf + pos, len - pos, ITEM_MAX, MR_ASCII_DEFAULT_MAX_LINE, &h);
        if (st == MR_PARSE_NEED_MORE || pos + h.line_len + h.data_len > len)
            break;
        cr_assert_eq(st, MR_PARSE_OK);
        pos += h.line_len + h.data_len;
        seen++;
    }
    double elapsed = now() - t0;
    cr_assert_gt(seen, 80000);
    /* ~90,000 commands; a parser that rescanned the buffer would take minutes */
    cr_assert_lt(elapsed, 2.0, "%.3f s for %zu commands", elapsed, seen);
    free(buf);
}

Test(ascii_split, a_huge_multiget_then_small_commands)
{
    size_t cap = 8 + 30000 * 7 + 64, n = 0;
    char *buf = malloc(cap);
    n += (size_t)snprintf(buf + n, cap - n, "get");
    for (int i = 0; i < 30000; i++)
        n += (size_t)snprintf(buf + n, cap - n, " k%05d", i);
    n += (size_t)snprintf(buf + n, cap - n, "\r\nmn\r\nget x\r\n");
    mr_request_head heads[3];
    cr_assert_eq(drain(buf, n, heads, 3), 3);
    cr_assert_eq(heads[0].nkeys, 30000);
    cr_assert_eq(heads[1].cmd, MR_CMD_MN);
    /* and cut anywhere inside the long line, it needs more */
    for (size_t k = 1; k < heads[0].line_len; k += 997) {
        mr_request_head h;
        cr_assert_eq(mr_parse_request(buf, k, ITEM_MAX, MR_ASCII_DEFAULT_MAX_LINE, &h), MR_PARSE_NEED_MORE);
    }
    free(buf);
}

/* xorshift: a fixed, portable sequence. */
static uint32_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 32);
}

Test(ascii_split, mutated_commands_keep_the_head_consistent)
{
    static const char alphabet[] = " \r\n\t\0\x80qbkvOTNMF0123456789-+=noreplyZm9v";
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    char buf[256], out[300];
    const size_t nvalid = sizeof(valid) / sizeof(valid[0]);
    for (int iter = 0; iter < 200000; iter++) {
        const char *base = valid[rnd(&seed) % nvalid];
        size_t len = strlen(base);
        memcpy(buf, base, len);
        for (int m = (int)(rnd(&seed) % 4); m >= 0; m--) {
            size_t at = rnd(&seed) % len;
            buf[at] = alphabet[rnd(&seed) % (sizeof(alphabet) - 1)];
        }
        len = rnd(&seed) % (len + 1);
        mr_request_head h;
        mr_parse_status st = mr_parse_request(buf, len, ITEM_MAX, MR_ASCII_DEFAULT_MAX_LINE, &h);
        if (st == MR_PARSE_NEED_MORE) {
            cr_assert_null(memchr(buf, '\n', len));
            continue;
        }
        cr_assert_leq(h.line_len, len);
        cr_assert_eq(buf[h.line_len - 1], '\n');
        if (st == MR_PARSE_ERROR) {
            cr_assert(h.error_reply == NULL || strstr(h.error_reply, "\r\n") != NULL);
            continue;
        }
        cr_assert_lt(h.end_off, h.line_len);
        cr_assert_leq(h.key_off + h.key_len, h.end_off);
        cr_assert_leq(h.arg_off + h.arg_len, h.end_off);
        cr_assert_leq(h.strip_off + h.strip_len, h.end_off);
        cr_assert_eq(h.strip_len > 0, h.noreply && h.cmd != MR_CMD_COUNT);
        size_t n = mr_forward_line(buf, &h, out, sizeof(out));
        cr_assert_gt(n, 1);
        cr_assert(out[n - 2] == '\r' && out[n - 1] == '\n');
        /* the forwarded line parses again, to the same command and key */
        mr_request_head again;
        cr_assert_eq(mr_parse_request(out, n, ITEM_MAX, MR_ASCII_DEFAULT_MAX_LINE, &again), MR_PARSE_OK,
                     "%.*s", (int)n, out);
        cr_assert_eq(again.cmd, h.cmd);
        cr_assert_eq(again.key_len, h.key_len);
        cr_assert(memcmp(out + again.key_off, buf + h.key_off, h.key_len) == 0);
        cr_assert_not(again.noreply);
    }
}
