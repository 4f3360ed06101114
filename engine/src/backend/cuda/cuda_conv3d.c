/*
 * 3-D convolution on the CUDA backend as chunked im2col + one cuBLASLt GEMM
 * per chunk: y[Co, P] = w[Co, Kc] col[Kc, P], Kc = Ci*kt*kh*kw, with the
 * output positions P walked in chunks whose bf16 column buffer fits
 * CONV_COL_BYTES of arena scratch, and all of Kc in one f32-accumulated GEMM.
 */
#include "cuda.h"

#define CONV_COL_BYTES ((size_t)256 << 20)

static int64_t out_dim(int64_t in, int64_t pad, int64_t k, int64_t s)
{
    return in + pad < k ? 0 : (in + pad - k) / s + 1;
}

int td_cuda_conv3d(td_backend *be, const td_tensor *x, const td_tensor *w,
                   const td_tensor *bias, const td_conv3d_params *p, td_tensor *y)
{
    TD_TRY(td_cuda_enter(be));
    static const char op[] = "conv3d";
    td_cuda *c = td_cuda_of(be);
    char s1[96], s2[96], s3[96];
    size_t mark = c->arena_used;
    td_kconv3d g;
    int64_t co, kc, npos, chunk;
    const void *wd;
    td_bf16_bits *col;
    int rc = 0;

    TD_TRY(td_cuda_check_act(be, op, "x", x));
    TD_TRY(td_cuda_check_act(be, op, "y", y));
    if (!w || !td_is_contiguous(w) || (w->dtype != TD_BF16 && w->dtype != TD_F32 && w->dtype != TD_F16))
        return td_fail(be->ctx, TD_EINVAL, "%s: w %s must be a contiguous float tensor", op,
                       w ? td_shape_str(w, s1, sizeof(s1)) : "(missing)");
    TD_TRY(td_check_conv3d(be->ctx, op, x, w, y, p));
    g = (td_kconv3d){ x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[2], w->shape[3], w->shape[4],
                      0, 0, p->stride[0], p->stride[1], p->stride[2], p->pad_t_front, p->pad_h, p->pad_w };
    co = w->shape[0];
    g.ho = out_dim(g.h, 2 * (int64_t)p->pad_h, g.kh, p->stride[1]);
    g.wo = out_dim(g.w, 2 * (int64_t)p->pad_w, g.kw, p->stride[2]);
    if (y->shape[0] != co || y->shape[1] != out_dim(g.t, p->pad_t_front + p->pad_t_back, g.kt, p->stride[0]) ||
        y->shape[2] != g.ho || y->shape[3] != g.wo)
        return td_fail(be->ctx, TD_ESHAPE, "%s: y %s does not fit x %s and w %s", op,
                       td_shape_str(y, s3, sizeof(s3)), td_shape_str(x, s1, sizeof(s1)),
                       td_shape_str(w, s2, sizeof(s2)));
    if (bias)
        TD_TRY(td_cuda_check_vec(be, op, "bias", bias, co));
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
    wd = td_cuda_bf16_weight(be, w, op);
    col = wd ? td_cuda_scratch(be, (size_t)(chunk * kc) * 2, "conv3d: im2col columns") : NULL;
    if (!col) {
        c->arena_used = mark;
        return be->ctx->err;
    }
    for (int64_t p0 = 0; p0 < npos && rc == 0; p0 += chunk) {
        int64_t np = npos - p0 < chunk ? npos - p0 : chunk;
        rc = td_cuda_check(be, tdk_im2col3d(c->stream, x->data, &g, p0, np, col), "conv3d: im2col");
        /* y[:, p0:p0+np] (row stride npos) = w[Co, Kc] . col[np, Kc]^T */
        if (rc == 0)
            rc = td_cuda_matmul(be, col, wd, NULL, (td_bf16_bits *)y->data + p0, co, np, kc, npos);
    }
    if (rc == 0 && bias)
        rc = td_cuda_check(be, tdk_bias_rows(c->stream, y->data, co, npos, td_cuda_vec(bias)), "conv3d: bias");
    c->arena_used = mark;
    return rc;
}
