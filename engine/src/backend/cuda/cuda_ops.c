/*
 * The CUDA backend's non-GEMM ops: argument checks with messages naming the
 * op and the tensor (as the CPU backend's), then one kernel launch each.
 */
#include <math.h>

#include "cuda.h"
#include "td_kernels.h"

static int64_t lastdim(const td_tensor *t)
{
    return t->ndim ? t->shape[t->ndim - 1] : 1;
}

int td_cuda_check_act(td_backend *be, const char *op, const char *name, const td_tensor *t)
{
    char s[96];
    if (!t || (!t->data && td_numel(t) > 0))
        return td_fail(be->ctx, TD_EINVAL, "%s: %s is missing", op, name);
    if (t->dtype != TD_F32 || !td_is_contiguous(t))
        return td_fail(be->ctx, TD_EINVAL, "%s: %s %s must be a contiguous f32 device tensor",
                       op, name, td_shape_str(t, s, sizeof(s)));
    return 0;
}

int td_cuda_check_vec(td_backend *be, const char *op, const char *name, const td_tensor *t, int64_t n)
{
    char s[96];
    if (!t || (!t->data && n > 0))
        return td_fail(be->ctx, TD_EINVAL, "%s: %s is missing", op, name);
    if (td_cuda_wtype(t->dtype) < 0 || !td_is_contiguous(t) || td_numel(t) != n)
        return td_fail(be->ctx, td_numel(t) != n ? TD_ESHAPE : TD_EINVAL,
                       "%s: %s %s must be a contiguous f32/bf16/f16 vector of %lld", op, name,
                       td_shape_str(t, s, sizeof(s)), (long long)n);
    return 0;
}

static int same_size(td_backend *be, const char *op, const td_tensor *x, const td_tensor *y)
{
    char a[96], b[96];
    TD_TRY(td_cuda_check_act(be, op, "x", x));
    TD_TRY(td_cuda_check_act(be, op, "y", y));
    if (td_numel(x) != td_numel(y) || lastdim(x) != lastdim(y))
        return td_fail(be->ctx, TD_ESHAPE, "%s: output %s does not match input %s", op,
                       td_shape_str(y, b, sizeof(b)), td_shape_str(x, a, sizeof(a)));
    return 0;
}

static int launched(td_backend *be, cudaError_t err, const char *op)
{
    return td_cuda_check(be, err, op);
}

static cudaStream_t stream(td_backend *be)
{
    return td_cuda_of(be)->stream;
}

int td_cuda_layernorm(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *b,
                      float eps, td_tensor *y)
{
    int64_t c = lastdim(x);
    TD_TRY(same_size(be, "layernorm", x, y));
    if (w)
        TD_TRY(td_cuda_check_vec(be, "layernorm", "weight", w, c));
    if (b)
        TD_TRY(td_cuda_check_vec(be, "layernorm", "bias", b, c));
    if (w && b && w->dtype != b->dtype)
        return td_fail(be->ctx, TD_EINVAL, "layernorm: weight and bias must share a dtype");
    if (!(eps >= 0.0f))
        return td_fail(be->ctx, TD_EINVAL, "layernorm: eps %g must be >= 0", eps);
    return launched(be, tdk_layernorm(x->data, w ? w->data : NULL, b ? b->data : NULL,
                                      td_cuda_wtype(w ? w->dtype : b ? b->dtype : TD_F32), eps,
                                      y->data, c ? td_numel(x) / c : 0, c, stream(be)), "layernorm");
}

int td_cuda_rmsnorm(td_backend *be, const td_tensor *x, const td_tensor *w, float eps, td_tensor *y)
{
    int64_t c = lastdim(x);
    TD_TRY(same_size(be, "rmsnorm", x, y));
    if (w)
        TD_TRY(td_cuda_check_vec(be, "rmsnorm", "weight", w, c));
    if (!(eps >= 0.0f))
        return td_fail(be->ctx, TD_EINVAL, "rmsnorm: eps %g must be >= 0", eps);
    return launched(be, tdk_rmsnorm(x->data, w ? w->data : NULL, td_cuda_wtype(w ? w->dtype : TD_F32),
                                    eps, y->data, c ? td_numel(x) / c : 0, c, stream(be)), "rmsnorm");
}

int td_cuda_channel_rmsnorm(td_backend *be, const td_tensor *x, const td_tensor *gamma,
                            const td_tensor *bias, td_tensor *y)
{
    int64_t c = x->ndim ? x->shape[0] : 0, n = c ? td_numel(x) / c : 0;
    TD_TRY(td_cuda_check_act(be, "channel_rmsnorm", "x", x));
    TD_TRY(td_cuda_check_act(be, "channel_rmsnorm", "y", y));
    if (td_numel(y) != td_numel(x))
        return td_fail(be->ctx, TD_ESHAPE, "channel_rmsnorm: y does not match x");
    TD_TRY(td_cuda_check_vec(be, "channel_rmsnorm", "gamma", gamma, c));
    if (bias) {
        TD_TRY(td_cuda_check_vec(be, "channel_rmsnorm", "bias", bias, c));
        if (bias->dtype != gamma->dtype)
            return td_fail(be->ctx, TD_EINVAL, "channel_rmsnorm: gamma and bias must share a dtype");
    }
    return launched(be, tdk_channel_rmsnorm(x->data, gamma->data, bias ? bias->data : NULL,
                                            td_cuda_wtype(gamma->dtype), y->data, c, n, stream(be)),
                    "channel_rmsnorm");
}

int td_cuda_gelu_tanh(td_backend *be, const td_tensor *x, td_tensor *y)
{
    TD_TRY(same_size(be, "gelu_tanh", x, y));
    return launched(be, tdk_gelu_tanh(x->data, y->data, td_numel(x), stream(be)), "gelu_tanh");
}

int td_cuda_silu(td_backend *be, const td_tensor *x, td_tensor *y)
{
    TD_TRY(same_size(be, "silu", x, y));
    return launched(be, tdk_silu(x->data, y->data, td_numel(x), stream(be)), "silu");
}

int td_cuda_softmax(td_backend *be, const td_tensor *x, td_tensor *y)
{
    int64_t c = lastdim(x);
    TD_TRY(same_size(be, "softmax", x, y));
    return launched(be, tdk_softmax(x->data, y->data, c ? td_numel(x) / c : 0, c, stream(be)), "softmax");
}

static int binary(td_backend *be, const char *op, const td_tensor *a, const td_tensor *b,
                  td_tensor *y, int mul)
{
    char s[96], t[96];
    int64_t n = td_numel(a), nb = td_numel(b);
    TD_TRY(same_size(be, op, a, y));
    if (!b || td_cuda_wtype(b->dtype) < 0 || !td_is_contiguous(b))
        return td_fail(be->ctx, TD_EINVAL, "%s: b must be a contiguous float tensor", op);
    if (nb == 0 || n % nb)
        return td_fail(be->ctx, TD_ESHAPE, "%s: b %s does not broadcast over a %s", op,
                       td_shape_str(b, t, sizeof(t)), td_shape_str(a, s, sizeof(s)));
    return launched(be, (mul ? tdk_mul : tdk_add)(a->data, b->data, td_cuda_wtype(b->dtype), nb,
                                                  y->data, n, stream(be)), op);
}

int td_cuda_add(td_backend *be, const td_tensor *a, const td_tensor *b, td_tensor *y)
{
    return binary(be, "add", a, b, y, 0);
}

int td_cuda_mul(td_backend *be, const td_tensor *a, const td_tensor *b, td_tensor *y)
{
    return binary(be, "mul", a, b, y, 1);
}

int td_cuda_modulate(td_backend *be, const td_tensor *x, const td_tensor *shift,
                     const td_tensor *scale, td_tensor *y)
{
    int64_t c = lastdim(x);
    TD_TRY(same_size(be, "modulate", x, y));
    TD_TRY(td_cuda_check_vec(be, "modulate", "shift", shift, c));
    TD_TRY(td_cuda_check_vec(be, "modulate", "scale", scale, c));
    if (shift->dtype != scale->dtype)
        return td_fail(be->ctx, TD_EINVAL, "modulate: shift and scale must share a dtype");
    return launched(be, tdk_modulate(x->data, shift->data, scale->data, td_cuda_wtype(shift->dtype),
                                     y->data, c ? td_numel(x) / c : 0, c, stream(be)), "modulate");
}

int td_cuda_add_gated(td_backend *be, td_tensor *x, const td_tensor *y, const td_tensor *gate)
{
    int64_t c = lastdim(x);
    TD_TRY(same_size(be, "add_gated", y, x));
    TD_TRY(td_cuda_check_vec(be, "add_gated", "gate", gate, c));
    return launched(be, tdk_add_gated(x->data, y->data, gate->data, td_cuda_wtype(gate->dtype),
                                      c ? td_numel(x) / c : 0, c, stream(be)), "add_gated");
}

int td_cuda_rope(td_backend *be, const td_tensor *x, const td_tensor *cos_t, const td_tensor *sin_t,
                 td_tensor *y)
{
    int64_t s, h, d;
    TD_TRY(same_size(be, "rope", x, y));
    TD_TRY(td_cuda_check_act(be, "rope", "cos", cos_t));
    TD_TRY(td_cuda_check_act(be, "rope", "sin", sin_t));
    if (x->ndim != 3 || x->shape[2] % 2)
        return td_fail(be->ctx, TD_ESHAPE, "rope: x must be [S, H, D] with D even");
    s = x->shape[0], h = x->shape[1], d = x->shape[2];
    if (td_numel(cos_t) != s * d / 2 || td_numel(sin_t) != s * d / 2)
        return td_fail(be->ctx, TD_ESHAPE, "rope: cos/sin tables must be [S, D/2] = [%lld, %lld]",
                       (long long)s, (long long)(d / 2));
    return launched(be, tdk_rope(x->data, cos_t->data, sin_t->data, y->data, s, h, d, stream(be)), "rope");
}

int td_cuda_attention(td_backend *be, const td_tensor *q, const td_tensor *k, const td_tensor *v,
                      const td_tensor *bias, float scale, int64_t kv_len, td_tensor *out)
{
    int64_t sq, sk, h, d, dv;
    TD_TRY(td_cuda_check_act(be, "attention", "q", q));
    TD_TRY(td_cuda_check_act(be, "attention", "k", k));
    TD_TRY(td_cuda_check_act(be, "attention", "v", v));
    TD_TRY(td_cuda_check_act(be, "attention", "out", out));
    if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3 || out->ndim != 3)
        return td_fail(be->ctx, TD_ESHAPE, "attention: q, k, v and out must be [S, H, D]");
    sq = q->shape[0], h = q->shape[1], d = q->shape[2], sk = k->shape[0], dv = v->shape[2];
    if (k->shape[1] != h || k->shape[2] != d || v->shape[0] != sk || v->shape[1] != h ||
        out->shape[0] != sq || out->shape[1] != h || out->shape[2] != dv)
        return td_fail(be->ctx, TD_ESHAPE, "attention: q, k, v and out shapes do not fit together");
    if (d > 128 || dv > 128)
        return td_fail(be->ctx, TD_EUNSUPPORTED, "attention: head dims %lld/%lld: the CUDA kernel "
                       "takes at most 128", (long long)d, (long long)dv);
    if (kv_len > sk)
        return td_fail(be->ctx, TD_EINVAL, "attention: kv_len %lld is past the %lld keys",
                       (long long)kv_len, (long long)sk);
    if (bias) {
        TD_TRY(td_cuda_check_act(be, "attention", "bias", bias));
        if (td_numel(bias) != h * sq * sk)
            return td_fail(be->ctx, TD_ESHAPE, "attention: bias must be [H, Sq, Sk]");
    }
    return launched(be, tdk_attention(q->data, k->data, v->data, bias ? bias->data : NULL, scale,
                                      sq, sk, kv_len, h, d, dv, out->data, stream(be)), "attention");
}

int td_cuda_conv3d(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *bias,
                   const td_conv3d_params *p, td_tensor *y)
{
    tdk_conv3d_geom g;
    TD_TRY(td_cuda_check_act(be, "conv3d", "x", x));
    TD_TRY(td_cuda_check_act(be, "conv3d", "y", y));
    if (x->ndim != 4 || y->ndim != 4 || w->ndim != 5 || td_cuda_wtype(w->dtype) < 0 ||
        w->shape[1] != x->shape[0] || y->shape[0] != w->shape[0])
        return td_fail(be->ctx, TD_ESHAPE, "conv3d: x [Ci, T, H, W], w [Co, Ci, kt, kh, kw] and "
                       "y [Co, To, Ho, Wo] do not fit together");
    if (bias) {
        TD_TRY(td_cuda_check_vec(be, "conv3d", "bias", bias, w->shape[0]));
        if (bias->dtype != w->dtype)
            return td_fail(be->ctx, TD_EINVAL, "conv3d: weight and bias must share a dtype");
    }
    g = (tdk_conv3d_geom){ x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0], y->shape[1],
                      y->shape[2], y->shape[3], (int)w->shape[2], (int)w->shape[3], (int)w->shape[4],
                      p->stride[0], p->stride[1], p->stride[2], p->pad_t_front, p->pad_h, p->pad_w };
    if (g.to != (g.t + p->pad_t_front + p->pad_t_back - g.kt) / g.st + 1 ||
        g.ho != (g.h + 2 * g.pad_h - g.kh) / g.sh + 1 || g.wo != (g.w + 2 * g.pad_w - g.kw) / g.sw + 1)
        return td_fail(be->ctx, TD_ESHAPE, "conv3d: output size does not follow from the geometry");
    return launched(be, tdk_conv3d(x->data, w->data, bias ? bias->data : NULL, td_cuda_wtype(w->dtype),
                                   y->data, &g, stream(be)), "conv3d");
}

int td_cuda_upsample_nearest(td_backend *be, const td_tensor *x, int fh, int fw, td_tensor *y)
{
    int64_t h, w;
    TD_TRY(td_cuda_check_act(be, "upsample_nearest", "x", x));
    TD_TRY(td_cuda_check_act(be, "upsample_nearest", "y", y));
    if (x->ndim < 2 || fh < 1 || fw < 1 || td_numel(y) != td_numel(x) * fh * fw)
        return td_fail(be->ctx, TD_ESHAPE, "upsample_nearest: y must be x with its last two dims "
                       "scaled by %d x %d", fh, fw);
    h = x->shape[x->ndim - 2], w = x->shape[x->ndim - 1];
    return launched(be, tdk_upsample_nearest(x->data, y->data, h && w ? td_numel(x) / (h * w) : 0, h, w,
                                             fh, fw, stream(be)), "upsample_nearest");
}

int td_cuda_sla_attention(td_backend *be, const td_tensor *q, const td_tensor *k, const td_tensor *v,
                          const td_tensor *proj_w, const td_tensor *proj_b, int blk_q, int blk_k,
                          double topk, td_tensor *out)
{
    (void)q, (void)k, (void)v, (void)proj_w, (void)proj_b, (void)blk_q, (void)blk_k, (void)topk, (void)out;
    return td_fail(be->ctx, TD_EUNSUPPORTED, "sla_attention: the CUDA SLA kernel is not written "
                   "yet (issue 8); use attention=full or device=cpu");
}
