/* net.c: the benchmark networks, ResNet-21-style and UNet-42-style (MinkUNet-like), with
 * random weights from a fixed seed: layers, the per-level kernel maps, the forward pass.
 *
 * Levels: level 0 holds the input coordinates (tensor stride 1); level l+1 is level l
 * downsampled by 2 (tensor stride 2^(l+1)). Each level gets one submanifold K=3 map, shared
 * by all its convolutions; each step down gets one K=2 stride-2 map, used forward by the
 * encoder and transposed by the decoder's up-convolutions.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "keys.h"

#define LEVELS 5

typedef struct layer {
    int kind; /* L_SUB (K=3 at this level), L_DOWN (K=2 to the next), L_UP (transposed back) */
    int level, cin, cout;
    float *W;
} layer;

enum { L_SUB, L_DOWN, L_UP };

struct mn_net {
    mn_net_kind kind;
    int in_channels, widths[5];
    layer *layers;
    int n;
};

static float gauss(uint64_t *s)
{
    double u = 0;
    for (int i = 0; i < 12; i++) { /* Irwin-Hall: close enough to normal, deterministic */
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        u += (double)(*s >> 11) / 9007199254740992.0;
    }
    return (float)(u - 6.0);
}

static int add_layer(mn_net *net, int kind, int level, int cin, int cout, uint64_t *seed)
{
    layer *l = &net->layers[net->n++];
    int K = kind == L_SUB ? 3 : 2, nk = K * K * K;
    *l = (layer){kind, level, cin, cout, malloc((size_t)nk * cin * cout * sizeof(float))};
    if (!l->W)
        return -1;
    float scale = (float)sqrt(2.0 / ((double)nk * cin)); /* He initialisation */
    for (size_t i = 0; i < (size_t)nk * cin * cout; i++)
        l->W[i] = gauss(seed) * scale;
    return 0;
}

mn_status mn_net_create(mn_net_kind kind, int in_channels, const int widths[5], uint64_t seed,
                        mn_net **out)
{
    *out = NULL;
    if (kind != MN_RESNET21 && kind != MN_UNET42)
        return mn_fail(MN_EINVAL, "unknown network %d", (int)kind);
    if (in_channels < 1 || in_channels > 4096)
        return mn_fail(MN_EINVAL, "%d input channels: accepted 1..4096", in_channels);
    for (int i = 0; i < 5; i++)
        if (widths[i] < 1 || widths[i] > 4096)
            return mn_fail(MN_EINVAL, "width %d: accepted 1..4096", widths[i]);
    mn_net *net = calloc(1, sizeof *net);
    if (!net || !(net->layers = calloc(64, sizeof *net->layers))) {
        free(net);
        return mn_fail(MN_ENOMEM, "out of memory");
    }
    net->kind = kind;
    net->in_channels = in_channels;
    memcpy(net->widths, widths, sizeof net->widths);
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 7;
    int rc = add_layer(net, L_SUB, 0, in_channels, widths[0], &s);
    if (kind == MN_UNET42)
        rc |= add_layer(net, L_SUB, 0, widths[0], widths[0], &s);
    for (int st = 1; st <= 4; st++) { /* encoder: down, then two residual blocks */
        rc |= add_layer(net, L_DOWN, st - 1, widths[st - 1], widths[st], &s);
        for (int b = 0; b < 4; b++)
            rc |= add_layer(net, L_SUB, st, widths[st], widths[st], &s);
    }
    if (kind == MN_UNET42)
        for (int st = 3; st >= 0; st--) { /* decoder: up, concat the skip, two blocks */
            rc |= add_layer(net, L_UP, st, widths[st + 1], widths[st], &s);
            rc |= add_layer(net, L_SUB, st, 2 * widths[st], widths[st], &s);
            for (int b = 0; b < 3; b++)
                rc |= add_layer(net, L_SUB, st, widths[st], widths[st], &s);
        }
    if (rc) {
        mn_net_free(net);
        return mn_fail(MN_ENOMEM, "out of memory for the weights");
    }
    *out = net;
    return mn_done(MN_OK);
}

void mn_net_free(mn_net *net)
{
    if (!net)
        return;
    for (int i = 0; i < net->n; i++)
        free(net->layers[i].W);
    free(net->layers);
    free(net);
}

/* ---- the forward pass ------------------------------------------------------------------- */

typedef struct run {
    mn_coords co[LEVELS];
    mn_kmap sub[LEVELS], down[LEVELS];
    bool have_sub[LEVELS], have_down[LEVELS];
    mn_method method;
    int threads;
    mn_net_stats *st;
    mn_conv_times times;
    mn_workspace ws; /* one scratch buffer for all the layers */
} run;

static void relu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] > 0 ? x[i] : 0;
}

/* One convolution layer on features x at its level; returns the new features. */
static mn_status apply(run *R, const layer *l, const float *x, float **y)
{
    int lv = l->level;
    const mn_kmap *m;
    size_t n_in, n_out;
    bool tr = l->kind == L_UP;
    if (l->kind == L_SUB) {
        if (!R->have_sub[lv]) {
            double t0 = mn_seconds();
            mn_status s = mn_kmap_build(&R->co[lv], &R->co[lv], 3, 1 << lv, 1, R->method,
                                        R->threads, &R->sub[lv]);
            R->st->map_s += mn_seconds() - t0;
            if (s != MN_OK)
                return s;
            R->have_sub[lv] = true;
        }
        m = &R->sub[lv];
        n_in = n_out = R->co[lv].n;
    } else {
        m = &R->down[lv];
        n_in = tr ? R->co[lv + 1].n : R->co[lv].n;
        n_out = tr ? R->co[lv].n : R->co[lv + 1].n;
    }
    *y = malloc((n_out ? n_out : 1) * (size_t)l->cout * sizeof **y);
    if (!*y)
        return mn_fail(MN_ENOMEM, "out of memory for %zu x %d features", n_out, l->cout);
    mn_conv_opts o = {.group_threshold = MN_DEFAULT_GROUP_THRESHOLD,
                      .autotune = true,
                      .threads = R->threads,
                      .transposed = tr,
                      .times = &R->times,
                      .ws = &R->ws};
    mn_status s = mn_conv(m, x, n_in, l->cin, l->W, NULL, l->cout, *y, n_out, &o);
    if (s == MN_OK) {
        R->st->convs++;
        R->st->pairs += m->total;
        relu(*y, n_out * (size_t)l->cout);
    } else {
        free(*y);
        *y = NULL;
    }
    return s;
}

/* Levels 1..4 and the maps between them. */
static mn_status build_levels(run *R)
{
    for (int lv = 0; lv + 1 < LEVELS; lv++) {
        double t0 = mn_seconds();
        mn_status s = mn_downsample(&R->co[lv], 1 << lv, 2, &R->co[lv + 1]);
        if (s == MN_OK)
            s = mn_kmap_build(&R->co[lv], &R->co[lv + 1], 2, 1 << lv, 1, R->method, R->threads,
                              &R->down[lv]);
        R->st->map_s += mn_seconds() - t0;
        if (s != MN_OK)
            return s;
        R->have_down[lv] = true;
    }
    return MN_OK;
}

/* Residual blocks: x -> relu(conv(relu(conv(x))) + x), `blocks` times, from layer *li. */
static mn_status blocks(run *R, mn_net *net, int *li, int nblocks, float **x)
{
    for (int b = 0; b < nblocks; b++) {
        float *h, *h2;
        const layer *a = &net->layers[(*li)++], *c = &net->layers[(*li)++];
        mn_status s = apply(R, a, *x, &h);
        if (s != MN_OK)
            return s;
        s = apply(R, c, h, &h2);
        free(h);
        if (s != MN_OK)
            return s;
        size_t n = R->co[c->level].n * (size_t)c->cout;
        for (size_t i = 0; i < n; i++) /* the skip (after the ReLU of the second conv) */
            h2[i] += (*x)[i];
        free(*x);
        *x = h2;
    }
    return MN_OK;
}

mn_status mn_net_forward(mn_net *net, const mn_coords *in, const float *feats, mn_method method,
                         int threads, float **out, size_t *n_out, int *c_out, mn_net_stats *st)
{
    if (!net || !in || !in->c || !feats || !out || !n_out || !c_out || !st)
        return mn_fail(MN_EINVAL, "NULL argument");
    if (in->n == 0)
        return mn_fail(MN_EEMPTY, "no input coordinates");
    mn_status config = mn_config(); /* its message stands */
    if (config != MN_OK)
        return mn_done(config);
    *out = NULL;
    memset(st, 0, sizeof *st);
    double t_start = mn_seconds();
    run R = {.method = method, .threads = threads, .st = st};
    R.co[0] = *in;
    float *skip[LEVELS] = {0};
    float *x = malloc(in->n * (size_t)net->in_channels * sizeof *x);
    mn_status s = x ? build_levels(&R) : mn_fail(MN_ENOMEM, "out of memory");
    if (x)
        memcpy(x, feats, in->n * (size_t)net->in_channels * sizeof *x);
    int li = 0;
    float *y = NULL;
    if (s == MN_OK && (s = apply(&R, &net->layers[li++], x, &y)) == MN_OK) {
        free(x);
        x = y;
        if (net->kind == MN_UNET42 && (s = apply(&R, &net->layers[li++], x, &y)) == MN_OK) {
            free(x);
            x = y;
        }
    }
    for (int lv = 1; s == MN_OK && lv < LEVELS; lv++) { /* encoder */
        skip[lv - 1] = x;                               /* kept for the decoder (UNet) */
        if ((s = apply(&R, &net->layers[li++], x, &y)) != MN_OK) {
            x = NULL; /* it is skip[lv - 1], freed below */
            break;
        }
        x = y;
        s = blocks(&R, net, &li, 2, &x);
    }
    for (int lv = LEVELS - 2; s == MN_OK && net->kind == MN_UNET42 && lv >= 0; lv--) {
        if ((s = apply(&R, &net->layers[li++], x, &y)) != MN_OK) /* up to level lv */
            break;
        free(x);
        size_t n = R.co[lv].n;
        int cu = net->widths[lv], cs = net->widths[lv];
        float *cat = malloc(n * (size_t)(cu + cs) * sizeof *cat);
        if (!cat) {
            free(y);
            x = NULL;
            s = mn_fail(MN_ENOMEM, "out of memory");
            break;
        }
        for (size_t r = 0; r < n; r++) { /* concatenate the skip connection */
            memcpy(cat + r * (size_t)(cu + cs), y + r * (size_t)cu, (size_t)cu * sizeof *cat);
            memcpy(cat + r * (size_t)(cu + cs) + cu, skip[lv] + r * (size_t)cs,
                   (size_t)cs * sizeof *cat);
        }
        free(y);
        free(skip[lv]);
        skip[lv] = NULL;
        if ((s = apply(&R, &net->layers[li++], cat, &x)) != MN_OK) {
            free(cat);
            x = NULL;
            break;
        }
        free(cat);
        if ((s = blocks(&R, net, &li, 1, &x)) != MN_OK)
            break;
        /* One more convolution closes the stage (4 per decoder stage in all). */
        if ((s = apply(&R, &net->layers[li++], x, &y)) == MN_OK) {
            free(x);
            x = y;
        }
    }
    int last = net->kind == MN_UNET42 ? 0 : LEVELS - 1;
    for (int lv = 0; lv < LEVELS; lv++) {
        if (net->kind == MN_RESNET21 || s != MN_OK)
            free(skip[lv]);
        if (R.have_sub[lv])
            mn_kmap_free(&R.sub[lv]);
        if (R.have_down[lv])
            mn_kmap_free(&R.down[lv]);
        if (lv > 0 && lv != last)
            free(R.co[lv].c);
    }
    mn_workspace_free(&R.ws);
    st->gather_s = R.times.gather;
    st->gemm_s = R.times.gemm;
    st->scatter_s = R.times.scatter;
    st->tune_s = R.times.tune;
    st->total_s = mn_seconds() - t_start;
    st->other_s = st->total_s - st->map_s - st->tune_s - st->gather_s - st->gemm_s - st->scatter_s;
    if (s != MN_OK) {
        free(x);
        if (last > 0)
            free(R.co[last].c);
        return mn_done(s);
    }
    if (last > 0)
        free(R.co[last].c); /* the caller gets features only; coordinates are its to rebuild */
    *out = x;
    *n_out = R.co[last].n;
    *c_out = net->kind == MN_UNET42 ? net->widths[0] : net->widths[4];
    return mn_done(MN_OK);
}
