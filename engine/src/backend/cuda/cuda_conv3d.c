/*
 * 3-D convolution on the CUDA backend as chunked im2col + one cuBLASLt GEMM
 * per chunk: y[Co, P] = w[Co, Kc] col[Kc, P], Kc = Ci*kt*kh*kw, with the
 * output positions P (the output's time length, so front and back time
 * padding are both zeros read by im2col past the input's ends) walked in chunks whose bf16 column buffer fits
 * CONV_COL_BYTES of arena scratch, and all of Kc in one f32-accumulated GEMM.
 */
#include "cuda_internal.h"

#define CONV_COL_BYTES ((size_t)256 << 20)

int td_cuda_conv3d(td_backend *be, const td_tensor *x, const td_tensor *w,
                   const td_tensor *bias, const td_conv3d_params *p, td_tensor *y)
{
    TD_TRY(td_cuda_enter(be));
    static const char op[] = "conv3d";
    td_cuda *c = td_cuda_of(be);
    size_t mark = c->arena_used;
    td_kconv3d g;
    int64_t co, kc, npos, chunk;
    td_bf16_bits *col;
    int rc = 0;

    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_cuda_check_weight(be, op, "w", w));
    TD_TRY(td_check_conv3d(be->ctx, op, x, w, y, p));
    g = (td_kconv3d){ x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[2], w->shape[3], w->shape[4],
                      0, 0, p->stride[0], p->stride[1], p->stride[2], p->pad_t_front, p->pad_h, p->pad_w };
    co = w->shape[0];
    g.ho = y->shape[2];
    g.wo = y->shape[3];
    if (bias)
        TD_TRY(td_check_float_vec(be->ctx, op, "bias", bias, co));
    kc = g.ci * g.kt * g.kh * g.kw;
    npos = y->shape[1] * g.ho * g.wo;
    if (co == 0 || npos == 0)
        return 0;
    if (kc == 0)
        return td_cuda_unsupported(be, op, "an empty kernel");
    chunk = (int64_t)(CONV_COL_BYTES / 2) / kc;
    if (chunk < 1)
        return td_cuda_unsupported(be, op, "a kernel volume past the column buffer");
    if (chunk > npos)
        chunk = npos;
    col = td_cuda_scratch(be, (size_t)(chunk * kc) * 2, "conv3d: im2col columns");
    if (!col) {
        c->arena_used = mark;
        return be->ctx->err;
    }
    for (int64_t p0 = 0; p0 < npos && rc == 0; p0 += chunk) {
        int64_t np = npos - p0 < chunk ? npos - p0 : chunk;
        rc = td_cuda_check(be, tdk_im2col3d(c->stream, x->data, &g, p0, np, col), "conv3d: im2col");
        /* y[:, p0:p0+np] (row stride npos) = w[Co, Kc] . col[np, Kc]^T */
        if (rc == 0)
            rc = td_cuda_lt_linear(be, col, w->data, NULL, (td_bf16_bits *)y->data + p0, co, np, kc, npos);
    }
    if (rc == 0 && bias)
        rc = td_cuda_check(be, tdk_bias_rows(c->stream, y->data, co, npos, td_cuda_vec(bias)), "conv3d: bias");
    c->arena_used = mark;
    return rc;
}
