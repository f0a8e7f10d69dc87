/* client.c: the near-compute-log client session: replicated log, group commit,
 * background catch-up of peers.
 *
 * Sections: the log, frames and queues, peers (sync, send, replies), the quorum, the I/O
 * and connector threads, open/close, commit and trims, statistics.
 *
 * Threads. Committers append records under the session mutex, then push frames to every
 * peer directly from their own thread (no hop through another thread on the send path).
 * The first waiting committer then reads the replies itself (busy-polling briefly when it
 * is alone, see wait_quorum); the others sleep on a condition variable and are woken when
 * a majority holds their records. The I/O thread reads the replies when no committer does,
 * sends what the window held back, starts catch-ups and drops silent peers. The connector
 * thread (re)connects peers that are down, so a peer that does not answer never delays
 * the others; a reconnected peer is caught up before its acknowledgements count.
 *
 * Epochs. Opening claims a new epoch on a majority (a peer accepts a claim only above its
 * current epoch; the low bits of an epoch are random, so two incarnations starting at once
 * do not pick the same one); reconnects rejoin with the session's epoch. A peer takes
 * changes only from the newest connection of the newest epoch.
 *
 * Why catch-up goes through a shadow log on the peer. A reconnected peer missed records
 * and trims while it was away, so its log must be replaced by ours. Dropping its log first
 * (plain RESET) would be unsafe: if two peers were reset one after the other, a record
 * acknowledged earlier could be held by a single peer only, and a recovery that reads
 * another majority would miss it; the same holds for a tombstone that makes a record
 * obsolete. So the peer builds a shadow from our log (RESET with NCL_RESET_SHADOW, the
 * records, SYNC_DONE) while it keeps serving its old log, and swaps only when the shadow is
 * complete. Its acknowledgements count from then on.
 *
 * Invariants (checked by the tests): `committed` only grows, and seq < committed means a
 * majority of live peers acknowledged seq contiguously from our start; a peer counts toward
 * a majority only in state LIVE; every trim reaches a majority before ncl_trim returns.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "internal.h"

#define BATCH_MAX              (1u << 20)     /* bytes of records in one APPEND frame */
#define WINDOW_BYTES           (8u << 20)     /* bytes in flight to one peer */
#define LIVE_APPENDS_IN_FLIGHT 2              /* APPEND frames in flight to a live peer */
#define FULL_BACKOFF_NS        (20 * RT_MS)   /* pause after a FULL reply */
#define RETRY_MIN_NS           (50 * RT_MS)   /* reconnect back-off, doubling ... */
#define RETRY_MAX_NS           (1000 * RT_MS) /* ... up to this */
#define APPEND_HDR             20             /* epoch, first seq, count */

/* ---- the log ----------------------------------------------------------------------- */

typedef struct lrec {
    unsigned char *enc; /* the encoded record, as sent */
    uint32_t size;
} lrec;

typedef struct ctl_op {
    uint64_t id;
    uint8_t type; /* NCL_TRIM or NCL_TRIM_FILE */
    uint64_t a, dev, ino;
} ctl_op;

/* ---- frames and queues -------------------------------------------------------------- */

typedef struct frame {
    unsigned char *buf;
    size_t len;
} frame;

typedef struct pend {
    uint64_t req, gen, mark;
    uint64_t sent_ns; /* when queued: a peer silent for longer than the timeout is down */
    size_t bytes;
    uint8_t type;
} pend;

enum { P_DOWN, P_SYNC, P_LIVE };
static const char *const state_names[] = {"down", "syncing", "live"};

typedef struct peer {
    rt_hostport addr;
    ncl_stream *s;
    ncl_stream *handoff; /* connected by the connector, not yet taken by the I/O thread */
    int state;
    bool connecting, sync_done_queued, full;
    uint64_t acked;      /* the peer's next as acknowledged (counts in P_LIVE) */
    uint64_t sent;       /* next seq to send */
    uint64_t sync_until; /* P_SYNC: SYNC_DONE after the records below this */
    uint64_t sync_mark;  /* ctl ops covered by the sync */
    uint64_t ctl_sent, ctl_acked;
    uint64_t gen; /* replies to requests of an older generation are stale */
    uint64_t inflight_bytes;
    int appends_in_flight;
    uint64_t retry_at, backoff, send_after;
    frame *outq;
    size_t out_n, out_cap, out_off; /* out_off: bytes of outq[0] already sent */
    pend *pq;
    size_t pq_head, pq_n, pq_cap;
    unsigned char *in;
    size_t in_len, in_cap;
    uint64_t used, capacity;
    uint64_t reconnects, catch_ups, full_replies;
    char last_error[160];
} peer;

struct ncl_client {
    ncl_config cfg;
    uint64_t epoch;
    int npeers, majority;
    peer peers[RT_HOSTS_MAX];
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* commits and trims wait here */
    pthread_cond_t cv_conn; /* the connector waits here */
    lrec *ring;
    size_t head, cap;
    uint64_t start, next, committed, log_bytes;
    ctl_op *ops;
    size_t ops_n, ops_cap;
    uint64_t ctl_next, ctl_done; /* ops are numbered 1..ctl_next; ctl_done reached a majority */
    uint64_t req;
    int wake_fd;
    int reader_fd; /* wakes a committer that reads replies itself (see wait_quorum) */
    bool stop, fenced;
    bool reader;    /* a committer is reading the replies itself (wait_quorum) */
    int spin_score; /* how well busy-polling has paid lately (0..16) */
    unsigned spin_probe;
    int waiters; /* committers sleeping on cv */
    uint64_t fenced_by;
    pthread_t io, conn;
    rt_hist lat;
    uint64_t commits, commit_failures, records, bytes, frames_sent, trims;
};

static lrec *rec_at(ncl_client *c, uint64_t seq)
{
    return &c->ring[(c->head + (size_t)(seq - c->start)) % c->cap];
}

static int log_grow(ncl_client *c, size_t more)
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

static void log_drop_front(ncl_client *c)
{
    lrec *r = rec_at(c, c->start);
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
        recs += rec_at(c, s)->size;
    size_t len = NCL_HDR_SIZE + fixlen + recs;
    unsigned char *buf = malloc(len);
    if (!buf)
        return -ENOMEM;
    memcpy(buf + NCL_HDR_SIZE, fix, fixlen);
    size_t off = NCL_HDR_SIZE + fixlen;
    for (uint64_t s = first; s < end; s++) {
        lrec *r = rec_at(c, s);
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

static void peer_reset_io(peer *p)
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
    peer_reset_io(p);
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
        while (end < c->next && (end == p->sent || bytes + rec_at(c, end)->size <= limit))
            bytes += rec_at(c, end++)->size;
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

static void pump(ncl_client *c)
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

static bool commit_done(ncl_client *c, uint64_t seq) { return c->committed > seq; }
static bool ctl_is_done(ncl_client *c, uint64_t id) { return c->ctl_done >= id; }

static int full_peers(ncl_client *c)
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

static void wake_io(ncl_client *c)
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
static void poll_round(ncl_client *c, bool peers_too, int wake, uint64_t wait_ns, uint64_t spin_ns)
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

static void *io_main(void *arg)
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
        pump(c);
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
        poll_round(c, !c->reader, c->wake_fd, wait_ns, 0);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void *connector_main(void *arg)
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
                wake_io(c);
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

/* ---- open / close ------------------------------------------------------------------------ */

static int hello_payload(unsigned char *buf, uint64_t epoch, uint8_t flags, const char *id)
{
    size_t idlen = strlen(id);
    unsigned char *q = ncl_put_u64(buf, epoch);
    q = ncl_put_u8(q, flags);
    q = ncl_put_u8(q, (uint8_t)idlen);
    memcpy(q, id, idlen); /* NOLINT(bugprone-not-null-terminated-result): length-prefixed */
    return (int)(10 + idlen);
}

/* Send one request to every connected probe; return how many answered OK (fenced: -1). */
static int rpc_all(const ncl_config *cfg, probe *pr, int n, uint8_t type, uint8_t flags,
                   const unsigned char *pay, size_t len, bool *fenced)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        if (!pr[i].s)
            continue;
        unsigned char *rep;
        size_t rlen;
        rt_err e;
        int rc = ncl_rpc(cfg->transport, pr[i].s, type, flags, pay, len,
                         (int)(cfg->timeout_ns / RT_MS), &rep, &rlen, &e);
        if (rc < 0) {
            snprintf(pr[i].err, sizeof pr[i].err, "%.190s", e.msg);
            cfg->transport->close(pr[i].s);
            pr[i].s = NULL;
            continue;
        }
        ncl_cur cur = ncl_cur_make(rep, rlen);
        uint64_t skip;
        if (type == NCL_HELLO &&
            !(ncl_get_u64(&cur, &pr[i].epoch) && ncl_get_u64(&cur, &pr[i].start) &&
              ncl_get_u64(&cur, &pr[i].next) && ncl_get_u64(&cur, &skip) &&
              ncl_get_u64(&cur, &skip) && ncl_get_u64(&cur, &pr[i].owner)))
            rc = -EPROTO;
        free(rep);
        if (rc == -EPROTO)
            snprintf(pr[i].err, sizeof pr[i].err, "malformed %s reply", ncl_type_name(type));
        else if (rc == NCL_R_FENCED)
            *fenced = true;
        else if (rc == NCL_R_OK)
            ok++;
        else
            snprintf(pr[i].err, sizeof pr[i].err, "%s refused: %s", ncl_type_name(type),
                     ncl_type_name(rc));
    }
    return ok;
}

void ncl_probes_close(const ncl_config *cfg, probe *pr, int n)
{
    for (int i = 0; i < n; i++)
        if (pr[i].s)
            cfg->transport->close(pr[i].s);
}

/* A new epoch above `seen`: the high bits count incarnations, the low 24 are random, so
 * two incarnations that start at the same moment do not pick the same epoch (and a peer
 * accepts a claim only above its current epoch, so at most one of them can win a majority
 * even then). */
static uint64_t next_epoch(uint64_t seen)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
        r = (uint32_t)(rt_now_ns() ^ ((uint64_t)getpid() << 16));
    r &= 0xffffff;
    return (((seen >> 24) + 1) << 24) | (r ? r : 1);
}

/* "peer a:1: error; peer b:2: error" for the peers that did not answer. */
static void describe_missing(const ncl_config *cfg, const probe *pr, int n, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < n && used < len; i++)
        if (!pr[i].s || pr[i].err[0]) {
            int w = snprintf(out + used, len - used, "%s%s:%u: %s", used ? "; " : "",
                             cfg->peers.v[i].host, cfg->peers.v[i].port,
                             pr[i].err[0] ? pr[i].err : "no answer");
            if (w < 0)
                break;
            used += (size_t)w;
        }
}

int ncl_fence(const ncl_config *cfg, probe *pr, uint64_t *epoch, uint64_t *owner, bool *dirty,
              rt_err *err)
{
    int n = (int)cfg->peers.n, m = ncl_majority(n);
    char why[600];
    unsigned char pay[10 + NCL_ID_MAX];
    memset(pr, 0, sizeof(probe) * (size_t)n);
    for (int i = 0; i < n; i++) {
        rt_err e;
        pr[i].s = cfg->transport->connect(cfg->peers.v[i].host, cfg->peers.v[i].port,
                                          cfg->connect_timeout_ms, &e);
        if (!pr[i].s)
            snprintf(pr[i].err, sizeof pr[i].err, "%.190s", e.msg);
    }
    bool fenced = false;
    int len = hello_payload(pay, 0, NCL_HELLO_QUERY, cfg->id);
    int ok = rpc_all(cfg, pr, n, NCL_HELLO, 0, pay, (size_t)len, &fenced);
    if (ok < m) {
        describe_missing(cfg, pr, n, why, sizeof why);
        ncl_probes_close(cfg, pr, n);
        return rt_err_set(err, EHOSTUNREACH,
                          "no majority of peers: %d of %d answered (need %d): %s", ok, n, m, why);
    }
    uint64_t max_epoch = 0;
    for (int i = 0; i < n; i++)
        if (pr[i].s && pr[i].epoch > max_epoch)
            max_epoch = pr[i].epoch;
    *epoch = next_epoch(max_epoch);
    len = hello_payload(pay, *epoch, 0, cfg->id);
    ok = rpc_all(cfg, pr, n, NCL_HELLO, 0, pay, (size_t)len, &fenced);
    if (fenced) {
        ncl_probes_close(cfg, pr, n);
        return rt_err_set(err, ESTALE, "another incarnation of '%s' raised the epoch meanwhile",
                          cfg->id);
    }
    if (ok < m) {
        describe_missing(cfg, pr, n, why, sizeof why);
        ncl_probes_close(cfg, pr, n);
        return rt_err_set(err, EHOSTUNREACH, "no majority accepted epoch %llu: %s",
                          (unsigned long long)*epoch, why);
    }
    /* What the peers hold, read after the claim: an older incarnation can commit nothing
     * more now, and whatever it had committed reached a majority, which shares a peer with
     * the majority that accepted the claim. Records left by the newest incarnation that
     * reached a majority are unrecovered; logs of older owners were superseded. */
    *owner = 0;
    for (int i = 0; i < n; i++)
        if (pr[i].s && pr[i].owner > *owner)
            *owner = pr[i].owner;
    *dirty = false;
    for (int i = 0; i < n; i++)
        if (pr[i].s && pr[i].owner == *owner && pr[i].next > pr[i].start)
            *dirty = true;
    return 0;
}

int ncl_reset_all(const ncl_config *cfg, probe *pr, uint64_t epoch, uint64_t at, rt_err *err)
{
    int n = (int)cfg->peers.n, m = ncl_majority(n);
    unsigned char pay[16];
    ncl_put_u64(ncl_put_u64(pay, epoch), at);
    bool fenced = false;
    int ok = rpc_all(cfg, pr, n, NCL_RESET, 0, pay, sizeof pay, &fenced);
    if (fenced)
        return rt_err_set(err, ESTALE, "fenced by a newer incarnation of '%s'", cfg->id);
    if (ok < m) {
        char why[600];
        describe_missing(cfg, pr, n, why, sizeof why);
        return rt_err_set(err, EHOSTUNREACH, "trim reached %d of %d peers (need %d): %s", ok, n, m,
                          why);
    }
    return 0;
}

ncl_client *ncl_open(const ncl_config *cfg, unsigned flags, rt_err *err)
{
    int n = (int)cfg->peers.n;
    if (n < 1 || n > RT_HOSTS_MAX || !ncl_id_valid(cfg->id, strlen(cfg->id))) {
        rt_err_set(err, EINVAL, "bad configuration: %d peers, id '%s'", n, cfg->id);
        return NULL;
    }
    probe pr[RT_HOSTS_MAX];
    uint64_t epoch = 0, owner = 0;
    bool dirty = false;
    if (ncl_fence(cfg, pr, &epoch, &owner, &dirty, err) < 0)
        return NULL;
    uint64_t start = 0;
    for (int i = 0; i < n; i++)
        if (pr[i].s && pr[i].next > start)
            start = pr[i].next; /* never reuse a sequence number */
    if (dirty && !(flags & NCL_OPEN_DISCARD)) {
        ncl_probes_close(cfg, pr, n);
        rt_err_set(err, ENOTEMPTY,
                   "the peers hold records of an earlier incarnation of '%s' that were never "
                   "recovered; recover them first (splitft recover --id %s)",
                   cfg->id, cfg->id);
        return NULL;
    }
    if (ncl_reset_all(cfg, pr, epoch, start, err) < 0) {
        ncl_probes_close(cfg, pr, n);
        return NULL;
    }
    ncl_client *c = calloc(1, sizeof *c);
    if (!c) {
        ncl_probes_close(cfg, pr, n);
        rt_err_set(err, ENOMEM, "out of memory");
        return NULL;
    }
    c->cfg = *cfg;
    c->epoch = epoch;
    c->npeers = n;
    c->majority = ncl_majority(n);
    c->start = c->next = c->committed = start;
    rt_hist_init(&c->lat);
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_cond_init(&c->cv_conn, &ca);
    pthread_condattr_destroy(&ca);
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    c->reader_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    c->spin_score = 16;
    for (int i = 0; i < n; i++) {
        peer *p = &c->peers[i];
        p->addr = cfg->peers.v[i];
        if (pr[i].s) { /* fenced and reset just now: in sync, empty */
            p->s = pr[i].s;
            p->state = P_LIVE;
            p->acked = p->sent = start;
        } else {
            p->state = P_DOWN;
            snprintf(p->last_error, sizeof p->last_error, "%.150s", pr[i].err);
        }
    }
    if (c->wake_fd < 0 || c->reader_fd < 0 || pthread_create(&c->io, NULL, io_main, c) != 0) {
        rt_err_sys(err, "cannot start the NCL I/O thread");
        ncl_close(c);
        return NULL;
    }
    if (pthread_create(&c->conn, NULL, connector_main, c) != 0) {
        rt_err_sys(err, "cannot start the NCL connector thread");
        ncl_close(c);
        return NULL;
    }
    return c;
}

void ncl_close(ncl_client *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_broadcast(&c->cv_conn);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (c->wake_fd >= 0)
        wake_io(c);
    if (c->io)
        pthread_join(c->io, NULL);
    if (c->conn)
        pthread_join(c->conn, NULL);
    for (int i = 0; i < c->npeers; i++) {
        peer *p = &c->peers[i];
        if (p->s)
            c->cfg.transport->close(p->s);
        if (p->handoff)
            c->cfg.transport->close(p->handoff);
        peer_reset_io(p);
        free(p->outq);
        free(p->pq);
        free(p->in);
    }
    while (c->start < c->next)
        log_drop_front(c);
    free(c->ring);
    free(c->ops);
    if (c->wake_fd >= 0)
        close(c->wake_fd);
    if (c->reader_fd >= 0)
        close(c->reader_fd);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    pthread_cond_destroy(&c->cv_conn);
    free(c);
}

/* ---- commit and trims ------------------------------------------------------------------ */

uint32_t ncl_max_record_data(const ncl_client *c, size_t path_len)
{
    size_t limit = c->cfg.max_frame - 64 - APPEND_HDR - NCL_REC_HDR_SIZE;
    limit = limit < BATCH_MAX ? limit : BATCH_MAX - NCL_REC_HDR_SIZE;
    return path_len >= limit ? 0 : (uint32_t)(limit - path_len);
}

static void deadline_ts(uint64_t deadline, struct timespec *ts)
{
    ts->tv_sec = (time_t)(deadline / RT_S);
    ts->tv_nsec = (long)(deadline % RT_S);
}

/* Why the quorum is not there: "1 of 3 peers acknowledged (need 2); down: a:1 (refused)". */
static void quorum_report(ncl_client *c, uint64_t seq, char *out, size_t len)
{
    int acks = 0;
    for (int i = 0; i < c->npeers; i++)
        acks += c->peers[i].state == P_LIVE && c->peers[i].acked > seq;
    int w =
        snprintf(out, len, "%d of %d peers acknowledged (need %d)", acks, c->npeers, c->majority);
    for (int i = 0; i < c->npeers && w > 0 && (size_t)w < len; i++) {
        peer *p = &c->peers[i];
        if (p->state == P_LIVE && !p->full)
            continue;
        int k = snprintf(out + w, len - (size_t)w, "; %s:%u %s%s%s%s", p->addr.host, p->addr.port,
                         p->full ? "full" : state_names[p->state], p->last_error[0] ? " (" : "",
                         p->last_error, p->last_error[0] ? ")" : "");
        if (k < 0)
            break;
        w += k;
    }
}

/* Wait (mu held) until done() or the deadline; 0, or the failure. */
static int wait_quorum(ncl_client *c, bool (*done)(ncl_client *, uint64_t), uint64_t target,
                       uint64_t deadline, const char *what, rt_err *err)
{
    struct timespec ts;
    deadline_ts(deadline, &ts);
    while (!done(c, target)) {
        if (c->fenced)
            return rt_err_set(err, ESTALE, "%s: fenced by a newer incarnation of '%s' (epoch %llu)",
                              what, c->cfg.id, (unsigned long long)c->fenced_by);
        if (c->stop)
            return rt_err_set(err, ESHUTDOWN, "%s: session closed", what);
        if (done == commit_done && full_peers(c) > c->npeers - c->majority) {
            char why[400];
            quorum_report(c, target, why, sizeof why);
            return rt_err_set(err, ENOSPC, "%s: peers are full: %s", what, why);
        }
        /* Latency: the first waiting committer reads the replies in its own thread instead
         * of sleeping until the I/O thread wakes it, and busy-polls for the first spin_ns:
         * waking a thread that slept costs tens of microseconds on virtual machines, more
         * than a loopback round trip. Other committers wait on the condition variable; when
         * the reader is done the next one takes over or, if none, the I/O thread. */
        if (done == commit_done && !c->reader && rt_now_ns() < deadline) {
            c->reader = true;
            wake_io(c); /* off the streams now: the reader takes them */
            /* Spin only while nobody else waits here, and only while spinning pays: when the
             * replies keep coming after the spin ran out (the CPU is busy elsewhere, e.g.
             * with the application's own threads), the score drops and spinning stops, but
             * for a probe now and then. */
            bool try_spin = c->waiters == 0 && (c->spin_score > 0 || ++c->spin_probe % 32 == 0);
            uint64_t t0 = rt_now_ns(), spin_until = try_spin ? t0 + c->cfg.spin_ns : t0;
            while (!done(c, target) && !c->fenced && !c->stop &&
                   full_peers(c) <= c->npeers - c->majority) {
                uint64_t now = rt_now_ns();
                if (now >= deadline)
                    break;
                pump(c);
                uint64_t spin = c->waiters == 0 && now < spin_until ? spin_until - now : 0;
                uint64_t wait = deadline - now < 5 * RT_MS ? deadline - now : 5 * RT_MS;
                poll_round(c, true, c->reader_fd, wait, spin);
            }
            if (try_spin && c->cfg.spin_ns > 0) {
                bool paid = done(c, target) && rt_now_ns() <= spin_until;
                c->spin_score = paid ? (c->spin_score < 16 ? c->spin_score + 1 : 16)
                                     : (c->spin_score > 4 ? c->spin_score - 4 : 0);
            }
            c->reader = false;
            wake_io(c);
            pthread_cond_broadcast(&c->cv);
            continue;
        }
        c->waiters++;
        int wrc = rt_now_ns() >= deadline ? ETIMEDOUT : pthread_cond_timedwait(&c->cv, &c->mu, &ts);
        c->waiters--;
        if (wrc == ETIMEDOUT) {
            if (done(c, target))
                break;
            char why[400];
            quorum_report(c, target, why, sizeof why);
            return rt_err_set(err, ETIMEDOUT, "%s: no majority within %llu ms: %s", what,
                              (unsigned long long)(c->cfg.timeout_ns / RT_MS), why);
        }
    }
    return 0;
}

int ncl_commit(ncl_client *c, const ncl_write *w, size_t n, uint64_t *last_seq, rt_err *err)
{
    uint64_t t0 = rt_now_ns();
    for (size_t i = 0; i < n; i++) {
        size_t plen = w[i].path ? strlen(w[i].path) : 0;
        if (plen > NCL_PATH_MAX || w[i].len > ncl_max_record_data(c, plen))
            return rt_err_set(err, EINVAL, "record %zu too big: %u bytes of data, path of %zu", i,
                              w[i].len, plen);
    }
    pthread_mutex_lock(&c->mu);
    if (c->fenced) {
        pthread_mutex_unlock(&c->mu);
        return rt_err_set(err, ESTALE, "fenced by a newer incarnation of '%s' (epoch %llu)",
                          c->cfg.id, (unsigned long long)c->fenced_by);
    }
    if (log_grow(c, n) < 0) {
        pthread_mutex_unlock(&c->mu);
        return rt_err_set(err, ENOMEM, "out of memory for the log");
    }
    for (size_t i = 0; i < n; i++) {
        ncl_rec r = {.seq = c->next,
                     .dev = w[i].dev,
                     .ino = w[i].ino,
                     .offset = w[i].offset,
                     .len = w[i].len,
                     .path_len = (uint16_t)(w[i].path ? strlen(w[i].path) : 0),
                     .kind = NCL_REC_WRITE,
                     .path = w[i].path,
                     .data = w[i].data};
        size_t size = ncl_rec_size(&r);
        unsigned char *enc = malloc(size);
        if (!enc) {
            pthread_mutex_unlock(&c->mu);
            return rt_err_set(err, ENOMEM, "out of memory for a record");
        }
        ncl_rec_encode(enc, &r);
        *rec_at(c, c->next) = (lrec){enc, (uint32_t)size};
        c->next++;
        c->log_bytes += size;
        c->bytes += w[i].len;
    }
    c->records += n;
    uint64_t mine = c->next - 1;
    if (last_seq)
        *last_seq = mine;
    pump(c);
    bool queued = false;
    for (int i = 0; i < c->npeers; i++)
        queued |= c->peers[i].out_n > 0;
    if (queued)
        wake_io(c); /* the I/O thread waits for room to send the rest */
    int rc = n ? wait_quorum(c, commit_done, mine, t0 + c->cfg.timeout_ns, "commit", err) : 0;
    if (rc == 0)
        c->commits++;
    else
        c->commit_failures++;
    pthread_mutex_unlock(&c->mu);
    if (rc == 0)
        rt_hist_record(&c->lat, rt_now_ns() - t0);
    return rc;
}

static int push_op(ncl_client *c, ctl_op op)
{
    if (c->ops_n == c->ops_cap) {
        size_t nc = c->ops_cap ? c->ops_cap * 2 : 16;
        ctl_op *o = realloc(c->ops, nc * sizeof *o);
        if (!o)
            return -ENOMEM;
        c->ops = o;
        c->ops_cap = nc;
    }
    op.id = ++c->ctl_next;
    c->ops[c->ops_n++] = op;
    return 0;
}

/* Issue a control op (mu held) and wait for a majority. */
static int run_op(ncl_client *c, ctl_op op, const char *what, rt_err *err)
{
    if (push_op(c, op) < 0)
        return rt_err_set(err, ENOMEM, "out of memory");
    c->trims++;
    uint64_t id = c->ctl_next;
    pump(c);
    wake_io(c);
    return wait_quorum(c, ctl_is_done, id, rt_now_ns() + c->cfg.timeout_ns, what, err);
}

int ncl_trim(ncl_client *c, uint64_t new_start, rt_err *err)
{
    pthread_mutex_lock(&c->mu);
    if (new_start > c->next)
        new_start = c->next;
    int rc;
    if (new_start > c->start) {
        while (c->start < new_start)
            log_drop_front(c);
        rc = run_op(c, (ctl_op){.type = NCL_TRIM, .a = new_start}, "trim", err);
    } else {
        /* Nothing new here, but an earlier trim (one that timed out, say) may not have
         * reached a majority yet: success means it has. */
        rc = wait_quorum(c, ctl_is_done, c->ctl_next, rt_now_ns() + c->cfg.timeout_ns, "trim", err);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int ncl_trim_file(ncl_client *c, uint64_t dev, uint64_t ino, uint64_t below, rt_err *err)
{
    pthread_mutex_lock(&c->mu);
    uint64_t hits = 0;
    for (uint64_t s = c->start; s < c->next && s < below; s++) {
        lrec *r = rec_at(c, s);
        ncl_rec d;
        size_t used;
        if (ncl_rec_decode(r->enc, r->size, &d, &used, NULL) < 0 || d.kind != NCL_REC_WRITE ||
            d.dev != dev || d.ino != ino)
            continue;
        unsigned char *t = malloc(NCL_REC_HDR_SIZE);
        if (!t)
            continue;
        ncl_rec tomb = {
            .seq = s, .dev = dev, .ino = ino, .offset = d.offset, .kind = NCL_REC_TOMBSTONE};
        ncl_rec_encode(t, &tomb);
        c->log_bytes = c->log_bytes - r->size + NCL_REC_HDR_SIZE;
        free(r->enc);
        *r = (lrec){t, NCL_REC_HDR_SIZE};
        hits++;
    }
    /* Leading tombstones carry nothing: the log starts after them (the peers do the same). */
    while (c->start < c->next && rec_at(c, c->start)->enc[38] == NCL_REC_TOMBSTONE)
        log_drop_front(c);
    int rc;
    if (hits)
        rc = run_op(c, (ctl_op){.type = NCL_TRIM_FILE, .a = below, .dev = dev, .ino = ino},
                    "trim file", err);
    else /* the file's records went with earlier ops: those must have reached a majority */
        rc = wait_quorum(c, ctl_is_done, c->ctl_next, rt_now_ns() + c->cfg.timeout_ns, "trim file",
                         err);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* ---- statistics ---------------------------------------------------------------------- */

uint64_t ncl_next_seq(ncl_client *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t v = c->next;
    pthread_mutex_unlock(&c->mu);
    return v;
}

uint64_t ncl_client_log_bytes(ncl_client *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t v = c->log_bytes;
    pthread_mutex_unlock(&c->mu);
    return v;
}

const rt_hist *ncl_commit_hist(ncl_client *c) { return &c->lat; }

void ncl_client_stats_get(ncl_client *c, ncl_client_stats *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&c->mu);
    s->epoch = c->epoch;
    s->start = c->start;
    s->next = c->next;
    s->committed = c->committed;
    s->commits = c->commits;
    s->commit_failures = c->commit_failures;
    s->records = c->records;
    s->bytes = c->bytes;
    s->frames_sent = c->frames_sent;
    s->trims = c->trims;
    s->npeers = c->npeers;
    for (int i = 0; i < c->npeers; i++) {
        peer *p = &c->peers[i];
        ncl_peer_info *o = &s->peers[i];
        snprintf(o->addr, sizeof o->addr, "%s:%u", p->addr.host, p->addr.port);
        o->state = state_names[p->state];
        o->acked = p->acked;
        o->reconnects = p->reconnects;
        o->catch_ups = p->catch_ups;
        o->full_replies = p->full_replies;
        o->used = p->used;
        o->capacity = p->capacity;
        s->live_peers += p->state == P_LIVE;
    }
    pthread_mutex_unlock(&c->mu);
}

void ncl_client_stats_json(ncl_client *c, rt_json *j)
{
    ncl_client_stats s;
    ncl_client_stats_get(c, &s);
    rt_json_u64(j, "epoch", s.epoch);
    rt_json_u64(j, "start_seq", s.start);
    rt_json_u64(j, "next_seq", s.next);
    rt_json_u64(j, "committed_seq", s.committed);
    rt_json_u64(j, "commits", s.commits);
    rt_json_u64(j, "commit_failures", s.commit_failures);
    rt_json_u64(j, "records", s.records);
    rt_json_u64(j, "bytes", s.bytes);
    rt_json_u64(j, "frames_sent", s.frames_sent);
    rt_json_u64(j, "trims", s.trims);
    rt_json_hist(j, "commit_latency", &c->lat);
    rt_json_begin_array(j, "peers");
    for (int i = 0; i < s.npeers; i++) {
        rt_json_begin(j, NULL);
        rt_json_str(j, "addr", s.peers[i].addr);
        rt_json_str(j, "state", s.peers[i].state);
        rt_json_u64(j, "acked", s.peers[i].acked);
        rt_json_u64(j, "reconnects", s.peers[i].reconnects);
        rt_json_u64(j, "catch_ups", s.peers[i].catch_ups);
        rt_json_u64(j, "full_replies", s.peers[i].full_replies);
        rt_json_end(j);
    }
    rt_json_end_array(j);
}
