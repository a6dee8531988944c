/* Backend reply parser: one element at a time, at every split point. */
#include <criterion/criterion.h>
#include <string.h>

#include "memrelay/reply.h"

#define MAXV (1024u * 1024u)
#define MAXL 8192u

static mr_reply_kind parse(const char *s, mr_reply_elem *e)
{
    return mr_reply_next(s, strlen(s), MAXV, MAXL, e);
}

Test(reply, value_item_with_key_span)
{
    mr_reply_elem e;
    const char *s = "VALUE foo 5 3\r\nbar\r\nEND\r\n";
    cr_assert_eq(parse(s, &e), MR_REPLY_VALUE);
    cr_assert_eq(e.len, 20);
    cr_assert_eq(e.key_off, 6);
    cr_assert_eq(e.key_len, 3);
    cr_assert_eq(mr_reply_next(s + e.len, strlen(s) - e.len, MAXV, MAXL, &e), MR_REPLY_END);
    cr_assert_eq(e.len, 5);
}

Test(reply, value_with_cas_unique)
{
    mr_reply_elem e;
    cr_assert_eq(parse("VALUE k 0 1 99\r\nx\r\n", &e), MR_REPLY_VALUE);
    cr_assert_eq(e.len, 19);
}

Test(reply, every_prefix_needs_more)
{
    const char *s = "VALUE foo 5 3\r\nbar\r\n";
    mr_reply_elem e;
    for (size_t i = 0; i < strlen(s); i++)
        cr_assert_eq(mr_reply_next(s, i, MAXV, MAXL, &e), MR_REPLY_NEED_MORE, "prefix %zu", i);
    cr_assert_eq(mr_reply_next(s, strlen(s), MAXV, MAXL, &e), MR_REPLY_VALUE);
}

Test(reply, need_more_tells_total_size_once_line_is_known)
{
    mr_reply_elem e;
    cr_assert_eq(parse("VALUE foo 0 100\r\nab", &e), MR_REPLY_NEED_MORE);
    cr_assert_eq(e.need, 17 + 100 + 2);
}

Test(reply, meta_va_carries_data)
{
    mr_reply_elem e;
    cr_assert_eq(parse("VA 2 t-1 f0\r\nhi\r\n", &e), MR_REPLY_VA);
    cr_assert_eq(e.len, 17);
}

Test(reply, single_lines)
{
    mr_reply_elem e;
    const char *lines[] = {
        "STORED\r\n", "HD\r\n", "EN\r\n", "42\r\n", "SERVER_ERROR out of memory\r\n", "VERSION 1.6.18\r\n"};
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        cr_assert_eq(parse(lines[i], &e), MR_REPLY_LINE, "%s", lines[i]);
        cr_assert_eq(e.len, strlen(lines[i]));
    }
}

Test(reply, bad_data_terminator_is_bad)
{
    mr_reply_elem e;
    cr_assert_eq(parse("VALUE k 0 1\r\nxyz", &e), MR_REPLY_BAD);
}

Test(reply, garbage_and_bare_newline_are_bad)
{
    mr_reply_elem e;
    cr_assert_eq(parse("VALUE k zz 1\r\nx\r\n", &e), MR_REPLY_BAD);
    cr_assert_eq(parse("STORED\n", &e), MR_REPLY_BAD);
}

Test(reply, oversized_value_and_endless_line_are_bad)
{
    mr_reply_elem e;
    cr_assert_eq(mr_reply_next("VALUE k 0 2000\r\n", 16, 1000, MAXL, &e), MR_REPLY_BAD);
    char line[100];
    memset(line, 'a', sizeof(line));
    cr_assert_eq(mr_reply_next(line, sizeof(line), MAXV, 64, &e), MR_REPLY_BAD);
}

Test(reply, error_lines_are_recognised)
{
    cr_assert(mr_reply_is_error("ERROR\r\n", 7));
    cr_assert(mr_reply_is_error("CLIENT_ERROR bad\r\n", 18));
    cr_assert(mr_reply_is_error("SERVER_ERROR x\r\n", 16));
    cr_assert_not(mr_reply_is_error("STORED\r\n", 8));
}

Test(reply, only_memcached_reply_lines_are_known)
{
    const char *good[] = {"STORED\r\n",      "NOT_FOUND\r\n",      "42\r\n", "HD c1\r\n", "EN\r\n",
                          "VERSION 1.6\r\n", "SERVER_ERROR x\r\n", "OK\r\n"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_assert(mr_reply_line_known(good[i], strlen(good[i])), "%s", good[i]);
    const char *bad[] = {"HTTP/1.1 400 Bad Request\r\n", "Content-Length: 0\r\n", "\r\n", "12ab\r\n",
                         "stored\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_not(mr_reply_line_known(bad[i], strlen(bad[i])), "%s", bad[i]);
}

Test(reply, a_value_item_carries_exactly_its_own_key)
{
    const char *item = "VALUE foo 0 3\r\nbar\r\n";
    uint32_t len = (uint32_t)strlen(item);
    cr_assert(mr_reply_value_has_key(item, len, "foo", 3));
    cr_assert_not(mr_reply_value_has_key(item, len, "fo", 2)); /* a prefix of the key is another key */
    cr_assert_not(mr_reply_value_has_key(item, len, "foox", 4));
    cr_assert_not(mr_reply_value_has_key(item, len, "bar", 3));
    cr_assert_not(mr_reply_value_has_key("VALUE foo", 9, "foo", 3)); /* no room for the space after it */
}
