/* test_dispatch.c: where dispatch.c sends a request and the exact bytes each
 * server gets: one server's get forwarded as the client wrote it, a split
 * keeping the client's key order, rewritten lines (noreply, meta q), routing
 * by decoded and prefixed keys, and the pool-wide commands.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "memrelay/dispatch.h"
#include "memrelay/hash.h"
#include "support/fake_backend.h"

/* alpha (0): three servers, prefix routes to sessions; sessions (1): one
 * server; front (2): no servers, everything routed to sessions; unreached
 * (3): no route reaches it from alpha. Server ids follow config order:
 * a1 a2 a3 = 0 1 2, s1 = 3, u1 = 4. */
static const char pools[] = "alpha:\n"
                            "  listen: 127.0.0.1:22200\n"
                            "  hash: md5\n"
                            "  distribution: ketama\n"
                            "  servers:\n"
                            "    - 127.0.0.1:22201:1 a1\n"
                            "    - 127.0.0.1:22202:1 a2\n"
                            "    - 127.0.0.1:22203:1 a3\n"
                            "  routes:\n"
                            "    - {prefix: \"sess:\", pool: sessions}\n"
                            "    - {prefix: \"s:\", pool: sessions}\n"
                            "sessions:\n"
                            "  hash: md5\n"
                            "  servers:\n"
                            "    - 127.0.0.1:22211:1 s1\n"
                            "front:\n"
                            "  listen: 127.0.0.1:22220\n"
                            "  routes:\n"
                            "    - {prefix: \"\", pool: sessions}\n"
                            "unreached:\n"
                            "  listen: 127.0.0.1:22230\n"
                            "  servers:\n"
                            "    - 127.0.0.1:22231:1 u1\n";

#define ALPHA 0u
#define SESSIONS 1u
#define FRONT 2u
#define UNREACHED 3u

static const char replicated[] = "rep:\n"
                                 "  listen: 127.0.0.1:22300\n"
                                 "  hash: md5\n"
                                 "  distribution: ketama\n"
                                 "  replicas: 3\n"
                                 "  servers:\n"
                                 "    - 127.0.0.1:22301:1 r1\n"
                                 "    - 127.0.0.1:22302:1 r2\n"
                                 "    - 127.0.0.1:22303:1 r3\n"
                                 "    - 127.0.0.1:22304:1 r4\n";

static fb *alpha(void)
{
    fb *f = fb_new(pools);
    cr_assert_eq(mr_config_pool_index(f->cfg, "sessions"), SESSIONS);
    cr_assert_eq(mr_config_pool_index(f->cfg, "front"), FRONT);
    cr_assert_eq(mr_config_pool_index(f->cfg, "unreached"), UNREACHED);
    return f;
}

static void base64(const char *in, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(unsigned char)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in[i + 2];
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = i + 1 < n ? abc[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? abc[v & 63] : '=';
    }
    out[o] = '\0';
}

Test(dispatch, a_one_server_get_forwards_the_client_line_itself)
{
    fb *f = alpha();
    char keys[3][32];
    fb_keys_on(f, ALPHA, fb_server(f, ALPHA, 1), "k", keys, 3);
    char line[128];
    snprintf(line, sizeof(line), "get %s %s %s\r\n", keys[0], keys[1], keys[2]);
    mr_req *req = fb_request(f, line);
    cr_assert_eq(fb_nsent(f), 1);
    fb_sent *s = fb_sent_at(f, 0);
    cr_assert_eq(s->server, fb_server(f, ALPHA, 1));
    cr_assert_str_eq(s->bytes, line);
    /* No copy: the message references the client's own input block. */
    cr_assert_eq(s->msg->out[0].mb, req->line.mb);
    cr_assert_eq(s->msg->out[0].p, req->line.p);
    cr_assert_eq(s->conn_hint, f->client_id, "a client's requests share its connection to a server");
    fb_free(f);
}

Test(dispatch, a_set_forwards_its_line_and_data_block_unchanged)
{
    fb *f = alpha();
    mr_req *req = fb_request(f, "set k 3 60 5\r\nhello\r\n");
    cr_assert_eq(fb_nsent(f), 1);
    fb_sent *s = fb_sent_at(f, 0);
    cr_assert_eq(s->server, fb_owner(f, ALPHA, "k"));
    cr_assert_str_eq(s->bytes, "set k 3 60 5\r\nhello\r\n");
    cr_assert_eq(s->msg->nout, 2, "the line and the data block");
    cr_assert_eq(s->msg->out[0].mb, req->line.mb);
    cr_assert_eq(s->msg->out[1].mb, req->line.mb, "the data block is not copied");
    fb_reply(f, s, "STORED\r\n");
    cr_assert_str_eq(fb_output(f), "STORED\r\n");
    fb_free(f);
}

Test(dispatch, a_split_keeps_the_client_key_order_per_server)
{
    fb *f = alpha();
    char a[2][32], b[2][32], c[2][32];
    fb_keys_on(f, ALPHA, fb_server(f, ALPHA, 0), "a", a, 2);
    fb_keys_on(f, ALPHA, fb_server(f, ALPHA, 1), "b", b, 2);
    fb_keys_on(f, ALPHA, fb_server(f, ALPHA, 2), "c", c, 2);
    char line[256];
    snprintf(line, sizeof(line), "get %s %s %s %s %s %s\r\n", b[0], a[0], c[0], a[1], c[1], b[1]);
    fb_request(f, line);
    cr_assert_eq(fb_nsent(f), 3, "one message per server");
    char want[128];
    /* Servers in the order the client first named them, each with its keys
     * in the client's order. */
    snprintf(want, sizeof(want), "get %s %s\r\n", b[0], b[1]);
    cr_assert_eq(fb_sent_at(f, 0)->server, fb_server(f, ALPHA, 1));
    cr_assert_str_eq(fb_sent_at(f, 0)->bytes, want);
    snprintf(want, sizeof(want), "get %s %s\r\n", a[0], a[1]);
    cr_assert_eq(fb_sent_at(f, 1)->server, fb_server(f, ALPHA, 0));
    cr_assert_str_eq(fb_sent_at(f, 1)->bytes, want);
    snprintf(want, sizeof(want), "get %s %s\r\n", c[0], c[1]);
    cr_assert_eq(fb_sent_at(f, 2)->server, fb_server(f, ALPHA, 2));
    cr_assert_str_eq(fb_sent_at(f, 2)->bytes, want);
    fb_free(f);
}

Test(dispatch, gat_and_gats_keep_their_exptime_in_every_split_line)
{
    fb *f = alpha();
    char a[2][32], b[1][32];
    fb_keys_on(f, ALPHA, fb_server(f, ALPHA, 0), "a", a, 2);
    fb_keys_on(f, ALPHA, fb_server(f, ALPHA, 2), "b", b, 1);
    char line[128], want[128];
    snprintf(line, sizeof(line), "gat 300 %s %s %s\r\n", a[0], b[0], a[1]);
    fb_request(f, line);
    cr_assert_eq(fb_nsent(f), 2);
    snprintf(want, sizeof(want), "gat 300 %s %s\r\n", a[0], a[1]);
    cr_assert_str_eq(fb_sent_at(f, 0)->bytes, want);
    snprintf(want, sizeof(want), "gat 300 %s\r\n", b[0]);
    cr_assert_str_eq(fb_sent_at(f, 1)->bytes, want);
    snprintf(line, sizeof(line), "gats -1 %s %s\r\n", b[0], a[0]);
    fb_request(f, line);
    cr_assert_eq(fb_nsent(f), 4);
    snprintf(want, sizeof(want), "gats -1 %s\r\n", b[0]);
    cr_assert_str_eq(fb_sent_at(f, 2)->bytes, want);
    snprintf(want, sizeof(want), "gats -1 %s\r\n", a[0]);
    cr_assert_str_eq(fb_sent_at(f, 3)->bytes, want);
    fb_free(f);
}

Test(dispatch, noreply_is_stripped_and_the_request_runs_as_an_orphan)
{
    fb *f = alpha();
    mr_req *req = fb_request(f, "set k 5 0 3 noreply\r\nabc\r\n");
    cr_assert_null(req->client);
    cr_assert_eq(fb_nsent(f), 1);
    /* Every forwarded request has exactly one reply to pair with. */
    cr_assert_str_eq(fb_sent_at(f, 0)->bytes, "set k 5 0 3\r\nabc\r\n");
    fb_request(f, "delete k noreply\r\n");
    cr_assert_str_eq(fb_sent_at(f, 1)->bytes, "delete k\r\n");
    fb_reply(f, fb_sent_at(f, 0), "STORED\r\n");
    fb_reply(f, fb_sent_at(f, 1), "DELETED\r\n");
    cr_assert_str_eq(fb_output(f), "", "nobody hears a noreply request");
    cr_assert_eq(f->w.gen_reqs, 0);
    fb_free(f);
}

Test(dispatch, meta_q_is_stripped_and_the_request_stays_quiet)
{
    fb *f = alpha();
    mr_req *req = fb_request(f, "mg k v q t\r\n");
    cr_assert_eq(req->client, fb_client(f), "a quiet meta request still holds its place in the queue");
    cr_assert(req->quiet);
    cr_assert_eq(fb_nsent(f), 1);
    cr_assert_str_eq(fb_sent_at(f, 0)->bytes, "mg k v t\r\n");
    fb_request(f, "ms k 2 q T30\r\nhi\r\n");
    cr_assert_str_eq(fb_sent_at(f, 1)->bytes, "ms k 2 T30\r\nhi\r\n");
    fb_free(f);
}

Test(dispatch, a_base64_key_routes_by_its_decoded_bytes)
{
    fb *f = alpha();
    /* Decoded, the key starts with "sess:" and routes to sessions; its
     * base64 text does not. */
    char b64[64], line[128];
    base64("sess:42", b64);
    cr_assert_neq(strncmp(b64, "sess:", 5), 0);
    snprintf(line, sizeof(line), "mg %s b v\r\n", b64);
    fb_request(f, line);
    cr_assert_eq(fb_nsent(f), 1);
    cr_assert_eq(fb_sent_at(f, 0)->server, fb_server(f, SESSIONS, 0));
    cr_assert_str_eq(fb_sent_at(f, 0)->bytes, line, "the key is forwarded as written");
    /* Inside alpha too: the owner of the decoded key, not of its text. */
    char key[32];
    uint32_t n = 0;
    for (;; n++) {
        cr_assert_lt(n, 1000, "no key whose text and decoded bytes have different owners");
        snprintf(key, sizeof(key), "key%u", n);
        base64(key, b64);
        if (fb_owner(f, ALPHA, key) != fb_owner(f, ALPHA, b64))
            break;
    }
    snprintf(line, sizeof(line), "md %s b\r\n", b64);
    fb_request(f, line);
    cr_assert_eq(fb_sent_at(f, 1)->server, fb_owner(f, ALPHA, key));
    fb_free(f);
}

Test(dispatch, a_prefix_route_is_taken)
{
    fb *f = alpha();
    fb_request(f, "get sess:1\r\n");
    cr_assert_eq(fb_sent_at(f, 0)->server, fb_server(f, SESSIONS, 0));
    fb_request(f, "delete s:x\r\n");
    cr_assert_eq(fb_sent_at(f, 1)->server, fb_server(f, SESSIONS, 0));
    /* A split sends each key to the pool its prefix names. */
    char a[1][32], line[128], want[128];
    fb_keys_on(f, ALPHA, fb_server(f, ALPHA, 2), "a", a, 1);
    snprintf(line, sizeof(line), "get %s sess:1 s:2\r\n", a[0]);
    fb_request(f, line);
    cr_assert_eq(fb_nsent(f), 4);
    snprintf(want, sizeof(want), "get %s\r\n", a[0]);
    cr_assert_eq(fb_sent_at(f, 2)->server, fb_server(f, ALPHA, 2));
    cr_assert_str_eq(fb_sent_at(f, 2)->bytes, want);
    cr_assert_eq(fb_sent_at(f, 3)->server, fb_server(f, SESSIONS, 0));
    cr_assert_str_eq(fb_sent_at(f, 3)->bytes, "get sess:1 s:2\r\n");
    fb_free(f);
}

Test(dispatch, flush_all_reaches_each_reachable_pool_once)
{
    fb *f = alpha();
    fb_request(f, "flush_all\r\n");
    /* alpha's three servers and sessions' one, though two routes name it;
     * never unreached's. */
    cr_assert_eq(fb_nsent(f), 4);
    uint32_t seen[5] = {0};
    for (uint32_t i = 0; i < 4; i++) {
        cr_assert_str_eq(fb_sent_at(f, i)->bytes, "flush_all\r\n");
        seen[fb_sent_at(f, i)->server]++;
    }
    for (uint32_t s = 0; s < 4; s++)
        cr_assert_eq(seen[s], 1, "server %u got %u", s, seen[s]);
    cr_assert_eq(seen[fb_server(f, UNREACHED, 0)], 0);
    fb_free(f);
}

Test(dispatch, version_goes_to_the_first_server_of_the_default_pool)
{
    fb *f = alpha();
    fb_request(f, "version\r\n");
    cr_assert_eq(fb_nsent(f), 1);
    cr_assert_eq(fb_sent_at(f, 0)->server, fb_server(f, ALPHA, 0));
    cr_assert_str_eq(fb_sent_at(f, 0)->bytes, "version\r\n");
    /* A listener without servers: its catch-all route's pool. */
    fb_request_on(f, FRONT, "version\r\n");
    cr_assert_eq(fb_nsent(f), 2);
    cr_assert_eq(fb_sent_at(f, 1)->server, fb_server(f, SESSIONS, 0));
    fb_reply(f, fb_sent_at(f, 0), "VERSION 1.6.18\r\n");
    fb_reply(f, fb_sent_at(f, 1), "VERSION 1.6.21\r\n");
    cr_assert_str_eq(fb_output(f), "VERSION 1.6.18\r\nVERSION 1.6.21\r\n");
    fb_free(f);
}

Test(dispatch, stats_goes_through_the_hook)
{
    fb *f = alpha();
    fb_request(f, "stats\r\n");
    fb_request(f, "stats items\r\n");
    fb_request(f, "stats route  sess:x \r\n");
    cr_assert_eq(f->nstats, 3);
    cr_assert_eq(fb_nsent(f), 0, "stats never reaches a server");
    /* The hook gets the first argument and the rest of the line as
     * written, without its "\r\n". */
    cr_assert_str_eq(fb_output(f), "STAT fb |\r\nEND\r\n"
                                   "STAT fb items|\r\nEND\r\n"
                                   "STAT fb route|  sess:x \r\nEND\r\n");
    fb_free(f);
}

Test(dispatch, local_commands_are_answered_without_a_server)
{
    fb *f = alpha();
    fb_request(f, "mn\r\n");
    fb_request(f, "verbosity 1\r\n");
    mr_req *quit = fb_request(f, "quit\r\n");
    cr_assert(quit->close_after);
    cr_assert_eq(fb_nsent(f), 0);
    cr_assert_str_eq(fb_output(f), "MN\r\nOK\r\n");
    fb_free(f);
}

Test(dispatch, an_unlink_goes_to_every_replica)
{
    fb *f = fb_new(replicated);
    uint32_t reps[MR_MAX_REPLICAS];
    cr_assert_eq(fb_replicas(f, 0, "big", reps), 3);
    mr_dispatch_unlink(&f->w, 0, f->client_id, "big", 3, false);
    cr_assert_eq(fb_nsent(f), 3);
    for (uint32_t i = 0; i < 3; i++) {
        cr_assert_eq(fb_sent_at(f, i)->server, reps[i]);
        cr_assert_str_eq(fb_sent_at(f, i)->bytes, "delete big\r\n");
        /* On the key's connection, behind any write to it. */
        cr_assert_eq(fb_sent_at(f, i)->conn_hint, mr_hash(MR_HASH_FNV1A_32, "big", 3));
    }
    /* A base64 key: routed decoded, deleted as written. */
    char b64[16];
    base64("big", b64);
    mr_dispatch_unlink(&f->w, 0, f->client_id, b64, (uint32_t)strlen(b64), true);
    cr_assert_eq(fb_nsent(f), 6);
    for (uint32_t i = 0; i < 3; i++) {
        char want[64];
        snprintf(want, sizeof(want), "md %s b\r\n", b64);
        cr_assert_eq(fb_sent_at(f, 3 + i)->server, reps[i]);
        cr_assert_str_eq(fb_sent_at(f, 3 + i)->bytes, want);
    }
    /* Orphans: their replies go nowhere, and they are freed. */
    for (uint32_t i = 0; i < 6; i++)
        fb_reply(f, fb_sent_at(f, i), i < 3 ? "DELETED\r\n" : "HD\r\n");
    cr_assert_eq(f->w.gen_reqs, 0);
    cr_assert_str_eq(fb_output(f), "");
    fb_free(f);
}
