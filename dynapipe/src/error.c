/* error.c: DynaPipe's error reporting: status names and the per-thread last-error message that
 * every failing call sets through dp_fail (internal.h). */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

/* One message per thread: planner worker threads never read each other's errors. */
static _Thread_local char last_error[512];

const char *dp_last_error(void) { return last_error; }

void dp_clear_error(void) { last_error[0] = '\0'; }

const char *dp_status_name(dp_status s)
{
    static const char *const names[] = {
        "DP_OK",  "DP_EINVAL",  "DP_EEMPTY", "DP_ERANGE",      "DP_ENOMEM",
        "DP_EIO", "DP_EFORMAT", "DP_EGRID",  "DP_EINFEASIBLE", "DP_ECHECK",
    };
    if ((unsigned)s < sizeof names / sizeof names[0])
        return names[s];
    return "DP_UNKNOWN";
}

void dp_set_error(const char *fmt, ...)
{
    /* Format into a local buffer first: an argument may be dp_last_error() itself. */
    char msg[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(last_error, sizeof last_error, "%s", msg);
}
