/* io.c: point-cloud files by extension (mn_cloud_read), voxelization of a cloud into sorted
 * unique int32 coordinates (mn_voxelize), and the helpers the readers share (whole-file read,
 * number tokens). The formats themselves: io_npy.c, io_ply.c, io_xyz.c. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* ---- shared helpers -------------------------------------------------------------------- */

static mn_status read_fd(int fd, const char *path, char **buf, size_t *len)
{
    struct stat st;
    size_t cap = 4096, n = 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uintmax_t)st.st_size < SIZE_MAX / 2)
        cap = (size_t)st.st_size + 1;
    char *b = malloc(cap);
    if (!b)
        return mn_fail(MN_ENOMEM, "'%s': cannot allocate %zu bytes", path, cap);
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = cap < SIZE_MAX / 2 ? realloc(b, cap * 2) : NULL;
            if (!nb) {
                free(b);
                return mn_fail(MN_ENOMEM, "'%s': cannot allocate %zu bytes", path, cap * 2);
            }
            b = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, b + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int err = errno;
            free(b);
            return mn_fail(MN_EIO, "cannot read '%s': %s", path, strerror(err));
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return MN_OK;
}

mn_status mn_read_file(const char *path, char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mn_fail(MN_EIO, "cannot open '%s': %s", path, strerror(errno));
    mn_status s = read_fd(fd, path, buf, len);
    close(fd);
    return s;
}

int mn_parse_double(const char *s, size_t n, double *v)
{
    char tmp[128];
    if (n == 0 || n >= sizeof tmp)
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    *v = strtod(tmp, &end);
    /* ERANGE: overflow gives +-HUGE_VAL (refused by callers as non-finite); underflow gives
     * the nearest representable value, which is accepted. */
    return end == tmp + n ? 0 : -1;
}

/* ---- clouds ---------------------------------------------------------------------------- */

void mn_cloud_free(mn_cloud *cl)
{
    if (!cl)
        return;
    free(cl->xyz);
    cl->xyz = NULL;
    cl->n = 0;
}

static const char *extension(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    return dot ? dot : "";
}

mn_status mn_cloud_read(const char *path, mn_cloud *cl)
{
    if (!path || !cl)
        return mn_fail(MN_EINVAL, "mn_cloud_read: NULL argument");
    cl->xyz = NULL;
    cl->n = 0;
    const char *ext = extension(path);
    int ply = strcasecmp(ext, ".ply") == 0;
    if (!ply && strcasecmp(ext, ".xyz") != 0 && strcasecmp(ext, ".txt") != 0 &&
        strcasecmp(ext, ".pts") != 0)
        return mn_fail(
            MN_EINVAL,
            "'%s': unknown point cloud extension '%s' (accepted: .ply, .xyz, .txt, .pts, in any case)",
            path, ext);
    char *buf = NULL;
    size_t len = 0;
    mn_status s = mn_read_file(path, &buf, &len);
    if (s != MN_OK || !buf)
        return mn_done(s);
    s = ply ? mn_ply_parse(buf, len, cl) : mn_xyz_parse(buf, len, cl);
    free(buf);
    if (s != MN_OK)
        return mn_fail(s, "'%s': %s", path, mn_last_error());
    return mn_done(MN_OK);
}

/* ---- voxelization ---------------------------------------------------------------------- */

static int cmp_coord(const void *pa, const void *pb)
{
    const int32_t *a = pa, *b = pb;
    for (int i = 0; i < 4; i++)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return 0;
}

/* Row i of c = (batch, floor(p / voxel)); MN_ENAN / MN_ERANGE when a point has no int32
 * voxel. The comparison is written so that NaN fails it. */
static mn_status voxel_rows(const mn_cloud *cl, double voxel, int batch, int32_t *c)
{
    for (size_t i = 0; i < cl->n; i++) {
        c[4 * i] = batch;
        for (int d = 0; d < 3; d++) {
            double p = cl->xyz[3 * i + (size_t)d];
            if (!isfinite(p))
                return mn_fail(MN_ENAN, "voxelize: point %zu has a non-finite coordinate %g", i, p);
            double q = floor(p / voxel);
            if (!(q >= (double)INT32_MIN && q <= (double)INT32_MAX))
                return mn_fail(
                    MN_ERANGE,
                    "voxelize: point %zu (%g, %g, %g) / voxel %g is outside the int32 range", i,
                    cl->xyz[3 * i], cl->xyz[3 * i + 1], cl->xyz[3 * i + 2], voxel);
            c[4 * i + 1 + (size_t)d] = (int32_t)q;
        }
    }
    return MN_OK;
}

/* Merge equal neighbours of sorted rows; returns the new count. */
static size_t unique_rows(int32_t *c, size_t n)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m > 0 && cmp_coord(c + 4 * (m - 1), c + 4 * i) == 0)
            continue;
        if (m != i)
            memcpy(c + 4 * m, c + 4 * i, 4 * sizeof *c);
        m++;
    }
    return m;
}

mn_status mn_voxelize(const mn_cloud *cl, double voxel, int batch, mn_coords *out)
{
    if (!cl || !out || (cl->n > 0 && !cl->xyz))
        return mn_fail(MN_EINVAL, "voxelize: NULL argument");
    out->c = NULL;
    out->n = 0;
    if (!(voxel > 0) || !isfinite(voxel))
        return mn_fail(MN_EINVAL, "voxelize: voxel size %g: must be finite and > 0", voxel);
    if (cl->n == 0)
        return mn_fail(MN_EEMPTY, "voxelize: the cloud has no points");
    if (cl->n > SIZE_MAX / (4 * sizeof(int32_t)))
        return mn_fail(MN_ENOMEM, "voxelize: %zu points do not fit in memory", cl->n);
    int32_t *c = malloc(cl->n * 4 * sizeof *c);
    if (!c)
        return mn_fail(MN_ENOMEM, "voxelize: cannot allocate %zu coordinates", cl->n);
    mn_status s = voxel_rows(cl, voxel, batch, c);
    if (s != MN_OK) {
        free(c);
        return mn_done(s);
    }
    qsort(c, cl->n, 4 * sizeof *c, cmp_coord);
    size_t m = unique_rows(c, cl->n);
    int32_t *shrunk = realloc(c, m * 4 * sizeof *c);
    if (shrunk)
        c = shrunk;
    out->c = c;
    out->n = m;
    return mn_done(MN_OK);
}
