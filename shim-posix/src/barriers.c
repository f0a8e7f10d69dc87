/* barriers.c: metadata barriers and names: rename, unlink, truncate and the resizes that
 * change bytes make the inodes they touch durable first (or drop their records when they go);
 * a managed name that changes is made durable by an fsync of its directory. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state.h"
#include "sys.h"

/* ---- metadata barriers ------------------------------------------------------------- */

/* The inode behind a path (not following a final symlink), pinned; NULL when we hold no
 * state for it. */
static sf_inode *lookup_pin(int dirfd, const char *path)
{
    struct stat st;
    if (fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
        return NULL;
    pthread_mutex_lock(&G.mu);
    sf_inode *i = sf_inode_get(st.st_dev, st.st_ino, false);
    if (i)
        i->pins++;
    pthread_mutex_unlock(&G.mu);
    return i;
}

/* An fd to fsync the inode by (inode locked): the shim's own, opened on demand. */
int sf_durable_fd(sf_inode *i)
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
        sf_group_clear(i);
        i->unlinked = true;
        return sf_trim_inode(i) == 0 ? 0 : (errno = EIO, -1);
    }
    if (!i->ncl_dirty && i->next_n == 0 && !i->bulk)
        return 0;
    int use = fd >= 0 ? fd : sf_durable_fd(i);
    if (use < 0)
        return -1;
    return sf_real_sync(i, use, false, FB_BULK) == 0 ? 0 : -1;
}

/* fsync the directory holding `path` when it is managed. */
void sf_sync_parent(const char *path)
{
    char buf[PATH_MAX], real[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    const char *dir = dirname(buf);
    if (!realpath(dir, real) || !sf_managed_path(real))
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
void sf_abs_path(int dirfd, const char *path, char *out, size_t len)
{
    if (path[0] == '/' || dirfd == AT_FDCWD) {
        if (path[0] == '/' || !getcwd(out, len))
            snprintf(out, len, "%s", path);
        else
            snprintf(out + strlen(out), len - strlen(out), "/%s", path);
        return;
    }
    char dir[PATH_MAX];
    if (!sf_fd_path(dirfd, dir, sizeof dir) || snprintf(out, len, "%s/%s", dir, path) >= (int)len)
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
        sf_abs_path(olddir, oldpath, o, sizeof o);
        sf_abs_path(newdir, newpath, n, sizeof n);
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
        sf_sync_parent(o);
        sf_sync_parent(n);
    }
    if (a)
        sf_inode_unpin(a);
    if (b)
        sf_inode_unpin(b);
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
        sf_abs_path(dirfd, path, p, sizeof p);
        sf_sync_parent(p);
    }
    if (i)
        sf_inode_unpin(i);
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
    sf_inode_unpin(i);
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
        uint64_t size;
        if (sf_local_size(fd, &size) == 0)
            i->expected = size;
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
    sf_abs_path(dirfd, path, abs, sizeof abs);
    snprintf(buf, sizeof buf, "%s", abs);
    bool m = realpath(dirname(buf), real) && sf_managed_path(real);
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
    sf_put(f);
    sf_sync_parent(p);
    errno = saved;
}
