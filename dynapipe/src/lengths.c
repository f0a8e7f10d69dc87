/* lengths.c: where a batch's sequence lengths come from: length files (per-sample rows or the
 * histograms of dynapipe/data/lengths, sampled with a seed) and the multi-task mixture
 * generator.
 *
 * Sections: parsing, batches from a file, the mixture.
 *
 * The mixture stands in for an instruction-tuning mixture such as FLAN (whose per-sample
 * lengths are not published): six tasks, each with log-normal input and target lengths
 * (median, sigma of ln) truncated as a data pipeline would (FLAN v2 reads inputs up to 2056
 * and targets up to 512 tokens). Medians are typical of each kind of task: one or a few target
 * tokens for classification, a short span for extractive QA, a paragraph to a few sentences
 * for summarisation, near-equal lengths for translation, long-tailed replies for dialogue and
 * code. They are a documented assumption, not a measurement. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- parsing ----------------------------------------------------------------------------- */

static int is_number(const dp_csv *c, int i)
{
    double v;
    return dp_csv_double(c, i, &v) == 0;
}

static dp_status grow(dp_length_source *src, size_t *cap)
{
    if (src->n < *cap)
        return DP_OK;
    size_t nc = *cap ? *cap * 2 : 1024;
    dp_sample *v = realloc(src->v, nc * sizeof *v);
    if (v)
        src->v = v;
    double *w = src->histogram ? realloc(src->weight, nc * sizeof *w) : NULL;
    if (w)
        src->weight = w;
    if (!v || (src->histogram && !w))
        return dp_fail(DP_ENOMEM, "%s: out of memory", src->name);
    *cap = nc;
    return DP_OK;
}

/* Columns from the header: histogram (length,count | input_len,output_len|target_len,count)
 * or per-sample (input_len,target_len). col = {input, target or -1, count or -1}. */
static dp_status columns(const dp_csv *c, dp_length_source *src, int col[3])
{
    col[2] = dp_csv_col(c, "count");
    src->histogram = col[2] >= 0;
    col[0] = dp_csv_col(c, "input_len");
    col[1] = dp_csv_col(c, "target_len");
    if (col[1] < 0)
        col[1] = dp_csv_col(c, "output_len");
    if (col[0] < 0)
        col[0] = dp_csv_col(c, "length");
    if (col[0] < 0)
        return dp_fail(
            DP_EFORMAT,
            "%s:%d: the header names no 'length' or 'input_len' column (accepted: input_len,target_len | length,count | input_len,output_len,count)",
            src->name, c->line);
    src->dims = col[1] >= 0 ? 2 : 1;
    return DP_OK;
}

static dp_status parse_row(const dp_csv *c, dp_length_source *src, const int col[3])
{
    long in, tgt = 0;
    double cnt = 1;
    int need = col[0] > col[1] ? col[0] : col[1];
    need = need > col[2] ? need : col[2];
    if (c->nf <= need || dp_csv_int(c, col[0], &in) ||
        (col[1] >= 0 && dp_csv_int(c, col[1], &tgt)) ||
        (col[2] >= 0 && (dp_csv_double(c, col[2], &cnt) || cnt < 0)) || in < -(1L << 30) ||
        in > (1L << 30) || tgt < -(1L << 30) || tgt > (1L << 30))
        return dp_fail(DP_EFORMAT, "%s:%d: expected %d whole numbers%s", src->name, c->line,
                       need + 1, col[2] >= 0 ? " (the count >= 0)" : "");
    if (src->histogram && (in < 1 || tgt < 0))
        return dp_fail(DP_ERANGE, "%s:%d: histogram length %ld/%ld out of range", src->name,
                       c->line, in, tgt);
    src->v[src->n] = (dp_sample){(int)in, (int)tgt};
    if (src->histogram) {
        src->weight[src->n] = cnt;
        src->total += cnt;
    }
    src->n++;
    return DP_OK;
}

/* ---- JSON lines ---------------------------------------------------------------------------- */

static const char *skip_blank(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r'))
        p++;
    return p;
}

/* A whole number at p. 0, or -1 when there is none. */
static int json_number(const char *p, const char *e, long *v)
{
    char tmp[32];
    size_t n = 0;
    while (p + n < e && n + 1 < sizeof tmp && (p[n] == '-' || (p[n] >= '0' && p[n] <= '9')))
        n++;
    if (n == 0)
        return -1;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    char *end;
    *v = strtol(tmp, &end, 10);
    return *end ? -1 : 0;
}

/* Elements of a flat array of numbers or strings starting after its '['. 0, or -1. */
static int json_array_len(const char *p, const char *e, long *v)
{
    long n = 0;
    bool item = false;
    for (; p < e; p++) {
        if (*p == '"') {
            for (p++; p < e && *p != '"'; p++)
                if (*p == '\\')
                    p++;
            if (p >= e)
                return -1;
            item = true;
        } else if (*p == ',') {
            if (!item)
                return -1;
            n++;
            item = false;
        } else if (*p == ']') {
            *v = n + (item ? 1 : 0);
            return 0;
        } else if (*p == '[' || *p == '{') {
            return -1; /* not flat */
        } else if (*p != ' ' && *p != '\t') {
            item = true;
        }
    }
    return -1;
}

/* The value of "key" in the object on [s, e): a number, or the length of a flat array.
 * 0 found, 1 absent, -1 malformed. A flat object is assumed (keys are not searched for inside
 * nested values, but a string value that looks like a key could be taken for one). */
static int json_field(const char *s, const char *e, const char *key, long *v)
{
    size_t kl = strlen(key);
    for (const char *p = s; p + kl + 2 < e; p++) {
        if (*p != '"' || memcmp(p + 1, key, kl) != 0 || p[kl + 1] != '"')
            continue;
        const char *q = skip_blank(p + kl + 2, e);
        if (q == e || *q != ':')
            continue;
        q = skip_blank(q + 1, e);
        if (q < e && *q == '[')
            return json_array_len(q + 1, e, v);
        return json_number(q, e, v);
    }
    return 1;
}

/* The first of `keys` present: 0 with *v, 1 when none is, -1 malformed. */
static int json_any(const char *s, const char *e, const char *const *keys, long *v)
{
    for (; *keys; keys++) {
        int r = json_field(s, e, *keys, v);
        if (r <= 0)
            return r;
    }
    return 1;
}

/* One object per line: {"input_len": N, "target_len": M} (also output_len), or tokenised
 * samples {"input_ids": [...], "target_ids": [...]} (also inputs/targets), whose lengths are
 * the arrays' lengths. A missing target is 0. */
static dp_status parse_jsonl(const char *text, size_t len, dp_length_source *src)
{
    static const char *const in_keys[] = {"input_len", "input_ids", "inputs", NULL};
    static const char *const tgt_keys[] = {"target_len", "output_len", "target_ids", "targets",
                                           NULL};
    const char *p = text, *end = text + len;
    size_t cap = 0;
    src->dims = 1;
    for (int line = 1; p < end; line++) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        e = e ? e : end;
        const char *b = skip_blank(p, e);
        long in = 0, tgt = 0;
        int rt = 1;
        if (b < e && *b != '{')
            return dp_fail(DP_EFORMAT, "%s:%d: expected a JSON object per line", src->name, line);
        if (b < e &&
            (json_any(b, e, in_keys, &in) != 0 || (rt = json_any(b, e, tgt_keys, &tgt)) < 0 ||
             in < -(1L << 30) || in > (1L << 30) || tgt < -(1L << 30) || tgt > (1L << 30)))
            return dp_fail(
                DP_EFORMAT,
                "%s:%d: no readable input_len / input_ids (or a bad target_len / target_ids)",
                src->name, line);
        if (b < e) {
            dp_status st = grow(src, &cap);
            if (st != DP_OK)
                return st;
            src->v[src->n++] = (dp_sample){(int)in, (int)tgt};
            if (rt == 0)
                src->dims = 2;
        }
        p = e < end ? e + 1 : end;
    }
    return DP_OK;
}

dp_status dp_lengths_parse(const char *text, size_t len, const char *name, dp_length_source *src)
{
    memset(src, 0, sizeof *src);
    snprintf(src->name, sizeof src->name, "%s", name ? name : "lengths");
    const char *first = skip_blank(text, text + len);
    while (first < text + len && *first == '\n')
        first = skip_blank(first + 1, text + len);
    if (first < text + len && *first == '{') {
        dp_status st = parse_jsonl(text, len, src);
        if (st == DP_OK && src->n == 0)
            st = dp_fail(DP_EEMPTY, "%s: no samples", src->name);
        if (st != DP_OK)
            dp_lengths_free(src);
        return dp_done(st);
    }
    dp_csv c;
    dp_csv_init(&c, text, len, src->name);
    int r = dp_csv_next(&c), col[3] = {0, 1, -1};
    if (r < 0)
        return dp_done(DP_EFORMAT); /* dp_csv_next said why */
    if (r == 0)
        return dp_fail(DP_EEMPTY, "%s: no samples", src->name);
    bool has_header = !is_number(&c, 0);
    dp_status st = DP_OK;
    if (has_header) {
        st = columns(&c, src, col);
        r = st == DP_OK ? dp_csv_next(&c) : 0;
    } else {
        src->dims = c.nf >= 2 ? 2 : 1;
        col[1] = c.nf >= 2 ? 1 : -1;
    }
    size_t cap = 0;
    for (; st == DP_OK && r > 0; r = dp_csv_next(&c))
        if ((st = grow(src, &cap)) == DP_OK)
            st = parse_row(&c, src, col);
    if (st == DP_OK && r < 0)
        st = DP_EFORMAT;
    if (st == DP_OK && (src->n == 0 || (src->histogram && !(src->total > 0))))
        st = dp_fail(DP_EEMPTY, "%s: no samples", src->name);
    if (st != DP_OK)
        dp_lengths_free(src);
    return dp_done(st);
}

dp_status dp_lengths_load(const char *path, dp_length_source *src)
{
    memset(src, 0, sizeof *src);
    char *buf;
    size_t len;
    dp_status st = dp_read_file(path, &buf, &len);
    if (st != DP_OK)
        return dp_done(st);
    st = dp_lengths_parse(buf, len, path, src);
    free(buf);
    return dp_done(st);
}

void dp_lengths_free(dp_length_source *src)
{
    free(src->v);
    free(src->weight);
    src->v = NULL;
    src->weight = NULL;
    src->n = 0;
}

void dp_samples_free(dp_samples *s)
{
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

/* ---- batches from a file ----------------------------------------------------------------- */

typedef struct batch {
    dp_samples *out;
    size_t cap;
    long tokens, limit;
} batch;

/* Append unless it would pass the limit (the first sample is always taken). 1: appended,
 * 0: full, -1: out of memory. */
static int batch_add(batch *b, dp_sample s)
{
    long t = (long)s.input_len + s.target_len;
    if (b->limit > 0 && b->out->n > 0 && b->tokens + t > b->limit)
        return 0;
    if (b->out->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        dp_sample *v = realloc(b->out->v, nc * sizeof *v);
        if (!v)
            return -1;
        b->out->v = v;
        b->cap = nc;
    }
    b->out->v[b->out->n++] = s;
    b->tokens += t;
    return 1;
}

static dp_status sample_histogram(const dp_length_source *src, batch *b, uint64_t seed,
                                  int target_1d, int max_total)
{
    double *cum = malloc(src->n * sizeof *cum);
    if (!cum)
        return dp_fail(DP_ENOMEM, "%s: out of memory", src->name);
    double total = 0;
    for (size_t i = 0; i < src->n; i++) {
        int tgt = src->dims == 2 ? src->v[i].target_len : target_1d;
        bool ok = max_total <= 0 || src->v[i].input_len + tgt <= max_total;
        total += ok ? src->weight[i] : 0;
        cum[i] = total;
    }
    dp_status st = DP_OK;
    if (!(total > 0))
        st = dp_fail(DP_EEMPTY, "%s: no histogram bin within %d tokens", src->name, max_total);
    dp_rng r = {seed};
    for (int added = 1; st == DP_OK && added == 1;) {
        double x = dp_rng_uniform(&r) * total;
        size_t lo = 0, hi = src->n - 1;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (cum[mid] > x)
                hi = mid;
            else
                lo = mid + 1;
        }
        dp_sample s = src->v[lo];
        if (src->dims == 1)
            s.target_len = target_1d;
        added = batch_add(b, s);
        if (added < 0)
            st = dp_fail(DP_ENOMEM, "%s: out of memory", src->name);
    }
    free(cum);
    return st;
}

dp_status dp_lengths_batch(const dp_length_source *src, long tokens, uint64_t seed,
                           int target_len_1d, int max_total, dp_samples *out)
{
    memset(out, 0, sizeof *out);
    if (src->histogram && tokens <= 0)
        return dp_fail(DP_EINVAL, "%s: a histogram needs --tokens-per-batch > 0", src->name);
    batch b = {out, 0, 0, tokens};
    dp_status st = DP_OK;
    if (src->histogram)
        st = sample_histogram(src, &b, seed, target_len_1d, max_total);
    else
        for (size_t i = 0; i < src->n; i++) {
            int r = batch_add(&b, src->v[i]);
            if (r < 0)
                st = dp_fail(DP_ENOMEM, "%s: out of memory", src->name);
            if (r == 0) { /* full: say what is left out rather than drop it silently */
                out->left_out = src->n - i;
                for (size_t j = i; j < src->n; j++)
                    out->left_out_tokens += (long)src->v[j].input_len + src->v[j].target_len;
            }
            if (r <= 0)
                break;
        }
    if (st != DP_OK)
        dp_samples_free(out);
    return dp_done(st);
}

/* ---- the mixture ------------------------------------------------------------------------- */

static const dp_task builtin[] = {
    /* name, weight, input median, sigma, target median, sigma, input max, target max */
    {"classification", 0.25, 120, 0.7, 2, 0.5, 2048, 16},
    {"qa", 0.20, 300, 0.8, 8, 0.9, 2048, 128},
    {"summarisation", 0.15, 700, 0.6, 60, 0.6, 2048, 512},
    {"translation", 0.15, 40, 0.6, 45, 0.6, 512, 512},
    {"dialogue", 0.15, 220, 0.9, 120, 0.9, 2048, 512},
    {"code", 0.10, 150, 0.8, 200, 0.9, 2048, 512},
};

const dp_task *dp_mixture_tasks(size_t *n)
{
    *n = sizeof builtin / sizeof builtin[0];
    return builtin;
}

static int lognormal(dp_rng *r, double median, double sigma, int max)
{
    double x = median * exp(sigma * dp_rng_normal(r));
    long v = lround(x);
    return v < 1 ? 1 : v > max ? max : (int)v;
}

dp_status dp_mixture_batch(const dp_task *tasks, size_t ntasks, long tokens, uint64_t seed,
                           dp_samples *out, int **task_of)
{
    memset(out, 0, sizeof *out);
    if (task_of)
        *task_of = NULL;
    if (!tasks)
        tasks = dp_mixture_tasks(&ntasks);
    double wsum = 0;
    for (size_t k = 0; k < ntasks; k++)
        wsum += tasks[k].weight > 0 ? tasks[k].weight : 0;
    if (ntasks == 0 || !(wsum > 0) || tokens <= 0)
        return dp_fail(DP_EINVAL, "mixture: no task with a positive weight, or tokens <= 0");
    dp_rng r = {seed};
    batch b = {out, 0, 0, tokens};
    int *tk = NULL;
    size_t tcap = 0;
    for (;;) {
        double x = dp_rng_uniform(&r) * wsum;
        size_t k = 0;
        while (k + 1 < ntasks && (x -= fmax(tasks[k].weight, 0)) >= 0)
            k++;
        dp_sample s = {lognormal(&r, tasks[k].in_median, tasks[k].in_sigma, tasks[k].in_max),
                       lognormal(&r, tasks[k].tgt_median, tasks[k].tgt_sigma, tasks[k].tgt_max)};
        int added = batch_add(&b, s);
        if (added == 0)
            break;
        if (added > 0 && tcap < out->n) {
            tcap = out->n * 2;
            int *nt = realloc(tk, tcap * sizeof *nt);
            if (!nt)
                added = -1;
            else
                tk = nt;
        }
        if (added < 0 || !tk) {
            free(tk);
            dp_samples_free(out);
            return dp_fail(DP_ENOMEM, "mixture: out of memory");
        }
        tk[out->n - 1] = (int)k;
    }
    if (task_of)
        *task_of = tk;
    else
        free(tk);
    return dp_done(DP_OK);
}
