/* test_store.c: ncl-server's store: fencing, contiguity, capacity, trims, tombstones,
 * the shadow catch-up. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "store.h"

/* Encode records first..first+n-1 of `len` bytes each for file (1, ino). */
static unsigned char *batch(uint64_t first, uint32_t n, uint32_t len, uint64_t ino, size_t *out)
{
    char *data = malloc(len + 1);
    memset(data, 'd', len);
    size_t one = NCL_REC_HDR_SIZE + 4 + len;
    unsigned char *b = malloc(one * n + 1);
    for (uint32_t i = 0; i < n; i++) {
        ncl_rec r = {.seq = first + i,
                     .dev = 1,
                     .ino = ino,
                     .offset = (first + i) * len,
                     .len = len,
                     .path_len = 4,
                     .kind = NCL_REC_WRITE,
                     .path = "/f/x",
                     .data = data};
        ncl_rec_encode(b + one * i, &r);
    }
    free(data);
    *out = one * n;
    return b;
}

static int append(ncl_store *st, ncl_log *lg, uint64_t epoch, uint64_t first, uint32_t n,
                  uint32_t len, uint64_t ino, uint64_t *next)
{
    size_t sz;
    unsigned char *b = batch(first, n, len, ino, &sz);
    rt_err e;
    int rc = ncl_store_append(st, lg, epoch, first, n, b, sz, next, &e);
    free(b);
    return rc;
}

Test(store, append_contiguous_and_gap)
{
    ncl_store st;
    ncl_store_init(&st, 1 << 20);
    ncl_log *lg = ncl_store_log(&st, "c1", 2, true);
    cr_assert_not_null(lg);
    cr_assert_eq(ncl_store_log(&st, "c1", 2, false), lg);
    cr_assert_null(ncl_store_log(&st, "c2", 2, false));
    uint64_t next;
    cr_assert_eq(ncl_store_hello(&st, lg, 1, false), NCL_R_OK);
    cr_assert_eq(append(&st, lg, 1, 0, 3, 100, 5, &next), NCL_R_OK);
    cr_assert_eq(next, 3);
    cr_assert_eq(append(&st, lg, 1, 5, 1, 100, 5, &next), NCL_R_GAP);
    cr_assert_eq(next, 3);
    cr_assert_eq(append(&st, lg, 1, 3, 2, 100, 5, &next), NCL_R_OK);
    cr_assert_eq(next, 5);
    size_t sz;
    const unsigned char *r = ncl_log_get(lg, 4, &sz);
    cr_assert_not_null(r);
    ncl_rec d;
    size_t used;
    cr_assert_eq(ncl_rec_decode(r, sz, &d, &used, NULL), 0);
    cr_assert_eq(d.seq, 4);
    cr_assert_null(ncl_log_get(lg, 5, &sz));
    ncl_store_free(&st);
}

Test(store, malformed_batches_are_protocol_errors_and_change_nothing)
{
    ncl_store st;
    ncl_store_init(&st, 1 << 20);
    ncl_log *lg = ncl_store_log(&st, "c", 1, true);
    size_t sz;
    unsigned char *b = batch(0, 3, 50, 1, &sz);
    uint64_t next;
    rt_err e;
    uint64_t used0 = st.used;
    cr_assert_eq(ncl_store_append(&st, lg, 0, 0, 4, b, sz, &next, &e), -EPROTO); /* count */
    cr_assert_eq(ncl_store_append(&st, lg, 0, 0, 2, b, sz, &next, &e), -EPROTO); /* stray */
    cr_assert(strstr(e.msg, "stray"), "%s", e.msg);
    cr_assert_eq(ncl_store_append(&st, lg, 0, 1, 3, b, sz, &next, &e), -EPROTO); /* seq */
    b[sz - 1] ^= 0x40;
    cr_assert_eq(ncl_store_append(&st, lg, 0, 0, 3, b, sz, &next, &e), -EBADMSG); /* crc */
    cr_assert_eq(lg->live.next, 0);
    cr_assert_eq(st.used, used0);
    free(b);
    ncl_store_free(&st);
}

Test(store, fencing)
{
    ncl_store st;
    ncl_store_init(&st, 1 << 20);
    ncl_log *lg = ncl_store_log(&st, "c", 1, true);
    uint64_t next;
    cr_assert_eq(ncl_store_hello(&st, lg, 5, false), NCL_R_OK);
    cr_assert_eq(append(&st, lg, 5, 0, 1, 10, 1, &next), NCL_R_OK);
    cr_assert_eq(ncl_store_hello(&st, lg, 6, false), NCL_R_OK); /* a new incarnation */
    /* The zombie of epoch 5 is refused everything that changes the log. */
    cr_assert_eq(append(&st, lg, 5, 1, 1, 10, 1, &next), NCL_R_FENCED);
    cr_assert_eq(ncl_store_trim(&st, lg, 5, 1), NCL_R_FENCED);
    uint64_t cnt;
    cr_assert_eq(ncl_store_trim_file(&st, lg, 5, 1, 1, 9, &cnt), NCL_R_FENCED);
    cr_assert_eq(ncl_store_reset(&st, lg, 5, 0, false), NCL_R_FENCED);
    cr_assert_eq(ncl_store_hello(&st, lg, 4, false), NCL_R_FENCED);
    cr_assert_eq(ncl_store_hello(&st, lg, 4, true), NCL_R_OK); /* a query never fences */
    cr_assert_eq(lg->epoch, 6);
    cr_assert_eq(lg->live.next, 1);
    cr_assert_eq(st.fenced, 5);
    cr_assert_eq(append(&st, lg, 6, 1, 1, 10, 1, &next), NCL_R_OK);
    ncl_store_free(&st);
}

Test(store, capacity_is_never_exceeded)
{
    ncl_store st;
    ncl_store_init(&st, 65536);
    ncl_log *lg = ncl_store_log(&st, "c", 1, true);
    uint64_t next = 0, seq = 0;
    int rc, fulls = 0;
    for (int i = 0; i < 200; i++) {
        rc = append(&st, lg, 0, seq, 4, 1000, 1, &next);
        if (rc == NCL_R_OK)
            seq += 4;
        else
            fulls++;
        cr_assert(rc == NCL_R_OK || rc == NCL_R_FULL);
        cr_assert_leq(st.used, st.capacity);
    }
    cr_assert_gt(fulls, 0);
    cr_assert_eq(lg->live.next, seq);
    /* Trimming frees room again. */
    cr_assert_eq(ncl_store_trim(&st, lg, 0, seq), NCL_R_OK);
    cr_assert_eq(st.used, NCL_LOG_OVERHEAD, "ring slots are given back too");
    cr_assert_eq(append(&st, lg, 0, seq, 4, 1000, 1, &next), NCL_R_OK);
    /* Logs of new clients are refused once full too. */
    ncl_store st2;
    ncl_store_init(&st2, NCL_LOG_OVERHEAD);
    cr_assert_not_null(ncl_store_log(&st2, "a", 1, true));
    cr_assert_null(ncl_store_log(&st2, "b", 1, true));
    ncl_store_free(&st2);
    ncl_store_free(&st);
}

Test(store, trim_and_trim_past_end)
{
    ncl_store st;
    ncl_store_init(&st, 1 << 20);
    ncl_log *lg = ncl_store_log(&st, "c", 1, true);
    uint64_t next;
    append(&st, lg, 0, 0, 10, 10, 1, &next);
    cr_assert_eq(ncl_store_trim(&st, lg, 0, 4), NCL_R_OK);
    cr_assert_eq(lg->live.start, 4);
    cr_assert_null(ncl_log_get(lg, 3, NULL));
    cr_assert_not_null(ncl_log_get(lg, 4, NULL));
    cr_assert_eq(ncl_store_trim(&st, lg, 0, 2), NCL_R_OK); /* backwards: nothing */
    cr_assert_eq(lg->live.start, 4);
    cr_assert_eq(ncl_store_trim(&st, lg, 0, 50), NCL_R_OK); /* past the end */
    cr_assert_eq(lg->live.start, 50);
    cr_assert_eq(lg->live.next, 50);
    cr_assert_eq(append(&st, lg, 0, 50, 1, 10, 1, &next), NCL_R_OK);
    ncl_store_free(&st);
}

Test(store, trim_file_tombstones_and_frees)
{
    ncl_store st;
    ncl_store_init(&st, 1 << 20);
    ncl_log *lg = ncl_store_log(&st, "c", 1, true);
    uint64_t next, cnt;
    append(&st, lg, 0, 0, 2, 1000, 7, &next); /* 0,1: file 7 */
    append(&st, lg, 0, 2, 1, 1000, 8, &next); /* 2: file 8 */
    append(&st, lg, 0, 3, 2, 1000, 7, &next); /* 3,4: file 7 */
    uint64_t before = st.used;
    cr_assert_eq(ncl_store_trim_file(&st, lg, 0, 1, 7, 4, &cnt), NCL_R_OK);
    cr_assert_eq(cnt, 3); /* 0, 1, 3; not 4 (>= below) */
    cr_assert_lt(st.used, before - 2000);
    /* 0 and 1 were leading tombstones: trimmed. 2 is file 8's record, 3 a tombstone. */
    cr_assert_eq(lg->live.start, 2);
    size_t sz;
    ncl_rec d;
    size_t used;
    const unsigned char *r = ncl_log_get(lg, 3, &sz);
    cr_assert_eq(ncl_rec_decode(r, sz, &d, &used, NULL), 0);
    cr_assert_eq(d.kind, NCL_REC_TOMBSTONE);
    cr_assert_eq(d.len, 0);
    r = ncl_log_get(lg, 4, &sz);
    cr_assert_eq(ncl_rec_decode(r, sz, &d, &used, NULL), 0);
    cr_assert_eq(d.kind, NCL_REC_WRITE);
    ncl_store_free(&st);
}

Test(store, shadow_catch_up_keeps_live_until_done)
{
    ncl_store st;
    ncl_store_init(&st, 1 << 20);
    ncl_log *lg = ncl_store_log(&st, "c", 1, true);
    uint64_t next;
    append(&st, lg, 1, 0, 5, 10, 1, &next);
    /* The client reconnects and re-sends its log from 3 into a shadow. */
    cr_assert_eq(ncl_store_reset(&st, lg, 1, 3, true), NCL_R_OK);
    cr_assert_not_null(lg->shadow);
    cr_assert_eq(append(&st, lg, 1, 3, 4, 10, 1, &next), NCL_R_OK);
    cr_assert_eq(next, 7);
    /* Meanwhile the live log is what READs see, unchanged. */
    cr_assert_eq(lg->live.start, 0);
    cr_assert_eq(lg->live.next, 5);
    /* A trim reaches both. */
    cr_assert_eq(ncl_store_trim(&st, lg, 1, 4), NCL_R_OK);
    cr_assert_eq(lg->live.start, 4);
    cr_assert_eq(lg->shadow->start, 4);
    cr_assert_eq(ncl_store_sync_done(&st, lg, 1, 7), NCL_R_OK);
    cr_assert_null(lg->shadow);
    cr_assert_eq(lg->live.start, 4);
    cr_assert_eq(lg->live.next, 7);
    cr_assert_eq(append(&st, lg, 1, 7, 1, 10, 1, &next), NCL_R_OK);
    /* Accounting: only the live log's records remain charged (and its ring). */
    uint64_t expect = NCL_LOG_OVERHEAD + 4 * (NCL_REC_HDR_SIZE + 4 + 10 + NCL_REC_OVERHEAD) +
                      lg->live.cap * sizeof(void *);
    cr_assert_eq(st.used, expect);
    /* A new incarnation drops an unfinished shadow. */
    cr_assert_eq(ncl_store_reset(&st, lg, 1, 8, true), NCL_R_OK);
    cr_assert_eq(ncl_store_hello(&st, lg, 2, false), NCL_R_OK);
    cr_assert_null(lg->shadow);
    ncl_store_free(&st);
}

Test(store, claims_need_a_new_epoch_rejoins_may_repeat_it)
{
    ncl_store st;
    ncl_store_init(&st, 1 << 20);
    ncl_log *lg = ncl_store_log(&st, "c", 1, true);
    cr_assert_eq(ncl_store_hello(&st, lg, 7, 0), NCL_R_OK);
    uint64_t g = lg->gen;
    /* A second opener that picked the same epoch loses. */
    cr_assert_eq(ncl_store_hello(&st, lg, 7, 0), NCL_R_FENCED);
    cr_assert_eq(lg->gen, g);
    /* The owner reconnecting may present its epoch again; each such HELLO bumps gen. */
    cr_assert_eq(ncl_store_hello(&st, lg, 7, NCL_HELLO_REJOIN), NCL_R_OK);
    cr_assert_eq(lg->gen, g + 1);
    cr_assert_eq(ncl_store_hello(&st, lg, 6, NCL_HELLO_REJOIN), NCL_R_FENCED);
    /* A peer that restarted empty accepts a rejoin above what it knows. */
    ncl_log *fresh = ncl_store_log(&st, "d", 1, true);
    cr_assert_eq(ncl_store_hello(&st, fresh, 7, NCL_HELLO_REJOIN), NCL_R_OK);
    cr_assert_eq(fresh->epoch, 7);
    ncl_store_free(&st);
}

Test(store, sync_done_needs_a_complete_shadow)
{
    ncl_store st;
    ncl_store_init(&st, 1 << 20);
    ncl_log *lg = ncl_store_log(&st, "c", 1, true);
    uint64_t next;
    append(&st, lg, 1, 0, 5, 10, 1, &next);
    cr_assert_eq(ncl_store_reset(&st, lg, 1, 0, true), NCL_R_OK);
    cr_assert_eq(append(&st, lg, 1, 0, 3, 10, 1, &next), NCL_R_OK);
    /* The client says it sent 5; the shadow has 3 (an APPEND was refused): no swap. */
    cr_assert_eq(ncl_store_sync_done(&st, lg, 1, 5), NCL_R_GAP);
    cr_assert_eq(lg->live.next, 5);
    cr_assert_not_null(lg->shadow);
    /* Without a shadow at all (a stale SYNC_DONE), nothing happens either. */
    cr_assert_eq(append(&st, lg, 1, 3, 2, 10, 1, &next), NCL_R_OK);
    cr_assert_eq(ncl_store_sync_done(&st, lg, 1, 5), NCL_R_OK);
    cr_assert_eq(ncl_store_sync_done(&st, lg, 1, 5), NCL_R_GAP);
    cr_assert_eq(lg->live.next, 5);
    ncl_store_free(&st);
}

Test(store, shadow_shares_identical_records)
{
    /* A catch-up re-sends the records the peer already holds: they must not cost twice, or
     * a peer holding more than half its capacity could never be caught up. */
    ncl_store st;
    ncl_log *lg;
    uint64_t next;
    /* 100 records of 5000 bytes take a bit over 500 KB: 600 KB hold them once, not twice. */
    ncl_store_init(&st, 600000);
    lg = ncl_store_log(&st, "c", 1, true);
    cr_assert_eq(append(&st, lg, 1, 0, 100, 5000, 1, &next), NCL_R_OK);
    cr_assert_eq(ncl_store_reset(&st, lg, 1, 0, true), NCL_R_OK);
    cr_assert_eq(append(&st, lg, 1, 0, 100, 5000, 1, &next), NCL_R_OK, "the copies are shared");
    cr_assert_leq(st.used, st.capacity);
    cr_assert_eq(ncl_store_sync_done(&st, lg, 1, 100), NCL_R_OK);
    cr_assert_eq(lg->live.next, 100);
    /* Trimming the swapped-in log frees everything. */
    cr_assert_eq(ncl_store_trim(&st, lg, 1, 100), NCL_R_OK);
    cr_assert_eq(st.used, NCL_LOG_OVERHEAD);
    ncl_store_free(&st);
}

Test(store, ring_slots_count_against_capacity)
{
    /* Empty records are tiny, but each takes a ring slot: filling and trimming must neither
     * pass the capacity nor keep the memory. */
    ncl_store st;
    ncl_store_init(&st, 262144);
    for (int id = 0; id < 8; id++) {
        char name[16];
        snprintf(name, sizeof name, "c%d", id);
        ncl_log *lg = ncl_store_log(&st, name, strlen(name), true);
        uint64_t next, seq = 0;
        while (append(&st, lg, 1, seq, 64, 0, 1, &next) == NCL_R_OK)
            seq += 64;
        cr_assert_gt(seq, 0);
        cr_assert_leq(st.used, st.capacity);
        cr_assert_eq(ncl_store_trim(&st, lg, 1, seq), NCL_R_OK);
        cr_assert_eq(lg->live.cap, 0, "the ring is given back");
    }
    cr_assert_eq(st.used, (uint64_t)8 * NCL_LOG_OVERHEAD);
    ncl_store_free(&st);
}
