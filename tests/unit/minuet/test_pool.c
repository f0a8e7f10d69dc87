/* test_pool.c: mn_parts_run on its persistent workers runs every part of every step exactly
 * once and returns only when all are done: steps of 1 to MN_RUN_MAX parts back to back
 * (more parts than the pool's workers included), steps from several threads at once, a
 * part that starts parallel work of its own (on a worker and on the caller), and a forked
 * child (which has no workers until it starts new ones). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "keys.h"
#include "minuet.h"

typedef struct part {
    int *runs;  /* this part's count, incremented once per run */
    int nested; /* parts of a step to run from inside this one (0: none) */
    int *inner; /* their counts */
} part;

static void *run_part(void *arg)
{
    part *p = arg;
    if (p->nested) {
        part q[8];
        for (int i = 0; i < p->nested; i++)
            q[i] = (part){&p->inner[i], 0, NULL};
        mn_parts_run(q, sizeof q[0], p->nested, run_part);
    }
    __atomic_add_fetch(p->runs, 1, __ATOMIC_RELAXED);
    return NULL;
}

/* One step of nt parts; every part must have run exactly once when it returns. */
static void step(int nt, const char *what)
{
    int runs[MN_RUN_MAX] = {0};
    part P[MN_RUN_MAX];
    for (int i = 0; i < nt; i++)
        P[i] = (part){&runs[i], 0, NULL};
    mn_parts_run(P, sizeof P[0], nt, run_part);
    for (int i = 0; i < nt; i++)
        cr_assert_eq(runs[i], 1, "%s: %d parts: part %d ran %d times", what, nt, i, runs[i]);
}

Test(pool, every_part_once, .timeout = 60)
{
    for (int r = 0; r < 200; r++)
        for (int nt = 1; nt <= MN_RUN_MAX; nt = nt < 20 ? nt + 1 : nt * 2)
            step(nt, "back to back");
    /* Steps that alternate between many and few parts: workers that sat out a step must
     * not run a part of the next one twice. */
    for (int r = 0; r < 2000; r++)
        step(r % 2 ? 2 : 9, "alternating");
}

static void *caller(void *arg)
{
    (void)arg;
    for (int r = 0; r < 500; r++)
        step(1 + r % 5, "concurrent");
    return NULL;
}

Test(pool, callers_at_once, .timeout = 60)
{
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, caller, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
}

Test(pool, nested_steps, .timeout = 60)
{
    for (int r = 0; r < 200; r++) {
        int runs[4] = {0}, inner[4][8];
        memset(inner, 0, sizeof inner);
        part P[4];
        for (int i = 0; i < 4; i++) /* part 0 on the caller, the others on workers */
            P[i] = (part){&runs[i], 3 + i, inner[i]};
        mn_parts_run(P, sizeof P[0], 4, run_part);
        for (int i = 0; i < 4; i++) {
            cr_assert_eq(runs[i], 1, "outer part %d ran %d times", i, runs[i]);
            for (int j = 0; j < 3 + i; j++)
                cr_assert_eq(inner[i][j], 1, "part %d's inner part %d ran %d times", i, j,
                             inner[i][j]);
        }
    }
}

Test(pool, forked_child, .timeout = 60)
{
    step(4, "before fork"); /* the parent's workers exist */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int ok = 1;
        for (int r = 0; r < 100 && ok; r++) {
            int runs[5] = {0};
            part P[5];
            for (int i = 0; i < 5; i++)
                P[i] = (part){&runs[i], 0, NULL};
            mn_parts_run(P, sizeof P[0], 5, run_part);
            for (int i = 0; i < 5; i++)
                ok &= runs[i] == 1;
        }
        _exit(ok ? 0 : 1);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's steps: status %d",
              status);
    step(4, "after fork");
}
