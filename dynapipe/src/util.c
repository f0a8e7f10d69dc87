/* util.c: the small helpers every DynaPipe source uses: whole-file reading, a CSV line
 * splitter (no quoting: the cost-model and length files are plain numbers and names) and the
 * seeded random numbers of the samplers. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

dp_status dp_read_file(const char *path, char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return dp_fail(DP_EIO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        size_t got = fread(b + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
        if (n + 1 == cap) {
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    int err = ferror(f);
    fclose(f);
    if (!b)
        return dp_fail(DP_ENOMEM, "%s: out of memory reading it", path);
    if (err) {
        free(b);
        return dp_fail(DP_EIO, "%s: read error", path);
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return DP_OK;
}

void dp_csv_init(dp_csv *c, const char *text, size_t len, const char *name)
{
    memset(c, 0, sizeof *c);
    c->p = text;
    c->end = text + len;
    c->name = name;
}

static int blank_or_comment(const char *s, const char *e)
{
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\r'))
        s++;
    return s == e || *s == '#';
}

int dp_csv_next(dp_csv *c)
{
    for (;;) {
        if (c->p >= c->end)
            return 0;
        const char *s = c->p;
        const char *e = memchr(s, '\n', (size_t)(c->end - s));
        if (!e)
            e = c->end;
        c->p = e < c->end ? e + 1 : e;
        c->line++;
        if (e > s && e[-1] == '\r')
            e--;
        if (blank_or_comment(s, e))
            continue;
        c->nf = 0;
        for (;;) {
            const char *comma = memchr(s, ',', (size_t)(e - s));
            const char *fe = comma ? comma : e;
            if (c->nf == DP_CSV_MAX_FIELDS) {
                dp_fail(DP_EFORMAT, "%s:%d: more than %d fields", c->name, c->line,
                        DP_CSV_MAX_FIELDS);
                return -1;
            }
            const char *fs = s;
            while (fs < fe && (*fs == ' ' || *fs == '\t'))
                fs++;
            const char *fe2 = fe;
            while (fe2 > fs && (fe2[-1] == ' ' || fe2[-1] == '\t'))
                fe2--;
            c->f[c->nf] = fs;
            c->flen[c->nf] = (size_t)(fe2 - fs);
            c->nf++;
            if (!comma)
                break;
            s = comma + 1;
        }
        return 1;
    }
}

int dp_csv_col(const dp_csv *c, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < c->nf; i++)
        if (c->flen[i] == n && memcmp(c->f[i], name, n) == 0)
            return i;
    return -1;
}

int dp_csv_empty(const dp_csv *c, int i) { return i < 0 || i >= c->nf || c->flen[i] == 0; }

int dp_csv_double(const dp_csv *c, int i, double *v)
{
    char tmp[64];
    if (dp_csv_empty(c, i) || c->flen[i] >= sizeof tmp)
        return -1;
    memcpy(tmp, c->f[i], c->flen[i]);
    tmp[c->flen[i]] = '\0';
    char *end;
    errno = 0;
    double d = strtod(tmp, &end);
    if (*end != '\0' || errno == ERANGE || !isfinite(d))
        return -1;
    *v = d;
    return 0;
}

int dp_csv_int(const dp_csv *c, int i, long *v)
{
    char tmp[32];
    if (dp_csv_empty(c, i) || c->flen[i] >= sizeof tmp)
        return -1;
    memcpy(tmp, c->f[i], c->flen[i]);
    tmp[c->flen[i]] = '\0';
    char *end;
    errno = 0;
    long x = strtol(tmp, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return -1;
    *v = x;
    return 0;
}

uint64_t dp_rng_next(dp_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double dp_rng_uniform(dp_rng *r) { return (double)(dp_rng_next(r) >> 11) * 0x1.0p-53; }

double dp_rng_normal(dp_rng *r)
{
    double u1 = dp_rng_uniform(r), u2 = dp_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}
