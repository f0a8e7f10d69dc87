/* rt/shm.h: named shared-memory segments with a versioned header and a robust,
 * process-shared lock.
 *
 * A segment is a POSIX shm object: a header (magic, layout version, size, state, lock)
 * followed by the user's area. Opening creates and initialises it if needed; concurrent
 * openers are serialised by flock(2) on the object during that step, so a creator that
 * dies half-way leaves the segment uninitialised (not half-written) for the next opener.
 * The lock is a PTHREAD_MUTEX_ROBUST mutex: when its holder dies, the next locker is told
 * so (RT_SHM_RECOVERED), may repair the user area, and the lock works again.
 */
#ifndef RT_SHM_H
#define RT_SHM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "rt/err.h"

#define RT_SHM_RECOVERED 1 /* rt_shm_lock: the previous holder died while holding it */

typedef struct rt_shm_hdr {
    uint32_t magic;      /* the user's layout tag, e.g. 0x4f52424e ("ORBN") */
    uint32_t version;    /* the user's layout version */
    uint64_t size;       /* bytes of the user area */
    uint32_t state;      /* RT_SHM_READY once initialised */
    uint32_t recoveries; /* times the lock was recovered from a dead holder */
    pthread_mutex_t lock;
} rt_shm_hdr;

typedef struct rt_shm {
    rt_shm_hdr *hdr;
    void *data; /* the user area, 64-byte aligned */
    size_t size;
    int created; /* 1 if this open initialised the segment */
} rt_shm;

/* Called once, with the lock not held, when the segment is (re)initialised; the user
 * area is zero-filled before. */
typedef void (*rt_shm_init_fn)(void *data, size_t size, void *arg);

/* Open or create "/name" (a name without slashes, as for shm_open). A segment that exists
 * with another magic, version or size is refused with -EPROTO and a message saying which. */
int rt_shm_open(rt_shm *s, const char *name, uint32_t magic, uint32_t version, size_t size,
                rt_shm_init_fn init, void *arg, rt_err *err);
void rt_shm_close(rt_shm *s);
int rt_shm_unlink(const char *name);

/* 0, or RT_SHM_RECOVERED when the previous holder died holding it (the lock is held and
 * consistent again either way); negative errno on failure. */
int rt_shm_lock(rt_shm *s);
void rt_shm_unlock(rt_shm *s);

/* The same for mutexes inside the user area (per-slot locks). */
int rt_robust_mutex_init(pthread_mutex_t *m);
int rt_robust_lock(pthread_mutex_t *m);

#endif
