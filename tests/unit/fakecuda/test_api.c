/* test_api.c: the virtual GPU's driver API outside timing: cuGetProcAddress lookups by
 * version and per-thread flag, bad input (manifests, names, handles, launch shapes, calls
 * before cuInit or without a context, malformed knobs), device queries, occupancy,
 * contexts, memory and copies, error strings, per-entry-point call counters. */
#include <dlfcn.h>

#include "fctest.h"

TestSuite(api, .init = fc_setup, .fini = fc_teardown);
TestSuite(api_env, .fini = fc_teardown);

/* cuGetProcAddress_v2 hands back the fake's own entry point for (name, version, flags). */
static void *proc(const char *name, int version, cuuint64_t flags,
                  CUdriverProcAddressQueryResult *st)
{
    void *p = (void *)1;
    CUresult rc = cuGetProcAddress_v2(name, &p, version, flags, st);
    cr_assert((rc == CUDA_SUCCESS) == (p != NULL), "%s@%d: rc %d with pointer %p", name, version,
              rc, p);
    return p;
}

static void *sym(const char *name)
{
    void *p = dlsym(RTLD_DEFAULT, name);
    cr_assert_not_null(p, "dlsym %s", name);
    return p;
}

#define PROC_IS(name, version, flags, symbol)                                                      \
    do {                                                                                           \
        CUdriverProcAddressQueryResult st_ = 99;                                                   \
        cr_assert_eq(proc(name, version, flags, &st_), sym(symbol), "%s@%d flags %d: not %s",      \
                     name, version, (int)(flags), symbol);                                         \
        cr_assert_eq(st_, CU_GET_PROC_ADDRESS_SUCCESS);                                            \
    } while (0)

Test(api, get_proc_address_versions)
{
    const cuuint64_t dflt = CU_GET_PROC_ADDRESS_DEFAULT;
    PROC_IS("cuCtxCreate", 3020, dflt, "cuCtxCreate_v2");
    PROC_IS("cuCtxCreate", 11040, dflt, "cuCtxCreate_v3");
    PROC_IS("cuCtxCreate", 12000, dflt, "cuCtxCreate_v3");
    PROC_IS("cuCtxCreate", 12050, dflt, "cuCtxCreate_v4");
    PROC_IS("cuCtxCreate", 13000, dflt, "cuCtxCreate_v4");
    PROC_IS("cuCtxCreate", 2000, dflt, "cuCtxCreate");
    /* Numeric, not textual, order: 11040 < 12050 though "11040" > "1" */
    PROC_IS("cuCtxCreate", 9000, dflt, "cuCtxCreate_v2");
    PROC_IS("cuMemAlloc", 12000, dflt, "cuMemAlloc_v2");
    PROC_IS("cuStreamDestroy", 12000, dflt, "cuStreamDestroy_v2");
    PROC_IS("cuStreamDestroy", 3000, dflt, "cuStreamDestroy");
    PROC_IS("cuEventDestroy", 12000, dflt, "cuEventDestroy_v2");
    PROC_IS("cuEventElapsedTime", 12000, dflt, "cuEventElapsedTime");
    PROC_IS("cuEventElapsedTime", 12080, dflt, "cuEventElapsedTime_v2");
    PROC_IS("cuDevicePrimaryCtxRelease", 11000, dflt, "cuDevicePrimaryCtxRelease_v2");
    PROC_IS("cuDevicePrimaryCtxRelease", 10020, dflt, "cuDevicePrimaryCtxRelease");
    PROC_IS("cuCtxSynchronize", 12080, dflt, "cuCtxSynchronize");
    PROC_IS("cuCtxSynchronize", 13000, dflt, "cuCtxSynchronize_v2");
    PROC_IS("cuGetProcAddress", 11030, dflt, "cuGetProcAddress");
    PROC_IS("cuGetProcAddress", 12000, dflt, "cuGetProcAddress_v2");
    PROC_IS("cuFuncGetName", 12030, dflt, "cuFuncGetName");
}

Test(api, get_proc_address_per_thread_flag)
{
    const cuuint64_t pt = CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
    const cuuint64_t legacy = CU_GET_PROC_ADDRESS_LEGACY_STREAM;
    PROC_IS("cuLaunchKernel", 12000, pt, "cuLaunchKernel_ptsz");
    PROC_IS("cuLaunchKernel", 12000, legacy, "cuLaunchKernel");
    PROC_IS("cuLaunchKernel", 12000, CU_GET_PROC_ADDRESS_DEFAULT, "cuLaunchKernel");
    PROC_IS("cuLaunchKernel", 6050, pt, "cuLaunchKernel"); /* no _ptsz before 7.0 */
    PROC_IS("cuLaunchKernelEx", 12000, pt, "cuLaunchKernelEx_ptsz");
    PROC_IS("cuMemcpyHtoD", 12000, pt, "cuMemcpyHtoD_v2_ptds");
    PROC_IS("cuMemcpyHtoD", 12000, legacy, "cuMemcpyHtoD_v2");
    PROC_IS("cuMemcpyDtoHAsync", 13000, pt, "cuMemcpyDtoHAsync_v2_ptsz");
    PROC_IS("cuStreamSynchronize", 12000, pt, "cuStreamSynchronize_ptsz");
    PROC_IS("cuStreamQuery", 12000, pt, "cuStreamQuery_ptsz");
    PROC_IS("cuEventRecord", 12000, pt, "cuEventRecord_ptsz");
    PROC_IS("cuStreamIsCapturing", 12000, pt, "cuStreamIsCapturing_ptsz");
    PROC_IS("cuLaunchCooperativeKernel", 12000, pt, "cuLaunchCooperativeKernel_ptsz");
    PROC_IS("cuMemcpyDtoDAsync", 12000, pt, "cuMemcpyDtoDAsync_v2_ptsz");
    PROC_IS("cuMemcpyDtoDAsync", 12000, legacy, "cuMemcpyDtoDAsync_v2");
    PROC_IS("cuMemcpyAsync", 12000, pt, "cuMemcpyAsync_ptsz");
    PROC_IS("cuMemsetD32Async", 12000, pt, "cuMemsetD32Async_ptsz");
    /* Entry points without a per-thread variant ignore the flag. */
    PROC_IS("cuStreamCreate", 12000, pt, "cuStreamCreate");
    PROC_IS("cuCtxCreate", 12000, pt, "cuCtxCreate_v3");
}

/* A pointer from cuGetProcAddress is the real entry point: calls through it are counted
 * under that symbol and behave as it does. */
Test(api, get_proc_address_calls)
{
    void *p;
    CU_OK(cuGetProcAddress("cuLaunchKernel", &p, 12000,
                           CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM));
    CUresult (*lk)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                   CUstream, void **, void **) = p;
    unsigned long long before = fakecuda_calls("cuLaunchKernel_ptsz");
    CU_OK(lk(fn("c10"), 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL));
    cr_assert_eq(fakecuda_calls("cuLaunchKernel_ptsz"), before + 1);
    cr_assert_eq(fakecuda_calls("cuLaunchKernel"), 0);
    cr_assert_eq(fakecuda_calls("cuNoSuchEntryPoint"), 0);
    CU_OK(cuStreamSynchronize_ptsz(NULL));
}

Test(api, get_proc_address_bad_input)
{
    CUdriverProcAddressQueryResult st = 99;
    void *p;
    cr_assert_null(proc("cuNoSuchEntryPoint", 13000, 0, &st));
    cr_assert_eq(st, CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);
    cr_assert_null(proc("cuFuncGetName", 12020, 0, &st));
    cr_assert_eq(st, CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT);
    CU_IS(cuGetProcAddress_v2("cuFuncGetName", &p, 12020, 0, NULL), CUDA_ERROR_NOT_FOUND);
    CU_IS(cuGetProcAddress_v2("cuInit", &p, 13000, 4, &st), CUDA_ERROR_INVALID_VALUE);
    CU_IS(cuGetProcAddress_v2(NULL, &p, 13000, 0, &st), CUDA_ERROR_INVALID_VALUE);
    CU_IS(cuGetProcAddress_v2("cuInit", NULL, 13000, 0, &st), CUDA_ERROR_INVALID_VALUE);
}

/* Malformed manifests are refused with CUDA_ERROR_INVALID_IMAGE and a message naming the
 * line and what is accepted. */
Test(api, malformed_manifests)
{
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"ok 10 5 compute\nbroken line\n", "line 2: 2 fields"},
        {"k 10 5 fast\n", "profile 'fast'"},
        {"k -1 5 compute\n", "duration_us '-1'"},
        {"k 1.5 5 compute\n", "duration_us '1.5'"},
        {"k 10 0 compute\n", "sm_need '0'"},
        {"k 10 70000 memory\n", "sm_need '70000'"},
        {"k 10 5 memory extra\n", "5 fields"},
        {"k 10 5 memory\nk 20 5 compute\n", "defined twice"},
        {"# only a comment\n\n", "no kernel lines"},
        {"k 99999999999999999999 5 compute\n", "duration_us"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CUmodule m = NULL;
        CU_IS(cuModuleLoadData(&m, bad[i].text), CUDA_ERROR_INVALID_IMAGE);
        cr_assert(strstr(fakecuda_last_error(), bad[i].why), "'%s': message '%s' lacks '%s'",
                  bad[i].text, fakecuda_last_error(), bad[i].why);
    }
    CUmodule m;
    CU_OK(cuModuleLoadData(&m, "  # kernels\n\n\tk\t10  5 unknown \r\nlast 1 1 memory"));
    CUfunction f;
    CU_OK(cuModuleGetFunction(&f, m, "last"));
    CU_IS(cuModuleLoad(&m, "/nonexistent/fakecuda.manifest"), CUDA_ERROR_FILE_NOT_FOUND);
}

Test(api, module_load_from_file)
{
    char path[] = "/tmp/fakecuda-manifest-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char text[] = "fromfile 100 4 memory\n";
    cr_assert_eq(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    CUmodule m;
    CUfunction f;
    const char *name;
    CU_OK(cuModuleLoad(&m, path));
    unlink(path);
    CU_OK(cuModuleGetFunction(&f, m, "fromfile"));
    CU_OK(cuFuncGetName(&name, f));
    cr_assert_str_eq(name, "fromfile");
    CU_IS(cuModuleGetFunction(&f, m, "c10"), CUDA_ERROR_NOT_FOUND);
    CU_OK(cuModuleUnload(m));
    CU_IS(cuFuncGetName(&name, f), CUDA_ERROR_INVALID_HANDLE);
    CU_IS(cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL), CUDA_ERROR_INVALID_HANDLE);
    CU_IS(cuModuleUnload(m), CUDA_ERROR_INVALID_HANDLE);
    CU_IS(cuModuleGetFunction(&f, m, "fromfile"), CUDA_ERROR_INVALID_HANDLE);
}

Test(api, bad_names_handles_and_shapes)
{
    CUfunction f;
    CU_IS(cuModuleGetFunction(&f, fc_mod, "no_such_kernel"), CUDA_ERROR_NOT_FOUND);
    cr_assert(strstr(fakecuda_last_error(), "no_such_kernel"));
    f = fn("c10");
    CUstream bogus = (CUstream)(uintptr_t)0x1234;
    CU_IS(cuLaunchKernel(f, 1, 1, 1, 2048, 1, 1, 0, NULL, NULL, NULL), CUDA_ERROR_INVALID_VALUE);
    CU_IS(cuLaunchKernel(f, 0, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL), CUDA_ERROR_INVALID_VALUE);
    CU_IS(cuLaunchKernel(f, 1, 1, 1, 32, 1, 65, 0, NULL, NULL, NULL), CUDA_ERROR_INVALID_VALUE);
    CU_IS(cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 65536, NULL, NULL, NULL), CUDA_ERROR_INVALID_VALUE);
    void *params[1] = {NULL}, *extra[1] = {NULL};
    CU_IS(cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, NULL, params, extra), CUDA_ERROR_INVALID_VALUE);
    CU_IS(cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, bogus, NULL, NULL), CUDA_ERROR_INVALID_HANDLE);
    CU_IS(cuLaunchKernel((CUfunction)(uintptr_t)0x10, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL),
          CUDA_ERROR_INVALID_HANDLE);
    CU_IS(cuLaunchKernelEx(NULL, f, NULL, NULL), CUDA_ERROR_INVALID_VALUE);
    CU_IS(cuStreamSynchronize(bogus), CUDA_ERROR_INVALID_HANDLE);
    CU_IS(cuStreamQuery(bogus), CUDA_ERROR_INVALID_HANDLE);
    CU_IS(cuStreamDestroy_v2(NULL), CUDA_ERROR_INVALID_HANDLE);
    CUstream s;
    CU_IS(cuStreamCreate(&s, 0x80), CUDA_ERROR_INVALID_VALUE);
    CU_OK(cuStreamCreate(&s, 0));
    CU_OK(cuStreamDestroy_v2(s));
    CU_IS(cuStreamDestroy_v2(s), CUDA_ERROR_INVALID_HANDLE);
    CU_IS(cuStreamQuery(s), CUDA_ERROR_INVALID_HANDLE);
    CUevent e;
    CU_IS(cuEventCreate(&e, CU_EVENT_INTERPROCESS), CUDA_ERROR_INVALID_VALUE);
    CU_IS(cuEventRecord((CUevent)(uintptr_t)0x99, NULL), CUDA_ERROR_INVALID_HANDLE);
    int v;
    CU_IS(cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_MAX, 0), CUDA_ERROR_INVALID_VALUE);
    CU_IS(cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_WARP_SIZE, 1), CUDA_ERROR_INVALID_DEVICE);
    CUdevice d;
    CU_IS(cuDeviceGet(&d, 1), CUDA_ERROR_INVALID_DEVICE);
    CU_IS(cuInit(1), CUDA_ERROR_INVALID_VALUE);
}

/* A stream destroyed with work queued: the work still runs; the handle is gone at once. */
Test(api, destroy_stream_with_work)
{
    CUstream s;
    CU_OK(cuStreamCreate(&s, 0));
    launch("c20", s);
    CUevent e = record(s);
    CU_OK(cuStreamDestroy_v2(s));
    CU_IS(cuEventQuery(e), CUDA_ERROR_NOT_READY);
    CU_OK(cuEventSynchronize(e));
    fakecuda_stats st;
    cr_assert_eq(fakecuda_device_stats(&st), 0);
    cr_assert_eq(st.kernels_done, 1);
}

Test(api_env, before_init_and_without_context)
{
    CUdevice d;
    int v;
    CU_IS(cuDeviceGet(&d, 0), CUDA_ERROR_NOT_INITIALIZED);
    CU_IS(cuDeviceGetCount(&v), CUDA_ERROR_NOT_INITIALIZED);
    CU_OK(cuDriverGetVersion(&v)); /* allowed before cuInit */
    cr_assert_eq(v, CUDA_VERSION);
    void *p;
    CU_OK(cuGetProcAddress_v2("cuInit", &p, 12000, 0, NULL)); /* as cudart does */
    cr_assert_eq(p, sym("cuInit"));
    fc_setup();
    CU_OK(cuCtxSetCurrent(NULL));
    CUstream s;
    CU_IS(cuStreamCreate(&s, 0), CUDA_ERROR_INVALID_CONTEXT);
    CU_IS(cuCtxSynchronize(), CUDA_ERROR_INVALID_CONTEXT);
    CUcontext c = (CUcontext)(uintptr_t)1;
    CU_OK(cuCtxGetCurrent(&c));
    cr_assert_null(c);
    CU_OK(cuCtxSetCurrent(fc_ctx));
    CU_OK(cuStreamCreate(&s, 0));
}

Test(api_env, malformed_knob)
{
    setenv("FAKECUDA_SMS", "lots", 1);
    CU_IS(cuInit(0), CUDA_ERROR_INVALID_VALUE);
    cr_assert(strstr(fakecuda_last_error(), "FAKECUDA_SMS='lots'"), "message: %s",
              fakecuda_last_error());
    CU_IS(cuInit(0), CUDA_ERROR_INVALID_VALUE); /* a failed cuInit stays failed */
    CUdevice d;
    CU_IS(cuDeviceGet(&d, 0), CUDA_ERROR_NOT_INITIALIZED);
}

Test(api_env, device_queries)
{
    fc_setup_env("FAKECUDA_SMS", "48", "FAKECUDA_MEM", "64M", NULL);
    int v, n;
    CUdevice d;
    char name[64];
    CU_OK(cuDeviceGetCount(&n));
    cr_assert_eq(n, 1);
    CU_OK(cuDeviceGet(&d, 0));
    CU_OK(cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, d));
    cr_assert_eq(v, 48);
    CU_OK(cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, d));
    cr_assert_eq(v, 1024);
    CU_OK(cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, d));
    cr_assert_eq(v, 9);
    CU_OK(cuDeviceGetName(name, sizeof name, d));
    cr_assert(strstr(name, "48 SMs"), "name: %s", name);
    size_t total, freeb;
    CU_OK(cuDeviceTotalMem_v2(&total, d));
    cr_assert_eq(total, 64u << 20);
    /* An oversized kernel holds the whole (smaller) device. */
    fakecuda_stats st;
    CUstream s = stream_prio(0);
    launch("wide100", s);
    cr_assert_eq(fakecuda_device_stats(&st), 0);
    cr_assert_eq(st.busy_sms, 48);
    CU_OK(cuStreamSynchronize(s));
    CU_OK(cuMemGetInfo_v2(&freeb, &total));
    cr_assert_eq(freeb, total);
    CUdeviceptr p;
    CU_IS(cuMemAlloc_v2(&p, 65u << 20), CUDA_ERROR_OUT_OF_MEMORY);
    CU_OK(cuMemAlloc_v2(&p, 60u << 20));
    CU_IS(cuMemAlloc_v2(&p, 8u << 20), CUDA_ERROR_OUT_OF_MEMORY);
}

/* FAKECUDA_RECORD_DELAY_US: each record of this process first sleeps that long (a slow or
 * preempted driver call), then takes effect as usual; out-of-range values are refused. */
Test(api_env, record_delay)
{
    fc_setup_env("FAKECUDA_RECORD_DELAY_US", "20000", NULL);
    CUstream s = stream_prio(0);
    CUevent e = event();
    double t0 = wall_ms();
    CU_OK(cuEventRecord(e, s));
    double took = wall_ms() - t0;
    cr_assert_geq(took, 19.5, "the record took %.2f ms", took);
    CU_OK(cuStreamSynchronize(s));
    CU_OK(cuEventQuery(e));
}

Test(api_env, record_delay_range)
{
    setenv("FAKECUDA_RECORD_DELAY_US", "-1", 1);
    CU_IS(cuInit(0), CUDA_ERROR_INVALID_VALUE);
    cr_assert(strstr(fakecuda_last_error(), "FAKECUDA_RECORD_DELAY_US"), "message: %s",
              fakecuda_last_error());
}

/* Resident blocks per SM follow sm_90's limits on threads, blocks and shared memory. */
Test(api, occupancy)
{
    CUfunction f = fn("c10");
    int n;
    CU_OK(cuOccupancyMaxActiveBlocksPerMultiprocessor(&n, f, 256, 0));
    cr_assert_eq(n, 8);
    CU_OK(cuOccupancyMaxActiveBlocksPerMultiprocessor(&n, f, 1024, 0));
    cr_assert_eq(n, 2);
    CU_OK(cuOccupancyMaxActiveBlocksPerMultiprocessor(&n, f, 32, 0));
    cr_assert_eq(n, 32);
    CU_OK(cuOccupancyMaxActiveBlocksPerMultiprocessor(&n, f, 33, 0));
    cr_assert_eq(n, 32, "33 threads take 2 warps: 1024 / 64 = 32");
    CU_OK(cuOccupancyMaxActiveBlocksPerMultiprocessor(&n, f, 128, (size_t)100 * 1024));
    cr_assert_eq(n, 2);
    CU_IS(cuOccupancyMaxActiveBlocksPerMultiprocessor(&n, f, 0, 0), CUDA_ERROR_INVALID_VALUE);
    CU_IS(cuOccupancyMaxActiveBlocksPerMultiprocessor(&n, f, 2048, 0), CUDA_ERROR_INVALID_VALUE);
}

Test(api, contexts)
{
    CUcontext c2, cur, pri, pri2;
    CUdevice d = -1;
    CU_OK(cuCtxCreate_v4(&c2, NULL, 0, 0));
    CU_OK(cuCtxGetCurrent(&cur));
    cr_assert_eq(cur, c2, "a created context becomes current");
    CU_OK(cuCtxGetDevice(&d));
    cr_assert_eq(d, 0);
    CU_OK(cuCtxDestroy_v2(c2));
    CU_OK(cuCtxGetCurrent(&cur));
    cr_assert_null(cur);
    CU_IS(cuCtxDestroy_v2(c2), CUDA_ERROR_INVALID_CONTEXT);
    CU_IS(cuCtxSetCurrent(c2), CUDA_ERROR_INVALID_CONTEXT);
    CU_OK(cuDevicePrimaryCtxRetain(&pri, 0));
    CU_OK(cuDevicePrimaryCtxRetain(&pri2, 0));
    cr_assert_eq(pri, pri2);
    CU_OK(cuCtxSetCurrent(pri));
    CUstream s;
    CU_OK(cuStreamCreate(&s, 0));
    CU_IS(cuCtxDestroy_v2(pri), CUDA_ERROR_INVALID_CONTEXT);
    CU_OK(cuDevicePrimaryCtxRelease_v2(0));
    CU_OK(cuStreamQuery(s)); /* still retained once */
    CU_OK(cuDevicePrimaryCtxRelease_v2(0));
    CU_IS(cuStreamQuery(s), CUDA_ERROR_INVALID_CONTEXT);
    CU_IS(cuDevicePrimaryCtxRelease(0), CUDA_ERROR_INVALID_CONTEXT);
    CU_OK(cuCtxCreate_v3(&c2, NULL, 0, 0, 0));
    CU_OK(cuCtxSynchronize_v2(c2));
    CU_OK(cuCtxGetDevice_v2(&d, c2));
    CU_OK(cuCtxCreate(&c2, 0, 0));
    CU_OK(cuCtxDestroy(c2));
}

Test(api, memory_and_copies)
{
    CUdeviceptr d;
    char in[4096], out[4096];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (char)(i * 7);
    CU_IS(cuMemAlloc_v2(&d, 0), CUDA_ERROR_INVALID_VALUE);
    CU_OK(cuMemAlloc_v2(&d, sizeof in));
    CU_OK(cuMemcpyHtoD_v2(d, in, sizeof in));
    memset(out, 0, sizeof out);
    CU_OK(cuMemcpyDtoH_v2(out, d, sizeof out));
    cr_assert_arr_eq(in, out, sizeof in);
    CUstream s = stream_prio(0);
    memset(out, 0, sizeof out);
    CU_OK(cuMemcpyHtoDAsync_v2(d + 100, in, 50, s));
    CU_OK(cuMemcpyDtoHAsync_v2_ptsz(out, d + 100, 50, s));
    CU_OK(cuStreamSynchronize(s));
    cr_assert_arr_eq(in, out, 50);
    CU_OK(cuMemcpyHtoD_v2_ptds(d, in + 1, 10));
    CU_OK(cuMemcpyDtoH_v2_ptds(out, d, 10));
    cr_assert_arr_eq(in + 1, out, 10);
    CU_IS(cuMemcpyHtoD_v2(d + 4000, in, 200), CUDA_ERROR_INVALID_VALUE);
    CU_IS(cuMemcpyDtoH_v2(out, d - 1, 10), CUDA_ERROR_INVALID_VALUE);
    CU_IS(cuMemcpyHtoDAsync_v2(d, NULL, 10, s), CUDA_ERROR_INVALID_VALUE);
    CU_OK(cuMemFree_v2(d));
    CU_IS(cuMemFree_v2(d), CUDA_ERROR_INVALID_VALUE);
    CU_IS(cuMemcpyHtoD_v2(d, in, 10), CUDA_ERROR_INVALID_VALUE);
    fakecuda_stats st;
    cr_assert_eq(fakecuda_device_stats(&st), 0);
    cr_assert_eq(st.copies_done, 6);
}

Test(api, error_strings)
{
    const char *s = NULL;
    CU_OK(cuGetErrorName(CUDA_ERROR_INVALID_VALUE, &s));
    cr_assert_str_eq(s, "CUDA_ERROR_INVALID_VALUE");
    CU_OK(cuGetErrorName(CUDA_SUCCESS, &s));
    cr_assert_str_eq(s, "CUDA_SUCCESS");
    CU_OK(cuGetErrorString(CUDA_ERROR_NOT_FOUND, &s));
    cr_assert(strstr(s, "not found"), "string: %s", s);
    CU_OK(cuGetErrorName(CUDA_ERROR_UNKNOWN, &s));
    cr_assert_str_eq(s, "CUDA_ERROR_UNKNOWN");
    CU_IS(cuGetErrorName((CUresult)12345, &s), CUDA_ERROR_INVALID_VALUE);
    cr_assert_null(s);
    CU_IS(cuGetErrorString((CUresult)12345, &s), CUDA_ERROR_INVALID_VALUE);
}

Test(api, stream_is_capturing)
{
    CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_ACTIVE;
    CU_OK(cuStreamIsCapturing(stream_prio(0), &st));
    cr_assert_eq(st, CU_STREAM_CAPTURE_STATUS_NONE);
    st = CU_STREAM_CAPTURE_STATUS_ACTIVE;
    CU_OK(cuStreamIsCapturing_ptsz(NULL, &st));
    cr_assert_eq(st, CU_STREAM_CAPTURE_STATUS_NONE);
    CU_IS(cuStreamIsCapturing((CUstream)(uintptr_t)0x77, &st), CUDA_ERROR_INVALID_HANDLE);
}

/* Device-to-device and unified copies, memsets: the bytes, the checks, the stream order. */
Test(api, device_copies_and_memsets)
{
    CUdeviceptr a, b;
    CU_OK(cuMemAlloc_v2(&a, 4096));
    CU_OK(cuMemAlloc_v2(&b, 4096));
    CUstream s = stream_prio(0);
    uint32_t words[1024];
    char bytes[4096];
    CU_OK(cuMemsetD32Async(a, 0xdeadbeef, 1024, s));
    CU_OK(cuMemsetD8Async_ptsz(b, 0x5a, 4096, s));
    CU_OK(cuMemcpyDtoDAsync_v2(b + 8, a, 16, s));
    CU_OK(cuMemcpyAsync((CUdeviceptr)(uintptr_t)words, a, sizeof words, s));
    CU_OK(cuMemcpyAsync_ptsz((CUdeviceptr)(uintptr_t)bytes, b, sizeof bytes, s));
    CU_OK(cuStreamSynchronize(s));
    for (int i = 0; i < 1024; i++)
        cr_assert_eq(words[i], 0xdeadbeef, "word %d: %#x", i, words[i]);
    static const unsigned char le[4] = {0xef, 0xbe, 0xad, 0xde}; /* 0xdeadbeef in memory */
    for (int i = 0; i < 4096; i++)
        cr_assert_eq((unsigned char)bytes[i], i >= 8 && i < 24 ? le[(i - 8) % 4] : 0x5a,
                     "byte %d: %#x", i, (unsigned char)bytes[i]);
    CU_IS(cuMemsetD32Async(a + 2, 0, 4, s), CUDA_ERROR_INVALID_VALUE); /* misaligned */
    CU_IS(cuMemsetD32Async(a, 0, 1025, s), CUDA_ERROR_INVALID_VALUE);  /* past the end */
    CU_IS(cuMemcpyDtoDAsync_v2(a, b + 1, 4096, s), CUDA_ERROR_INVALID_VALUE);
    CU_IS(cuMemcpyAsync(0, a, 16, s), CUDA_ERROR_INVALID_VALUE);
    fakecuda_stats st;
    cr_assert_eq(fakecuda_device_stats(&st), 0);
    cr_assert_eq(st.copies_done, 5);
}

/* A cooperative launch runs like any kernel, if all its blocks can be resident at once. */
Test(api, cooperative_launch)
{
    CUfunction f = fn("c10");
    int occ;
    CU_OK(cuOccupancyMaxActiveBlocksPerMultiprocessor(&occ, f, 256, 0));
    CUstream s = stream_prio(0);
    CU_OK(cuLaunchCooperativeKernel(f, (unsigned)occ * 132, 1, 1, 256, 1, 1, 0, s, NULL));
    CU_IS(cuLaunchCooperativeKernel(f, (unsigned)occ * 132 + 1, 1, 1, 256, 1, 1, 0, s, NULL),
          CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE);
    CU_OK(cuLaunchCooperativeKernel_ptsz(f, 1, 1, 1, 32, 1, 1, 0, NULL, NULL));
    CU_OK(cuStreamSynchronize(s));
    CU_OK(cuStreamSynchronize_ptsz(NULL));
    fakecuda_stats st;
    cr_assert_eq(fakecuda_device_stats(&st), 0);
    cr_assert_eq(st.kernels_done, 2);
    cr_assert_eq(fakecuda_calls("cuLaunchCooperativeKernel"), 2);
    cr_assert_eq(fakecuda_calls("cuLaunchCooperativeKernel_ptsz"), 1);
}

/* FAKECUDA_DRIVER_VERSION is what cuDriverGetVersion reports, before and after cuInit. */
Test(api_env, driver_version_knob)
{
    setenv("FAKECUDA_DRIVER_VERSION", "12040", 1);
    int v = 0;
    CU_OK(cuDriverGetVersion(&v));
    cr_assert_eq(v, 12040);
    fc_setup();
    CU_OK(cuDriverGetVersion(&v));
    cr_assert_eq(v, 12040);
    CU_IS(cuDriverGetVersion(NULL), CUDA_ERROR_INVALID_VALUE);
}
