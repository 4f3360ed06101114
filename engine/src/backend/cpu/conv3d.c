/*
 * 3-D convolution as tiled im2col + sgemm. y[Co, P] = w[Co, Kc] col[Kc, P]
 * with Kc = Ci*kt*kh*kw and P = To*Ho*Wo. A full im2col of a VAE layer
 * (Kc = 384*27 at 832x480) would be tens of GB, so the output is walked in
 * tiles of whole output rows inside one frame (about CONV_PT positions) and
 * Kc in chunks of whole input channels (about CONV_KT rows): the column
 * buffer never exceeds CONV_KT x CONV_PT floats plus one output row. The
 * matching [Co, chunk] slice of w is widened next to it when the weight is
 * not f32. The pool builds the columns; td_cpu_sgemm (fixed tiles on the
 * pool) accumulates each chunk into y.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

#define CONV_PT 4096
#define CONV_KT 1152

typedef struct {
    const float *x;
    float *col;
    int64_t t, h, w;                /* input dims */
    int64_t kt, kh, kw;
    int64_t ho, wo;                 /* output dims */
    const td_conv3d_params *p;
    int64_t r0;                     /* first col row (ci*kvol + tap) of the chunk */
    int64_t to, ho0, nrows, npos;   /* the output tile */
} col_args;

static void build_cols(void *arg, int64_t i0, int64_t i1)
{
    const col_args *a = arg;
    int64_t kvol = a->kt * a->kh * a->kw;
    for (int64_t i = i0; i < i1; i++) {
        int64_t r = a->r0 + i, ci = r / kvol, tap = r % kvol;
        int64_t dt = tap / (a->kh * a->kw), dh = (tap / a->kw) % a->kh, dw = tap % a->kw;
        int64_t ti = a->to * a->p->stride[0] - a->p->pad_t_front + dt;
        float *dst = a->col + i * a->npos;
        if (ti < 0 || ti >= a->t) {
            memset(dst, 0, (size_t)a->npos * sizeof(float));
            continue;
        }
        for (int64_t oy = 0; oy < a->nrows; oy++) {
            int64_t hi = (a->ho0 + oy) * a->p->stride[1] - a->p->pad_h + dh;
            float *d = dst + oy * a->wo;
            const float *src;
            if (hi < 0 || hi >= a->h) {
                memset(d, 0, (size_t)a->wo * sizeof(float));
                continue;
            }
            src = a->x + ((ci * a->t + ti) * a->h + hi) * a->w;
            for (int64_t ox = 0; ox < a->wo; ox++) {
                int64_t wi = ox * a->p->stride[2] - a->p->pad_w + dw;
                d[ox] = wi >= 0 && wi < a->w ? src[wi] : 0.0f;
            }
        }
    }
}

typedef struct {
    float *y;
    const float *b;
    int64_t p;
} cbias_args;

static void conv_bias(void *arg, int64_t c0, int64_t c1)
{
    const cbias_args *a = arg;
    for (int64_t c = c0; c < c1; c++)
        for (int64_t i = 0; i < a->p; i++)
            a->y[c * a->p + i] += a->b[c];
}

static int64_t out_dim(int64_t in, int64_t pad, int64_t k, int64_t s)
{
    return in + pad < k ? 0 : (in + pad - k) / s + 1;
}

int td_cpu_conv3d(td_backend *be, const td_tensor *x, const td_tensor *w,
                  const td_tensor *bias, const td_conv3d_params *p, td_tensor *y)
{
    static const char op[] = "conv3d";
    char s1[96], s2[96], s3[96];
    int64_t ci, t, h, wd, co, kt, kh, kw, kvol, kc, to, ho, wo, plane, npos_max, rows_per, ch_per, kchunk;
    float *scr, *col, *wt;
    int wf32;

    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_cpu_check_weight(be, op, "w", w));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_check_conv3d(be->ctx, op, x, w, y, p));
    ci = x->shape[0]; t = x->shape[1]; h = x->shape[2]; wd = x->shape[3];
    co = w->shape[0]; kt = w->shape[2]; kh = w->shape[3]; kw = w->shape[4];
    to = out_dim(t, p->pad_t_front + p->pad_t_back, kt, p->stride[0]);
    ho = out_dim(h, 2 * (int64_t)p->pad_h, kh, p->stride[1]);
    wo = out_dim(wd, 2 * (int64_t)p->pad_w, kw, p->stride[2]);
    if (y->shape[0] != co || y->shape[1] != to || y->shape[2] != ho || y->shape[3] != wo)
        return td_fail(be->ctx, TD_ESHAPE, "%s: y %s must be [%lld, %lld, %lld, %lld] for x %s and w %s",
                       op, td_shape_str(y, s3, sizeof(s3)), (long long)co, (long long)to, (long long)ho,
                       (long long)wo, td_shape_str(x, s1, sizeof(s1)), td_shape_str(w, s2, sizeof(s2)));
    if (bias)
        TD_TRY(td_check_float_vec(be->ctx, op, "bias", bias, co));
    kvol = kt * kh * kw;
    kc = ci * kvol;
    plane = ho * wo;
    if (co > INT32_MAX || kc > INT32_MAX || to * plane > INT32_MAX)
        return td_fail(be->ctx, TD_EINVAL, "%s: x %s is past sgemm's 32-bit sizes", op,
                       td_shape_str(x, s1, sizeof(s1)));
    if (co == 0 || to * plane == 0)
        return 0;
    if (kc == 0) {
        memset(y->data, 0, (size_t)(co * to * plane) * sizeof(float));
    } else {
        rows_per = wo >= CONV_PT ? 1 : CONV_PT / wo;
        if (rows_per > ho)
            rows_per = ho;
        npos_max = rows_per * wo;
        ch_per = kvol >= CONV_KT ? 1 : CONV_KT / kvol;
        if (ch_per > ci)
            ch_per = ci;
        kchunk = ch_per * kvol;
        wf32 = w->dtype == TD_F32;
        scr = td_cpu_scratch(be, (size_t)(kchunk * npos_max) + (wf32 ? 0 : (size_t)(co * kchunk)));
        if (!scr)
            return TD_ENOMEM;
        col = scr;
        wt = scr + kchunk * npos_max;
        for (int64_t o = 0; o < to; o++) {
            for (int64_t y0 = 0; y0 < ho; y0 += rows_per) {
                int64_t nrows = ho - y0 < rows_per ? ho - y0 : rows_per, npos = nrows * wo;
                float *yt = (float *)y->data + o * plane + y0 * wo;
                for (int64_t c0 = 0; c0 < ci; c0 += ch_per) {
                    int64_t nch = ci - c0 < ch_per ? ci - c0 : ch_per, nk = nch * kvol;
                    col_args ca = { x->data, col, t, h, wd, kt, kh, kw, ho, wo, p,
                                    c0 * kvol, o, y0, nrows, npos };
                    const float *a;
                    int64_t lda;
                    td_pool_for(td_cpu_pool(be), nk, 4, build_cols, &ca);
                    if (wf32) {
                        a = (const float *)w->data + c0 * kvol;
                        lda = kc;
                    } else {
                        td_cpu_widen_tile(be, w->dtype, (const unsigned char *)w->data +
                                          (size_t)(c0 * kvol) * td_dtype_size(w->dtype), kc, co, nk, wt);
                        a = wt;
                        lda = nk;
                    }
                    td_cpu_sgemm(be, 0, 0, co, npos, nk, 1.0f, a, lda, col, npos,
                                 c0 ? 1.0f : 0.0f, yt, to * plane);
                }
            }
        }
    }
    if (bias) {
        float *owned;
        cbias_args ba = { y->data, td_cpu_vec_f32(be, bias, &owned), to * plane };
        if (!ba.b)
            return TD_ENOMEM;
        td_pool_for(td_cpu_pool(be), co, 1, conv_bias, &ba);
        free(owned);
    }
    return 0;
}
