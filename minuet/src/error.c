/* error.c: Minuet's error reporting: status names, and the per-thread last-error message
 * (rt/lasterr.h) that every failing call sets through mn_fail (mn_set_error) and every public
 * call that succeeds empties through mn_done (internal.h). */
#include <stdarg.h>

#include "internal.h"

/* One message per thread, so concurrent callers never read each other's errors. */
_Thread_local rt_lasterr mn_lasterr;

/* Names by code; the list counted by an enum of its entries: a gap or a repeat makes the
 * table's length differ from the count. */
#define MN_STATUS_NAME(s)  [s] = #s,
#define MN_STATUS_ENTRY(s) mn_listed_##s,
static const char *const status_names[] = {MN_STATUSES(MN_STATUS_NAME)};
enum { MN_STATUSES(MN_STATUS_ENTRY) MN_STATUSES_LISTED };
_Static_assert(sizeof status_names / sizeof status_names[0] == MN_STATUSES_LISTED,
               "MN_STATUSES skips or repeats a status");

const char *mn_last_error(void) { return mn_lasterr.msg; }

const char *mn_status_name(mn_status s)
{
    return rt_status_name(status_names, sizeof status_names / sizeof status_names[0], (int)s,
                          "MN_UNKNOWN");
}

void mn_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rt_lasterr_vset(&mn_lasterr, fmt, ap);
    va_end(ap);
}

mn_status mn_cuda_done(mn_status s) { return mn_done(s); }
