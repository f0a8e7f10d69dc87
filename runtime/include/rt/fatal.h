/* rt/fatal.h: the fatal-error path: one log line, a libunwind backtrace, abort(). */
#ifndef RT_FATAL_H
#define RT_FATAL_H

#include "rt/log.h"

/* Log "fatal: <message> (file:line)" at error level, print the calling thread's
 * backtrace (function+offset per frame) to the logger's fd and abort(). Uses only the
 * lock-free formatter, so it is usable from interposed calls and signal handlers. */
void rt_fatal_at(const rt_logger *lg, const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));
#define RT_FATAL(lg, ...) rt_fatal_at((lg), __FILE__, __LINE__, __VA_ARGS__)

/* Check an invariant; on failure, fatal with the expression's text. */
#define RT_CHECK(lg, cond)                                                                         \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0))                                                          \
            rt_fatal_at((lg), __FILE__, __LINE__, "check failed: %s", #cond);                      \
    } while (0)

/* Write the current thread's backtrace to fd, one "  #N function+0xoff [ip]" per frame.
 * Returns the number of frames. */
int rt_backtrace(int fd);

/* Install handlers for SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT that print the signal
 * and a backtrace through `lg` and re-raise with the default action. For tools and
 * daemons; interposers leave the host program's handlers alone. */
void rt_install_crash_handlers(const rt_logger *lg);

#endif
