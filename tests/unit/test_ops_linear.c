/* linear (f32, bf16, f16 weights, with and without bias) and the raw gemm,
 * against double loops at ragged sizes, plus their argument errors. */
#include "ops_common.h"

static void ref_linear(const float *x, const float *w, const float *b, double *y, double *mag,
                       int64_t m, int64_t k, int64_t n)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = b ? b[j] : 0.0, a = fabs(s);
            for (int64_t q = 0; q < k; q++) {
                s += (double)x[i * k + q] * w[j * k + q];
                a += fabs((double)x[i * k + q] * w[j * k + q]);
            }
            y[i * n + j] = s;
            mag[i * n + j] = a;
        }
}

static void one_linear(ops_env *e, test_rng *r, int64_t m, int64_t k, int64_t n, td_dtype wdt, int with_bias)
{
    int64_t xs[2] = { m, k }, ws[2] = { n, k }, ys[2] = { m, n }, bs[1] = { n };
    td_tensor x = rand_tensor(e, r, 2, xs, 1.0f), w = rand_tensor(e, r, 2, ws, 0.5f);
    td_tensor b = rand_tensor(e, r, 1, bs, 1.0f), y = zero_tensor(e, TD_F32, 2, ys);
    td_tensor wn = narrowed(e, &w, wdt), bn = narrowed(e, &b, wdt);
    double *ref = malloc(sizeof(double) * (size_t)(m * n + 1)), *mag = malloc(sizeof(double) * (size_t)(m * n + 1));
    double err;

    test_fill(r, y.data, (size_t)(m * n), 100.0f);   /* must be overwritten */
    ref_linear(x.data, w.data, with_bias ? b.data : NULL, ref, mag, m, k, n);
    CHECK_OK(e, e->be->ops->linear(e->be, &x, &wn, with_bias ? &bn : NULL, &y));
    err = err_vs_mag(y.data, ref, mag, (size_t)(m * n));
    CHECK(err < 1e-6, "linear m=%lld k=%lld n=%lld %s bias=%d: rel l2 %.3g",
          (long long)m, (long long)k, (long long)n, td_dtype_name(wdt), with_bias, err);
    free(ref);
    free(mag);
    td_tensor_free(&x); td_tensor_free(&w); td_tensor_free(&b); td_tensor_free(&y);
    td_tensor_free(&wn); td_tensor_free(&bn);
}

static void test_linear_sizes(ops_env *e, test_rng *r)
{
    static const int64_t ms[] = { 1, 7, 130, 257 }, ks[] = { 1, 3, 129, 300 }, ns[] = { 1, 5, 131, 259 };
    static const td_dtype dts[] = { TD_F32, TD_BF16, TD_F16 };
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 4; l++)
                    one_linear(e, r, ms[i], ks[j], ns[l], dts[d], (i + j + l) % 2);
    /* K past one widened tile (split K, beta = 1) and N past one tile */
    one_linear(e, r, 3, 4100, 300, TD_BF16, 1);
    one_linear(e, r, 2, 5000, 700, TD_F16, 0);
    one_linear(e, r, 2, 5000, 700, TD_F32, 1);
}

/* y shaped [a, b, N] with x [a, b, K]: leading dims flatten */
static void test_linear_rank3(ops_env *e, test_rng *r)
{
    int64_t xs[3] = { 2, 3, 17 }, ws[2] = { 9, 17 }, ys[3] = { 2, 3, 9 };
    td_tensor x = rand_tensor(e, r, 3, xs, 1.0f), w = rand_tensor(e, r, 2, ws, 1.0f);
    td_tensor y = zero_tensor(e, TD_F32, 3, ys);
    double ref[54], mag[54];
    ref_linear(x.data, w.data, NULL, ref, mag, 6, 17, 9);
    CHECK_OK(e, e->be->ops->linear(e->be, &x, &w, NULL, &y));
    CHECK(err_vs_mag(y.data, ref, mag, 54) < 1e-6, "rank-3 linear");
    td_tensor_free(&x); td_tensor_free(&w); td_tensor_free(&y);
}

static void test_linear_errors(ops_env *e, test_rng *r)
{
    int64_t xs[2] = { 4, 8 }, ws[2] = { 6, 8 }, ys[2] = { 4, 6 }, bad[2] = { 4, 7 }, bs[1] = { 5 };
    td_tensor x = rand_tensor(e, r, 2, xs, 1.0f), w = rand_tensor(e, r, 2, ws, 1.0f);
    td_tensor y = zero_tensor(e, TD_F32, 2, ys), yb = zero_tensor(e, TD_F32, 2, bad);
    td_tensor wb = rand_tensor(e, r, 2, bad, 1.0f), b5 = rand_tensor(e, r, 1, bs, 1.0f);
    td_tensor xi = zero_tensor(e, TD_I8, 2, xs), xt;
    int perm[2] = { 1, 0 };
    const td_backend_ops *o = e->be->ops;

    CHECK_FAILS(e, o->linear(e->be, &x, &wb, NULL, &y), TD_ESHAPE, "linear");
    CHECK_FAILS(e, o->linear(e->be, &x, &w, NULL, &yb), TD_ESHAPE, "linear");
    CHECK_FAILS(e, o->linear(e->be, &x, &w, &b5, &y), TD_ESHAPE, "linear");
    CHECK_FAILS(e, o->linear(e->be, &xi, &w, NULL, &y), TD_EINVAL, "linear");
    CHECK_FAILS(e, o->linear(e->be, &x, &xi, NULL, &y), TD_EINVAL, "linear");
    td_tensor_permute(&e->ctx, &x, perm, &xt);
    CHECK_FAILS(e, o->linear(e->be, &xt, &w, NULL, &y), TD_EINVAL, "linear");
    CHECK_FAILS(e, o->gemm(e->be, 0, 0, 4, 6, 8, 1.0f, x.data, 7, w.data, 6, 0.0f, y.data, 6),
                TD_EINVAL, "gemm");
    CHECK_FAILS(e, o->gemm(e->be, 0, 0, -1, 6, 8, 1.0f, x.data, 8, w.data, 6, 0.0f, y.data, 6),
                TD_EINVAL, "gemm");
    td_tensor_free(&x); td_tensor_free(&w); td_tensor_free(&y); td_tensor_free(&yb);
    td_tensor_free(&wb); td_tensor_free(&b5); td_tensor_free(&xi);
}

/* C = alpha op(A) op(B) + beta C with leading dims wider than the matrices */
static void test_gemm(ops_env *e, test_rng *r)
{
    static const int64_t sz[][3] = { { 1, 1, 1 }, { 7, 5, 3 }, { 130, 131, 129 }, { 33, 257, 300 } };
    for (int s = 0; s < 4; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int64_t m = sz[s][0], n = sz[s][1], k = sz[s][2];
                int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 1;
                int64_t as[1] = { (ta ? k : m) * lda }, bs[1] = { (tb ? n : k) * ldb }, cs[1] = { m * ldc };
                td_tensor a = rand_tensor(e, r, 1, as, 1.0f), b = rand_tensor(e, r, 1, bs, 1.0f);
                td_tensor c = rand_tensor(e, r, 1, cs, 1.0f);
                const float *A = a.data, *B = b.data;
                float *C = c.data, alpha = 0.75f, beta = -0.5f;
                double *ref = malloc(sizeof(double) * (size_t)(m * n)), *mag = malloc(sizeof(double) * (size_t)(m * n));
                float *got = malloc(sizeof(float) * (size_t)(m * n));
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < n; j++) {
                        double acc = 0, am = 0;
                        for (int64_t q = 0; q < k; q++) {
                            double t = (double)(ta ? A[q * lda + i] : A[i * lda + q]) *
                                       (tb ? B[j * ldb + q] : B[q * ldb + j]);
                            acc += t;
                            am += fabs(t);
                        }
                        ref[i * n + j] = alpha * acc + beta * (double)C[i * ldc + j];
                        mag[i * n + j] = fabs(alpha) * am + fabs(beta * (double)C[i * ldc + j]);
                    }
                CHECK_OK(e, e->be->ops->gemm(e->be, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc));
                for (int64_t i = 0; i < m; i++)
                    memcpy(got + i * n, C + i * ldc, sizeof(float) * (size_t)n);
                CHECK(err_vs_mag(got, ref, mag, (size_t)(m * n)) < 1e-6, "gemm %lldx%lldx%lld ta=%d tb=%d: %.3g",
                      (long long)m, (long long)n, (long long)k, ta, tb, err_vs_mag(got, ref, mag, (size_t)(m * n)));
                free(ref);
                free(mag);
                free(got);
                td_tensor_free(&a); td_tensor_free(&b); td_tensor_free(&c);
            }
}

int main(void)
{
    test_rng r = test_rng_seeded();
    ops_env e;
    if (ops_env_init(&e) < 0)
        return 1;
    test_linear_sizes(&e, &r);
    test_linear_rank3(&e, &r);
    test_linear_errors(&e, &r);
    test_gemm(&e, &r);
    ops_env_free(&e);
    return check_summary();
}
