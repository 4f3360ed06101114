/*
 * Linear layers and the raw GEMM, through OpenBLAS sgemm.
 *
 * f32 weights go to sgemm as they are. bf16/f16 weights are widened one
 * tile of w at a time (at most LINEAR_TILE floats, a few MB, reused) and
 * each tile is one sgemm over all M rows, so widening costs N*K conversions
 * per call however large M is, and no whole-matrix f32 copy ever exists.
 * sgemm runs on the caller thread with OpenBLAS's own threads (see cpu.h);
 * the pool widens the tiles between the sgemm calls.
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

int td_cpu_linear(td_backend *be, const td_tensor *x, const td_tensor *w,
                  const td_tensor *bias, td_tensor *y)
{
    static const char op[] = "linear";
    char a[96], b[96], c[96];
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
    m = k ? td_numel(x) / k : 0;
    if (td_cpu_lastdim(x) != k || td_cpu_lastdim(y) != n || x->ndim < 1 || y->ndim < 1 ||
        td_numel(y) != m * n)
        return td_fail(be->ctx, TD_ESHAPE, "%s: x %s, w %s and y %s do not fit (y[M, N] = x[M, K] w[N, K]^T)",
                       op, td_shape_str(x, a, sizeof(a)), td_shape_str(w, b, sizeof(b)),
                       td_shape_str(y, c, sizeof(c)));
    if (bias)
        TD_TRY(td_cpu_check_vec(be, op, "bias", bias, n));
    if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX)
        return td_fail(be->ctx, TD_EINVAL, "%s: x %s is past sgemm's 32-bit sizes", op,
                       td_shape_str(x, a, sizeof(a)));
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
        int64_t kb = k < LINEAR_KMAX ? k : LINEAR_KMAX;
        int64_t nb = LINEAR_TILE / kb;
        size_t es = td_dtype_size(w->dtype);
        float *tile;

        if (nb > 16)
            nb &= ~(int64_t)15;
        if (nb > n)
            nb = n;
        tile = td_cpu_scratch(be, (size_t)(nb * kb));
        if (!tile)
            return TD_ENOMEM;
        for (int64_t n0 = 0; n0 < n; n0 += nb) {
            int64_t nt = n - n0 < nb ? n - n0 : nb;
            for (int64_t k0 = 0; k0 < k; k0 += kb) {
                int64_t kt = k - k0 < kb ? k - k0 : kb;
                td_cpu_widen_tile(be, w->dtype, (const unsigned char *)w->data + (size_t)(n0 * k + k0) * es,
                                  k, nt, kt, tile);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nt, (int)kt,
                            1.0f, xd + k0, (int)k, tile, (int)kt, k0 ? 1.0f : 0.0f, yd + n0, (int)n);
            }
        }
    }
    return add_bias(be, bias, yd, m, n);
}

int td_cpu_gemm(td_backend *be, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                float beta, float *c, int64_t ldc)
{
    int64_t acols = trans_a ? m : k, bcols = trans_b ? k : n;

    if (m < 0 || n < 0 || k < 0 || m > INT32_MAX || n > INT32_MAX || k > INT32_MAX)
        return td_fail(be->ctx, TD_EINVAL, "gemm: bad sizes m=%lld n=%lld k=%lld",
                       (long long)m, (long long)n, (long long)k);
    if (lda < (acols > 1 ? acols : 1) || ldb < (bcols > 1 ? bcols : 1) || ldc < (n > 1 ? n : 1) ||
        lda > INT32_MAX || ldb > INT32_MAX || ldc > INT32_MAX)
        return td_fail(be->ctx, TD_EINVAL,
                       "gemm: leading dims lda=%lld ldb=%lld ldc=%lld too small for m=%lld n=%lld k=%lld",
                       (long long)lda, (long long)ldb, (long long)ldc,
                       (long long)m, (long long)n, (long long)k);
    if (m == 0 || n == 0)
        return 0;
    if ((k > 0 && (!a || !b)) || !c)
        return td_fail(be->ctx, TD_EINVAL, "gemm: NULL matrix");
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
