/* test_overlay.c: volatilefs's dirty-extent overlay: write/read, merge, split by truncate,
 * zeroing, discard, and random operations checked against a byte-array model. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "overlay.h"

/* The structural invariants of overlay.h: sorted, non-empty, disjoint, non-adjacent,
 * bytes equal to the sum of the lengths. */
static void check_invariants(const struct ovl *ov)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < ov->n; i++) {
        cr_assert_gt(ov->ext[i].len, 0, "extent %zu is empty", i);
        cr_assert_leq(ov->ext[i].len, ov->ext[i].cap, "extent %zu len > cap", i);
        if (i > 0)
            cr_assert_gt(ov->ext[i].off, ov->ext[i - 1].off + ov->ext[i - 1].len,
                         "extents %zu and %zu overlap or touch", i - 1, i);
        sum += ov->ext[i].len;
    }
    cr_assert_eq(ov->bytes, sum, "bytes %llu, extents hold %llu", (unsigned long long)ov->bytes,
                 (unsigned long long)sum);
}

static void write_str(struct ovl *ov, uint64_t off, const char *s)
{
    cr_assert_eq(ovl_write(ov, off, s, strlen(s)), 0);
    check_invariants(ov);
}

/* Read [off, off + len) over a background of '.' into out (NUL-terminated). */
static void read_str(const struct ovl *ov, uint64_t off, size_t len, char *out)
{
    memset(out, '.', len);
    out[len] = '\0';
    ovl_read(ov, off, out, len);
}

Test(overlay, empty)
{
    struct ovl ov = OVL_INIT;
    char buf[8];
    read_str(&ov, 0, 4, buf);
    cr_assert_str_eq(buf, "....");
    cr_assert_eq(ovl_end(&ov), 0);
    cr_assert_eq(ovl_write(&ov, 5, "", 0), 0);
    cr_assert_eq(ov.n, 0);
    cr_assert_eq(ovl_clear(&ov), 0);
}

Test(overlay, write_read_with_holes)
{
    struct ovl ov = OVL_INIT;
    char buf[32];
    write_str(&ov, 2, "ab");
    write_str(&ov, 8, "cd");
    cr_assert_eq(ov.n, 2);
    read_str(&ov, 0, 12, buf);
    cr_assert_str_eq(buf, "..ab....cd..");
    read_str(&ov, 3, 6, buf);
    cr_assert_str_eq(buf, "b....c");
    cr_assert_eq(ovl_end(&ov), 10);
    cr_assert_eq(ov.bytes, 4);
    ovl_clear(&ov);
}

Test(overlay, adjacent_writes_coalesce)
{
    struct ovl ov = OVL_INIT;
    char buf[32];
    write_str(&ov, 4, "cd");
    write_str(&ov, 6, "ef"); /* right after */
    write_str(&ov, 2, "ab"); /* right before */
    cr_assert_eq(ov.n, 1);
    cr_assert_eq(ov.ext[0].off, 2);
    read_str(&ov, 0, 10, buf);
    cr_assert_str_eq(buf, "..abcdef..");
    for (int i = 0; i < 1000; i++) /* many small appends stay one extent */
        cr_assert_eq(ovl_write(&ov, 8 + (uint64_t)i, "x", 1), 0);
    check_invariants(&ov);
    cr_assert_eq(ov.n, 1);
    cr_assert_eq(ov.bytes, 1006);
    ovl_clear(&ov);
}

Test(overlay, overlapping_write_merges_and_newest_wins)
{
    struct ovl ov = OVL_INIT;
    char buf[32];
    write_str(&ov, 0, "aaaa");
    write_str(&ov, 6, "bbbb");
    write_str(&ov, 13, "cc");
    write_str(&ov, 3, "XXXXXXXXXX"); /* spans the end of the 1st, all of 2nd, touches 3rd */
    cr_assert_eq(ov.n, 1);
    read_str(&ov, 0, 16, buf);
    cr_assert_str_eq(buf, "aaaXXXXXXXXXXcc.");
    write_str(&ov, 1, "y"); /* inside an extent */
    read_str(&ov, 0, 4, buf);
    cr_assert_str_eq(buf, "ayaX");
    cr_assert_eq(ov.n, 1);
    ovl_clear(&ov);
}

Test(overlay, write_before_first_extent_that_covers_several)
{
    struct ovl ov = OVL_INIT;
    char buf[32];
    write_str(&ov, 5, "bb");
    write_str(&ov, 9, "cc");
    write_str(&ov, 1, "AAAAAAAAA"); /* starts before the 1st, ends inside the 2nd */
    cr_assert_eq(ov.n, 1);
    cr_assert_eq(ov.ext[0].off, 1);
    read_str(&ov, 0, 12, buf);
    cr_assert_str_eq(buf, ".AAAAAAAAAc.");
    ovl_clear(&ov);
}

Test(overlay, truncate_splits_and_drops)
{
    struct ovl ov = OVL_INIT;
    char buf[32];
    write_str(&ov, 0, "abcdef");
    write_str(&ov, 10, "ghij");
    ovl_truncate(&ov, 12);
    check_invariants(&ov);
    read_str(&ov, 0, 14, buf);
    cr_assert_str_eq(buf, "abcdef....gh..");
    cr_assert_eq(ovl_end(&ov), 12);
    ovl_truncate(&ov, 3);
    check_invariants(&ov);
    cr_assert_eq(ov.n, 1);
    cr_assert_eq(ov.bytes, 3);
    ovl_truncate(&ov, 100); /* growing is the backing file's business */
    cr_assert_eq(ovl_end(&ov), 3);
    write_str(&ov, 3, "Z"); /* the cut extent still grows in place */
    read_str(&ov, 0, 5, buf);
    cr_assert_str_eq(buf, "abcZ.");
    ovl_truncate(&ov, 0);
    cr_assert_eq(ov.n, 0);
    cr_assert_eq(ov.bytes, 0);
    cr_assert_null(ov.ext);
}

Test(overlay, zero_range)
{
    struct ovl ov = OVL_INIT;
    char buf[32];
    write_str(&ov, 0, "abcdef");
    write_str(&ov, 8, "gh");
    ovl_zero(&ov, 4, 5);
    check_invariants(&ov);
    read_str(&ov, 0, 11, buf);
    cr_assert_eq(memcmp(buf, "abcd\0\0..\0h.", 11), 0);
    cr_assert_eq(ov.bytes, 8);
    ovl_zero(&ov, UINT64_MAX, 1);
    ovl_zero(&ov, 1, UINT64_MAX); /* clamps */
    read_str(&ov, 0, 2, buf);
    cr_assert_eq(memcmp(buf, "a\0", 2), 0);
    ovl_clear(&ov);
}

Test(overlay, discard_reports_bytes)
{
    struct ovl ov = OVL_INIT;
    write_str(&ov, 0, "abc");
    write_str(&ov, 100, "defg");
    cr_assert_eq(ovl_clear(&ov), 7);
    cr_assert_eq(ov.n, 0);
    cr_assert_eq(ovl_end(&ov), 0);
    cr_assert_eq(ovl_clear(&ov), 0);
}

Test(overlay, overflow_is_refused)
{
    struct ovl ov = OVL_INIT;
    cr_assert_eq(ovl_write(&ov, UINT64_MAX - 1, "abc", 3), -EFBIG);
    cr_assert_eq(ov.n, 0);
    char buf[3] = {0};
    ovl_read(&ov, UINT64_MAX - 1, buf, 3); /* no-op, no crash */
}

static int collect(void *ctx, uint64_t off, const void *data, size_t len)
{
    unsigned char *img = ctx;
    memcpy(img + off, data, len);
    return 0;
}

static int stop_at_second(void *ctx, uint64_t off, const void *data, size_t len)
{
    (void)off, (void)data, (void)len;
    int *calls = ctx;
    return ++*calls == 2 ? 42 : 0;
}

Test(overlay, foreach_visits_in_order_and_stops)
{
    struct ovl ov = OVL_INIT;
    unsigned char img[16] = {0};
    write_str(&ov, 9, "zz");
    write_str(&ov, 1, "aa");
    write_str(&ov, 5, "mm");
    cr_assert_eq(ovl_foreach(&ov, collect, img), 0);
    cr_assert_eq(memcmp(img, "\0aa\0\0mm\0\0zz", 11), 0);
    int calls = 0;
    cr_assert_eq(ovl_foreach(&ov, stop_at_second, &calls), 42);
    cr_assert_eq(calls, 2);
    ovl_clear(&ov);
}

/* ---- property test: random operations against a byte array -------------------------- */

#define MODEL_SIZE 4096

struct model {
    unsigned char data[MODEL_SIZE];
    unsigned char dirty[MODEL_SIZE];
};

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void check_against_model(const struct ovl *ov, const struct model *m, int step)
{
    check_invariants(ov);
    static unsigned char got[MODEL_SIZE];
    memset(got, 0xEE, sizeof(got));
    ovl_read(ov, 0, got, MODEL_SIZE);
    uint64_t dirty = 0, end = 0;
    for (size_t i = 0; i < MODEL_SIZE; i++) {
        unsigned char want = m->dirty[i] ? m->data[i] : 0xEE;
        cr_assert_eq(got[i], want, "step %d: byte %zu is %u, want %u", step, i, got[i], want);
        if (m->dirty[i]) {
            dirty++;
            end = i + 1;
        }
    }
    cr_assert_eq(ov->bytes, dirty, "step %d: bytes", step);
    cr_assert_eq(ovl_end(ov), end, "step %d: end", step);
    /* A random window read agrees too (offsets inside extents). */
    size_t off = rng() % MODEL_SIZE, len = rng() % (MODEL_SIZE - off) + 1;
    memset(got, 0xEE, len);
    ovl_read(ov, off, got, len);
    for (size_t i = 0; i < len; i++)
        cr_assert_eq(got[i], m->dirty[off + i] ? m->data[off + i] : 0xEE, "step %d: window", step);
}

Test(overlay, random_operations_match_model)
{
    static struct model m;
    struct ovl ov = OVL_INIT;
    unsigned char buf[600];
    for (int step = 0; step < 20000; step++) {
        unsigned op = (unsigned)(rng() % 100);
        if (op < 80) { /* write: mostly small, sometimes large, often adjacent */
            size_t len = rng() % 4 == 0 ? rng() % 600 + 1 : rng() % 16 + 1;
            size_t off = rng() % (MODEL_SIZE - len);
            if (op < 20 && ov.n > 0) { /* right after or before an existing extent */
                const struct ovl_extent *e = &ov.ext[rng() % ov.n];
                size_t at = op < 10 ? (size_t)(e->off + e->len) : (size_t)e->off;
                at = op < 10 ? at : (at >= len ? at - len : 0);
                if (at + len <= MODEL_SIZE)
                    off = at;
            }
            for (size_t i = 0; i < len; i++)
                buf[i] = (unsigned char)rng();
            cr_assert_eq(ovl_write(&ov, off, buf, len), 0);
            memcpy(m.data + off, buf, len);
            memset(m.dirty + off, 1, len);
        } else if (op < 88) { /* truncate */
            size_t size = rng() % MODEL_SIZE;
            ovl_truncate(&ov, size);
            memset(m.dirty + size, 0, MODEL_SIZE - size);
        } else if (op < 96) { /* punch */
            size_t off = rng() % MODEL_SIZE, len = rng() % 200;
            if (off + len > MODEL_SIZE)
                len = MODEL_SIZE - off;
            ovl_zero(&ov, off, len);
            for (size_t i = off; i < off + len; i++)
                if (m.dirty[i])
                    m.data[i] = 0;
        } else if (op < 98) { /* write back (foreach) then clear, as fsync does */
            static unsigned char img[MODEL_SIZE];
            memset(img, 0, sizeof(img));
            cr_assert_eq(ovl_foreach(&ov, collect, img), 0);
            for (size_t i = 0; i < MODEL_SIZE; i++)
                if (m.dirty[i])
                    cr_assert_eq(img[i], m.data[i], "step %d: write-back byte %zu", step, i);
            uint64_t dirty = 0;
            for (size_t i = 0; i < MODEL_SIZE; i++)
                dirty += m.dirty[i];
            cr_assert_eq(ovl_clear(&ov), dirty);
            memset(m.dirty, 0, sizeof(m.dirty));
        } else { /* discard (the crash) */
            ovl_clear(&ov);
            memset(m.dirty, 0, sizeof(m.dirty));
        }
        check_against_model(&ov, &m, step);
    }
    ovl_clear(&ov);
}
