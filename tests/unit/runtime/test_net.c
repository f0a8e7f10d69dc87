/* test_net.c: TCP listen/connect with timeout, whole reads/writes, nodelay. */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rt/net.h"
#include "rt/stats.h"

#define BIG (4 << 20)

static void *echo_big(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    int c = accept(lfd, NULL, NULL);
    char *buf = malloc(BIG);
    ssize_t n = rt_read_full(c, buf, BIG);
    if (n == BIG)
        rt_write_full(c, buf, BIG);
    free(buf);
    close(c);
    return NULL;
}

Test(net, roundtrip_large_buffer_with_nodelay)
{
    rt_err e;
    int lfd = rt_tcp_listen("127.0.0.1", 0, 16, &e);
    cr_assert_geq(lfd, 0, "%s", e.msg);
    int port = rt_tcp_local_port(lfd);
    cr_assert_gt(port, 0);
    pthread_t t;
    pthread_create(&t, NULL, echo_big, (void *)(intptr_t)lfd);
    int fd = rt_tcp_connect("127.0.0.1", (uint16_t)port, 2000, &e);
    cr_assert_geq(fd, 0, "%s", e.msg);
    int nd = 0;
    socklen_t sl = sizeof nd;
    getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nd, &sl);
    cr_assert(nd);
    char *out = malloc(BIG), *in = malloc(BIG);
    for (int i = 0; i < BIG; i++)
        out[i] = (char)(i * 31 + 7);
    cr_assert_eq(rt_write_full(fd, out, BIG), BIG);
    cr_assert_eq(rt_read_full(fd, in, BIG), BIG);
    cr_assert_eq(memcmp(in, out, BIG), 0);
    /* The peer has closed: a further read returns 0 bytes, not an error. */
    cr_assert_eq(rt_read_full(fd, in, 10), 0);
    pthread_join(t, NULL);
    close(fd);
    close(lfd);
    free(out);
    free(in);
}

Test(net, short_read_when_peer_closes_mid_message)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cr_assert_eq(rt_write_full(sv[0], "abc", 3), 3);
    close(sv[0]);
    char buf[10];
    cr_assert_eq(rt_read_full(sv[1], buf, 10), 3);
    close(sv[1]);
}

Test(net, write_to_closed_peer_is_epipe_not_signal)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    cr_assert_eq(rt_write_full(sv[0], "abc", 3), -EPIPE);
    close(sv[0]);
}

Test(net, refused_names_address)
{
    rt_err e;
    /* Bind a port, close it: nothing listens there now. */
    int lfd = rt_tcp_listen("127.0.0.1", 0, 1, &e);
    int port = rt_tcp_local_port(lfd);
    close(lfd);
    int fd = rt_tcp_connect("127.0.0.1", (uint16_t)port, 1000, &e);
    cr_assert_eq(fd, -ECONNREFUSED);
    cr_assert(strstr(e.msg, "127.0.0.1:"), "%s", e.msg);
}

Test(net, connect_times_out_when_listener_backlog_is_full)
{
    rt_err e;
    /* A loopback listener that never accepts: once its accept queue is full the kernel
     * drops further SYNs, so a connect sees no answer, as from a dead host. */
    int lfd = rt_tcp_listen("127.0.0.1", 0, 0, &e);
    cr_assert_geq(lfd, 0);
    int port = rt_tcp_local_port(lfd);
    int fds[8], n = 0, timed_out = 0;
    for (n = 0; n < 8; n++) {
        uint64_t t0 = rt_now_ns();
        fds[n] = rt_tcp_connect("127.0.0.1", (uint16_t)port, 300, &e);
        if (fds[n] < 0) {
            cr_assert_eq(fds[n], -ETIMEDOUT, "%s", e.msg);
            uint64_t ms = (rt_now_ns() - t0) / 1000000;
            cr_assert_geq(ms, 250);
            cr_assert_lt(ms, 2000);
            cr_assert(strstr(e.msg, "no answer within 300 ms"), "%s", e.msg);
            timed_out = 1;
            break;
        }
    }
    cr_assert(timed_out, "the accept queue never filled");
    for (int i = 0; i < n; i++)
        close(fds[i]);
    close(lfd);
}

Test(net, unresolvable_host)
{
    rt_err e;
    int fd = rt_tcp_connect("no-such-host.invalid", 80, 500, &e);
    cr_assert_lt(fd, 0);
    cr_assert(strstr(e.msg, "cannot resolve no-such-host.invalid:80"), "%s", e.msg);
}

Test(net, wait_readable)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cr_assert_eq(rt_wait_readable(sv[1], 50), 0);
    cr_assert_eq(write(sv[0], "x", 1), 1);
    cr_assert_eq(rt_wait_readable(sv[1], 50), 1);
    close(sv[0]);
    close(sv[1]);
}
