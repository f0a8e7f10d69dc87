/* scene.c: synthetic LiDAR-like scenes for scaling curves: a ground plane swept by a
 * spinning scanner's rings, box-shaped objects (their visible faces), and scattered clutter.
 * Deterministic for a seed. Points in metres, about 100 m across. */
#include <math.h>
#include <stdlib.h>

#include "internal.h"

static double unit(uint64_t *s) /* xorshift64*, in [0, 1) */
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

mn_status mn_scene(size_t n, uint64_t seed, mn_cloud *cl)
{
    cl->n = 0;
    cl->xyz = NULL;
    if (n == 0)
        return mn_fail(MN_EEMPTY, "a scene of 0 points");
    cl->xyz = malloc(n * 3 * sizeof *cl->xyz);
    if (!cl->xyz)
        return mn_fail(MN_ENOMEM, "out of memory for %zu points", n);
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    enum { OBJ = 40 };
    double box[OBJ][6]; /* x, y, z0, sx, sy, sz */
    for (int b = 0; b < OBJ; b++) {
        double r = 8 + 40 * unit(&s), a = 2 * M_PI * unit(&s);
        box[b][0] = r * cos(a);
        box[b][1] = r * sin(a);
        box[b][2] = 0;
        box[b][3] = 1.5 + 6 * unit(&s);
        box[b][4] = 1.5 + 6 * unit(&s);
        box[b][5] = 1.4 + 8 * unit(&s);
    }
    for (size_t i = 0; i < n; i++) {
        double *p = cl->xyz + 3 * i, u = unit(&s);
        if (u < 0.45) { /* ground, on one of 64 scan rings */
            double ring = floor(64 * unit(&s)), r = 3 + 47 * pow(ring / 64, 1.6);
            double a = 2 * M_PI * unit(&s);
            p[0] = r * cos(a) + 0.02 * (unit(&s) - 0.5);
            p[1] = r * sin(a) + 0.02 * (unit(&s) - 0.5);
            p[2] = 0.03 * (unit(&s) - 0.5);
        } else if (u < 0.9) { /* a face of an object */
            const double *b = box[(int)(OBJ * unit(&s))];
            int face = (int)(5 * unit(&s));
            double a = unit(&s), c = unit(&s);
            p[0] = b[0] + (face == 0 ? 0 : face == 1 ? b[3] : a * b[3]);
            p[1] = b[1] + (face == 2 ? 0 : face == 3 ? b[4] : (face < 2 ? a : c) * b[4]);
            p[2] = b[2] + (face == 4 ? b[5] : c * b[5]);
        } else { /* clutter: vegetation, people, noise */
            double r = 50 * sqrt(unit(&s)), a = 2 * M_PI * unit(&s);
            p[0] = r * cos(a);
            p[1] = r * sin(a);
            p[2] = 3 * unit(&s);
        }
    }
    cl->n = n;
    return mn_done(MN_OK);
}
