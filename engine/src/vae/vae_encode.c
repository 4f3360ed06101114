/*
 * Encode as Wan does: the first frame alone, then 4 frames per chunk, the
 * causal caches carrying context; quant_conv (1x1x1) per chunk; the mean
 * half of its output (the posterior mode) normalised per channel. Chunks
 * are backend copies of time slices of the frames (Wan2.2: folded into its
 * 2x2 pixel patch by the same copy); the latents stay on the backend.
 */
#include "vae_internal.h"

/* Frames [t0, t0 + n) as the encoder's input chunk: *chunk new. */
static int input_chunk(td_vae *vae, const td_tensor *frames, int64_t t0, int64_t n, td_tensor *chunk)
{
    td_tensor slice;
    int rc;
    if (vae->patch > 1) {
        TD_TRY(td_tensor_slice(vae->ctx, frames, 1, t0, n, &slice));
        return td_vae_patchify(vae, &slice, chunk);
    }
    TD_TRY(td_vae_act_new(vae, chunk, frames->shape[0], n, frames->shape[2], frames->shape[3]));
    rc = td_vae_copy_frames(vae, chunk, 0, frames, t0, n);
    if (rc < 0)
        td_vae_act_free(vae, chunk);
    return rc;
}

/* Frames [t0, t0 + n) through the encoder and quant_conv: *q [2z, lt, h, w]. */
static int encode_chunk(td_vae *vae, vae_state *st, const td_tensor *frames, int64_t t0, int64_t n,
                        td_tensor *q)
{
    static const td_conv3d_params p1 = { { 1, 1, 1 }, 0, 0, 0, 0 };
    const vae_net *net = &vae->enc;
    td_tensor chunk = { 0 }, y = { 0 };
    int rc;
    TD_TRY(input_chunk(vae, frames, t0, n, &chunk));
    rc = td_vae_net_chunk(vae, net, st, &chunk, &y);
    td_vae_act_free(vae, &chunk);
    if (rc == 0)
        rc = td_vae_conv_new(vae, &y, &vae->quant, &p1, q);
    td_vae_act_free(vae, &y);
    return rc;
}

/* The mean half of q [2z, lt, h, w], normalised in place ((mu - mean) *
 * inv_std, in two exact steps), into latent frames [lt0, lt0 + lt) of out. */
static int store_latents(td_vae *vae, td_tensor *q, td_tensor *out, int64_t lt0)
{
    td_backend *be = vae->be;
    td_tensor mu;
    TD_TRY(td_tensor_slice(vae->ctx, q, 0, 0, vae->z, &mu));
    TD_TRY(be->ops->scale_shift(be, &mu, &vae->stat[VAE_ONE], &vae->stat[VAE_NEG_MEAN], &mu));
    TD_TRY(be->ops->scale_shift(be, &mu, &vae->stat[VAE_INV_STD], &vae->stat[VAE_ZERO], &mu));
    return td_vae_copy_frames(vae, out, lt0, &mu, 0, mu.shape[1]);
}

int td_vae_encode(td_vae *vae, const td_tensor *frames, td_tensor *out)
{
    const vae_net *net = &vae->enc;
    int64_t tf, sf, ch, nf, h, w, T, t0 = 0, lt0 = 0;
    vae_state st = { 0 };
    td_tensor q = { 0 };
    char s[96];
    int rc;

    if (!vae->has_encoder)
        return td_fail(vae->ctx, TD_ENOTFOUND, "%s: holds no encoder tensors ('encoder.*')",
                       td_weights_path(vae->weights));
    tf = net->tfactor;
    sf = net->sfactor * vae->patch;
    ch = net->cin / (vae->patch * vae->patch);
    if (!frames || !vae_is_float(frames->dtype) || frames->ndim != 4 || frames->shape[0] != ch ||
        frames->shape[1] < 1 || (frames->shape[1] - 1) % tf || frames->shape[2] < sf || frames->shape[2] % sf ||
        frames->shape[3] < sf || frames->shape[3] % sf)
        return td_fail(vae->ctx, TD_ESHAPE,
                       "vae: frames %s must be float [%lld, 1 + %lld*k, H, W] with H and W multiples of %lld",
                       frames ? td_shape_str(frames, s, sizeof(s)) : "(none)", (long long)ch,
                       (long long)tf, (long long)sf);
    nf = frames->shape[1];
    h = frames->shape[2] / sf;
    w = frames->shape[3] / sf;
    T = 1 + (nf - 1) / tf;
    TD_TRY(td_vae_act_new(vae, out, vae->z, T, h, w));
    rc = td_vae_state_init(vae->ctx, &st, net->nslots);
    while (rc == 0 && t0 < nf) {
        int64_t n = t0 == 0 ? 1 : tf;
        rc = encode_chunk(vae, &st, frames, t0, n, &q);
        if (rc == 0 && (lt0 + q.shape[1] > T || q.shape[2] != h || q.shape[3] != w))
            rc = td_fail(vae->ctx, TD_ESHAPE, "vae: encoder chunk %s does not fit latents [%lld, %lld, %lld, %lld]",
                         td_shape_str(&q, s, sizeof(s)), (long long)vae->z, (long long)T, (long long)h, (long long)w);
        if (rc == 0)
            rc = store_latents(vae, &q, out, lt0);
        if (rc == 0)
            lt0 += q.shape[1];
        td_vae_act_free(vae, &q);
        t0 += n;
    }
    td_vae_state_free(vae, &st);
    if (rc == 0 && lt0 != T)
        rc = td_fail(vae->ctx, TD_ESHAPE, "vae: encoder made %lld latent frames, expected %lld",
                     (long long)lt0, (long long)T);
    if (rc < 0)
        td_vae_act_free(vae, out);
    return rc;
}
