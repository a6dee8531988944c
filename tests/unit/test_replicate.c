/* test_replicate.c: the replication policies (replicate.c) against the fake
 * backend: write_ack, the repairs that follow primary-only writes, read
 * failover, quarantine, and the replay queue. The command lines the repairs
 * send are the ones docs/replication.md promises (and
 * tests/integration/test_replication.py checks on real memcached).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "memrelay/backend.h"
#include "memrelay/health.h"
#include "support/fake_backend.h"

#define POOL 0u

/* One pool of three servers keeping `replicas` copies, with more settings. */
static fb *repl(uint32_t replicas, const char *settings)
{
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "rep:\n"
             "  listen: 127.0.0.1:22500\n"
             "  hash: md5\n"
             "  distribution: ketama\n"
             "  replicas: %u\n"
             "%s"
             "  servers:\n"
             "    - 127.0.0.1:22501:1 r1\n"
             "    - 127.0.0.1:22502:1 r2\n"
             "    - 127.0.0.1:22503:1 r3\n",
             replicas, settings);
    return fb_new(yaml);
}

static const mr_pool_stats *pool_stats(fb *f)
{
    return &f->w.pool_stats[f->gen->router->pools[POOL].slot];
}

/* The replicas of `key`, primary first; fails unless there are n. */
static void replicas_of(fb *f, const char *key, uint32_t *reps, uint32_t n)
{
    cr_assert_eq(fb_replicas(f, POOL, key, reps), n);
}

static void set_k(fb *f)
{
    fb_request(f, "set k 0 0 1\r\nx\r\n");
}

/* ---- write_ack ---- */

Test(replicate, a_write_goes_to_every_replica_as_the_client_wrote_it)
{
    fb *f = repl(3, "");
    uint32_t r[3];
    replicas_of(f, "k", r, 3);
    set_k(f);
    cr_assert_eq(fb_nsent(f), 3);
    for (uint32_t i = 0; i < 3; i++) {
        cr_assert_eq(fb_sent_at(f, i)->server, r[i], "replica order");
        cr_assert_str_eq(fb_sent_at(f, i)->bytes, "set k 0 0 1\r\nx\r\n");
    }
    cr_assert_eq(pool_stats(f)->repl_writes, 1);
    fb_free(f);
}

Test(replicate, write_ack_one_answers_at_the_first_ack)
{
    fb *f = repl(3, "  write_ack: one\n");
    uint32_t r[3];
    replicas_of(f, "k", r, 3);
    set_k(f);
    fb_reply(f, fb_to(f, r[1]), "STORED\r\n");
    cr_assert_eq(f->nready, 1);
    cr_assert_str_eq(fb_output(f), "STORED\r\n");
    fb_reply(f, fb_to(f, r[0]), "STORED\r\n");
    fb_reply(f, fb_to(f, r[2]), "STORED\r\n");
    cr_assert_eq(f->nready, 1);
    cr_assert_str_eq(fb_output(f), "");
    fb_free(f);
}

Test(replicate, write_ack_quorum_waits_for_a_majority)
{
    fb *f = repl(3, "  write_ack: quorum\n");
    uint32_t r[3];
    replicas_of(f, "k", r, 3);
    set_k(f);
    fb_reply(f, fb_to(f, r[2]), "STORED\r\n");
    cr_assert_eq(f->nready, 0, "one of three is no quorum");
    fb_reply(f, fb_to(f, r[0]), "STORED\r\n");
    cr_assert_eq(f->nready, 1);
    cr_assert_str_eq(fb_output(f), "STORED\r\n");
    fb_free(f);
}

Test(replicate, write_ack_all_waits_for_every_replica)
{
    fb *f = repl(3, "  write_ack: all\n");
    uint32_t r[3];
    replicas_of(f, "k", r, 3);
    set_k(f);
    fb_reply(f, fb_to(f, r[0]), "STORED\r\n");
    fb_reply(f, fb_to(f, r[1]), "STORED\r\n");
    cr_assert_eq(f->nready, 0);
    fb_reply(f, fb_to(f, r[2]), "STORED\r\n");
    cr_assert_eq(f->nready, 1);
    cr_assert_str_eq(fb_output(f), "STORED\r\n");
    fb_free(f);
}

Test(replicate, an_unmet_write_ack_answers_the_first_failure_and_is_counted)
{
    fb *f = repl(3, "  write_ack: quorum\n");
    uint32_t r[3];
    replicas_of(f, "k", r, 3);
    set_k(f);
    fb_reply(f, fb_to(f, r[0]), "STORED\r\n");
    fb_fail(f, fb_to(f, r[2]), MR_ERR_TIMEOUT);
    cr_assert_eq(f->nready, 0, "a quorum is still possible");
    fb_fail(f, fb_to(f, r[1]), MR_ERR_UNAVAILABLE);
    cr_assert_eq(f->nready, 1, "two failures of three: the quorum cannot be met");
    /* The first failure in replica order. */
    cr_assert_str_eq(fb_output(f), "SERVER_ERROR backend unavailable\r\n");
    cr_assert_eq(pool_stats(f)->repl_acks_unmet, 1);
    fb_free(f);
}

Test(replicate, an_acked_write_answers_with_the_first_acking_replica_reply)
{
    fb *f = repl(3, "  write_ack: all\n");
    uint32_t r[3];
    replicas_of(f, "k", r, 3);
    fb_request(f, "delete k\r\n");
    fb_reply(f, fb_to(f, r[2]), "DELETED\r\n");
    fb_reply(f, fb_to(f, r[1]), "DELETED\r\n");
    fb_reply(f, fb_to(f, r[0]), "NOT_FOUND\r\n");
    cr_assert_str_eq(fb_output(f), "NOT_FOUND\r\n",
                     "the primary's, first in replica order, not the first in time");
    cr_assert_eq(pool_stats(f)->repl_acks_unmet, 0, "NOT_FOUND is an answer, not a failure");
    fb_free(f);
}

/* ---- primary-only writes and their repairs ---- */

Test(replicate, add_on_the_primary_is_copied_to_the_others_as_a_set)
{
    fb *f = repl(3, "");
    uint32_t r[3];
    replicas_of(f, "k", r, 3);
    fb_request(f, "add k 5 100 3\r\nabc\r\n");
    cr_assert_eq(fb_nsent(f), 1, "add goes to the primary alone");
    cr_assert_eq(fb_sent_at(f, 0)->server, r[0]);
    cr_assert_str_eq(fb_sent_at(f, 0)->bytes, "add k 5 100 3\r\nabc\r\n");
    fb_reply(f, fb_sent_at(f, 0), "STORED\r\n");
    cr_assert_str_eq(fb_output(f), "STORED\r\n");
    cr_assert_eq(fb_nsent(f), 3);
    for (uint32_t i = 1; i < 3; i++) {
        cr_assert_eq(fb_sent_at(f, i)->server, r[i]);
        cr_assert_str_eq(fb_sent_at(f, i)->bytes, "set k 5 100 3\r\nabc\r\n");
    }
    cr_assert_eq(pool_stats(f)->repl_repairs, 1);
    fb_free(f);
}

Test(replicate, an_add_that_was_not_stored_is_not_copied)
{
    fb *f = repl(3, "");
    fb_request(f, "add k 0 0 1\r\nx\r\n");
    fb_reply(f, fb_sent_at(f, 0), "NOT_STORED\r\n");
    cr_assert_str_eq(fb_output(f), "NOT_STORED\r\n");
    cr_assert_eq(fb_nsent(f), 1);
    fb_free(f);
}

Test(replicate, incr_on_the_primary_is_read_back_and_written_as_ms)
{
    fb *f = repl(3, "");
    uint32_t r[3];
    replicas_of(f, "n", r, 3);
    fb_request(f, "incr n 5\r\n");
    cr_assert_eq(fb_nsent(f), 1);
    cr_assert_eq(fb_sent_at(f, 0)->server, r[0]);
    fb_reply(f, fb_sent_at(f, 0), "15\r\n");
    cr_assert_str_eq(fb_output(f), "15\r\n");
    /* The primary's value, flags and TTL... */
    cr_assert_eq(fb_nsent(f), 2);
    cr_assert_eq(fb_sent_at(f, 1)->server, r[0]);
    cr_assert_str_eq(fb_sent_at(f, 1)->bytes, "mg n v f t\r\n");
    fb_reply(f, fb_sent_at(f, 1), "VA 2 f3 t100\r\n15\r\n");
    /* ... written to the others. */
    cr_assert_eq(fb_nsent(f), 4);
    for (uint32_t i = 1; i < 3; i++) {
        cr_assert_eq(fb_sent_at(f, 1 + i)->server, r[i]);
        cr_assert_str_eq(fb_sent_at(f, 1 + i)->bytes, "ms n 2 F3 T100\r\n15\r\n");
    }
    fb_free(f);
}

Test(replicate, a_read_back_without_ttl_writes_T0_and_a_vanished_key_is_deleted)
{
    fb *f = repl(3, "");
    fb_request(f, "decr n 1\r\n");
    fb_reply(f, fb_sent_at(f, 0), "4\r\n");
    fb_reply(f, fb_sent_at(f, 1), "VA 1 f0 t-1\r\n4\r\n");
    cr_assert_str_eq(fb_sent_at(f, 2)->bytes, "ms n 1 F0 T0\r\n4\r\n", "t-1 is no expiry: T0");
    fb_request(f, "incr n 1\r\n");
    uint32_t at = fb_nsent(f) - 1;
    fb_reply(f, fb_sent_at(f, at), "5\r\n");
    fb_reply(f, fb_sent_at(f, at + 1), "EN\r\n");
    cr_assert_eq(fb_nsent(f), at + 4);
    cr_assert_str_eq(fb_sent_at(f, at + 2)->bytes, "md n\r\n");
    cr_assert_str_eq(fb_sent_at(f, at + 3)->bytes, "md n\r\n");
    fb_free(f);
}

Test(replicate, md_with_C_deletes_the_others_after_the_primary)
{
    fb *f = repl(3, "");
    uint32_t r[3];
    replicas_of(f, "k", r, 3);
    fb_request(f, "md k C123\r\n");
    cr_assert_eq(fb_nsent(f), 1, "a compare-and-delete runs on the primary alone");
    cr_assert_eq(fb_sent_at(f, 0)->server, r[0]);
    cr_assert_str_eq(fb_sent_at(f, 0)->bytes, "md k C123\r\n");
    fb_reply(f, fb_sent_at(f, 0), "HD\r\n");
    cr_assert_str_eq(fb_output(f), "HD\r\n");
    cr_assert_eq(fb_nsent(f), 3);
    for (uint32_t i = 1; i < 3; i++) {
        cr_assert_eq(fb_sent_at(f, i)->server, r[i]);
        cr_assert_str_eq(fb_sent_at(f, i)->bytes, "md k\r\n");
    }
    /* Without C it is an ordinary write to all. */
    fb_request(f, "md k\r\n");
    cr_assert_eq(fb_nsent(f), 6);
    fb_free(f);
}

Test(replicate, a_newer_write_during_a_repair_makes_it_read_again)
{
    fb *f = repl(3, "");
    uint32_t r[3];
    replicas_of(f, "k", r, 3);
    fb_request(f, "add k 0 0 1\r\nx\r\n");
    fb_sent *add = fb_sent_at(f, 0);
    /* A set of the key overtakes the add's repair. */
    fb_request(f, "set k 0 0 1\r\ny\r\n");
    cr_assert_eq(fb_nsent(f), 4);
    fb_reply(f, add, "STORED\r\n");
    /* Copying x now could undo y on the others: read the primary instead. */
    cr_assert_eq(fb_nsent(f), 5);
    cr_assert_eq(fb_sent_at(f, 4)->server, r[0]);
    cr_assert_str_eq(fb_sent_at(f, 4)->bytes, "mg k v f t\r\n");
    /* And again if one more write goes out while that read-back is away. */
    fb_request(f, "set k 0 0 1\r\nz\r\n");
    cr_assert_eq(fb_nsent(f), 8);
    fb_reply(f, fb_sent_at(f, 4), "VA 1 f0 t-1\r\ny\r\n");
    cr_assert_eq(fb_nsent(f), 9);
    cr_assert_eq(fb_sent_at(f, 8)->server, r[0]);
    cr_assert_str_eq(fb_sent_at(f, 8)->bytes, "mg k v f t\r\n");
    fb_reply(f, fb_sent_at(f, 8), "VA 1 f0 t-1\r\nz\r\n");
    cr_assert_eq(fb_nsent(f), 11);
    cr_assert_str_eq(fb_sent_at(f, 9)->bytes, "ms k 1 F0 T0\r\nz\r\n");
    cr_assert_str_eq(fb_sent_at(f, 10)->bytes, "ms k 1 F0 T0\r\nz\r\n");
    fb_free(f);
}

/* ---- reads ---- */

Test(replicate, a_read_fails_over_to_the_next_replica_on_error)
{
    fb *f = repl(3, "");
    uint32_t r[3];
    replicas_of(f, "k", r, 3);
    fb_request(f, "get k\r\n");
    cr_assert_eq(fb_nsent(f), 1, "a read asks one replica at a time");
    cr_assert_eq(fb_sent_at(f, 0)->server, r[0]);
    fb_fail(f, fb_sent_at(f, 0), MR_ERR_UNAVAILABLE);
    cr_assert_eq(f->nready, 0);
    cr_assert_eq(fb_nsent(f), 2);
    cr_assert_eq(fb_sent_at(f, 1)->server, r[1]);
    cr_assert_str_eq(fb_sent_at(f, 1)->bytes, "get k\r\n");
    fb_reply(f, fb_sent_at(f, 1), "VALUE k 0 1\r\nx\r\nEND\r\n");
    cr_assert_str_eq(fb_output(f), "VALUE k 0 1\r\nx\r\nEND\r\n");
    cr_assert_eq(pool_stats(f)->repl_read_failovers, 1);
    fb_free(f);
}

Test(replicate, a_read_failing_on_every_replica_answers_the_last_failure)
{
    fb *f = repl(3, "");
    fb_request(f, "mg k v\r\n");
    fb_fail(f, fb_sent_at(f, 0), MR_ERR_UNAVAILABLE);
    fb_reply(f, fb_sent_at(f, 1), "SERVER_ERROR out of memory\r\n");
    fb_fail(f, fb_sent_at(f, 2), MR_ERR_TIMEOUT);
    cr_assert_eq(fb_nsent(f), 3, "no fourth try");
    cr_assert_str_eq(fb_output(f), "SERVER_ERROR timeout\r\n");
    fb_free(f);
}

Test(replicate, a_miss_is_final_without_read_miss_failover)
{
    fb *f = repl(3, "");
    fb_request(f, "get k\r\n");
    fb_reply(f, fb_sent_at(f, 0), "END\r\n");
    cr_assert_eq(fb_nsent(f), 1);
    cr_assert_str_eq(fb_output(f), "END\r\n");
    fb_free(f);
}

Test(replicate, read_miss_failover_tries_the_next_replica_on_a_miss)
{
    fb *f = repl(3, "  read_miss_failover: true\n");
    uint32_t r[3];
    replicas_of(f, "k", r, 3);
    fb_request(f, "get k\r\n");
    fb_reply(f, fb_sent_at(f, 0), "END\r\n");
    cr_assert_eq(fb_nsent(f), 2);
    cr_assert_eq(fb_sent_at(f, 1)->server, r[1]);
    fb_reply(f, fb_sent_at(f, 1), "VALUE k 0 1\r\nx\r\nEND\r\n");
    cr_assert_str_eq(fb_output(f), "VALUE k 0 1\r\nx\r\nEND\r\n");
    /* mg too: EN is its miss. */
    fb_request(f, "mg k v\r\n");
    fb_reply(f, fb_sent_at(f, 2), "EN\r\n");
    cr_assert_eq(fb_sent_at(f, 3)->server, r[1]);
    cr_assert_str_eq(fb_sent_at(f, 3)->bytes, "mg k v\r\n");
    fb_reply(f, fb_sent_at(f, 3), "EN\r\n");
    fb_reply(f, fb_sent_at(f, 4), "VA 1\r\ny\r\n");
    cr_assert_str_eq(fb_output(f), "VA 1\r\ny\r\n");
    fb_free(f);
}

Test(replicate, a_multiget_regroups_a_failed_server_keys_onto_their_next_replicas)
{
    fb *f = repl(2, "");
    uint32_t s0 = fb_server(f, POOL, 0), s1 = fb_server(f, POOL, 1), s2 = fb_server(f, POOL, 2);
    /* p*: on s0, next s1; q: on s1; t: on s0, next s2. */
    char p[2][32], q[32], t[32];
    uint32_t np = 0;
    bool have_q = false, have_t = false;
    for (uint32_t n = 0; n < 10000 && (np < 2 || !have_q || !have_t); n++) {
        char key[32];
        uint32_t r[MR_MAX_REPLICAS];
        snprintf(key, sizeof(key), "k%u", n);
        cr_assert_eq(fb_replicas(f, POOL, key, r), 2);
        if (r[0] == s0 && r[1] == s1 && np < 2) {
            memcpy(p[np++], key, 32);
        } else if (r[0] == s0 && r[1] == s2 && !have_t) {
            memcpy(t, key, 32);
            have_t = true;
        } else if (r[0] == s1 && !have_q) {
            memcpy(q, key, 32);
            have_q = true;
        }
    }
    cr_assert(np == 2 && have_q && have_t);
    char line[256], want[256];
    snprintf(line, sizeof(line), "get %s %s %s %s\r\n", p[0], q, p[1], t);
    fb_request(f, line);
    cr_assert_eq(fb_nsent(f), 2);
    snprintf(want, sizeof(want), "get %s %s %s\r\n", p[0], p[1], t);
    cr_assert_eq(fb_sent_at(f, 0)->server, s0);
    cr_assert_str_eq(fb_sent_at(f, 0)->bytes, want);
    fb_fail(f, fb_sent_at(f, 0), MR_ERR_UNAVAILABLE);
    /* One new batch per next replica, keys in the client's order. */
    cr_assert_eq(fb_nsent(f), 4);
    snprintf(want, sizeof(want), "get %s %s\r\n", p[0], p[1]);
    cr_assert_eq(fb_sent_at(f, 2)->server, s1);
    cr_assert_str_eq(fb_sent_at(f, 2)->bytes, want);
    snprintf(want, sizeof(want), "get %s\r\n", t);
    cr_assert_eq(fb_sent_at(f, 3)->server, s2);
    cr_assert_str_eq(fb_sent_at(f, 3)->bytes, want);
    cr_assert_eq(pool_stats(f)->repl_read_failovers, 2);
    char reply[256];
    snprintf(reply, sizeof(reply), "VALUE %s 0 1\r\nq\r\nEND\r\n", q);
    fb_reply(f, fb_sent_at(f, 1), reply);
    snprintf(reply, sizeof(reply), "VALUE %s 0 1\r\np\r\nVALUE %s 0 1\r\nP\r\nEND\r\n", p[0], p[1]);
    fb_reply(f, fb_sent_at(f, 2), reply);
    fb_reply(f, fb_sent_at(f, 3), "END\r\n");
    snprintf(want, sizeof(want), "VALUE %s 0 1\r\np\r\nVALUE %s 0 1\r\nq\r\nVALUE %s 0 1\r\nP\r\nEND\r\n",
             p[0], q, p[1]);
    cr_assert_str_eq(fb_output(f), want);
    fb_free(f);
}

Test(replicate, a_quarantined_replica_is_read_last_but_still_written)
{
    fb *f = repl(3, "");
    uint32_t r[3];
    replicas_of(f, "k", r, 3);
    mr_health_quarantine(f->health, r[0], 60000);
    fb_request(f, "get k\r\n");
    cr_assert_eq(fb_sent_at(f, 0)->server, r[1]);
    fb_fail(f, fb_sent_at(f, 0), MR_ERR_UNAVAILABLE);
    cr_assert_eq(fb_sent_at(f, 1)->server, r[2]);
    fb_fail(f, fb_sent_at(f, 1), MR_ERR_UNAVAILABLE);
    cr_assert_eq(fb_sent_at(f, 2)->server, r[0], "the quarantined replica comes last");
    fb_reply(f, fb_sent_at(f, 2), "END\r\n");
    set_k(f);
    cr_assert_eq(fb_nsent(f), 6);
    cr_assert_eq(fb_sent_at(f, 3)->server, r[0], "writes still reach it");
    fb_free(f);
}

/* ---- replay ---- */

Test(replicate, a_write_a_replica_missed_lands_in_its_replay_queue)
{
    fb *f = repl(3, "");
    uint32_t r[3];
    replicas_of(f, "k", r, 3);
    set_k(f);
    fb_reply(f, fb_to(f, r[0]), "STORED\r\n");
    fb_fail(f, fb_to(f, r[2]), MR_ERR_UNAVAILABLE);
    fb_reply(f, fb_to(f, r[1]), "STORED\r\n");
    cr_assert_str_eq(fb_output(f), "STORED\r\n");
    const mr_replay_queue *q = &f->w.backends[r[2]]->replay;
    cr_assert_eq(q->count, 1);
    cr_assert_eq(q->head->nout, 2);
    cr_assert_eq(q->head->out[0].len, 13);
    cr_assert(memcmp(q->head->out[0].p, "set k 0 0 1\r\n", 13) == 0);
    cr_assert(memcmp(q->head->out[1].p, "x\r\n", 3) == 0);
    cr_assert_eq(f->w.backends[r[0]]->replay.count, 0);
    cr_assert_eq(f->w.backends[r[1]]->replay.count, 0);
    cr_assert_eq(pool_stats(f)->repl_write_failures, 1);
    cr_assert_eq(pool_stats(f)->repl_queued, 1);
    fb_free(f);
}

Test(replicate, a_full_replay_queue_marks_its_server_for_a_flush)
{
    fb *f = repl(3, "  replay_queue: 1\n");
    uint32_t r[3];
    replicas_of(f, "k", r, 3);
    set_k(f);
    fb_fail(f, fb_to(f, r[1]), MR_ERR_UNAVAILABLE);
    set_k(f);
    fb_fail(f, fb_to(f, r[1]), MR_ERR_UNAVAILABLE);
    const mr_replay_queue *q = &f->w.backends[r[1]]->replay;
    cr_assert_eq(q->count, 1, "bounded");
    cr_assert(q->overflowed);
    cr_assert_eq(pool_stats(f)->repl_queue_overflows, 1);
    fb_free(f);
}

Test(replicate, a_replica_refusing_a_write_is_told_to_drop_the_key)
{
    fb *f = repl(3, "");
    uint32_t r[3];
    replicas_of(f, "k", r, 3);
    set_k(f);
    fb_reply(f, fb_to(f, r[1]), "SERVER_ERROR out of memory storing object\r\n");
    /* It may hold an older value: delete it there rather than replay. */
    cr_assert_eq(fb_nsent(f), 4);
    cr_assert_eq(fb_sent_at(f, 3)->server, r[1]);
    cr_assert_str_eq(fb_sent_at(f, 3)->bytes, "delete k\r\n");
    cr_assert_eq(f->w.backends[r[1]]->replay.count, 0);
    fb_free(f);
}

/* The messages on a connection's pending queue, as "bytes|bytes|...". */
static void pending_bytes(const mr_bconn *bc, char *out, size_t cap)
{
    size_t at = 0;
    out[0] = '\0';
    for (const mr_msg *m = bc->pending_head; m; m = m->next)
        for (uint32_t i = 0; i < m->nout; i++) {
            int n = snprintf(out + at, cap - at, "%.*s%s", (int)m->out[i].len, m->out[i].p,
                             i + 1 == m->nout && m->next ? "|" : "");
            cr_assert(n >= 0 && (size_t)n < cap - at);
            at += (size_t)n;
        }
}

Test(replicate, replay_on_rejoin_keeps_order_and_goes_before_pending)
{
    fb *f = repl(3, "");
    uint32_t r[3];
    replicas_of(f, "k", r, 3);
    uint32_t x = r[2];
    fb_request(f, "set k 0 0 1\r\n1\r\n");
    fb_fail(f, fb_to(f, x), MR_ERR_UNAVAILABLE);
    fb_request(f, "set k 0 0 1\r\n2\r\n");
    fb_fail(f, fb_to(f, x), MR_ERR_UNAVAILABLE);
    mr_backend *be = f->w.backends[x];
    cr_assert_eq(be->replay.count, 2);
    /* The server is back (connected, no socket needed) and a new write
     * waits on its connection. */
    be->conns[0].state = MR_BCONN_CONNECTED;
    fb_use_backend(f, x);
    fb_request(f, "set k 0 0 1\r\n3\r\n");
    char got[256];
    pending_bytes(&be->conns[0], got, sizeof(got));
    cr_assert_str_eq(got, "set k 0 0 1\r\n3\r\n");
    mr_backend_rejoin(be);
    pending_bytes(&be->conns[0], got, sizeof(got));
    cr_assert_str_eq(got, "set k 0 0 1\r\n1\r\n|set k 0 0 1\r\n2\r\n|set k 0 0 1\r\n3\r\n");
    cr_assert_eq(be->conns[0].nqueued, 3);
    cr_assert_eq(be->replay.count, 0);
    cr_assert_eq(pool_stats(f)->repl_replayed, 2);
    fb_free(f);
}

Test(replicate, an_overflowed_replay_queue_is_flushed_first_on_rejoin)
{
    fb *f = repl(3, "  replay_queue: 1\n");
    uint32_t r[3];
    replicas_of(f, "k", r, 3);
    uint32_t x = r[0];
    fb_request(f, "set k 0 0 1\r\n1\r\n");
    fb_fail(f, fb_to(f, x), MR_ERR_UNAVAILABLE);
    fb_request(f, "set k 0 0 1\r\n2\r\n");
    fb_fail(f, fb_to(f, x), MR_ERR_UNAVAILABLE);
    mr_backend *be = f->w.backends[x];
    be->conns[0].state = MR_BCONN_CONNECTED;
    mr_backend_rejoin(be);
    char got[256];
    pending_bytes(&be->conns[0], got, sizeof(got));
    /* Writes were lost: what it holds is stale, so it starts empty. */
    cr_assert_str_eq(got, "flush_all\r\n|set k 0 0 1\r\n1\r\n");
    cr_assert_not(be->replay.overflowed);
    fb_free(f);
}
