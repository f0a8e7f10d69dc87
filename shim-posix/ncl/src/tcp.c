/* tcp.c: the TCP backend of the NCL transport: non-blocking sockets, TCP_NODELAY. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "ncl/transport.h"
#include "rt/net.h"

struct ncl_stream {
    int fd;
    char name[80];
};

struct ncl_listener {
    int fd;
};

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static void name_peer(ncl_stream *s)
{
    struct sockaddr_storage ss = {0};
    socklen_t len = sizeof ss;
    char host[64] = "?";
    int port = 0;
    if (getpeername(s->fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(s->name, sizeof s->name, "%s:%d", host, port);
}

static ncl_listener *tcp_listen(const char *host, uint16_t port, rt_err *err)
{
    int fd = rt_tcp_listen(host, port, 128, err);
    if (fd < 0)
        return NULL;
    set_nonblock(fd);
    ncl_listener *l = malloc(sizeof *l);
    if (!l) {
        close(fd);
        rt_err_set(err, ENOMEM, "out of memory");
        return NULL;
    }
    l->fd = fd;
    return l;
}

static int tcp_listener_fd(ncl_listener *l) { return l->fd; }
static int tcp_listener_port(ncl_listener *l) { return rt_tcp_local_port(l->fd); }

static ncl_stream *wrap(int fd, rt_err *err)
{
    ncl_stream *s = malloc(sizeof *s);
    if (!s) {
        close(fd);
        rt_err_set(err, ENOMEM, "out of memory");
        return NULL;
    }
    s->fd = fd;
    set_nonblock(fd);
    rt_tcp_nodelay(fd);
    name_peer(s);
    return s;
}

static ncl_stream *tcp_accept(ncl_listener *l, rt_err *err)
{
    int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
        rt_err_sys(err, "accept");
        return NULL;
    }
    return wrap(fd, err);
}

static void tcp_listener_close(ncl_listener *l)
{
    close(l->fd);
    free(l);
}

static ncl_stream *tcp_connect(const char *host, uint16_t port, int timeout_ms, rt_err *err)
{
    int fd = rt_tcp_connect(host, port, timeout_ms, err);
    return fd < 0 ? NULL : wrap(fd, err);
}

static ssize_t tcp_recv(ncl_stream *s, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = recv(s->fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

static ssize_t tcp_sendv(ncl_stream *s, const struct iovec *iov, int iovcnt)
{
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = (struct iovec *)iov;
    m.msg_iovlen = (size_t)(iovcnt > IOV_MAX ? IOV_MAX : iovcnt);
    for (;;) {
        ssize_t n = sendmsg(s->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

static int tcp_fd(ncl_stream *s) { return s->fd; }

static short tcp_events(ncl_stream *s, bool want_send)
{
    (void)s;
    return (short)(POLLIN | (want_send ? POLLOUT : 0));
}

static void tcp_close(ncl_stream *s)
{
    close(s->fd);
    free(s);
}

static const char *tcp_peer_name(ncl_stream *s) { return s->name; }

const ncl_transport ncl_tcp_transport = {
    .name = "tcp",
    .listen = tcp_listen,
    .listener_fd = tcp_listener_fd,
    .listener_port = tcp_listener_port,
    .accept = tcp_accept,
    .listener_close = tcp_listener_close,
    .connect = tcp_connect,
    .recv = tcp_recv,
    .sendv = tcp_sendv,
    .fd = tcp_fd,
    .events = tcp_events,
    .close = tcp_close,
    .peer_name = tcp_peer_name,
};

const ncl_transport *ncl_transport_get(const char *name)
{
    if (strcmp(name, "tcp") == 0)
        return &ncl_tcp_transport;
    if (strcmp(name, "rdma") == 0)
        return &ncl_rdma_transport;
    return NULL;
}
