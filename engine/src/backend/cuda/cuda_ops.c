/*
 * Norms, pointwise ops, RoPE and resampling on the CUDA backend: checks,
 * then one kernel launch each (kernels/norm.cu, kernels/pointwise.cu).
 */
#include <string.h>

#include "cuda_internal.h"

static cudaStream_t stream(td_backend *be)
{
    return td_cuda_of(be)->stream;
}

static int rows(td_backend *be, const char *op, const td_tensor *x, td_tensor *y, int64_t *m, int64_t *n)
{
    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_check_same_rows(be->ctx, op, x, y));
    *n = td_cuda_lastdim(x);
    *m = *n ? td_numel(x) / *n : 0;
    if (*m > 0x7fffffff)
        return td_fail(be->ctx, TD_EINVAL, "%s: %lld rows are past the grid's limit", op, (long long)*m);
    return 0;
}

int td_cuda_layernorm(td_backend *be, const td_tensor *x, const td_tensor *weight,
                      const td_tensor *bias, float eps, td_tensor *y)
{
    TD_TRY(td_cuda_enter(be));
    static const char op[] = "layernorm";
    int64_t m, n;
    TD_TRY(rows(be, op, x, y, &m, &n));
    if (weight)
        TD_TRY(td_check_float_vec(be->ctx, op, "weight", weight, n));
    if (bias)
        TD_TRY(td_check_float_vec(be->ctx, op, "bias", bias, n));
    return td_cuda_check(be, tdk_layernorm(stream(be), x->data, m, n, td_cuda_vec(weight),
                                           td_cuda_vec(bias), eps, y->data), op);
}

int td_cuda_rmsnorm(td_backend *be, const td_tensor *x, const td_tensor *weight, float eps, td_tensor *y)
{
    TD_TRY(td_cuda_enter(be));
    static const char op[] = "rmsnorm";
    int64_t m, n;
    TD_TRY(rows(be, op, x, y, &m, &n));
    if (weight)
        TD_TRY(td_check_float_vec(be->ctx, op, "weight", weight, n));
    return td_cuda_check(be, tdk_rmsnorm(stream(be), x->data, m, n, td_cuda_vec(weight), eps, y->data), op);
}

int td_cuda_softmax(td_backend *be, const td_tensor *x, td_tensor *y)
{
    TD_TRY(td_cuda_enter(be));
    int64_t m, n;
    TD_TRY(rows(be, "softmax", x, y, &m, &n));
    return td_cuda_check(be, tdk_softmax(stream(be), x->data, m, n, y->data), "softmax");
}

int td_cuda_channel_rmsnorm(td_backend *be, const td_tensor *x, const td_tensor *gamma,
                            const td_tensor *bias, td_tensor *y)
{
    TD_TRY(td_cuda_enter(be));
    static const char op[] = "channel_rmsnorm";
    char a[96], b[96];
    int64_t c, n;
    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    if (x->ndim < 1 || y->ndim != x->ndim || memcmp(x->shape, y->shape, sizeof(int64_t) * (size_t)x->ndim))
        return td_fail(be->ctx, TD_ESHAPE, "%s: x %s and y %s must be the same [C, ...]", op,
                       td_shape_str(x, a, sizeof(a)), td_shape_str(y, b, sizeof(b)));
    c = x->shape[0];
    n = c ? td_numel(x) / c : 0;
    TD_TRY(td_check_float_vec(be->ctx, op, "gamma", gamma, c));
    if (bias)
        TD_TRY(td_check_float_vec(be->ctx, op, "bias", bias, c));
    return td_cuda_check(be, tdk_channel_rmsnorm(stream(be), x->data, c, n, td_cuda_vec(gamma),
                                                 td_cuda_vec(bias), y->data), op);
}

static int unary(td_backend *be, const char *op, td_kunary f, const td_tensor *x, td_tensor *y)
{
    TD_TRY(td_cuda_enter(be));
    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_check_same_rows(be->ctx, op, x, y));
    return td_cuda_check(be, tdk_unary(stream(be), f, x->data, td_numel(x), y->data), op);
}

int td_cuda_gelu_tanh(td_backend *be, const td_tensor *x, td_tensor *y)
{
    return unary(be, "gelu_tanh", TD_K_GELU_TANH, x, y);
}

int td_cuda_silu(td_backend *be, const td_tensor *x, td_tensor *y)
{
    return unary(be, "silu", TD_K_SILU, x, y);
}

/* b may be an activation (bf16) or a stored vector (f32/f16) whose numel
 * divides a's; it is repeated along a. */
static int binary(td_backend *be, const char *op, td_kbinary f, const td_tensor *a, const td_tensor *b,
                  td_tensor *y)
{
    TD_TRY(td_cuda_enter(be));
    char s1[96], s2[96];
    int64_t n, nb;
    TD_TRY(td_check_act(be, op, "a", a));
    TD_TRY(td_check_act(be, op, "y", y));
    TD_TRY(td_check_same_rows(be->ctx, op, a, y));
    n = td_numel(a);
    nb = b ? td_numel(b) : 0;
    if (!b || (nb == 0 ? n != 0 : n % nb != 0))
        return td_fail(be->ctx, TD_ESHAPE, "%s: b %s does not broadcast over a %s", op,
                       b ? td_shape_str(b, s1, sizeof(s1)) : "(missing)", td_shape_str(a, s2, sizeof(s2)));
    TD_TRY(td_check_float_vec(be->ctx, op, "b", b, nb));
    return td_cuda_check(be, tdk_binary(stream(be), f, a->data, n, td_cuda_vec(b), nb, y->data), op);
}

int td_cuda_add(td_backend *be, const td_tensor *a, const td_tensor *b, td_tensor *y)
{
    return binary(be, "add", TD_K_ADD, a, b, y);
}

int td_cuda_mul(td_backend *be, const td_tensor *a, const td_tensor *b, td_tensor *y)
{
    return binary(be, "mul", TD_K_MUL, a, b, y);
}

int td_cuda_modulate(td_backend *be, const td_tensor *x, const td_tensor *shift,
                     const td_tensor *scale, td_tensor *y)
{
    TD_TRY(td_cuda_enter(be));
    static const char op[] = "modulate";
    int64_t m, c;
    TD_TRY(rows(be, op, x, y, &m, &c));
    TD_TRY(td_check_float_vec(be->ctx, op, "shift", shift, c));
    TD_TRY(td_check_float_vec(be->ctx, op, "scale", scale, c));
    return td_cuda_check(be, tdk_modulate(stream(be), x->data, m, c, td_cuda_vec(shift),
                                          td_cuda_vec(scale), y->data), op);
}

int td_cuda_add_gated(td_backend *be, td_tensor *x, const td_tensor *y, const td_tensor *gate)
{
    TD_TRY(td_cuda_enter(be));
    static const char op[] = "add_gated";
    int64_t m, c;
    TD_TRY(rows(be, op, y, x, &m, &c));
    TD_TRY(td_check_float_vec(be->ctx, op, "gate", gate, c));
    return td_cuda_check(be, tdk_add_gated(stream(be), x->data, y->data, m, c, td_cuda_vec(gate)), op);
}

int td_cuda_rope(td_backend *be, const td_tensor *x, const td_tensor *cos_t,
                 const td_tensor *sin_t, td_tensor *y)
{
    TD_TRY(td_cuda_enter(be));
    static const char op[] = "rope";
    char s1[96], s2[96];
    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    if (x->ndim != 3 || y->ndim != 3 || x->shape[0] != y->shape[0] || x->shape[1] != y->shape[1] ||
        x->shape[2] != y->shape[2] || x->shape[2] % 2)
        return td_fail(be->ctx, TD_ESHAPE, "%s: x %s and y %s must be the same [S, H, D] with D even",
                       op, td_shape_str(x, s1, sizeof(s1)), td_shape_str(y, s2, sizeof(s2)));
    TD_TRY(td_check_float_vec(be->ctx, op, "cos", cos_t, x->shape[0] * (x->shape[2] / 2)));
    TD_TRY(td_check_float_vec(be->ctx, op, "sin", sin_t, x->shape[0] * (x->shape[2] / 2)));
    return td_cuda_check(be, tdk_rope(stream(be), x->data, x->shape[0], x->shape[1], x->shape[2],
                                      td_cuda_vec(cos_t), td_cuda_vec(sin_t), y->data), op);
}

int td_cuda_upsample_nearest(td_backend *be, const td_tensor *x, int fh, int fw, td_tensor *y)
{
    TD_TRY(td_cuda_enter(be));
    static const char op[] = "upsample_nearest";
    char s1[96], s2[96];
    int nd = x ? x->ndim : 0;
    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    if (nd < 2 || y->ndim != nd || fh < 1 || fw < 1 || y->shape[nd - 2] != x->shape[nd - 2] * fh ||
        y->shape[nd - 1] != x->shape[nd - 1] * fw || td_numel(y) != td_numel(x) * fh * fw)
        return td_fail(be->ctx, TD_ESHAPE, "%s: y %s is not x %s upsampled by %dx%d", op,
                       td_shape_str(y, s1, sizeof(s1)), td_shape_str(x, s2, sizeof(s2)), fh, fw);
    {
        int64_t h = x->shape[nd - 2], w = x->shape[nd - 1], lead = h * w != 0 ? td_numel(x) / (h * w) : 0;
        return td_cuda_check(be, tdk_upsample_nearest(stream(be), x->data, lead, h, w, fh, fw, y->data), op);
    }
}

int td_cuda_clamp(td_backend *be, const td_tensor *x, float lo, float hi, td_tensor *y)
{
    TD_TRY(td_cuda_enter(be));
    TD_TRY(td_check_clamp(be, x, lo, hi, y));
    return td_cuda_check(be, tdk_clamp(stream(be), x->data, td_numel(x), lo, hi, y->data), "clamp");
}

int td_cuda_scale_shift(td_backend *be, const td_tensor *x, const td_tensor *scale,
                        const td_tensor *shift, td_tensor *y)
{
    int64_t c;
    TD_TRY(td_cuda_enter(be));
    TD_TRY(td_check_scale_shift(be, x, scale, shift, y));
    c = x->shape[0];
    if (td_numel(x) == 0)
        return 0;
    return td_cuda_check(be, tdk_scale_shift(stream(be), x->data, c, td_numel(x) / c, td_cuda_vec(scale),
                                             td_cuda_vec(shift), y->data), "scale_shift");
}
