/* test_quorum.c: majority arithmetic and the longest gap-free prefix (pure functions). */
#include <criterion/criterion.h>

#include "ncl/client.h"

Test(quorum, majority_of_1_3_5)
{
    cr_assert_eq(ncl_majority(1), 1);
    cr_assert_eq(ncl_majority(2), 2);
    cr_assert_eq(ncl_majority(3), 2);
    cr_assert_eq(ncl_majority(4), 3);
    cr_assert_eq(ncl_majority(5), 3);
    /* 2f+1 peers tolerate f failures: the rest is still a majority. */
    for (int f = 0; f < 4; f++)
        cr_assert_geq(2 * f + 1 - f, ncl_majority(2 * f + 1));
    /* Any two majorities intersect. */
    for (int n = 1; n <= 16; n++)
        cr_assert_gt(2 * ncl_majority(n), n);
}

static ncl_rec W(uint64_t seq, uint32_t crc)
{
    return (ncl_rec){.seq = seq, .kind = NCL_REC_WRITE, .crc = crc};
}
static ncl_rec T(uint64_t seq) { return (ncl_rec){.seq = seq, .kind = NCL_REC_TOMBSTONE}; }

typedef struct got {
    uint64_t seq[64];
    int kind[64];
    int n;
} got;

static void emit(const ncl_rec *r, void *arg)
{
    got *g = arg;
    g->seq[g->n] = r->seq;
    g->kind[g->n++] = r->kind;
}

Test(quorum, prefix_is_the_union_from_the_largest_start)
{
    ncl_rec a[] = {W(0, 1), W(1, 1), W(2, 1)};          /* a peer holding 0..2 */
    ncl_rec b[] = {W(0, 1), W(1, 1), W(2, 1), W(3, 1)}; /* one holding 0..3 */
    ncl_rec c[] = {W(5, 1), W(6, 1)};                   /* one trimmed to 5, holding 5..6 */
    ncl_view v[] = {{0, 3, a}, {0, 4, b}};
    ncl_prefix p;
    got g = {0};
    ncl_select_prefix(v, 2, &p, emit, &g);
    cr_assert_eq(p.start, 0);
    cr_assert_eq(p.next, 4, "the longer log extends the prefix");
    cr_assert_eq(g.n, 4);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(g.seq[i], (uint64_t)i);
    /* A peer trimmed past the others' ends: everything below 5 was made durable, so the
     * prefix starts there (the other peers' older records are not replayed). */
    ncl_view w[] = {{0, 3, a}, {5, 7, c}};
    g.n = 0;
    ncl_select_prefix(w, 2, &p, emit, &g);
    cr_assert_eq(p.start, 5);
    cr_assert_eq(p.next, 7);
    cr_assert_eq(g.n, 2);
    cr_assert_eq(g.seq[0], 5);
    cr_assert_eq(p.beyond_gap, 0);
}

Test(quorum, tombstone_on_any_view_wins)
{
    ncl_rec a[] = {W(0, 1), W(1, 7), W(2, 1)};
    ncl_rec b[] = {W(0, 1), T(1), W(2, 1)};
    ncl_view v[] = {{0, 3, a}, {0, 3, b}};
    ncl_prefix p;
    got g = {0};
    ncl_select_prefix(v, 2, &p, emit, &g);
    cr_assert_eq(g.n, 3);
    cr_assert_eq(g.kind[1], NCL_REC_TOMBSTONE);
    ncl_view w[] = {{0, 3, b}, {0, 3, a}}; /* order does not matter */
    g.n = 0;
    ncl_select_prefix(w, 2, &p, emit, &g);
    cr_assert_eq(g.kind[1], NCL_REC_TOMBSTONE);
    cr_assert_eq(p.conflicts, 0);
}

Test(quorum, conflicting_copies_are_counted)
{
    ncl_rec a[] = {W(0, 1), W(1, 2)};
    ncl_rec b[] = {W(0, 1), W(1, 3)};
    ncl_view v[] = {{0, 2, a}, {0, 2, b}};
    ncl_prefix p;
    ncl_select_prefix(v, 2, &p, NULL, NULL);
    cr_assert_eq(p.conflicts, 1);
    cr_assert_eq(p.next, 2);
}

Test(quorum, empty_views)
{
    /* Logs trimmed to different points and holding nothing: an empty prefix at the largest
     * start (a new session starts there or later). */
    ncl_view e[] = {{4, 4, NULL}, {7, 7, NULL}};
    ncl_prefix p;
    ncl_select_prefix(e, 2, &p, NULL, NULL);
    cr_assert_eq(p.start, 7);
    cr_assert_eq(p.next, 7);
    ncl_rec a[] = {W(10, 1), W(11, 1)};
    ncl_view v[] = {{10, 12, a}, {10, 10, NULL}};
    got g = {0};
    ncl_select_prefix(v, 2, &p, emit, &g);
    cr_assert_eq(p.next, 12);
    cr_assert_eq(g.n, 2);
}
