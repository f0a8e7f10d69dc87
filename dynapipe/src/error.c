/* error.c: DynaPipe's error reporting: status names, and the per-thread last-error message
 * (rt/lasterr.h) that every failing call sets through dp_fail (dp_set_error) and every public
 * call that succeeds empties through dp_done (internal.h). */
#include <stdarg.h>

#include "internal.h"

/* One message per thread: planner worker threads never read each other's errors. */
_Thread_local rt_lasterr dp_lasterr;

/* Names by code; the list counted by an enum of its entries: a gap or a repeat makes the
 * table's length differ from the count. */
#define DP_STATUS_NAME(s)  [s] = #s,
#define DP_STATUS_ENTRY(s) dp_listed_##s,
static const char *const status_names[] = {DP_STATUSES(DP_STATUS_NAME)};
enum { DP_STATUSES(DP_STATUS_ENTRY) DP_STATUSES_LISTED };
_Static_assert(sizeof status_names / sizeof status_names[0] == DP_STATUSES_LISTED,
               "DP_STATUSES skips or repeats a status");

const char *dp_last_error(void) { return dp_lasterr.msg; }

void dp_clear_error(void) { rt_lasterr_clear(&dp_lasterr); }

const char *dp_status_name(dp_status s)
{
    return rt_status_name(status_names, sizeof status_names / sizeof status_names[0], (int)s,
                          "DP_UNKNOWN");
}

void dp_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rt_lasterr_vset(&dp_lasterr, fmt, ap);
    va_end(ap);
}
