/*
 * The DiT's architecture from tensor shapes:
 *   dim, patch, C_in  patch_embedding.weight: [dim, C_in, pt, ph, pw] (a
 *                     Conv3d: Wan, ComfyUI, diffusers) or [dim, C_in*pt*ph*pw]
 *                     (TurboDiffusion's nn.Linear; patch (1, 2, 2), the only
 *                     one Wan uses, since the flat shape cannot tell);
 *   layers            blocks.N present for N = 0, 1, ... (their modulation);
 *   ffn_dim           the FFN's first linear's rows;
 *   text_dim, freq    the text / time MLPs' first linears' columns;
 *   C_out             head rows / (pt * ph * pw).
 * Heads cannot be read from shapes (q, k, v are [dim, dim] whatever the
 * split): Wan fixes head_dim = 128 (1.3B: 1536 = 12 x 128; 14B: 5120 =
 * 40 x 128), so heads = dim / 128 unless opts->heads says otherwise.
 * 36 input channels is Wan2.2 A14B I2V (16 noisy + 4 mask + 16 image
 * latents, concatenated by the caller); 48 in and out is Wan2.2 TI2V-5B
 * (dim 3072, 30 layers, 24 heads: the Wan2.2 VAE's latents, the image as
 * the first latent frame); Wan2.1 I2V's CLIP image branch (img_emb) is not
 * supported.
 */
#include <stdio.h>

#include "dit_internal.h"

/* The weight (or Int8Linear int8_weight) of module `base`. */
static int find_linear_weight(const td_weights *w, const char *base, const td_tensor **out)
{
    char name[256];
    snprintf(name, sizeof(name), "%s.weight", base);
    *out = td_weights_find(w, name);
    if (!*out) {
        snprintf(name, sizeof(name), "%s.int8_weight", base);
        *out = td_weights_find(w, name);
    }
    return *out != NULL;
}

/* The shape of module k's 2-D weight, and its dtype. */
static int linear_shape(td_ctx *ctx, const td_weights *w, td_dit_layout l, td_dit_key k,
                        int64_t *rows, int64_t *cols, td_dtype *dtype)
{
    char base[200], s[96];
    const td_tensor *t;
    td_dit_key_name(l, k, 0, base, sizeof(base));
    if (!find_linear_weight(w, base, &t))
        return td_fail(ctx, TD_ENOTFOUND, "%s: DiT tensor %s.weight not found",
                       td_weights_path(w), base);
    if (t->ndim != 2)
        return td_fail(ctx, TD_ESHAPE, "%s: %s.weight is %s, expected a 2-D linear weight",
                       td_weights_path(w), base, td_shape_str(t, s, sizeof(s)));
    *rows = t->shape[0];
    *cols = t->shape[1];
    *dtype = t->dtype;
    return 0;
}

int td_dit_read_config(td_ctx *ctx, const td_weights *w, td_dit_layout l,
                       const td_dit_opts *opts, td_dit_config *cfg)
{
    const char *path = td_weights_path(w);
    char name[200], s[96];
    const td_tensor *pe;
    int64_t rows, cols, np;
    td_dtype dt;

    *cfg = (td_dit_config){ 0 };
    if (td_weights_has_prefix(w, "img_emb."))
        return td_fail(ctx, TD_EUNSUPPORTED, "%s: has img_emb (Wan2.1 I2V CLIP branch), "
                       "which is not supported; Wan2.2 A14B I2V is", path);
    pe = td_weights_find(w, "patch_embedding.weight");
    if (!pe)
        return td_fail(ctx, TD_ENOTFOUND, "%s: DiT tensor patch_embedding.weight not found", path);
    if (pe->ndim == 5) {
        cfg->in_ch = (int)pe->shape[1];
        for (int i = 0; i < 3; i++)
            cfg->patch[i] = (int)pe->shape[2 + i];
    } else if (pe->ndim == 2 && pe->shape[1] % 4 == 0) {
        cfg->in_ch = (int)(pe->shape[1] / 4);
        cfg->patch[0] = 1;
        cfg->patch[1] = cfg->patch[2] = 2;
    } else {
        return td_fail(ctx, TD_ESHAPE, "%s: patch_embedding.weight is %s, expected "
                       "[dim, C_in, pt, ph, pw] or [dim, 4 * C_in]", path, td_shape_str(pe, s, sizeof(s)));
    }
    cfg->dim = (int)pe->shape[0];
    np = (int64_t)cfg->patch[0] * cfg->patch[1] * cfg->patch[2];
    if (cfg->dim <= 0 || cfg->in_ch <= 0 || np <= 0)
        return td_fail(ctx, TD_ESHAPE, "%s: patch_embedding.weight %s has an empty dim", path,
                       td_shape_str(pe, s, sizeof(s)));

    while (td_weights_find(w, td_dit_key_name(l, DK_MOD, cfg->layers, name, sizeof(name))))
        cfg->layers++;
    if (cfg->layers == 0)
        return td_fail(ctx, TD_ENOTFOUND, "%s: DiT tensor %s not found (no blocks)", path,
                       td_dit_key_name(l, DK_MOD, 0, name, sizeof(name)));

    TD_TRY(linear_shape(ctx, w, l, DK_FFN0, &rows, &cols, &dt));
    cfg->ffn_dim = (int)rows;
    cfg->wdtype = dt;
    TD_TRY(linear_shape(ctx, w, l, DK_TEXT0, &rows, &cols, &dt));
    cfg->text_dim = (int)cols;
    if (cfg->wdtype == TD_I8)
        cfg->wdtype = dt;
    TD_TRY(linear_shape(ctx, w, l, DK_TIME0, &rows, &cols, &dt));
    cfg->freq_dim = (int)cols;
    if (cfg->freq_dim % 2)
        return td_fail(ctx, TD_ESHAPE, "%s: time embedding width %d must be even", path, cfg->freq_dim);
    TD_TRY(linear_shape(ctx, w, l, DK_HEAD, &rows, &cols, &dt));
    if (rows % np)
        return td_fail(ctx, TD_ESHAPE, "%s: head has %lld rows, not a multiple of the patch size %lld",
                       path, (long long)rows, (long long)np);
    cfg->out_ch = (int)(rows / np);

    cfg->heads = opts && opts->heads > 0 ? opts->heads : cfg->dim / 128;
    if (cfg->heads <= 0 || cfg->dim % cfg->heads)
        return td_fail(ctx, TD_EINVAL, "%s: dim %d cannot be split into %d heads%s", path, cfg->dim,
                       cfg->heads, opts && opts->heads > 0 ? "" : " (default head_dim 128; pass the head count)");
    cfg->head_dim = cfg->dim / cfg->heads;
    if (cfg->head_dim % 2 || cfg->head_dim < 6)
        return td_fail(ctx, TD_EINVAL, "%s: head_dim %d (dim %d / %d heads) must be even and >= 6 for 3-D RoPE",
                       path, cfg->head_dim, cfg->dim, cfg->heads);
    cfg->i2v = cfg->in_ch == 36;
    cfg->ti2v = cfg->in_ch == 48 && cfg->out_ch == 48;
    td_dit_key_name(l, DK_SA_Q, 0, name, sizeof(name));
    {
        char q8[220];
        snprintf(q8, sizeof(q8), "%s.int8_weight", name);
        cfg->quant = td_weights_find(w, q8) != NULL;
    }
    td_dit_key_name(l, DK_PROJ_L, 0, name, sizeof(name));
    cfg->has_proj_l = l == TD_DIT_KEYS_WAN && td_weights_has_prefix(w, name);
    return 0;
}
