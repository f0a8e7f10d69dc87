/* test_shm.c: shared-memory segments: versioned header, concurrent openers, robust lock
 * recovered after its holder is killed, half-initialised segments re-initialised. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rt/shm.h"
#include "rt/stats.h"

#define MAGIC 0x54455354u /* "TEST" */

typedef struct area {
    uint64_t counter;
    uint64_t inits;
    uint64_t in_critical; /* set while a holder is inside; a dead holder leaves it set */
} area;

static char name[64];

static void fresh_name(void)
{
    snprintf(name, sizeof name, "rt-test-%d-%ld", (int)getpid(),
             (long)(rt_now_ns() % 1000000007ULL));
}

static void init_area(void *data, size_t size, void *arg)
{
    (void)arg;
    cr_assert_eq(size, sizeof(area));
    ((area *)data)->inits++;
}

Test(shm, create_then_open_sees_same_memory)
{
    fresh_name();
    rt_shm a, b;
    rt_err e;
    cr_assert_eq(rt_shm_open(&a, name, MAGIC, 1, sizeof(area), init_area, NULL, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(a.created, 1);
    ((area *)a.data)->counter = 77;
    cr_assert_eq(rt_shm_open(&b, name, MAGIC, 1, sizeof(area), init_area, NULL, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(b.created, 0);
    cr_assert_eq(((area *)b.data)->counter, 77);
    cr_assert_eq(((area *)b.data)->inits, 1);
    cr_assert_eq((uintptr_t)a.data % 64, 0);
    rt_shm_close(&a);
    rt_shm_close(&b);
    cr_assert_eq(rt_shm_unlink(name), 0);
}

Test(shm, version_magic_and_size_mismatch_refused)
{
    fresh_name();
    rt_shm a, b;
    rt_err e;
    cr_assert_eq(rt_shm_open(&a, name, MAGIC, 1, sizeof(area), NULL, NULL, &e), 0);
    cr_assert_eq(rt_shm_open(&b, name, MAGIC, 2, sizeof(area), NULL, NULL, &e), -EPROTO);
    cr_assert(strstr(e.msg, "version 1") && strstr(e.msg, "version 2"), "%s", e.msg);
    cr_assert_eq(rt_shm_open(&b, name, MAGIC + 1, 1, sizeof(area), NULL, NULL, &e), -EPROTO);
    cr_assert_eq(rt_shm_open(&b, name, MAGIC, 1, sizeof(area) * 2, NULL, NULL, &e), -EPROTO);
    cr_assert_eq(rt_shm_open(&b, "bad/name", MAGIC, 1, 8, NULL, NULL, &e), -EINVAL);
    rt_shm_close(&a);
    rt_shm_unlink(name);
}

Test(shm, concurrent_openers_initialise_once_and_count_exactly)
{
    fresh_name();
    enum { PROCS = 6, ITERS = 2000 };
    pid_t kids[PROCS];
    for (int k = 0; k < PROCS; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            rt_shm s;
            if (rt_shm_open(&s, name, MAGIC, 1, sizeof(area), init_area, NULL, NULL) != 0)
                _exit(2);
            for (int i = 0; i < ITERS; i++) {
                if (rt_shm_lock(&s) < 0)
                    _exit(3);
                area *a = s.data;
                uint64_t c = a->counter;
                sched_yield();
                a->counter = c + 1;
                rt_shm_unlock(&s);
            }
            _exit(0);
        }
    }
    for (int k = 0; k < PROCS; k++) {
        int st;
        waitpid(kids[k], &st, 0);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d status %d", k, st);
    }
    rt_shm s;
    cr_assert_eq(rt_shm_open(&s, name, MAGIC, 1, sizeof(area), init_area, NULL, NULL), 0);
    cr_assert_eq(((area *)s.data)->counter, (uint64_t)PROCS * ITERS);
    cr_assert_eq(((area *)s.data)->inits, 1);
    rt_shm_close(&s);
    rt_shm_unlink(name);
}

Test(shm, lock_recovered_after_holder_killed)
{
    fresh_name();
    rt_shm s;
    rt_err e;
    cr_assert_eq(rt_shm_open(&s, name, MAGIC, 1, sizeof(area), NULL, NULL, &e), 0, "%s", e.msg);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t kid = fork();
    if (kid == 0) {
        rt_shm c;
        if (rt_shm_open(&c, name, MAGIC, 1, sizeof(area), NULL, NULL, NULL) != 0)
            _exit(2);
        rt_shm_lock(&c);
        ((area *)c.data)->in_critical = 1;
        if (write(p[1], "L", 1) != 1)
            _exit(3);
        pause(); /* holding the lock until killed */
        _exit(0);
    }
    char ch;
    cr_assert_eq(read(p[0], &ch, 1), 1);
    kill(kid, SIGKILL);
    int st;
    waitpid(kid, &st, 0);
    cr_assert(WIFSIGNALED(st));
    /* The holder is dead with the lock held: the next locker gets it, told so. */
    cr_assert_eq(rt_shm_lock(&s), RT_SHM_RECOVERED);
    area *a = s.data;
    cr_assert_eq(a->in_critical, 1);
    a->in_critical = 0; /* the repair */
    rt_shm_unlock(&s);
    cr_assert_eq(s.hdr->recoveries, 1);
    /* And it works normally afterwards. */
    cr_assert_eq(rt_shm_lock(&s), 0);
    rt_shm_unlock(&s);
    rt_shm_close(&s);
    rt_shm_unlink(name);
}

Test(shm, half_initialised_segment_is_reinitialised)
{
    fresh_name();
    /* A creator that died after creating and sizing the object but before marking it
     * ready leaves zeros behind. */
    char path[80];
    snprintf(path, sizeof path, "/%s", name);
    int fd = shm_open(path, O_RDWR | O_CREAT, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, 4096), 0);
    close(fd);
    rt_shm s;
    rt_err e;
    cr_assert_eq(rt_shm_open(&s, name, MAGIC, 3, sizeof(area), init_area, NULL, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(s.created, 1);
    cr_assert_eq(((area *)s.data)->inits, 1);
    cr_assert_eq(rt_shm_lock(&s), 0);
    rt_shm_unlock(&s);
    rt_shm_close(&s);
    rt_shm_unlink(name);
}
