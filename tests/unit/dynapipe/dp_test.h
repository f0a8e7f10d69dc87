/* dp_test.h: what the DynaPipe unit tests share: where the repository's data lies (tests run
 * from the repository root, or with ROOT set by tests/run) and loading the two real profiles
 * once per test binary. */
#ifndef DP_TEST_H
#define DP_TEST_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "dynapipe.h"

static inline const char *dp_test_path(const char *rel)
{
    static _Thread_local char buf[4][1024];
    static _Thread_local int k;
    const char *root = getenv("ROOT");
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", root && *root ? root : ".", rel);
    return b;
}

static inline dp_cost_model *dp_test_model(const char *name)
{
    dp_cost_model *cm = NULL;
    dp_status st = dp_cost_model_load(dp_test_path("dynapipe/data/costmodels"), name, 1, &cm);
    cr_assert_eq(st, DP_OK, "loading %s: %s", name, dp_last_error());
    return cm;
}

#endif
