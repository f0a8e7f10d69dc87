/* ncl/client.h: the near-compute log client: a log replicated into the memory of peer nodes
 * (ncl-server), committed when a majority holds it. Used by libsplitft and the splitft
 * command.
 *
 * A session (ncl_open) belongs to one client id and one epoch: opening fences every older
 * incarnation of the id on a majority of the peers. Records get consecutive sequence
 * numbers; ncl_commit returns once a majority of peers hold every record up to the last
 * one committed (group commit: concurrent committers share round trips). Peers that drop
 * out are reconnected in the background and caught up with every untrimmed record before
 * their acknowledgements count again.
 *
 * Recovery (ncl_recover_begin/finish) fences the old incarnation, reads the records of a
 * majority and selects the longest gap-free prefix: every record whose commit was
 * acknowledged is in it. After replaying them durably, finish trims them.
 */
#ifndef NCL_H
#define NCL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rt/env.h"
#include "rt/err.h"
#include "ncl/proto.h"
#include "ncl/transport.h"
#include "rt/stats.h"

typedef struct ncl_config {
    rt_hostports peers;
    char id[NCL_ID_MAX + 1];
    uint64_t timeout_ns; /* a commit without a majority by then fails (SPLITFT_TIMEOUT_MS) */
    const ncl_transport *transport;
    uint32_t max_frame; /* largest frame sent; at most the peers' --max-frame */
    int connect_timeout_ms;
    uint64_t spin_ns; /* a committer busy-polls for replies this long before sleeping */
} ncl_config;

/* Defaults: no peers, empty id, timeout 1 s, tcp, 8 MiB frames, connect timeout 1 s,
 * spin 100 us. */
void ncl_config_default(ncl_config *cfg);
/* SPLITFT_PEERS (required), SPLITFT_ID (required unless id_default), SPLITFT_TIMEOUT_MS,
 * SPLITFT_TRANSPORT, SPLITFT_SPIN_US. A bad value: -EINVAL, err naming the variable. */
int ncl_config_from_env(ncl_config *cfg, const char *id_default, rt_err *err);

/* Majority of n peers: n/2 + 1. */
static inline int ncl_majority(int n) { return n / 2 + 1; }

typedef struct ncl_client ncl_client;

enum {
    NCL_OPEN_DISCARD = 1, /* drop records an earlier incarnation left (tools, benchmarks) */
};

/* Open a session. Fails with -EHOSTUNREACH when no majority answers, -ENOTEMPTY when the
 * peers still hold records of an earlier incarnation that were never recovered (unless
 * NCL_OPEN_DISCARD), -ESTALE when a newer incarnation fenced this one meanwhile. */
ncl_client *ncl_open(const ncl_config *cfg, unsigned flags, rt_err *err);
/* Stop the session. Untrimmed records stay with the peers (for recovery). */
void ncl_close(ncl_client *c);

typedef struct ncl_write {
    uint64_t dev, ino, offset; /* file identity and where the bytes go */
    const char *path;          /* the file's path, for replay */
    const void *data;
    uint32_t len;
} ncl_write;

/* Largest data length of one record for a path of path_len bytes. */
uint32_t ncl_max_record_data(const ncl_client *c, size_t path_len);

/* Append n records (copied) and wait until a majority holds them. 0 and *last_seq, or:
 * -ETIMEDOUT no majority within the timeout (err says how many peers acknowledged),
 * -ENOSPC too many peers are full, -ESTALE fenced by a newer incarnation, -EINVAL a record
 * too big. A failed commit may still reach the peers later; it is never reported done. */
int ncl_commit(ncl_client *c, const ncl_write *w, size_t n, uint64_t *last_seq, rt_err *err);

/* Drop every record below new_start, on the peers too; returns once a majority did. */
int ncl_trim(ncl_client *c, uint64_t new_start, rt_err *err);
/* Tombstone the records of (dev, ino) below `below` (a file made durable otherwise, or
 * unlinked); returns once a majority did. */
int ncl_trim_file(ncl_client *c, uint64_t dev, uint64_t ino, uint64_t below, rt_err *err);

/* The next sequence number to be assigned, and the bytes the client holds for untrimmed
 * records (for a high-water mark). */
uint64_t ncl_next_seq(ncl_client *c);
uint64_t ncl_client_log_bytes(ncl_client *c);

typedef struct ncl_peer_info {
    char addr[RT_HOST_MAX + 8];
    const char *state; /* "down", "syncing", "live" */
    uint64_t acked;    /* the peer's next seq as last acknowledged */
    uint64_t reconnects, catch_ups, full_replies;
    uint64_t used, capacity; /* the peer's memory as of its last report */
} ncl_peer_info;

typedef struct ncl_client_stats {
    uint64_t epoch, start, next, committed;
    uint64_t commits, commit_failures, records, bytes, frames_sent, trims;
    int npeers, live_peers;
    ncl_peer_info peers[RT_HOSTS_MAX];
} ncl_client_stats;

void ncl_client_stats_get(ncl_client *c, ncl_client_stats *s);
/* Commit latency histogram (ns), live. */
const rt_hist *ncl_commit_hist(ncl_client *c);
/* Write the stats as members of the current JSON object. */
void ncl_client_stats_json(ncl_client *c, rt_json *j);

/* ---- recovery -------------------------------------------------------------------- */

typedef struct ncl_recovery {
    uint64_t epoch;  /* the new epoch that fenced the old incarnation */
    int answered;    /* peers that answered the fence */
    int owner_views; /* peers read: a majority of those whose log has the newest owner (or
                        all of them, when fewer answered); the prefix comes from their union */
    uint64_t start;  /* the prefix is [start, next) */
    uint64_t next;
    size_t nrecs;        /* WRITE records of the prefix, in seq order */
    ncl_rec *recs;       /* pointing into buffers owned by the recovery */
    uint64_t tombstones; /* records of the prefix that were trimmed by file */
    uint64_t beyond_gap; /* records after the first gap: never acknowledged, ignored */
    uint64_t conflicts;  /* same seq, different bytes on two peers (should be 0) */
    void *priv;
} ncl_recovery;

/* Fence, read a majority of the newest owner's logs, select the prefix. -EHOSTUNREACH
 * without a majority. */
int ncl_recover_begin(const ncl_config *cfg, ncl_recovery **out, rt_err *err);
/* Trim everything on the peers (they then hold nothing for this id). Call after the
 * records were replayed durably. */
int ncl_recover_finish(ncl_recovery *r, rt_err *err);
void ncl_recovery_free(ncl_recovery *r);

/* Write the recovered records back into their files (creating files and missing parent
 * directories), in seq order, then fsync every file written and its directory. Idempotent:
 * running it twice leaves the same bytes. The calls go through `ops` (NULL: libc), so an
 * interposer can hand in the real functions. */
typedef struct ncl_replay_ops {
    int (*open)(const char *path, int flags, ...);
    ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
    int (*fsync)(int fd);
    int (*close)(int fd);
} ncl_replay_ops;

typedef struct ncl_replay_stats {
    uint64_t records, bytes, files;
} ncl_replay_stats;

int ncl_replay(const ncl_recovery *r, const ncl_replay_ops *ops, ncl_replay_stats *st, rt_err *err);

/* One peer's view of a client's log, for prefix selection. */
typedef struct ncl_view {
    uint64_t start, next;
    const ncl_rec *recs; /* every record of [start, next), in seq order */
} ncl_view;

typedef struct ncl_prefix {
    uint64_t start, next;
    uint64_t beyond_gap, conflicts;
} ncl_prefix;

/* The longest gap-free prefix of the union of views: start = the largest start (records
 * below it were trimmed somewhere, so made durable), then every seq held by some view.
 * pick(seq) chooses the record for each seq: a tombstone on any view wins. Calls emit for
 * each seq of the prefix in order (may be NULL). */
void ncl_select_prefix(const ncl_view *views, int n, ncl_prefix *out,
                       void (*emit)(const ncl_rec *r, void *arg), void *arg);

/* ---- one-shot requests, for tools ---------------------------------------------------- */

/* Send one request on a connected stream and wait for its reply (the reply payload is
 * malloc'd into *reply). Returns the reply type or -errno. */
int ncl_rpc(const ncl_transport *t, ncl_stream *s, uint8_t type, uint8_t flags, const void *payload,
            size_t len, int timeout_ms, unsigned char **reply, size_t *reply_len, rt_err *err);

#endif
