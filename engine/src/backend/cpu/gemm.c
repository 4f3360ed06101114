/*
 * Linear layers and the batched matmul, through OpenBLAS sgemm. A linear is
 * the matmul y = x w^T of one batch, plus its bias.
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
 * each thread one contiguous run of them. bf16/f16 weights (b) are widened
 * one band x K chunk at a time into the thread's own tile (LINEAR_BAND x
 * LINEAR_KMAX floats) and that widened tile serves every row tile of the
 * band the thread holds, so widening costs about N*K conversions per
 * matrix however large M is, and no whole-matrix f32 copy ever exists. A
 * batched matmul runs its batches one after the other, each cut the same
 * way.
 */
#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "amx.h"
#include "cpu.h"
#include "linear_amx.h"

#define LINEAR_KMAX 2048   /* K chunk of a widened tile: LINEAR_BAND x 2048 floats, 4 MB */
/* Fewer rows than this stay on sgemm on the AMX path: splitting and
 * packing w is a fixed cost per call (27-53 ms at the FFN's shapes with
 * fresh pages, bench/NOTES.md) that only enough rows repay. 128 is not
 * tuned: no shape between 7 and 4096 rows was timed. */
#define LINEAR_AMX_ROWS 128

int td_cpu_lin_supported(td_lin_path path)
{
    return path == TD_LIN_BLAS || (path == TD_LIN_AMX && td_amx_usable());
}

td_lin_path td_cpu_lin_best(td_isa cap)
{
    return cap >= TD_ISA_AMX && td_cpu_lin_supported(TD_LIN_AMX) ? TD_LIN_AMX : TD_LIN_BLAS;
}

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

/* One matmul in sgemm terms (td_check_matmul's dims) and, for a widened
 * b, its tiling. */
typedef struct {
    td_matmul_dims d;
    const float *a;
    const void *b;
    td_dtype bdt;
    int trans_b;
    float alpha, beta;
    float *y;
    tile_grid g;
    int64_t kb, batch;   /* K chunk; the batch being run */
    float *scratch;      /* one LINEAR_BAND x kb tile per part */
} mm_args;

/* Columns [n0, n0 + nt) x depth [k0, k0 + kt) of the current batch's
 * matrix of b, widened into tile as it lies in b: [nt, kt] when trans_b,
 * else [kt, nt]. Returns the tile's row stride. */
static int64_t widen_b_tile(const mm_args *p, int64_t n0, int64_t nt, int64_t k0, int64_t kt, float *tile)
{
    size_t es = td_dtype_size(p->bdt);
    int64_t rows = p->trans_b ? nt : kt, cols = p->trans_b ? kt : nt;
    int64_t first = p->batch * p->d.sb + (p->trans_b ? n0 * p->d.ldb + k0 : k0 * p->d.ldb + n0);
    const unsigned char *src = (const unsigned char *)p->b + (size_t)first * es;
    for (int64_t r = 0; r < rows; r++)
        td_to_f32(p->bdt, src + (size_t)(r * p->d.ldb) * es, tile + r * cols, (size_t)cols);
    return cols;
}

/* Part t of a widened-b product: for each column band it holds, each K
 * chunk of the band is widened once into the part's tile and multiplied
 * into every row tile of the band the part holds. */
static void widened_part(void *arg, int64_t t0, int64_t t1)
{
    const mm_args *p = arg;
    const td_matmul_dims *d = &p->d;
    const float *a = p->a + p->batch * d->sa;
    float *y = p->y + p->batch * d->sy;
    for (int64_t t = t0; t < t1; t++) {
        float *tile = p->scratch + t * LINEAR_BAND * p->kb;
        int64_t i0, i1, m0, mt, n0, nt;
        grid_part(&p->g, t, &i0, &i1);
        while (i0 < i1) {
            /* the run of row tiles [i0, band_end) shares one column band */
            int64_t band_end = (i0 / p->g.nmt + 1) * p->g.nmt;
            if (band_end > i1)
                band_end = i1;
            grid_tile(&p->g, i0, &m0, &mt, &n0, &nt);
            for (int64_t k0 = 0; k0 < d->k; k0 += p->kb) {
                int64_t kt = d->k - k0 < p->kb ? d->k - k0 : p->kb;
                int64_t ldt = widen_b_tile(p, n0, nt, k0, kt, tile);
                for (int64_t i = i0; i < band_end; i++) {
                    grid_tile(&p->g, i, &m0, &mt, &n0, &nt);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, p->trans_b ? CblasTrans : CblasNoTrans,
                                (int)mt, (int)nt, (int)kt, p->alpha, a + m0 * d->lda + k0, (int)d->lda,
                                tile, (int)ldt, k0 ? 1.0f : p->beta, y + m0 * d->ldy + n0, (int)d->ldy);
                }
            }
            i0 = band_end;
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

/* The grid and K chunk of an m x n x k product whose b is widened tile by
 * tile; returns its scratch floats, a LINEAR_BAND x kb tile per part. */
static size_t widened_plan(td_backend *be, int64_t m, int64_t n, int64_t k, tile_grid *g, int64_t *kb)
{
    *g = grid_of(be, m, n, cut_extent(m), LINEAR_BAND);
    *kb = k < LINEAR_KMAX ? k : LINEAR_KMAX;
    return (size_t)(g->parts * LINEAR_BAND * *kb);
}

/* The checked matmul p on the CPU, batch after batch. */
static int mm_run(td_backend *be, mm_args *p)
{
    const td_matmul_dims *d = &p->d;

    if (d->batch == 0 || d->m == 0 || d->n == 0)
        return 0;
    if (d->k == 0) {
        mm_scale_y(p);
        return 0;
    }
    if (p->bdt == TD_F32) {
        for (int64_t i = 0; i < d->batch; i++)
            td_cpu_sgemm(be, 0, p->trans_b, d->m, d->n, d->k, p->alpha, p->a + i * d->sa, d->lda,
                         (const float *)p->b + i * d->sb, d->ldb, p->beta, p->y + i * d->sy, d->ldy);
        return 0;
    }
    p->scratch = td_cpu_scratch(be, widened_plan(be, d->m, d->n, d->k, &p->g, &p->kb));
    if (!p->scratch)
        return TD_ENOMEM;
    td_cpu_blas_serial();
    for (p->batch = 0; p->batch < d->batch; p->batch++)
        td_pool_for(td_cpu_pool(be), p->g.parts, 1, widened_part, p);
    return 0;
}

/* Whether a linear of m rows, K = k, with weights of dtype wdt runs on AMX. */
static int on_amx(td_backend *be, td_dtype wdt, int64_t m, int64_t k)
{
    return td_cpu_of(be)->lin_path == TD_LIN_AMX && (wdt == TD_F32 || wdt == TD_BF16) &&
           m >= LINEAR_AMX_ROWS && k > 0;
}

size_t td_cpu_linear_workspace(td_backend *be, const td_tensor *x, const td_tensor *w)
{
    int64_t n = w->shape[0], k = w->shape[1], m = k ? td_numel(x) / k : 0, kb;
    tile_grid g;

    if (m == 0 || n == 0 || k == 0)
        return 0;
    if (on_amx(be, w->dtype, m, k))
        return td_cpu_scratch_size(td_cpu_linear_amx_bytes(td_cpu_of(be)->nthreads, m, n, k, w->dtype));
    if (w->dtype == TD_F32)
        return 0;
    return sizeof(float) * widened_plan(be, m, n, k, &g, &kb);
}

int td_cpu_linear(td_backend *be, const td_tensor *x, const td_tensor *w,
                  const td_tensor *bias, td_tensor *y)
{
    static const char op[] = "linear";
    char a[96];
    int64_t n, k, m;
    mm_args p;

    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_cpu_check_weight(be, op, "w", w));
    TD_TRY(td_check_act(be, op, "y", y));
    if (w->ndim != 2)
        return td_fail(be->ctx, TD_ESHAPE, "%s: w %s must be [N, K]", op, td_shape_str(w, a, sizeof(a)));
    n = w->shape[0];
    k = w->shape[1];
    TD_TRY(td_cpu_check_linear_io(be, op, x, "w", w, bias, y, &m));
    if (m == 0 || n == 0)
        return 0;
    if (on_amx(be, w->dtype, m, k)) {
        TD_TRY(td_cpu_linear_amx(be, x->data, k, w->data, w->dtype, k, m, n, k, y->data, n));
        return add_bias(be, bias, y->data, m, n);
    }
    p = (mm_args){ .d = { 1, m, n, k, k, k, n, 0, 0, 0 }, .a = x->data, .b = w->data, .bdt = w->dtype,
                   .trans_b = 1, .alpha = 1.0f, .beta = 0.0f, .y = y->data };
    TD_TRY(mm_run(be, &p));
    return add_bias(be, bias, y->data, m, n);
}

int td_cpu_linear_gelu_tanh(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *bias,
                            td_tensor *y)
{
    TD_TRY(td_cpu_linear(be, x, w, bias, y));
    return td_cpu_gelu_tanh(be, y, y);
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
