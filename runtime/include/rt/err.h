/* rt/err.h: the error carrier every runtime call fills: a code plus a message. */
#ifndef RT_ERR_H
#define RT_ERR_H

#include <stddef.h>

/* An error: `code` is a positive errno value (EINVAL for bad input, the saved errno
 * of a failed syscall), `msg` says what failed where, e.g.
 * "SPLITFT_SMALL_MAX='12Q': not a size; accepted: ...". Callers may pass NULL. */
typedef struct rt_err {
    int code;
    char msg[320];
} rt_err;

/* Fill `err` (if not NULL) and return -code, so callers can `return rt_err_set(...)`. */
int rt_err_set(rt_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* As rt_err_set with code = errno, appending ": strerror(errno)". */
int rt_err_sys(rt_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
