/* tune.c: Minuet's autotuner and its configuration (MINUET_DEVICE, MINUET_TUNE,
 * MINUET_TUNE_CACHE, MINUET_ISA).
 *
 * For each layer shape (channels in and out, offsets, transposed, pairs and rows to the
 * nearest power of two) on each device (CPU model, GEMM kernel and thread count), the first
 * convolution with `autotune` times the candidates on a sample of its own data and keeps the
 * fastest: first the scatter tile (rows x channels) at the default grouping, then the
 * grouping threshold x batched-GEMM limit at that tile (the grouped dataflow), then the
 * fused dataflow's tile of output rows. The sample is the layer restricted to its
 * first output rows, 2^12 to 2^16 pairs: the maps are sorted by the rows they add to,
 * so that is a prefix of every offset's pairs, with the layer's real distribution of pair
 * counts per offset. Every candidate computes the same bits (conv.c), so tuning changes the
 * speed, never the result.
 *
 * Choices live in a process-wide table; with MINUET_TUNE_CACHE=FILE they are loaded from
 * and merged into a JSON file (written whole to a temporary file and renamed, under an
 * flock on FILE.lock, so processes tuning at once lose nothing). A file that does not parse
 * is reported once on stderr and left as it is; tuning then stays in memory.
 *
 * Sections: configuration, the table and its file, timing the candidates, lookup.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "internal.h"
#include "keys.h"
#include "rt/env.h"

/* ---- configuration ----------------------------------------------------------------------- */

static const char *const device_names[] = {"cpu", "cuda", "auto", NULL};
static const char *const isa_names[] = {"auto", "avx512", "avx2", "generic", NULL};

static struct {
    pthread_once_t once;
    mn_status status;
    char msg[400];
    int device; /* index into device_names */
    int isa;    /* index into isa_names */
    bool tune;
    char cache[PATH_MAX];
} cfg = {.once = PTHREAD_ONCE_INIT};

static void load_config(void)
{
    rt_env_spec spec[] = {
        {.name = "MINUET_DEVICE",
         .def = "auto",
         .help = "backend of the hook and the minuet command: cpu, cuda (an error where it "
                 "cannot run) or auto (cuda where a device is usable, else cpu)",
         .names = device_names,
         .dest = &cfg.device,
         .type = RT_ENV_ENUM},
        {.name = "MINUET_TUNE",
         .def = "on",
         .help = "autotune grouping and tiles per layer shape (off: the defaults)",
         .dest = &cfg.tune,
         .type = RT_ENV_BOOL},
        {.name = "MINUET_TUNE_CACHE",
         .def = NULL,
         .help = "JSON file keeping the tuned choices across runs (unset: this process only)",
         .dest = cfg.cache,
         .type = RT_ENV_PATH},
        {.name = "MINUET_ISA",
         .def = "auto",
         .help = "the CPU GEMM kernel: auto (the best this CPU has), avx512, avx2 or generic",
         .names = isa_names,
         .dest = &cfg.isa,
         .type = RT_ENV_ENUM},
    };
    rt_err err = {0};
    cfg.status = MN_OK;
    if (rt_env_load(spec, sizeof spec / sizeof spec[0], &err) != 0) {
        cfg.status = MN_EINVAL;
        snprintf(cfg.msg, sizeof cfg.msg, "%s", err.msg);
    } else if (cfg.device == 1 && mn_cuda_init() != MN_OK) {
        cfg.status = MN_ENODEV;
        snprintf(cfg.msg, sizeof cfg.msg, "MINUET_DEVICE=cuda: %s; use cpu or auto",
                 mn_last_error());
    } else if (cfg.isa > 0 && mn_gemm_set_isa(isa_names[cfg.isa]) != 0) {
        cfg.status = MN_EINVAL;
        snprintf(
            cfg.msg, sizeof cfg.msg,
            "MINUET_ISA=%s: this CPU lacks it (its best kernel is %s); use auto, or a lesser one",
            isa_names[cfg.isa], mn_cpu_kernel());
    }
}

mn_status mn_config(void)
{
    pthread_once(&cfg.once, load_config);
    if (cfg.status != MN_OK)
        return mn_fail(cfg.status, "%s", cfg.msg);
    return mn_done(MN_OK);
}

/* auto: whether the CUDA backend can run here, asked once (mn_cuda_init's message is not
 * left as this thread's last error: auto falling back to the CPU is no error) */
static bool cuda_usable;
static void probe_cuda(void)
{
    cuda_usable = mn_cuda_init() == MN_OK;
    mn_set_error("%s", "");
}

const char *mn_device(void)
{
    pthread_once(&cfg.once, load_config);
    if (cfg.status != MN_OK || cfg.device == 0)
        return "cpu";
    if (cfg.device == 1)
        return "cuda";
    static pthread_once_t probe = PTHREAD_ONCE_INIT;
    pthread_once(&probe, probe_cuda);
    return cuda_usable ? "cuda" : "cpu";
}

bool mn_tune_enabled(void)
{
    pthread_once(&cfg.once, load_config);
    return cfg.status == MN_OK && cfg.tune;
}

/* ---- the table and its file -------------------------------------------------------------- */

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static mn_tune_entry *table;
static size_t table_n, table_cap;
static bool file_read, file_bad; /* file_bad: warned once; never written */

static mn_tune_entry *find(const char *device, const char *shape)
{
    for (size_t i = 0; i < table_n; i++)
        if (!strcmp(table[i].device, device) && !strcmp(table[i].shape, shape))
            return &table[i];
    return NULL;
}

static void add(const mn_tune_entry *e)
{
    if (find(e->device, e->shape))
        return;
    if (table_n == table_cap) {
        size_t cap = table_cap ? 2 * table_cap : 32;
        mn_tune_entry *t = realloc(table, cap * sizeof *t);
        if (!t)
            return; /* only a cache: the next call tunes again */
        table = t;
        table_cap = cap;
    }
    table[table_n++] = *e;
}

/* A small reader for the file this code writes: {"format": "minuet-tune 1", "entries":
 * [{"device": S, "shape": S, "group_threshold": N, ...}, ...]}. */
typedef struct rd {
    const char *p, *end;
    const char *why;
} rd;

static void ws(rd *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\t' || *r->p == '\r'))
        r->p++;
}

static bool lit(rd *r, char c)
{
    ws(r);
    if (r->p < r->end && *r->p == c) {
        r->p++;
        return true;
    }
    return false;
}

static bool str(rd *r, char *out, size_t cap)
{
    size_t n = 0;
    if (!lit(r, '"'))
        return !(r->why = "a string expected");
    while (r->p < r->end && *r->p != '"') {
        char c = *r->p++;
        if (c == '\\' && r->p < r->end)
            c = *r->p++;
        if (n + 1 >= cap)
            return !(r->why = "a string too long");
        out[n++] = c;
    }
    out[n] = '\0';
    if (r->p >= r->end)
        return !(r->why = "an unterminated string");
    r->p++;
    return true;
}

static bool num(rd *r, double *v)
{
    ws(r);
    size_t n = 0;
    while (r->p + n < r->end && strchr("+-.0123456789eE", r->p[n]))
        n++;
    if (n == 0 || mn_parse_double(r->p, n, v) != 0 || !isfinite(*v))
        return !(r->why = "a number expected");
    r->p += n;
    return true;
}

static bool entry_field(rd *r, const char *key, mn_tune_entry *e, unsigned *seen)
{
    if (!strcmp(key, "dataflow")) { /* optional: files from before it hold grouped choices */
        char v[16];
        if (!str(r, v, sizeof v))
            return false;
        if (strcmp(v, "grouped") != 0 && strcmp(v, "fused") != 0)
            return !(r->why = "dataflow: grouped or fused expected");
        e->dataflow = v[0] == 'f' ? MN_FUSED : MN_GROUPED;
        return true;
    }
    static const char *const nums[] = {"group_threshold", "batch_rows", "tile_rows",
                                       "tile_channels",   "tuned_ms",   "default_ms"};
    if (!strcmp(key, "device") || !strcmp(key, "shape")) {
        *seen |= key[0] == 'd' ? 1u : 2u;
        return key[0] == 'd' ? str(r, e->device, sizeof e->device)
                             : str(r, e->shape, sizeof e->shape);
    }
    for (unsigned i = 0; i < 6; i++) {
        if (strcmp(key, nums[i]) != 0)
            continue;
        double v;
        if (!num(r, &v))
            return false;
        if (i > 0 && i < 4 && (v < 0 || v > 1e15 || v != floor(v)))
            return !(r->why = "a whole number >= 0 expected");
        if (i == 0 && v < 0)
            return !(r->why = "a threshold >= 0 expected");
        double *d[] = {&e->group_threshold, NULL, NULL, NULL, &e->tuned_ms, &e->default_ms};
        if (d[i])
            *d[i] = v;
        else if (i == 1)
            e->batch_rows = (size_t)v;
        else if (i == 2)
            e->tile_rows = (size_t)v;
        else
            e->tile_channels = v > INT_MAX ? INT_MAX : (int)v;
        *seen |= 4u << i;
        return true;
    }
    return !(r->why = "an unknown field");
}

static bool read_entry(rd *r, mn_tune_entry *e)
{
    *e = (mn_tune_entry){.from_cache = true};
    unsigned seen = 0;
    if (!lit(r, '{'))
        return !(r->why = "'{' expected");
    if (lit(r, '}'))
        return !(r->why = "an empty entry");
    do {
        char key[64];
        if (!str(r, key, sizeof key) || !lit(r, ':') || !entry_field(r, key, e, &seen))
            return false;
    } while (lit(r, ','));
    if (!lit(r, '}'))
        return !(r->why = "'}' expected");
    if ((seen & 0x3fu) != 0x3fu) /* device, shape and the four choices are required */
        return !(
            r->why =
                "an entry without device, shape, group_threshold, batch_rows, tile_rows or tile_channels");
    return true;
}

/* Parse the file image into the table; false with r->why on malformed text. */
static bool parse_cache(rd *r)
{
    char key[64], fmt[64];
    if (!lit(r, '{') || !str(r, key, sizeof key) || strcmp(key, "format") != 0 || !lit(r, ':') ||
        !str(r, fmt, sizeof fmt) || strcmp(fmt, "minuet-tune 1") != 0)
        return !(r->why = r->why ? r->why : "not a minuet-tune 1 file");
    if (!lit(r, ',') || !str(r, key, sizeof key) || strcmp(key, "entries") != 0 || !lit(r, ':') ||
        !lit(r, '['))
        return !(r->why = r->why ? r->why : "\"entries\": [ expected");
    if (!lit(r, ']')) {
        do {
            mn_tune_entry e;
            if (!read_entry(r, &e))
                return false;
            add(&e);
        } while (lit(r, ','));
        if (!lit(r, ']'))
            return !(r->why = "']' expected");
    }
    if (!lit(r, '}'))
        return !(r->why = "'}' expected");
    ws(r);
    return r->p == r->end || !(r->why = "text after the end");
}

/* Merge the cache file into the table (table_lock held). */
static void read_cache(void)
{
    char *buf;
    size_t len;
    if (!cfg.cache[0] || file_bad || access(cfg.cache, F_OK) != 0)
        return;
    if (mn_read_file(cfg.cache, &buf, &len) != MN_OK) {
        fprintf(stderr, "minuet: MINUET_TUNE_CACHE: %s; tuning in memory only\n", mn_last_error());
        file_bad = true;
        return;
    }
    rd r = {buf, buf + len, NULL};
    if (!parse_cache(&r)) {
        size_t line = 1;
        for (const char *q = buf; q < r.p; q++)
            line += *q == '\n';
        fprintf(
            stderr,
            "minuet: MINUET_TUNE_CACHE=%s: line %zu: %s; the file is ignored and left as it is (remove it to start a new cache)\n",
            cfg.cache, line, r.why);
        file_bad = true;
    }
    free(buf);
}

static void put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if ((unsigned char)*s >= 0x20)
            fputc(*s, f);
    }
    fputc('"', f);
}

/* Write the table to the cache file (table_lock held): under FILE.lock, merge what other
 * processes wrote since, write FILE.tmp.PID, rename it over FILE. */
static void write_cache(void)
{
    if (!cfg.cache[0] || file_bad)
        return;
    char lock[PATH_MAX + 8], tmp[PATH_MAX + 32];
    snprintf(lock, sizeof lock, "%s.lock", cfg.cache);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", cfg.cache, (long)getpid());
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0 || flock(lfd, LOCK_EX) != 0) {
        fprintf(stderr, "minuet: cannot lock %s: %s; tuning kept in memory\n", lock,
                strerror(errno));
        file_bad = true;
        if (lfd >= 0)
            close(lfd);
        return;
    }
    read_cache();
    FILE *f = file_bad ? NULL : fopen(tmp, "w");
    if (f) {
        fprintf(f, "{\"format\": \"minuet-tune 1\", \"entries\": [");
        for (size_t i = 0; i < table_n; i++) {
            const mn_tune_entry *e = &table[i];
            fprintf(f, "%s\n  {\"device\": ", i ? "," : "");
            put_json_string(f, e->device);
            fprintf(f, ", \"shape\": ");
            put_json_string(f, e->shape);
            fprintf(
                f,
                ", \"group_threshold\": %.17g, \"batch_rows\": %zu, \"tile_rows\": %zu, \"tile_channels\": %d, \"dataflow\": \"%s\", \"tuned_ms\": %.4f, \"default_ms\": %.4f}",
                e->group_threshold, e->batch_rows, e->tile_rows, e->tile_channels,
                e->dataflow == MN_FUSED ? "fused" : "grouped", e->tuned_ms, e->default_ms);
        }
        fprintf(f, "\n]}\n");
    }
    if (!file_bad && (!f || fclose(f) != 0 || rename(tmp, cfg.cache) != 0)) {
        fprintf(stderr, "minuet: cannot write %s: %s; tuning kept in memory\n", cfg.cache,
                strerror(errno));
        unlink(tmp);
        file_bad = true;
    }
    flock(lfd, LOCK_UN);
    close(lfd);
}

mn_status mn_tune_parse(const char *buf, size_t len, size_t *entries)
{
    pthread_mutex_lock(&table_lock);
    size_t before = table_n;
    rd r = {buf, buf + len, NULL};
    bool ok = parse_cache(&r);
    *entries = table_n - before;
    pthread_mutex_unlock(&table_lock);
    return ok ? MN_OK : mn_fail(MN_EFORMAT, "%s", r.why);
}

void mn_tune_forget(void)
{
    pthread_mutex_lock(&table_lock);
    free(table);
    table = NULL;
    table_n = table_cap = 0;
    pthread_mutex_unlock(&table_lock);
}

size_t mn_tune_entries(mn_tune_entry *out, size_t max)
{
    pthread_mutex_lock(&table_lock);
    size_t n = table_n;
    for (size_t i = 0; i < n && i < max; i++)
        out[i] = table[i];
    pthread_mutex_unlock(&table_lock);
    return n;
}

/* ---- timing the candidates --------------------------------------------------------------- */

/* Pairs in the sample: 2^16, fewer for wide layers (about 2^27 multiply-adds, so that
 * a candidate takes milliseconds), never under 2^12. */
static size_t sample_pairs(int c_in, int c_out)
{
    size_t p = ((size_t)1 << 27) / ((size_t)c_in * (size_t)c_out);
    return p > ((size_t)1 << 16) ? (size_t)1 << 16 : p < ((size_t)1 << 12) ? (size_t)1 << 12 : p;
}

typedef struct sample {
    mn_kmap map;  /* the layer's map, each offset cut to the sample's output rows */
    size_t n_out; /* output rows [0, n_out) */
    float *out;   /* [n_out, c_out] */
    mn_workspace ws;
} sample;

/* The sample: the first output rows holding about sample_pairs() pairs, at least min_rows
 * of them (all the layer's at most). */
static mn_status make_sample(const mn_kmap *m, size_t n_out, int c_in, int c_out, bool tr,
                             size_t min_rows, sample *s)
{
    *s = (sample){.map = *m};
    s->n_out = n_out;
    size_t want = sample_pairs(c_in, c_out);
    if (m->total > want)
        s->n_out = (size_t)((double)n_out * (double)want / (double)m->total) + 1;
    s->n_out = s->n_out < min_rows ? min_rows : s->n_out;
    s->n_out = s->n_out < n_out ? s->n_out : n_out;
    s->map.count = malloc((size_t)m->nk * sizeof *s->map.count);
    s->out = malloc((s->n_out ? s->n_out : 1) * (size_t)c_out * sizeof *s->out);
    if (!s->map.count || !s->out) {
        free(s->map.count);
        free(s->out);
        return mn_fail(MN_ENOMEM, "out of memory for the tuning sample");
    }
    s->map.total = 0;
    for (int k = 0; k < m->nk; k++) {
        s->map.count[k] = mn_rows_below(tr ? m->in[k] : m->out[k], m->count[k], s->n_out);
        s->map.total += s->map.count[k];
    }
    return MN_OK;
}

static void free_sample(sample *s)
{
    free(s->map.count);
    free(s->out);
    mn_workspace_free(&s->ws);
}

/* The sample with options c, in ms: one run, or the best of three when it is short (under
 * 5 ms, where one run is mostly noise). The arguments were checked by mn_conv. */
static double time_candidate(sample *s, const float *in, int c_in, const float *W, int c_out,
                             const mn_conv_opts *c)
{
    double best = INFINITY;
    for (int rep = 0; rep < 3 && best >= 5.0; rep++) {
        double t0 = mn_seconds();
        if (mn_conv_checked(&s->map, in, c_in, W, NULL, c_out, s->out, s->n_out, c) != MN_OK)
            return INFINITY;
        double t = (mn_seconds() - t0) * 1e3;
        best = t < best ? t : best;
    }
    return best;
}

/* Time the candidates on the sample; the fastest goes into e. */
static mn_status tune(const mn_kmap *map, const float *in, int c_in, const float *W, int c_out,
                      size_t n_out, const mn_conv_opts *o, mn_tune_entry *e)
{
    sample s;
    mn_status st = make_sample(map, n_out, c_in, c_out, o->transposed, 0, &s);
    if (st != MN_OK)
        return st;
    mn_conv_opts c = {.group_threshold = MN_DEFAULT_GROUP_THRESHOLD,
                      .threads = o->threads,
                      .transposed = o->transposed,
                      .tile_rows = MN_DEFAULT_TILE_ROWS,
                      .ws = &s.ws};
    time_candidate(&s, in, c_in, W, c_out, &c); /* warm up: workspace, caches */
    /* The scatter tile at the default grouping; the default tile is among them. */
    static const size_t tiles[] = {16, 64, 256, 1024, 4096};
    mn_conv_opts best = c;
    double best_ms = INFINITY;
    for (int ch = 0; ch <= (c_out >= 64 ? 32 : 0); ch += 32)
        for (size_t i = 0; i < sizeof tiles / sizeof tiles[0]; i++) {
            c.tile_rows = tiles[i];
            c.tile_channels = ch;
            double t = time_candidate(&s, in, c_in, W, c_out, &c);
            if (tiles[i] == MN_DEFAULT_TILE_ROWS && ch == 0)
                e->default_ms = t;
            if (t < best_ms) {
                best_ms = t;
                best = c;
            }
        }
    /* Then grouping threshold x batched GEMMs (never, or for every group) at that tile. */
    static const double thr[] = {0, 0.25, 1, 4};
    static const size_t batch[] = {0, (size_t)1 << 30};
    int nb = mn_threads(o->threads) > 1 ? 2 : 1; /* one thread: nothing to batch over */
    c = best;
    for (size_t i = 0; i < sizeof thr / sizeof thr[0]; i++)
        for (int b = 0; b < nb; b++) {
            if (thr[i] == MN_DEFAULT_GROUP_THRESHOLD && b == 0)
                continue; /* timed above */
            c.group_threshold = thr[i];
            c.batch_rows = batch[b];
            double t = time_candidate(&s, in, c_in, W, c_out, &c);
            if (t < best_ms) {
                best_ms = t;
                best = c;
            }
        }
    /* The fused dataflow, with its tile of output rows, each on a sample of at least two
     * tiles per thread (else a big tile would run on one thread and look slow), compared
     * by time per pair. */
    static const size_t ftiles[] = {128, 512, 2048};
    int nt = mn_threads(o->threads);
    double best_rate = best_ms / (double)(s.map.total ? s.map.total : 1);
    mn_conv_opts fb = best;
    fb.dataflow = MN_FUSED;
    fb.tile_channels = 0;
    for (size_t i = 0; i < sizeof ftiles / sizeof ftiles[0]; i++) {
        sample fs;
        if (make_sample(map, n_out, c_in, c_out, o->transposed, 2 * (size_t)nt * ftiles[i], &fs) !=
            MN_OK)
            break;
        fb.tile_rows = ftiles[i];
        fb.ws = &fs.ws;
        double t = time_candidate(&fs, in, c_in, W, c_out, &fb);
        double rate = t / (double)(fs.map.total ? fs.map.total : 1);
        if (rate < best_rate) {
            best_rate = rate;
            best_ms = rate * (double)s.map.total; /* on the first sample's scale */
            best = fb;
        }
        free_sample(&fs);
    }
    free_sample(&s);
    if (!isfinite(best_ms))
        return mn_fail(MN_EINVAL, "autotune: no candidate ran (%s)", mn_last_error());
    e->group_threshold = best.group_threshold;
    e->batch_rows = best.batch_rows;
    e->tile_rows = best.tile_rows;
    e->tile_channels = best.tile_channels;
    e->dataflow = best.dataflow;
    e->tuned_ms = best_ms;
    return MN_OK;
}

/* ---- lookup ------------------------------------------------------------------------------ */

static int log2_ceil(size_t v)
{
    int b = 0;
    while (b < 63 && ((size_t)1 << b) < v)
        b++;
    return b;
}

static char cpu_model[96];

/* The CPU's model name from /proc/cpuinfo ("unknown" where there is none). */
static void read_model(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) != 0 || !colon)
            continue;
        colon += 1 + strspn(colon + 1, " \t");
        colon[strcspn(colon, "\n")] = '\0';
        snprintf(cpu_model, sizeof cpu_model, "%s", colon);
        break;
    }
    if (f)
        fclose(f);
    if (!cpu_model[0])
        snprintf(cpu_model, sizeof cpu_model, "unknown");
}

static void device_key(int threads, char *out, size_t cap)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, read_model);
    snprintf(out, cap, "cpu: %s; %s kernel; %d threads", cpu_model, mn_cpu_kernel(), threads);
}

mn_status mn_tune_lookup(const mn_kmap *map, const float *in, int c_in, const float *W, int c_out,
                         size_t n_out, const mn_conv_opts *o, mn_conv_opts *tuned)
{
    mn_tune_entry e = {0};
    device_key(mn_threads(o->threads), e.device, sizeof e.device);
    snprintf(e.shape, sizeof e.shape, "cin %d cout %d offsets %d%s pairs 2^%d rows 2^%d", c_in,
             c_out, map->nk, o->transposed ? " transposed" : "", log2_ceil(map->total),
             log2_ceil(n_out));
    pthread_mutex_lock(&table_lock);
    if (!file_read) {
        read_cache();
        file_read = true;
    }
    const mn_tune_entry *hit = find(e.device, e.shape);
    if (hit)
        e = *hit;
    pthread_mutex_unlock(&table_lock);
    if (!hit) {
        mn_status s = tune(map, in, c_in, W, c_out, n_out, o, &e);
        if (s != MN_OK)
            return s;
        pthread_mutex_lock(&table_lock);
        add(&e);
        write_cache();
        pthread_mutex_unlock(&table_lock);
    }
    tuned->group_threshold = e.group_threshold;
    tuned->batch_rows = e.batch_rows;
    tuned->tile_rows = e.tile_rows;
    tuned->tile_channels = e.tile_channels;
    tuned->dataflow = e.dataflow;
    tuned->autotune = false;
    return MN_OK;
}
