/* test_warmup.c: the warm-up window after a reload that moved keys
 * (warmup.c), without sockets: a miss on a key's new owner is read from its
 * previous owner and copied back before the client is answered; hits on the
 * new owner cost nothing; a failing previous owner is a miss; writes delete
 * the key on its previous owner; a closed window is today's behaviour.
 *
 * The worker serves `four` (servers w1..w4); the previous generation is
 * `three` (w1..w3), built on the same server registry, so w1..w3 keep
 * their ids and every key owned by w4 moved.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memrelay/generation.h"
#include "support/fake_backend.h"

static const char four[] = "alpha:\n"
                           "  listen: 127.0.0.1:22400\n"
                           "  hash: md5\n"
                           "  distribution: ketama\n"
                           "  servers:\n"
                           "    - 127.0.0.1:22401:1\n"
                           "    - 127.0.0.1:22402:1\n"
                           "    - 127.0.0.1:22403:1\n"
                           "    - 127.0.0.1:22404:1\n";

static const char three[] = "alpha:\n"
                            "  listen: 127.0.0.1:22400\n"
                            "  hash: md5\n"
                            "  distribution: ketama\n"
                            "  servers:\n"
                            "    - 127.0.0.1:22401:1\n"
                            "    - 127.0.0.1:22402:1\n"
                            "    - 127.0.0.1:22403:1\n";

#define NEW_SERVER 3u

/* The worker on `four`, with a window open over `three`. */
static fb *resized(void)
{
    fb *f = fb_new(four);
    mr_config_error err;
    mr_gen *prev = calloc(1, sizeof(*prev));
    cr_assert_not_null(prev);
    prev->cfg = mr_config_load_string(three, strlen(three), "three.yml", &err);
    cr_assert_not_null(prev->cfg, "%s", err.message);
    prev->router = mr_router_build_ids(prev->cfg, mr_health_server_id, f->health);
    cr_assert_not_null(prev->router);
    prev->refs = 1;
    cr_assert_eq(mr_gen_warm_open(f->gen, prev, ev_now(f->w.loop)), 1, "alpha's ring changed");
    mr_gen_release(prev); /* the generation keeps its own reference */
    return f;
}

static uint32_t prev_owner(fb *f, const char *key)
{
    return mr_router_server_for_key(f->gen->warm[0].prev, key, strlen(key), 0);
}

static void moved_key(fb *f, char out[32])
{
    char keys[1][32];
    fb_keys_on(f, 0, NEW_SERVER, "k", keys, 1);
    memcpy(out, keys[0], 32);
}

Test(warmup, a_miss_on_the_new_owner_is_read_from_the_previous_owner_and_copied_to_it)
{
    fb *f = resized();
    char key[32], want[160];
    moved_key(f, key);
    uint32_t old = prev_owner(f, key);
    cr_assert_neq(old, NEW_SERVER);
    char line[64];
    snprintf(line, sizeof(line), "get %s\r\n", key);
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n");
    fb_sent *mg = fb_to(f, old);
    snprintf(want, sizeof(want), "mg %s v f t\r\n", key);
    cr_assert_str_eq(mg->bytes, want);
    cr_assert_str_eq(fb_output(f), "", "the client waits for the warm-up");
    fb_reply(f, mg, "VA 2 f5 t120\r\nhi\r\n");
    fb_sent *ms = fb_to(f, NEW_SERVER);
    snprintf(want, sizeof(want), "ms %s 2 F5 T120 ME c\r\nhi\r\n", key);
    cr_assert_str_eq(ms->bytes, want, "flags and remaining TTL, only if the new owner has nothing");
    fb_reply(f, ms, "HD c77\r\n");
    snprintf(want, sizeof(want), "VALUE %s 5 2\r\nhi\r\nEND\r\n", key);
    cr_assert_str_eq(fb_output(f), want);
    mr_pool_stats *ps = &f->w.pool_stats[f->gen->router->pools[0].slot];
    cr_assert_eq(ps->warm_lookups, 1);
    cr_assert_eq(ps->warm_hits, 1);
    cr_assert_eq(ps->warm_copies, 1);
    fb_free(f);
}

Test(warmup, gets_of_a_warmed_key_carries_the_new_owners_cas)
{
    fb *f = resized();
    char key[32], want[160], line[64];
    moved_key(f, key);
    snprintf(line, sizeof(line), "gets %s\r\n", key);
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n");
    fb_reply(f, fb_to(f, prev_owner(f, key)), "VA 1 f0 t-1\r\nv\r\n");
    fb_sent *ms = fb_to(f, NEW_SERVER);
    snprintf(want, sizeof(want), "ms %s 1 F0 T0 ME c\r\nv\r\n", key);
    cr_assert_str_eq(ms->bytes, want, "t-1 (never expires) is copied as T0");
    fb_reply(f, ms, "HD c901\r\n");
    snprintf(want, sizeof(want), "VALUE %s 0 1 901\r\nv\r\nEND\r\n", key);
    cr_assert_str_eq(fb_output(f), want);
    fb_free(f);
}

Test(warmup, a_hit_on_the_new_owner_costs_nothing_extra)
{
    fb *f = resized();
    char key[32], line[64], reply[96];
    moved_key(f, key);
    snprintf(line, sizeof(line), "get %s\r\n", key);
    snprintf(reply, sizeof(reply), "VALUE %s 0 1\r\nx\r\nEND\r\n", key);
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), reply);
    cr_assert_eq(fb_nsent(f), 1);
    cr_assert_str_eq(fb_output(f), reply);
    fb_free(f);
}

Test(warmup, a_previous_owner_that_fails_or_misses_leaves_a_miss)
{
    fb *f = resized();
    char key[32], line[64];
    moved_key(f, key);
    snprintf(line, sizeof(line), "get %s\r\n", key);
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n");
    fb_fail(f, fb_to(f, prev_owner(f, key)), MR_ERR_TIMEOUT);
    cr_assert_str_eq(fb_output(f), "END\r\n", "a miss, never an error");
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n");
    fb_reply(f, fb_to(f, prev_owner(f, key)), "EN\r\n");
    cr_assert_str_eq(fb_output(f), "END\r\n");
    /* Written on the new owner meanwhile: the copy is refused, a miss. */
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n");
    fb_reply(f, fb_to(f, prev_owner(f, key)), "VA 1 f0 t-1\r\nv\r\n");
    fb_reply(f, fb_to(f, NEW_SERVER), "NS c0\r\n");
    cr_assert_str_eq(fb_output(f), "END\r\n");
    fb_free(f);
}

Test(warmup, a_multi_get_warms_per_key_and_keeps_the_client_order)
{
    fb *f = resized();
    char moved[2][32], stay[1][32];
    fb_keys_on(f, 0, NEW_SERVER, "m", moved, 2);
    fb_keys_on(f, 0, 0, "s", stay, 1);
    cr_assert_eq(prev_owner(f, stay[0]), 0u, "w1's keys stay");
    char line[160], reply[160], want[400];
    snprintf(line, sizeof(line), "get %s %s %s\r\n", moved[0], stay[0], moved[1]);
    fb_request(f, line);
    snprintf(reply, sizeof(reply), "VALUE %s 0 1\r\nS\r\nEND\r\n", stay[0]);
    fb_reply(f, fb_to(f, 0), reply);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n"); /* both moved keys miss */
    cr_assert_eq(fb_nsent(f), 4, "one lookup per moved key");
    for (uint32_t i = 2; i < 4; i++) {
        fb_sent *s = fb_sent_at(f, i);
        char first[64], va[64];
        snprintf(first, sizeof(first), "mg %s v f t\r\n", moved[0]);
        snprintf(va, sizeof(va), "VA 1 f0 t-1\r\n%c\r\n", strcmp(s->bytes, first) == 0 ? 'A' : 'B');
        fb_reply(f, s, va);
    }
    /* Copies answered in the opposite order. */
    cr_assert_eq(fb_pending_to(f, NEW_SERVER), 2);
    fb_reply(f, fb_sent_at(f, 5), "HD c1\r\n");
    fb_reply(f, fb_sent_at(f, 4), "HD c2\r\n");
    snprintf(want, sizeof(want), "VALUE %s 0 1\r\nA\r\nVALUE %s 0 1\r\nS\r\nVALUE %s 0 1\r\nB\r\nEND\r\n",
             moved[0], stay[0], moved[1]);
    cr_assert_str_eq(fb_output(f), want);
    fb_free(f);
}

Test(warmup, writes_to_a_moved_key_delete_it_on_the_previous_owner)
{
    fb *f = resized();
    char key[32], line[96], want[64];
    moved_key(f, key);
    uint32_t old = prev_owner(f, key);
    const char *writes[] = {"set %s 0 0 1\r\nx\r\n", "delete %s\r\n",    "incr %s 1\r\n",
                            "touch %s 10\r\n",       "ms %s 1\r\ny\r\n", "md %s\r\n"};
    for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
        snprintf(line, sizeof(line), writes[i], key);
        fb_request(f, line);
        fb_sent *del = fb_to(f, old);
        snprintf(want, sizeof(want), "delete %s\r\n", key);
        cr_assert_str_eq(del->bytes, want, "%s", line);
        fb_reply(f, del, "DELETED\r\n");
        fb_reply(f, fb_to(f, NEW_SERVER), "NOT_FOUND\r\n");
        fb_output(f);
    }
    cr_assert_eq(f->w.pool_stats[f->gen->router->pools[0].slot].warm_stale_deletes, 6);
    /* A key that did not move: nothing extra. */
    char stay[1][32];
    fb_keys_on(f, 0, 0, "s", stay, 1);
    uint32_t before = fb_nsent(f);
    snprintf(line, sizeof(line), "set %s 0 0 1\r\nx\r\n", stay[0]);
    fb_request(f, line);
    cr_assert_eq(fb_nsent(f), before + 1);
    fb_reply(f, fb_to(f, 0), "STORED\r\n");
    fb_free(f);
}

Test(warmup, a_closed_window_is_the_old_behaviour)
{
    fb *f = resized();
    mr_gen_warm_end(f->gen);
    char key[32], line[64];
    moved_key(f, key);
    snprintf(line, sizeof(line), "get %s\r\n", key);
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n");
    cr_assert_eq(fb_nsent(f), 1);
    cr_assert_str_eq(fb_output(f), "END\r\n");
    snprintf(line, sizeof(line), "set %s 0 0 1\r\nx\r\n", key);
    fb_request(f, line);
    cr_assert_eq(fb_nsent(f), 2, "no stale delete");
    fb_reply(f, fb_to(f, NEW_SERVER), "STORED\r\n");
    fb_free(f);
}

Test(warmup, an_ejected_or_down_previous_owner_is_not_read)
{
    fb *f = resized();
    char key[32], line[64];
    moved_key(f, key);
    uint32_t old = prev_owner(f, key);
    snprintf(line, sizeof(line), "get %s\r\n", key);
    __atomic_store_n(&mr_health_server(f->health, old)->ejected, 1, __ATOMIC_RELEASE);
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n");
    cr_assert_eq(fb_nsent(f), 1, "an ejected server's keys are not warmed from it");
    cr_assert_str_eq(fb_output(f), "END\r\n");
    __atomic_store_n(&mr_health_server(f->health, old)->ejected, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&mr_health_server(f->health, old)->state, MR_HEALTH_DOWN, __ATOMIC_RELEASE);
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n");
    cr_assert_eq(fb_nsent(f), 2, "nor a server held down");
    cr_assert_str_eq(fb_output(f), "END\r\n");
    __atomic_store_n(&mr_health_server(f->health, old)->state, MR_HEALTH_UP, __ATOMIC_RELEASE);
    fb_free(f);
}

Test(warmup, a_reload_that_keeps_the_ring_carries_the_open_window_on)
{
    fb *f = resized();
    mr_gen *mid = f->gen;
    /* The same four servers again (a timeout changed): the window carries on. */
    mr_config_error err;
    mr_gen *again = calloc(1, sizeof(*again));
    cr_assert_not_null(again);
    again->cfg = mr_config_load_string(four, strlen(four), "again.yml", &err);
    cr_assert_not_null(again->cfg, "%s", err.message);
    again->router = mr_router_build_ids(again->cfg, mr_health_server_id, f->health);
    again->refs = 1;
    cr_assert_eq(mr_gen_warm_open(again, mid, ev_now(f->w.loop)), 0, "no window opens now");
    cr_assert_not_null(again->warm, "the open one carries on");
    cr_assert_eq(again->warm[0].prev, mid->warm[0].prev);
    cr_assert_eq(again->warm[0].until, mid->warm[0].until);
    mr_gen_release(again);
    fb_free(f);
}

Test(warmup, gat_copies_with_the_touch_exptime_and_gats_carries_the_cas)
{
    fb *f = resized();
    char key[32], want[160], line[64];
    moved_key(f, key);
    snprintf(line, sizeof(line), "gats 300 %s\r\n", key);
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n");
    fb_reply(f, fb_to(f, prev_owner(f, key)), "VA 1 f3 t20\r\nv\r\n");
    fb_sent *ms = fb_to(f, NEW_SERVER);
    snprintf(want, sizeof(want), "ms %s 1 F3 T300 ME c\r\nv\r\n", key);
    cr_assert_str_eq(ms->bytes, want);
    fb_reply(f, ms, "HD c55\r\n");
    snprintf(want, sizeof(want), "VALUE %s 3 1 55\r\nv\r\nEND\r\n", key);
    cr_assert_str_eq(fb_output(f), want);
    fb_free(f);
}

Test(warmup, an_mg_miss_is_warmed_and_the_clients_line_answers_after_the_copy)
{
    fb *f = resized();
    char key[32], line[64], want[160];
    moved_key(f, key);
    uint32_t old = prev_owner(f, key);
    snprintf(line, sizeof(line), "mg %s v f c k\r\n", key);
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "EN\r\n");
    fb_sent *mg = fb_to(f, old);
    snprintf(want, sizeof(want), "mg %s v f t\r\n", key);
    cr_assert_str_eq(mg->bytes, want);
    cr_assert_str_eq(fb_output(f), "", "the client waits for the warm-up");
    fb_reply(f, mg, "VA 2 f5 t-1\r\nhi\r\n");
    cr_assert_eq(fb_pending_to(f, NEW_SERVER), 2, "the copy, and the client's line behind it");
    fb_sent *ms = fb_sent_at(f, fb_nsent(f) - 2), *again = fb_sent_at(f, fb_nsent(f) - 1);
    snprintf(want, sizeof(want), "ms %s 2 F5 T0 ME c\r\nhi\r\n", key);
    cr_assert_str_eq(ms->bytes, want);
    cr_assert_str_eq(again->bytes, line, "the client's own line");
    cr_assert_eq(ms->conn_hint, again->conn_hint, "on one connection, in order");
    fb_reply(f, ms, "HD c9\r\n");
    snprintf(want, sizeof(want), "VA 2 f5 c9 k%s\r\nhi\r\n", key);
    fb_reply(f, again, want);
    cr_assert_str_eq(fb_output(f), want, "memcached's reply for the hit, flags as asked");
    mr_pool_stats *ps = &f->w.pool_stats[f->gen->router->pools[0].slot];
    cr_assert_eq(ps->warm_lookups, 1);
    cr_assert_eq(ps->warm_copies, 1);
    fb_free(f);
}

Test(warmup, an_mg_that_misses_on_the_previous_owner_too_is_the_miss)
{
    fb *f = resized();
    char key[32], line[64];
    moved_key(f, key);
    snprintf(line, sizeof(line), "mg %s v\r\n", key);
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "EN\r\n");
    fb_reply(f, fb_to(f, prev_owner(f, key)), "EN\r\n");
    cr_assert_str_eq(fb_output(f), "EN\r\n");
    /* mg with N creates the item on a miss: not warmed. */
    snprintf(line, sizeof(line), "mg %s v N30\r\n", key);
    uint32_t before = fb_nsent(f);
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "EN W\r\n");
    cr_assert_eq(fb_nsent(f), before + 1);
    cr_assert_str_eq(fb_output(f), "EN W\r\n");
    fb_free(f);
}

Test(warmup, a_lookup_waits_for_no_stale_delete_in_flight_it_misses_instead)
{
    fb *f = resized();
    char key[32], line[64];
    moved_key(f, key);
    uint32_t old = prev_owner(f, key);
    snprintf(line, sizeof(line), "delete %s\r\n", key);
    fb_request(f, line);
    fb_sent *del = fb_to(f, old); /* not answered yet */
    fb_reply(f, fb_to(f, NEW_SERVER), "NOT_FOUND\r\n");
    cr_assert_str_eq(fb_output(f), "NOT_FOUND\r\n");
    snprintf(line, sizeof(line), "get %s\r\n", key);
    fb_request(f, line);
    uint32_t before = fb_nsent(f);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n");
    cr_assert_eq(fb_nsent(f), before, "no lookup while the delete may not have run there");
    cr_assert_str_eq(fb_output(f), "END\r\n");
    cr_assert_eq(f->w.pool_stats[f->gen->router->pools[0].slot].warm_races, 1);
    fb_reply(f, del, "DELETED\r\n");
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n");
    fb_reply(f, fb_to(f, old), "EN\r\n"); /* once it ran, lookups read there again */
    cr_assert_str_eq(fb_output(f), "END\r\n");
    fb_free(f);
}

Test(warmup, a_write_between_the_lookup_and_the_copy_gives_the_copy_up)
{
    fb *f = resized();
    char key[32], line[64];
    moved_key(f, key);
    uint32_t old = prev_owner(f, key);
    snprintf(line, sizeof(line), "get %s\r\n", key);
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n");
    fb_sent *mg = fb_to(f, old);
    snprintf(line, sizeof(line), "delete %s\r\n", key);
    fb_request(f, line);
    fb_reply(f, fb_sent_at(f, fb_nsent(f) - 1), "NOT_FOUND\r\n"); /* the new owner's */
    fb_reply(f, fb_sent_at(f, fb_nsent(f) - 2), "DELETED\r\n");   /* the previous owner's */
    uint32_t before = fb_nsent(f);
    fb_reply(f, mg, "VA 3 f0 t-1\r\nold\r\n"); /* read before the delete ran there */
    cr_assert_eq(fb_nsent(f), before, "no copy");
    cr_assert_str_eq(fb_output(f), "END\r\nNOT_FOUND\r\n");
    fb_free(f);
}

Test(warmup, a_write_after_the_copy_was_sent_undoes_the_copy_by_its_cas_before_it_is_answered)
{
    fb *f = resized();
    char key[32], line[64], want[96];
    moved_key(f, key);
    uint32_t old = prev_owner(f, key);
    snprintf(line, sizeof(line), "get %s\r\n", key);
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n");
    fb_reply(f, fb_to(f, old), "VA 3 f0 t-1\r\nold\r\n");
    fb_sent *ms = fb_to(f, NEW_SERVER);
    snprintf(line, sizeof(line), "delete %s\r\n", key);
    fb_request(f, line); /* may reach the new owner before the copy: another connection */
    fb_sent *del_new = fb_sent_at(f, fb_nsent(f) - 1), *del_old = fb_sent_at(f, fb_nsent(f) - 2);
    cr_assert_eq(del_new->server, NEW_SERVER);
    fb_reply(f, del_new, "NOT_FOUND\r\n");
    fb_reply(f, del_old, "DELETED\r\n");
    fb_reply(f, ms, "HD c41\r\n");
    fb_sent *undo = fb_to(f, NEW_SERVER);
    snprintf(want, sizeof(want), "md %s C41\r\n", key);
    cr_assert_str_eq(undo->bytes, want, "the copy, and only the copy, is deleted again");
    cr_assert_eq(undo->conn_hint, ms->conn_hint, "behind the copy");
    cr_assert_str_eq(fb_output(f), "END\r\n", "the reader gets the miss; the delete waits for the undo");
    fb_reply(f, undo, "HD\r\n");
    cr_assert_str_eq(fb_output(f), "NOT_FOUND\r\n", "the copy is gone: now the delete is done");
    cr_assert_eq(f->w.pool_stats[f->gen->router->pools[0].slot].warm_races, 1);
    fb_free(f);
}

Test(warmup, a_write_with_no_copy_in_flight_is_answered_at_once)
{
    fb *f = resized();
    char key[32], line[64];
    moved_key(f, key);
    snprintf(line, sizeof(line), "get %s\r\n", key);
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n");
    fb_reply(f, fb_to(f, prev_owner(f, key)), "VA 3 f0 t-1\r\nold\r\n");
    cr_assert_eq(f->shared.warm_writes[mr_key_stripe(mr_hash(MR_HASH_FNV1A_32, key, strlen(key)))].copies, 1);
    fb_reply(f, fb_to(f, NEW_SERVER), "HD c3\r\n"); /* the copy is over */
    cr_assert_eq(f->shared.warm_writes[mr_key_stripe(mr_hash(MR_HASH_FNV1A_32, key, strlen(key)))].copies, 0);
    snprintf(line, sizeof(line), "delete %s\r\n", key);
    fb_request(f, line);
    fb_reply(f, fb_sent_at(f, fb_nsent(f) - 1), "DELETED\r\n");
    char want[128];
    snprintf(want, sizeof(want), "VALUE %s 0 3\r\nold\r\nEND\r\nDELETED\r\n", key);
    cr_assert_str_eq(fb_output(f), want, "nothing to wait for");
    fb_free(f);
}

/* ---- replicated pools ---- */

static const char four_r[] = "alpha:\n"
                             "  listen: 127.0.0.1:22400\n"
                             "  hash: md5\n"
                             "  distribution: ketama\n"
                             "  replicas: 2\n"
                             "  servers:\n"
                             "    - 127.0.0.1:22401:1\n"
                             "    - 127.0.0.1:22402:1\n"
                             "    - 127.0.0.1:22403:1\n"
                             "    - 127.0.0.1:22404:1\n";

static const char three_r[] = "alpha:\n"
                              "  listen: 127.0.0.1:22400\n"
                              "  hash: md5\n"
                              "  distribution: ketama\n"
                              "  replicas: 2\n"
                              "  servers:\n"
                              "    - 127.0.0.1:22401:1\n"
                              "    - 127.0.0.1:22402:1\n"
                              "    - 127.0.0.1:22403:1\n";

static fb *resized_replicated(void)
{
    fb *f = fb_new(four_r);
    mr_config_error err;
    mr_gen *prev = calloc(1, sizeof(*prev));
    cr_assert_not_null(prev);
    prev->cfg = mr_config_load_string(three_r, strlen(three_r), "three.yml", &err);
    cr_assert_not_null(prev->cfg, "%s", err.message);
    prev->router = mr_router_build_ids(prev->cfg, mr_health_server_id, f->health);
    cr_assert_not_null(prev->router);
    prev->refs = 1;
    cr_assert_eq(mr_gen_warm_open(f->gen, prev, ev_now(f->w.loop)), 1, "a replicated pool warms too");
    mr_gen_release(prev);
    return f;
}

/* The member of the key's previous set that is not in its new one. */
static uint32_t prev_only_member(fb *f, const char *key)
{
    uint32_t was[8], now[8];
    uint32_t nwas = mr_router_replicas_for_key(f->gen->warm[0].prev, key, strlen(key), 0, was, 8);
    uint32_t nnow = fb_replicas(f, 0, key, now);
    for (uint32_t i = 0; i < nwas; i++) {
        bool in = false;
        for (uint32_t j = 0; j < nnow; j++)
            in |= was[i] == now[j];
        if (!in)
            return was[i];
    }
    return UINT32_MAX;
}

Test(warmup, a_replicated_get_is_read_from_the_previous_set_and_copied_through_replication)
{
    fb *f = resized_replicated();
    char key[32], line[64], want[128];
    moved_key(f, key);
    uint32_t from = prev_only_member(f, key), now[8];
    cr_assert_neq(from, UINT32_MAX);
    cr_assert_eq(fb_replicas(f, 0, key, now), 2);
    cr_assert_eq(now[0], NEW_SERVER);
    snprintf(line, sizeof(line), "get %s\r\n", key);
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n");
    fb_sent *mg = fb_to(f, from);
    snprintf(want, sizeof(want), "mg %s v f t\r\n", key);
    cr_assert_str_eq(mg->bytes, want);
    fb_reply(f, mg, "VA 2 f3 t-1\r\nhi\r\n");
    snprintf(want, sizeof(want), "VALUE %s 3 2\r\nhi\r\nEND\r\n", key);
    cr_assert_str_eq(fb_output(f), want, "the value at once");
    fb_sent *add = fb_to(f, NEW_SERVER);
    snprintf(want, sizeof(want), "add %s 3 0 2\r\nhi\r\n", key);
    cr_assert_str_eq(add->bytes, want, "the copy: an add to the new primary");
    fb_reply(f, add, "STORED\r\n");
    fb_sent *set = fb_to(f, now[1]);
    snprintf(want, sizeof(want), "set %s 3 0 2\r\nhi\r\n", key);
    cr_assert_str_eq(set->bytes, want, "then a set to the other replica (replication's repair)");
    fb_reply(f, set, "STORED\r\n");
    cr_assert_eq(f->w.pool_stats[f->gen->router->pools[0].slot].warm_copies, 1);
    fb_free(f);
}

Test(warmup, a_replicated_write_deletes_on_the_previous_set_and_a_raced_lookup_copies_nothing)
{
    fb *f = resized_replicated();
    char key[32], line[64], want[64];
    moved_key(f, key);
    uint32_t from = prev_only_member(f, key), now[8];
    fb_replicas(f, 0, key, now);
    snprintf(line, sizeof(line), "get %s\r\n", key);
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n");
    fb_sent *mg = fb_to(f, from);
    snprintf(line, sizeof(line), "delete %s\r\n", key);
    fb_request(f, line);
    uint32_t n = fb_nsent(f);
    fb_sent *stale = fb_sent_at(f, n - 3);
    snprintf(want, sizeof(want), "delete %s\r\n", key);
    cr_assert_eq(stale->server, from, "the previous set's member not in the new one");
    cr_assert_str_eq(stale->bytes, want);
    fb_reply(f, stale, "DELETED\r\n");
    fb_reply(f, fb_sent_at(f, n - 2), "NOT_FOUND\r\n");
    fb_reply(f, fb_sent_at(f, n - 1), "DELETED\r\n");
    uint32_t before = fb_nsent(f);
    fb_reply(f, mg, "VA 3 f0 t-1\r\nold\r\n"); /* read before the delete ran there */
    cr_assert_eq(fb_nsent(f), before, "no copy");
    cr_assert_str_eq(fb_output(f), "END\r\nNOT_FOUND\r\n");
    cr_assert_eq(f->w.pool_stats[f->gen->router->pools[0].slot].warm_races, 1);
    fb_free(f);
}

Test(warmup, a_stale_delete_that_fails_ends_warm_up_for_its_stripe)
{
    fb *f = resized();
    char key[32], line[64];
    moved_key(f, key);
    uint32_t old = prev_owner(f, key);
    fb_set_down(f, old, MR_ERR_UNAVAILABLE); /* the delete there fails: it may still hold the old value */
    snprintf(line, sizeof(line), "delete %s\r\n", key);
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), "NOT_FOUND\r\n");
    cr_assert_str_eq(fb_output(f), "NOT_FOUND\r\n");
    fb_set_down(f, old, MR_ERR_NONE); /* back, with whatever it held */
    snprintf(line, sizeof(line), "get %s\r\n", key);
    fb_request(f, line);
    uint32_t before = fb_nsent(f);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n");
    cr_assert_eq(fb_nsent(f), before, "not read there again in this window");
    cr_assert_str_eq(fb_output(f), "END\r\n");
    fb_free(f);
}

/* A replicated primary read (gets/gat/gats, mg with T) of a moved key that
 * missed on its new primary, read from the previous set: the last two sends
 * are the copy's add and the client's command again, both to the new primary. */
static void repl_primary_miss(fb *f, const char *key, const char *line, const char *miss, uint32_t *from)
{
    *from = prev_only_member(f, key);
    cr_assert_neq(*from, UINT32_MAX);
    fb_request(f, line);
    fb_reply(f, fb_to(f, NEW_SERVER), miss);
}

Test(warmup, a_replicated_gets_is_copied_then_sent_again_and_answers_with_the_new_primarys_cas)
{
    fb *f = resized_replicated();
    char key[32], line[64], want[128];
    uint32_t from, now[8];
    moved_key(f, key);
    fb_replicas(f, 0, key, now);
    snprintf(line, sizeof(line), "gets %s\r\n", key);
    repl_primary_miss(f, key, line, "END\r\n", &from);
    fb_sent *mg = fb_to(f, from);
    snprintf(want, sizeof(want), "mg %s v f t\r\n", key);
    cr_assert_str_eq(mg->bytes, want);
    fb_reply(f, mg, "VA 2 f3 t-1\r\nhi\r\n");
    cr_assert_str_eq(fb_output(f), "", "the client waits for the new primary's CAS");
    uint32_t n = fb_nsent(f);
    fb_sent *add = fb_sent_at(f, n - 2), *again = fb_sent_at(f, n - 1);
    snprintf(want, sizeof(want), "add %s 3 0 2\r\nhi\r\n", key);
    cr_assert_eq(add->server, NEW_SERVER);
    cr_assert_str_eq(add->bytes, want, "the copy: an add through replication");
    cr_assert_eq(again->server, NEW_SERVER);
    cr_assert_str_eq(again->bytes, line, "the client's command again, behind the copy");
    fb_reply(f, add, "STORED\r\n");
    fb_reply(f, fb_to(f, now[1]), "STORED\r\n");
    snprintf(want, sizeof(want), "VALUE %s 3 2 77\r\nhi\r\nEND\r\n", key);
    fb_reply(f, again, want);
    cr_assert_str_eq(fb_output(f), want, "memcached's reply, with the new primary's CAS");
    cr_assert_eq(f->w.pool_stats[f->gen->router->pools[0].slot].warm_copies, 1);
    fb_free(f);
}

Test(warmup, a_replicated_multi_key_gat_copies_with_the_touch_exptime_and_keeps_the_client_order)
{
    fb *f = resized_replicated();
    char keys[2][32], other[32], line[160], want[256];
    fb_keys_on(f, 0, NEW_SERVER, "g", keys, 2);
    uint32_t now[8];
    fb_replicas(f, 0, keys[1], now);
    char hit[1][32];
    fb_keys_on(f, 0, 0, "h", hit, 1); /* a key of another server that hits there */
    memcpy(other, hit[0], 32);
    uint32_t other_owner = fb_owner(f, 0, other);
    cr_assert_neq(other_owner, NEW_SERVER);
    snprintf(line, sizeof(line), "gat 300 %s %s %s\r\n", keys[0], other, keys[1]);
    fb_request(f, line);
    snprintf(want, sizeof(want), "VALUE %s 0 1\r\no\r\nEND\r\n", other);
    fb_reply(f, fb_to(f, other_owner), want);
    fb_reply(f, fb_to(f, NEW_SERVER), "END\r\n"); /* both moved keys miss */
    uint32_t from0 = prev_only_member(f, keys[0]), from1 = prev_only_member(f, keys[1]);
    cr_assert_neq(from0, UINT32_MAX);
    cr_assert_neq(from1, UINT32_MAX);
    /* The second key first: its lookup answers a miss, it stays one. */
    fb_sent *mg1 = NULL, *mg0 = NULL;
    for (uint32_t i = 0; i < fb_nsent(f); i++) {
        fb_sent *s = fb_sent_at(f, i);
        if (strncmp(s->bytes, "mg ", 3) == 0 && strstr(s->bytes, keys[1]))
            mg1 = s;
        else if (strncmp(s->bytes, "mg ", 3) == 0 && strstr(s->bytes, keys[0]))
            mg0 = s;
    }
    cr_assert(mg0 && mg1);
    fb_reply(f, mg1, "EN\r\n");
    fb_reply(f, mg0, "VA 1 f2 t-1\r\nx\r\n");
    uint32_t n = fb_nsent(f);
    fb_sent *add = fb_sent_at(f, n - 2), *again = fb_sent_at(f, n - 1);
    snprintf(want, sizeof(want), "add %s 2 300 1\r\nx\r\n", keys[0]);
    cr_assert_str_eq(add->bytes, want, "the copy carries the touch's exptime");
    snprintf(want, sizeof(want), "gat 300 %s\r\n", keys[0]);
    cr_assert_str_eq(again->bytes, want, "the key's gat again, which touches the new primary");
    fb_reply(f, add, "STORED\r\n");
    snprintf(want, sizeof(want), "VALUE %s 2 1\r\nx\r\nEND\r\n", keys[0]);
    fb_reply(f, again, want);
    for (uint32_t i = 0; i < fb_nsent(f); i++) {
        fb_sent *s = fb_sent_at(f, i);
        if (strncmp(s->bytes, "set ", 4) == 0)
            fb_reply(f, s, "STORED\r\n");
    }
    snprintf(want, sizeof(want), "VALUE %s 2 1\r\nx\r\nVALUE %s 0 1\r\no\r\nEND\r\n", keys[0], other);
    cr_assert_str_eq(fb_output(f), want, "the client's key order, the miss left out");
    fb_free(f);
}

Test(warmup, a_replicated_gets_whose_lookup_a_write_raced_copies_nothing_and_misses)
{
    fb *f = resized_replicated();
    char key[32], line[64];
    uint32_t from;
    moved_key(f, key);
    snprintf(line, sizeof(line), "gets %s\r\n", key);
    repl_primary_miss(f, key, line, "END\r\n", &from);
    fb_sent *mg = fb_to(f, from);
    snprintf(line, sizeof(line), "delete %s\r\n", key);
    fb_request(f, line);
    uint32_t n = fb_nsent(f);
    fb_reply(f, fb_sent_at(f, n - 3), "DELETED\r\n");
    fb_reply(f, fb_sent_at(f, n - 2), "NOT_FOUND\r\n");
    fb_reply(f, fb_sent_at(f, n - 1), "DELETED\r\n");
    uint32_t before = fb_nsent(f);
    fb_reply(f, mg, "VA 3 f0 t-1\r\nold\r\n");
    cr_assert_eq(fb_nsent(f), before, "no copy, no line again");
    cr_assert_str_eq(fb_output(f), "END\r\nNOT_FOUND\r\n");
    fb_free(f);
}

Test(warmup, a_replicated_mg_with_t_is_warmed_and_an_mg_with_n_is_not)
{
    fb *f = resized_replicated();
    char key[32], line[64], want[128];
    uint32_t from;
    moved_key(f, key);
    snprintf(line, sizeof(line), "mg %s v c T30\r\n", key);
    repl_primary_miss(f, key, line, "EN\r\n", &from);
    fb_sent *mg = fb_to(f, from);
    fb_reply(f, mg, "VA 2 f1 t-1\r\nhi\r\n");
    uint32_t n = fb_nsent(f);
    fb_sent *add = fb_sent_at(f, n - 2), *again = fb_sent_at(f, n - 1);
    snprintf(want, sizeof(want), "add %s 1 30 2\r\nhi\r\n", key);
    cr_assert_str_eq(add->bytes, want, "the copy carries T's exptime");
    cr_assert_eq(again->server, NEW_SERVER);
    cr_assert_str_eq(again->bytes, line);
    fb_reply(f, add, "STORED\r\n");
    fb_reply(f, again, "VA 2 c91\r\nhi\r\n");
    cr_assert_str_eq(fb_output(f), "VA 2 c91\r\nhi\r\n", "the new primary's reply");
    char other[2][32];
    fb_keys_on(f, 0, NEW_SERVER, "n", other, 2);
    snprintf(line, sizeof(line), "mg %s v N30\r\n", other[1]);
    fb_request(f, line);
    uint32_t sent = fb_nsent(f);
    fb_reply(f, fb_sent_at(f, sent - 1), "EN\r\n");
    cr_assert_eq(fb_nsent(f), sent, "N: nothing to warm");
    fb_free(f);
}
