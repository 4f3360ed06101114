/* layernorm (affine or not, bf16 weights), rmsnorm and the channel-first
 * RMS norm against double loops, plus their argument errors. */
#include "ops_common.h"

static void test_layernorm(ops_env *e, test_rng *r)
{
    static const int64_t rows[] = { 1, 7, 130 }, cols[] = { 1, 3, 129, 300, 1536 };
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 5; j++)
            for (int affine = 0; affine < 3; affine++) {
                int64_t m = rows[i], c = cols[j], xs[2] = { m, c }, vs[1] = { c };
                td_tensor x = rand_tensor(e, r, 2, xs, 2.0f), y = zero_tensor(e, TD_F32, 2, xs);
                td_tensor w = rand_tensor(e, r, 1, vs, 1.0f), b = rand_tensor(e, r, 1, vs, 1.0f);
                td_tensor wn = narrowed(e, &w, affine == 2 ? TD_BF16 : TD_F32);
                td_tensor bn = narrowed(e, &b, affine == 2 ? TD_BF16 : TD_F32);
                double *ref = malloc(sizeof(double) * (size_t)(m * c)), *mag = malloc(sizeof(double) * (size_t)(m * c));
                const float *X = x.data, *W = w.data, *B = b.data;
                float eps = 1e-6f;
                /* a large offset makes a one-pass variance visibly wrong */
                for (int64_t q = 0; q < m * c; q++)
                    ((float *)x.data)[q] += 3.0f;
                for (int64_t row = 0; row < m; row++) {
                    double s = 0, v = 0;
                    for (int64_t q = 0; q < c; q++)
                        s += X[row * c + q];
                    s /= (double)c;
                    for (int64_t q = 0; q < c; q++)
                        v += (X[row * c + q] - s) * (X[row * c + q] - s);
                    v /= (double)c;
                    for (int64_t q = 0; q < c; q++) {
                        double o = (X[row * c + q] - s) / sqrt(v + eps);
                        ref[row * c + q] = affine ? o * W[q] + B[q] : o;
                        mag[row * c + q] = affine ? fabs(o * W[q]) + fabs(B[q]) : fabs(o);
                    }
                }
                CHECK_OK(e, e->be->ops->layernorm(e->be, &x, affine ? &wn : NULL, affine ? &bn : NULL, eps, &y));
                /* against |o w| + |b|: with a bias one output may cancel to ~0 */
                CHECK(err_vs_mag(y.data, ref, mag, (size_t)(m * c)) < 1e-6, "layernorm %lldx%lld affine=%d: %.3g",
                      (long long)m, (long long)c, affine, err_vs_mag(y.data, ref, mag, (size_t)(m * c)));
                /* in place */
                CHECK_OK(e, e->be->ops->layernorm(e->be, &x, affine ? &wn : NULL, affine ? &bn : NULL, eps, &x));
                CHECK(err_vs_mag(x.data, ref, mag, (size_t)(m * c)) < 1e-6, "layernorm in place");
                free(ref);
                free(mag);
                td_tensor_free(&x); td_tensor_free(&y); td_tensor_free(&w); td_tensor_free(&b);
                td_tensor_free(&wn); td_tensor_free(&bn);
            }
}

static void test_rmsnorm(ops_env *e, test_rng *r)
{
    static const int64_t rows[] = { 1, 7, 130 }, cols[] = { 1, 3, 129, 300, 5120 };
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 5; j++)
            for (int wk = 0; wk < 3; wk++) {
                int64_t m = rows[i], c = cols[j], xs[2] = { m, c }, vs[1] = { c };
                td_tensor x = rand_tensor(e, r, 2, xs, 2.0f), y = zero_tensor(e, TD_F32, 2, xs);
                td_tensor w = rand_tensor(e, r, 1, vs, 1.0f);
                td_tensor wn = narrowed(e, &w, wk == 2 ? TD_F16 : TD_F32);
                double *ref = malloc(sizeof(double) * (size_t)(m * c));
                const float *X = x.data, *W = w.data;
                float eps = 1e-5f;
                for (int64_t row = 0; row < m; row++) {
                    double ss = 0;
                    for (int64_t q = 0; q < c; q++)
                        ss += (double)X[row * c + q] * X[row * c + q];
                    for (int64_t q = 0; q < c; q++)
                        ref[row * c + q] = X[row * c + q] / sqrt(ss / (double)c + eps) * (wk ? W[q] : 1.0);
                }
                CHECK_OK(e, e->be->ops->rmsnorm(e->be, &x, wk ? &wn : NULL, eps, &y));
                CHECK(rel_l2_fd(y.data, ref, (size_t)(m * c)) < 1e-6, "rmsnorm %lldx%lld w=%d: %.3g",
                      (long long)m, (long long)c, wk, rel_l2_fd(y.data, ref, (size_t)(m * c)));
                free(ref);
                td_tensor_free(&x); td_tensor_free(&y); td_tensor_free(&w); td_tensor_free(&wn);
            }
}

static void test_channel_rmsnorm(ops_env *e, test_rng *r)
{
    static const int64_t shapes[][4] = { { 1, 1, 1, 1 }, { 3, 2, 5, 7 }, { 96, 1, 13, 9 }, { 384, 2, 3, 300 } };
    for (int s = 0; s < 4; s++)
        for (int hb = 0; hb < 2; hb++) {
            const int64_t *sh = shapes[s];
            int64_t c = sh[0], n = sh[1] * sh[2] * sh[3], gs[4] = { c, 1, 1, 1 }, vs[1] = { c };
            td_tensor x = rand_tensor(e, r, 4, sh, 1.0f), y = zero_tensor(e, TD_F32, 4, sh);
            td_tensor g = rand_tensor(e, r, 4, gs, 1.0f), b = rand_tensor(e, r, 1, vs, 1.0f);
            td_tensor gn = narrowed(e, &g, TD_BF16);
            double *ref = malloc(sizeof(double) * (size_t)(c * n)), *mag = malloc(sizeof(double) * (size_t)(c * n));
            const float *X = x.data, *G = g.data, *B = b.data;
            /* one all-zero position: the 1e-12 floor must keep it finite */
            for (int64_t ch = 0; ch < c; ch++)
                ((float *)x.data)[ch * n] = 0.0f;
            for (int64_t q = 0; q < n; q++) {
                double ss = 0, nrm;
                for (int64_t ch = 0; ch < c; ch++)
                    ss += (double)X[ch * n + q] * X[ch * n + q];
                nrm = sqrt(ss) > 1e-12 ? sqrt(ss) : 1e-12;
                for (int64_t ch = 0; ch < c; ch++) {
                    double o = X[ch * n + q] / nrm * sqrt((double)c) * G[ch];
                    ref[ch * n + q] = o + (hb ? B[ch] : 0.0);
                    mag[ch * n + q] = fabs(o) + (hb ? fabs(B[ch]) : 0.0);
                }
            }
            CHECK_OK(e, e->be->ops->channel_rmsnorm(e->be, &x, &gn, hb ? &b : NULL, &y));
            CHECK(err_vs_mag(y.data, ref, mag, (size_t)(c * n)) < 1e-6, "channel_rmsnorm %lld x %lld bias=%d: %.3g",
                  (long long)c, (long long)n, hb, err_vs_mag(y.data, ref, mag, (size_t)(c * n)));
            free(ref);
            free(mag);
            td_tensor_free(&x); td_tensor_free(&y); td_tensor_free(&g); td_tensor_free(&b); td_tensor_free(&gn);
        }
}

static void test_errors(ops_env *e, test_rng *r)
{
    int64_t xs[2] = { 4, 8 }, ys[2] = { 4, 7 }, v7[1] = { 7 }, v8[1] = { 8 }, c4[4] = { 8, 1, 2, 2 }, c5[4] = { 8, 1, 2, 3 };
    td_tensor x = rand_tensor(e, r, 2, xs, 1.0f), y = zero_tensor(e, TD_F32, 2, xs);
    td_tensor yb = zero_tensor(e, TD_F32, 2, ys), w7 = rand_tensor(e, r, 1, v7, 1.0f);
    td_tensor w8 = rand_tensor(e, r, 1, v8, 1.0f), wi = zero_tensor(e, TD_I8, 1, v8);
    td_tensor cx = rand_tensor(e, r, 4, c4, 1.0f), cy = zero_tensor(e, TD_F32, 4, c5);
    const td_backend_ops *o = e->be->ops;
    CHECK_FAILS(e, o->layernorm(e->be, &x, NULL, NULL, 1e-6f, &yb), TD_ESHAPE, "layernorm");
    CHECK_FAILS(e, o->layernorm(e->be, &x, &w7, NULL, 1e-6f, &y), TD_ESHAPE, "layernorm");
    CHECK_FAILS(e, o->layernorm(e->be, &x, &wi, NULL, 1e-6f, &y), TD_EINVAL, "layernorm");
    CHECK_FAILS(e, o->layernorm(e->be, &x, NULL, NULL, -1.0f, &y), TD_EINVAL, "layernorm");
    CHECK_FAILS(e, o->rmsnorm(e->be, &x, &w7, 1e-6f, &y), TD_ESHAPE, "rmsnorm");
    CHECK_FAILS(e, o->channel_rmsnorm(e->be, &cx, &w8, NULL, &cy), TD_ESHAPE, "channel_rmsnorm");
    CHECK_FAILS(e, o->channel_rmsnorm(e->be, &cx, &w7, NULL, &cx), TD_ESHAPE, "channel_rmsnorm");
    CHECK_FAILS(e, o->channel_rmsnorm(e->be, &cx, NULL, NULL, &cx), TD_EINVAL, "channel_rmsnorm");
    td_tensor_free(&x); td_tensor_free(&y); td_tensor_free(&yb); td_tensor_free(&w7);
    td_tensor_free(&w8); td_tensor_free(&wi); td_tensor_free(&cx); td_tensor_free(&cy);
}

int main(void)
{
    test_rng r = test_rng_seeded();
    ops_env e;
    if (ops_env_init(&e) < 0)
        return 1;
    test_layernorm(&e, &r);
    test_rmsnorm(&e, &r);
    test_channel_rmsnorm(&e, &r);
    test_errors(&e, &r);
    ops_env_free(&e);
    return check_summary();
}
