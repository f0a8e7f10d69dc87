/* sys.h: the real system calls libsplitft reaches, through one overridable table.
 *
 * Every call the shim makes on the application's behalf (and every durable operation of
 * its own: fsync, replay, the state marker) goes through `sf_real`, filled once with the
 * next definitions in the lookup order (dlsym(RTLD_NEXT, ...)), so the shim never calls
 * itself. Tests may swap entries to count calls or inject faults.
 *
 * SF_SYS_CALLS is the one list: X(return type, name, parameter types, required). The struct
 * and its loader (sys.c) are generated from it. A required call missing from libc keeps the
 * shim in pass-through; an optional one stays NULL and its wrapper falls back or passes on.
 * Adding a hook is one line here plus its wrapper in interpose.c. Wrappers that forward to
 * another wrapper (open64, creat, __open_2, pwrite64, ...) need no entry.
 */
#ifndef SF_SYS_H
#define SF_SYS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/* clang-format off */
#define SF_SYS_CALLS(X)                                                                     \
    X(int, open, (const char *, int, ...), 1)                                               \
    X(int, openat, (int, const char *, int, ...), 1)                                        \
    X(ssize_t, write, (int, const void *, size_t), 1)                                       \
    X(ssize_t, pwrite, (int, const void *, size_t, off_t), 1)                               \
    X(ssize_t, writev, (int, const struct iovec *, int), 1)                                 \
    X(ssize_t, pwritev, (int, const struct iovec *, int, off_t), 0)                         \
    X(ssize_t, pwritev2, (int, const struct iovec *, int, off_t, int), 0)                   \
    X(int, fsync, (int), 1)                                                                 \
    X(int, fdatasync, (int), 1)                                                             \
    X(int, sync_file_range, (int, off_t, off_t, unsigned int), 0)                           \
    X(int, msync, (void *, size_t, int), 0)                                                 \
    X(int, syncfs, (int), 0)                                                                \
    X(int, close, (int), 1)                                                                 \
    X(int, dup, (int), 1)                                                                   \
    X(int, dup2, (int, int), 1)                                                             \
    X(int, dup3, (int, int, int), 0)                                                        \
    X(int, fcntl, (int, int, ...), 1)                                                       \
    X(int, fcntl64, (int, int, ...), 0)                                                     \
    X(int, rename, (const char *, const char *), 1)                                         \
    X(int, renameat, (int, const char *, int, const char *), 1)                             \
    X(int, renameat2, (int, const char *, int, const char *, unsigned int), 0)              \
    X(int, unlink, (const char *), 1)                                                       \
    X(int, unlinkat, (int, const char *, int), 1)                                           \
    X(int, truncate, (const char *, off_t), 1)                                              \
    X(int, truncate64, (const char *, off_t), 0)                                            \
    X(int, ftruncate, (int, off_t), 1)                                                      \
    X(int, ftruncate64, (int, off_t), 0)                                                    \
    X(int, fallocate, (int, int, off_t, off_t), 0)                                          \
    X(int, fallocate64, (int, int, off_t, off_t), 0)                                        \
    X(int, posix_fallocate, (int, off_t, off_t), 0)                                         \
    X(int, posix_fallocate64, (int, off_t, off_t), 0)                                       \
    X(void *, mmap, (void *, size_t, int, int, int, off_t), 1)                              \
    X(void *, mmap64, (void *, size_t, int, int, int, off_t), 0)
/* clang-format on */

typedef struct sf_sys {
/* NOLINTNEXTLINE(bugprone-macro-parentheses): a type, a name and a parameter list */
#define SF_SYS_FIELD(ret, name, params, required) ret(*name) params;
    SF_SYS_CALLS(SF_SYS_FIELD)
#undef SF_SYS_FIELD
} sf_sys;

extern sf_sys sf_real;

/* Resolve every entry (idempotent, thread-safe). Returns false when a required call is
 * missing; the caller then stays in pass-through. Optional entries libc lacks stay NULL. */
bool sf_sys_init(void);

#endif
