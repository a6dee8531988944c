/* test_ascii_meta.c: the parser on meta commands (mg ms md ma me mn), the
 * base64 decoder and meta quiet mode, as memcached 1.6.18 behaves.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memrelay/ascii.h"

#define ITEM_MAX 1048576u
#define R_ERROR "ERROR\r\n"
#define R_FORMAT "CLIENT_ERROR bad command line format\r\n"
#define R_INVALID "CLIENT_ERROR invalid flag\r\n"
#define R_DUP "CLIENT_ERROR duplicate flag\r\n"
#define R_DECODE "CLIENT_ERROR error decoding key\r\n"
#define R_TOKEN "CLIENT_ERROR bad token in command line format\r\n"
#define R_MD_MA "CLIENT_ERROR invalid or duplicate flag\r\n"
#define R_OPAQUE "CLIENT_ERROR opaque token too long\r\n"
#define R_TOO_LARGE "SERVER_ERROR object too large for cache\r\n"

static mr_request_head h;
static char line_buf[4096];

static mr_parse_status parse(const char *s)
{
    return mr_parse_request(s, strlen(s), ITEM_MAX, MR_ASCII_DEFAULT_MAX_LINE, &h);
}

static void expect_ok(const char *s, mr_cmd cmd)
{
    mr_parse_status st = parse(s);
    cr_assert_eq(st, MR_PARSE_OK, "'%s': status %d, reply %s", s, st,
                 h.error_reply ? h.error_reply : "(none)");
    cr_assert_eq(h.cmd, cmd, "'%s': cmd %d", s, h.cmd);
}

static void expect_error(const char *s, const char *reply, mr_after_error after)
{
    mr_parse_status st = parse(s);
    cr_assert_eq(st, MR_PARSE_ERROR, "'%s': status %d", s, st);
    cr_assert(h.error_reply && strcmp(h.error_reply, reply) == 0, "'%s': reply %s, expected %s", s,
              h.error_reply ? h.error_reply : "(none)", reply);
    cr_assert_eq(h.after, after, "'%s': after %d", s, h.after);
}

static void expect_key(const char *s, const char *key)
{
    cr_assert_eq(h.key_len, strlen(key), "'%s': key length %u", s, h.key_len);
    cr_assert(memcmp(s + h.key_off, key, h.key_len) == 0, "'%s': wrong key", s);
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

/* ---- mg ---- */

Test(meta_mg, key_and_flags)
{
    const char *s = "mg foo s v k O123\r\n";
    expect_ok(s, MR_CMD_MG);
    expect_key(s, "foo");
    cr_assert_not(h.noreply);
    cr_assert_not(h.meta_base64);
    cr_assert_eq(h.data_len, 0);
    cr_assert_str_eq(forward(s), "mg foo s v k O123\r\n");
}

Test(meta_mg, without_key_is_error)
{
    expect_error("mg\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("mg \r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("MG foo\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("mgx foo\r\n", R_ERROR, MR_AFTER_CONTINUE);
    expect_error("mx foo\r\n", R_ERROR, MR_AFTER_CONTINUE);
}

Test(meta_mg, q_is_stripped_and_the_rest_kept)
{
    const char *s = "mg Zm9v k q O5 b\r\n";
    expect_ok(s, MR_CMD_MG);
    cr_assert(h.noreply);
    cr_assert(h.meta_base64);
    cr_assert_str_eq(forward(s), "mg Zm9v k O5 b\r\n");
    s = "mg foo v q\n";
    expect_ok(s, MR_CMD_MG);
    cr_assert_str_eq(forward(s), "mg foo v\r\n");
    s = "mg foo qx v\r\n"; /* only the first byte of a flag counts */
    expect_ok(s, MR_CMD_MG);
    cr_assert(h.noreply);
    cr_assert_str_eq(forward(s), "mg foo v\r\n");
}

Test(meta_mg, key_of_251_bytes_is_checked_first)
{
    char s[600];
    char *k250 = repeat('a', 250), *k251 = repeat('a', 251);
    snprintf(s, sizeof(s), "mg %s v\r\n", k250);
    expect_ok(s, MR_CMD_MG);
    snprintf(s, sizeof(s), "mg %s v\r\n", k251);
    expect_error(s, R_FORMAT, MR_AFTER_CONTINUE);
    snprintf(s, sizeof(s), "mg %s zz\r\n", k251);
    expect_error(s, R_FORMAT, MR_AFTER_CONTINUE);
    snprintf(s, sizeof(s), "mg %s f k s u v q I L P N5 R5 T5 O1 zz\r\n", k251);
    expect_error(s, R_FORMAT, MR_AFTER_CONTINUE);
    free(k250);
    free(k251);
}

Test(meta_mg, more_than_17_flags_are_too_long)
{
    expect_ok("mg foo f k s u v q I L P N5 R5 T5 O1 C1 D1 J1 F1\r\n", MR_CMD_MG);
    expect_error("mg foo f k s u v q I L P N5 R5 T5 O1 C1 D1 J1 F1 M1\r\n",
                 "CLIENT_ERROR options flags are too long\r\n", MR_AFTER_CONTINUE);
    expect_ok("md foo f k s u v q I L P T5 O1 C1 D1 J1 F1 N1 R1\r\n", MR_CMD_MD);
    expect_error("md foo f k s u v q I L P T5 O1 C1 D1 J1 F1 N1 R1 M1\r\n",
                 "CLIENT_ERROR options flags too long\r\n", MR_AFTER_CONTINUE);
}

Test(meta_mg, unknown_repeated_and_high_byte_flags)
{
    expect_error("mg foo zz\r\n", R_INVALID, MR_AFTER_CONTINUE);
    expect_error("mg foo S\r\n", R_INVALID, MR_AFTER_CONTINUE);
    expect_error("mg foo v v\r\n", R_DUP, MR_AFTER_CONTINUE);
    expect_error("mg foo O1 O2\r\n", R_DUP, MR_AFTER_CONTINUE);
    expect_error("mg foo \x80\r\n", R_DUP, MR_AFTER_CONTINUE); /* any byte >= 0x80 */
    expect_error("mg foo \xff v\r\n", R_DUP, MR_AFTER_CONTINUE);
    const char *s = "mg foo\tbar v\r\n"; /* a tab belongs to the key */
    expect_ok(s, MR_CMD_MG);
    expect_key(s, "foo\tbar");
}

Test(meta_mg, tokens_with_bad_numbers)
{
    expect_error("mg foo N\r\n", R_TOKEN, MR_AFTER_CONTINUE);
    expect_error("mg foo Tx\r\n", R_TOKEN, MR_AFTER_CONTINUE);
    expect_error("mg foo R9223372036854775808\r\n", R_TOKEN, MR_AFTER_CONTINUE);
    expect_ok("mg foo T-9223372036854775808\r\n", MR_CMD_MG);
    expect_error("mg foo C-1\r\n", R_TOKEN, MR_AFTER_CONTINUE);
    expect_ok("mg foo C18446744073709551615\r\n", MR_CMD_MG);
    expect_error("mg foo D-1\r\n", "CLIENT_ERROR invalid numeric delta value\r\n", MR_AFTER_CONTINUE);
    expect_error("mg foo Jx\r\n", "CLIENT_ERROR invalid numeric initial value\r\n", MR_AFTER_CONTINUE);
    expect_error("mg foo Fx\r\n", R_FORMAT, MR_AFTER_CONTINUE);
    expect_error("mg foo M\r\n", "CLIENT_ERROR incorrect length for M token\r\n", MR_AFTER_CONTINUE);
    expect_error("mg foo MSS\r\n", "CLIENT_ERROR incorrect length for M token\r\n", MR_AFTER_CONTINUE);
    expect_ok("mg foo Mx\r\n", MR_CMD_MG); /* mg has no modes */
}

Test(meta_mg, the_first_fatal_error_or_the_last_token_error_wins)
{
    expect_error("mg foo Nx zz\r\n", R_INVALID, MR_AFTER_CONTINUE);
    expect_error("mg foo zz v v\r\n", R_INVALID, MR_AFTER_CONTINUE);
    expect_error("mg foo v v zz\r\n", R_DUP, MR_AFTER_CONTINUE);
    expect_error("mg foo Dx Jx\r\n", "CLIENT_ERROR invalid numeric initial value\r\n", MR_AFTER_CONTINUE);
    expect_error("mg foo Jx MSS\r\n", "CLIENT_ERROR incorrect length for M token\r\n", MR_AFTER_CONTINUE);
    expect_error("mg foo Tx b\r\n", R_DECODE, MR_AFTER_CONTINUE);
    expect_error("mg foo b Tx\r\n", R_TOKEN, MR_AFTER_CONTINUE);
    /* F's error keeps whatever message is already there */
    expect_error("mg foo Cx Fx\r\n", R_TOKEN, MR_AFTER_CONTINUE);
    expect_error("mg foo Fx Cx\r\n", R_TOKEN, MR_AFTER_CONTINUE);
}

Test(meta_mg, opaque_is_limited_to_32_bytes_after_the_other_checks)
{
    char s[200];
    char *o32 = repeat('x', 32), *o33 = repeat('x', 33);
    snprintf(s, sizeof(s), "mg foo O%s\r\n", o32);
    expect_ok(s, MR_CMD_MG);
    snprintf(s, sizeof(s), "mg foo O%s\r\n", o33);
    expect_error(s, R_OPAQUE, MR_AFTER_CONTINUE);
    snprintf(s, sizeof(s), "mg foo O%s Nx\r\n", o33);
    expect_error(s, R_TOKEN, MR_AFTER_CONTINUE);
    expect_ok("mg foo O\r\n", MR_CMD_MG);
    free(o32);
    free(o33);
}

/* ---- base64 keys ---- */

Test(meta_base64, decodes_like_memcached)
{
    char out[64];
    cr_assert_eq(mr_base64_decode("Zm9v", 4, out, sizeof(out)), 3);
    cr_assert(memcmp(out, "foo", 3) == 0);
    cr_assert_eq(mr_base64_decode("Zm9vYQ==", 8, out, sizeof(out)), 4);
    cr_assert(memcmp(out, "fooa", 4) == 0);
    cr_assert_eq(mr_base64_decode("Zm9=", 4, out, sizeof(out)), 2);
    cr_assert_eq(mr_base64_decode("Zg=a", 4, out, sizeof(out)), 2);
    cr_assert(memcmp(out, "f\0", 2) == 0);
    cr_assert_eq(mr_base64_decode("Z=g=", 4, out, sizeof(out)), 1);
    cr_assert_eq(out[0], 'd');
    cr_assert_eq(mr_base64_decode("Zm9vYg==Zm9v", 12, out, sizeof(out)), 4); /* stops after padding */
    cr_assert_eq(mr_base64_decode("YW+/", 4, out, sizeof(out)), 3);
    cr_assert(memcmp(out, "ao\xbf", 3) == 0);
    /* bytes outside the alphabet are skipped */
    cr_assert_eq(mr_base64_decode("Zm9v\x80Zm9v", 9, out, sizeof(out)), 6);
    cr_assert_eq(mr_base64_decode("Zm9vZm9vZm9vZm9v\r", 17, out, sizeof(out)), 12);
}

Test(meta_base64, rejects_what_memcached_rejects)
{
    char out[64];
    const char *bad[] = {"Zm9",  "Zm9vYQ", "Zm9vYQ=", "Zm9v=",    "=Zm9v", "Zm9v====",
                         "A===", "!!!!",   "YW-_",    "Zm9v!m9v", "Z",     ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(mr_base64_decode(bad[i], strlen(bad[i]), out, sizeof(out)), -1, "'%s'", bad[i]);
    cr_assert_eq(mr_base64_decode("Zm9vYmFy", 8, out, 5), -1); /* does not fit */
}

Test(meta_base64, b_flag_marks_the_key_and_bad_keys_fail)
{
    const char *s = "mg Zm9v b v\r\n";
    expect_ok(s, MR_CMD_MG);
    cr_assert(h.meta_base64);
    expect_key(s, "Zm9v"); /* the key as written */
    expect_error("mg foo b\r\n", R_DECODE, MR_AFTER_CONTINUE);
    expect_error("mg foo bx\r\n", R_DECODE, MR_AFTER_CONTINUE);
    expect_error("md foo b\r\n", R_MD_MA, MR_AFTER_CONTINUE);
    expect_error("ms foo 2 b\r\n", R_DECODE, MR_AFTER_SWALLOW);
    cr_assert_eq(h.swallow_len, 4);
}

Test(meta_base64, the_250_byte_limit_applies_to_the_encoded_key)
{
    /* 186 bytes encode to 248, 187 to 252: memcached refuses the latter */
    char raw[187], enc[260], s[300];
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    memset(raw, 'x', sizeof(raw));
    for (int n = 186; n <= 187; n++) {
        size_t w = 0;
        for (int i = 0; i < n; i += 3) {
            uint32_t v = (uint32_t)(unsigned char)raw[i] << 16;
            if (i + 1 < n)
                v |= (uint32_t)(unsigned char)raw[i + 1] << 8;
            if (i + 2 < n)
                v |= (unsigned char)raw[i + 2];
            enc[w++] = alphabet[v >> 18 & 63];
            enc[w++] = alphabet[v >> 12 & 63];
            enc[w++] = i + 1 < n ? alphabet[v >> 6 & 63] : '=';
            enc[w++] = i + 2 < n ? alphabet[v & 63] : '=';
        }
        enc[w] = '\0';
        snprintf(s, sizeof(s), "mg %s b\r\n", enc);
        if (n == 186)
            expect_ok(s, MR_CMD_MG);
        else
            expect_error(s, R_FORMAT, MR_AFTER_CONTINUE);
    }
}

/* ---- ms ---- */

Test(meta_ms, line_and_data_block)
{
    const char *s = "ms foo 5 T30 F7 q k\r\nhello\r\n";
    expect_ok(s, MR_CMD_MS);
    expect_key(s, "foo");
    cr_assert_eq(h.data_len, 7);
    cr_assert(h.noreply);
    cr_assert_str_eq(forward(s), "ms foo 5 T30 F7 k\r\n");
    expect_ok("ms foo +2\r\n", MR_CMD_MS);
    cr_assert_eq(h.data_len, 4);
    expect_ok("ms foo 4294967298\r\n", MR_CMD_MS); /* cut to 32 bits: 2 */
    cr_assert_eq(h.data_len, 4);
}

Test(meta_ms, errors_before_the_flags_leave_the_data_to_be_read_as_commands)
{
    expect_error("ms foo\r\n", R_FORMAT, MR_AFTER_CONTINUE);
    expect_error("ms foo x\r\n", R_FORMAT, MR_AFTER_CONTINUE);
    expect_error("ms foo -1\r\n", R_FORMAT, MR_AFTER_CONTINUE);
    expect_error("ms foo S2\r\n", R_FORMAT, MR_AFTER_CONTINUE);
    expect_error("ms foo 2147483646\r\n", R_FORMAT, MR_AFTER_CONTINUE);
    expect_error("ms foo x c f h l s t u v I L P k q O T C N\r\n", "CLIENT_ERROR options flags too long\r\n",
                 MR_AFTER_CONTINUE);
    char s[600];
    char *k251 = repeat('a', 251);
    snprintf(s, sizeof(s), "ms %s 2 zz\r\n", k251);
    expect_error(s, R_FORMAT, MR_AFTER_CONTINUE);
    free(k251);
}

Test(meta_ms, flag_errors_swallow_the_data_block)
{
    expect_error("ms foo 2 zz\r\n", R_INVALID, MR_AFTER_SWALLOW);
    cr_assert_eq(h.swallow_len, 4);
    expect_error("ms foo 2 T1 T1\r\n", R_DUP, MR_AFTER_SWALLOW);
    expect_error("ms foo 2 S2\r\n", R_INVALID, MR_AFTER_SWALLOW);
    expect_error("ms foo 2 Mx\r\n", "CLIENT_ERROR invalid mode for ms M token\r\n", MR_AFTER_SWALLOW);
    expect_error("ms foo 2 Ms\r\n", "CLIENT_ERROR invalid mode for ms M token\r\n", MR_AFTER_SWALLOW);
    expect_error("ms foo 2 q zz\r\n", R_INVALID, MR_AFTER_SWALLOW); /* q does not hide errors */
    cr_assert_not(h.noreply);
    expect_error("ms foo 1048577 zz\r\n", R_INVALID, MR_AFTER_SWALLOW);
    cr_assert_eq(h.swallow_len, 1048579);
}

Test(meta_ms, modes)
{
    const char *modes[] = {"MS", "ME", "MA", "MP", "MR"};
    char s[64];
    for (size_t i = 0; i < 5; i++) {
        snprintf(s, sizeof(s), "ms foo 2 %s\r\n", modes[i]);
        expect_ok(s, MR_CMD_MS);
    }
    /* a mode error beats an opaque error in either order, a token error beats both */
    expect_error("ms foo 2 Mx Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
                 "CLIENT_ERROR invalid mode for ms M token\r\n", MR_AFTER_SWALLOW);
    expect_error("ms foo 2 Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx Mx\r\n",
                 "CLIENT_ERROR invalid mode for ms M token\r\n", MR_AFTER_SWALLOW);
    expect_error("ms foo 2 Mx Tx\r\n", R_TOKEN, MR_AFTER_SWALLOW);
    expect_error("ms foo 2 Fx Mx\r\n", R_FORMAT, MR_AFTER_SWALLOW);
}

Test(meta_ms, too_large_is_sent_even_with_q_and_unlinks_the_key)
{
    expect_error("ms foo 1048577 q\r\n", R_TOO_LARGE, MR_AFTER_SWALLOW);
    cr_assert_eq(h.swallow_len, 1048579);
    cr_assert(h.error_unlinks_key);
    expect_key("ms foo 1048577 q\r\n", "foo");
    expect_error("ms foo 1048577 ME\r\n", R_TOO_LARGE, MR_AFTER_SWALLOW); /* any mode */
    cr_assert(h.error_unlinks_key);
    expect_ok("ms k 1048516\r\n", MR_CMD_MS);
    expect_error("ms k 1048517\r\n", R_TOO_LARGE, MR_AFTER_SWALLOW);
    expect_error("ms k 1048513 F1\r\n", R_TOO_LARGE, MR_AFTER_SWALLOW);
    expect_ok("ms k 1048516 F4294967296\r\n", MR_CMD_MS);
    /* with b the decoded key counts: "azE=" is "k1" */
    expect_ok("ms azE= 1048515 b\r\n", MR_CMD_MS);
    expect_error("ms azE= 1048516 b\r\n", R_TOO_LARGE, MR_AFTER_SWALLOW);
    cr_assert(h.meta_base64);
}

/* ---- md ma ---- */

Test(meta_md, any_flag_error_has_one_message)
{
    expect_ok("md foo q C5 I T30 k O1\r\n", MR_CMD_MD);
    cr_assert(h.noreply);
    expect_error("md foo x\r\n", R_MD_MA, MR_AFTER_CONTINUE);
    expect_error("md foo v v\r\n", R_MD_MA, MR_AFTER_CONTINUE);
    expect_error("md foo Tx\r\n", R_MD_MA, MR_AFTER_CONTINUE);
    expect_error("md foo MSS\r\n", R_MD_MA, MR_AFTER_CONTINUE);
    expect_error("md foo noreply\r\n", R_MD_MA, MR_AFTER_CONTINUE);
    expect_error("md foo Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n", R_OPAQUE, MR_AFTER_CONTINUE);
    expect_error("md foo Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx Tx\r\n", R_MD_MA, MR_AFTER_CONTINUE);
    expect_ok("md foo Mx\r\n", MR_CMD_MD);
}

Test(meta_ma, modes_and_errors)
{
    const char *ok[] = {"ma n MI\r\n", "ma n M+\r\n", "ma n MD\r\n", "ma n M-\r\n",
                        "ma n D5 J7 N0 T1 C1 q v t k\r\n"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        expect_ok(ok[i], MR_CMD_MA);
    expect_error("ma n Mi\r\n", "CLIENT_ERROR invalid mode for ma M token\r\n", MR_AFTER_CONTINUE);
    expect_error("ma n Md\r\n", "CLIENT_ERROR invalid mode for ma M token\r\n", MR_AFTER_CONTINUE);
    expect_error("ma n MII\r\n", R_MD_MA, MR_AFTER_CONTINUE);
    expect_error("ma n Dx\r\n", R_MD_MA, MR_AFTER_CONTINUE);
    expect_error("ma n D-1\r\n", R_MD_MA, MR_AFTER_CONTINUE);
    expect_ok("ma n D18446744073709551615\r\n", MR_CMD_MA);
    expect_error("ma\r\n", R_ERROR, MR_AFTER_CONTINUE);
}

/* ---- me mn ---- */

Test(meta_me, key_and_the_b_token)
{
    const char *s = "me foo\r\n";
    expect_ok(s, MR_CMD_ME);
    expect_key(s, "foo");
    expect_ok("me foo zz v v q\r\n", MR_CMD_ME); /* no flag rules; q means nothing */
    cr_assert_not(h.noreply);
    cr_assert_eq(h.strip_len, 0);
    expect_ok("me Zm9v b\r\n", MR_CMD_ME);
    cr_assert(h.meta_base64);
    expect_ok("me Zm9v x b\r\n", MR_CMD_ME); /* only the third token can be b */
    cr_assert_not(h.meta_base64);
    expect_ok("me Zm9v bx\r\n", MR_CMD_ME);
    cr_assert_not(h.meta_base64);
    expect_error("me foo b\r\n", R_FORMAT, MR_AFTER_CONTINUE);
    expect_error("me\r\n", R_FORMAT, MR_AFTER_CONTINUE); /* not ERROR as for the others */
}

/* ---- quiet mode ---- */

Test(meta_quiet, mg_hides_only_misses)
{
    cr_assert(mr_meta_quiet_suppresses(MR_CMD_MG, "EN\r\n", 4));
    cr_assert_not(mr_meta_quiet_suppresses(MR_CMD_MG, "HD\r\n", 4));
    cr_assert_not(mr_meta_quiet_suppresses(MR_CMD_MG, "HD kfoo\r\n", 9));
    cr_assert_not(mr_meta_quiet_suppresses(MR_CMD_MG, "VA 5\r\n", 6));
    cr_assert_not(mr_meta_quiet_suppresses(MR_CMD_MG, "CLIENT_ERROR bad command line format\r\n", 38));
}

Test(meta_quiet, ms_and_md_hide_only_hd)
{
    cr_assert(mr_meta_quiet_suppresses(MR_CMD_MS, "HD\r\n", 4));
    cr_assert(mr_meta_quiet_suppresses(MR_CMD_MS, "HD k1 O9\r\n", 10));
    cr_assert_not(mr_meta_quiet_suppresses(MR_CMD_MS, "NS\r\n", 4));
    cr_assert_not(mr_meta_quiet_suppresses(MR_CMD_MS, "EX\r\n", 4));
    cr_assert_not(mr_meta_quiet_suppresses(MR_CMD_MS, "NF\r\n", 4));
    cr_assert(mr_meta_quiet_suppresses(MR_CMD_MD, "HD\r\n", 4));
    cr_assert_not(mr_meta_quiet_suppresses(MR_CMD_MD, "NF\r\n", 4)); /* memcached 1.6.18 sends NF */
    cr_assert_not(mr_meta_quiet_suppresses(MR_CMD_MD, "EX\r\n", 4));
}

Test(meta_quiet, ma_hides_hd_and_va)
{
    cr_assert(mr_meta_quiet_suppresses(MR_CMD_MA, "HD\r\n", 4));
    cr_assert(mr_meta_quiet_suppresses(MR_CMD_MA, "VA 2\r\n", 6));
    cr_assert_not(mr_meta_quiet_suppresses(MR_CMD_MA, "NF\r\n", 4));
    cr_assert_not(mr_meta_quiet_suppresses(MR_CMD_MA, "NS\r\n", 4));
    cr_assert_not(mr_meta_quiet_suppresses(MR_CMD_MA, "EX\r\n", 4));
}

/* memcached shows the HD/VA of an item ma's N just created even under q, and
 * the reply cannot tell creation from increment: the server must apply q. */
Test(meta_quiet, ma_with_n_and_q_is_left_to_the_server)
{
    expect_ok("ma k N0 J1 q\r\n", MR_CMD_MA);
    cr_assert(h.noreply && h.quiet_by_server);
    cr_assert_str_eq(forward("ma k N0 J1 q\r\n"), "ma k N0 J1\r\n"); /* the strip span is still reported */
    expect_ok("ma k q N30 v\r\n", MR_CMD_MA);
    cr_assert(h.quiet_by_server);
    expect_ok("ma k q\r\n", MR_CMD_MA);
    cr_assert(h.noreply && !h.quiet_by_server);
    expect_ok("ma k N0\r\n", MR_CMD_MA);
    cr_assert(!h.noreply && !h.quiet_by_server);
    expect_ok("mg k N30 q v\r\n", MR_CMD_MG); /* mg's rule is in the reply (EN) */
    cr_assert(!h.quiet_by_server);
    expect_error("ma k N0 q D\r\n", R_MD_MA, MR_AFTER_CONTINUE);
    cr_assert(!h.quiet_by_server);
}

Test(meta_quiet, me_mn_and_prefixes_are_never_hidden)
{
    cr_assert_not(mr_meta_quiet_suppresses(MR_CMD_ME, "EN\r\n", 4));
    cr_assert_not(mr_meta_quiet_suppresses(MR_CMD_MN, "MN\r\n", 4));
    cr_assert_not(mr_meta_quiet_suppresses(MR_CMD_MG, "ENX\r\n", 5));
    cr_assert_not(mr_meta_quiet_suppresses(MR_CMD_MS, "H", 1));
}
