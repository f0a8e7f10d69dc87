/* env.c: typed parsers for configuration values and the table-driven loader.
 *
 * Sections: helpers, scalar parsers (int, size, duration, bool, enum), host:port lists,
 * paths, the rt_env_spec loader.
 */
#include "rt/env.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------------------- */

/* Copy s without surrounding blanks into buf; returns its length, or -1 if too long. */
static long trimmed(const char *s, char *buf, size_t buflen)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n'))
        n--;
    if (n >= buflen)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return (long)n;
}

/* Parse a run of decimal digits into *v; returns the count of digits, -1 on overflow. */
static int digits_u64(const char **p, uint64_t *v)
{
    int n = 0;
    uint64_t x = 0;
    while (isdigit((unsigned char)**p)) {
        unsigned d = (unsigned)(**p - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
        (*p)++;
        n++;
    }
    *v = x;
    return n;
}

/* ---- scalars ---------------------------------------------------------------------- */

int rt_parse_int(const char *s, long long min, long long max, long long *out, rt_err *err)
{
    char buf[64];
    const char *why = "not an integer";
    if (s && trimmed(s, buf, sizeof buf) > 0) {
        const char *p = buf;
        bool neg = false;
        if (*p == '-' || *p == '+')
            neg = *p++ == '-';
        uint64_t v;
        int nd = digits_u64(&p, &v);
        if (nd > 0 && *p == '\0') {
            uint64_t lim = neg ? (uint64_t)LLONG_MAX + 1 : (uint64_t)LLONG_MAX;
            if (v <= lim) {
                long long x = neg ? (long long)(0 - v) : (long long)v;
                if (x >= min && x <= max) {
                    *out = x;
                    return 0;
                }
                why = "out of range";
            } else {
                why = "out of range";
            }
        } else if (nd < 0) {
            why = "out of range";
        }
    }
    return rt_err_set(err, EINVAL, "%s; accepted: an integer from %lld to %lld", why, min, max);
}

static int size_suffix_shift(const char *p, int *shift)
{
    static const char units[] = "KMGT";
    if (*p == '\0' || strcasecmp(p, "b") == 0) {
        *shift = 0;
        return 0;
    }
    const char *u = strchr(units, toupper((unsigned char)*p));
    if (!u)
        return -1;
    *shift = 10 * (int)(u - units + 1);
    p++;
    if (*p == '\0' || strcasecmp(p, "b") == 0 || strcasecmp(p, "ib") == 0)
        return 0;
    return -1;
}

void rt_format_size(uint64_t v, char *out, size_t outlen)
{
    static const char units[] = "TGMK";
    for (int i = 0; i < 4; i++) {
        int shift = 10 * (4 - i);
        if (v != 0 && v % (1ULL << shift) == 0) {
            snprintf(out, outlen, "%llu%c", (unsigned long long)(v >> shift), units[i]);
            return;
        }
    }
    snprintf(out, outlen, "%llu", (unsigned long long)v);
}

int rt_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out, rt_err *err)
{
    char buf[64], lo[32], hi[32];
    const char *why = "not a size";
    if (s && trimmed(s, buf, sizeof buf) > 0) {
        const char *p = buf;
        uint64_t v;
        int shift;
        int nd = digits_u64(&p, &v);
        if (nd < 0) {
            why = "out of range";
        } else if (nd > 0 && size_suffix_shift(p, &shift) == 0) {
            if (shift > 0 && v > (UINT64_MAX >> shift)) {
                why = "out of range";
            } else {
                v <<= shift;
                if (v >= min && v <= max) {
                    *out = v;
                    return 0;
                }
                why = "out of range";
            }
        }
    }
    rt_format_size(min, lo, sizeof lo);
    rt_format_size(max, hi, sizeof hi);
    return rt_err_set(
        err, EINVAL,
        "%s; accepted: a whole number of bytes with an optional K, M, G or T suffix (powers of 1024), from %s to %s",
        why, lo, hi);
}

static const struct {
    const char *name;
    uint64_t ns;
} duration_units[] = {
    {"ns", 1}, {"us", RT_US}, {"ms", RT_MS}, {"s", RT_S}, {"m", 60 * RT_S}, {"h", 3600 * RT_S},
};

static void format_duration(uint64_t ns, char *out, size_t outlen)
{
    for (int i = (int)(sizeof duration_units / sizeof duration_units[0]) - 1; i > 0; i--) {
        if (ns != 0 && ns % duration_units[i].ns == 0) {
            snprintf(out, outlen, "%llu%s", (unsigned long long)(ns / duration_units[i].ns),
                     duration_units[i].name);
            return;
        }
    }
    snprintf(out, outlen, "%lluns", (unsigned long long)ns);
}

int rt_parse_duration(const char *s, uint64_t unit_ns, uint64_t min_ns, uint64_t max_ns,
                      uint64_t *out_ns, rt_err *err)
{
    char buf[64], lo[32], hi[32], unit[32];
    const char *why = "not a duration";
    if (unit_ns == 0)
        unit_ns = RT_MS;
    if (s && trimmed(s, buf, sizeof buf) > 0) {
        const char *p = buf;
        uint64_t whole, frac = 0, scale = 1;
        int nd = digits_u64(&p, &whole);
        int nf = 0;
        if (nd >= 0 && *p == '.') {
            p++;
            /* Up to 9 fractional digits count (nanosecond resolution); more are ignored. */
            while (isdigit((unsigned char)*p)) {
                if (nf < 9) {
                    frac = frac * 10 + (uint64_t)(*p - '0');
                    scale *= 10;
                }
                nf++;
                p++;
            }
        }
        uint64_t mult = 0;
        if (*p == '\0') {
            mult = unit_ns;
        } else {
            for (size_t i = 0; i < sizeof duration_units / sizeof duration_units[0]; i++)
                if (strcasecmp(p, duration_units[i].name) == 0)
                    mult = duration_units[i].ns;
        }
        if (nd < 0) {
            why = "out of range";
        } else if ((nd > 0 || nf > 0) && mult != 0) {
            if (whole > UINT64_MAX / mult) {
                why = "out of range";
            } else {
                /* frac/scale < 1, so part < mult; the product needs 128 bits on its way. */
                uint64_t part = (uint64_t)((unsigned __int128)frac * mult / scale);
                uint64_t v = whole * mult;
                if (v > UINT64_MAX - part) {
                    why = "out of range";
                } else {
                    v += part;
                    if (v >= min_ns && v <= max_ns) {
                        *out_ns = v;
                        return 0;
                    }
                    why = "out of range";
                }
            }
        }
    }
    format_duration(min_ns, lo, sizeof lo);
    format_duration(max_ns, hi, sizeof hi);
    format_duration(unit_ns, unit, sizeof unit);
    return rt_err_set(
        err, EINVAL,
        "%s; accepted: a number with an optional unit ns, us, ms, s, m or h (bare numbers count in units of %s), from %s to %s",
        why, unit, lo, hi);
}

int rt_parse_bool(const char *s, bool *out, rt_err *err)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    char buf[16];
    if (s && trimmed(s, buf, sizeof buf) > 0) {
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(buf, yes[i]) == 0) {
                *out = true;
                return 0;
            }
            if (strcasecmp(buf, no[i]) == 0) {
                *out = false;
                return 0;
            }
        }
    }
    return rt_err_set(err, EINVAL, "not a boolean; accepted: 1, true, yes, on, 0, false, no, off");
}

int rt_parse_enum(const char *s, const char *const *names, int *out, rt_err *err)
{
    char buf[64];
    if (s && trimmed(s, buf, sizeof buf) > 0) {
        for (int i = 0; names[i]; i++) {
            if (strcasecmp(buf, names[i]) == 0) {
                *out = i;
                return 0;
            }
        }
    }
    char list[200] = "";
    size_t used = 0;
    for (int i = 0; names[i] && used < sizeof list; i++) {
        int n = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", names[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return rt_err_set(err, EINVAL, "not a known value; accepted: one of %s", list);
}

/* ---- host:port lists -------------------------------------------------------------- */

static bool host_char_ok(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_';
}

static const char hostport_accepted[] =
    "accepted: HOST:PORT or [IPv6]:PORT with a port from 1 to 65535";

/* Parse one entry from [s, s+len). */
static int parse_hostport_n(const char *s, size_t len, unsigned min_port, rt_hostport *out,
                            rt_err *err)
{
    const char *end = s + len;
    const char *hs, *he, *colon;
    if (len > 0 && *s == '[') {
        hs = s + 1;
        he = memchr(hs, ']', (size_t)(end - hs));
        if (!he || he + 1 >= end || he[1] != ':')
            return rt_err_set(err, EINVAL, "unclosed '[' or no port; %s", hostport_accepted);
        colon = he + 1;
        for (const char *c = hs; c < he; c++)
            if (!isxdigit((unsigned char)*c) && *c != ':' && *c != '.')
                return rt_err_set(err, EINVAL, "bad IPv6 address; %s", hostport_accepted);
    } else {
        colon = NULL;
        for (const char *c = s; c < end; c++)
            if (*c == ':')
                colon = c;
        if (!colon)
            return rt_err_set(err, EINVAL, "no port; %s", hostport_accepted);
        hs = s;
        he = colon;
        for (const char *c = hs; c < he; c++)
            if (!host_char_ok(*c))
                return rt_err_set(err, EINVAL, "bad character in host; %s", hostport_accepted);
    }
    if (he == hs)
        return rt_err_set(err, EINVAL, "empty host; %s", hostport_accepted);
    if ((size_t)(he - hs) >= RT_HOST_MAX)
        return rt_err_set(err, EINVAL, "host name too long; %s", hostport_accepted);
    const char *p = colon + 1;
    uint64_t port;
    int nd = digits_u64(&p, &port);
    if (nd <= 0 || p != end || port < min_port || port > 65535)
        return rt_err_set(err, EINVAL, "bad port; %s", hostport_accepted);
    memcpy(out->host, hs, (size_t)(he - hs));
    out->host[he - hs] = '\0';
    out->port = (uint16_t)port;
    return 0;
}

int rt_parse_listen_addr(const char *s, rt_hostport *out, rt_err *err)
{
    char buf[RT_HOST_MAX + 16];
    long n = s ? trimmed(s, buf, sizeof buf) : -1;
    if (n <= 0)
        return rt_err_set(err, EINVAL, "empty or too long; accepted: HOST:PORT, port 0 for any");
    return parse_hostport_n(buf, (size_t)n, 0, out, err);
}

int rt_parse_hostports(const char *s, size_t max_n, rt_hostports *out, rt_err *err)
{
    if (max_n == 0 || max_n > RT_HOSTS_MAX)
        max_n = RT_HOSTS_MAX;
    out->n = 0;
    if (!s || !*s)
        return rt_err_set(err, EINVAL, "empty list; accepted: 1 to %zu comma-separated HOST:PORT",
                          max_n);
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *e = comma ? comma : p + strlen(p);
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        const char *q = e;
        while (q > p && (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\n'))
            q--;
        if (out->n == max_n)
            return rt_err_set(err, EINVAL,
                              "more than %zu entries; accepted: 1 to %zu comma-separated HOST:PORT",
                              max_n, max_n);
        rt_err one;
        if (q == p)
            return rt_err_set(err, EINVAL,
                              "empty entry %zu; accepted: 1 to %zu comma-separated HOST:PORT",
                              out->n + 1, max_n);
        if (parse_hostport_n(p, (size_t)(q - p), 1, &out->v[out->n], &one) < 0)
            return rt_err_set(err, EINVAL, "entry %zu: %s", out->n + 1, one.msg);
        out->n++;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

/* ---- paths ------------------------------------------------------------------------ */

static int check_path(const char *p, unsigned flags, char *out, size_t outlen, rt_err *err)
{
    if (*p == '\0')
        return rt_err_set(err, EINVAL, "empty path; accepted: a file system path");
    if (strlen(p) >= outlen || strlen(p) >= PATH_MAX)
        return rt_err_set(err, EINVAL, "path too long; accepted: under %d bytes", PATH_MAX);
    if (flags & (RT_PATH_EXISTS | RT_PATH_DIR | RT_PATH_REALPATH)) {
        struct stat st;
        if (stat(p, &st) != 0)
            return rt_err_set(err, EINVAL, "%s; accepted: an existing %s", strerror(errno),
                              flags & RT_PATH_DIR ? "directory" : "path");
        if ((flags & RT_PATH_DIR) && !S_ISDIR(st.st_mode))
            return rt_err_set(err, EINVAL, "not a directory; accepted: an existing directory");
    }
    char real[PATH_MAX];
    if (flags & RT_PATH_REALPATH) {
        if (!realpath(p, real))
            return rt_err_set(err, EINVAL, "cannot resolve: %s", strerror(errno));
        p = real;
    }
    size_t n = strlen(p);
    if (n >= outlen)
        return rt_err_set(err, EINVAL, "resolved path too long");
    memcpy(out, p, n + 1);
    return 0;
}

int rt_parse_path(const char *s, unsigned flags, char *out, size_t outlen, rt_err *err)
{
    return check_path(s ? s : "", flags, out, outlen, err);
}

int rt_parse_pathlist(const char *s, unsigned flags, rt_pathlist *out, rt_err *err)
{
    out->n = 0;
    if (!s || !*s)
        return rt_err_set(err, EINVAL, "empty list; accepted: colon-separated paths");
    const char *p = s;
    for (;;) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        char one[PATH_MAX];
        rt_err e1;
        if (out->n == RT_PATHS_MAX)
            return rt_err_set(err, EINVAL, "more than %d paths", RT_PATHS_MAX);
        if (len >= sizeof one)
            return rt_err_set(err, EINVAL, "path %zu too long", out->n + 1);
        memcpy(one, p, len);
        one[len] = '\0';
        if (check_path(one, flags, out->v[out->n], PATH_MAX, &e1) < 0)
            return rt_err_set(err, EINVAL, "path %zu '%.200s': %s", out->n + 1, one, e1.msg);
        out->n++;
        if (!colon)
            return 0;
        p = colon + 1;
    }
}

/* ---- the loader ------------------------------------------------------------------- */

static int parse_one(const rt_env_spec *sp, const char *v, rt_err *err)
{
    switch (sp->type) {
    case RT_ENV_INT:
        return rt_parse_int(v, sp->min, sp->max, sp->dest, err);
    case RT_ENV_SIZE:
        return rt_parse_size(v, (uint64_t)sp->min, (uint64_t)sp->max, sp->dest, err);
    case RT_ENV_DURATION:
        return rt_parse_duration(v, sp->unit_ns, (uint64_t)sp->min, (uint64_t)sp->max, sp->dest,
                                 err);
    case RT_ENV_BOOL:
        return rt_parse_bool(v, sp->dest, err);
    case RT_ENV_ENUM:
        return rt_parse_enum(v, sp->names, sp->dest, err);
    case RT_ENV_HOSTPORTS:
        return rt_parse_hostports(v, (size_t)sp->max, sp->dest, err);
    case RT_ENV_PATH:
        return rt_parse_path(v, sp->flags, sp->dest, PATH_MAX, err);
    case RT_ENV_PATHLIST:
        return rt_parse_pathlist(v, sp->flags, sp->dest, err);
    case RT_ENV_STRING: {
        size_t len = strlen(v);
        if (len >= RT_HOST_MAX)
            return rt_err_set(err, EINVAL, "too long; accepted: text under %d bytes", RT_HOST_MAX);
        memcpy(sp->dest, v, len + 1);
        return 0;
    }
    }
    return rt_err_set(err, EINVAL, "unknown variable type %d", (int)sp->type);
}

int rt_env_load(const rt_env_spec *specs, size_t n, rt_err *err)
{
    for (size_t i = 0; i < n; i++) {
        const rt_env_spec *sp = &specs[i];
        if (!sp->dest) /* a spec without a destination is the caller's bug: say so, never crash */
            return rt_err_set(err, EINVAL, "%s: no destination for its value (a bug)", sp->name);
        const char *v = getenv(sp->name);
        bool from_default = !v || !*v;
        if (from_default)
            v = sp->def;
        if (!v)
            continue;
        rt_err e1;
        if (parse_one(sp, v, &e1) < 0)
            return rt_err_set(err, EINVAL, "%s%s='%.120s': %s", sp->name,
                              from_default ? " (built-in default)" : "", v, e1.msg);
    }
    return 0;
}
