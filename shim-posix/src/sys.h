/* sys.h: the real system calls libsplitft reaches, through one overridable table.
 *
 * Every call the shim makes on the application's behalf (and every durable operation of
 * its own: fsync, replay, the state marker) goes through `sf_sys`, filled once with the
 * next definitions in the lookup order (dlsym(RTLD_NEXT, ...)), so the shim never calls
 * itself. Tests may swap entries to count calls or inject faults.
 */
#ifndef SF_SYS_H
#define SF_SYS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct sf_sys {
    int (*open)(const char *, int, ...);
    int (*open64)(const char *, int, ...);
    int (*openat)(int, const char *, int, ...);
    int (*openat64)(int, const char *, int, ...);
    int (*creat)(const char *, mode_t);
    int (*creat64)(const char *, mode_t);
    int (*open_2)(const char *, int);          /* __open_2 (fortified builds) */
    int (*open64_2)(const char *, int);        /* __open64_2 */
    int (*openat_2)(int, const char *, int);   /* __openat_2 */
    int (*openat64_2)(int, const char *, int); /* __openat64_2 */
    ssize_t (*write)(int, const void *, size_t);
    ssize_t (*pwrite)(int, const void *, size_t, off_t);
    ssize_t (*pwrite64)(int, const void *, size_t, off_t);
    ssize_t (*writev)(int, const struct iovec *, int);
    ssize_t (*pwritev)(int, const struct iovec *, int, off_t);
    ssize_t (*pwritev64)(int, const struct iovec *, int, off_t);
    ssize_t (*pwritev2)(int, const struct iovec *, int, off_t, int);
    ssize_t (*pwritev64v2)(int, const struct iovec *, int, off_t, int);
    int (*fsync)(int);
    int (*fdatasync)(int);
    int (*sync_file_range)(int, off_t, off_t, unsigned int);
    int (*msync)(void *, size_t, int);
    int (*syncfs)(int);
    int (*close)(int);
    int (*dup)(int);
    int (*dup2)(int, int);
    int (*dup3)(int, int, int);
    int (*fcntl)(int, int, ...);
    int (*fcntl64)(int, int, ...);
    int (*rename)(const char *, const char *);
    int (*renameat)(int, const char *, int, const char *);
    int (*renameat2)(int, const char *, int, const char *, unsigned int);
    int (*unlink)(const char *);
    int (*unlinkat)(int, const char *, int);
    int (*truncate)(const char *, off_t);
    int (*truncate64)(const char *, off_t);
    int (*ftruncate)(int, off_t);
    int (*ftruncate64)(int, off_t);
    int (*fallocate)(int, int, off_t, off_t);
    int (*fallocate64)(int, int, off_t, off_t);
    int (*posix_fallocate)(int, off_t, off_t);
    int (*posix_fallocate64)(int, off_t, off_t);
    void *(*mmap)(void *, size_t, int, int, int, off_t);
    void *(*mmap64)(void *, size_t, int, int, int, off_t);
} sf_sys;

extern sf_sys sf_real;

/* Resolve every entry (idempotent, thread-safe). Returns false when a call the shim needs
 * is missing; the caller then stays in pass-through. Entries libc lacks stay NULL. */
bool sf_sys_init(void);

#endif
