/* test_reclaim.c: processes sharing the virtual GPU: a child killed while its kernel holds
 * every SM (found dead, zombie or gone, and its state dropped), a child dying while holding
 * the device lock (robust lock recovered), a child exiting with work queued, and forked
 * children attaching as processes of their own. */
#include <signal.h>
#include <sys/wait.h>

#include "fctest.h"

TestSuite(reclaim, .init = fc_setup, .fini = fc_teardown);

/* LeakSanitizer's hook (ASan builds): no leak check in the forked children. They are forks
 * of a multi-threaded test process, so LSan cannot scan the other threads' stacks and would
 * report what only they point to. */
static int in_child;
__attribute__((visibility("default"))) int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void) { return in_child; }

/* Fork a child that queues a 10-second kernel holding every SM (after cuInit of its own),
 * reports on the pipe, then does `then` (0: sleep until killed, 1: exit normally,
 * 2: die holding the device lock). */
static pid_t child_holding_device(int then)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        in_child = 1;
        close(fds[0]);
        CUcontext c;
        CUmodule m;
        CUfunction f;
        CUstream s;
        int ok = cuInit(0) == CUDA_SUCCESS && cuCtxCreate_v2(&c, 0, 0) == CUDA_SUCCESS &&
                 cuModuleLoadData(&m, "hog 10000000 132 compute\n") == CUDA_SUCCESS &&
                 cuModuleGetFunction(&f, m, "hog") == CUDA_SUCCESS &&
                 cuStreamCreate(&s, 0) == CUDA_SUCCESS &&
                 cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, s, NULL, NULL) == CUDA_SUCCESS;
        char r = ok ? 'y' : 'n';
        if (write(fds[1], &r, 1) != 1 || !ok)
            _exit(2);
        if (then == 1)
            exit(0);
        if (then == 2)
            fakecuda_die_holding_lock();
        for (;;)
            pause();
    }
    close(fds[1]);
    char r = 0;
    cr_assert_eq(read(fds[0], &r, 1), 1, "child died before launching");
    close(fds[0]);
    cr_assert_eq(r, 'y', "child could not launch");
    return pid;
}

/* Launch a 30 ms full-device kernel, synchronise; returns the wall time it took. */
static double run_full30(void)
{
    CUstream s = stream_prio(0);
    double t0 = wall_ms();
    launch("full30", s);
    CU_OK(cuStreamSynchronize(s));
    return wall_ms() - t0;
}

Test(reclaim, killed_process_releases_sms)
{
    pid_t pid = child_holding_device(0);
    fakecuda_stats st;
    cr_assert_eq(fakecuda_device_stats(&st), 0);
    cr_assert_eq(st.procs, 2);
    cr_assert_eq(st.busy_sms, 132, "the child's kernel holds the device");
    CUstream s = stream_prio(0);
    launch("full30", s);
    CU_IS(cuStreamQuery(s), CUDA_ERROR_NOT_READY);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    /* Not reaped yet: a zombie counts as dead. */
    double t0 = wall_ms();
    CU_OK(cuStreamSynchronize(s));
    double waited = wall_ms() - t0;
    cr_assert_lt(waited, 3000, "waited %.0f ms: the dead child's kernel kept the SMs", waited);
    cr_assert_geq(waited, 30 - 0.01);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert_eq(fakecuda_device_stats(&st), 0);
    cr_assert_eq(st.procs_reclaimed, 1);
    cr_assert_geq(st.items_reclaimed, 1);
    cr_assert_eq(st.procs, 1);
    cr_assert_eq(st.busy_sms, 0);
}

Test(reclaim, lock_holder_death_recovered)
{
    pid_t pid = child_holding_device(2);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 3, "child status %#x", status);
    double waited = run_full30(); /* takes the lock the child died holding */
    cr_assert_lt(waited, 3000, "waited %.0f ms", waited);
    fakecuda_stats st;
    cr_assert_eq(fakecuda_device_stats(&st), 0);
    cr_assert_eq(st.lock_recoveries, 1);
    cr_assert_eq(st.procs_reclaimed, 1);
    cr_assert_eq(st.procs, 1);
}

/* A process that exits normally drops its queued work at once (it is not "reclaimed"). */
Test(reclaim, exiting_process_drops_its_work)
{
    pid_t pid = child_holding_device(1);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    fakecuda_stats st;
    cr_assert_eq(fakecuda_device_stats(&st), 0);
    cr_assert_eq(st.procs, 1);
    cr_assert_eq(st.busy_sms, 0);
    double waited = run_full30();
    cr_assert_lt(waited, 3000, "waited %.0f ms", waited);
    cr_assert_eq(fakecuda_device_stats(&st), 0);
    cr_assert_eq(st.procs_reclaimed, 0);
}

/* A kernel of another process contends for the same SMs: the parent's full-device kernel
 * waits for the child's, and the device never holds more SMs than it has. */
Test(reclaim, processes_contend_for_sms)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        in_child = 1;
        close(fds[0]);
        CUcontext c;
        CUmodule m;
        CUfunction f;
        CUstream s;
        int ok = cuInit(0) == CUDA_SUCCESS && cuCtxCreate_v2(&c, 0, 0) == CUDA_SUCCESS &&
                 cuModuleLoadData(&m, "k 200000 100 compute\n") == CUDA_SUCCESS &&
                 cuModuleGetFunction(&f, m, "k") == CUDA_SUCCESS &&
                 cuStreamCreate(&s, 0) == CUDA_SUCCESS &&
                 cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, s, NULL, NULL) == CUDA_SUCCESS;
        char r = ok ? 'y' : 'n';
        if (write(fds[1], &r, 1) != 1 || !ok)
            _exit(2);
        _exit(cuStreamSynchronize(s) == CUDA_SUCCESS ? 0 : 4);
    }
    close(fds[1]);
    char r = 0;
    cr_assert_eq(read(fds[0], &r, 1), 1);
    cr_assert_eq(r, 'y');
    CUstream s = stream_prio(0);
    CUevent a = record(s);
    launch("wide100", s);
    CUevent b = record(s);
    CU_OK(cuEventSynchronize(b));
    float ms = elapsed(a, b);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    /* Queued while the child's 200 ms kernel ran: it waited for it, then ran 50 ms. */
    cr_assert(ms > 50 + 1, "the parent's kernel did not wait for the child's: %.3f ms", (double)ms);
    fakecuda_stats st;
    cr_assert_eq(fakecuda_device_stats(&st), 0);
    cr_assert_eq(st.max_running_kernels, 1);
    cr_assert_leq(st.max_busy_sms, 132);
    cr_assert_eq(st.kernels_done, 2);
}
