/* rt/net.h: TCP helpers: listen, connect with a timeout, whole reads and writes. */
#ifndef RT_NET_H
#define RT_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rt/err.h"

struct addrinfo;

/* getaddrinfo for a TCP host:port (host NULL or empty: any, with passive); the caller
 * frees *res with freeaddrinfo. -EHOSTUNREACH (or the errno) with err naming the address. */
int rt_resolve(const char *host, uint16_t port, bool passive, struct addrinfo **res, rt_err *err);

/* Listen on host:port (port 0: any; see rt_tcp_local_port). SO_REUSEADDR, close-on-exec.
 * Returns the fd or a negative errno. */
int rt_tcp_listen(const char *host, uint16_t port, int backlog, rt_err *err);
/* The port a socket is bound to, or -1. */
int rt_tcp_local_port(int fd);
/* Connect to host:port within timeout_ms (every resolved address tried in turn, the time
 * shared between them). The fd is blocking, TCP_NODELAY, close-on-exec. Returns the fd or
 * a negative errno: -ETIMEDOUT, -ECONNREFUSED, ... with err->msg naming the address. */
int rt_tcp_connect(const char *host, uint16_t port, int timeout_ms, rt_err *err);
int rt_tcp_nodelay(int fd);

/* Read exactly len bytes, retrying on EINTR and short reads. Returns len; 0..len-1 when
 * the peer closed first (the count read so far); -errno on error. */
ssize_t rt_read_full(int fd, void *buf, size_t len);
/* Write exactly len bytes (MSG_NOSIGNAL on sockets: a closed peer gives -EPIPE, not a
 * signal). Returns len or -errno. */
ssize_t rt_write_full(int fd, const void *buf, size_t len);
/* Wait until fd is readable (POLLIN) within timeout_ms: 1 ready, 0 timeout, -errno. */
int rt_wait_readable(int fd, int timeout_ms);

#endif
