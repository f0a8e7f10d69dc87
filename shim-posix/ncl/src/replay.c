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

int ncl_replay(const ncl_recovery *r, const ncl_replay_ops *ops, ncl_replay_stats *st, rt_err *err)
{
    if (!ops)
        ops = &libc_ops;
    memset(st, 0, sizeof *st);
    open_file *files = NULL;
    size_t nfiles = 0;
    int rc = 0;
    for (size_t i = 0; i < r->nrecs && rc == 0; i++) {
        const ncl_rec *rec = &r->recs[i];
        char path[NCL_PATH_MAX + 1];
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
        size_t done = 0;
        while (done < rec->len) {
            ssize_t w = ops->pwrite(fd, (const char *)rec->data + done, rec->len - done,
                                    (off_t)(rec->offset + done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                rc = rt_err_sys(err, "replay: write of %u bytes at %llu in %s", rec->len,
                                (unsigned long long)rec->offset, path);
                break;
            }
            done += (size_t)w;
        }
        st->records++;
        st->bytes += rec->len;
    }
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
