/* test_replay.c: writing recovered records back: files and parent directories created,
 * offsets, tombstone-free input in seq order, idempotence, errors. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ncl/client.h"

static char dir[64];

static void mkdir_tmp(void)
{
    snprintf(dir, sizeof dir, "/tmp/replay-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static ncl_rec rec(uint64_t seq, const char *path, uint64_t off, const char *data)
{
    return (ncl_rec){.seq = seq,
                     .kind = NCL_REC_WRITE,
                     .offset = off,
                     .len = (uint32_t)strlen(data),
                     .path_len = (uint16_t)strlen(path),
                     .path = path,
                     .data = data};
}

static char *slurp(const char *path, size_t *n)
{
    static char buf[4096];
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    ssize_t r = read(fd, buf, sizeof buf);
    close(fd);
    *n = (size_t)r;
    return buf;
}

Test(replay, writes_in_order_creating_files_and_directories)
{
    mkdir_tmp();
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/x.log", dir);
    snprintf(b, sizeof b, "%s/sub/deeper/y.log", dir);
    ncl_rec recs[] = {rec(1, a, 0, "hello "), rec(2, b, 4, "late"), rec(3, a, 6, "world"),
                      rec(4, a, 0, "HELLO")}; /* a later record overwrites an earlier one */
    ncl_recovery r = {.nrecs = 4, .recs = recs};
    ncl_replay_stats st;
    rt_err e;
    cr_assert_eq(ncl_replay(&r, NULL, &st, &e), 0, "%s", e.msg);
    cr_assert_eq(st.records, 4);
    cr_assert_eq(st.files, 2);
    cr_assert_eq(st.bytes, 20);
    size_t n;
    char *d = slurp(a, &n);
    cr_assert_eq(n, 11);
    cr_assert_eq(memcmp(d, "HELLO world", 11), 0);
    d = slurp(b, &n);
    cr_assert_eq(n, 8); /* a hole before the record reads as zeros */
    cr_assert_eq(memcmp(d, "\0\0\0\0late", 8), 0);
    /* Idempotent: running it again leaves the same bytes. */
    cr_assert_eq(ncl_replay(&r, NULL, &st, &e), 0, "%s", e.msg);
    d = slurp(a, &n);
    cr_assert_eq(n, 11);
    cr_assert_eq(memcmp(d, "HELLO world", 11), 0);
}

static int fsyncs;
static int count_fsync(int fd)
{
    fsyncs++;
    return fsync(fd);
}

Test(replay, fsyncs_every_file_and_its_directory)
{
    mkdir_tmp();
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    ncl_rec recs[] = {rec(1, a, 0, "1"), rec(2, b, 0, "2"), rec(3, a, 1, "3")};
    ncl_recovery r = {.nrecs = 3, .recs = recs};
    ncl_replay_ops ops = {open, pwrite, count_fsync, close};
    ncl_replay_stats st;
    rt_err e;
    fsyncs = 0;
    cr_assert_eq(ncl_replay(&r, &ops, &st, &e), 0, "%s", e.msg);
    cr_assert_eq(fsyncs, 4, "two files and their directory, once per file");
}

static int failing_fsync(int fd)
{
    (void)fd;
    errno = EIO;
    return -1;
}

Test(replay, errors_are_reported_not_ignored)
{
    mkdir_tmp();
    char a[128];
    snprintf(a, sizeof a, "%s/a", dir);
    ncl_rec ok[] = {rec(1, a, 0, "x")};
    ncl_recovery r = {.nrecs = 1, .recs = ok};
    ncl_replay_ops ops = {open, pwrite, failing_fsync, close};
    ncl_replay_stats st;
    rt_err e;
    cr_assert_eq(ncl_replay(&r, &ops, &st, &e), -EIO);
    cr_assert(strstr(e.msg, "fsync"), "%s", e.msg);
    ncl_rec rel[] = {rec(1, "relative/path", 0, "x")};
    r.recs = rel;
    cr_assert_eq(ncl_replay(&r, NULL, &st, &e), -EINVAL);
    cr_assert(strstr(e.msg, "absolute path"), "%s", e.msg);
    char blocked[160];
    snprintf(blocked, sizeof blocked, "%s/a/under-a-file", dir); /* a is a file, not a dir */
    ncl_rec bad[] = {rec(1, blocked, 0, "x")};
    r.recs = bad;
    cr_assert_lt(ncl_replay(&r, NULL, &st, &e), 0);
}

static int pwrites;
static ssize_t count_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    pwrites++;
    return pwrite(fd, buf, n, off);
}

Test(replay, contiguous_records_are_merged_and_order_is_kept)
{
    mkdir_tmp();
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/aof", dir);
    snprintf(b, sizeof b, "%s/other", dir);
    /* An append-only run of 200 records: one write. */
    static char data[200][16];
    ncl_rec recs[206];
    for (int i = 0; i < 200; i++) {
        snprintf(data[i], sizeof data[i], "%06d|", i); /* 7 bytes */
        recs[i] = rec((uint64_t)i + 1, a, (uint64_t)i * 7, data[i]);
    }
    /* Then a rewrite inside the run, another file between, and an append that follows the
     * rewrite: each later record must win over the bytes before it. */
    recs[200] = rec(201, a, 7, "XXXXXXX");
    recs[201] = rec(202, a, 14, "YYYYYYY");
    recs[202] = rec(203, b, 0, "b");
    recs[203] = rec(204, a, 21, "ZZZZZZZ");
    recs[204] = rec(205, a, 1400, "end");
    recs[205] = rec(206, a, 8, "q");
    ncl_recovery r = {.nrecs = 206, .recs = recs};
    ncl_replay_ops ops = {open, count_pwrite, fsync, close};
    ncl_replay_stats st;
    rt_err e;
    pwrites = 0;
    cr_assert_eq(ncl_replay(&r, &ops, &st, &e), 0, "%s", e.msg);
    cr_assert_eq(st.records, 206);
    /* the run of 200; 201-202; b; 204; 205; 206 */
    cr_assert_eq(pwrites, 6, "%d writes", pwrites);
    size_t n;
    char *d = slurp(a, &n);
    cr_assert_eq(n, 1403);
    cr_assert_eq(memcmp(d, "000000|XqXXXXXYYYYYYYZZZZZZZ000004|", 35), 0, "%.35s", d);
    cr_assert_eq(memcmp(d + 1393, "000199|", 7), 0);
    cr_assert_eq(memcmp(d + 1400, "end", 3), 0);
}
