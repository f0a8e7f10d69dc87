/* fuzz_ply.c: libFuzzer target for the point-cloud readers: the same input goes to the PLY
 * parser (mn_ply_parse) and the XYZ parser (mn_xyz_parse), and every cloud accepted is
 * voxelized. Besides "no crash, no sanitizer report", it checks what they promise: an
 * accepted cloud has n finite points, no more than the input can hold; a refusal leaves no
 * cloud and says why; voxels come out sorted, unique, and no more than the points. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "minuet.h"

static void require(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_ply: %s (last error '%s')\n", what, mn_last_error());
        abort();
    }
}

static void check_voxels(const mn_cloud *cl)
{
    mn_coords co;
    mn_status s = mn_voxelize(cl, 0.25, 3, &co);
    if (s != MN_OK) {
        require(s == (cl->n == 0 ? MN_EEMPTY : MN_ERANGE), "voxelize refused a finite cloud");
        require(co.c == NULL && co.n == 0, "voxelize refusal left coordinates");
        return;
    }
    require(co.n >= 1 && co.n <= cl->n, "voxel count out of bounds");
    for (size_t i = 0; i < co.n; i++) {
        require(co.c[4 * i] == 3, "voxel of another batch");
        if (i > 0)
            require(memcmp(co.c + 4 * (i - 1), co.c + 4 * i, 16) != 0, "duplicate voxel");
        for (int d = 0; i > 0 && d < 4; d++) {
            int32_t a = co.c[4 * (i - 1) + (size_t)d], b = co.c[4 * i + (size_t)d];
            require(a <= b, "voxels out of order");
            if (a < b)
                break;
        }
    }
    free(co.c);
}

/* bytes_per_point: the least input one point takes, so that n * it <= size + 1. */
static void check_cloud(mn_status s, mn_cloud *cl, size_t size, size_t bytes_per_point)
{
    if (s != MN_OK) {
        require(s == MN_EFORMAT || s == MN_ENOMEM, "refusal is not MN_EFORMAT");
        require(cl->xyz == NULL && cl->n == 0, "refusal left a cloud");
        require(mn_last_error()[0] != '\0', "refusal without a message");
        return;
    }
    require(cl->n == 0 || cl->xyz != NULL, "points without storage");
    require(cl->n <= (size + 1) / bytes_per_point, "more points than the input can hold");
    for (size_t i = 0; i < 3 * cl->n; i++)
        require(isfinite(cl->xyz[i]), "accepted a non-finite coordinate");
    check_voxels(cl);
    mn_cloud_free(cl);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    mn_cloud cl;
    /* PLY: a vertex takes at least 3 bytes in binary (three char properties). */
    check_cloud(mn_ply_parse(data, size, &cl), &cl, size, 3);
    /* XYZ: a point takes at least "1 2 3\n", 6 characters (5 for the last line). */
    check_cloud(mn_xyz_parse(data, size, &cl), &cl, size, 6);
    return 0;
}
