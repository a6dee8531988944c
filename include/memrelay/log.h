/* Layer: base (src/base/; may use no other layer). */
/* log.h: leveled, timestamped log lines to stderr or a file, rate-limited.
 *
 * A line is `2024-05-01T12:34:56.789Z WARN  message`: an ISO-8601 UTC time
 * with milliseconds, the level padded to 5 characters, the message. Control
 * characters in the message become '?', so one line is always one entry.
 * Each line is written with one write(2) (at most MR_LOG_LINE_MAX bytes), so
 * lines from different threads never interleave.
 *
 * Threads: any thread may log. The level is an atomic read on every call;
 * the destination is one fd number that never changes once a file is open
 * (a new file is dup2()ed onto it, which is atomic), so a worker writing
 * while the main thread reopens the file writes either to the old file or to
 * the new one, never to a closed fd. mr_log_open(), mr_log_reopen() and
 * mr_log_flush_suppressed() belong to the main thread.
 *
 * Rate limiting: errors and warnings are what repeat when something breaks
 * (a dead backend fails every request), so each ERROR/WARN call site may
 * write MR_LOG_BURST lines per MR_LOG_WINDOW_MS; further lines from that
 * site in the same window are counted, not written, and a line
 * `N similar messages suppressed (...)` reports them once the window is
 * over. A call site is identified by a static struct the macro declares,
 * with per-site atomic counters and no lock. INFO, DEBUG and TRACE lines are
 * not limited: they are start-up and state changes, or asked for with -v.
 */
#ifndef MEMRELAY_LOG_H
#define MEMRELAY_LOG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { MR_LOG_ERROR, MR_LOG_WARN, MR_LOG_INFO, MR_LOG_DEBUG, MR_LOG_TRACE } mr_log_level;

#define MR_LOG_LINE_MAX 1024  /* bytes per line, newline included; longer ones end in "..." */
#define MR_LOG_BURST 10       /* lines one ERROR/WARN call site may write per window */
#define MR_LOG_WINDOW_MS 5000 /* the rate-limit window (as the kernel's printk_ratelimit) */

/* One call site of mr_log_error()/mr_log_warn(); the macro makes a static one. */
typedef struct mr_log_site {
    const char *file; /* source file and line, named in the suppression note */
    int line;
    const char *fmt;
    /* Window state in one word so a single CAS moves it: the high 40 bits
     * are the window's start (monotonic ms since boot: 34 years before they
     * wrap), the low 24 bits the lines the site has logged in it. */
    _Atomic uint64_t window;
    _Atomic uint32_t suppressed; /* lines not written, not yet reported */
    _Atomic int level;           /* for the note written by the flusher */
    _Atomic int listed;          /* on the list of sites the flusher visits */
    struct mr_log_site *_Atomic next;
} mr_log_site;

/* The level at and below which lines are written (default INFO). Any thread. */
void mr_log_set_level(mr_log_level level);
mr_log_level mr_log_get_level(void);

/* "error", "warn", "info", "debug", "trace" -> level; -1 if none matches. */
int mr_log_level_from_name(const char *name);
const char *mr_log_level_name(mr_log_level level);

/* Send lines to `path` (opened O_WRONLY|O_CREAT|O_APPEND|O_CLOEXEC, mode
 * 0640 before the umask), or back to stderr when path is NULL. On failure
 * the current destination stays and a message goes to err. Main thread. */
int mr_log_open(const char *path, char *err, size_t errlen);

/* Open the current file's path again (after logrotate moved it away) and
 * swap it in atomically. On failure the old file stays and an error is
 * logged to it. A no-op when logging to stderr. Main thread (SIGUSR1). */
int mr_log_reopen(void);

/* Write the suppression notes of call sites whose window has ended. Called
 * about once a second from the main loop, so a note appears even when the
 * flood stops. */
void mr_log_flush_suppressed(void);

/* The line itself (use the macros). */
void mr_log_write(mr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mr_log_site_write(mr_log_site *site, mr_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The rate limiter's decision for one line from `site` at time now_ms:
 * returns true if it may be written, and sets *note to the count of earlier
 * suppressed lines to report first (0: none). Exposed for unit tests. */
int mr_log_site_admit(mr_log_site *site, mr_log_level level, uint64_t now_ms, uint32_t *note);

/* The suppression note for `site` if its window ended by now_ms: returns the
 * count to report (0: nothing due) and clears it. Exposed for unit tests. */
uint32_t mr_log_site_take_due(mr_log_site *site, uint64_t now_ms);

/* Format one line into buf (at most MR_LOG_LINE_MAX bytes, ends in '\n');
 * returns its length. `now_ns` is CLOCK_REALTIME. Exposed for unit tests. */
size_t mr_log_format(char *buf, mr_log_level level, int64_t now_ns, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#ifdef __FILE_NAME__
#define MR_LOG_FILE_ __FILE_NAME__
#else
#define MR_LOG_FILE_ __FILE__
#endif

#define mr_log(level, ...)                      \
    do {                                        \
        if ((level) <= mr_log_get_level())      \
            mr_log_write((level), __VA_ARGS__); \
    } while (0)

/* A rate-limited call site: the static struct is this line's identity. */
#define MR_LOG_FMT_(fmt, ...) fmt
#define mr_log_limited(level, ...)                                                       \
    do {                                                                                 \
        static mr_log_site mr_log_site_ = {                                              \
            .file = MR_LOG_FILE_, .line = __LINE__, .fmt = MR_LOG_FMT_(__VA_ARGS__, 0)}; \
        if ((level) <= mr_log_get_level())                                               \
            mr_log_site_write(&mr_log_site_, (level), __VA_ARGS__);                      \
    } while (0)

#define mr_log_error(...) mr_log_limited(MR_LOG_ERROR, __VA_ARGS__)
#define mr_log_warn(...) mr_log_limited(MR_LOG_WARN, __VA_ARGS__)
#define mr_log_info(...) mr_log(MR_LOG_INFO, __VA_ARGS__)
#define mr_log_debug(...) mr_log(MR_LOG_DEBUG, __VA_ARGS__)
#define mr_log_trace(...) mr_log(MR_LOG_TRACE, __VA_ARGS__)

#endif
