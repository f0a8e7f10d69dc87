/* sync.c: staging and syncs: what a write to a managed file adds to its inode's sync group,
 * and what fsync does with the group: commit it to the near-compute log, or the real fsync
 * followed by a trim of the inode's older records. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt/stats.h"
#include "state.h"
#include "sys.h"

/* ---- staging -------------------------------------------------------------------------- */

/* Copy what a write put at [off, off+n) into the sync group (inode locked). */
static void stage(sf_inode *i, uint64_t off, const struct iovec *iov, int iovcnt, size_t n)
{
    i->group_bytes += n;
    if (off + n > i->expected)
        i->expected = off + n;
    if (i->bulk || i->untrusted >= 0 || i->unlinked)
        return;
    if (i->group_bytes > G.cfg.small_max) {
        size_t keep = i->group_bytes; /* the group stays bulk until a durable point */
        sf_group_clear(i);
        i->group_bytes = keep;
        i->bulk = true;
        return;
    }
    bool contiguous = i->next_n > 0 && i->ext[i->next_n - 1].off + i->ext[i->next_n - 1].len == off;
    if (!contiguous) { /* a new extent */
        if (i->next_n == i->ext_cap) {
            size_t nc = i->ext_cap ? i->ext_cap * 2 : 8;
            sf_ext *x = realloc(i->ext, nc * sizeof *x);
            if (!x)
                goto oom;
            i->ext = x;
            i->ext_cap = nc;
        }
        i->ext[i->next_n++] = (sf_ext){.off = off};
    }
    sf_ext *e = &i->ext[i->next_n - 1];
    if (e->len + n > e->cap) {
        uint32_t nc = e->cap ? e->cap : 256;
        while (nc < e->len + n)
            nc *= 2;
        unsigned char *d = realloc(e->data, nc);
        if (!d)
            goto oom;
        e->data = d;
        e->cap = nc;
    }
    size_t left = n;
    for (int k = 0; k < iovcnt && left > 0; k++) {
        size_t c = iov[k].iov_len < left ? iov[k].iov_len : left;
        memcpy(e->data + e->len, iov[k].iov_base, c);
        e->len += (uint32_t)c;
        left -= c;
    }
    return;
oom: /* cannot stage: treat the group as bulk, which means a real fsync */
    sf_group_clear(i);
    i->bulk = true;
}

ssize_t sf_write(sf_file *f, int fd, int how, const struct iovec *iov, int iovcnt, off_t off,
                 int flags)
{
    sf_inode *i = f->ino;
    pthread_mutex_lock(&i->mu);
    ssize_t n;
    switch (how) {
    case SF_WRITE:
        n = sf_real.write(fd, iov[0].iov_base, iov[0].iov_len);
        break;
    case SF_PWRITE:
        n = sf_real.pwrite(fd, iov[0].iov_base, iov[0].iov_len, off);
        break;
    case SF_WRITEV:
        n = sf_real.writev(fd, iov, iovcnt);
        break;
    case SF_PWRITEV:
        n = sf_real.pwritev(fd, iov, iovcnt, off);
        break;
    default:
        n = sf_real.pwritev2 ? sf_real.pwritev2(fd, iov, iovcnt, off, flags) : (errno = ENOSYS, -1);
        break;
    }
    int saved = errno;
    if (n > 0) {
        bool positional = (how == SF_PWRITE || how == SF_PWRITEV || how == SF_PWRITEV2) && off >= 0;
        if (positional && __atomic_load_n(&f->append, __ATOMIC_RELAXED)) {
            i->untrusted = FB_APPEND_PWRITE; /* Linux appends anyway: where did it go? */
            sf_group_clear(i);
        } else {
            uint64_t start;
            if (positional) {
                start = (uint64_t)off;
            } else {
                off_t pos = lseek(fd, 0, SEEK_CUR);
                start = pos >= n ? (uint64_t)(pos - n) : 0;
                if (pos < n) { /* cannot tell where it went */
                    i->untrusted = FB_SIZE;
                    sf_group_clear(i);
                }
            }
            stage(i, start, iov, iovcnt, (size_t)n);
        }
    }
    pthread_mutex_unlock(&i->mu);
    if (n > 0 && f->osync && sf_sync(f, fd, true) != 0) {
        errno = EIO; /* O_SYNC: the write must be durable when it returns */
        return -1;
    }
    errno = saved;
    return n;
}

/* ---- syncs ---------------------------------------------------------------------------- */

/* Trim the inode's NCL records below the log's next sequence number (inode locked): after
 * a real fsync they are obsolete, and replaying them after a crash could overwrite newer
 * data, so this must reach a majority before the caller returns. Retried for a while; on
 * failure the caller reports EIO rather than a durability it could not make safe. */
int sf_trim_inode(sf_inode *i)
{
    if (!i->ncl_dirty || !G.ncl)
        return 0;
    uint64_t deadline =
        rt_now_ns() + 10 * (G.cfg.ncl.timeout_ns > RT_S ? G.cfg.ncl.timeout_ns : RT_S);
    uint64_t below = ncl_next_seq(G.ncl);
    for (;;) {
        rt_err e;
        if (ncl_trim_file(G.ncl, (uint64_t)i->dev, (uint64_t)i->ino, below, &e) == 0) {
            STAT_ADD(trims, 1);
            i->ncl_dirty = false;
            return 0;
        }
        if (rt_now_ns() >= deadline || e.code == ESTALE || e.code == ESHUTDOWN) {
            STAT_ADD(trim_failures, 1);
            rt_log(
                &G.lg, RT_LOG_ERROR,
                "%s: durable, but its older log records could not be trimmed (%s): reporting EIO",
                i->path, e.msg);
            return -1;
        }
        usleep(10000); /* a failure that came fast (peers full, say): do not spin */
    }
}

/* The real fsync (inode locked), then the trim. `why` is the FB_* reason, for statistics. */
int sf_real_sync(sf_inode *i, int fd, bool datasync, int why)
{
    STAT_ADD(real_syncs, 1);
    STAT_ADD(fallback[why], 1);
    int rc = datasync ? sf_real.fdatasync(fd) : sf_real.fsync(fd);
    int saved = errno;
    if (rc == 0) {
        sf_group_clear(i);
        i->prior = false;
        uint64_t size;
        if (sf_local_size(fd, &size) == 0)
            i->expected = size;
        if (sf_trim_inode(i) != 0) {
            rc = -1;
            saved = EIO;
        }
    }
    errno = saved;
    return rc;
}

/* Commit the staged group to the NCL (inode locked). 0, or -1 when it did not reach a
 * majority (the caller falls back to the real fsync). */
static int commit_group(sf_inode *i)
{
    ncl_write w[64] = {{0}};
    ncl_write *ws = i->next_n <= 64 ? w : malloc(i->next_n * sizeof *ws);
    if (!ws)
        return -1;
    for (size_t k = 0; k < i->next_n; k++)
        ws[k] = (ncl_write){.dev = (uint64_t)i->dev,
                            .ino = (uint64_t)i->ino,
                            .offset = i->ext[k].off,
                            .path = i->path,
                            .data = i->ext[k].data,
                            .len = i->ext[k].len};
    uint64_t last;
    rt_err e;
    int rc = ncl_commit(G.ncl, ws, i->next_n, &last, &e);
    if (ws != w)
        free(ws);
    if (rc < 0) {
        rt_log(&G.lg, RT_LOG_WARN, "%s: log commit failed, real fsync instead: %s", i->path, e.msg);
        if (rc == -ENOSPC)
            pthread_cond_signal(&G.flush_cv);
        return -1;
    }
    STAT_ADD(groups_ncl, 1);
    STAT_ADD(records_ncl, i->next_n);
    STAT_ADD(bytes_ncl, i->group_bytes);
    i->ncl_dirty = true;
    i->ncl_last = last;
    sf_group_clear(i);
    if (ncl_client_log_bytes(G.ncl) > G.cfg.high_water) {
        G.flush_now = true;
        pthread_cond_signal(&G.flush_cv);
    }
    return 0;
}

int sf_sync(sf_file *f, int fd, bool datasync)
{
    sf_inode *i = f->ino;
    STAT_ADD(syncs, 1);
    pthread_mutex_lock(&i->mu);
    int why = -1;
    uint64_t size;
    if (!G.ncl)
        why = FB_NO_SESSION;
    else if (i->untrusted >= 0)
        why = i->untrusted;
    else if (i->unlinked)
        why = FB_UNLINKED;
    else if (i->bulk)
        why = FB_BULK;
    else if (i->prior)
        why = FB_FIRST_SYNC;
    else if (sf_local_size(fd, &size) != 0 || size != i->expected)
        why = FB_SIZE; /* something we did not see changed the file (no round trip: the
                        * size this kernel knows, see sf_local_size) */
    int rc = 0;
    if (why < 0 && i->next_n > 0 && commit_group(i) != 0)
        why = FB_NCL_FAILED;
    if (why >= 0)
        rc = sf_real_sync(i, fd, datasync, why);
    int saved = errno;
    pthread_mutex_unlock(&i->mu);
    errno = saved;
    return rc;
}
