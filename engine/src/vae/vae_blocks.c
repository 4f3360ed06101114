/*
 * The VAE's blocks on one time chunk, with Wan's causal cache semantics:
 * a causal 3x3x3 conv sees the last TD_VAE_CACHE_T input frames of the
 * previous chunks (zeros before the clip), which makes chunked results the
 * causal conv of the whole clip. Temporal resamples follow Wan's first-
 * chunk rule: the first chunk passes through them without the time conv
 * (upsample: one frame stays one frame; downsample: kept, not strided).
 *
 * Every function takes borrowed inputs and returns a new owned tensor.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vae_internal.h"

int vae_state_init(td_ctx *ctx, vae_state *st, int nslots)
{
    st->nslots = nslots;
    st->slots = calloc((size_t)(nslots ? nslots : 1), sizeof(*st->slots));
    return st->slots ? 0 : td_fail(ctx, TD_ENOMEM, "vae: cache of %d slots", nslots);
}

void vae_state_free(vae_state *st)
{
    for (int i = 0; st->slots && i < st->nslots; i++)
        td_tensor_free(&st->slots[i].frames);
    free(st->slots);
    st->slots = NULL;
}

static int new4(td_vae *vae, td_tensor *t, int64_t c, int64_t n, int64_t h, int64_t w)
{
    return td_tensor_new(vae->ctx, t, TD_F32, 4, (int64_t[]){ c, n, h, w });
}

static int64_t conv_out(int64_t in, int64_t pad, int64_t k, int64_t s)
{
    return in + pad < k ? 0 : (in + pad - k) / s + 1;
}

int vae_conv_new(td_vae *vae, const td_tensor *x, const vae_conv *c, const td_conv3d_params *p,
                 td_tensor *y)
{
    const int64_t *k = c->w.shape;
    int rc;
    TD_TRY(new4(vae, y, k[0], conv_out(x->shape[1], p->pad_t_front + p->pad_t_back, k[2], p->stride[0]),
                conv_out(x->shape[2], 2 * p->pad_h, k[3], p->stride[1]),
                conv_out(x->shape[3], 2 * p->pad_w, k[4], p->stride[2])));
    rc = vae->be->ops->conv3d(vae->be, x, &c->w, &c->b, p, y);
    if (rc < 0)
        td_tensor_free(y);
    return rc;
}

/* Frames [t0, t0 + n) of src into frames [d0, d0 + n) of dst (same C, H, W). */
static void copy_frames(td_tensor *dst, int64_t d0, const td_tensor *src, int64_t t0, int64_t n)
{
    int64_t plane = src->shape[2] * src->shape[3];
    for (int64_t c = 0; c < src->shape[0]; c++)
        memcpy((float *)dst->data + (c * dst->shape[1] + d0) * plane,
               (const float *)src->data + (c * src->shape[1] + t0) * plane,
               (size_t)(n * plane) * sizeof(float));
}

/* Causal conv with kernel kt in time over [cache, x]: the cache holds up to
 * kt - 1 earlier frames, zeros stand in for the rest. Afterwards the cache
 * holds the last kt - 1 frames of [cache, x]. */
static int causal_conv(td_vae *vae, vae_slot *s, const td_tensor *x, const vae_conv *c, int64_t stride_t,
                       int pad_hw, td_tensor *y)
{
    int64_t cc = x->shape[0], t = x->shape[1], h = x->shape[2], w = x->shape[3];
    int64_t keep = c->w.shape[2] - 1, total = s->n + t, nk;
    td_tensor cat = *x, fresh = { 0 };
    td_conv3d_params p = { { (int)stride_t, 1, 1 }, (int)(keep - s->n), 0, pad_hw, pad_hw };
    int rc;

    if (s->n > 0) {
        TD_TRY(new4(vae, &cat, cc, total, h, w));
        copy_frames(&cat, 0, &s->frames, 0, s->n);
        copy_frames(&cat, s->n, x, 0, t);
    }
    rc = vae_conv_new(vae, &cat, c, &p, y);
    if (rc == 0 && keep > 0) {
        nk = total < keep ? total : keep;
        if (!s->frames.data || s->frames.shape[0] != cc || s->frames.shape[2] != h || s->frames.shape[3] != w)
            rc = new4(vae, &fresh, cc, keep, h, w);
        if (rc == 0) {
            if (fresh.data) {
                td_tensor_free(&s->frames);
                s->frames = fresh;
            }
            copy_frames(&s->frames, 0, &cat, total - nk, nk);
            s->n = nk;
        } else {
            td_tensor_free(y);
        }
    }
    if (cat.data != x->data)
        td_tensor_free(&cat);
    return rc;
}

/* y = silu(channel_rmsnorm(x) * gamma), new. */
static int norm_silu(td_vae *vae, const td_tensor *x, const td_tensor *gamma, td_tensor *y)
{
    td_backend *be = vae->be;
    int64_t c = x->shape[0], n = td_numel(x) / (c ? c : 1);
    td_tensor xv = td_view2(x->data, TD_F32, c, n), yv;
    int rc;
    TD_TRY(new4(vae, y, x->shape[0], x->shape[1], x->shape[2], x->shape[3]));
    yv = td_view2(y->data, TD_F32, c, n);
    rc = be->ops->channel_rmsnorm(be, &xv, gamma, NULL, &yv);
    if (rc == 0)
        rc = be->ops->silu(be, &yv, &yv);
    if (rc < 0)
        td_tensor_free(y);
    return rc;
}

static int res_block(td_vae *vae, const vae_layer *l, vae_state *st, const td_tensor *x, td_tensor *y)
{
    static const td_conv3d_params p1 = { { 1, 1, 1 }, 0, 0, 0, 0 };
    td_tensor a = { 0 }, b = { 0 }, h = { 0 };
    int rc;
    if (l->has_shortcut)
        TD_TRY(vae_conv_new(vae, x, &l->shortcut, &p1, &h));
    rc = norm_silu(vae, x, &l->norm1, &a);
    if (rc == 0)
        rc = causal_conv(vae, &st->slots[l->slot], &a, &l->conv1, 1, 1, &b);
    td_tensor_free(&a);
    if (rc == 0)
        rc = norm_silu(vae, &b, &l->norm2, &a);
    td_tensor_free(&b);
    if (rc == 0)
        rc = causal_conv(vae, &st->slots[l->slot + 1], &a, &l->conv2, 1, 1, y);
    td_tensor_free(&a);
    if (rc == 0) {
        rc = vae->be->ops->add(vae->be, y, l->has_shortcut ? &h : x, y);
        if (rc < 0)
            td_tensor_free(y);
    }
    td_tensor_free(&h);
    return rc;
}

/* [C, S] rows of frame t of a [C, T, S] tensor, transposed into dst [S, C]. */
static void gather_t(float *dst, const float *src, int64_t c, int64_t nt, int64_t t, int64_t s)
{
    for (int64_t ci = 0; ci < c; ci++) {
        const float *row = src + (ci * nt + t) * s;
        for (int64_t i = 0; i < s; i++)
            dst[i * c + ci] = row[i];
    }
}

static void scatter_t(float *dst, const float *src, int64_t c, int64_t nt, int64_t t, int64_t s)
{
    for (int64_t ci = 0; ci < c; ci++) {
        float *row = dst + (ci * nt + t) * s;
        for (int64_t i = 0; i < s; i++)
            row[i] = src[i * c + ci];
    }
}

/* Single-head attention over the H*W positions of each frame. */
static int attn_block(td_vae *vae, const vae_layer *l, const td_tensor *x, td_tensor *y)
{
    static const td_conv3d_params p1 = { { 1, 1, 1 }, 0, 0, 0, 0 };
    td_backend *be = vae->be;
    int64_t c = x->shape[0], nt = x->shape[1], s = x->shape[2] * x->shape[3];
    td_tensor n = { 0 }, qkv = { 0 }, o = { 0 }, buf = { 0 }, q, k, v, out;
    float *base;
    int rc;

    {
        td_tensor xv = td_view2(x->data, TD_F32, c, nt * s), nv;
        TD_TRY(new4(vae, &n, c, nt, x->shape[2], x->shape[3]));
        nv = td_view2(n.data, TD_F32, c, nt * s);
        rc = be->ops->channel_rmsnorm(be, &xv, &l->norm1, NULL, &nv);
    }
    if (rc == 0)
        rc = vae_conv_new(vae, &n, &l->conv1, &p1, &qkv);
    td_tensor_free(&n);
    if (rc == 0)
        rc = new4(vae, &o, c, nt, x->shape[2], x->shape[3]);
    if (rc == 0)
        rc = td_tensor_new(vae->ctx, &buf, TD_F32, 2, (int64_t[]){ 4, s * c });
    base = buf.data;
    for (int64_t t = 0; rc == 0 && t < nt; t++) {
        q = td_view3(base, TD_F32, s, 1, c);
        k = td_view3(base + s * c, TD_F32, s, 1, c);
        v = td_view3(base + 2 * s * c, TD_F32, s, 1, c);
        out = td_view3(base + 3 * s * c, TD_F32, s, 1, c);
        gather_t(q.data, (const float *)qkv.data, c, nt, t, s);
        gather_t(k.data, (const float *)qkv.data + c * nt * s, c, nt, t, s);
        gather_t(v.data, (const float *)qkv.data + 2 * c * nt * s, c, nt, t, s);
        rc = be->ops->attention(be, &q, &k, &v, NULL, (float)(1.0 / sqrt((double)c)), 0, &out);
        if (rc == 0)
            scatter_t(o.data, out.data, c, nt, t, s);
    }
    td_tensor_free(&buf);
    td_tensor_free(&qkv);
    if (rc == 0)
        rc = vae_conv_new(vae, &o, &l->conv2, &p1, y);
    td_tensor_free(&o);
    if (rc == 0) {
        rc = be->ops->add(be, y, x, y);
        if (rc < 0)
            td_tensor_free(y);
    }
    return rc;
}

/* Nearest 2x then 3x3 conv, one frame at a time so the upsampled input
 * (4x the frame) never exists for the whole chunk. */
static int up_spatial(td_vae *vae, const vae_layer *l, const td_tensor *x, td_tensor *y)
{
    static const td_conv3d_params p = { { 1, 1, 1 }, 0, 0, 1, 1 };
    td_backend *be = vae->be;
    int64_t c = x->shape[0], nt = x->shape[1], h = x->shape[2], w = x->shape[3];
    td_tensor fin = { 0 }, up = { 0 }, fo = { 0 };
    int rc;
    TD_TRY(new4(vae, y, l->cout, nt, 2 * h, 2 * w));
    rc = new4(vae, &fin, c, 1, h, w);
    if (rc == 0)
        rc = new4(vae, &up, c, 1, 2 * h, 2 * w);
    if (rc == 0)
        rc = new4(vae, &fo, l->cout, 1, 2 * h, 2 * w);
    for (int64_t t = 0; rc == 0 && t < nt; t++) {
        copy_frames(&fin, 0, x, t, 1);
        rc = be->ops->upsample_nearest(be, &fin, 2, 2, &up);
        if (rc == 0)
            rc = be->ops->conv3d(be, &up, &l->conv1.w, &l->conv1.b, &p, &fo);
        if (rc == 0)
            copy_frames(y, t, &fo, 0, 1);
    }
    td_tensor_free(&fin);
    td_tensor_free(&up);
    td_tensor_free(&fo);
    if (rc < 0)
        td_tensor_free(y);
    return rc;
}

static int upsample(td_vae *vae, const vae_layer *l, vae_state *st, const td_tensor *x, td_tensor *y)
{
    vae_slot *s = &st->slots[l->slot];
    int64_t c = x->shape[0], nt = x->shape[1], plane = x->shape[2] * x->shape[3];
    td_tensor tc = { 0 }, doubled = { 0 };
    int rc;
    if (l->kind == VAE_UP2D || !s->seen) {
        s->seen = 1;
        return up_spatial(vae, l, x, y);
    }
    /* The time conv makes 2C channels; channel half j becomes frame 2t + j. */
    TD_TRY(causal_conv(vae, s, x, &l->conv2, 1, 0, &tc));
    rc = new4(vae, &doubled, c, 2 * nt, x->shape[2], x->shape[3]);
    for (int64_t j = 0; rc == 0 && j < 2; j++)
        for (int64_t ci = 0; ci < c; ci++)
            for (int64_t t = 0; t < nt; t++)
                memcpy((float *)doubled.data + (ci * 2 * nt + 2 * t + j) * plane,
                       (const float *)tc.data + ((j * c + ci) * nt + t) * plane,
                       (size_t)plane * sizeof(float));
    td_tensor_free(&tc);
    if (rc == 0)
        rc = up_spatial(vae, l, &doubled, y);
    td_tensor_free(&doubled);
    return rc;
}

/* Zero pad right and bottom by one, 3x3 stride-2 conv, frame by frame. */
static int down_spatial(td_vae *vae, const vae_layer *l, const td_tensor *x, td_tensor *y)
{
    static const td_conv3d_params p = { { 1, 2, 2 }, 0, 0, 0, 0 };
    int64_t c = x->shape[0], nt = x->shape[1], h = x->shape[2], w = x->shape[3];
    int64_t ho = conv_out(h + 1, 0, 3, 2), wo = conv_out(w + 1, 0, 3, 2);
    td_tensor pad = { 0 }, fo = { 0 };
    int rc;
    TD_TRY(new4(vae, y, l->cout, nt, ho, wo));
    rc = new4(vae, &pad, c, 1, h + 1, w + 1);
    if (rc == 0)
        rc = new4(vae, &fo, l->cout, 1, ho, wo);
    for (int64_t t = 0; rc == 0 && t < nt; t++) {
        for (int64_t ci = 0; ci < c; ci++)
            for (int64_t r = 0; r < h; r++)
                memcpy((float *)pad.data + (ci * (h + 1) + r) * (w + 1),
                       (const float *)x->data + ((ci * nt + t) * h + r) * w, (size_t)w * sizeof(float));
        rc = vae->be->ops->conv3d(vae->be, &pad, &l->conv1.w, &l->conv1.b, &p, &fo);
        if (rc == 0)
            copy_frames(y, t, &fo, 0, 1);
    }
    td_tensor_free(&pad);
    td_tensor_free(&fo);
    if (rc < 0)
        td_tensor_free(y);
    return rc;
}

/* The time conv (kernel 3, stride 2, no padding) runs over [last frame of
 * the previous chunk, this chunk]; the first chunk passes through. */
static int downsample(td_vae *vae, const vae_layer *l, vae_state *st, const td_tensor *x, td_tensor *y)
{
    static const td_conv3d_params p = { { 2, 1, 1 }, 0, 0, 0, 0 };
    vae_slot *s = &st->slots[l->slot];
    td_tensor sp = { 0 }, cat = { 0 };
    int64_t nt;
    int rc;
    TD_TRY(down_spatial(vae, l, x, &sp));
    if (l->kind == VAE_DOWN2D) {
        *y = sp;
        return 0;
    }
    nt = sp.shape[1];
    if (!s->seen) {
        rc = new4(vae, &s->frames, sp.shape[0], 1, sp.shape[2], sp.shape[3]);
        if (rc == 0) {
            copy_frames(&s->frames, 0, &sp, nt - 1, 1);
            s->n = 1;
            s->seen = 1;
            *y = sp;
            return 0;
        }
        td_tensor_free(&sp);
        return rc;
    }
    rc = new4(vae, &cat, sp.shape[0], nt + 1, sp.shape[2], sp.shape[3]);
    if (rc == 0) {
        copy_frames(&cat, 0, &s->frames, 0, 1);
        copy_frames(&cat, 1, &sp, 0, nt);
        copy_frames(&s->frames, 0, &sp, nt - 1, 1);
        rc = vae_conv_new(vae, &cat, &l->conv2, &p, y);
    }
    td_tensor_free(&cat);
    td_tensor_free(&sp);
    return rc;
}

static int run_layer(td_vae *vae, const vae_layer *l, vae_state *st, const td_tensor *x, td_tensor *y)
{
    switch (l->kind) {
    case VAE_RES:
        return res_block(vae, l, st, x, y);
    case VAE_ATTN:
        return attn_block(vae, l, x, y);
    case VAE_UP2D:
    case VAE_UP3D:
        return upsample(vae, l, st, x, y);
    default:
        return downsample(vae, l, st, x, y);
    }
}

int vae_net_chunk(td_vae *vae, const vae_net *net, vae_state *st, const td_tensor *x, td_tensor *y)
{
    td_tensor cur = { 0 }, next = { 0 };
    int rc;
    if (st->nslots != net->nslots)
        return td_fail(vae->ctx, TD_EINVAL, "vae: cache of %d slots for a net of %d", st->nslots,
                       net->nslots);
    TD_TRY(causal_conv(vae, &st->slots[0], x, &net->conv_in, 1, 1, &cur));
    for (int i = 0; i < net->nlayers; i++) {
        rc = run_layer(vae, &net->layers[i], st, &cur, &next);
        td_tensor_free(&cur);
        if (rc < 0)
            return rc;
        cur = next;
    }
    rc = norm_silu(vae, &cur, &net->head_norm, &next);
    td_tensor_free(&cur);
    if (rc < 0)
        return rc;
    rc = causal_conv(vae, &st->slots[net->nslots - 1], &next, &net->conv_out, 1, 1, y);
    td_tensor_free(&next);
    return rc;
}
