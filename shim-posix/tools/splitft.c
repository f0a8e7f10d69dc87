/* splitft: the SplitFT command: inspect the near-compute-log peers, dump and recover a
 * client's log, and measure commit latency and throughput.
 *
 * Sections: options, peers/stats, dump, recover, bench, fsync-bench, main.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ncl/client.h"
#include "rt/log.h"

static const char usage[] =
    "usage: splitft [global options] COMMAND [command options]\n"
    "\n"
    "Commands:\n"
    "  peers                     health, memory and clients of each peer\n"
    "  stats                     each peer's statistics, one JSON object per line\n"
    "  dump --id NAME            the records each peer holds for client NAME\n"
    "  recover --id NAME [--dry-run]\n"
    "                            fence NAME's old incarnation, read a majority, replay the\n"
    "                            longest gap-free prefix into the files (fsynced), trim the\n"
    "                            peers; --dry-run only lists what would be replayed\n"
    "  bench [--size BYTES] [--concurrency N] [--duration SECONDS] [--csv] [--keep]\n"
    "                            commit load: latency p50/p99/p999 and commits/s; the records\n"
    "                            are trimmed at the end unless --keep (their paths are\n"
    "                            /splitft-bench/N: recover them with --dry-run only)\n"
    "  fsync-bench --dir DIR [--size BYTES] [--duration SECONDS] [--csv]\n"
    "                            the baseline: append BYTES to a file and fdatasync, repeated\n"
    "\n"
    "Global options (override the environment):\n"
    "  --peers HOST:PORT,...     SPLITFT_PEERS\n"
    "  --id NAME                 SPLITFT_ID (bench default: bench-PID)\n"
    "  --timeout MS              SPLITFT_TIMEOUT_MS (default 1000)\n"
    "  --transport tcp|rdma      SPLITFT_TRANSPORT (default tcp)\n"
    "Exit status: 0 success, 1 failure (for recover: nothing was started on stale files),\n"
    "2 bad usage.\n";

/* ---- options ------------------------------------------------------------------------ */

typedef struct opts {
    const char *cmd;
    size_t size;
    int concurrency;
    double duration;
    bool csv, dry_run, keep;
    const char *dir;
} opts;

static int die_usage(const char *msg)
{
    fprintf(stderr, "splitft: %s\n(see splitft --help)\n", msg);
    return 2;
}

static int load_config(ncl_config *cfg, const char *id_default)
{
    rt_err e;
    if (ncl_config_from_env(cfg, id_default, &e) < 0) {
        fprintf(stderr, "splitft: %s\n", e.msg);
        return -1;
    }
    return 0;
}

/* ---- peers / stats ------------------------------------------------------------------ */

/* STATS of one peer, as text; NULL with err when unreachable. */
static char *peer_stats(const ncl_config *cfg, const rt_hostport *hp, rt_err *err)
{
    ncl_stream *s = cfg->transport->connect(hp->host, hp->port, cfg->connect_timeout_ms, err);
    if (!s)
        return NULL;
    unsigned char *rep;
    size_t len;
    int rc = ncl_rpc(cfg->transport, s, NCL_STATS, 0, NULL, 0, (int)(cfg->timeout_ns / RT_MS), &rep,
                     &len, err);
    cfg->transport->close(s);
    if (rc < 0)
        return NULL;
    return (char *)rep;
}

/* The number after "key": in a flat JSON text (our own STATS output). */
static unsigned long long json_num(const char *j, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(j, pat);
    return p ? strtoull(p + strlen(pat), NULL, 10) : 0;
}

static int cmd_peers(const ncl_config *cfg, bool raw)
{
    int up = 0;
    if (!raw)
        printf("%-24s %-6s %12s %12s %8s %8s %10s\n", "peer", "state", "used", "capacity",
               "clients", "conns", "uptime_s");
    for (size_t i = 0; i < cfg->peers.n; i++) {
        const rt_hostport *hp = &cfg->peers.v[i];
        char addr[RT_HOST_MAX + 8];
        snprintf(addr, sizeof addr, "%s:%u", hp->host, hp->port);
        rt_err e;
        char *j = peer_stats(cfg, hp, &e);
        if (!j) {
            if (raw)
                printf("{\"peer\":\"%s\",\"state\":\"down\",\"error\":\"%s\"}\n", addr, e.msg);
            else
                printf("%-24s %-6s %s\n", addr, "down", e.msg);
            continue;
        }
        up++;
        if (raw) {
            printf("{\"peer\":\"%s\",\"state\":\"up\",\"stats\":%s}\n", addr, j);
        } else {
            int clients = 0;
            for (const char *p = strstr(j, "\"id\":"); p; p = strstr(p + 1, "\"id\":"))
                clients++;
            printf("%-24s %-6s %12llu %12llu %8d %8llu %10.1f\n", addr, "up", json_num(j, "used"),
                   json_num(j, "capacity"), clients, json_num(j, "connections"),
                   (double)json_num(j, "uptime_ms") / 1000.0);
        }
        free(j);
    }
    if (!raw)
        printf("%d of %zu peers up; a majority is %d\n", up, cfg->peers.n,
               ncl_majority((int)cfg->peers.n));
    return up >= ncl_majority((int)cfg->peers.n) ? 0 : 1;
}

/* ---- dump -------------------------------------------------------------------------- */

static int cmd_dump(const ncl_config *cfg)
{
    int answered = 0;
    for (size_t i = 0; i < cfg->peers.n; i++) {
        const rt_hostport *hp = &cfg->peers.v[i];
        rt_err e;
        ncl_stream *s = cfg->transport->connect(hp->host, hp->port, cfg->connect_timeout_ms, &e);
        if (!s) {
            printf("peer %s:%u: down (%s)\n", hp->host, hp->port, e.msg);
            continue;
        }
        unsigned char hello[10 + NCL_ID_MAX], *rep;
        size_t idlen = strlen(cfg->id), len;
        unsigned char *q =
            ncl_put_u8(ncl_put_u8(ncl_put_u64(hello, 0), NCL_HELLO_QUERY), (uint8_t)idlen);
        memcpy(q, cfg->id, idlen);
        int tmo = (int)(cfg->timeout_ns / RT_MS);
        int rc = ncl_rpc(cfg->transport, s, NCL_HELLO, 0, hello, 10 + idlen, tmo, &rep, &len, &e);
        if (rc != NCL_R_OK) {
            printf("peer %s:%u: %s\n", hp->host, hp->port, rc < 0 ? e.msg : ncl_type_name(rc));
            free(rc < 0 ? NULL : rep);
            cfg->transport->close(s);
            continue;
        }
        ncl_cur cur = ncl_cur_make(rep, len);
        uint64_t epoch = 0, start = 0, next = 0, used = 0, cap = 0, owner = 0;
        ncl_get_u64(&cur, &epoch);
        ncl_get_u64(&cur, &start);
        ncl_get_u64(&cur, &next);
        ncl_get_u64(&cur, &used);
        ncl_get_u64(&cur, &cap);
        ncl_get_u64(&cur, &owner);
        free(rep);
        answered++;
        printf("peer %s:%u: client %s epoch %llu log owner %llu records [%llu, %llu)\n", hp->host,
               hp->port, cfg->id, (unsigned long long)epoch, (unsigned long long)owner,
               (unsigned long long)start, (unsigned long long)next);
        uint64_t from = start;
        while (from < next) {
            unsigned char pay[12];
            ncl_put_u32(ncl_put_u64(pay, from), 0);
            rc = ncl_rpc(cfg->transport, s, NCL_READ, 0, pay, sizeof pay, tmo, &rep, &len, &e);
            if (rc != NCL_R_OK) {
                printf("  READ failed: %s\n", rc < 0 ? e.msg : ncl_type_name(rc));
                if (rc >= 0)
                    free(rep);
                break;
            }
            cur = ncl_cur_make(rep, len);
            uint64_t s0, n0;
            uint32_t count = 0;
            uint64_t own;
            ncl_get_u64(&cur, &s0);
            ncl_get_u64(&cur, &n0);
            ncl_get_u64(&cur, &own);
            ncl_get_u32(&cur, &count);
            for (uint32_t k = 0; k < count; k++) {
                ncl_rec r;
                size_t rsize;
                if (ncl_rec_decode(cur.p, (size_t)(cur.end - cur.p), &r, &rsize, &e) < 0) {
                    printf("  bad record: %s\n", e.msg);
                    count = 0;
                    break;
                }
                printf("  seq %llu %s file %llu:%llu offset %llu len %u path %.*s\n",
                       (unsigned long long)r.seq,
                       r.kind == NCL_REC_TOMBSTONE ? "tombstone" : "write",
                       (unsigned long long)r.dev, (unsigned long long)r.ino,
                       (unsigned long long)r.offset, r.len, (int)r.path_len, r.path);
                cur.p += rsize;
                from = r.seq + 1;
            }
            free(rep);
            if (count == 0)
                break;
        }
        cfg->transport->close(s);
    }
    return answered > 0 ? 0 : 1;
}

/* ---- recover ------------------------------------------------------------------------ */

static int cmd_recover(const ncl_config *cfg, bool dry_run)
{
    rt_err e;
    ncl_recovery *r;
    if (ncl_recover_begin(cfg, &r, &e) < 0) {
        fprintf(stderr, "splitft recover: %s\n", e.msg);
        return 1;
    }
    printf(
        "recover %s: epoch %llu, %d peers answered, %d read, prefix [%llu, %llu): %zu writes, %llu tombstones, %llu unacknowledged records past a gap ignored%s\n",
        cfg->id, (unsigned long long)r->epoch, r->answered, r->owner_views,
        (unsigned long long)r->start, (unsigned long long)r->next, r->nrecs,
        (unsigned long long)r->tombstones, (unsigned long long)r->beyond_gap,
        r->conflicts ? " (CONFLICTING COPIES SEEN)" : "");
    if (dry_run) {
        for (size_t i = 0; i < r->nrecs; i++)
            printf("  seq %llu %.*s offset %llu len %u\n", (unsigned long long)r->recs[i].seq,
                   (int)r->recs[i].path_len, r->recs[i].path, (unsigned long long)r->recs[i].offset,
                   r->recs[i].len);
        ncl_recovery_free(r);
        return 0;
    }
    ncl_replay_stats st;
    if (ncl_replay(r, NULL, &st, &e) < 0) {
        fprintf(stderr, "splitft recover: %s; the peers keep the records\n", e.msg);
        ncl_recovery_free(r);
        return 1;
    }
    if (ncl_recover_finish(r, &e) < 0) {
        fprintf(
            stderr,
            "splitft recover: replayed, but trimming failed: %s (running recovery again is safe)\n",
            e.msg);
        ncl_recovery_free(r);
        return 1;
    }
    printf(
        "recover %s: replayed %llu records (%llu bytes) into %llu files, fsynced; peers trimmed\n",
        cfg->id, (unsigned long long)st.records, (unsigned long long)st.bytes,
        (unsigned long long)st.files);
    ncl_recovery_free(r);
    return 0;
}

/* ---- bench ------------------------------------------------------------------------- */

typedef struct bench {
    ncl_client *c;
    size_t size;
    volatile int stop;
    uint64_t failures;
    char first_error[400];
    pthread_mutex_t mu;
} bench;

typedef struct worker {
    bench *b;
    int idx;
} worker;

static void *bench_worker(void *arg)
{
    worker *w = arg;
    bench *b = w->b;
    char *data = malloc(b->size);
    memset(data, 'a' + w->idx % 26, b->size);
    char path[64];
    snprintf(path, sizeof path, "/splitft-bench/%d", w->idx);
    uint64_t off = 0;
    while (!b->stop) {
        ncl_write wr = {.dev = 0,
                        .ino = (uint64_t)w->idx + 1,
                        .offset = off,
                        .path = path,
                        .data = data,
                        .len = (uint32_t)b->size};
        rt_err e;
        if (ncl_commit(b->c, &wr, 1, NULL, &e) < 0) {
            pthread_mutex_lock(&b->mu);
            if (b->failures++ == 0)
                snprintf(b->first_error, sizeof b->first_error, "%.390s", e.msg);
            pthread_mutex_unlock(&b->mu);
            usleep(1000);
        }
        off += b->size;
    }
    free(data);
    return NULL;
}

static int cmd_bench(const ncl_config *cfg, const opts *o)
{
    rt_err e;
    ncl_client *c = ncl_open(cfg, NCL_OPEN_DISCARD, &e);
    if (!c) {
        fprintf(stderr, "splitft bench: %s\n", e.msg);
        return 1;
    }
    bench b = {.c = c, .size = o->size};
    pthread_mutex_init(&b.mu, NULL);
    pthread_t t[256];
    worker w[256];
    uint64_t t0 = rt_now_ns();
    for (int i = 0; i < o->concurrency; i++) {
        w[i] = (worker){&b, i};
        pthread_create(&t[i], NULL, bench_worker, &w[i]);
    }
    uint64_t end = t0 + (uint64_t)(o->duration * 1e9);
    while (rt_now_ns() < end) {
        usleep(20000);
        /* Keep the peers' memory bounded the way the shim's flusher does: trim what is
         * committed (here nothing needs writing to a file first). */
        ncl_client_stats s;
        ncl_client_stats_get(c, &s);
        if (ncl_client_log_bytes(c) > (64u << 20) && ncl_trim(c, s.committed, &e) < 0)
            fprintf(stderr, "splitft bench: trim: %s\n", e.msg);
    }
    b.stop = 1;
    for (int i = 0; i < o->concurrency; i++)
        pthread_join(t[i], NULL);
    double secs = (double)(rt_now_ns() - t0) / 1e9;
    ncl_client_stats s;
    ncl_client_stats_get(c, &s);
    const rt_hist *h = ncl_commit_hist(c);
    double rate = (double)s.commits / secs;
    double p50 = (double)rt_hist_quantile(h, 0.5) / 1e3,
           p99 = (double)rt_hist_quantile(h, 0.99) / 1e3,
           p999 = (double)rt_hist_quantile(h, 0.999) / 1e3;
    double per_frame = s.frames_sent ? (double)s.records / ((double)s.frames_sent / s.npeers) : 0;
    if (o->csv)
        printf("%zu,%d,%d,%.2f,%llu,%llu,%.0f,%.1f,%.1f,%.1f,%.2f\n", o->size, s.npeers,
               o->concurrency, secs, (unsigned long long)s.commits, (unsigned long long)b.failures,
               rate, p50, p99, p999, per_frame);
    else
        printf(
            "size %zu B, %d peers, %d committers, %.1f s: %llu commits (%llu failed), %.0f commits/s, latency p50 %.1f us p99 %.1f us p999 %.1f us, %.2f records per frame\n",
            o->size, s.npeers, o->concurrency, secs, (unsigned long long)s.commits,
            (unsigned long long)b.failures, rate, p50, p99, p999, per_frame);
    for (int i = 0; !o->csv && i < s.npeers; i++)
        printf(
            "  peer %s: %s, holds every record below seq %llu, %llu reconnects, %llu catch-ups\n",
            s.peers[i].addr, s.peers[i].state, (unsigned long long)s.peers[i].acked,
            (unsigned long long)s.peers[i].reconnects, (unsigned long long)s.peers[i].catch_ups);
    if (b.failures)
        fprintf(stderr, "splitft bench: first failure: %s\n", b.first_error);
    if (!o->keep)
        ncl_trim(c, s.next, &e);
    ncl_close(c);
    return b.failures ? 1 : 0;
}

/* ---- fsync-bench ---------------------------------------------------------------------- */

static int cmd_fsync_bench(const opts *o)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/splitft-fsync-bench.%d", o->dir, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "splitft fsync-bench: cannot create %s: %s\n", path, strerror(errno));
        return 1;
    }
    char *data = malloc(o->size);
    memset(data, 'f', o->size);
    rt_hist *h = malloc(sizeof *h);
    rt_hist_init(h);
    uint64_t t0 = rt_now_ns(), end = t0 + (uint64_t)(o->duration * 1e9), n = 0;
    int rc = 0;
    while (rt_now_ns() < end) {
        uint64_t a = rt_now_ns();
        if (write(fd, data, o->size) != (ssize_t)o->size || fdatasync(fd) != 0) {
            fprintf(stderr, "splitft fsync-bench: %s\n", strerror(errno));
            rc = 1;
            break;
        }
        rt_hist_record(h, rt_now_ns() - a);
        n++;
    }
    double secs = (double)(rt_now_ns() - t0) / 1e9;
    close(fd);
    unlink(path);
    double p50 = (double)rt_hist_quantile(h, 0.5) / 1e3,
           p99 = (double)rt_hist_quantile(h, 0.99) / 1e3,
           p999 = (double)rt_hist_quantile(h, 0.999) / 1e3;
    if (o->csv)
        printf("%zu,%.2f,%llu,%.0f,%.1f,%.1f,%.1f\n", o->size, secs, (unsigned long long)n,
               (double)n / secs, p50, p99, p999);
    else
        printf(
            "append %zu B + fdatasync in %s: %llu in %.1f s, %.0f/s, latency p50 %.1f us p99 %.1f us p999 %.1f us\n",
            o->size, o->dir, (unsigned long long)n, secs, (double)n / secs, p50, p99, p999);
    free(h);
    free(data);
    return rc;
}

/* ---- main ------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const struct option lopts[] = {{"peers", required_argument, NULL, 'p'},
                                          {"id", required_argument, NULL, 'i'},
                                          {"timeout", required_argument, NULL, 't'},
                                          {"transport", required_argument, NULL, 'T'},
                                          {"size", required_argument, NULL, 's'},
                                          {"concurrency", required_argument, NULL, 'c'},
                                          {"duration", required_argument, NULL, 'd'},
                                          {"csv", no_argument, NULL, 'C'},
                                          {"dry-run", no_argument, NULL, 'n'},
                                          {"keep", no_argument, NULL, 'k'},
                                          {"dir", required_argument, NULL, 'D'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    opts o = {.size = 4096, .concurrency = 1, .duration = 5};
    signal(SIGPIPE, SIG_IGN);
    int ch;
    rt_err e;
    while ((ch = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        uint64_t v;
        long long n;
        switch (ch) {
        case 'p':
            setenv("SPLITFT_PEERS", optarg, 1);
            break;
        case 'i':
            setenv("SPLITFT_ID", optarg, 1);
            break;
        case 't':
            setenv("SPLITFT_TIMEOUT_MS", optarg, 1);
            break;
        case 'T':
            setenv("SPLITFT_TRANSPORT", optarg, 1);
            break;
        case 's':
            if (rt_parse_size(optarg, 1, 4u << 20, &v, &e) < 0)
                return die_usage(e.msg);
            o.size = (size_t)v;
            break;
        case 'c':
            if (rt_parse_int(optarg, 1, 256, &n, &e) < 0)
                return die_usage(e.msg);
            o.concurrency = (int)n;
            break;
        case 'd': {
            char *end;
            o.duration = strtod(optarg, &end);
            if (*end || o.duration <= 0 || o.duration > 3600)
                return die_usage("--duration: accepted: seconds, more than 0, at most 3600");
            break;
        }
        case 'C':
            o.csv = true;
            break;
        case 'n':
            o.dry_run = true;
            break;
        case 'k':
            o.keep = true;
            break;
        case 'D':
            o.dir = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            return die_usage("unknown option");
        }
    }
    if (optind != argc - 1)
        return die_usage(optind >= argc ? "no command given" : "one command at a time");
    o.cmd = argv[optind];
    if (strcmp(o.cmd, "fsync-bench") == 0) {
        if (!o.dir)
            return die_usage("fsync-bench needs --dir");
        return cmd_fsync_bench(&o);
    }
    ncl_config cfg;
    char bench_id[32];
    snprintf(bench_id, sizeof bench_id, "bench-%d", (int)getpid());
    bool needs_id = strcmp(o.cmd, "dump") == 0 || strcmp(o.cmd, "recover") == 0;
    const char *id_default = strcmp(o.cmd, "bench") == 0 ? bench_id : needs_id ? NULL : "none";
    if (load_config(&cfg, id_default) < 0)
        return needs_id && !getenv("SPLITFT_ID") ? die_usage("this command needs --id NAME") : 1;
    if (strcmp(o.cmd, "peers") == 0)
        return cmd_peers(&cfg, false);
    if (strcmp(o.cmd, "stats") == 0)
        return cmd_peers(&cfg, true);
    if (strcmp(o.cmd, "dump") == 0)
        return cmd_dump(&cfg);
    if (strcmp(o.cmd, "recover") == 0)
        return cmd_recover(&cfg, o.dry_run);
    if (strcmp(o.cmd, "bench") == 0)
        return cmd_bench(&cfg, &o);
    return die_usage("unknown command");
}
