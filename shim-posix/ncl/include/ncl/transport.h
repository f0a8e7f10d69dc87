/* ncl/transport.h: how NCL frames travel: a reliable, ordered, non-blocking byte stream
 * between a client and a peer, behind one small interface with two backends.
 *
 *   tcp   sockets with TCP_NODELAY (default; works everywhere)
 *   rdma  rdma-core reliable connection: each side registers a receive ring; the sender
 *         RDMA-WRITEs bytes into the peer's ring, then publishes its new producer count with
 *         RDMA WRITE_WITH_IMM into the peer's sequence word (the immediate wakes the peer's
 *         completion channel). The receiver hands its consumer count back the same way, which
 *         frees ring space. Connection set-up by librdmacm.
 *
 * Both serve ncl-server's event loop and the client's I/O thread the same way: poll the
 * stream's fd for the events ncl_stream_events() asks for, then call recv and sendv until
 * they return -EAGAIN.
 */
#ifndef RT_NCL_TRANSPORT_H
#define RT_NCL_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "rt/err.h"

typedef struct ncl_stream ncl_stream;
typedef struct ncl_listener ncl_listener;

typedef struct ncl_transport {
    const char *name;
    ncl_listener *(*listen)(const char *host, uint16_t port, rt_err *err);
    int (*listener_fd)(ncl_listener *l);
    int (*listener_port)(ncl_listener *l);
    /* NULL with err->code EAGAIN when no connection is waiting. */
    ncl_stream *(*accept)(ncl_listener *l, rt_err *err);
    void (*listener_close)(ncl_listener *l);
    /* Blocking connect within timeout_ms; the stream is non-blocking afterwards. */
    ncl_stream *(*connect)(const char *host, uint16_t port, int timeout_ms, rt_err *err);
    /* > 0 bytes, 0 when the peer closed, -EAGAIN when nothing now, -errno on error. */
    ssize_t (*recv)(ncl_stream *s, void *buf, size_t len);
    /* Bytes taken (possibly fewer than offered), -EAGAIN when none fit now, -errno. */
    ssize_t (*sendv)(ncl_stream *s, const struct iovec *iov, int iovcnt);
    int (*fd)(ncl_stream *s);
    /* poll events to wait for: POLLIN always, plus what sending needs when want_send. */
    short (*events)(ncl_stream *s, bool want_send);
    void (*close)(ncl_stream *s);
    const char *(*peer_name)(ncl_stream *s);
} ncl_transport;

/* "tcp" or "rdma"; NULL for anything else. */
const ncl_transport *ncl_transport_get(const char *name);

extern const ncl_transport ncl_tcp_transport;
extern const ncl_transport ncl_rdma_transport;

#endif
