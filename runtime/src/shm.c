/* shm.c: versioned shared-memory segments with a robust process-shared lock. */
#include "rt/shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define RT_SHM_READY 0x52454459u /* "REDY" */
#define HDR_SPACE    ((sizeof(rt_shm_hdr) + 63) & ~(size_t)63)

int rt_robust_mutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (rc == 0)
        rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (rc == 0)
        rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (rc == 0)
        rc = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return -rc;
}

int rt_robust_lock(pthread_mutex_t *m)
{
    int rc = pthread_mutex_lock(m);
    if (rc == EOWNERDEAD) {
        /* The holder died inside its critical section. Mark the mutex usable again; the
         * caller is told so it can repair what the holder may have left half-done. */
        rc = pthread_mutex_consistent(m);
        return rc == 0 ? RT_SHM_RECOVERED : -rc;
    }
    return -rc;
}

int rt_shm_open(rt_shm *s, const char *name, uint32_t magic, uint32_t version, size_t size,
                rt_shm_init_fn init, void *arg, rt_err *err)
{
    char path[256];
    memset(s, 0, sizeof *s);
    if (!name || !*name || strchr(name, '/') || strlen(name) > 200)
        return rt_err_set(err, EINVAL, "bad shared-memory name '%s'", name ? name : "");
    snprintf(path, sizeof path, "/%s", name);
    size_t total = HDR_SPACE + size;
    int fd = shm_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return rt_err_sys(err, "shm_open %s", path);
    /* Serialise initialisation. The kernel drops the flock if we die inside, and then the
     * state word still says "not ready", so the next opener starts over. */
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            int rc = rt_err_sys(err, "flock %s", path);
            close(fd);
            return rc;
        }
    }
    int rc = 0;
    struct stat st;
    void *map;
    if (fstat(fd, &st) != 0) {
        rc = rt_err_sys(err, "fstat %s", path);
        goto out;
    }
    if ((size_t)st.st_size >= sizeof(rt_shm_hdr)) {
        map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            rc = rt_err_sys(err, "mmap %s", path);
            goto out;
        }
        rt_shm_hdr *h = map;
        if (__atomic_load_n(&h->state, __ATOMIC_ACQUIRE) == RT_SHM_READY) {
            if (h->magic != magic || h->version != version || h->size != size ||
                (size_t)st.st_size != total) {
                rc = rt_err_set(
                    err, EPROTO,
                    "segment %s has magic %08x version %u size %llu; expected magic %08x version %u size %zu (remove /dev/shm%s if no process uses it)",
                    path, h->magic, h->version, (unsigned long long)h->size, magic, version, size,
                    path);
                munmap(map, (size_t)st.st_size);
                goto out;
            }
            s->hdr = h;
            goto out;
        }
        munmap(map, (size_t)st.st_size);
    }
    /* New, or left uninitialised by a creator that died: (re)initialise. */
    if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)total) != 0) {
        rc = rt_err_sys(err, "ftruncate %s to %zu bytes", path, total);
        goto out;
    }
    map = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        rc = rt_err_sys(err, "mmap %s", path);
        goto out;
    }
    rt_shm_hdr *h = map;
    h->magic = magic;
    h->version = version;
    h->size = size;
    h->recoveries = 0;
    if ((rc = rt_robust_mutex_init(&h->lock)) < 0) {
        errno = -rc;
        rc = rt_err_sys(err, "pthread_mutex_init in %s", path);
        munmap(map, total);
        goto out;
    }
    if (init)
        init((char *)map + HDR_SPACE, size, arg);
    __atomic_store_n(&h->state, RT_SHM_READY, __ATOMIC_RELEASE);
    s->hdr = h;
    s->created = 1;
out:
    flock(fd, LOCK_UN);
    close(fd);
    if (rc == 0) {
        s->data = (char *)s->hdr + HDR_SPACE;
        s->size = size;
    }
    return rc;
}

void rt_shm_close(rt_shm *s)
{
    if (s->hdr)
        munmap(s->hdr, HDR_SPACE + s->size);
    memset(s, 0, sizeof *s);
}

int rt_shm_unlink(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "/%s", name);
    return shm_unlink(path) == 0 ? 0 : -errno;
}

int rt_shm_lock(rt_shm *s)
{
    int rc = rt_robust_lock(&s->hdr->lock);
    if (rc == RT_SHM_RECOVERED)
        __atomic_fetch_add(&s->hdr->recoveries, 1, __ATOMIC_RELAXED);
    return rc;
}

void rt_shm_unlock(rt_shm *s) { pthread_mutex_unlock(&s->hdr->lock); }
