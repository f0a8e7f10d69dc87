/* server.c: ncl-server's single-threaded epoll loop.
 *
 * Sections: connections and buffers, request handlers, frame dispatch, the loop.
 *
 * Each connection reads into a buffer bounded by one frame (header + max_frame), decodes
 * whole frames, and queues replies in order. Anything wrong with a frame (magic, type,
 * size over the maximum, CRC, a malformed payload, a request before HELLO) closes that
 * connection only: other clients never notice. A connection whose replies pile up (a
 * client that does not read) is not read from until they drain, so memory per connection
 * stays bounded by about two frames.
 */
#include "server.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "rt/stats.h"

/* ---- connections and buffers ------------------------------------------------------ */

typedef struct conn {
    ncl_stream *s;
    unsigned char *in;
    size_t in_len, in_cap;
    unsigned char *out;
    size_t out_off, out_len, out_cap;
    ncl_log *log; /* bound by HELLO */
    uint64_t gen; /* the log's gen at this connection's claim or rejoin; 0 for a query */
    uint32_t events;
    struct conn *prev, *next; /* every live connection, for shutdown */
} conn;

struct ncl_server {
    ncl_server_opts o;
    rt_logger *lg;
    ncl_store st;
    ncl_listener *lis;
    conn *conns;
    int ep;
    int nconns;
    uint64_t started_ns;
    uint64_t frames, bad_frames, accepted, refused_conns;
};

#define LISTENER_TAG ((void *)1)
#define SIGNAL_TAG   ((void *)2)

static const char *peer_name(ncl_server *sv, conn *c)
{
    return c->s ? sv->o.transport->peer_name(c->s) : "(detached)";
}

static void conn_free(ncl_server *sv, conn *c, const char *why)
{
    if (why)
        rt_log(sv->lg, RT_LOG_WARN, "closing connection from %s: %s", peer_name(sv, c), why);
    if (c->s) {
        epoll_ctl(sv->ep, EPOLL_CTL_DEL, sv->o.transport->fd(c->s), NULL);
        sv->o.transport->close(c->s);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        sv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c->in);
    free(c->out);
    free(c);
    sv->nconns--;
}

static int out_reserve(conn *c, size_t more)
{
    if (c->out_off > 0 && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + more <= c->out_cap)
        return 0;
    if (c->out_off > 0) { /* compact before growing */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_len + more <= c->out_cap)
            return 0;
    }
    size_t nc = c->out_cap ? c->out_cap : 4096;
    while (nc < c->out_len + more)
        nc *= 2;
    unsigned char *n = realloc(c->out, nc);
    if (!n)
        return -ENOMEM;
    c->out = n;
    c->out_cap = nc;
    return 0;
}

/* Queue a reply frame whose payload is given as pieces. */
static int reply(conn *c, uint8_t type, uint64_t req, const struct iovec *iov, int n)
{
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += iov[i].iov_len;
    if (out_reserve(c, NCL_HDR_SIZE + len) < 0)
        return -ENOMEM;
    ncl_hdr_encode(c->out + c->out_len, type, 0, req, iov, n);
    c->out_len += NCL_HDR_SIZE;
    for (int i = 0; i < n; i++) {
        memcpy(c->out + c->out_len, iov[i].iov_base, iov[i].iov_len);
        c->out_len += iov[i].iov_len;
    }
    return 0;
}

static int reply_u64s(conn *c, uint8_t type, uint64_t req, const uint64_t *v, int n)
{
    unsigned char buf[64];
    unsigned char *p = buf;
    for (int i = 0; i < n; i++)
        p = ncl_put_u64(p, v[i]);
    struct iovec iov = {buf, (size_t)(p - buf)};
    return reply(c, type, req, &iov, 1);
}

/* ---- request handlers --------------------------------------------------------------- */
/* Each returns 0, or a negative errno with err set: the connection is then closed. */

static int on_hello(ncl_server *sv, conn *c, uint64_t req, ncl_cur *cur, rt_err *err)
{
    uint64_t epoch;
    uint8_t flags, idlen;
    const unsigned char *id;
    if (!ncl_get_u64(cur, &epoch) || !ncl_get_u8(cur, &flags) || !ncl_get_u8(cur, &idlen) ||
        !ncl_get_bytes(cur, idlen, &id) || cur->p != cur->end)
        return rt_err_set(err, EPROTO, "malformed HELLO");
    if (!ncl_id_valid((const char *)id, idlen))
        return rt_err_set(err, EPROTO, "HELLO with an invalid client id");
    ncl_log *lg = ncl_store_log(&sv->st, (const char *)id, idlen, true);
    if (!lg) {
        uint64_t v[3] = {0, sv->st.used, sv->st.capacity};
        return reply_u64s(c, NCL_R_FULL, req, v, 3);
    }
    int rc = ncl_store_hello(&sv->st, lg, epoch, flags);
    if (rc == NCL_R_OK && !(flags & NCL_HELLO_QUERY)) {
        if (c->log != lg || c->gen == 0)
            rt_log(sv->lg, RT_LOG_INFO, "client %s epoch %llu from %s", lg->id,
                   (unsigned long long)epoch, peer_name(sv, c));
        c->log = lg;
        c->gen = lg->gen;
    } else if (rc == NCL_R_OK) {
        c->log = lg; /* reads are allowed after a query */
        c->gen = 0;
    }
    uint64_t v[6] = {lg->epoch,   lg->live.start,  lg->live.next,
                     sv->st.used, sv->st.capacity, lg->live.owner};
    return reply_u64s(c, (uint8_t)rc, req, v, 6);
}

static int on_append(ncl_server *sv, conn *c, uint64_t req, ncl_cur *cur, rt_err *err)
{
    uint64_t epoch, first;
    uint32_t count;
    if (!ncl_get_u64(cur, &epoch) || !ncl_get_u64(cur, &first) || !ncl_get_u32(cur, &count))
        return rt_err_set(err, EPROTO, "malformed APPEND");
    uint64_t next;
    int rc = ncl_store_append(&sv->st, c->log, epoch, first, count, cur->p,
                              (size_t)(cur->end - cur->p), &next, err);
    if (rc < 0)
        return rc;
    if (rc == NCL_R_FENCED)
        return reply_u64s(c, NCL_R_FENCED, req, &c->log->epoch, 1);
    if (rc == NCL_R_FULL) {
        uint64_t v[3] = {next, sv->st.used, sv->st.capacity};
        return reply_u64s(c, NCL_R_FULL, req, v, 3);
    }
    return reply_u64s(c, (uint8_t)rc, req, &next, 1);
}

static int on_trim(ncl_server *sv, conn *c, const ncl_hdr *h, ncl_cur *cur, rt_err *err)
{
    int type = h->type;
    uint64_t req = h->req;
    uint64_t epoch, a = 0, dev = 0, ino = 0, count = 0;
    bool ok = ncl_get_u64(cur, &epoch);
    if (type == NCL_TRIM_FILE)
        ok = ok && ncl_get_u64(cur, &dev) && ncl_get_u64(cur, &ino);
    ok = ok && ncl_get_u64(cur, &a); /* new start, below, start or expect */
    ok = ok && cur->p == cur->end;
    if (!ok)
        return rt_err_set(err, EPROTO, "malformed %s", ncl_type_name(type));
    int rc;
    if (type == NCL_TRIM)
        rc = ncl_store_trim(&sv->st, c->log, epoch, a);
    else if (type == NCL_RESET)
        rc = ncl_store_reset(&sv->st, c->log, epoch, a, h->flags & NCL_RESET_SHADOW);
    else if (type == NCL_SYNC_DONE)
        rc = ncl_store_sync_done(&sv->st, c->log, epoch, a);
    else
        rc = ncl_store_trim_file(&sv->st, c->log, epoch, dev, ino, a, &count);
    if (rc == NCL_R_FENCED)
        return reply_u64s(c, NCL_R_FENCED, req, &c->log->epoch, 1);
    if (rc == NCL_R_FULL) {
        uint64_t v[3] = {c->log->live.next, sv->st.used, sv->st.capacity};
        return reply_u64s(c, NCL_R_FULL, req, v, 3);
    }
    if (rc == NCL_R_GAP) {
        uint64_t v = c->log->shadow ? c->log->shadow->next : 0;
        return reply_u64s(c, NCL_R_GAP, req, &v, 1);
    }
    if (type == NCL_TRIM_FILE)
        return reply_u64s(c, NCL_R_OK, req, &count, 1);
    /* After RESET with a shadow, the client follows the shadow's position. */
    const ncl_recs *r = c->log->shadow ? c->log->shadow : &c->log->live;
    uint64_t v[2] = {r->start, r->next};
    return reply_u64s(c, NCL_R_OK, req, v, 2);
}

static int on_read(ncl_server *sv, conn *c, uint64_t req, ncl_cur *cur, rt_err *err)
{
    uint64_t from;
    uint32_t max_bytes;
    if (!ncl_get_u64(cur, &from) || !ncl_get_u32(cur, &max_bytes) || cur->p != cur->end)
        return rt_err_set(err, EPROTO, "malformed READ");
    ncl_log *lg = c->log;
    uint32_t limit = sv->o.max_frame - 64;
    if (max_bytes == 0 || max_bytes > limit)
        max_bytes = limit;
    uint64_t s = from < lg->live.start ? lg->live.start : from;
    /* One record always fits: it arrived in a frame no bigger than this one. */
    size_t total = 0;
    uint32_t count = 0;
    for (uint64_t q = s; q < lg->live.next; q++) {
        size_t sz;
        ncl_log_get(lg, q, &sz);
        if (count > 0 && total + sz > max_bytes)
            break;
        total += sz;
        count++;
    }
    unsigned char head[28];
    unsigned char *p = ncl_put_u64(head, lg->live.start);
    p = ncl_put_u64(p, lg->live.next);
    p = ncl_put_u64(p, lg->live.owner);
    ncl_put_u32(p, count);
    if (out_reserve(c, NCL_HDR_SIZE + sizeof head + total) < 0)
        return rt_err_set(err, ENOMEM, "out of memory for a READ reply");
    /* Build the payload in place, then the header over it. */
    size_t at = c->out_len;
    unsigned char *pay = c->out + at + NCL_HDR_SIZE;
    memcpy(pay, head, sizeof head);
    size_t off = sizeof head;
    for (uint32_t i = 0; i < count; i++) {
        size_t sz;
        const unsigned char *r = ncl_log_get(lg, s + i, &sz);
        memcpy(pay + off, r, sz);
        off += sz;
    }
    struct iovec iov = {pay, off};
    ncl_hdr_encode(c->out + at, NCL_R_OK, 0, req, &iov, 1);
    c->out_len += NCL_HDR_SIZE + off;
    sv->st.reads++;
    return 0;
}

static int on_stats(ncl_server *sv, conn *c, uint64_t req)
{
    size_t cap = 4096 + sv->st.nlogs * 256;
    char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    rt_json j;
    rt_json_init(&j, buf, cap);
    rt_json_begin(&j, NULL);
    rt_json_str(&j, "transport", sv->o.transport->name);
    rt_json_u64(&j, "capacity", sv->st.capacity);
    rt_json_u64(&j, "used", sv->st.used);
    rt_json_u64(&j, "max_frame", sv->o.max_frame);
    rt_json_u64(&j, "connections", (uint64_t)sv->nconns);
    rt_json_u64(&j, "uptime_ms", (rt_now_ns() - sv->started_ns) / 1000000);
    rt_json_u64(&j, "frames", sv->frames);
    rt_json_u64(&j, "bad_frames", sv->bad_frames);
    rt_json_u64(&j, "appends", sv->st.appends);
    rt_json_u64(&j, "records_in", sv->st.records_in);
    rt_json_u64(&j, "full", sv->st.full);
    rt_json_u64(&j, "fenced", sv->st.fenced);
    rt_json_u64(&j, "gaps", sv->st.gaps);
    rt_json_u64(&j, "trims", sv->st.trims);
    rt_json_u64(&j, "reads", sv->st.reads);
    rt_json_u64(&j, "catch_ups", sv->st.syncs);
    rt_json_begin_array(&j, "clients");
    for (size_t i = 0; i < sv->st.nlogs; i++) {
        ncl_log *lg = sv->st.logs[i];
        rt_json_begin(&j, NULL);
        rt_json_str(&j, "id", lg->id);
        rt_json_u64(&j, "epoch", lg->epoch);
        rt_json_u64(&j, "start", lg->live.start);
        rt_json_u64(&j, "next", lg->live.next);
        rt_json_u64(&j, "owner", lg->live.owner);
        rt_json_u64(&j, "bytes", ncl_log_bytes(lg));
        rt_json_bool(&j, "catching_up", lg->shadow != NULL);
        rt_json_end(&j);
    }
    rt_json_end_array(&j);
    rt_json_end(&j);
    const char *t = rt_json_text(&j);
    struct iovec iov = {(void *)(t ? t : "{}"), t ? strlen(t) : 2};
    int rc = reply(c, NCL_R_OK, req, &iov, 1);
    free(buf);
    return rc;
}

/* ---- frame dispatch ------------------------------------------------------------------ */

static int handle(ncl_server *sv, conn *c, const ncl_hdr *h, const unsigned char *pay, rt_err *err)
{
    ncl_cur cur = ncl_cur_make(pay, h->len);
    if (h->type != NCL_HELLO && h->type != NCL_STATS && !c->log)
        return rt_err_set(err, EPROTO, "%s before HELLO", ncl_type_name(h->type));
    bool changes = h->type == NCL_APPEND || h->type == NCL_TRIM || h->type == NCL_TRIM_FILE ||
                   h->type == NCL_RESET || h->type == NCL_SYNC_DONE;
    /* Every request that changes the log starts with its epoch. One from an older epoch is
     * answered FENCED by the store; one of the current epoch must come from the newest
     * connection of that incarnation. */
    uint64_t epoch;
    ncl_cur peek = cur;
    if (changes && ncl_get_u64(&peek, &epoch) && epoch >= c->log->epoch && c->gen != c->log->gen)
        return rt_err_set(err, EPROTO, "%s from a connection superseded by a newer one of %s",
                          ncl_type_name(h->type), c->log->id);
    switch (h->type) {
    case NCL_HELLO:
        return on_hello(sv, c, h->req, &cur, err);
    case NCL_APPEND:
        return on_append(sv, c, h->req, &cur, err);
    case NCL_TRIM:
    case NCL_TRIM_FILE:
    case NCL_RESET:
    case NCL_SYNC_DONE:
        return on_trim(sv, c, h, &cur, err);
    case NCL_READ:
        return on_read(sv, c, h->req, &cur, err);
    case NCL_STATS:
        return on_stats(sv, c, h->req);
    default:
        return rt_err_set(err, EPROTO, "a %s frame is not a request", ncl_type_name(h->type));
    }
}

static bool backlogged(const ncl_server *sv, const conn *c)
{
    return c->out_len - c->out_off > 2 * (size_t)sv->o.max_frame;
}

/* Decode and handle the whole frames in c->in. Returns 0 or negative (close). */
static int process_input(ncl_server *sv, conn *c, rt_err *err)
{
    size_t off = 0;
    int rc = 0;
    /* Replies waiting to be sent bound the work: a client that sends requests (a READ can
     * ask for a whole frame) without reading replies is served no further until it does. */
    while (c->in_len - off >= NCL_HDR_SIZE && !backlogged(sv, c)) {
        ncl_hdr h;
        if ((rc = ncl_hdr_decode(c->in + off, sv->o.max_frame, &h, err)) < 0)
            break;
        if (c->in_len - off < NCL_HDR_SIZE + (size_t)h.len)
            break; /* wait for the rest */
        const unsigned char *pay = c->in + off + NCL_HDR_SIZE;
        if ((rc = ncl_frame_verify(c->in + off, pay, h.len, err)) < 0)
            break;
        sv->frames++;
        if ((rc = handle(sv, c, &h, pay, err)) < 0)
            break;
        off += NCL_HDR_SIZE + h.len;
    }
    if (rc < 0) {
        sv->bad_frames++;
        return rc;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    return 0;
}

/* ---- the loop ------------------------------------------------------------------------ */

static void conn_arm(ncl_server *sv, conn *c)
{
    bool want_send = c->out_off < c->out_len;
    bool backlog = backlogged(sv, c);
    short pe = sv->o.transport->events(c->s, want_send);
    uint32_t ev = (backlog ? 0 : ((pe & POLLIN) ? EPOLLIN : 0)) | ((pe & POLLOUT) ? EPOLLOUT : 0);
    if (ev != c->events) {
        struct epoll_event e = {.events = ev, .data.ptr = c};
        epoll_ctl(sv->ep, EPOLL_CTL_MOD, sv->o.transport->fd(c->s), &e);
        c->events = ev;
    }
}

static int flush_out(ncl_server *sv, conn *c)
{
    while (c->out_off < c->out_len) {
        struct iovec iov = {c->out + c->out_off, c->out_len - c->out_off};
        ssize_t n = sv->o.transport->sendv(c->s, &iov, 1);
        if (n == -EAGAIN)
            break;
        if (n < 0)
            return (int)n;
        c->out_off += (size_t)n;
    }
    return 0;
}

/* Make room to read into c->in (up to one whole frame); 0, or -ENOMEM / -ENOBUFS. */
static int in_space(ncl_server *sv, conn *c)
{
    size_t frame_max = NCL_HDR_SIZE + (size_t)sv->o.max_frame;
    if (c->in_cap - c->in_len < 65536 && c->in_cap < frame_max) {
        size_t nc = c->in_cap ? c->in_cap * 2 : 65536;
        if (nc > frame_max)
            nc = frame_max;
        unsigned char *n = realloc(c->in, nc);
        if (!n)
            return -ENOMEM;
        c->in = n;
        c->in_cap = nc;
    }
    /* Full can only mean a frame bigger than the maximum, which the header check refuses
     * first; kept as a guard. */
    return c->in_len < c->in_cap ? 0 : -ENOBUFS;
}

static void on_readable(ncl_server *sv, conn *c)
{
    rt_err err = {0};
    for (;;) {
        int rc = in_space(sv, c);
        if (rc < 0) {
            conn_free(sv, c, strerror(-rc));
            return;
        }
        ssize_t n = sv->o.transport->recv(c->s, c->in + c->in_len, c->in_cap - c->in_len);
        if (n == -EAGAIN)
            break;
        if (n == 0) {
            if (c->in_len > 0)
                rt_log(sv->lg, RT_LOG_WARN, "%s closed mid-frame (%zu bytes pending)",
                       peer_name(sv, c), c->in_len);
            conn_free(sv, c, NULL);
            return;
        }
        if (n < 0) {
            conn_free(sv, c, strerror((int)-n));
            return;
        }
        c->in_len += (size_t)n;
        if (process_input(sv, c, &err) < 0) {
            conn_free(sv, c, err.msg);
            return;
        }
        if (backlogged(sv, c))
            break; /* the client is not reading its replies: stop reading its requests */
    }
    int rc = flush_out(sv, c);
    if (rc < 0) {
        conn_free(sv, c, strerror(-rc));
        return;
    }
    conn_arm(sv, c);
}

/* Replies drained: send more, and handle requests held back while the client was not
 * reading (see process_input). */
static void on_writable(ncl_server *sv, conn *c)
{
    rt_err err = {0};
    for (;;) {
        int rc = flush_out(sv, c);
        if (rc < 0)
            return conn_free(sv, c, strerror(-rc));
        if (backlogged(sv, c) || c->in_len < NCL_HDR_SIZE)
            break;
        size_t before = c->in_len;
        if (process_input(sv, c, &err) < 0)
            return conn_free(sv, c, err.msg);
        if (c->in_len == before)
            break; /* only part of a frame is buffered */
    }
    conn_arm(sv, c);
}

static void on_accept(ncl_server *sv)
{
    for (;;) {
        rt_err err = {0};
        ncl_stream *s = sv->o.transport->accept(sv->lis, &err);
        if (!s) {
            if (err.code != EAGAIN && err.code != EWOULDBLOCK)
                rt_log(sv->lg, RT_LOG_WARN, "accept: %s", err.msg);
            return;
        }
        if (sv->nconns >= sv->o.max_conns) {
            rt_log(sv->lg, RT_LOG_WARN, "refusing %s: %d connections already",
                   sv->o.transport->peer_name(s), sv->nconns);
            sv->o.transport->close(s);
            sv->refused_conns++;
            continue;
        }
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            sv->o.transport->close(s);
            continue;
        }
        c->s = s;
        c->events = EPOLLIN;
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(sv->ep, EPOLL_CTL_ADD, sv->o.transport->fd(s), &e) != 0) {
            sv->o.transport->close(s);
            free(c);
            continue;
        }
        c->next = sv->conns;
        if (sv->conns)
            sv->conns->prev = c;
        sv->conns = c;
        sv->nconns++;
        sv->accepted++;
        rt_log(sv->lg, RT_LOG_DEBUG, "connection from %s", sv->o.transport->peer_name(s));
    }
}

ncl_server *ncl_server_new(const ncl_server_opts *o, rt_logger *lg, rt_err *err)
{
    ncl_server *sv = calloc(1, sizeof *sv);
    if (!sv) {
        rt_err_set(err, ENOMEM, "out of memory");
        return NULL;
    }
    sv->o = *o;
    sv->lg = lg;
    sv->started_ns = rt_now_ns();
    ncl_store_init(&sv->st, o->capacity);
    sv->lis = o->transport->listen(o->host, o->port, err);
    if (!sv->lis) {
        free(sv);
        return NULL;
    }
    sv->ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = LISTENER_TAG};
    if (sv->ep < 0 || epoll_ctl(sv->ep, EPOLL_CTL_ADD, o->transport->listener_fd(sv->lis), &e)) {
        rt_err_sys(err, "epoll");
        o->transport->listener_close(sv->lis);
        free(sv);
        return NULL;
    }
    return sv;
}

int ncl_server_port(ncl_server *sv) { return sv->o.transport->listener_port(sv->lis); }

int ncl_server_run(ncl_server *sv, int signal_fd)
{
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = SIGNAL_TAG};
    if (signal_fd >= 0)
        epoll_ctl(sv->ep, EPOLL_CTL_ADD, signal_fd, &e);
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(sv->ep, evs, 64, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rt_log(sv->lg, RT_LOG_ERROR, "epoll_wait: %s", strerror(errno));
            return -1;
        }
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (tag == LISTENER_TAG) {
                on_accept(sv);
            } else if (tag == SIGNAL_TAG) {
                /* A signalfd (the daemon) or an eventfd (tests running servers in threads). */
                struct signalfd_siginfo si;
                ssize_t r = read(signal_fd, &si, sizeof si);
                if (r == (ssize_t)sizeof si)
                    rt_log(sv->lg, RT_LOG_INFO, "signal %u: shutting down", si.ssi_signo);
                if (r > 0)
                    return 0;
            } else {
                conn *c = tag;
                if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                    on_readable(sv, c); /* may free c */
                } else if (evs[i].events & EPOLLOUT) {
                    on_writable(sv, c); /* may free c */
                }
            }
        }
    }
}

void ncl_server_free(ncl_server *sv)
{
    for (conn *c = sv->conns, *nx; c; c = nx) {
        nx = c->next;
        conn_free(sv, c, NULL);
    }
    if (sv->lis)
        sv->o.transport->listener_close(sv->lis);
    if (sv->ep >= 0)
        close(sv->ep);
    ncl_store_free(&sv->st);
    free(sv);
}

/* ---- detached use, for the fuzzer and tests ---------------------------------------------- */

ncl_server *ncl_server_detached(const ncl_server_opts *o, rt_logger *lg)
{
    ncl_server *sv = calloc(1, sizeof *sv);
    if (!sv)
        return NULL;
    sv->o = *o;
    sv->lg = lg;
    sv->ep = -1;
    sv->started_ns = rt_now_ns();
    ncl_store_init(&sv->st, o->capacity);
    return sv;
}

ncl_conn *ncl_server_conn_new(ncl_server *sv)
{
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->next = sv->conns;
    if (sv->conns)
        sv->conns->prev = c;
    sv->conns = c;
    sv->nconns++;
    return c;
}

int ncl_server_conn_feed(ncl_server *sv, ncl_conn *c, const void *data, size_t len, rt_err *err)
{
    const unsigned char *p = data;
    while (len > 0) {
        int rc = in_space(sv, c);
        if (rc < 0)
            return rt_err_set(err, -rc, "input buffer");
        size_t n = c->in_cap - c->in_len < len ? c->in_cap - c->in_len : len;
        memcpy(c->in + c->in_len, p, n);
        c->in_len += n;
        p += n;
        len -= n;
        if ((rc = process_input(sv, c, err)) < 0)
            return rc;
        c->out_off = c->out_len = 0; /* replies are dropped */
    }
    return 0;
}

const ncl_store *ncl_server_store(const ncl_server *sv) { return &sv->st; }
