/* io.c: the client session's engine: the log ring, frames and queues, peers (catch-up,
 * sending, replies), the quorum, and the I/O and connector threads (see session.h). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "session.h"

const char *const cl_state_names[3] = {"down", "syncing", "live"};

lrec *cl_rec_at(ncl_client *c, uint64_t seq)
{
    return &c->ring[(c->head + (size_t)(seq - c->start)) % c->cap];
}

int cl_log_grow(ncl_client *c, size_t more)
{
    size_t held = (size_t)(c->next - c->start);
    if (held + more <= c->cap)
        return 0;
    size_t nc = c->cap ? c->cap : 1024;
    while (nc < held + more)
        nc *= 2;
    lrec *n = malloc(nc * sizeof *n);
    if (!n)
        return -ENOMEM;
    for (size_t i = 0; c->cap && i < held; i++)
        n[i] = c->ring[(c->head + i) % c->cap];
    free(c->ring);
    c->ring = n;
    c->cap = nc;
    c->head = 0;
    return 0;
}

void cl_log_drop_front(ncl_client *c)
{
    lrec *r = cl_rec_at(c, c->start);
    c->log_bytes -= r->size;
    free(r->enc);
    r->enc = NULL;
    c->head = (c->head + 1) % c->cap;
    c->start++;
}

/* ---- frames and queues -------------------------------------------------------------- */

static int out_push(peer *p, unsigned char *buf, size_t len)
{
    if (p->out_n == p->out_cap) {
        size_t nc = p->out_cap ? p->out_cap * 2 : 16;
        frame *n = realloc(p->outq, nc * sizeof *n);
        if (!n)
            return -ENOMEM;
        p->outq = n;
        p->out_cap = nc;
    }
    p->outq[p->out_n++] = (frame){buf, len};
    return 0;
}

static int pend_push(peer *p, pend e)
{
    if (p->pq_n == p->pq_cap) {
        size_t nc = p->pq_cap ? p->pq_cap * 2 : 16;
        pend *n = malloc(nc * sizeof *n);
        if (!n)
            return -ENOMEM;
        for (size_t i = 0; i < p->pq_n; i++)
            n[i] = p->pq[(p->pq_head + i) % p->pq_cap];
        free(p->pq);
        p->pq = n;
        p->pq_cap = nc;
        p->pq_head = 0;
    }
    p->pq[(p->pq_head + p->pq_n++) % p->pq_cap] = e;
    return 0;
}

/* Queue a request frame to p: header, fixed fields, then optional records. */
static int queue_req(ncl_client *c, peer *p, uint8_t type, uint8_t flags, const unsigned char *fix,
                     size_t fixlen, uint64_t first, uint64_t end, uint64_t mark)
{
    size_t recs = 0;
    for (uint64_t s = first; s < end; s++)
        recs += cl_rec_at(c, s)->size;
    size_t len = NCL_HDR_SIZE + fixlen + recs;
    unsigned char *buf = malloc(len);
    if (!buf)
        return -ENOMEM;
    memcpy(buf + NCL_HDR_SIZE, fix, fixlen);
    size_t off = NCL_HDR_SIZE + fixlen;
    for (uint64_t s = first; s < end; s++) {
        lrec *r = cl_rec_at(c, s);
        memcpy(buf + off, r->enc, r->size);
        off += r->size;
    }
    uint64_t req = ++c->req;
    struct iovec iov = {buf + NCL_HDR_SIZE, fixlen + recs};
    ncl_hdr_encode(buf, type, flags, req, &iov, 1);
    /* The pending entry first: a frame is never queued without one (or freed while queued). */
    if (pend_push(p, (pend){.req = req,
                            .gen = p->gen,
                            .mark = mark,
                            .sent_ns = rt_now_ns(),
                            .bytes = len,
                            .type = type}) < 0) {
        free(buf);
        return -ENOMEM;
    }
    if (out_push(p, buf, len) < 0) {
        p->pq_n--; /* the entry just pushed */
        free(buf);
        return -ENOMEM;
    }
    p->inflight_bytes += len;
    c->frames_sent++;
    return 0;
}

static int queue_u64s(ncl_client *c, peer *p, uint8_t type, uint8_t flags, const uint64_t *v, int n,
                      uint64_t mark)
{
    unsigned char fix[40];
    unsigned char *q = fix;
    for (int i = 0; i < n; i++)
        q = ncl_put_u64(q, v[i]);
    return queue_req(c, p, type, flags, fix, (size_t)(q - fix), 0, 0, mark);
}

/* ---- peers --------------------------------------------------------------------------- */

/* Something a waiting committer looks at changed: wake the sleepers and the reader. */
static void notify(ncl_client *c)
{
    pthread_cond_broadcast(&c->cv);
    if (c->reader) {
        uint64_t one = 1;
        ssize_t w = write(c->reader_fd, &one, sizeof one);
        (void)w;
    }
}

void cl_peer_reset_io(peer *p)
{
    for (size_t i = 0; i < p->out_n; i++)
        free(p->outq[i].buf);
    p->out_n = p->out_off = 0;
    p->pq_n = p->pq_head = 0;
    p->in_len = 0;
    p->inflight_bytes = 0;
    p->appends_in_flight = 0;
}

static void peer_down(ncl_client *c, peer *p, const char *why)
{
    if (p->s) {
        c->cfg.transport->close(p->s);
        p->s = NULL;
    }
    if (why)
        snprintf(p->last_error, sizeof p->last_error, "%s", why);
    cl_peer_reset_io(p);
    p->state = P_DOWN;
    p->acked = 0;
    p->full = false;
    p->gen++;
    uint64_t now = rt_now_ns();
    p->backoff = p->backoff ? p->backoff : RETRY_MIN_NS;
    p->retry_at = now + p->backoff;
    p->backoff = p->backoff * 2 > RETRY_MAX_NS ? RETRY_MAX_NS : p->backoff * 2;
    pthread_cond_broadcast(&c->cv_conn);
    notify(c); /* commits re-check whether a majority is still possible */
}

/* A freshly connected peer: introduce ourselves, then rebuild its log from ours in a
 * shadow (see the notes at the top). */
static void peer_start_sync(ncl_client *c, peer *p, ncl_stream *s)
{
    p->s = s;
    p->state = P_SYNC;
    p->gen++;
    p->sent = c->start;
    p->sync_until = c->next;
    p->sync_done_queued = false;
    p->ctl_sent = p->sync_mark = c->ctl_next;
    p->reconnects++;
    unsigned char hello[10 + NCL_ID_MAX];
    size_t idlen = strlen(c->cfg.id);
    unsigned char *q = ncl_put_u64(hello, c->epoch);
    q = ncl_put_u8(q, NCL_HELLO_REJOIN);
    q = ncl_put_u8(q, (uint8_t)idlen);
    memcpy(q, c->cfg.id, idlen);
    uint64_t v[2] = {c->epoch, c->start};
    if (queue_req(c, p, NCL_HELLO, 0, hello, 10 + idlen, 0, 0, 0) < 0 ||
        queue_u64s(c, p, NCL_RESET, NCL_RESET_SHADOW, v, 2, 0) < 0)
        peer_down(c, p, "out of memory");
}

/* Queue what p should get next: control ops first (so a TRIM precedes the APPENDs that
 * start past it), then records, then SYNC_DONE once a syncing peer has everything. */
static void peer_fill(ncl_client *c, peer *p, uint64_t now)
{
    if (p->state == P_DOWN)
        return;
    while (p->ctl_sent < c->ctl_next) {
        const ctl_op *op = &c->ops[c->ops_n - (size_t)(c->ctl_next - p->ctl_sent)];
        uint64_t v[4] = {c->epoch, op->dev, op->ino, op->a};
        int rc = op->type == NCL_TRIM
                     ? queue_u64s(c, p, NCL_TRIM, 0, (uint64_t[]){c->epoch, op->a}, 2, op->id)
                     : queue_u64s(c, p, NCL_TRIM_FILE, 0, v, 4, op->id);
        if (rc < 0)
            return peer_down(c, p, "out of memory");
        p->ctl_sent++;
    }
    if (p->sent < c->start)
        p->sent = c->start; /* trimmed meanwhile: the TRIM just queued moves the peer there */
    int max_appends = p->state == P_LIVE ? LIVE_APPENDS_IN_FLIGHT : 1 << 20;
    while (p->sent < c->next && p->inflight_bytes < WINDOW_BYTES &&
           p->appends_in_flight < max_appends && now >= p->send_after) {
        uint64_t end = p->sent;
        size_t bytes = 0;
        uint32_t limit = c->cfg.max_frame - 64 < BATCH_MAX ? c->cfg.max_frame - 64 : BATCH_MAX;
        while (end < c->next && (end == p->sent || bytes + cl_rec_at(c, end)->size <= limit))
            bytes += cl_rec_at(c, end++)->size;
        unsigned char fix[APPEND_HDR];
        unsigned char *q = ncl_put_u64(fix, c->epoch);
        q = ncl_put_u64(q, p->sent);
        ncl_put_u32(q, (uint32_t)(end - p->sent));
        if (queue_req(c, p, NCL_APPEND, 0, fix, sizeof fix, p->sent, end, end) < 0)
            return peer_down(c, p, "out of memory");
        p->appends_in_flight++;
        p->sent = end;
    }
    if (p->state == P_SYNC && !p->sync_done_queued && p->sent >= p->sync_until) {
        /* The peer swaps its shadow in only if it holds everything sent so far; if an
         * APPEND before this failed (FULL), SYNC_DONE gets GAP and is sent again later. */
        uint64_t v[2] = {c->epoch, p->sent};
        if (queue_u64s(c, p, NCL_SYNC_DONE, 0, v, 2, p->sync_mark) < 0)
            return peer_down(c, p, "out of memory");
        p->sync_done_queued = true;
    }
}

/* Write queued frames until the stream takes no more. */
static void peer_flush(ncl_client *c, peer *p)
{
    while (p->out_n > 0 && p->s) {
        struct iovec iov[16];
        int n = 0;
        for (size_t i = 0; i < p->out_n && n < 16; i++, n++) {
            size_t off = i == 0 ? p->out_off : 0;
            iov[n] = (struct iovec){p->outq[i].buf + off, p->outq[i].len - off};
        }
        ssize_t w = c->cfg.transport->sendv(p->s, iov, n);
        if (w == -EAGAIN)
            return;
        if (w < 0) {
            char why[96];
            snprintf(why, sizeof why, "send: %s", strerror((int)-w));
            return peer_down(c, p, why);
        }
        size_t left = (size_t)w;
        while (left > 0 && p->out_n > 0) {
            size_t rest = p->outq[0].len - p->out_off;
            if (left < rest) {
                p->out_off += left;
                break;
            }
            left -= rest;
            free(p->outq[0].buf);
            memmove(p->outq, p->outq + 1, (p->out_n - 1) * sizeof *p->outq);
            p->out_n--;
            p->out_off = 0;
        }
    }
}

void cl_pump(ncl_client *c)
{
    uint64_t now = rt_now_ns();
    for (int i = 0; i < c->npeers; i++) {
        peer_fill(c, &c->peers[i], now);
        peer_flush(c, &c->peers[i]);
    }
}

/* ---- the quorum -------------------------------------------------------------------------- */

/* The m-th largest of the values of live peers, or 0 when fewer than m are live. */
static uint64_t mth_largest(ncl_client *c, bool ctl)
{
    uint64_t v[RT_HOSTS_MAX];
    int n = 0;
    for (int i = 0; i < c->npeers; i++)
        if (c->peers[i].state == P_LIVE)
            v[n++] = ctl ? c->peers[i].ctl_acked : c->peers[i].acked;
    if (n < c->majority)
        return 0;
    for (int i = 1; i < n; i++) /* insertion sort, descending: n <= 16 */
        for (int j = i; j > 0 && v[j] > v[j - 1]; j--) {
            uint64_t t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v[c->majority - 1];
}

static void quorum_update(ncl_client *c)
{
    uint64_t m = mth_largest(c, false);
    uint64_t k = mth_largest(c, true);
    bool changed = false;
    if (m > c->committed) {
        c->committed = m;
        changed = true;
    }
    if (k > c->ctl_done) {
        c->ctl_done = k;
        changed = true;
    }
    if (changed)
        notify(c);
    /* Control ops every connected peer has been sent are history. */
    uint64_t low = c->ctl_next;
    for (int i = 0; i < c->npeers; i++)
        if (c->peers[i].state != P_DOWN && c->peers[i].ctl_sent < low)
            low = c->peers[i].ctl_sent;
    size_t keep = (size_t)(c->ctl_next - low);
    if (keep < c->ops_n) {
        memmove(c->ops, c->ops + (c->ops_n - keep), keep * sizeof *c->ops);
        c->ops_n = keep;
    }
}

int cl_full_peers(ncl_client *c)
{
    int n = 0;
    for (int i = 0; i < c->npeers; i++)
        n += c->peers[i].full;
    return n;
}

/* ---- replies ------------------------------------------------------------------------ */

static void on_fenced(ncl_client *c, peer *p, uint64_t epoch)
{
    c->fenced = true;
    c->fenced_by = epoch;
    peer_down(c, p, "fenced by a newer incarnation");
    notify(c);
}

static void on_reply(ncl_client *c, peer *p, const ncl_hdr *h, const unsigned char *pay)
{
    if (p->pq_n == 0 || p->pq[p->pq_head].req != h->req)
        return peer_down(c, p, "reply out of order");
    pend e = p->pq[p->pq_head];
    p->pq_head = (p->pq_head + 1) % p->pq_cap;
    p->pq_n--;
    p->inflight_bytes -= e.bytes;
    if (e.type == NCL_APPEND)
        p->appends_in_flight--;
    ncl_cur cur = ncl_cur_make(pay, h->len);
    uint64_t a = 0, b = 0, d = 0;
    bool ok = ncl_get_u64(&cur, &a);
    if (h->type == NCL_R_FENCED)
        return on_fenced(c, p, a);
    bool stale = e.gen != p->gen;
    switch (e.type) {
    case NCL_HELLO:
        if (h->type == NCL_R_FULL)
            return peer_down(c, p, "peer full: cannot hold another client");
        if (ok && ncl_get_u64(&cur, &b) && ncl_get_u64(&cur, &b) && ncl_get_u64(&cur, &d) &&
            ncl_get_u64(&cur, &b)) {
            p->used = d;
            p->capacity = b;
        }
        return;
    case NCL_RESET:
        if (h->type != NCL_R_OK)
            return peer_down(c, p, "peer full: cannot start a catch-up");
        return;
    case NCL_SYNC_DONE:
        if (!ok || stale)
            return;
        if (h->type != NCL_R_OK) { /* GAP: the shadow misses records; resend from there */
            p->gen++;
            p->sync_done_queued = false;
            p->acked = a;
            p->sent = a < c->start ? c->start : a;
            return;
        }
        if (!ncl_get_u64(&cur, &b))
            return;
        p->state = P_LIVE;
        p->acked = b;
        p->full = false;
        p->catch_ups++;
        p->backoff = 0;
        if (e.mark > p->ctl_acked)
            p->ctl_acked = e.mark;
        p->last_error[0] = '\0';
        return quorum_update(c);
    case NCL_TRIM:
    case NCL_TRIM_FILE:
        if (e.mark > p->ctl_acked)
            p->ctl_acked = e.mark;
        p->full = false; /* a trim frees room: try sending again */
        p->send_after = 0;
        return quorum_update(c);
    case NCL_APPEND:
        if (!ok || stale)
            return;
        if (h->type == NCL_R_OK) {
            if (a > p->acked) /* a syncing peer's progress in its shadow: not counted yet */
                p->acked = a;
            p->full = false;
            return quorum_update(c);
        }
        /* GAP or FULL: the peer holds everything below a; resend from there. */
        if (h->type == NCL_R_FULL) {
            p->full = true;
            p->full_replies++;
            p->send_after = rt_now_ns() + FULL_BACKOFF_NS;
            if (ncl_get_u64(&cur, &d) && ncl_get_u64(&cur, &b)) {
                p->used = d;
                p->capacity = b;
            }
            notify(c);
        }
        p->gen++;
        p->sync_done_queued = false; /* one queued after the failed APPEND will get GAP */
        if (a > p->acked)
            p->acked = a;
        p->sent = a < c->start ? c->start : a;
        return quorum_update(c);
    default:
        return;
    }
}

/* Read what the stream has and dispatch whole frames. */
static void peer_read(ncl_client *c, peer *p)
{
    for (;;) {
        if (p->in_cap - p->in_len < 4096) {
            size_t nc = p->in_cap ? p->in_cap * 2 : 65536;
            unsigned char *n = realloc(p->in, nc);
            if (!n)
                return peer_down(c, p, "out of memory");
            p->in = n;
            p->in_cap = nc;
        }
        ssize_t n = c->cfg.transport->recv(p->s, p->in + p->in_len, p->in_cap - p->in_len);
        if (n == -EAGAIN)
            return;
        if (n <= 0) {
            char why[96];
            snprintf(why, sizeof why, "%s", n == 0 ? "connection closed" : strerror((int)-n));
            return peer_down(c, p, why);
        }
        p->in_len += (size_t)n;
        size_t off = 0;
        while (p->in_len - off >= NCL_HDR_SIZE) {
            ncl_hdr h;
            rt_err e;
            if (ncl_hdr_decode(p->in + off, 1u << 24, &h, &e) < 0)
                return peer_down(c, p, e.msg);
            if (p->in_len - off < NCL_HDR_SIZE + (size_t)h.len)
                break;
            if (ncl_frame_verify(p->in + off, p->in + off + NCL_HDR_SIZE, h.len, &e) < 0)
                return peer_down(c, p, e.msg);
            uint64_t gen = p->gen;
            on_reply(c, p, &h, p->in + off + NCL_HDR_SIZE);
            if (p->state == P_DOWN && gen != p->gen && !p->s)
                return; /* the reply took the peer down; its buffers are reset */
            off += NCL_HDR_SIZE + h.len;
        }
        memmove(p->in, p->in + off, p->in_len - off);
        p->in_len -= off;
    }
}

/* ---- threads --------------------------------------------------------------------------- */

void cl_wake_io(ncl_client *c)
{
    uint64_t one = 1;
    ssize_t w = write(c->wake_fd, &one, sizeof one);
    (void)w;
}

/* A peer that has not answered its oldest request within the timeout is treated as dead:
 * its connection is dropped and the connector retries (a peer cut off by the network gives
 * no error, only silence). */
static void check_stalls(ncl_client *c)
{
    uint64_t now = rt_now_ns();
    for (int i = 0; i < c->npeers; i++) {
        peer *p = &c->peers[i];
        if (p->s && p->pq_n > 0 && now - p->pq[p->pq_head].sent_ns > c->cfg.timeout_ns) {
            char why[96];
            snprintf(why, sizeof why, "no reply within %llu ms",
                     (unsigned long long)(c->cfg.timeout_ns / RT_MS));
            peer_down(c, p, why);
        }
    }
}

/* One round of polling (mu held, released while waiting): wait up to wait_ns for the
 * peers' streams (when peers_too) and for the eventfd `wake` (unless -1), busy-polling for
 * the first spin_ns of it, then read and flush what is ready. */
void cl_poll_round(ncl_client *c, bool peers_too, int wake, uint64_t wait_ns, uint64_t spin_ns)
{
    struct pollfd pf[RT_HOSTS_MAX + 1];
    int map[RT_HOSTS_MAX + 1];
    int n = 0;
    if (wake >= 0) {
        pf[n] = (struct pollfd){.fd = wake, .events = POLLIN};
        map[n++] = -1;
    }
    for (int i = 0; peers_too && i < c->npeers; i++) {
        peer *p = &c->peers[i];
        if (!p->s)
            continue;
        pf[n] = (struct pollfd){.fd = c->cfg.transport->fd(p->s),
                                .events = c->cfg.transport->events(p->s, p->out_n > 0)};
        map[n++] = i;
    }
    pthread_mutex_unlock(&c->mu);
    /* Spinning happens without the mutex, so it never starves the threads that need it. */
    int ready = 0;
    if (spin_ns > 0) {
        uint64_t until = rt_now_ns() + spin_ns;
        while ((ready = poll(pf, (nfds_t)n, 0)) == 0 && rt_now_ns() < until) {
        }
        wait_ns = wait_ns > spin_ns ? wait_ns - spin_ns : 0;
    }
    if (ready == 0)
        ready = poll(pf, (nfds_t)n, (int)((wait_ns + RT_MS - 1) / RT_MS));
    pthread_mutex_lock(&c->mu);
    for (int k = 0; ready > 0 && k < n; k++) {
        if (!pf[k].revents)
            continue;
        if (map[k] < 0) {
            uint64_t v;
            ssize_t r = read(wake, &v, sizeof v);
            (void)r;
            continue;
        }
        peer *p = &c->peers[map[k]];
        if (!p->s || c->cfg.transport->fd(p->s) != pf[k].fd)
            continue; /* went down meanwhile */
        if (pf[k].revents & (POLLIN | POLLERR | POLLHUP))
            peer_read(c, p);
        if (p->s && (pf[k].revents & POLLOUT))
            peer_flush(c, p);
    }
}

void *cl_io_main(void *arg)
{
    ncl_client *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        for (int i = 0; i < c->npeers; i++) {
            peer *p = &c->peers[i];
            if (p->handoff) {
                ncl_stream *s = p->handoff;
                p->handoff = NULL;
                if (c->fenced)
                    c->cfg.transport->close(s);
                else
                    peer_start_sync(c, p, s);
            }
        }
        cl_pump(c);
        quorum_update(c);
        check_stalls(c);
        uint64_t now = rt_now_ns(), wait_ns = 100 * RT_MS;
        if (c->cfg.timeout_ns / 4 < wait_ns)
            wait_ns = c->cfg.timeout_ns / 4 > RT_MS ? c->cfg.timeout_ns / 4 : RT_MS;
        for (int i = 0; i < c->npeers; i++) {
            peer *p = &c->peers[i];
            if (p->s && p->send_after > now && p->sent < c->next && p->send_after - now < wait_ns)
                wait_ns = p->send_after - now;
        }
        /* While a committer reads the replies itself (see wait_quorum), stay off the
         * streams: only the wake fd and the timers. */
        cl_poll_round(c, !c->reader, c->wake_fd, wait_ns, 0);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

void *cl_connector_main(void *arg)
{
    ncl_client *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        uint64_t now = rt_now_ns(), next_try = now + RETRY_MAX_NS;
        for (int i = 0; i < c->npeers && !c->stop; i++) {
            peer *p = &c->peers[i];
            if (p->state != P_DOWN || p->s || p->handoff || c->fenced)
                continue;
            if (p->retry_at > now) {
                if (p->retry_at < next_try)
                    next_try = p->retry_at;
                continue;
            }
            p->connecting = true;
            rt_hostport addr = p->addr;
            pthread_mutex_unlock(&c->mu);
            rt_err e = {0};
            ncl_stream *s =
                c->cfg.transport->connect(addr.host, addr.port, c->cfg.connect_timeout_ms, &e);
            pthread_mutex_lock(&c->mu);
            p->connecting = false;
            now = rt_now_ns();
            if (s) {
                p->handoff = s;
                cl_wake_io(c);
            } else {
                snprintf(p->last_error, sizeof p->last_error, "%.150s", e.msg);
                p->backoff = p->backoff ? p->backoff : RETRY_MIN_NS;
                p->retry_at = now + p->backoff;
                p->backoff = p->backoff * 2 > RETRY_MAX_NS ? RETRY_MAX_NS : p->backoff * 2;
                if (p->retry_at < next_try)
                    next_try = p->retry_at;
            }
        }
        if (c->stop)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t wait = next_try > now ? next_try - now : RT_MS;
        uint64_t t = (uint64_t)ts.tv_nsec + wait;
        ts.tv_sec += (time_t)(t / RT_S);
        ts.tv_nsec = (long)(t % RT_S);
        pthread_cond_timedwait(&c->cv_conn, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}
