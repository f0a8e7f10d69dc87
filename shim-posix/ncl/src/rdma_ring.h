/* rdma_ring.h: internal to the rdma NCL transport: the ring arithmetic (pure C, no verbs),
 * the verbs-operations table a stream runs over, and the connection hello codec.
 *
 * Each direction of a connection is one ring of `size` bytes (a power of two) registered by
 * the receiver. The sender RDMA-WRITEs bytes into it, then publishes its producer count with
 * WRITE_WITH_IMM into the receiver's sequence word; the receiver hands its consumer count back
 * the same way into the sender's consumed word. Counts are u64 and never wrap; a byte with
 * count c lives at offset c % size. Invariants, for each ring:
 *
 *   consumed <= produced <= consumed + size        (as each side knows them)
 *   the sender only writes offsets of counts in [produced, consumed_known + size)
 *   the receiver only reads offsets of counts in [consumed, produced_known)
 *
 * so writer and reader never touch the same byte at once. The immediate of each publish
 * carries which word it is (top bit) and the low 31 bits of the count; since counts never
 * move by more than `size` <= 2^30 between publishes, the receiver rebuilds the exact u64
 * from its last known value (ncl_ring_imm_count), in completion order, without reading a
 * word the NIC may be writing at that moment.
 *
 * Tests include this header by relative path; it is not part of the runtime's public API.
 */
#ifndef NCL_RDMA_RING_H
#define NCL_RDMA_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "rt/err.h"
#include "ncl/transport.h"

#define NCL_RING_MIN_SIZE ((size_t)64)
#define NCL_RING_MAX_SIZE ((size_t)1 << 30)

/* ---- sender side --------------------------------------------------------------------- */

typedef struct ncl_ring_tx {
    uint8_t *stage;     /* local mirror of the peer's ring: writes are posted from here */
    size_t size;        /* the peer's ring size, a power of two */
    uint64_t produced;  /* bytes written into the peer's ring */
    uint64_t published; /* producer count last handed to the peer (<= produced) */
    uint64_t consumed;  /* the peer's consumer count, as it last published it */
} ncl_ring_tx;

/* One contiguous RDMA WRITE: `len` bytes from local `src` to the peer's ring at `off`. */
typedef struct ncl_ring_write {
    uint64_t off;
    const uint8_t *src;
    size_t len;
} ncl_ring_write;

/* A send: at most two writes (the second when the bytes wrap past the ring's end). */
typedef struct ncl_ring_plan {
    ncl_ring_write w[2];
    int n;
    size_t len;              /* total bytes, w[0].len + w[1].len */
    uint64_t produced_after; /* producer count to publish once the writes are posted */
} ncl_ring_plan;

/* Power of two in [NCL_RING_MIN_SIZE, NCL_RING_MAX_SIZE]. */
bool ncl_ring_size_ok(size_t size);
void ncl_ring_tx_init(ncl_ring_tx *t, uint8_t *stage, size_t size);
/* Bytes the peer's ring can take now: size - (produced - consumed). */
size_t ncl_ring_tx_space(const ncl_ring_tx *t);
/* Plan sending min(len, space) bytes from the producer position; returns that count. */
size_t ncl_ring_tx_plan(const ncl_ring_tx *t, size_t len, ncl_ring_plan *p);
/* Copy what fits of iov into the stage at the producer position and plan its writes;
 * returns the bytes staged (p->len). Does not advance `produced`. */
size_t ncl_ring_tx_stage(ncl_ring_tx *t, const struct iovec *iov, int iovcnt, ncl_ring_plan *p);
/* The first `len` planned bytes are posted: produced += len. */
void ncl_ring_tx_advance(ncl_ring_tx *t, size_t len);
/* The peer published consumer count `consumed`: 0, or -EPROTO if it goes backwards or past
 * what was produced. */
int ncl_ring_tx_on_consumed(ncl_ring_tx *t, uint64_t consumed);

/* ---- receiver side ------------------------------------------------------------------- */

typedef struct ncl_ring_rx {
    const uint8_t *ring; /* local registered ring the peer writes into */
    size_t size;
    uint64_t produced;  /* the peer's producer count, as it last published it */
    uint64_t consumed;  /* bytes handed to the application */
    uint64_t published; /* consumer count last handed back to the peer (<= consumed) */
} ncl_ring_rx;

void ncl_ring_rx_init(ncl_ring_rx *r, const uint8_t *ring, size_t size);
size_t ncl_ring_rx_avail(const ncl_ring_rx *r);
/* Copy up to len available bytes out (wrapping), consumed += that; returns it. */
size_t ncl_ring_rx_read(ncl_ring_rx *r, void *buf, size_t len);
/* The peer published producer count `produced`: 0, or -EPROTO if it goes backwards or
 * claims more than the ring holds. */
int ncl_ring_rx_on_produced(ncl_ring_rx *r, uint64_t produced);
/* Whether to hand the consumer count back now: something new was consumed and either at
 * least a quarter of the ring was freed since the last publish, or the sender saw the ring
 * full at the last publish (it may be blocked; it resumes only on our publish). */
bool ncl_ring_rx_should_publish(const ncl_ring_rx *r);

/* ---- immediates ---------------------------------------------------------------------- */

typedef enum ncl_rdma_word {
    NCL_RDMA_SEQ = 0,      /* the sequence word: the sender's producer count */
    NCL_RDMA_CONSUMED = 1, /* the consumed word: the receiver's consumer count */
} ncl_rdma_word;

uint32_t ncl_ring_imm(ncl_rdma_word which, uint64_t count);
ncl_rdma_word ncl_ring_imm_word(uint32_t imm);
/* The u64 count an immediate stands for, given the last count known for that word. */
uint64_t ncl_ring_imm_count(uint64_t known, uint32_t imm);

/* ---- connection hello: the rdma_cm connect/accept private data ------------------------ */

#define NCL_RDMA_HELLO_MAGIC 0x4e434c52u /* "NCLR" */
#define NCL_RDMA_HELLO_LEN   32

typedef struct ncl_rdma_hello {
    uint64_t ring_addr;  /* the sender's ring: where the peer RDMA-WRITEs bytes */
    uint64_t words_addr; /* two u64: [NCL_RDMA_SEQ], [NCL_RDMA_CONSUMED] */
    uint32_t rkey;       /* covers both */
    uint32_t ring_size;
} ncl_rdma_hello;

/* Big-endian wire form, NCL_RDMA_HELLO_LEN bytes. */
void ncl_rdma_hello_encode(const ncl_rdma_hello *h, uint8_t out[NCL_RDMA_HELLO_LEN]);
/* 0, or -EPROTO (err says why) for short data, a bad magic or an invalid ring size.
 * `len` may exceed NCL_RDMA_HELLO_LEN: transports pad private data. */
int ncl_rdma_hello_decode(const void *data, size_t len, ncl_rdma_hello *h, rt_err *err);

/* ---- the verbs-operations table ------------------------------------------------------ */

/* What a stream needs from RDMA. Two implementations: rdma-core (rdma.c) and the
 * in-memory twin (tests/fixtures/rdma_twin.c). -EAGAIN from write/write_word means "no room
 * now (send queue or peer's receive queue full); a completion will make fd() readable". */
typedef struct ncl_rdma_ops {
    /* RDMA WRITE len bytes from `local` (inside the stage) to the peer's ring at `off`. */
    int (*write)(void *ctx, uint64_t off, const void *local, size_t len);
    /* RDMA WRITE_WITH_IMM of `value` into the peer's word `which`, immediate `imm`. */
    int (*write_word)(void *ctx, ncl_rdma_word which, uint64_t value, uint32_t imm);
    /* Drain notifications: store up to max immediates received, in order; returns how many,
     * or -ECONNRESET once the peer is gone (disconnect, failed completion) and none are left. */
    int (*poll)(void *ctx, uint32_t *imms, int max);
    /* Readable when poll has something to do. */
    int (*fd)(void *ctx);
    /* Release everything (disconnecting from the peer). */
    void (*destroy)(void *ctx);
} ncl_rdma_ops;

/* A stream over `ops`: its receive ring is `rx_ring` and its stage `tx_stage`, both
 * `ring_size` bytes (the peer's ring has the same size) and owned by ctx, which the stream
 * owns from now on (ops->destroy at close, also when this fails). NULL with err on failure. */
ncl_stream *ncl_rdma_stream_over(const ncl_rdma_ops *ops, void *ctx, uint8_t *rx_ring,
                                 uint8_t *tx_stage, size_t ring_size, const char *peer_name,
                                 rt_err *err);

/* Load the two libraries by these names into a scratch table and unload them: 0, or a
 * negative errno with err naming the library or symbol. Tests use it for the failure path. */
int ncl_rdma_lib_check(const char *verbs_so, const char *cm_so, rt_err *err);

#endif
