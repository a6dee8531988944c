/* test_log.c: log line format, the per-call-site rate limiter, the log file
 * and its reopen, and the memrelay.log_* config keys. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memrelay/config.h"
#include "memrelay/log.h"

/* 2024-05-01T12:34:56.789Z as CLOCK_REALTIME nanoseconds. */
#define T_2024_05_01 (1714566896LL * 1000000000LL + 789654321LL)

/* ---- format ---- */

Test(log_format, utc_time_with_milliseconds_then_padded_level_then_message)
{
    char buf[MR_LOG_LINE_MAX];
    size_t n = mr_log_format(buf, MR_LOG_WARN, T_2024_05_01, "backend %s: %d", "a:1", 42);
    const char *want = "2024-05-01T12:34:56.789Z WARN  backend a:1: 42\n";
    cr_assert_eq(n, strlen(want));
    cr_assert_eq(memcmp(buf, want, n), 0, "got %.*s", (int)n, buf);
}

Test(log_format, every_level_has_its_name)
{
    static const char *const names[] = {"ERROR", "WARN ", "INFO ", "DEBUG", "TRACE"};
    char buf[MR_LOG_LINE_MAX];
    for (int l = MR_LOG_ERROR; l <= MR_LOG_TRACE; l++) {
        mr_log_format(buf, (mr_log_level)l, T_2024_05_01, "x");
        cr_assert_eq(memcmp(buf + 25, names[l], 5), 0, "level %d: %.31s", l, buf);
    }
}

Test(log_format, control_characters_in_the_message_cannot_start_a_new_line)
{
    char buf[MR_LOG_LINE_MAX];
    size_t n = mr_log_format(buf, MR_LOG_ERROR, T_2024_05_01, "reply %s", "BAD\r\nVALUE x\x1b[0m");
    cr_assert_eq(memchr(buf, '\n', n - 1), NULL, "only the last byte may be a newline");
    cr_assert_eq(buf[n - 1], '\n');
    cr_assert(strstr(buf, "reply BAD??VALUE x?[0m\n") != NULL, "got %.*s", (int)n, buf);
}

Test(log_format, long_messages_are_cut_to_one_bounded_line_ending_in_dots)
{
    char big[3000], buf[MR_LOG_LINE_MAX];
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    size_t n = mr_log_format(buf, MR_LOG_INFO, T_2024_05_01, "%s", big);
    cr_assert_eq(n, MR_LOG_LINE_MAX);
    cr_assert_eq(memcmp(buf + n - 4, "...\n", 4), 0);
}

Test(log_format, level_names_parse_both_ways)
{
    static const char *const words[] = {"error", "warn", "info", "debug", "trace"};
    for (int l = MR_LOG_ERROR; l <= MR_LOG_TRACE; l++) {
        cr_assert_eq(mr_log_level_from_name(words[l]), l);
        cr_assert_str_eq(mr_log_level_name((mr_log_level)l), words[l]);
    }
    cr_assert_eq(mr_log_level_from_name("warning"), -1);
    cr_assert_eq(mr_log_level_from_name("INFO"), -1);
}

/* ---- rate limiter ---- */

static mr_log_site site_at(void)
{
    mr_log_site s = {.file = "t.c", .line = 1, .fmt = "x"};
    return s;
}

Test(log_limit, a_site_writes_a_burst_then_counts_the_rest_of_its_window)
{
    mr_log_site s = site_at();
    uint32_t note;
    for (int i = 0; i < MR_LOG_BURST; i++) {
        cr_assert(mr_log_site_admit(&s, MR_LOG_WARN, 1000 + (uint32_t)i, &note), "line %d", i);
        cr_assert_eq(note, 0);
    }
    for (int i = 0; i < 25; i++)
        cr_assert_not(mr_log_site_admit(&s, MR_LOG_WARN, 1000 + MR_LOG_WINDOW_MS - 1, &note), "extra line %d",
                      i);
    cr_assert_eq(atomic_load(&s.suppressed), 25);
}

Test(log_limit, the_first_line_of_the_next_window_carries_the_count)
{
    mr_log_site s = site_at();
    uint32_t note;
    for (int i = 0; i < MR_LOG_BURST + 7; i++)
        mr_log_site_admit(&s, MR_LOG_ERROR, 50, &note);
    cr_assert(mr_log_site_admit(&s, MR_LOG_ERROR, 50 + MR_LOG_WINDOW_MS, &note));
    cr_assert_eq(note, 7);
    cr_assert(mr_log_site_admit(&s, MR_LOG_ERROR, 51 + MR_LOG_WINDOW_MS, &note));
    cr_assert_eq(note, 0, "a count is reported once");
}

Test(log_limit, the_flusher_reports_only_after_the_window_and_only_once)
{
    mr_log_site s = site_at();
    uint32_t note;
    for (int i = 0; i < MR_LOG_BURST + 3; i++)
        mr_log_site_admit(&s, MR_LOG_WARN, 200, &note);
    cr_assert_eq(mr_log_site_take_due(&s, 200 + MR_LOG_WINDOW_MS - 1), 0, "window not over");
    cr_assert_eq(mr_log_site_take_due(&s, 200 + MR_LOG_WINDOW_MS), 3);
    cr_assert_eq(mr_log_site_take_due(&s, 300 + MR_LOG_WINDOW_MS), 0);
    cr_assert(mr_log_site_admit(&s, MR_LOG_WARN, 300 + MR_LOG_WINDOW_MS, &note));
    cr_assert_eq(note, 0, "the flusher already reported them");
}

Test(log_limit, a_quiet_site_has_nothing_to_report)
{
    mr_log_site s = site_at();
    uint32_t note;
    for (int i = 0; i < MR_LOG_BURST; i++)
        mr_log_site_admit(&s, MR_LOG_WARN, 10, &note);
    cr_assert_eq(mr_log_site_take_due(&s, 10 + 10 * MR_LOG_WINDOW_MS), 0);
}

Test(log_limit, a_clock_reading_from_just_before_the_window_stays_in_it)
{
    /* Threads read the clock, then race to the CAS: a reading older than the
     * current window's start must not open another window. */
    mr_log_site s = site_at();
    uint32_t note;
    for (int i = 0; i < MR_LOG_BURST; i++)
        mr_log_site_admit(&s, MR_LOG_WARN, 100000, &note);
    cr_assert_not(mr_log_site_admit(&s, MR_LOG_WARN, 99999, &note));
    cr_assert_eq(atomic_load(&s.suppressed), 1);
}

Test(log_limit, sites_are_independent)
{
    mr_log_site a = site_at(), b = site_at();
    uint32_t note;
    for (int i = 0; i < MR_LOG_BURST + 5; i++)
        mr_log_site_admit(&a, MR_LOG_WARN, 5, &note);
    cr_assert(mr_log_site_admit(&b, MR_LOG_WARN, 5, &note));
}

#define THREADS 8
#define CALLS 5000

static mr_log_site shared_site = {.file = "t.c", .line = 2, .fmt = "x"};
static _Atomic uint32_t admitted, noted, ticks;

static void *hammer(void *arg)
{
    (void)arg;
    for (uint32_t i = 0; i < CALLS; i++) {
        uint32_t note;
        /* One clock for all, moving on, so windows open and close while
         * threads race: CALLS ms in all. */
        uint64_t now = atomic_fetch_add(&ticks, 1) / THREADS;
        if (mr_log_site_admit(&shared_site, MR_LOG_WARN, now, &note))
            atomic_fetch_add(&admitted, 1);
        atomic_fetch_add(&noted, note);
    }
    return NULL;
}

Test(log_limit, racing_threads_write_or_count_every_line_exactly_once)
{
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    uint32_t left = mr_log_site_take_due(&shared_site, CALLS + MR_LOG_WINDOW_MS);
    uint32_t total = atomic_load(&admitted) + atomic_load(&noted) + left;
    cr_assert_eq(total, THREADS * CALLS, "admitted %u, reported %u + %u", atomic_load(&admitted),
                 atomic_load(&noted), left);
    /* CALLS ms of clock: at most CALLS / window + 1 windows. */
    cr_assert_leq(atomic_load(&admitted), (CALLS / MR_LOG_WINDOW_MS + 1) * MR_LOG_BURST);
    cr_assert_geq(atomic_load(&admitted), MR_LOG_BURST);
}

/* ---- the file ---- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return strdup("");
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strdup(buf);
}

static void temp_dir(char *dir, size_t size)
{
    snprintf(dir, size, "/tmp/mr-test-log-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

Test(log_file, lines_go_to_the_file_and_after_a_reopen_to_a_new_file_at_the_same_path)
{
    char dir[64], path[128], moved[128], err[256];
    temp_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/memrelay.log", dir);
    snprintf(moved, sizeof(moved), "%s/memrelay.log.1", dir);

    cr_assert_eq(mr_log_open(path, err, sizeof(err)), 0, "%s", err);
    mr_log_set_level(MR_LOG_INFO);
    mr_log_info("before rotation");
    cr_assert_eq(rename(path, moved), 0);
    mr_log_info("still the old file");
    cr_assert_eq(mr_log_reopen(), 0);
    mr_log_info("after rotation");

    char *old = slurp(moved), *cur = slurp(path);
    cr_assert(strstr(old, "INFO  before rotation\n") && strstr(old, "INFO  still the old file\n"), "old: %s",
              old);
    cr_assert_null(strstr(old, "after rotation"), "old: %s", old);
    cr_assert(strstr(cur, "INFO  after rotation\n") != NULL, "new: %s", cur);
    cr_assert_null(strstr(cur, "before rotation"), "new: %s", cur);
    free(old);
    free(cur);
    unlink(path);
    unlink(moved);
    rmdir(dir);
}

Test(log_file, a_file_that_cannot_be_opened_leaves_the_old_destination)
{
    char dir[64], path[128], err[256];
    temp_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/memrelay.log", dir);
    cr_assert_eq(mr_log_open(path, err, sizeof(err)), 0, "%s", err);
    cr_assert_neq(mr_log_open("/nonexistent-dir/x.log", err, sizeof(err)), 0);
    cr_assert(strstr(err, "/nonexistent-dir/x.log") != NULL, "%s", err);
    mr_log_error("kept");
    char *cur = slurp(path);
    cr_assert(strstr(cur, "ERROR kept\n") != NULL, "%s", cur);
    free(cur);
    unlink(path);
    rmdir(dir);
}

Test(log_file, a_failed_reopen_keeps_writing_to_the_old_file_and_says_so)
{
    char dir[64], path[128], err[256];
    temp_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/memrelay.log", dir);
    cr_assert_eq(mr_log_open(path, err, sizeof(err)), 0, "%s", err);
    /* Remove the directory under the open file: the path cannot be created again. */
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(rmdir(dir), 0);
    cr_assert_neq(mr_log_reopen(), 0);
    /* The old (now unlinked) file is still the destination: read it back through /proc. */
    char fdlink[64];
    int found = 0;
    for (int fd = 3; fd < 64 && !found; fd++) {
        char target[256];
        snprintf(fdlink, sizeof(fdlink), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(fdlink, target, sizeof(target) - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (strstr(target, path) == NULL)
            continue;
        char *text = slurp(fdlink);
        cr_assert(strstr(text, "ERROR cannot reopen log file") != NULL, "%s", text);
        free(text);
        found = 1;
    }
    cr_assert(found, "the old log file should still be open");
}

Test(log_file, logging_goes_back_to_stderr_when_the_path_is_dropped)
{
    char dir[64], path[128], err[256];
    temp_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/memrelay.log", dir);
    cr_assert_eq(mr_log_open(path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(mr_log_open(NULL, err, sizeof(err)), 0, "%s", err);
    mr_log_error("to stderr now");
    cr_assert_eq(mr_log_reopen(), 0, "nothing to reopen");
    char *cur = slurp(path);
    cr_assert_null(strstr(cur, "to stderr now"), "%s", cur);
    free(cur);
    unlink(path);
    rmdir(dir);
}

/* ---- config keys ---- */

static mr_config *load(const char *yaml, mr_config_error *err)
{
    return mr_config_load_string(yaml, strlen(yaml), "t.yml", err);
}

#define POOL "p:\n  listen: 127.0.0.1:22121\n  servers: [a:1:1]\n"

Test(log_config, defaults_are_info_to_stderr)
{
    mr_config_error err;
    mr_config *cfg = load(POOL, &err);
    cr_assert_not_null(cfg, "%s", err.message);
    cr_assert_eq(cfg->log_level, MR_LOG_INFO);
    cr_assert_null(cfg->log_file);
    mr_config_free(cfg);
}

Test(log_config, memrelay_section_sets_file_and_level)
{
    mr_config_error err;
    mr_config *cfg =
        load("memrelay:\n  log_file: /var/log/memrelay/memrelay.log\n  log_level: debug\n" POOL, &err);
    cr_assert_not_null(cfg, "%s", err.message);
    cr_assert_eq(cfg->log_level, MR_LOG_DEBUG);
    cr_assert_str_eq(cfg->log_file, "/var/log/memrelay/memrelay.log");
    mr_config_free(cfg);
}

static void expect_error(const char *yaml, int line, int col, const char *needle)
{
    mr_config_error err;
    mr_config *cfg = load(yaml, &err);
    if (cfg)
        mr_config_free(cfg);
    cr_assert_null(cfg, "expected an error containing '%s'", needle);
    cr_expect_eq(err.line, line, "%s", err.message);
    cr_expect_eq(err.column, col, "%s", err.message);
    cr_expect(strstr(err.message, needle) != NULL, "message '%s' should contain '%s'", err.message, needle);
}

Test(log_config, bad_values_are_errors_at_their_position)
{
    expect_error(
        "memrelay:\n  log_level: warning\n" POOL, 2, 14,
        "'log_level' in the memrelay section must be error, warn, info, debug or trace, not 'warning'");
    expect_error("memrelay:\n  log_file: \"\"\n" POOL, 2, 13,
                 "'log_file' in the memrelay section must be a file path");
    expect_error("memrelay:\n  log_file:\n" POOL, 2, 12, "'log_file' in the memrelay section has no value");
    expect_error("memrelay:\n  log_file: [a, b]\n" POOL, 2, 13, "must be a single value");
    expect_error("memrelay:\n  logfile: x\n" POOL, 2, 3,
                 "unknown key 'logfile' in the memrelay section (known: ");
}
