/* ycsb.h: what splitft-ycsb's files share: the workload's pure parts (random numbers, the
 * key and operation choosers, key names, values and versions, latency histograms, the
 * acknowledged insert counter) and the interface each backend implements.
 *
 * The pure parts take all their randomness from a caller's ycsb_rng, so that the unit tests
 * (tests/unit/ycsb) drive them with fixed seeds and no backend. Every function here is
 * safe to call from several threads on distinct objects; ycsb_counter is the one object
 * threads share.
 */
#ifndef YCSB_H
#define YCSB_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt/err.h"

#pragma GCC visibility push(hidden)

/* ---- random numbers ------------------------------------------------------------------ */

/* xoshiro256**, seeded through splitmix64: a stream per (seed, stream index). */
typedef struct ycsb_rng {
    uint64_t s[4];
} ycsb_rng;

void ycsb_rng_seed(ycsb_rng *r, uint64_t seed, uint64_t stream);
uint64_t ycsb_rng_next(ycsb_rng *r);
/* Uniform in [0, 1), 53 bits. */
double ycsb_rng_double(ycsb_rng *r);
/* Uniform in [0, n), n >= 1, without modulo bias. */
uint64_t ycsb_rng_below(ycsb_rng *r, uint64_t n);

/* YCSB's Utils.fnvhash64: FNV-1a over the 8 little-endian bytes of v, as a Java long made
 * non-negative with Math.abs (which leaves INT64_MIN as it is). */
int64_t ycsb_fnv64(int64_t v);

/* ---- generators ---------------------------------------------------------------------- */

/* Zipfian over ranks 0..n-1: P(rank k) = (k+1)^-theta / zeta(n, theta), sampled exactly by
 * rejection-inversion (Hörmann and Derflinger 1996) in O(1) time and memory for any n. */
typedef struct ycsb_zipf {
    uint64_t n;
    double theta;
    double h_x1, h_n, s; /* H(1.5) - 1, H(n + 0.5), the acceptance shortcut */
} ycsb_zipf;

#define YCSB_ZIPF_THETA 0.99 /* YCSB's zipfian constant */

/* n >= 1, theta > 0. */
void ycsb_zipf_init(ycsb_zipf *z, uint64_t n, double theta);
/* Change the number of items (O(1)); the distribution over the first items is unchanged
 * up to the normalisation. */
void ycsb_zipf_resize(ycsb_zipf *z, uint64_t n);
uint64_t ycsb_zipf_next(const ycsb_zipf *z, ycsb_rng *r);

/* YCSB's ScrambledZipfianGenerator: a zipfian rank over YCSB_SCRAMBLE_ITEMS items, hashed
 * with ycsb_fnv64 onto [min, min + items): popular keys are spread over the key space
 * instead of clustered at its start, and the popularity of a key does not depend on
 * `items` (which YCSB chooses larger than the keys that exist; see ycsb_chooser). */
#define YCSB_SCRAMBLE_ITEMS 10000000000ULL
typedef struct ycsb_scrambled {
    uint64_t min, items;
    ycsb_zipf z;
} ycsb_scrambled;

void ycsb_scrambled_init(ycsb_scrambled *s, uint64_t min, uint64_t items, double theta);
/* The key of a zipfian rank: min + fnv64(rank) mod items. */
uint64_t ycsb_scrambled_map(const ycsb_scrambled *s, uint64_t rank);
uint64_t ycsb_scrambled_next(const ycsb_scrambled *s, ycsb_rng *r);

/* YCSB's SkewedLatestGenerator: last - (a zipfian rank over last + 1 items), so the newest
 * key is the most popular. The zipfian is resized when `last` moved since the last call. */
typedef struct ycsb_latest {
    ycsb_zipf z;
} ycsb_latest;

void ycsb_latest_init(ycsb_latest *l, double theta);
/* A key in [0, last]. */
uint64_t ycsb_latest_next(ycsb_latest *l, uint64_t last, ycsb_rng *r);

/* YCSB's AcknowledgedCounterGenerator, shared by the threads: ycsb_counter_next hands out
 * insert key numbers from `start` on; ycsb_counter_last is the largest number L such that
 * every number from start to L was acknowledged (start - 1 before any), so a read never
 * targets a key whose insert has not finished. Acknowledgements may come in any order;
 * at most YCSB_ACK_WINDOW numbers may be handed out and not yet acknowledged. */
#define YCSB_ACK_WINDOW (1u << 20)
typedef struct ycsb_counter {
    pthread_mutex_t mu;
    uint64_t next;   /* atomic */
    int64_t last;    /* atomic; written under mu */
    uint8_t *window; /* YCSB_ACK_WINDOW flags, under mu */
} ycsb_counter;

int ycsb_counter_init(ycsb_counter *c, uint64_t start, rt_err *err);
void ycsb_counter_destroy(ycsb_counter *c);
uint64_t ycsb_counter_next(ycsb_counter *c);
/* -EOVERFLOW when v is a window's length past the acknowledged prefix. */
int ycsb_counter_ack(ycsb_counter *c, uint64_t v);
int64_t ycsb_counter_last(ycsb_counter *c);

/* ---- workloads ----------------------------------------------------------------------- */

typedef enum ycsb_op {
    YCSB_READ,
    YCSB_UPDATE,
    YCSB_INSERT,
    YCSB_SCAN,
    YCSB_RMW,
    YCSB_NOPS
} ycsb_op;

extern const char *const ycsb_op_names[YCSB_NOPS]; /* "read", "update", "insert", "scan", "rmw" */

typedef enum ycsb_dist { YCSB_DIST_ZIPFIAN, YCSB_DIST_LATEST } ycsb_dist;

typedef struct ycsb_workload {
    char letter;              /* 'a'..'f' */
    double prop[YCSB_NOPS];   /* proportions, summing to 1 */
    ycsb_dist dist;           /* request distribution of reads, updates, scans, rmw */
    unsigned max_scan_length; /* scan lengths uniform in 1..max_scan_length */
} ycsb_workload;

/* YCSB's core workload `letter` (a-f, either case); NULL when there is none. */
const ycsb_workload *ycsb_workload_get(char letter);
/* An operation drawn with the workload's proportions (YCSB's DiscreteGenerator). */
ycsb_op ycsb_choose_op(const ycsb_workload *w, ycsb_rng *r);
unsigned ycsb_scan_length(const ycsb_workload *w, ycsb_rng *r);

/* The key chooser of one thread: CoreWorkload's keychooser and nextKeynum. For zipfian,
 * a scrambled zipfian over records + expected new keys (2 x ops x insert proportion, YCSB's
 * fudge factor), redrawn while it picks a key beyond the acknowledged inserts; for latest,
 * the skewed latest generator over the acknowledged inserts. */
typedef struct ycsb_chooser {
    const ycsb_workload *w;
    ycsb_scrambled zs;
    ycsb_latest lat;
} ycsb_chooser;

void ycsb_chooser_init(ycsb_chooser *c, const ycsb_workload *w, uint64_t records, uint64_t ops);
/* A key number in [0, last]; last >= 0. */
uint64_t ycsb_chooser_key(ycsb_chooser *c, int64_t last, ycsb_rng *r);

/* ---- keys, values and versions ------------------------------------------------------- */

#define YCSB_KEY_MAX 32 /* "user" + a signed 64-bit number + NUL */

/* "user" + ycsb_fnv64(keynum) in decimal (CoreWorkload.buildKeyName with hashed inserts).
 * Returns the length. */
size_t ycsb_key_name(uint64_t keynum, char out[YCSB_KEY_MAX]);

/* A version names one acknowledged write of a key: its sequence number (microseconds of
 * CLOCK_REALTIME, made strictly increasing per key by the writer) shifted left by 8, and in
 * the low byte the field it wrote plus 1, or 0 for a write of every field (an insert).
 * Versions of one key increase in the order the backend applied the writes, so a field
 * holding version v proves that every write of that field with a version <= v happened
 * (the argument is in ycsb.c, above the write path). */
#define YCSB_FIELDS_MAX  128
#define YCSB_VERSION_ALL (-1)
uint64_t ycsb_version_make(uint64_t seq, int field); /* field YCSB_VERSION_ALL or 0.. */
int ycsb_version_field(uint64_t version);            /* YCSB_VERSION_ALL or the field */

/* A field's value: "KEY:VERSION:" and then printable bytes from a hash of (key, field,
 * version), `len` bytes in all; len >= YCSB_VALUE_MIN. */
#define YCSB_VALUE_MIN 64
void ycsb_value_fill(char *out, size_t len, const char *key, int field, uint64_t version);
/* 0 when val (len bytes) is exactly what ycsb_value_fill(want_len, key, field, v) gives for
 * some v, stored in *version; -EINVAL otherwise (a wrong length, key, prefix or byte). */
int ycsb_value_parse(const char *val, size_t len, size_t want_len, const char *key, int field,
                     uint64_t *version);

/* ---- latency histograms -------------------------------------------------------------- */

/* Log-linear buckets over nanoseconds: exact below 128 ns, then 128 buckets per power of
 * two, so a reported value is at most 1/128 (0.8%) above the true one; values past 2^41 ns
 * (about 36 minutes) count in the last bucket. One thread records into a histogram;
 * histograms are merged after the threads are joined. */
#define YCSB_HIST_SUB_BITS 7
#define YCSB_HIST_TOP_BIT  41
#define YCSB_HIST_BUCKETS  ((YCSB_HIST_TOP_BIT - YCSB_HIST_SUB_BITS + 2) << YCSB_HIST_SUB_BITS)

typedef struct ycsb_hist {
    uint64_t count, max;
    uint64_t bucket[YCSB_HIST_BUCKETS];
} ycsb_hist;

void ycsb_hist_init(ycsb_hist *h);
void ycsb_hist_record(ycsb_hist *h, uint64_t ns);
void ycsb_hist_merge(ycsb_hist *dst, const ycsb_hist *src);
unsigned ycsb_hist_bucket(uint64_t ns);
uint64_t ycsb_hist_bucket_upper(unsigned b); /* the largest value bucket b holds */
/* The value at quantile q in [0, 1] (the smallest recorded value with at least q of the
 * values at or below it), as its bucket's upper bound clamped to the maximum; 0 when
 * empty. */
uint64_t ycsb_hist_quantile(const ycsb_hist *h, double q);

/* ---- backends ------------------------------------------------------------------------ */

typedef enum ycsb_phase { YCSB_LOAD, YCSB_RUN, YCSB_CHECK } ycsb_phase;

typedef struct ycsb_conf {
    const char *target; /* HOST:PORT or PATH */
    ycsb_phase phase;
    int fieldcount;
    size_t fieldlength;
    bool sync;      /* --sync: the backend's strong durability */
    bool exclusive; /* --exclusive (sqlite): one connection, locking_mode=EXCLUSIVE */
} ycsb_conf;

/* A record as read: one slot per field, a buffer per slot that grows and is reused. */
typedef struct ycsb_field {
    char *p;
    size_t len, cap;
    bool present;
} ycsb_field;

typedef struct ycsb_rec {
    int n;
    ycsb_field f[YCSB_FIELDS_MAX];
} ycsb_rec;

void ycsb_rec_init(ycsb_rec *r, int fieldcount);
void ycsb_rec_clear(ycsb_rec *r); /* every slot absent, buffers kept */
void ycsb_rec_free(ycsb_rec *r);
/* Copy a value into slot i; -ENOMEM. */
int ycsb_rec_set(ycsb_rec *r, int i, const char *v, size_t len);
/* The field index of a name "field<i>" (any case, as SQLite's column FIELD<i>) with
 * i < n; -1 otherwise. */
int ycsb_field_index(const char *name, size_t len, int n);

/* Each backend: open once per process (`db`), connect once per thread (`conn`). Operations
 * return 0, -ENOENT when the record does not exist (err names the key), or another negative
 * errno with err saying what failed where; after such an error the connection may be
 * unusable. vals[i] are fieldlength bytes each. */
typedef struct ycsb_backend {
    const char *name;
    int (*open)(const ycsb_conf *c, void **db, rt_err *err);
    void (*close)(void *db);
    int (*connect)(void *db, void **conn, rt_err *err);
    void (*disconnect)(void *conn);
    int (*insert)(void *conn, const char *key, char *const *vals, rt_err *err);
    int (*read)(void *conn, const char *key, ycsb_rec *out, rt_err *err);
    int (*update)(void *conn, const char *key, int field, const char *val, rt_err *err);
    /* Up to count records from start on, in the backend's scan order, read into scratch
     * one after the other; *found = how many. */
    int (*scan)(void *conn, const char *start, unsigned count, ycsb_rec *scratch, unsigned *found,
                rt_err *err);
} ycsb_backend;

extern const ycsb_backend ycsb_backend_redis, ycsb_backend_rocksdb, ycsb_backend_sqlite;

/* The command line, as main parsed it. */
typedef struct ycsb_opts {
    ycsb_phase phase;
    const ycsb_backend *be;
    const char *target;
    const ycsb_workload *w;
    uint64_t records, ops, duration_ns, seed, interval_ms;
    int threads, fieldcount;
    size_t fieldlength;
    bool sync, exclusive;
    const char **acked;
    size_t nacked;
    const char *timeline, *csv, *hist;
} ycsb_opts;

/* check: read back every write the --acked files name (check.c); the exit status. */
int ycsb_check(const ycsb_opts *o, void *db);

#pragma GCC visibility pop

#endif
