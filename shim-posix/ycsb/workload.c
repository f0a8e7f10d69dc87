/* workload.c: YCSB's core workloads without a backend: random numbers, the zipfian, scrambled
 * zipfian and skewed-latest generators, the acknowledged insert counter, the workloads' operation
 * mixes and the per-thread key chooser (CoreWorkload's keychooser and nextKeynum).
 *
 * Sections: random numbers, zipfian, scrambled and latest, the acknowledged counter,
 * workloads, the key chooser.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "ycsb.h"

/* ---- random numbers ------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void ycsb_rng_seed(ycsb_rng *r, uint64_t seed, uint64_t stream)
{
    /* Streams of one seed start from unrelated splitmix64 states (the stream index is
     * scrambled before it is mixed in), so threads 0, 1, 2... of one run are independent,
     * and a thread's sequence depends on nothing but (seed, its index). */
    uint64_t x = stream;
    uint64_t st = seed ^ splitmix64(&x);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&st);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ycsb_rng_next(ycsb_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double ycsb_rng_double(ycsb_rng *r) { return (double)(ycsb_rng_next(r) >> 11) * 0x1.0p-53; }

uint64_t ycsb_rng_below(ycsb_rng *r, uint64_t n)
{
    /* Lemire's multiply-shift with rejection of the short first interval: unbiased. */
    unsigned __int128 m = (unsigned __int128)ycsb_rng_next(r) * n;
    uint64_t lo = (uint64_t)m;
    if (lo < n) {
        uint64_t floor = -n % n;
        while (lo < floor) {
            m = (unsigned __int128)ycsb_rng_next(r) * n;
            lo = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

int64_t ycsb_fnv64(int64_t v)
{
    uint64_t h = 0xcbf29ce484222325ULL, x = (uint64_t)v;
    for (int i = 0; i < 8; i++) {
        h ^= x & 0xff;
        x >>= 8;
        h *= 1099511628211ULL;
    }
    int64_t s = (int64_t)h;
    /* Java's Math.abs: INT64_MIN stays negative. */
    return s < 0 && s != INT64_MIN ? -s : s;
}

/* ---- zipfian ------------------------------------------------------------------------- */

/* Why not YCSB's own ZipfianGenerator: it uses Gray et al.'s closed-form approximation,
 * exact for the first two ranks only; over 1000 items with theta 0.99 its third rank comes
 * out 17% too often, and 10^6 draws fail a chi-square test against the zipfian
 * probabilities by a wide margin (tests/unit/ycsb/test_generators.c keeps it as the
 * negative control). Rejection-inversion samples the exact distribution, needs no zeta sum
 * (so 10^10 items cost nothing to set up and a growing key space costs O(1)), and draws
 * about 1.1 uniforms per value.
 *
 * With H(x) = integral of t^-theta from 1 to x and h(x) = x^-theta: draw u uniform in
 * (H(1.5) - 1, H(n + 0.5)], x = H^-1(u), k = x rounded; accept k when u >= H(k + 0.5) -
 * h(k) (always true when k - x <= s). Then P(k) is proportional to h(k) exactly. The
 * helpers compute log1p(t)/t and expm1(t)/t stably near 0, so theta near 1 is fine. */
static double helper1(double x)
{
    return fabs(x) > 1e-8 ? log1p(x) / x : 1.0 - x * (0.5 - x * (1.0 / 3.0 - x * 0.25));
}

static double helper2(double x)
{
    return fabs(x) > 1e-8 ? expm1(x) / x : 1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + x * 0.25));
}

static double zh_integral(double x, double theta)
{
    double lx = log(x);
    return helper2((1.0 - theta) * lx) * lx;
}

static double zh(double x, double theta) { return exp(-theta * log(x)); }

static double zh_integral_inv(double x, double theta)
{
    double t = x * (1.0 - theta);
    if (t < -1.0)
        t = -1.0; /* rounding can take it just past the domain */
    return exp(helper1(t) * x);
}

void ycsb_zipf_init(ycsb_zipf *z, uint64_t n, double theta)
{
    z->theta = theta;
    z->h_x1 = zh_integral(1.5, theta) - 1.0;
    z->s = 2.0 - zh_integral_inv(zh_integral(2.5, theta) - zh(2.0, theta), theta);
    z->n = 0;
    ycsb_zipf_resize(z, n);
}

void ycsb_zipf_resize(ycsb_zipf *z, uint64_t n)
{
    if (n < 1)
        n = 1;
    if (n == z->n)
        return;
    z->n = n;
    z->h_n = zh_integral((double)n + 0.5, z->theta);
}

uint64_t ycsb_zipf_next(const ycsb_zipf *z, ycsb_rng *r)
{
    for (;;) {
        double u = z->h_n + ycsb_rng_double(r) * (z->h_x1 - z->h_n);
        double x = zh_integral_inv(u, z->theta);
        double kd = floor(x + 0.5);
        uint64_t k;
        if (kd < 1.0)
            k = 1;
        else if (kd >= (double)z->n)
            k = z->n;
        else
            k = (uint64_t)kd;
        if ((double)k - x <= z->s ||
            u >= zh_integral((double)k + 0.5, z->theta) - zh((double)k, z->theta))
            return k - 1;
    }
}

/* ---- scrambled and latest ------------------------------------------------------------ */

void ycsb_scrambled_init(ycsb_scrambled *s, uint64_t min, uint64_t items, double theta)
{
    s->min = min;
    s->items = items ? items : 1;
    ycsb_zipf_init(&s->z, YCSB_SCRAMBLE_ITEMS, theta);
}

uint64_t ycsb_scrambled_map(const ycsb_scrambled *s, uint64_t rank)
{
    return s->min + (uint64_t)ycsb_fnv64((int64_t)rank) % s->items;
}

uint64_t ycsb_scrambled_next(const ycsb_scrambled *s, ycsb_rng *r)
{
    return ycsb_scrambled_map(s, ycsb_zipf_next(&s->z, r));
}

void ycsb_latest_init(ycsb_latest *l, double theta) { ycsb_zipf_init(&l->z, 1, theta); }

uint64_t ycsb_latest_next(ycsb_latest *l, uint64_t last, ycsb_rng *r)
{
    /* YCSB draws max - zipfian(max items), which never returns key 0; over last + 1 items
     * every existing key can be drawn, the newest with the largest probability. */
    ycsb_zipf_resize(&l->z, last + 1);
    return last - ycsb_zipf_next(&l->z, r);
}

/* ---- the acknowledged counter -------------------------------------------------------- */

int ycsb_counter_init(ycsb_counter *c, uint64_t start, rt_err *err)
{
    c->window = calloc(YCSB_ACK_WINDOW, 1);
    if (!c->window)
        return rt_err_set(err, ENOMEM, "insert counter: no memory for %u flags", YCSB_ACK_WINDOW);
    pthread_mutex_init(&c->mu, NULL);
    c->next = start;
    c->last = (int64_t)start - 1;
    return 0;
}

void ycsb_counter_destroy(ycsb_counter *c)
{
    free(c->window);
    c->window = NULL;
    pthread_mutex_destroy(&c->mu);
}

uint64_t ycsb_counter_next(ycsb_counter *c)
{
    return __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED);
}

int64_t ycsb_counter_last(ycsb_counter *c) { return __atomic_load_n(&c->last, __ATOMIC_ACQUIRE); }

int ycsb_counter_ack(ycsb_counter *c, uint64_t v)
{
    const uint64_t mask = YCSB_ACK_WINDOW - 1;
    pthread_mutex_lock(&c->mu);
    int64_t last = c->last;
    int rc = 0;
    if ((int64_t)v <= last) {
        rc = 0; /* already part of the prefix: nothing to do */
    } else if ((uint64_t)((int64_t)v - last - 1) >= YCSB_ACK_WINDOW) {
        rc = -EOVERFLOW;
    } else {
        c->window[v & mask] = 1;
        while (c->window[(uint64_t)(last + 1) & mask]) {
            c->window[(uint64_t)(last + 1) & mask] = 0;
            last++;
        }
        /* Release: a reader that sees the new prefix also sees that its inserts returned. */
        __atomic_store_n(&c->last, last, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* ---- workloads ----------------------------------------------------------------------- */

const char *const ycsb_op_names[YCSB_NOPS] = {"read", "update", "insert", "scan", "rmw"};

/* YCSB's workloads/workload[a-f] property files; columns read, update, insert, scan, rmw. */
static const ycsb_workload workloads[] = {
    {'a', {0.50, 0.50, 0, 0, 0}, YCSB_DIST_ZIPFIAN, 100},
    {'b', {0.95, 0.05, 0, 0, 0}, YCSB_DIST_ZIPFIAN, 100},
    {'c', {1.00, 0, 0, 0, 0}, YCSB_DIST_ZIPFIAN, 100},
    {'d', {0.95, 0, 0.05, 0, 0}, YCSB_DIST_LATEST, 100},
    {'e', {0, 0, 0.05, 0.95, 0}, YCSB_DIST_ZIPFIAN, 100},
    {'f', {0.50, 0, 0, 0, 0.50}, YCSB_DIST_ZIPFIAN, 100},
};

const ycsb_workload *ycsb_workload_get(char letter)
{
    if (letter >= 'A' && letter <= 'Z')
        letter = (char)(letter - 'A' + 'a');
    for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++)
        if (workloads[i].letter == letter)
            return &workloads[i];
    return NULL;
}

ycsb_op ycsb_choose_op(const ycsb_workload *w, ycsb_rng *r)
{
    double u = ycsb_rng_double(r);
    int lastpos = 0;
    for (int i = 0; i < YCSB_NOPS; i++) {
        if (w->prop[i] <= 0)
            continue;
        if (u < w->prop[i])
            return (ycsb_op)i;
        u -= w->prop[i];
        lastpos = i;
    }
    return (ycsb_op)lastpos; /* u landed in the rounding slack past the sum */
}

unsigned ycsb_scan_length(const ycsb_workload *w, ycsb_rng *r)
{
    return 1 + (unsigned)ycsb_rng_below(r, w->max_scan_length);
}

/* ---- the key chooser ----------------------------------------------------------------- */

void ycsb_chooser_init(ycsb_chooser *c, const ycsb_workload *w, uint64_t records, uint64_t ops)
{
    c->w = w;
    /* CoreWorkload: ScrambledZipfianGenerator(insertstart, insertstart + insertcount +
     * expectednewkeys), both bounds inclusive; expectednewkeys = ops x insert proportion x
     * 2. Sizing the key space for the inserts to come keeps each key's popularity fixed
     * while keys are added; keys not inserted yet are redrawn (ycsb_chooser_key). */
    uint64_t expected = (uint64_t)((double)ops * w->prop[YCSB_INSERT] * 2.0);
    ycsb_scrambled_init(&c->zs, 0, records + expected + 1, YCSB_ZIPF_THETA);
    ycsb_latest_init(&c->lat, YCSB_ZIPF_THETA);
}

uint64_t ycsb_chooser_key(ycsb_chooser *c, int64_t last, ycsb_rng *r)
{
    if (c->w->dist == YCSB_DIST_LATEST)
        return ycsb_latest_next(&c->lat, (uint64_t)last, r);
    uint64_t k;
    do
        k = ycsb_scrambled_next(&c->zs, r);
    while ((int64_t)k > last);
    return k;
}
