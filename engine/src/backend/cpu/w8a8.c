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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

#define QB 128              /* quantization block edge */
#define W8_MT (2 * QB)      /* activation rows quantized per pass */
#define W8_NT (4 * QB)      /* weight rows widened per tile */

static inline int8_t quant_one(float v, float mult)
{
    /* rintf rounds half to even in the default rounding mode, as cvt.rni */
    float r = rintf(v * mult);
    if (r > 127.0f)
        r = 127.0f;
    if (r < -128.0f)
        r = -128.0f;
    return (int8_t)r;
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
            for (int64_t c = c0; c < c1; c++)
                amax = fmaxf(amax, fabsf(a->x[r * a->k + c]));
        mult = 128.0f / amax;
        a->scale[bm * a->nkb + bk] = amax / 128.0f;
        for (int64_t r = r0; r < r1; r++)
            for (int64_t c = c0; c < c1; c++) {
                int8_t v = quant_one(a->x[r * a->k + c], mult);
                if (a->q)
                    a->q[r * a->k + c] = v;
                if (a->qf)
                    a->qf[r * a->k + c] = v;
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

typedef struct {
    const float *p;     /* [mt, nt] block products of one K block */
    float *y;           /* y + m0 * n + n0, row stride n */
    int64_t n, nt, kb, nkb, first;
    const float *xs;    /* [ceil(mt/128), nkb] for this row band */
    const float *ws;    /* wscale + (n0/128) * nkb */
} rescale_args;

static void rescale_rows(void *arg, int64_t r0, int64_t r1)
{
    const rescale_args *a = arg;
    for (int64_t r = r0; r < r1; r++) {
        float xs = a->xs[(r / QB) * a->nkb + a->kb];
        const float *p = a->p + r * a->nt;
        float *y = a->y + r * a->n;
        for (int64_t j = 0; j < a->nt; j++) {
            float s = xs * a->ws[(j / QB) * a->nkb + a->kb];
            y[j] = a->first ? p[j] * s : y[j] + p[j] * s;
        }
    }
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
    char a[96], b[96], c[96];
    td_pool *pool = td_cpu_pool(be);
    int64_t n, k, m, nkb;
    float *scr, *xqf, *xs, *wf, *p, *yd;
    const int8_t *w;

    TD_TRY(td_cpu_check_act(be, op, "x", x));
    TD_TRY(td_cpu_check_act(be, op, "y", y));
    if (!wq || wq->dtype != TD_I8 || wq->ndim != 2 || !td_is_contiguous(wq))
        return td_fail(be->ctx, TD_EINVAL, "%s: wq %s must be a contiguous int8 [N, K]", op,
                       wq ? td_shape_str(wq, a, sizeof(a)) : "(missing)");
    n = wq->shape[0];
    k = wq->shape[1];
    nkb = (k + QB - 1) / QB;
    if (!wscale || wscale->dtype != TD_F32 || !td_is_contiguous(wscale) || wscale->ndim != 2 ||
        wscale->shape[0] != (n + QB - 1) / QB || wscale->shape[1] != nkb)
        return td_fail(be->ctx, TD_ESHAPE, "%s: wscale %s must be f32 [%lld, %lld] for wq %s", op,
                       wscale ? td_shape_str(wscale, a, sizeof(a)) : "(missing)",
                       (long long)((n + QB - 1) / QB), (long long)nkb, td_shape_str(wq, b, sizeof(b)));
    m = k ? td_numel(x) / k : 0;
    if (td_cpu_lastdim(x) != k || td_cpu_lastdim(y) != n || x->ndim < 1 || y->ndim < 1 ||
        td_numel(y) != m * n)
        return td_fail(be->ctx, TD_ESHAPE, "%s: x %s, wq %s and y %s do not fit (y[M, N] = x[M, K] wq[N, K]^T)",
                       op, td_shape_str(x, a, sizeof(a)), td_shape_str(wq, b, sizeof(b)),
                       td_shape_str(y, c, sizeof(c)));
    if (bias)
        TD_TRY(td_cpu_check_vec(be, op, "bias", bias, n));
    if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX)
        return td_fail(be->ctx, TD_EINVAL, "%s: x %s is past sgemm's 32-bit sizes", op,
                       td_shape_str(x, a, sizeof(a)));
    if (m == 0 || n == 0)
        return 0;
    yd = y->data;
    if (k == 0) {
        memset(yd, 0, (size_t)(m * n) * sizeof(float));
    } else {
        int64_t mt_max = m < W8_MT ? m : W8_MT, nt_max = n < W8_NT ? n : W8_NT;
        size_t nxq = (size_t)(mt_max * k), nxs = (size_t)(((mt_max + QB - 1) / QB) * nkb);
        size_t nwf = (size_t)(nt_max * QB), np = (size_t)(mt_max * nt_max);

        scr = td_cpu_scratch(be, nxq + nxs + nwf + np);
        if (!scr)
            return TD_ENOMEM;
        xqf = scr;
        xs = xqf + nxq;
        wf = xs + nxs;
        p = wf + nwf;
        w = wq->data;
        for (int64_t m0 = 0; m0 < m; m0 += W8_MT) {
            int64_t mt = m - m0 < W8_MT ? m - m0 : W8_MT;
            quantize(pool, (const float *)x->data + m0 * k, mt, k, NULL, xqf, xs);
            for (int64_t n0 = 0; n0 < n; n0 += W8_NT) {
                int64_t nt = n - n0 < W8_NT ? n - n0 : W8_NT;
                for (int64_t kb = 0; kb < nkb; kb++) {
                    int64_t k0 = kb * QB, kt = k - k0 < QB ? k - k0 : QB;
                    rescale_args ra = { p, yd + m0 * n + n0, n, nt, kb, nkb, kb == 0,
                                        xs, (const float *)wscale->data + (n0 / QB) * nkb };
                    td_cpu_widen_tile(be, TD_I8, w + n0 * k + k0, k, nt, kt, wf);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mt, (int)nt, (int)kt,
                                1.0f, xqf + k0, (int)k, wf, (int)kt, 0.0f, p, (int)nt);
                    td_pool_for(pool, mt, 16, rescale_rows, &ra);
                }
            }
        }
    }
    if (bias) {
        float *owned;
        const float *bv = td_cpu_vec_f32(be, bias, &owned);
        w8_bias_args ba;
        if (!bv)
            return TD_ENOMEM;
        ba = (w8_bias_args){ yd, bv, n };
        td_pool_for(pool, m, 16, w8_bias_rows, &ba);
        free(owned);
    }
    return 0;
}
