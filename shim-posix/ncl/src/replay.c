/* replay.c: write recovered NCL records into their files and make them durable.
 *
 * Durability: each file written is fsynced, then each directory that holds one of them,
 * because a file created here (or whose parent directory was created here) exists after a
 * crash only once its directory entry is durable too. fsync on a directory fd is how Linux
 * file systems make entries durable; its error is reported, not ignored, since recovery must
 * not start the application on files it could not vouch for.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ncl/client.h"

typedef struct open_file {
    char *path;
    int fd;
} open_file;

static const ncl_replay_ops libc_ops = {open, pwrite, fsync, close};

/* mkdir -p for the parent of path; records the directories to sync. */
static int make_parents(const char *path, rt_err *err)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof buf)
        return rt_err_set(err, ENAMETOOLONG, "path too long: %.100s", path);
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return rt_err_sys(err, "replay: cannot create directory %s", buf);
        *p = '/';
    }
    return 0;
}

static int fsync_dir_of(const ncl_replay_ops *ops, const char *path, rt_err *err)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    const char *dir = dirname(buf);
    int fd = ops->open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return rt_err_sys(err, "replay: cannot open directory %s", dir);
    int rc = ops->fsync(fd) == 0 ? 0 : rt_err_sys(err, "replay: fsync of directory %s", dir);
    ops->close(fd);
    return rc;
}

static int file_for(const ncl_replay_ops *ops, open_file **files, size_t *n, const char *path,
                    rt_err *err)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*files)[i].path, path) == 0)
            return (*files)[i].fd;
    int rc = make_parents(path, err);
    if (rc < 0)
        return rc;
    int fd = ops->open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return rt_err_sys(err, "replay: cannot open %s", path);
    open_file *nf = realloc(*files, (*n + 1) * sizeof *nf);
    char *dup = strdup(path);
    if (!nf || !dup) {
        free(dup);
        if (nf)
            *files = nf;
        ops->close(fd);
        return rt_err_set(err, ENOMEM, "out of memory");
    }
    *files = nf;
    nf[*n] = (open_file){dup, fd};
    (*n)++;
    return fd;
}

/* Write n bytes at off, whole (short writes continued, EINTR retried). */
static int write_all(const ncl_replay_ops *ops, int fd, const char *buf, size_t n, uint64_t off,
                     const char *path, rt_err *err)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = ops->pwrite(fd, buf + done, n - done, (off_t)(off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return rt_err_sys(err, "replay: write of %zu bytes at %llu in %s", n,
                              (unsigned long long)off, path);
        done += (size_t)w;
    }
    return 0;
}

/* Records that follow each other in seq order, in one file, at contiguous offsets (an
 * append-only log: Redis's AOF, a WAL) are written with one call of up to REPLAY_RUN_MAX
 * bytes: on a network file system each call is a round trip. Only neighbours in seq order
 * are merged, so the order of overlapping writes is kept. */
#define REPLAY_RUN_MAX (8u << 20)

int ncl_replay(const ncl_recovery *r, const ncl_replay_ops *ops, ncl_replay_stats *st, rt_err *err)
{
    if (!ops)
        ops = &libc_ops;
    memset(st, 0, sizeof *st);
    open_file *files = NULL;
    size_t nfiles = 0;
    int rc = 0;
    char *run = NULL; /* bytes of the pending run, REPLAY_RUN_MAX when allocated */
    size_t run_len = 0;
    uint64_t run_off = 0;
    int run_fd = -1;
    const char *run_path = NULL;
    char path[NCL_PATH_MAX + 1];
    for (size_t i = 0; i < r->nrecs && rc == 0; i++) {
        const ncl_rec *rec = &r->recs[i];
        if (rec->path_len == 0 || rec->path[0] != '/') {
            rc = rt_err_set(err, EINVAL, "record %llu has no absolute path",
                            (unsigned long long)rec->seq);
            break;
        }
        memcpy(path, rec->path, rec->path_len);
        path[rec->path_len] = '\0';
        int fd = file_for(ops, &files, &nfiles, path, err);
        if (fd < 0) {
            rc = fd;
            break;
        }
        bool large = rec->len > REPLAY_RUN_MAX / 2; /* written straight from the record */
        bool extends = !large && run_len > 0 && fd == run_fd && rec->offset == run_off + run_len &&
                       run_len + rec->len <= REPLAY_RUN_MAX;
        if (!extends && run_len > 0) {
            rc = write_all(ops, run_fd, run, run_len, run_off, run_path, err);
            run_len = 0;
            if (rc < 0)
                break;
        }
        if (large) {
            rc = write_all(ops, fd, rec->data, rec->len, rec->offset, path, err);
        } else {
            if (!run && !(run = malloc(REPLAY_RUN_MAX))) {
                rc = rt_err_set(err, ENOMEM, "out of memory");
                break;
            }
            if (run_len == 0) {
                run_fd = fd;
                run_off = rec->offset;
                /* file_for keeps the path for the file's lifetime */
                for (size_t f = 0; f < nfiles; f++)
                    if (files[f].fd == fd)
                        run_path = files[f].path;
            }
            memcpy(run + run_len, rec->data, rec->len);
            run_len += rec->len;
        }
        st->records++;
        st->bytes += rec->len;
    }
    if (rc == 0 && run_len > 0)
        rc = write_all(ops, run_fd, run, run_len, run_off, run_path, err);
    free(run);
    for (size_t i = 0; i < nfiles; i++) {
        if (rc == 0 && ops->fsync(files[i].fd) != 0)
            rc = rt_err_sys(err, "replay: fsync of %s", files[i].path);
        if (rc == 0)
            rc = fsync_dir_of(ops, files[i].path, err);
        ops->close(files[i].fd);
        free(files[i].path);
    }
    free(files);
    st->files = nfiles;
    return rc;
}
