/* backend_sqlite.c: splitft-ycsb's SQLite backend: YCSB's JDBC layout in one database file.
 *
 * --target is the database file; the table is usertable(YCSB_KEY TEXT PRIMARY KEY, FIELD0
 * TEXT, ..., FIELD<n-1> TEXT), created by load and run when missing. Each thread opens its
 * own connection in WAL mode with a 10 s busy timeout; every insert and update is its own
 * transaction (autocommit). --sync sets synchronous=FULL (a commit fsyncs the WAL before it
 * returns), otherwise OFF (no fsync at all, like Redis appendfsync no: NORMAL would still
 * fsync at every checkpoint, which on a network file system costs milliseconds).
 * Inserts are INSERT OR REPLACE: a run that inserts again from the record count (as every
 * run does, like YCSB's) rewrites the records an earlier run inserted instead of failing.
 *
 * --exclusive: one connection in locking_mode=EXCLUSIVE, shared by the threads (each
 * operation under a mutex), as an application that owns its database runs it. On a network
 * file system every transaction of a non-exclusive connection takes and drops POSIX locks,
 * each a round trip to the servers; that cost is the same in every durability mode and hides
 * the one being measured.
 */
#include <pthread.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ycsb.h"

#define BUSY_MS 10000

typedef struct sconn sconn;

typedef struct sdb {
    const char *path;
    int fieldcount;
    size_t fieldlength;
    bool sync, create, exclusive;
    pthread_mutex_t mu; /* --exclusive: the shared connection, and each operation on it */
    sconn *shared;
    int users;
} sdb;

struct sconn {
    sdb *db;
    sqlite3 *h;
    sqlite3_stmt *read, *insert, *scan;
    sqlite3_stmt *update[YCSB_FIELDS_MAX];
};

/* Around each operation: the shared connection is used by one thread at a time. */
static void enter(const sconn *c)
{
    if (c->db->exclusive)
        pthread_mutex_lock(&c->db->mu);
}

static int leave(const sconn *c, int rc)
{
    if (c->db->exclusive)
        pthread_mutex_unlock(&c->db->mu);
    return rc;
}

static int s_fail(sconn *c, rt_err *err, const char *what, const char *key)
{
    int code = sqlite3_extended_errcode(c->h);
    return rt_err_set(err, EIO, "sqlite %s: %s %s: %s (code %d)", c->db->path, what, key,
                      sqlite3_errmsg(c->h), code);
}

static int exec(sqlite3 *h, const sdb *db, const char *sql, rt_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc =
            rt_err_set(err, EIO, "sqlite %s: %s: %s", db->path, sql, msg ? msg : sqlite3_errmsg(h));
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

/* Open a connection with the project's settings; on error *out is NULL. */
static int open_handle(const sdb *db, sqlite3 **out, rt_err *err)
{
    *out = NULL;
    sqlite3 *h = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (db->create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(db->path, &h, flags, NULL) != SQLITE_OK) {
        int rc = rt_err_set(err, EIO, "sqlite %s: open: %s", db->path,
                            h ? sqlite3_errmsg(h) : "out of memory");
        sqlite3_close(h);
        return rc;
    }
    sqlite3_busy_timeout(h, BUSY_MS);
    /* Before WAL mode: an exclusive connection keeps the WAL index in its heap, no -shm file. */
    int rc = db->exclusive ? exec(h, db, "PRAGMA locking_mode=EXCLUSIVE", err) : 0;
    if (rc == 0)
        rc = exec(h, db, "PRAGMA journal_mode=WAL", err);
    if (rc == 0)
        rc = exec(h, db, db->sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF", err);
    if (rc < 0) {
        sqlite3_close(h);
        return rc;
    }
    *out = h;
    return 0;
}

static int prepare(sconn *c, const char *sql, sqlite3_stmt **st, rt_err *err)
{
    if (sqlite3_prepare_v2(c->h, sql, -1, st, NULL) != SQLITE_OK)
        return rt_err_set(err, EIO, "sqlite %s: prepare %s: %s", c->db->path, sql,
                          sqlite3_errmsg(c->h));
    return 0;
}

/* The columns FIELD0..FIELD<n-1> of the current row (from column `first` on) into out. */
static int take_row(sconn *c, sqlite3_stmt *st, int first, const char *key, ycsb_rec *out,
                    rt_err *err)
{
    ycsb_rec_clear(out);
    for (int i = 0; i < c->db->fieldcount; i++) {
        if (sqlite3_column_type(st, first + i) == SQLITE_NULL)
            continue;
        const unsigned char *v = sqlite3_column_text(st, first + i);
        int len = sqlite3_column_bytes(st, first + i);
        if (ycsb_rec_set(out, i, (const char *)v, (size_t)len) < 0)
            return rt_err_set(err, ENOMEM, "sqlite: no memory for record %s", key);
    }
    return 0;
}

static int s_insert_locked(void *conn, const char *key, char *const *vals, rt_err *err)
{
    sconn *c = conn;
    sqlite3_stmt *st = c->insert;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    for (int i = 0; i < c->db->fieldcount; i++)
        sqlite3_bind_text(st, 2 + i, vals[i], (int)c->db->fieldlength, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : s_fail(c, err, "insert", key);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

static int s_read_locked(void *conn, const char *key, ycsb_rec *out, rt_err *err)
{
    sconn *c = conn;
    sqlite3_stmt *st = c->read;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int s = sqlite3_step(st), rc;
    if (s == SQLITE_ROW) {
        rc = take_row(c, st, 0, key, out, err);
    } else if (s == SQLITE_DONE) {
        ycsb_rec_clear(out);
        rc = rt_err_set(err, ENOENT, "sqlite: no record %s", key);
    } else {
        rc = s_fail(c, err, "read", key);
    }
    sqlite3_reset(st);
    return rc;
}

static int s_update_locked(void *conn, const char *key, int field, const char *val, rt_err *err)
{
    sconn *c = conn;
    sqlite3_stmt *st = c->update[field];
    sqlite3_bind_text(st, 1, val, (int)c->db->fieldlength, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    int rc = 0;
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = s_fail(c, err, "update", key);
    else if (sqlite3_changes(c->h) == 0)
        rc = rt_err_set(err, ENOENT, "sqlite: no record %s", key);
    sqlite3_reset(st);
    return rc;
}

static int s_scan_locked(void *conn, const char *start, unsigned count, ycsb_rec *scratch,
                         unsigned *found, rt_err *err)
{
    sconn *c = conn;
    sqlite3_stmt *st = c->scan;
    *found = 0;
    sqlite3_bind_text(st, 1, start, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, count);
    int s, rc = 0;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if ((rc = take_row(c, st, 1, start, scratch, err)) < 0)
            break;
        (*found)++;
    }
    if (rc == 0 && s != SQLITE_DONE)
        rc = s_fail(c, err, "scan from", start);
    sqlite3_reset(st);
    return rc;
}

static int s_insert(void *conn, const char *key, char *const *vals, rt_err *err)
{
    enter(conn);
    return leave(conn, s_insert_locked(conn, key, vals, err));
}

static int s_read(void *conn, const char *key, ycsb_rec *out, rt_err *err)
{
    enter(conn);
    return leave(conn, s_read_locked(conn, key, out, err));
}

static int s_update(void *conn, const char *key, int field, const char *val, rt_err *err)
{
    enter(conn);
    return leave(conn, s_update_locked(conn, key, field, val, err));
}

static int s_scan(void *conn, const char *start, unsigned count, ycsb_rec *scratch, unsigned *found,
                  rt_err *err)
{
    enter(conn);
    return leave(conn, s_scan_locked(conn, start, count, scratch, found, err));
}

static void free_conn(sconn *c)
{
    sqlite3_finalize(c->read);
    sqlite3_finalize(c->insert);
    sqlite3_finalize(c->scan);
    for (int i = 0; i < YCSB_FIELDS_MAX; i++)
        sqlite3_finalize(c->update[i]);
    sqlite3_close(c->h);
    free(c);
}

static void s_disconnect(void *conn)
{
    sconn *c = conn;
    if (!c)
        return;
    if (c->db->exclusive) { /* the last thread closes the shared connection */
        pthread_mutex_lock(&c->db->mu);
        bool last = --c->db->users == 0;
        if (last)
            c->db->shared = NULL;
        pthread_mutex_unlock(&c->db->mu);
        if (!last)
            return;
    }
    free_conn(c);
}

static int connect_new(sdb *dbp, sconn **connp, rt_err *err);

static int s_connect(void *dbp, void **connp, rt_err *err)
{
    sdb *d = dbp;
    if (!d->exclusive)
        return connect_new(d, (sconn **)connp, err);
    pthread_mutex_lock(&d->mu);
    int rc = 0;
    if (!d->shared)
        rc = connect_new(d, &d->shared, err);
    if (rc == 0) {
        d->users++;
        *connp = d->shared;
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

static int connect_new(sdb *dbp, sconn **connp, rt_err *err)
{
    sconn *c = calloc(1, sizeof *c);
    if (!c)
        return rt_err_set(err, ENOMEM, "sqlite: no memory for a connection");
    c->db = dbp;
    int n = c->db->fieldcount, rc;
    if ((rc = open_handle(c->db, &c->h, err)) < 0) {
        free(c);
        return rc;
    }
    /* The statements' text: the field list, then each statement. */
    char cols[YCSB_FIELDS_MAX * 12], qs[YCSB_FIELDS_MAX * 2 + 2], sql[YCSB_FIELDS_MAX * 16];
    size_t cl = 0, ql = 0;
    for (int i = 0; i < n; i++) {
        cl += (size_t)snprintf(cols + cl, sizeof cols - cl, "%sFIELD%d", i ? "," : "", i);
        ql += (size_t)snprintf(qs + ql, sizeof qs - ql, ",?");
    }
    snprintf(sql, sizeof sql, "SELECT %s FROM usertable WHERE YCSB_KEY=?", cols);
    rc = prepare(c, sql, &c->read, err);
    if (rc == 0) {
        snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO usertable(YCSB_KEY,%s) VALUES(?%s)", cols,
                 qs);
        rc = prepare(c, sql, &c->insert, err);
    }
    if (rc == 0) {
        snprintf(sql, sizeof sql,
                 "SELECT YCSB_KEY,%s FROM usertable WHERE YCSB_KEY>=? ORDER BY YCSB_KEY LIMIT ?",
                 cols);
        rc = prepare(c, sql, &c->scan, err);
    }
    for (int i = 0; rc == 0 && i < n; i++) {
        snprintf(sql, sizeof sql, "UPDATE usertable SET FIELD%d=? WHERE YCSB_KEY=?", i);
        rc = prepare(c, sql, &c->update[i], err);
    }
    if (rc < 0) {
        free_conn(c);
        return rc;
    }
    *connp = c;
    return 0;
}

static int s_open(const ycsb_conf *conf, void **dbp, rt_err *err)
{
    sdb *d = calloc(1, sizeof *d);
    if (!d)
        return rt_err_set(err, ENOMEM, "sqlite: no memory");
    d->path = conf->target;
    d->fieldcount = conf->fieldcount;
    d->fieldlength = conf->fieldlength;
    d->sync = conf->sync;
    d->exclusive = conf->exclusive;
    pthread_mutex_init(&d->mu, NULL);
    /* `check` reads what an earlier run left: a missing file is an error there. */
    d->create = conf->phase != YCSB_CHECK;
    if (!d->create && access(d->path, F_OK) != 0) {
        int rc = rt_err_sys(err, "sqlite %s", d->path);
        free(d);
        return rc;
    }
    sqlite3 *h;
    int rc = open_handle(d, &h, err);
    if (rc == 0 && d->create) {
        /* Created here, before the threads connect, so that they never race to create it. */
        char sql[YCSB_FIELDS_MAX * 16 + 128];
        size_t l = (size_t)snprintf(
            sql, sizeof sql, "CREATE TABLE IF NOT EXISTS usertable(YCSB_KEY TEXT PRIMARY KEY");
        for (int i = 0; i < d->fieldcount; i++)
            l += (size_t)snprintf(sql + l, sizeof sql - l, ", FIELD%d TEXT", i);
        snprintf(sql + l, sizeof sql - l, ")");
        rc = exec(h, d, sql, err);
    }
    sqlite3_close(h);
    if (rc < 0) {
        free(d);
        return rc;
    }
    *dbp = d;
    return 0;
}

static void s_close(void *db)
{
    sdb *d = db;
    pthread_mutex_destroy(&d->mu);
    free(d);
}

const ycsb_backend ycsb_backend_sqlite = {
    .name = "sqlite",
    .open = s_open,
    .close = s_close,
    .connect = s_connect,
    .disconnect = s_disconnect,
    .insert = s_insert,
    .read = s_read,
    .update = s_update,
    .scan = s_scan,
};
