/* orion-profile: builds, shows and edits Orion's profile database (ORION_PROFILE_DB).
 *
 *   orion-profile import --db DB --ncu EXPORT.csv [--ridge FLOP_PER_BYTE]
 *   orion-profile show --db DB [NAME]
 *   orion-profile set --db DB NAME GRID BLOCK compute|memory|unknown DURATION_US
 *   orion-profile merge --db DB
 *
 * import reads an Nsight Compute CSV export (`ncu --csv --print-kernel-base mangled
 * --section SpeedOfLight ...`, the details page; or `--page raw` with the FLOP and DRAM-byte
 * metrics for the roofline rule with --ridge) into DB, creating it if needed. merge folds
 * the DB.learned.PID files that ORION_LEARN=1 runs write into DB and removes them. Exit
 * status: 0 ok, 1 error (a message says which file and line), 2 usage.
 */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "profile.h"

static const char usage[] =
    "usage: orion-profile import --db DB --ncu EXPORT.csv [--ridge FLOP_PER_BYTE]\n"
    "       orion-profile show --db DB [NAME]\n"
    "       orion-profile set --db DB NAME GRID BLOCK compute|memory|unknown DURATION_US\n"
    "       orion-profile merge --db DB\n"
    "GRID and BLOCK are X,Y,Z or * (any shape). import classifies each kernel by the roofline\n"
    "rule when --ridge (the device's peak FLOP/s over its DRAM bytes/s) is given and the\n"
    "export has FLOP and DRAM-byte metrics, else by SM throughput %% against DRAM %%.\n";

static int fail(const rt_err *err)
{
    fprintf(stderr, "orion-profile: %s\n", err->msg);
    return 1;
}

static int load_or_new(orion_pdb *db, const char *path, rt_err *err)
{
    if (access(path, F_OK) != 0 && errno == ENOENT)
        return 0; /* a new database */
    return orion_pdb_load(db, path, err);
}

static int read_all(const char *path, char **buf, size_t *len, rt_err *err)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return rt_err_sys(err, "%s", path);
    size_t cap = 1 << 16;
    *len = 0;
    *buf = malloc(cap);
    for (size_t n; *buf && (n = fread(*buf + *len, 1, cap - *len, f)) > 0;) {
        *len += n;
        if (*len == cap) {
            char *nb = realloc(*buf, cap *= 2);
            if (!nb)
                free(*buf);
            *buf = nb;
        }
    }
    fclose(f);
    return *buf ? 0 : rt_err_set(err, ENOMEM, "%s: out of memory", path);
}

static void show(const orion_pdb *db, const char *name)
{
    printf("%-48s %-14s %-14s %-8s %12s\n", "kernel", "grid", "block", "class", "duration_us");
    for (size_t i = 0; i < db->n; i++) {
        const orion_pentry *e = &db->e[i];
        if (name && strcmp(name, e->name) != 0)
            continue;
        char g[40] = "*", b[40] = "*";
        if (e->grid[0])
            snprintf(g, sizeof g, "%u,%u,%u", e->grid[0], e->grid[1], e->grid[2]);
        if (e->block[0])
            snprintf(b, sizeof b, "%u,%u,%u", e->block[0], e->block[1], e->block[2]);
        printf("%-48s %-14s %-14s %-8s %12.3f\n", e->name, g, b, orion_profile_name(e->profile),
               e->dur_us);
    }
}

/* Fold DB.learned.* beside DB into db (learned durations replace; a class stays). */
static int merge(orion_pdb *db, const char *path, rt_err *err)
{
    char dirbuf[4096], basebuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", path);
    snprintf(basebuf, sizeof basebuf, "%s", path);
    const char *dir = dirname(dirbuf), *base = basename(basebuf);
    char prefix[4200];
    snprintf(prefix, sizeof prefix, "%s.learned.", base);
    DIR *dp = opendir(dir);
    if (!dp)
        return rt_err_sys(err, "%s", dir);
    int files = 0;
    for (struct dirent *de; (de = readdir(dp));) {
        if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
            continue;
        char lp[8400];
        snprintf(lp, sizeof lp, "%s/%s", dir, de->d_name);
        orion_pdb l = {0};
        if (orion_pdb_load(&l, lp, err) != 0) {
            closedir(dp);
            orion_pdb_free(&l);
            return -1;
        }
        for (size_t i = 0; i < l.n; i++) {
            const orion_pentry *e = &l.e[i];
            const orion_pentry *old = orion_pdb_find(db, e->name, e->grid, e->block);
            orion_profile p = old && old->profile != ORION_UNKNOWN ? old->profile : e->profile;
            if (orion_pdb_put(db, e->name, e->grid, e->block, p, e->dur_us) != 0) {
                closedir(dp);
                orion_pdb_free(&l);
                return rt_err_set(err, ENOMEM, "out of memory");
            }
        }
        orion_pdb_free(&l);
        unlink(lp);
        files++;
    }
    closedir(dp);
    printf("merged %d learned file(s) into %s (%zu kernels)\n", files, path, db->n);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1], *db_path = NULL, *ncu = NULL;
    double ridge = 0;
    char *pos[8];
    int npos = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--db") && i + 1 < argc)
            db_path = argv[++i];
        else if (!strcmp(argv[i], "--ncu") && i + 1 < argc)
            ncu = argv[++i];
        else if (!strcmp(argv[i], "--ridge") && i + 1 < argc) {
            char *end;
            ridge = strtod(argv[++i], &end);
            if (*end || !(ridge > 0)) {
                fprintf(stderr, "orion-profile: --ridge: a positive FLOP/byte ratio\n");
                return 2;
            }
        } else if (argv[i][0] != '-' && npos < 8)
            pos[npos++] = argv[i];
        else {
            fprintf(stderr, "orion-profile: unexpected argument '%s'\n%s", argv[i], usage);
            return 2;
        }
    }
    if (!db_path) {
        fprintf(stderr, "orion-profile: --db is required\n%s", usage);
        return 2;
    }
    orion_pdb db = {0};
    rt_err err = {0};
    int rc = 0;
    if (!strcmp(cmd, "import")) {
        char *buf = NULL;
        size_t len = 0;
        if (!ncu) {
            fprintf(stderr, "orion-profile: import needs --ncu EXPORT.csv\n");
            return 2;
        }
        if (load_or_new(&db, db_path, &err) != 0 || read_all(ncu, &buf, &len, &err) != 0)
            return fail(&err);
        int n = orion_pdb_from_ncu(&db, buf, len, ridge, &err);
        free(buf);
        if (n < 0 || orion_pdb_save(&db, db_path, &err) != 0)
            return fail(&err);
        printf("imported %d kernel profiles from %s into %s (%zu kernels)\n", n, ncu, db_path,
               db.n);
    } else if (!strcmp(cmd, "show")) {
        if (orion_pdb_load(&db, db_path, &err) != 0)
            return fail(&err);
        show(&db, npos ? pos[0] : NULL);
    } else if (!strcmp(cmd, "set")) {
        if (npos != 5) {
            fprintf(stderr, "orion-profile: set NAME GRID BLOCK CLASS DURATION_US\n");
            return 2;
        }
        char line[4096];
        snprintf(line, sizeof line, "# orion-profile 1\n%s\t%s\t%s\t%s\t%s\n", pos[0], pos[1],
                 pos[2], pos[3], pos[4]);
        orion_pdb one = {0};
        if (load_or_new(&db, db_path, &err) != 0 ||
            orion_pdb_parse(&one, line, strlen(line), "the arguments", &err) != 0)
            return fail(&err);
        const orion_pentry *e = &one.e[0];
        if (orion_pdb_put(&db, e->name, e->grid, e->block, e->profile, e->dur_us) != 0 ||
            orion_pdb_save(&db, db_path, &err) != 0)
            rc = fail(&err);
        orion_pdb_free(&one);
    } else if (!strcmp(cmd, "merge")) {
        if (load_or_new(&db, db_path, &err) != 0 || merge(&db, db_path, &err) != 0 ||
            orion_pdb_save(&db, db_path, &err) != 0)
            return fail(&err);
    } else {
        fprintf(stderr, "orion-profile: unknown command '%s'\n%s", cmd, usage);
        return 2;
    }
    orion_pdb_free(&db);
    return rc;
}
