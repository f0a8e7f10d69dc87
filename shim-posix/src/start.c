/* start.c: libsplitft's start and exit: the configuration, recovery of what an earlier
 * incarnation left in the log, the session and its durable marker, fork, the clean exit,
 * and the statistics (SPLITFT_STATS). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "rt/stats.h"
#include "state.h"
#include "sys.h"

sf_global G = {.mu = PTHREAD_MUTEX_INITIALIZER, .lg = RT_LOGGER_INIT("splitft"), .mode = "off"};

const char *const sf_fb_names[FB_MAX] = {"no_session", "bulk",          "size_mismatch",
                                         "mmap",       "append_pwrite", "first_sync",
                                         "unlinked",   "ncl_failed"};

bool sf_on(void) { return G.on && !G.child; }

/* ---- start and exit -------------------------------------------------------------------- */

static int load_config(sf_config *c, rt_err *err)
{
    memset(c, 0, sizeof *c);
    const rt_env_spec specs[] = {
        {.name = "SPLITFT_DIRS",
         .type = RT_ENV_PATHLIST,
         .flags = RT_PATH_DIR | RT_PATH_REALPATH,
         .dest = &c->dirs},
        {.name = "SPLITFT_SMALL_MAX",
         .type = RT_ENV_SIZE,
         .def = "64K",
         .min = 1,
         .max = 1 << 20,
         .dest = &c->small_max},
        {.name = "SPLITFT_FLUSH_MS",
         .type = RT_ENV_DURATION,
         .def = "1000",
         .min = (long long)RT_MS,
         .max = 3600 * (long long)RT_S,
         .unit_ns = RT_MS,
         .dest = &c->flush_ns},
        {.name = "SPLITFT_HIGH_WATER",
         .type = RT_ENV_SIZE,
         .def = "64M",
         .min = 1 << 20,
         .max = 1LL << 40,
         .dest = &c->high_water},
        {.name = "SPLITFT_STATS", .type = RT_ENV_PATH, .dest = c->stats},
    };
    int rc = rt_env_load(specs, sizeof specs / sizeof specs[0], err);
    if (rc < 0)
        return rc;
    return ncl_config_from_env(&c->ncl, NULL, err);
}

/* No marker path (too long) counts as present: without it we cannot know. */
static bool marker_exists(void) { return !G.marker[0] || access(G.marker, F_OK) == 0; }

/* The durable note that this id may have records in the log (see sf_init). */
static void marker_set(bool dirty)
{
    if (!G.marker[0])
        return;
    if (dirty && !marker_exists()) {
        int fd = sf_real.open(G.marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
            sf_real.fsync(fd);
            sf_real.close(fd);
        }
    } else if (!dirty && marker_exists()) {
        sf_real.unlink(G.marker);
    } else {
        return;
    }
    sf_sync_parent(G.marker);
}

/* Recovery: fence the old incarnation, replay the longest gap-free prefix into the files
 * (fsynced, directories too), trim. Exits the process when it cannot: the application must
 * not start on files that may lack acknowledged writes. */
static void recover_or_die(void)
{
    rt_err e;
    ncl_recovery *r;
    if (ncl_recover_begin(&G.cfg.ncl, &r, &e) < 0) {
        rt_log(
            &G.lg, RT_LOG_ERROR,
            "cannot recover '%s': %s; not starting the application on files that may lack acknowledged writes",
            G.cfg.ncl.id, e.msg);
        _exit(SF_EXIT_UNRECOVERED);
    }
    ncl_replay_ops ops = {sf_real.open, sf_real.pwrite, sf_real.fsync, sf_real.close};
    ncl_replay_stats rs;
    if (ncl_replay(r, &ops, &rs, &e) < 0 || ncl_recover_finish(r, &e) < 0) {
        rt_log(&G.lg, RT_LOG_ERROR, "recovery of '%s' failed: %s; not starting", G.cfg.ncl.id,
               e.msg);
        _exit(SF_EXIT_UNRECOVERED);
    }
    G.st.recovered_records = rs.records;
    G.st.recovered_bytes = rs.bytes;
    G.st.recovered_files = rs.files;
    rt_log(&G.lg, RT_LOG_INFO, "recovered '%s': %llu records, %llu bytes into %llu files",
           G.cfg.ncl.id, (unsigned long long)rs.records, (unsigned long long)rs.bytes,
           (unsigned long long)rs.files);
    ncl_recovery_free(r);
}

static void atfork_prepare(void) { pthread_mutex_lock(&G.mu); }
static void atfork_parent(void) { pthread_mutex_unlock(&G.mu); }
static void atfork_child(void)
{
    /* The child (a BGSAVE, a BGREWRITEAOF) shares none of the parent's NCL session, whose
     * threads do not exist here: every call is passed through, every sync is real. */
    G.child = true;
    pthread_mutex_unlock(&G.mu);
}

void sf_init(void)
{
    rt_err e;
    if (!sf_sys_init())
        return;
    if (rt_log_configure(&G.lg, "SPLITFT", &e) < 0)
        rt_log(&G.lg, RT_LOG_ERROR, "%s", e.msg);
    const char *dirs = getenv("SPLITFT_DIRS");
    if (!dirs || !*dirs)
        return; /* not configured: the shim stays out of the way */
    if (load_config(&G.cfg, &e) < 0) {
        rt_log(
            &G.lg, RT_LOG_ERROR,
            "%s; running without SplitFT (the application's own durability: every sync is the real one)",
            e.msg);
        return;
    }
    struct rlimit rl;
    int n = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY
                ? (int)(rl.rlim_max < FDS_MAX ? rl.rlim_max : FDS_MAX)
                : FDS_MAX;
    G.fds = calloc((size_t)n, sizeof(void *)); /* an array of sf_file pointers */
    if (!G.fds)
        return;
    G.nfds = n;
    if (snprintf(G.marker, sizeof G.marker, "%s/.splitft-%s.dirty", G.cfg.dirs.v[0],
                 G.cfg.ncl.id) >= (int)sizeof G.marker)
        G.marker[0] = '\0'; /* no room for it: an unreachable log then stops the start */
    /* Open the session. Records an earlier incarnation left are recovered first. Without a
     * majority we cannot know whether records exist, so the durable marker decides: it is
     * set before the first commit of a session and cleared after a clean exit trimmed
     * everything. Marker present: stop (records may exist). Absent: run with real syncs. */
    G.ncl = ncl_open(&G.cfg.ncl, 0, &e);
    if (!G.ncl && e.code == ENOTEMPTY) {
        recover_or_die();
        G.ncl = ncl_open(&G.cfg.ncl, 0, &e);
    }
    if (!G.ncl) {
        if (marker_exists()) {
            rt_log(&G.lg, RT_LOG_ERROR,
                   "cannot recover '%s': %s; its log may hold acknowledged writes, not starting",
                   G.cfg.ncl.id, e.msg);
            _exit(SF_EXIT_UNRECOVERED);
        }
        rt_log(&G.lg, RT_LOG_WARN, "near-compute log unavailable (%s): every sync is the real one",
               e.msg);
        G.mode = "fallback";
    } else {
        marker_set(true);
        G.mode = "ncl";
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&G.flush_cv, &ca);
        pthread_condattr_destroy(&ca);
        G.flusher_up = pthread_create(&G.flusher, NULL, sf_flusher_main, NULL) == 0;
    }
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    G.on = true;
}

void sf_fini(void)
{
    if (!G.on || G.child)
        return;
    if (G.ncl) {
        pthread_mutex_lock(&G.mu);
        G.stop = true;
        pthread_cond_signal(&G.flush_cv);
        pthread_mutex_unlock(&G.mu);
        if (G.flusher_up)
            pthread_join(G.flusher, NULL);
        /* A clean exit leaves nothing in the log: make it durable, trim, clear the marker. */
        sf_flush_all();
        bool clean = true;
        pthread_mutex_lock(&G.mu);
        for (int b = 0; b < INODE_BUCKETS; b++)
            for (sf_inode *i = G.inodes[b]; i; i = i->hnext)
                clean &= !i->ncl_dirty;
        pthread_mutex_unlock(&G.mu);
        rt_err e;
        if (clean && ncl_trim(G.ncl, ncl_next_seq(G.ncl), &e) == 0)
            marker_set(false);
    }
    sf_write_stats();
}

/* ---- statistics ----------------------------------------------------------------------- */

void sf_write_stats(void)
{
    if (!G.cfg.stats[0])
        return;
    size_t cap = 1 << 16;
    char *buf = malloc(cap);
    if (!buf)
        return;
    rt_json j;
    rt_json_init(&j, buf, cap);
    rt_json_begin(&j, NULL);
    rt_json_str(&j, "mode", G.mode);
    rt_json_str(&j, "id", G.cfg.ncl.id);
    rt_json_u64(&j, "syncs", G.st.syncs);
    rt_json_u64(&j, "groups_ncl", G.st.groups_ncl);
    rt_json_u64(&j, "records_ncl", G.st.records_ncl);
    rt_json_u64(&j, "bytes_ncl", G.st.bytes_ncl);
    rt_json_u64(&j, "real_syncs", G.st.real_syncs);
    rt_json_begin(&j, "fallbacks");
    for (int k = 0; k < FB_MAX; k++)
        rt_json_u64(&j, sf_fb_names[k], G.st.fallback[k]);
    rt_json_end(&j);
    rt_json_u64(&j, "barriers", G.st.barriers);
    rt_json_u64(&j, "dir_syncs", G.st.dir_syncs);
    rt_json_u64(&j, "flushes", G.st.flushes);
    rt_json_u64(&j, "flush_fsyncs", G.st.flush_fsyncs);
    rt_json_u64(&j, "trims", G.st.trims);
    rt_json_u64(&j, "trim_failures", G.st.trim_failures);
    rt_json_begin(&j, "recovery");
    rt_json_u64(&j, "records", G.st.recovered_records);
    rt_json_u64(&j, "bytes", G.st.recovered_bytes);
    rt_json_u64(&j, "files", G.st.recovered_files);
    rt_json_end(&j);
    if (G.ncl) {
        rt_json_begin(&j, "ncl");
        ncl_client_stats_json(G.ncl, &j);
        rt_json_end(&j);
    }
    rt_json_end(&j);
    const char *t = rt_json_text(&j);
    rt_err e;
    if (t && rt_stats_write_file(G.cfg.stats, t, &e) < 0)
        rt_log(&G.lg, RT_LOG_WARN, "SPLITFT_STATS: %s", e.msg);
    free(buf);
}
