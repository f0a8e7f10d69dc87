/* ncl_rdma.c: PLACEHOLDER being replaced by the RDMA transport (work in progress). */
#include <errno.h>
#include <stddef.h>

#include "rt/ncl_transport.h"

static ncl_stream *rdma_connect(const char *host, uint16_t port, int timeout_ms, rt_err *err)
{
    (void)host, (void)port, (void)timeout_ms;
    rt_err_set(err, ENOSYS, "rdma transport not built yet");
    return NULL;
}

static ncl_listener *rdma_listen(const char *host, uint16_t port, rt_err *err)
{
    (void)host, (void)port;
    rt_err_set(err, ENOSYS, "rdma transport not built yet");
    return NULL;
}

const ncl_transport ncl_rdma_transport = {
    .name = "rdma", .connect = rdma_connect, .listen = rdma_listen};
