/* rdma.c: the rdma backend of the NCL transport: a ring stream over a verbs-operations
 * table, and that table over rdma-core (libibverbs + librdmacm, loaded with dlopen at first
 * use so that nothing linking the runtime needs rdma-core installed to start).
 *
 * Sections:
 *   1. the stream over an ncl_rdma_ops table (shared with the in-memory twin of the tests)
 *   2. rdma-core, loaded at first use
 *   3. a connection's verbs resources and the ops over them
 *   4. connection management: connect, listen, accept
 *   5. the transport table
 *
 * The ring protocol and its invariants: ncl_rdma_ring.h; design notes: runtime/RDMA.md.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "rdma_ring.h"
#include "ncl/transport.h"
#include "rt/net.h"

/* ==== 1. the stream over an ops table ================================================== */

#define POLL_BATCH     32
#define CLOSE_FLUSH_MS 1000

struct ncl_stream {
    const ncl_rdma_ops *ops;
    void *ctx;
    ncl_ring_tx tx; /* our bytes in the peer's ring */
    ncl_ring_rx rx; /* the peer's bytes in our ring */
    bool gone;      /* the peer disconnected or the connection failed */
    int error;      /* EPROTO once the peer broke the ring protocol */
    char name[80];
};

static int stream_on_imm(ncl_stream *s, uint32_t imm)
{
    if (ncl_ring_imm_word(imm) == NCL_RDMA_SEQ)
        return ncl_ring_rx_on_produced(&s->rx, ncl_ring_imm_count(s->rx.produced, imm));
    return ncl_ring_tx_on_consumed(&s->tx, ncl_ring_imm_count(s->tx.consumed, imm));
}

/* Publish `value` into the peer's word; true when posted (false: retry on the next call). */
static bool stream_publish_word(ncl_stream *s, ncl_rdma_word which, uint64_t value)
{
    int rc = s->ops->write_word(s->ctx, which, value, ncl_ring_imm(which, value));
    if (rc < 0 && rc != -EAGAIN)
        s->gone = true;
    return rc == 0;
}

/* Hand out what is due: our producer count after writes, our consumer count by the rule. */
static void stream_publish(ncl_stream *s)
{
    if (!s->gone && s->tx.published != s->tx.produced &&
        stream_publish_word(s, NCL_RDMA_SEQ, s->tx.produced))
        s->tx.published = s->tx.produced;
    if (!s->gone && ncl_ring_rx_should_publish(&s->rx) &&
        stream_publish_word(s, NCL_RDMA_CONSUMED, s->rx.consumed))
        s->rx.published = s->rx.consumed;
}

/* Take in every notification waiting, then publish what is due. */
static void stream_progress(ncl_stream *s)
{
    uint32_t imms[POLL_BATCH];
    while (!s->gone) {
        int n = s->ops->poll(s->ctx, imms, POLL_BATCH);
        if (n < 0) {
            s->gone = true;
            break;
        }
        for (int i = 0; i < n && !s->gone; i++) {
            if (stream_on_imm(s, imms[i]) < 0) {
                s->error = EPROTO;
                s->gone = true;
            }
        }
        if (n < POLL_BATCH)
            break;
    }
    stream_publish(s);
}

ncl_stream *ncl_rdma_stream_over(const ncl_rdma_ops *ops, void *ctx, uint8_t *rx_ring,
                                 uint8_t *tx_stage, size_t ring_size, const char *peer_name,
                                 rt_err *err)
{
    if (!ncl_ring_size_ok(ring_size)) {
        ops->destroy(ctx);
        rt_err_set(err, EINVAL, "rdma stream: ring size %zu is not a power of two in [%zu, %zu]",
                   ring_size, NCL_RING_MIN_SIZE, NCL_RING_MAX_SIZE);
        return NULL;
    }
    ncl_stream *s = calloc(1, sizeof *s);
    if (!s) {
        ops->destroy(ctx);
        rt_err_set(err, ENOMEM, "out of memory");
        return NULL;
    }
    s->ops = ops;
    s->ctx = ctx;
    ncl_ring_tx_init(&s->tx, tx_stage, ring_size);
    ncl_ring_rx_init(&s->rx, rx_ring, ring_size);
    snprintf(s->name, sizeof s->name, "%s", peer_name ? peer_name : "?");
    return s;
}

static ssize_t nr_recv(ncl_stream *s, void *buf, size_t len)
{
    if (len == 0)
        return 0;
    if (len > SSIZE_MAX)
        len = SSIZE_MAX;
    stream_progress(s);
    size_t n = ncl_ring_rx_read(&s->rx, buf, len);
    if (n > 0) {
        stream_publish(s);
        return (ssize_t)n;
    }
    if (s->error)
        return -s->error;
    return s->gone ? 0 : -EAGAIN;
}

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    return total;
}

static ssize_t nr_sendv(ncl_stream *s, const struct iovec *iov, int iovcnt)
{
    if (iovcnt < 0)
        return -EINVAL;
    stream_progress(s);
    if (s->error)
        return -s->error;
    if (s->gone)
        return -EPIPE;
    ncl_ring_plan p;
    if (ncl_ring_tx_stage(&s->tx, iov, iovcnt, &p) == 0)
        return iov_total(iov, iovcnt) == 0 ? 0 : -EAGAIN;
    size_t taken = 0;
    for (int k = 0; k < p.n; k++) {
        int rc = s->ops->write(s->ctx, p.w[k].off, p.w[k].src, p.w[k].len);
        if (rc == -EAGAIN)
            break;
        if (rc < 0) {
            s->gone = true;
            return -EPIPE;
        }
        taken += p.w[k].len;
    }
    ncl_ring_tx_advance(&s->tx, taken);
    stream_publish(s);
    return taken > 0 ? (ssize_t)taken : -EAGAIN;
}

static int nr_fd(ncl_stream *s) { return s->ops->fd(s->ctx); }

/* Progress on the RDMA side (bytes in, space freed, a refused publish now possible) always
 * arrives as a notification on the fd, so POLLIN is all there is to wait for. */
static short nr_events(ncl_stream *s, bool want_send)
{
    (void)s, (void)want_send;
    return POLLIN;
}

/* Like TCP, bytes sendv took are delivered after close: wait (bounded) for a refused
 * producer publish to go out. */
static void stream_flush(ncl_stream *s)
{
    for (int waited = 0; waited < CLOSE_FLUSH_MS; waited += 10) {
        stream_progress(s);
        if (s->gone || s->tx.published == s->tx.produced)
            return;
        struct pollfd pfd = {.fd = s->ops->fd(s->ctx), .events = POLLIN};
        poll(&pfd, 1, 10);
    }
}

static void nr_close(ncl_stream *s)
{
    stream_flush(s);
    s->ops->destroy(s->ctx);
    free(s);
}

static const char *nr_peer_name(ncl_stream *s) { return s->name; }

/* ==== 2. rdma-core, loaded at first use ================================================ */

/* Non-inline functions only: ibv_post_send, ibv_post_recv, ibv_poll_cq and
 * ibv_req_notify_cq are static inline in <infiniband/verbs.h> and call through the device
 * context, so they need no symbol. */
#define VERBS_SYMS(X)                                                                              \
    X(ibv_alloc_pd)                                                                                \
    X(ibv_dealloc_pd)                                                                              \
    X(ibv_reg_mr)                                                                                  \
    X(ibv_dereg_mr)                                                                                \
    X(ibv_create_comp_channel)                                                                     \
    X(ibv_destroy_comp_channel)                                                                    \
    X(ibv_create_cq)                                                                               \
    X(ibv_destroy_cq)                                                                              \
    X(ibv_get_cq_event)                                                                            \
    X(ibv_ack_cq_events)
#define CM_SYMS(X)                                                                                 \
    X(rdma_create_event_channel)                                                                   \
    X(rdma_destroy_event_channel)                                                                  \
    X(rdma_create_id)                                                                              \
    X(rdma_destroy_id)                                                                             \
    X(rdma_resolve_addr)                                                                           \
    X(rdma_resolve_route)                                                                          \
    X(rdma_create_qp)                                                                              \
    X(rdma_destroy_qp)                                                                             \
    X(rdma_connect)                                                                                \
    X(rdma_disconnect)                                                                             \
    X(rdma_bind_addr)                                                                              \
    X(rdma_listen)                                                                                 \
    X(rdma_accept)                                                                                 \
    X(rdma_reject)                                                                                 \
    X(rdma_migrate_id)                                                                             \
    X(rdma_get_cm_event)                                                                           \
    X(rdma_ack_cm_event)                                                                           \
    X(rdma_get_src_port)                                                                           \
    X(rdma_event_str)

/* Fields carry the functions' own names and types. ibv_reg_mr is also a function-like macro
 * in verbs.h, so calls go through LIB(f), whose parentheses keep it from expanding. */
typedef struct rdma_lib {
    void *verbs;
    void *cm;
/* NOLINTNEXTLINE(bugprone-macro-parentheses): f is a name, declared as a field */
#define LIB_FIELD(f) __typeof__(&f) f;
    VERBS_SYMS(LIB_FIELD)
    CM_SYMS(LIB_FIELD)
#undef LIB_FIELD
} rdma_lib;

static rdma_lib g_lib;
static rt_err g_lib_err;
static int g_lib_rc;
static pthread_once_t g_lib_once = PTHREAD_ONCE_INIT;

#define LIB(f) (g_lib.f)

static void *lib_sym(void *h, const char *so, const char *name, int *rc, rt_err *err)
{
    void *p = dlsym(h, name);
    if (!p && *rc == 0)
        *rc = rt_err_set(err, ELIBACC, "rdma transport: %s has no symbol %s", so, name);
    return p;
}

static int lib_load(rdma_lib *lib, const char *verbs_so, const char *cm_so, rt_err *err)
{
    memset(lib, 0, sizeof *lib);
    lib->verbs = dlopen(verbs_so, RTLD_NOW | RTLD_LOCAL);
    if (!lib->verbs) {
        rt_err_set(err, ELIBACC, "rdma transport: cannot load %s: %s", verbs_so, dlerror());
        return -ELIBACC;
    }
    lib->cm = dlopen(cm_so, RTLD_NOW | RTLD_LOCAL);
    if (!lib->cm) {
        rt_err_set(err, ELIBACC, "rdma transport: cannot load %s: %s", cm_so, dlerror());
        dlclose(lib->verbs);
        return -ELIBACC;
    }
    int rc = 0;
#define LOAD_VERBS(f) lib->f = (__typeof__(lib->f))lib_sym(lib->verbs, verbs_so, #f, &rc, err);
#define LOAD_CM(f)    lib->f = (__typeof__(lib->f))lib_sym(lib->cm, cm_so, #f, &rc, err);
    VERBS_SYMS(LOAD_VERBS)
    CM_SYMS(LOAD_CM)
#undef LOAD_VERBS
#undef LOAD_CM
    if (rc < 0) {
        dlclose(lib->cm);
        dlclose(lib->verbs);
    }
    return rc;
}

static void lib_init(void)
{
    g_lib_rc = lib_load(&g_lib, "libibverbs.so.1", "librdmacm.so.1", &g_lib_err);
}

/* 0 once rdma-core is loaded (it then stays loaded), or the load's error. */
static int lib_get(rt_err *err)
{
    pthread_once(&g_lib_once, lib_init);
    if (g_lib_rc < 0 && err)
        *err = g_lib_err;
    return g_lib_rc;
}

int ncl_rdma_lib_check(const char *verbs_so, const char *cm_so, rt_err *err)
{
    rdma_lib lib;
    int rc = lib_load(&lib, verbs_so, cm_so, err);
    if (rc == 0) {
        dlclose(lib.cm);
        dlclose(lib.verbs);
    }
    return rc;
}

/* ==== 3. a connection's verbs resources and the ops over them ========================== */

#define RING_SIZE      ((size_t)1 << 20)
#define SQ_DEPTH       64
#define RQ_DEPTH       64
#define WR_SEND        1
#define WR_RECV        2
#define DRAIN_MS       500
#define WORDS_OFF      (2 * RING_SIZE)
#define REGION_LEN     (2 * RING_SIZE + 4096)
#define CONN_RESOURCES 128 /* backlog, and the CM's responder resources / initiator depth */

/* One connection: its own CM event channel (so a disconnect reaches this stream's fd), a
 * protection domain, one CQ for sends and receives with its completion channel, the QP on
 * the CM id, and one registered region laid out as
 *   [0, RING_SIZE)            our receive ring (the peer writes it)
 *   [RING_SIZE, 2*RING_SIZE)  the stage: our copy of the bytes we write to the peer's ring
 *   WORDS_OFF + 8*{0,1}       the sequence and consumed words (the peer writes them)
 *   WORDS_OFF + 8*{2,3}       the sources of our own two word publishes */
typedef struct rdma_conn {
    struct rdma_event_channel *ch;
    struct rdma_cm_id *id;
    struct ibv_pd *pd;
    struct ibv_comp_channel *cc;
    struct ibv_cq *cq;
    struct ibv_mr *mr;
    uint8_t *region;
    int epfd;   /* the stream's fd: readable on a completion or a CM event */
    int sq_out; /* send WRs posted and not yet completed */
    bool gone;  /* disconnected, or a completion failed */
    uint64_t peer_ring;
    uint64_t peer_words;
    uint32_t peer_rkey;
    char name[80];
} rdma_conn;

static uint64_t *conn_words(rdma_conn *c) { return (uint64_t *)(void *)(c->region + WORDS_OFF); }

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

static int conn_post_recv(rdma_conn *c)
{
    struct ibv_recv_wr wr, *bad;
    memset(&wr, 0, sizeof wr);
    wr.wr_id = WR_RECV; /* no scatter list: a WRITE_WITH_IMM only delivers its immediate */
    return ibv_post_recv(c->id->qp, &wr, &bad);
}

/* Post one signalled RDMA WRITE (with an immediate when op says so) from the region. */
static int conn_post(rdma_conn *c, enum ibv_wr_opcode op, uint64_t remote, const void *local,
                     size_t len, uint32_t imm)
{
    if (c->sq_out >= SQ_DEPTH)
        return -EAGAIN;
    struct ibv_sge sge = {.addr = (uintptr_t)local, .length = (uint32_t)len, .lkey = c->mr->lkey};
    struct ibv_send_wr wr, *bad;
    memset(&wr, 0, sizeof wr);
    wr.wr_id = WR_SEND;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = op;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr.rdma.remote_addr = remote;
    wr.wr.rdma.rkey = c->peer_rkey;
    if (op == IBV_WR_RDMA_WRITE_WITH_IMM)
        wr.imm_data = htonl(imm);
    int rc = ibv_post_send(c->id->qp, &wr, &bad);
    if (rc != 0)
        return -rc;
    c->sq_out++;
    return 0;
}

static int conn_write(void *ctx, uint64_t off, const void *local, size_t len)
{
    rdma_conn *c = ctx;
    return conn_post(c, IBV_WR_RDMA_WRITE, c->peer_ring + off, local, len, 0);
}

/* The source slot may be rewritten by a later publish before the NIC reads it; counts only
 * grow and the immediate carries the exact value, so the word is at worst newer. */
static int conn_write_word(void *ctx, ncl_rdma_word which, uint64_t value, uint32_t imm)
{
    rdma_conn *c = ctx;
    uint64_t *src = conn_words(c) + 2 + which;
    *src = htole64(value);
    return conn_post(c, IBV_WR_RDMA_WRITE_WITH_IMM, c->peer_words + 8 * (uint64_t)which, src,
                     sizeof *src, imm);
}

/* Take the completion channel's events and re-arm the CQ; polling after re-arming sees
 * every completion that came before it, and any later one raises a new event. */
static void conn_rearm(rdma_conn *c)
{
    struct ibv_cq *cq;
    void *cq_ctx;
    unsigned got = 0;
    while (LIB(ibv_get_cq_event)(c->cc, &cq, &cq_ctx) == 0)
        got++;
    if (got == 0)
        return;
    LIB(ibv_ack_cq_events)(c->cq, got);
    if (ibv_req_notify_cq(c->cq, 0) != 0)
        c->gone = true;
}

static void conn_on_wc(rdma_conn *c, const struct ibv_wc *wc, uint32_t *imms, int *n)
{
    if (wc->wr_id == WR_SEND)
        c->sq_out--;
    if (wc->status != IBV_WC_SUCCESS) {
        c->gone = true; /* flushed after a disconnect, or a transport failure */
        return;
    }
    if (wc->wr_id == WR_RECV) {
        if (wc->wc_flags & IBV_WC_WITH_IMM)
            imms[(*n)++] = ntohl(wc->imm_data);
        if (conn_post_recv(c) != 0)
            c->gone = true;
    }
}

static int conn_poll_cq(rdma_conn *c, uint32_t *imms, int max)
{
    struct ibv_wc wc[16];
    int n = 0;
    while (n < max) {
        int want = max - n < 16 ? max - n : 16;
        int k = ibv_poll_cq(c->cq, want, wc);
        if (k < 0) {
            c->gone = true;
            break;
        }
        for (int i = 0; i < k; i++)
            conn_on_wc(c, &wc[i], imms, &n);
        if (k < want)
            break;
    }
    return n;
}

/* This connection's CM events: a disconnect (or the device going away) ends it. */
static void conn_cm_events(rdma_conn *c)
{
    struct rdma_cm_event *ev;
    while (LIB(rdma_get_cm_event)(c->ch, &ev) == 0) {
        if (ev->event == RDMA_CM_EVENT_DISCONNECTED || ev->event == RDMA_CM_EVENT_DEVICE_REMOVAL ||
            ev->event == RDMA_CM_EVENT_TIMEWAIT_EXIT)
            c->gone = true;
        LIB(rdma_ack_cm_event)(ev);
    }
}

static int conn_poll(void *ctx, uint32_t *imms, int max)
{
    rdma_conn *c = ctx;
    conn_rearm(c);
    int n = conn_poll_cq(c, imms, max);
    conn_cm_events(c);
    if (n > 0)
        return n;
    return c->gone ? -ECONNRESET : 0;
}

static int conn_fd(void *ctx) { return ((rdma_conn *)ctx)->epfd; }

/* Let posted writes finish (bounded) so bytes sent before close reach the peer. */
static void conn_drain_sends(rdma_conn *c)
{
    uint32_t imms[POLL_BATCH];
    for (int waited = 0; c->sq_out > 0 && !c->gone && waited < DRAIN_MS; waited += 10) {
        struct pollfd pfd = {.fd = c->epfd, .events = POLLIN};
        poll(&pfd, 1, 10);
        conn_poll(c, imms, POLL_BATCH);
    }
}

static void conn_free(rdma_conn *c)
{
    if (c->id && c->id->qp) {
        conn_drain_sends(c);
        LIB(rdma_disconnect)(c->id);
        LIB(rdma_destroy_qp)(c->id);
    }
    if (c->mr)
        LIB(ibv_dereg_mr)(c->mr);
    if (c->cq)
        LIB(ibv_destroy_cq)(c->cq);
    if (c->cc)
        LIB(ibv_destroy_comp_channel)(c->cc);
    if (c->pd)
        LIB(ibv_dealloc_pd)(c->pd);
    if (c->id)
        LIB(rdma_destroy_id)(c->id);
    if (c->ch)
        LIB(rdma_destroy_event_channel)(c->ch);
    if (c->epfd >= 0)
        close(c->epfd);
    free(c->region);
    free(c);
}

static void conn_destroy(void *ctx) { conn_free(ctx); }

static const ncl_rdma_ops conn_ops = {
    .write = conn_write,
    .write_word = conn_write_word,
    .poll = conn_poll,
    .fd = conn_fd,
    .destroy = conn_destroy,
};

/* A connection with its own CM event channel (non-blocking), nothing else yet. */
static rdma_conn *conn_new(const char *name, rt_err *err)
{
    rdma_conn *c = calloc(1, sizeof *c);
    if (!c) {
        rt_err_set(err, ENOMEM, "out of memory");
        return NULL;
    }
    c->epfd = -1;
    snprintf(c->name, sizeof c->name, "%s", name);
    c->ch = LIB(rdma_create_event_channel)();
    if (!c->ch || set_nonblock(c->ch->fd) < 0) {
        rt_err_sys(
            err,
            "rdma transport: cannot open the RDMA connection manager for %s (no RDMA device here, or Soft-RoCE not set up?)",
            name);
        conn_free(c);
        return NULL;
    }
    return c;
}

static int conn_make_cq(rdma_conn *c, struct ibv_context *dev, rt_err *err)
{
    c->pd = LIB(ibv_alloc_pd)(dev);
    if (!c->pd)
        return rt_err_sys(err, "rdma %s: ibv_alloc_pd", c->name);
    c->cc = LIB(ibv_create_comp_channel)(dev);
    if (!c->cc || set_nonblock(c->cc->fd) < 0)
        return rt_err_sys(err, "rdma %s: ibv_create_comp_channel", c->name);
    c->cq = LIB(ibv_create_cq)(dev, SQ_DEPTH + RQ_DEPTH, c, c->cc, 0);
    if (!c->cq)
        return rt_err_sys(err, "rdma %s: ibv_create_cq", c->name);
    int rc = ibv_req_notify_cq(c->cq, 0);
    if (rc != 0)
        return rt_err_set(err, rc, "rdma %s: ibv_req_notify_cq: %s", c->name, strerror(rc));
    return 0;
}

static int conn_make_qp(rdma_conn *c, rt_err *err)
{
    struct ibv_qp_init_attr qa;
    memset(&qa, 0, sizeof qa);
    qa.send_cq = c->cq;
    qa.recv_cq = c->cq;
    qa.qp_type = IBV_QPT_RC;
    qa.cap.max_send_wr = SQ_DEPTH;
    qa.cap.max_recv_wr = RQ_DEPTH;
    qa.cap.max_send_sge = 1;
    qa.cap.max_recv_sge = 1;
    qa.sq_sig_all = 1;
    if (LIB(rdma_create_qp)(c->id, c->pd, &qa) != 0)
        return rt_err_sys(err, "rdma %s: rdma_create_qp", c->name);
    return 0;
}

static int conn_make_region(rdma_conn *c, rt_err *err)
{
    c->region = aligned_alloc(4096, REGION_LEN);
    if (!c->region)
        return rt_err_set(err, ENOMEM, "rdma %s: out of memory for the ring", c->name);
    memset(c->region, 0, REGION_LEN);
    c->mr = LIB(ibv_reg_mr)(c->pd, c->region, REGION_LEN,
                            IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
    if (!c->mr)
        return rt_err_sys(err, "rdma %s: ibv_reg_mr of %zu bytes", c->name, (size_t)REGION_LEN);
    for (int i = 0; i < RQ_DEPTH; i++) {
        int rc = conn_post_recv(c);
        if (rc != 0)
            return rt_err_set(err, rc, "rdma %s: ibv_post_recv: %s", c->name, strerror(rc));
    }
    return 0;
}

static int conn_make_epoll(rdma_conn *c, rt_err *err)
{
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (c->epfd < 0)
        return rt_err_sys(err, "rdma %s: epoll_create1", c->name);
    int fds[2] = {c->cc->fd, c->ch->fd};
    for (int i = 0; i < 2; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[i]};
        if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, fds[i], &ev) < 0)
            return rt_err_sys(err, "rdma %s: epoll_ctl", c->name);
    }
    return 0;
}

/* Everything after the CM id knows its device: PD, CQ, QP, region, receives, fd. */
static int conn_setup(rdma_conn *c, rt_err *err)
{
    int rc = conn_make_cq(c, c->id->verbs, err);
    if (rc == 0)
        rc = conn_make_qp(c, err);
    if (rc == 0)
        rc = conn_make_region(c, err);
    if (rc == 0)
        rc = conn_make_epoll(c, err);
    return rc;
}

static void conn_hello(rdma_conn *c, uint8_t out[NCL_RDMA_HELLO_LEN])
{
    ncl_rdma_hello h = {
        .ring_addr = (uintptr_t)c->region,
        .words_addr = (uintptr_t)(c->region + WORDS_OFF),
        .rkey = c->mr->rkey,
        .ring_size = (uint32_t)RING_SIZE,
    };
    ncl_rdma_hello_encode(&h, out);
}

static int conn_set_peer(rdma_conn *c, const ncl_rdma_hello *h, rt_err *err)
{
    if (h->ring_size != RING_SIZE)
        return rt_err_set(err, EPROTO, "rdma %s: peer's ring is %u bytes, ours %zu", c->name,
                          h->ring_size, (size_t)RING_SIZE);
    c->peer_ring = h->ring_addr;
    c->peer_words = h->words_addr;
    c->peer_rkey = h->rkey;
    return 0;
}

static ncl_stream *conn_stream(rdma_conn *c, rt_err *err)
{
    return ncl_rdma_stream_over(&conn_ops, c, c->region, c->region + RING_SIZE, RING_SIZE, c->name,
                                err);
}

static void conn_param(struct rdma_conn_param *p, const uint8_t *hello)
{
    memset(p, 0, sizeof *p);
    p->private_data = hello;
    p->private_data_len = NCL_RDMA_HELLO_LEN;
    p->responder_resources = 1;
    p->initiator_depth = 1;
    p->retry_count = 7;
    p->rnr_retry_count = 7; /* infinite: a peer short of receives slows us, never fails us */
}

/* ==== 4. connection management ========================================================= */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int ms_left(int64_t deadline)
{
    int64_t left = deadline - now_ms();
    return left < 1 ? 1 : left > INT_MAX ? INT_MAX : (int)left;
}

/* The first address of host:port (rt_resolve), copied out. */
static int resolve(const char *host, uint16_t port, bool passive, struct sockaddr_storage *out,
                   rt_err *err)
{
    struct addrinfo *res;
    int rc = rt_resolve(host, port, passive, &res, err);
    if (rc < 0)
        return rc;
    memset(out, 0, sizeof *out);
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static void addr_name(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[64] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
    }
    snprintf(buf, len, "%s:%d", host, port);
}

static int cm_errno(const struct rdma_cm_event *ev)
{
    switch (ev->event) {
    case RDMA_CM_EVENT_REJECTED:
        return ECONNREFUSED;
    case RDMA_CM_EVENT_ADDR_ERROR:
    case RDMA_CM_EVENT_ROUTE_ERROR:
    case RDMA_CM_EVENT_UNREACHABLE:
        return EHOSTUNREACH;
    default:
        return ev->status < 0 ? -ev->status : EPROTO;
    }
}

/* Wait until `deadline` for the next CM event on c's channel and check it is `want`; with
 * `peer`, decode the hello in its private data. 0, or -errno with err saying which step. */
static int cm_expect(rdma_conn *c, enum rdma_cm_event_type want, int64_t deadline, const char *step,
                     ncl_rdma_hello *peer, rt_err *err)
{
    struct rdma_cm_event *ev;
    while (LIB(rdma_get_cm_event)(c->ch, &ev) != 0) {
        if (errno != EAGAIN && errno != EINTR)
            return rt_err_sys(err, "rdma connect to %s: %s", c->name, step);
        if (now_ms() >= deadline)
            return rt_err_set(err, ETIMEDOUT, "rdma connect to %s: timed out %s", c->name, step);
        struct pollfd pfd = {.fd = c->ch->fd, .events = POLLIN};
        poll(&pfd, 1, ms_left(deadline));
    }
    int rc = 0;
    if (ev->event != want)
        rc = rt_err_set(err, cm_errno(ev), "rdma connect to %s: %s: got %s (status %d)", c->name,
                        step, LIB(rdma_event_str)(ev->event), ev->status);
    else if (peer)
        rc = ncl_rdma_hello_decode(ev->param.conn.private_data, ev->param.conn.private_data_len,
                                   peer, err);
    LIB(rdma_ack_cm_event)(ev);
    return rc;
}

static int conn_connect(rdma_conn *c, struct sockaddr *dst, int64_t deadline, rt_err *err)
{
    if (LIB(rdma_create_id)(c->ch, &c->id, c, RDMA_PS_TCP) != 0)
        return rt_err_sys(err, "rdma connect to %s: rdma_create_id", c->name);
    if (LIB(rdma_resolve_addr)(c->id, NULL, dst, ms_left(deadline)) != 0)
        return rt_err_sys(err, "rdma connect to %s: rdma_resolve_addr", c->name);
    int rc =
        cm_expect(c, RDMA_CM_EVENT_ADDR_RESOLVED, deadline, "resolving the address", NULL, err);
    if (rc < 0)
        return rc;
    if (LIB(rdma_resolve_route)(c->id, ms_left(deadline)) != 0)
        return rt_err_sys(err, "rdma connect to %s: rdma_resolve_route", c->name);
    rc = cm_expect(c, RDMA_CM_EVENT_ROUTE_RESOLVED, deadline, "resolving the route", NULL, err);
    if (rc == 0)
        rc = conn_setup(c, err);
    if (rc < 0)
        return rc;
    uint8_t hello[NCL_RDMA_HELLO_LEN];
    struct rdma_conn_param param;
    conn_hello(c, hello);
    conn_param(&param, hello);
    if (LIB(rdma_connect)(c->id, &param) != 0)
        return rt_err_sys(err, "rdma connect to %s: rdma_connect", c->name);
    ncl_rdma_hello peer = {0};
    rc = cm_expect(c, RDMA_CM_EVENT_ESTABLISHED, deadline, "connecting", &peer, err);
    return rc < 0 ? rc : conn_set_peer(c, &peer, err);
}

static ncl_stream *nr_connect(const char *host, uint16_t port, int timeout_ms, rt_err *err)
{
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    struct sockaddr_storage dst;
    char name[80];
    if (lib_get(err) < 0 || resolve(host, port, false, &dst, err) < 0)
        return NULL;
    addr_name((struct sockaddr *)&dst, name, sizeof name);
    rdma_conn *c = conn_new(name, err);
    if (!c)
        return NULL;
    if (conn_connect(c, (struct sockaddr *)&dst, deadline, err) < 0) {
        conn_free(c);
        return NULL;
    }
    return conn_stream(c, err);
}

struct ncl_listener {
    struct rdma_event_channel *ch; /* CONNECT_REQUESTs arrive here, non-blocking */
    struct rdma_cm_id *id;
};

static void listener_free(ncl_listener *l)
{
    if (l->id)
        LIB(rdma_destroy_id)(l->id);
    if (l->ch)
        LIB(rdma_destroy_event_channel)(l->ch);
    free(l);
}

static int listener_open(ncl_listener *l, const char *host, uint16_t port, rt_err *err)
{
    struct sockaddr_storage addr;
    const char *h = host && *host ? host : "*";
    int rc = resolve(host, port, true, &addr, err);
    if (rc < 0)
        return rc;
    l->ch = LIB(rdma_create_event_channel)();
    if (!l->ch || set_nonblock(l->ch->fd) < 0)
        return rt_err_sys(
            err,
            "rdma transport: cannot open the RDMA connection manager to listen on %s:%u (no RDMA device here, or Soft-RoCE not set up?)",
            h, port);
    if (LIB(rdma_create_id)(l->ch, &l->id, l, RDMA_PS_TCP) != 0)
        return rt_err_sys(err, "rdma listen on %s:%u: rdma_create_id", h, port);
    if (LIB(rdma_bind_addr)(l->id, (struct sockaddr *)&addr) != 0)
        return rt_err_sys(err, "rdma listen on %s:%u: rdma_bind_addr", h, port);
    if (LIB(rdma_listen)(l->id, CONN_RESOURCES) != 0)
        return rt_err_sys(err, "rdma listen on %s:%u: rdma_listen", h, port);
    return 0;
}

static ncl_listener *nr_listen(const char *host, uint16_t port, rt_err *err)
{
    if (lib_get(err) < 0)
        return NULL;
    ncl_listener *l = calloc(1, sizeof *l);
    if (!l) {
        rt_err_set(err, ENOMEM, "out of memory");
        return NULL;
    }
    if (listener_open(l, host, port, err) < 0) {
        listener_free(l);
        return NULL;
    }
    return l;
}

static int nr_listener_fd(ncl_listener *l) { return l->ch->fd; }

static int nr_listener_port(ncl_listener *l) { return ntohs(LIB(rdma_get_src_port)(l->id)); }

/* The next CONNECT_REQUEST on the listener (other events are acknowledged and dropped):
 * its CM id and the peer's hello; 0, -EAGAIN when none waits, or another -errno. */
static int next_request(ncl_listener *l, struct rdma_cm_id **id, ncl_rdma_hello *peer, rt_err *err)
{
    struct rdma_cm_event *ev;
    for (;;) {
        if (LIB(rdma_get_cm_event)(l->ch, &ev) != 0) {
            if (errno == EAGAIN)
                return rt_err_set(err, EAGAIN, "no connection waiting");
            return rt_err_sys(err, "rdma accept: rdma_get_cm_event");
        }
        if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST)
            break;
        LIB(rdma_ack_cm_event)(ev);
    }
    *id = ev->id;
    int rc = ncl_rdma_hello_decode(ev->param.conn.private_data, ev->param.conn.private_data_len,
                                   peer, err);
    LIB(rdma_ack_cm_event)(ev);
    return rc;
}

/* Accept `id` on a connection of its own: migrate it to a new channel, set up, answer. */
static int conn_accept(rdma_conn *c, struct rdma_cm_id *id, const ncl_rdma_hello *peer, rt_err *err)
{
    if (LIB(rdma_migrate_id)(id, c->ch) != 0)
        return rt_err_sys(err, "rdma accept from %s: rdma_migrate_id", c->name);
    c->id = id;
    int rc = conn_set_peer(c, peer, err);
    if (rc == 0)
        rc = conn_setup(c, err);
    if (rc < 0)
        return rc;
    uint8_t hello[NCL_RDMA_HELLO_LEN];
    struct rdma_conn_param param;
    conn_hello(c, hello);
    conn_param(&param, hello);
    if (LIB(rdma_accept)(c->id, &param) != 0)
        return rt_err_sys(err, "rdma accept from %s: rdma_accept", c->name);
    return 0;
}

static ncl_stream *nr_accept(ncl_listener *l, rt_err *err)
{
    struct rdma_cm_id *id = NULL;
    ncl_rdma_hello peer = {0};
    char name[80];
    int rc = next_request(l, &id, &peer, err);
    if (rc == -EAGAIN)
        return NULL;
    rdma_conn *c = NULL;
    if (rc == 0) {
        addr_name(rdma_get_peer_addr(id), name, sizeof name);
        c = conn_new(name, err);
        if (c && conn_accept(c, id, &peer, err) == 0)
            return conn_stream(c, err);
    }
    /* Refused: a bad hello or no resources. The id is c's once it migrated there. */
    if (id)
        LIB(rdma_reject)(id, NULL, 0);
    if (c && c->id)
        id = NULL;
    if (c)
        conn_free(c);
    if (id)
        LIB(rdma_destroy_id)(id);
    return NULL;
}

static void nr_listener_close(ncl_listener *l) { listener_free(l); }

/* ==== 5. the transport table =========================================================== */

const ncl_transport ncl_rdma_transport = {
    .name = "rdma",
    .listen = nr_listen,
    .listener_fd = nr_listener_fd,
    .listener_port = nr_listener_port,
    .accept = nr_accept,
    .listener_close = nr_listener_close,
    .connect = nr_connect,
    .recv = nr_recv,
    .sendv = nr_sendv,
    .fd = nr_fd,
    .events = nr_events,
    .close = nr_close,
    .peer_name = nr_peer_name,
};
