/* test_emit.c: what the client is sent (emit.c): split gets merged back into
 * its key order, failures as misses or as errors, flush_all's verdict over
 * every server, meta quiet mode, and binary clients' responses. Server
 * replies are memcached 1.6's bytes (tests/integration/test_differential.py
 * compares against it).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "memrelay/dispatch.h"
#include "memrelay/emit.h"
#include "support/fake_backend.h"

/* miss (0) and fail (1): the same shape, multiget_errors miss and fail. */
static const char pools[] = "miss:\n"
                            "  listen: 127.0.0.1:22400\n"
                            "  hash: md5\n"
                            "  distribution: ketama\n"
                            "  multiget_errors: miss\n"
                            "  servers:\n"
                            "    - 127.0.0.1:22401:1 m1\n"
                            "    - 127.0.0.1:22402:1 m2\n"
                            "    - 127.0.0.1:22403:1 m3\n"
                            "fail:\n"
                            "  listen: 127.0.0.1:22410\n"
                            "  hash: md5\n"
                            "  distribution: ketama\n"
                            "  multiget_errors: fail\n"
                            "  servers:\n"
                            "    - 127.0.0.1:22411:1 f1\n"
                            "    - 127.0.0.1:22412:1 f2\n"
                            "    - 127.0.0.1:22413:1 f3\n";

#define MISS 0u
#define FAIL 1u

/* Keys of `pool`: a[] on its first server, b[] on its second, c[] on its third. */
typedef struct {
    char a[2][32], b[2][32], c[1][32];
} keyset;

static void keys_of(fb *f, uint32_t pool, keyset *k)
{
    fb_keys_on(f, pool, fb_server(f, pool, 0), "a", k->a, 2);
    fb_keys_on(f, pool, fb_server(f, pool, 1), "b", k->b, 2);
    fb_keys_on(f, pool, fb_server(f, pool, 2), "c", k->c, 1);
}

/* memcached's item for key with a value "v<key>". */
static const char *item(const char *key)
{
    static char buf[8][128];
    static int next;
    char *out = buf[next++ % 8];
    snprintf(out, 128, "VALUE %s 0 %zu\r\nv%s\r\n", key, strlen(key) + 1, key);
    return out;
}

/* "get a0 b0 c0 a1 b0 b1": a duplicate, and keys from three servers. */
static void get_six(fb *f, uint32_t pool, const keyset *k)
{
    char line[256];
    snprintf(line, sizeof(line), "get %s %s %s %s %s %s\r\n", k->a[0], k->b[0], k->c[0], k->a[1], k->b[0],
             k->b[1]);
    fb_request_on(f, pool, line);
    cr_assert_eq(fb_nsent(f), 3);
}

Test(emit, a_split_get_is_merged_back_into_key_order_with_misses_and_duplicates)
{
    fb *f = fb_new(pools);
    keyset k;
    keys_of(f, MISS, &k);
    get_six(f, MISS, &k);
    char reply[512];
    /* Replies in any order; memcached answers a duplicate key twice. a0
     * and c0 are misses: a1, the next item of a0's server, is not a0's. */
    fb_reply(f, fb_to(f, fb_server(f, MISS, 2)), "END\r\n");
    snprintf(reply, sizeof(reply), "%s%s%sEND\r\n", item(k.b[0]), item(k.b[0]), item(k.b[1]));
    fb_reply(f, fb_to(f, fb_server(f, MISS, 1)), reply);
    cr_assert_str_eq(fb_output(f), "", "no reply before every server answered");
    snprintf(reply, sizeof(reply), "%sEND\r\n", item(k.a[1]));
    fb_reply(f, fb_to(f, fb_server(f, MISS, 0)), reply);
    char want[1024];
    snprintf(want, sizeof(want), "%s%s%s%sEND\r\n", item(k.b[0]), item(k.a[1]), item(k.b[0]), item(k.b[1]));
    cr_assert_str_eq(fb_output(f), want);
    cr_assert_eq(f->w.stats.get_hits, 4);
    cr_assert_eq(f->w.stats.get_misses, 2);
    fb_free(f);
}

Test(emit, a_failed_server_keys_count_as_misses)
{
    fb *f = fb_new(pools);
    keyset k;
    keys_of(f, MISS, &k);
    get_six(f, MISS, &k);
    char reply[512];
    snprintf(reply, sizeof(reply), "%s%sEND\r\n", item(k.a[0]), item(k.a[1]));
    fb_reply(f, fb_to(f, fb_server(f, MISS, 0)), reply);
    fb_fail(f, fb_to(f, fb_server(f, MISS, 1)), MR_ERR_UNAVAILABLE);
    snprintf(reply, sizeof(reply), "%sEND\r\n", item(k.c[0]));
    fb_reply(f, fb_to(f, fb_server(f, MISS, 2)), reply);
    char want[1024];
    snprintf(want, sizeof(want), "%s%s%sEND\r\n", item(k.a[0]), item(k.c[0]), item(k.a[1]));
    cr_assert_str_eq(fb_output(f), want);
    cr_assert_eq(f->w.stats.multiget_server_failures, 1);
    cr_assert_eq(f->w.stats.get_misses, 3);
    fb_free(f);
}

Test(emit, an_error_line_from_one_server_of_a_split_get_counts_its_keys_as_misses)
{
    fb *f = fb_new(pools);
    keyset k;
    keys_of(f, MISS, &k);
    get_six(f, MISS, &k);
    char reply[512];
    snprintf(reply, sizeof(reply), "%sEND\r\n", item(k.b[1]));
    fb_reply(f, fb_to(f, fb_server(f, MISS, 1)), reply);
    fb_reply(f, fb_to(f, fb_server(f, MISS, 0)), "SERVER_ERROR out of memory writing get response\r\n");
    fb_reply(f, fb_to(f, fb_server(f, MISS, 2)), "END\r\n");
    char want[512];
    snprintf(want, sizeof(want), "%sEND\r\n", item(k.b[1]));
    cr_assert_str_eq(fb_output(f), want);
    cr_assert_eq(f->w.stats.multiget_server_failures, 1);
    fb_free(f);
}

Test(emit, multiget_errors_fail_answers_the_failure_instead)
{
    fb *f = fb_new(pools);
    keyset k;
    keys_of(f, FAIL, &k);
    get_six(f, FAIL, &k);
    char reply[512];
    snprintf(reply, sizeof(reply), "%s%sEND\r\n", item(k.a[0]), item(k.a[1]));
    fb_reply(f, fb_to(f, fb_server(f, FAIL, 0)), reply);
    fb_fail(f, fb_to(f, fb_server(f, FAIL, 1)), MR_ERR_UNAVAILABLE);
    fb_reply(f, fb_to(f, fb_server(f, FAIL, 2)), "END\r\n");
    /* The error alone, no items and no END (test_failures.py). */
    cr_assert_str_eq(fb_output(f), "SERVER_ERROR backend unavailable\r\n");
    fb_free(f);
}

Test(emit, a_single_key_get_passes_its_error_through)
{
    fb *f = fb_new(pools);
    fb_request(f, "get k\r\n");
    fb_reply(f, fb_sent_at(f, 0), "SERVER_ERROR out of memory writing get response\r\n");
    cr_assert_str_eq(fb_output(f), "SERVER_ERROR out of memory writing get response\r\n");
    fb_request(f, "get k\r\n");
    fb_fail(f, fb_sent_at(f, 1), MR_ERR_TIMEOUT);
    cr_assert_str_eq(fb_output(f), "SERVER_ERROR timeout\r\n",
                     "a transport failure is its error, not a miss");
    fb_free(f);
}

Test(emit, a_one_server_multiget_passes_memcached_error_line_through)
{
    fb *f = fb_new(pools);
    keyset k;
    keys_of(f, MISS, &k);
    char line[128];
    snprintf(line, sizeof(line), "get %s %s\r\n", k.a[0], k.a[1]);
    fb_request(f, line);
    cr_assert_eq(fb_nsent(f), 1);
    /* As memcached itself would have answered the client. */
    fb_reply(f, fb_sent_at(f, 0), "SERVER_ERROR out of memory writing get response\r\n");
    cr_assert_str_eq(fb_output(f), "SERVER_ERROR out of memory writing get response\r\n");
    fb_free(f);
}

Test(emit, a_get_for_a_server_held_down_is_a_miss)
{
    fb *f = fb_new(pools);
    keyset k;
    keys_of(f, MISS, &k);
    fb_set_down(f, fb_server(f, MISS, 0), MR_ERR_DOWN);
    char line[128];
    snprintf(line, sizeof(line), "get %s\r\n", k.a[0]);
    fb_request(f, line);
    cr_assert_eq(f->nready, 1, "answered at once");
    cr_assert_str_eq(fb_output(f), "END\r\n");
    snprintf(line, sizeof(line), "get %s %s\r\n", k.a[0], k.b[0]);
    fb_request(f, line);
    char reply[256];
    snprintf(reply, sizeof(reply), "%sEND\r\n", item(k.b[0]));
    fb_reply(f, fb_to(f, fb_server(f, MISS, 1)), reply);
    cr_assert_str_eq(fb_output(f), reply);
    fb_free(f);
}

Test(emit, a_get_for_a_server_held_down_is_an_error_with_multiget_errors_fail)
{
    fb *f = fb_new(pools);
    keyset k;
    keys_of(f, FAIL, &k);
    fb_set_down(f, fb_server(f, FAIL, 0), MR_ERR_DOWN);
    char line[128];
    snprintf(line, sizeof(line), "get %s\r\n", k.a[0]);
    fb_request_on(f, FAIL, line);
    cr_assert_str_eq(fb_output(f), "SERVER_ERROR backend unavailable\r\n");
    fb_free(f);
}

Test(emit, flush_all_is_ok_only_if_every_server_said_ok)
{
    fb *f = fb_new(pools);
    fb_request(f, "flush_all\r\n");
    for (uint32_t i = 0; i < 3; i++)
        fb_reply(f, fb_sent_at(f, i), "OK\r\n");
    cr_assert_str_eq(fb_output(f), "OK\r\n");
    fb_request(f, "flush_all\r\n");
    fb_reply(f, fb_sent_at(f, 3), "OK\r\n");
    fb_fail(f, fb_sent_at(f, 4), MR_ERR_REFUSED);
    fb_reply(f, fb_sent_at(f, 5), "OK\r\n");
    cr_assert_str_eq(fb_output(f), "SERVER_ERROR connection refused\r\n");
    fb_request(f, "flush_all\r\n");
    fb_reply(f, fb_sent_at(f, 6), "OK\r\n");
    fb_reply(f, fb_sent_at(f, 7), "OK\r\n");
    /* memcached -F refuses flush_all this way. */
    fb_reply(f, fb_sent_at(f, 8), "CLIENT_ERROR flush_all not allowed\r\n");
    cr_assert_str_eq(fb_output(f), "CLIENT_ERROR flush_all not allowed\r\n",
                     "a server's own answer passes through");
    fb_free(f);
}

Test(emit, meta_quiet_mode_suppresses_what_memcached_suppresses)
{
    fb *f = fb_new(pools);
    /* memcached 1.6: mg q hides EN, ms q and md q hide HD; the rest is sent. */
    static const struct {
        const char *request, *reply;
        bool shown;
    } cases[] = {
        {"mg k v q\r\n", "EN\r\n", false},
        {"mg k v q\r\n", "VA 1\r\nx\r\n", true},
        {"ms k 1 q\r\nx\r\n", "HD\r\n", false},
        {"ms k 1 q\r\nx\r\n", "NS\r\n", true},
        {"md k q\r\n", "HD\r\n", false},
        {"md k q\r\n", "NF\r\n", true},
        {"mg k v q\r\n", "SERVER_ERROR out of memory\r\n", true},
        {"mg k v\r\n", "EN\r\n", true},
    };
    size_t n = sizeof(cases) / sizeof(cases[0]);
    char want[512] = "";
    for (size_t i = 0; i < n; i++) {
        fb_request(f, cases[i].request);
        fb_reply(f, fb_sent_at(f, (uint32_t)i), cases[i].reply);
        if (cases[i].shown)
            strcat(want, cases[i].reply);
    }
    fb_request(f, "mn\r\n");
    strcat(want, "MN\r\n");
    cr_assert_str_eq(fb_output(f), want);
    fb_free(f);
}

Test(emit, replies_leave_in_request_order)
{
    fb *f = fb_new(pools);
    keyset k;
    keys_of(f, MISS, &k);
    char line[128];
    snprintf(line, sizeof(line), "get %s\r\n", k.a[0]);
    fb_request(f, line);
    snprintf(line, sizeof(line), "delete %s\r\n", k.b[0]);
    fb_request(f, line);
    fb_reply(f, fb_sent_at(f, 1), "DELETED\r\n");
    cr_assert_str_eq(fb_output(f), "", "a later reply waits for the earlier one");
    fb_reply(f, fb_sent_at(f, 0), "END\r\n");
    cr_assert_str_eq(fb_output(f), "END\r\nDELETED\r\n");
    fb_free(f);
}

/* ---- binary clients (mr_req.bin, client.c's bin_process) ---- */

/* A binary request as client.c makes it: parsed, translated, and the meta
 * line dispatched with the plan on the request. */
static mr_req *binary_request(fb *f, uint8_t opcode, const char *key, uint32_t opaque, mr_bin_plan *plan,
                              char *head)
{
    unsigned char pkt[64] = {0x80, opcode, 0, (unsigned char)strlen(key)};
    size_t kl = strlen(key);
    pkt[11] = (unsigned char)kl;
    pkt[12] = (unsigned char)(opaque >> 24);
    pkt[13] = (unsigned char)(opaque >> 16);
    pkt[14] = (unsigned char)(opaque >> 8);
    pkt[15] = (unsigned char)opaque;
    memcpy(pkt + 24, key, kl);
    mr_bin_opts o = {0};
    mr_bin_request r;
    cr_assert_eq(mr_bin_parse((const char *)pkt, 24 + kl, &o, &r), MR_BIN_OK);
    char line[MR_BIN_META_LINE_MAX + 1];
    mr_bin_meta m;
    cr_assert_eq(mr_bin_translate(&r, line, MR_BIN_META_LINE_MAX, &m, plan), MR_BIN_SUCCESS);
    line[m.line_len] = '\0';
    mr_req *req = fb_new_req(f, MISS, line);
    req->bin = plan;
    req->bin_out = head;
    mr_dispatch(req);
    return req;
}

Test(emit, a_binary_get_hit_is_memcached_binary_response)
{
    fb *f = fb_new(pools);
    keyset k;
    keys_of(f, MISS, &k);
    static char head[MR_BIN_REPLY_HEAD_MAX];
    mr_bin_plan plan;
    binary_request(f, MR_BIN_OP_GETK, k.a[0], 0x11223344, &plan, head);
    cr_assert_eq(fb_nsent(f), 1);
    fb_reply(f, fb_to(f, fb_server(f, MISS, 0)), "VA 2 f5 c9\r\nhi\r\n");
    const char *out = fb_output(f);
    size_t kl = strlen(k.a[0]);
    cr_assert_eq(f->output_len, 24 + 4 + kl + 2);
    const unsigned char *h = (const unsigned char *)out;
    cr_assert_eq(h[0], 0x81);
    cr_assert_eq(h[1], MR_BIN_OP_GETK);
    cr_assert_eq(h[3], kl);
    cr_assert_eq(h[4], 4, "flags as extras");
    cr_assert_eq(h[6] << 8 | h[7], 0, "success");
    cr_assert_eq(h[11], 4 + kl + 2, "body: extras, key, value");
    cr_assert_eq(h[12] << 24 | h[13] << 16 | h[14] << 8 | h[15], 0x11223344, "opaque echoed");
    cr_assert_eq(h[23], 9, "the server's CAS");
    cr_assert_eq(h[27], 5, "flags");
    cr_assert(memcmp(out + 28, k.a[0], kl) == 0 && memcmp(out + 28 + kl, "hi", 2) == 0);
    fb_free(f);
}

Test(emit, a_quiet_binary_miss_takes_no_place_and_an_error_is_translated)
{
    fb *f = fb_new(pools);
    keyset k;
    keys_of(f, MISS, &k);
    static char heads[2][MR_BIN_REPLY_HEAD_MAX];
    mr_bin_plan plan[2];
    binary_request(f, MR_BIN_OP_GETKQ, k.a[0], 1, &plan[0], heads[0]);
    binary_request(f, MR_BIN_OP_GET, k.b[0], 2, &plan[1], heads[1]);
    fb_reply(f, fb_to(f, fb_server(f, MISS, 0)), "EN\r\n");
    fb_fail(f, fb_to(f, fb_server(f, MISS, 1)), MR_ERR_TIMEOUT);
    const char *out = fb_output(f);
    const unsigned char *h = (const unsigned char *)out;
    cr_assert_gt(f->output_len, 24, "only the GET's error");
    cr_assert_eq(h[1], MR_BIN_OP_GET);
    cr_assert_eq(h[15], 2);
    cr_assert_eq(h[6] << 8 | h[7], MR_BIN_ETMPFAIL, "a timeout may succeed if retried");
    cr_assert_eq(f->output_len, 24u + h[11]);
    fb_free(f);
}
