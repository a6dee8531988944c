/* A reply must fit its request (reply_fit.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "memrelay/reply_fit.h"

static mr_reply_fit fit_of(const char *line)
{
    return mr_reply_fit_of(line, (uint32_t)strlen(line));
}

/* Does reply `r` (one element: its kind found by the reply parser) fit command line `cmd`? */
static bool fits(const char *cmd, const char *r)
{
    mr_reply_elem e;
    mr_reply_kind k = mr_reply_next(r, strlen(r), 1 << 20, 8192, &e);
    cr_assert(k != MR_REPLY_NEED_MORE && k != MR_REPLY_BAD, "%s", r);
    char buf[96];
    return mr_reply_misfit(fit_of(cmd), false, false, k, r, e.line_len, buf, sizeof(buf)) == NULL;
}

Test(reply_fit, commands_are_read_from_the_line_written)
{
    cr_assert_eq(fit_of("get a b\r\n"), MR_FIT_RETRIEVAL);
    cr_assert_eq(fit_of("gats 10 a\r\n"), MR_FIT_RETRIEVAL);
    cr_assert_eq(fit_of("set a 0 0 1\r\n"), MR_FIT_STORE);
    cr_assert_eq(fit_of("cas a 0 0 1 5\r\n"), MR_FIT_CAS);
    cr_assert_eq(fit_of("delete a\r\n"), MR_FIT_DELETE);
    cr_assert_eq(fit_of("mg a v\r\n"), MR_FIT_MG);
    cr_assert_eq(fit_of("flush_all\r\n"), MR_FIT_FLUSH);
    cr_assert_eq(fit_of("getx a\r\n"), MR_FIT_ANY);
}

Test(reply_fit, each_command_takes_its_own_replies)
{
    cr_assert(fits("get a\r\n", "VALUE a 0 1\r\nx\r\n"));
    cr_assert(fits("get a\r\n", "END\r\n"));
    cr_assert(fits("set a 0 0 1\r\n", "STORED\r\n"));
    cr_assert(fits("add a 0 0 1\r\n", "NOT_STORED\r\n"));
    cr_assert(fits("cas a 0 0 1 5\r\n", "EXISTS\r\n"));
    cr_assert(fits("cas a 0 0 1 5\r\n", "NOT_FOUND\r\n"));
    cr_assert(fits("delete a\r\n", "DELETED\r\n"));
    cr_assert(fits("incr a 1\r\n", "42\r\n"));
    cr_assert(fits("touch a 1\r\n", "TOUCHED\r\n"));
    cr_assert(fits("mg a v\r\n", "VA 1\r\nx\r\n"));
    cr_assert(fits("mg a\r\n", "EN\r\n"));
    cr_assert(fits("ms a 1\r\n", "HD\r\n"));
    cr_assert(fits("md a\r\n", "NF\r\n"));
    cr_assert(fits("version\r\n", "VERSION 1.6.18\r\n"));
    cr_assert(fits("flush_all\r\n", "OK\r\n"));
}

Test(reply_fit, error_lines_fit_everything)
{
    cr_assert(fits("get a\r\n", "SERVER_ERROR out of memory\r\n"));
    cr_assert(fits("set a 0 0 1\r\n", "CLIENT_ERROR bad data chunk\r\n"));
    cr_assert(fits("mg a\r\n", "ERROR\r\n"));
}

Test(reply_fit, the_wrong_kind_is_refused)
{
    cr_assert_not(fits("delete a\r\n", "VALUE b 0 1\r\nx\r\n"), "a value for a delete");
    cr_assert_not(fits("delete a\r\n", "END\r\n"));
    cr_assert_not(fits("set a 0 0 1\r\n", "NOT_FOUND\r\n"), "NOT_FOUND is for cas only");
    cr_assert_not(fits("set a 0 0 1\r\n", "VA 1\r\nx\r\n"), "VA for a classic set");
    cr_assert_not(fits("set a 0 0 1\r\n", "DELETED\r\n"));
    cr_assert_not(fits("get a\r\n", "STORED\r\n"));
    cr_assert_not(fits("get a\r\n", "VA 1\r\nx\r\n"));
    cr_assert_not(fits("incr a 1\r\n", "STORED\r\n"));
    cr_assert_not(fits("delete a\r\n", "42\r\n"));
    cr_assert_not(fits("mg a\r\n", "VALUE a 0 1\r\nx\r\n"));
    cr_assert_not(fits("ms a 1\r\n", "STORED\r\n"));
    cr_assert_not(fits("flush_all\r\n", "VERSION 1\r\n"));
}

Test(reply_fit, mn_fits_only_a_fenced_request)
{
    char buf[96];
    mr_reply_fit f = fit_of("mg a q\r\n");
    cr_assert_null(mr_reply_misfit(f, true, false, MR_REPLY_LINE, "MN\r\n", 4, buf, sizeof(buf)));
    cr_assert_not_null(mr_reply_misfit(f, false, false, MR_REPLY_LINE, "MN\r\n", 4, buf, sizeof(buf)));
}

Test(reply_fit, the_cause_names_the_reply_and_the_command)
{
    char buf[96];
    const char *why = mr_reply_misfit(fit_of("set a 0 0 1\r\n"), false, false, MR_REPLY_LINE, "NOT_FOUND\r\n",
                                      11, buf, sizeof(buf));
    cr_assert_str_eq(why, "NOT_FOUND for a storage command");
}
