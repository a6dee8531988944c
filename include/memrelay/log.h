/* log.h: leveled, timestamped log lines to stderr.
 *
 * The level is set once at start-up (-v flags) before any thread starts and
 * is read-only afterwards. Each line is written with one write(2) so lines
 * from different threads never interleave.
 */
#ifndef MEMRELAY_LOG_H
#define MEMRELAY_LOG_H

typedef enum { MR_LOG_ERROR, MR_LOG_WARN, MR_LOG_INFO, MR_LOG_DEBUG, MR_LOG_TRACE } mr_log_level;

void mr_log_set_level(mr_log_level level);
mr_log_level mr_log_get_level(void);
void mr_log_write(mr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define mr_log(level, ...)                           \
    do {                                             \
        if ((level) <= mr_log_get_level())           \
            mr_log_write((level), __VA_ARGS__);      \
    } while (0)
#define mr_log_error(...) mr_log(MR_LOG_ERROR, __VA_ARGS__)
#define mr_log_warn(...) mr_log(MR_LOG_WARN, __VA_ARGS__)
#define mr_log_info(...) mr_log(MR_LOG_INFO, __VA_ARGS__)
#define mr_log_debug(...) mr_log(MR_LOG_DEBUG, __VA_ARGS__)

#endif
