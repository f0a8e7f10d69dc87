/* none.c: the CUDA backend of a libminuet built without nvcc: every call says so. */
#include "../internal.h"
#include "cuda_internal.h"

#define NO_NVCC                                                                                    \
    "CUDA backend: this libminuet was built without nvcc (none found at build time: set NVCC "     \
    "or CUDA_HOME and rebuild)"

mn_status mn_cuda_init(void) { return mn_fail(MN_ENODEV, NO_NVCC); }
const char *mn_cuda_device_name(void) { return ""; }
mn_status mn_cuda_sort(int32_t *coords, size_t n, uint32_t *perm, void *stream)
{
    (void)coords, (void)n, (void)perm, (void)stream;
    return mn_fail(MN_ENODEV, NO_NVCC);
}
mn_status mn_cuda_kmap_build(const int32_t *in, size_t n_in, const int32_t *out, size_t n_out,
                             int K, int t_in, int dilation, mn_method method, void *stream,
                             mn_cuda_kmap *map)
{
    (void)in, (void)n_in, (void)out, (void)n_out, (void)K, (void)t_in, (void)dilation;
    (void)method, (void)stream, (void)map;
    return mn_fail(MN_ENODEV, NO_NVCC);
}
void mn_cuda_kmap_free(mn_cuda_kmap *map) { (void)map; }
mn_status mn_cuda_conv(const mn_cuda_kmap *map, const float *in, int c_in, const float *W,
                       const float *bias, int c_out, float *out, bool transposed, void *stream)
{
    (void)map, (void)in, (void)c_in, (void)W, (void)bias, (void)c_out, (void)out;
    (void)transposed, (void)stream;
    return mn_fail(MN_ENODEV, NO_NVCC);
}
mn_status mn_cuda_conv_backward(const mn_cuda_kmap *map, const float *in, int c_in, const float *W,
                                int c_out, const float *d_out, float *d_in, float *d_W,
                                float *d_bias, bool transposed, void *stream)
{
    (void)map, (void)in, (void)c_in, (void)W, (void)c_out, (void)d_out, (void)d_in, (void)d_W;
    (void)d_bias, (void)transposed, (void)stream;
    return mn_fail(MN_ENODEV, NO_NVCC);
}
