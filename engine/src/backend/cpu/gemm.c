/*
 * Linear layers and the batched matmul, through OpenBLAS sgemm. A linear is
 * the matmul y = x w^T of one batch, plus its bias, so both run mm_run.
 *
 * f32 operands go to one sgemm call per batch as they are: threaded by
 * OpenBLAS from the caller thread, or, when there are at least as many
 * batches as threads, whole batches on the pool with single-threaded
 * sgemm (attention-like stacks of small products, which OpenBLAS would
 * not split well). bf16/f16 b is widened one tile at a time (at most
 * LINEAR_TILE floats per thread, reused) and each tile is one sgemm over
 * all M rows of every batch that uses it, so widening costs N*K
 * conversions per matrix of b however large M and B are, and no
 * whole-matrix f32 copy ever exists. There the pool splits N into one part
 * per thread and each part widens and multiplies its own tiles with
 * single-threaded sgemm (see cpu.h): no thread waits on another between
 * tiles, which measured 2-6 % faster than widening on the pool between
 * threaded sgemm calls.
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

/* One matmul in sgemm terms; the tile fields are the widened path's. */
typedef struct {
    td_matmul_dims d;
    const float *a;
    const void *b;
    td_dtype bdt;
    int trans_b;
    float alpha, beta;
    float *y;
    int64_t kb, nb, per;
    float *scratch;   /* one nb x kb tile per part */
} mm_args;

static void mm_f32_batches(void *arg, int64_t i0, int64_t i1)
{
    const mm_args *p = arg;
    const td_matmul_dims *d = &p->d;
    for (int64_t i = i0; i < i1; i++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, p->trans_b ? CblasTrans : CblasNoTrans, (int)d->m, (int)d->n,
                    (int)d->k, p->alpha, p->a + i * d->sa, (int)d->lda, (const float *)p->b + i * d->sb,
                    (int)d->ldb, p->beta, p->y + i * d->sy, (int)d->ldy);
}

/* Columns [n0, n0 + nt) x depth [k0, k0 + kt) of b's matrix bb, widened
 * into tile as it lies in b: [nt, kt] when trans_b, else [kt, nt]. Returns
 * the tile's row stride. */
static int64_t widen_b_tile(const mm_args *p, int64_t bb, int64_t n0, int64_t nt, int64_t k0, int64_t kt,
                            float *tile)
{
    size_t es = td_dtype_size(p->bdt);
    int64_t rows = p->trans_b ? nt : kt, cols = p->trans_b ? kt : nt;
    int64_t first = bb * p->d.sb + (p->trans_b ? n0 * p->d.ldb + k0 : k0 * p->d.ldb + n0);
    const unsigned char *src = (const unsigned char *)p->b + (size_t)first * es;
    for (int64_t r = 0; r < rows; r++)
        td_to_f32(p->bdt, src + (size_t)(r * p->d.ldb) * es, tile + r * cols, (size_t)cols);
    return cols;
}

/* Part t of a widened-b matmul: output columns [t*per, (t+1)*per), walked
 * in tiles of nb columns x kb depth, each widened into the part's own tile
 * and multiplied by a single-threaded sgemm over all M rows of each batch
 * that uses that matrix of b (all of them where b is shared). */
static void mm_widened_part(void *arg, int64_t t0, int64_t t1)
{
    const mm_args *p = arg;
    const td_matmul_dims *d = &p->d;
    int64_t nbb = d->sb ? d->batch : 1;
    for (int64_t t = t0; t < t1; t++) {
        float *tile = p->scratch + t * p->nb * p->kb;
        int64_t nend = (t + 1) * p->per < d->n ? (t + 1) * p->per : d->n;
        for (int64_t bb = 0; bb < nbb; bb++)
            for (int64_t n0 = t * p->per; n0 < nend; n0 += p->nb) {
                int64_t nt = nend - n0 < p->nb ? nend - n0 : p->nb;
                for (int64_t k0 = 0; k0 < d->k; k0 += p->kb) {
                    int64_t kt = d->k - k0 < p->kb ? d->k - k0 : p->kb;
                    int64_t ldt = widen_b_tile(p, bb, n0, nt, k0, kt, tile);
                    for (int64_t i = nbb > 1 ? bb : 0; i < (nbb > 1 ? bb + 1 : d->batch); i++)
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, p->trans_b ? CblasTrans : CblasNoTrans,
                                    (int)d->m, (int)nt, (int)kt, p->alpha, p->a + i * d->sa + k0, (int)d->lda,
                                    tile, (int)ldt, k0 ? 1.0f : p->beta, p->y + i * d->sy + n0, (int)d->ldy);
                }
            }
    }
}

/* y = beta * y where K = 0 (no products); beta 0 writes zeros over NaN. */
static void mm_scale_y(const mm_args *p)
{
    const td_matmul_dims *d = &p->d;
    for (int64_t i = 0; i < d->batch; i++)
        for (int64_t r = 0; r < d->m; r++) {
            float *row = p->y + i * d->sy + r * d->ldy;
            for (int64_t j = 0; j < d->n; j++)
                row[j] = p->beta == 0.0f ? 0.0f : p->beta * row[j];
        }
}

/* The checked matmul p (td_check_matmul's dims) on the CPU. */
static int mm_run(td_backend *be, mm_args *p)
{
    const td_matmul_dims *d = &p->d;
    int threads = td_cpu_of(be)->nthreads;

    if (d->batch == 0 || d->m == 0 || d->n == 0)
        return 0;
    if (d->k == 0) {
        mm_scale_y(p);
    } else if (p->bdt == TD_F32) {
        int per_batch = d->batch > 1 && d->batch >= threads;
        td_cpu_blas_threads(be, per_batch);
        if (per_batch)
            td_pool_for(td_cpu_pool(be), d->batch, 1, mm_f32_batches, p);
        else
            mm_f32_batches(p, 0, d->batch);
    } else {
        p->kb = d->k < LINEAR_KMAX ? d->k : LINEAR_KMAX;
        p->nb = LINEAR_TILE / p->kb;
        if (p->nb > 16)
            p->nb &= ~(int64_t)15;
        if (p->nb > d->n)
            p->nb = d->n;
        p->per = (d->n + threads - 1) / threads;
        p->scratch = td_cpu_scratch(be, (size_t)(threads * p->nb * p->kb));
        if (!p->scratch)
            return TD_ENOMEM;
        td_cpu_blas_threads(be, 1);
        td_pool_for(td_cpu_pool(be), threads, 1, mm_widened_part, p);
    }
    return 0;
}

int td_cpu_linear(td_backend *be, const td_tensor *x, const td_tensor *w,
                  const td_tensor *bias, td_tensor *y)
{
    static const char op[] = "linear";
    char a[96];
    int64_t n, k, m;
    mm_args p;

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
    p = (mm_args){ .d = { 1, m, n, k, k, k, n, 0, 0, 0 }, .a = x->data, .b = w->data, .bdt = w->dtype,
                   .trans_b = 1, .alpha = 1.0f, .beta = 0.0f, .y = y->data };
    TD_TRY(mm_run(be, &p));
    return add_bias(be, bias, y->data, m, n);
}

int td_cpu_matmul(td_backend *be, const td_tensor *a, const td_tensor *b, int trans_b, float alpha, float beta,
                  td_tensor *y)
{
    td_matmul_dims d;
    mm_args p;
    TD_TRY(td_check_matmul(be->ctx, be->act, a, b, trans_b, y, &d));
    p = (mm_args){ .d = d, .a = a->data, .b = b->data, .bdt = b->dtype, .trans_b = trans_b, .alpha = alpha,
                   .beta = beta, .y = y->data };
    return mm_run(be, &p);
}
