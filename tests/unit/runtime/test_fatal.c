/* test_fatal.c: the fatal path logs, prints a backtrace through libunwind and aborts. */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rt/fatal.h"

/* Run f in a child with the logger on a pipe; return the output and the wait status. */
static char *run_child(void (*f)(const rt_logger *), int *status)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(p[0]);
        rt_logger lg = {"fataltest", RT_LOG_ERROR, p[1]};
        f(&lg);
        _exit(0);
    }
    close(p[1]);
    static char buf[16384];
    ssize_t n, got = 0;
    while ((n = read(p[0], buf + got, sizeof buf - 1 - (size_t)got)) > 0)
        got += n;
    buf[got] = '\0';
    close(p[0]);
    waitpid(pid, status, 0);
    return buf;
}

__attribute__((noinline)) void deep_caller_for_backtrace(const rt_logger *lg);
__attribute__((noinline)) void deep_caller_for_backtrace(const rt_logger *lg)
{
    RT_FATAL(lg, "the disk is on fire (%d)", 17);
}

Test(fatal, logs_backtrace_and_aborts)
{
    int st;
    char *out = run_child(deep_caller_for_backtrace, &st);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %d, output: %s", st, out);
    cr_assert(strstr(out, "fataltest["), "%s", out);
    cr_assert(
        strstr(out, "error: fatal: the disk is on fire (17) (tests/unit/runtime/test_fatal.c:"),
        "%s", out);
    cr_assert(strstr(out, "backtrace:"), "%s", out);
    cr_assert(strstr(out, "deep_caller_for_backtrace+0x"), "the caller's frame is missing: %s",
              out);
}

static void check_fails(const rt_logger *lg)
{
    int x = 3;
    RT_CHECK(lg, x == 4);
}

Test(fatal, check_macro_names_expression)
{
    int st;
    char *out = run_child(check_fails, &st);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    cr_assert(strstr(out, "check failed: x == 4"), "%s", out);
}

static void crash(const rt_logger *lg)
{
    rt_install_crash_handlers(lg);
    raise(SIGSEGV);
}

Test(fatal, crash_handler_reports_signal_and_reraises)
{
    int st;
    char *out = run_child(crash, &st);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "status %d", st);
    cr_assert(strstr(out, "crashed with signal 11 (SIGSEGV)"), "%s", out);
    cr_assert(strstr(out, "backtrace:"), "%s", out);
}
