/* conv3d against a direct 7-deep double loop: several kernels, strides,
 * symmetric and causal padding, bias, bf16/f16 weights, and sizes that
 * cross the output-row and input-channel tiles, on every stride-1 path
 * this CPU runs (td_conv_path); plus errors. */
#include "ops_common.h"
#include "backend/cpu/cpu.h"

typedef struct { int64_t ci, t, h, w, co, kt, kh, kw; td_conv3d_params p; td_dtype wdt; int bias; } conv_case;

static int64_t odim(int64_t in, int64_t pad, int64_t k, int64_t s)
{
    return (in + pad - k) / s + 1;
}

static void one(ops_env *e, test_rng *r, const conv_case *c)
{
    const td_conv3d_params *p = &c->p;
    int64_t to = odim(c->t, p->pad_t_front + p->pad_t_back, c->kt, p->stride[0]);
    int64_t ho = odim(c->h, 2 * p->pad_h, c->kh, p->stride[1]);
    int64_t wo = odim(c->w, 2 * p->pad_w, c->kw, p->stride[2]);
    int64_t xs[4] = { c->ci, c->t, c->h, c->w }, ws[5] = { c->co, c->ci, c->kt, c->kh, c->kw };
    int64_t ys[4] = { c->co, to, ho, wo }, bs[1] = { c->co }, n = c->co * to * ho * wo;
    td_tensor x = rand_tensor(e, r, 4, xs, 1.0f), w = rand_tensor(e, r, 5, ws, 0.3f);
    td_tensor b = rand_tensor(e, r, 1, bs, 1.0f), y = zero_tensor(e, TD_F32, 4, ys);
    td_tensor wn = narrowed(e, &w, c->wdt);
    const float *X = x.data, *W = w.data, *B = b.data;
    double *ref = malloc(sizeof(double) * (size_t)n), *mag = malloc(sizeof(double) * (size_t)n);

    for (int64_t o = 0; o < c->co; o++)
        for (int64_t a = 0; a < to; a++)
            for (int64_t i = 0; i < ho; i++)
                for (int64_t j = 0; j < wo; j++) {
                    double s = c->bias ? B[o] : 0.0, am = fabs(s);
                    for (int64_t ci = 0; ci < c->ci; ci++)
                        for (int64_t dt = 0; dt < c->kt; dt++)
                            for (int64_t dh = 0; dh < c->kh; dh++)
                                for (int64_t dw = 0; dw < c->kw; dw++) {
                                    int64_t ti = a * p->stride[0] - p->pad_t_front + dt;
                                    int64_t hi = i * p->stride[1] - p->pad_h + dh;
                                    int64_t wi = j * p->stride[2] - p->pad_w + dw;
                                    if (ti < 0 || ti >= c->t || hi < 0 || hi >= c->h || wi < 0 || wi >= c->w)
                                        continue;
                                    double t = (double)X[((ci * c->t + ti) * c->h + hi) * c->w + wi] *
                                               W[(((o * c->ci + ci) * c->kt + dt) * c->kh + dh) * c->kw + dw];
                                    s += t;
                                    am += fabs(t);
                                }
                    ref[((o * to + a) * ho + i) * wo + j] = s;
                    mag[((o * to + a) * ho + i) * wo + j] = am;
                }
    test_fill(r, y.data, (size_t)n, 50.0f);   /* must be overwritten */
    CHECK_OK(e, e->be->ops->conv3d(e->be, &x, &wn, c->bias ? &b : NULL, p, &y));
    CHECK(err_vs_mag(y.data, ref, mag, (size_t)n) < 1e-6,
          "conv3d ci=%lld t=%lld h=%lld w=%lld co=%lld k=%lldx%lldx%lld stride=%d,%d,%d pad=%d+%d,%d,%d %s: %.3g",
          (long long)c->ci, (long long)c->t, (long long)c->h, (long long)c->w, (long long)c->co,
          (long long)c->kt, (long long)c->kh, (long long)c->kw, p->stride[0], p->stride[1], p->stride[2],
          p->pad_t_front, p->pad_t_back, p->pad_h, p->pad_w, td_dtype_name(c->wdt),
          err_vs_mag(y.data, ref, mag, (size_t)n));
    free(ref);
    free(mag);
    td_tensor_free(&x); td_tensor_free(&w); td_tensor_free(&b); td_tensor_free(&y); td_tensor_free(&wn);
}

static void test_errors(ops_env *e, test_rng *r)
{
    int64_t xs[4] = { 2, 3, 4, 5 }, ws[5] = { 3, 2, 3, 3, 3 }, wb[5] = { 3, 4, 3, 3, 3 };
    int64_t ys[4] = { 3, 1, 2, 3 }, yb[4] = { 3, 1, 2, 4 }, b2[1] = { 2 };
    td_tensor x = rand_tensor(e, r, 4, xs, 1.0f), w = rand_tensor(e, r, 5, ws, 1.0f);
    td_tensor w4 = rand_tensor(e, r, 5, wb, 1.0f), y = zero_tensor(e, TD_F32, 4, ys);
    td_tensor ybad = zero_tensor(e, TD_F32, 4, yb), b = rand_tensor(e, r, 1, b2, 1.0f);
    td_conv3d_params p = { { 1, 1, 1 }, 0, 0, 0, 0 }, bad = { { 0, 1, 1 }, 0, 0, 0, 0 };
    const td_backend_ops *o = e->be->ops;
    CHECK_OK(e, o->conv3d(e->be, &x, &w, NULL, &p, &y));
    CHECK_FAILS(e, o->conv3d(e->be, &x, &w4, NULL, &p, &y), TD_ESHAPE, "conv3d");
    CHECK_FAILS(e, o->conv3d(e->be, &x, &w, NULL, &p, &ybad), TD_ESHAPE, "conv3d");
    CHECK_FAILS(e, o->conv3d(e->be, &x, &w, &b, &p, &y), TD_ESHAPE, "conv3d");
    CHECK_FAILS(e, o->conv3d(e->be, &x, &w, NULL, &bad, &y), TD_EINVAL, "conv3d");
    CHECK_FAILS(e, o->conv3d(e->be, &x, &x, NULL, &p, &y), TD_ESHAPE, "conv3d");
    td_tensor_free(&x); td_tensor_free(&w); td_tensor_free(&w4); td_tensor_free(&y);
    td_tensor_free(&ybad); td_tensor_free(&b);
}

int main(void)
{
    static const conv_case cases[] = {
        { 1, 1, 1, 1, 1, 1, 1, 1, { { 1, 1, 1 }, 0, 0, 0, 0 }, TD_F32, 0 },
        { 3, 2, 5, 7, 4, 1, 1, 1, { { 1, 1, 1 }, 0, 0, 0, 0 }, TD_F32, 1 },
        { 3, 4, 6, 5, 5, 3, 3, 3, { { 1, 1, 1 }, 2, 0, 1, 1 }, TD_F32, 1 },     /* causal */
        { 3, 4, 6, 5, 5, 3, 3, 3, { { 1, 1, 1 }, 1, 1, 1, 1 }, TD_BF16, 0 },
        { 2, 5, 9, 8, 3, 3, 1, 1, { { 2, 1, 1 }, 2, 0, 0, 0 }, TD_F16, 1 },     /* time downsample */
        { 4, 1, 9, 11, 3, 1, 3, 3, { { 1, 2, 2 }, 0, 0, 1, 1 }, TD_BF16, 1 },   /* spatial downsample */
        { 2, 3, 7, 6, 2, 2, 2, 3, { { 1, 2, 3 }, 1, 2, 2, 1 }, TD_F32, 0 },
        { 50, 3, 65, 70, 5, 3, 3, 3, { { 1, 1, 1 }, 2, 0, 1, 1 }, TD_BF16, 1 }, /* crosses both tiles */
        { 50, 2, 9, 4500, 2, 1, 1, 3, { { 1, 1, 1 }, 0, 0, 0, 1 }, TD_F32, 1 },  /* one row > a tile */
        /* Co >= 16 (the AVX-512 path): Ci and Co off its 16- and 32-channel
         * blocks, W off its 14-position tiles, rows off its row tiles */
        { 20, 3, 7, 30, 40, 3, 3, 3, { { 1, 1, 1 }, 2, 0, 1, 1 }, TD_BF16, 1 },
        { 32, 2, 5, 28, 64, 3, 3, 3, { { 1, 1, 1 }, 1, 1, 1, 1 }, TD_F32, 0 },
        { 16, 1, 3, 5, 16, 1, 1, 1, { { 1, 1, 1 }, 0, 0, 0, 0 }, TD_F16, 1 },
        { 7, 4, 6, 9, 17, 2, 3, 2, { { 1, 1, 1 }, 1, 0, 2, 0 }, TD_F32, 1 },
        { 96, 2, 9, 45, 48, 3, 3, 3, { { 1, 1, 1 }, 2, 0, 1, 1 }, TD_BF16, 0 },
        { 140, 2, 4, 16, 20, 3, 3, 3, { { 1, 1, 1 }, 2, 0, 1, 1 }, TD_F32, 1 },  /* > one weight chunk */
        /* Ci and Co >= 32 (the AMX path): channels off its 32-channel
         * blocks and 128-channel groups, odd widths, rows off its row
         * blocks, one-row blocks, kernels other than 3x3x3 */
        { 33, 3, 6, 17, 35, 3, 3, 3, { { 1, 1, 1 }, 2, 0, 1, 1 }, TD_F32, 1 },
        { 160, 2, 4, 21, 40, 3, 3, 3, { { 1, 1, 1 }, 2, 0, 1, 1 }, TD_F32, 1 },
        { 64, 2, 5, 9, 32, 1, 3, 3, { { 1, 1, 1 }, 0, 0, 1, 1 }, TD_F16, 1 },
        { 40, 4, 3, 7, 33, 3, 1, 1, { { 1, 1, 1 }, 1, 1, 0, 0 }, TD_BF16, 0 },
        { 48, 3, 5, 13, 40, 2, 1, 2, { { 1, 1, 1 }, 1, 0, 0, 0 }, TD_F32, 1 },
        { 32, 1, 30, 198, 64, 1, 3, 3, { { 1, 1, 1 }, 0, 0, 1, 1 }, TD_F32, 1 },
        { 32, 1, 3, 4500, 32, 1, 1, 3, { { 1, 1, 1 }, 0, 0, 0, 1 }, TD_F32, 0 },
    };
    test_rng r = test_rng_seeded();
    ops_env e;
    if (ops_env_init(&e) < 0)
        return 1;
    for (td_conv_path p = TD_CONV_GEMM; p <= TD_CONV_AMX; p++) {
        if (!td_cpu_conv_supported(p))
            continue;
        printf("conv3d path %d\n", (int)p);
        td_cpu_of(e.be)->conv_path = p;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
            one(&e, &r, &cases[i]);
    }
    td_cpu_of(e.be)->conv_path = td_cpu_conv_best(TD_ISA_AMX);
    test_errors(&e, &r);
    ops_env_free(&e);
    return check_summary();
}
