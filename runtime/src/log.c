/* log.c: levelled log lines with a timestamp, pid and tid, one write(2) each.
 *
 * Sections: the lock-free formatter (rt_fmt), the line prefix, the two entry points,
 * configuration from the environment.
 */
#include "rt/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "rt/env.h"

static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};

/* ---- rt_fmt: no malloc, no locale, no stdio ---------------------------------------- */

typedef struct out {
    char *buf;
    size_t len, pos;
} out;

static void put(out *o, char c)
{
    if (o->pos + 1 < o->len)
        o->buf[o->pos] = c;
    o->pos++;
}

static void put_str(out *o, const char *s, long max)
{
    if (!s)
        s = "(null)";
    for (long i = 0; s[i] && (max < 0 || i < max); i++)
        put(o, s[i]);
}

static void put_u64(out *o, unsigned long long v, unsigned base)
{
    char tmp[24];
    int n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    while (n)
        put(o, tmp[--n]);
}

size_t rt_fmt(char *buf, size_t len, const char *fmt, va_list ap)
{
    out o = {buf, len, 0};
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            put(&o, *p);
            continue;
        }
        p++;
        long prec = -1;
        if (p[0] == '.' && p[1] == '*') {
            prec = va_arg(ap, int);
            p += 2;
        }
        int lng = 0;
        bool size = false;
        while (*p == 'l') {
            lng++;
            p++;
        }
        if (*p == 'z') {
            size = true;
            p++;
        }
        switch (*p) {
        case 's':
            put_str(&o, va_arg(ap, const char *), prec);
            break;
        case 'c':
            put(&o, (char)va_arg(ap, int));
            break;
        case 'd':
        case 'i': {
            long long v = size       ? (long long)va_arg(ap, ssize_t)
                          : lng >= 2 ? va_arg(ap, long long)
                          : lng == 1 ? va_arg(ap, long)
                                     : va_arg(ap, int);
            unsigned long long mag = (unsigned long long)v;
            if (v < 0) {
                put(&o, '-');
                mag = 0 - mag;
            }
            put_u64(&o, mag, 10);
            break;
        }
        case 'u':
        case 'x': {
            unsigned long long v = size       ? va_arg(ap, size_t)
                                   : lng >= 2 ? va_arg(ap, unsigned long long)
                                   : lng == 1 ? va_arg(ap, unsigned long)
                                              : va_arg(ap, unsigned);
            put_u64(&o, v, *p == 'x' ? 16 : 10);
            break;
        }
        case 'p':
            put_str(&o, "0x", -1);
            put_u64(&o, (uintptr_t)va_arg(ap, void *), 16);
            break;
        case '%':
            put(&o, '%');
            break;
        case '\0':
            p--; /* a lone '%' at the end */
            break;
        default:
            put(&o, '%');
            put(&o, *p);
        }
    }
    if (len > 0)
        buf[o.pos < len ? o.pos : len - 1] = '\0';
    return o.pos < len ? o.pos : (len ? len - 1 : 0);
}

static size_t fmt_call(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t n = rt_fmt(buf, len, fmt, ap);
    va_end(ap);
    return n;
}

/* ---- the prefix ------------------------------------------------------------------- */

/* Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm): gmtime_r may take
 * locks on some libcs, this never does. */
static void civil(long long days, int *y, unsigned *m, unsigned *d)
{
    days += 719468;
    long long era = (days >= 0 ? days : days - 146096) / 146097;
    unsigned doe = (unsigned)(days - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static void two(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
}

static size_t prefix(char *buf, size_t len, const rt_logger *lg, rt_level lvl)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long secs = ts.tv_sec;
    int y;
    unsigned mo, d;
    civil(secs / 86400, &y, &mo, &d);
    unsigned sod = (unsigned)(secs % 86400);
    char t[32] = "0000-00-00T00:00:00.000Z";
    t[0] = (char)('0' + y / 1000 % 10);
    t[1] = (char)('0' + y / 100 % 10);
    two(t + 2, (unsigned)y % 100);
    two(t + 5, mo);
    two(t + 8, d);
    two(t + 11, sod / 3600);
    two(t + 14, sod / 60 % 60);
    two(t + 17, sod % 60);
    unsigned ms = (unsigned)(ts.tv_nsec / 1000000);
    t[20] = (char)('0' + ms / 100);
    two(t + 21, ms % 100);
    return fmt_call(buf, len, "%s %s[%d:%ld] %s: ", t, lg->system ? lg->system : "?", (int)getpid(),
                    (long)syscall(SYS_gettid), level_names[lvl]);
}

/* ---- entry points ----------------------------------------------------------------- */

static void emit(const rt_logger *lg, char *line, size_t n, size_t cap)
{
    if (n >= cap - 1)
        n = cap - 2;
    if (n == 0 || line[n - 1] != '\n')
        line[n++] = '\n';
    int saved = errno;
    /* One write: lines from several threads and processes sharing the fd stay whole
     * (O_APPEND files and pipes up to PIPE_BUF). */
    ssize_t w = write(lg->fd, line, n);
    (void)w;
    errno = saved;
}

void rt_vlog(const rt_logger *lg, rt_level lvl, const char *fmt, va_list ap)
{
    if ((int)lvl > lg->level)
        return;
    char line[1024];
    size_t n = prefix(line, sizeof line, lg, lvl);
    int m = vsnprintf(line + n, sizeof line - n, fmt, ap);
    if (m > 0)
        n += (size_t)m < sizeof line - n ? (size_t)m : sizeof line - n - 1;
    emit(lg, line, n, sizeof line);
}

void rt_log(const rt_logger *lg, rt_level lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rt_vlog(lg, lvl, fmt, ap);
    va_end(ap);
}

void rt_log_safe(const rt_logger *lg, rt_level lvl, const char *fmt, ...)
{
    if ((int)lvl > lg->level)
        return;
    char line[1024];
    size_t n = prefix(line, sizeof line, lg, lvl);
    va_list ap;
    va_start(ap, fmt);
    n += rt_fmt(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    emit(lg, line, n, sizeof line);
}

/* ---- configuration ---------------------------------------------------------------- */

int rt_log_configure(rt_logger *lg, const char *prefix_name, rt_err *err)
{
    char name[64], fname[64];
    int level = RT_LOG_WARN;
    char path[PATH_MAX] = "";
    snprintf(name, sizeof name, "%s_LOG", prefix_name);
    snprintf(fname, sizeof fname, "%s_LOG_FILE", prefix_name);
    const rt_env_spec specs[] = {
        {.name = name, .type = RT_ENV_ENUM, .def = "warn", .names = level_names, .dest = &level},
        {.name = fname, .type = RT_ENV_PATH, .def = NULL, .dest = path},
    };
    int rc = rt_env_load(specs, 2, err);
    if (rc < 0)
        return rc;
    lg->level = level;
    if (path[0]) {
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return rt_err_sys(err, "%s='%s': cannot open", fname, path);
        lg->fd = fd;
    }
    return 0;
}
