/* fatal.c: fatal errors and crash reports with a backtrace: libunwind's where it is installed
 * (Debian's libunwind-dev, which scripts/setup installs), else glibc's backtrace() (a machine
 * without it, such as a GPU machine that only builds Orion). */
#include "rt/fatal.h"

#if __has_include(<libunwind.h>)
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#define RT_HAVE_LIBUNWIND 1
#else
#include <execinfo.h>
#endif
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void write_str(int fd, const char *s)
{
    ssize_t w = write(fd, s, strlen(s));
    (void)w;
}

#ifndef RT_HAVE_LIBUNWIND
int rt_backtrace(int fd)
{
    void *ips[64];
    int n = backtrace(ips, 64);
    write_str(fd, "backtrace:\n");
    backtrace_symbols_fd(ips, n, fd);
    return n;
}
#else
static void fmt_to(int fd, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    rt_fmt(buf, sizeof buf, fmt, ap);
    va_end(ap);
    write_str(fd, buf);
}

int rt_backtrace(int fd)
{
    unw_context_t ctx;
    unw_cursor_t cur;
    if (unw_getcontext(&ctx) != 0 || unw_init_local(&cur, &ctx) != 0) {
        write_str(fd, "  (no backtrace: libunwind could not read this thread's context)\n");
        return 0;
    }
    int n = 0;
    write_str(fd, "backtrace:\n");
    while (n < 64 && unw_step(&cur) > 0) {
        unw_word_t ip = 0, off = 0;
        char name[256];
        unw_get_reg(&cur, UNW_REG_IP, &ip);
        if (unw_get_proc_name(&cur, name, sizeof name, &off) != 0)
            strcpy(name, "??");
        fmt_to(fd, "  #%d %s+0x%lx [%p]\n", n, name, (unsigned long)off, (void *)ip);
        n++;
    }
    return n;
}
#endif

void rt_fatal_at(const rt_logger *lg, const char *file, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    rt_fmt(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rt_logger loud = *lg;
    loud.level = RT_LOG_ERROR; /* a fatal line is never filtered */
    rt_log_safe(&loud, RT_LOG_ERROR, "fatal: %s (%s:%d)", msg, file, line);
    rt_backtrace(lg->fd);
    abort();
}

static rt_logger crash_logger = RT_LOGGER_INIT("rt");

static void on_crash(int sig)
{
    rt_logger loud = crash_logger;
    loud.level = RT_LOG_ERROR;
    const char *abbrev = sigabbrev_np(sig); /* a static string: safe here, unlike strsignal */
    rt_log_safe(&loud, RT_LOG_ERROR, "crashed with signal %d (SIG%s)", sig, abbrev ? abbrev : "?");
    rt_backtrace(crash_logger.fd);
    signal(sig, SIG_DFL);
    raise(sig);
}

void rt_install_crash_handlers(const rt_logger *lg)
{
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    crash_logger = *lg;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_crash;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
}
