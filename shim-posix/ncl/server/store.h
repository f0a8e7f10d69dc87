/* store.h: ncl-server's in-memory logs, one per client id, bounded by a capacity.
 *
 * A log holds the records with seq in [start, next), contiguous, kept as the exact bytes
 * that arrived (CRC included) so a READ returns what was appended. Every operation that
 * changes a log is checked against its epoch first (fencing).
 *
 * While a client catches this peer up after a reconnect, the log also has a shadow: the
 * client's current log re-sent from its start. Appends go to the shadow, trims apply to
 * both, READs see the live log; SYNC_DONE swaps the shadow in. So a peer never drops what
 * it holds before it holds the client's newer state in full (see the client's notes on
 * why dropping first could lose a committed record or a tombstone). The shadow shares the
 * records it has in common with the live log, so a catch-up costs little extra memory.
 *
 * Memory: every record (with NCL_REC_OVERHEAD) and every ring slot is charged to the
 * store; an append that would pass the capacity is refused whole (FULL).
 *
 * The store knows nothing of sockets: the server decodes frames and calls these.
 */
#ifndef NCL_STORE_H
#define NCL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt/err.h"
#include "ncl/proto.h"

#define NCL_REC_OVERHEAD 32  /* bytes charged per record beyond its encoding (header, malloc) */
#define NCL_LOG_OVERHEAD 256 /* bytes charged per client log */

#define NCL_SEQ_LIMIT (1ULL << 62) /* sequence numbers stay below this */

/* A stored record: a reference count (a shadow shares the live log's identical records,
 * so a catch-up does not need twice the memory), then the encoded bytes. */
typedef struct ncl_blob {
    uint32_t refs, size;
    unsigned char enc[];
} ncl_blob;

/* A contiguous run of records [start, next). */
typedef struct ncl_recs {
    uint64_t start, next;
    ncl_blob **ring; /* ring[(head + seq - start) % cap] */
    size_t head, cap;
    uint64_t bytes; /* bytes of the records referenced (shared ones count in both runs) */
    uint64_t owner; /* epoch of the RESET that started this run */
} ncl_recs;

typedef struct ncl_log {
    char id[NCL_ID_MAX + 1];
    uint64_t epoch;
    uint64_t gen; /* bumped by each HELLO that claims or rejoins: the newest connection */
    ncl_recs live;
    ncl_recs *shadow; /* non-NULL during a catch-up */
} ncl_log;

typedef struct ncl_store {
    uint64_t capacity, used;
    ncl_log **logs;
    size_t nlogs, caplogs;
    /* counters for STATS */
    uint64_t appends, records_in, full, fenced, gaps, trims, reads, syncs;
} ncl_store;

void ncl_store_init(ncl_store *st, uint64_t capacity);
void ncl_store_free(ncl_store *st);

/* The log of a client, created (empty, epoch 0) when `create` and capacity allows.
 * NULL if absent, or when creating would pass the capacity. */
ncl_log *ncl_store_log(ncl_store *st, const char *id, size_t len, bool create);

/* HELLO, by its flags: NCL_HELLO_QUERY reports only. NCL_HELLO_REJOIN (a session
 * reconnecting) needs epoch >= the log's. Otherwise it is a claim by a new incarnation and
 * needs epoch > the log's, so two incarnations never share an epoch. A claim or rejoin that
 * passes sets the log's epoch (dropping a shadow left by another epoch) and bumps its gen:
 * requests that change the log are then accepted only from the newest connection. Returns
 * NCL_R_OK or NCL_R_FENCED. */
int ncl_store_hello(ncl_store *st, ncl_log *lg, uint64_t epoch, unsigned flags);

/* APPEND `count` records encoded back to back in [recs, recs+len), the first with seq
 * first_seq, to the shadow if there is one, else to the live log. All-or-nothing. Returns
 * NCL_R_OK (*next = that log's next), NCL_R_FENCED, NCL_R_GAP (first_seq != next; *next
 * tells where), NCL_R_FULL, or -EPROTO when the records are malformed (bad CRC, wrong seq
 * order, count mismatch): the caller closes the connection. */
int ncl_store_append(ncl_store *st, ncl_log *lg, uint64_t epoch, uint64_t first_seq, uint32_t count,
                     const unsigned char *recs, size_t len, uint64_t *next, rt_err *err);

/* TRIM: drop records below new_start (new_start past next moves next too). */
int ncl_store_trim(ncl_store *st, ncl_log *lg, uint64_t epoch, uint64_t new_start);
/* TRIM_FILE: replace records of (dev, ino) with seq < below by tombstones; leading
 * tombstones are then trimmed. *count = records tombstoned (live log). */
int ncl_store_trim_file(ncl_store *st, ncl_log *lg, uint64_t epoch, uint64_t dev, uint64_t ino,
                        uint64_t below, uint64_t *count);
/* RESET: drop everything, start = next = start. With shadow: start a shadow there instead
 * (replacing any earlier shadow); NCL_R_FULL when even an empty shadow does not fit. */
int ncl_store_reset(ncl_store *st, ncl_log *lg, uint64_t epoch, uint64_t start, bool shadow);
/* SYNC_DONE: the shadow becomes the live log, provided it holds everything below `expect`
 * (the client's catch-up target); else NCL_R_GAP and nothing changes. */
int ncl_store_sync_done(ncl_store *st, ncl_log *lg, uint64_t epoch, uint64_t expect);

/* The encoded record with this seq in the live log, or NULL when not held. */
const unsigned char *ncl_log_get(const ncl_log *lg, uint64_t seq, size_t *size);
/* Bytes charged for this log, shadow included. */
uint64_t ncl_log_bytes(const ncl_log *lg);

#endif
