/* open.c: opening a client session (connect, fence the older incarnation, reset or join
 * the peers' logs, start the threads) and closing it; the one-shot fence and reset that
 * recovery shares (internal.h). */
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
        rt_err_set(
            err, ENOTEMPTY,
            "the peers hold records of an earlier incarnation of '%s' that were never recovered; recover them first (splitft recover --id %s)",
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
    if (c->wake_fd < 0 || c->reader_fd < 0 || pthread_create(&c->io, NULL, cl_io_main, c) != 0) {
        rt_err_sys(err, "cannot start the NCL I/O thread");
        ncl_close(c);
        return NULL;
    }
    if (pthread_create(&c->conn, NULL, cl_connector_main, c) != 0) {
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
        cl_wake_io(c);
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
        cl_peer_reset_io(p);
        free(p->outq);
        free(p->pq);
        free(p->in);
    }
    while (c->start < c->next)
        cl_log_drop_front(c);
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
