/* core.c: libsplitft's state and logic: managed files, sync groups, the NCL session,
 * metadata barriers, the background flusher, recovery at start, statistics.
 *
 * Sections: configuration and global state, inodes and files, staging, syncs (the NCL path
 * and the real path), metadata barriers, the flusher, start and exit, statistics.
 *
 * The one rule: the shim never answers a sync it cannot vouch for. A small sync group
 * (at most SPLITFT_SMALL_MAX bytes, all written through calls we saw, the file's size what
 * those writes explain, no writable shared mapping) is durable once a majority of the NCL
 * peers holds it, so fsync returns then. Everything else gets the real fsync, and after a
 * real fsync the inode's older NCL records are trimmed on a majority before it returns:
 * replaying an obsolete record after a crash could overwrite newer data.
 *
 * Locks: `G.mu` guards the fd and inode tables; each inode has its own mutex, taken after
 * G.mu when both are needed. NCL calls are made holding an inode's mutex (one group at a
 * time per file), never G.mu.
 */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ncl/client.h"
#include "rt/env.h"
#include "rt/log.h"
#include "rt/stats.h"
#include "sys.h"

/* ---- configuration and global state ------------------------------------------------------- */

#define INODE_BUCKETS 1024
#define FDS_MAX       (1 << 18) /* fds above are passed through (documented) */

typedef struct sf_config {
    rt_pathlist dirs;
    ncl_config ncl;
    uint64_t small_max, flush_ns, high_water;
    char stats[PATH_MAX];
} sf_config;

enum {
    FB_NO_SESSION,
    FB_BULK,
    FB_SIZE,
    FB_MMAP,
    FB_APPEND_PWRITE,
    FB_FIRST_SYNC,
    FB_UNLINKED,
    FB_NCL_FAILED,
    FB_MAX
};
static const char *const fb_names[FB_MAX] = {"no_session", "bulk",          "size_mismatch",
                                             "mmap",       "append_pwrite", "first_sync",
                                             "unlinked",   "ncl_failed"};

typedef struct sf_stats {
    uint64_t syncs, groups_ncl, records_ncl, bytes_ncl, real_syncs;
    uint64_t fallback[FB_MAX];
    uint64_t barriers, dir_syncs, flushes, flush_fsyncs, trims, trim_failures;
    uint64_t recovered_records, recovered_bytes, recovered_files;
    uint64_t child_syncs;
} sf_stats;

typedef struct sf_ext {
    uint64_t off;
    uint32_t len, cap;
    unsigned char *data;
} sf_ext;

typedef struct sf_inode {
    dev_t dev;
    ino_t ino;
    char path[PATH_MAX];
    pthread_mutex_t mu;
    int files;   /* open file descriptions referring to it */
    int pins;    /* temporary references (flusher, barriers) */
    sf_ext *ext; /* the staged sync group, in write order */
    size_t next_n, ext_cap;
    uint64_t group_bytes;
    bool bulk;     /* the group passed SPLITFT_SMALL_MAX: not staged */
    int untrusted; /* FB_* reason every sync of this inode is real, or -1 */
    bool unlinked;
    bool prior;        /* data from before we tracked it may be unsynced: first sync is real */
    uint64_t expected; /* the size the intercepted writes explain */
    bool ncl_dirty;    /* untrimmed NCL records */
    uint64_t ncl_last;
    int durable_fd; /* the shim's own fd, for the flusher; -1 when none */
    struct sf_inode *hnext;
} sf_inode;

struct sf_file {
    sf_inode *ino;
    int refs; /* fds referring to this open file description */
    bool osync, append;
};

static struct {
    bool on, child;
    sf_config cfg;
    ncl_client *ncl; /* NULL: every sync is the real one */
    pthread_mutex_t mu;
    sf_file **fds;
    int nfds;
    sf_inode *inodes[INODE_BUCKETS];
    pthread_t flusher;
    bool flusher_up, stop, flush_now;
    pthread_cond_t flush_cv;
    rt_logger lg;
    sf_stats st;
    char marker[PATH_MAX];
    const char *mode;
} G = {.mu = PTHREAD_MUTEX_INITIALIZER, .lg = RT_LOGGER_INIT("splitft"), .mode = "off"};

#define STAT_ADD(field, n) __atomic_fetch_add(&G.st.field, (n), __ATOMIC_RELAXED)

bool sf_on(void) { return G.on && !G.child; }

/* ---- inodes and files ----------------------------------------------------------------- */

static unsigned bucket(dev_t dev, ino_t ino)
{
    return (unsigned)((ino * 2654435761u) ^ dev) % INODE_BUCKETS;
}

/* The inode's state (G.mu held); created when `create`. */
static sf_inode *inode_get(dev_t dev, ino_t ino, bool create)
{
    unsigned b = bucket(dev, ino);
    for (sf_inode *i = G.inodes[b]; i; i = i->hnext)
        if (i->dev == dev && i->ino == ino)
            return i;
    if (!create)
        return NULL;
    sf_inode *i = calloc(1, sizeof *i);
    if (!i)
        return NULL;
    i->dev = dev;
    i->ino = ino;
    i->untrusted = -1;
    i->durable_fd = -1;
    pthread_mutex_init(&i->mu, NULL);
    i->hnext = G.inodes[b];
    G.inodes[b] = i;
    return i;
}

static void group_clear(sf_inode *i)
{
    for (size_t k = 0; k < i->next_n; k++)
        free(i->ext[k].data);
    i->next_n = 0;
    i->group_bytes = 0;
    i->bulk = false;
}

/* Free the inode when nothing refers to it and it holds nothing (G.mu held). */
static void inode_maybe_free(sf_inode *i)
{
    if (i->files > 0 || i->pins > 0 || i->ncl_dirty || i->next_n > 0)
        return;
    sf_inode **pp = &G.inodes[bucket(i->dev, i->ino)];
    while (*pp && *pp != i)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = i->hnext;
    if (i->durable_fd >= 0)
        sf_real.close(i->durable_fd);
    free(i->ext);
    pthread_mutex_destroy(&i->mu);
    free(i);
}

static void inode_unpin(sf_inode *i)
{
    pthread_mutex_lock(&G.mu);
    i->pins--;
    inode_maybe_free(i);
    pthread_mutex_unlock(&G.mu);
}

sf_file *sf_get(int fd)
{
    if (fd < 0 || fd >= G.nfds || !G.fds || G.child)
        return NULL;
    return __atomic_load_n(&G.fds[fd], __ATOMIC_ACQUIRE);
}

/* Is this canonical path under one of SPLITFT_DIRS? */
static bool managed_path(const char *p)
{
    for (size_t k = 0; k < G.cfg.dirs.n; k++) {
        size_t n = strlen(G.cfg.dirs.v[k]);
        if (strncmp(p, G.cfg.dirs.v[k], n) == 0 && (p[n] == '/' || p[n] == '\0'))
            return true;
    }
    return false;
}

/* The canonical path of an open fd (via /proc); false when unknown. */
static bool fd_path(int fd, char *out, size_t len)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, len - 1);
    if (n <= 0 || (size_t)n >= len - 1)
        return false;
    out[n] = '\0';
    return out[0] == '/';
}

void sf_opened(int fd, int flags, bool created)
{
    if (!sf_on() || fd < 0 || fd >= G.nfds)
        return;
    int saved = errno;
    struct stat st;
    char path[PATH_MAX];
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || !fd_path(fd, path, sizeof path) ||
        !managed_path(path)) {
        errno = saved;
        return;
    }
    sf_file *f = calloc(1, sizeof *f);
    if (!f) {
        errno = saved;
        return;
    }
    f->refs = 1;
    f->osync = flags & (O_SYNC | O_DSYNC);
    f->append = flags & O_APPEND;
    pthread_mutex_lock(&G.mu);
    sf_inode *i = inode_get(st.st_dev, st.st_ino, true);
    if (!i) {
        pthread_mutex_unlock(&G.mu);
        free(f);
        errno = saved;
        return;
    }
    if (i->files == 0 && i->next_n == 0 && !i->ncl_dirty) {
        /* First sight of the inode: its size is what we expect from now on, and data an
         * earlier writer left unsynced is ours to make durable, the real way, once. */
        i->expected = (uint64_t)st.st_size;
        i->prior = !created && st.st_size > 0;
    }
    snprintf(i->path, sizeof i->path, "%s", path);
    i->files++;
    f->ino = i;
    __atomic_store_n(&G.fds[fd], f, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&G.mu);
    errno = saved;
}

static void file_unref(sf_file *f)
{
    if (--f->refs > 0)
        return;
    sf_inode *i = f->ino;
    i->files--;
    inode_maybe_free(i);
    free(f);
}

void sf_closing(int fd)
{
    if (!sf_on() || fd < 0 || fd >= G.nfds)
        return;
    pthread_mutex_lock(&G.mu);
    sf_file *f = G.fds[fd];
    if (f) {
        __atomic_store_n(&G.fds[fd], NULL, __ATOMIC_RELEASE);
        file_unref(f);
    }
    pthread_mutex_unlock(&G.mu);
}

void sf_dupped(int oldfd, int newfd)
{
    if (!sf_on() || newfd < 0 || newfd >= G.nfds || oldfd < 0 || oldfd >= G.nfds)
        return;
    pthread_mutex_lock(&G.mu);
    sf_file *old = G.fds[newfd];
    sf_file *f = G.fds[oldfd];
    if (f)
        f->refs++;
    __atomic_store_n(&G.fds[newfd], f, __ATOMIC_RELEASE);
    if (old)
        file_unref(old);
    pthread_mutex_unlock(&G.mu);
}

void sf_setfl(int fd, int flags)
{
    sf_file *f = sf_get(fd);
    if (f)
        f->append = flags & O_APPEND;
}

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
        group_clear(i);
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
    group_clear(i);
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
        if (positional && f->append) {
            i->untrusted = FB_APPEND_PWRITE; /* Linux appends anyway: where did it go? */
            group_clear(i);
        } else {
            uint64_t start;
            if (positional) {
                start = (uint64_t)off;
            } else {
                off_t pos = lseek(fd, 0, SEEK_CUR);
                start = pos >= n ? (uint64_t)(pos - n) : 0;
                if (pos < n) { /* cannot tell where it went */
                    i->untrusted = FB_SIZE;
                    group_clear(i);
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
static int trim_inode(sf_inode *i)
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
            rt_log(&G.lg, RT_LOG_ERROR,
                   "%s: durable, but its older log records could not be "
                   "trimmed (%s): reporting EIO",
                   i->path, e.msg);
            return -1;
        }
        usleep(10000); /* a failure that came fast (peers full, say): do not spin */
    }
}

/* The real fsync (inode locked), then the trim. `why` is the FB_* reason, for statistics. */
static int real_sync(sf_inode *i, int fd, bool datasync, int why)
{
    STAT_ADD(real_syncs, 1);
    STAT_ADD(fallback[why], 1);
    int rc = datasync ? sf_real.fdatasync(fd) : sf_real.fsync(fd);
    int saved = errno;
    if (rc == 0) {
        group_clear(i);
        i->prior = false;
        struct stat st;
        if (fstat(fd, &st) == 0)
            i->expected = (uint64_t)st.st_size;
        if (trim_inode(i) != 0) {
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
    group_clear(i);
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
    struct stat st;
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
    else if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != i->expected)
        why = FB_SIZE; /* something we did not see changed the file */
    int rc = 0;
    if (why < 0 && i->next_n > 0 && commit_group(i) != 0)
        why = FB_NCL_FAILED;
    if (why >= 0)
        rc = real_sync(i, fd, datasync, why);
    int saved = errno;
    pthread_mutex_unlock(&i->mu);
    errno = saved;
    return rc;
}

/* ---- metadata barriers ------------------------------------------------------------- */

/* The inode behind a path (not following a final symlink), pinned; NULL when we hold no
 * state for it. */
static sf_inode *lookup_pin(int dirfd, const char *path)
{
    struct stat st;
    if (fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
        return NULL;
    pthread_mutex_lock(&G.mu);
    sf_inode *i = inode_get(st.st_dev, st.st_ino, false);
    if (i)
        i->pins++;
    pthread_mutex_unlock(&G.mu);
    return i;
}

/* An fd to fsync the inode by (inode locked): the shim's own, opened on demand. */
static int durable_fd(sf_inode *i)
{
    if (i->durable_fd < 0)
        i->durable_fd = sf_real.open(i->path, O_RDONLY | O_CLOEXEC);
    return i->durable_fd;
}

/* Make the inode durable and its records trimmed (inode locked), or, when `gone`, drop its
 * records and staging: the name goes away. 0 or -1 with errno. */
static int barrier(sf_inode *i, int fd, bool gone)
{
    STAT_ADD(barriers, 1);
    if (gone) {
        group_clear(i);
        i->unlinked = true;
        return trim_inode(i) == 0 ? 0 : (errno = EIO, -1);
    }
    if (!i->ncl_dirty && i->next_n == 0 && !i->bulk)
        return 0;
    int use = fd >= 0 ? fd : durable_fd(i);
    if (use < 0)
        return -1;
    return real_sync(i, use, false, FB_BULK) == 0 ? 0 : -1;
}

/* fsync the directory holding `path` when it is managed. */
static void sync_parent(const char *path)
{
    char buf[PATH_MAX], real[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    const char *dir = dirname(buf);
    if (!realpath(dir, real) || !managed_path(real))
        return;
    int fd = sf_real.open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    /* Directory fsync makes the names in it durable on Linux file systems. */
    sf_real.fsync(fd);
    sf_real.close(fd);
    STAT_ADD(dir_syncs, 1);
}

/* The absolute form of (dirfd, path) for dirname/realpath. */
static void abs_path(int dirfd, const char *path, char *out, size_t len)
{
    if (path[0] == '/' || dirfd == AT_FDCWD) {
        if (path[0] == '/' || !getcwd(out, len))
            snprintf(out, len, "%s", path);
        else
            snprintf(out + strlen(out), len - strlen(out), "/%s", path);
        return;
    }
    char dir[PATH_MAX];
    if (!fd_path(dirfd, dir, sizeof dir) || snprintf(out, len, "%s/%s", dir, path) >= (int)len)
        snprintf(out, len, "%s", path);
}

static int locked_barrier(sf_inode *i, int fd, bool gone)
{
    pthread_mutex_lock(&i->mu);
    int rc = barrier(i, fd, gone);
    int saved = errno;
    pthread_mutex_unlock(&i->mu);
    errno = saved;
    return rc;
}

int sf_rename(int olddir, const char *oldpath, int newdir, const char *newpath, unsigned flags,
              sf_op op, void *arg)
{
    sf_inode *a = lookup_pin(olddir, oldpath), *b = lookup_pin(newdir, newpath);
    int rc = 0;
    /* The file that moves is made durable under its old name; a file it replaces goes. With
     * RENAME_EXCHANGE both move. */
    if (a)
        rc = locked_barrier(a, -1, false);
    if (b && b != a && rc == 0)
        rc = locked_barrier(b, -1, !(flags & RENAME_EXCHANGE));
    if (rc == 0)
        rc = op(arg);
    int saved = errno;
    if (rc == 0) {
        char o[PATH_MAX], n[PATH_MAX];
        abs_path(olddir, oldpath, o, sizeof o);
        abs_path(newdir, newpath, n, sizeof n);
        if (a) {
            pthread_mutex_lock(&a->mu);
            char real[PATH_MAX], buf[PATH_MAX];
            snprintf(buf, sizeof buf, "%s", n);
            if (realpath(dirname(buf), real)) {
                snprintf(buf, sizeof buf, "%s", n);
                char moved[PATH_MAX];
                if (snprintf(moved, sizeof moved, "%s/%s", real, basename(buf)) < (int)sizeof moved)
                    memcpy(a->path, moved, sizeof moved);
            }
            pthread_mutex_unlock(&a->mu);
        }
        sync_parent(o);
        sync_parent(n);
    }
    if (a)
        inode_unpin(a);
    if (b)
        inode_unpin(b);
    errno = saved;
    return rc;
}

int sf_unlink(int dirfd, const char *path, int flags, sf_op op, void *arg)
{
    sf_inode *i = (flags & AT_REMOVEDIR) ? NULL : lookup_pin(dirfd, path);
    int rc = 0;
    if (i) {
        struct stat st;
        /* Records go with the last name only (another hard link keeps the data). */
        bool last = fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_nlink <= 1;
        rc = locked_barrier(i, -1, last);
    }
    if (rc == 0)
        rc = op(arg);
    int saved = errno;
    if (rc == 0) {
        char p[PATH_MAX];
        abs_path(dirfd, path, p, sizeof p);
        sync_parent(p);
    }
    if (i)
        inode_unpin(i);
    errno = saved;
    return rc;
}

int sf_truncate_path(const char *path, off_t len, sf_op op, void *arg)
{
    sf_inode *i = lookup_pin(AT_FDCWD, path);
    if (!i)
        return op(arg);
    pthread_mutex_lock(&i->mu);
    int rc = barrier(i, -1, false);
    if (rc == 0)
        rc = op(arg);
    int saved = errno;
    if (rc == 0)
        i->expected = (uint64_t)len;
    pthread_mutex_unlock(&i->mu);
    inode_unpin(i);
    errno = saved;
    return rc;
}

int sf_resize(sf_file *f, int fd, int mode, off_t off, off_t len, bool is_fallocate, sf_op op,
              void *arg)
{
    sf_inode *i = f->ino;
    pthread_mutex_lock(&i->mu);
    /* Preallocation (fallocate modes 0 and KEEP_SIZE, posix_fallocate) changes no byte of
     * the file, so staged and logged writes stay valid: no barrier. A truncation, a hole
     * punched or a range zeroed or shifted does change bytes: the group and the records must
     * be durable on the file first, or a replay would bring back what the operation removed. */
    bool changes_bytes = !is_fallocate || (mode & ~FALLOC_FL_KEEP_SIZE) != 0;
    int rc = changes_bytes ? barrier(i, fd, false) : 0;
    if (rc == 0)
        rc = op(arg);
    int saved = errno;
    if (rc == 0) {
        struct stat st;
        if (fstat(fd, &st) == 0)
            i->expected = (uint64_t)st.st_size;
        else if (!is_fallocate)
            i->expected = (uint64_t)len;
        (void)off;
    }
    pthread_mutex_unlock(&i->mu);
    errno = saved;
    return rc;
}

void sf_mapped(sf_file *f)
{
    sf_inode *i = f->ino;
    pthread_mutex_lock(&i->mu);
    if (i->untrusted < 0) {
        i->untrusted = FB_MMAP;
        rt_log(&G.lg, RT_LOG_INFO, "%s: writable shared mapping, its syncs are real from now on",
               i->path);
    }
    pthread_mutex_unlock(&i->mu);
}

bool sf_path_managed(int dirfd, const char *path)
{
    int saved = errno;
    char abs[PATH_MAX], buf[PATH_MAX], real[PATH_MAX];
    abs_path(dirfd, path, abs, sizeof abs);
    snprintf(buf, sizeof buf, "%s", abs);
    bool m = realpath(dirname(buf), real) && managed_path(real);
    errno = saved;
    return m;
}

bool sf_exists_at(int dirfd, const char *path)
{
    struct stat st;
    int saved = errno;
    bool e = fstatat(dirfd, path, &st, 0) == 0;
    errno = saved;
    return e;
}

void sf_created(int fd)
{
    sf_file *f = sf_get(fd);
    if (!f)
        return;
    int saved = errno;
    char p[PATH_MAX];
    pthread_mutex_lock(&f->ino->mu);
    snprintf(p, sizeof p, "%s", f->ino->path);
    pthread_mutex_unlock(&f->ino->mu);
    sync_parent(p);
    errno = saved;
}

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
    int fd = i->unlinked ? -1 : durable_fd(i);
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
static void flush_all(void)
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
        inode_unpin(todo[k]);
    }
    free(todo);
    STAT_ADD(flushes, 1);
}

static void *flusher_main(void *arg)
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
        flush_all();
        pthread_mutex_lock(&G.mu);
    }
    pthread_mutex_unlock(&G.mu);
    return NULL;
}

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
    sync_parent(G.marker);
}

/* Recovery: fence the old incarnation, replay the longest gap-free prefix into the files
 * (fsynced, directories too), trim. Exits the process when it cannot: the application must
 * not start on files that may lack acknowledged writes. */
static void recover_or_die(void)
{
    rt_err e;
    ncl_recovery *r;
    if (ncl_recover_begin(&G.cfg.ncl, &r, &e) < 0) {
        rt_log(&G.lg, RT_LOG_ERROR,
               "cannot recover '%s': %s; not starting the application on "
               "files that may lack acknowledged writes",
               G.cfg.ncl.id, e.msg);
        _exit(75);
    }
    ncl_replay_ops ops = {sf_real.open, sf_real.pwrite, sf_real.fsync, sf_real.close};
    ncl_replay_stats rs;
    if (ncl_replay(r, &ops, &rs, &e) < 0 || ncl_recover_finish(r, &e) < 0) {
        rt_log(&G.lg, RT_LOG_ERROR, "recovery of '%s' failed: %s; not starting", G.cfg.ncl.id,
               e.msg);
        _exit(75);
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
        rt_log(&G.lg, RT_LOG_ERROR,
               "%s; running without SplitFT (the application's own "
               "durability: every sync is the real one)",
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
                   "cannot recover '%s': %s; its log may hold acknowledged "
                   "writes, not starting",
                   G.cfg.ncl.id, e.msg);
            _exit(75);
        }
        rt_log(&G.lg, RT_LOG_WARN,
               "near-compute log unavailable (%s): every sync is the real "
               "one",
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
        G.flusher_up = pthread_create(&G.flusher, NULL, flusher_main, NULL) == 0;
    }
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    G.on = true;
}

static void write_stats(void);

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
        flush_all();
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
    write_stats();
}

/* ---- statistics ----------------------------------------------------------------------- */

static void write_stats(void)
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
        rt_json_u64(&j, fb_names[k], G.st.fallback[k]);
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
