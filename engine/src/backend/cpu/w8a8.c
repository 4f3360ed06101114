/*
 * TurboDiffusion's W8A8 linear: int8 weights and activations, one f32 scale
 * per 128x128 block of each.
 *
 * What TurboDiffusion does (thu-ml/TurboDiffusion, turbodiffusion/ops/):
 *  - quant/quant_hip.hpp (the CUDA quant kernel, hipified): per 128x128
 *    block of x[M, K], amax = max(1e-8, max |x|); q = x * (128.f / amax)
 *    converted by cutlass NumericConverter<int8_t, float, round_to_nearest>,
 *    i.e. PTX cvt.rni.sat.s8.f32: round half to even, saturate to
 *    [-128, 127] (so x == amax becomes 127). The stored scale is amax / 128.
 *  - common/store_hip.hpp: the scale of block (bm, bk) sits at
 *    scale[bm * ceil(K/128) + bk], i.e. a row-major [ceil(M/128),
 *    ceil(K/128)] tensor; core.py's Int8Linear holds weights the same way:
 *    int8_weight[N, K] and scale[ceil(N/128), ceil(K/128)] f32.
 *  - gemm/kernel_hip.hpp: int8 x int8 products are accumulated in int32 over
 *    one 128-wide K block, then added to an f32 accumulator as
 *    (float)acc_i32 * (xscale * wscale); bias is added after (core.py).
 *
 * How we run it on a CPU: where it has int8 dot-product units (AVX-VNNI,
 * AVX512-VNNI), the block products are int32 sums of int8 products there
 * (w8a8_vnni.c). Elsewhere they are computed exactly by sgemm on the int8
 * values held as floats: every product is an integer of magnitude
 * <= 128 * 128 and a 128-term sum stays below 2^21 < 2^24, so every partial
 * sum is exact in f32 whatever order BLAS adds them in. Both give the int32
 * accumulator bit for bit, converted to float and rescaled by the same
 * operations, so the two paths' outputs have the same bits.
 */
#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "cpu_math.h"

#define QB 128              /* quantization block edge */
#define W8_MT (4 * QB)      /* activation rows quantized per pass */
#define W8_NT (2 * QB)      /* weight rows per task tile */

/* Round half to even and saturate, as cvt.rni.sat.s8.f32. Clamping first
 * keeps |v| far below 2^22, where adding and removing 1.5 * 2^23 rounds to
 * an integer in the default (nearest-even) mode: a branch-free form the
 * compiler vectorises, unlike rintf without SSE4.1. */
static inline float quant_one(float v, float mult)
{
    const float magic = 12582912.0f;   /* 1.5 * 2^23 */
    float r = v * mult;
    r = r < -128.0f ? -128.0f : r > 127.0f ? 127.0f : r;
    return (r + magic) - magic;
}

typedef struct {
    const float *x;
    int64_t rows, k, nkb;
    int8_t *q;          /* int8 out, row stride k (or NULL) */
    float *qf;          /* the same values as floats, row stride k (or NULL) */
    uint8_t *qu;        /* the same values + 128, row stride ldu >= k (or NULL) */
    int64_t ldu;
    float *scale;       /* [ceil(rows/128), nkb] */
} quant_args;

/* One task per 128x128 block of the row band. */
static void quant_blocks(void *arg, int64_t b0, int64_t b1)
{
    const quant_args *a = arg;
    for (int64_t b = b0; b < b1; b++) {
        int64_t bm = b / a->nkb, bk = b % a->nkb;
        int64_t r0 = bm * QB, r1 = r0 + QB < a->rows ? r0 + QB : a->rows;
        int64_t c0 = bk * QB, c1 = c0 + QB < a->k ? c0 + QB : a->k;
        float amax = 1e-8f, mult;

        for (int64_t r = r0; r < r1; r++)
            amax = td_maxf(amax, td_row_absmax(a->x + r * a->k + c0, c1 - c0));
        mult = 128.0f / amax;
        a->scale[bm * a->nkb + bk] = amax / 128.0f;
        for (int64_t r = r0; r < r1; r++) {
            const float *x = a->x + r * a->k;
            if (a->q)
                for (int64_t c = c0; c < c1; c++)
                    a->q[r * a->k + c] = (int8_t)quant_one(x[c], mult);
            if (a->qf)
                for (int64_t c = c0; c < c1; c++)
                    a->qf[r * a->k + c] = quant_one(x[c], mult);
            if (a->qu) {
                for (int64_t c = c0; c < c1; c++)
                    a->qu[r * a->ldu + c] = (uint8_t)((int)quant_one(x[c], mult) + 128);
                if (c1 == a->k)   /* the row's padding: zero (+ 128), read against zero weights */
                    memset(a->qu + r * a->ldu + c1, 128, (size_t)(a->ldu - c1));
            }
        }
    }
}

static void quantize(td_pool *pool, quant_args *a)
{
    int64_t nmb = (a->rows + QB - 1) / QB;
    a->nkb = (a->k + QB - 1) / QB;
    td_pool_for(pool, nmb * a->nkb, 1, quant_blocks, a);
}

void td_cpu_w8a8_quantize(td_pool *pool, const float *x, int64_t m, int64_t k,
                          int8_t *q, float *scale)
{
    quant_args a = { .x = x, .rows = m, .k = k, .q = q, .scale = scale };
    quantize(pool, &a);
}

/* One band of rows against weight tiles of W8_NT rows: each pool task
 * works on its own weight tile, per K block computes the int32 products
 * (sgemm on widened values, or int8 kernels on packed ones) and rescales
 * into y, so a task needs no other thread (see cpu.h). */
typedef struct {
    const float *xqf, *xs, *ws;   /* band activations as floats, band scales, all wscale */
    const uint8_t *xqu;           /* or band activations + 128, row stride ldu */
    const int8_t *w;
    float *y;                     /* y + m0 * n */
    int64_t mt, n, k, nkb, ldu;
    td_w8_kernel kern;
    atomic_int failed;
} band_args;

static void band_tiles(void *arg, int64_t t0, int64_t t1)
{
    band_args *a = arg;
    float *wf = malloc(sizeof(float) * (size_t)(W8_NT * QB + a->mt * W8_NT)), *p;
    if (!wf) {
        atomic_store(&a->failed, 1);
        return;
    }
    p = wf + W8_NT * QB;
    for (int64_t t = t0; t < t1; t++) {
        int64_t n0 = t * W8_NT, nt = a->n - n0 < W8_NT ? a->n - n0 : W8_NT;
        for (int64_t kb = 0; kb < a->nkb; kb++) {
            int64_t k0 = kb * QB, kt = a->k - k0 < QB ? a->k - k0 : QB;
            for (int64_t r = 0; r < nt; r++)
                for (int64_t c = 0; c < kt; c++)
                    wf[r * kt + c] = a->w[(n0 + r) * a->k + k0 + c];
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)a->mt, (int)nt, (int)kt,
                        1.0f, a->xqf + k0, (int)a->k, wf, (int)kt, 0.0f, p, (int)nt);
            for (int64_t r = 0; r < a->mt; r++) {
                float xs = a->xs[(r / QB) * a->nkb + kb];
                const float *pr = p + r * nt;
                float *y = a->y + r * a->n + n0;
                for (int64_t j = 0; j < nt; j++) {
                    float sc = xs * a->ws[((n0 + j) / QB) * a->nkb + kb];
                    y[j] = kb ? y[j] + pr[j] * sc : pr[j] * sc;
                }
            }
        }
    }
    free(wf);
}

/* Columns [c0, c0 + kern.nr) of the tile, K block [k0, k0 + kt), packed as
 * the kernel reads them ([kq][nr][4], zero past kt and past n), with each
 * column's -128 * weight sum in corr. */
static void pack_panel(const band_args *a, int64_t c0, int64_t k0, int64_t kt,
                       int8_t *dst, int32_t *corr)
{
    int nr = a->kern.nr;
    int64_t kq = (kt + 3) / 4, full = kt / 4;

    for (int j = 0; j < nr; j++) {
        const int8_t *w = a->w + (c0 + j) * a->k + k0;
        int8_t *d = dst + j * 4;
        int32_t sum = 0;
        if (c0 + j >= a->n) {
            for (int64_t q = 0; q < kq; q++)
                memset(d + q * nr * 4, 0, 4);
            corr[j] = 0;
            continue;
        }
        for (int64_t c = 0; c < kt; c++)
            sum += w[c];
        for (int64_t q = 0; q < full; q++)
            memcpy(d + q * nr * 4, w + q * 4, 4);
        if (full < kq) {   /* the block's last 1-3 weights, zero after */
            memset(d + full * nr * 4, 0, 4);
            memcpy(d + full * nr * 4, w + full * 4, (size_t)(kt - full * 4));
        }
        corr[j] = -128 * sum;
    }
}

static void vnni_tiles(void *arg, int64_t t0, int64_t t1)
{
    band_args *a = arg;
    int nr = a->kern.nr, mr = a->kern.mr;
    int8_t *wp = malloc((size_t)(W8_NT * QB) + sizeof(int32_t) * W8_NT);
    int32_t *corr = (int32_t *)(wp + W8_NT * QB);
    float sc[16];

    if (!wp) {
        atomic_store(&a->failed, 1);
        return;
    }
    for (int64_t t = t0; t < t1; t++) {
        int64_t n0 = t * W8_NT, nt = a->n - n0 < W8_NT ? a->n - n0 : W8_NT;
        int64_t npan = (nt + nr - 1) / nr;
        for (int64_t kb = 0; kb < a->nkb; kb++) {
            int64_t k0 = kb * QB, kt = a->k - k0 < QB ? a->k - k0 : QB, kq = (kt + 3) / 4;
            for (int64_t p = 0; p < npan; p++)
                pack_panel(a, n0 + p * nr, k0, kt, wp + p * kq * nr * 4, corr + p * nr);
            for (int64_t r0 = 0; r0 < a->mt; r0 += mr) {
                td_w8_tile tl = { .x = a->xqu + r0 * a->ldu + k0, .ldx = a->ldu, .kq = kq,
                                  .sc = sc, .ldy = a->n, .first = kb == 0,
                                  .rows = (int)(a->mt - r0 < mr ? a->mt - r0 : mr) };
                for (int64_t p = 0; p < npan; p++) {
                    int64_t c0 = n0 + p * nr;
                    float ws = a->ws[(c0 / QB) * a->nkb + kb];
                    for (int r = 0; r < tl.rows; r++)
                        sc[r] = a->xs[((r0 + r) / QB) * a->nkb + kb] * ws;
                    tl.w = wp + p * kq * nr * 4;
                    tl.corr = corr + p * nr;
                    tl.y = a->y + r0 * a->n + c0;
                    tl.cols = (int)(n0 + nt - c0 < nr ? n0 + nt - c0 : nr);
                    a->kern.run(&tl);
                }
            }
        }
    }
    free(wp);
}

typedef struct {
    float *y;
    const float *bias;
    int64_t n;
} w8_bias_args;

static void w8_bias_rows(void *arg, int64_t r0, int64_t r1)
{
    const w8_bias_args *a = arg;
    for (int64_t r = r0; r < r1; r++)
        for (int64_t j = 0; j < a->n; j++)
            a->y[r * a->n + j] += a->bias[j];
}

/* Scratch floats of the int8 bands: the pass's activation scales, then its
 * rows quantized + 128, padded to a multiple of 4 bytes (the kernel's K
 * step); of the sgemm bands: the rows quantized into floats, then the
 * scales. *nxs: the floats before the second part. */
static size_t bands_floats(td_w8_path path, int64_t m, int64_t k, size_t *nxs)
{
    int64_t mt_max = m < W8_MT ? m : W8_MT, nkb = (k + QB - 1) / QB, ldu = (k + 3) / 4 * 4;
    size_t scales = (size_t)(((mt_max + QB - 1) / QB) * nkb);

    if (path == TD_W8_SGEMM) {
        *nxs = (size_t)(mt_max * k);
        return *nxs + scales;
    }
    *nxs = scales;
    return scales + (size_t)(mt_max * ldu + 3) / 4;
}

size_t td_cpu_linear_w8a8_workspace(td_backend *be, const td_tensor *x, const td_tensor *wq)
{
    int64_t k = wq->shape[1], m = k ? td_numel(x) / k : 0;
    size_t nxs;
    return m && wq->shape[0] ? sizeof(float) * bands_floats(td_cpu_of(be)->w8a8_path, m, k, &nxs) : 0;
}

/* The bands on the int8 kernels. */
static int run_int8(td_backend *be, const td_tensor *x, float *y, band_args *ba, int64_t m)
{
    td_pool *pool = td_cpu_pool(be);
    int64_t k = ba->k, ldu = (k + 3) / 4 * 4;
    size_t nxs;
    float *scr = td_cpu_scratch(be, bands_floats(td_cpu_of(be)->w8a8_path, m, k, &nxs));

    if (!scr)
        return TD_ENOMEM;
    ba->xs = scr;
    ba->xqu = (uint8_t *)(scr + nxs);
    ba->ldu = ldu;
    ba->kern = td_w8_kernel_of(td_cpu_of(be)->w8a8_path);
    for (int64_t m0 = 0; m0 < m && !atomic_load(&ba->failed); m0 += W8_MT) {
        quant_args qa = { .x = (const float *)x->data + m0 * k, .k = k,
                          .qu = (uint8_t *)ba->xqu, .ldu = ldu, .scale = scr };
        ba->mt = qa.rows = m - m0 < W8_MT ? m - m0 : W8_MT;
        ba->y = y + m0 * ba->n;
        quantize(pool, &qa);
        td_pool_for(pool, (ba->n + W8_NT - 1) / W8_NT, 1, vnni_tiles, ba);
    }
    return 0;
}

/* The bands on sgemm: activations quantized into floats, weights widened
 * per tile. */
static int run_sgemm(td_backend *be, const td_tensor *x, float *y, band_args *ba, int64_t m)
{
    td_pool *pool = td_cpu_pool(be);
    int64_t k = ba->k;
    size_t nxq;
    float *scr = td_cpu_scratch(be, bands_floats(TD_W8_SGEMM, m, k, &nxq));

    if (!scr)
        return TD_ENOMEM;
    ba->xqf = scr;
    ba->xs = scr + nxq;
    td_cpu_blas_serial();
    for (int64_t m0 = 0; m0 < m && !atomic_load(&ba->failed); m0 += W8_MT) {
        quant_args qa = { .x = (const float *)x->data + m0 * k, .k = k,
                          .qf = scr, .scale = scr + nxq };
        ba->mt = qa.rows = m - m0 < W8_MT ? m - m0 : W8_MT;
        ba->y = y + m0 * ba->n;
        quantize(pool, &qa);
        td_pool_for(pool, (ba->n + W8_NT - 1) / W8_NT, 1, band_tiles, ba);
    }
    return 0;
}

int td_cpu_linear_w8a8(td_backend *be, const td_tensor *x, const td_tensor *wq,
                       const td_tensor *wscale, const td_tensor *bias, td_tensor *y)
{
    static const char op[] = "linear_w8a8";
    td_w8_path path = td_cpu_of(be)->w8a8_path;
    int64_t n, k, m;
    float *yd;
    band_args ba = { 0 };

    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_check_w8a8_weight(be->ctx, op, wq, wscale));
    n = wq->shape[0];
    k = wq->shape[1];
    TD_TRY(td_cpu_check_linear_io(be, op, x, "wq", wq, bias, y, &m));
    if (m == 0 || n == 0)
        return 0;
    yd = y->data;
    ba.ws = wscale->data;
    ba.w = wq->data;
    ba.n = n;
    ba.k = k;
    ba.nkb = (k + QB - 1) / QB;
    atomic_init(&ba.failed, 0);
    if (k == 0)
        memset(yd, 0, (size_t)(m * n) * sizeof(float));
    else
        TD_TRY(path == TD_W8_SGEMM ? run_sgemm(be, x, yd, &ba, m) : run_int8(be, x, yd, &ba, m));
    if (atomic_load(&ba.failed))
        return td_fail(be->ctx, TD_ENOMEM, "%s: cannot allocate tile buffers", op);
    if (bias) {
        float *owned;
        const float *bv = td_cpu_vec_f32(be, bias, &owned);
        w8_bias_args bb = { yd, bv, n };
        if (!bv)
            return TD_ENOMEM;
        td_pool_for(td_cpu_pool(be), m, 16, w8_bias_rows, &bb);
        free(owned);
    }
    return 0;
}
