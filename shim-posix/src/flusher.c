/* flusher.c: the background flusher: every SPLITFT_FLUSH_MS, or when the log passes
 * SPLITFT_HIGH_WATER, logged data is made durable on its files and trimmed from the log, so
 * the peers' memory stays bounded. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt/stats.h"
#include "state.h"
#include "sys.h"

/* ---- the flusher ------------------------------------------------------------------------ */

/* Make one inode's logged data durable on its file and trim its records. The fsync runs
 * without the inode's lock, so the application's writes to it go on meanwhile: records
 * committed before we looked (seq < below) describe data written before the fsync started. */
static void flush_inode(sf_inode *i)
{
    pthread_mutex_lock(&i->mu);
    if (!i->ncl_dirty) {
        pthread_mutex_unlock(&i->mu);
        return;
    }
    uint64_t below = ncl_next_seq(G.ncl);
    int fd = i->unlinked ? -1 : sf_durable_fd(i);
    bool unlinked = i->unlinked;
    pthread_mutex_unlock(&i->mu);
    if (!unlinked && (fd < 0 || sf_real.fsync(fd) != 0)) {
        rt_log(&G.lg, RT_LOG_WARN, "flusher: cannot fsync %s: %s", i->path, strerror(errno));
        return;
    }
    STAT_ADD(flush_fsyncs, !unlinked);
    rt_err e;
    if (ncl_trim_file(G.ncl, (uint64_t)i->dev, (uint64_t)i->ino, below, &e) != 0) {
        rt_log(&G.lg, RT_LOG_WARN, "flusher: trim of %s: %s", i->path, e.msg);
        return;
    }
    STAT_ADD(trims, 1);
    pthread_mutex_lock(&i->mu);
    if (i->ncl_last < below)
        i->ncl_dirty = false;
    pthread_mutex_unlock(&i->mu);
}

/* One pass over every inode with logged data: all of them are pinned in one scan and then
 * flushed, so an inode that stays dirty (new writes, a failed fsync) cannot make the pass
 * start over and starve the others. */
void sf_flush_all(void)
{
    pthread_mutex_lock(&G.mu);
    size_t n = 0, cap = 0;
    for (int b = 0; b < INODE_BUCKETS; b++)
        for (sf_inode *i = G.inodes[b]; i; i = i->hnext)
            cap += i->ncl_dirty;
    /* an array of pointers: sizeof *todo is meant */
    sf_inode **todo = cap ? malloc(cap * sizeof *todo) : NULL; // NOLINT(bugprone-sizeof-expression)
    /* ncl_dirty changes under the inode's lock, not G.mu: more may be dirty by now; those
     * wait for the next pass. */
    for (int b = 0; todo && b < INODE_BUCKETS && n < cap; b++)
        for (sf_inode *i = G.inodes[b]; i && n < cap; i = i->hnext)
            if (i->ncl_dirty) {
                i->pins++;
                todo[n++] = i;
            }
    pthread_mutex_unlock(&G.mu);
    if (cap && !todo) {
        rt_log(&G.lg, RT_LOG_WARN, "flusher: out of memory for %zu inodes; next pass", cap);
        return;
    }
    for (size_t k = 0; k < n; k++) {
        flush_inode(todo[k]);
        sf_inode_unpin(todo[k]);
    }
    free(todo);
    STAT_ADD(flushes, 1);
}

void *sf_flusher_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&G.mu);
    while (!G.stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t t = (uint64_t)ts.tv_nsec + G.cfg.flush_ns;
        ts.tv_sec += (time_t)(t / RT_S);
        ts.tv_nsec = (long)(t % RT_S);
        while (!G.stop && !G.flush_now &&
               pthread_cond_timedwait(&G.flush_cv, &G.mu, &ts) != ETIMEDOUT) {
        }
        if (G.stop)
            break;
        G.flush_now = false;
        pthread_mutex_unlock(&G.mu);
        sf_flush_all();
        pthread_mutex_lock(&G.mu);
    }
    pthread_mutex_unlock(&G.mu);
    return NULL;
}
