/* ncl/proto.h: the near-compute log's wire format, shared by ncl-server and the client.
 *
 * Every message is a frame: a 24-byte header, then `len` payload bytes. All integers are
 * little-endian. The CRC-32C covers the header (with its crc field zero) and the payload.
 *
 *   offset size field
 *        0    4 magic   "NCL1" (0x314c434e)
 *        4    1 type    NCL_HELLO ... (requests), NCL_R_* (replies, high bit set)
 *        5    1 flags   per type
 *        6    2 zero
 *        8    4 len     payload bytes, at most the receiver's maximum frame size
 *       12    4 crc
 *       16    8 req     request id, echoed in the reply
 *
 * Requests and their payloads (replies: NCL_R_OK unless said otherwise):
 *   HELLO     u64 epoch, u8 flags (NCL_HELLO_QUERY, NCL_HELLO_REJOIN), u8 id_len, id bytes
 *             without flags a claim by a new incarnation: epoch must exceed the current one
 *             -> OK or FENCED: u64 epoch, u64 start, u64 next, u64 used, u64 capacity,
 *                u64 owner (the epoch whose RESET made the log: see below)
 *   APPEND    u64 epoch, u64 first_seq, u32 count, count records
 *             -> OK: u64 next | FENCED: u64 epoch | GAP: u64 next
 *                | FULL: u64 next, u64 used, u64 capacity
 *   TRIM      u64 epoch, u64 new_start          -> OK: u64 start, u64 next
 *   TRIM_FILE u64 epoch, u64 dev, u64 ino, u64 below_seq -> OK: u64 tombstoned
 *   RESET     u64 epoch, u64 start              -> OK: u64 start, u64 next
 *             flags NCL_RESET_SHADOW: build a shadow log from `start` instead, fed by the
 *             APPENDs that follow, while the live log stays as it was for READs; SYNC_DONE
 *             then replaces the live log by the shadow. A peer being caught up never holds
 *             less than before.
 *   SYNC_DONE u64 epoch, u64 expect             -> OK: u64 start, u64 next | GAP: the shadow
 *             does not yet hold everything below expect (nothing changes)
 *   READ      u64 from_seq, u32 max_bytes       -> OK: u64 start, u64 next, u64 owner,
 *                                                      u32 count, records
 *   STATS     (empty)                           -> OK: JSON text
 * A request from an older epoch than the client's current one gets FENCED: u64 epoch.
 * Every request but HELLO and STATS needs a HELLO on the connection first, and those that
 * change the log are taken only from the connection of the client's latest claim or rejoin
 * (an older connection of the same client is closed): frames of a connection the client
 * gave up on can never land after its new one started a catch-up.
 *
 * The owner of a log is the epoch of the RESET that started it (a session's open, a
 * catch-up, a recovery's final trim). Each incarnation's RESET reaches a majority, so a
 * recovery trusts only the logs of the highest owner it reads: a peer that missed newer
 * incarnations may still hold records of an old one at the same sequence numbers.
 *
 * A record (44-byte header, then path, then data):
 *        0 8 seq   8 8 dev   16 8 ino   24 8 offset   32 4 len   36 2 path_len
 *       38 1 kind (NCL_REC_WRITE, NCL_REC_TOMBSTONE)   39 1 flags   40 4 crc
 * The record CRC covers its header (crc zero), path and data: records stay checked
 * end to end, from the client's memory through the peers' and back at recovery.
 */
#ifndef RT_NCL_PROTO_H
#define RT_NCL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "rt/err.h"

#define NCL_MAGIC             0x314c434eu
#define NCL_HDR_SIZE          24
#define NCL_REC_HDR_SIZE      44
#define NCL_ID_MAX            64         /* bytes of a client id */
#define NCL_FRAME_MAX_DEFAULT (8u << 20) /* default hard maximum payload */
#define NCL_PATH_MAX          4095

enum ncl_type {
    NCL_HELLO = 1,
    NCL_APPEND = 2,
    NCL_TRIM = 3,
    NCL_TRIM_FILE = 4,
    NCL_RESET = 5,
    NCL_READ = 6,
    NCL_STATS = 7,
    NCL_SYNC_DONE = 8,
    NCL_R_OK = 0x81,
    NCL_R_FENCED = 0x82,
    NCL_R_GAP = 0x83,
    NCL_R_FULL = 0x84,
};

#define NCL_HELLO_QUERY  1 /* learn the current epoch without raising it */
#define NCL_HELLO_REJOIN 2 /* a session reconnecting: its epoch may equal the current one */
#define NCL_RESET_SHADOW 1 /* RESET flag: catch-up into a shadow log */

enum ncl_rec_kind { NCL_REC_WRITE = 1, NCL_REC_TOMBSTONE = 2 };

typedef struct ncl_hdr {
    uint8_t type, flags;
    uint32_t len, crc;
    uint64_t req;
} ncl_hdr;

/* A record; path and data point into someone else's memory. */
typedef struct ncl_rec {
    uint64_t seq, dev, ino, offset;
    uint32_t len;
    uint16_t path_len;
    uint8_t kind, flags;
    uint32_t crc; /* filled by encode and decode */
    const char *path;
    const void *data;
} ncl_rec;

const char *ncl_type_name(int type);

/* Encode a header for a payload given as iovecs (CRC computed here). */
void ncl_hdr_encode(unsigned char out[NCL_HDR_SIZE], uint8_t type, uint8_t flags, uint64_t req,
                    const struct iovec *iov, int iovcnt);
/* Decode and validate a header: magic, known type, zero reserved bytes, len <= max_len.
 * Returns 0 or -EPROTO / -EMSGSIZE with err->msg. */
int ncl_hdr_decode(const unsigned char in[NCL_HDR_SIZE], uint32_t max_len, ncl_hdr *h, rt_err *err);
/* Check the frame CRC once the payload is there: 0 or -EBADMSG. */
int ncl_frame_verify(const unsigned char hdr[NCL_HDR_SIZE], const void *payload, uint32_t len,
                     rt_err *err);

size_t ncl_rec_size(const ncl_rec *r);
/* Encode r into out (ncl_rec_size(r) bytes), computing r->crc. */
void ncl_rec_encode(unsigned char *out, ncl_rec *r);
/* Decode one record from [in, in+avail): bounds, kind and CRC checked. *used = its size. */
int ncl_rec_decode(const unsigned char *in, size_t avail, ncl_rec *r, size_t *used, rt_err *err);

/* A bounds-checked reader over a payload: each get fails (returns false) once past the end,
 * and stays failed. */
typedef struct ncl_cur {
    const unsigned char *p, *end;
    bool bad;
} ncl_cur;

static inline ncl_cur ncl_cur_make(const void *p, size_t len)
{
    ncl_cur c = {(const unsigned char *)p, (const unsigned char *)p + len, false};
    return c;
}
bool ncl_get_u8(ncl_cur *c, uint8_t *v);
bool ncl_get_u32(ncl_cur *c, uint32_t *v);
bool ncl_get_u64(ncl_cur *c, uint64_t *v);
bool ncl_get_bytes(ncl_cur *c, size_t n, const unsigned char **v);

/* Little-endian stores, returning the position after. */
unsigned char *ncl_put_u8(unsigned char *p, uint8_t v);
unsigned char *ncl_put_u16(unsigned char *p, uint16_t v);
unsigned char *ncl_put_u32(unsigned char *p, uint32_t v);
unsigned char *ncl_put_u64(unsigned char *p, uint64_t v);

/* A client id is 1..64 bytes of [A-Za-z0-9._-]. */
bool ncl_id_valid(const char *id, size_t len);

#endif
