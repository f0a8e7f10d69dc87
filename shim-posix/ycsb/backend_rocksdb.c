/* backend_rocksdb.c: splitft-ycsb's RocksDB backend, through RocksDB's C API.
 *
 * One database per process (--target is its directory, created when missing except by
 * `check`), shared by the threads. Options are RocksDB's defaults apart from
 * create_if_missing: one 64 MB memtable before a flush, two background jobs, the WAL on.
 * --sync sets WriteOptions.sync (every write's WAL record is fsynced before it returns);
 * without it writes reach the WAL through the page cache only.
 *
 * A record is one key and one value holding every field, laid out as YCSB's RocksDB binding
 * does: for each field its name's length (4 bytes, little-endian), its name, its value's
 * length, its value. So an update is a get and a put of the whole record (YCSB's binding
 * does the same), and a scan is a seek and nexts in key order.
 */
#include <errno.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ycsb.h"

typedef struct kdb {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    const char *path;
    int fieldcount;
    size_t fieldlength;
    bool sync;
} kdb;

typedef struct kconn {
    kdb *db;
    rocksdb_writeoptions_t *wo;
    rocksdb_readoptions_t *ro;
    char *buf; /* a serialized record */
    size_t cap;
    ycsb_rec cur; /* the record an update rewrites */
} kconn;

static void put_u32(char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (char)(v >> (8 * i));
}

static uint32_t get_u32(const char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)(unsigned char)p[i] << (8 * i);
    return v;
}

/* Serialize the fields named in vals (NULL entries skipped) into c->buf; returns the
 * length, or 0 without memory. */
static size_t serialize(kconn *c, const char *const *vals, const size_t *lens)
{
    size_t need = 0;
    for (int i = 0; i < c->db->fieldcount; i++)
        if (vals[i])
            need += 8 + 12 + lens[i];
    if (need > c->cap) {
        char *p = realloc(c->buf, need);
        if (!p)
            return 0;
        c->buf = p;
        c->cap = need;
    }
    size_t off = 0;
    for (int i = 0; i < c->db->fieldcount; i++) {
        if (!vals[i])
            continue;
        char name[12];
        int n = snprintf(name, sizeof name, "field%d", i);
        put_u32(c->buf + off, (uint32_t)n);
        memcpy(c->buf + off + 4, name, (size_t)n);
        off += 4 + (size_t)n;
        put_u32(c->buf + off, (uint32_t)lens[i]);
        memcpy(c->buf + off + 4, vals[i], lens[i]);
        off += 4 + lens[i];
    }
    return off;
}

static int deserialize(const char *v, size_t len, const char *key, ycsb_rec *out, rt_err *err)
{
    ycsb_rec_clear(out);
    size_t off = 0;
    while (off < len) {
        if (len - off < 4)
            goto bad;
        uint32_t nl = get_u32(v + off);
        if (len - off - 4 < (size_t)nl + 4)
            goto bad;
        const char *name = v + off + 4;
        uint32_t vl = get_u32(name + nl);
        if (len - off - 8 - nl < vl)
            goto bad;
        int f = ycsb_field_index(name, nl, out->n);
        if (f >= 0 && ycsb_rec_set(out, f, name + nl + 4, vl) < 0)
            return rt_err_set(err, ENOMEM, "rocksdb: no memory for record %s", key);
        off += 8 + (size_t)nl + vl;
    }
    return 0;
bad:
    return rt_err_set(err, EPROTO, "rocksdb: record %s is malformed (%zu bytes)", key, len);
}

static int k_put(kconn *c, const char *key, size_t vlen, rt_err *err)
{
    char *e = NULL;
    rocksdb_put(c->db->db, c->wo, key, strlen(key), c->buf, vlen, &e);
    if (e) {
        int rc = rt_err_set(err, EIO, "rocksdb %s: put %s: %s", c->db->path, key, e);
        rocksdb_free(e);
        return rc;
    }
    return 0;
}

static int k_insert(void *conn, const char *key, char *const *vals, rt_err *err)
{
    kconn *c = conn;
    size_t lens[YCSB_FIELDS_MAX];
    for (int i = 0; i < c->db->fieldcount; i++)
        lens[i] = c->db->fieldlength;
    size_t n = serialize(c, (const char *const *)vals, lens);
    if (n == 0)
        return rt_err_set(err, ENOMEM, "rocksdb: no memory for record %s", key);
    return k_put(c, key, n, err);
}

static int k_read(void *conn, const char *key, ycsb_rec *out, rt_err *err)
{
    kconn *c = conn;
    char *e = NULL;
    size_t len = 0;
    char *v = rocksdb_get(c->db->db, c->ro, key, strlen(key), &len, &e);
    if (e) {
        int rc = rt_err_set(err, EIO, "rocksdb %s: get %s: %s", c->db->path, key, e);
        rocksdb_free(e);
        return rc;
    }
    if (!v) {
        ycsb_rec_clear(out);
        return rt_err_set(err, ENOENT, "rocksdb: no record %s", key);
    }
    int rc = deserialize(v, len, key, out, err);
    rocksdb_free(v);
    return rc;
}

static int k_update(void *conn, const char *key, int field, const char *val, rt_err *err)
{
    kconn *c = conn;
    int rc = k_read(c, key, &c->cur, err);
    if (rc < 0)
        return rc;
    const char *vals[YCSB_FIELDS_MAX];
    size_t lens[YCSB_FIELDS_MAX];
    for (int i = 0; i < c->db->fieldcount; i++) {
        vals[i] = c->cur.f[i].present ? c->cur.f[i].p : NULL;
        lens[i] = c->cur.f[i].len;
    }
    vals[field] = val;
    lens[field] = c->db->fieldlength;
    size_t n = serialize(c, vals, lens);
    if (n == 0)
        return rt_err_set(err, ENOMEM, "rocksdb: no memory for record %s", key);
    return k_put(c, key, n, err);
}

static int k_scan(void *conn, const char *start, unsigned count, ycsb_rec *scratch, unsigned *found,
                  rt_err *err)
{
    kconn *c = conn;
    *found = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator(c->db->db, c->ro);
    int rc = 0;
    for (rocksdb_iter_seek(it, start, strlen(start)); rocksdb_iter_valid(it) && *found < count;
         rocksdb_iter_next(it)) {
        size_t len = 0;
        const char *v = rocksdb_iter_value(it, &len);
        if ((rc = deserialize(v, len, start, scratch, err)) < 0)
            break;
        (*found)++;
    }
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    if (e && rc == 0)
        rc = rt_err_set(err, EIO, "rocksdb %s: scan from %s: %s", c->db->path, start, e);
    rocksdb_free(e);
    rocksdb_iter_destroy(it);
    return rc;
}

static int k_connect(void *dbp, void **connp, rt_err *err)
{
    kconn *c = calloc(1, sizeof *c);
    if (!c)
        return rt_err_set(err, ENOMEM, "rocksdb: no memory for a connection");
    c->db = dbp;
    c->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(c->wo, c->db->sync);
    c->ro = rocksdb_readoptions_create();
    ycsb_rec_init(&c->cur, c->db->fieldcount);
    *connp = c;
    return 0;
}

static void k_disconnect(void *conn)
{
    kconn *c = conn;
    if (!c)
        return;
    rocksdb_writeoptions_destroy(c->wo);
    rocksdb_readoptions_destroy(c->ro);
    ycsb_rec_free(&c->cur);
    free(c->buf);
    free(c);
}

static int k_open(const ycsb_conf *conf, void **dbp, rt_err *err)
{
    kdb *d = calloc(1, sizeof *d);
    if (!d)
        return rt_err_set(err, ENOMEM, "rocksdb: no memory");
    d->path = conf->target;
    d->fieldcount = conf->fieldcount;
    d->fieldlength = conf->fieldlength;
    d->sync = conf->sync;
    d->opts = rocksdb_options_create();
    /* `check` reads what an earlier run left: a missing database is an error there. */
    rocksdb_options_set_create_if_missing(d->opts, conf->phase != YCSB_CHECK);
    char *e = NULL;
    d->db = rocksdb_open(d->opts, d->path, &e);
    if (e || !d->db) {
        int rc = rt_err_set(err, EIO, "rocksdb %s: open: %s", d->path, e ? e : "failed");
        rocksdb_free(e);
        rocksdb_options_destroy(d->opts);
        free(d);
        return rc;
    }
    *dbp = d;
    return 0;
}

static void k_close(void *dbp)
{
    kdb *d = dbp;
    rocksdb_close(d->db);
    rocksdb_options_destroy(d->opts);
    free(d);
}

const ycsb_backend ycsb_backend_rocksdb = {
    .name = "rocksdb",
    .open = k_open,
    .close = k_close,
    .connect = k_connect,
    .disconnect = k_disconnect,
    .insert = k_insert,
    .read = k_read,
    .update = k_update,
    .scan = k_scan,
};
