/*
 * Linear layers and the raw GEMM, through OpenBLAS sgemm.
 *
 * f32 weights go to one sgemm call as they are, threaded by OpenBLAS from
 * the caller thread. bf16/f16 weights are widened one tile of w at a time
 * (at most LINEAR_TILE floats per thread, reused) and each tile is one
 * sgemm over all M rows, so widening costs N*K conversions per call however
 * large M is, and no whole-matrix f32 copy ever exists. There the pool
 * splits N into one part per thread and each part widens and multiplies its
 * own tiles with single-threaded sgemm (see cpu.h): no thread waits on
 * another between tiles, which measured 2-6 % faster than widening on the
 * pool between threaded sgemm calls.
 */
#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

#define LINEAR_TILE ((int64_t)1 << 20)   /* floats of widened weight per tile */
#define LINEAR_KMAX 4096                 /* K split beyond this */

typedef struct {
    float *y;
    const float *bias;
    int64_t n;
} bias_args;

static void add_bias_rows(void *arg, int64_t r0, int64_t r1)
{
    const bias_args *a = arg;
    for (int64_t r = r0; r < r1; r++) {
        float *row = a->y + r * a->n;
        for (int64_t j = 0; j < a->n; j++)
            row[j] += a->bias[j];
    }
}

/* y[M, N] += bias[N] on the pool; bias may be NULL. */
static int add_bias(td_backend *be, const td_tensor *bias, float *y, int64_t m, int64_t n)
{
    float *owned;
    const float *b;
    bias_args a;

    if (!bias)
        return 0;
    b = td_cpu_vec_f32(be, bias, &owned);
    if (!b)
        return TD_ENOMEM;
    a = (bias_args){ y, b, n };
    td_pool_for(td_cpu_pool(be), m, 16, add_bias_rows, &a);
    free(owned);
    return 0;
}

typedef struct {
    const td_tensor *w;
    const float *x;
    float *y;
    int64_t m, n, k, kb, nb, per;
    float *scratch;   /* one nb x kb tile per part */
} lin_args;

/* Part t of a widened-weight linear: output columns [t*per, (t+1)*per),
 * walked in tiles of nb weight rows x kb columns, each widened into the
 * part's own tile and multiplied by a single-threaded sgemm over all M. */
static void linear_part(void *arg, int64_t t0, int64_t t1)
{
    const lin_args *a = arg;
    size_t es = td_dtype_size(a->w->dtype);
    for (int64_t t = t0; t < t1; t++) {
        float *tile = a->scratch + t * a->nb * a->kb;
        int64_t nend = (t + 1) * a->per < a->n ? (t + 1) * a->per : a->n;
        for (int64_t n0 = t * a->per; n0 < nend; n0 += a->nb) {
            int64_t nt = nend - n0 < a->nb ? nend - n0 : a->nb;
            for (int64_t k0 = 0; k0 < a->k; k0 += a->kb) {
                int64_t kt = a->k - k0 < a->kb ? a->k - k0 : a->kb;
                const unsigned char *src = (const unsigned char *)a->w->data + (size_t)(n0 * a->k + k0) * es;
                for (int64_t r = 0; r < nt; r++)
                    td_to_f32(a->w->dtype, src + (size_t)(r * a->k) * es, tile + r * kt, (size_t)kt);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)a->m, (int)nt, (int)kt,
                            1.0f, a->x + k0, (int)a->k, tile, (int)kt, k0 ? 1.0f : 0.0f,
                            a->y + n0, (int)a->n);
            }
        }
    }
}

int td_cpu_linear(td_backend *be, const td_tensor *x, const td_tensor *w,
                  const td_tensor *bias, td_tensor *y)
{
    static const char op[] = "linear";
    char a[96];
    int64_t n, k, m;
    const float *xd;
    float *yd;

    TD_TRY(td_cpu_check_act(be, op, "x", x));
    TD_TRY(td_cpu_check_weight(be, op, "w", w));
    TD_TRY(td_cpu_check_act(be, op, "y", y));
    if (w->ndim != 2)
        return td_fail(be->ctx, TD_ESHAPE, "%s: w %s must be [N, K]", op, td_shape_str(w, a, sizeof(a)));
    n = w->shape[0];
    k = w->shape[1];
    TD_TRY(td_cpu_check_linear_io(be, op, x, "w", w, bias, y, &m));
    if (m == 0 || n == 0)
        return 0;
    xd = x->data;
    yd = y->data;
    td_cpu_blas_threads(be, 0);
    if (k == 0) {
        memset(yd, 0, (size_t)(m * n) * sizeof(float));
    } else if (w->dtype == TD_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k,
                    1.0f, xd, (int)k, w->data, (int)k, 0.0f, yd, (int)n);
    } else {
        int parts = td_cpu_of(be)->nthreads;
        int64_t kb = k < LINEAR_KMAX ? k : LINEAR_KMAX, nb = LINEAR_TILE / kb;
        lin_args la;

        if (nb > 16)
            nb &= ~(int64_t)15;
        if (nb > n)
            nb = n;
        la = (lin_args){ w, xd, yd, m, n, k, kb, nb, (n + parts - 1) / parts, NULL };
        la.scratch = td_cpu_scratch(be, (size_t)(parts * nb * kb));
        if (!la.scratch)
            return TD_ENOMEM;
        td_cpu_blas_threads(be, 1);
        td_pool_for(td_cpu_pool(be), parts, 1, linear_part, &la);
    }
    return add_bias(be, bias, yd, m, n);
}

int td_cpu_gemm(td_backend *be, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                float beta, float *c, int64_t ldc)
{
    TD_TRY(td_check_gemm(be->ctx, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc));
    if (m == 0 || n == 0)
        return 0;
    if (k == 0) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return 0;
    }
    td_cpu_blas_threads(be, 0);
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
    return 0;
}
