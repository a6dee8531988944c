/* log.c: one write(2) per line, UTC timestamps with milliseconds, a file
 * that can be reopened under running threads, and per-call-site rate limits.
 * See log.h for the rules. */
#include "memrelay/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PATH_CAP 4096

static _Atomic int log_level = MR_LOG_INFO;

/* Where lines go. STDERR_FILENO until a file is opened; from then on one fd
 * number for the life of the process: later files are dup3()ed onto it, so
 * a thread that loaded it never writes to a closed or reused fd. */
static _Atomic int log_fd = STDERR_FILENO;

/* The open file's path, for mr_log_reopen(); main thread only. */
static char log_path[PATH_CAP];
static int log_to_file;

/* Sites with suppressed lines, for mr_log_flush_suppressed(). A site is
 * pushed once (its `listed` flag) and never removed: sites are static. */
static mr_log_site *_Atomic sites;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
static const char *const level_words[] = {"error", "warn", "info", "debug", "trace"};

void mr_log_set_level(mr_log_level level)
{
    atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

mr_log_level mr_log_get_level(void)
{
    return (mr_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

int mr_log_level_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof(level_words) / sizeof(level_words[0]); i++)
        if (strcmp(name, level_words[i]) == 0)
            return (int)i;
    return -1;
}

const char *mr_log_level_name(mr_log_level level)
{
    return (unsigned)level < sizeof(level_words) / sizeof(level_words[0]) ? level_words[level] : "?";
}

/* ---- lines ---- */

static size_t vformat(char *buf, mr_log_level level, int64_t now_ns, const char *fmt, va_list ap)
{
    struct tm tm;
    time_t secs = (time_t)(now_ns / 1000000000);
    gmtime_r(&secs, &tm);
    int n = snprintf(buf, MR_LOG_LINE_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(now_ns % 1000000000 / 1000000), level_names[level]);
    size_t head = n < 0 ? 0 : (size_t)n;
    size_t room = MR_LOG_LINE_MAX - head - 1; /* keep one byte for the newline */
    int m = vsnprintf(buf + head, room + 1, fmt, ap);
    size_t len = head + (m < 0 ? 0 : (size_t)m);
    if (m >= 0 && (size_t)m > room) {
        len = MR_LOG_LINE_MAX - 1;
        memcpy(buf + len - 3, "...", 3);
    }
    /* A message may quote bytes from the network; keep it on one line. */
    for (size_t i = head; i < len; i++)
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
            buf[i] = '?';
    buf[len++] = '\n';
    return len;
}

size_t mr_log_format(char *buf, mr_log_level level, int64_t now_ns, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t len = vformat(buf, level, now_ns, fmt, ap);
    va_end(ap);
    return len;
}

static int64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void put_line(const char *buf, size_t len)
{
    int fd = atomic_load_explicit(&log_fd, memory_order_acquire);
    ssize_t w;
    do
        w = write(fd, buf, len);
    while (w < 0 && errno == EINTR);
}

static void vwrite_line(mr_log_level level, const char *fmt, va_list ap)
{
    char line[MR_LOG_LINE_MAX];
    put_line(line, vformat(line, level, realtime_ns(), fmt, ap));
}

static void write_line(mr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void write_line(mr_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwrite_line(level, fmt, ap);
    va_end(ap);
}

void mr_log_write(mr_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwrite_line(level, fmt, ap);
    va_end(ap);
}

/* ---- rate limiting ---- */

static void list_site(mr_log_site *site)
{
    if (atomic_exchange_explicit(&site->listed, 1, memory_order_acq_rel))
        return;
    mr_log_site *head = atomic_load_explicit(&sites, memory_order_acquire);
    do
        atomic_store_explicit(&site->next, head, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&sites, &head, site, memory_order_release,
                                                  memory_order_acquire));
}

#define COUNT_BITS 24
#define COUNT_MAX ((1u << COUNT_BITS) - 1)

/* Has the window that started at `start` ended by `now`? A reading older
 * than the start (another thread's clock read a moment earlier) is inside. */
static int window_over(uint64_t start, uint64_t now)
{
    return now >= start && now - start >= MR_LOG_WINDOW_MS;
}

/* Every line from a site is either written or counted into exactly one
 * note: whoever opens a new window (a caller) or finds the old one over
 * (the flusher) takes the count with an atomic exchange. */
int mr_log_site_admit(mr_log_site *site, mr_log_level level, uint64_t now_ms, uint32_t *note)
{
    *note = 0;
    now_ms &= (UINT64_C(1) << (64 - COUNT_BITS)) - 1;
    uint64_t old = atomic_load_explicit(&site->window, memory_order_relaxed);
    for (;;) {
        uint64_t start = old >> COUNT_BITS;
        uint32_t n = (uint32_t)(old & COUNT_MAX);
        int fresh = n == 0 || window_over(start, now_ms);
        uint64_t next = fresh ? (now_ms << COUNT_BITS | 1) : (n == COUNT_MAX ? old : old + 1);
        if (!atomic_compare_exchange_weak_explicit(&site->window, &old, next, memory_order_relaxed,
                                                   memory_order_relaxed))
            continue;
        if (fresh) {
            *note = atomic_exchange_explicit(&site->suppressed, 0, memory_order_relaxed);
            return 1;
        }
        if (n < MR_LOG_BURST)
            return 1;
        break;
    }
    atomic_store_explicit(&site->level, (int)level, memory_order_relaxed);
    atomic_fetch_add_explicit(&site->suppressed, 1, memory_order_relaxed);
    list_site(site);
    return 0;
}

uint32_t mr_log_site_take_due(mr_log_site *site, uint64_t now_ms)
{
    if (atomic_load_explicit(&site->suppressed, memory_order_relaxed) == 0)
        return 0;
    uint64_t w = atomic_load_explicit(&site->window, memory_order_relaxed);
    if (!window_over(w >> COUNT_BITS, now_ms))
        return 0;
    return atomic_exchange_explicit(&site->suppressed, 0, memory_order_relaxed);
}

static void write_note(const mr_log_site *site, mr_log_level level, uint32_t count)
{
    write_line(level, "%u similar message%s suppressed (%s:%d: %s)", count, count == 1 ? "" : "s", site->file,
               site->line, site->fmt);
}

void mr_log_site_write(mr_log_site *site, mr_log_level level, const char *fmt, ...)
{
    uint32_t note;
    if (!mr_log_site_admit(site, level, monotonic_ms(), &note))
        return;
    if (note)
        write_note(site, level, note);
    va_list ap;
    va_start(ap, fmt);
    vwrite_line(level, fmt, ap);
    va_end(ap);
}

void mr_log_flush_suppressed(void)
{
    uint64_t now = monotonic_ms();
    for (mr_log_site *s = atomic_load_explicit(&sites, memory_order_acquire); s;
         s = atomic_load_explicit(&s->next, memory_order_relaxed)) {
        uint32_t n = mr_log_site_take_due(s, now);
        if (n)
            write_note(s, (mr_log_level)atomic_load_explicit(&s->level, memory_order_relaxed), n);
    }
}

/* ---- destination ---- */

/* Put `nfd` in place of the current destination and close it. */
static int swap_in(int nfd)
{
    int cur = atomic_load_explicit(&log_fd, memory_order_relaxed);
    if (cur == STDERR_FILENO) {
        /* The first file: its fd number becomes the destination for good. */
        atomic_store_explicit(&log_fd, nfd, memory_order_release);
        return 0;
    }
    /* dup3 replaces what `cur` refers to in one step (and keeps O_CLOEXEC,
     * which dup2 would drop). */
    int rc = dup3(nfd, cur, O_CLOEXEC) < 0 ? -1 : 0;
    int saved = errno;
    close(nfd);
    errno = saved;
    return rc;
}

static int open_file(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
}

int mr_log_open(const char *path, char *err, size_t errlen)
{
    if (path == NULL) {
        if (!log_to_file)
            return 0;
        int nfd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
        if (nfd < 0 || swap_in(nfd) < 0) {
            snprintf(err, errlen, "cannot switch logging back to stderr: %s", strerror(errno));
            return -1;
        }
        log_to_file = 0;
        log_path[0] = '\0';
        return 0;
    }
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(log_path)) {
        snprintf(err, errlen, "log file path must be 1 to %zu bytes", sizeof(log_path) - 1);
        return -1;
    }
    int nfd = open_file(path);
    if (nfd < 0) {
        snprintf(err, errlen, "cannot open log file %s: %s", path, strerror(errno));
        return -1;
    }
    if (swap_in(nfd) < 0) {
        snprintf(err, errlen, "cannot switch to log file %s: %s", path, strerror(errno));
        return -1;
    }
    memcpy(log_path, path, len + 1);
    log_to_file = 1;
    return 0;
}

int mr_log_reopen(void)
{
    if (!log_to_file)
        return 0;
    int nfd = open_file(log_path);
    if (nfd < 0 || swap_in(nfd) < 0) {
        mr_log_error("cannot reopen log file %s: %s; still writing to the old one", log_path,
                     strerror(errno));
        return -1;
    }
    mr_log_info("log file %s reopened", log_path);
    return 0;
}
