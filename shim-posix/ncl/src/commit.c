/* commit.c: commits to a majority (group commit, the wait for the quorum and its report),
 * trims, and the session's statistics. */
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
                         p->full ? "full" : cl_state_names[p->state], p->last_error[0] ? " (" : "",
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
        if (done == commit_done && cl_full_peers(c) > c->npeers - c->majority) {
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
            cl_wake_io(c); /* off the streams now: the reader takes them */
            /* Spin only while nobody else waits here, and only while spinning pays: when the
             * replies keep coming after the spin ran out (the CPU is busy elsewhere, e.g.
             * with the application's own threads), the score drops and spinning stops, but
             * for a probe now and then. */
            bool try_spin = c->waiters == 0 && (c->spin_score > 0 || ++c->spin_probe % 32 == 0);
            uint64_t t0 = rt_now_ns(), spin_until = try_spin ? t0 + c->cfg.spin_ns : t0;
            while (!done(c, target) && !c->fenced && !c->stop &&
                   cl_full_peers(c) <= c->npeers - c->majority) {
                uint64_t now = rt_now_ns();
                if (now >= deadline)
                    break;
                cl_pump(c);
                uint64_t spin = c->waiters == 0 && now < spin_until ? spin_until - now : 0;
                uint64_t wait = deadline - now < 5 * RT_MS ? deadline - now : 5 * RT_MS;
                cl_poll_round(c, true, c->reader_fd, wait, spin);
            }
            if (try_spin && c->cfg.spin_ns > 0) {
                bool paid = done(c, target) && rt_now_ns() <= spin_until;
                c->spin_score = paid ? (c->spin_score < 16 ? c->spin_score + 1 : 16)
                                     : (c->spin_score > 4 ? c->spin_score - 4 : 0);
            }
            c->reader = false;
            cl_wake_io(c);
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
    if (cl_log_grow(c, n) < 0) {
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
        *cl_rec_at(c, c->next) = (lrec){enc, (uint32_t)size};
        c->next++;
        c->log_bytes += size;
        c->bytes += w[i].len;
    }
    c->records += n;
    uint64_t mine = c->next - 1;
    if (last_seq)
        *last_seq = mine;
    cl_pump(c);
    bool queued = false;
    for (int i = 0; i < c->npeers; i++)
        queued |= c->peers[i].out_n > 0;
    if (queued)
        cl_wake_io(c); /* the I/O thread waits for room to send the rest */
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
    cl_pump(c);
    cl_wake_io(c);
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
            cl_log_drop_front(c);
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
        lrec *r = cl_rec_at(c, s);
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
    while (c->start < c->next && cl_rec_at(c, c->start)->enc[38] == NCL_REC_TOMBSTONE)
        cl_log_drop_front(c);
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
        o->state = cl_state_names[p->state];
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
