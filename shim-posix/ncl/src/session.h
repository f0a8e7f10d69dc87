/* session.h: the near-compute-log client session: replicated log, group commit,
 * background catch-up of peers. Its state, shared by io.c (the log, frames and queues,
 * peers, the quorum, replies, the I/O and connector threads), open.c (open, fencing,
 * close) and commit.c (commit, trims, statistics).
 *
 * Threads. Committers append records under the session mutex, then push frames to every
 * peer directly from their own thread (no hop through another thread on the send path).
 * The first waiting committer then reads the replies itself (busy-polling briefly when it
 * is alone, see wait_quorum); the others sleep on a condition variable and are woken when
 * a majority holds their records. The I/O thread reads the replies when no committer does,
 * sends what the window held back, starts catch-ups and drops silent peers. The connector
 * thread (re)connects peers that are down, so a peer that does not answer never delays
 * the others; a reconnected peer is caught up before its acknowledgements count.
 *
 * Epochs. Opening claims a new epoch on a majority (a peer accepts a claim only above its
 * current epoch; the low bits of an epoch are random, so two incarnations starting at once
 * do not pick the same one); reconnects rejoin with the session's epoch. A peer takes
 * changes only from the newest connection of the newest epoch.
 *
 * Why catch-up goes through a shadow log on the peer. A reconnected peer missed records
 * and trims while it was away, so its log must be replaced by ours. Dropping its log first
 * (plain RESET) would be unsafe: if two peers were reset one after the other, a record
 * acknowledged earlier could be held by a single peer only, and a recovery that reads
 * another majority would miss it; the same holds for a tombstone that makes a record
 * obsolete. So the peer builds a shadow from our log (RESET with NCL_RESET_SHADOW, the
 * records, SYNC_DONE) while it keeps serving its old log, and swaps only when the shadow is
 * complete. Its acknowledgements count from then on.
 *
 * Invariants (checked by the tests): `committed` only grows, and seq < committed means a
 * majority of live peers acknowledged seq contiguously from our start; a peer counts toward
 * a majority only in state LIVE; every trim reaches a majority before ncl_trim returns.
 */
#ifndef NCL_SESSION_H
#define NCL_SESSION_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"
#include "rt/stats.h"

#define BATCH_MAX              (1u << 20)     /* bytes of records in one APPEND frame */
#define WINDOW_BYTES           (8u << 20)     /* bytes in flight to one peer */
#define LIVE_APPENDS_IN_FLIGHT 2              /* APPEND frames in flight to a live peer */
#define FULL_BACKOFF_NS        (20 * RT_MS)   /* pause after a FULL reply */
#define RETRY_MIN_NS           (50 * RT_MS)   /* reconnect back-off, doubling ... */
#define RETRY_MAX_NS           (1000 * RT_MS) /* ... up to this */
#define APPEND_HDR             20             /* epoch, first seq, count */

/* ---- the log ----------------------------------------------------------------------- */

typedef struct lrec {
    unsigned char *enc; /* the encoded record, as sent */
    uint32_t size;
} lrec;

typedef struct ctl_op {
    uint64_t id;
    uint8_t type; /* NCL_TRIM or NCL_TRIM_FILE */
    uint64_t a, dev, ino;
} ctl_op;

/* ---- frames and queues -------------------------------------------------------------- */

typedef struct frame {
    unsigned char *buf;
    size_t len;
} frame;

typedef struct pend {
    uint64_t req, gen, mark;
    uint64_t sent_ns; /* when queued: a peer silent for longer than the timeout is down */
    size_t bytes;
    uint8_t type;
} pend;

enum { P_DOWN, P_SYNC, P_LIVE };
extern const char *const cl_state_names[3];

typedef struct peer {
    rt_hostport addr;
    ncl_stream *s;
    ncl_stream *handoff; /* connected by the connector, not yet taken by the I/O thread */
    int state;
    bool connecting, sync_done_queued, full;
    uint64_t acked;      /* the peer's next as acknowledged (counts in P_LIVE) */
    uint64_t sent;       /* next seq to send */
    uint64_t sync_until; /* P_SYNC: SYNC_DONE after the records below this */
    uint64_t sync_mark;  /* ctl ops covered by the sync */
    uint64_t ctl_sent, ctl_acked;
    uint64_t gen; /* replies to requests of an older generation are stale */
    uint64_t inflight_bytes;
    int appends_in_flight;
    uint64_t retry_at, backoff, send_after;
    frame *outq;
    size_t out_n, out_cap, out_off; /* out_off: bytes of outq[0] already sent */
    pend *pq;
    size_t pq_head, pq_n, pq_cap;
    unsigned char *in;
    size_t in_len, in_cap;
    uint64_t used, capacity;
    uint64_t reconnects, catch_ups, full_replies;
    char last_error[160];
} peer;

struct ncl_client {
    ncl_config cfg;
    uint64_t epoch;
    int npeers, majority;
    peer peers[RT_HOSTS_MAX];
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* commits and trims wait here */
    pthread_cond_t cv_conn; /* the connector waits here */
    lrec *ring;
    size_t head, cap;
    uint64_t start, next, committed, log_bytes;
    ctl_op *ops;
    size_t ops_n, ops_cap;
    uint64_t ctl_next, ctl_done; /* ops are numbered 1..ctl_next; ctl_done reached a majority */
    uint64_t req;
    int wake_fd;
    int reader_fd; /* wakes a committer that reads replies itself (see wait_quorum) */
    bool stop, fenced;
    bool reader;    /* a committer is reading the replies itself (wait_quorum) */
    int spin_score; /* how well busy-polling has paid lately (0..16) */
    unsigned spin_probe;
    int waiters; /* committers sleeping on cv */
    uint64_t fenced_by;
    pthread_t io, conn;
    rt_hist lat;
    uint64_t commits, commit_failures, records, bytes, frames_sent, trims;
};

/* ---- io.c ---------------------------------------------------------------------------- */

lrec *cl_rec_at(ncl_client *c, uint64_t seq);
/* Room for `more` records in the ring (session mutex held); -ENOMEM. */
int cl_log_grow(ncl_client *c, size_t more);
void cl_log_drop_front(ncl_client *c);
void cl_peer_reset_io(peer *p);
/* Send what can be sent to every peer now (session mutex held). */
void cl_pump(ncl_client *c);
void cl_poll_round(ncl_client *c, bool peers_too, int wake, uint64_t wait_ns, uint64_t spin_ns);
int cl_full_peers(ncl_client *c);
void cl_wake_io(ncl_client *c);
void *cl_io_main(void *arg);
void *cl_connector_main(void *arg);

static inline bool commit_done(ncl_client *c, uint64_t seq) { return c->committed > seq; }
static inline bool ctl_is_done(ncl_client *c, uint64_t id) { return c->ctl_done >= id; }

#endif
