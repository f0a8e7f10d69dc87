/* store.c: per-client logs of ncl-server: fencing, append, trims, shadow catch-up,
 * capacity accounting.
 *
 * Sections: record runs (ncl_recs), logs and the store, the operations.
 */
#include "store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- record runs --------------------------------------------------------------------- */

/* The size of a stored (already validated) record: len at 32, path_len at 36. */
static size_t rec_size_of(const unsigned char *enc)
{
    uint32_t len = (uint32_t)enc[32] | (uint32_t)enc[33] << 8 | (uint32_t)enc[34] << 16 |
                   (uint32_t)enc[35] << 24;
    uint16_t plen = (uint16_t)(enc[36] | enc[37] << 8);
    return NCL_REC_HDR_SIZE + plen + (size_t)len;
}

static uint64_t charge(size_t rec_size) { return rec_size + NCL_REC_OVERHEAD; }

static unsigned char **slot(const ncl_recs *r, uint64_t seq)
{
    return &r->ring[(r->head + (size_t)(seq - r->start)) % r->cap];
}

static void recs_drop_front(ncl_store *st, ncl_recs *r)
{
    unsigned char **s = slot(r, r->start);
    uint64_t c = charge(rec_size_of(*s));
    free(*s);
    *s = NULL;
    r->bytes -= c;
    st->used -= c;
    r->head = (r->head + 1) % r->cap;
    r->start++;
}

/* Drop every record; the run restarts empty at `at`. */
static void recs_reset(ncl_store *st, ncl_recs *r, uint64_t at)
{
    while (r->start < r->next)
        recs_drop_front(st, r);
    r->head = 0;
    r->start = r->next = at;
}

static void recs_free(ncl_store *st, ncl_recs *r)
{
    recs_reset(st, r, 0);
    free(r->ring);
    r->ring = NULL;
    r->cap = 0;
}

static int recs_grow(ncl_recs *r, size_t need)
{
    if (need <= r->cap)
        return 0;
    size_t nc = r->cap ? r->cap : 64;
    while (nc < need)
        nc *= 2;
    unsigned char **n = malloc(nc * sizeof *n);
    if (!n)
        return -ENOMEM;
    size_t held = r->cap ? (size_t)(r->next - r->start) : 0;
    for (size_t i = 0; i < held; i++)
        n[i] = r->ring[(r->head + i) % r->cap];
    free(r->ring);
    r->ring = n;
    r->cap = nc;
    r->head = 0;
    return 0;
}

static void recs_trim(ncl_store *st, ncl_recs *r, uint64_t new_start)
{
    while (r->start < new_start && r->start < r->next)
        recs_drop_front(st, r);
    if (r->start < new_start) { /* past everything held: the run restarts there */
        r->start = r->next = new_start;
        r->head = 0;
    }
}

static uint64_t recs_trim_file(ncl_store *st, ncl_recs *r, uint64_t dev, uint64_t ino,
                               uint64_t below)
{
    uint64_t count = 0;
    for (uint64_t s = r->start; s < r->next && s < below; s++) {
        unsigned char **p = slot(r, s);
        ncl_rec rec;
        size_t used;
        if (ncl_rec_decode(*p, rec_size_of(*p), &rec, &used, NULL) < 0 ||
            rec.kind != NCL_REC_WRITE || rec.dev != dev || rec.ino != ino)
            continue;
        unsigned char *t = malloc(NCL_REC_HDR_SIZE);
        if (!t)
            continue; /* keeping the record is safe, only bigger */
        ncl_rec tomb = {.seq = rec.seq,
                        .dev = dev,
                        .ino = ino,
                        .offset = rec.offset,
                        .kind = NCL_REC_TOMBSTONE};
        ncl_rec_encode(t, &tomb);
        uint64_t before = charge(used), after = charge(NCL_REC_HDR_SIZE);
        r->bytes = r->bytes - before + after;
        st->used = st->used - before + after;
        free(*p);
        *p = t;
        count++;
    }
    /* Leading tombstones carry nothing: trim them (kind is at byte 38). */
    while (r->start < r->next && (*slot(r, r->start))[38] == NCL_REC_TOMBSTONE)
        recs_drop_front(st, r);
    return count;
}

/* ---- logs and the store ----------------------------------------------------------- */

void ncl_store_init(ncl_store *st, uint64_t capacity)
{
    memset(st, 0, sizeof *st);
    st->capacity = capacity;
}

static void drop_shadow(ncl_store *st, ncl_log *lg)
{
    if (!lg->shadow)
        return;
    recs_free(st, lg->shadow);
    free(lg->shadow);
    lg->shadow = NULL;
}

void ncl_store_free(ncl_store *st)
{
    for (size_t i = 0; i < st->nlogs; i++) {
        drop_shadow(st, st->logs[i]);
        recs_free(st, &st->logs[i]->live);
        free(st->logs[i]);
    }
    free(st->logs);
    memset(st, 0, sizeof *st);
}

const unsigned char *ncl_log_get(const ncl_log *lg, uint64_t seq, size_t *size)
{
    const ncl_recs *r = &lg->live;
    if (seq < r->start || seq >= r->next)
        return NULL;
    unsigned char *e = *slot(r, seq);
    if (size)
        *size = rec_size_of(e);
    return e;
}

uint64_t ncl_log_bytes(const ncl_log *lg)
{
    return NCL_LOG_OVERHEAD + lg->live.bytes + (lg->shadow ? lg->shadow->bytes : 0);
}

ncl_log *ncl_store_log(ncl_store *st, const char *id, size_t len, bool create)
{
    for (size_t i = 0; i < st->nlogs; i++)
        if (strlen(st->logs[i]->id) == len && memcmp(st->logs[i]->id, id, len) == 0)
            return st->logs[i];
    if (!create || len > NCL_ID_MAX || st->used + NCL_LOG_OVERHEAD > st->capacity)
        return NULL;
    if (st->nlogs == st->caplogs) {
        size_t nc = st->caplogs ? st->caplogs * 2 : 8;
        ncl_log **n =
            realloc(st->logs,
                    nc * sizeof *n); /* NOLINT(bugprone-sizeof-expression): an array of pointers */
        if (!n)
            return NULL;
        st->logs = n;
        st->caplogs = nc;
    }
    ncl_log *lg = calloc(1, sizeof *lg);
    if (!lg)
        return NULL;
    memcpy(lg->id, id, len);
    st->used += NCL_LOG_OVERHEAD;
    st->logs[st->nlogs++] = lg;
    return lg;
}

/* ---- operations ------------------------------------------------------------------- */

/* Fencing: a request from an older epoch is refused; a newer one raises the log's. */
static int fence(ncl_store *st, ncl_log *lg, uint64_t epoch)
{
    if (epoch < lg->epoch) {
        st->fenced++;
        return NCL_R_FENCED;
    }
    if (epoch > lg->epoch)
        drop_shadow(st, lg); /* a new incarnation: an old catch-up is moot */
    lg->epoch = epoch;
    return NCL_R_OK;
}

int ncl_store_hello(ncl_store *st, ncl_log *lg, uint64_t epoch, bool query)
{
    if (query)
        return NCL_R_OK;
    return fence(st, lg, epoch);
}

int ncl_store_append(ncl_store *st, ncl_log *lg, uint64_t epoch, uint64_t first_seq, uint32_t count,
                     const unsigned char *recs, size_t len, uint64_t *next, rt_err *err)
{
    ncl_recs *r = lg->shadow ? lg->shadow : &lg->live;
    *next = r->next;
    if (fence(st, lg, epoch) != NCL_R_OK)
        return NCL_R_FENCED;
    r = lg->shadow ? lg->shadow : &lg->live;
    /* Validate the whole batch before changing anything. */
    size_t off = 0;
    uint64_t need = 0;
    for (uint32_t i = 0; i < count; i++) {
        ncl_rec rec;
        size_t used;
        int rc = ncl_rec_decode(recs + off, len - off, &rec, &used, err);
        if (rc < 0)
            return rc;
        if (rec.seq != first_seq + i)
            return rt_err_set(err, EPROTO, "record %u of the batch has seq %llu, expected %llu", i,
                              (unsigned long long)rec.seq, (unsigned long long)first_seq + i);
        off += used;
        need += charge(used);
    }
    if (off != len)
        return rt_err_set(err, EPROTO, "%zu stray bytes after %u records", len - off, count);
    if (first_seq != r->next) {
        st->gaps++;
        return NCL_R_GAP;
    }
    if (st->used + need > st->capacity || recs_grow(r, (size_t)(r->next - r->start) + count) < 0) {
        st->full++;
        return NCL_R_FULL;
    }
    off = 0;
    for (uint32_t i = 0; i < count; i++) {
        size_t size = rec_size_of(recs + off);
        unsigned char *copy = malloc(size);
        if (!copy) {
            st->full++;
            *next = r->next;
            return NCL_R_FULL; /* records before i stay: they are valid and contiguous */
        }
        memcpy(copy, recs + off, size);
        *slot(r, r->next) = copy;
        r->next++;
        r->bytes += charge(size);
        st->used += charge(size);
        off += size;
    }
    st->appends++;
    st->records_in += count;
    *next = r->next;
    return NCL_R_OK;
}

int ncl_store_trim(ncl_store *st, ncl_log *lg, uint64_t epoch, uint64_t new_start)
{
    if (fence(st, lg, epoch) != NCL_R_OK)
        return NCL_R_FENCED;
    st->trims++;
    recs_trim(st, &lg->live, new_start);
    if (lg->shadow)
        recs_trim(st, lg->shadow, new_start);
    return NCL_R_OK;
}

int ncl_store_trim_file(ncl_store *st, ncl_log *lg, uint64_t epoch, uint64_t dev, uint64_t ino,
                        uint64_t below, uint64_t *count)
{
    *count = 0;
    if (fence(st, lg, epoch) != NCL_R_OK)
        return NCL_R_FENCED;
    st->trims++;
    *count = recs_trim_file(st, &lg->live, dev, ino, below);
    if (lg->shadow)
        recs_trim_file(st, lg->shadow, dev, ino, below);
    return NCL_R_OK;
}

int ncl_store_reset(ncl_store *st, ncl_log *lg, uint64_t epoch, uint64_t start, bool shadow)
{
    if (fence(st, lg, epoch) != NCL_R_OK)
        return NCL_R_FENCED;
    st->trims++;
    if (!shadow) {
        drop_shadow(st, lg);
        recs_reset(st, &lg->live, start);
        lg->live.owner = epoch;
        return NCL_R_OK;
    }
    if (lg->shadow) {
        recs_reset(st, lg->shadow, start);
        lg->shadow->owner = epoch;
        return NCL_R_OK;
    }
    lg->shadow = calloc(1, sizeof *lg->shadow);
    if (!lg->shadow) {
        st->full++;
        return NCL_R_FULL;
    }
    lg->shadow->start = lg->shadow->next = start;
    lg->shadow->owner = epoch;
    st->syncs++;
    return NCL_R_OK;
}

int ncl_store_sync_done(ncl_store *st, ncl_log *lg, uint64_t epoch)
{
    if (fence(st, lg, epoch) != NCL_R_OK)
        return NCL_R_FENCED;
    if (!lg->shadow)
        return NCL_R_OK;
    recs_free(st, &lg->live);
    lg->live = *lg->shadow;
    free(lg->shadow);
    lg->shadow = NULL;
    return NCL_R_OK;
}
