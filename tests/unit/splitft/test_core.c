/* test_core.c: the shim's logic without LD_PRELOAD: the test opens files with libc and
 * hands them to the logic (core.h) as the wrappers would, against real peers in threads; what
 * reached the log is read back through recovery, the statistics through SPLITFT_STATS. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "tpeers.h"

static tpeer peers[3];
static char dir[64], stats[128];
static ncl_config cfg;

static void setup(void)
{
    for (int i = 0; i < 3; i++)
        tpeer_start(&peers[i], 0, 64 << 20);
    snprintf(dir, sizeof dir, "/tmp/core-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char list[128], id[32];
    snprintf(list, sizeof list, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", peers[0].port,
             peers[1].port, peers[2].port);
    snprintf(id, sizeof id, "core-%d", (int)getpid());
    snprintf(stats, sizeof stats, "%s/stats.json", dir);
    setenv("SPLITFT_PEERS", list, 1);
    setenv("SPLITFT_ID", id, 1);
    setenv("SPLITFT_DIRS", dir, 1);
    setenv("SPLITFT_FLUSH_MS", "60000", 1);
    setenv("SPLITFT_STATS", stats, 1);
    sf_init();
    cr_assert(sf_on(), "the shim did not start");
    tpeer_config(&cfg, peers, 3, id, 1000);
}

static int open_managed(const char *name, int flags)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, flags | O_CREAT | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0);
    sf_opened(fd, flags, true);
    cr_assert_not_null(sf_get(fd), "%s is not managed", p);
    return fd;
}

static ssize_t put(int fd, const char *s, off_t off)
{
    struct iovec iov = {(void *)s, strlen(s)};
    return sf_write(sf_get(fd), fd, off < 0 ? SF_WRITE : SF_PWRITE, &iov, 1, off, 0);
}

/* The records the log holds now (a recovery fences the session: call last). */
static ncl_recovery *log_now(void)
{
    ncl_recovery *r;
    rt_err e;
    cr_assert_eq(ncl_recover_begin(&cfg, &r, &e), 0, "%s", e.msg);
    return r;
}

Test(core, append_offsets_and_merging, .init = setup)
{
    int fd = open_managed("log", O_WRONLY | O_APPEND);
    int other = open(dir, O_RDONLY); /* not a regular file: never managed */
    sf_opened(other, O_RDONLY, false);
    cr_assert_null(sf_get(other));
    cr_assert_eq(put(fd, "aaaa", -1), 4);
    cr_assert_eq(put(fd, "bb", -1), 2);
    cr_assert_eq(sf_sync(sf_get(fd), fd, false), 0);
    cr_assert_eq(put(fd, "cc", -1), 2);
    cr_assert_eq(sf_sync(sf_get(fd), fd, false), 0);
    ncl_recovery *r = log_now();
    cr_assert_eq(r->nrecs, 2, "the two groups: [0,6) and [6,8)");
    cr_assert_eq(r->recs[0].offset, 0);
    cr_assert_eq(r->recs[0].len, 6);
    cr_assert_eq(memcmp(r->recs[0].data, "aaaabb", 6), 0);
    cr_assert_eq(r->recs[1].offset, 6);
    cr_assert_eq(memcmp(r->recs[1].data, "cc", 2), 0);
    ncl_recovery_free(r);
    close(other);
}

Test(core, small_groups_go_to_the_log_in_order, .init = setup)
{
    int fd = open_managed("data", O_RDWR);
    cr_assert_eq(put(fd, "hello", -1), 5);
    cr_assert_eq(put(fd, " world", -1), 6); /* contiguous: one record */
    cr_assert_eq(put(fd, "J", 0), 1);       /* an overwrite: its own record, after */
    cr_assert_eq(sf_sync(sf_get(fd), fd, true), 0);
    ncl_recovery *r = log_now();
    cr_assert_eq(r->nrecs, 2);
    cr_assert_eq(r->recs[0].offset, 0);
    cr_assert_eq(r->recs[0].len, 11);
    cr_assert_eq(memcmp(r->recs[0].data, "hello world", 11), 0);
    cr_assert_eq(r->recs[1].offset, 0);
    cr_assert_eq(memcmp(r->recs[1].data, "J", 1), 0);
    cr_assert(strstr(r->recs[0].path, "/data"), "%.*s", r->recs[0].path_len, r->recs[0].path);
    ncl_recovery_free(r);
}

Test(core, bulk_and_foreign_writes_get_the_real_fsync, .init = setup)
{
    int fd = open_managed("big", O_RDWR);
    static char chunk[40000];
    memset(chunk, 'b', sizeof chunk - 1);
    cr_assert_eq(put(fd, chunk, -1), (ssize_t)sizeof chunk - 1);
    cr_assert_eq(put(fd, chunk, -1), (ssize_t)sizeof chunk - 1); /* the group passes 64K */
    cr_assert_eq(sf_sync(sf_get(fd), fd, false), 0);
    int fd2 = open_managed("foreign", O_RDWR);
    cr_assert_eq(put(fd2, "seen", -1), 4);
    cr_assert_eq(write(fd2, "unseen", 6), 6); /* libc directly: the shim does not see it */
    cr_assert_eq(sf_sync(sf_get(fd2), fd2, false), 0);
    sf_fini();
    FILE *f = fopen(stats, "r");
    cr_assert_not_null(f);
    char js[4096] = "";
    cr_assert(fgets(js, sizeof js, f));
    fclose(f);
    cr_assert(strstr(js, "\"bulk\":1"), "%s", js);
    cr_assert(strstr(js, "\"size_mismatch\":1"), "%s", js);
    cr_assert(strstr(js, "\"groups_ncl\":0"), "%s", js);
}

/* ---- a close in one thread while others write and sync the same fd ---------------------- */

#define RACE_WRITERS 3
#define RACE_RECORDS 400
#define RACE_REC     16

static int race_fd;
static char race_path[128];
static int race_done;

/* What interpose.c's pwrite and fdatasync do, on the fd another thread keeps replacing. */
static void *race_writer(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int j = 0; j < RACE_RECORDS; j++) {
        char rec[32];
        snprintf(rec, sizeof rec, "w%d-%012d\n", t, j);
        off_t off = (off_t)(t * RACE_RECORDS + j) * RACE_REC;
        struct iovec iov = {rec, RACE_REC};
        ssize_t n;
        int rc;
        sf_file *f = sf_get(race_fd);
        if (f) {
            n = sf_write(f, race_fd, SF_PWRITE, &iov, 1, off, 0);
            rc = sf_sync(f, race_fd, true);
            sf_put(f);
        } else {
            n = pwrite(race_fd, rec, RACE_REC, off);
            rc = fdatasync(race_fd);
        }
        cr_assert_eq(n, RACE_REC, "writer %d record %d: %s", t, j, strerror(errno));
        cr_assert_eq(rc, 0, "writer %d record %d: sync: %s", t, j, strerror(errno));
    }
    __atomic_add_fetch(&race_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Under AddressSanitizer (`make check`), a file freed by the close while a write or a sync
 * still used it is a heap-use-after-free report. */
Test(core, close_while_writing_and_syncing, .init = setup, .timeout = 120)
{
    snprintf(race_path, sizeof race_path, "%s/raced", dir);
    race_fd = open_managed("raced", O_RDWR);
    pthread_t w[RACE_WRITERS];
    for (int t = 0; t < RACE_WRITERS; t++)
        cr_assert_eq(pthread_create(&w[t], NULL, race_writer, (void *)(intptr_t)t), 0);
    /* Replace the file behind the fd again and again, as dup2(new, fd) through the wrappers
     * does: the old open file description is closed under the writers' feet, the fd number
     * stays valid (and names the same file), so every write and sync must succeed. */
    int replaced = 0;
    while (__atomic_load_n(&race_done, __ATOMIC_ACQUIRE) < RACE_WRITERS) {
        int nfd = open(race_path, O_RDWR | O_CLOEXEC);
        cr_assert_geq(nfd, 0);
        sf_opened(nfd, O_RDWR, false);
        sf_closing(race_fd);
        cr_assert_eq(dup2(nfd, race_fd), race_fd);
        if (sf_managed(nfd))
            sf_dupped(nfd, race_fd);
        sf_closing(nfd);
        close(nfd);
        replaced++;
    }
    for (int t = 0; t < RACE_WRITERS; t++)
        pthread_join(w[t], NULL);
    cr_assert_gt(replaced, 10, "the file was replaced %d times only", replaced);
    /* Nothing written was lost: every record is in the file at its offset. */
    char want[32], got[RACE_REC];
    for (int t = 0; t < RACE_WRITERS; t++)
        for (int j = 0; j < RACE_RECORDS; j++) {
            snprintf(want, sizeof want, "w%d-%012d\n", t, j);
            off_t off = (off_t)(t * RACE_RECORDS + j) * RACE_REC;
            cr_assert_eq(pread(race_fd, got, RACE_REC, off), RACE_REC);
            cr_assert_eq(memcmp(got, want, RACE_REC), 0, "record %d of writer %d", j, t);
        }
    sf_closing(race_fd);
    close(race_fd);
}
