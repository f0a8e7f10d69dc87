/* err.c: filling rt_err. */
#include "rt/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int rt_err_set(rt_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err) {
        /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): clang 14 false positive */
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        err->code = code;
    }
    va_end(ap);
    return -code;
}

int rt_err_sys(rt_err *err, const char *fmt, ...)
{
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    if (err) {
        /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): clang 14 false positive */
        int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        if (n >= 0 && (size_t)n < sizeof err->msg)
            snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %s", strerror(saved));
        err->code = saved;
    }
    va_end(ap);
    errno = saved;
    return -saved;
}
