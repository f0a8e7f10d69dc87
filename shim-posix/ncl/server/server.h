/* server.h: ncl-server's event loop: connections, frame decoding, replies. */
#ifndef NCL_SERVER_H
#define NCL_SERVER_H

#include <stdint.h>

#include "rt/err.h"
#include "rt/log.h"
#include "ncl/transport.h"
#include "store.h"

typedef struct ncl_server_opts {
    const char *host;
    uint16_t port;
    uint64_t capacity;
    uint32_t max_frame;
    int max_conns;
    const ncl_transport *transport;
} ncl_server_opts;

typedef struct ncl_server ncl_server;

/* Listen; NULL with err on failure. */
ncl_server *ncl_server_new(const ncl_server_opts *o, rt_logger *lg, rt_err *err);
int ncl_server_port(ncl_server *s);
/* Serve until stop_fd is readable: a signalfd for SIGTERM/SIGINT in the daemon, an
 * eventfd in tests. Returns 0 on a clean shutdown. */
int ncl_server_run(ncl_server *s, int stop_fd);
void ncl_server_free(ncl_server *s);

/* Detached use, for the fuzzer and tests: a server that does not listen, and connections
 * fed bytes directly (replies are dropped). feed returns < 0 where the daemon would close
 * the connection. */
typedef struct conn ncl_conn;
ncl_server *ncl_server_detached(const ncl_server_opts *o, rt_logger *lg);
ncl_conn *ncl_server_conn_new(ncl_server *sv);
int ncl_server_conn_feed(ncl_server *sv, ncl_conn *c, const void *data, size_t len, rt_err *err);
const ncl_store *ncl_server_store(const ncl_server *sv);

#endif
