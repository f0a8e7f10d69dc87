/* store.c: per-client logs of ncl-server: fencing, append, trims, shadow catch-up,
 * capacity accounting.
 *
 * Sections: records and accounting, record runs (ncl_recs), logs and the store, the
 * operations.
 */
#include "store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- records and accounting ---------------------------------------------------------- */

/* The size of an encoded (already validated) record: len at 32, path_len at 36. */
static size_t rec_size_of(const unsigned char *enc)
{
    uint32_t len = (uint32_t)enc[32] | (uint32_t)enc[33] << 8 | (uint32_t)enc[34] << 16 |
                   (uint32_t)enc[35] << 24;
    uint16_t plen = (uint16_t)(enc[36] | enc[37] << 8);
    return NCL_REC_HDR_SIZE + plen + (size_t)len;
}

static uint64_t charge(size_t rec_size) { return rec_size + NCL_REC_OVERHEAD; }

/* A new record of `size` bytes, charged; NULL when out of memory. */
static ncl_blob *blob_new(ncl_store *st, const unsigned char *enc, size_t size)
{
    ncl_blob *b = malloc(sizeof *b + size);
    if (!b)
        return NULL;
    b->refs = 1;
    b->size = (uint32_t)size;
    memcpy(b->enc, enc, size);
    st->used += charge(size);
    return b;
}

static void blob_unref(ncl_store *st, ncl_blob *b)
{
    if (--b->refs > 0)
        return;
    st->used -= charge(b->size);
    free(b);
}

/* ---- record runs --------------------------------------------------------------------- */

#define SLOT_BYTES sizeof(void *) /* a ring slot: one pointer to an ncl_blob */

static ncl_blob **slot(const ncl_recs *r, uint64_t seq)
{
    return &r->ring[(r->head + (size_t)(seq - r->start)) % r->cap];
}

/* Move the ring to `nc` slots (nc >= records held), charging the difference. */
static int recs_resize(ncl_store *st, ncl_recs *r, size_t nc)
{
    size_t held = (size_t)(r->next - r->start);
    ncl_blob **n = NULL;
    if (nc > 0) {
        n = malloc(nc * SLOT_BYTES);
        if (!n)
            return -ENOMEM;
        for (size_t i = 0; i < held; i++)
            n[i] = r->ring[(r->head + i) % r->cap];
    }
    free(r->ring);
    st->used = st->used - r->cap * SLOT_BYTES + nc * SLOT_BYTES;
    r->ring = n;
    r->cap = nc;
    r->head = 0;
    return 0;
}

/* Slots needed to hold `need` records: 0 when it fits, else the new size. */
static size_t grown_cap(const ncl_recs *r, size_t need)
{
    if (need <= r->cap)
        return 0;
    size_t nc = r->cap ? r->cap : 64;
    while (nc < need)
        nc *= 2;
    return nc;
}

/* After records went away: give back ring slots once at most a quarter is used. */
static void recs_shrink(ncl_store *st, ncl_recs *r)
{
    size_t held = (size_t)(r->next - r->start);
    if (held > 0 && (r->cap <= 64 || held * 4 > r->cap))
        return;
    size_t nc = 64;
    while (nc < held * 2)
        nc *= 2;
    recs_resize(st, r, held ? nc : 0); /* on failure the bigger ring simply stays */
}

static void recs_drop_front(ncl_store *st, ncl_recs *r)
{
    ncl_blob **s = slot(r, r->start);
    r->bytes -= (*s)->size;
    blob_unref(st, *s);
    *s = NULL;
    r->head = (r->head + 1) % r->cap;
    r->start++;
}

/* Drop every record; the run restarts empty at `at`. */
static void recs_reset(ncl_store *st, ncl_recs *r, uint64_t at)
{
    while (r->start < r->next)
        recs_drop_front(st, r);
    r->start = r->next = at;
    recs_resize(st, r, 0);
}

static void recs_trim(ncl_store *st, ncl_recs *r, uint64_t new_start)
{
    while (r->start < new_start && r->start < r->next)
        recs_drop_front(st, r);
    if (r->start < new_start) { /* past everything held: the run restarts there */
        r->start = r->next = new_start;
        r->head = 0;
    }
    recs_shrink(st, r);
}

static uint64_t recs_trim_file(ncl_store *st, ncl_recs *r, uint64_t dev, uint64_t ino,
                               uint64_t below)
{
    uint64_t count = 0;
    for (uint64_t s = r->start; s < r->next && s < below; s++) {
        ncl_blob **p = slot(r, s);
        ncl_rec rec;
        size_t used;
        if (ncl_rec_decode((*p)->enc, (*p)->size, &rec, &used, NULL) < 0 ||
            rec.kind != NCL_REC_WRITE || rec.dev != dev || rec.ino != ino)
            continue;
        unsigned char t[NCL_REC_HDR_SIZE];
        ncl_rec tomb = {.seq = rec.seq,
                        .dev = dev,
                        .ino = ino,
                        .offset = rec.offset,
                        .kind = NCL_REC_TOMBSTONE};
        ncl_rec_encode(t, &tomb);
        ncl_blob *b = blob_new(st, t, sizeof t);
        if (!b)
            continue; /* keeping the record is safe, only bigger */
        r->bytes = r->bytes - (*p)->size + b->size;
        blob_unref(st, *p);
        *p = b;
        count++;
    }
    /* Leading tombstones carry nothing: trim them (kind is at byte 38). */
    while (r->start < r->next && (*slot(r, r->start))->enc[38] == NCL_REC_TOMBSTONE)
        recs_drop_front(st, r);
    recs_shrink(st, r);
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
    recs_reset(st, lg->shadow, 0);
    free(lg->shadow);
    lg->shadow = NULL;
}

void ncl_store_free(ncl_store *st)
{
    for (size_t i = 0; i < st->nlogs; i++) {
        drop_shadow(st, st->logs[i]);
        recs_reset(st, &st->logs[i]->live, 0);
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
    ncl_blob *b = *slot(r, seq);
    if (size)
        *size = b->size;
    return b->enc;
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
        /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
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
        drop_shadow(st, lg); /* another incarnation: an old catch-up is moot */
    lg->epoch = epoch;
    return NCL_R_OK;
}

int ncl_store_hello(ncl_store *st, ncl_log *lg, uint64_t epoch, unsigned flags)
{
    if (flags & NCL_HELLO_QUERY)
        return NCL_R_OK;
    if (!(flags & NCL_HELLO_REJOIN) && epoch <= lg->epoch) {
        st->fenced++; /* a claim must be new: two openers never share an epoch */
        return NCL_R_FENCED;
    }
    int rc = fence(st, lg, epoch);
    if (rc == NCL_R_OK)
        lg->gen++;
    return rc;
}

int ncl_store_append(ncl_store *st, ncl_log *lg, uint64_t epoch, uint64_t first_seq, uint32_t count,
                     const unsigned char *recs, size_t len, uint64_t *next, rt_err *err)
{
    ncl_recs *r = lg->shadow ? lg->shadow : &lg->live;
    *next = r->next;
    if (first_seq >= NCL_SEQ_LIMIT || count > NCL_SEQ_LIMIT - first_seq)
        return rt_err_set(err, EPROTO, "sequence numbers out of range");
    if (fence(st, lg, epoch) != NCL_R_OK)
        return NCL_R_FENCED;
    r = lg->shadow ? lg->shadow : &lg->live;
    /* Validate the whole batch before changing anything; count what it would cost. A shadow
     * record identical to the live log's copy is shared, at no cost. */
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
        size_t lsize;
        const unsigned char *live = lg->shadow ? ncl_log_get(lg, rec.seq, &lsize) : NULL;
        if (!live || lsize != used || memcmp(live, recs + off, used) != 0)
            need += charge(used);
        off += used;
    }
    if (off != len)
        return rt_err_set(err, EPROTO, "%zu stray bytes after %u records", len - off, count);
    if (first_seq != r->next) {
        st->gaps++;
        return NCL_R_GAP;
    }
    size_t nc = grown_cap(r, (size_t)(r->next - r->start) + count);
    uint64_t ring_cost = nc ? (nc - r->cap) * SLOT_BYTES : 0;
    if (st->used + need + ring_cost > st->capacity || (nc && recs_resize(st, r, nc) < 0)) {
        st->full++;
        return NCL_R_FULL;
    }
    off = 0;
    for (uint32_t i = 0; i < count; i++) {
        size_t size = rec_size_of(recs + off);
        size_t lsize;
        const unsigned char *live = lg->shadow ? ncl_log_get(lg, r->next, &lsize) : NULL;
        ncl_blob *b;
        if (live && lsize == size && memcmp(live, recs + off, size) == 0) {
            b = *slot(&lg->live, r->next);
            b->refs++;
        } else if (!(b = blob_new(st, recs + off, size))) {
            st->full++;
            *next = r->next;
            return NCL_R_FULL; /* records before i stay: they are valid and contiguous */
        }
        *slot(r, r->next) = b;
        r->next++;
        r->bytes += size;
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
    if (new_start >= NCL_SEQ_LIMIT)
        new_start = NCL_SEQ_LIMIT - 1;
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
    if (start >= NCL_SEQ_LIMIT)
        start = NCL_SEQ_LIMIT - 1;
    st->trims++;
    if (!shadow) {
        drop_shadow(st, lg);
        recs_reset(st, &lg->live, start);
        lg->live.owner = epoch;
        return NCL_R_OK;
    }
    if (!lg->shadow) {
        lg->shadow = calloc(1, sizeof *lg->shadow);
        if (!lg->shadow) {
            st->full++;
            return NCL_R_FULL;
        }
        st->syncs++;
    }
    recs_reset(st, lg->shadow, start);
    lg->shadow->owner = epoch;
    return NCL_R_OK;
}

int ncl_store_sync_done(ncl_store *st, ncl_log *lg, uint64_t epoch, uint64_t expect)
{
    if (fence(st, lg, epoch) != NCL_R_OK)
        return NCL_R_FENCED;
    if (!lg->shadow || lg->shadow->next < expect) {
        st->gaps++;
        return NCL_R_GAP; /* the shadow is not complete: keep the live log */
    }
    recs_reset(st, &lg->live, 0);
    lg->live = *lg->shadow;
    free(lg->shadow);
    lg->shadow = NULL;
    return NCL_R_OK;
}
