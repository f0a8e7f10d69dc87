/* rpc.c: the NCL client's configuration and its blocking one-request helper. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "ncl/client.h"

void ncl_config_default(ncl_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->timeout_ns = RT_S;
    cfg->transport = &ncl_tcp_transport;
    cfg->max_frame = NCL_FRAME_MAX_DEFAULT;
    cfg->connect_timeout_ms = 1000;
    cfg->spin_ns = 100 * RT_US;
}

int ncl_config_from_env(ncl_config *cfg, const char *id_default, rt_err *err)
{
    static const char *const transports[] = {"tcp", "rdma", NULL};
    int tr = 0;
    ncl_config_default(cfg);
    const rt_env_spec specs[] = {
        {.name = "SPLITFT_PEERS", .type = RT_ENV_HOSTPORTS, .def = NULL, .dest = &cfg->peers},
        {.name = "SPLITFT_ID", .type = RT_ENV_STRING, .def = id_default, .dest = cfg->id},
        {.name = "SPLITFT_TIMEOUT_MS",
         .type = RT_ENV_DURATION,
         .def = "1000",
         .min = (long long)RT_MS,
         .max = 3600 * (long long)RT_S,
         .unit_ns = RT_MS,
         .dest = &cfg->timeout_ns},
        {.name = "SPLITFT_TRANSPORT",
         .type = RT_ENV_ENUM,
         .def = "tcp",
         .names = transports,
         .dest = &tr},
        {.name = "SPLITFT_SPIN_US",
         .type = RT_ENV_DURATION,
         .def = "100",
         .max = (long long)RT_S,
         .unit_ns = RT_US,
         .dest = &cfg->spin_ns},
    };
    int rc = rt_env_load(specs, sizeof specs / sizeof specs[0], err);
    if (rc < 0)
        return rc;
    if (cfg->peers.n == 0)
        return rt_err_set(
            err, EINVAL,
            "SPLITFT_PEERS is not set; accepted: 1 to %d comma-separated HOST:PORT of ncl-server peers",
            RT_HOSTS_MAX);
    if (!ncl_id_valid(cfg->id, strlen(cfg->id)))
        return rt_err_set(err, EINVAL,
                          "SPLITFT_ID='%s': %s; accepted: 1 to %d characters of A-Z a-z 0-9 . _ -",
                          cfg->id, cfg->id[0] ? "not a valid id" : "not set", NCL_ID_MAX);
    cfg->transport = ncl_transport_get(transports[tr]);
    int ms = (int)(cfg->timeout_ns / RT_MS);
    cfg->connect_timeout_ms = ms < 1000 ? ms : 1000;
    return 0;
}

static int wait_for(const ncl_transport *t, ncl_stream *s, bool want_send, uint64_t deadline)
{
    uint64_t now = rt_now_ns();
    if (now >= deadline)
        return -ETIMEDOUT;
    struct pollfd p = {.fd = t->fd(s), .events = t->events(s, want_send)};
    int n = poll(&p, 1, (int)((deadline - now + 999999) / 1000000));
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    return n == 0 ? -ETIMEDOUT : 0;
}

int ncl_rpc(const ncl_transport *t, ncl_stream *s, uint8_t type, uint8_t flags, const void *payload,
            size_t len, int timeout_ms, unsigned char **reply, size_t *reply_len, rt_err *err)
{
    static uint64_t req_counter;
    uint64_t req = __atomic_add_fetch(&req_counter, 1, __ATOMIC_RELAXED);
    uint64_t deadline = rt_now_ns() + (uint64_t)timeout_ms * RT_MS;
    unsigned char hdr[NCL_HDR_SIZE];
    struct iovec iov[2] = {{hdr, NCL_HDR_SIZE}, {(void *)payload, len}};
    ncl_hdr_encode(hdr, type, flags, req, &iov[1], 1);
    size_t total = NCL_HDR_SIZE + len, sent = 0;
    *reply = NULL;
    *reply_len = 0;
    while (sent < total) {
        struct iovec v[2];
        int nv = 0;
        if (sent < NCL_HDR_SIZE)
            v[nv++] = (struct iovec){hdr + sent, NCL_HDR_SIZE - sent};
        size_t poff = sent > NCL_HDR_SIZE ? sent - NCL_HDR_SIZE : 0;
        if (len > poff)
            v[nv++] = (struct iovec){(char *)payload + poff, len - poff};
        ssize_t n = t->sendv(s, v, nv);
        if (n > 0) {
            sent += (size_t)n;
        } else if (n == -EAGAIN) {
            int rc = wait_for(t, s, true, deadline);
            if (rc < 0)
                return rt_err_set(err, -rc, "%s to %s: %s", ncl_type_name(type), t->peer_name(s),
                                  rc == -ETIMEDOUT ? "timed out sending" : strerror(-rc));
        } else {
            return rt_err_set(err, (int)-n, "%s to %s: %s", ncl_type_name(type), t->peer_name(s),
                              strerror((int)-n));
        }
    }
    unsigned char rh[NCL_HDR_SIZE];
    size_t got = 0, need = NCL_HDR_SIZE;
    unsigned char *buf = rh;
    ncl_hdr h = {0};
    for (;;) {
        while (got < need) {
            ssize_t n = t->recv(s, buf + got, need - got);
            if (n > 0) {
                got += (size_t)n;
                continue;
            }
            int rc = n == 0 ? -ECONNRESET : (int)n;
            if (n == -EAGAIN)
                rc = wait_for(t, s, false, deadline);
            if (rc < 0) {
                if (buf != rh)
                    free(buf);
                return rt_err_set(err, -rc, "%s to %s: %s", ncl_type_name(type), t->peer_name(s),
                                  rc == -ETIMEDOUT ? "no reply in time"
                                  : n == 0         ? "connection closed"
                                                   : strerror(-rc));
            }
        }
        if (buf == rh) {
            int rc = ncl_hdr_decode(rh, 1u << 30, &h, err);
            if (rc < 0)
                return rc;
            if (h.req != req)
                return rt_err_set(err, EPROTO, "reply for request %llu, expected %llu",
                                  (unsigned long long)h.req, (unsigned long long)req);
            buf = malloc(h.len + 1);
            if (!buf)
                return rt_err_set(err, ENOMEM, "out of memory for a %u-byte reply", h.len);
            got = 0;
            need = h.len;
            if (need > 0)
                continue;
        }
        break;
    }
    int rc = ncl_frame_verify(rh, buf, h.len, err);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    buf[h.len] = '\0'; /* STATS replies are text */
    *reply = buf;
    *reply_len = h.len;
    return h.type;
}
