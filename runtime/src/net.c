/* net.c: TCP listen/connect with timeouts and EINTR-safe whole reads and writes. */
#include "rt/net.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rt/stats.h"

int rt_resolve(const char *host, uint16_t port, bool passive, struct addrinfo **res, rt_err *err)
{
    struct addrinfo hints;
    char ps[8];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    snprintf(ps, sizeof ps, "%u", port);
    int rc = getaddrinfo(host && *host ? host : NULL, ps, &hints, res);
    if (rc != 0)
        return rt_err_set(err, rc == EAI_SYSTEM ? errno : EHOSTUNREACH, "cannot resolve %s:%u: %s",
                          host ? host : "*", port, gai_strerror(rc));
    return 0;
}

int rt_tcp_listen(const char *host, uint16_t port, int backlog, rt_err *err)
{
    struct addrinfo *res;
    int rc = rt_resolve(host, port, true, &res, err);
    if (rc < 0)
        return rc;
    rc = rt_err_set(err, EADDRNOTAVAIL, "no address for %s:%u", host ? host : "*", port);
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            rc = rt_err_sys(err, "socket for %s:%u", host ? host : "*", port);
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, backlog) == 0) {
            freeaddrinfo(res);
            return fd;
        }
        rc = rt_err_sys(err, "listen on %s:%u", host ? host : "*", port);
        close(fd);
    }
    freeaddrinfo(res);
    return rc;
}

int rt_tcp_local_port(int fd)
{
    struct sockaddr_storage ss = {0};
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

int rt_tcp_nodelay(int fd)
{
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0 ? 0 : -errno;
}

/* Non-blocking connect, then poll for writability until the deadline. */
static int connect_one(const struct addrinfo *a, uint64_t deadline, int *out_errno)
{
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) {
        *out_errno = errno;
        return -1;
    }
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            *out_errno = errno;
            close(fd);
            return -1;
        }
        for (;;) {
            uint64_t now = rt_now_ns();
            if (now >= deadline) {
                *out_errno = ETIMEDOUT;
                close(fd);
                return -1;
            }
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int left = (int)((deadline - now + 999999) / 1000000);
            int n = poll(&p, 1, left);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                *out_errno = errno;
                close(fd);
                return -1;
            }
            if (n == 0)
                continue; /* re-checks the deadline */
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
            if (soerr != 0) {
                *out_errno = soerr;
                close(fd);
                return -1;
            }
            break;
        }
    }
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    rt_tcp_nodelay(fd);
    return fd;
}

int rt_tcp_connect(const char *host, uint16_t port, int timeout_ms, rt_err *err)
{
    struct addrinfo *res;
    int rc = rt_resolve(host, port, false, &res, err);
    if (rc < 0)
        return rc;
    uint64_t deadline = rt_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ULL;
    int e = EHOSTUNREACH;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = connect_one(a, deadline, &e);
        if (fd >= 0) {
            freeaddrinfo(res);
            return fd;
        }
        if (e == ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    if (e == ETIMEDOUT)
        return rt_err_set(err, ETIMEDOUT, "connect to %s:%u: no answer within %d ms", host, port,
                          timeout_ms);
    return rt_err_set(err, e, "connect to %s:%u: %s", host, port, strerror(e));
}

ssize_t rt_read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n > 0) {
            got += (size_t)n;
        } else if (n == 0) {
            return (ssize_t)got;
        } else if (errno != EINTR) {
            return -errno;
        }
    }
    return (ssize_t)got;
}

ssize_t rt_write_full(int fd, const void *buf, size_t len)
{
    size_t put = 0;
    while (put < len) {
        ssize_t n = send(fd, (const char *)buf + put, len - put, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK)
            n = write(fd, (const char *)buf + put, len - put);
        if (n > 0)
            put += (size_t)n;
        else if (n < 0 && errno != EINTR)
            return -errno;
    }
    return (ssize_t)put;
}

int rt_wait_readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    uint64_t deadline = rt_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ULL;
    for (;;) {
        uint64_t now = rt_now_ns();
        int left = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
        int n = poll(&p, 1, left);
        if (n >= 0)
            return n > 0 ? 1 : 0;
        if (errno != EINTR)
            return -errno;
    }
}
