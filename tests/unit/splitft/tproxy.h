/* tproxy.h: a TCP relay between the client and one peer that a test can cut, as if the
 * network between them broke while both ends stay up. */
#ifndef TPROXY_H
#define TPROXY_H

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rt/net.h"

typedef struct tproxy {
    int lfd, port, target;
    pthread_t t;
    volatile int cuts, stop;
} tproxy;

typedef struct tpair {
    tproxy *px;
    int a, b, cuts;
} tpair;

static void *tpair_main(void *arg)
{
    tpair *p = arg;
    struct pollfd pf[2] = {{p->a, POLLIN, 0}, {p->b, POLLIN, 0}};
    char buf[65536];
    while (!p->px->stop && p->px->cuts == p->cuts) {
        if (poll(pf, 2, 5) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            if (!pf[i].revents)
                continue;
            ssize_t r = read(pf[i].fd, buf, sizeof buf);
            if (r <= 0 || rt_write_full(pf[1 - i].fd, buf, (size_t)r) != r)
                goto out;
        }
    }
out:
    close(p->a);
    close(p->b);
    free(p);
    return NULL;
}

static void *tproxy_main(void *arg)
{
    tproxy *px = arg;
    while (!px->stop) {
        if (rt_wait_readable(px->lfd, 20) <= 0)
            continue;
        int a = accept(px->lfd, NULL, NULL);
        if (a < 0)
            continue;
        int b = rt_tcp_connect("127.0.0.1", (uint16_t)px->target, 1000, NULL);
        if (b < 0) {
            close(a);
            continue;
        }
        rt_tcp_nodelay(a);
        tpair *p = malloc(sizeof *p);
        *p = (tpair){px, a, b, px->cuts};
        pthread_t t;
        pthread_create(&t, NULL, tpair_main, p);
        pthread_detach(t);
    }
    return NULL;
}

/* Relay a free loopback port (px->port) to target_port. */
static inline void tproxy_start(tproxy *px, int target_port)
{
    *px = (tproxy){.target = target_port};
    px->lfd = rt_tcp_listen("127.0.0.1", 0, 16, NULL);
    px->port = rt_tcp_local_port(px->lfd);
    pthread_create(&px->t, NULL, tproxy_main, px);
}

/* Close every relayed connection; new ones are relayed again. */
static inline void tproxy_cut(tproxy *px) { px->cuts++; }

static inline void tproxy_stop(tproxy *px)
{
    px->stop = 1;
    pthread_join(px->t, NULL);
    close(px->lfd);
    usleep(20000); /* let the relays notice */
}

#endif
