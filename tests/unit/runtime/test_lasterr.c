/* test_lasterr.c: the last-error helper: formatting (its own message as an argument, long
 * messages truncated), emptied on success only, per thread, and status names from a table. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "rt/lasterr.h"

static _Thread_local rt_lasterr err;

Test(lasterr, set_formats)
{
    rt_lasterr_set(&err, "sample %d: length %s", 17, "9000");
    cr_assert_str_eq(err.msg, "sample 17: length 9000");
}

Test(lasterr, own_message_as_argument)
{
    rt_lasterr_set(&err, "bad header at byte %d", 8);
    rt_lasterr_set(&err, "'%s': %s", "a.npy", err.msg);
    cr_assert_str_eq(err.msg, "'a.npy': bad header at byte 8");
}

Test(lasterr, long_message_truncated)
{
    char big[2 * RT_LASTERR_SIZE];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    rt_lasterr_set(&err, "%s", big);
    cr_assert_eq(strlen(err.msg), RT_LASTERR_SIZE - 1);
}

Test(lasterr, done_empties_on_success_only)
{
    rt_lasterr_set(&err, "first failure");
    cr_assert_eq(rt_lasterr_done(&err, 3), 3);
    cr_assert_str_eq(err.msg, "first failure", "a failure keeps its message");
    cr_assert_eq(rt_lasterr_done(&err, 0), 0);
    cr_assert_str_eq(err.msg, "", "a success leaves no message behind");
    rt_lasterr_set(&err, "again");
    rt_lasterr_clear(&err);
    cr_assert_str_eq(err.msg, "");
}

static void *other_thread(void *arg)
{
    (void)arg;
    rt_lasterr_set(&err, "the other thread's failure");
    return NULL;
}

Test(lasterr, one_message_per_thread)
{
    rt_lasterr_set(&err, "mine");
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, other_thread, NULL), 0);
    pthread_join(t, NULL);
    cr_assert_str_eq(err.msg, "mine");
}

enum { S_OK, S_EONE, S_ETWO, S_EHOLE, S_ELAST };
static const char *const names[] = {
    [S_OK] = "S_OK", [S_EONE] = "S_EONE", [S_ETWO] = "S_ETWO", [S_ELAST] = "S_ELAST"};

Test(lasterr, status_names)
{
    size_t n = sizeof names / sizeof names[0];
    cr_assert_str_eq(rt_status_name(names, n, S_OK, "S_UNKNOWN"), "S_OK");
    cr_assert_str_eq(rt_status_name(names, n, S_ETWO, "S_UNKNOWN"), "S_ETWO");
    cr_assert_str_eq(rt_status_name(names, n, S_ELAST, "S_UNKNOWN"), "S_ELAST");
    cr_assert_str_eq(rt_status_name(names, n, S_EHOLE, "S_UNKNOWN"), "S_UNKNOWN");
    cr_assert_str_eq(rt_status_name(names, n, S_ELAST + 1, "S_UNKNOWN"), "S_UNKNOWN");
    cr_assert_str_eq(rt_status_name(names, n, -1, "S_UNKNOWN"), "S_UNKNOWN");
}
