/* W8A8 linear: activation quantization bit-exact against the definition
 * (128x128 blocks, amax floored at 1e-8, x * (128/amax) rounded half to
 * even, saturated to [-128, 127], scale amax/128), the output against a
 * double evaluation of the same blocked sum, ragged M/N/K, on every block
 * product path this CPU runs (widen + sgemm, AVX-VNNI, AVX512-VNNI), and
 * the paths' outputs bit for bit the same; plus errors. */
#include "ops_common.h"
#include "backend/cpu/cpu.h"

/* The definition, written independently of w8a8.c. */
static void ref_quant(const float *x, int64_t m, int64_t k, int8_t *q, float *s)
{
    int64_t nkb = (k + 127) / 128;
    for (int64_t bm = 0; bm * 128 < m; bm++)
        for (int64_t bk = 0; bk < nkb; bk++) {
            float amax = 1e-8f;
            for (int64_t i = bm * 128; i < m && i < bm * 128 + 128; i++)
                for (int64_t j = bk * 128; j < k && j < bk * 128 + 128; j++)
                    if (fabsf(x[i * k + j]) > amax)
                        amax = fabsf(x[i * k + j]);
            s[bm * nkb + bk] = amax / 128.0f;
            for (int64_t i = bm * 128; i < m && i < bm * 128 + 128; i++)
                for (int64_t j = bk * 128; j < k && j < bk * 128 + 128; j++) {
                    float v = x[i * k + j] * (128.0f / amax);
                    double f = floor(v), rd = v - f;
                    double n = rd > 0.5 ? f + 1 : rd < 0.5 ? f : (fmod(f, 2.0) == 0 ? f : f + 1);
                    q[i * k + j] = (int8_t)(n > 127 ? 127 : n < -128 ? -128 : n);
                }
        }
}

static void test_ties(void)
{
    /* amax 128 makes the multiplier exactly 1: ties and saturation show */
    float x[8] = { 0.5f, 1.5f, 2.5f, -0.5f, -2.5f, 128.0f, -128.0f, 126.5f };
    int8_t want[8] = { 0, 2, 2, 0, -2, 127, -128, 126 }, q[8];
    float s;
    td_cpu_w8a8_quantize(NULL, x, 1, 8, q, &s);
    for (int i = 0; i < 8; i++)
        CHECK(q[i] == want[i], "quantize(%g) = %d, want %d", x[i], q[i], want[i]);
    CHECK(s == 1.0f, "scale %g, want 1", s);
    /* an all-zero block keeps the 1e-8 floor */
    x[0] = 0.0f;
    td_cpu_w8a8_quantize(NULL, x, 1, 1, q, &s);
    CHECK(q[0] == 0 && s == 1e-8f / 128.0f, "zero block: q %d scale %g", q[0], s);
}

static void one(ops_env *e, test_rng *r, int64_t m, int64_t k, int64_t n, int with_bias)
{
    int64_t nkb = (k + 127) / 128, nmb = (m + 127) / 128, nnb = (n + 127) / 128;
    int64_t xs[2] = { m, k }, ws[2] = { n, k }, ss[2] = { nnb, nkb }, ys[2] = { m, n }, bs[1] = { n };
    td_tensor x = rand_tensor(e, r, 2, xs, 3.0f), y = zero_tensor(e, TD_F32, 2, ys);
    td_tensor wq = zero_tensor(e, TD_I8, 2, ws), wsc = rand_tensor(e, r, 2, ss, 0.01f);
    td_tensor b = rand_tensor(e, r, 1, bs, 1.0f), bn = narrowed(e, &b, TD_BF16);
    int8_t *q = malloc((size_t)(m * k)), *qr = malloc((size_t)(m * k)), *W = wq.data;
    float *s = malloc(sizeof(float) * (size_t)(nmb * nkb)), *sr = malloc(sizeof(float) * (size_t)(nmb * nkb));
    const float *WS = wsc.data, *B = b.data;
    double *ref = malloc(sizeof(double) * (size_t)(m * n)), *mag = malloc(sizeof(double) * (size_t)(m * n));
    int bad = 0;

    for (int64_t i = 0; i < n * k; i++)
        W[i] = (int8_t)(test_next(r) & 0xff);
    for (int64_t i = 0; i < nnb * nkb; i++)
        ((float *)wsc.data)[i] = fabsf(((float *)wsc.data)[i]) + 1e-4f;
    /* one block with a single outlier: its other entries quantize coarsely */
    ((float *)x.data)[0] = 100.0f;
    ref_quant(x.data, m, k, qr, sr);
    td_cpu_w8a8_quantize(e->ctx.pool, x.data, m, k, q, s);
    bad = memcmp(q, qr, (size_t)(m * k)) != 0 || memcmp(s, sr, sizeof(float) * (size_t)(nmb * nkb)) != 0;
    CHECK(!bad, "quantization of %lldx%lld differs from the definition", (long long)m, (long long)k);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double acc = with_bias ? B[j] : 0.0, am = fabs(acc);
            for (int64_t kb = 0; kb < nkb; kb++) {
                int64_t dot = 0;
                double t;
                for (int64_t c = kb * 128; c < k && c < kb * 128 + 128; c++)
                    dot += (int64_t)qr[i * k + c] * W[j * k + c];
                t = (double)dot * sr[(i / 128) * nkb + kb] * WS[(j / 128) * nkb + kb];
                acc += t;
                am += fabs(t);
            }
            ref[i * n + j] = acc;
            mag[i * n + j] = am;
        }
    CHECK_OK(e, e->be->ops->linear_w8a8(e->be, &x, &wq, &wsc, with_bias ? &bn : NULL, &y));
    /* the integer block sums are exact: only the f32 rescale-and-add of
     * ceil(K/128) terms remains, so the bound is a few ulps of their sum */
    CHECK(err_vs_mag(y.data, ref, mag, (size_t)(m * n)) < 2e-7, "w8a8 m=%lld k=%lld n=%lld: %.3g",
          (long long)m, (long long)k, (long long)n, err_vs_mag(y.data, ref, mag, (size_t)(m * n)));
    free(mag);
    free(q); free(qr); free(s); free(sr); free(ref);
    td_tensor_free(&x); td_tensor_free(&y); td_tensor_free(&wq); td_tensor_free(&wsc);
    td_tensor_free(&b); td_tensor_free(&bn);
}

static void test_errors(ops_env *e, test_rng *r)
{
    int64_t xs[2] = { 4, 130 }, ws[2] = { 6, 130 }, ss[2] = { 1, 2 }, sb[2] = { 1, 1 }, ys[2] = { 4, 6 };
    td_tensor x = rand_tensor(e, r, 2, xs, 1.0f), wq = zero_tensor(e, TD_I8, 2, ws);
    td_tensor wf = rand_tensor(e, r, 2, ws, 1.0f), s = rand_tensor(e, r, 2, ss, 1.0f);
    td_tensor s1 = rand_tensor(e, r, 2, sb, 1.0f), y = zero_tensor(e, TD_F32, 2, ys);
    const td_backend_ops *o = e->be->ops;
    CHECK_OK(e, o->linear_w8a8(e->be, &x, &wq, &s, NULL, &y));
    CHECK_FAILS(e, o->linear_w8a8(e->be, &x, &wf, &s, NULL, &y), TD_EINVAL, "linear_w8a8");
    CHECK_FAILS(e, o->linear_w8a8(e->be, &x, &wq, &s1, NULL, &y), TD_ESHAPE, "linear_w8a8");
    CHECK_FAILS(e, o->linear_w8a8(e->be, &x, &wq, &s, NULL, &x), TD_ESHAPE, "linear_w8a8");
    CHECK_FAILS(e, o->linear_w8a8(e->be, &x, &wq, NULL, NULL, &y), TD_ESHAPE, "linear_w8a8");
    td_tensor_free(&x); td_tensor_free(&wq); td_tensor_free(&wf); td_tensor_free(&s);
    td_tensor_free(&s1); td_tensor_free(&y);
}

static const char *path_name(td_w8_path p)
{
    return p == TD_W8_SGEMM ? "sgemm" : p == TD_W8_AVXVNNI ? "avx-vnni" : "avx512-vnni";
}

/* Every int8 path gives the sgemm path's bits: random weights over the
 * whole int8 range, activations with outliers (so blocks saturate at -128
 * and 127), ragged M (micro-tile rows), N (panel columns) and K (the
 * kernels' 4-byte step and the last 128 block). */
static void test_paths_agree(ops_env *e, test_rng *r)
{
    static const int64_t shapes[][3] = {
        { 1, 1, 1 }, { 7, 3, 5 }, { 13, 129, 33 }, { 9, 515, 47 }, { 130, 256, 259 },
        { 600, 300, 700 }, { 517, 1538, 96 },
    };
    td_cpu *c = td_cpu_of(e->be);
    int ran = 0;

    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        int64_t m = shapes[i][0], k = shapes[i][1], n = shapes[i][2];
        int64_t xs[2] = { m, k }, ws[2] = { n, k }, ys[2] = { m, n };
        int64_t ss[2] = { (n + 127) / 128, (k + 127) / 128 }, bs[1] = { n };
        td_tensor x = rand_tensor(e, r, 2, xs, 3.0f), wq = zero_tensor(e, TD_I8, 2, ws);
        td_tensor wsc = rand_tensor(e, r, 2, ss, 0.01f), b = rand_tensor(e, r, 1, bs, 1.0f);
        td_tensor ref = zero_tensor(e, TD_F32, 2, ys), y = zero_tensor(e, TD_F32, 2, ys);

        for (int64_t j = 0; j < n * k; j++)
            ((int8_t *)wq.data)[j] = (int8_t)(test_next(r) & 0xff);
        for (int64_t j = 0; j < m * k; j += 97)
            ((float *)x.data)[j] = (j & 1 ? -1 : 1) * 50.0f;
        c->w8a8_path = TD_W8_SGEMM;
        CHECK_OK(e, e->be->ops->linear_w8a8(e->be, &x, &wq, &wsc, &b, &ref));
        for (td_w8_path p = TD_W8_AVXVNNI; p <= TD_W8_AVX512VNNI; p++) {
            if (!td_cpu_w8a8_supported(p))
                continue;
            c->w8a8_path = p;
            memset(y.data, 0xff, td_nbytes(&y));
            CHECK_OK(e, e->be->ops->linear_w8a8(e->be, &x, &wq, &wsc, &b, &y));
            CHECK(!memcmp(y.data, ref.data, td_nbytes(&y)), "w8a8 %s differs from sgemm at %lldx%lldx%lld",
                  path_name(p), (long long)m, (long long)k, (long long)n);
            ran |= 1 << p;
        }
        td_tensor_free(&x); td_tensor_free(&wq); td_tensor_free(&wsc); td_tensor_free(&b);
        td_tensor_free(&ref); td_tensor_free(&y);
    }
    c->w8a8_path = td_cpu_w8a8_best(TD_ISA_AMX);
    printf("w8a8 paths compared with sgemm:%s%s (best here: %s)\n",
           ran & (1 << TD_W8_AVXVNNI) ? " avx-vnni" : "", ran & (1 << TD_W8_AVX512VNNI) ? " avx512-vnni" : "",
           path_name(c->w8a8_path));
}

int main(void)
{
    static const int64_t ms[] = { 1, 7, 130, 257 }, ks[] = { 1, 3, 129, 300 }, ns[] = { 1, 5, 131, 259 };
    test_rng r = test_rng_seeded();
    ops_env e;
    if (ops_env_init(&e) < 0)
        return 1;
    test_ties();
    for (td_w8_path p = TD_W8_SGEMM; p <= TD_W8_AVX512VNNI; p++) {
        if (!td_cpu_w8a8_supported(p))
            continue;
        td_cpu_of(e.be)->w8a8_path = p;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 4; l++)
                    one(&e, &r, ms[i], ks[j], ns[l], (i + j + l) % 2);
        one(&e, &r, 600, 256, 700, 1);   /* several row bands and weight tiles */
    }
    test_paths_agree(&e, &r);
    test_errors(&e, &r);
    ops_env_free(&e);
    return check_summary();
}
