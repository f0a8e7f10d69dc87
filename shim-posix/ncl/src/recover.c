/* recover.c: NCL recovery: fence the old incarnation, read a majority, select the
 * longest gap-free prefix.
 *
 * Why the prefix holds every acknowledged record. A commit of seq s was acknowledged when a
 * majority W of peers held every record from the session's start through s. Recovery reads
 * a majority R; W and R share a peer, which holds s and everything between its start and s.
 * Records below the largest start among R were trimmed by the client, which trims only
 * what it made durable in the files first, so the prefix may begin there. A tombstone
 * (a record trimmed by file) reached a majority before the client relied on it, so R
 * sees it on at least one peer and it wins over the stale copy another peer may hold.
 * Records past the first gap were never acknowledged (an acknowledged one has no gap
 * below it), so ignoring them loses nothing the application was told is durable.
 *
 * Which peers are read. Only logs of the newest owner count (an older owner's records were
 * superseded, see ncl/proto.h), and the fence already told each peer's owner: so recovery
 * reads a majority of the peers whose log has the newest owner, or all of them when fewer
 * answered, and no others. Those peers are read at once, one thread each; a peer whose read
 * fails is replaced by another of the same owner when there is one. Reading every peer
 * would hold and decode one more copy of the log for nothing.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- prefix selection (pure) --------------------------------------------------------- */

static const ncl_rec *view_get(const ncl_view *v, uint64_t seq)
{
    if (seq < v->start || seq >= v->next)
        return NULL;
    return &v->recs[seq - v->start];
}

void ncl_select_prefix(const ncl_view *views, int n, ncl_prefix *out,
                       void (*emit)(const ncl_rec *r, void *arg), void *arg)
{
    memset(out, 0, sizeof *out);
    uint64_t start = 0, last = 0;
    for (int i = 0; i < n; i++) {
        if (views[i].start > start)
            start = views[i].start;
        if (views[i].next > last)
            last = views[i].next;
    }
    uint64_t s = start;
    for (; s < last; s++) {
        const ncl_rec *pick = NULL;
        for (int i = 0; i < n; i++) {
            const ncl_rec *r = view_get(&views[i], s);
            if (!r)
                continue;
            if (pick && pick->kind == r->kind && pick->crc != r->crc)
                out->conflicts++;
            if (!pick || r->kind == NCL_REC_TOMBSTONE)
                pick = r;
        }
        if (!pick)
            break;
        if (emit)
            emit(pick, arg);
    }
    out->start = start;
    out->next = s;
    /* Records beyond the gap: counted once per seq. */
    for (uint64_t q = s + 1; q < last; q++)
        for (int i = 0; i < n; i++)
            if (view_get(&views[i], q)) {
                out->beyond_gap++;
                break;
            }
}

/* ---- reading a peer ---------------------------------------------------------------------- */

typedef struct rstate {
    probe pr[RT_HOSTS_MAX];
    ncl_config cfg;
    ncl_view views[RT_HOSTS_MAX];
    bool read[RT_HOSTS_MAX]; /* views[i] holds peer i's log */
    ncl_rec *recs[RT_HOSTS_MAX];
    unsigned char **bufs; /* every READ reply, freed with the recovery */
    size_t nbufs, capbufs;
    pthread_mutex_t mu; /* bufs, while peers are read in parallel */
} rstate;

static int keep_buf(rstate *st, unsigned char *b)
{
    int rc = 0;
    pthread_mutex_lock(&st->mu);
    if (st->nbufs == st->capbufs) {
        size_t nc = st->capbufs ? st->capbufs * 2 : 16;
        unsigned char **n = realloc(st->bufs, nc * sizeof *n);
        if (!n)
            rc = -ENOMEM;
        else {
            st->bufs = n;
            st->capbufs = nc;
        }
    }
    if (rc == 0)
        st->bufs[st->nbufs++] = b;
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* READ every record of the peer's log into a view. */
static int read_peer(rstate *st, int i, rt_err *err)
{
    probe *p = &st->pr[i];
    const ncl_transport *t = st->cfg.transport;
    uint64_t from = 0, start = 0, next = 0, owner = 0;
    size_t have = 0, cap = 0;
    ncl_rec *recs = NULL;
    bool first = true;
    for (;;) {
        unsigned char pay[12], *rep;
        size_t rlen;
        ncl_put_u32(ncl_put_u64(pay, from), 0);
        int rc = ncl_rpc(t, p->s, NCL_READ, 0, pay, sizeof pay, (int)(st->cfg.timeout_ns / RT_MS),
                         &rep, &rlen, err);
        if (rc < 0) {
            free(recs);
            return rc;
        }
        if (keep_buf(st, rep) < 0) {
            free(rep);
            free(recs);
            return rt_err_set(err, ENOMEM, "out of memory");
        }
        ncl_cur cur = ncl_cur_make(rep, rlen);
        uint32_t count;
        uint64_t s0, n0;
        if (rc != NCL_R_OK || !ncl_get_u64(&cur, &s0) || !ncl_get_u64(&cur, &n0) ||
            !ncl_get_u64(&cur, &owner) || !ncl_get_u32(&cur, &count)) {
            free(recs);
            return rt_err_set(err, EPROTO, "bad READ reply from %s", t->peer_name(p->s));
        }
        if (first) {
            start = from = s0;
            next = n0;
            first = false;
        }
        if (s0 > from) { /* trimmed meanwhile (cannot happen: we fenced the writer) */
            free(recs);
            return rt_err_set(err, EPROTO, "log of %s moved while reading", t->peer_name(p->s));
        }
        for (uint32_t k = 0; k < count; k++) {
            if (have == cap) {
                cap = cap ? cap * 2 : 256;
                ncl_rec *nr = realloc(recs, cap * sizeof *nr);
                if (!nr) {
                    free(recs);
                    return rt_err_set(err, ENOMEM, "out of memory");
                }
                recs = nr;
            }
            size_t used;
            rc = ncl_rec_decode(cur.p, (size_t)(cur.end - cur.p), &recs[have], &used, err);
            if (rc == 0 && recs[have].seq != from)
                rc = rt_err_set(err, EPROTO, "%s sent seq %llu, expected %llu", t->peer_name(p->s),
                                (unsigned long long)recs[have].seq, (unsigned long long)from);
            if (rc < 0) {
                free(recs);
                return rc;
            }
            cur.p += used;
            have++;
            from++;
        }
        if (from >= next || count == 0)
            break;
    }
    st->recs[i] = recs;
    st->views[i] = (ncl_view){start, start + have, recs};
    st->pr[i].owner = owner;
    return 0;
}

/* One peer's read, on its own thread. */
typedef struct reader {
    rstate *st;
    int i, rc;
    rt_err err;
    pthread_t th;
} reader;

static void *reader_main(void *arg)
{
    reader *rd = arg;
    rd->rc = read_peer(rd->st, rd->i, &rd->err);
    return NULL;
}

/* Read the peers whose log has the newest owner `top`: a majority of them, or all when
 * fewer answered the fence (see the top of this file). Returns how many were read. */
static int read_newest(rstate *st, int n, int m, uint64_t top)
{
    bool tried[RT_HOSTS_MAX] = {false};
    int nread = 0;
    for (;;) {
        reader rd[RT_HOSTS_MAX];
        int k = 0;
        for (int i = 0; i < n && nread + k < m; i++)
            if (st->pr[i].s && st->pr[i].owner == top && !tried[i]) {
                tried[i] = true;
                rd[k] = (reader){.st = st, .i = i};
                k++;
            }
        if (k == 0)
            return nread;
        for (int j = 0; j < k; j++)
            if (k == 1 || pthread_create(&rd[j].th, NULL, reader_main, &rd[j]) != 0) {
                reader_main(&rd[j]); /* one peer, or no thread to be had: read it here */
                rd[j].th = 0;
            }
        for (int j = 0; j < k; j++) {
            if (rd[j].th)
                pthread_join(rd[j].th, NULL);
            probe *p = &st->pr[rd[j].i];
            if (rd[j].rc < 0) {
                snprintf(p->err, sizeof p->err, "%.190s", rd[j].err.msg);
                st->cfg.transport->close(p->s);
                p->s = NULL;
            } else {
                st->read[rd[j].i] = true;
                nread++;
            }
        }
    }
}

/* ---- begin / finish ------------------------------------------------------------------ */

typedef struct collect {
    ncl_recovery *r;
    size_t cap;
    int err;
} collect;

static void emit_rec(const ncl_rec *rec, void *arg)
{
    collect *c = arg;
    if (rec->kind == NCL_REC_TOMBSTONE) {
        c->r->tombstones++;
        return;
    }
    if (c->r->nrecs == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 256;
        ncl_rec *n = realloc(c->r->recs, c->cap * sizeof *n);
        if (!n) {
            c->err = ENOMEM;
            return;
        }
        c->r->recs = n;
    }
    c->r->recs[c->r->nrecs++] = *rec;
}

int ncl_recover_begin(const ncl_config *cfg, ncl_recovery **out, rt_err *err)
{
    *out = NULL;
    rstate *st = calloc(1, sizeof *st);
    ncl_recovery *r = calloc(1, sizeof *r);
    if (!st || !r) {
        free(st);
        free(r);
        return rt_err_set(err, ENOMEM, "out of memory");
    }
    st->cfg = *cfg;
    pthread_mutex_init(&st->mu, NULL);
    r->priv = st;
    bool dirty = false;
    uint64_t owner = 0;
    int rc = ncl_fence(cfg, st->pr, &r->epoch, &owner, &dirty, err);
    if (rc < 0) {
        free(st);
        free(r);
        return rc;
    }
    int n = (int)cfg->peers.n, m = ncl_majority(n);
    int fenced = 0;
    for (int i = 0; i < n; i++)
        fenced += st->pr[i].s != NULL;
    int newest = 0;
    for (int i = 0; i < n; i++)
        newest += st->pr[i].s && st->pr[i].owner == owner;
    int want = newest < m ? newest : m;
    int nread = read_newest(st, n, m, owner);
    ncl_view views[RT_HOSTS_MAX];
    int nv = 0;
    for (int i = 0; i < n; i++)
        if (st->read[i])
            views[nv++] = st->views[i];
    r->answered = fenced;
    r->owner_views = nv;
    if (nread < want) {
        ncl_recovery_free(r);
        return rt_err_set(err, EHOSTUNREACH,
                          "recovery read %d of the %d peers holding the newest log (need %d)",
                          nread, newest, want);
    }
    ncl_prefix pf;
    collect col = {r, 0, 0};
    ncl_select_prefix(views, nv, &pf, emit_rec, &col);
    if (col.err) {
        ncl_recovery_free(r);
        return rt_err_set(err, ENOMEM, "out of memory");
    }
    r->start = pf.start;
    r->next = pf.next;
    r->beyond_gap = pf.beyond_gap;
    r->conflicts = pf.conflicts;
    *out = r;
    return 0;
}

int ncl_recover_finish(ncl_recovery *r, rt_err *err)
{
    rstate *st = r->priv;
    /* Everything up to the last record any peer holds goes: the prefix was replayed, the
     * rest was never acknowledged. The next session starts past all of it. */
    uint64_t end = r->next;
    for (int i = 0; i < (int)st->cfg.peers.n; i++) {
        if (st->pr[i].s && st->views[i].next > end)
            end = st->views[i].next;
        if (st->pr[i].s && st->pr[i].next > end) /* a peer not read: what the fence saw */
            end = st->pr[i].next;
    }
    return ncl_reset_all(&st->cfg, st->pr, r->epoch, end, err);
}

void ncl_recovery_free(ncl_recovery *r)
{
    if (!r)
        return;
    rstate *st = r->priv;
    if (st) {
        ncl_probes_close(&st->cfg, st->pr, (int)st->cfg.peers.n);
        for (int i = 0; i < RT_HOSTS_MAX; i++)
            free(st->recs[i]);
        for (size_t i = 0; i < st->nbufs; i++)
            free(st->bufs[i]);
        free(st->bufs);
        pthread_mutex_destroy(&st->mu);
        free(st);
    }
    free(r->recs);
    free(r);
}
