/* profile.c: Orion's profile database and the Nsight Compute CSV reader (see profile.h).
 *
 * Sections: the database (parse, save, put, find), CSV fields, the ncu reader.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "profile.h"

/* ---- the database ------------------------------------------------------------------------ */

static int cmp_entry(const void *a, const void *b)
{
    const orion_pentry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    c = memcmp(x->grid, y->grid, sizeof x->grid);
    return c ? c : memcmp(x->block, y->block, sizeof x->block);
}

/* The index of the first entry not below key: the entries are kept in cmp_entry order
 * (orion_pdb_put inserts in place), so lookups never reorder them, and a database that the
 * shim's launching threads read concurrently is never written by a lookup. */
static size_t lower_bound(const orion_pdb *db, const orion_pentry *key)
{
    size_t lo = 0, hi = db->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_entry(&db->e[mid], key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static orion_pentry key_of(const char *name, const uint32_t grid[3], const uint32_t block[3])
{
    orion_pentry key = {.name = (char *)name};
    memcpy(key.grid, grid, sizeof key.grid); /* copies: grid may point into the array */
    memcpy(key.block, block, sizeof key.block);
    return key;
}

static const orion_pentry *find_exact(const orion_pdb *db, const orion_pentry *key)
{
    size_t i = lower_bound(db, key);
    return i < db->n && cmp_entry(&db->e[i], key) == 0 ? &db->e[i] : NULL;
}

int orion_pdb_put(orion_pdb *db, const char *name, const uint32_t grid[3], const uint32_t block[3],
                  orion_profile p, double dur_us)
{
    orion_pentry key = key_of(name, grid, block);
    size_t i = lower_bound(db, &key);
    if (i < db->n && cmp_entry(&db->e[i], &key) == 0) {
        db->e[i].profile = p;
        db->e[i].dur_us = dur_us;
        return 0;
    }
    if (db->n == db->cap) {
        size_t cap = db->cap ? 2 * db->cap : 64;
        orion_pentry *ne = realloc(db->e, cap * sizeof *ne);
        if (!ne)
            return -ENOMEM;
        db->e = ne;
        db->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    memmove(&db->e[i + 1], &db->e[i], (db->n - i) * sizeof *db->e);
    db->n++;
    key.name = copy;
    key.profile = p;
    key.dur_us = dur_us;
    db->e[i] = key;
    return 0;
}

const orion_pentry *orion_pdb_find(const orion_pdb *db, const char *name, const uint32_t grid[3],
                                   const uint32_t block[3])
{
    static const uint32_t any[3] = {ORION_ANY, ORION_ANY, ORION_ANY};
    orion_pentry key = key_of(name, grid, block);
    const orion_pentry *e = find_exact(db, &key);
    if (e)
        return e;
    key = key_of(name, any, any);
    return find_exact(db, &key);
}

void orion_pdb_free(orion_pdb *db)
{
    for (size_t i = 0; i < db->n; i++)
        free(db->e[i].name);
    free(db->e);
    memset(db, 0, sizeof *db);
}

/* "128,1,1" (each 1..2^31) or "*" (any). */
static bool parse_dim(const char *s, uint32_t d[3])
{
    if (!strcmp(s, "*")) {
        d[0] = d[1] = d[2] = ORION_ANY;
        return true;
    }
    for (int i = 0; i < 3; i++) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || errno || v < 1 || v > 0x7fffffffUL || *end != (i < 2 ? ',' : '\0'))
            return false;
        d[i] = (uint32_t)v;
        s = end + 1;
    }
    return true;
}

static bool parse_profile(const char *s, orion_profile *p)
{
    static const char *const names[] = {"unknown", "compute", "memory"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, names[i])) {
            *p = (orion_profile)i;
            return true;
        }
    return false;
}

int orion_pdb_parse(orion_pdb *db, const char *text, size_t len, const char *path, rt_err *err)
{
    size_t lineno = 0;
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        lineno++;
        char line[4096];
        if (n >= sizeof line)
            return rt_err_set(err, EINVAL, "%s:%zu: line longer than %zu bytes", path, lineno,
                              sizeof line - 1);
        memcpy(line, p, n);
        line[n] = '\0';
        p += n + (nl ? 1 : 0);
        if (n && line[n - 1] == '\r')
            line[--n] = '\0';
        if (lineno == 1 && strcmp(line, "# orion-profile 1") != 0)
            return rt_err_set(
                err, EINVAL,
                "%s:1: not an Orion profile database (expected the line '# orion-profile 1'; orion-profile writes one)",
                path);
        if (n == 0 || line[0] == '#')
            continue;
        char *f[6], *save = NULL;
        int nf = 0;
        for (char *t = strtok_r(line, "\t", &save); t && nf < 6; t = strtok_r(NULL, "\t", &save))
            f[nf++] = t;
        uint32_t grid[3], block[3];
        orion_profile prof;
        char *dend = NULL;
        double dur = nf == 5 ? strtod(f[4], &dend) : 0;
        if (nf != 5)
            return rt_err_set(
                err, EINVAL,
                "%s:%zu: %d fields; expected 5 tab-separated: name, grid, block, compute|memory|unknown, duration_us",
                path, lineno, nf);
        if (!parse_dim(f[1], grid) || !parse_dim(f[2], block))
            return rt_err_set(err, EINVAL, "%s:%zu: grid '%s' / block '%s': expected X,Y,Z or *",
                              path, lineno, f[1], f[2]);
        if (!parse_profile(f[3], &prof))
            return rt_err_set(err, EINVAL,
                              "%s:%zu: class '%s': expected compute, memory or unknown", path,
                              lineno, f[3]);
        if (dend == f[4] || *dend || !isfinite(dur) || (dur < 0 && dur != -1))
            return rt_err_set(err, EINVAL,
                              "%s:%zu: duration '%s': expected microseconds >= 0 (or -1: unknown)",
                              path, lineno, f[4]);
        if (orion_pdb_put(db, f[0], grid, block, prof, dur) != 0)
            return rt_err_set(err, ENOMEM, "%s: out of memory", path);
    }
    if (lineno == 0)
        return rt_err_set(err, EINVAL, "%s: empty file (expected '# orion-profile 1')", path);
    return 0;
}

int orion_pdb_load(orion_pdb *db, const char *path, rt_err *err)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return rt_err_sys(err, "profile database %s", path);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 > cap) {
            char *nb = realloc(buf, cap = cap ? 2 * cap : 131072);
            if (!nb) {
                free(buf);
                fclose(f);
                return rt_err_set(err, ENOMEM, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    int rc = bad ? rt_err_set(err, EIO, "%s: read error", path)
                 : orion_pdb_parse(db, buf ? buf : "", len, path, err);
    free(buf);
    return rc;
}

static void put_dim(FILE *f, const uint32_t d[3])
{
    if (d[0] == ORION_ANY)
        fputc('*', f);
    else
        fprintf(f, "%u,%u,%u", d[0], d[1], d[2]);
}

int orion_pdb_save(const orion_pdb *db, const char *path, rt_err *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "we");
    if (!f)
        return rt_err_sys(err, "cannot write %s", tmp);
    fprintf(f, "# orion-profile 1\n# name\tgrid\tblock\tclass\tduration_us\n");
    for (size_t i = 0; i < db->n; i++) {
        const orion_pentry *e = &db->e[i];
        fprintf(f, "%s\t", e->name);
        put_dim(f, e->grid);
        fputc('\t', f);
        put_dim(f, e->block);
        fprintf(f, "\t%s\t%.3f\n", orion_profile_name(e->profile),
                e->dur_us < 0 ? -1.0 : e->dur_us);
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        int rc = rt_err_sys(err, "cannot write %s", path);
        unlink(tmp);
        return rc;
    }
    return 0;
}

/* ---- CSV fields -------------------------------------------------------------------------- */

#define CSV_MAX_FIELDS 512

typedef struct csv_row {
    char *f[CSV_MAX_FIELDS];
    int n;
} csv_row;

/* Split one CSV record starting at *p (quoted fields, "" inside quotes, newlines inside
 * quotes) into row, unescaping in place into buf (at least as long as the text). Returns
 * false at the end of the text or on a record with too many fields. */
static bool csv_next(const char **p, const char *end, char *buf, csv_row *row)
{
    row->n = 0;
    if (*p >= end)
        return false;
    char *o = buf;
    for (;;) {
        if (row->n == CSV_MAX_FIELDS)
            return false;
        row->f[row->n++] = o;
        if (*p < end && **p == '"') {
            (*p)++;
            while (*p < end) {
                if (**p == '"' && *p + 1 < end && (*p)[1] == '"') {
                    *o++ = '"';
                    *p += 2;
                } else if (**p == '"') {
                    (*p)++;
                    break;
                } else {
                    *o++ = *(*p)++;
                }
            }
        }
        while (*p < end && **p != ',' && **p != '\n' && **p != '\r')
            *o++ = *(*p)++;
        *o++ = '\0';
        if (*p < end && **p == ',') {
            (*p)++;
            continue;
        }
        while (*p < end && (**p == '\r' || **p == '\n'))
            (*p)++;
        return true;
    }
}

static int column(const csv_row *hdr, const char *name)
{
    for (int i = 0; i < hdr->n; i++)
        if (!strcmp(hdr->f[i], name))
            return i;
    return -1;
}

/* A number as ncu prints it ("1,234.5", "n/a" -> NAN). */
static double number(const char *s)
{
    char clean[64];
    size_t n = 0;
    for (; *s && n + 1 < sizeof clean; s++)
        if (*s != ',' && *s != ' ')
            clean[n++] = *s;
    clean[n] = '\0';
    char *end;
    double v = strtod(clean, &end);
    return end == clean || *end ? NAN : v;
}

/* One launch dimension of an ncu shape, with or without thousands separators ("5376" or
 * "5,376"): digits, then groups of exactly three digits each after a comma. */
static bool ncu_component(const char *s, size_t n, uint32_t *out)
{
    uint64_t v = 0;
    size_t digits = 0, group = 0;
    bool grouped = false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ',') {
            if (!digits || (grouped && group != 3))
                return false;
            grouped = true;
            group = 0;
            continue;
        }
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
        digits++;
        group++;
        if (v > 0x7fffffffULL)
            return false;
    }
    if (!digits || (grouped && group != 3) || v < 1)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* A launch shape as ncu prints it into d: "(5376, 1, 1)", with the locale's thousands
 * separators "(5,376, 1, 1)" (dimensions are separated by a comma and a blank, so a comma
 * followed by a digit is a separator within a number), or the compact "(128,1,1)" (a comma
 * without a blank between exactly three plain numbers). The parentheses are optional. */
static bool ncu_dim(const char *s, uint32_t d[3])
{
    while (*s == ' ' || *s == '(')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == ')'))
        n--;
    bool spaced = false;
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i] == ',' && s[i + 1] == ' ')
            spaced = true;
    int k = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        bool cut = i == n || (s[i] == ',' && (!spaced || (i + 1 < n && s[i + 1] == ' ')));
        if (!cut)
            continue;
        if (k == 3 || !ncu_component(s + start, i - start, &d[k]))
            return false;
        k++;
        start = i + 1;
        while (start < n && s[start] == ' ')
            start++;
        i = start - 1;
    }
    return k == 3;
}

/* ---- the ncu reader ---------------------------------------------------------------------- */

typedef struct kacc { /* one kernel invocation's metrics */
    char name[1024];
    uint32_t grid[3], block[3];
    double dur_us, sm_pct, dram_pct, flop, bytes;
} kacc;

static orion_profile classify(const kacc *k, double ridge)
{
    if (ridge > 0 && k->flop > 0 && k->bytes > 0) /* the roofline rule */
        return k->flop / k->bytes > ridge ? ORION_COMPUTE : ORION_MEMORY;
    if (isnan(k->sm_pct) || isnan(k->dram_pct))
        return ORION_UNKNOWN;
    return k->sm_pct >= k->dram_pct ? ORION_COMPUTE : ORION_MEMORY;
}

static int add_kernel(orion_pdb *db, const kacc *k, double ridge, rt_err *err)
{
    if (!k->name[0])
        return 0;
    double dur = !isfinite(k->dur_us) || k->dur_us < 0 ? -1 : k->dur_us; /* unknown */
    orion_pentry key = key_of(k->name, k->grid, k->block);
    const orion_pentry *old = find_exact(db, &key);
    if (old && old->dur_us >= 0 && dur >= 0)
        dur = (old->dur_us + dur) / 2; /* several invocations: their mean, pairwise */
    if (orion_pdb_put(db, k->name, k->grid, k->block, classify(k, ridge), dur) != 0)
        return rt_err_set(err, ENOMEM, "out of memory");
    return 1;
}

static double to_us(double v, const char *unit)
{
    if (!strcmp(unit, "nsecond") || !strcmp(unit, "ns"))
        return v / 1e3;
    if (!strcmp(unit, "msecond") || !strcmp(unit, "ms"))
        return v * 1e3;
    if (!strcmp(unit, "second") || !strcmp(unit, "s"))
        return v * 1e6;
    return v; /* usecond */
}

static void kacc_reset(kacc *k)
{
    memset(k, 0, sizeof *k);
    k->dur_us = k->sm_pct = k->dram_pct = NAN;
}

/* `--page details`: one row per metric, grouped by the "ID" column. */
static int ncu_details(orion_pdb *db, const char **p, const char *end, char *buf,
                       const csv_row *hdr, double ridge, rt_err *err)
{
    int cid = column(hdr, "ID"), cname = column(hdr, "Kernel Name"),
        cgrid = column(hdr, "Grid Size"), cblock = column(hdr, "Block Size"),
        cmet = column(hdr, "Metric Name"), cunit = column(hdr, "Metric Unit"),
        cval = column(hdr, "Metric Value");
    if (cid < 0 || cname < 0 || cgrid < 0 || cblock < 0 || cmet < 0 || cunit < 0 || cval < 0)
        return rt_err_set(
            err, EINVAL,
            "ncu CSV: missing columns (need ID, Kernel Name, Grid Size, Block Size, Metric Name, Metric Unit, Metric Value)");
    int added = 0;
    char id[32] = "";
    kacc k;
    kacc_reset(&k);
    csv_row r;
    while (csv_next(p, end, buf, &r)) {
        if (r.n <= cid || r.n <= cname || r.n <= cgrid || r.n <= cblock || r.n <= cmet ||
            r.n <= cunit || r.n <= cval)
            continue; /* a short row (a trailing line, say): no fields to read */
        if (strcmp(r.f[cid], id) != 0) {
            added += add_kernel(db, &k, ridge, err);
            kacc_reset(&k);
            snprintf(id, sizeof id, "%s", r.f[cid]);
            snprintf(k.name, sizeof k.name, "%s", r.f[cname]);
            if (!ncu_dim(r.f[cgrid], k.grid) || !ncu_dim(r.f[cblock], k.block))
                return rt_err_set(err, EINVAL, "ncu CSV: kernel %s: grid '%s' / block '%s'",
                                  r.f[cname], r.f[cgrid], r.f[cblock]);
        }
        const char *m = r.f[cmet];
        double v = number(r.f[cval]);
        if (!strcmp(m, "Duration"))
            k.dur_us = to_us(v, r.f[cunit]);
        else if (!strcmp(m, "Compute (SM) Throughput"))
            k.sm_pct = v;
        else if (!strcmp(m, "DRAM Throughput") ||
                 (!strcmp(m, "Memory Throughput") && !strcmp(r.f[cunit], "%") && isnan(k.dram_pct)))
            k.dram_pct = v;
    }
    return added + add_kernel(db, &k, ridge, err);
}

/* `--page raw`: a units row, then one row per kernel with the metrics as columns. */
static int ncu_raw(orion_pdb *db, const char **p, const char *end, char *buf, const csv_row *hdr,
                   double ridge, rt_err *err)
{
    int cname = column(hdr, "Kernel Name"), cgrid = column(hdr, "Grid Size"),
        cblock = column(hdr, "Block Size"), cdur = column(hdr, "gpu__time_duration.sum"),
        csm = column(hdr, "sm__throughput.avg.pct_of_peak_sustained_elapsed"),
        cdram = column(hdr, "dram__throughput.avg.pct_of_peak_sustained_elapsed"),
        cbytes = column(hdr, "dram__bytes.sum");
    static const char *const flops[][2] = {
        {"smsp__sass_thread_inst_executed_op_fadd_pred_on.sum", "1"},
        {"smsp__sass_thread_inst_executed_op_fmul_pred_on.sum", "1"},
        {"smsp__sass_thread_inst_executed_op_ffma_pred_on.sum", "2"},
        {"smsp__sass_thread_inst_executed_op_dadd_pred_on.sum", "1"},
        {"smsp__sass_thread_inst_executed_op_dmul_pred_on.sum", "1"},
        {"smsp__sass_thread_inst_executed_op_dfma_pred_on.sum", "2"},
        {"smsp__sass_thread_inst_executed_op_hadd_pred_on.sum", "1"},
        {"smsp__sass_thread_inst_executed_op_hmul_pred_on.sum", "1"},
        {"smsp__sass_thread_inst_executed_op_hfma_pred_on.sum", "2"}};
    int cflop[9];
    for (int i = 0; i < 9; i++)
        cflop[i] = column(hdr, flops[i][0]);
    if (cname < 0 || cgrid < 0 || cblock < 0 || cdur < 0)
        return rt_err_set(
            err, EINVAL,
            "ncu CSV (raw page): missing columns (need Kernel Name, Grid Size, Block Size, gpu__time_duration.sum)");
    char units[CSV_MAX_FIELDS][16] = {{0}};
    csv_row r;
    if (csv_next(p, end, buf, &r))
        for (int i = 0; i < r.n; i++)
            snprintf(units[i], sizeof units[i], "%s", r.f[i]);
    int added = 0;
    while (csv_next(p, end, buf, &r)) {
        if (r.n <= cdur || r.n <= cname || r.n <= cgrid || r.n <= cblock)
            continue; /* a short row: no fields to read */
        kacc k;
        kacc_reset(&k);
        snprintf(k.name, sizeof k.name, "%s", r.f[cname]);
        if (!ncu_dim(r.f[cgrid], k.grid) || !ncu_dim(r.f[cblock], k.block))
            return rt_err_set(err, EINVAL, "ncu CSV: kernel %s: grid '%s' / block '%s'", r.f[cname],
                              r.f[cgrid], r.f[cblock]);
        k.dur_us = to_us(number(r.f[cdur]), units[cdur]);
        k.sm_pct = csm >= 0 && csm < r.n ? number(r.f[csm]) : NAN;
        k.dram_pct = cdram >= 0 && cdram < r.n ? number(r.f[cdram]) : NAN;
        k.bytes = cbytes >= 0 && cbytes < r.n ? number(r.f[cbytes]) : 0;
        for (int i = 0; i < 9; i++)
            if (cflop[i] >= 0 && cflop[i] < r.n && !isnan(number(r.f[cflop[i]])))
                k.flop += number(r.f[cflop[i]]) * (flops[i][1][0] - '0');
        added += add_kernel(db, &k, ridge, err);
    }
    return added;
}

int orion_pdb_from_ncu(orion_pdb *db, const char *text, size_t len, double ridge, rt_err *err)
{
    const char *p = text, *end = text + len;
    /* ncu may print "==PROF==" lines before the table. */
    while (p < end && *p != '"') {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    char *buf = malloc(len + 1), *hbuf = malloc(len + 1);
    if (!buf || !hbuf) {
        free(buf);
        free(hbuf);
        return rt_err_set(err, ENOMEM, "out of memory");
    }
    csv_row hdr;
    int rc;
    if (!csv_next(&p, end, hbuf, &hdr))
        rc = rt_err_set(err, EINVAL, "ncu CSV: no header row (export with ncu --csv)");
    else if (column(&hdr, "Metric Name") >= 0)
        rc = ncu_details(db, &p, end, buf, &hdr, ridge, err);
    else
        rc = ncu_raw(db, &p, end, buf, &hdr, ridge, err);
    free(buf);
    free(hbuf);
    return rc;
}
