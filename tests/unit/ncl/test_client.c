/* test_client.c: the NCL client against real ncl-server peers in threads of the test:
 * group commit, majority with peers stopped, fencing, catch-up of a restarted peer,
 * recovery, trims. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tpeers.h"
#include "tproxy.h"

static ncl_write wr(uint64_t ino, uint64_t off, const char *data)
{
    return (ncl_write){.dev = 1,
                       .ino = ino,
                       .offset = off,
                       .path = "/tmp/ncl-test-file",
                       .data = data,
                       .len = (uint32_t)strlen(data)};
}

static int commit1(ncl_client *c, uint64_t ino, uint64_t off, const char *data, uint64_t *seq,
                   rt_err *e)
{
    ncl_write w = wr(ino, off, data);
    return ncl_commit(c, &w, 1, seq, e);
}

/* Wait (up to 5 s) until the session reports `live` live peers. */
static void wait_live(ncl_client *c, int live)
{
    for (int i = 0; i < 500; i++) {
        ncl_client_stats s;
        ncl_client_stats_get(c, &s);
        if (s.live_peers == live)
            return;
        usleep(10000);
    }
    cr_assert_fail("peers never became live");
}

Test(client, commit_with_1_3_5_peers_and_a_minority_down)
{
    int sizes[] = {1, 3, 5};
    for (int k = 0; k < 3; k++) {
        int n = sizes[k];
        tpeer p[5];
        for (int i = 0; i < n; i++)
            tpeer_start(&p[i], 0, 64 << 20);
        ncl_config cfg;
        tpeer_config(&cfg, p, n, "maj", 400);
        rt_err e;
        ncl_client *c = ncl_open(&cfg, 0, &e);
        cr_assert_not_null(c, "%s", e.msg);
        uint64_t seq;
        cr_assert_eq(commit1(c, 1, 0, "hello", &seq, &e), 0, "%s", e.msg);
        cr_assert_eq(seq, 0);
        /* Stop f = (n-1)/2 peers: commits still succeed. */
        int f = (n - 1) / 2;
        for (int i = 0; i < f; i++)
            tpeer_stop(&p[i]);
        for (int j = 0; j < 20; j++)
            cr_assert_eq(commit1(c, 1, 5, "again", &seq, &e), 0, "n=%d: %s", n, e.msg);
        /* One more down: no majority, the commit fails within the timeout, not later. */
        tpeer_stop(&p[f]);
        uint64_t t0 = rt_now_ns();
        int rc = commit1(c, 1, 10, "lost", &seq, &e);
        uint64_t ms = (rt_now_ns() - t0) / RT_MS;
        cr_assert_eq(rc, -ETIMEDOUT, "n=%d rc=%d %s", n, rc, e.msg);
        cr_assert(strstr(e.msg, "no majority"), "%s", e.msg);
        cr_assert_geq(ms, 390);
        cr_assert_lt(ms, 1500);
        ncl_close(c);
        for (int i = f + 1; i < n; i++)
            tpeer_stop(&p[i]);
    }
}

typedef struct gc {
    ncl_client *c;
    int idx, n, fails;
} gc;

static void *committer(void *arg)
{
    gc *g = arg;
    char buf[64];
    for (int i = 0; i < g->n; i++) {
        snprintf(buf, sizeof buf, "t%d-%d", g->idx, i);
        rt_err e;
        if (commit1(g->c, (uint64_t)g->idx + 10, (uint64_t)i * 16, buf, NULL, &e) != 0)
            g->fails++;
    }
    return NULL;
}

Test(client, concurrent_committers_share_frames)
{
    tpeer p[3];
    for (int i = 0; i < 3; i++)
        tpeer_start(&p[i], 0, 64 << 20);
    ncl_config cfg;
    tpeer_config(&cfg, p, 3, "group", 2000);
    rt_err e;
    ncl_client *c = ncl_open(&cfg, 0, &e);
    cr_assert_not_null(c, "%s", e.msg);
    pthread_t t[8];
    gc g[8];
    for (int i = 0; i < 8; i++) {
        g[i] = (gc){c, i, 300, 0};
        pthread_create(&t[i], NULL, committer, &g[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(g[i].fails, 0);
    }
    ncl_client_stats s;
    ncl_client_stats_get(c, &s);
    cr_assert_eq(s.commits, 2400);
    cr_assert_eq(s.next, 2400);
    /* Group commit: fewer APPEND frames than records (per peer). */
    cr_assert_lt(s.frames_sent, 7200, "frames %llu", (unsigned long long)s.frames_sent);
    ncl_close(c);
    for (int i = 0; i < 3; i++)
        tpeer_stop(&p[i]);
}

Test(client, newer_incarnation_fences_the_old_one)
{
    tpeer p[3];
    for (int i = 0; i < 3; i++)
        tpeer_start(&p[i], 0, 64 << 20);
    ncl_config cfg;
    tpeer_config(&cfg, p, 3, "fence", 500);
    rt_err e;
    ncl_client *a = ncl_open(&cfg, 0, &e);
    cr_assert_not_null(a, "%s", e.msg);
    cr_assert_eq(commit1(a, 1, 0, "a1", NULL, &e), 0, "%s", e.msg);
    /* B opens the same id: the records of A were never recovered, so it is refused... */
    ncl_client *b = ncl_open(&cfg, 0, &e);
    cr_assert_null(b);
    cr_assert_eq(e.code, ENOTEMPTY, "%s", e.msg);
    cr_assert(strstr(e.msg, "recover"), "%s", e.msg);
    /* ...but that open still raised the epoch on the peers: A is fenced. */
    int rc = commit1(a, 1, 2, "a2", NULL, &e);
    cr_assert_eq(rc, -ESTALE, "rc=%d %s", rc, e.msg);
    cr_assert(strstr(e.msg, "fenced"), "%s", e.msg);
    ncl_close(a);
    for (int i = 0; i < 3; i++)
        tpeer_stop(&p[i]);
}

Test(client, restarted_empty_peer_is_caught_up_before_counting)
{
    tpeer p[3];
    for (int i = 0; i < 3; i++)
        tpeer_start(&p[i], 0, 64 << 20);
    ncl_config cfg;
    tpeer_config(&cfg, p, 3, "catchup", 2000);
    rt_err e;
    ncl_client *c = ncl_open(&cfg, 0, &e);
    cr_assert_not_null(c, "%s", e.msg);
    char buf[32];
    for (int i = 0; i < 100; i++) {
        snprintf(buf, sizeof buf, "r%d", i);
        cr_assert_eq(commit1(c, 1, (uint64_t)i * 8, buf, NULL, &e), 0, "%s", e.msg);
    }
    cr_assert_eq(ncl_trim(c, 40, &e), 0, "%s", e.msg);
    /* Peer 2 dies and comes back empty on the same port. */
    int port = p[2].port;
    tpeer_stop(&p[2]);
    for (int i = 100; i < 150; i++) {
        snprintf(buf, sizeof buf, "r%d", i);
        cr_assert_eq(commit1(c, 1, (uint64_t)i * 8, buf, NULL, &e), 0, "%s", e.msg);
    }
    tpeer_start(&p[2], port, 64 << 20);
    wait_live(c, 3);
    /* Now the restarted peer holds every untrimmed record: [40, 150). */
    ncl_client_stats s;
    ncl_client_stats_get(c, &s);
    cr_assert_geq(s.peers[2].catch_ups, 1);
    /* Stop the two others: with the restarted one plus one... no: stop one other and
     * check that commits still succeed, which needs the restarted peer's acks. */
    tpeer_stop(&p[0]);
    for (int i = 150; i < 160; i++) {
        snprintf(buf, sizeof buf, "r%d", i);
        cr_assert_eq(commit1(c, 1, (uint64_t)i * 8, buf, NULL, &e), 0, "%s", e.msg);
    }
    ncl_close(c);
    /* Recovery reads peers 1 and 2 only and must find [40, 160) exactly. */
    tpeer_start(&p[0], p[0].port, 64 << 20); /* comes back empty too */
    ncl_recovery *r;
    cr_assert_eq(ncl_recover_begin(&cfg, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(r->start, 40);
    cr_assert_eq(r->next, 160);
    cr_assert_eq(r->nrecs, 120);
    for (size_t i = 0; i < r->nrecs; i++) {
        snprintf(buf, sizeof buf, "r%zu", i + 40);
        cr_assert_eq(r->recs[i].seq, i + 40);
        cr_assert_eq(r->recs[i].len, strlen(buf));
        cr_assert_eq(memcmp(r->recs[i].data, buf, strlen(buf)), 0);
    }
    ncl_recovery_free(r);
    for (int i = 0; i < 3; i++)
        tpeer_stop(&p[i]);
}

Test(client, recovery_returns_acknowledged_records_then_trims)
{
    tpeer p[3];
    for (int i = 0; i < 3; i++)
        tpeer_start(&p[i], 0, 64 << 20);
    ncl_config cfg;
    tpeer_config(&cfg, p, 3, "recov", 1000);
    rt_err e;
    ncl_client *c = ncl_open(&cfg, 0, &e);
    cr_assert_not_null(c, "%s", e.msg);
    cr_assert_eq(commit1(c, 7, 0, "keep-0", NULL, &e), 0);
    cr_assert_eq(commit1(c, 8, 0, "drop-1", NULL, &e), 0);
    cr_assert_eq(commit1(c, 7, 6, "keep-2", NULL, &e), 0);
    cr_assert_eq(commit1(c, 8, 6, "drop-3", NULL, &e), 0);
    /* File 8 was made durable some other way: its records become tombstones. */
    cr_assert_eq(ncl_trim_file(c, 1, 8, ncl_next_seq(c), &e), 0, "%s", e.msg);
    ncl_close(c); /* as if the process died: nothing trimmed */
    ncl_recovery *r;
    cr_assert_eq(ncl_recover_begin(&cfg, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(r->answered, 3);
    cr_assert_eq(r->owner_views, 2, "a majority is read, not every peer");
    cr_assert_eq(r->nrecs, 2);
    cr_assert_eq(r->tombstones, 2);
    cr_assert_eq(memcmp(r->recs[0].data, "keep-0", 6), 0);
    cr_assert_eq(memcmp(r->recs[1].data, "keep-2", 6), 0);
    cr_assert_eq(r->conflicts, 0);
    /* The old incarnation's epoch is fenced now. */
    cr_assert_gt(r->epoch, 1);
    cr_assert_eq(ncl_recover_finish(r, &e), 0, "%s", e.msg);
    ncl_recovery_free(r);
    /* Nothing is left: a new session opens without DISCARD and starts past the old seqs. */
    c = ncl_open(&cfg, 0, &e);
    cr_assert_not_null(c, "%s", e.msg);
    cr_assert_eq(ncl_next_seq(c), 4);
    ncl_close(c);
    /* Recovery again (nothing to do) is fine: idempotent. */
    cr_assert_eq(ncl_recover_begin(&cfg, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(r->nrecs, 0);
    ncl_recovery_free(r);
    for (int i = 0; i < 3; i++)
        tpeer_stop(&p[i]);
}

Test(client, recovery_ignores_logs_of_superseded_incarnations)
{
    /* Peer 0 keeps records of incarnation 1 that a later recovery, run without it,
     * superseded; seqs then get reused by a later session. Recovery must not mix them. */
    tpeer p[3];
    for (int i = 0; i < 3; i++)
        tpeer_start(&p[i], 0, 64 << 20);
    ncl_config cfg;
    tpeer_config(&cfg, p, 3, "owner", 500);
    rt_err e;
    ncl_client *c = ncl_open(&cfg, 0, &e);
    cr_assert_not_null(c);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(commit1(c, 1, (uint64_t)i, "old", NULL, &e), 0, "%s", e.msg);
    ncl_close(c);
    /* Recovery and a new session run while peer 0 is away. */
    tpeer_config(&cfg, p + 1, 2, "owner", 500);
    ncl_config two = cfg;
    ncl_config all;
    tpeer_config(&all, p, 3, "owner", 500);
    /* Use a 3-peer config whose first peer is unreachable: point it at a closed port. */
    all.peers.v[0].port = 1;
    ncl_recovery *r;
    cr_assert_eq(ncl_recover_begin(&all, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(r->nrecs, 6);
    cr_assert_eq(ncl_recover_finish(r, &e), 0, "%s", e.msg);
    ncl_recovery_free(r);
    c = ncl_open(&all, 0, &e);
    cr_assert_not_null(c, "%s", e.msg);
    cr_assert_eq(commit1(c, 1, 0, "new", NULL, &e), 0, "%s", e.msg);
    ncl_close(c);
    (void)two;
    /* Now all three answer: peer 0 still holds "old" at seqs 0..5 of owner 1. */
    tpeer_config(&all, p, 3, "owner", 500);
    cr_assert_eq(ncl_recover_begin(&all, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(r->answered, 3);
    cr_assert_eq(r->owner_views, 2);
    cr_assert_eq(r->nrecs, 1);
    cr_assert_eq(memcmp(r->recs[0].data, "new", 3), 0);
    ncl_recovery_free(r);
    for (int i = 0; i < 3; i++)
        tpeer_stop(&p[i]);
}

Test(client, full_peers_fail_commits_fast_and_trims_make_room)
{
    tpeer p[3];
    for (int i = 0; i < 3; i++)
        tpeer_start(&p[i], 0, 1 << 20); /* 1 MiB each */
    ncl_config cfg;
    tpeer_config(&cfg, p, 3, "full", 3000);
    rt_err e;
    ncl_client *c = ncl_open(&cfg, 0, &e);
    cr_assert_not_null(c, "%s", e.msg);
    enum { BIG = 64 * 1024 };
    char *big = malloc((size_t)BIG + 1);
    memset(big, 'x', BIG);
    big[BIG] = 0;
    int rc = 0, ok = 0;
    uint64_t t0 = rt_now_ns();
    for (int i = 0; i < 64 && rc == 0; i++) {
        rc = commit1(c, 1, (uint64_t)i * 65536, big, NULL, &e);
        ok += rc == 0;
    }
    cr_assert_eq(rc, -ENOSPC, "rc=%d %s", rc, e.msg);
    cr_assert(strstr(e.msg, "full"), "%s", e.msg);
    cr_assert_lt((rt_now_ns() - t0) / RT_MS, 2500, "did not fail fast");
    cr_assert_gt(ok, 5);
    /* Trim everything committed: the peers have room again. */
    ncl_client_stats s;
    ncl_client_stats_get(c, &s);
    cr_assert_eq(ncl_trim(c, s.next, &e), 0, "%s", e.msg);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(commit1(c, 1, 0, big, NULL, &e), 0, "after trim: %s", e.msg);
    free(big);
    ncl_close(c);
    for (int i = 0; i < 3; i++)
        tpeer_stop(&p[i]);
}

Test(client, no_majority_at_open)
{
    tpeer p[1];
    tpeer_start(&p[0], 0, 1 << 20);
    ncl_config cfg;
    tpeer_config(&cfg, p, 1, "nomaj", 300);
    cfg.peers.n = 3;
    strcpy(cfg.peers.v[1].host, "127.0.0.1");
    cfg.peers.v[1].port = 1;
    strcpy(cfg.peers.v[2].host, "127.0.0.1");
    cfg.peers.v[2].port = 2;
    rt_err e;
    ncl_client *c = ncl_open(&cfg, 0, &e);
    cr_assert_null(c);
    cr_assert_eq(e.code, EHOSTUNREACH);
    cr_assert(strstr(e.msg, "1 of 3 answered (need 2)"), "%s", e.msg);
    cr_assert(strstr(e.msg, "127.0.0.1:1"), "%s", e.msg);
    tpeer_stop(&p[0]);
}

Test(client, catch_up_of_a_nearly_full_peer_keeps_its_records)
{
    /* Peer 0 has room for the log once, not twice, and sits behind a relay that the test
     * cuts: its catch-up must neither drop what it holds nor get stuck. */
    tpeer p[3];
    tpeer_start(&p[0], 0, 160000);
    tpeer_start(&p[1], 0, 64 << 20);
    tpeer_start(&p[2], 0, 64 << 20);
    tproxy px;
    tproxy_start(&px, p[0].port);
    ncl_config cfg;
    tpeer_config(&cfg, p, 3, "tight", 1000);
    cfg.peers.v[0].port = (uint16_t)px.port;
    rt_err e;
    ncl_client *c = ncl_open(&cfg, 0, &e);
    cr_assert_not_null(c, "%s", e.msg);
    char rec[1001];
    memset(rec, 'r', 1000);
    rec[1000] = 0;
    for (int i = 0; i < 100; i++)
        cr_assert_eq(commit1(c, 1, (uint64_t)i * 1000, rec, NULL, &e), 0, "%s", e.msg);
    wait_live(c, 3);
    ncl_client_stats s;
    ncl_client_stats_get(c, &s);
    uint64_t before = s.peers[0].catch_ups;
    tproxy_cut(&px);
    /* The client notices the cut, reconnects and catches the peer up: polled (up to 10 s),
     * as how soon depends on the machine's load. */
    for (int i = 0; i < 1000 && s.peers[0].catch_ups <= before; i++) {
        usleep(10000);
        ncl_client_stats_get(c, &s);
    }
    cr_assert_gt(s.peers[0].catch_ups, before, "peer 0 was not caught up within 10 s of the cut");
    wait_live(c, 3); /* reconnected and caught up */
    /* Peer 1 goes: commits now need peer 0. */
    tpeer_stop(&p[1]);
    for (int i = 100; i < 105; i++)
        cr_assert_eq(commit1(c, 1, (uint64_t)i * 1000, rec, NULL, &e), 0, "%s", e.msg);
    ncl_close(c);
    /* Recovery from peers 0 and 2 finds all 105. */
    tpeer_start(&p[1], p[1].port, 64 << 20);
    ncl_recovery *r;
    cr_assert_eq(ncl_recover_begin(&cfg, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(r->nrecs, 105);
    ncl_recovery_free(r);
    tproxy_stop(&px);
    for (int i = 0; i < 3; i++)
        tpeer_stop(&p[i]);
}

typedef struct racer {
    ncl_config cfg;
    const char *data;
    pthread_barrier_t *go;
    int opened, committed;
} racer;

static void *race_open(void *arg)
{
    racer *r = arg;
    rt_err e;
    pthread_barrier_wait(r->go);
    ncl_client *c = ncl_open(&r->cfg, 0, &e);
    if (!c)
        return NULL;
    r->opened = 1;
    r->committed = commit1(c, 1, 0, r->data, NULL, &e) == 0;
    ncl_close(c);
    return NULL;
}

Test(client, two_incarnations_opening_at_once_never_both_commit)
{
    tpeer p[3];
    for (int i = 0; i < 3; i++)
        tpeer_start(&p[i], 0, 64 << 20);
    int both_opened = 0;
    for (int trial = 0; trial < 40; trial++) {
        char id[32];
        snprintf(id, sizeof id, "race-%d", trial);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        racer a = {.data = "from-a", .go = &go}, b = {.data = "from-b", .go = &go};
        tpeer_config(&a.cfg, p, 3, id, 500);
        b.cfg = a.cfg;
        pthread_t ta, tb;
        pthread_create(&ta, NULL, race_open, &a);
        pthread_create(&tb, NULL, race_open, &b);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&go);
        both_opened += a.opened && b.opened;
        cr_assert_leq(a.committed + b.committed, 1, "trial %d: both incarnations committed", trial);
        /* What was acknowledged is what recovery finds. */
        ncl_recovery *r;
        rt_err e;
        cr_assert_eq(ncl_recover_begin(&a.cfg, &r, &e), 0, "%s", e.msg);
        if (a.committed || b.committed) {
            cr_assert_eq(r->nrecs, 1, "trial %d", trial);
            cr_assert_eq(memcmp(r->recs[0].data, a.committed ? "from-a" : "from-b", 6), 0);
        }
        ncl_recovery_free(r);
    }
    (void)both_opened;
    for (int i = 0; i < 3; i++)
        tpeer_stop(&p[i]);
}

Test(client, a_trim_that_failed_is_not_reported_done_on_retry)
{
    tpeer p[3];
    for (int i = 0; i < 3; i++)
        tpeer_start(&p[i], 0, 64 << 20);
    ncl_config cfg;
    tpeer_config(&cfg, p, 3, "trimretry", 300);
    rt_err e;
    ncl_client *c = ncl_open(&cfg, 0, &e);
    cr_assert_not_null(c, "%s", e.msg);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(commit1(c, 9, (uint64_t)i, "x", NULL, &e), 0, "%s", e.msg);
    int port1 = p[1].port, port2 = p[2].port;
    tpeer_stop(&p[1]);
    tpeer_stop(&p[2]);
    cr_assert_eq(ncl_trim(c, 5, &e), -ETIMEDOUT, "%s", e.msg);
    /* Nothing new to drop, but the first trim has not reached a majority. */
    cr_assert_eq(ncl_trim(c, 5, &e), -ETIMEDOUT, "%s", e.msg);
    cr_assert_eq(ncl_trim_file(c, 1, 9, UINT64_MAX, &e), -ETIMEDOUT, "%s", e.msg);
    /* The peers come back (empty), are caught up, and then the retry succeeds. */
    tpeer_start(&p[1], port1, 64 << 20);
    tpeer_start(&p[2], port2, 64 << 20);
    wait_live(c, 3);
    cr_assert_eq(ncl_trim(c, 5, &e), 0, "%s", e.msg);
    ncl_close(c);
    for (int i = 0; i < 3; i++)
        tpeer_stop(&p[i]);
}
