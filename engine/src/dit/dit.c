/*
 * The Wan DiT forward pass (wan/modules/model.py WanModel.forward; the same
 * math as TurboDiffusion's rcm/networks/wan2pt1.py and diffusers'
 * WanTransformer3DModel), batch 1, f32 activations:
 *
 *   tokens  = patch_embedding(patchify(x))                      [S, dim]
 *   e       = time_embedding(sinusoid(timestep))  (Linear, SiLU, Linear)
 *   e0      = time_projection(e)                  (SiLU, Linear) -> 6 x dim
 *   ctx     = text_embedding(context)             (Linear, GELU tanh, Linear)
 *   per block, m = modulation + e0 (f32, 6 vectors):
 *     x += m2 * o(attn(rope(rmsnorm(q(y))), rope(rmsnorm(k(y))), v(y))),
 *          y = layernorm(x) * (1 + m1) + m0
 *     x += o(attn(rmsnorm(q(norm3(x))), rmsnorm(k(ctx)), v(ctx)))   (no gate)
 *     x += m5 * ffn2(gelu_tanh(ffn0(layernorm(x) * (1 + m4) + m3)))
 *   out     = unpatchify(head(layernorm(x) * (1 + h1) + h0)), h = head.modulation + e
 *
 * LayerNorms without affine and RMSNorms (over the full width, before the
 * head split) use eps 1e-6. SLA mode replaces the self-attention's softmax
 * attention with the backend's sla_attention (BLKQ 128, BLKK 64, as
 * TurboDiffusion's modify_model.py builds it) and the block's proj_l.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dit_internal.h"

#define DIT_EPS 1e-6f
#define SLA_BLKQ 128
#define SLA_BLKK 64

/* The activations of one forward pass. */
typedef struct dit_bufs {
    td_tensor x, n, q, k, v, a, o, ff, ctx_in, ck, cv, ctx, cos_t, sin_t, tmp6, emb;
} dit_bufs;

static void bufs_free(dit_bufs *b)
{
    td_tensor *all[] = { &b->x, &b->n, &b->q, &b->k, &b->v, &b->a, &b->o, &b->ff, &b->ctx_in,
                         &b->ck, &b->cv, &b->ctx, &b->cos_t, &b->sin_t, &b->tmp6, &b->emb };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        td_tensor_free(all[i]);
}

static int new2(td_ctx *ctx, td_tensor *t, int64_t r, int64_t c)
{
    int64_t s[2] = { r, c };
    return td_tensor_new(ctx, t, TD_F32, 2, s);
}

static int linear(td_backend *be, const td_tensor *x, const td_dit_linear *l, td_tensor *y)
{
    const td_tensor *b = l->has_bias ? &l->b : NULL;
    if (l->quant)
        return be->ops->linear_w8a8(be, x, &l->wq, &l->ws, b, y);
    return be->ops->linear(be, x, &l->w, b, y);
}

/* mod[k] + e[k * dim ..] for k < n, in f32, into out[n * dim]. */
static int add_modulation(td_ctx *ctx, const td_tensor *mod, const float *e, int n, int64_t dim, float *out)
{
    td_tensor dst = td_view2(out, TD_F32, n, dim);
    td_tensor src;
    TD_TRY(td_tensor_reshape(ctx, mod, 2, (int64_t[]){ n, dim }, &src));
    TD_TRY(td_tensor_copy(ctx, &dst, &src));
    for (int64_t i = 0; i < n * dim; i++)
        out[i] += e[i];
    return 0;
}

/* [S, dim] viewed as [S, heads, head_dim]. */
static td_tensor heads_view(const td_tensor *t, const td_dit_config *c)
{
    return td_view3(t->data, TD_F32, t->shape[0], c->heads, c->head_dim);
}

static int self_attention(td_dit *m, td_backend *be, const td_dit_block *bk, dit_bufs *b,
                          const td_dit_attn *attn, const float *mod)
{
    const td_dit_config *c = &m->cfg;
    int64_t d = c->dim;
    td_tensor sh = td_view1((void *)(mod), TD_F32, d), sc = td_view1((void *)(mod + d), TD_F32, d);
    td_tensor gate = td_view1((void *)(mod + 2 * d), TD_F32, d);
    td_tensor qh, kh, vh, ah;

    TD_TRY(be->ops->layernorm(be, &b->x, NULL, NULL, DIT_EPS, &b->n));
    TD_TRY(be->ops->modulate(be, &b->n, &sh, &sc, &b->n));
    TD_TRY(linear(be, &b->n, &bk->sq, &b->q));
    TD_TRY(linear(be, &b->n, &bk->sk, &b->k));
    TD_TRY(linear(be, &b->n, &bk->sv, &b->v));
    TD_TRY(be->ops->rmsnorm(be, &b->q, &bk->snq, DIT_EPS, &b->q));
    TD_TRY(be->ops->rmsnorm(be, &b->k, &bk->snk, DIT_EPS, &b->k));
    qh = heads_view(&b->q, c);
    kh = heads_view(&b->k, c);
    vh = heads_view(&b->v, c);
    ah = heads_view(&b->a, c);
    TD_TRY(be->ops->rope(be, &qh, &b->cos_t, &b->sin_t, &qh));
    TD_TRY(be->ops->rope(be, &kh, &b->cos_t, &b->sin_t, &kh));
    if (attn->mode == TD_DIT_ATTN_SLA)
        TD_TRY(be->ops->sla_attention(be, &qh, &kh, &vh, &bk->proj_l.w, &bk->proj_l.b, SLA_BLKQ,
                                      SLA_BLKK, attn->topk, &ah));
    else
        TD_TRY(be->ops->attention(be, &qh, &kh, &vh, NULL, 1.0f / sqrtf((float)c->head_dim), 0, &ah));
    TD_TRY(linear(be, &b->a, &bk->so, &b->o));
    return be->ops->add_gated(be, &b->x, &b->o, &gate);
}

static int cross_attention(td_dit *m, td_backend *be, const td_dit_block *bk, dit_bufs *b)
{
    const td_dit_config *c = &m->cfg;
    td_tensor qh, kh, vh, ah;

    TD_TRY(be->ops->layernorm(be, &b->x, &bk->norm3_w, &bk->norm3_b, DIT_EPS, &b->n));
    TD_TRY(linear(be, &b->n, &bk->cq, &b->q));
    TD_TRY(be->ops->rmsnorm(be, &b->q, &bk->cnq, DIT_EPS, &b->q));
    TD_TRY(linear(be, &b->ctx, &bk->ck, &b->ck));
    TD_TRY(be->ops->rmsnorm(be, &b->ck, &bk->cnk, DIT_EPS, &b->ck));
    TD_TRY(linear(be, &b->ctx, &bk->cv, &b->cv));
    qh = heads_view(&b->q, c);
    kh = heads_view(&b->ck, c);
    vh = heads_view(&b->cv, c);
    ah = heads_view(&b->a, c);
    TD_TRY(be->ops->attention(be, &qh, &kh, &vh, NULL, 1.0f / sqrtf((float)c->head_dim), 0, &ah));
    TD_TRY(linear(be, &b->a, &bk->co, &b->o));
    return be->ops->add(be, &b->x, &b->o, &b->x);
}

static int feed_forward(td_backend *be, const td_dit_block *bk, dit_bufs *b, const float *mod, int64_t d,
                        int64_t ffn_dim)
{
    td_tensor ff = td_view2(b->ff.data, TD_F32, b->x.shape[0], ffn_dim);
    td_tensor sh = td_view1((void *)(mod + 3 * d), TD_F32, d), sc = td_view1((void *)(mod + 4 * d), TD_F32, d);
    td_tensor gate = td_view1((void *)(mod + 5 * d), TD_F32, d);
    TD_TRY(be->ops->layernorm(be, &b->x, NULL, NULL, DIT_EPS, &b->n));
    TD_TRY(be->ops->modulate(be, &b->n, &sh, &sc, &b->n));
    TD_TRY(linear(be, &b->n, &bk->ffn0, &ff));
    TD_TRY(be->ops->gelu_tanh(be, &ff, &ff));
    TD_TRY(linear(be, &ff, &bk->ffn2, &b->o));
    return be->ops->add_gated(be, &b->x, &b->o, &gate);
}

/* x [C, F, H, W] -> rows [S, C * pt * ph * pw], columns ordered (c, kt, kh, kw). */
static void patchify(const td_dit_config *c, const float *x, int64_t F, int64_t H, int64_t W, float *p)
{
    int pt = c->patch[0], ph = c->patch[1], pw = c->patch[2];
    int64_t tp = F / pt, hp = H / ph, wp = W / pw, s = 0;
    for (int64_t f = 0; f < tp; f++)
        for (int64_t h = 0; h < hp; h++)
            for (int64_t w = 0; w < wp; w++, s++) {
                float *row = p + s * (int64_t)c->in_ch * pt * ph * pw;
                for (int64_t ch = 0; ch < c->in_ch; ch++)
                    for (int a = 0; a < pt; a++)
                        for (int bb = 0; bb < ph; bb++)
                            for (int cc = 0; cc < pw; cc++)
                                *row++ = x[((ch * F + f * pt + a) * H + h * ph + bb) * W + w * pw + cc];
            }
}

/* rows [S, pt * ph * pw * C_out] (C_out fastest) -> out [C_out, F, H, W]. */
static void unpatchify(const td_dit_config *c, const float *p, int64_t F, int64_t H, int64_t W, float *out)
{
    int pt = c->patch[0], ph = c->patch[1], pw = c->patch[2];
    int64_t tp = F / pt, hp = H / ph, wp = W / pw, s = 0;
    for (int64_t f = 0; f < tp; f++)
        for (int64_t h = 0; h < hp; h++)
            for (int64_t w = 0; w < wp; w++, s++) {
                const float *row = p + s * (int64_t)c->out_ch * pt * ph * pw;
                for (int a = 0; a < pt; a++)
                    for (int bb = 0; bb < ph; bb++)
                        for (int cc = 0; cc < pw; cc++)
                            for (int64_t ch = 0; ch < c->out_ch; ch++)
                                out[((ch * F + f * pt + a) * H + h * ph + bb) * W + w * pw + cc] = *row++;
            }
}

static int check_inputs(td_dit *m, const td_tensor *x, const td_tensor *context, const td_dit_attn *attn,
                        const td_tensor *out)
{
    const td_dit_config *c = &m->cfg;
    char s1[96], s2[96];
    if (x->ndim != 4 || x->dtype != TD_F32 || !td_is_contiguous(x) || x->shape[0] != c->in_ch ||
        x->shape[1] % c->patch[0] || x->shape[2] % c->patch[1] || x->shape[3] % c->patch[2] ||
        x->shape[1] <= 0 || x->shape[2] <= 0 || x->shape[3] <= 0)
        return td_fail(m->ctx, TD_ESHAPE, "dit: latents %s must be contiguous f32 [%d, F, H, W] with F, H, W "
                       "non-zero multiples of the patch %dx%dx%d", td_shape_str(x, s1, sizeof(s1)),
                       c->in_ch, c->patch[0], c->patch[1], c->patch[2]);
    if (context->ndim != 2 || context->dtype != TD_F32 || !td_is_contiguous(context) ||
        context->shape[1] != c->text_dim || context->shape[0] <= 0)
        return td_fail(m->ctx, TD_ESHAPE, "dit: context %s must be contiguous f32 [L, %d]",
                       td_shape_str(context, s1, sizeof(s1)), c->text_dim);
    if (out->ndim != 4 || out->dtype != TD_F32 || !td_is_contiguous(out) || out->shape[0] != c->out_ch ||
        out->shape[1] != x->shape[1] || out->shape[2] != x->shape[2] || out->shape[3] != x->shape[3])
        return td_fail(m->ctx, TD_ESHAPE, "dit: out %s must be contiguous f32 [%d, F, H, W] of latents %s",
                       td_shape_str(out, s1, sizeof(s1)), c->out_ch, td_shape_str(x, s2, sizeof(s2)));
    if (attn->mode == TD_DIT_ATTN_SLA) {
        char name[200];
        if (!c->has_proj_l)
            return td_fail(m->ctx, TD_ENOTFOUND, "%s: SLA attention needs %s.weight, which this checkpoint lacks "
                           "(use full attention or an SLA checkpoint)", td_weights_path(m->w),
                           td_dit_key_name(TD_DIT_KEYS_WAN, DK_PROJ_L, 0, name, sizeof(name)));
        if (!(attn->topk > 0 && attn->topk <= 1))
            return td_fail(m->ctx, TD_EINVAL, "dit: SLA topk %g must be in (0, 1]", attn->topk);
    } else if (attn->mode != TD_DIT_ATTN_FULL) {
        return td_fail(m->ctx, TD_EINVAL, "dit: unknown attention mode %d", (int)attn->mode);
    }
    return 0;
}

/* e [dim] and e0 [6 * dim] from the timestep; b->tmp6 is scratch. */
static int time_embedding(td_dit *m, td_backend *be, double timestep, dit_bufs *b, td_tensor *e, td_tensor *e0)
{
    int64_t d = m->cfg.dim;
    td_tensor sin_emb = td_view2(b->tmp6.data, TD_F32, 1, m->cfg.freq_dim);
    td_tensor h = td_view2((float *)b->tmp6.data + m->cfg.freq_dim, TD_F32, 1, d);
    td_dit_time_embedding(timestep, m->cfg.freq_dim, sin_emb.data);
    TD_TRY(linear(be, &sin_emb, &m->time0, &h));
    TD_TRY(be->ops->silu(be, &h, &h));
    TD_TRY(linear(be, &h, &m->time2, e));
    TD_TRY(be->ops->silu(be, e, &h));
    return linear(be, &h, &m->tproj, e0);
}

/* The head: layernorm, (head.modulation + e) shift / scale, linear, unpatchify. */
static int head(td_dit *m, td_backend *be, dit_bufs *b, const float *e, float *hm, const td_tensor *x,
                td_tensor *out)
{
    const td_dit_config *c = &m->cfg;
    int64_t d = c->dim, np = (int64_t)c->patch[0] * c->patch[1] * c->patch[2], S = b->x.shape[0];
    td_tensor dst = td_view2(hm, TD_F32, 2, d), src, rows;
    td_tensor sh = td_view1(hm, TD_F32, d), sc = td_view1(hm + d, TD_F32, d);
    TD_TRY(td_tensor_reshape(m->ctx, &m->head_mod, 2, (int64_t[]){ 2, d }, &src));
    TD_TRY(td_tensor_copy(m->ctx, &dst, &src));
    for (int64_t j = 0; j < d; j++) {
        hm[j] += e[j];
        hm[d + j] += e[j];
    }
    TD_TRY(be->ops->layernorm(be, &b->x, NULL, NULL, DIT_EPS, &b->n));
    TD_TRY(be->ops->modulate(be, &b->n, &sh, &sc, &b->n));
    rows = td_view2(b->ff.data, TD_F32, S, c->out_ch * np);
    TD_TRY(linear(be, &b->n, &m->head, &rows));
    unpatchify(c, rows.data, x->shape[1], x->shape[2], x->shape[3], out->data);
    return 0;
}

static int forward(td_dit *m, td_backend *be, const td_tensor *x, double timestep, const td_tensor *context,
                   const td_dit_attn *attn, td_tensor *out, dit_bufs *b)
{
    td_ctx *ctx = m->ctx;
    const td_dit_config *c = &m->cfg;
    int64_t F = x->shape[1], H = x->shape[2], W = x->shape[3], d = c->dim;
    int64_t tp = F / c->patch[0], hp = H / c->patch[1], wp = W / c->patch[2], S = tp * hp * wp;
    int64_t np = (int64_t)c->patch[0] * c->patch[1] * c->patch[2], L = context->shape[0];
    int64_t ffw = c->ffn_dim, pin = c->in_ch * np, pout = c->out_ch * np;
    float *modv;
    td_tensor e, e0, patches;

    if (pin > ffw)
        ffw = pin;
    if (pout > ffw)
        ffw = pout;
    TD_TRY(new2(ctx, &b->x, S, d));
    TD_TRY(new2(ctx, &b->n, S, d));
    TD_TRY(new2(ctx, &b->q, S, d));
    TD_TRY(new2(ctx, &b->k, S, d));
    TD_TRY(new2(ctx, &b->v, S, d));
    TD_TRY(new2(ctx, &b->a, S, d));
    TD_TRY(new2(ctx, &b->o, S, d));
    TD_TRY(new2(ctx, &b->ff, S, ffw));     /* also the patch rows and the head's rows */
    TD_TRY(new2(ctx, &b->ctx_in, L, d));
    TD_TRY(new2(ctx, &b->ctx, L, d));
    TD_TRY(new2(ctx, &b->ck, L, d));
    TD_TRY(new2(ctx, &b->cv, L, d));
    TD_TRY(new2(ctx, &b->cos_t, S, c->head_dim / 2));
    TD_TRY(new2(ctx, &b->sin_t, S, c->head_dim / 2));
    TD_TRY(new2(ctx, &b->tmp6, 1, c->freq_dim + d));
    TD_TRY(new2(ctx, &b->emb, 1, 13 * d));  /* e [d], e0 [6 d], per-block modulation [6 d] */
    e = td_view2(b->emb.data, TD_F32, 1, d);
    e0 = td_view2((float *)b->emb.data + d, TD_F32, 1, 6 * d);
    modv = (float *)b->emb.data + 7 * d;

    patches = td_view2(b->ff.data, TD_F32, S, pin);
    patchify(c, x->data, F, H, W, patches.data);
    TD_TRY(linear(be, &patches, &m->patch, &b->x));
    TD_TRY(time_embedding(m, be, timestep, b, &e, &e0));
    TD_TRY(linear(be, context, &m->text0, &b->ctx_in));
    TD_TRY(be->ops->gelu_tanh(be, &b->ctx_in, &b->ctx_in));
    TD_TRY(linear(be, &b->ctx_in, &m->text2, &b->ctx));
    td_dit_rope_tables(c->head_dim, tp, hp, wp, b->cos_t.data, b->sin_t.data);

    for (int i = 0; i < c->layers; i++) {
        const td_dit_block *bk = &m->blocks[i];
        TD_TRY(add_modulation(ctx, &bk->mod, e0.data, 6, d, modv));
        TD_TRY(self_attention(m, be, bk, b, attn, modv));
        TD_TRY(cross_attention(m, be, bk, b));
        TD_TRY(feed_forward(be, bk, b, modv, d, c->ffn_dim));
    }
    return head(m, be, b, e.data, modv, x, out);
}

int td_dit_forward(td_dit *dit, td_backend *be, const td_tensor *x, double timestep,
                   const td_tensor *context, const td_dit_attn *attn, td_tensor *out)
{
    static const td_dit_attn full = { TD_DIT_ATTN_FULL, 0 };
    dit_bufs b = { 0 };
    int rc;
    if (!attn)
        attn = &full;
    TD_TRY(check_inputs(dit, x, context, attn, out));
    rc = forward(dit, be, x, timestep, context, attn, out, &b);
    bufs_free(&b);
    return rc;
}
