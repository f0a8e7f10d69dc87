/* rdma_ring.c: ring arithmetic of the rdma NCL transport (no verbs): sender planning with
 * wrap-around, receiver copy-out and its publish rule, immediates, the connection hello.
 * The protocol and its invariants are described in ncl_rdma_ring.h and runtime/RDMA.md. */
#include "rdma_ring.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

bool ncl_ring_size_ok(size_t size)
{
    return size >= NCL_RING_MIN_SIZE && size <= NCL_RING_MAX_SIZE && (size & (size - 1)) == 0;
}

/* ---- sender side --------------------------------------------------------------------- */

void ncl_ring_tx_init(ncl_ring_tx *t, uint8_t *stage, size_t size)
{
    memset(t, 0, sizeof *t);
    t->stage = stage;
    t->size = size;
}

size_t ncl_ring_tx_space(const ncl_ring_tx *t)
{
    return t->size - (size_t)(t->produced - t->consumed);
}

size_t ncl_ring_tx_plan(const ncl_ring_tx *t, size_t len, ncl_ring_plan *p)
{
    size_t space = ncl_ring_tx_space(t);
    size_t n = len < space ? len : space;
    size_t off = (size_t)(t->produced & (t->size - 1));
    size_t first = t->size - off < n ? t->size - off : n;
    memset(p, 0, sizeof *p);
    if (first > 0)
        p->w[p->n++] = (ncl_ring_write){off, t->stage + off, first};
    if (n > first)
        p->w[p->n++] = (ncl_ring_write){0, t->stage, n - first};
    p->len = n;
    p->produced_after = t->produced + n;
    return n;
}

/* Copy `len` bytes of the iovec array, starting `skip` bytes in, to dst. */
static void gather(uint8_t *dst, size_t len, const struct iovec *iov, int iovcnt, size_t skip)
{
    for (int i = 0; i < iovcnt && len > 0; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        size_t n = iov[i].iov_len - skip;
        if (n > len)
            n = len;
        memcpy(dst, (const uint8_t *)iov[i].iov_base + skip, n);
        dst += n;
        len -= n;
        skip = 0;
    }
}

size_t ncl_ring_tx_stage(ncl_ring_tx *t, const struct iovec *iov, int iovcnt, ncl_ring_plan *p)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    ncl_ring_tx_plan(t, total, p);
    size_t done = 0;
    for (int k = 0; k < p->n; k++) {
        gather(t->stage + p->w[k].off, p->w[k].len, iov, iovcnt, done);
        done += p->w[k].len;
    }
    return p->len;
}

void ncl_ring_tx_advance(ncl_ring_tx *t, size_t len) { t->produced += len; }

int ncl_ring_tx_on_consumed(ncl_ring_tx *t, uint64_t consumed)
{
    if (consumed < t->consumed || consumed > t->produced)
        return -EPROTO;
    t->consumed = consumed;
    return 0;
}

/* ---- receiver side ------------------------------------------------------------------- */

void ncl_ring_rx_init(ncl_ring_rx *r, const uint8_t *ring, size_t size)
{
    memset(r, 0, sizeof *r);
    r->ring = ring;
    r->size = size;
}

size_t ncl_ring_rx_avail(const ncl_ring_rx *r) { return (size_t)(r->produced - r->consumed); }

size_t ncl_ring_rx_read(ncl_ring_rx *r, void *buf, size_t len)
{
    size_t avail = ncl_ring_rx_avail(r);
    size_t n = len < avail ? len : avail;
    size_t off = (size_t)(r->consumed & (r->size - 1));
    size_t first = r->size - off < n ? r->size - off : n;
    if (first > 0)
        memcpy(buf, r->ring + off, first);
    if (n > first)
        memcpy((uint8_t *)buf + first, r->ring, n - first);
    r->consumed += n;
    return n;
}

int ncl_ring_rx_on_produced(ncl_ring_rx *r, uint64_t produced)
{
    /* The sender may only fill what we handed back: published + size, not consumed + size. */
    if (produced < r->produced || produced - r->published > r->size)
        return -EPROTO;
    r->produced = produced;
    return 0;
}

bool ncl_ring_rx_should_publish(const ncl_ring_rx *r)
{
    if (r->consumed == r->published)
        return false;
    return r->consumed - r->published >= r->size / 4 || r->produced - r->published == r->size;
}

/* ---- immediates ---------------------------------------------------------------------- */

#define IMM_COUNT_MASK 0x7fffffffu

uint32_t ncl_ring_imm(ncl_rdma_word which, uint64_t count)
{
    return (uint32_t)which << 31 | ((uint32_t)count & IMM_COUNT_MASK);
}

ncl_rdma_word ncl_ring_imm_word(uint32_t imm)
{
    return imm >> 31 ? NCL_RDMA_CONSUMED : NCL_RDMA_SEQ;
}

uint64_t ncl_ring_imm_count(uint64_t known, uint32_t imm)
{
    return known + ((imm - (uint32_t)known) & IMM_COUNT_MASK);
}

/* ---- connection hello ---------------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
    v = htobe32(v);
    memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
    v = htobe64(v);
    memcpy(p, &v, 8);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return be32toh(v);
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return be64toh(v);
}

void ncl_rdma_hello_encode(const ncl_rdma_hello *h, uint8_t out[NCL_RDMA_HELLO_LEN])
{
    put32(out, NCL_RDMA_HELLO_MAGIC);
    put32(out + 4, h->ring_size);
    put64(out + 8, h->ring_addr);
    put64(out + 16, h->words_addr);
    put32(out + 24, h->rkey);
    put32(out + 28, 0);
}

int ncl_rdma_hello_decode(const void *data, size_t len, ncl_rdma_hello *h, rt_err *err)
{
    const uint8_t *p = data;
    if (!p || len < NCL_RDMA_HELLO_LEN)
        return rt_err_set(err, EPROTO, "rdma hello: %zu bytes of private data, need %d", len,
                          NCL_RDMA_HELLO_LEN);
    if (get32(p) != NCL_RDMA_HELLO_MAGIC)
        return rt_err_set(err, EPROTO, "rdma hello: bad magic 0x%08x (not an NCL peer?)", get32(p));
    h->ring_size = get32(p + 4);
    h->ring_addr = get64(p + 8);
    h->words_addr = get64(p + 16);
    h->rkey = get32(p + 24);
    if (!ncl_ring_size_ok(h->ring_size))
        return rt_err_set(err, EPROTO,
                          "rdma hello: ring size %u is not a power of two in [%zu, %zu]",
                          h->ring_size, NCL_RING_MIN_SIZE, NCL_RING_MAX_SIZE);
    return 0;
}
