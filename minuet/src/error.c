/* error.c: Minuet's error reporting: status names and the per-thread last-error message that
 * every failing call sets through mn_fail. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

/* The only mutable state of the library: one message per thread, so concurrent callers never
 * read each other's errors. */
static _Thread_local char last_error[512];

const char *mn_last_error(void) { return last_error; }

const char *mn_status_name(mn_status s)
{
    switch (s) {
    case MN_OK:
        return "MN_OK";
    case MN_EINVAL:
        return "MN_EINVAL";
    case MN_EDUP:
        return "MN_EDUP";
    case MN_ERANGE:
        return "MN_ERANGE";
    case MN_ENAN:
        return "MN_ENAN";
    case MN_EEMPTY:
        return "MN_EEMPTY";
    case MN_ENOMEM:
        return "MN_ENOMEM";
    case MN_EIO:
        return "MN_EIO";
    case MN_EFORMAT:
        return "MN_EFORMAT";
    }
    return "MN_UNKNOWN";
}

mn_status mn_fail(mn_status s, const char *fmt, ...)
{
    /* Format into a local buffer first: callers may pass mn_last_error() as an argument
     * (to prefix a path to a parser's message), and the buffers must not overlap. */
    char msg[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(last_error, sizeof last_error, "%s", msg);
    return s;
}
