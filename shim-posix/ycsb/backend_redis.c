/* backend_redis.c: splitft-ycsb's Redis backend: RESP2 over one blocking TCP connection per
 * thread (TCP_NODELAY), written by hand.
 *
 * The layout is YCSB's Redis binding's: a hash per record (HSET key field0 v0 ...), and a
 * sorted set "_indices" scoring every key by its Java String.hashCode, which scans walk
 * (ZRANGEBYSCORE _indices <hash(start)> +inf LIMIT 0 n, then each key's hash). Two changes,
 * both to round trips and not to what the server does: an insert sends HSET and ZADD in one
 * write and then reads both replies, and a scan sends its HGETALLs in one write. --sync
 * changes nothing here: the server's appendfsync decides what an acknowledgement means.
 *
 * Sections: connection and buffers, replies, operations, the backend.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "rt/env.h"
#include "rt/net.h"
#include "ycsb.h"

#define INDEX_KEY     "_indices"
#define CONNECT_MS    3000
#define REPLY_TIMEOUT 60 /* seconds a reply may take before the operation fails */

/* ---- connection and buffers ---------------------------------------------------------- */

typedef struct rdb {
    rt_hostport hp;
    int fieldcount;
    size_t fieldlength;
} rdb;

/* One element of a reply: a simple string, an error, an integer, a bulk string or nil. */
typedef struct relem {
    char type; /* '+', '-', ':', '$', or 0 for nil */
    const char *p;
    size_t len;
    long long num;
} relem;

typedef struct rconn {
    const rdb *db;
    int fd;
    char *w;
    size_t wlen, wcap;
    char *r;
    size_t rpos, rlen, rcap;
    /* The reply being looked at: a scalar (top) or an array of scalars (elem). */
    relem top;
    bool is_array;
    relem *elem;
    size_t nelem, elemcap;
} rconn;

static int wreserve(rconn *c, size_t more)
{
    if (c->wlen + more <= c->wcap)
        return 0;
    size_t cap = c->wcap * 2 > c->wlen + more ? c->wcap * 2 : c->wlen + more;
    char *p = realloc(c->w, cap);
    if (!p)
        return -ENOMEM;
    c->w = p;
    c->wcap = cap;
    return 0;
}

static int wbytes(rconn *c, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (wreserve(c, n) < 0)
        return -ENOMEM;
    memcpy(c->w + c->wlen, p, n);
    c->wlen += n;
    return 0;
}

/* Append one command: argc bulk strings. */
static int wcmd(rconn *c, int argc, const char *const *argv, const size_t *lens)
{
    char hdr[32];
    int n = snprintf(hdr, sizeof hdr, "*%d\r\n", argc);
    if (wbytes(c, hdr, (size_t)n) < 0)
        return -ENOMEM;
    for (int i = 0; i < argc; i++) {
        size_t len = lens ? lens[i] : strlen(argv[i]);
        n = snprintf(hdr, sizeof hdr, "$%zu\r\n", len);
        if (wbytes(c, hdr, (size_t)n) < 0 || wbytes(c, argv[i], len) < 0 ||
            wbytes(c, "\r\n", 2) < 0)
            return -ENOMEM;
    }
    return 0;
}

static int wflush(rconn *c, rt_err *err)
{
    ssize_t n = rt_write_full(c->fd, c->w, c->wlen);
    c->wlen = 0;
    if (n < 0)
        return rt_err_set(err, (int)-n, "redis %s:%u: send: %s", c->db->hp.host, c->db->hp.port,
                          strerror((int)-n));
    return 0;
}

/* Read more bytes into the buffer (blocking), keeping what is unread. */
static int rfill(rconn *c, rt_err *err)
{
    if (c->rpos > 0 && c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
    } else if (c->rlen == c->rcap && c->rpos > 0) {
        memmove(c->r, c->r + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    if (c->rlen == c->rcap) {
        size_t cap = c->rcap * 2;
        char *p = realloc(c->r, cap);
        if (!p)
            return rt_err_set(err, ENOMEM, "redis: no memory for a %zu-byte reply", cap);
        c->r = p;
        c->rcap = cap;
    }
    for (;;) {
        ssize_t n = read(c->fd, c->r + c->rlen, c->rcap - c->rlen);
        if (n > 0) {
            c->rlen += (size_t)n;
            return 0;
        }
        if (n == 0)
            return rt_err_set(err, ECONNRESET, "redis %s:%u: the server closed the connection",
                              c->db->hp.host, c->db->hp.port);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return rt_err_set(err, ETIMEDOUT, "redis %s:%u: no reply within %d s", c->db->hp.host,
                              c->db->hp.port, REPLY_TIMEOUT);
        return rt_err_sys(err, "redis %s:%u: receive", c->db->hp.host, c->db->hp.port);
    }
}

/* ---- replies ------------------------------------------------------------------------- */

/* The line at p (up to CRLF) within [p, end): its length, or -1 when incomplete. */
static long line_len(const char *p, const char *end)
{
    const char *q = memchr(p, '\r', (size_t)(end - p));
    if (!q || q + 1 >= end)
        return -1;
    return q[1] == '\n' ? q - p : -2;
}

static int parse_num(const char *p, long len, long long *out)
{
    long i = 0;
    bool neg = false;
    if (len > 0 && p[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i >= len || len - i > 18)
        return -1;
    long long v = 0;
    for (; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

/* One scalar at *pp: 1 parsed (advanced), 0 incomplete, -1 malformed. */
static int parse_scalar(const char **pp, const char *end, relem *e)
{
    const char *p = *pp;
    if (p >= end)
        return 0;
    long n = line_len(p + 1, end);
    if (n == -1)
        return 0;
    if (n < 0)
        return -1;
    const char *body = p + 1;
    switch (*p) {
    case '+':
    case '-':
        e->type = *p;
        e->p = body;
        e->len = (size_t)n;
        *pp = body + n + 2;
        return 1;
    case ':':
        e->type = ':';
        if (parse_num(body, n, &e->num) < 0)
            return -1;
        *pp = body + n + 2;
        return 1;
    case '$': {
        long long blen;
        if (parse_num(body, n, &blen) < 0 || blen < -1)
            return -1;
        const char *data = body + n + 2;
        if (blen == -1) {
            e->type = 0;
            *pp = data;
            return 1;
        }
        if (end - data < blen + 2)
            return 0;
        if (data[blen] != '\r' || data[blen + 1] != '\n')
            return -1;
        e->type = '$';
        e->p = data;
        e->len = (size_t)blen;
        *pp = data + blen + 2;
        return 1;
    }
    default:
        return -1;
    }
}

/* Read one whole reply into c->top / c->elem (valid until the next read). */
static int read_reply(rconn *c, rt_err *err)
{
    for (;;) {
        const char *p = c->r + c->rpos, *end = c->r + c->rlen;
        int rc = 0;
        if (p < end && *p == '*') {
            long n = line_len(p + 1, end);
            long long count = 0;
            if (n >= 0) {
                if (parse_num(p + 1, n, &count) < 0 || count < -1)
                    rc = -1;
                else
                    rc = 1;
            } else if (n == -2) {
                rc = -1;
            }
            if (rc == 1) {
                const char *q = p + 1 + n + 2;
                if (count > 0 && (size_t)count > c->elemcap) {
                    relem *ne = realloc(c->elem, (size_t)count * sizeof *ne);
                    if (!ne)
                        return rt_err_set(err, ENOMEM, "redis: no memory for %lld elements", count);
                    c->elem = ne;
                    c->elemcap = (size_t)count;
                }
                long long i;
                for (i = 0; i < count; i++) {
                    rc = parse_scalar(&q, end, &c->elem[i]);
                    if (rc != 1)
                        break;
                }
                if (rc == 1) {
                    c->is_array = true;
                    c->nelem = count > 0 ? (size_t)count : 0;
                    c->rpos = (size_t)(q - c->r);
                    return 0;
                }
            }
        } else {
            const char *q = p;
            rc = parse_scalar(&q, end, &c->top);
            if (rc == 1) {
                c->is_array = false;
                c->rpos = (size_t)(q - c->r);
                return 0;
            }
        }
        if (rc < 0)
            return rt_err_set(err, EPROTO, "redis %s:%u: malformed reply", c->db->hp.host,
                              c->db->hp.port);
        int frc = rfill(c, err);
        if (frc < 0)
            return frc;
    }
}

/* A scalar reply of type `want` (':' or '+'); an error reply or another shape fails. */
static int expect_scalar(rconn *c, char want, const char *what, const char *key, rt_err *err)
{
    int rc = read_reply(c, err);
    if (rc < 0)
        return rc;
    if (!c->is_array && c->top.type == want)
        return 0;
    if (!c->is_array && c->top.type == '-')
        return rt_err_set(err, EIO, "redis %s %s: %.*s", what, key, (int)c->top.len, c->top.p);
    return rt_err_set(err, EPROTO, "redis %s %s: unexpected reply", what, key);
}

/* The fields of an HGETALL reply into out; -ENOENT for an empty one (no such key). */
static int take_hash(rconn *c, const char *key, ycsb_rec *out, rt_err *err)
{
    if (!c->is_array) {
        if (c->top.type == '-')
            return rt_err_set(err, EIO, "redis HGETALL %s: %.*s", key, (int)c->top.len, c->top.p);
        return rt_err_set(err, EPROTO, "redis HGETALL %s: unexpected reply", key);
    }
    ycsb_rec_clear(out);
    if (c->nelem == 0)
        return rt_err_set(err, ENOENT, "redis: no record %s", key);
    for (size_t i = 0; i + 1 < c->nelem; i += 2) {
        const relem *name = &c->elem[i], *val = &c->elem[i + 1];
        if (name->type != '$' || val->type != '$')
            return rt_err_set(err, EPROTO, "redis HGETALL %s: not a list of strings", key);
        int f = ycsb_field_index(name->p, name->len, out->n);
        if (f >= 0 && ycsb_rec_set(out, f, val->p, val->len) < 0)
            return rt_err_set(err, ENOMEM, "redis HGETALL %s: no memory", key);
    }
    return 0;
}

/* ---- operations ---------------------------------------------------------------------- */

/* Java's String.hashCode, YCSB's score for a key in the index. */
static int32_t java_hash(const char *s)
{
    uint32_t h = 0;
    for (; *s; s++)
        h = 31 * h + (unsigned char)*s;
    return (int32_t)h;
}

static int r_insert(void *conn, const char *key, char *const *vals, rt_err *err)
{
    rconn *c = conn;
    int nf = c->db->fieldcount;
    const char *argv[2 + 2 * YCSB_FIELDS_MAX] = {NULL};
    size_t lens[2 + 2 * YCSB_FIELDS_MAX] = {0};
    char names[YCSB_FIELDS_MAX][12];
    argv[0] = "HSET";
    lens[0] = 4;
    argv[1] = key;
    lens[1] = strlen(key);
    for (int i = 0; i < nf; i++) {
        int n = snprintf(names[i], sizeof names[i], "field%d", i);
        argv[2 + 2 * i] = names[i];
        lens[2 + 2 * i] = (size_t)n;
        argv[3 + 2 * i] = vals[i];
        lens[3 + 2 * i] = c->db->fieldlength;
    }
    char score[16];
    snprintf(score, sizeof score, "%d", java_hash(key));
    const char *zadd[] = {"ZADD", INDEX_KEY, score, key};
    int rc;
    if (wcmd(c, 2 + 2 * nf, argv, lens) < 0 || wcmd(c, 4, zadd, NULL) < 0)
        return rt_err_set(err, ENOMEM, "redis: no memory for a command");
    if ((rc = wflush(c, err)) < 0)
        return rc;
    /* Both replies are read even when the first is an error, so the connection stays in
     * step; the insert is acknowledged only when both succeeded. */
    int r1 = expect_scalar(c, ':', "HSET", key, err);
    if (r1 < 0 && r1 != -EIO)
        return r1; /* the connection is out of step or gone */
    rt_err e2;
    int r2 = expect_scalar(c, ':', "ZADD", key, r1 < 0 ? &e2 : err);
    return r1 < 0 ? r1 : r2;
}

static int r_read(void *conn, const char *key, ycsb_rec *out, rt_err *err)
{
    rconn *c = conn;
    const char *argv[] = {"HGETALL", key};
    int rc;
    if (wcmd(c, 2, argv, NULL) < 0)
        return rt_err_set(err, ENOMEM, "redis: no memory for a command");
    if ((rc = wflush(c, err)) < 0 || (rc = read_reply(c, err)) < 0)
        return rc;
    return take_hash(c, key, out, err);
}

static int r_update(void *conn, const char *key, int field, const char *val, rt_err *err)
{
    rconn *c = conn;
    char name[12];
    int n = snprintf(name, sizeof name, "field%d", field);
    const char *argv[] = {"HSET", key, name, val};
    size_t lens[] = {4, strlen(key), (size_t)n, c->db->fieldlength};
    int rc;
    if (wcmd(c, 4, argv, lens) < 0)
        return rt_err_set(err, ENOMEM, "redis: no memory for a command");
    if ((rc = wflush(c, err)) < 0)
        return rc;
    return expect_scalar(c, ':', "HSET", key, err);
}

static int r_scan(void *conn, const char *start, unsigned count, ycsb_rec *scratch, unsigned *found,
                  rt_err *err)
{
    rconn *c = conn;
    char score[16], cnt[16];
    snprintf(score, sizeof score, "%d", java_hash(start));
    snprintf(cnt, sizeof cnt, "%u", count);
    const char *argv[] = {"ZRANGEBYSCORE", INDEX_KEY, score, "+inf", "LIMIT", "0", cnt};
    int rc;
    *found = 0;
    if (wcmd(c, 7, argv, NULL) < 0)
        return rt_err_set(err, ENOMEM, "redis: no memory for a command");
    if ((rc = wflush(c, err)) < 0 || (rc = read_reply(c, err)) < 0)
        return rc;
    if (!c->is_array)
        return rt_err_set(err, EPROTO, "redis ZRANGEBYSCORE from %s: unexpected reply", start);
    size_t nkeys = c->nelem;
    for (size_t i = 0; i < nkeys; i++) {
        const relem *k = &c->elem[i];
        if (k->type != '$')
            return rt_err_set(err, EPROTO, "redis ZRANGEBYSCORE from %s: not a list of keys",
                              start);
        const char *hv[] = {"HGETALL", k->p};
        size_t hl[] = {7, k->len};
        if (wcmd(c, 2, hv, hl) < 0)
            return rt_err_set(err, ENOMEM, "redis: no memory for a command");
    }
    if (nkeys == 0)
        return 0;
    if ((rc = wflush(c, err)) < 0)
        return rc;
    for (size_t i = 0; i < nkeys; i++) {
        if ((rc = read_reply(c, err)) < 0)
            return rc;
        rc = take_hash(c, start, scratch, err);
        if (rc == -ENOENT)
            continue; /* deleted between the index and the hash: YCSB skips it too */
        if (rc < 0) {
            /* Keep the connection in step: drain the remaining replies. */
            rt_err e2;
            for (size_t j = i + 1; j < nkeys; j++)
                if (read_reply(c, &e2) < 0)
                    break;
            return rc;
        }
        (*found)++;
    }
    return 0;
}

/* ---- the backend --------------------------------------------------------------------- */

static int r_connect(void *dbp, void **connp, rt_err *err)
{
    const rdb *db = dbp;
    rconn *c = calloc(1, sizeof *c);
    if (!c)
        return rt_err_set(err, ENOMEM, "redis: no memory for a connection");
    c->db = db;
    c->rcap = (size_t)64 * 1024;
    c->r = malloc(c->rcap);
    c->wcap = 4096;
    c->w = malloc(c->wcap);
    if (!c->r || !c->w) {
        free(c->r);
        free(c->w);
        free(c);
        return rt_err_set(err, ENOMEM, "redis: no memory for buffers");
    }
    rt_err ce;
    c->fd = rt_tcp_connect(db->hp.host, db->hp.port, CONNECT_MS, &ce);
    if (c->fd < 0) {
        int rc = rt_err_set(err, -c->fd, "redis: %s", ce.msg);
        free(c->r);
        free(c->w);
        free(c);
        return rc;
    }
    struct timeval tv = {.tv_sec = REPLY_TIMEOUT};
    (void)setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    /* PING proves the other end speaks RESP before any operation is timed. */
    const char *ping[] = {"PING"};
    int rc =
        wcmd(c, 1, ping, NULL) < 0 ? rt_err_set(err, ENOMEM, "redis: no memory") : wflush(c, err);
    if (rc == 0)
        rc = expect_scalar(c, '+', "PING", "", err);
    if (rc < 0) {
        close(c->fd);
        free(c->r);
        free(c->w);
        free(c);
        return rc;
    }
    *connp = c;
    return 0;
}

static void r_disconnect(void *conn)
{
    rconn *c = conn;
    if (!c)
        return;
    close(c->fd);
    free(c->r);
    free(c->w);
    free(c->elem);
    free(c);
}

static int r_open(const ycsb_conf *conf, void **dbp, rt_err *err)
{
    rdb *db = calloc(1, sizeof *db);
    if (!db)
        return rt_err_set(err, ENOMEM, "redis: no memory");
    rt_hostports hps;
    rt_err e;
    if (rt_parse_hostports(conf->target, 1, &hps, &e) < 0) {
        free(db);
        return rt_err_set(err, EINVAL, "--target '%s': %s", conf->target, e.msg);
    }
    db->hp = hps.v[0];
    db->fieldcount = conf->fieldcount;
    db->fieldlength = conf->fieldlength;
    /* One connection now, so that an unreachable server is reported before any thread
     * starts. */
    void *c = NULL;
    int rc = r_connect(db, &c, err);
    if (rc < 0) {
        free(db);
        return rc;
    }
    r_disconnect(c);
    *dbp = db;
    return 0;
}

static void r_close(void *db) { free(db); }

const ycsb_backend ycsb_backend_redis = {
    .name = "redis",
    .open = r_open,
    .close = r_close,
    .connect = r_connect,
    .disconnect = r_disconnect,
    .insert = r_insert,
    .read = r_read,
    .update = r_update,
    .scan = r_scan,
};
