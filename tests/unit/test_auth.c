/* test_auth.c: the credentials file and memcached -Y's pre-authentication
 * gate, behaviour by behaviour (the replies are those memcached 1.6.18 gives;
 * tests/integration/test_auth.py compares them with a real memcached). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memrelay/auth.h"
#include "memrelay/auth_gate.h"
#include "memrelay/config.h"

static const char UNAUTH[] = "CLIENT_ERROR unauthenticated\r\n";
static const char FAILURE[] = "CLIENT_ERROR authentication failure\r\n";
static const char FORMAT[] = "CLIENT_ERROR bad authentication token format\r\n";
static const char TERM[] = "CLIENT_ERROR bad command line termination\r\n";

static mr_auth_table *table(const char *text)
{
    mr_auth_error err;
    mr_auth_table *t = mr_auth_parse(text, strlen(text), &err);
    cr_assert_not_null(t, "parse failed: %s", err.message);
    return t;
}

static void expect_refused(const char *text, int line, const char *needle)
{
    mr_auth_error err;
    mr_auth_table *t = mr_auth_parse(text, strlen(text), &err);
    if (t)
        mr_auth_unref(t);
    cr_assert_null(t, "expected '%s' to be refused", text);
    cr_expect_eq(err.line, line, "line %d: %s", err.line, err.message);
    cr_expect(strstr(err.message, needle) != NULL, "message '%s' should contain '%s'", err.message, needle);
}

static mr_auth_step gate(const mr_auth_table *t, const char *in)
{
    mr_auth_step st;
    mr_auth_gate(in, (uint32_t)strlen(in), t, &st);
    return st;
}

static void expect_reply(const mr_auth_table *t, const char *in, const char *reply, uint32_t consumed)
{
    mr_auth_step st = gate(t, in);
    cr_assert_eq(st.action, MR_AUTH_REPLY, "input '%s': action %d", in, st.action);
    cr_expect_str_eq(st.reply, reply, "input '%s'", in);
    cr_expect_eq(st.consumed, consumed, "input '%s': consumed %u", in, st.consumed);
}

/* ---- the file ---- */

Test(auth, file_format_as_memcached)
{
    mr_auth_table *t = table("alice:secret\r\nbob:hun:ter2\ncarol:x");
    cr_expect_eq(mr_auth_count(t), 3);
    cr_expect(mr_auth_check(t, "alice", 5, "secret", 6));
    cr_expect(mr_auth_check(t, "bob", 3, "hun:ter2", 8), "a password may contain ':'");
    cr_expect(mr_auth_check(t, "carol", 5, "x", 1), "the last line needs no newline");
    mr_auth_unref(t);
}

Test(auth, check_rejects_near_misses)
{
    mr_auth_table *t = table("alice:secret\n");
    cr_expect_not(mr_auth_check(t, "alice", 5, "secre", 5));
    cr_expect_not(mr_auth_check(t, "alice", 5, "secret!", 7));
    cr_expect_not(mr_auth_check(t, "alice", 5, "Secret", 6));
    cr_expect_not(mr_auth_check(t, "ALICE", 5, "secret", 6));
    cr_expect_not(mr_auth_check(t, "bob", 3, "secret", 6));
    cr_expect_not(mr_auth_check(t, "alice", 5, "secret\0", 7), "a zero byte is not padding");
    char longpw[400];
    memset(longpw, 'x', sizeof(longpw));
    cr_expect_not(mr_auth_check(t, "alice", 5, longpw, sizeof(longpw)));
    cr_expect_not(mr_auth_check(NULL, "alice", 5, "secret", 6));
    mr_auth_unref(t);
}

Test(auth, same_user_twice_accepts_both_passwords)
{
    mr_auth_table *t = table("app:old\napp:new\n");
    cr_expect(mr_auth_check(t, "app", 3, "old", 3));
    cr_expect(mr_auth_check(t, "app", 3, "new", 3));
    mr_auth_unref(t);
}

Test(auth, longest_fields_fit)
{
    char text[600];
    memset(text, 'u', 255);
    text[255] = ':';
    memset(text + 256, 'p', 255);
    text[511] = '\0';
    mr_auth_table *t = table(text);
    cr_expect(mr_auth_check(t, text, 255, text + 256, 255));
    mr_auth_unref(t);
    memset(text + 256, 'p', 256);
    text[512] = '\0';
    expect_refused(text, 1, "the password is longer than 255 bytes");
}

Test(auth, refuses_lines_that_could_never_match)
{
    expect_refused("", 0, "no credentials");
    expect_refused("alice:secret\n\nbob:x\n", 2, "line 2 is empty");
    expect_refused("alice\n", 1, "no ':'");
    expect_refused("a:b\n:secret\n", 2, "the user name is empty");
    expect_refused("alice:\n", 1, "the password is empty");
    expect_refused("al ice:secret\n", 1, "the user name contains a space");
    expect_refused("alice:sec ret\n", 1, "the password contains a space");
    expect_refused("alice:sec\rret\n", 1, "carriage return");
}

Test(auth, refuses_too_many_entries)
{
    size_t n = MR_AUTH_ENTRIES_MAX + 1;
    char *text = malloc(n * 16);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(text + len, "u%zu:p\n", i);
    mr_auth_error err;
    cr_expect_null(mr_auth_parse(text, len, &err));
    cr_expect(strstr(err.message, "at most") != NULL, "%s", err.message);
    free(text);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    cr_assert_eq(chmod(path, mode), 0);
}

Test(auth, load_refuses_files_others_can_access)
{
    char path[] = "/tmp/memrelay-auth-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    static const mode_t bad[] = {0640, 0604, 0620, 0602, 0610, 0644, 0666};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_file(path, "alice:secret\n", bad[i]);
        mr_auth_error err;
        mr_auth_table *t = mr_auth_load(path, &err);
        cr_expect_null(t, "mode %o accepted", (unsigned)bad[i]);
        mr_auth_unref(t);
        cr_expect(strstr(err.message, "group or others") != NULL, "%s", err.message);
        cr_expect(strstr(err.message, "secret") == NULL, "the message shows the password: %s", err.message);
    }
    static const mode_t good[] = {0600, 0400};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        write_file(path, "alice:secret\n", good[i]);
        mr_auth_error err;
        mr_auth_table *t = mr_auth_load(path, &err);
        cr_expect_not_null(t, "mode %o refused: %s", (unsigned)good[i], err.message);
        mr_auth_unref(t);
    }
    unlink(path);
    mr_auth_error err;
    cr_expect_null(mr_auth_load(path, &err));
    cr_expect(strstr(err.message, "cannot be read") != NULL, "%s", err.message);
    cr_expect_null(mr_auth_load("/tmp", &err));
    cr_expect(strstr(err.message, "not a regular file") != NULL, "%s", err.message);
}

Test(auth, config_error_points_at_the_key_and_hides_the_password)
{
    char path[] = "/tmp/memrelay-auth-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    write_file(path, "alice:topsecret pw\n", 0600);
    char yaml[300];
    snprintf(yaml, sizeof(yaml), "p:\n  listen: 127.0.0.1:1\n  auth_file: %s\n  servers: [a:1:1]\n", path);
    mr_config_error err;
    mr_config *cfg = mr_config_load_string(yaml, strlen(yaml), "t.yml", &err);
    cr_expect_null(cfg);
    mr_config_free(cfg);
    cr_expect(strncmp(err.message, "t.yml:3:14: ", 12) == 0, "%s", err.message);
    cr_expect(strstr(err.message, "line 1") != NULL, "%s", err.message);
    cr_expect(strstr(err.message, "topsecret") == NULL, "the message shows the password: %s", err.message);

    write_file(path, "alice:secret\n", 0600);
    cfg = mr_config_load_string(yaml, strlen(yaml), "t.yml", &err);
    cr_assert_not_null(cfg, "%s", err.message);
    cr_expect_eq(mr_auth_count(cfg->pools[0].auth), 1);
    cr_expect(mr_listener_is_protected(&cfg->pools[0]));
    mr_config_free(cfg);
    unlink(path);
}

/* ---- the gate ---- */

Test(auth, gate_good_credentials)
{
    mr_auth_table *t = table("alice:secret\n");
    const char *in = "set a 0 0 12\r\nalice secret\r\nget foo\r\n";
    mr_auth_step st = gate(t, in);
    cr_assert_eq(st.action, MR_AUTH_REPLY);
    cr_expect_str_eq(st.reply, "STORED\r\n");
    cr_expect_eq(st.outcome, MR_AUTH_GRANTED);
    cr_expect_eq(st.consumed, 28, "only the auth set is consumed, not what follows");
    mr_auth_unref(t);
}

Test(auth, gate_bad_credentials)
{
    mr_auth_table *t = table("alice:secret\n");
    mr_auth_step st = gate(t, "set a 0 0 11\r\nalice wrong\r\n");
    cr_expect_str_eq(st.reply, FAILURE);
    cr_expect_eq(st.outcome, MR_AUTH_DENIED);
    mr_auth_unref(t);
}

Test(auth, gate_what_memcached_ignores_in_the_auth_set)
{
    mr_auth_table *t = table("alice:secret\n");
    /* key, flags and exptime are not checked; noreply and extra tokens are ignored */
    expect_reply(t, "set a x y 12 noreply more\r\nalice secret\r\n", "STORED\r\n", 41);
    expect_reply(t, " set  a  0  0  12 \r\nalice secret\r\n", "STORED\r\n", 34);
    expect_reply(t, "set a 0 0 +12\r\nalice secret\r\n", "STORED\r\n", 29);
    expect_reply(t, "set a 0 0 012\r\nalice secret\r\n", "STORED\r\n", 29);
    expect_reply(t, "set a 0 0 12\nalice secret\r\n", "STORED\r\n", 27);
    /* extra tokens after the password, repeated spaces, text after a NUL */
    expect_reply(t, "set a 0 0 18\r\nalice secret extra\r\n", "STORED\r\n", 34);
    expect_reply(t, "set a 0 0 14\r\n alice  secret\r\n", "STORED\r\n", 30);
    mr_auth_step st;
    static const char nul[] = "set a 0 0 15\r\nalice secret\0xx\r\n";
    mr_auth_gate(nul, sizeof(nul) - 1, t, &st);
    cr_expect_str_eq(st.reply, "STORED\r\n");
    mr_auth_unref(t);
}

Test(auth, gate_everything_else_is_unauthenticated)
{
    mr_auth_table *t = table("alice:secret\n");
    static const char *const lines[] = {
        "get foo\r\n",
        "version\r\n",
        "quit\r\n",
        "stats\r\n",
        "mn\r\n",
        "mg foo v\r\n",
        "\r\n",
        "\n",
        "ab\n",
        "add a 0 0 12\r\n",
        "cas a 0 0 12 5\r\n",
        "SET a 0 0 12\r\n",
        "setx a 0 0 12\r\n",
        "set\ta 0 0 12\r\n",
        "set a 0 0\r\n",
        "set a 0 0 abc\r\n",
        "set a 0 0 12x\r\n",
        "set a 0 0 -1\r\n",
        "set a 0 0 \r\n",
        "set a 0 0 99999999999999999999\r\n",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
        expect_reply(t, lines[i], UNAUTH, (uint32_t)strlen(lines[i]));
    mr_auth_unref(t);
}

Test(auth, gate_malformed_data)
{
    mr_auth_table *t = table("alice:secret\n");
    expect_reply(t, "set a 0 0 3\r\nfoo\r\n", FORMAT, 18);
    expect_reply(t, "set a 0 0 0\r\n\r\n", FORMAT, 15);
    expect_reply(t, "set a 0 0 6\r\nalice \r\n", FORMAT, 21);
    expect_reply(t, "set a 0 0 12\r\nalice\tsecret\r\n", FORMAT, 28);
    expect_reply(t, "set a 0 0 12\r\nalice secretXY", TERM, 28);
    /* a failed format check is not a credential check */
    cr_expect_eq(gate(t, "set a 0 0 3\r\nfoo\r\n").outcome, MR_AUTH_NOT_TRIED);
    mr_auth_unref(t);
}

Test(auth, gate_waits_and_closes_like_memcached)
{
    mr_auth_table *t = table("alice:secret\n");
    mr_auth_step st = gate(t, "set a 0 0 12\r\nalice");
    cr_expect_eq(st.action, MR_AUTH_NEED_MORE);
    cr_expect_eq(st.need, 28);
    cr_expect_eq(gate(t, "get fo").action, MR_AUTH_NEED_MORE);
    cr_expect_eq(gate(t, "").action, MR_AUTH_NEED_MORE);

    char junk[MR_AUTH_GATE_LINE_MAX + 2];
    memset(junk, 'x', sizeof(junk) - 1);
    junk[sizeof(junk) - 1] = '\0';
    cr_expect_eq(gate(t, junk).action, MR_AUTH_CLOSE, "no newline in 2049 bytes");
    junk[MR_AUTH_GATE_LINE_MAX] = '\0';
    cr_expect_eq(gate(t, junk).action, MR_AUTH_NEED_MORE, "2048 bytes may still become a line");

    cr_expect_eq(gate(t, "set a 0 0 16383\r\n").action, MR_AUTH_CLOSE, "more than memcached's read buffer");
    cr_expect_eq(gate(t, "set a 0 0 16382\r\n").action, MR_AUTH_NEED_MORE);
    mr_auth_unref(t);
}

Test(auth, refcount_keeps_the_table_alive)
{
    mr_auth_table *t = table("alice:secret\n");
    mr_auth_table *held = mr_auth_ref(t);
    mr_auth_unref(t);
    cr_expect(mr_auth_check(held, "alice", 5, "secret", 6));
    mr_auth_unref(held);
    mr_auth_unref(NULL);
}

Test(auth, failures_are_free_then_delayed_doubling_then_closed)
{
    cr_assert_eq(mr_auth_failure_penalty(1), MR_AUTH_GO_ON);
    cr_assert_eq(mr_auth_failure_penalty(2), MR_AUTH_GO_ON);
    cr_assert_eq(mr_auth_failure_penalty(3), MR_AUTH_DELAY);
    cr_assert_eq(mr_auth_failure_penalty(4), MR_AUTH_DELAY);
    cr_assert_eq(mr_auth_failure_penalty(5), MR_AUTH_SHUT);
    cr_assert_eq(mr_auth_failure_penalty(900000), MR_AUTH_SHUT);
    cr_assert_eq(mr_auth_failure_delay(2), 0.0);
    cr_assert_eq(mr_auth_failure_delay(3), MR_AUTH_DELAY_FIRST);
    cr_assert_eq(mr_auth_failure_delay(4), 2 * MR_AUTH_DELAY_FIRST);
    cr_assert_eq(mr_auth_failure_delay(5), 0.0);
}
