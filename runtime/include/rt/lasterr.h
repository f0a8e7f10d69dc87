/* rt/lasterr.h: the last-error convention of the libraries whose public calls return a status
 * and leave the reason for the caller to read afterwards (Minuet's mn_last_error, DynaPipe's
 * dp_last_error): one message per thread and per library, set by a call that fails and emptied
 * by a call that succeeds, and status names looked up in one table.
 *
 * A library keeps its own `static _Thread_local rt_lasterr`, so concurrent callers never read
 * each other's errors and two libraries in one program never read each other's. Every public
 * function returning a status returns through rt_lasterr_done, so that after a success the
 * message is "" and a message left by an earlier failure cannot be mistaken for this one. */
#ifndef RT_LASTERR_H
#define RT_LASTERR_H

#include <stdarg.h>
#include <stddef.h>

/* Messages are truncated to RT_LASTERR_SIZE - 1 bytes. */
#define RT_LASTERR_SIZE 512

typedef struct rt_lasterr {
    char msg[RT_LASTERR_SIZE];
} rt_lasterr;

/* Store a printf-style message. The arguments may point into e->msg itself (a caller prefixing
 * a path to the message a parser left). */
void rt_lasterr_set(rt_lasterr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rt_lasterr_vset(rt_lasterr *e, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static inline void rt_lasterr_clear(rt_lasterr *e) { e->msg[0] = '\0'; }

/* End a public call: status 0 (success) empties the message; status comes back unchanged.
 * Inline, so that a static analyzer sees the status pass through. */
static inline int rt_lasterr_done(rt_lasterr *e, int status)
{
    if (status == 0)
        rt_lasterr_clear(e);
    return status;
}

/* names[status] when status is in [0, n) and has a name, `unknown` otherwise. For a table built
 * from a list of the statuses with designated initializers: `[MN_EDUP] = "MN_EDUP"`. */
const char *rt_status_name(const char *const *names, size_t n, int status, const char *unknown);

#endif
