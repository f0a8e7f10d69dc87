/* files.c: the fd and inode tables of libsplitft: inodes found and freed, open files and
 * their references, opens, closes and dups. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state.h"
#include "sys.h"

static unsigned bucket(dev_t dev, ino_t ino)
{
    return (unsigned)((ino * 2654435761u) ^ dev) % INODE_BUCKETS;
}

/* The inode's state (G.mu held); created when `create`. */
sf_inode *sf_inode_get(dev_t dev, ino_t ino, bool create)
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

void sf_group_clear(sf_inode *i)
{
    for (size_t k = 0; k < i->next_n; k++)
        free(i->ext[k].data);
    i->next_n = 0;
    i->group_bytes = 0;
    i->bulk = false;
}

/* Free the inode when nothing refers to it and it holds nothing (G.mu held). */
void sf_inode_maybe_free(sf_inode *i)
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

void sf_inode_unpin(sf_inode *i)
{
    pthread_mutex_lock(&G.mu);
    i->pins--;
    sf_inode_maybe_free(i);
    pthread_mutex_unlock(&G.mu);
}

/* ---- files and their references --------------------------------------------------------
 *
 * The lookup on every wrapper's hot path takes no lock: sf_get reads the fd's entry and
 * takes a reference on the file, but only while the file is alive (refs > 0, compare and
 * swap), and keeps it only if the fd still names that file. A close() in another thread
 * drops the table's reference; the file and its hold on the inode go when the last
 * reference does, so a write, sync or resize in flight keeps using valid memory, and the
 * real call answers EBADF as libc would. Files are recycled through a free list and never
 * freed: a lookup that lost the race reads a recycled file's `refs`, never freed memory. */

static sf_file *free_files; /* G.mu */

/* A file with one reference (the fd's), or NULL (G.mu held). */
static sf_file *file_new(void)
{
    sf_file *f = free_files;
    if (f)
        free_files = f->free_next;
    else if (!(f = malloc(sizeof *f)))
        return NULL;
    f->ino = NULL;
    f->osync = f->append = false;
    f->free_next = NULL;
    /* A late sf_get of a closed file may take and drop a reference from now on: it keeps it
     * only when the fd names this file, stored after `ino` (release). */
    __atomic_store_n(&f->refs, 1, __ATOMIC_RELEASE);
    return f;
}

/* The last reference went (G.mu held): release the inode, recycle the file. */
static void file_release(sf_file *f)
{
    sf_inode *i = f->ino;
    i->files--;
    sf_inode_maybe_free(i);
    f->ino = NULL;
    f->free_next = free_files;
    free_files = f;
}

static void unref_locked(sf_file *f)
{
    if (__atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) == 0)
        file_release(f);
}

void sf_put(sf_file *f)
{
    if (__atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    int saved = errno; /* the release may close the shim's own fd */
    pthread_mutex_lock(&G.mu);
    file_release(f);
    pthread_mutex_unlock(&G.mu);
    errno = saved;
}

sf_file *sf_get(int fd)
{
    if (fd < 0 || fd >= G.nfds || !G.fds || G.child)
        return NULL;
    for (;;) {
        sf_file *f = __atomic_load_n(&G.fds[fd], __ATOMIC_ACQUIRE);
        if (!f)
            return NULL;
        int n = __atomic_load_n(&f->refs, __ATOMIC_RELAXED);
        while (n > 0 && !__atomic_compare_exchange_n(&f->refs, &n, n + 1, true, __ATOMIC_ACQ_REL,
                                                     __ATOMIC_RELAXED)) {
        }
        if (n > 0) {
            if (__atomic_load_n(&G.fds[fd], __ATOMIC_ACQUIRE) == f)
                return f;
            sf_put(f); /* recycled for another fd meanwhile */
        }
        /* closed meanwhile: look again */
    }
}

bool sf_managed(int fd)
{
    return fd >= 0 && fd < G.nfds && G.fds && !G.child &&
           __atomic_load_n(&G.fds[fd], __ATOMIC_RELAXED) != NULL;
}

/* ---- sizes ------------------------------------------------------------------------------ */

/* The file's size as this kernel knows it, without asking a network file system: statx with
 * AT_STATX_DONT_SYNC answers from the inode's cached attributes, which every write through
 * this kernel has kept current (FUSE, NFS and CephFS update the size of a local write at
 * once). A plain fstat there flushes write-behind and asks the servers: about 1 ms on a
 * GlusterFS mount right after a write, against 1 us. Local file systems answer both alike.
 * What it cannot see is a writer on another host, which the shim does not claim to see. */
int sf_local_size(int fd, uint64_t *size)
{
    struct statx sx;
    if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_SIZE, &sx) == 0 &&
        (sx.stx_mask & STATX_SIZE)) {
        *size = sx.stx_size;
        return 0;
    }
    struct stat st; /* a kernel without statx */
    if (fstat(fd, &st) != 0)
        return -1;
    *size = (uint64_t)st.st_size;
    return 0;
}

/* ---- paths ------------------------------------------------------------------------------ */

/* Is this canonical path under one of SPLITFT_DIRS? */
bool sf_managed_path(const char *p)
{
    for (size_t k = 0; k < G.cfg.dirs.n; k++) {
        size_t n = strlen(G.cfg.dirs.v[k]);
        if (strncmp(p, G.cfg.dirs.v[k], n) == 0 && (p[n] == '/' || p[n] == '\0'))
            return true;
    }
    return false;
}

/* The canonical path of an open fd (via /proc); false when unknown. */
bool sf_fd_path(int fd, char *out, size_t len)
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
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || !sf_fd_path(fd, path, sizeof path) ||
        !sf_managed_path(path)) {
        errno = saved;
        return;
    }
    pthread_mutex_lock(&G.mu);
    sf_inode *i = sf_inode_get(st.st_dev, st.st_ino, true);
    sf_file *f = i ? file_new() : NULL;
    if (!f) {
        if (i)
            sf_inode_maybe_free(i);
        pthread_mutex_unlock(&G.mu);
        errno = saved;
        return;
    }
    f->osync = flags & (O_SYNC | O_DSYNC);
    f->append = flags & O_APPEND;
    if (i->files == 0 && i->next_n == 0 && !i->ncl_dirty) {
        /* First sight of the inode: its size is what we expect from now on, and data an
         * earlier writer left unsynced is ours to make durable, the real way, once. */
        i->expected = (uint64_t)st.st_size;
        i->prior = !created && st.st_size > 0;
    }
    snprintf(i->path, sizeof i->path, "%s", path);
    i->files++;
    f->ino = i;
    sf_file *stale = G.fds[fd]; /* closed behind our back (a raw close syscall) */
    __atomic_store_n(&G.fds[fd], f, __ATOMIC_RELEASE);
    if (stale)
        unref_locked(stale);
    pthread_mutex_unlock(&G.mu);
    errno = saved;
}

void sf_closing(int fd)
{
    if (!sf_on() || fd < 0 || fd >= G.nfds)
        return;
    pthread_mutex_lock(&G.mu);
    sf_file *f = G.fds[fd];
    if (f) {
        __atomic_store_n(&G.fds[fd], NULL, __ATOMIC_RELEASE);
        unref_locked(f);
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
    if (f) /* alive: the table's reference is dropped only under G.mu */
        __atomic_fetch_add(&f->refs, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&G.fds[newfd], f, __ATOMIC_RELEASE);
    if (old)
        unref_locked(old);
    pthread_mutex_unlock(&G.mu);
}

void sf_setfl(int fd, int flags)
{
    sf_file *f = sf_get(fd);
    if (f) {
        __atomic_store_n(&f->append, (flags & O_APPEND) != 0, __ATOMIC_RELAXED);
        sf_put(f);
    }
}
