/* core.h: libsplitft's state and logic, called by the wrappers in interpose.c.
 *
 * Terms: a managed file is a regular file under one of
 * SPLITFT_DIRS; its sync group is what was written to the inode since its last durable
 * point; a small group goes to the near-compute log at fsync, anything else gets the real
 * call. An sf_file is one open file description (shared by dup'ed fds); an sf_inode is the
 * per-inode state every file of the inode shares.
 */
#ifndef SF_CORE_H
#define SF_CORE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct sf_file sf_file;

/* Set up from the environment: configuration, recovery, the NCL session, the flusher.
 * Never fails: a bad configuration or an unreachable log leaves the shim passing calls
 * through (or doing real syncs); only unrecoverable records stop the process. */
void sf_init(void);
/* At exit: make everything durable the normal way, trim the log, write statistics. */
void sf_fini(void);

/* True when calls must be examined at all (configured, initialised, not a forked child). */
bool sf_on(void);

/* The managed open file behind fd, with a reference the caller gives back with sf_put, or
 * NULL. Lock-free: the hot path of every wrapper. A close() of fd in another thread meanwhile
 * does not free the file; the real call then answers EBADF, as libc would. */
sf_file *sf_get(int fd);
void sf_put(sf_file *f);
/* Whether fd names a managed file now (no reference taken). */
bool sf_managed(int fd);

/* After a successful real open of `fd` with the application's flags (O_SYNC/O_DSYNC were
 * stripped from the real call and are emulated); created: the open made the file. */
void sf_opened(int fd, int flags, bool created);
/* Before the real close of fd (the fd is forgotten). */
void sf_closing(int fd);
/* After a successful dup of oldfd to newfd (newfd forgotten first when it was in use). */
void sf_dupped(int oldfd, int newfd);
/* A F_SETFL on fd changed its flags. */
void sf_setfl(int fd, int flags);

/* Writes: do the real write (`how` says which call) under the inode's lock and stage what
 * was written. off < 0: at the file position. Returns the real call's result and errno. */
enum { SF_WRITE, SF_PWRITE, SF_WRITEV, SF_PWRITEV, SF_PWRITEV2 };
ssize_t sf_write(sf_file *f, int fd, int how, const struct iovec *iov, int iovcnt, off_t off,
                 int flags);

/* fsync (datasync false) or fdatasync (true) of a managed file. */
int sf_sync(sf_file *f, int fd, bool datasync);

/* Metadata barriers. Each makes the affected inodes durable (or drops their records when they
 * disappear), then does the real operation through `op`, then makes a managed name change
 * durable (parent directory fsync). They return the real operation's result and errno. */
typedef int (*sf_op)(void *arg);
int sf_rename(int olddir, const char *oldpath, int newdir, const char *newpath, unsigned flags,
              sf_op op, void *arg);
int sf_unlink(int dirfd, const char *path, int flags, sf_op op, void *arg);
int sf_truncate_path(const char *path, off_t len, sf_op op, void *arg);
int sf_resize(sf_file *f, int fd, int mode, off_t off, off_t len, bool is_fallocate, sf_op op,
              void *arg);
/* A writable shared mapping of a managed file: its syncs are real from now on. */
void sf_mapped(sf_file *f);

/* Whether (dirfd, path) names a place under SPLITFT_DIRS (the file need not exist). */
bool sf_path_managed(int dirfd, const char *path);
/* Before a creating open of a managed path: whether the file exists (so the open creates). */
bool sf_exists_at(int dirfd, const char *path);
/* The file became durable as a name: fsync its parent directory when it is managed. */
void sf_created(int fd);

#endif
