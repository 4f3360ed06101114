/*
 * Attention on the CUDA backend: the checks of the CPU op, then the online-
 * softmax kernel of kernels/attention.cu (head dims up to 512: the VAE's
 * middle attention has head dim = channels).
 */
#include "cuda_internal.h"

static int check_shd(td_backend *be, const char *name, const td_tensor *t)
{
    char s[96];
    TD_TRY(td_check_act(be, "attention", name, t));
    if (t->ndim != 3)
        return td_fail(be->ctx, TD_ESHAPE, "attention: %s %s must be [S, H, D]", name,
                       td_shape_str(t, s, sizeof(s)));
    return 0;
}

int td_cuda_attention(td_backend *be, const td_tensor *q, const td_tensor *k,
                      const td_tensor *v, const td_tensor *bias, float scale,
                      int64_t kv_len, td_tensor *out)
{
    TD_TRY(td_cuda_enter(be));
    char s1[96];
    int64_t sq, sk, h, d, dv;

    TD_TRY(check_shd(be, "q", q));
    TD_TRY(check_shd(be, "k", k));
    TD_TRY(check_shd(be, "v", v));
    TD_TRY(check_shd(be, "out", out));
    sq = q->shape[0];
    sk = k->shape[0];
    h = q->shape[1];
    d = q->shape[2];
    dv = v->shape[2];
    if (bias)
        TD_TRY(td_check_float_vec(be->ctx, "attention", "bias", bias, h * sq * sk));
    TD_TRY(td_check_attention(be->ctx, q, k, v, bias, kv_len, out));
    if (sq == 0 || h == 0 || dv == 0)
        return 0;
    if (sk == 0)
        return td_fail(be->ctx, TD_ESHAPE, "attention: no keys (k %s)", td_shape_str(k, s1, sizeof(s1)));
    if (d % 2 || dv % 2 || d > 512 || dv > 512 || h > 65535 || (sq + 7) / 8 > 0x7fffffff)
        return td_cuda_unsupported(be, "attention", "head dims must be even and at most 512, heads at most 65535");
    return td_cuda_check(be, tdk_attention(td_cuda_of(be)->stream, q->data, k->data, v->data,
                                           td_cuda_vec(bias), scale, sq, sk, kv_len > 0 ? kv_len : sk,
                                           h, d, dv, out->data), "attention");
}
