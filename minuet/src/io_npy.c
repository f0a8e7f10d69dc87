/* io_npy.c: NumPy .npy arrays (format 1.0, 2.0 and 3.0), int32 and float32, 1-D or 2-D, C
 * order, little-endian: a validating reader (every refusal says what was found and what is
 * accepted) and a writer that produces what numpy.save does (version 1.0, data aligned to 64
 * bytes), through a temporary file and a rename.
 *
 * Sections: preamble, header dict, validation, reading, writing. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "io_npy.c copies little-endian array data as is: a big-endian host needs byte swaps"
#endif

#define NPY_MAGIC     "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN     64
#define ACCEPTED      "accepted: '<i4' (int32), '<f4' (float32)"

typedef struct npy_header {
    char descr[32];
    bool fortran;
    int ndim;          /* number of dimensions found (may exceed 3: refused later) */
    uint64_t dims[3];  /* the first three */
    unsigned seen;     /* bit per key: 1 descr, 2 fortran_order, 4 shape */
    size_t data_off;   /* where the array data starts */
    size_t rows, cols; /* validated shape */
    size_t bytes;      /* rows * cols * 4 */
} npy_header;

/* ---- preamble: magic, version, header length -------------------------------------------- */

static mn_status parse_preamble(const unsigned char *b, size_t len, size_t *hstart, size_t *hlen)
{
    if (len < NPY_MAGIC_LEN || memcmp(b, NPY_MAGIC, NPY_MAGIC_LEN) != 0) {
        char hex[3 * NPY_MAGIC_LEN + 1] = "";
        for (size_t i = 0; i < len && i < NPY_MAGIC_LEN; i++)
            snprintf(hex + 3 * i, sizeof hex - 3 * i, "%02x ", b[i]);
        return mn_fail(MN_EFORMAT, "not a .npy file: starts with [%s] (accepted: \\x93NUMPY)", hex);
    }
    if (len < NPY_MAGIC_LEN + 2)
        return mn_fail(MN_EFORMAT, "truncated: %zu bytes, no version after the magic", len);
    unsigned major = b[6], minor = b[7];
    size_t lsize = major == 1 ? 2 : 4;
    if ((major != 1 && major != 2 && major != 3) || minor != 0)
        return mn_fail(MN_EFORMAT, "unsupported .npy version %u.%u (accepted: 1.0, 2.0, 3.0)",
                       major, minor);
    if (len < 8 + lsize)
        return mn_fail(MN_EFORMAT, "truncated: %zu bytes, no header length after the version", len);
    uint32_t n = 0;
    for (size_t i = 0; i < lsize; i++)
        n |= (uint32_t)b[8 + i] << (8 * i);
    *hstart = 8 + lsize;
    *hlen = n;
    if (n > len - *hstart)
        return mn_fail(
            MN_EFORMAT,
            "header length %u runs past the end of the file (%zu bytes after the preamble)",
            (unsigned)n, len - *hstart);
    return MN_OK;
}

/* ---- header dict: a Python literal {'descr': ..., 'fortran_order': ..., 'shape': (...)} -- */

typedef struct cursor {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool take(cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static mn_status parse_string(cursor *c, char *out, size_t outsz)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return mn_fail(MN_EFORMAT, "header: expected a quoted string");
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || n + 1 >= outsz)
            return mn_fail(MN_EFORMAT, "header: string too long or with escapes");
        out[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return mn_fail(MN_EFORMAT, "header: unterminated string");
    c->p++;
    out[n] = '\0';
    return MN_OK;
}

static mn_status parse_bool(cursor *c, bool *v)
{
    skip_ws(c);
    size_t left = (size_t)(c->end - c->p);
    if (left >= 4 && memcmp(c->p, "True", 4) == 0) {
        c->p += 4;
        *v = true;
    } else if (left >= 5 && memcmp(c->p, "False", 5) == 0) {
        c->p += 5;
        *v = false;
    } else {
        return mn_fail(MN_EFORMAT, "header: fortran_order must be True or False");
    }
    return MN_OK;
}

static mn_status parse_dim(cursor *c, uint64_t *v)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return mn_fail(MN_EFORMAT, "header: shape must be a tuple of non-negative integers");
    uint64_t x = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        unsigned d = (unsigned)(*c->p++ - '0');
        if (x > (UINT64_MAX - d) / 10)
            return mn_fail(MN_EFORMAT, "header: a shape dimension overflows 64 bits");
        x = x * 10 + d;
    }
    *v = x;
    return MN_OK;
}

/* "()", "(N,)", "(N, C)", "(N, C,)", ...: Python tuples; "(N)" is an int, not a tuple. */
static mn_status parse_shape(cursor *c, npy_header *h)
{
    if (!take(c, '('))
        return mn_fail(MN_EFORMAT, "header: shape must be a tuple");
    h->ndim = 0;
    while (!take(c, ')')) {
        uint64_t d = 0;
        mn_status s = parse_dim(c, &d);
        if (s != MN_OK)
            return s;
        if (h->ndim < 3)
            h->dims[h->ndim] = d;
        h->ndim++;
        if (take(c, ','))
            continue;
        if (h->ndim == 1 || !take(c, ')'))
            return mn_fail(MN_EFORMAT, "header: shape must be a tuple like (N,) or (N, C)");
        break;
    }
    return MN_OK;
}

static mn_status parse_entry(cursor *c, npy_header *h)
{
    char key[32];
    mn_status s = parse_string(c, key, sizeof key);
    if (s != MN_OK)
        return s;
    if (!take(c, ':'))
        return mn_fail(MN_EFORMAT, "header: expected ':' after '%s'", key);
    unsigned bit = strcmp(key, "descr") == 0           ? 1
                   : strcmp(key, "fortran_order") == 0 ? 2
                   : strcmp(key, "shape") == 0         ? 4
                                                       : 0;
    if (bit == 0)
        return mn_fail(MN_EFORMAT,
                       "header: unknown key '%s' (accepted: 'descr', 'fortran_order', 'shape')",
                       key);
    if (h->seen & bit)
        return mn_fail(MN_EFORMAT, "header: key '%s' appears twice", key);
    h->seen |= bit;
    if (bit == 1)
        return parse_string(c, h->descr, sizeof h->descr);
    if (bit == 2)
        return parse_bool(c, &h->fortran);
    return parse_shape(c, h);
}

static mn_status parse_dict(const char *text, size_t n, npy_header *h)
{
    cursor c = {text, text + n};
    if (!take(&c, '{'))
        return mn_fail(MN_EFORMAT, "header: not a dict literal (no '{')");
    while (!take(&c, '}')) {
        mn_status s = parse_entry(&c, h);
        if (s != MN_OK)
            return s;
        if (take(&c, ','))
            continue;
        if (!take(&c, '}'))
            return mn_fail(MN_EFORMAT, "header: expected ',' or '}' after a value");
        break;
    }
    skip_ws(&c);
    if (c.p != c.end)
        return mn_fail(MN_EFORMAT, "header: unexpected text after the dict");
    if (h->seen != 7)
        return mn_fail(MN_EFORMAT,
                       "header: missing key '%s' (needed: 'descr', 'fortran_order', 'shape')",
                       !(h->seen & 1)   ? "descr"
                       : !(h->seen & 2) ? "fortran_order"
                                        : "shape");
    return MN_OK;
}

/* ---- validation: dtype, order, shape, sizes --------------------------------------------- */

static mn_status check_dtype(npy_header *h, char *dtype)
{
    const char *d = h->descr;
    /* '=' is native order, little-endian here (the #error above guarantees it). */
    if ((d[0] == '<' || d[0] == '=') && (strcmp(d + 1, "i4") == 0 || strcmp(d + 1, "f4") == 0)) {
        *dtype = d[1];
        return MN_OK;
    }
    if (d[0] == '>')
        return mn_fail(MN_EFORMAT, "big-endian dtype '%s' is not supported (%s)", d, ACCEPTED);
    return mn_fail(MN_EFORMAT, "dtype '%s' is not supported (%s)", d, ACCEPTED);
}

static mn_status check_shape(npy_header *h, size_t data_len)
{
    if (h->fortran)
        return mn_fail(MN_EFORMAT, "fortran_order True is not supported (accepted: C order)");
    if (h->ndim < 1 || h->ndim > 3)
        return mn_fail(MN_EFORMAT,
                       "%d-dimensional array is not supported (accepted: 1-D, 2-D, 3-D)", h->ndim);
    uint64_t rows = h->dims[0], cols = h->ndim >= 2 ? h->dims[h->ndim - 1] : 1;
    bool too_big = false;
    if (h->ndim == 3) { /* [A, B, C] in C order is [A * B, C]: weights [K^3, Cin, Cout] */
        too_big = h->dims[1] != 0 && rows > UINT64_MAX / h->dims[1];
        rows = too_big ? 0 : rows * h->dims[1];
    }
    too_big = too_big || (cols != 0 && rows > UINT64_MAX / 4 / cols);
#if SIZE_MAX < UINT64_MAX
    too_big = too_big || rows > SIZE_MAX || cols > SIZE_MAX || rows * cols * 4 > SIZE_MAX;
#endif
    if (too_big)
        return mn_fail(MN_EFORMAT, "shape (%llu, %llu) is too large for this machine",
                       (unsigned long long)rows, (unsigned long long)cols);
    h->rows = (size_t)rows;
    h->cols = (size_t)cols;
    h->bytes = h->rows * h->cols * 4;
    if (data_len < h->bytes)
        return mn_fail(MN_EFORMAT, "truncated: %zu bytes of %zu of array data (shape (%zu, %zu))",
                       data_len, h->bytes, h->rows, h->cols);
    if (data_len > h->bytes)
        return mn_fail(MN_EFORMAT, "trailing data: %zu bytes after the %zu of array data",
                       data_len - h->bytes, h->bytes);
    return MN_OK;
}

/* Everything about an image but its data: on MN_OK the data is b[h->data_off ..] and exactly
 * h->bytes long. */
static mn_status parse_image(const unsigned char *b, size_t len, npy_header *h, char *dtype)
{
    size_t hstart = 0, hlen = 0;
    memset(h, 0, sizeof *h);
    mn_status s = parse_preamble(b, len, &hstart, &hlen);
    if (s != MN_OK)
        return s;
    h->data_off = hstart + hlen;
    s = parse_dict((const char *)b + hstart, hlen, h);
    if (s == MN_OK)
        s = check_dtype(h, dtype);
    if (s == MN_OK)
        s = check_shape(h, len - h->data_off);
    return s;
}

/* ---- reading ---------------------------------------------------------------------------- */

mn_status mn_npy_parse(const void *buf, size_t len, mn_array *a)
{
    if (!buf || !a)
        return mn_fail(MN_EINVAL, "mn_npy_parse: NULL argument");
    memset(a, 0, sizeof *a);
    npy_header h;
    char dtype;
    mn_status s = parse_image(buf, len, &h, &dtype);
    if (s != MN_OK)
        return mn_done(s);
    void *data = malloc(h.bytes ? h.bytes : 1);
    if (!data)
        return mn_fail(MN_ENOMEM, "cannot allocate %zu bytes of array data", h.bytes);
    memcpy(data, (const unsigned char *)buf + h.data_off, h.bytes);
    *a = (mn_array){.dtype = dtype, .rows = h.rows, .cols = h.cols, .data = data};
    return mn_done(MN_OK);
}

mn_status mn_npy_read(const char *path, mn_array *a)
{
    if (!path || !a)
        return mn_fail(MN_EINVAL, "mn_npy_read: NULL argument");
    memset(a, 0, sizeof *a);
    char *buf = NULL;
    size_t len = 0;
    mn_status s = mn_read_file(path, &buf, &len);
    if (s != MN_OK || !buf)
        return mn_done(s);
    npy_header h;
    char dtype;
    s = parse_image((const unsigned char *)buf, len, &h, &dtype);
    if (s != MN_OK) {
        free(buf);
        return mn_fail(s, "'%s': %s", path, mn_last_error());
    }
    /* The data moves to the front of the file buffer: no second copy of a large array. */
    memmove(buf, buf + h.data_off, h.bytes);
    char *shrunk = realloc(buf, h.bytes ? h.bytes : 1);
    if (shrunk)
        buf = shrunk;
    *a = (mn_array){.dtype = dtype, .rows = h.rows, .cols = h.cols, .data = buf};
    return mn_done(MN_OK);
}

/* ---- writing ---------------------------------------------------------------------------- */

/* The preamble and header numpy.save writes for a 2-D C-order array, byte for byte: version
 * 1.0, the dict (keys sorted), spaces, '\n', the whole a multiple of 64 bytes so that the data
 * is aligned. (recent numpy adds spaces for in-place growth of the shape; for any 2-D shape
 * they end within the same 128 bytes.) */
static size_t format_header(const mn_array *a, char *out, size_t outsz)
{
    char dict[160];
    int n = snprintf(dict, sizeof dict,
                     "{'descr': '<%c4', 'fortran_order': False, 'shape': (%zu, %zu), }", a->dtype,
                     a->rows, a->cols);
    size_t total = 10 + (size_t)n + 1;
    total = (total + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    if (total > outsz)
        return 0;
    size_t hlen = total - 10;
    memcpy(out, NPY_MAGIC, NPY_MAGIC_LEN);
    out[6] = 1; /* version 1.0 */
    out[7] = 0;
    out[8] = (char)(hlen & 0xff);
    out[9] = (char)(hlen >> 8);
    memset(out + 10, ' ', hlen);
    memcpy(out + 10, dict, (size_t)n);
    out[total - 1] = '\n';
    return total;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Write to "<path>.tmp.<pid>.<tid>", fsync, rename over path: a reader never sees a partial
 * array under the final name, and after a crash the name holds either the old file or the
 * whole new one (the fsync orders the data before the rename on journaling file systems).
 * The directory is not synced: the rename itself may be lost in a crash, which leaves the
 * old file, never a torn one. */
static mn_status write_atomic(const char *path, const char *hdr, size_t hn, const void *data,
                              size_t dn)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%ld", path, (long)getpid(), (long)gettid());
    if (n < 0 || (size_t)n >= sizeof tmp)
        return mn_fail(MN_EINVAL, "path too long: '%s'", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0)
        return mn_fail(MN_EIO, "cannot create '%s': %s", tmp, strerror(errno));
    int err = 0;
    if (write_all(fd, hdr, hn) != 0 || write_all(fd, data, dn) != 0 || fsync(fd) != 0)
        err = errno;
    if (close(fd) != 0 && err == 0)
        err = errno;
    if (err == 0 && rename(tmp, path) != 0)
        err = errno;
    if (err != 0) {
        unlink(tmp);
        return mn_fail(MN_EIO, "cannot write '%s': %s", path, strerror(err));
    }
    return MN_OK;
}

mn_status mn_npy_write(const char *path, const mn_array *a)
{
    if (!path || !a)
        return mn_fail(MN_EINVAL, "mn_npy_write: NULL argument");
    if (a->dtype != 'i' && a->dtype != 'f')
        return mn_fail(MN_EINVAL, "mn_npy_write: dtype '%c' (accepted: 'i' int32, 'f' float32)",
                       a->dtype);
    if (a->cols != 0 && a->rows > SIZE_MAX / 4 / a->cols)
        return mn_fail(MN_EINVAL, "mn_npy_write: shape (%zu, %zu) is too large", a->rows, a->cols);
    size_t bytes = a->rows * a->cols * 4;
    if (bytes > 0 && !a->data)
        return mn_fail(MN_EINVAL, "mn_npy_write: NULL data for shape (%zu, %zu)", a->rows, a->cols);
    char hdr[256];
    size_t hn = format_header(a, hdr, sizeof hdr);
    if (hn == 0)
        return mn_fail(MN_EINVAL, "mn_npy_write: header does not fit");
    return mn_done(write_atomic(path, hdr, hn, a->data, bytes));
}
