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
 * How we run it on a CPU: the int32 block products are computed exactly by
 * sgemm on the int8 values held as floats. Every product is an integer of
 * magnitude <= 128 * 128 and a 128-term sum stays below 2^21 < 2^24, so
 * every partial sum is exact in f32 whatever order BLAS adds them in: the
 * result is bit for bit the int32 accumulator, at sgemm speed.
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
        }
    }
}

static void quantize(td_pool *pool, const float *x, int64_t m, int64_t k,
                     int8_t *q, float *qf, float *scale)
{
    int64_t nkb = (k + QB - 1) / QB, nmb = (m + QB - 1) / QB;
    quant_args a = { x, m, k, nkb, q, qf, scale };
    td_pool_for(pool, nmb * nkb, 1, quant_blocks, &a);
}

void td_cpu_w8a8_quantize(td_pool *pool, const float *x, int64_t m, int64_t k,
                          int8_t *q, float *scale)
{
    quantize(pool, x, m, k, q, NULL, scale);
}

/* One band of rows against weight tiles of W8_NT rows: each pool task
 * widens its own weight tile, runs its own single-threaded sgemm per K block
 * and rescales into y, so a task needs no other thread (see cpu.h). */
typedef struct {
    const float *xqf, *xs, *ws;   /* band activations as floats, band scales, all wscale */
    const int8_t *w;
    float *y;                     /* y + m0 * n */
    int64_t mt, n, k, nkb;
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

int td_cpu_linear_w8a8(td_backend *be, const td_tensor *x, const td_tensor *wq,
                       const td_tensor *wscale, const td_tensor *bias, td_tensor *y)
{
    static const char op[] = "linear_w8a8";
    td_pool *pool = td_cpu_pool(be);
    int64_t n, k, m, nkb;
    float *scr, *xqf, *xs, *yd;
    band_args ba;

    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_check_w8a8_weight(be->ctx, op, wq, wscale));
    n = wq->shape[0];
    k = wq->shape[1];
    nkb = (k + QB - 1) / QB;
    TD_TRY(td_cpu_check_linear_io(be, op, x, "wq", wq, bias, y, &m));
    if (m == 0 || n == 0)
        return 0;
    yd = y->data;
    ba.ws = wscale->data;
    ba.w = wq->data;
    ba.n = n;
    ba.k = k;
    ba.nkb = nkb;
    atomic_init(&ba.failed, 0);
    if (k == 0) {
        memset(yd, 0, (size_t)(m * n) * sizeof(float));
    } else {
        int64_t mt_max = m < W8_MT ? m : W8_MT;
        size_t nxq = (size_t)(mt_max * k);

        scr = td_cpu_scratch(be, nxq + (size_t)(((mt_max + QB - 1) / QB) * nkb));
        if (!scr)
            return TD_ENOMEM;
        xqf = scr;
        xs = xqf + nxq;
        ba.xqf = xqf;
        ba.xs = xs;
        td_cpu_blas_serial();
        for (int64_t m0 = 0; m0 < m && !atomic_load(&ba.failed); m0 += W8_MT) {
            ba.mt = m - m0 < W8_MT ? m - m0 : W8_MT;
            ba.y = yd + m0 * n;
            quantize(pool, (const float *)x->data + m0 * k, ba.mt, k, NULL, xqf, xs);
            td_pool_for(pool, (n + W8_NT - 1) / W8_NT, 1, band_tiles, &ba);
        }
        if (atomic_load(&ba.failed))
            return td_fail(be->ctx, TD_ENOMEM, "%s: cannot allocate tile buffers", op);
    }
    if (bias) {
        float *owned;
        const float *bv = td_cpu_vec_f32(be, bias, &owned);
        w8_bias_args bb = { yd, bv, n };
        if (!bv)
            return TD_ENOMEM;
        td_pool_for(pool, m, 16, w8_bias_rows, &bb);
        free(owned);
    }
    return 0;
}
