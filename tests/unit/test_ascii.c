/* test_ascii.c: the request parser on the classic text commands, behaviour by
 * behaviour. Every expected reply was measured on memcached 1.6.18 (see
 * docs/protocol-errors.md). Meta commands: test_ascii_meta.c; admin commands:
 * test_ascii_admin.c; split points, pipelines and cost: test_ascii_split.c.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memrelay/ascii.h"

#define ITEM_MAX 1048576u
#define R_ERROR "ERROR\r\n"
#define R_FORMAT "CLIENT_ERROR bad command line format\r\n"
#define R_EXPTIME "CLIENT_ERROR invalid exptime argument\r\n"
#define R_DELTA "CLIENT_ERROR invalid numeric delta argument\r\n"
#define R_TOO_LARGE "SERVER_ERROR object too large for cache\r\n"
#define R_DELETE "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"

static mr_request_head h;
static char line_buf[1 << 16];

static mr_parse_status parse_n(const char *s, size_t n)
{
    return mr_parse_request(s, n, ITEM_MAX, MR_ASCII_DEFAULT_MAX_LINE, &h);
}

static mr_parse_status parse(const char *s)
{
    return parse_n(s, strlen(s));
}

static void expect_ok(const char *s, mr_cmd cmd)
{
    mr_parse_status st = parse(s);
    cr_assert_eq(st, MR_PARSE_OK, "'%s': status %d, reply %s", s, st,
                 h.error_reply ? h.error_reply : "(none)");
    cr_assert_eq(h.cmd, cmd, "'%s': cmd %d", s, h.cmd);
}

/* An error: memcached's exact reply (NULL: silence) and what follows. */
static void expect_error(const char *s, const char *reply, mr_after_error after)
{
    mr_parse_status st = parse(s);
    cr_assert_eq(st, MR_PARSE_ERROR, "'%s': status %d", s, st);
    if (reply == NULL)
        cr_assert_null(h.error_reply, "'%s': expected silence, got %s", s, h.error_reply);
    else
        cr_assert(h.error_reply && strcmp(h.error_reply, reply) == 0, "'%s': reply %s, expected %s", s,
                  h.error_reply ? h.error_reply : "(none)", reply);
    cr_assert_eq(h.after, after, "'%s': after %d", s, h.after);
}

static void expect_key(const char *s, const char *key)
{
    cr_assert_eq(h.key_len, strlen(key), "'%s': key length %u", s, h.key_len);
    cr_assert(memcmp(s + h.key_off, key, h.key_len) == 0, "'%s': wrong key", s);
}

static void expect_arg(const char *s, const char *arg)
{
    cr_assert_eq(h.arg_len, strlen(arg), "'%s': arg length %u", s, h.arg_len);
    cr_assert(memcmp(s + h.arg_off, arg, h.arg_len) == 0, "'%s': wrong arg", s);
}

static const char *forward(const char *s)
{
    size_t n = mr_forward_line(s, &h, line_buf, sizeof(line_buf) - 1);
    cr_assert_gt(n, 0);
    line_buf[n] = '\0';
    return line_buf;
}

static char *repeat(char c, size_t n)
{
    char *p = malloc(n + 1);
    memset(p, c, n);
    p[n] = '\0';
    return p;
}

/* ---- the command table ---- */

Test(ascii_table, names_and_classes)
{
    cr_assert_str_eq(mr_cmd_name(MR_CMD_GET), "get");
    cr_assert_str_eq(mr_cmd_name(MR_CMD_FLUSH_ALL), "flush_all");
    cr_assert_str_eq(mr_cmd_name(MR_CMD_LRU_CRAWLER), "lru_crawler");
    cr_assert_eq(mr_cmd_class_of(MR_CMD_GATS), MR_CLASS_RETRIEVAL);
    cr_assert_eq(mr_cmd_class_of(MR_CMD_CAS), MR_CLASS_STORAGE);
    cr_assert_eq(mr_cmd_class_of(MR_CMD_TOUCH), MR_CLASS_KEYED);
    cr_assert_eq(mr_cmd_class_of(MR_CMD_ME), MR_CLASS_META_KEYED);
    cr_assert_eq(mr_cmd_class_of(MR_CMD_MN), MR_CLASS_LOCAL);
    cr_assert_eq(mr_cmd_class_of(MR_CMD_VERSION), MR_CLASS_ANY_SERVER);
    cr_assert_eq(mr_cmd_class_of(MR_CMD_SHUTDOWN), MR_CLASS_UNSUPPORTED);
}

/* ---- lines ---- */

Test(ascii_line, crlf_and_lf_both_end_a_line)
{
    expect_ok("get foo\r\n", MR_CMD_GET);
    cr_assert_eq(h.line_len, 9);
    cr_assert_eq(h.end_off, 7);
    expect_ok("get foo\n", MR_CMD_GET);
    cr_assert_eq(h.line_len, 8);
    expect_key("get foo\n", "foo");
}

Test(ascii_line, only_one_cr_is_removed_so_the_key_keeps_the_other)
{
    const char *s = "get foo\r\r\n";
    expect_ok(s, MR_CMD_GET);
    expect_key(s, "foo\r"); /* memcached: END, a miss of "foo\r" */
}

Test(ascii_line, a_nul_byte_ends_the_line_text)
{
    const char s[] = "get foo\0bar\r\n";
    cr_assert_eq(parse_n(s, sizeof(s) - 1), MR_PARSE_OK);
    cr_assert_eq(h.nkeys, 1);
    expect_key(s, "foo");
    cr_assert_eq(h.line_len, sizeof(s) - 1);
    const char t[] = "get\0 foo\r\n"; /* memcached: "get" alone */
    cr_assert_eq(parse_n(t, sizeof(t) - 1), MR_PARSE_ERROR);
    cr_assert_str_eq(h.error_reply, R_ERROR);
}

Test(ascii_line, empty_and_blank_lines_are_errors)
{
    expect_error("\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("\r\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("   \r\n", R_ERROR, MR_AFTER_CONTINUE);
    cr_assert_eq(h.line_len, 5);
}

Test(ascii_line, unknown_and_uppercase_commands_are_errors)
{
    expect_error("GET foo\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("Get foo\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("SET k 0 0 5\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("x\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("geta foo\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("misbehave\r\n", R_ERROR, MR_AFTER_CONTINUE); /* not in Debian's build */
    expect_error("debugtime 1\r\n", R_ERROR, MR_AFTER_CONTINUE);
    cr_assert_eq(h.cmd, MR_CMD_COUNT);
    cr_assert_eq(h.line_len, 13);
}

Test(ascii_line, only_spaces_separate_tokens)
{
    expect_error("get\tfoo\r\n", R_ERROR, MR_AFTER_CONTINUE);
    const char *s = "  get   foo  \r\n";
    expect_ok(s, MR_CMD_GET);
    expect_key(s, "foo");
    cr_assert_eq(h.nkeys, 1);
}

Test(ascii_line, a_line_without_newline_needs_more)
{
    cr_assert_eq(parse(""), MR_PARSE_NEED_MORE);
    cr_assert_eq(parse("get foo"), MR_PARSE_NEED_MORE);
    cr_assert_eq(parse("get foo\r"), MR_PARSE_NEED_MORE);
    cr_assert_eq(parse("bogus"), MR_PARSE_NEED_MORE);
}

Test(ascii_line, non_get_line_past_2048_bytes_without_newline_closes_silently)
{
    char *s = repeat('x', 2049);
    memcpy(s, "set ", 4);
    cr_assert_eq(parse_n(s, 2048), MR_PARSE_NEED_MORE);
    expect_error(s, NULL, MR_AFTER_CLOSE);
    memcpy(s, "gat 0 ", 6); /* gat is not exempt in memcached */
    expect_error(s, NULL, MR_AFTER_CLOSE);
    memcpy(s, "getxxx", 6); /* not "get " */
    expect_error(s, NULL, MR_AFTER_CLOSE);
    free(s);
}

Test(ascii_line, get_and_gets_lines_may_grow_without_newline)
{
    char *s = repeat('k', 100000);
    memcpy(s, "get ", 4);
    cr_assert_eq(parse(s), MR_PARSE_NEED_MORE);
    memcpy(s, "gets ", 5);
    cr_assert_eq(parse(s), MR_PARSE_NEED_MORE);
    memset(s, ' ', 100); /* up to 100 leading spaces are fine */
    memcpy(s + 100, "get ", 4);
    cr_assert_eq(parse(s), MR_PARSE_NEED_MORE);
    memset(s, ' ', 101);
    memcpy(s + 101, "get ", 4);
    expect_error(s, NULL, MR_AFTER_CLOSE);
    free(s);
}

Test(ascii_line, non_get_line_longer_than_memcacheds_read_buffer_closes)
{
    /* A complete line of 16384 bytes is read whole by memcached; 16385 never is. */
    char *s = repeat('a', 16385);
    memcpy(s, "set ", 4);
    s[16382] = '\r';
    s[16383] = '\n';
    s[16384] = '\0';
    expect_error(s, R_ERROR, MR_AFTER_CONTINUE); /* set with one huge token */
    s[16382] = 'a';
    s[16383] = '\r';
    s[16384] = '\n';
    expect_error(s, NULL, MR_AFTER_CLOSE);
    memcpy(s, "get ", 4);
    expect_error(s, R_FORMAT, MR_AFTER_CONTINUE); /* a get line may be longer: its key is too long */
    free(s);
}

Test(ascii_line, get_line_past_max_line_is_refused_and_closes)
{
    char *s = repeat('k', 5000);
    memcpy(s, "get ", 4);
    mr_parse_status st = mr_parse_request(s, 5000, ITEM_MAX, 4096, &h);
    cr_assert_eq(st, MR_PARSE_ERROR);
    cr_assert_str_eq(h.error_reply, "SERVER_ERROR line too long\r\n");
    cr_assert_eq(h.after, MR_AFTER_CLOSE);
    st = mr_parse_request(s, 4000, ITEM_MAX, 4096, &h);
    cr_assert_eq(st, MR_PARSE_NEED_MORE);
    free(s);
}

Test(ascii_line, a_max_line_below_memcacheds_limits_lowers_them)
{
    const char *s = "set k 0 0 5"; /* 11 bytes, no newline */
    cr_assert_eq(mr_parse_request(s, 11, ITEM_MAX, 12, &h), MR_PARSE_NEED_MORE);
    cr_assert_eq(mr_parse_request(s, 11, ITEM_MAX, 8, &h), MR_PARSE_ERROR);
    cr_assert_eq(h.after, MR_AFTER_CLOSE);
}

Test(ascii_line, binary_magic_is_recognised_only_as_a_first_byte)
{
    cr_assert(mr_is_binary_protocol("\x80\x0a\0\0", 4));
    cr_assert_not(mr_is_binary_protocol("get foo\r\n", 9));
    cr_assert_not(mr_is_binary_protocol("", 0));
    /* Later on a text connection 0x80 is just an unknown command. */
    expect_error("\x80\r\n", R_ERROR, MR_AFTER_CONTINUE);
}

/* ---- retrieval ---- */

Test(ascii_get, one_key)
{
    const char *s = "get foo\r\n";
    expect_ok(s, MR_CMD_GET);
    cr_assert_eq(h.nkeys, 1);
    expect_key(s, "foo");
    cr_assert_eq(h.keys_off, 4);
    cr_assert_eq(h.data_len, 0);
    cr_assert_not(h.noreply);
}

Test(ascii_get, keys_are_walked_in_order)
{
    const char *s = "gets  a bb   ccc noreply\r\n";
    expect_ok(s, MR_CMD_GETS);
    cr_assert_eq(h.nkeys, 4);
    const char *want[] = {"a", "bb", "ccc", "noreply"}; /* noreply is a key for get */
    uint32_t pos = h.keys_off, off, len, i = 0;
    while (mr_next_key(s, &h, &pos, &off, &len)) {
        cr_assert_lt(i, 4);
        cr_assert_eq(len, strlen(want[i]));
        cr_assert(memcmp(s + off, want[i], len) == 0);
        i++;
    }
    cr_assert_eq(i, 4);
    cr_assert_not(mr_next_key(s, &h, &pos, &off, &len));
}

Test(ascii_get, without_a_key_is_error)
{
    expect_error("get\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("get \r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("gets\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("gat\r\n", R_ERROR, MR_AFTER_CONTINUE);
}

Test(ascii_get, a_key_of_251_bytes_fails_the_whole_request)
{
    char s[600];
    char *k250 = repeat('a', 250), *k251 = repeat('a', 251);
    snprintf(s, sizeof(s), "get %s\r\n", k250);
    expect_ok(s, MR_CMD_GET);
    snprintf(s, sizeof(s), "get %s\r\n", k251);
    expect_error(s, R_FORMAT, MR_AFTER_CONTINUE);
    /* memcached sends no VALUE for the good keys before the bad one */
    snprintf(s, sizeof(s), "get foo %s n\r\n", k251);
    expect_error(s, R_FORMAT, MR_AFTER_CONTINUE);
    snprintf(s, sizeof(s), "gat 0 foo %s\r\n", k251);
    expect_error(s, R_FORMAT, MR_AFTER_CONTINUE);
    free(k250);
    free(k251);
}

Test(ascii_get, thousands_of_keys_are_accepted)
{
    size_t cap = 4 + 20000 * 8 + 3;
    char *s = malloc(cap);
    size_t n = (size_t)snprintf(s, cap, "get");
    for (int i = 0; i < 20000; i++)
        n += (size_t)snprintf(s + n, cap - n, " k%05d", i);
    n += (size_t)snprintf(s + n, cap - n, "\r\n");
    cr_assert_eq(parse_n(s, n), MR_PARSE_OK);
    cr_assert_eq(h.nkeys, 20000);
    uint32_t pos = h.keys_off, off, len, count = 0;
    while (mr_next_key(s, &h, &pos, &off, &len)) {
        char want[8];
        snprintf(want, sizeof(want), "k%05u", count);
        cr_assert(len == 6 && memcmp(s + off, want, 6) == 0);
        count++;
    }
    cr_assert_eq(count, 20000);
    free(s);
}

Test(ascii_get, bget_is_an_old_name_for_get)
{
    const char *s = "bget foo n\r\n";
    expect_ok(s, MR_CMD_GET);
    cr_assert_eq(h.nkeys, 2);
}

Test(ascii_gat, exptime_comes_first_as_the_argument)
{
    const char *s = "gats 100 foo bar\r\n";
    expect_ok(s, MR_CMD_GATS);
    expect_arg(s, "100");
    expect_key(s, "foo");
    cr_assert_eq(h.nkeys, 2);
    cr_assert_eq(h.keys_off, 9);
}

Test(ascii_gat, exptime_follows_memcacheds_number_rules)
{
    expect_ok("gat -1 foo\r\n", MR_CMD_GAT);
    expect_ok("gat 99999999999 foo\r\n", MR_CMD_GAT);
    expect_ok("gat +5 foo\r\n", MR_CMD_GAT);
    expect_ok("gat 9223372036854775807 foo\r\n", MR_CMD_GAT);
    expect_error("gat 9223372036854775808 foo\r\n", R_EXPTIME, MR_AFTER_CONTINUE);
    expect_error("gat abc foo\r\n", R_EXPTIME, MR_AFTER_CONTINUE);
    expect_error("gat 0x10 foo\r\n", R_EXPTIME, MR_AFTER_CONTINUE);
}

Test(ascii_gat, without_keys_memcached_answers_end)
{
    expect_error("gat 0\r\n", "END\r\n", MR_AFTER_CONTINUE);
    expect_error("gats 0 \r\n", "END\r\n", MR_AFTER_CONTINUE);
    cr_assert_eq(h.cmd, MR_CMD_GATS);
    expect_error("gat abc\r\n", R_EXPTIME, MR_AFTER_CONTINUE); /* the exptime is still checked */
}

Test(ascii_gat, noreply_is_just_a_key)
{
    expect_ok("gat 0 foo noreply\r\n", MR_CMD_GAT);
    cr_assert_eq(h.nkeys, 2);
    cr_assert_not(h.noreply);
}

/* ---- storage ---- */

Test(ascii_set, line_and_data_block)
{
    const char *s = "set foo 5 0 3\r\nbar\r\n";
    expect_ok(s, MR_CMD_SET);
    expect_key(s, "foo");
    cr_assert_eq(h.line_len, 15);
    cr_assert_eq(h.data_len, 5);
    cr_assert_not(h.noreply);
    cr_assert_eq(h.strip_len, 0);
    cr_assert_null(mr_check_data_block(s + h.line_len, h.data_len));
}

Test(ascii_set, every_storage_command_has_the_same_shape)
{
    expect_ok("add k 0 0 1\r\n", MR_CMD_ADD);
    expect_ok("replace k 0 0 1\r\n", MR_CMD_REPLACE);
    expect_ok("append k 0 0 1\r\n", MR_CMD_APPEND);
    expect_ok("prepend k 0 0 1\r\n", MR_CMD_PREPEND);
    expect_ok("cas k 0 0 1 99\r\n", MR_CMD_CAS);
    cr_assert_eq(h.data_len, 3);
}

Test(ascii_set, noreply_is_stripped_when_forwarded)
{
    const char *s = "set k 0 0 5  noreply\r\n";
    expect_ok(s, MR_CMD_SET);
    cr_assert(h.noreply);
    cr_assert_str_eq(forward(s), "set k 0 0 5\r\n");
    s = "cas k 0 0 5 7 noreply\n";
    expect_ok(s, MR_CMD_CAS);
    cr_assert(h.noreply);
    cr_assert_str_eq(forward(s), "cas k 0 0 5 7\r\n");
}

Test(ascii_set, a_sixth_token_other_than_noreply_is_ignored)
{
    const char *s = "set k 0 0 5 noreplx\r\n";
    expect_ok(s, MR_CMD_SET);
    cr_assert_not(h.noreply);
    cr_assert_str_eq(forward(s), "set k 0 0 5 noreplx\r\n");
}

Test(ascii_set, wrong_token_count_is_error_and_the_data_is_read_as_commands)
{
    expect_error("set k 0 0\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("set k\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("set\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("set k 0 0 5 noreply x\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("cas k 0 0 5\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("cas k 0 0 5 1 noreply x\r\n", R_ERROR, MR_AFTER_CONTINUE);
    cr_assert_eq(h.swallow_len, 0);
}

Test(ascii_set, key_of_251_bytes_is_bad_format_and_nothing_is_swallowed)
{
    char s[600];
    char *k250 = repeat('a', 250), *k251 = repeat('a', 251);
    snprintf(s, sizeof(s), "set %s 0 0 5\r\n", k250);
    expect_ok(s, MR_CMD_SET);
    snprintf(s, sizeof(s), "set %s 0 0 5\r\n", k251);
    expect_error(s, R_FORMAT, MR_AFTER_CONTINUE);
    snprintf(s, sizeof(s), "set %s 0 0 5 noreply\r\n", k251);
    expect_error(s, NULL, MR_AFTER_CONTINUE);
    free(k250);
    free(k251);
}

Test(ascii_set, noreply_silences_format_errors)
{
    expect_error("set k 0 0 -1\r\n", R_FORMAT, MR_AFTER_CONTINUE);
    expect_error("set k 0 0 -1 noreply\r\n", NULL, MR_AFTER_CONTINUE);
    expect_error("set k x 0 5 noreply\r\n", NULL, MR_AFTER_CONTINUE);
    /* cas with noreply where the unique belongs: noreply is still seen */
    expect_error("cas k 0 0 5 noreply\r\n", NULL, MR_AFTER_CONTINUE);
    expect_error("cas k 0 0 5 x noreply\r\n", NULL, MR_AFTER_CONTINUE);
}

/* A numeric field of a storage line: each value valid or not as memcached says. */
typedef struct {
    const char *v;
    bool flags_ok, exptime_ok, bytes_ok;
} field_case;

static const field_case field_cases[] = {
    {"0", true, true, true},
    {"-1", false, true, false},
    {"+1", true, true, true},
    {"-0", true, true, true},
    {"2147483645", true, true, true},
    {"2147483646", true, true, false},
    {"2147483648", true, true, false}, /* bytes: negative once cut to 32 bits */
    {"4294967296", true, true, true},  /* bytes: 0 once cut to 32 bits */
    {"-4294967295", false, true, true},
    {"9223372036854775807", true, true, false},
    {"9223372036854775808", true, false, false},
    {"18446744073709551615", true, false, false},
    {"18446744073709551616", false, false, false},
    {"-9223372036854775808", false, true, true},
    {"-9223372036854775809", true, false, false},
    {"-18446744073709551615", true, false, false},
    {"1a", false, false, false},
    {"a", false, false, false},
    {"0x10", false, false, false},
    {"010", true, true, true},
    {"\t5", true, true, true},
    {"5\t", true, true, true},
    {"5\tx", true, true, true}, /* white space ends the number; the rest is ignored */
    {"\t", false, false, false},
    {"-", false, false, false},
    {"+", false, false, false},
    {"1.5", false, false, false},
    {"-\t1", false, false, false},
    {"00000000000000000000000000000000000001", true, true, true},
};

Test(ascii_set, numeric_fields_follow_memcacheds_rules)
{
    char s[200];
    for (size_t i = 0; i < sizeof(field_cases) / sizeof(field_cases[0]); i++) {
        const field_case *c = &field_cases[i];
        snprintf(s, sizeof(s), "set k %s 0 1\r\n", c->v);
        cr_expect_eq(parse(s), c->flags_ok ? MR_PARSE_OK : MR_PARSE_ERROR, "flags '%s'", c->v);
        snprintf(s, sizeof(s), "set k 0 %s 1\r\n", c->v);
        cr_expect_eq(parse(s), c->exptime_ok ? MR_PARSE_OK : MR_PARSE_ERROR, "exptime '%s'", c->v);
        snprintf(s, sizeof(s), "set k 0 0 %s\r\n", c->v);
        mr_parse_status st = parse(s);
        /* valid lengths past the item limit are "too large", not a format error */
        bool format_ok = st == MR_PARSE_OK || (h.error_reply && strcmp(h.error_reply, R_TOO_LARGE) == 0);
        cr_expect_eq(format_ok, c->bytes_ok, "bytes '%s'", c->v);
        if (!c->bytes_ok)
            cr_expect_str_eq(h.error_reply, R_FORMAT, "bytes '%s'", c->v);
        snprintf(s, sizeof(s), "cas k 0 0 1 %s\r\n", c->v);
        cr_expect_eq(parse(s), c->flags_ok ? MR_PARSE_OK : MR_PARSE_ERROR, "cas unique '%s'", c->v);
    }
}

Test(ascii_set, bytes_are_cut_to_32_bits_as_memcached_stores_them)
{
    expect_ok("set k 0 0 4294967301\r\n", MR_CMD_SET);
    cr_assert_eq(h.data_len, 7);
    expect_ok("set k 0 0 -4294967295\r\n", MR_CMD_SET);
    cr_assert_eq(h.data_len, 3);
}

Test(ascii_set, too_large_swallows_the_data_block_and_set_unlinks_the_key)
{
    expect_error("set foo 0 0 1048577\r\n", R_TOO_LARGE, MR_AFTER_SWALLOW);
    cr_assert_eq(h.swallow_len, 1048579);
    cr_assert(h.error_unlinks_key);
    expect_key("set foo 0 0 1048577\r\n", "foo");
    expect_error("add foo 0 0 1048577\r\n", R_TOO_LARGE, MR_AFTER_SWALLOW);
    cr_assert_not(h.error_unlinks_key);
    expect_error("cas foo 0 0 1048577 1\r\n", R_TOO_LARGE, MR_AFTER_SWALLOW);
    cr_assert_not(h.error_unlinks_key);
    expect_error("set foo 0 0 2147483645\r\n", R_TOO_LARGE, MR_AFTER_SWALLOW);
    cr_assert_eq(h.swallow_len, 2147483647u);
}

Test(ascii_set, noreply_silences_too_large_but_the_swallow_remains)
{
    expect_error("set foo 0 0 1048577 noreply\r\n", NULL, MR_AFTER_SWALLOW);
    cr_assert_eq(h.swallow_len, 1048579);
    cr_assert(h.error_unlinks_key);
}

Test(ascii_set, the_size_limit_counts_memcacheds_item_header)
{
    /* measured: 60 bytes of overhead with a 1-byte key and flags 0, +4 with flags */
    expect_ok("set k 0 0 1048516\r\n", MR_CMD_SET);
    expect_error("set k 0 0 1048517\r\n", R_TOO_LARGE, MR_AFTER_SWALLOW);
    expect_ok("set k 1 0 1048512\r\n", MR_CMD_SET);
    expect_error("set k 1 0 1048513\r\n", R_TOO_LARGE, MR_AFTER_SWALLOW);
    expect_ok("set k 4294967296 0 1048516\r\n", MR_CMD_SET); /* flags cut to 0 */
    expect_ok("set kk 0 0 1048515\r\n", MR_CMD_SET);
    expect_error("set kk 0 0 1048516\r\n", R_TOO_LARGE, MR_AFTER_SWALLOW);
    /* item_size_max is the pool's -I */
    cr_assert_eq(mr_parse_request("set k 0 0 2097092\r\n", 19, 2097152, 0, &h), MR_PARSE_OK);
    cr_assert_eq(mr_parse_request("set k 0 0 2097093\r\n", 19, 2097152, 0, &h), MR_PARSE_ERROR);
}

Test(ascii_set, bad_data_chunk)
{
    cr_assert_null(mr_check_data_block("hello\r\n", 7));
    cr_assert_str_eq(mr_check_data_block("helloXY", 7), "CLIENT_ERROR bad data chunk\r\n");
    cr_assert_str_eq(mr_check_data_block("hello\n\n", 7), "CLIENT_ERROR bad data chunk\r\n");
    expect_ok("set k 0 0 5\r\n", MR_CMD_SET);
    cr_assert_str_eq(mr_bad_data_reply(&h), "CLIENT_ERROR bad data chunk\r\n");
    expect_ok("set k 0 0 5 noreply\r\n", MR_CMD_SET);
    cr_assert_null(mr_bad_data_reply(&h));
    expect_ok("ms k 5 q\r\n", MR_CMD_MS); /* meta errors are always sent */
    cr_assert_str_eq(mr_bad_data_reply(&h), "CLIENT_ERROR bad data chunk\r\n");
}

/* ---- delete incr decr touch ---- */

Test(ascii_delete, forms)
{
    const char *s = "delete foo\r\n";
    expect_ok(s, MR_CMD_DELETE);
    expect_key(s, "foo");
    expect_ok("delete foo 0\r\n", MR_CMD_DELETE);
    cr_assert_not(h.noreply);
    s = "delete foo 0 noreply\r\n";
    expect_ok(s, MR_CMD_DELETE);
    cr_assert(h.noreply);
    cr_assert_str_eq(forward(s), "delete foo 0\r\n");
    s = "delete foo noreply\r\n";
    expect_ok(s, MR_CMD_DELETE);
    cr_assert_str_eq(forward(s), "delete foo\r\n");
    s = "delete noreply\r\n"; /* the key is "noreply" */
    expect_ok(s, MR_CMD_DELETE);
    expect_key(s, "noreply");
    cr_assert_not(h.noreply);
}

Test(ascii_delete, a_hold_time_other_than_0_is_the_usage_error)
{
    expect_error("delete foo 1\r\n", R_DELETE, MR_AFTER_CONTINUE);
    expect_error("delete foo -0\r\n", R_DELETE, MR_AFTER_CONTINUE);
    expect_error("delete foo 00\r\n", R_DELETE, MR_AFTER_CONTINUE);
    expect_error("delete foo noreplx\r\n", R_DELETE, MR_AFTER_CONTINUE);
    expect_error("delete foo 0 0\r\n", R_DELETE, MR_AFTER_CONTINUE);
    expect_error("delete foo noreply x\r\n", R_DELETE, MR_AFTER_CONTINUE);
    expect_error("delete foo 1 noreply\r\n", NULL, MR_AFTER_CONTINUE);
    expect_error("delete foo noreply noreply\r\n", NULL, MR_AFTER_CONTINUE);
    expect_error("delete foo x y z\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("delete\r\n", R_ERROR, MR_AFTER_CONTINUE);
}

Test(ascii_delete, the_usage_check_comes_before_the_key_length)
{
    char s[600];
    char *k251 = repeat('a', 251);
    snprintf(s, sizeof(s), "delete %s 1\r\n", k251);
    expect_error(s, R_DELETE, MR_AFTER_CONTINUE);
    snprintf(s, sizeof(s), "delete %s 0\r\n", k251);
    expect_error(s, R_FORMAT, MR_AFTER_CONTINUE);
    snprintf(s, sizeof(s), "delete %s noreply\r\n", k251);
    expect_error(s, NULL, MR_AFTER_CONTINUE);
    free(k251);
}

Test(ascii_incr, forms_and_delta)
{
    const char *s = "incr n 5\r\n";
    expect_ok(s, MR_CMD_INCR);
    expect_key(s, "n");
    expect_arg(s, "5");
    s = "decr n 18446744073709551615 noreply\r\n";
    expect_ok(s, MR_CMD_DECR);
    cr_assert(h.noreply);
    cr_assert_str_eq(forward(s), "decr n 18446744073709551615\r\n");
    expect_ok("incr n 1 noreplx\r\n", MR_CMD_INCR);
    expect_ok("incr n -18446744073709551615\r\n", MR_CMD_INCR); /* reads 1 */
}

Test(ascii_incr, errors)
{
    expect_error("incr\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("incr n\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("incr noreply\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("incr n 1 x y\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("incr n -1\r\n", R_DELTA, MR_AFTER_CONTINUE);
    expect_error("decr n 18446744073709551616\r\n", R_DELTA, MR_AFTER_CONTINUE);
    expect_error("incr n x\r\n", R_DELTA, MR_AFTER_CONTINUE);
    expect_error("incr n noreply\r\n", NULL, MR_AFTER_CONTINUE); /* delta "noreply", silenced */
    expect_error("incr n x noreply\r\n", NULL, MR_AFTER_CONTINUE);
    char s[600];
    char *k251 = repeat('a', 251);
    snprintf(s, sizeof(s), "incr %s x\r\n", k251); /* the key is checked first */
    expect_error(s, R_FORMAT, MR_AFTER_CONTINUE);
    free(k251);
}

Test(ascii_touch, forms_and_errors)
{
    const char *s = "touch foo -1 noreply\r\n";
    expect_ok(s, MR_CMD_TOUCH);
    expect_arg(s, "-1");
    cr_assert_str_eq(forward(s), "touch foo -1\r\n");
    expect_error("touch foo\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("touch foo 1.5\r\n", R_EXPTIME, MR_AFTER_CONTINUE);
    expect_error("touch foo -9223372036854775809\r\n", R_EXPTIME, MR_AFTER_CONTINUE);
    expect_error("touch foo x noreply\r\n", NULL, MR_AFTER_CONTINUE);
}

/* ---- flush_all verbosity version quit mn stats ---- */

Test(ascii_flush_all, forms)
{
    expect_ok("flush_all\r\n", MR_CMD_FLUSH_ALL);
    cr_assert_eq(h.arg_len, 0);
    const char *s = "flush_all 10 noreply\r\n";
    expect_ok(s, MR_CMD_FLUSH_ALL);
    expect_arg(s, "10");
    cr_assert(h.noreply);
    cr_assert_str_eq(forward(s), "flush_all 10\r\n");
    s = "flush_all noreply\r\n";
    expect_ok(s, MR_CMD_FLUSH_ALL);
    cr_assert_eq(h.arg_len, 0);
    cr_assert_str_eq(forward(s), "flush_all\r\n");
    expect_ok("flush_all 0 0\r\n", MR_CMD_FLUSH_ALL);
    expect_ok("flush_all -1\r\n", MR_CMD_FLUSH_ALL);
}

Test(ascii_flush_all, errors)
{
    expect_error("flush_all x\r\n", R_EXPTIME, MR_AFTER_CONTINUE);
    expect_error("flush_all noreplx\r\n", R_EXPTIME, MR_AFTER_CONTINUE);
    expect_error("flush_all x noreply\r\n", NULL, MR_AFTER_CONTINUE);
    expect_error("flush_all noreply noreply\r\n", NULL, MR_AFTER_CONTINUE);
    expect_error("flush_all 0 noreply x\r\n", R_ERROR, MR_AFTER_CONTINUE);
}

Test(ascii_verbosity, forms_and_errors)
{
    const char *s = "verbosity 1 noreply\r\n";
    expect_ok(s, MR_CMD_VERBOSITY);
    expect_arg(s, "1");
    cr_assert(h.noreply);
    expect_ok("verbosity 1 2\r\n", MR_CMD_VERBOSITY);
    expect_error("verbosity\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("verbosity 1 2 3\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("verbosity x\r\n", R_FORMAT, MR_AFTER_CONTINUE);
    expect_error("verbosity -1\r\n", R_FORMAT, MR_AFTER_CONTINUE);
    expect_error("verbosity noreply\r\n", NULL, MR_AFTER_CONTINUE);
}

Test(ascii_local, version_quit_mn_take_any_arguments)
{
    expect_ok("version\r\n", MR_CMD_VERSION);
    expect_ok("version x y z\r\n", MR_CMD_VERSION);
    cr_assert_str_eq(forward("version x y z\r\n"), "version x y z\r\n");
    expect_ok("quit\r\n", MR_CMD_QUIT);
    expect_ok("quit now\r\n", MR_CMD_QUIT);
    expect_ok("mn\r\n", MR_CMD_MN);
    expect_ok("mn q\r\n", MR_CMD_MN); /* q means nothing to mn */
    cr_assert_not(h.noreply);
}

Test(ascii_local, stats_passes_its_first_argument)
{
    expect_ok("stats\r\n", MR_CMD_STATS);
    cr_assert_eq(h.arg_len, 0);
    const char *s = "stats detail on\r\n";
    expect_ok(s, MR_CMD_STATS);
    expect_arg(s, "detail");
    expect_ok("stats noreply\r\n", MR_CMD_STATS); /* memcached: ERROR (an unknown group) */
    cr_assert_not(h.noreply);
}

/* ---- forwarding ---- */

Test(ascii_forward, lf_only_lines_are_forwarded_with_crlf)
{
    const char *s = "get a b\n";
    expect_ok(s, MR_CMD_GET);
    cr_assert_str_eq(forward(s), "get a b\r\n");
}

Test(ascii_forward, text_after_a_nul_is_dropped)
{
    const char s[] = "touch foo 5\0 garbage noreply\r\n";
    cr_assert_eq(parse_n(s, sizeof(s) - 1), MR_PARSE_OK);
    cr_assert_not(h.noreply);
    size_t n = mr_forward_line(s, &h, line_buf, sizeof(line_buf));
    cr_assert_eq(n, 13);
    cr_assert(memcmp(line_buf, "touch foo 5\r\n", 13) == 0);
}

Test(ascii_forward, a_too_small_buffer_writes_nothing)
{
    const char *s = "set k 0 0 5 noreply\r\n";
    expect_ok(s, MR_CMD_SET);
    cr_assert_eq(mr_forward_line(s, &h, line_buf, 12), 0);
    cr_assert_eq(mr_forward_line(s, &h, line_buf, 13), 13);
}
