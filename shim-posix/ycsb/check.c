/* check.c: splitft-ycsb check: what the --acked files say was acknowledged, read back from
 * the backend. Per key and field, the newest acknowledged version that wrote the field (an
 * update writes one field, named in its version's low byte; an insert all of them); every
 * field read must be a well-formed value of its key and field, at least at that version.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt/env.h"
#include "ycsb.h"

/* ---- check --------------------------------------------------------------------------- */

/* What the acknowledgement files require of one key: per field, the largest acknowledged
 * version that wrote it (0: none). */
typedef struct akeys {
    int fieldcount;
    size_t n, cap; /* entries */
    char (*key)[YCSB_KEY_MAX];
    uint64_t *req; /* n x fieldcount */
    size_t *slot;  /* open addressing: entry + 1, 0 empty */
    size_t nslots;
} akeys;

static uint64_t str_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int akeys_grow(akeys *a)
{
    size_t ns = a->nslots ? a->nslots * 2 : 1024;
    size_t *slot = calloc(ns, sizeof *slot);
    if (!slot)
        return -ENOMEM;
    for (size_t i = 0; i < a->n; i++) {
        size_t j = str_hash(a->key[i]) & (ns - 1);
        while (slot[j])
            j = (j + 1) & (ns - 1);
        slot[j] = i + 1;
    }
    free(a->slot);
    a->slot = slot;
    a->nslots = ns;
    return 0;
}

/* The requirements of key (added when new); NULL without memory. */
static uint64_t *akeys_get(akeys *a, const char *key)
{
    if ((!a->slot || 2 * (a->n + 1) > a->nslots) && akeys_grow(a) < 0)
        return NULL;
    size_t j = str_hash(key) & (a->nslots - 1);
    while (a->key && a->slot[j]) { /* a->key is set with the first entry */
        size_t i = a->slot[j] - 1;
        if (strcmp(a->key[i], key) == 0)
            return &a->req[i * (size_t)a->fieldcount];
        j = (j + 1) & (a->nslots - 1);
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 1024;
        char(*k)[YCSB_KEY_MAX] = realloc(a->key, cap * sizeof *k);
        if (!k)
            return NULL;
        a->key = k;
        uint64_t *r = realloc(a->req, cap * (size_t)a->fieldcount * sizeof *r);
        if (!r)
            return NULL;
        a->req = r;
        a->cap = cap;
    }
    size_t i = a->n++;
    snprintf(a->key[i], YCSB_KEY_MAX, "%s", key);
    memset(&a->req[i * (size_t)a->fieldcount], 0, (size_t)a->fieldcount * sizeof *a->req);
    a->slot[j] = i + 1;
    return &a->req[i * (size_t)a->fieldcount];
}

/* Read one acknowledgement file. A last line without its newline was being written when
 * the writer died and is ignored: a cut line could name another key or a smaller version,
 * and the file must never claim a write that was not acknowledged. */
static int read_acked(akeys *a, const char *path, rt_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return rt_err_sys(err, "--acked %s", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    for (unsigned long no = 1; (len = getline(&line, &cap, f)) > 0; no++) {
        if (line[len - 1] != '\n') {
            /* On stdout: a note, not an error (stderr's last line is the verdict). */
            printf("%s:%lu: ignoring an incomplete last line\n", path, no);
            break;
        }
        line[len - 1] = '\0';
        char key[YCSB_KEY_MAX];
        const char *sp = strchr(line, ' ');
        long long v;
        rt_err pe;
        if (!sp || sp == line || (size_t)(sp - line) >= sizeof key ||
            strncmp(line, "user", 4) != 0 || rt_parse_int(sp + 1, 1, INT64_MAX, &v, &pe) < 0) {
            rc = rt_err_set(err, EINVAL, "%s:%lu: '%.60s': not 'KEY VERSION'", path, no, line);
            break;
        }
        memcpy(key, line, (size_t)(sp - line));
        key[sp - line] = '\0';
        uint64_t ver = (uint64_t)v;
        int field = ycsb_version_field(ver);
        if (field >= a->fieldcount) {
            rc = rt_err_set(err, EINVAL,
                            "%s:%lu: version %llu wrote field %d, but --fieldcount is %d", path, no,
                            (unsigned long long)ver, field, a->fieldcount);
            break;
        }
        uint64_t *req = akeys_get(a, key);
        if (!req) {
            rc = rt_err_set(err, ENOMEM, "%s: no memory for %zu keys", path, a->n);
            break;
        }
        for (int i = 0; i < a->fieldcount; i++)
            if ((field == YCSB_VERSION_ALL || field == i) && ver > req[i])
                req[i] = ver;
    }
    if (rc == 0 && ferror(f))
        rc = rt_err_sys(err, "--acked %s: read", path);
    free(line);
    fclose(f);
    return rc;
}

/* Why the record read for key fails its requirements; NULL when it passes. */
static const char *verify(const ycsb_rec *r, const char *key, const uint64_t *req, size_t flen,
                          char *why, size_t cap)
{
    for (int i = 0; i < r->n; i++) {
        uint64_t v = 0;
        if (r->f[i].present) {
            if (ycsb_value_parse(r->f[i].p, r->f[i].len, flen, key, i, &v) < 0) {
                snprintf(why, cap,
                         "field%d is not a value this tool wrote for this key (%zu bytes: '%.40s')",
                         i, r->f[i].len, r->f[i].p);
                return why;
            }
            int vf = ycsb_version_field(v);
            if (vf != YCSB_VERSION_ALL && vf != i) {
                snprintf(why, cap, "field%d holds version %llu, a write of field%d", i,
                         (unsigned long long)v, vf);
                return why;
            }
        }
        if (req[i] && !r->f[i].present) {
            snprintf(why, cap, "field%d is missing; acknowledged version %llu", i,
                     (unsigned long long)req[i]);
            return why;
        }
        if (req[i] && v < req[i]) {
            snprintf(why, cap, "field%d has version %llu, older than the acknowledged %llu", i,
                     (unsigned long long)v, (unsigned long long)req[i]);
            return why;
        }
    }
    return NULL;
}

int ycsb_check(const ycsb_opts *o, void *db)
{
    akeys a = {.fieldcount = o->fieldcount};
    rt_err e;
    int status = 1;
    void *conn = NULL;
    ycsb_rec *rec = malloc(sizeof *rec);
    if (!rec) {
        fprintf(stderr, "splitft-ycsb: no memory\n");
        return 1;
    }
    ycsb_rec_init(rec, o->fieldcount);
    for (size_t i = 0; i < o->nacked; i++)
        if (read_acked(&a, o->acked[i], &e) < 0)
            goto out_msg;
    if (o->be->connect(db, &conn, &e) < 0)
        goto out_msg;
    size_t lost = 0;
    char why[256];
    for (size_t i = 0; i < a.n; i++) {
        const char *key = a.key[i];
        int rc = o->be->read(conn, key, rec, &e);
        const char *bad = NULL;
        if (rc == -ENOENT)
            bad = "no such record";
        else if (rc < 0)
            goto out_msg;
        else
            bad =
                verify(rec, key, &a.req[i * (size_t)a.fieldcount], o->fieldlength, why, sizeof why);
        if (bad) {
            if (lost < 10)
                fprintf(stderr, "lost: %s: %s\n", key, bad);
            lost++;
        }
    }
    printf("checked %zu keys, %zu lost\n", a.n, lost);
    fflush(stdout);
    if (lost) /* last on stderr too, after the lost keys, for scripts that keep one line */
        fprintf(stderr, "splitft-ycsb: check failed: %zu of %zu keys lost\n", lost, a.n);
    status = lost ? 1 : 0;
    goto out;
out_msg:
    fprintf(stderr, "splitft-ycsb: %s\n", e.msg);
out:
    if (conn)
        o->be->disconnect(conn);
    ycsb_rec_free(rec);
    free(rec);
    free(a.key);
    free(a.req);
    free(a.slot);
    return status;
}
