/* test_profile.c: Orion's profile database (parse, exact shape before any-shape, save and
 * load back, malformed lines named with file and line) and the Nsight Compute CSV reader
 * (the details page, the raw page with the roofline rule, units, bad exports). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "profile.h"

static const uint32_t g128[3] = {128, 1, 1}, b256[3] = {256, 1, 1}, g64[3] = {64, 1, 1};

Test(pdb, exact_shape_wins_over_any)
{
    const char text[] = "# orion-profile 1\n"
                        "k1\t*\t*\tmemory\t12.5\n"
                        "k1\t128,1,1\t256,1,1\tcompute\t40\n"
                        "k2\t*\t*\tunknown\t-1\n";
    orion_pdb db = {0};
    rt_err err = {0};
    cr_assert_eq(orion_pdb_parse(&db, text, strlen(text), "t", &err), 0, "%s", err.msg);
    const orion_pentry *e = orion_pdb_find(&db, "k1", g128, b256);
    cr_assert(e && e->profile == ORION_COMPUTE && e->dur_us == 40);
    e = orion_pdb_find(&db, "k1", g64, b256);
    cr_assert(e && e->profile == ORION_MEMORY && e->dur_us == 12.5, "any-shape fallback");
    e = orion_pdb_find(&db, "k2", g64, b256);
    cr_assert(e && e->profile == ORION_UNKNOWN && e->dur_us < 0);
    cr_assert_null(orion_pdb_find(&db, "k3", g64, b256));
    /* Saved and loaded back: the same answers. */
    char path[64];
    snprintf(path, sizeof path, "/tmp/orion-pdb.%ld", (long)getpid());
    cr_assert_eq(orion_pdb_save(&db, path, &err), 0, "%s", err.msg);
    orion_pdb back = {0};
    cr_assert_eq(orion_pdb_load(&back, path, &err), 0, "%s", err.msg);
    cr_assert_eq(back.n, 3);
    e = orion_pdb_find(&back, "k1", g128, b256);
    cr_assert(e && e->profile == ORION_COMPUTE && e->dur_us == 40);
    unlink(path);
    orion_pdb_free(&db);
    orion_pdb_free(&back);
}

static void refused(const char *text, const char *needle)
{
    orion_pdb db = {0};
    rt_err err = {0};
    cr_assert_lt(orion_pdb_parse(&db, text, strlen(text), "db.tsv", &err), 0, "accepted: %s", text);
    cr_assert(strstr(err.msg, needle), "'%s' not in '%s'", needle, err.msg);
    orion_pdb_free(&db);
}

Test(pdb, malformed_files_are_named)
{
    refused("", "empty");
    refused("name\tgrid\n", "db.tsv:1: not an Orion profile database");
    refused("# orion-profile 1\nk\t1,1,1\t1,1,1\tcompute\n", "db.tsv:2: 4 fields");
    refused("# orion-profile 1\nk\t1,1\t1,1,1\tcompute\t3\n", "db.tsv:2: grid '1,1'");
    refused("# orion-profile 1\nk\t0,1,1\t1,1,1\tcompute\t3\n", "grid '0,1,1'");
    refused("# orion-profile 1\nk\t*\t*\tfast\t3\n", "class 'fast'");
    refused("# orion-profile 1\nk\t*\t*\tmemory\t-3\n", "duration '-3'");
    refused("# orion-profile 1\nk\t*\t*\tmemory\tnan\n", "duration 'nan'");
    orion_pdb db = {0};
    rt_err err = {0};
    cr_assert_lt(orion_pdb_load(&db, "/nonexistent/orion.db", &err), 0);
    cr_assert(strstr(err.msg, "/nonexistent/orion.db"), "%s", err.msg);
}

Test(ncu, details_page)
{
    const char csv[] =
        "==PROF== Connected to process 1\n"
        "\"ID\",\"Process ID\",\"Kernel Name\",\"Block Size\",\"Grid Size\",\"Section Name\","
        "\"Metric Name\",\"Metric Unit\",\"Metric Value\"\n"
        "\"0\",\"1\",\"gemm\",\"(256, 1, 1)\",\"(128, 1, 1)\",\"SOL\",\"DRAM Throughput\",\"%\","
        "\"12.5\"\n"
        "\"0\",\"1\",\"gemm\",\"(256, 1, 1)\",\"(128, 1, 1)\",\"SOL\",\"Duration\",\"msecond\","
        "\"1.50\"\n"
        "\"0\",\"1\",\"gemm\",\"(256, 1, 1)\",\"(128, 1, 1)\",\"SOL\",\"Compute (SM) Throughput\","
        "\"%\",\"88.1\"\n"
        "\"1\",\"1\",\"copy, \"\"v2\"\"\",\"(256, 1, 1)\",\"(64, 1, 1)\",\"SOL\",\"DRAM "
        "Throughput\","
        "\"%\",\"91\"\n"
        "\"1\",\"1\",\"copy, \"\"v2\"\"\",\"(256, 1, 1)\",\"(64, 1, 1)\",\"SOL\",\"Duration\","
        "\"usecond\",\"1,234.5\"\n"
        "\"1\",\"1\",\"copy, \"\"v2\"\"\",\"(256, 1, 1)\",\"(64, 1, 1)\",\"SOL\",\"Compute (SM) "
        "Throughput\",\"%\",\"20\"\n";
    orion_pdb db = {0};
    rt_err err = {0};
    cr_assert_eq(orion_pdb_from_ncu(&db, csv, strlen(csv), 0, &err), 2, "%s", err.msg);
    const orion_pentry *e = orion_pdb_find(&db, "gemm", g128, b256);
    cr_assert(e && e->profile == ORION_COMPUTE, "gemm");
    cr_assert_float_eq(e->dur_us, 1500, 1e-6);
    e = orion_pdb_find(&db, "copy, \"v2\"", g64, b256);
    cr_assert(e && e->profile == ORION_MEMORY, "a quoted name with a comma");
    cr_assert_float_eq(e->dur_us, 1234.5, 1e-6);
    orion_pdb_free(&db);
}

Test(ncu, raw_page_roofline)
{
    /* Intensity 2 flop/byte: memory-bound under a ridge of 10, compute-bound under 1, even
     * though its SM % is the higher one. */
    const char csv[] =
        "\"Kernel Name\",\"Grid Size\",\"Block Size\",\"gpu__time_duration.sum\","
        "\"sm__throughput.avg.pct_of_peak_sustained_elapsed\","
        "\"dram__throughput.avg.pct_of_peak_sustained_elapsed\",\"dram__bytes.sum\","
        "\"smsp__sass_thread_inst_executed_op_ffma_pred_on.sum\"\n"
        "\"\",\"\",\"\",\"nsecond\",\"%\",\"%\",\"byte\",\"inst\"\n"
        "\"k\",\"(128, 1, 1)\",\"(256, 1, 1)\",\"20,000\",\"70\",\"30\",\"1000\",\"1000\"\n";
    orion_pdb db = {0};
    rt_err err = {0};
    cr_assert_eq(orion_pdb_from_ncu(&db, csv, strlen(csv), 10, &err), 1, "%s", err.msg);
    const orion_pentry *e = orion_pdb_find(&db, "k", g128, b256);
    cr_assert(e && e->profile == ORION_MEMORY);
    cr_assert_float_eq(e->dur_us, 20, 1e-9);
    orion_pdb_free(&db);
    cr_assert_eq(orion_pdb_from_ncu(&db, csv, strlen(csv), 1, &err), 1);
    cr_assert_eq(orion_pdb_find(&db, "k", g128, b256)->profile, ORION_COMPUTE);
    orion_pdb_free(&db);
    cr_assert_eq(orion_pdb_from_ncu(&db, csv, strlen(csv), 0, &err), 1);
    cr_assert_eq(orion_pdb_find(&db, "k", g128, b256)->profile, ORION_COMPUTE,
                 "SM %% above DRAM %%");
    orion_pdb_free(&db);
}

Test(ncu, bad_exports)
{
    orion_pdb db = {0};
    rt_err err = {0};
    cr_assert_lt(orion_pdb_from_ncu(&db, "", 0, 0, &err), 0);
    cr_assert(strstr(err.msg, "no header"), "%s", err.msg);
    const char nocol[] = "\"Kernel Name\",\"Foo\"\n\"k\",\"1\"\n";
    cr_assert_lt(orion_pdb_from_ncu(&db, nocol, strlen(nocol), 0, &err), 0);
    cr_assert(strstr(err.msg, "missing columns"), "%s", err.msg);
    const char baddim[] = "\"ID\",\"Kernel Name\",\"Block Size\",\"Grid Size\",\"Metric Name\","
                          "\"Metric Unit\",\"Metric Value\"\n"
                          "\"0\",\"k\",\"(x)\",\"(1, 1, 1)\",\"Duration\",\"usecond\",\"3\"\n";
    cr_assert_lt(orion_pdb_from_ncu(&db, baddim, strlen(baddim), 0, &err), 0);
    cr_assert(strstr(err.msg, "kernel k"), "%s", err.msg);
    orion_pdb_free(&db);
}

/* ncu prints launch shapes as "(X, Y, Z)" and, in its default number format, puts the locale's
 * thousands separators into large dimensions ("(5,376, 1, 1)"), as it does into metric values
 * ("1,234.5"). Both forms, and the compact "(X,Y,Z)", give the same shape. */
Test(ncu, shapes_with_thousands_separators)
{
    static const char *const forms[][2] = {
        {"(5376, 1, 1)", "(1024, 1, 1)"},
        {"(5,376, 1, 1)", "(1,024, 1, 1)"},
        {"(5376,1,1)", "(1024,1,1)"},
    };
    const uint32_t grid[3] = {5376, 1, 1}, block[3] = {1024, 1, 1};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char csv[1024];
        snprintf(csv, sizeof csv,
                 "\"ID\",\"Kernel Name\",\"Block Size\",\"Grid Size\",\"Metric Name\","
                 "\"Metric Unit\",\"Metric Value\"\n"
                 "\"0\",\"k\",\"%s\",\"%s\",\"Duration\",\"usecond\",\"2,500\"\n",
                 forms[i][1], forms[i][0]);
        orion_pdb db = {0};
        rt_err err = {0};
        cr_assert_eq(orion_pdb_from_ncu(&db, csv, strlen(csv), 0, &err), 1, "%s: %s", forms[i][0],
                     err.msg);
        const orion_pentry *e = orion_pdb_find(&db, "k", grid, block);
        cr_assert(e, "grid %s block %s: not found as 5376,1,1 / 1024,1,1", forms[i][0],
                  forms[i][1]);
        cr_assert_float_eq(e->dur_us, 2500, 1e-9);
        orion_pdb_free(&db);
    }
    /* Not a shape: a group of other than three digits after a separator, four dimensions. */
    static const char *const bad[] = {"(5,37, 1, 1)", "(1, 1, 1, 1)", "(0, 1, 1)", "(1,,1, 1)"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char csv[1024];
        snprintf(csv, sizeof csv,
                 "\"ID\",\"Kernel Name\",\"Block Size\",\"Grid Size\",\"Metric Name\","
                 "\"Metric Unit\",\"Metric Value\"\n"
                 "\"0\",\"k\",\"(1, 1, 1)\",\"%s\",\"Duration\",\"usecond\",\"3\"\n",
                 bad[i]);
        orion_pdb db = {0};
        rt_err err = {0};
        cr_assert_lt(orion_pdb_from_ncu(&db, csv, strlen(csv), 0, &err), 0, "%s accepted", bad[i]);
        orion_pdb_free(&db);
    }
}
