/*
 * The VAE's blocks on one time chunk, with Wan's causal cache semantics:
 * a causal 3x3x3 conv sees the last TD_VAE_CACHE_T input frames of the
 * previous chunks (zeros before the clip), which makes chunked results the
 * causal conv of the whole clip. Temporal resamples follow Wan's first-
 * chunk rule: the first chunk passes through them without the time conv
 * (upsample: one frame stays one frame; downsample: kept, not strided).
 *
 * Wan2.2's residual blocks add a parameter-free shortcut of the block's
 * input per chunk (no cache: each chunk's cells are its own frames).
 *
 * Every function takes borrowed inputs and returns a new owned tensor.
 * Activations and caches are backend tensors: frame windows, the cache
 * concatenation, the attention's per-frame transposes, the pixel patch and
 * the shortcuts' cell rearrangements are backend copies of sliced, split
 * and permuted views, so no code here touches their memory.
 */
#include <math.h>
#include <stdlib.h>

#include "vae_internal.h"

int td_vae_state_init(td_ctx *ctx, vae_state *st, int nslots)
{
    st->nslots = nslots;
    st->chunks = 0;
    st->slots = calloc((size_t)(nslots ? nslots : 1), sizeof(*st->slots));
    return st->slots ? 0 : td_fail(ctx, TD_ENOMEM, "vae: cache of %d slots", nslots);
}

void td_vae_state_free(td_vae *vae, vae_state *st)
{
    for (int i = 0; st->slots && i < st->nslots; i++)
        td_vae_act_free(vae, &st->slots[i].frames);
    free(st->slots);
    st->slots = NULL;
}

int td_vae_act_new(td_vae *vae, td_tensor *t, int64_t c, int64_t n, int64_t h, int64_t w)
{
    td_backend *be = vae->be;
    return be->ops->tensor_new(be, t, be->act, 4, (int64_t[]){ c, n, h, w });
}

void td_vae_act_free(td_vae *vae, td_tensor *t)
{
    vae->be->ops->tensor_free(vae->be, t);
}

int td_vae_copy_frames(td_vae *vae, td_tensor *dst, int64_t d0, const td_tensor *src, int64_t t0,
                    int64_t n)
{
    td_tensor d, s;
    if (n == 0)
        return 0;
    TD_TRY(td_tensor_slice(vae->ctx, dst, 1, d0, n, &d));
    TD_TRY(td_tensor_slice(vae->ctx, src, 1, t0, n, &s));
    return vae->be->ops->copy(vae->be, &d, &s, 0);
}

int td_vae_split_dim(td_ctx *ctx, const td_tensor *t, int dim, int64_t inner, td_tensor *out)
{
    char s[96];
    if (dim < 0 || dim >= t->ndim || t->ndim >= TD_MAX_DIMS || inner < 1 || t->shape[dim] % inner)
        return td_fail(ctx, TD_ESHAPE, "vae: cannot split dim %d of %s into blocks of %lld", dim,
                       td_shape_str(t, s, sizeof(s)), (long long)inner);
    *out = *t;
    out->owns = 0;
    for (int i = t->ndim; i > dim + 1; i--) {
        out->shape[i] = t->shape[i - 1];
        out->stride[i] = t->stride[i - 1];
    }
    out->shape[dim] = t->shape[dim] / inner;
    out->stride[dim] = t->stride[dim] * inner;
    out->shape[dim + 1] = inner;
    out->stride[dim + 1] = t->stride[dim];
    out->ndim = t->ndim + 1;
    return 0;
}

/* x [C, n, H, W] (any strides) as [C, n, h, q, w, r] split into p x p
 * cells (q the row, r the column within a cell). */
static int cells_view(td_vae *vae, const td_tensor *x, int64_t p, td_tensor *v)
{
    td_tensor a;
    TD_TRY(td_vae_split_dim(vae->ctx, x, 3, p, &a));
    return td_vae_split_dim(vae->ctx, &a, 2, p, v);
}

/* y [C*p*p, n, h, w] contiguous as [C, r, q, n, h, w]. */
static int patched_view(td_vae *vae, const td_tensor *y, int64_t p, td_tensor *v)
{
    return td_tensor_reshape(vae->ctx, y, 6,
                             (int64_t[]){ y->shape[0] / (p * p), p, p, y->shape[1], y->shape[2], y->shape[3] }, v);
}

int td_vae_patchify(td_vae *vae, const td_tensor *x, td_tensor *y)
{
    int64_t p = vae->patch;
    td_tensor cells, src, dst;
    int rc;
    TD_TRY(td_vae_act_new(vae, y, x->shape[0] * p * p, x->shape[1], x->shape[2] / p, x->shape[3] / p));
    rc = cells_view(vae, x, p, &cells);
    if (rc == 0)
        rc = td_tensor_permute(vae->ctx, &cells, (const int[]){ 0, 5, 3, 1, 2, 4 }, &src);
    if (rc == 0)
        rc = patched_view(vae, y, p, &dst);
    if (rc == 0)
        rc = vae->be->ops->copy(vae->be, &dst, &src, 0);
    if (rc < 0)
        td_vae_act_free(vae, y);
    return rc;
}

int td_vae_unpatchify(td_vae *vae, const td_tensor *x, td_tensor *y)
{
    int64_t p = vae->patch;
    td_tensor cells, src, dst;
    int rc;
    TD_TRY(td_vae_act_new(vae, y, x->shape[0] / (p * p), x->shape[1], x->shape[2] * p, x->shape[3] * p));
    rc = cells_view(vae, y, p, &cells);
    if (rc == 0)
        rc = td_tensor_permute(vae->ctx, &cells, (const int[]){ 0, 5, 3, 1, 2, 4 }, &dst);
    if (rc == 0)
        rc = patched_view(vae, x, p, &src);
    if (rc == 0)
        rc = vae->be->ops->copy(vae->be, &dst, &src, 0);
    if (rc < 0)
        td_vae_act_free(vae, y);
    return rc;
}

static int64_t conv_out(int64_t in, int64_t pad, int64_t k, int64_t s)
{
    return in + pad < k ? 0 : (in + pad - k) / s + 1;
}

int td_vae_conv_new(td_vae *vae, const td_tensor *x, const vae_conv *c, const td_conv3d_params *p,
                 td_tensor *y)
{
    const int64_t *k = c->w.shape;
    int rc;
    TD_TRY(td_vae_act_new(vae, y, k[0], conv_out(x->shape[1], p->pad_t_front + p->pad_t_back, k[2], p->stride[0]),
                       conv_out(x->shape[2], 2 * p->pad_h, k[3], p->stride[1]),
                       conv_out(x->shape[3], 2 * p->pad_w, k[4], p->stride[2])));
    rc = vae->be->ops->conv3d(vae->be, x, &c->w, &c->b, p, y);
    if (rc < 0)
        td_vae_act_free(vae, y);
    return rc;
}

/* The slot keeps the last min(keep, frames) frames of cat [C, T, H, W]. */
static int keep_last(td_vae *vae, vae_slot *s, const td_tensor *cat, int64_t keep)
{
    int64_t total = cat->shape[1], nk = total < keep ? total : keep;
    const int64_t *sh = s->frames.shape;
    if (!s->frames.data || sh[0] != cat->shape[0] || sh[2] != cat->shape[2] || sh[3] != cat->shape[3]) {
        td_tensor fresh;
        TD_TRY(td_vae_act_new(vae, &fresh, cat->shape[0], keep, cat->shape[2], cat->shape[3]));
        td_vae_act_free(vae, &s->frames);
        s->frames = fresh;
    }
    TD_TRY(td_vae_copy_frames(vae, &s->frames, 0, cat, total - nk, nk));
    s->n = nk;
    return 0;
}

/* Causal conv with kernel kt in time over [cache, x]: the cache holds up to
 * kt - 1 earlier frames, zeros (the conv's front padding) stand in for the
 * rest. Afterwards the cache holds the last kt - 1 frames of [cache, x]. */
static int causal_conv(td_vae *vae, vae_slot *s, const td_tensor *x, const vae_conv *c, int64_t stride_t,
                       int pad_hw, td_tensor *y)
{
    int64_t t = x->shape[1], keep = c->w.shape[2] - 1;
    td_tensor cat = *x;
    td_conv3d_params p = { { (int)stride_t, 1, 1 }, (int)(keep - s->n), 0, pad_hw, pad_hw };
    int rc = 0;

    cat.owns = 0;   /* borrowed unless the cache is prepended below */
    if (s->n > 0) {
        TD_TRY(td_vae_act_new(vae, &cat, x->shape[0], s->n + t, x->shape[2], x->shape[3]));
        rc = td_vae_copy_frames(vae, &cat, 0, &s->frames, 0, s->n);
        if (rc == 0)
            rc = td_vae_copy_frames(vae, &cat, s->n, x, 0, t);
    }
    if (rc == 0)
        rc = td_vae_conv_new(vae, &cat, c, &p, y);
    if (rc == 0 && keep > 0) {
        rc = keep_last(vae, s, &cat, keep);
        if (rc < 0)
            td_vae_act_free(vae, y);
    }
    td_vae_act_free(vae, &cat);
    return rc;
}

/* y = silu(channel_rmsnorm(x) * gamma), new. */
static int norm_silu(td_vae *vae, const td_tensor *x, const td_tensor *gamma, td_tensor *y)
{
    td_backend *be = vae->be;
    int64_t c = x->shape[0], n = td_numel(x) / (c ? c : 1);
    td_tensor xv, yv;
    int rc;
    TD_TRY(td_tensor_reshape(vae->ctx, x, 2, (int64_t[]){ c, n }, &xv));
    TD_TRY(td_vae_act_new(vae, y, x->shape[0], x->shape[1], x->shape[2], x->shape[3]));
    rc = td_tensor_reshape(vae->ctx, y, 2, (int64_t[]){ c, n }, &yv);
    if (rc == 0)
        rc = be->ops->channel_rmsnorm(be, &xv, gamma, NULL, &yv);
    if (rc == 0)
        rc = be->ops->silu(be, &yv, &yv);
    if (rc < 0)
        td_vae_act_free(vae, y);
    return rc;
}

static int res_block(td_vae *vae, const vae_layer *l, vae_state *st, const td_tensor *x, td_tensor *y)
{
    static const td_conv3d_params p1 = { { 1, 1, 1 }, 0, 0, 0, 0 };
    td_tensor a = { 0 }, b = { 0 }, h = { 0 };
    int rc;
    if (l->has_shortcut)
        TD_TRY(td_vae_conv_new(vae, x, &l->shortcut, &p1, &h));
    rc = norm_silu(vae, x, &l->norm1, &a);
    if (rc == 0)
        rc = causal_conv(vae, &st->slots[l->slot], &a, &l->conv1, 1, 1, &b);
    td_vae_act_free(vae, &a);
    if (rc == 0)
        rc = norm_silu(vae, &b, &l->norm2, &a);
    td_vae_act_free(vae, &b);
    if (rc == 0)
        rc = causal_conv(vae, &st->slots[l->slot + 1], &a, &l->conv2, 1, 1, y);
    td_vae_act_free(vae, &a);
    if (rc == 0) {
        rc = vae->be->ops->add(vae->be, y, l->has_shortcut ? &h : x, y);
        if (rc < 0)
            td_vae_act_free(vae, y);
    }
    td_vae_act_free(vae, &h);
    return rc;
}

/* Frame t of part (0 q, 1 k, 2 v, each c channels) of qkv [3c, T, S] as
 * the [S, 1, c] view the attention op takes rows of. */
static int frame_rows(td_vae *vae, const td_tensor *x3, int64_t part, int64_t c, int64_t t,
                      td_tensor *v)
{
    td_tensor a, b;
    TD_TRY(td_tensor_slice(vae->ctx, x3, 0, part * c, c, &a));
    TD_TRY(td_tensor_slice(vae->ctx, &a, 1, t, 1, &b));
    return td_tensor_permute(vae->ctx, &b, (const int[]){ 2, 1, 0 }, v);
}

/* Attention over the S positions of frame t: q, k, v, out [S, 1, c]
 * scratch; the result goes back into frame t of o3 [c, T, S]. */
static int attn_frame(td_vae *vae, const td_tensor *qkv3, td_tensor *o3, int64_t t, td_tensor *buf)
{
    td_backend *be = vae->be;
    int64_t c = o3->shape[0];
    td_tensor view;
    for (int i = 0; i < 3; i++) {
        TD_TRY(frame_rows(vae, qkv3, i, c, t, &view));
        TD_TRY(be->ops->copy(be, &buf[i], &view, 0));
    }
    TD_TRY(be->ops->attention(be, &buf[0], &buf[1], &buf[2], NULL, (float)(1.0 / sqrt((double)c)), 0,
                              &buf[3]));
    TD_TRY(frame_rows(vae, o3, 0, c, t, &view));
    return be->ops->copy(be, &view, &buf[3], 0);
}

/* Single-head attention over the H*W positions of each frame. */
static int attn_block(td_vae *vae, const vae_layer *l, const td_tensor *x, td_tensor *y)
{
    static const td_conv3d_params p1 = { { 1, 1, 1 }, 0, 0, 0, 0 };
    td_backend *be = vae->be;
    int64_t c = x->shape[0], nt = x->shape[1], s = x->shape[2] * x->shape[3];
    td_tensor n = { 0 }, qkv = { 0 }, o = { 0 }, buf[4] = { { 0 } }, xv, nv, qkv3, o3;
    int rc;

    TD_TRY(td_tensor_reshape(vae->ctx, x, 2, (int64_t[]){ c, nt * s }, &xv));
    TD_TRY(td_vae_act_new(vae, &n, c, nt, x->shape[2], x->shape[3]));
    rc = td_tensor_reshape(vae->ctx, &n, 2, (int64_t[]){ c, nt * s }, &nv);
    if (rc == 0)
        rc = be->ops->channel_rmsnorm(be, &xv, &l->norm1, NULL, &nv);
    if (rc == 0)
        rc = td_vae_conv_new(vae, &n, &l->conv1, &p1, &qkv);
    td_vae_act_free(vae, &n);
    if (rc == 0)
        rc = td_vae_act_new(vae, &o, c, nt, x->shape[2], x->shape[3]);
    for (int i = 0; rc == 0 && i < 4; i++)
        rc = be->ops->tensor_new(be, &buf[i], be->act, 3, (int64_t[]){ s, 1, c });
    if (rc == 0)
        rc = td_tensor_reshape(vae->ctx, &qkv, 3, (int64_t[]){ 3 * c, nt, s }, &qkv3);
    if (rc == 0)
        rc = td_tensor_reshape(vae->ctx, &o, 3, (int64_t[]){ c, nt, s }, &o3);
    for (int64_t t = 0; rc == 0 && t < nt; t++)
        rc = attn_frame(vae, &qkv3, &o3, t, buf);
    for (int i = 0; i < 4; i++)
        td_vae_act_free(vae, &buf[i]);
    td_vae_act_free(vae, &qkv);
    if (rc == 0)
        rc = td_vae_conv_new(vae, &o, &l->conv2, &p1, y);
    td_vae_act_free(vae, &o);
    if (rc == 0) {
        rc = be->ops->add(be, y, x, y);
        if (rc < 0)
            td_vae_act_free(vae, y);
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
    TD_TRY(td_vae_act_new(vae, y, l->cout, nt, 2 * h, 2 * w));
    rc = td_vae_act_new(vae, &fin, c, 1, h, w);
    if (rc == 0)
        rc = td_vae_act_new(vae, &up, c, 1, 2 * h, 2 * w);
    if (rc == 0)
        rc = td_vae_act_new(vae, &fo, l->cout, 1, 2 * h, 2 * w);
    for (int64_t t = 0; rc == 0 && t < nt; t++) {
        rc = td_vae_copy_frames(vae, &fin, 0, x, t, 1);
        if (rc == 0)
            rc = be->ops->upsample_nearest(be, &fin, 2, 2, &up);
        if (rc == 0)
            rc = be->ops->conv3d(be, &up, &l->conv1.w, &l->conv1.b, &p, &fo);
        if (rc == 0)
            rc = td_vae_copy_frames(vae, y, t, &fo, 0, 1);
    }
    td_vae_act_free(vae, &fin);
    td_vae_act_free(vae, &up);
    td_vae_act_free(vae, &fo);
    if (rc < 0)
        td_vae_act_free(vae, y);
    return rc;
}

/* The time conv's 2C channels [j * C + c, t] become frames 2t + j of C
 * channels: one copy of tc viewed [2, C, T, HW] permuted to [C, T, 2, HW]. */
static int interleave_time(td_vae *vae, const td_tensor *tc, td_tensor *doubled)
{
    int64_t c = tc->shape[0] / 2, nt = tc->shape[1], hw = tc->shape[2] * tc->shape[3];
    td_tensor src4, src, dst;
    int rc;
    TD_TRY(td_vae_act_new(vae, doubled, c, 2 * nt, tc->shape[2], tc->shape[3]));
    rc = td_tensor_reshape(vae->ctx, tc, 4, (int64_t[]){ 2, c, nt, hw }, &src4);
    if (rc == 0)
        rc = td_tensor_permute(vae->ctx, &src4, (const int[]){ 1, 2, 0, 3 }, &src);
    if (rc == 0)
        rc = td_tensor_reshape(vae->ctx, doubled, 4, (int64_t[]){ c, nt, 2, hw }, &dst);
    if (rc == 0)
        rc = vae->be->ops->copy(vae->be, &dst, &src, 0);
    if (rc < 0)
        td_vae_act_free(vae, doubled);
    return rc;
}

static int upsample(td_vae *vae, const vae_layer *l, vae_state *st, const td_tensor *x, td_tensor *y)
{
    vae_slot *s = &st->slots[l->slot];
    td_tensor tc = { 0 }, doubled = { 0 };
    int rc;
    if (l->kind == VAE_UP2D || !s->seen) {
        s->seen = 1;
        return up_spatial(vae, l, x, y);
    }
    TD_TRY(causal_conv(vae, s, x, &l->conv2, 1, 0, &tc));
    rc = interleave_time(vae, &tc, &doubled);
    td_vae_act_free(vae, &tc);
    if (rc == 0)
        rc = up_spatial(vae, l, &doubled, y);
    td_vae_act_free(vae, &doubled);
    return rc;
}

/* Zero pad right and bottom by one, 3x3 stride-2 conv, frame by frame: the
 * padded frame is zeroed once, each frame copied into its top-left. */
static int down_spatial(td_vae *vae, const vae_layer *l, const td_tensor *x, td_tensor *y)
{
    static const td_conv3d_params p = { { 1, 2, 2 }, 0, 0, 0, 0 };
    td_backend *be = vae->be;
    int64_t c = x->shape[0], nt = x->shape[1], h = x->shape[2], w = x->shape[3];
    int64_t ho = conv_out(h + 1, 0, 3, 2), wo = conv_out(w + 1, 0, 3, 2);
    td_tensor pad = { 0 }, fo = { 0 }, rows, inner;
    int rc;
    TD_TRY(td_vae_act_new(vae, y, l->cout, nt, ho, wo));
    rc = td_vae_act_new(vae, &pad, c, 1, h + 1, w + 1);
    if (rc == 0)
        rc = td_vae_act_new(vae, &fo, l->cout, 1, ho, wo);
    if (rc == 0)
        rc = be->ops->fill(be, &pad, 0.0f);
    if (rc == 0)
        rc = td_tensor_slice(vae->ctx, &pad, 2, 0, h, &rows);
    if (rc == 0)
        rc = td_tensor_slice(vae->ctx, &rows, 3, 0, w, &inner);
    for (int64_t t = 0; rc == 0 && t < nt; t++) {
        rc = td_vae_copy_frames(vae, &inner, 0, x, t, 1);
        if (rc == 0)
            rc = be->ops->conv3d(be, &pad, &l->conv1.w, &l->conv1.b, &p, &fo);
        if (rc == 0)
            rc = td_vae_copy_frames(vae, y, t, &fo, 0, 1);
    }
    td_vae_act_free(vae, &pad);
    td_vae_act_free(vae, &fo);
    if (rc < 0)
        td_vae_act_free(vae, y);
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
        rc = td_vae_act_new(vae, &s->frames, sp.shape[0], 1, sp.shape[2], sp.shape[3]);
        if (rc == 0)
            rc = td_vae_copy_frames(vae, &s->frames, 0, &sp, nt - 1, 1);
        if (rc < 0) {
            td_vae_act_free(vae, &sp);
            return rc;
        }
        s->n = 1;
        s->seen = 1;
        *y = sp;
        return 0;
    }
    rc = td_vae_act_new(vae, &cat, sp.shape[0], nt + 1, sp.shape[2], sp.shape[3]);
    if (rc == 0)
        rc = td_vae_copy_frames(vae, &cat, 0, &s->frames, 0, 1);
    if (rc == 0)
        rc = td_vae_copy_frames(vae, &cat, 1, &sp, 0, nt);
    if (rc == 0)
        rc = td_vae_copy_frames(vae, &s->frames, 0, &sp, nt - 1, 1);
    if (rc == 0)
        rc = td_vae_conv_new(vae, &cat, &l->conv2, &p, y);
    td_vae_act_free(vae, &cat);
    td_vae_act_free(vae, &sp);
    return rc;
}

/* x [C, T, H, W] (any strides) as [C, ft, fs, fs, T / ft, H / fs, W / fs]:
 * the ft x fs x fs cells first, as AvgDown3D and DupUp3D order them. */
static int cell_major(td_vae *vae, const td_tensor *x, int64_t ft, int64_t fs, td_tensor *v)
{
    td_tensor a, b, c;
    TD_TRY(td_vae_split_dim(vae->ctx, x, 3, fs, &a));
    TD_TRY(td_vae_split_dim(vae->ctx, &a, 2, fs, &b));
    TD_TRY(td_vae_split_dim(vae->ctx, &b, 1, ft, &c));
    return td_tensor_permute(vae->ctx, &c, (const int[]){ 0, 2, 4, 6, 1, 3, 5 }, v);
}

/* x with ft - T % ft zero frames in front when T is not a multiple of ft
 * (AvgDown3D's padding; Wan's first chunk is one frame): *xp new, or a
 * borrowed view of x. */
static int pad_time(td_vae *vae, const td_tensor *x, int64_t ft, td_tensor *xp)
{
    int64_t t = x->shape[1], pad = (ft - t % ft) % ft;
    td_tensor front;
    int rc;
    *xp = *x;
    xp->owns = 0;
    if (pad == 0)
        return 0;
    TD_TRY(td_vae_act_new(vae, xp, x->shape[0], t + pad, x->shape[2], x->shape[3]));
    rc = td_tensor_slice(vae->ctx, xp, 1, 0, pad, &front);
    if (rc == 0)
        rc = vae->be->ops->fill(vae->be, &front, 0.0f);
    if (rc == 0)
        rc = td_vae_copy_frames(vae, xp, pad, x, 0, t);
    if (rc < 0)
        td_vae_act_free(vae, xp);
    return rc;
}

/* y += AvgDown3D(x): the input's cells moved next to its channels
 * (one copy into e [cin * cells, T', h, w]), then the mean of each group
 * of consecutive channels: the first copied, the rest accumulated, times
 * 1 / group. */
static int add_avg_down(td_vae *vae, const vae_layer *g, const td_tensor *x, td_tensor *y)
{
    td_backend *be = vae->be;
    int64_t ft = g->ft, fs = g->fs, cells = ft * fs * fs, group = g->cin * cells / g->cout;
    td_tensor xp = { 0 }, e = { 0 }, sum = { 0 }, src, dst, e3, s3, part;
    int64_t tq, n;
    int rc;
    TD_TRY(pad_time(vae, x, ft, &xp));
    tq = xp.shape[1] / ft;
    n = tq * (xp.shape[2] / fs) * (xp.shape[3] / fs);
    rc = td_vae_act_new(vae, &e, g->cin * cells, tq, xp.shape[2] / fs, xp.shape[3] / fs);
    if (rc == 0)
        rc = cell_major(vae, &xp, ft, fs, &src);
    if (rc == 0)
        rc = td_tensor_reshape(vae->ctx, &e, 7, (int64_t[]){ g->cin, ft, fs, fs, tq, e.shape[2], e.shape[3] }, &dst);
    if (rc == 0)
        rc = be->ops->copy(be, &dst, &src, 0);
    td_vae_act_free(vae, &xp);
    if (rc == 0)
        rc = td_vae_act_new(vae, &sum, g->cout, tq, e.shape[2], e.shape[3]);
    if (rc == 0)
        rc = td_tensor_reshape(vae->ctx, &e, 3, (int64_t[]){ g->cout, group, n }, &e3);
    if (rc == 0)
        rc = td_tensor_reshape(vae->ctx, &sum, 3, (int64_t[]){ g->cout, 1, n }, &s3);
    for (int64_t k = 0; rc == 0 && k < group; k++) {
        rc = td_tensor_slice(vae->ctx, &e3, 1, k, 1, &part);
        if (rc == 0)
            rc = be->ops->copy(be, &s3, &part, k > 0);
    }
    td_vae_act_free(vae, &e);
    if (rc == 0)
        rc = be->ops->mul(be, &sum, &g->inv_group, &sum);
    if (rc == 0)
        rc = be->ops->copy(be, y, &sum, 1);
    td_vae_act_free(vae, &sum);
    return rc;
}

/* y += DupUp3D(x): each input channel repeated into d [cin, repeats, T,
 * h, w] (one copy per repeat), whose channels, read as [cout, ft, fs, fs],
 * fill the output's cells: accumulated into y through a permuted view.
 * The clip's first chunk keeps only the last of the ft frames per cell, as
 * Wan trims its first ft - 1 frames. */
static int add_dup_up(td_vae *vae, const vae_layer *g, const vae_state *st, const td_tensor *x,
                      td_tensor *y)
{
    td_backend *be = vae->be;
    int64_t ft = g->ft, fs = g->fs, rep = g->cout * ft * fs * fs / g->cin, t = x->shape[1];
    int first = st->chunks == 0 && ft > 1;
    td_tensor d = { 0 }, x5, slot, dv = { 0 }, src, dst;
    int rc;
    if (first && t != 1)
        return td_fail(vae->ctx, TD_EINVAL, "vae: the first decoder chunk has %lld frames at a temporal upsample; Wan's has 1",
                       (long long)t);
    TD_TRY(be->ops->tensor_new(be, &d, be->act, 5, (int64_t[]){ g->cin, rep, t, x->shape[2], x->shape[3] }));
    rc = td_tensor_reshape(vae->ctx, x, 5, (int64_t[]){ g->cin, 1, t, x->shape[2], x->shape[3] }, &x5);
    for (int64_t r = 0; rc == 0 && r < rep; r++) {
        rc = td_tensor_slice(vae->ctx, &d, 1, r, 1, &slot);
        if (rc == 0)
            rc = be->ops->copy(be, &slot, &x5, 0);
    }
    if (rc == 0)
        rc = td_tensor_reshape(vae->ctx, &d, 7, (int64_t[]){ g->cout, ft, fs, fs, t, x->shape[2], x->shape[3] }, &dv);
    src = dv;
    if (rc == 0 && first)
        rc = td_tensor_slice(vae->ctx, &dv, 1, ft - 1, 1, &src);
    if (rc == 0)
        rc = cell_major(vae, y, first ? 1 : ft, fs, &dst);
    if (rc == 0)
        rc = be->ops->copy(be, &dst, &src, 1);
    td_vae_act_free(vae, &d);
    return rc;
}

static int run_layer(td_vae *vae, const vae_layer *l, vae_state *st, const td_tensor *x, td_tensor *y);

/* A Wan2.2 residual block: its layers, then its shortcut of the input. */
static int run_block(td_vae *vae, const vae_layer *g, vae_state *st, const td_tensor *x, td_tensor *y)
{
    td_tensor cur = *x, next = { 0 };
    int rc = 0;
    cur.owns = 0;   /* borrowed until the first layer makes a new one */
    for (int j = 0; j < g->nsub; j++) {
        rc = run_layer(vae, &g->sub[j], st, &cur, &next);
        td_vae_act_free(vae, &cur);
        if (rc < 0)
            return rc;
        cur = next;
    }
    if (g->kind == VAE_DOWNBLOCK)
        rc = add_avg_down(vae, g, x, &cur);
    else if (g->has_dup)
        rc = add_dup_up(vae, g, st, x, &cur);
    if (rc < 0) {
        td_vae_act_free(vae, &cur);
        return rc;
    }
    *y = cur;
    return 0;
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
    case VAE_DOWNBLOCK:
    case VAE_UPBLOCK:
        return run_block(vae, l, st, x, y);
    default:
        return downsample(vae, l, st, x, y);
    }
}

int td_vae_net_chunk(td_vae *vae, const vae_net *net, vae_state *st, const td_tensor *x, td_tensor *y)
{
    td_tensor cur = { 0 }, next = { 0 };
    int rc;
    if (st->nslots != net->nslots)
        return td_fail(vae->ctx, TD_EINVAL, "vae: cache of %d slots for a net of %d", st->nslots,
                       net->nslots);
    TD_TRY(causal_conv(vae, &st->slots[0], x, &net->conv_in, 1, 1, &cur));
    for (int i = 0; i < net->nlayers; i++) {
        rc = run_layer(vae, &net->layers[i], st, &cur, &next);
        td_vae_act_free(vae, &cur);
        if (rc < 0)
            return rc;
        cur = next;
    }
    rc = norm_silu(vae, &cur, &net->head_norm, &next);
    td_vae_act_free(vae, &cur);
    if (rc < 0)
        return rc;
    rc = causal_conv(vae, &st->slots[net->nslots - 1], &next, &net->conv_out, 1, 1, y);
    td_vae_act_free(vae, &next);
    if (rc == 0)
        st->chunks++;
    return rc;
}
