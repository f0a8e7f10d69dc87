/* rt/log.h: levelled logging per system, to stderr or a file, one write(2) per line.
 *
 * Each library or tool owns one rt_logger, configured from <SYSTEM>_LOG (error, warn,
 * info, debug; default warn) and <SYSTEM>_LOG_FILE (default: stderr). A line reads
 *   2026-11-27T03:04:05.678Z splitft[1234:1240] warn: message
 * rt_log() formats with vsnprintf; rt_log_safe() uses a small formatter of its own and
 * neither allocates nor takes a lock, so it may be called inside interposed functions,
 * before the constructor has run and from signal handlers. It accepts %s %d %i %u %x %p
 * %c %% with the l, ll and z modifiers and %.*s.
 */
#ifndef RT_LOG_H
#define RT_LOG_H

#include <stdarg.h>
#include <stddef.h>

#include "rt/err.h"

typedef enum rt_level { RT_LOG_ERROR = 0, RT_LOG_WARN, RT_LOG_INFO, RT_LOG_DEBUG } rt_level;

typedef struct rt_logger {
    const char *system; /* lower-case name printed on each line, e.g. "splitft" */
    int level;          /* lines above this level are dropped */
    int fd;             /* stderr (2) or the opened <SYSTEM>_LOG_FILE */
} rt_logger;

/* A logger usable before configuration: warn level, to stderr. */
#define RT_LOGGER_INIT(sys)                                                                        \
    {                                                                                              \
        (sys), RT_LOG_WARN, 2                                                                      \
    }

/* Read <PREFIX>_LOG and <PREFIX>_LOG_FILE (prefix e.g. "SPLITFT"). On a bad value the
 * logger keeps its defaults and the error is returned for the caller to report. */
int rt_log_configure(rt_logger *lg, const char *prefix, rt_err *err);

void rt_log(const rt_logger *lg, rt_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rt_vlog(const rt_logger *lg, rt_level lvl, const char *fmt, va_list ap);
void rt_log_safe(const rt_logger *lg, rt_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The formatter behind rt_log_safe: always NUL-terminates, returns the length written. */
size_t rt_fmt(char *buf, size_t len, const char *fmt, va_list ap);

#define RT_ERROR(lg, ...) rt_log((lg), RT_LOG_ERROR, __VA_ARGS__)
#define RT_WARN(lg, ...)  rt_log((lg), RT_LOG_WARN, __VA_ARGS__)
#define RT_INFO(lg, ...)  rt_log((lg), RT_LOG_INFO, __VA_ARGS__)
#define RT_DEBUG(lg, ...)                                                                          \
    do {                                                                                           \
        if ((lg)->level >= RT_LOG_DEBUG)                                                           \
            rt_log((lg), RT_LOG_DEBUG, __VA_ARGS__);                                               \
    } while (0)

#endif
