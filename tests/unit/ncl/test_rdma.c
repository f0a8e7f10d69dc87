/* test_rdma.c: the rdma NCL transport: ring arithmetic, streams over the in-memory twin
 * of the verbs (bulk transfer, flow control, wake-ups, disconnects, protocol checks), and
 * the real rdma-core backend's behaviour on a machine without an RDMA device.
 *
 * Sections: ring logic | hello codec | streams over the twin | the real backend. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rdma_ring.h"
#include "rdma_twin.h"
#include "ncl/transport.h"

/* The byte at stream position i of a stream seeded `seed`: no short period, so a byte
 * landing at the wrong ring offset or in the wrong order shows. */
static uint8_t pat(uint64_t i, unsigned seed)
{
    uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull;
    return (uint8_t)((h >> 56) ^ (h >> 29) ^ seed);
}

static void fill(uint8_t *buf, size_t n, uint64_t from, unsigned seed)
{
    for (size_t k = 0; k < n; k++)
        buf[k] = pat(from + k, seed);
}

/* Index of the first byte that differs from the pattern, or n. */
static size_t check(const uint8_t *buf, size_t n, uint64_t from, unsigned seed)
{
    for (size_t k = 0; k < n; k++)
        if (buf[k] != pat(from + k, seed))
            return k;
    return n;
}

static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static int readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, timeout_ms);
}

/* ==== ring logic ========================================================================= */

/* Why plan `p` for `len` bytes from tx `t` is wrong, or NULL. */
static const char *plan_fault(const ncl_ring_tx *t, size_t len, const ncl_ring_plan *p)
{
    if (t->size == 0)
        return "no ring";
    size_t space = t->size - (size_t)(t->produced - t->consumed);
    size_t want = len < space ? len : space;
    size_t off = (size_t)(t->produced % t->size);
    if (p->len != want || p->produced_after != t->produced + want)
        return "wrong length";
    if (p->n != (want == 0 ? 0 : off + want > t->size ? 2 : 1))
        return "wrong number of writes";
    size_t sum = 0, expect_off = off;
    for (int k = 0; k < p->n; k++) {
        if (p->w[k].off != expect_off || p->w[k].len == 0 || p->w[k].off + p->w[k].len > t->size)
            return "write misplaced";
        if (p->w[k].src != t->stage + p->w[k].off)
            return "source is not the mirrored stage offset";
        sum += p->w[k].len;
        expect_off = 0;
    }
    return sum == want ? NULL : "writes do not add up";
}

Test(rdma_ring, plan_at_every_wrap_position_and_fill_level)
{
    enum { SZ = 64 };
    uint8_t stage[SZ];
    int cases = 0;
    for (uint64_t start = 0; start < (uint64_t)3 * SZ; start++)
        for (size_t used = 0; used <= SZ; used++)
            for (size_t len = 0; len <= SZ + 3; len++) {
                ncl_ring_tx t;
                ncl_ring_plan p;
                ncl_ring_tx_init(&t, stage, SZ);
                t.consumed = start;
                t.produced = t.published = start + used;
                size_t got = ncl_ring_tx_plan(&t, len, &p);
                const char *why =
                    got != p.len ? "return value != plan length" : plan_fault(&t, len, &p);
                if (why)
                    cr_assert_fail("start %llu used %zu len %zu: %s", (unsigned long long)start,
                                   used, len, why);
                cases++;
            }
    cr_assert_eq(cases, 3 * SZ * (SZ + 1) * (SZ + 4));
}

Test(rdma_ring, plan_near_huge_counts_wraps_the_same)
{
    uint8_t stage[128];
    ncl_ring_tx t;
    ncl_ring_plan p;
    ncl_ring_tx_init(&t, stage, sizeof stage);
    t.consumed = UINT64_MAX / 2 - 100;
    t.produced = t.consumed + 20;
    cr_assert_eq(ncl_ring_tx_plan(&t, 1000, &p), 108);
    cr_assert_null(plan_fault(&t, 1000, &p));
    cr_assert_eq(p.n, 2);
}

Test(rdma_ring, space_accounting)
{
    uint8_t stage[256];
    ncl_ring_tx t;
    ncl_ring_tx_init(&t, stage, sizeof stage);
    cr_assert_eq(ncl_ring_tx_space(&t), 256);
    ncl_ring_tx_advance(&t, 200);
    cr_assert_eq(ncl_ring_tx_space(&t), 56);
    ncl_ring_tx_advance(&t, 56);
    cr_assert_eq(ncl_ring_tx_space(&t), 0);
    ncl_ring_plan p;
    cr_assert_eq(ncl_ring_tx_plan(&t, 10, &p), 0, "a full ring takes nothing");
    cr_assert_eq(p.n, 0);
    cr_assert_eq(ncl_ring_tx_on_consumed(&t, 100), 0);
    cr_assert_eq(ncl_ring_tx_space(&t), 100);
    cr_assert_eq(ncl_ring_tx_on_consumed(&t, 99), -EPROTO, "consumer count went backwards");
    cr_assert_eq(ncl_ring_tx_on_consumed(&t, 257), -EPROTO, "consumed more than produced");
    cr_assert_eq(ncl_ring_tx_space(&t), 100, "a rejected count changes nothing");
    cr_assert_eq(ncl_ring_tx_on_consumed(&t, 256), 0);
    cr_assert_eq(ncl_ring_tx_space(&t), 256);
}

Test(rdma_ring, stage_gathers_iovecs_across_the_wrap)
{
    uint8_t stage[64], src[40];
    memset(stage, 0xee, sizeof stage);
    fill(src, sizeof src, 0, 5);
    ncl_ring_tx t;
    ncl_ring_tx_init(&t, stage, sizeof stage);
    t.consumed = 10;
    t.produced = t.published = 50; /* offset 50, space 24: 14 bytes up to the end, 10 after */
    struct iovec iov[4] = {{src, 3}, {src + 3, 0}, {src + 3, 10}, {src + 13, 27}};
    ncl_ring_plan p;
    cr_assert_eq(ncl_ring_tx_stage(&t, iov, 4, &p), 24);
    cr_assert_eq(p.n, 2);
    cr_assert_eq(memcmp(stage + 50, src, 14), 0);
    cr_assert_eq(memcmp(stage, src + 14, 10), 0);
    cr_assert_eq(stage[10], 0xee, "nothing staged past the free space");
    cr_assert_eq(t.produced, 50, "staging does not advance the producer");
}

Test(rdma_ring, receiver_reads_across_the_wrap)
{
    uint8_t ring[64], out[32];
    for (int i = 0; i < 64; i++)
        ring[i] = (uint8_t)i;
    ncl_ring_rx r;
    ncl_ring_rx_init(&r, ring, sizeof ring);
    r.consumed = r.published = r.produced = 60;
    cr_assert_eq(ncl_ring_rx_avail(&r), 0);
    cr_assert_eq(ncl_ring_rx_read(&r, out, sizeof out), 0);
    cr_assert_eq(ncl_ring_rx_on_produced(&r, 80), 0);
    cr_assert_eq(ncl_ring_rx_read(&r, out, 3), 3);
    cr_assert_eq(out[0], 60);
    cr_assert_eq(out[2], 62);
    cr_assert_eq(ncl_ring_rx_read(&r, out, sizeof out), 17);
    cr_assert_eq(out[0], 63);
    cr_assert_eq(out[1], 0);
    cr_assert_eq(out[16], 15);
    cr_assert_eq(r.consumed, 80);
}

Test(rdma_ring, receiver_rejects_impossible_producer_counts)
{
    uint8_t ring[64] = {0};
    ncl_ring_rx r;
    ncl_ring_rx_init(&r, ring, sizeof ring);
    cr_assert_eq(ncl_ring_rx_on_produced(&r, 65), -EPROTO, "more than the ring holds");
    cr_assert_eq(ncl_ring_rx_on_produced(&r, 64), 0);
    cr_assert_eq(ncl_ring_rx_on_produced(&r, 63), -EPROTO, "producer count went backwards");
    uint8_t out[64];
    ncl_ring_rx_read(&r, out, 30);
    /* 30 consumed but not handed back: the sender cannot have reused that space yet. */
    cr_assert_eq(ncl_ring_rx_on_produced(&r, 70), -EPROTO);
    r.published = r.consumed;
    cr_assert_eq(ncl_ring_rx_on_produced(&r, 94), 0);
    cr_assert_eq(ncl_ring_rx_avail(&r), 64);
}

Test(rdma_ring, consumer_publish_rule)
{
    uint8_t ring[1024] = {0}, out[1024];
    ncl_ring_rx r;
    ncl_ring_rx_init(&r, ring, sizeof ring);
    cr_assert_not(ncl_ring_rx_should_publish(&r), "nothing consumed");
    ncl_ring_rx_on_produced(&r, 500);
    ncl_ring_rx_read(&r, out, 255);
    cr_assert_not(ncl_ring_rx_should_publish(&r), "under a quarter, ring not full");
    ncl_ring_rx_read(&r, out, 1);
    cr_assert(ncl_ring_rx_should_publish(&r), "a quarter of the ring freed");
    r.published = r.consumed;
    ncl_ring_rx_on_produced(&r, r.published + 1024); /* the sender filled the ring */
    cr_assert_not(ncl_ring_rx_should_publish(&r), "full but nothing new consumed");
    ncl_ring_rx_read(&r, out, 1);
    cr_assert(ncl_ring_rx_should_publish(&r), "the sender saw a full ring: one byte frees it");
}

Test(rdma_ring, immediates_rebuild_exact_counts)
{
    const uint64_t known[] = {0,
                              1,
                              0x7ffffffe,
                              0x7fffffff,
                              0x80000000,
                              0xfffffffb,
                              0x10000000000ull + 123,
                              UINT64_MAX / 2,
                              UINT64_MAX - 0x80000000ull};
    const uint64_t delta[] = {0, 1, 63, 4096, 65535, (uint64_t)1 << 30};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        for (size_t j = 0; j < sizeof delta / sizeof delta[0]; j++)
            for (int w = 0; w < 2; w++) {
                uint64_t c = known[i] + delta[j];
                uint32_t imm = ncl_ring_imm((ncl_rdma_word)w, c);
                cr_assert_eq(ncl_ring_imm_word(imm), (ncl_rdma_word)w);
                cr_assert_eq(ncl_ring_imm_count(known[i], imm), c, "known %llx delta %llx",
                             (unsigned long long)known[i], (unsigned long long)delta[j]);
            }
}

Test(rdma_ring, ring_sizes)
{
    cr_assert(ncl_ring_size_ok(64));
    cr_assert(ncl_ring_size_ok((size_t)1 << 20));
    cr_assert(ncl_ring_size_ok((size_t)1 << 30));
    cr_assert_not(ncl_ring_size_ok(0));
    cr_assert_not(ncl_ring_size_ok(32));
    cr_assert_not(ncl_ring_size_ok(96));
    cr_assert_not(ncl_ring_size_ok((size_t)1 << 31));
}

/* ==== hello codec ======================================================================== */

Test(rdma_hello, roundtrip_and_padding)
{
    ncl_rdma_hello h = {.ring_addr = 0x7f0012345000ull,
                        .words_addr = 0x7f0012545000ull,
                        .rkey = 0xdeadbeef,
                        .ring_size = 1u << 20};
    uint8_t wire[56] = {0}; /* IB pads connect private data to 56 bytes */
    ncl_rdma_hello_encode(&h, wire);
    cr_assert_eq(wire[0], 'N', "big-endian magic first");
    ncl_rdma_hello back;
    rt_err e = {0};
    cr_assert_eq(ncl_rdma_hello_decode(wire, sizeof wire, &back, &e), 0, "%s", e.msg);
    cr_assert_eq(back.ring_addr, h.ring_addr);
    cr_assert_eq(back.words_addr, h.words_addr);
    cr_assert_eq(back.rkey, h.rkey);
    cr_assert_eq(back.ring_size, h.ring_size);
}

Test(rdma_hello, rejects_short_foreign_and_bad_sizes)
{
    ncl_rdma_hello h = {.ring_addr = 1, .words_addr = 2, .rkey = 3, .ring_size = 4096}, back;
    uint8_t wire[NCL_RDMA_HELLO_LEN];
    rt_err e = {0};
    ncl_rdma_hello_encode(&h, wire);
    cr_assert_eq(ncl_rdma_hello_decode(wire, NCL_RDMA_HELLO_LEN - 1, &back, &e), -EPROTO);
    cr_assert(strstr(e.msg, "private data"), "%s", e.msg);
    cr_assert_eq(ncl_rdma_hello_decode(NULL, 0, &back, &e), -EPROTO);
    wire[3] ^= 1;
    cr_assert_eq(ncl_rdma_hello_decode(wire, sizeof wire, &back, &e), -EPROTO);
    cr_assert(strstr(e.msg, "magic"), "%s", e.msg);
    h.ring_size = 3000;
    ncl_rdma_hello_encode(&h, wire);
    cr_assert_eq(ncl_rdma_hello_decode(wire, sizeof wire, &back, &e), -EPROTO);
    cr_assert(strstr(e.msg, "ring size 3000"), "%s", e.msg);
}

/* ==== streams over the twin ============================================================== */

typedef struct pair {
    rdma_twin *t;
    ncl_stream *s[2];
} pair;

static const ncl_transport *T(void) { return ncl_transport_get("rdma"); }

static pair pair_new(size_t ring, int depth)
{
    pair p = {.t = rdma_twin_new(ring, depth)};
    rt_err e = {0};
    cr_assert_not_null(p.t);
    for (int i = 0; i < 2; i++) {
        p.s[i] = rdma_twin_stream(p.t, i, &e);
        cr_assert_not_null(p.s[i], "%s", e.msg);
    }
    return p;
}

static void pair_free(pair *p)
{
    for (int i = 0; i < 2; i++)
        if (p->s[i])
            T()->close(p->s[i]);
    rdma_twin_free(p->t);
}

static ssize_t send1(ncl_stream *s, const void *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};
    return T()->sendv(s, &iov, 1);
}

/* One side of a bulk exchange: sends `total` patterned bytes in random pieces while
 * receiving and checking as many, waiting on the fd only when neither moves. */
typedef struct pump {
    ncl_stream *s;
    size_t total;
    unsigned seed_out, seed_in;
    uint32_t rng;
    size_t sent, got;
    char why[160];
} pump;

static bool pump_send(pump *p, uint8_t *buf, size_t cap)
{
    size_t len = 1 + rnd(&p->rng) % cap;
    if (len > p->total - p->sent)
        len = p->total - p->sent;
    fill(buf, len, p->sent, p->seed_out);
    struct iovec iov[4];
    int n = 0;
    for (size_t at = 0; at < len && n < 4; n++) { /* up to 4 pieces, the last takes the rest */
        size_t piece = n == 3 ? len - at : 1 + rnd(&p->rng) % (len - at);
        iov[n] = (struct iovec){buf + at, piece};
        at += piece;
    }
    ssize_t r = T()->sendv(p->s, iov, n);
    if (r > 0)
        p->sent += (size_t)r;
    else if (r != -EAGAIN)
        snprintf(p->why, sizeof p->why, "sendv at %zu: %zd", p->sent, r);
    return r > 0;
}

static bool pump_recv(pump *p, uint8_t *buf, size_t cap)
{
    ssize_t r = T()->recv(p->s, buf, 1 + rnd(&p->rng) % cap);
    if (r > 0) {
        size_t bad = check(buf, (size_t)r, p->got, p->seed_in);
        if (bad < (size_t)r)
            snprintf(p->why, sizeof p->why, "byte %zu received wrong", p->got + bad);
        p->got += (size_t)r;
    } else if (r != -EAGAIN) {
        snprintf(p->why, sizeof p->why, "recv at %zu: %zd", p->got, r);
    }
    return r > 0;
}

static void *pump_run(void *arg)
{
    pump *p = arg;
    static __thread uint8_t out[9000], in[9000];
    int idle = 0;
    while ((p->sent < p->total || p->got < p->total) && !p->why[0] && idle < 30) {
        bool moved = p->sent < p->total && pump_send(p, out, sizeof out);
        moved |= p->got < p->total && pump_recv(p, in, sizeof in);
        if (moved)
            idle = 0;
        else if (readable(T()->fd(p->s), 100) == 0)
            idle++;
    }
    if (!p->why[0] && idle >= 30)
        snprintf(p->why, sizeof p->why, "stalled 3 s: sent %zu got %zu (deadlock?)", p->sent,
                 p->got);
    return NULL;
}

Test(rdma_twin, eight_mib_each_way_through_64k_ring_two_threads, .timeout = 60)
{
    pair p = pair_new(64 << 10, 64);
    pump a = {.s = p.s[0], .total = 8 << 20, .seed_out = 1, .seed_in = 2, .rng = 12345};
    pump b = {.s = p.s[1], .total = 8 << 20, .seed_out = 2, .seed_in = 1, .rng = 777};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, pump_run, &a);
    pthread_create(&tb, NULL, pump_run, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    cr_assert_str_empty(a.why, "side 0: %s", a.why);
    cr_assert_str_empty(b.why, "side 1: %s", b.why);
    cr_assert_eq(a.got, 8u << 20);
    cr_assert_eq(b.got, 8u << 20);
    for (int i = 0; i < 2; i++) {
        rdma_twin_counts c = rdma_twin_counts_of(p.t, i);
        cr_assert_eq(c.bytes, 8u << 20, "every byte written once");
        cr_assert_eq(c.bad_writes, 0);
        cr_assert_gt(c.cons_words, 0, "the receiver handed space back");
    }
    pair_free(&p);
}

Test(rdma_twin, interleaved_random_sizes_two_writes_per_send)
{
    /* One thread, both ends, small ring: every wrap position is hit many times. With a deep
     * receive queue no publish is refused, so each send is at most two writes + a publish. */
    pair p = pair_new(4096, RDMA_TWIN_MAX_DEPTH);
    pump a = {.s = p.s[0], .total = 1 << 20, .seed_out = 3, .seed_in = 4, .rng = 99};
    pump b = {.s = p.s[1], .total = 1 << 20, .seed_out = 4, .seed_in = 3, .rng = 4242};
    uint8_t buf[6000];
    int idle = 0;
    while ((a.got < a.total || b.got < b.total) && !a.why[0] && !b.why[0] && idle < 3) {
        bool moved = false;
        if (a.sent < a.total)
            moved |= pump_send(&a, buf, 6000);
        if (b.got < b.total)
            moved |= pump_recv(&b, buf, 6000);
        if (b.sent < b.total)
            moved |= pump_send(&b, buf, 6000);
        if (a.got < a.total)
            moved |= pump_recv(&a, buf, 6000);
        idle = moved ? 0 : idle + 1;
    }
    cr_assert_str_empty(a.why, "%s", a.why);
    cr_assert_str_empty(b.why, "%s", b.why);
    cr_assert_eq(a.got, 1u << 20, "stalled at %zu", a.got);
    cr_assert_eq(b.got, 1u << 20, "stalled at %zu", b.got);
    for (int i = 0; i < 2; i++) {
        rdma_twin_counts c = rdma_twin_counts_of(p.t, i);
        cr_assert_leq(c.max_writes_between_seq, 2);
        cr_assert_eq(c.refused, 0);
        cr_assert_eq(rdma_twin_word(p.t, !i, NCL_RDMA_SEQ), 1u << 20,
                     "the sequence word holds the producer count");
    }
    pair_free(&p);
}

Test(rdma_twin, sender_blocks_on_a_full_ring_and_resumes)
{
    pair p = pair_new(4096, 64);
    uint8_t out[5000], in[5000];
    fill(out, sizeof out, 0, 9);
    cr_assert_eq(send1(p.s[0], out, 5000), 4096, "partial: exactly the ring");
    cr_assert_eq(send1(p.s[0], out + 4096, 904), -EAGAIN);
    cr_assert_eq(readable(T()->fd(p.s[0]), 0), 0, "nothing to wake the sender yet");
    cr_assert_eq(T()->recv(p.s[1], in, 10), 10);
    cr_assert_eq(check(in, 10, 0, 9), 10);
    cr_assert_eq(rdma_twin_counts_of(p.t, 1).cons_words, 1, "full ring: first byte read frees it");
    cr_assert_eq(readable(T()->fd(p.s[0]), 0), 1, "the publish wakes the sender");
    cr_assert_eq(send1(p.s[0], out + 4096, 904), 10, "exactly the space handed back");
    cr_assert_eq(send1(p.s[0], out + 4106, 894), -EAGAIN);
    size_t got = 10;
    while (got < 5000) {
        if (got == 4106) {
            cr_assert_eq(T()->recv(p.s[1], in, sizeof in), -EAGAIN, "ring drained");
            cr_assert_eq(send1(p.s[0], out + 4106, 894), 894, "the rest fits once drained");
        }
        ssize_t n = T()->recv(p.s[1], in, 1 + got % 1500);
        cr_assert_gt(n, 0, "at %zu: %zd", got, n);
        cr_assert_eq(check(in, (size_t)n, got, 9), (size_t)n, "at %zu", got);
        got += (size_t)n;
    }
    cr_assert_eq(T()->recv(p.s[1], in, sizeof in), -EAGAIN);
    pair_free(&p);
}

Test(rdma_twin, consumer_publishes_after_a_quarter)
{
    pair p = pair_new(4096, 64);
    uint8_t out[1100], in[1100];
    fill(out, sizeof out, 0, 1);
    cr_assert_eq(send1(p.s[0], out, 1000), 1000);
    cr_assert_eq(T()->recv(p.s[1], in, sizeof in), 1000);
    cr_assert_eq(rdma_twin_counts_of(p.t, 1).cons_words, 0, "under a quarter: no publish");
    cr_assert_eq(rdma_twin_word(p.t, 0, NCL_RDMA_CONSUMED), 0);
    cr_assert_eq(send1(p.s[0], out + 1000, 100), 100);
    cr_assert_eq(T()->recv(p.s[1], in, sizeof in), 100);
    cr_assert_eq(rdma_twin_counts_of(p.t, 1).cons_words, 1);
    cr_assert_eq(rdma_twin_word(p.t, 0, NCL_RDMA_CONSUMED), 1100, "the consumed word");
    pair_free(&p);
}

Test(rdma_twin, fd_becomes_readable_on_a_publish)
{
    pair p = pair_new(4096, 64);
    int fd = T()->fd(p.s[1]);
    cr_assert_eq(T()->events(p.s[1], false), POLLIN);
    cr_assert_eq(T()->events(p.s[1], true), POLLIN, "space freed arrives as a completion too");
    cr_assert_eq(readable(fd, 0), 0);
    char c = 0;
    cr_assert_eq(T()->recv(p.s[1], &c, 1), -EAGAIN);
    cr_assert_eq(send1(p.s[0], "x", 1), 1);
    cr_assert_eq(rdma_twin_word(p.t, 1, NCL_RDMA_SEQ), 1);
    cr_assert_eq(readable(fd, 0), 1);
    cr_assert_eq(T()->recv(p.s[1], &c, 1), 1);
    cr_assert_eq(c, 'x');
    cr_assert_eq(readable(fd, 0), 0, "drained by recv");
    cr_assert_str_eq(T()->peer_name(p.s[1]), "twin:1");
    pair_free(&p);
}

Test(rdma_twin, disconnect_gives_end_of_stream_after_the_data)
{
    pair p = pair_new(4096, 64);
    cr_assert_eq(send1(p.s[0], "bye", 3), 3);
    T()->close(p.s[0]);
    p.s[0] = NULL;
    cr_assert_eq(readable(T()->fd(p.s[1]), 1000), 1);
    char buf[8];
    cr_assert_eq(T()->recv(p.s[1], buf, sizeof buf), 3, "data sent before close arrives");
    cr_assert_eq(memcmp(buf, "bye", 3), 0);
    cr_assert_eq(T()->recv(p.s[1], buf, sizeof buf), 0, "then end of stream");
    cr_assert_eq(T()->recv(p.s[1], buf, sizeof buf), 0, "and stays there");
    cr_assert_eq(send1(p.s[1], "x", 1), -EPIPE);
    pair_free(&p);
}

Test(rdma_twin, failed_completion_gives_end_of_stream)
{
    pair p = pair_new(4096, 64);
    char buf[8];
    cr_assert_eq(T()->recv(p.s[1], buf, sizeof buf), -EAGAIN);
    rdma_twin_break(p.t, 1);
    cr_assert_eq(readable(T()->fd(p.s[1]), 0), 1);
    cr_assert_eq(T()->recv(p.s[1], buf, sizeof buf), 0);
    cr_assert_eq(send1(p.s[1], "x", 1), -EPIPE);
    pair_free(&p);
}

Test(rdma_twin, sendv_with_many_iovecs)
{
    enum { RING = 64 << 10, N = 2000 };
    pair p = pair_new(RING, 64);
    uint8_t *src = malloc((size_t)N * 97), *dst = malloc((size_t)N * 97);
    static struct iovec iov[N];
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        iov[i] = (struct iovec){src + total, (size_t)(i % 97)}; /* every 97th is empty */
        total += (size_t)(i % 97);
    }
    fill(src, total, 0, 6);
    cr_assert_gt(total, (size_t)RING);
    cr_assert_eq(T()->sendv(p.s[0], iov, 0), 0, "nothing offered, nothing taken");
    cr_assert_eq(T()->sendv(p.s[0], iov, N), RING, "partial: the whole ring, no more");
    cr_assert_leq(rdma_twin_counts_of(p.t, 0).writes, 2);
    size_t got = 0;
    ssize_t n;
    while ((n = T()->recv(p.s[1], dst + got, total - got)) > 0)
        got += (size_t)n;
    cr_assert_eq(n, -EAGAIN);
    cr_assert_eq(got, (size_t)RING);
    /* Offer the rest, from the first byte not taken (inside some iovec). */
    size_t skip = RING;
    int k = 0;
    while (skip >= iov[k].iov_len)
        skip -= iov[k++].iov_len;
    static struct iovec rest[N];
    int m = 0;
    rest[m++] = (struct iovec){(uint8_t *)iov[k].iov_base + skip, iov[k].iov_len - skip};
    for (int j = k + 1; j < N; j++)
        rest[m++] = iov[j];
    cr_assert_eq(T()->sendv(p.s[0], rest, m), (ssize_t)(total - RING));
    while ((n = T()->recv(p.s[1], dst + got, total - got)) > 0)
        got += (size_t)n;
    cr_assert_eq(got, total);
    cr_assert_eq(memcmp(src, dst, total), 0, "bytes arrive in iovec order");
    free(src);
    free(dst);
    pair_free(&p);
}

Test(rdma_twin, refused_publish_is_retried_on_the_next_call)
{
    pair p = pair_new(4096, 1); /* one receive WR: a second unpolled publish is refused */
    char buf[16];
    cr_assert_eq(send1(p.s[0], "one", 3), 3);
    cr_assert_eq(send1(p.s[0], "two", 3), 3, "bytes taken; only their publish waits");
    cr_assert_eq(rdma_twin_counts_of(p.t, 0).refused, 1);
    cr_assert_eq(T()->recv(p.s[1], buf, sizeof buf), 3, "the receiver sees what was published");
    cr_assert_eq(memcmp(buf, "one", 3), 0);
    cr_assert_eq(readable(T()->fd(p.s[0]), 0), 1, "re-posted receive wakes the sender");
    cr_assert_eq(T()->recv(p.s[1], buf, sizeof buf), -EAGAIN);
    cr_assert_eq(T()->recv(p.s[0], buf, sizeof buf), -EAGAIN, "any call flushes the publish");
    cr_assert_eq(T()->recv(p.s[1], buf, sizeof buf), 3);
    cr_assert_eq(memcmp(buf, "two", 3), 0);
    pair_free(&p);
}

Test(rdma_twin, full_send_queue_takes_only_what_was_posted)
{
    pair p = pair_new(4096, 64);
    uint8_t out[4200], in[4200];
    fill(out, sizeof out, 0, 8);
    cr_assert_eq(send1(p.s[0], out, 4000), 4000);
    cr_assert_eq(T()->recv(p.s[1], in, sizeof in), 4000);
    uint64_t writes = rdma_twin_counts_of(p.t, 0).writes;
    rdma_twin_post_budget(p.t, 0, 0);
    cr_assert_eq(send1(p.s[0], out + 4000, 200), -EAGAIN, "send queue full: nothing taken");
    cr_assert_eq(rdma_twin_counts_of(p.t, 0).writes, writes);
    rdma_twin_post_budget(p.t, 0, 1); /* room for the write up to the ring's end only */
    cr_assert_eq(send1(p.s[0], out + 4000, 200), 96, "only the posted write counts as taken");
    cr_assert_eq(T()->recv(p.s[1], in, sizeof in), -EAGAIN, "not published yet");
    rdma_twin_post_budget(p.t, 0, -1);
    cr_assert_eq(readable(T()->fd(p.s[0]), 0), 1, "freed send queue wakes the sender");
    cr_assert_eq(T()->recv(p.s[0], in, sizeof in), -EAGAIN, "and any call publishes");
    cr_assert_eq(T()->recv(p.s[1], in, sizeof in), 96);
    cr_assert_eq(check(in, 96, 4000, 8), 96);
    cr_assert_eq(send1(p.s[0], out + 4096, 104), 104);
    cr_assert_eq(T()->recv(p.s[1], in, sizeof in), 104);
    cr_assert_eq(check(in, 104, 4096, 8), 104);
    pair_free(&p);
}

static void *close_it(void *arg)
{
    T()->close(arg);
    return NULL;
}

Test(rdma_twin, close_delivers_bytes_whose_publish_was_refused)
{
    pair p = pair_new(4096, 1);
    char buf[16];
    cr_assert_eq(send1(p.s[0], "x", 1), 1);
    cr_assert_eq(send1(p.s[0], "y", 1), 1);
    cr_assert_eq(rdma_twin_counts_of(p.t, 0).refused, 1);
    pthread_t t;
    pthread_create(&t, NULL, close_it, p.s[0]); /* waits, bounded, for the refused publish */
    p.s[0] = NULL;
    usleep(20000);
    cr_assert_eq(T()->recv(p.s[1], buf, sizeof buf), 1);
    cr_assert_eq(buf[0], 'x');
    pthread_join(t, NULL);
    cr_assert_eq(T()->recv(p.s[1], buf, sizeof buf), 1, "published by close");
    cr_assert_eq(buf[0], 'y');
    cr_assert_eq(T()->recv(p.s[1], buf, sizeof buf), 0);
    pair_free(&p);
}

Test(rdma_twin, peer_breaking_the_protocol_is_eproto)
{
    rdma_twin *t = rdma_twin_new(4096, 64);
    rt_err e = {0};
    ncl_stream *s = rdma_twin_stream(t, 1, &e);
    cr_assert_not_null(s, "%s", e.msg);
    const ncl_rdma_ops *raw = rdma_twin_ops();
    void *peer = rdma_twin_ctx(t, 0); /* no stream: we play a broken sender */
    uint64_t bogus = 5000;            /* more than a 4096-byte ring can hold */
    cr_assert_eq(raw->write_word(peer, NCL_RDMA_SEQ, bogus, ncl_ring_imm(NCL_RDMA_SEQ, bogus)), 0);
    char buf[8];
    cr_assert_eq(T()->recv(s, buf, sizeof buf), -EPROTO);
    cr_assert_eq(send1(s, "x", 1), -EPROTO);
    T()->close(s);
    raw->destroy(peer);
    rdma_twin_free(t);
}

Test(rdma_twin, consumed_past_produced_is_eproto)
{
    rdma_twin *t = rdma_twin_new(4096, 64);
    ncl_stream *s = rdma_twin_stream(t, 0, NULL);
    cr_assert_not_null(s);
    const ncl_rdma_ops *raw = rdma_twin_ops();
    void *peer = rdma_twin_ctx(t, 1);
    cr_assert_eq(send1(s, "abc", 3), 3);
    cr_assert_eq(raw->write_word(peer, NCL_RDMA_CONSUMED, 4, ncl_ring_imm(NCL_RDMA_CONSUMED, 4)),
                 0);
    cr_assert_eq(send1(s, "d", 1), -EPROTO);
    T()->close(s);
    raw->destroy(peer);
    rdma_twin_free(t);
}

static int destroyed;
static void count_destroy(void *ctx)
{
    (void)ctx;
    destroyed++;
}

Test(rdma_twin, stream_over_rejects_a_bad_ring_size_and_releases_ctx)
{
    ncl_rdma_ops ops = *rdma_twin_ops();
    ops.destroy = count_destroy;
    uint8_t ring[96], stage[96];
    rt_err e = {0};
    cr_assert_null(ncl_rdma_stream_over(&ops, NULL, ring, stage, 96, "x", &e));
    cr_assert_eq(e.code, EINVAL);
    cr_assert(strstr(e.msg, "96"), "%s", e.msg);
    cr_assert_eq(destroyed, 1, "the stream owned ctx and released it");
    cr_assert_null(rdma_twin_new(96, 4));
    cr_assert_null(rdma_twin_new(4096, 0));
}

/* ==== the real backend =================================================================== */

static bool mapped(const char *lib)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f))
        found = strstr(line, lib) != NULL;
    if (f)
        fclose(f);
    return found;
}

static bool have_rdma_cm(void) { return access("/dev/infiniband/rdma_cm", F_OK) == 0; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

Test(rdma_real, connect_without_a_device_fails_cleanly_within_the_timeout)
{
    cr_assert_not(mapped("libibverbs"), "rdma-core loaded before the transport was used");
    rt_err e = {0};
    double t0 = now_s();
    ncl_stream *s = T()->connect("127.0.0.1", 9, 500, &e); /* no RDMA listener there anyway */
    double took = now_s() - t0;
    cr_assert_null(s);
    cr_assert_neq(e.code, 0);
    cr_assert(strstr(e.msg, "rdma"), "message names the transport: %s", e.msg);
    cr_assert_lt(took, 2.0, "took %.2f s for a 500 ms timeout", took);
    if (strstr(e.msg, "cannot load"))
        return; /* rdma-core absent: the clear message is the whole behaviour */
    cr_assert(mapped("libibverbs"), "loaded at first use");
    if (!have_rdma_cm())
        cr_assert(strstr(e.msg, "RDMA connection manager") && strstr(e.msg, "127.0.0.1:9"), "%s",
                  e.msg);
}

Test(rdma_real, listen_without_a_device_fails_cleanly)
{
    rt_err e = {0};
    ncl_listener *l = T()->listen("127.0.0.1", 0, &e);
    if (l) { /* an RDMA device after all: the listener must be usable */
        cr_assert(have_rdma_cm(), "listening needs /dev/infiniband/rdma_cm");
        cr_assert_geq(T()->listener_fd(l), 0);
        cr_assert_gt(T()->listener_port(l), 0);
        cr_assert_null(T()->accept(l, &e));
        cr_assert_eq(e.code, EAGAIN);
        T()->listener_close(l);
        return;
    }
    cr_assert_neq(e.code, 0);
    cr_assert(strstr(e.msg, "rdma"), "%s", e.msg);
    if (!strstr(e.msg, "cannot load"))
        cr_assert(strstr(e.msg, "listen on 127.0.0.1:0"), "%s", e.msg);
}

Test(rdma_real, missing_library_is_named_in_the_error)
{
    rt_err e = {0};
    cr_assert_eq(ncl_rdma_lib_check("libibverbs-nonexistent.so.1", "librdmacm.so.1", &e), -ELIBACC);
    cr_assert(strstr(e.msg, "rdma transport: cannot load libibverbs-nonexistent.so.1: "), "%s",
              e.msg);
    cr_assert_eq(ncl_rdma_lib_check("libc.so.6", "libc.so.6", &e), -ELIBACC);
    cr_assert(strstr(e.msg, "libc.so.6 has no symbol ibv_alloc_pd"), "%s", e.msg);
}

Test(rdma_real, installed_rdma_core_has_every_symbol_used)
{
    rt_err e = {0};
    int rc = ncl_rdma_lib_check("libibverbs.so.1", "librdmacm.so.1", &e);
    if (rc < 0 && strstr(e.msg, "cannot load"))
        cr_skip_test("rdma-core is not installed here: %s", e.msg);
    cr_assert_eq(rc, 0, "%s", e.msg);
}
