/*
 * The VAE's architecture from its weight file. Two naming families exist:
 * Wan's own (Wan2.1_VAE.pth; ComfyUI's wan_2.1_vae.safetensors keeps them)
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
 * Attention (norm.gamma, to_qkv, proj) and resample (resample.1, time_conv)
 * names are shared. Widths come from weight shapes; a block's kind from
 * which of its keys exist; a resample moves time when it has a time_conv.
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

/* Wan2.1's per-channel latent statistics (wan/modules/vae.py, and
 * diffusers' latents_mean / latents_std). */
static const float wan21_mean[TD_VAE_Z] = {
    -0.7571f, -0.7089f, -0.9113f, 0.1075f, -0.1745f, 0.9653f, -0.1517f, 1.5508f,
    0.4134f, -0.0715f, 0.5517f, -0.3632f, -0.1922f, -0.9497f, 0.2503f, -0.2921f,
};
static const float wan21_std[TD_VAE_Z] = {
    2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f, 2.6052f, 2.0743f,
    3.2687f, 2.1526f, 2.8652f, 1.5579f, 1.6382f, 1.1253f, 2.8251f, 1.9160f,
};

#define NAME_MAX_LEN 256

static int has_key(const td_vae *vae, const char *prefix, const char *suffix)
{
    char name[NAME_MAX_LEN];
    snprintf(name, sizeof(name), "%s.%s", prefix, suffix);
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
    snprintf(name, sizeof(name), "%s.%s", p, nm->conv1);
    TD_TRY(load_conv(vae, &l->conv1, name, -1, l->cin, 3, 3, 3));
    l->cout = l->conv1.w.shape[0];
    TD_TRY(load_gamma(vae, &l->norm2, l->cout, "%s.%s", p, nm->norm2));
    snprintf(name, sizeof(name), "%s.%s", p, nm->conv2);
    TD_TRY(load_conv(vae, &l->conv2, name, l->cout, l->cout, 3, 3, 3));
    l->has_shortcut = l->cin != l->cout;
    if (l->has_shortcut) {
        snprintf(name, sizeof(name), "%s.%s", p, nm->shortcut);
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
    snprintf(name, sizeof(name), "%s.to_qkv", p);
    TD_TRY(load_conv(vae, &l->conv1, name, 3 * l->cin, l->cin, 0, 1, 1));
    snprintf(name, sizeof(name), "%s.proj", p);
    return load_conv(vae, &l->conv2, name, l->cin, l->cin, 0, 1, 1);
}

static int load_resample(td_vae *vae, vae_layer *l, const char *p, int up)
{
    char name[NAME_MAX_LEN];
    int timed = has_key(vae, p, "time_conv.weight");
    snprintf(name, sizeof(name), "%s.resample.1", p);
    TD_TRY(load_conv(vae, &l->conv1, name, up ? -1 : l->cin, l->cin, 0, 3, 3));
    l->cout = l->conv1.w.shape[0];
    snprintf(name, sizeof(name), "%s.time_conv", p);
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

/* Append the layer at prefix p (kind from its keys) to net; *c carries the
 * running channel count. Returns 1 when p names no block. */
static int add_layer(td_vae *vae, const vae_names *nm, vae_net *net, const char *p, int up,
                     int64_t *c)
{
    vae_layer *l, *grown;
    int kind;
    if (has_key(vae, p, "to_qkv.weight"))
        kind = VAE_ATTN;
    else if (has_key(vae, p, "resample.1.weight"))
        kind = up ? VAE_UP2D : VAE_DOWN2D;
    else if (has_key(vae, p, nm->norm1))
        kind = VAE_RES;
    else
        return 1;
    grown = realloc(net->layers, (size_t)(net->nlayers + 1) * sizeof(*grown));
    if (!grown)
        return td_fail(vae->ctx, TD_ENOMEM, "vae: layer list");
    net->layers = grown;
    l = &net->layers[net->nlayers++];
    memset(l, 0, sizeof(*l));
    l->cin = *c;
    l->slot = net->nslots;
    if (kind == VAE_ATTN)
        TD_TRY(load_attn(vae, l, p));
    else if (kind == VAE_RES)
        TD_TRY(load_res(vae, nm, l, p));
    else
        TD_TRY(load_resample(vae, l, p, up));
    net->nslots += l->kind == VAE_RES ? 2 : l->kind == VAE_UP3D || l->kind == VAE_DOWN3D ? 1 : 0;
    if (l->kind == VAE_UP2D || l->kind == VAE_UP3D || l->kind == VAE_DOWN2D || l->kind == VAE_DOWN3D)
        net->sfactor *= 2;
    if (l->kind == VAE_UP3D || l->kind == VAE_DOWN3D)
        net->tfactor *= 2;
    *c = l->cout;
    return 0;
}

static int add_required(td_vae *vae, const vae_names *nm, vae_net *net, const char *p, int up,
                        int64_t *c)
{
    int rc = add_layer(vae, nm, net, p, up, c);
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

static int load_encoder(td_vae *vae, const vae_names *nm, int diffusers)
{
    vae_net *net = &vae->enc;
    char p[NAME_MAX_LEN];
    int64_t c;
    int rc = 0;
    net->tfactor = net->sfactor = 1;
    TD_TRY(load_conv(vae, &net->conv_in, nm->enc_in, -1, -1, 3, 3, 3));
    net->cin = net->conv_in.w.shape[1];
    c = net->conv_in.w.shape[0];
    net->nslots = 1;
    for (int i = 0; rc == 0; i++) {
        snprintf(p, sizeof(p), diffusers ? "encoder.down_blocks.%d" : "encoder.downsamples.%d", i);
        rc = add_layer(vae, nm, net, p, 0, &c);
        if (rc < 0)
            return rc;
    }
    TD_TRY(load_mid(vae, nm, net, nm->enc_mid, 0, &c));
    TD_TRY(load_head(vae, net, nm->enc_norm, nm->enc_out, c, 2 * TD_VAE_Z));
    return load_conv(vae, &vae->quant, nm->quant, 2 * TD_VAE_Z, 2 * TD_VAE_Z, 1, 1, 1);
}

static int load_decoder(td_vae *vae, const vae_names *nm, int diffusers)
{
    vae_net *net = &vae->dec;
    char p[NAME_MAX_LEN];
    int64_t c;
    net->tfactor = net->sfactor = 1;
    TD_TRY(load_conv(vae, &net->conv_in, nm->dec_in, -1, -1, 3, 3, 3));
    net->cin = net->conv_in.w.shape[1];
    if (net->cin != TD_VAE_Z)
        return td_fail(vae->ctx, TD_EUNSUPPORTED, "%s: '%s.weight' takes %lld latent channels; the Wan2.1 VAE has %d",
                       td_weights_path(vae->weights), nm->dec_in, (long long)net->cin, TD_VAE_Z);
    c = net->conv_in.w.shape[0];
    net->nslots = 1;
    TD_TRY(load_mid(vae, nm, net, nm->dec_mid, 1, &c));
    if (diffusers) {
        for (int i = 0;; i++) {
            int rc = 0, any = 0;
            for (int j = 0; rc == 0; j++) {
                snprintf(p, sizeof(p), "decoder.up_blocks.%d.resnets.%d", i, j);
                rc = add_layer(vae, nm, net, p, 1, &c);
                if (rc < 0)
                    return rc;
                any |= rc == 0;
            }
            snprintf(p, sizeof(p), "decoder.up_blocks.%d.upsamplers.0", i);
            rc = add_layer(vae, nm, net, p, 1, &c);
            if (rc < 0)
                return rc;
            if (!any && rc == 1)
                break;
        }
    } else {
        int rc = 0;
        for (int i = 0; rc == 0; i++) {
            snprintf(p, sizeof(p), "decoder.upsamples.%d", i);
            rc = add_layer(vae, nm, net, p, 1, &c);
            if (rc < 0)
                return rc;
        }
    }
    TD_TRY(load_head(vae, net, nm->dec_norm, nm->dec_out, c, -1));
    return load_conv(vae, &vae->post_quant, nm->post_quant, TD_VAE_Z, TD_VAE_Z, 1, 1, 1);
}

/* Wan2.1's latent mean and std as the scale_shift vectors of enum
 * vae_stat, uploaded from host arrays the model keeps. */
static int load_stats(td_vae *vae)
{
    for (int i = 0; i < TD_VAE_Z; i++) {
        vae->stat_host[VAE_MEAN][i] = wan21_mean[i];
        vae->stat_host[VAE_STD][i] = wan21_std[i];
        vae->stat_host[VAE_ONE][i] = 1.0f;
        vae->stat_host[VAE_NEG_MEAN][i] = -wan21_mean[i];
        vae->stat_host[VAE_INV_STD][i] = 1.0f / wan21_std[i];
        vae->stat_host[VAE_ZERO][i] = 0.0f;
    }
    for (int k = 0; k < VAE_NSTATS; k++) {
        td_tensor host = td_view1(vae->stat_host[k], TD_F32, TD_VAE_Z);
        TD_TRY(upload(vae, &host, &vae->stat[k]));
    }
    return 0;
}

int vae_build(td_vae *vae)
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
        return td_fail(vae->ctx, TD_EUNSUPPORTED, "%s: decoder upsamples time x%d and space x%d; the Wan2.1 VAE does x4 and x8",
                       td_weights_path(w), vae->dec.tfactor, vae->dec.sfactor);
    vae->base_dim = vae->dec.conv_out.w.shape[1];
    vae->has_encoder = td_weights_has_prefix(w, "encoder.");
    if (vae->has_encoder) {
        TD_TRY(load_encoder(vae, nm, diffusers));
        if (vae->enc.tfactor != 4 || vae->enc.sfactor != 8)
            return td_fail(vae->ctx, TD_EUNSUPPORTED, "%s: encoder downsamples time x%d and space x%d; the Wan2.1 VAE does x4 and x8",
                           td_weights_path(w), vae->enc.tfactor, vae->enc.sfactor);
    }
    return load_stats(vae);
}

static void conv_free(td_backend *be, vae_conv *c)
{
    be->ops->tensor_free(be, &c->w);
    be->ops->tensor_free(be, &c->b);
}

/* Release every uploaded tensor of net (zeroed ones are left alone, so a
 * net that failed halfway through loading frees too). */
static void net_free(td_backend *be, vae_net *net)
{
    for (int i = 0; i < net->nlayers; i++) {
        vae_layer *l = &net->layers[i];
        be->ops->tensor_free(be, &l->norm1);
        be->ops->tensor_free(be, &l->norm2);
        conv_free(be, &l->conv1);
        conv_free(be, &l->conv2);
        conv_free(be, &l->shortcut);
    }
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
    rc = vae_build(vae);
    if (rc < 0) {
        td_vae_free(&vae);
        return rc;
    }
    td_log(vae->ctx, TD_LOG_VERBOSE, "vae: %s: base width %lld, %d decoder / %d encoder layers",
           td_weights_path(w), (long long)vae->base_dim, vae->dec.nlayers, vae->enc.nlayers);
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
int td_vae_spatial_factor(const td_vae *vae) { return vae->dec.sfactor; }
int td_vae_temporal_factor(const td_vae *vae) { return vae->dec.tfactor; }
int td_vae_has_encoder(const td_vae *vae) { return vae->has_encoder; }
int td_vae_base_dim(const td_vae *vae) { return (int)vae->base_dim; }
