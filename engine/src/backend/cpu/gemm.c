/*
 * Linear layers and the raw GEMM, through OpenBLAS sgemm.
 *
 * Every product is cut into tiles of C fixed by the shape alone (K whole
 * or, for widened weights, in fixed chunks) and each tile is one
 * single-threaded sgemm run by one pool worker. So each
 * element of C is summed by the same kernel in the same order however many
 * threads run, and results do not depend on the thread count (DESIGN.md).
 * OpenBLAS's own threading does not give that: it splits M and N by its
 * thread count, and its edge kernels sum in another order (a 17x33x9000
 * product differs between 1 and 2 threads), so it is never used.
 *
 * The tiles are numbered column band by column band and the pool gives
 * each thread one contiguous run of them. bf16/f16 weights are widened one
 * band x K chunk at a time into the thread's own tile (LINEAR_BAND x
 * LINEAR_KMAX floats) and that widened tile serves every row tile of the band the
 * thread holds, so widening costs about N*K conversions per call however
 * large M is, and no whole-matrix f32 copy ever exists.
 */
#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

#define LINEAR_KMAX 2048   /* K chunk of a widened tile: LINEAR_BAND x 2048 floats, 4 MB */

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

/* How a product is cut. Each tile makes sgemm pack the operand it shares
 * with the other tiles again, about 1/(2 x tile extent) floats per flop, so
 * tiles are long: a plain product is cut along one side only, into about
 * GEMM_TILES pieces of at least GEMM_MIN_EXTENT (1024-row tiles cost 2-4 %
 * single-threaded against one whole sgemm, where cutting both sides into
 * 256 x 512 cost 16 %). Widened weights come in bands of LINEAR_BAND
 * columns. */
#define GEMM_TILES 32
#define GEMM_MIN_EXTENT 512
#define LINEAR_BAND 512

typedef struct tile_grid {
    int64_t m, n, tm, tn, nmt, ntiles, parts;
} tile_grid;

/* Tiles of tm x tn (the last ones ragged), numbered column band by band. */
static tile_grid grid_of(td_backend *be, int64_t m, int64_t n, int64_t tm, int64_t tn)
{
    tile_grid g = { m, n, tm, tn, (m + tm - 1) / tm, 0, td_cpu_of(be)->nthreads };
    g.ntiles = g.nmt * ((n + tn - 1) / tn);
    if (g.parts > g.ntiles)
        g.parts = g.ntiles;
    return g;
}

/* The extent of a cut side: about len / GEMM_TILES, a multiple of 64, at
 * least GEMM_MIN_EXTENT (and never past len). */
static int64_t cut_extent(int64_t len)
{
    int64_t e = ((len + GEMM_TILES - 1) / GEMM_TILES + 63) & ~(int64_t)63;
    e = e < GEMM_MIN_EXTENT ? GEMM_MIN_EXTENT : e;
    return e < len ? e : len;
}

/* Part t's tiles [*i0, *i1): which thread runs a tile changes with the
 * count, what the tile is does not. */
static void grid_part(const tile_grid *g, int64_t t, int64_t *i0, int64_t *i1)
{
    *i0 = t * g->ntiles / g->parts;
    *i1 = (t + 1) * g->ntiles / g->parts;
}

/* Tile i: rows [*m0, *m0 + *mt), columns [*n0, *n0 + *nt). */
static void grid_tile(const tile_grid *g, int64_t i, int64_t *m0, int64_t *mt, int64_t *n0,
                      int64_t *nt)
{
    *n0 = i / g->nmt * g->tn;
    *m0 = i % g->nmt * g->tm;
    *mt = g->m - *m0 < g->tm ? g->m - *m0 : g->tm;
    *nt = g->n - *n0 < g->tn ? g->n - *n0 : g->tn;
}

typedef struct {
    tile_grid g;
    int trans_a, trans_b;
    int64_t k, lda, ldb, ldc;
    float alpha, beta;
    const float *a, *b;
    float *c;
} gemm_args;

static void gemm_part(void *arg, int64_t t0, int64_t t1)
{
    const gemm_args *a = arg;
    for (int64_t t = t0; t < t1; t++) {
        int64_t i0, i1, m0, mt, n0, nt;
        grid_part(&a->g, t, &i0, &i1);
        for (int64_t i = i0; i < i1; i++) {
            grid_tile(&a->g, i, &m0, &mt, &n0, &nt);
            cblas_sgemm(CblasRowMajor, a->trans_a ? CblasTrans : CblasNoTrans,
                        a->trans_b ? CblasTrans : CblasNoTrans, (int)mt, (int)nt, (int)a->k,
                        a->alpha, a->a + (a->trans_a ? m0 : m0 * a->lda), (int)a->lda,
                        a->b + (a->trans_b ? n0 * a->ldb : n0), (int)a->ldb, a->beta,
                        a->c + m0 * a->ldc + n0, (int)a->ldc);
        }
    }
}

void td_cpu_sgemm(td_backend *be, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                  float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                  float beta, float *c, int64_t ldc)
{
    /* Rows when there are enough for two tiles: cutting the columns makes
     * OpenBLAS repack a as often, but measured 5-10 % slower. */
    tile_grid g = m >= 2 * GEMM_MIN_EXTENT ? grid_of(be, m, n, cut_extent(m), n)
                                           : grid_of(be, m, n, m, cut_extent(n));
    gemm_args ga = { g, trans_a, trans_b, k, lda, ldb, ldc, alpha, beta, a, b, c };
    td_cpu_blas_serial();
    td_pool_for(td_cpu_pool(be), ga.g.parts, 1, gemm_part, &ga);
}

typedef struct {
    tile_grid g;
    const td_tensor *w;
    const float *x;
    float *y;
    int64_t k, kb;
    float *scratch;   /* one LINEAR_BAND x kb tile per part */
} lin_args;

/* Part t of a widened-weight linear: for each column band it holds, each K
 * chunk of the band is widened once into the part's tile and multiplied
 * into every row tile of the band the part holds. */
static void linear_part(void *arg, int64_t t0, int64_t t1)
{
    const lin_args *a = arg;
    size_t es = td_dtype_size(a->w->dtype);
    for (int64_t t = t0; t < t1; t++) {
        float *tile = a->scratch + t * LINEAR_BAND * a->kb;
        int64_t i0, i1, m0, mt, n0, nt;
        grid_part(&a->g, t, &i0, &i1);
        while (i0 < i1) {
            /* the run of row tiles [i0, band_end) shares one column band */
            int64_t band_end = (i0 / a->g.nmt + 1) * a->g.nmt;
            if (band_end > i1)
                band_end = i1;
            grid_tile(&a->g, i0, &m0, &mt, &n0, &nt);
            for (int64_t k0 = 0; k0 < a->k; k0 += a->kb) {
                int64_t kt = a->k - k0 < a->kb ? a->k - k0 : a->kb;
                const unsigned char *src = (const unsigned char *)a->w->data + (size_t)(n0 * a->k + k0) * es;
                for (int64_t r = 0; r < nt; r++)
                    td_to_f32(a->w->dtype, src + (size_t)(r * a->k) * es, tile + r * kt, (size_t)kt);
                for (int64_t i = i0; i < band_end; i++) {
                    grid_tile(&a->g, i, &m0, &mt, &n0, &nt);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mt, (int)nt, (int)kt,
                                1.0f, a->x + m0 * a->k + k0, (int)a->k, tile, (int)kt,
                                k0 ? 1.0f : 0.0f, a->y + m0 * a->g.n + n0, (int)a->g.n);
                }
            }
            i0 = band_end;
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
    if (k == 0) {
        memset(yd, 0, (size_t)(m * n) * sizeof(float));
    } else if (w->dtype == TD_F32) {
        td_cpu_sgemm(be, 0, 1, m, n, k, 1.0f, xd, k, w->data, k, 0.0f, yd, n);
    } else {
        lin_args la = { grid_of(be, m, n, cut_extent(m), LINEAR_BAND), w, xd, yd, k,
                        k < LINEAR_KMAX ? k : LINEAR_KMAX, NULL };
        la.scratch = td_cpu_scratch(be, (size_t)(la.g.parts * LINEAR_BAND * la.kb));
        if (!la.scratch)
            return TD_ENOMEM;
        td_cpu_blas_serial();
        td_pool_for(td_cpu_pool(be), la.g.parts, 1, linear_part, &la);
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
    td_cpu_sgemm(be, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return 0;
}
