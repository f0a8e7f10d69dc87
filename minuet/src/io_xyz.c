/* io_xyz.c: XYZ text point clouds (.xyz, .txt, .pts): one point per line, "x y z" separated
 * by spaces, tabs or commas, further columns (normals, colours, labels) ignored, blank lines
 * and '#' comments skipped, '\r\n' line ends accepted. A line with fewer than three numbers or
 * a non-finite one is refused (MN_EFORMAT) with its line number. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SHOWN(s, n) (int)((n) < 40 ? (n) : 40), (s) /* a token in a message */

static bool is_sep(char c) { return c == ' ' || c == '\t' || c == ',' || c == '\r'; }

/* Parse one line (without its '\n'): *got = 0 for a blank or comment line, 1 for a point. */
static mn_status parse_line(const char *s, size_t n, size_t line, double *xyz, int *got)
{
    const char *hash = memchr(s, '#', n);
    if (hash)
        n = (size_t)(hash - s);
    size_t i = 0;
    int k = 0;
    for (; k < 3; k++) {
        while (i < n && is_sep(s[i]))
            i++;
        if (i == n)
            break;
        size_t start = i;
        while (i < n && !is_sep(s[i]))
            i++;
        if (mn_parse_double(s + start, i - start, &xyz[k]) != 0)
            return mn_fail(MN_EFORMAT, "line %zu: '%.*s' is not a number", line,
                           SHOWN(s + start, i - start));
        if (!isfinite(xyz[k]))
            return mn_fail(MN_EFORMAT, "line %zu: '%.*s' is not a finite number", line,
                           SHOWN(s + start, i - start));
    }
    if (k > 0 && k < 3)
        return mn_fail(MN_EFORMAT, "line %zu: %d number%s, need x y z", line, k, k == 1 ? "" : "s");
    *got = k == 3;
    return MN_OK;
}

static mn_status grow(mn_cloud *cl, size_t *cap)
{
    if (cl->n < *cap)
        return MN_OK;
    size_t ncap = *cap ? *cap * 2 : 1024;
    double *p = ncap < SIZE_MAX / (3 * sizeof *p) ? realloc(cl->xyz, ncap * 3 * sizeof *p) : NULL;
    if (!p) {
        mn_fail(MN_ENOMEM, "cannot allocate %zu points", ncap);
        return MN_ENOMEM;
    }
    cl->xyz = p;
    *cap = ncap;
    return MN_OK;
}

static mn_status parse_lines(const char *b, size_t len, mn_cloud *cl)
{
    size_t cap = 0, pos = 0;
    for (size_t line = 1; pos < len; line++) {
        const char *nl = memchr(b + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - b) : len;
        double xyz[3];
        int got = 0;
        mn_status s = parse_line(b + pos, end - pos, line, xyz, &got);
        if (s == MN_OK && got)
            s = grow(cl, &cap);
        if (s != MN_OK)
            return s;
        if (got)
            memcpy(cl->xyz + 3 * cl->n++, xyz, sizeof xyz);
        pos = end + 1;
    }
    return MN_OK;
}

mn_status mn_xyz_parse(const void *buf, size_t len, mn_cloud *cl)
{
    if (!buf || !cl)
        return mn_fail(MN_EINVAL, "mn_xyz_parse: NULL argument");
    cl->xyz = NULL;
    cl->n = 0;
    mn_status s = parse_lines(buf, len, cl);
    if (s != MN_OK) {
        mn_cloud_free(cl);
        return mn_done(s);
    }
    if (cl->n > 0 && cl->n < SIZE_MAX / 2) {
        double *p = realloc(cl->xyz, cl->n * 3 * sizeof *p);
        if (p)
            cl->xyz = p;
    }
    return mn_done(MN_OK);
}
