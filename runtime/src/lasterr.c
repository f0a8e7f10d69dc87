/* lasterr.c: setting a library's last-error message, and status names from a table. */
#include "rt/lasterr.h"

#include <stdio.h>

void rt_lasterr_vset(rt_lasterr *e, const char *fmt, va_list ap)
{
    /* Format into a local buffer first: an argument may be e->msg itself, and vsnprintf's
     * source and destination must not overlap. */
    char msg[sizeof e->msg];
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): clang 14 false positive */
    vsnprintf(msg, sizeof msg, fmt, ap);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
}

void rt_lasterr_set(rt_lasterr *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rt_lasterr_vset(e, fmt, ap);
    va_end(ap);
}

const char *rt_status_name(const char *const *names, size_t n, int status, const char *unknown)
{
    if (status < 0 || (size_t)status >= n || !names[status])
        return unknown;
    return names[status];
}
