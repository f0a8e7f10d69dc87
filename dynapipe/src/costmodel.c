/* costmodel.c: the profiled cost model: loading the time, memory and model-state CSVs of
 * dynapipe/data/costmodels (format in its README.md; one row per profiled grid point),
 * building dense grids per (recompute mode, component, quantity), and linear interpolation
 * inside them.
 *
 * Sections: grid building, CSV loading, checks of the needed regions, interpolation, queries.
 *
 * Keys follow the files: a row's first length x1 is enc_seqlen when set, else dec_seqlen
 * (T5 postprocess); its second x2 is dec_seqlen when both are set (T5 decoder), else absent.
 * Duplicated points (dup_idx) keep the maximum, as DynaPipe's interpolator effectively does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- grid building --------------------------------------------------------------------- */

typedef struct point {
    int mbs, x1, x2;
    double v;
} point;

typedef struct points {
    point *v;
    size_t n, cap;
} points;

typedef struct loader {
    dp_cost_model *cm;
    points p[DP_RC_COUNT][DP_COMPONENTS][DP_QUANTITIES];
    bool state_seen[DP_RC_COUNT][DP_COMPONENTS];
} loader;

static dp_status push(points *ps, int mbs, int x1, int x2, double v)
{
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 256;
        point *nv = realloc(ps->v, cap * sizeof *nv);
        if (!nv)
            return dp_fail(DP_ENOMEM, "out of memory loading the cost model");
        ps->v = nv;
        ps->cap = cap;
    }
    ps->v[ps->n++] = (point){mbs, x1, x2, v};
    return DP_OK;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Sorted unique values of one coordinate of the points. */
static int *axis_of(const points *ps, int which, int *n)
{
    int *a = malloc((ps->n ? ps->n : 1) * sizeof *a);
    if (!a)
        return NULL;
    for (size_t i = 0; i < ps->n; i++)
        a[i] = which == 0 ? ps->v[i].mbs : which == 1 ? ps->v[i].x1 : ps->v[i].x2;
    qsort(a, ps->n, sizeof *a, cmp_int);
    int m = 0;
    for (size_t i = 0; i < ps->n; i++)
        if (m == 0 || a[m - 1] != a[i])
            a[m++] = a[i];
    if (m == 0)
        a[m++] = 0;
    *n = m;
    return a;
}

static int axis_index(const int *ax, int n, int x)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (ax[mid] == x)
            return mid;
        if (ax[mid] < x)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

static dp_status grid_build(dp_grid *g, const points *ps)
{
    for (int k = 0; k < 3; k++)
        if (!(g->ax[k] = axis_of(ps, k, &g->n[k])))
            return dp_fail(DP_ENOMEM, "out of memory building a cost-model grid");
    size_t total = (size_t)g->n[0] * (size_t)g->n[1] * (size_t)g->n[2];
    g->v = malloc(total * sizeof *g->v);
    if (!g->v)
        return dp_fail(DP_ENOMEM, "out of memory building a cost-model grid");
    for (size_t i = 0; i < total; i++)
        g->v[i] = NAN; /* not profiled */
    for (size_t i = 0; i < ps->n; i++) {
        const point *p = &ps->v[i];
        int a = axis_index(g->ax[0], g->n[0], p->mbs), b = axis_index(g->ax[1], g->n[1], p->x1),
            c = axis_index(g->ax[2], g->n[2], p->x2);
        if (a < 0 || b < 0 || c < 0)
            continue; /* cannot happen: the axes hold every point's coordinates */
        double *cell =
            &g->v[((size_t)a * (size_t)g->n[1] + (size_t)b) * (size_t)g->n[2] + (size_t)c];
        if (isnan(*cell))
            g->present++;
        if (isnan(*cell) || p->v > *cell)
            *cell = p->v; /* duplicates: the maximum */
    }
    return DP_OK;
}

static void grid_free(dp_grid *g)
{
    for (int k = 0; k < 3; k++)
        free(g->ax[k]);
    free(g->v);
    memset(g, 0, sizeof *g);
}

/* ---- CSV loading ------------------------------------------------------------------------- */

static const char *const rc_names[DP_RC_COUNT] = {"none", "selective", "full"};
static const char *const comp_names[DP_COMPONENTS] = {"encoder", "decoder", "postprocess"};

const char *dp_rc_name(dp_rc rc) { return (unsigned)rc < DP_RC_COUNT ? rc_names[rc] : "?"; }

static int field_is(const dp_csv *c, int i, const char *s)
{
    size_t n = strlen(s);
    return i >= 0 && i < c->nf && c->flen[i] == n && memcmp(c->f[i], s, n) == 0;
}

static int field_index(const dp_csv *c, int i, const char *const *names, int n)
{
    for (int k = 0; k < n; k++)
        if (field_is(c, i, names[k]))
            return k;
    return -1;
}

/* The header's columns, by name; a missing one is DP_EFORMAT naming it and the file. */
static dp_status header(dp_csv *c, const char *const *want, int n, int *col)
{
    int r = dp_csv_next(c);
    if (r < 0)
        return DP_EFORMAT;
    if (r == 0)
        return dp_fail(DP_EEMPTY, "%s: empty file (no header line)", c->name);
    for (int k = 0; k < n; k++)
        if ((col[k] = dp_csv_col(c, want[k])) < 0)
            return dp_fail(DP_EFORMAT, "%s:%d: missing column '%s' in the header", c->name, c->line,
                           want[k]);
    return DP_OK;
}

/* The grid key (mbs, x1, x2) of a row from its mbs, enc_seqlen and dec_seqlen columns. */
static dp_status row_key(const dp_csv *c, int cm, int ce, int cd, int *mbs, int *x1, int *x2)
{
    long m, e = 0, d = 0;
    bool he = !dp_csv_empty(c, ce), hd = !dp_csv_empty(c, cd);
    if (dp_csv_int(c, cm, &m) || m < 1 || m > (1 << 24) || (he && dp_csv_int(c, ce, &e)) ||
        (hd && dp_csv_int(c, cd, &d)) || (!he && !hd) || e < 0 || d < 0 || e > (1 << 24) ||
        d > (1 << 24) || (he && e < 1) || (hd && d < 1))
        return dp_fail(
            DP_EFORMAT,
            "%s:%d: bad grid key (mbs >= 1 and at least one of enc_seqlen, dec_seqlen >= 1 expected)",
            c->name, c->line);
    *mbs = (int)m;
    *x1 = he ? (int)e : (int)d;
    *x2 = he && hd ? (int)d : 0;
    return DP_OK;
}

/* Row filter: this model and tp; then its recompute mode and component. 0: skip the row. */
static int row_select(const dp_csv *c, loader *L, const int *col, int *rc, int *comp)
{
    long tp;
    if (!field_is(c, col[0], L->cm->name))
        return 0;
    if (dp_csv_int(c, col[1], &tp)) {
        dp_fail(DP_EFORMAT, "%s:%d: bad tp", c->name, c->line);
        return -1;
    }
    if (tp != L->cm->tp)
        return 0;
    *rc = field_index(c, col[2], rc_names, DP_RC_COUNT);
    *comp = field_index(c, col[3], comp_names, DP_COMPONENTS);
    if (*rc < 0 || *comp < 0) {
        dp_fail(DP_EFORMAT, "%s:%d: unknown recompute mode or component", c->name, c->line);
        return -1;
    }
    return 1;
}

static dp_status load_time(loader *L, const char *text, size_t len, const char *name)
{
    static const char *const want[] = {"model",      "tp",         "recompute",
                                       "component",  "direction",  "mbs",
                                       "enc_seqlen", "dec_seqlen", "time_ms"};
    int col[9] = {0};
    dp_csv c;
    dp_csv_init(&c, text, len, name);
    dp_status st = header(&c, want, 9, col);
    int r, rc = 0, comp = 0, mbs = 0, x1 = 0, x2 = 0;
    while (st == DP_OK && (r = dp_csv_next(&c)) != 0) {
        if (r < 0 || (r = row_select(&c, L, col, &rc, &comp)) < 0)
            return DP_EFORMAT;
        if (r == 0)
            continue;
        static const char *const dirs[] = {"forward", "backward"};
        int dir = field_index(&c, col[4], dirs, 2);
        double v;
        if (dir < 0 || dp_csv_double(&c, col[8], &v) || v < 0)
            return dp_fail(DP_EFORMAT, "%s:%d: bad direction or time_ms", name, c.line);
        if ((st = row_key(&c, col[5], col[6], col[7], &mbs, &x1, &x2)) == DP_OK)
            st = push(&L->p[rc][comp][dir], mbs, x1, x2, v);
        L->cm->rc_avail |= 1u << rc;
        if (comp == DP_DECODER)
            L->cm->encdec = true;
    }
    return st;
}

static dp_status load_memory(loader *L, const char *text, size_t len, const char *name)
{
    static const char *const want[] = {"model",
                                       "tp",
                                       "recompute",
                                       "component",
                                       "mbs",
                                       "enc_seqlen",
                                       "dec_seqlen",
                                       "stored_activation_mb",
                                       "peak_activation_mb"};
    int col[9] = {0};
    dp_csv c;
    dp_csv_init(&c, text, len, name);
    dp_status st = header(&c, want, 9, col);
    int r, rc = 0, comp = 0, mbs = 0, x1 = 0, x2 = 0;
    while (st == DP_OK && (r = dp_csv_next(&c)) != 0) {
        if (r < 0 || (r = row_select(&c, L, col, &rc, &comp)) < 0)
            return DP_EFORMAT;
        if (r == 0)
            continue;
        double s, p;
        if (dp_csv_double(&c, col[7], &s) || dp_csv_double(&c, col[8], &p) || s < 0 || p < 0)
            return dp_fail(DP_EFORMAT, "%s:%d: bad activation memory", name, c.line);
        if ((st = row_key(&c, col[4], col[5], col[6], &mbs, &x1, &x2)) == DP_OK)
            st = push(&L->p[rc][comp][DP_Q_STORED], mbs, x1, x2, s);
        if (st == DP_OK)
            st = push(&L->p[rc][comp][DP_Q_PEAK], mbs, x1, x2, p);
    }
    return st;
}

static dp_status load_state(loader *L, const char *text, size_t len, const char *name)
{
    static const char *const want[] = {"model", "tp", "recompute", "component", "param_mb"};
    static const char *const comps[] = {"encoder", "decoder", "embedding"};
    int col[5] = {0};
    dp_csv c;
    dp_csv_init(&c, text, len, name);
    dp_status st = header(&c, want, 5, col);
    int r;
    long tp;
    while (st == DP_OK && (r = dp_csv_next(&c)) != 0) {
        if (r < 0)
            return DP_EFORMAT;
        if (!field_is(&c, col[0], L->cm->name))
            continue;
        int rc = field_index(&c, col[2], rc_names, DP_RC_COUNT);
        int comp = field_index(&c, col[3], comps, 3);
        double v;
        if (dp_csv_int(&c, col[1], &tp) || rc < 0 || comp < 0 || dp_csv_double(&c, col[4], &v) ||
            v < 0)
            return dp_fail(DP_EFORMAT, "%s:%d: bad model-state row", name, c.line);
        if (tp != L->cm->tp)
            continue;
        L->cm->param_mb[rc][comp] = v;
        L->state_seen[rc][comp] = true;
    }
    return st;
}

/* ---- checks of the needed regions -------------------------------------------------------- */

static const char *q_name(int q)
{
    static const char *const n[] = {"forward", "backward", "stored activation", "peak activation"};
    return n[q];
}

/* Every available mode has every component the model needs, in every file. */
static dp_status check_regions(loader *L)
{
    dp_cost_model *cm = L->cm;
    if (!cm->rc_avail)
        return dp_fail(DP_EGRID, "%s: no rows for model %s at tp %d", cm->files[0], cm->name,
                       cm->tp);
    for (int rc = 0; rc < DP_RC_COUNT; rc++) {
        if (!(cm->rc_avail & (1u << rc)))
            continue;
        for (int comp = 0; comp < DP_COMPONENTS; comp++) {
            if (comp == DP_DECODER && !cm->encdec)
                continue;
            for (int q = 0; q < DP_QUANTITIES; q++) {
                if (comp == DP_POSTPROCESS && q >= DP_Q_STORED)
                    continue;
                if (L->p[rc][comp][q].n == 0)
                    return dp_fail(
                        DP_EGRID,
                        "%s: no %s %s rows for %s tp %d recompute %s (a grid region the planner needs)",
                        cm->files[q >= DP_Q_STORED ? 1 : 0], comp_names[comp], q_name(q), cm->name,
                        cm->tp, rc_names[rc]);
            }
            int sc = comp == DP_POSTPROCESS ? 2 : comp;
            if (!L->state_seen[rc][sc])
                return dp_fail(DP_EGRID, "%s: no %s row for %s tp %d recompute %s", cm->files[2],
                               comp == DP_POSTPROCESS ? "embedding" : comp_names[comp], cm->name,
                               cm->tp, rc_names[rc]);
        }
    }
    return DP_OK;
}

static double cell(const dp_grid *g, int a, int b, int c)
{
    return g->v[((size_t)a * (size_t)g->n[1] + (size_t)b) * (size_t)g->n[2] + (size_t)c];
}

/* Downward closed: a profiled point implies every point below it was profiled (the profiler
 * skips configurations that dominate one that ran out of memory, so the real grids are). */
static bool grid_closed(const dp_grid *g)
{
    for (int a = 0; a < g->n[0]; a++)
        for (int b = 0; b < g->n[1]; b++)
            for (int c = 0; c < g->n[2]; c++) {
                if (isnan(cell(g, a, b, c)))
                    continue;
                if ((a && isnan(cell(g, a - 1, b, c))) || (b && isnan(cell(g, a, b - 1, c))) ||
                    (c && isnan(cell(g, a, b, c - 1))))
                    return false;
            }
    return true;
}

/* Memory grids are made non-decreasing along every axis (each point raised to the largest
 * value below it). Profiled memory is noisy (GPT peak activation at 8192 tokens is below the
 * one at 6144), and a larger micro-batch never needs less memory; the envelope never lowers a
 * profiled value, and it lets the DP stop extending a micro-batch at the first one that does
 * not fit. */
static void grid_envelope(dp_grid *g)
{
    for (int a = 0; a < g->n[0]; a++)
        for (int b = 0; b < g->n[1]; b++)
            for (int c = 0; c < g->n[2]; c++) {
                double *v =
                    &g->v[((size_t)a * (size_t)g->n[1] + (size_t)b) * (size_t)g->n[2] + (size_t)c];
                if (isnan(*v))
                    continue;
                double lower[3] = {a ? cell(g, a - 1, b, c) : 0, b ? cell(g, a, b - 1, c) : 0,
                                   c ? cell(g, a, b, c - 1) : 0};
                for (int k = 0; k < 3; k++)
                    if (lower[k] > *v) /* NAN compares false */
                        *v = lower[k];
            }
}

static void finish(loader *L)
{
    dp_cost_model *cm = L->cm;
    cm->monotone = true;
    for (int rc = 0; rc < DP_RC_COUNT; rc++) {
        if (!(cm->rc_avail & (1u << rc)))
            continue;
        for (int comp = 0; comp < DP_COMPONENTS; comp++)
            for (int q = 0; q < DP_QUANTITIES; q++) {
                dp_grid *g = &cm->g[rc][comp][q];
                if (!g->v)
                    continue;
                if (q >= DP_Q_STORED)
                    grid_envelope(g);
                if (!grid_closed(g))
                    cm->monotone = false;
            }
        const dp_grid *e = &cm->g[rc][DP_ENCODER][DP_Q_FWD];
        if (e->ax[1][e->n[1] - 1] > cm->max_len)
            cm->max_len = e->ax[1][e->n[1] - 1];
        const dp_grid *d = &cm->g[rc][DP_DECODER][DP_Q_FWD];
        if (cm->encdec && d->ax[2][d->n[2] - 1] > cm->max_target)
            cm->max_target = d->ax[2][d->n[2] - 1];
    }
}

static const char *alias(const char *model)
{
    if (strcmp(model, "gpt") == 0)
        return "gpt_6.7b";
    if (strcmp(model, "t5") == 0)
        return "t5_11b";
    return model;
}

dp_status dp_cost_model_parse(const char *model, int tp, const char *time_csv, size_t time_len,
                              const char *mem_csv, size_t mem_len, const char *state_csv,
                              size_t state_len, const char *const names[3], dp_cost_model **out)
{
    *out = NULL;
    if (!model || strlen(alias(model)) >= sizeof((dp_cost_model *)0)->name || tp < 1)
        return dp_fail(DP_EINVAL, "cost model: bad model name or tp %d", tp);
    loader *L = calloc(1, sizeof *L);
    dp_cost_model *cm = calloc(1, sizeof *cm);
    if (!L || !cm) {
        free(L);
        free(cm);
        return dp_fail(DP_ENOMEM, "out of memory loading the cost model");
    }
    L->cm = cm;
    snprintf(cm->name, sizeof cm->name, "%s", alias(model));
    cm->tp = tp;
    for (int k = 0; k < 3; k++)
        snprintf(cm->files[k], sizeof cm->files[k], "%s", names[k]);
    dp_status st = load_time(L, time_csv, time_len, names[0]);
    if (st == DP_OK)
        st = load_memory(L, mem_csv, mem_len, names[1]);
    if (st == DP_OK)
        st = load_state(L, state_csv, state_len, names[2]);
    if (st == DP_OK)
        st = check_regions(L);
    for (int rc = 0; rc < DP_RC_COUNT; rc++)
        for (int comp = 0; comp < DP_COMPONENTS; comp++)
            for (int q = 0; q < DP_QUANTITIES; q++) {
                points *ps = &L->p[rc][comp][q];
                if (st == DP_OK && ps->n)
                    st = grid_build(&cm->g[rc][comp][q], ps);
                free(ps->v);
            }
    if (st == DP_OK)
        finish(L);
    free(L);
    if (st != DP_OK) {
        dp_cost_model_free(cm);
        return dp_done(st);
    }
    *out = cm;
    return dp_done(DP_OK);
}

dp_status dp_cost_model_load(const char *dir, const char *model, int tp, dp_cost_model **cm)
{
    *cm = NULL;
    if (!dir || !model)
        return dp_fail(DP_EINVAL, "cost model: no directory or model given");
    char path[3][512];
    snprintf(path[0], sizeof path[0], "%s/%s_time.csv", dir, alias(model));
    snprintf(path[1], sizeof path[1], "%s/%s_memory.csv", dir, alias(model));
    snprintf(path[2], sizeof path[2], "%s/model_state.csv", dir);
    char *buf[3] = {NULL, NULL, NULL};
    size_t len[3] = {0, 0, 0};
    dp_status st = DP_OK;
    for (int k = 0; k < 3 && st == DP_OK; k++)
        st = dp_read_file(path[k], &buf[k], &len[k]);
    if (st == DP_OK) {
        const char *names[3] = {path[0], path[1], path[2]};
        st = dp_cost_model_parse(model, tp, buf[0], len[0], buf[1], len[1], buf[2], len[2], names,
                                 cm);
    }
    for (int k = 0; k < 3; k++)
        free(buf[k]);
    return dp_done(st);
}

void dp_cost_model_free(dp_cost_model *cm)
{
    if (!cm)
        return;
    for (int rc = 0; rc < DP_RC_COUNT; rc++)
        for (int comp = 0; comp < DP_COMPONENTS; comp++)
            for (int q = 0; q < DP_QUANTITIES; q++)
                grid_free(&cm->g[rc][comp][q]);
    free(cm);
}

/* ---- interpolation ------------------------------------------------------------------------- */

/* Where x falls on an axis: lo index and weight w of lo + 1 (0 on a grid point). -1 above the
 * axis. Below the first point: the first point (clamped up). */
static int locate(const int *ax, int n, int x, double *w)
{
    *w = 0;
    if (x <= ax[0])
        return 0;
    if (x > ax[n - 1])
        return -1;
    int lo = 0, hi = n - 1; /* ax[lo] < x <= ax[hi] */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (ax[mid] < x)
            lo = mid;
        else
            hi = mid;
    }
    if (ax[hi] == x)
        return hi;
    *w = (double)(x - ax[lo]) / (double)(ax[hi] - ax[lo]);
    return lo;
}

double dp_grid_eval(const dp_grid *g, int mbs, int x1, int x2)
{
    if (!g->v)
        return NAN;
    int idx[3];
    double w[3];
    int x[3] = {mbs, x1, g->n[2] > 1 ? x2 : g->ax[2][0]};
    for (int k = 0; k < 3; k++)
        if ((idx[k] = locate(g->ax[k], g->n[k], x[k], &w[k])) < 0)
            return NAN;
    double sum = 0;
    for (int corner = 0; corner < 8; corner++) {
        double weight = 1;
        int at[3];
        for (int k = 0; k < 3; k++) {
            int up = (corner >> k) & 1;
            weight *= up ? w[k] : 1 - w[k];
            at[k] = idx[k] + up;
        }
        if (weight == 0)
            continue;
        double v = cell(g, at[0], at[1], at[2]);
        if (isnan(v))
            return NAN; /* a neighbour that was not profiled: out of memory */
        sum += weight * v;
    }
    return sum;
}

/* ---- queries ---------------------------------------------------------------------------- */

static const dp_grid *grid_of(const dp_cost_model *cm, dp_rc rc, dp_component c, int q)
{
    if ((unsigned)rc >= DP_RC_COUNT || (unsigned)c >= DP_COMPONENTS)
        return NULL;
    return &cm->g[rc][c][q];
}

static double query(const dp_cost_model *cm, dp_rc rc, dp_component c, int q, int mbs, int enc,
                    int dec)
{
    const dp_grid *g = grid_of(cm, rc, c, q);
    if (!g)
        return NAN;
    if (c == DP_POSTPROCESS && cm->encdec)
        return dp_grid_eval(g, mbs, dec, 0);
    return dp_grid_eval(g, mbs, enc, dec);
}

double dp_cm_time(const dp_cost_model *cm, dp_rc rc, dp_component c, bool backward, int mbs,
                  int enc_len, int dec_len)
{
    return query(cm, rc, c, backward ? DP_Q_BWD : DP_Q_FWD, mbs, enc_len, dec_len);
}

double dp_cm_stored(const dp_cost_model *cm, dp_rc rc, dp_component c, int mbs, int enc_len,
                    int dec_len)
{
    return query(cm, rc, c, DP_Q_STORED, mbs, enc_len, dec_len);
}

double dp_cm_peak(const dp_cost_model *cm, dp_rc rc, dp_component c, int mbs, int enc_len,
                  int dec_len)
{
    return query(cm, rc, c, DP_Q_PEAK, mbs, enc_len, dec_len);
}

double dp_cm_param_mb(const dp_cost_model *cm, dp_rc rc, dp_component c)
{
    if ((unsigned)rc >= DP_RC_COUNT || (unsigned)c >= DP_COMPONENTS)
        return NAN;
    return cm->param_mb[rc][c];
}

const char *dp_cost_model_name(const dp_cost_model *cm) { return cm->name; }
bool dp_cost_model_encdec(const dp_cost_model *cm) { return cm->encdec; }
bool dp_cost_model_monotone(const dp_cost_model *cm) { return cm->monotone; }

bool dp_cost_model_has_rc(const dp_cost_model *cm, dp_rc rc)
{
    return (unsigned)rc < DP_RC_COUNT && (cm->rc_avail & (1u << rc));
}

int dp_cost_model_max_len(const dp_cost_model *cm, int *max_target)
{
    if (max_target)
        *max_target = cm->max_target;
    return cm->max_len;
}
