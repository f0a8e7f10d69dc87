/* test_env.c: the typed environment parsers and the rt_env_spec loader. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rt/env.h"

Test(env, int_accepts_and_bounds)
{
    long long v;
    rt_err e;
    cr_assert_eq(rt_parse_int("42", 0, 100, &v, &e), 0);
    cr_assert_eq(v, 42);
    cr_assert_eq(rt_parse_int(" -7 ", -10, 10, &v, &e), 0);
    cr_assert_eq(v, -7);
    cr_assert_eq(rt_parse_int("-9223372036854775808", LLONG_MIN, LLONG_MAX, &v, &e), 0);
    cr_assert_eq(v, LLONG_MIN);
    cr_assert_eq(rt_parse_int("101", 0, 100, &v, &e), -EINVAL);
    cr_assert(strstr(e.msg, "out of range"), "%s", e.msg);
    cr_assert(strstr(e.msg, "from 0 to 100"), "%s", e.msg);
    const char *bad[] = {
        "",  "  ", "4x", "0x10", "1.5", "--1", "9223372036854775808", "99999999999999999999999",
        NULL};
    for (int i = 0; bad[i]; i++)
        cr_assert_eq(rt_parse_int(bad[i], LLONG_MIN, LLONG_MAX, &v, &e), -EINVAL, "'%s'", bad[i]);
}

Test(env, size_suffixes)
{
    struct {
        const char *s;
        uint64_t v;
    } ok[] = {{"0", 0},
              {"4096", 4096},
              {"64K", 65536},
              {"64k", 65536},
              {"64KiB", 65536},
              {"64kb", 65536},
              {"1M", 1 << 20},
              {"3G", 3ULL << 30},
              {"2T", 2ULL << 40},
              {" 12b ", 12},
              {"16777215T", 16777215ULL << 40}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t v = 1;
        rt_err e;
        cr_assert_eq(rt_parse_size(ok[i].s, 0, UINT64_MAX, &v, &e), 0, "'%s': %s", ok[i].s, e.msg);
        cr_assert_eq(v, ok[i].v, "'%s' gave %llu", ok[i].s, (unsigned long long)v);
    }
    const char *bad[] = {"", "K", "12Q", "-1", "1.5M", "1MM", "1 M", "16777216T", "1KiBB", NULL};
    for (int i = 0; bad[i]; i++) {
        uint64_t v;
        rt_err e;
        cr_assert_eq(rt_parse_size(bad[i], 0, UINT64_MAX, &v, &e), -EINVAL, "'%s'", bad[i]);
        cr_assert(strstr(e.msg, "accepted:"), "%s", e.msg);
    }
    uint64_t v;
    rt_err e;
    cr_assert_eq(rt_parse_size("2M", 0, 1 << 20, &v, &e), -EINVAL);
    cr_assert(strstr(e.msg, "from 0 to 1M"), "%s", e.msg);
}

Test(env, size_format_roundtrip)
{
    uint64_t vals[] = {0, 1, 1023, 1024, 1536, 65536, 3ULL << 30, (1ULL << 40) * 5, UINT64_MAX};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        char buf[32];
        uint64_t back;
        rt_format_size(vals[i], buf, sizeof buf);
        cr_assert_eq(rt_parse_size(buf, 0, UINT64_MAX, &back, NULL), 0, "%s", buf);
        cr_assert_eq(back, vals[i], "%s", buf);
    }
}

Test(env, durations)
{
    struct {
        const char *s;
        uint64_t unit, ns;
    } ok[] = {{"250", RT_MS, 250 * RT_MS},
              {"250ms", RT_NS, 250 * RT_MS},
              {"1.5s", RT_MS, 1500 * RT_MS},
              {"20us", RT_MS, 20 * RT_US},
              {"100ns", RT_S, 100},
              {"2m", RT_MS, 120 * RT_S},
              {"1h", RT_MS, 3600 * RT_S},
              {".5ms", RT_MS, 500 * RT_US},
              {"0", RT_MS, 0},
              {"1.000000001s", RT_MS, RT_S + 1},
              {"7", RT_US, 7 * RT_US},
              {"0.25h", RT_S, 900 * RT_S}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t v = 1;
        rt_err e;
        cr_assert_eq(rt_parse_duration(ok[i].s, ok[i].unit, 0, UINT64_MAX, &v, &e), 0, "'%s': %s",
                     ok[i].s, e.msg);
        cr_assert_eq(v, ok[i].ns, "'%s' gave %llu", ok[i].s, (unsigned long long)v);
    }
    const char *bad[] = {"", "ms", "1d", "-1s", "1.2.3s", "s5", "99999999999h", ".", NULL};
    for (int i = 0; bad[i]; i++) {
        uint64_t v;
        rt_err e;
        cr_assert_eq(rt_parse_duration(bad[i], RT_MS, 0, UINT64_MAX, &v, &e), -EINVAL, "'%s'",
                     bad[i]);
    }
    uint64_t v;
    rt_err e;
    cr_assert_eq(rt_parse_duration("5s", RT_MS, RT_MS, 2 * RT_S, &v, &e), -EINVAL);
    cr_assert(strstr(e.msg, "from 1ms to 2s"), "%s", e.msg);
    cr_assert(strstr(e.msg, "units of 1ms"), "%s", e.msg);
}

Test(env, bools_and_enums)
{
    bool b;
    const char *yes[] = {"1", "true", "YES", "On"}, *no[] = {"0", "False", "no", "OFF"};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(rt_parse_bool(yes[i], &b, NULL), 0);
        cr_assert(b);
        cr_assert_eq(rt_parse_bool(no[i], &b, NULL), 0);
        cr_assert(!b);
    }
    cr_assert_eq(rt_parse_bool("2", &b, NULL), -EINVAL);
    cr_assert_eq(rt_parse_bool("", &b, NULL), -EINVAL);
    static const char *const prio[] = {"hp", "be", NULL};
    int k;
    rt_err e;
    cr_assert_eq(rt_parse_enum("BE", prio, &k, &e), 0);
    cr_assert_eq(k, 1);
    cr_assert_eq(rt_parse_enum("lp", prio, &k, &e), -EINVAL);
    cr_assert(strstr(e.msg, "one of hp, be"), "%s", e.msg);
}

Test(env, hostports)
{
    rt_hostports hp;
    rt_err e;
    cr_assert_eq(rt_parse_hostports("127.0.0.1:7000, localhost:7001,[::1]:7002", 0, &hp, &e), 0,
                 "%s", e.msg);
    cr_assert_eq(hp.n, 3);
    cr_assert_str_eq(hp.v[0].host, "127.0.0.1");
    cr_assert_eq(hp.v[0].port, 7000);
    cr_assert_str_eq(hp.v[1].host, "localhost");
    cr_assert_eq(hp.v[1].port, 7001);
    cr_assert_str_eq(hp.v[2].host, "::1");
    cr_assert_eq(hp.v[2].port, 7002);
    const char *bad[] = {"",        "host",   "host:", ":80",        "h:0",
                         "h:65536", "h:80,",  ",h:80", "h:80,,h:81", "[::1:80",
                         "[zz]:80", "h o:80", "h:8o",  "[::1]80",    NULL};
    for (int i = 0; bad[i]; i++)
        cr_assert_eq(rt_parse_hostports(bad[i], 0, &hp, &e), -EINVAL, "'%s'", bad[i]);
    cr_assert_eq(rt_parse_hostports("a:1,b:2,c:3", 2, &hp, &e), -EINVAL);
    cr_assert(strstr(e.msg, "more than 2"), "%s", e.msg);
    cr_assert_eq(rt_parse_hostports("a:1,b:x", 0, &hp, &e), -EINVAL);
    cr_assert(strstr(e.msg, "entry 2"), "%s", e.msg);
}

Test(env, paths)
{
    char out[PATH_MAX];
    rt_err e;
    cr_assert_eq(rt_parse_path("/tmp/../tmp", RT_PATH_REALPATH, out, sizeof out, &e), 0);
    cr_assert_str_eq(out, "/tmp");
    cr_assert_eq(rt_parse_path("/nonexistent-dir-xyz", RT_PATH_DIR, out, sizeof out, &e), -EINVAL);
    cr_assert(strstr(e.msg, "existing directory"), "%s", e.msg);
    cr_assert_eq(rt_parse_path("/etc/hostname", RT_PATH_DIR, out, sizeof out, &e), -EINVAL);
    cr_assert_eq(rt_parse_path("/may/not/exist", 0, out, sizeof out, &e), 0);
    cr_assert_eq(rt_parse_path("", 0, out, sizeof out, &e), -EINVAL);
    rt_pathlist pl;
    cr_assert_eq(rt_parse_pathlist("/tmp:/", RT_PATH_DIR | RT_PATH_REALPATH, &pl, &e), 0);
    cr_assert_eq(pl.n, 2);
    cr_assert_str_eq(pl.v[1], "/");
    cr_assert_eq(rt_parse_pathlist("/tmp::/", RT_PATH_DIR, &pl, &e), -EINVAL);
    cr_assert(strstr(e.msg, "path 2"), "%s", e.msg);
}

static long long g_int;
static uint64_t g_size, g_dur;
static bool g_bool;
static int g_enum;
static rt_hostports g_peers;
static char g_path[PATH_MAX];
static const char *const modes[] = {"tcp", "rdma", NULL};

static const rt_env_spec specs[] = {
    {.name = "RTT_INT", .type = RT_ENV_INT, .def = "5", .min = 1, .max = 10, .dest = &g_int},
    {.name = "RTT_SIZE",
     .type = RT_ENV_SIZE,
     .def = "64K",
     .min = 0,
     .max = 1 << 30,
     .dest = &g_size},
    {.name = "RTT_TIMEOUT_MS",
     .type = RT_ENV_DURATION,
     .def = "500",
     .max = 60 * (long long)RT_S,
     .unit_ns = RT_MS,
     .dest = &g_dur},
    {.name = "RTT_BOOL", .type = RT_ENV_BOOL, .def = "no", .dest = &g_bool},
    {.name = "RTT_MODE", .type = RT_ENV_ENUM, .def = "tcp", .names = modes, .dest = &g_enum},
    {.name = "RTT_PEERS",
     .type = RT_ENV_HOSTPORTS,
     .def = "127.0.0.1:7000",
     .max = 5,
     .dest = &g_peers},
    {.name = "RTT_DIR", .type = RT_ENV_PATH, .def = NULL, .flags = RT_PATH_DIR, .dest = g_path},
};
#define NSPECS (sizeof specs / sizeof specs[0])

static void clear(void)
{
    const char *names[] = {"RTT_INT",  "RTT_SIZE",  "RTT_TIMEOUT_MS", "RTT_BOOL",
                           "RTT_MODE", "RTT_PEERS", "RTT_DIR"};
    for (size_t i = 0; i < NSPECS; i++)
        unsetenv(names[i]);
}

Test(env, load_defaults_and_overrides)
{
    clear();
    rt_err e;
    cr_assert_eq(rt_env_load(specs, NSPECS, &e), 0, "%s", e.msg);
    cr_assert_eq(g_int, 5);
    cr_assert_eq(g_size, 65536);
    cr_assert_eq(g_dur, 500 * RT_MS);
    cr_assert(!g_bool);
    cr_assert_eq(g_enum, 0);
    cr_assert_eq(g_peers.n, 1);
    setenv("RTT_INT", "9", 1);
    setenv("RTT_SIZE", "1M", 1);
    setenv("RTT_TIMEOUT_MS", "2s", 1);
    setenv("RTT_BOOL", "on", 1);
    setenv("RTT_MODE", "rdma", 1);
    setenv("RTT_PEERS", "a:1,b:2,c:3", 1);
    setenv("RTT_DIR", "/tmp", 1);
    cr_assert_eq(rt_env_load(specs, NSPECS, &e), 0, "%s", e.msg);
    cr_assert_eq(g_int, 9);
    cr_assert_eq(g_size, 1 << 20);
    cr_assert_eq(g_dur, 2 * RT_S);
    cr_assert(g_bool);
    cr_assert_eq(g_enum, 1);
    cr_assert_eq(g_peers.n, 3);
    cr_assert_str_eq(g_path, "/tmp");
    setenv("RTT_INT", "", 1); /* empty counts as unset */
    cr_assert_eq(rt_env_load(specs, NSPECS, &e), 0, "%s", e.msg);
    cr_assert_eq(g_int, 5);
    clear();
}

Test(env, load_names_variable_value_and_accepted)
{
    clear();
    rt_err e;
    setenv("RTT_SIZE", "12Q", 1);
    cr_assert_eq(rt_env_load(specs, NSPECS, &e), -EINVAL);
    cr_assert_eq(e.code, EINVAL);
    cr_assert(strstr(e.msg, "RTT_SIZE='12Q'"), "%s", e.msg);
    cr_assert(strstr(e.msg, "accepted:"), "%s", e.msg);
    unsetenv("RTT_SIZE");
    setenv("RTT_MODE", "infiniband", 1);
    cr_assert_eq(rt_env_load(specs, NSPECS, &e), -EINVAL);
    cr_assert(strstr(e.msg, "RTT_MODE='infiniband'") && strstr(e.msg, "tcp, rdma"), "%s", e.msg);
    unsetenv("RTT_MODE");
    setenv("RTT_DIR", "/no/such/dir", 1);
    cr_assert_eq(rt_env_load(specs, NSPECS, &e), -EINVAL);
    cr_assert(strstr(e.msg, "RTT_DIR='/no/such/dir'"), "%s", e.msg);
    clear();
}

Test(env, bad_default_is_reported_as_such)
{
    long long v;
    const rt_env_spec bad[] = {
        {.name = "RTT_UNSET_X", .type = RT_ENV_INT, .def = "11", .min = 0, .max = 10, .dest = &v}};
    rt_err e;
    unsetenv("RTT_UNSET_X");
    cr_assert_eq(rt_env_load(bad, 1, &e), -EINVAL);
    cr_assert(strstr(e.msg, "built-in default"), "%s", e.msg);
}

/* A spec without a destination is refused with its name, whatever its type, instead of the
 * value being written through NULL (a missing .dest once crashed a command). */
Test(env, spec_without_dest_refused)
{
    setenv("RT_TEST_NODEST", "/tmp", 1);
    rt_env_spec spec[] = {{.name = "RT_TEST_NODEST", .type = RT_ENV_PATH, .flags = RT_PATH_DIR}};
    rt_err err = {0};
    cr_assert_eq(rt_env_load(spec, 1, &err), -EINVAL);
    cr_assert(strstr(err.msg, "RT_TEST_NODEST") != NULL, "%s", err.msg);
    unsetenv("RT_TEST_NODEST");
}
