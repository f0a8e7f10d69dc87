/* test_timing.c: the virtual GPU's timing model: stream FIFO order, events and ElapsedTime,
 * overlap while SMs last, serialisation when they do not, memory-bound slowdown, stream and
 * launch priorities, the time scale, copies, implicit and explicit stream waits. */
#include <pthread.h>

#include "fctest.h"

TestSuite(timing, .init = fc_setup, .fini = fc_teardown);
/* Tests that set the device's knobs themselves. */
TestSuite(timing_env, .fini = fc_teardown);

/* Three kernels on one stream run one after another although SMs are free. */
Test(timing, stream_fifo_order)
{
    CUstream s = stream_prio(0);
    CUevent g, e1, e2, e3;
    for (int tries = 0;; tries++) {
        g = gate();
        CU_OK(cuStreamWaitEvent(s, g, 0));
        launch("c30", s);
        e1 = record(s);
        launch("c20", s);
        e2 = record(s);
        launch("c10", s);
        e3 = record(s);
        if (gate_settle(g, tries))
            break;
    }
    MS_EQ(elapsed(g, e1), 30);
    MS_EQ(elapsed(e1, e2), 20);
    MS_EQ(elapsed(e2, e3), 10);
    fakecuda_stats st;
    cr_assert_eq(fakecuda_device_stats(&st), 0);
    cr_assert_eq(st.max_running_kernels, 1, "kernels of one stream overlapped (%llu at once)",
                 (unsigned long long)st.max_running_kernels);
    cr_assert_eq(st.kernels_done, st.kernels_started);
}

/* Events: an unrecorded event is complete; a pending one is not ready, then complete;
 * ElapsedTime refuses unrecorded and timing-less events and reports NOT_READY. */
Test(timing, events)
{
    CUstream s = stream_prio(0);
    CUevent a = event(), b = event(), nt;
    float ms;
    CU_OK(cuEventCreate(&nt, CU_EVENT_DISABLE_TIMING));
    CU_OK(cuEventQuery(a));
    CU_OK(cuEventSynchronize(a));
    CU_IS(cuEventElapsedTime(&ms, a, b), CUDA_ERROR_INVALID_HANDLE);
    CU_OK(cuEventRecord(a, s));
    launch("c30", s);
    CU_OK(cuEventRecord(b, s));
    CU_OK(cuEventRecord(nt, s));
    CU_IS(cuEventQuery(b), CUDA_ERROR_NOT_READY);
    CU_IS(cuEventElapsedTime(&ms, a, b), CUDA_ERROR_NOT_READY);
    double t0 = wall_ms();
    CU_OK(cuEventSynchronize(b));
    double waited = wall_ms() - t0;
    CU_OK(cuEventQuery(b));
    CU_IS(cuEventElapsedTime(&ms, a, nt), CUDA_ERROR_INVALID_HANDLE);
    CU_OK(cuEventElapsedTime(&ms, a, b));
    cr_assert(ms >= 30 && ms < 30 + 200, "a..b = %.3f ms for a 30 ms kernel", (double)ms);
    cr_assert(waited <= ms + 1, "EventSynchronize returned after %.1f ms, before the model's %.1f",
              waited, (double)ms);
    CU_OK(cuEventElapsedTime(&ms, b, a));
    cr_assert(ms <= -30, "b..a = %.3f ms: not negative", (double)ms);
    /* Recording again moves the event to the new point. */
    launch("c10", s);
    CU_OK(cuEventRecord(b, s));
    CU_OK(cuStreamSynchronize(s));
    CU_OK(cuEventElapsedTime(&ms, a, b));
    cr_assert(ms >= 40, "re-recorded event: %.3f ms", (double)ms);
    CU_OK(cuEventDestroy_v2(a));
    CU_IS(cuEventQuery(a), CUDA_ERROR_INVALID_HANDLE);
}

/* Work queued on an idle device starts when it is queued, not at the last instant the
 * model was evaluated (the state is evaluated lazily). */
Test(timing, idle_device_starts_now)
{
    CUstream s = stream_prio(0), s2 = stream_prio(0);
    CUevent a = record(s);
    CU_OK(cuEventSynchronize(a));
    usleep(50000);
    CUevent b = record(s2);
    launch("c10", s);
    CUevent c = record(s);
    CU_OK(cuEventSynchronize(c));
    cr_assert_geq(elapsed(a, b), 50 - 0.05, "a record 50 ms later completed %.3f ms later",
                  (double)elapsed(a, b));
    cr_assert_geq(elapsed(a, c), 60 - 0.05, "a 10 ms kernel queued 50 ms later ended at %.3f ms",
                  (double)elapsed(a, c));
}

/* Two kernels that fit side by side (60 + 60 of 132 SMs) overlap: both end 50 ms after
 * the gate, and the wall time is about one kernel's, not two. */
Test(timing, overlap_while_sms_last)
{
    CUstream s1 = stream_prio(0), s2 = stream_prio(0);
    CUevent g, a, b;
    double t0, wall;
    for (int tries = 0;; tries++) {
        t0 = wall_ms();
        g = gate();
        launch("wide60", s1);
        launch("wide60", s2);
        a = record(s1);
        b = record(s2);
        int ok = gate_settle(g, tries);
        wall = wall_ms() - t0;
        if (ok)
            break;
    }
    MS_EQ(elapsed(g, a), 50);
    MS_EQ(elapsed(g, b), 50);
    cr_assert(wall >= 60 + 50 - 1, "wall %.1f ms: shorter than gate + one kernel", wall);
    cr_assert(wall < 60 + 50 + 45, "wall %.1f ms: the kernels did not overlap (sum: 160)", wall);
    fakecuda_stats st;
    cr_assert_eq(fakecuda_device_stats(&st), 0);
    cr_assert_eq(st.max_running_kernels, 2);
    cr_assert_eq(st.max_busy_sms, 132);
}

/* Two kernels of 100 SMs each cannot share 132: the second starts when the first ends. */
Test(timing, serialise_when_sms_do_not_suffice)
{
    CUstream s1 = stream_prio(0), s2 = stream_prio(0);
    CUevent g, a, b;
    double t0, wall;
    for (int tries = 0;; tries++) {
        t0 = wall_ms();
        g = gate();
        launch("wide100", s1);
        launch("wide100", s2);
        a = record(s1);
        b = record(s2);
        int ok = gate_settle(g, tries);
        wall = wall_ms() - t0;
        if (ok)
            break;
    }
    MS_EQ(elapsed(g, a), 50);
    MS_EQ(elapsed(g, b), 100);
    cr_assert(wall >= 60 + 100 - 1, "wall %.1f ms: the kernels overlapped", wall);
    fakecuda_stats st;
    cr_assert_eq(fakecuda_device_stats(&st), 0);
    cr_assert_eq(st.max_running_kernels, 1);
    cr_assert_eq(st.max_busy_sms, 132, "only the gate fills the device");
}

/* Two memory-bound kernels share the bandwidth: each runs at half speed while both run.
 * A compute-bound or unknown neighbour does not slow a memory-bound kernel. */
Test(timing, memory_bound_slowdown)
{
    CUstream s1 = stream_prio(0), s2 = stream_prio(0), s3 = stream_prio(0);
    CUevent g, a, b;
    for (int tries = 0;; tries++) {
        g = gate();
        launch("mem40", s1);
        launch("mem40", s2);
        a = record(s1);
        b = record(s2);
        if (gate_settle(g, tries))
            break;
    }
    MS_EQ(elapsed(g, a), 80);
    MS_EQ(elapsed(g, b), 80);

    /* Staggered: b starts 20 ms late, so a runs alone for 20 ms (half its work), both at
     * half speed for 40 ms (a completes), then b alone for its last 20 ms. */
    for (int tries = 0;; tries++) {
        g = gate();
        launch("mem40", s1);
        launch("c20", s2);
        launch("mem40", s2);
        a = record(s1);
        b = record(s2);
        if (gate_settle(g, tries))
            break;
    }
    MS_EQ(elapsed(g, a), 60);
    MS_EQ(elapsed(g, b), 80);

    CUevent c;
    for (int tries = 0;; tries++) {
        g = gate();
        launch("mem40", s1);
        launch("c30", s2);
        launch("any40", s3);
        a = record(s1);
        b = record(s2);
        c = record(s3);
        if (gate_settle(g, tries))
            break;
    }
    MS_EQ(elapsed(g, a), 40);
    MS_EQ(elapsed(g, b), 30);
    MS_EQ(elapsed(g, c), 40);
    fakecuda_stats st;
    cr_assert_eq(fakecuda_device_stats(&st), 0);
    cr_assert_eq(st.max_memory_kernels, 2);
}

/* When SMs free up, the ready kernel of the higher-priority stream (lower number) gets them
 * first even if it was queued later; at equal priority, the earlier one. */
Test(timing, priority)
{
    int least, greatest;
    CU_OK(cuCtxGetStreamPriorityRange(&least, &greatest));
    cr_assert_lt(greatest, least);
    CUstream lo = stream_prio(least), hi = stream_prio(greatest), lo2 = stream_prio(least);
    int p;
    CU_OK(cuStreamGetPriority(hi, &p));
    cr_assert_eq(p, greatest);
    CU_OK(cuStreamGetPriority(stream_prio(greatest - 10), &p));
    cr_assert_eq(p, greatest, "priority not clamped to the range");
    CUevent g, a, b;
    for (int tries = 0;; tries++) {
        g = gate();
        launch("full30", lo);
        launch("full30", hi);
        a = record(lo);
        b = record(hi);
        if (gate_settle(g, tries))
            break;
    }
    MS_EQ(elapsed(g, b), 30);
    MS_EQ(elapsed(g, a), 60);
    for (int tries = 0;; tries++) {
        g = gate();
        launch("full30", lo);
        launch("full30", lo2);
        a = record(lo);
        b = record(lo2);
        if (gate_settle(g, tries))
            break;
    }
    MS_EQ(elapsed(g, a), 30);
    MS_EQ(elapsed(g, b), 60);
}

/* cuLaunchKernelEx's CU_LAUNCH_ATTRIBUTE_PRIORITY overrides the stream's for that launch. */
Test(timing, launch_attribute_priority)
{
    int least, greatest;
    CU_OK(cuCtxGetStreamPriorityRange(&least, &greatest));
    CUstream s1 = stream_prio(least), s2 = stream_prio(least);
    CUlaunchAttribute attr = {.id = CU_LAUNCH_ATTRIBUTE_PRIORITY};
    attr.value.priority = greatest;
    CUlaunchConfig cfg = {.gridDimX = 8,
                          .gridDimY = 1,
                          .gridDimZ = 1,
                          .blockDimX = 256,
                          .blockDimY = 1,
                          .blockDimZ = 1,
                          .hStream = s2,
                          .attrs = &attr,
                          .numAttrs = 1};
    CUevent g, a, b;
    for (int tries = 0;; tries++) {
        g = gate();
        launch("full30", s1);
        CU_OK(cuLaunchKernelEx(&cfg, fn("full30"), NULL, NULL));
        a = record(s1);
        b = record(s2);
        if (gate_settle(g, tries))
            break;
    }
    MS_EQ(elapsed(g, b), 30);
    MS_EQ(elapsed(g, a), 60);
}

/* Work queued behind an event of another stream waits for it (cuStreamWaitEvent). */
Test(timing, stream_wait_event)
{
    CUstream s1 = stream_prio(0), s2 = stream_prio(0);
    CUevent g, a, b;
    for (int tries = 0;; tries++) {
        g = gate();
        CU_OK(cuStreamWaitEvent(s1, g, 0));
        launch("c30", s1);
        a = record(s1);
        CU_OK(cuStreamWaitEvent(s2, a, 0));
        launch("c10", s2);
        b = record(s2);
        if (gate_settle(g, tries))
            break;
    }
    MS_EQ(elapsed(g, a), 30);
    MS_EQ(elapsed(g, b), 40);
}

/* The legacy default stream waits for earlier work of blocking streams, and they wait for
 * it; a non-blocking stream does neither. */
Test(timing, legacy_stream_sync)
{
    CUstream blocking, nonblocking = stream_prio(0);
    CU_OK(cuStreamCreate(&blocking, 0));
    CUevent g, a, b, c;
    for (int tries = 0;; tries++) {
        g = gate();
        CU_OK(cuStreamWaitEvent(blocking, g, 0));
        CU_OK(cuStreamWaitEvent(nonblocking, g, 0));
        launch("c30", blocking);
        launch("c10", nonblocking);
        CU_OK(cuLaunchKernel(fn("c20"), 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL));
        a = record(CU_STREAM_LEGACY);
        launch("c10", blocking);
        b = record(blocking);
        c = record(nonblocking);
        if (gate_settle(g, tries))
            break;
    }
    MS_EQ(elapsed(g, a), 50); /* after the blocking stream's 30 ms */
    MS_EQ(elapsed(g, b), 60); /* after the legacy stream's work */
    MS_EQ(elapsed(g, c), 10); /* unaffected */
}

/* The per-thread default stream (NULL to a _ptsz entry point) is a stream of its own, and
 * the calls reach the _ptsz entry points. */
Test(timing, per_thread_stream)
{
    CUevent g, a, b;
    int tries;
    for (tries = 0;; tries++) {
        g = gate();
        CU_OK(cuLaunchKernel_ptsz(fn("c30"), 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL));
        a = event();
        CU_OK(cuEventRecord_ptsz(a, NULL));
        CU_OK(
            cuLaunchKernel_ptsz(fn("c10"), 1, 1, 1, 32, 1, 1, 0, CU_STREAM_PER_THREAD, NULL, NULL));
        b = event();
        CU_OK(cuEventRecord(b, CU_STREAM_PER_THREAD));
        if (gate_settle(g, tries))
            break;
    }
    MS_EQ(elapsed(g, a), 30);
    MS_EQ(elapsed(g, b), 40);
    CU_OK(cuStreamSynchronize_ptsz(NULL));
    CU_OK(cuStreamQuery_ptsz(NULL));
    cr_assert_eq(fakecuda_calls("cuLaunchKernel_ptsz"), 2ULL * (tries + 1));
    cr_assert_eq(fakecuda_calls("cuLaunchKernel"), tries + 1ULL, "only the gates");
    cr_assert_eq(fakecuda_calls("cuEventRecord_ptsz"), tries + 1ULL);
}

typedef struct thread_arg {
    CUfunction f;
    CUevent done;
    CUresult rc;
} thread_arg;

/* On the calling thread's per-thread default stream: launch f, record `done` (if any), and
 * synchronise when there is no event. */
static void *on_own_stream(void *p)
{
    thread_arg *a = p;
    a->rc = cuCtxSetCurrent(fc_ctx);
    if (a->rc == CUDA_SUCCESS)
        a->rc = cuLaunchKernel_ptsz(a->f, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL);
    if (a->rc == CUDA_SUCCESS)
        a->rc = a->done ? cuEventRecord_ptsz(a->done, NULL) : cuStreamSynchronize_ptsz(NULL);
    return NULL;
}

/* Each thread has its own per-thread stream: two threads' kernels overlap. */
Test(timing, per_thread_streams_of_two_threads)
{
    thread_arg a = {fn("wide60"), event(), 0}, b = {fn("wide60"), event(), 0};
    CUevent g;
    for (int tries = 0;; tries++) {
        g = gate();
        pthread_t ta, tb;
        cr_assert_eq(pthread_create(&ta, NULL, on_own_stream, &a), 0);
        cr_assert_eq(pthread_create(&tb, NULL, on_own_stream, &b), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        CU_OK(a.rc);
        CU_OK(b.rc);
        if (gate_settle(g, tries))
            break;
    }
    MS_EQ(elapsed(g, a.done), 50);
    MS_EQ(elapsed(g, b.done), 50);
}

/* A thread's per-thread stream goes when the thread exits: 600 threads in turn, each with
 * its own, never run out of the device's 512 stream slots. */
Test(timing, thread_exit_drops_per_thread_stream)
{
    CUmodule m;
    thread_arg a = {NULL, NULL, 0};
    CU_OK(cuModuleLoadData(&m, "tiny 1 1 compute\n"));
    CU_OK(cuModuleGetFunction(&a.f, m, "tiny"));
    for (int i = 0; i < 600; i++) {
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, on_own_stream, &a), 0);
        pthread_join(t, NULL);
        cr_assert_eq(a.rc, CUDA_SUCCESS, "thread %d: %d (%s)", i, a.rc, fakecuda_last_error());
    }
    fakecuda_stats st;
    cr_assert_eq(fakecuda_device_stats(&st), 0);
    cr_assert_eq(st.kernels_done, 600);
}

/* Copies take bytes / FAKECUDA_COPY_MBPS on their stream (1000 MB/s: 4 MB in 4 ms). */
Test(timing_env, copy_time)
{
    fc_setup_env("FAKECUDA_COPY_MBPS", "1000", NULL);
    CUstream s = stream_prio(0);
    size_t n = 4000000;
    CUdeviceptr d;
    CU_OK(cuMemAlloc_v2(&d, n));
    char *h = malloc(n);
    cr_assert_not_null(h);
    memset(h, 7, n);
    CUevent g, a, b;
    for (int tries = 0;; tries++) {
        g = gate();
        CU_OK(cuStreamWaitEvent(s, g, 0));
        CU_OK(cuMemcpyHtoDAsync_v2(d, h, n, s));
        a = record(s);
        CU_OK(cuMemcpyDtoHAsync_v2(h, d, n / 2, s));
        b = record(s);
        if (gate_settle(g, tries))
            break;
    }
    MS_EQ(elapsed(g, a), 4);
    MS_EQ(elapsed(a, b), 2);
    double t0 = wall_ms();
    CU_OK(cuMemcpyHtoD_v2(d, h, n));
    cr_assert_geq(wall_ms() - t0, 4 - 0.01, "a synchronous copy returned before it completed");
    free(h);
    CU_OK(cuMemFree_v2(d));
}

/* FAKECUDA_TIME_PCT scales every duration: at 50 the gate holds for 30 ms. */
Test(timing_env, time_scale)
{
    fc_setup_env("FAKECUDA_TIME_PCT", "50", NULL);
    CUstream s = stream_prio(0);
    CUevent g, a;
    for (int tries = 0;; tries++) {
        g = gate();
        CU_OK(cuStreamWaitEvent(s, g, 0));
        launch("c20", s);
        launch("c30", s);
        a = record(s);
        if (gate_settle(g, tries))
            break;
    }
    MS_EQ(elapsed(g, a), 25);
}

/* The queue has room for 2048 items; beyond that a launch waits for room, as a real one
 * blocks on a full push buffer, and nothing is lost. 3000 launches behind the 60 ms gate: the
 * queue fills while the gate holds every SM, so the launches past its room can only return
 * once the gate has ended (with no limit they would all return within a millisecond or so,
 * the gate still held). Retried when the machine could not queue 2000 launches in time. */
Test(timing, full_queue_blocks)
{
    CUstream s = stream_prio(0);
    CUmodule m;
    CUfunction f;
    CU_OK(cuModuleLoadData(&m, "tiny 1 1 compute\n"));
    CU_OK(cuModuleGetFunction(&f, m, "tiny"));
    for (int tries = 0;; tries++) {
        fakecuda_stats before, after;
        cr_assert_eq(fakecuda_device_stats(&before), 0);
        CUevent g = gate();
        CU_OK(cuStreamWaitEvent(s, g, 0));
        int held_at_2000 = 0, held_at_2100 = 0;
        for (int i = 0; i < 3000; i++) {
            CU_OK(cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, s, NULL, NULL));
            if (i == 2000)
                held_at_2000 = gate_held(g);
            else if (i == 2100)
                held_at_2100 = gate_held(g);
        }
        CU_OK(cuCtxSynchronize());
        cr_assert_eq(fakecuda_device_stats(&after), 0);
        cr_assert_eq(after.kernels_done - before.kernels_done, 3001, "launches lost");
        cr_assert_eq(after.queued_items, 0);
        if (!held_at_2000) {
            cr_assert(tries < 4,
                      "2000 launches could not be queued within a 60 ms gate in 5 tries");
            continue;
        }
        cr_assert(!held_at_2100, "launch 2100 returned with the gate still holding a full queue");
        break;
    }
    CU_OK(cuModuleUnload(m));
}
