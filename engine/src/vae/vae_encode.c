/*
 * Encode as Wan does: the first frame alone, then 4 frames per chunk, the
 * causal caches carrying context; quant_conv (1x1x1) per chunk; the mean
 * half of its output (the posterior mode) normalised per channel.
 */
#include <string.h>

#include "vae_internal.h"

int td_vae_encode(td_vae *vae, const td_tensor *frames, td_tensor *out)
{
    static const td_conv3d_params p1 = { { 1, 1, 1 }, 0, 0, 0, 0 };
    const vae_net *net = &vae->enc;
    int64_t tf, sf, nf, H, W, h, w, T, plane, lplane, t0 = 0, lt0 = 0;
    vae_state st = { 0 };
    td_tensor chunk = { 0 }, y = { 0 }, q = { 0 };
    char s[96];
    int rc;

    if (!vae->has_encoder)
        return td_fail(vae->ctx, TD_ENOTFOUND, "%s: holds no encoder tensors ('encoder.*')",
                       td_weights_path(vae->weights));
    tf = net->tfactor;
    sf = net->sfactor;
    if (!frames || frames->dtype != TD_F32 || frames->ndim != 4 || !td_is_contiguous(frames) ||
        frames->shape[0] != net->cin || frames->shape[1] < 1 || (frames->shape[1] - 1) % tf ||
        frames->shape[2] < sf || frames->shape[2] % sf || frames->shape[3] < sf || frames->shape[3] % sf)
        return td_fail(vae->ctx, TD_ESHAPE,
                       "vae: frames %s must be contiguous f32 [%lld, 1 + %lld*k, H, W] with H and W multiples of %lld",
                       frames ? td_shape_str(frames, s, sizeof(s)) : "(none)", (long long)net->cin,
                       (long long)tf, (long long)sf);
    nf = frames->shape[1];
    H = frames->shape[2];
    W = frames->shape[3];
    h = H / sf;
    w = W / sf;
    T = 1 + (nf - 1) / tf;
    plane = H * W;
    lplane = h * w;
    TD_TRY(td_tensor_new(vae->ctx, out, TD_F32, 4, (int64_t[]){ TD_VAE_Z, T, h, w }));
    rc = vae_state_init(vae->ctx, &st, net->nslots);
    while (rc == 0 && t0 < nf) {
        int64_t n = t0 == 0 ? 1 : tf, lt;
        rc = td_tensor_new(vae->ctx, &chunk, TD_F32, 4, (int64_t[]){ net->cin, n, H, W });
        for (int64_t c = 0; rc == 0 && c < net->cin; c++)
            memcpy((float *)chunk.data + c * n * plane, (const float *)frames->data + (c * nf + t0) * plane,
                   (size_t)(n * plane) * sizeof(float));
        if (rc == 0)
            rc = vae_net_chunk(vae, net, &st, &chunk, &y);
        td_tensor_free(&chunk);
        if (rc == 0)
            rc = vae_conv_new(vae, &y, &vae->quant, &p1, &q);
        td_tensor_free(&y);
        if (rc < 0)
            break;
        lt = q.shape[1];
        if (lt0 + lt > T || q.shape[2] != h || q.shape[3] != w) {
            rc = td_fail(vae->ctx, TD_ESHAPE, "vae: encoder chunk %s does not fit latents [%d, %lld, %lld, %lld]",
                         td_shape_str(&q, s, sizeof(s)), TD_VAE_Z, (long long)T, (long long)h, (long long)w);
            td_tensor_free(&q);
            break;
        }
        for (int64_t c = 0; c < TD_VAE_Z; c++) {
            const float *src = (const float *)q.data + c * lt * lplane;
            float *dst = (float *)out->data + (c * T + lt0) * lplane;
            for (int64_t i = 0; i < lt * lplane; i++)
                dst[i] = (src[i] - vae->mean[c]) * vae->inv_std[c];
        }
        td_tensor_free(&q);
        lt0 += lt;
        t0 += n;
    }
    vae_state_free(&st);
    if (rc == 0 && lt0 != T)
        rc = td_fail(vae->ctx, TD_ESHAPE, "vae: encoder made %lld latent frames, expected %lld",
                     (long long)lt0, (long long)T);
    if (rc < 0)
        td_tensor_free(out);
    return rc;
}
