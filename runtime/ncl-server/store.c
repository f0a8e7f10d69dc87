/* store.c: per-client logs of ncl-server: fencing, append, trims, capacity accounting. */
#include "store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static size_t rec_size_of(const unsigned char *enc)
{
    /* len at 32, path_len at 36: already validated when stored */
    uint32_t len = (uint32_t)enc[32] | (uint32_t)enc[33] << 8 | (uint32_t)enc[34] << 16 |
                   (uint32_t)enc[35] << 24;
    uint16_t plen = (uint16_t)(enc[36] | enc[37] << 8);
    return NCL_REC_HDR_SIZE + plen + (size_t)len;
}

static uint64_t charge(size_t rec_size) { return rec_size + NCL_REC_OVERHEAD; }

void ncl_store_init(ncl_store *st, uint64_t capacity)
{
    memset(st, 0, sizeof *st);
    st->capacity = capacity;
}

static unsigned char **slot(const ncl_log *lg, uint64_t seq)
{
    return &lg->ring[(lg->head + (size_t)(seq - lg->start)) % lg->cap];
}

const unsigned char *ncl_log_get(const ncl_log *lg, uint64_t seq, size_t *size)
{
    if (seq < lg->start || seq >= lg->next)
        return NULL;
    unsigned char *r = *slot(lg, seq);
    if (size)
        *size = rec_size_of(r);
    return r;
}

static void drop_front(ncl_store *st, ncl_log *lg)
{
    unsigned char **s = slot(lg, lg->start);
    uint64_t c = charge(rec_size_of(*s));
    free(*s);
    *s = NULL;
    lg->bytes -= c;
    st->used -= c;
    lg->head = (lg->head + 1) % lg->cap;
    lg->start++;
}

static void log_clear(ncl_store *st, ncl_log *lg)
{
    while (lg->start < lg->next)
        drop_front(st, lg);
    lg->head = 0;
}

void ncl_store_free(ncl_store *st)
{
    for (size_t i = 0; i < st->nlogs; i++) {
        log_clear(st, st->logs[i]);
        free(st->logs[i]->ring);
        free(st->logs[i]);
    }
    free(st->logs);
    memset(st, 0, sizeof *st);
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
        ncl_log **n = realloc(st->logs, nc * sizeof *n);
        if (!n)
            return NULL;
        st->logs = n;
        st->caplogs = nc;
    }
    ncl_log *lg = calloc(1, sizeof *lg);
    if (!lg)
        return NULL;
    memcpy(lg->id, id, len);
    lg->bytes = NCL_LOG_OVERHEAD;
    st->used += NCL_LOG_OVERHEAD;
    st->logs[st->nlogs++] = lg;
    return lg;
}

/* Fencing: a request from an older epoch is refused; a newer one raises the log's. */
static int fence(ncl_store *st, ncl_log *lg, uint64_t epoch)
{
    if (epoch < lg->epoch) {
        st->fenced++;
        return NCL_R_FENCED;
    }
    lg->epoch = epoch;
    return NCL_R_OK;
}

int ncl_store_hello(ncl_store *st, ncl_log *lg, uint64_t epoch, bool query)
{
    if (query)
        return NCL_R_OK;
    return fence(st, lg, epoch);
}

static int grow_ring(ncl_log *lg, size_t need)
{
    if (need <= lg->cap)
        return 0;
    size_t nc = lg->cap ? lg->cap : 64;
    while (nc < need)
        nc *= 2;
    unsigned char **n = malloc(nc * sizeof *n);
    if (!n)
        return -ENOMEM;
    size_t held = (size_t)(lg->next - lg->start);
    for (size_t i = 0; i < held; i++)
        n[i] = lg->ring[(lg->head + i) % lg->cap];
    free(lg->ring);
    lg->ring = n;
    lg->cap = nc;
    lg->head = 0;
    return 0;
}

int ncl_store_append(ncl_store *st, ncl_log *lg, uint64_t epoch, uint64_t first_seq, uint32_t count,
                     const unsigned char *recs, size_t len, uint64_t *next, rt_err *err)
{
    *next = lg->next;
    if (fence(st, lg, epoch) != NCL_R_OK)
        return NCL_R_FENCED;
    /* Validate the whole batch before changing anything. */
    size_t off = 0;
    uint64_t need = 0;
    for (uint32_t i = 0; i < count; i++) {
        ncl_rec r;
        size_t used;
        int rc = ncl_rec_decode(recs + off, len - off, &r, &used, err);
        if (rc < 0)
            return rc;
        if (r.seq != first_seq + i)
            return rt_err_set(err, EPROTO, "record %u of the batch has seq %llu, expected %llu", i,
                              (unsigned long long)r.seq, (unsigned long long)(first_seq + i));
        off += used;
        need += charge(used);
    }
    if (off != len)
        return rt_err_set(err, EPROTO, "%zu stray bytes after %u records", len - off, count);
    if (first_seq != lg->next) {
        st->gaps++;
        return NCL_R_GAP;
    }
    if (st->used + need > st->capacity) {
        st->full++;
        return NCL_R_FULL;
    }
    if (grow_ring(lg, (size_t)(lg->next - lg->start) + count) < 0) {
        st->full++;
        return NCL_R_FULL;
    }
    off = 0;
    for (uint32_t i = 0; i < count; i++) {
        size_t size = rec_size_of(recs + off);
        unsigned char *copy = malloc(size);
        if (!copy) {
            st->full++;
            return NCL_R_FULL; /* records before i stay: they are valid and contiguous */
        }
        memcpy(copy, recs + off, size);
        *slot(lg, lg->next) = copy;
        lg->next++;
        lg->bytes += charge(size);
        st->used += charge(size);
        off += size;
    }
    st->appends++;
    st->records_in += count;
    *next = lg->next;
    return NCL_R_OK;
}

int ncl_store_trim(ncl_store *st, ncl_log *lg, uint64_t epoch, uint64_t new_start)
{
    if (fence(st, lg, epoch) != NCL_R_OK)
        return NCL_R_FENCED;
    st->trims++;
    while (lg->start < new_start && lg->start < lg->next)
        drop_front(st, lg);
    if (lg->start < new_start) { /* past everything held: the log restarts there */
        lg->start = lg->next = new_start;
        lg->head = 0;
    }
    return NCL_R_OK;
}

static unsigned char *tombstone_of(const unsigned char *enc)
{
    ncl_rec r;
    size_t used;
    if (ncl_rec_decode(enc, rec_size_of(enc), &r, &used, NULL) < 0)
        return NULL;
    unsigned char *t = malloc(NCL_REC_HDR_SIZE);
    if (!t)
        return NULL;
    ncl_rec tr = {
        .seq = r.seq, .dev = r.dev, .ino = r.ino, .offset = r.offset, .kind = NCL_REC_TOMBSTONE};
    ncl_rec_encode(t, &tr);
    return t;
}

int ncl_store_trim_file(ncl_store *st, ncl_log *lg, uint64_t epoch, uint64_t dev, uint64_t ino,
                        uint64_t below, uint64_t *count)
{
    *count = 0;
    if (fence(st, lg, epoch) != NCL_R_OK)
        return NCL_R_FENCED;
    st->trims++;
    for (uint64_t s = lg->start; s < lg->next && s < below; s++) {
        unsigned char **p = slot(lg, s);
        unsigned char *e = *p;
        /* dev at 8, ino at 16, kind at 38 */
        ncl_rec r;
        size_t used;
        if (ncl_rec_decode(e, rec_size_of(e), &r, &used, NULL) < 0 || r.kind != NCL_REC_WRITE ||
            r.dev != dev || r.ino != ino)
            continue;
        unsigned char *t = tombstone_of(e);
        if (!t)
            continue; /* out of memory: keeping the record is safe, only bigger */
        uint64_t before = charge(used), after = charge(NCL_REC_HDR_SIZE);
        lg->bytes = lg->bytes - before + after;
        st->used = st->used - before + after;
        free(e);
        *p = t;
        (*count)++;
    }
    /* Leading tombstones carry nothing: trim them. */
    while (lg->start < lg->next && (*slot(lg, lg->start))[38] == NCL_REC_TOMBSTONE)
        drop_front(st, lg);
    return NCL_R_OK;
}

int ncl_store_reset(ncl_store *st, ncl_log *lg, uint64_t epoch, uint64_t start)
{
    if (fence(st, lg, epoch) != NCL_R_OK)
        return NCL_R_FENCED;
    st->trims++;
    log_clear(st, lg);
    lg->start = lg->next = start;
    return NCL_R_OK;
}
