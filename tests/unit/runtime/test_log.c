/* test_log.c: log levels, line format, the lock-free formatter, configuration. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rt/log.h"

static size_t fmt(char *buf, size_t len, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    size_t n = rt_fmt(buf, len, f, ap);
    va_end(ap);
    return n;
}

Test(log, fmt_matches_printf)
{
    char a[256], b[256];
    fmt(a, sizeof a, "%s|%d|%i|%u|%x|%ld|%lld|%lu|%llu|%zu|%zd|%c|%%|%.*s", "str", -42, 7, 42u,
        0xbeefu, -123456789L, -9223372036854775807LL - 1, 123UL, 18446744073709551615ULL,
        (size_t)99, (ssize_t)-5, 'Z', 3, "abcdef");
    snprintf(b, sizeof b, "%s|%d|%i|%u|%x|%ld|%lld|%lu|%llu|%zu|%zd|%c|%%|%.*s", "str", -42, 7, 42u,
             0xbeefu, -123456789L, -9223372036854775807LL - 1, 123UL, 18446744073709551615ULL,
             (size_t)99, (ssize_t)-5, 'Z', 3, "abcdef");
    cr_assert_str_eq(a, b);
    fmt(a, sizeof a, "%p %s", (void *)0x1234, (char *)NULL);
    cr_assert_str_eq(a, "0x1234 (null)");
}

Test(log, fmt_truncates_and_terminates)
{
    char small[8];
    memset(small, 'x', sizeof small);
    size_t n = fmt(small, sizeof small, "%s", "0123456789");
    cr_assert_eq(n, 7);
    cr_assert_str_eq(small, "0123456");
    char one[1];
    fmt(one, 1, "abc");
    cr_assert_eq(one[0], '\0');
}

/* Run f with the logger writing into a pipe; return what came out. */
static char *capture(void (*f)(rt_logger *), int level)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    rt_logger lg = {"testsys", level, p[1]};
    f(&lg);
    close(p[1]);
    static char buf[8192];
    ssize_t n, got = 0;
    while ((n = read(p[0], buf + got, sizeof buf - 1 - (size_t)got)) > 0)
        got += n;
    buf[got] = '\0';
    close(p[0]);
    return buf;
}

static void emit_all(rt_logger *lg)
{
    rt_log(lg, RT_LOG_ERROR, "e %d", 1);
    rt_log(lg, RT_LOG_WARN, "w %d", 2);
    rt_log_safe(lg, RT_LOG_INFO, "i %d", 3);
    RT_DEBUG(lg, "d %d", 4);
}

Test(log, levels_filter)
{
    char *s = capture(emit_all, RT_LOG_WARN);
    cr_assert(strstr(s, "error: e 1"), "%s", s);
    cr_assert(strstr(s, "warn: w 2"), "%s", s);
    cr_assert_null(strstr(s, "i 3"), "%s", s);
    cr_assert_null(strstr(s, "d 4"), "%s", s);
    s = capture(emit_all, RT_LOG_DEBUG);
    cr_assert(strstr(s, "info: i 3") && strstr(s, "debug: d 4"), "%s", s);
    s = capture(emit_all, RT_LOG_ERROR);
    cr_assert_null(strstr(s, "w 2"), "%s", s);
}

Test(log, line_format)
{
    char *s = capture(emit_all, RT_LOG_ERROR);
    regex_t re;
    cr_assert_eq(
        regcomp(&re,
                "^[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]\\.[0-9]{3}Z "
                "testsys\\[[0-9]+:[0-9]+\\] error: e 1\n$",
                REG_EXTENDED),
        0);
    cr_assert_eq(regexec(&re, s, 0, NULL, 0), 0, "line was: %s", s);
    regfree(&re);
    /* The date is today's: compare with the C library's rendering. */
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    char day[16];
    strftime(day, sizeof day, "%Y-%m-%d", &tm);
    cr_assert_eq(strncmp(s, day, 10), 0, "%s vs %s", s, day);
}

static void emit_long(rt_logger *lg)
{
    char big[4000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    rt_log(lg, RT_LOG_ERROR, "%s", big);
    rt_log_safe(lg, RT_LOG_ERROR, "%s", big);
}

Test(log, long_lines_are_cut_but_end_in_newline)
{
    char *s = capture(emit_long, RT_LOG_ERROR);
    char *nl = strchr(s, '\n');
    cr_assert_not_null(nl);
    cr_assert_lt(nl - s, 1024);
    cr_assert_not_null(strchr(nl + 1, '\n'));
}

Test(log, configure_from_env)
{
    rt_logger lg = RT_LOGGER_INIT("x");
    rt_err e;
    char path[] = "/tmp/rt-log-test-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    setenv("RTTLOG_LOG", "debug", 1);
    setenv("RTTLOG_LOG_FILE", path, 1);
    cr_assert_eq(rt_log_configure(&lg, "RTTLOG", &e), 0, "%s", e.msg);
    cr_assert_eq(lg.level, RT_LOG_DEBUG);
    RT_DEBUG(&lg, "to the file");
    close(lg.fd);
    char buf[512] = "";
    FILE *f = fopen(path, "r");
    cr_assert(fgets(buf, sizeof buf, f));
    fclose(f);
    unlink(path);
    cr_assert(strstr(buf, "x["), "%s", buf);
    cr_assert(strstr(buf, "debug: to the file"), "%s", buf);

    rt_logger lg2 = RT_LOGGER_INIT("x");
    setenv("RTTLOG_LOG", "verbose", 1);
    cr_assert_eq(rt_log_configure(&lg2, "RTTLOG", &e), -EINVAL);
    cr_assert(strstr(e.msg, "RTTLOG_LOG='verbose'"), "%s", e.msg);
    cr_assert(strstr(e.msg, "error, warn, info, debug"), "%s", e.msg);
    cr_assert_eq(lg2.level, RT_LOG_WARN);
    cr_assert_eq(lg2.fd, 2);
    unsetenv("RTTLOG_LOG");
    unsetenv("RTTLOG_LOG_FILE");
}
