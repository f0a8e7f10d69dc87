// device.cu: the CUDA backend's device: found once (mn_cuda_init), its name, and
// the kernel map's release. The reasons it cannot run are told apart for the user: no
// driver, no device, a driver older than this build.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.cuh"

static struct {
    pthread_once_t once;
    mn_status status;
    char msg[400];
    char name[256];
} dev = {PTHREAD_ONCE_INIT, MN_OK, "", ""};

static void find_device(void)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0)) {
        dev.status = MN_ENODEV;
        snprintf(dev.msg, sizeof dev.msg, "CUDA backend: no CUDA device on this machine");
        return;
    }
    if (e == cudaErrorInsufficientDriver) {
        dev.status = MN_ENODEV;
        int drv = 0;
        cudaDriverGetVersion(&drv);
        if (drv)
            snprintf(dev.msg, sizeof dev.msg,
                     "CUDA backend: the NVIDIA driver (CUDA %d.%d) is older than this build (CUDA "
                     "%d.%d)",
                     drv / 1000, drv % 1000 / 10, CUDART_VERSION / 1000,
                     CUDART_VERSION % 1000 / 10);
        else
            snprintf(dev.msg, sizeof dev.msg,
                     "CUDA backend: no NVIDIA driver on this machine (libcuda.so.1 not found)");
        return;
    }
    if (e != cudaSuccess) {
        dev.status = MN_ENODEV;
        snprintf(dev.msg, sizeof dev.msg, "CUDA backend: %s", cudaGetErrorString(e));
        return;
    }
    int d = 0;
    cudaGetDevice(&d);
    cudaDeviceProp p;
    e = cudaGetDeviceProperties(&p, d);
    if (e != cudaSuccess) {
        dev.status = MN_ENODEV;
        snprintf(dev.msg, sizeof dev.msg, "CUDA backend: %s", cudaGetErrorString(e));
        return;
    }
    if (p.major < 8) {
        dev.status = MN_ENODEV;
        snprintf(dev.msg, sizeof dev.msg,
                 "CUDA backend: %s is sm_%d%d; this build has code for sm_80 and sm_90", p.name,
                 p.major, p.minor);
        return;
    }
    snprintf(dev.name, sizeof dev.name, "%s", p.name);
    dev.status = MN_OK;
}

MN_CUDA_API mn_status mn_cuda_init(void)
{
    pthread_once(&dev.once, find_device);
    if (dev.status != MN_OK) {
        mn_set_error("%s", dev.msg);
        return dev.status;
    }
    return mn_cuda_done(MN_OK);
}

MN_CUDA_API const char *mn_cuda_device_name(void) { return dev.status == MN_OK ? dev.name : ""; }

MN_CUDA_API void mn_cuda_kmap_free(mn_cuda_kmap *map)
{
    if (!map)
        return;
    free(map->start);
    if (map->in)
        cudaFree(map->in);
    if (map->out)
        cudaFree(map->out);
    *map = mn_cuda_kmap{};
}
