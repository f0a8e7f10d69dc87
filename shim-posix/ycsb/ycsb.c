/* splitft-ycsb: YCSB's core workloads A-F against Redis, RocksDB and SQLite, in C.
 *
 * It follows YCSB's CoreWorkload (com.yahoo.ycsb.workloads.CoreWorkload) with its default
 * properties: records of 10 fields of 100 bytes under keys "user" + fnvhash64(n) (hashed
 * insert order); the load phase inserts records 0..N-1; a run draws operations with the
 * workload's proportions, keys from a scrambled zipfian (constant 0.99; workload D: the
 * skewed latest generator), reads of every field, updates of one field, inserts of every
 * field from the record count on through an acknowledged counter, scans of 1..100 records.
 * Where it differs from YCSB, and why, is said where it happens: the zipfian sampler
 * (workload.c), the Redis round trips (backend_redis.c), and versioned values with writes
 * to one key serialized when acknowledgements are recorded (the write path, below).
 *
 *   splitft-ycsb load|run|check --backend redis|rocksdb|sqlite --target HOST:PORT|PATH ...
 *
 * Sections: options, the shared state, timeline, one operation, client threads, reports,
 * load and run, main; check is check.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rt/env.h"
#include "rt/stats.h"
#include "ycsb.h"

static const char usage[] =
    "usage: splitft-ycsb load|run|check --backend redis|rocksdb|sqlite --target HOST:PORT|PATH\n"
    "                    [options]\n"
    "\n"
    "  load    insert records 0..N-1 (the insert-only benchmark)\n"
    "  run     run a workload: --workload a|b|c|d|e|f\n"
    "  check   read back every write recorded in --acked FILE [FILE...]; prints\n"
    "          'checked N keys, M lost' and exits 1 when M > 0\n"
    "\n"
    "Options:\n"
    "  --backend NAME       redis (--target HOST:PORT), rocksdb (--target DIR, created when\n"
    "                       missing), sqlite (--target FILE)\n"
    "  --workload X         a: 50% read, 50% update; b: 95/5 read/update; c: read only;\n"
    "                       d: 95% read, 5% insert, latest keys; e: 95% scan, 5% insert;\n"
    "                       f: 50% read, 50% read-modify-write (ignored by load and check)\n"
    "  --records N          records loaded, and where run's inserts start (default 1000)\n"
    "  --ops N              operations of a run (default 1000), shared by the threads\n"
    "  --duration S         run (or load) for S seconds instead (e.g. 10, 1.5, 500ms)\n"
    "  --threads N          client threads, each with its own connection (default 1)\n"
    "  --seed S             thread i's random choices depend on (S, i) only (default 1)\n"
    "  --sync               strong durability: RocksDB WriteOptions.sync, SQLite\n"
    "                       synchronous=FULL (else OFF; WAL either way); Redis: the\n"
    "                       server's appendfsync decides\n"
    "  --exclusive          sqlite: one connection in locking_mode=EXCLUSIVE, shared by the\n"
    "                       threads (no POSIX lock per transaction)\n"
    "  --acked FILE         append 'KEY VERSION' for every acknowledged insert, update and\n"
    "                       read-modify-write (check: the files to verify)\n"
    "  --timeline FILE      CSV t_ms,ops: operations completed in each interval\n"
    "  --interval-ms MS     the timeline's interval (default 100)\n"
    "  --csv FILE           CSV op,ops,ops_per_s,p50_us,p95_us,p99_us,p999_us,max_us\n"
    "  --hist FILE          CSV us,cdf: the latency distribution of all operations\n"
    "  --fieldcount N       fields per record (default 10, at most 128)\n"
    "  --fieldlength N      bytes per field (default 100, at least 64)\n"
    "\n"
    "Exit status: 0 success, 1 a failure (unreachable backend, a failed operation, lost\n"
    "writes), 2 bad usage.\n";

/* ---- options ------------------------------------------------------------------------- */

static int die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "splitft-ycsb: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see splitft-ycsb --help)\n");
    return 2;
}

/* ---- the shared state ---------------------------------------------------------------- */

#define STRIPES 4096

typedef struct stripe {
    pthread_mutex_t mu;
    uint64_t last_seq;
} stripe;

typedef struct shared {
    const ycsb_opts *o;
    void *db;
    ycsb_counter inserts; /* run: the acknowledged insert counter */
    uint64_t load_next;   /* load: the next key number (atomic) */
    int ack_fd;           /* -1 without --acked */
    stripe *stripes;      /* with --acked */
    int stop;             /* atomic: a fatal error, a signal, or the end */
    uint64_t t0, deadline;
    pthread_mutex_t mu; /* guards first_err and timeline wake-ups */
    pthread_cond_t cv;
    bool failed;
    rt_err first_err;
    struct worker *workers;
} shared;

typedef struct worker {
    shared *sh;
    int idx;
    pthread_t tid;
    void *conn;
    ycsb_rng rng;
    ycsb_chooser ch;
    uint64_t quota;
    ycsb_hist *hist; /* YCSB_NOPS of them */
    uint64_t not_found[YCSB_NOPS];
    uint64_t done; /* atomic: operations completed, for the timeline */
    ycsb_rec rec;
    char **vals;
    char *valbuf;
} worker;

static volatile sig_atomic_t got_signal;
static void on_signal(int sig)
{
    (void)sig;
    got_signal = 1;
}

static bool stopping(shared *sh)
{
    return got_signal || __atomic_load_n(&sh->stop, __ATOMIC_RELAXED);
}

/* Stop every thread (the timeline's too); with e, record it when it is the first error. */
static void stop_run(shared *sh, const rt_err *e)
{
    pthread_mutex_lock(&sh->mu);
    if (e && !sh->failed) {
        sh->failed = true;
        sh->first_err = *e;
    }
    __atomic_store_n(&sh->stop, 1, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&sh->cv);
    pthread_mutex_unlock(&sh->mu);
}

/* ---- timeline ------------------------------------------------------------------------ */

typedef struct timeline {
    shared *sh;
    FILE *f;
    pthread_t tid;
} timeline;

/* Every interval, the operations completed in it, written at once (so a process killed
 * mid-run leaves the timeline up to its last interval). Intervals without an operation are
 * written too: stalls are what the timeline is for. The last, partial interval of a phase
 * is not written. */
static void *timeline_main(void *arg)
{
    timeline *tl = arg;
    shared *sh = tl->sh;
    uint64_t step = sh->o->interval_ms * RT_MS, prev = 0;
    for (uint64_t k = 1;; k++) {
        uint64_t due = sh->t0 + k * step;
        pthread_mutex_lock(&sh->mu);
        while (!stopping(sh) && rt_now_ns() < due) {
            struct timespec ts = {.tv_sec = (time_t)(due / RT_S), .tv_nsec = (long)(due % RT_S)};
            pthread_cond_timedwait(&sh->cv, &sh->mu, &ts);
        }
        pthread_mutex_unlock(&sh->mu);
        if (stopping(sh))
            break;
        uint64_t sum = 0;
        for (int i = 0; i < sh->o->threads; i++)
            sum += __atomic_load_n(&sh->workers[i].done, __ATOMIC_RELAXED);
        unsigned long long t_ms = (unsigned long long)(k - 1) * sh->o->interval_ms;
        fprintf(tl->f, "%llu,%llu\n", t_ms, (unsigned long long)(sum - prev));
        fflush(tl->f);
        prev = sum;
    }
    return NULL;
}

/* ---- one operation ------------------------------------------------------------------- */

static uint64_t realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Append "KEY VERSION\n" with one write(2) on an O_APPEND descriptor: the line is in the
 * kernel when the call returns, so a process killed later loses none of it, and a process
 * killed during the call leaves no part of a line. It is called only after the backend
 * acknowledged the write. */
static int record_ack(shared *sh, const char *key, uint64_t version, rt_err *err)
{
    char line[YCSB_KEY_MAX + 24];
    int n = snprintf(line, sizeof line, "%s %llu\n", key, (unsigned long long)version);
    ssize_t w = write(sh->ack_fd, line, (size_t)n);
    if (w != n)
        return w < 0 ? rt_err_sys(err, "--acked: write")
                     : rt_err_set(err, EIO, "--acked: short write");
    return 0;
}

/* The write path: an insert (field YCSB_VERSION_ALL) or an update of one field, or, with
 * rmw, a read of the record and then the update.
 *
 * Why `check` may require "version >= acknowledged version" per field: with --acked the
 * writes to one key are serialized in this process by the key's stripe lock, held from
 * the moment the version is taken until the backend returned. So the backend applies a
 * key's writes in version order, and a field holding version v was last written by the
 * write of version v: every write of that field with a smaller version was applied before
 * it. A field holding a smaller version than an acknowledged write of that field means the
 * write was lost. Processes follow one another (load, the runs, check) and take versions
 * from CLOCK_REALTIME in microseconds, so a later process's writes carry larger versions,
 * as long as the clock does not step back in between. YCSB's own clients do not serialize
 * writes to one key; without --acked neither does this one.
 *
 * Updates write one field (YCSB's writeallfields=false) and record which one in the
 * version's low byte, so an acknowledgement line stays "KEY VERSION" and `check` knows
 * which field it vouches for. */
static int do_write(worker *w, ycsb_op op, uint64_t keynum, const char *key, int field,
                    uint64_t *lat_ns, rt_err *err)
{
    shared *sh = w->sh;
    const ycsb_opts *o = sh->o;
    const ycsb_backend *be = o->be;
    stripe *st = sh->stripes ? &sh->stripes[keynum % STRIPES] : NULL;
    uint64_t t0 = rt_now_ns(), version, seq = realtime_us();
    int rc = 0;
    if (st) {
        pthread_mutex_lock(&st->mu);
        if (seq <= st->last_seq)
            seq = st->last_seq + 1;
        st->last_seq = seq;
    }
    version = ycsb_version_make(seq, field);
    if (op == YCSB_RMW)
        rc = be->read(w->conn, key, &w->rec, err);
    if (rc == 0) {
        if (field == YCSB_VERSION_ALL) {
            for (int i = 0; i < o->fieldcount; i++)
                ycsb_value_fill(w->vals[i], o->fieldlength, key, i, version);
            rc = be->insert(w->conn, key, w->vals, err);
        } else {
            ycsb_value_fill(w->vals[0], o->fieldlength, key, field, version);
            rc = be->update(w->conn, key, field, w->vals[0], err);
        }
    }
    if (st)
        pthread_mutex_unlock(&st->mu);
    *lat_ns = rt_now_ns() - t0;
    if (rc == 0 && sh->ack_fd >= 0)
        rc = record_ack(sh, key, version, err);
    return rc;
}

/* One operation of a run (or an insert of the load): 0, -ENOENT (counted, the run goes
 * on) or another error (the run stops). */
static int do_op(worker *w, ycsb_op op, uint64_t keynum, rt_err *err)
{
    shared *sh = w->sh;
    const ycsb_opts *o = sh->o;
    char key[YCSB_KEY_MAX];
    uint64_t lat = 0, t0;
    unsigned found;
    int rc;
    switch (op) {
    case YCSB_READ:
    case YCSB_SCAN:
    case YCSB_UPDATE:
    case YCSB_RMW:
        keynum = ycsb_chooser_key(&w->ch, ycsb_counter_last(&sh->inserts), &w->rng);
        break;
    case YCSB_INSERT:
    default:
        break;
    }
    ycsb_key_name(keynum, key);
    switch (op) {
    case YCSB_READ:
        t0 = rt_now_ns();
        rc = o->be->read(w->conn, key, &w->rec, err);
        lat = rt_now_ns() - t0;
        break;
    case YCSB_SCAN: {
        unsigned len = ycsb_scan_length(o->w, &w->rng);
        t0 = rt_now_ns();
        rc = o->be->scan(w->conn, key, len, &w->rec, &found, err);
        lat = rt_now_ns() - t0;
        break;
    }
    case YCSB_UPDATE:
    case YCSB_RMW: {
        int field = (int)ycsb_rng_below(&w->rng, (uint64_t)o->fieldcount);
        rc = do_write(w, op, keynum, key, field, &lat, err);
        break;
    }
    case YCSB_INSERT:
    default:
        rc = do_write(w, op, keynum, key, YCSB_VERSION_ALL, &lat, err);
        if (o->phase == YCSB_RUN) {
            /* As YCSB does (in a finally block): acknowledged even when it failed, so that
             * one failed insert does not stop reads from reaching later keys. */
            int arc = ycsb_counter_ack(&sh->inserts, keynum);
            if (arc < 0 && rc == 0)
                rc = rt_err_set(err, -arc, "more than %u inserts in flight", YCSB_ACK_WINDOW);
        }
        break;
    }
    if (rc == -ENOENT) {
        w->not_found[op]++;
    } else if (rc == 0) {
        ycsb_hist_record(&w->hist[op], lat);
        __atomic_fetch_add(&w->done, 1, __ATOMIC_RELAXED);
    }
    return rc;
}

/* ---- client threads ------------------------------------------------------------------ */

static void *worker_main(void *arg)
{
    worker *w = arg;
    shared *sh = w->sh;
    const ycsb_opts *o = sh->o;
    rt_err e;
    for (uint64_t i = 0; !stopping(sh); i++) {
        if (o->duration_ns ? rt_now_ns() >= sh->deadline : o->phase == YCSB_RUN && i >= w->quota)
            break;
        ycsb_op op;
        uint64_t keynum = 0;
        if (o->phase == YCSB_LOAD) {
            op = YCSB_INSERT;
            keynum = __atomic_fetch_add(&sh->load_next, 1, __ATOMIC_RELAXED);
            if (keynum >= o->records)
                break;
        } else {
            op = ycsb_choose_op(o->w, &w->rng);
            if (op == YCSB_INSERT)
                keynum = ycsb_counter_next(&sh->inserts);
        }
        int rc = do_op(w, op, keynum, &e);
        if (rc < 0 && rc != -ENOENT) {
            stop_run(sh, &e);
            break;
        }
    }
    return NULL;
}

static void worker_free(worker *w, const ycsb_backend *be)
{
    if (w->conn)
        be->disconnect(w->conn);
    ycsb_rec_free(&w->rec);
    free(w->hist);
    free(w->vals);
    free(w->valbuf);
}

static int worker_init(worker *w, shared *sh, int idx, rt_err *err)
{
    const ycsb_opts *o = sh->o;
    memset(w, 0, sizeof *w);
    w->sh = sh;
    w->idx = idx;
    ycsb_rng_seed(&w->rng, o->seed, (uint64_t)idx);
    if (o->phase == YCSB_RUN)
        ycsb_chooser_init(&w->ch, o->w, o->records, o->ops);
    w->quota = o->ops / (uint64_t)o->threads + ((uint64_t)idx < o->ops % (uint64_t)o->threads);
    ycsb_rec_init(&w->rec, o->fieldcount);
    w->hist = malloc(YCSB_NOPS * sizeof *w->hist);
    w->vals = calloc((size_t)o->fieldcount, sizeof *w->vals);
    w->valbuf = malloc((size_t)o->fieldcount * o->fieldlength);
    if (!w->hist || !w->vals || !w->valbuf)
        return rt_err_set(err, ENOMEM, "no memory for thread %d", idx);
    for (int i = 0; i < YCSB_NOPS; i++)
        ycsb_hist_init(&w->hist[i]);
    for (int i = 0; i < o->fieldcount; i++)
        w->vals[i] = w->valbuf + (size_t)i * o->fieldlength;
    return o->be->connect(sh->db, &w->conn, err);
}

/* ---- reports ------------------------------------------------------------------------- */

static FILE *open_out(const char *path, const char *header, rt_err *err)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        rt_err_sys(err, "%s", path);
        return NULL;
    }
    fputs(header, f);
    return f;
}

static int close_out(FILE *f, const char *path, rt_err *err)
{
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad)
        return rt_err_sys(err, "%s: write", path);
    return 0;
}

static double us(uint64_t ns) { return (double)ns / 1000.0; }

static int report(const ycsb_opts *o, const ycsb_hist *hist, const uint64_t *not_found, double secs,
                  rt_err *err)
{
    ycsb_hist *all = malloc(sizeof *all);
    if (!all)
        return rt_err_set(err, ENOMEM, "no memory for the report");
    ycsb_hist_init(all);
    for (int i = 0; i < YCSB_NOPS; i++)
        ycsb_hist_merge(all, &hist[i]);
    static const double qs[] = {0.50, 0.95, 0.99, 0.999};
    FILE *csv = NULL;
    if (o->csv &&
        !(csv = open_out(o->csv, "op,ops,ops_per_s,p50_us,p95_us,p99_us,p999_us,max_us\n", err))) {
        free(all);
        return -EIO;
    }
    printf("%-8s %10s %12s %10s %10s %10s %10s %10s %10s\n", "op", "ops", "ops/s", "p50_us",
           "p95_us", "p99_us", "p999_us", "max_us", "not_found");
    uint64_t nf_all = 0;
    for (int i = 0; i <= YCSB_NOPS; i++) {
        const ycsb_hist *h = i < YCSB_NOPS ? &hist[i] : all;
        uint64_t nf = i < YCSB_NOPS ? not_found[i] : nf_all;
        if (i < YCSB_NOPS) {
            nf_all += nf;
            if (h->count == 0 && nf == 0)
                continue;
        }
        const char *name = i < YCSB_NOPS ? ycsb_op_names[i] : "all";
        double rate = secs > 0 ? (double)h->count / secs : 0;
        double p[4];
        for (int k = 0; k < 4; k++)
            p[k] = us(ycsb_hist_quantile(h, qs[k]));
        printf("%-8s %10llu %12.1f %10.1f %10.1f %10.1f %10.1f %10.1f %10llu\n", name,
               (unsigned long long)h->count, rate, p[0], p[1], p[2], p[3], us(h->max),
               (unsigned long long)nf);
        if (csv)
            fprintf(csv, "%s,%llu,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f\n", name,
                    (unsigned long long)h->count, rate, p[0], p[1], p[2], p[3], us(h->max));
    }
    int rc = csv ? close_out(csv, o->csv, err) : 0;
    if (rc == 0 && o->hist) {
        FILE *f = open_out(o->hist, "us,cdf\n", err);
        if (!f) {
            rc = -EIO;
        } else {
            uint64_t cum = 0;
            for (unsigned b = 0; b < YCSB_HIST_BUCKETS && all->count; b++) {
                if (!all->bucket[b])
                    continue;
                cum += all->bucket[b];
                uint64_t up = ycsb_hist_bucket_upper(b);
                fprintf(f, "%.3f,%.6f\n", us(up < all->max ? up : all->max),
                        (double)cum / (double)all->count);
            }
            rc = close_out(f, o->hist, err);
        }
    }
    free(all);
    return rc;
}

/* ---- load and run -------------------------------------------------------------------- */

static int run_phase(const ycsb_opts *o, void *db)
{
    shared sh = {.o = o, .db = db, .ack_fd = -1};
    rt_err e;
    int status = 1;
    timeline tl = {.sh = &sh};
    bool tl_started = false;
    pthread_mutex_init(&sh.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sh.cv, &ca);
    pthread_condattr_destroy(&ca);
    int nw = 0;
    sh.workers = calloc((size_t)o->threads, sizeof *sh.workers);
    if (!sh.workers) {
        fprintf(stderr, "splitft-ycsb: no memory for %d threads\n", o->threads);
        return 1;
    }
    if (ycsb_counter_init(&sh.inserts, o->phase == YCSB_RUN ? o->records : 0, &e) < 0)
        goto out_msg;
    if (o->nacked) {
        sh.ack_fd = open(o->acked[0], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (sh.ack_fd < 0) {
            rt_err_sys(&e, "--acked %s", o->acked[0]);
            goto out_msg;
        }
        sh.stripes = calloc(STRIPES, sizeof *sh.stripes);
        if (!sh.stripes) {
            rt_err_set(&e, ENOMEM, "no memory for the key locks");
            goto out_msg;
        }
        for (int i = 0; i < STRIPES; i++)
            pthread_mutex_init(&sh.stripes[i].mu, NULL);
    }
    /* Every connection is made before the clock starts. */
    for (; nw < o->threads; nw++)
        if (worker_init(&sh.workers[nw], &sh, nw, &e) < 0) {
            nw++;
            goto out_msg;
        }
    if (o->timeline && !(tl.f = open_out(o->timeline, "t_ms,ops\n", &e)))
        goto out_msg;
    if (tl.f)
        fflush(tl.f);
    sh.t0 = rt_now_ns();
    sh.deadline = sh.t0 + o->duration_ns;
    int started = 0;
    for (; started < o->threads; started++)
        if (pthread_create(&sh.workers[started].tid, NULL, worker_main, &sh.workers[started]) != 0)
            break;
    if (started < o->threads) {
        rt_err_set(&e, EAGAIN, "cannot start thread %d", started);
        stop_run(&sh, &e);
    }
    if (tl.f && pthread_create(&tl.tid, NULL, timeline_main, &tl) == 0)
        tl_started = true;
    for (int i = 0; i < started; i++)
        pthread_join(sh.workers[i].tid, NULL);
    double secs = (double)(rt_now_ns() - sh.t0) / (double)RT_S;
    stop_run(&sh, NULL); /* the timeline */
    if (tl_started)
        pthread_join(tl.tid, NULL);
    if (tl.f && close_out(tl.f, o->timeline, &e) < 0) {
        tl.f = NULL;
        goto out_msg;
    }
    tl.f = NULL;

    ycsb_hist *hist = malloc(YCSB_NOPS * sizeof *hist);
    if (!hist) {
        rt_err_set(&e, ENOMEM, "no memory for the report");
        goto out_msg;
    }
    uint64_t nf[YCSB_NOPS] = {0}, total = 0, nf_total = 0;
    for (int k = 0; k < YCSB_NOPS; k++) {
        ycsb_hist_init(&hist[k]);
        for (int i = 0; i < o->threads; i++) {
            ycsb_hist_merge(&hist[k], &sh.workers[i].hist[k]);
            nf[k] += sh.workers[i].not_found[k];
        }
        total += hist[k].count;
        nf_total += nf[k];
    }
    char wl[16] = "";
    if (o->phase == YCSB_RUN)
        snprintf(wl, sizeof wl, "workload %c, ", o->w->letter);
    printf("splitft-ycsb %s: %s%s %s, %d thread%s, %llu operations in %.3f s\n",
           o->phase == YCSB_LOAD ? "load" : "run", wl, o->be->name, o->target, o->threads,
           o->threads == 1 ? "" : "s", (unsigned long long)total, secs);
    int rrc = report(o, hist, nf, secs, &e);
    free(hist);
    fflush(stdout);
    if (rrc < 0)
        goto out_msg;
    if (sh.failed) {
        e = sh.first_err;
        goto out_msg;
    }
    if (got_signal && !sh.failed)
        fprintf(stderr, "splitft-ycsb: stopped by a signal\n");
    if (nf_total) {
        fprintf(stderr, "splitft-ycsb: %llu operations found no record\n",
                (unsigned long long)nf_total);
        goto out;
    }
    status = 0;
    goto out;
out_msg:
    fprintf(stderr, "splitft-ycsb: %s\n", e.msg);
out:
    if (tl.f)
        fclose(tl.f);
    for (int i = 0; i < nw; i++)
        worker_free(&sh.workers[i], o->be);
    free(sh.workers);
    if (sh.ack_fd >= 0)
        close(sh.ack_fd);
    if (sh.stripes) {
        for (int i = 0; i < STRIPES; i++)
            pthread_mutex_destroy(&sh.stripes[i].mu);
        free(sh.stripes);
    }
    if (sh.inserts.window)
        ycsb_counter_destroy(&sh.inserts);
    pthread_cond_destroy(&sh.cv);
    pthread_mutex_destroy(&sh.mu);
    return status;
}

/* ---- main ---------------------------------------------------------------------------- */

static int parse_u64(const char *opt, const char *s, long long min, long long max, uint64_t *out)
{
    long long v;
    rt_err e;
    if (rt_parse_int(s, min, max, &v, &e) < 0) {
        fprintf(stderr, "splitft-ycsb: %s '%s': %s\n(see splitft-ycsb --help)\n", opt, s, e.msg);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    enum {
        OPT_BACKEND = 256,
        OPT_TARGET,
        OPT_WORKLOAD,
        OPT_RECORDS,
        OPT_OPS,
        OPT_DURATION,
        OPT_THREADS,
        OPT_SEED,
        OPT_SYNC,
        OPT_EXCLUSIVE,
        OPT_ACKED,
        OPT_TIMELINE,
        OPT_INTERVAL,
        OPT_CSV,
        OPT_HIST,
        OPT_FIELDCOUNT,
        OPT_FIELDLENGTH
    };
    static const struct option lopts[] = {{"backend", required_argument, NULL, OPT_BACKEND},
                                          {"target", required_argument, NULL, OPT_TARGET},
                                          {"workload", required_argument, NULL, OPT_WORKLOAD},
                                          {"records", required_argument, NULL, OPT_RECORDS},
                                          {"ops", required_argument, NULL, OPT_OPS},
                                          {"duration", required_argument, NULL, OPT_DURATION},
                                          {"threads", required_argument, NULL, OPT_THREADS},
                                          {"seed", required_argument, NULL, OPT_SEED},
                                          {"sync", no_argument, NULL, OPT_SYNC},
                                          {"exclusive", no_argument, NULL, OPT_EXCLUSIVE},
                                          {"acked", required_argument, NULL, OPT_ACKED},
                                          {"timeline", required_argument, NULL, OPT_TIMELINE},
                                          {"interval-ms", required_argument, NULL, OPT_INTERVAL},
                                          {"csv", required_argument, NULL, OPT_CSV},
                                          {"hist", required_argument, NULL, OPT_HIST},
                                          {"fieldcount", required_argument, NULL, OPT_FIELDCOUNT},
                                          {"fieldlength", required_argument, NULL, OPT_FIELDLENGTH},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    ycsb_opts o = {.records = 1000,
                   .ops = 1000,
                   .threads = 1,
                   .seed = 1,
                   .interval_ms = 100,
                   .fieldcount = 10,
                   .fieldlength = 100};
    const char *acked[64] = {NULL};
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc < 2 || argv[1][0] == '-')
        return die_usage("%s", "no command given: load, run or check");
    if (strcmp(argv[1], "load") == 0)
        o.phase = YCSB_LOAD;
    else if (strcmp(argv[1], "run") == 0)
        o.phase = YCSB_RUN;
    else if (strcmp(argv[1], "check") == 0)
        o.phase = YCSB_CHECK;
    else
        return die_usage("unknown command '%s'; accepted: load, run, check", argv[1]);
    optind = 2;
    opterr = 0;
    int ch;
    uint64_t v;
    rt_err e;
    while ((ch = getopt_long(argc, argv, ":h", lopts, NULL)) != -1) {
        switch (ch) {
        case OPT_BACKEND:
            if (strcmp(optarg, "redis") == 0)
                o.be = &ycsb_backend_redis;
            else if (strcmp(optarg, "rocksdb") == 0)
                o.be = &ycsb_backend_rocksdb;
            else if (strcmp(optarg, "sqlite") == 0)
                o.be = &ycsb_backend_sqlite;
            else
                return die_usage("--backend '%s': accepted: redis, rocksdb, sqlite", optarg);
            break;
        case OPT_TARGET:
            o.target = optarg;
            break;
        case OPT_WORKLOAD:
            if (strlen(optarg) != 1 || !(o.w = ycsb_workload_get(optarg[0])))
                return die_usage("--workload '%s': accepted: a, b, c, d, e, f", optarg);
            break;
        case OPT_RECORDS:
            if (parse_u64("--records", optarg, 1, 1LL << 40, &o.records) < 0)
                return 2;
            break;
        case OPT_OPS:
            if (parse_u64("--ops", optarg, 1, 1LL << 50, &o.ops) < 0)
                return 2;
            break;
        case OPT_DURATION:
            if (rt_parse_duration(optarg, RT_S, RT_MS, 366ULL * 24 * 3600 * RT_S, &o.duration_ns,
                                  &e) < 0) {
                fprintf(stderr, "splitft-ycsb: --duration '%s': %s\n(see splitft-ycsb --help)\n",
                        optarg, e.msg);
                return 2;
            }
            break;
        case OPT_THREADS:
            if (parse_u64("--threads", optarg, 1, 1024, &v) < 0)
                return 2;
            o.threads = (int)v;
            break;
        case OPT_SEED:
            if (parse_u64("--seed", optarg, 0, INT64_MAX, &o.seed) < 0)
                return 2;
            break;
        case OPT_SYNC:
            o.sync = true;
            break;
        case OPT_EXCLUSIVE:
            o.exclusive = true;
            break;
        case OPT_ACKED:
            if (o.nacked == sizeof acked / sizeof acked[0])
                return die_usage("%s", "too many --acked files (at most 64)");
            acked[o.nacked++] = optarg;
            break;
        case OPT_TIMELINE:
            o.timeline = optarg;
            break;
        case OPT_INTERVAL:
            if (parse_u64("--interval-ms", optarg, 1, 3600000, &o.interval_ms) < 0)
                return 2;
            break;
        case OPT_CSV:
            o.csv = optarg;
            break;
        case OPT_HIST:
            o.hist = optarg;
            break;
        case OPT_FIELDCOUNT:
            if (parse_u64("--fieldcount", optarg, 1, YCSB_FIELDS_MAX, &v) < 0)
                return 2;
            o.fieldcount = (int)v;
            break;
        case OPT_FIELDLENGTH:
            if (parse_u64("--fieldlength", optarg, YCSB_VALUE_MIN, 1 << 20, &v) < 0)
                return 2;
            o.fieldlength = (size_t)v;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case ':':
            return die_usage("%s needs a value", argv[optind - 1]);
        default:
            return die_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    /* check --acked FILE FILE...: the files after the first arrive as operands. */
    for (; optind < argc; optind++) {
        if (o.phase != YCSB_CHECK || o.nacked == 0)
            return die_usage("unexpected argument '%s'", argv[optind]);
        if (o.nacked == sizeof acked / sizeof acked[0])
            return die_usage("%s", "too many --acked files (at most 64)");
        acked[o.nacked++] = argv[optind];
    }
    o.acked = acked;
    if (!o.be)
        return die_usage("%s", "--backend is required: redis, rocksdb or sqlite");
    if (!o.target || !o.target[0])
        return die_usage("%s", "--target is required: HOST:PORT for redis, a path otherwise");
    if (o.exclusive && o.be != &ycsb_backend_sqlite)
        return die_usage("%s", "--exclusive is for --backend sqlite only");
    if (o.phase == YCSB_RUN && !o.w)
        return die_usage("%s", "run needs --workload a, b, c, d, e or f");
    if (o.phase == YCSB_CHECK && o.nacked == 0)
        return die_usage("%s", "check needs --acked FILE [FILE...]");
    if (o.phase != YCSB_CHECK && o.nacked > 1)
        return die_usage("%s", "load and run record into one --acked file");
    if (o.phase == YCSB_LOAD)
        o.w = ycsb_workload_get('a'); /* unused by load; never NULL */

    signal(SIGPIPE, SIG_IGN);
    /* SA_RESTART: a signal ends the phase between operations, never fails one. */
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    ycsb_conf conf = {.target = o.target,
                      .phase = o.phase,
                      .fieldcount = o.fieldcount,
                      .fieldlength = o.fieldlength,
                      .sync = o.sync,
                      .exclusive = o.exclusive};
    void *db;
    if (o.be->open(&conf, &db, &e) < 0) {
        fprintf(stderr, "splitft-ycsb: %s\n", e.msg);
        return e.code == EINVAL ? 2 : 1;
    }
    int status = o.phase == YCSB_CHECK ? ycsb_check(&o, db) : run_phase(&o, db);
    o.be->close(db);
    return status;
}
