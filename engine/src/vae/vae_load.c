/*
 * The VAE's architecture from its weight file. Two naming families exist:
 * Wan's own (Wan2.1_VAE.pth, Wan2.2_VAE.pth; ComfyUI's wan_2.1_vae and
 * wan2.2_vae.safetensors keep them)
 *   encoder.conv1, encoder.downsamples.N, encoder.middle.{0,1,2},
 *   encoder.head.{0,2}, conv1, conv2, decoder.conv1, decoder.middle.N,
 *   decoder.upsamples.N (flat), decoder.head.{0,2};
 *   residual blocks: residual.{0,3}.gamma, residual.{2,6}, shortcut;
 * and diffusers' AutoencoderKLWan
 *   encoder.conv_in, encoder.down_blocks.N, encoder.mid_block.{resnets,
 *   attentions}.N, encoder.norm_out, encoder.conv_out, quant_conv,
 *   post_quant_conv, decoder.conv_in, decoder.mid_block, decoder.up_blocks.
 *   I.{resnets.J, upsamplers.0}, decoder.norm_out, decoder.conv_out;
 *   residual blocks: norm{1,2}.gamma, conv{1,2}, conv_shortcut.
 * Wan2.2 nests its residual down / up blocks one level deeper:
 *   Wan: encoder.downsamples.I.downsamples.J, decoder.upsamples.I.upsamples.J
 *   (residual blocks, the resample last);
 *   diffusers: encoder.down_blocks.I.{resnets.J, downsampler},
 *   decoder.up_blocks.I.{resnets.J, upsampler}.
 * Attention (norm.gamma, to_qkv, proj) and resample (resample.1, time_conv)
 * names are shared. Widths come from weight shapes; a block's kind from
 * which of its keys exist; a resample moves time when it has a time_conv;
 * the 2x2 pixel patch from the 12 channels the nets take and give.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vae_internal.h"

typedef struct vae_names {
    const char *enc_in, *enc_norm, *enc_out, *dec_in, *dec_norm, *dec_out;
    const char *quant, *post_quant;
    const char *enc_mid[3], *dec_mid[3];
    const char *norm1, *conv1, *norm2, *conv2, *shortcut;
} vae_names;

static const vae_names wan_names = {
    "encoder.conv1", "encoder.head.0.gamma", "encoder.head.2",
    "decoder.conv1", "decoder.head.0.gamma", "decoder.head.2",
    "conv1", "conv2",
    { "encoder.middle.0", "encoder.middle.1", "encoder.middle.2" },
    { "decoder.middle.0", "decoder.middle.1", "decoder.middle.2" },
    "residual.0.gamma", "residual.2", "residual.3.gamma", "residual.6", "shortcut",
};

static const vae_names diffusers_names = {
    "encoder.conv_in", "encoder.norm_out.gamma", "encoder.conv_out",
    "decoder.conv_in", "decoder.norm_out.gamma", "decoder.conv_out",
    "quant_conv", "post_quant_conv",
    { "encoder.mid_block.resnets.0", "encoder.mid_block.attentions.0", "encoder.mid_block.resnets.1" },
    { "decoder.mid_block.resnets.0", "decoder.mid_block.attentions.0", "decoder.mid_block.resnets.1" },
    "norm1.gamma", "conv1", "norm2.gamma", "conv2", "conv_shortcut",
};

/* The per-channel latent statistics: Wan2.1's (wan/modules/vae.py) and
 * Wan2.2's (wan/modules/vae2_2.py), as diffusers' latents_mean /
 * latents_std have them. The latent width picks the set. */
static const float wan21_mean[16] = {
    -0.7571f, -0.7089f, -0.9113f, 0.1075f, -0.1745f, 0.9653f, -0.1517f, 1.5508f,
    0.4134f, -0.0715f, 0.5517f, -0.3632f, -0.1922f, -0.9497f, 0.2503f, -0.2921f,
};
static const float wan21_std[16] = {
    2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f, 2.6052f, 2.0743f,
    3.2687f, 2.1526f, 2.8652f, 1.5579f, 1.6382f, 1.1253f, 2.8251f, 1.9160f,
};
static const float wan22_mean[48] = {
    -0.2289f, -0.0052f, -0.1323f, -0.2339f, -0.2799f, 0.0174f, 0.1838f, 0.1557f,
    -0.1382f, 0.0542f, 0.2813f, 0.0891f, 0.1570f, -0.0098f, 0.0375f, -0.1825f,
    -0.2246f, -0.1207f, -0.0698f, 0.5109f, 0.2665f, -0.2108f, -0.2158f, 0.2502f,
    -0.2055f, -0.0322f, 0.1109f, 0.1567f, -0.0729f, 0.0899f, -0.2799f, -0.1230f,
    -0.0313f, -0.1649f, 0.0117f, 0.0723f, -0.2839f, -0.2083f, -0.0520f, 0.3748f,
    0.0152f, 0.1957f, 0.1433f, -0.2944f, 0.3573f, -0.0548f, -0.1681f, -0.0667f,
};
static const float wan22_std[48] = {
    0.4765f, 1.0364f, 0.4514f, 1.1677f, 0.5313f, 0.4990f, 0.4818f, 0.5013f,
    0.8158f, 1.0344f, 0.5894f, 1.0901f, 0.6885f, 0.6165f, 0.8454f, 0.4978f,
    0.5759f, 0.3523f, 0.7135f, 0.6804f, 0.5833f, 1.4146f, 0.8986f, 0.5659f,
    0.7069f, 0.5338f, 0.4889f, 0.4917f, 0.4069f, 0.4999f, 0.6866f, 0.4093f,
    0.5709f, 0.6065f, 0.6415f, 0.4944f, 0.5726f, 1.2042f, 0.5458f, 1.6887f,
    0.3971f, 1.0600f, 0.3943f, 0.5537f, 0.5444f, 0.4089f, 0.7468f, 0.7744f,
};

#define NAME_MAX_LEN 256

/* A key name into buf (NAME_MAX_LEN bytes; a longer one is cut, and then
 * found in no file). */
static void name_of(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, NAME_MAX_LEN, fmt, ap);
    va_end(ap);
}

static int has_key(const td_vae *vae, const char *prefix, const char *suffix)
{
    char name[NAME_MAX_LEN];
    name_of(name, "%s.%s", prefix, suffix);
    return td_weights_find(vae->weights, name) != NULL;
}

/* A weight of the file made usable by the backend (uploaded once). */
static int upload(td_vae *vae, const td_tensor *host, td_tensor *dev)
{
    return vae->be->ops->upload(vae->be, host, dev);
}

/* kt == 0: a 2-D conv [co, ci, kh, kw], viewed as [co, ci, 1, kh, kw].
 * co < 0 accepts any output width (read from the file). */
static int load_conv(td_vae *vae, vae_conv *c, const char *prefix, int64_t co, int64_t ci,
                     int kt, int kh, int kw)
{
    td_tensor w, w5, b;
    if (kt == 0) {
        TD_TRY(td_weights_getf(vae->ctx, vae->weights, &w, 4, (int64_t[]){ co, ci, kh, kw },
                               "%s.weight", prefix));
        TD_TRY(td_tensor_reshape(vae->ctx, &w, 5, (int64_t[]){ w.shape[0], ci, 1, kh, kw }, &w5));
    } else {
        TD_TRY(td_weights_getf(vae->ctx, vae->weights, &w5, 5,
                               (int64_t[]){ co, ci, kt, kh, kw }, "%s.weight", prefix));
    }
    if (!td_is_contiguous(&w5))
        return td_fail(vae->ctx, TD_EFORMAT, "%s: tensor '%s.weight' is not contiguous",
                       td_weights_path(vae->weights), prefix);
    TD_TRY(td_weights_getf(vae->ctx, vae->weights, &b, 1, (int64_t[]){ w5.shape[0] },
                           "%s.bias", prefix));
    TD_TRY(upload(vae, &w5, &c->w));
    return upload(vae, &b, &c->b);
}

/* RMS-norm gammas are stored [C], [C,1,1] or [C,1,1,1]; read as [C]. */
static int load_gamma(td_vae *vae, td_tensor *g, int64_t c, const char *fmt, ...)
{
    char name[NAME_MAX_LEN], s[96];
    const td_tensor *t;
    td_tensor flat;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    t = td_weights_find(vae->weights, name);
    if (!t)
        return td_fail(vae->ctx, TD_ENOTFOUND, "%s: tensor '%s' not found",
                       td_weights_path(vae->weights), name);
    if (t->ndim < 1 || t->shape[0] != c || td_numel(t) != c || !td_is_contiguous(t))
        return td_fail(vae->ctx, TD_ESHAPE, "%s: tensor '%s' has shape %s, expected [%lld] (or [%lld,1,1[,1]])",
                       td_weights_path(vae->weights), name, td_shape_str(t, s, sizeof(s)),
                       (long long)c, (long long)c);
    TD_TRY(td_tensor_reshape(vae->ctx, t, 1, (int64_t[]){ c }, &flat));
    return upload(vae, &flat, g);
}

static int load_res(td_vae *vae, const vae_names *nm, vae_layer *l, const char *p)
{
    char name[NAME_MAX_LEN];
    l->kind = VAE_RES;
    TD_TRY(load_gamma(vae, &l->norm1, l->cin, "%s.%s", p, nm->norm1));
    name_of(name, "%s.%s", p, nm->conv1);
    TD_TRY(load_conv(vae, &l->conv1, name, -1, l->cin, 3, 3, 3));
    l->cout = l->conv1.w.shape[0];
    TD_TRY(load_gamma(vae, &l->norm2, l->cout, "%s.%s", p, nm->norm2));
    name_of(name, "%s.%s", p, nm->conv2);
    TD_TRY(load_conv(vae, &l->conv2, name, l->cout, l->cout, 3, 3, 3));
    l->has_shortcut = l->cin != l->cout;
    if (l->has_shortcut) {
        name_of(name, "%s.%s", p, nm->shortcut);
        TD_TRY(load_conv(vae, &l->shortcut, name, l->cout, l->cin, 1, 1, 1));
    }
    return 0;
}

static int load_attn(td_vae *vae, vae_layer *l, const char *p)
{
    char name[NAME_MAX_LEN];
    l->kind = VAE_ATTN;
    l->cout = l->cin;
    TD_TRY(load_gamma(vae, &l->norm1, l->cin, "%s.norm.gamma", p));
    name_of(name, "%s.to_qkv", p);
    TD_TRY(load_conv(vae, &l->conv1, name, 3 * l->cin, l->cin, 0, 1, 1));
    name_of(name, "%s.proj", p);
    return load_conv(vae, &l->conv2, name, l->cin, l->cin, 0, 1, 1);
}

static int load_resample(td_vae *vae, vae_layer *l, const char *p, int up)
{
    char name[NAME_MAX_LEN];
    int timed = has_key(vae, p, "time_conv.weight");
    name_of(name, "%s.resample.1", p);
    TD_TRY(load_conv(vae, &l->conv1, name, up ? -1 : l->cin, l->cin, 0, 3, 3));
    l->cout = l->conv1.w.shape[0];
    name_of(name, "%s.time_conv", p);
    if (up) {
        l->kind = timed ? VAE_UP3D : VAE_UP2D;
        if (timed)
            TD_TRY(load_conv(vae, &l->conv2, name, 2 * l->cin, l->cin, 3, 1, 1));
    } else {
        l->kind = timed ? VAE_DOWN3D : VAE_DOWN2D;
        if (timed)
            TD_TRY(load_conv(vae, &l->conv2, name, l->cin, l->cin, 3, 1, 1));
    }
    return 0;
}

static void layer_free(td_backend *be, vae_layer *l);

/* A new zeroed layer at the end of *list (a net's or a block's). */
static int grow(td_vae *vae, vae_layer **list, int *n, vae_layer **l)
{
    vae_layer *grown = realloc(*list, (size_t)(*n + 1) * sizeof(*grown));
    if (!grown)
        return td_fail(vae->ctx, TD_ENOMEM, "vae: layer list");
    *list = grown;
    *l = &grown[(*n)++];
    memset(*l, 0, sizeof(**l));
    return 0;
}

static int is_resample(int kind)
{
    return kind == VAE_UP2D || kind == VAE_UP3D || kind == VAE_DOWN2D || kind == VAE_DOWN3D;
}

/* Append the layer at prefix p (kind from its keys) to *list; net counts
 * the cache slots and factors, *c carries the running channel count.
 * Returns 1 when p names no block. */
static int add_layer(td_vae *vae, const vae_names *nm, vae_net *net, vae_layer **list, int *n,
                     const char *p, int up, int64_t *c)
{
    vae_layer *l = NULL;
    int kind;
    if (has_key(vae, p, "to_qkv.weight"))
        kind = VAE_ATTN;
    else if (has_key(vae, p, "resample.1.weight"))
        kind = up ? VAE_UP2D : VAE_DOWN2D;
    else if (has_key(vae, p, nm->norm1))
        kind = VAE_RES;
    else
        return 1;
    TD_TRY(grow(vae, list, n, &l));
    l->cin = *c;
    l->slot = net->nslots;
    if (kind == VAE_ATTN)
        TD_TRY(load_attn(vae, l, p));
    else if (kind == VAE_RES)
        TD_TRY(load_res(vae, nm, l, p));
    else
        TD_TRY(load_resample(vae, l, p, up));
    net->nslots += l->kind == VAE_RES ? 2 : l->kind == VAE_UP3D || l->kind == VAE_DOWN3D ? 1 : 0;
    if (is_resample(l->kind))
        net->sfactor *= 2;
    if (l->kind == VAE_UP3D || l->kind == VAE_DOWN3D)
        net->tfactor *= 2;
    *c = l->cout;
    return 0;
}

/* The shortcut of a Wan2.2 block from its resample (the last sub-layer):
 * cells of 2 (time, when it moves time) x 2 x 2, or 1x1x1 without one.
 * Down: cin * cells channels averaged in groups down to cout; up (only
 * when it resamples): cout * cells channels made of each input channel
 * repeated. */
static int block_shortcut(td_vae *vae, vae_layer *g, const char *p)
{
    const vae_layer *last = &g->sub[g->nsub - 1];
    int64_t cells, group;
    float inv;
    td_tensor host;
    g->fs = is_resample(last->kind) ? 2 : 1;
    g->ft = last->kind == VAE_UP3D || last->kind == VAE_DOWN3D ? 2 : 1;
    cells = (int64_t)g->ft * g->fs * g->fs;
    if (g->kind == VAE_UPBLOCK) {
        g->has_dup = is_resample(last->kind);
        if (g->has_dup && (g->cout * cells) % g->cin)
            return td_fail(vae->ctx, TD_EUNSUPPORTED, "%s: block '%s' upsamples %lld to %lld channels: %lld x %lld is not a multiple of %lld for its duplicating shortcut",
                           td_weights_path(vae->weights), p, (long long)g->cin, (long long)g->cout,
                           (long long)g->cout, (long long)cells, (long long)g->cin);
        return 0;
    }
    if ((g->cin * cells) % g->cout)
        return td_fail(vae->ctx, TD_EUNSUPPORTED, "%s: block '%s' downsamples %lld to %lld channels: %lld x %lld is not a multiple of %lld for its averaging shortcut",
                       td_weights_path(vae->weights), p, (long long)g->cin, (long long)g->cout,
                       (long long)g->cin, (long long)cells, (long long)g->cout);
    group = g->cin * cells / g->cout;
    inv = 1.0f / (float)group;
    host = td_view1(&inv, TD_F32, 1);
    TD_TRY(vae->be->ops->tensor_new(vae->be, &g->inv_group, vae->be->act, 1, (int64_t[]){ 1 }));
    return vae->be->ops->write(vae->be, &g->inv_group, &host);
}

/* A Wan2.2 residual down / up block at p: sub-layers named by sub_fmt
 * (with p and an index) until one is missing, then, in diffusers' layout,
 * the resample named by resample (NULL in Wan's, where it is the last
 * indexed sub-layer). */
static int add_block(td_vae *vae, const vae_names *nm, vae_net *net, const char *p, int up,
                     const char *sub_fmt, const char *resample, int64_t *c)
{
    char sp[NAME_MAX_LEN];
    vae_layer *g = NULL, *sub = NULL;
    int nsub = 0, rc = 0;
    int64_t cin = *c;
    for (int j = 0; rc == 0; j++) {
        name_of(sp, sub_fmt, p, j);
        rc = add_layer(vae, nm, net, &sub, &nsub, sp, up, c);
    }
    if (rc == 1 && resample) {
        name_of(sp, "%s.%s", p, resample);
        rc = add_layer(vae, nm, net, &sub, &nsub, sp, up, c);
    }
    if (rc < 0 || (rc = grow(vae, &net->layers, &net->nlayers, &g)) < 0) {
        for (int j = 0; j < nsub; j++)
            layer_free(vae->be, &sub[j]);
        free(sub);
        return rc;
    }
    g->kind = up ? VAE_UPBLOCK : VAE_DOWNBLOCK;
    g->sub = sub;
    g->nsub = nsub;
    g->cin = cin;
    g->cout = *c;
    for (int j = 0; j < nsub; j++)
        if (sub[j].kind == VAE_ATTN || (is_resample(sub[j].kind) && j != nsub - 1))
            return td_fail(vae->ctx, TD_EFORMAT, "%s: block '%s' is not residual blocks followed by at most one resample",
                           td_weights_path(vae->weights), p);
    return block_shortcut(vae, g, p);
}

static int add_required(td_vae *vae, const vae_names *nm, vae_net *net, const char *p, int up,
                        int64_t *c)
{
    int rc = add_layer(vae, nm, net, &net->layers, &net->nlayers, p, up, c);
    if (rc == 1)
        return td_fail(vae->ctx, TD_ENOTFOUND, "%s: no block under '%s' (middle block)",
                       td_weights_path(vae->weights), p);
    return rc;
}

static int load_mid(td_vae *vae, const vae_names *nm, vae_net *net, const char *const *mid,
                    int up, int64_t *c)
{
    int64_t c0 = *c;
    for (int i = 0; i < 3; i++)
        TD_TRY(add_required(vae, nm, net, mid[i], up, c));
    if (*c != c0 || net->layers[net->nlayers - 2].kind != VAE_ATTN)
        return td_fail(vae->ctx, TD_EFORMAT, "%s: middle block under '%s' is not residual, attention, residual of one width",
                       td_weights_path(vae->weights), mid[0]);
    return 0;
}

static int load_head(td_vae *vae, vae_net *net, const char *norm, const char *out, int64_t c,
                     int64_t co)
{
    TD_TRY(load_gamma(vae, &net->head_norm, c, "%s", norm));
    TD_TRY(load_conv(vae, &net->conv_out, out, co, c, 3, 3, 3));
    net->cout = net->conv_out.w.shape[0];
    net->nslots++;
    return 0;
}

/* Down blocks: Wan2.1's flat layers, or Wan2.2's residual blocks (told
 * apart per index by their nested keys). */
static int load_down(td_vae *vae, const vae_names *nm, int diffusers, int64_t *c)
{
    vae_net *net = &vae->enc;
    char p[NAME_MAX_LEN];
    int rc = 0;
    for (int i = 0; rc == 0; i++) {
        name_of(p, diffusers ? "encoder.down_blocks.%d" : "encoder.downsamples.%d", i);
        if (diffusers && has_key(vae, p, "resnets.0.norm1.gamma"))
            rc = add_block(vae, nm, net, p, 0, "%s.resnets.%d", "downsampler", c);
        else if (!diffusers && has_key(vae, p, "downsamples.0.residual.0.gamma"))
            rc = add_block(vae, nm, net, p, 0, "%s.downsamples.%d", NULL, c);
        else
            rc = add_layer(vae, nm, net, &net->layers, &net->nlayers, p, 0, c);
    }
    return rc < 0 ? rc : 0;
}

static int load_encoder(td_vae *vae, const vae_names *nm, int diffusers)
{
    vae_net *net = &vae->enc;
    int64_t c;
    net->tfactor = net->sfactor = 1;
    TD_TRY(load_conv(vae, &net->conv_in, nm->enc_in, -1, -1, 3, 3, 3));
    net->cin = net->conv_in.w.shape[1];
    c = net->conv_in.w.shape[0];
    net->nslots = 1;
    TD_TRY(load_down(vae, nm, diffusers, &c));
    TD_TRY(load_mid(vae, nm, net, nm->enc_mid, 0, &c));
    TD_TRY(load_head(vae, net, nm->enc_norm, nm->enc_out, c, 2 * vae->z));
    return load_conv(vae, &vae->quant, nm->quant, 2 * vae->z, 2 * vae->z, 1, 1, 1);
}

/* diffusers' up block i: Wan2.2's residual block when it has an
 * 'upsampler', else Wan2.1's resnets and 'upsamplers.0' as flat layers
 * (a Wan2.2 block without a resample has no shortcut: flat too).
 * Returns 1 past the last block. */
static int load_up_diffusers(td_vae *vae, const vae_names *nm, int i, int64_t *c)
{
    vae_net *net = &vae->dec;
    char p[NAME_MAX_LEN], sp[NAME_MAX_LEN];
    int rc = 0, any = 0;
    name_of(p, "decoder.up_blocks.%d", i);
    if (has_key(vae, p, "upsampler.resample.1.weight"))
        return add_block(vae, nm, net, p, 1, "%s.resnets.%d", "upsampler", c);
    for (int j = 0; rc == 0; j++) {
        name_of(sp, "%s.resnets.%d", p, j);
        rc = add_layer(vae, nm, net, &net->layers, &net->nlayers, sp, 1, c);
        any |= rc == 0;
    }
    if (rc < 0)
        return rc;
    name_of(sp, "%s.upsamplers.0", p);
    rc = add_layer(vae, nm, net, &net->layers, &net->nlayers, sp, 1, c);
    return rc < 0 ? rc : !any && rc == 1;
}

static int load_up(td_vae *vae, const vae_names *nm, int diffusers, int64_t *c)
{
    vae_net *net = &vae->dec;
    char p[NAME_MAX_LEN];
    int rc = 0;
    for (int i = 0; rc == 0; i++) {
        if (diffusers) {
            rc = load_up_diffusers(vae, nm, i, c);
            continue;
        }
        name_of(p, "decoder.upsamples.%d", i);
        if (has_key(vae, p, "upsamples.0.residual.0.gamma"))
            rc = add_block(vae, nm, net, p, 1, "%s.upsamples.%d", NULL, c);
        else
            rc = add_layer(vae, nm, net, &net->layers, &net->nlayers, p, 1, c);
    }
    return rc < 0 ? rc : 0;
}

static int load_decoder(td_vae *vae, const vae_names *nm, int diffusers)
{
    vae_net *net = &vae->dec;
    int64_t c;
    net->tfactor = net->sfactor = 1;
    TD_TRY(load_conv(vae, &net->conv_in, nm->dec_in, -1, -1, 3, 3, 3));
    net->cin = vae->z = net->conv_in.w.shape[1];
    if (vae->z != 16 && vae->z != 48)
        return td_fail(vae->ctx, TD_EUNSUPPORTED, "%s: '%s.weight' takes %lld latent channels; the Wan VAEs have 16 (Wan2.1) or 48 (Wan2.2)",
                       td_weights_path(vae->weights), nm->dec_in, (long long)vae->z);
    c = net->conv_in.w.shape[0];
    net->nslots = 1;
    TD_TRY(load_mid(vae, nm, net, nm->dec_mid, 1, &c));
    TD_TRY(load_up(vae, nm, diffusers, &c));
    TD_TRY(load_head(vae, net, nm->dec_norm, nm->dec_out, c, -1));
    return load_conv(vae, &vae->post_quant, nm->post_quant, vae->z, vae->z, 1, 1, 1);
}

/* The latent mean and std of the model's generation as the scale_shift
 * vectors of enum vae_stat, uploaded from host arrays the model keeps. */
static int load_stats(td_vae *vae)
{
    const float *mean = vae->z == 48 ? wan22_mean : wan21_mean;
    const float *std = vae->z == 48 ? wan22_std : wan21_std;
    for (int i = 0; i < vae->z; i++) {
        vae->stat_host[VAE_MEAN][i] = mean[i];
        vae->stat_host[VAE_STD][i] = std[i];
        vae->stat_host[VAE_ONE][i] = 1.0f;
        vae->stat_host[VAE_NEG_MEAN][i] = -mean[i];
        vae->stat_host[VAE_INV_STD][i] = 1.0f / std[i];
        vae->stat_host[VAE_ZERO][i] = 0.0f;
    }
    for (int k = 0; k < VAE_NSTATS; k++) {
        td_tensor host = td_view1(vae->stat_host[k], TD_F32, vae->z);
        TD_TRY(upload(vae, &host, &vae->stat[k]));
    }
    return 0;
}

/* The pixel patch from the channels the decoder gives: 3 (Wan2.1) or
 * 3 x 2 x 2 (Wan2.2); the encoder must take as many. */
static int read_patch(td_vae *vae)
{
    int64_t co = vae->dec.cout;
    if (co != 3 && co != 12)
        return td_fail(vae->ctx, TD_EUNSUPPORTED, "%s: the decoder gives %lld channels; the Wan VAEs give 3 (Wan2.1) or 12 (Wan2.2: 3 x a 2x2 patch)",
                       td_weights_path(vae->weights), (long long)co);
    vae->patch = co == 12 ? 2 : 1;
    if (vae->has_encoder && vae->enc.cin != co)
        return td_fail(vae->ctx, TD_ESHAPE, "%s: the encoder takes %lld channels and the decoder gives %lld",
                       td_weights_path(vae->weights), (long long)vae->enc.cin, (long long)co);
    return 0;
}

int td_vae_build(td_vae *vae)
{
    const td_weights *w = vae->weights;
    int diffusers = td_weights_find(w, "decoder.conv_in.weight") != NULL;
    const vae_names *nm = diffusers ? &diffusers_names : &wan_names;

    if (!diffusers && !td_weights_find(w, "decoder.conv1.weight"))
        return td_fail(vae->ctx, TD_ENOTFOUND,
                       "%s: not a Wan VAE: neither 'decoder.conv1.weight' (Wan, ComfyUI) nor 'decoder.conv_in.weight' (diffusers) found",
                       td_weights_path(w));
    TD_TRY(load_decoder(vae, nm, diffusers));
    if (vae->dec.tfactor != 4 || vae->dec.sfactor != 8)
        return td_fail(vae->ctx, TD_EUNSUPPORTED, "%s: decoder upsamples time x%d and space x%d; the Wan VAEs do x4 and x8 (before any 2x2 patch)",
                       td_weights_path(w), vae->dec.tfactor, vae->dec.sfactor);
    vae->base_dim = vae->dec.conv_out.w.shape[1];
    vae->has_encoder = td_weights_has_prefix(w, "encoder.");
    if (vae->has_encoder) {
        TD_TRY(load_encoder(vae, nm, diffusers));
        if (vae->enc.tfactor != 4 || vae->enc.sfactor != 8)
            return td_fail(vae->ctx, TD_EUNSUPPORTED, "%s: encoder downsamples time x%d and space x%d; the Wan VAEs do x4 and x8 (before any 2x2 patch)",
                           td_weights_path(w), vae->enc.tfactor, vae->enc.sfactor);
    }
    TD_TRY(read_patch(vae));
    return load_stats(vae);
}

static void conv_free(td_backend *be, vae_conv *c)
{
    be->ops->tensor_free(be, &c->w);
    be->ops->tensor_free(be, &c->b);
}

/* Release every uploaded tensor of a layer (and of a block's layers);
 * zeroed ones are left alone, so a net that failed halfway through loading
 * frees too. */
static void layer_free(td_backend *be, vae_layer *l)
{
    be->ops->tensor_free(be, &l->norm1);
    be->ops->tensor_free(be, &l->norm2);
    conv_free(be, &l->conv1);
    conv_free(be, &l->conv2);
    conv_free(be, &l->shortcut);
    be->ops->tensor_free(be, &l->inv_group);
    for (int j = 0; j < l->nsub; j++)
        layer_free(be, &l->sub[j]);
    free(l->sub);
    l->sub = NULL;
    l->nsub = 0;
}

static void net_free(td_backend *be, vae_net *net)
{
    for (int i = 0; i < net->nlayers; i++)
        layer_free(be, &net->layers[i]);
    conv_free(be, &net->conv_in);
    be->ops->tensor_free(be, &net->head_norm);
    conv_free(be, &net->conv_out);
    free(net->layers);
    net->layers = NULL;
    net->nlayers = 0;
}

int td_vae_load(td_backend *be, const td_weights *w, td_vae **out)
{
    td_vae *vae;
    int rc;
    *out = NULL;
    vae = calloc(1, sizeof(*vae));
    if (!vae)
        return td_fail(be->ctx, TD_ENOMEM, "vae: model");
    vae->be = be;
    vae->ctx = be->ctx;
    vae->weights = w;
    rc = td_vae_build(vae);
    if (rc < 0) {
        td_vae_free(&vae);
        return rc;
    }
    td_log(vae->ctx, TD_LOG_VERBOSE, "vae: %s: %s, %lld latent channels, 4x%dx%d, base width %lld, %d decoder / %d encoder layers",
           td_weights_path(w), vae->patch > 1 ? "Wan2.2" : "Wan2.1", (long long)vae->z,
           td_vae_spatial_factor(vae), td_vae_spatial_factor(vae), (long long)vae->base_dim,
           vae->dec.nlayers, vae->enc.nlayers);
    *out = vae;
    return 0;
}

void td_vae_free(td_vae **vae)
{
    if (!vae || !*vae)
        return;
    td_vae *v = *vae;
    net_free(v->be, &v->enc);
    net_free(v->be, &v->dec);
    conv_free(v->be, &v->quant);
    conv_free(v->be, &v->post_quant);
    for (int k = 0; k < VAE_NSTATS; k++)
        v->be->ops->tensor_free(v->be, &v->stat[k]);
    free(v);
    *vae = NULL;
}

td_backend *td_vae_backend(const td_vae *vae) { return vae->be; }
int td_vae_spatial_factor(const td_vae *vae) { return (int)(vae->dec.sfactor * vae->patch); }
int td_vae_temporal_factor(const td_vae *vae) { return vae->dec.tfactor; }
int td_vae_has_encoder(const td_vae *vae) { return vae->has_encoder; }
int td_vae_base_dim(const td_vae *vae) { return (int)vae->base_dim; }
int td_vae_z_dim(const td_vae *vae) { return (int)vae->z; }
