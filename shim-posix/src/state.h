/* state.h: what the files of libsplitft's logic share: the configuration, the global state,
 * the inode and file records, and the calls one part makes into another.
 *
 * The parts: files.c (the fd and inode tables), sync.c (staging and syncs), barriers.c
 * (metadata barriers and names), flusher.c (the background flusher), start.c (start,
 * recovery, exit and statistics). core.h is what the wrappers call.
 *
 * The one rule: the shim never answers a sync it cannot vouch for. A small sync group
 * (at most SPLITFT_SMALL_MAX bytes, all written through calls we saw, the file's size what
 * those writes explain, no writable shared mapping) is durable once a majority of the NCL
 * peers holds it, so fsync returns then. Everything else gets the real fsync, and after a
 * real fsync the inode's older NCL records are trimmed on a majority before it returns:
 * replaying an obsolete record after a crash could overwrite newer data.
 *
 * Locks: `G.mu` guards the fd and inode tables; each inode has its own mutex, taken after
 * G.mu when both are needed. NCL calls are made holding an inode's mutex (one group at a
 * time per file), never G.mu. Lifetimes: a file holds its inode (`files`); a barrier or the
 * flusher holds an inode by a pin; a call from a wrapper holds its file by a reference.
 */
#ifndef SF_STATE_H
#define SF_STATE_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core.h"
#include "ncl/client.h"
#include "rt/env.h"
#include "rt/log.h"

/* The process exit status when the log may hold acknowledged writes that cannot be
 * recovered now: EX_TEMPFAIL of sysexits.h (try again when the peers are back). */
#define SF_EXIT_UNRECOVERED 75

#define INODE_BUCKETS 1024
#define FDS_MAX       (1 << 18) /* fds above are passed through (documented) */

typedef struct sf_config {
    rt_pathlist dirs;
    ncl_config ncl;
    uint64_t small_max, flush_ns, high_water;
    char stats[PATH_MAX];
} sf_config;

enum {
    FB_NO_SESSION,
    FB_BULK,
    FB_SIZE,
    FB_MMAP,
    FB_APPEND_PWRITE,
    FB_FIRST_SYNC,
    FB_UNLINKED,
    FB_NCL_FAILED,
    FB_MAX
};
extern const char *const sf_fb_names[FB_MAX];

typedef struct sf_stats {
    uint64_t syncs, groups_ncl, records_ncl, bytes_ncl, real_syncs;
    uint64_t fallback[FB_MAX];
    uint64_t barriers, dir_syncs, flushes, flush_fsyncs, trims, trim_failures;
    uint64_t recovered_records, recovered_bytes, recovered_files;
    uint64_t child_syncs;
} sf_stats;

typedef struct sf_ext {
    uint64_t off;
    uint32_t len, cap;
    unsigned char *data;
} sf_ext;

typedef struct sf_inode {
    dev_t dev;
    ino_t ino;
    char path[PATH_MAX];
    pthread_mutex_t mu;
    int files;   /* open file descriptions referring to it */
    int pins;    /* temporary references (flusher, barriers) */
    sf_ext *ext; /* the staged sync group, in write order */
    size_t next_n, ext_cap;
    uint64_t group_bytes;
    bool bulk;     /* the group passed SPLITFT_SMALL_MAX: not staged */
    int untrusted; /* FB_* reason every sync of this inode is real, or -1 */
    bool unlinked;
    bool prior;        /* data from before we tracked it may be unsynced: first sync is real */
    uint64_t expected; /* the size the intercepted writes explain */
    bool ncl_dirty;    /* untrimmed NCL records */
    uint64_t ncl_last;
    int durable_fd; /* the shim's own fd, for the flusher; -1 when none */
    struct sf_inode *hnext;
} sf_inode;

/* An open file description. `refs` (atomic) counts the fds that name it and the calls in
 * flight that use it (sf_get .. sf_put): a close() in another thread never frees a file a
 * write is still using. Released files go to a free list and are never given back to malloc,
 * so sf_get may read `refs` of a file that was closed meanwhile (see files.c). */
struct sf_file {
    sf_inode *ino;
    int refs;
    bool osync, append;
    struct sf_file *free_next;
};

typedef struct sf_global {
    bool on, child;
    sf_config cfg;
    ncl_client *ncl; /* NULL: every sync is the real one */
    pthread_mutex_t mu;
    sf_file **fds;
    int nfds;
    sf_inode *inodes[INODE_BUCKETS];
    pthread_t flusher;
    bool flusher_up, stop, flush_now;
    pthread_cond_t flush_cv;
    rt_logger lg;
    sf_stats st;
    char marker[PATH_MAX];
    const char *mode;
} sf_global;
extern sf_global G;

#define STAT_ADD(field, n) __atomic_fetch_add(&G.st.field, (n), __ATOMIC_RELAXED)

/* ---- files.c ------------------------------------------------------------------------------- */

/* The inode's state (G.mu held); created when `create`. */
sf_inode *sf_inode_get(dev_t dev, ino_t ino, bool create);
/* Drop the staged group (inode locked). */
void sf_group_clear(sf_inode *i);
/* Free the inode when nothing refers to it and it holds nothing (G.mu held). */
void sf_inode_maybe_free(sf_inode *i);
void sf_inode_unpin(sf_inode *i);
/* Is this canonical path under one of SPLITFT_DIRS? */
bool sf_managed_path(const char *p);
/* The canonical path of an open fd (via /proc); false when unknown. */
bool sf_fd_path(int fd, char *out, size_t len);
/* The size of the file behind fd as this kernel knows it, without a round trip to a network
 * file system (statx, AT_STATX_DONT_SYNC); 0, or -1 with errno. */
int sf_local_size(int fd, uint64_t *size);

/* ---- sync.c -------------------------------------------------------------------------------- */

/* Trim the inode's records after a real fsync (inode locked); -1 when it could not. */
int sf_trim_inode(sf_inode *i);
/* The real fsync (inode locked), then the trim; `why` is the FB_* reason. */
int sf_real_sync(sf_inode *i, int fd, bool datasync, int why);

/* ---- barriers.c ---------------------------------------------------------------------------- */

/* An fd to fsync the inode by (inode locked): the shim's own, opened on demand. */
int sf_durable_fd(sf_inode *i);
/* fsync the directory holding `path` when it is managed. */
void sf_sync_parent(const char *path);
/* The absolute form of (dirfd, path) for dirname/realpath. */
void sf_abs_path(int dirfd, const char *path, char *out, size_t len);

/* ---- flusher.c ----------------------------------------------------------------------------- */

/* One pass over every inode with logged data: durable on its file, then trimmed. */
void sf_flush_all(void);
void *sf_flusher_main(void *arg);

/* ---- start.c ------------------------------------------------------------------------------- */

void sf_write_stats(void);

#endif
