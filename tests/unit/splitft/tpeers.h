/* tpeers.h: real ncl-server peers running in threads of a test, on loopback ports. */
#ifndef TPEERS_H
#define TPEERS_H

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../../runtime/ncl-server/server.h"
#include "ncl.h"

typedef struct tpeer {
    ncl_server *sv;
    pthread_t t;
    int stop_fd;
    int port;
    rt_logger lg;
} tpeer;

static void *tpeer_main(void *arg)
{
    tpeer *p = arg;
    ncl_server_run(p->sv, p->stop_fd);
    return NULL;
}

/* Start a peer on `port` (0: any free one; the same port again to restart it empty). */
static inline void tpeer_start(tpeer *p, int port, uint64_t capacity)
{
    p->lg = (rt_logger){"tpeer", RT_LOG_ERROR, 2};
    ncl_server_opts o = {.host = "127.0.0.1",
                         .port = (uint16_t)port,
                         .capacity = capacity,
                         .max_frame = NCL_FRAME_MAX_DEFAULT,
                         .max_conns = 64,
                         .transport = &ncl_tcp_transport};
    rt_err e;
    p->sv = ncl_server_new(&o, &p->lg, &e);
    cr_assert_not_null(p->sv, "peer on port %d: %s", port, e.msg);
    p->port = ncl_server_port(p->sv);
    p->stop_fd = eventfd(0, EFD_CLOEXEC);
    cr_assert_eq(pthread_create(&p->t, NULL, tpeer_main, p), 0);
}

static inline void tpeer_stop(tpeer *p)
{
    uint64_t one = 1;
    cr_assert_eq(write(p->stop_fd, &one, sizeof one), 8);
    pthread_join(p->t, NULL);
    ncl_server_free(p->sv);
    close(p->stop_fd);
    p->sv = NULL;
}

/* A client configuration for peers[0..n). */
static inline void tpeer_config(ncl_config *cfg, tpeer *peers, int n, const char *id,
                                int timeout_ms)
{
    ncl_config_default(cfg);
    cfg->peers.n = (size_t)n;
    for (int i = 0; i < n; i++) {
        strcpy(cfg->peers.v[i].host, "127.0.0.1");
        cfg->peers.v[i].port = (uint16_t)peers[i].port;
    }
    snprintf(cfg->id, sizeof cfg->id, "%s", id);
    cfg->timeout_ns = (uint64_t)timeout_ms * RT_MS;
    cfg->connect_timeout_ms = 200;
}

#endif
