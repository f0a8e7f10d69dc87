/* interpose.c: the functions libsplitft.so exports in place of libc's, under LD_PRELOAD.
 *
 * Each wrapper passes the call straight to the real function unless the shim is on and the
 * call concerns a managed file (core.h decides); the lookup is one array read. Before the
 * constructor ran, in a forked child, or when the shim is not configured, every wrapper is
 * a plain call of the real function: nothing is allocated and errno is untouched.
 *
 * Sections: opens, writes, syncs, descriptors, names and sizes, mappings, start and exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"
#include "sys.h"

#define EXPORT __attribute__((visibility("default")))

/* The real function, resolving the table first if a call comes before the constructor. */
#define REAL(f) (sf_real.f ? sf_real.f : (sf_sys_init(), sf_real.f))

static bool has_mode(int flags) { return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE; }

/* ---- opens ------------------------------------------------------------------------------ */

/* O_SYNC and O_DSYNC are taken off the real open and emulated: each write on such an fd is
 * a sync group of its own. Only for managed files, decided after the open. */
static int open_common(int dirfd, const char *path, int flags, mode_t mode, bool at)
{
    if (!sf_on())
        return at ? REAL(openat)(dirfd, path, flags, mode) : REAL(open)(path, flags, mode);
    bool creating = (flags & O_CREAT) && !sf_exists_at(dirfd, path);
    int real_flags = flags;
    if ((flags & (O_SYNC | O_DSYNC)) && sf_path_managed(dirfd, path))
        real_flags &= ~(O_SYNC | O_DSYNC);
    int fd = at ? REAL(openat)(dirfd, path, real_flags, mode) : REAL(open)(path, real_flags, mode);
    if (fd < 0)
        return fd;
    sf_opened(fd, flags, creating || (flags & O_TRUNC));
    if (creating)
        sf_created(fd);
    return fd;
}

/* open, open64, openat and openat64 share one body: the mode argument exists only when the
 * flags create a file. */
#define OPEN_BODY(dirfd, at)                                                                       \
    mode_t mode = 0;                                                                               \
    if (has_mode(flags)) {                                                                         \
        va_list ap;                                                                                \
        va_start(ap, flags);                                                                       \
        mode = (mode_t)va_arg(ap, int);                                                            \
        va_end(ap);                                                                                \
    }                                                                                              \
    return open_common(dirfd, path, flags, mode, at)

EXPORT int open(const char *path, int flags, ...) { OPEN_BODY(AT_FDCWD, false); }
EXPORT int open64(const char *path, int flags, ...) { OPEN_BODY(AT_FDCWD, false); }
EXPORT int openat(int dirfd, const char *path, int flags, ...) { OPEN_BODY(dirfd, true); }
EXPORT int openat64(int dirfd, const char *path, int flags, ...) { OPEN_BODY(dirfd, true); }

EXPORT int creat(const char *path, mode_t mode)
{
    return open_common(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode, false);
}

EXPORT int creat64(const char *path, mode_t mode)
{
    return open_common(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode, false);
}

/* The fortified variants (called by programs built with _FORTIFY_SOURCE). */
EXPORT int __open_2(const char *path, int flags)
{
    return open_common(AT_FDCWD, path, flags, 0, false);
}
EXPORT int __open64_2(const char *path, int flags)
{
    return open_common(AT_FDCWD, path, flags, 0, false);
}
EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
    return open_common(dirfd, path, flags, 0, true);
}
EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
    return open_common(dirfd, path, flags, 0, true);
}

/* ---- writes ------------------------------------------------------------------------------ */

EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
    sf_file *f = sf_get(fd);
    if (!f)
        return REAL(write)(fd, buf, n);
    struct iovec iov = {(void *)buf, n};
    ssize_t rc = sf_write(f, fd, SF_WRITE, &iov, 1, -1, 0);
    sf_put(f);
    return rc;
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    sf_file *f = sf_get(fd);
    if (!f)
        return REAL(pwrite)(fd, buf, n, off);
    struct iovec iov = {(void *)buf, n};
    ssize_t rc = sf_write(f, fd, SF_PWRITE, &iov, 1, off, 0);
    sf_put(f);
    return rc;
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    return pwrite(fd, buf, n, off);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    sf_file *f = sf_get(fd);
    if (!f)
        return REAL(writev)(fd, iov, cnt);
    ssize_t rc = sf_write(f, fd, SF_WRITEV, iov, cnt, -1, 0);
    sf_put(f);
    return rc;
}

EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    sf_file *f = sf_get(fd);
    if (!f)
        return REAL(pwritev)(fd, iov, cnt, off);
    ssize_t rc = sf_write(f, fd, SF_PWRITEV, iov, cnt, off, 0);
    sf_put(f);
    return rc;
}

EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    return pwritev(fd, iov, cnt, off);
}

EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    sf_file *f = sf_get(fd);
    if (!f)
        return REAL(pwritev2)(fd, iov, cnt, off, flags);
    /* off == -1: at the file position, like writev. RWF_DSYNC/RWF_SYNC: durable on return. */
    ssize_t n = sf_write(f, fd, SF_PWRITEV2, iov, cnt, off, flags & ~(RWF_DSYNC | RWF_SYNC));
    if (n > 0 && (flags & (RWF_DSYNC | RWF_SYNC)) && sf_sync(f, fd, !(flags & RWF_SYNC)) != 0) {
        errno = EIO;
        n = -1;
    }
    sf_put(f);
    return n;
}

EXPORT ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    return pwritev2(fd, iov, cnt, off, flags);
}

/* ---- syncs ------------------------------------------------------------------------------ */

static int sync_common(int fd, bool datasync)
{
    sf_file *f = sf_get(fd);
    if (!f)
        return datasync ? REAL(fdatasync)(fd) : REAL(fsync)(fd);
    int rc = sf_sync(f, fd, datasync);
    sf_put(f);
    return rc;
}

EXPORT int fsync(int fd) { return sync_common(fd, false); }
EXPORT int fdatasync(int fd) { return sync_common(fd, true); }

EXPORT int sync_file_range(int fd, off_t off, off_t n, unsigned int flags)
{
    /* Only WAIT_AFTER makes the call a durability point; the others start writeback. */
    if ((flags & SYNC_FILE_RANGE_WAIT_AFTER) && sf_managed(fd))
        return sync_common(fd, true);
    return REAL(sync_file_range)(fd, off, n, flags);
}

/* msync and syncfs pass through: a file with a writable shared mapping gets real syncs
 * anyway (sf_mapped), and syncfs is a real durability point of everything. */
EXPORT int msync(void *addr, size_t len, int flags) { return REAL(msync)(addr, len, flags); }
EXPORT int syncfs(int fd) { return REAL(syncfs)(fd); }

/* ---- descriptors -------------------------------------------------------------------------- */

EXPORT int close(int fd)
{
    sf_closing(fd);
    return REAL(close)(fd);
}

EXPORT int dup(int fd)
{
    int n = REAL(dup)(fd);
    if (n >= 0 && sf_managed(fd))
        sf_dupped(fd, n);
    return n;
}

EXPORT int dup2(int fd, int to)
{
    if (fd != to)
        sf_closing(to);
    int n = REAL(dup2)(fd, to);
    if (n >= 0 && fd != to && sf_managed(fd))
        sf_dupped(fd, n);
    return n;
}

EXPORT int dup3(int fd, int to, int flags)
{
    sf_closing(to);
    int n = REAL(dup3)(fd, to, flags);
    if (n >= 0 && sf_managed(fd))
        sf_dupped(fd, n);
    return n;
}

static int fcntl_common(int (*real)(int, int, ...), int fd, int cmd, va_list ap)
{
    switch (cmd) {
    case F_DUPFD:
    case F_DUPFD_CLOEXEC: {
        int arg = va_arg(ap, int);
        int n = real(fd, cmd, arg);
        if (n >= 0 && sf_managed(fd))
            sf_dupped(fd, n);
        return n;
    }
    case F_SETFL: {
        int arg = va_arg(ap, int);
        int rc = real(fd, cmd, arg);
        if (rc == 0)
            sf_setfl(fd, arg);
        return rc;
    }
    case F_GETFD:
    case F_GETFL:
    case F_GETOWN:
    case F_GETSIG:
    case F_GETLEASE:
    case F_GETPIPE_SZ:
    case F_GET_SEALS:
        return real(fd, cmd);
    default: /* every other command takes one pointer- or int-sized argument */
        return real(fd, cmd, va_arg(ap, void *));
    }
}

EXPORT int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    int rc = fcntl_common(REAL(fcntl), fd, cmd, ap);
    va_end(ap);
    return rc;
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    int rc = fcntl_common(REAL(fcntl64) ? REAL(fcntl64) : REAL(fcntl), fd, cmd, ap);
    va_end(ap);
    return rc;
}

/* ---- names and sizes ------------------------------------------------------------------- */

typedef struct name_args {
    int od, nd;
    const char *o, *n;
    unsigned flags;
    off_t len;
    int fd, mode;
    off_t off;
    int which;
} name_args;

enum {
    W_RENAME,
    W_RENAMEAT,
    W_RENAMEAT2,
    W_UNLINK,
    W_UNLINKAT,
    W_TRUNCATE,
    W_TRUNCATE64,
    W_FTRUNCATE,
    W_FTRUNCATE64,
    W_FALLOCATE,
    W_FALLOCATE64,
    W_PFALLOCATE,
    W_PFALLOCATE64
};

static int do_real(void *arg)
{
    name_args *a = arg;
    switch (a->which) {
    case W_RENAME:
        return REAL(rename)(a->o, a->n);
    case W_RENAMEAT:
        return REAL(renameat)(a->od, a->o, a->nd, a->n);
    case W_RENAMEAT2:
        return REAL(renameat2)(a->od, a->o, a->nd, a->n, a->flags);
    case W_UNLINK:
        return REAL(unlink)(a->o);
    case W_UNLINKAT:
        return REAL(unlinkat)(a->od, a->o, (int)a->flags);
    case W_TRUNCATE:
        return REAL(truncate)(a->o, a->len);
    case W_TRUNCATE64:
        return REAL(truncate64)(a->o, a->len);
    case W_FTRUNCATE:
        return REAL(ftruncate)(a->fd, a->len);
    case W_FTRUNCATE64:
        return REAL(ftruncate64)(a->fd, a->len);
    case W_FALLOCATE:
        return REAL(fallocate)(a->fd, a->mode, a->off, a->len);
    case W_FALLOCATE64:
        return REAL(fallocate64)(a->fd, a->mode, a->off, a->len);
    case W_PFALLOCATE:
        return REAL(posix_fallocate)(a->fd, a->off, a->len);
    default:
        return REAL(posix_fallocate64)(a->fd, a->off, a->len);
    }
}

EXPORT int rename(const char *o, const char *n)
{
    name_args a = {.od = AT_FDCWD, .nd = AT_FDCWD, .o = o, .n = n, .which = W_RENAME};
    return sf_on() ? sf_rename(AT_FDCWD, o, AT_FDCWD, n, 0, do_real, &a) : do_real(&a);
}

EXPORT int renameat(int od, const char *o, int nd, const char *n)
{
    name_args a = {.od = od, .nd = nd, .o = o, .n = n, .which = W_RENAMEAT};
    return sf_on() ? sf_rename(od, o, nd, n, 0, do_real, &a) : do_real(&a);
}

EXPORT int renameat2(int od, const char *o, int nd, const char *n, unsigned flags)
{
    name_args a = {.od = od, .nd = nd, .o = o, .n = n, .flags = flags, .which = W_RENAMEAT2};
    return sf_on() ? sf_rename(od, o, nd, n, flags, do_real, &a) : do_real(&a);
}

EXPORT int unlink(const char *p)
{
    name_args a = {.o = p, .which = W_UNLINK};
    return sf_on() ? sf_unlink(AT_FDCWD, p, 0, do_real, &a) : do_real(&a);
}

EXPORT int unlinkat(int dirfd, const char *p, int flags)
{
    name_args a = {.od = dirfd, .o = p, .flags = (unsigned)flags, .which = W_UNLINKAT};
    return sf_on() ? sf_unlink(dirfd, p, flags, do_real, &a) : do_real(&a);
}

EXPORT int truncate(const char *p, off_t len)
{
    name_args a = {.o = p, .len = len, .which = W_TRUNCATE};
    return sf_on() ? sf_truncate_path(p, len, do_real, &a) : do_real(&a);
}

EXPORT int truncate64(const char *p, off_t len)
{
    name_args a = {.o = p, .len = len, .which = W_TRUNCATE64};
    return sf_on() ? sf_truncate_path(p, len, do_real, &a) : do_real(&a);
}

static int resize(int fd, int which, int mode, off_t off, off_t len)
{
    name_args a = {.fd = fd, .mode = mode, .off = off, .len = len, .which = which};
    sf_file *f = sf_get(fd);
    if (!f)
        return do_real(&a);
    bool falloc = which >= W_FALLOCATE;
    if (which == W_PFALLOCATE || which == W_PFALLOCATE64)
        mode = 0;
    int rc = sf_resize(f, fd, mode, off, len, falloc, do_real, &a);
    sf_put(f);
    return rc;
}

EXPORT int ftruncate(int fd, off_t len) { return resize(fd, W_FTRUNCATE, 0, 0, len); }
EXPORT int ftruncate64(int fd, off_t len) { return resize(fd, W_FTRUNCATE64, 0, 0, len); }
EXPORT int fallocate(int fd, int mode, off_t off, off_t len)
{
    return resize(fd, W_FALLOCATE, mode, off, len);
}
EXPORT int fallocate64(int fd, int mode, off_t off, off_t len)
{
    return resize(fd, W_FALLOCATE64, mode, off, len);
}
EXPORT int posix_fallocate(int fd, off_t off, off_t len)
{
    return resize(fd, W_PFALLOCATE, 0, off, len);
}
EXPORT int posix_fallocate64(int fd, off_t off, off_t len)
{
    return resize(fd, W_PFALLOCATE64, 0, off, len);
}

/* ---- mappings ------------------------------------------------------------------------------ */

static void check_map(int prot, int flags, int fd)
{
    if (fd < 0 || !(prot & PROT_WRITE) || !(flags & MAP_SHARED))
        return;
    sf_file *f = sf_get(fd);
    if (f) {
        sf_mapped(f); /* writes through the mapping are invisible to us */
        sf_put(f);
    }
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    check_map(prot, flags, fd);
    return REAL(mmap)(addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    check_map(prot, flags, fd);
    return (REAL(mmap64) ? REAL(mmap64) : REAL(mmap))(addr, len, prot, flags, fd, off);
}

/* ---- start and exit ---------------------------------------------------------------------- */

__attribute__((constructor)) static void splitft_init(void) { sf_init(); }
__attribute__((destructor)) static void splitft_fini(void) { sf_fini(); }
