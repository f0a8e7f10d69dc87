/* test_policy.c: Orion's policy as a pure function over board state: every rule and the
 * edges of each threshold; and the board itself (slots, the summed view, the duration
 * budget, dead-slot reclaim, a board of another version refused). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "board.h"
#include "policy.h"

static const orion_limits lim = {.sm_threshold = 100, .dur_threshold_us = 50};

static orion_verdict go(orion_view v, orion_profile p, uint32_t sms)
{
    orion_kernel k = {.profile = p, .sm_need = sms, .dur_us = 10};
    return orion_policy(&v, &k, &lim);
}

Test(policy, no_hp_in_flight_only_the_duration_rule)
{
    orion_view v = {.be_inflight_us = 49}; /* any profile, any SM need */
    cr_assert_eq(go(v, ORION_COMPUTE, 1000), ORION_GO);
    v.be_inflight_us = 50; /* but BE work does not pile up while HP is idle */
    cr_assert_eq(go(v, ORION_COMPUTE, 1), ORION_WAIT_DURATION);
}

Test(policy, profiles_must_complement)
{
    orion_view comp = {.hp_inflight = 2, .hp_sms = 10, .hp_compute = 2};
    orion_view mem = {.hp_inflight = 1, .hp_sms = 10, .hp_memory = 1};
    orion_view mixed = {.hp_inflight = 2, .hp_sms = 10, .hp_compute = 1, .hp_memory = 1};
    orion_view unk = {.hp_inflight = 2, .hp_sms = 10, .hp_compute = 1, .hp_unknown = 1};
    cr_assert_eq(go(comp, ORION_MEMORY, 10), ORION_GO);
    cr_assert_eq(go(comp, ORION_COMPUTE, 10), ORION_WAIT_PROFILE);
    cr_assert_eq(go(mem, ORION_COMPUTE, 10), ORION_GO);
    cr_assert_eq(go(mem, ORION_MEMORY, 10), ORION_WAIT_PROFILE);
    cr_assert_eq(go(mixed, ORION_MEMORY, 10), ORION_WAIT_PROFILE, "no complement to both");
    cr_assert_eq(go(mixed, ORION_COMPUTE, 10), ORION_WAIT_PROFILE);
    cr_assert_eq(go(mixed, ORION_UNKNOWN, 10), ORION_GO, "an unknown BE kernel is let through");
    cr_assert_eq(go(unk, ORION_COMPUTE, 10), ORION_GO, "an unknown HP kernel: benefit of doubt");
}

Test(policy, sm_threshold_edges)
{
    orion_view v = {.hp_inflight = 1, .hp_sms = 60, .hp_compute = 1};
    cr_assert_eq(go(v, ORION_MEMORY, 40), ORION_GO, "60 + 40 = 100: at the threshold");
    cr_assert_eq(go(v, ORION_MEMORY, 41), ORION_WAIT_SMS, "101 > 100");
    orion_view huge = {.hp_inflight = 1, .hp_sms = UINT32_MAX, .hp_compute = 1};
    cr_assert_eq(go(huge, ORION_MEMORY, UINT32_MAX), ORION_WAIT_SMS, "no overflow");
}

Test(policy, duration_threshold_edges)
{
    orion_view v = {.hp_inflight = 1, .hp_sms = 10, .hp_memory = 1, .be_inflight_us = 49};
    cr_assert_eq(go(v, ORION_COMPUTE, 10), ORION_GO, "49 < 50");
    v.be_inflight_us = 50;
    cr_assert_eq(go(v, ORION_COMPUTE, 10), ORION_WAIT_DURATION, "50 is not under 50");
}

Test(policy, first_failing_rule_is_the_verdict)
{
    orion_view v = {.hp_inflight = 1, .hp_sms = 99, .hp_compute = 1, .be_inflight_us = 99};
    cr_assert_eq(go(v, ORION_COMPUTE, 50), ORION_WAIT_PROFILE);
    cr_assert_eq(go(v, ORION_MEMORY, 50), ORION_WAIT_SMS);
    cr_assert_eq(go(v, ORION_MEMORY, 1), ORION_WAIT_DURATION);
    cr_assert_str_eq(orion_verdict_name(ORION_WAIT_SMS), "sms");
}

/* ---- the board ------------------------------------------------------------------------------- */

static char group[64];

static void fresh_group(void)
{
    snprintf(group, sizeof group, "test%ld", (long)getpid());
    char name[128];
    snprintf(name, sizeof name, "orion.%u.%s", (unsigned)getuid(), group);
    rt_shm_unlink(name);
}

static void drop_group(void)
{
    char name[128];
    snprintf(name, sizeof name, "orion.%u.%s", (unsigned)getuid(), group);
    rt_shm_unlink(name);
}

Test(board, view_sums_slots_and_budget_follows_hp_latency)
{
    fresh_group();
    orion_board_handle a, b;
    rt_err err = {0};
    cr_assert_eq(orion_board_attach(&a, group, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(orion_board_attach(&b, group, 0, &err), 0, "%s", err.msg);
    cr_assert_neq(a.mine, b.mine);
    atomic_store(&a.mine->hp_inflight, 2);
    atomic_store(&a.mine->hp_sms, 30);
    atomic_store(&a.mine->hp_compute, 2);
    atomic_store(&b.mine->be_inflight_us, 70);
    orion_view v;
    orion_board_view(a.b, &v);
    cr_assert(v.hp_inflight == 2 && v.hp_sms == 30 && v.hp_compute == 2 && v.be_inflight_us == 70);
    cr_assert_eq(orion_board_dur_budget_us(a.b, 250), 250, "nothing measured: the fallback");
    atomic_store(&a.mine->hp_request_ns, 4000000); /* 4 ms requests: 2.5 % is 100 µs */
    cr_assert_eq(orion_board_dur_budget_us(a.b, 250), 100);
    orion_board_detach(&b);
    orion_board_detach(&a);
    drop_group();
}

Test(board, dead_client_is_reclaimed)
{
    fresh_group();
    pid_t pid = fork();
    if (pid == 0) { /* an HP client dies holding SMs */
        orion_board_handle h;
        if (orion_board_attach(&h, group, 1, NULL) != 0)
            _exit(1);
        atomic_store(&h.mine->hp_inflight, 1);
        atomic_store(&h.mine->hp_sms, 80);
        kill(getpid(), SIGKILL);
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status), "the child did not die as planned");
    orion_board_handle me;
    rt_err err = {0};
    cr_assert_eq(orion_board_attach(&me, group, 0, &err), 0, "%s", err.msg);
    orion_view v;
    orion_board_view(me.b, &v);
    cr_assert_eq(v.hp_inflight, 0, "the dead client's kernels still count");
    cr_assert_eq(atomic_load(&me.b->reclaimed), 1);
    orion_board_detach(&me);
    drop_group();
}

Test(board, another_version_is_refused)
{
    fresh_group();
    char name[128];
    snprintf(name, sizeof name, "orion.%u.%s", (unsigned)getuid(), group);
    rt_shm s;
    rt_err err = {0};
    cr_assert_eq(rt_shm_open(&s, name, ORION_BOARD_MAGIC, ORION_BOARD_VERSION + 1,
                             sizeof(orion_board), NULL, NULL, &err),
                 0, "%s", err.msg);
    rt_shm_close(&s);
    orion_board_handle h;
    cr_assert_lt(orion_board_attach(&h, group, 0, &err), 0);
    cr_assert(strstr(err.msg, "version"), "%s", err.msg);
    drop_group();
}
