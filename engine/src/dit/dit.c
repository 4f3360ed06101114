/*
 * The Wan DiT forward pass (wan/modules/model.py WanModel.forward; the same
 * math as TurboDiffusion's rcm/networks/wan2pt1.py and diffusers'
 * WanTransformer3DModel), batch 1, activations in the backend's dtype (f32
 * on the CPU), every one of them touched only through backend ops:
 *
 *   tokens  = patch_embedding(patchify(x))                      [S, dim]
 *   e       = time_embedding(sinusoid(timestep))  (Linear, SiLU, Linear)
 *   e0      = time_projection(e)                  (SiLU, Linear) -> 6 x dim
 *   ctx     = text_embedding(context)             (Linear, GELU tanh, Linear)
 *   per block, m = modulation + e0 (6 vectors, added by the backend):
 *     x += m2 * o(attn(rope(rmsnorm(q(y))), rope(rmsnorm(k(y))), v(y))),
 *          y = layernorm(x) * (1 + m1) + m0
 *     x += o(attn(rmsnorm(q(norm3(x))), rmsnorm(k(ctx)), v(ctx)))   (no gate)
 *     x += m5 * ffn2(gelu_tanh(ffn0(layernorm(x) * (1 + m4) + m3)))
 *   out     = unpatchify(head(layernorm(x) * (1 + h1) + h0)), h = head.modulation + e
 *
 * Per-token timesteps (Wan2.2 TI2V, diffusers' expand_timesteps): the
 * tokens of the first latent frame may take their own timestep (0 for the
 * clean image frame of image-to-video). e and e0 are then computed for
 * each distinct timestep (rows of the plan's tables) and every modulation
 * above applies to the token rows of its timestep: tokens are frame-major,
 * so those rows are one leading run of the [S, dim] buffers, and each
 * modulate / gated add runs on a row slice. The same values diffusers
 * gets from its per-token time MLP, without running it S times.
 *
 * LayerNorms without affine and RMSNorms (over the full width, before the
 * head split) use eps 1e-6. SLA mode replaces the self-attention's softmax
 * attention with the backend's sla_attention (BLKQ 128, BLKK 64, as
 * TurboDiffusion's modify_model.py builds it) and the block's proj_l.
 * patchify / unpatchify are backend copies of permuted 7-D views; the
 * buffers and RoPE tables come from a td_dit_plan (dit_plan.c).
 */
#include <math.h>

#include "dit_internal.h"

#define DIT_EPS 1e-6f
#define SLA_BLKQ 128
#define SLA_BLKK 64

static int linear(td_backend *be, const td_tensor *x, const td_dit_linear *l, td_tensor *y)
{
    const td_tensor *b = l->has_bias ? &l->b : NULL;
    if (l->quant)
        return be->ops->linear_w8a8(be, x, &l->wq, &l->ws, b, y);
    return be->ops->linear(be, x, &l->w, b, y);
}

/* Row i of a [n, d] buffer as the vector [d] (a view). */
static int row(td_ctx *ctx, const td_tensor *t, int64_t i, td_tensor *out)
{
    td_tensor r;
    TD_TRY(td_tensor_slice(ctx, t, 0, i, 1, &r));
    return td_tensor_reshape(ctx, &r, 1, &t->shape[1], out);
}

/* The first numel(shape) elements of a contiguous buffer, viewed with shape:
 * the patch and head rows share the FFN's buffer. */
static td_tensor prefix(const td_tensor *buf, int ndim, const int64_t *shape)
{
    return td_view(buf->data, buf->dtype, ndim, shape);
}

/* dst [n, d] = table (uploaded, [1, n, d]) + e (broadcast over the rows
 * when it is one row, elementwise when it is [1, n d]). */
static int add_modulation(td_dit *m, const td_tensor *table, const td_tensor *e, td_tensor *dst)
{
    td_backend *be = m->be;
    td_tensor src;
    TD_TRY(td_tensor_reshape(m->ctx, table, 2, dst->shape, &src));
    TD_TRY(be->ops->copy(be, dst, &src, 0));
    return be->ops->add(be, dst, e, dst);
}

/* The token rows of each distinct timestep: segment k is rows
 * [first[k], first[k] + rows[k]) of the [S, dim] buffers, modulated with
 * the tables of timestep t[k] (row k of e / e0, rows 6k.. of plan->mod). */
typedef struct segs {
    int n;
    int64_t first[TD_DIT_MAX_TIMES], rows[TD_DIT_MAX_TIMES];
    double t[TD_DIT_MAX_TIMES];
} segs;

/* One segment when every token has one timestep (no first-frame timestep,
 * the same value, or a clip of one latent frame), else the first latent
 * frame's tokens then the rest. */
static void make_segs(const td_dit_plan *b, const td_dit_config *c, double t, double t_first, segs *s)
{
    int64_t n0 = b->S / (b->F / c->patch[0]);
    if (t_first == t || n0 == b->S) {
        *s = (segs){ 1, { 0 }, { b->S }, { n0 == b->S ? t_first : t } };
        return;
    }
    *s = (segs){ 2, { 0, n0 }, { n0, b->S - n0 }, { t_first, t } };
}

/* Segment k's rows of a [S, d] buffer (a view). */
static int seg_rows(td_ctx *ctx, const td_tensor *t, const segs *s, int k, td_tensor *out)
{
    return td_tensor_slice(ctx, t, 0, s->first[k], s->rows[k], out);
}

/* b->n = b->n * (1 + scale) + shift per segment, shift and scale rows
 * i_shift, i_shift + 1 of the segment's modulation. */
static int modulate_segs(td_dit *m, td_dit_plan *b, const segs *s, int i_shift)
{
    td_tensor rows, sh, sc;
    for (int k = 0; k < s->n; k++) {
        TD_TRY(seg_rows(m->ctx, &b->n, s, k, &rows));
        TD_TRY(row(m->ctx, &b->mod, 6 * k + i_shift, &sh));
        TD_TRY(row(m->ctx, &b->mod, 6 * k + i_shift + 1, &sc));
        TD_TRY(m->be->ops->modulate(m->be, &rows, &sh, &sc, &rows));
    }
    return 0;
}

/* b->x += b->o * gate per segment, gate row i_gate of its modulation. */
static int gated_segs(td_dit *m, td_dit_plan *b, const segs *s, int i_gate)
{
    td_tensor x, o, gate;
    for (int k = 0; k < s->n; k++) {
        TD_TRY(seg_rows(m->ctx, &b->x, s, k, &x));
        TD_TRY(seg_rows(m->ctx, &b->o, s, k, &o));
        TD_TRY(row(m->ctx, &b->mod, 6 * k + i_gate, &gate));
        TD_TRY(m->be->ops->add_gated(m->be, &x, &o, &gate));
    }
    return 0;
}

/* [S, dim] viewed as [S, heads, head_dim]. */
static td_tensor heads_view(const td_tensor *t, const td_dit_config *c)
{
    return td_view3(t->data, t->dtype, t->shape[0], c->heads, c->head_dim);
}

static int self_attention(td_dit *m, const td_dit_block *bk, td_dit_plan *b, const segs *s,
                          const td_dit_attn *attn)
{
    const td_dit_config *c = &m->cfg;
    td_backend *be = m->be;
    td_tensor qh, kh, vh, ah;

    TD_TRY(be->ops->layernorm(be, &b->x, NULL, NULL, DIT_EPS, &b->n));
    TD_TRY(modulate_segs(m, b, s, 0));
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
    return gated_segs(m, b, s, 2);
}

static int cross_attention(td_dit *m, const td_dit_block *bk, td_dit_plan *b)
{
    const td_dit_config *c = &m->cfg;
    td_backend *be = m->be;
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

static int feed_forward(td_dit *m, const td_dit_block *bk, td_dit_plan *b, const segs *s)
{
    td_backend *be = m->be;
    td_tensor ff = prefix(&b->ff, 2, (int64_t[]){ b->S, m->cfg.ffn_dim });

    TD_TRY(be->ops->layernorm(be, &b->x, NULL, NULL, DIT_EPS, &b->n));
    TD_TRY(modulate_segs(m, b, s, 3));
    if (bk->ffn0.quant) {
        TD_TRY(linear(be, &b->n, &bk->ffn0, &ff));
        TD_TRY(be->ops->gelu_tanh(be, &ff, &ff));
    } else {
        TD_TRY(be->ops->linear_gelu_tanh(be, &b->n, &bk->ffn0.w, bk->ffn0.has_bias ? &bk->ffn0.b : NULL, &ff));
    }
    TD_TRY(linear(be, &ff, &bk->ffn2, &b->o));
    return gated_segs(m, b, s, 5);
}

/* x [C, F, H, W] as the 7-D [C, tp, pt, hp, ph, wp, pw]. */
static int patch_grid(td_ctx *ctx, const td_dit_config *c, const td_tensor *x, td_tensor *out)
{
    int64_t C = x->shape[0], F = x->shape[1], H = x->shape[2], W = x->shape[3];
    int pt = c->patch[0], ph = c->patch[1], pw = c->patch[2];
    int64_t s[7] = { C, F / pt, pt, H / ph, ph, W / pw, pw };
    return td_tensor_reshape(ctx, x, 7, s, out);
}

/* x [C, F, H, W] -> rows [S, C * pt * ph * pw], columns ordered (c, kt, kh, kw):
 * the grid permuted to [tp, hp, wp, C, pt, ph, pw] and copied. */
static int patchify(td_dit *m, const td_tensor *x, td_tensor *rows)
{
    static const int perm[7] = { 1, 3, 5, 0, 2, 4, 6 };
    td_tensor grid, src, dst;
    TD_TRY(patch_grid(m->ctx, &m->cfg, x, &grid));
    TD_TRY(td_tensor_permute(m->ctx, &grid, perm, &src));
    TD_TRY(td_tensor_reshape(m->ctx, rows, 7, src.shape, &dst));
    return m->be->ops->copy(m->be, &dst, &src, 0);
}

/* rows [S, pt * ph * pw * C_out] (C_out fastest) -> out [C_out, F, H, W]:
 * the rows as [tp, hp, wp, pt, ph, pw, C_out] copied into out's grid
 * permuted to that order. */
static int unpatchify(td_dit *m, const td_tensor *rows, td_tensor *out)
{
    static const int perm[7] = { 1, 3, 5, 2, 4, 6, 0 };
    td_tensor grid, dst, src;
    TD_TRY(patch_grid(m->ctx, &m->cfg, out, &grid));
    TD_TRY(td_tensor_permute(m->ctx, &grid, perm, &dst));
    TD_TRY(td_tensor_reshape(m->ctx, rows, 7, dst.shape, &src));
    return m->be->ops->copy(m->be, &dst, &src, 0);
}

/* t is a contiguous ndim-D tensor in the backend's activation dtype. */
static int is_act(td_dit *m, const td_tensor *t, int ndim)
{
    return t->ndim == ndim && t->dtype == m->be->act && td_is_contiguous(t);
}

static int check_inputs(td_dit *m, const td_tensor *x, const td_tensor *context, const td_dit_attn *attn,
                        const td_tensor *out)
{
    const td_dit_config *c = &m->cfg;
    const char *act = td_dtype_name(m->be->act);
    char s1[96], s2[96];
    if (!is_act(m, x, 4) || x->shape[0] != c->in_ch || x->shape[1] % c->patch[0] ||
        x->shape[2] % c->patch[1] || x->shape[3] % c->patch[2] || x->shape[1] <= 0 || x->shape[2] <= 0 ||
        x->shape[3] <= 0)
        return td_fail(m->ctx, TD_ESHAPE, "dit: latents %s must be contiguous %s [%d, F, H, W] with F, H, W "
                       "non-zero multiples of the patch %dx%dx%d", td_shape_str(x, s1, sizeof(s1)), act,
                       c->in_ch, c->patch[0], c->patch[1], c->patch[2]);
    if (!is_act(m, context, 2) || context->shape[1] != c->text_dim || context->shape[0] <= 0)
        return td_fail(m->ctx, TD_ESHAPE, "dit: context %s must be contiguous %s [L, %d]",
                       td_shape_str(context, s1, sizeof(s1)), act, c->text_dim);
    if (!is_act(m, out, 4) || out->shape[0] != c->out_ch || out->shape[1] != x->shape[1] ||
        out->shape[2] != x->shape[2] || out->shape[3] != x->shape[3])
        return td_fail(m->ctx, TD_ESHAPE, "dit: out %s must be contiguous %s [%d, F, H, W] of latents %s",
                       td_shape_str(out, s1, sizeof(s1)), act, c->out_ch, td_shape_str(x, s2, sizeof(s2)));
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

static int check_plan(td_dit *m, const td_dit_plan *p, const td_tensor *x, const td_tensor *context)
{
    if (!td_dit_plan_fits(p, m) || p->F != x->shape[1] || p->H != x->shape[2] || p->W != x->shape[3] ||
        p->L != context->shape[0])
        return td_fail(m->ctx, TD_ESHAPE, "dit: the plan for latents %lldx%lldx%lld and %lld context rows "
                       "(dim %d) does not fit latents %lldx%lldx%lld and %lld context rows (dim %d)",
                       (long long)p->F, (long long)p->H, (long long)p->W, (long long)p->L, p->cfg.dim,
                       (long long)x->shape[1], (long long)x->shape[2], (long long)x->shape[3],
                       (long long)context->shape[0], m->cfg.dim);
    return 0;
}

/* Rows [0, n) of a plan table (a view). */
static int first_rows(td_ctx *ctx, const td_tensor *t, int64_t n, td_tensor *out)
{
    return td_tensor_slice(ctx, t, 0, 0, n, out);
}

/* e [n, dim] and e0 [n, 6 dim], row k from timestep s->t[k], whose
 * sinusoid is made on the host in f64 and written to the backend. */
static int time_embedding(td_dit *m, const segs *s, td_dit_plan *b)
{
    td_backend *be = m->be;
    int f = m->cfg.freq_dim;
    td_tensor host = td_view2(b->sinus_host, TD_F32, s->n, f), sinus, th, e, e0;

    for (int k = 0; k < s->n; k++)
        td_dit_time_embedding(s->t[k], f, b->sinus_host + (size_t)k * f);
    TD_TRY(first_rows(m->ctx, &b->sinus, s->n, &sinus));
    TD_TRY(first_rows(m->ctx, &b->th, s->n, &th));
    TD_TRY(first_rows(m->ctx, &b->e, s->n, &e));
    TD_TRY(first_rows(m->ctx, &b->e0, s->n, &e0));
    TD_TRY(be->ops->write(be, &sinus, &host));
    TD_TRY(linear(be, &sinus, &m->time0, &th));
    TD_TRY(be->ops->silu(be, &th, &th));
    TD_TRY(linear(be, &th, &m->time2, &e));
    TD_TRY(be->ops->silu(be, &e, &th));
    return linear(be, &th, &m->tproj, &e0);
}

/* The 6 modulation rows of segment k: the table plus row k of src (e0 for
 * a block, e for the head's 2 rows). */
static int seg_modulation(td_dit *m, td_dit_plan *b, const td_tensor *table, const td_tensor *src,
                          int k, int rows)
{
    td_tensor dst, e;
    TD_TRY(td_tensor_slice(m->ctx, &b->mod, 0, 6 * k, rows, &dst));
    TD_TRY(td_tensor_slice(m->ctx, src, 0, k, 1, &e));
    return add_modulation(m, table, &e, &dst);
}

/* The head: layernorm, (head.modulation + e) shift / scale, linear, unpatchify. */
static int head(td_dit *m, td_dit_plan *b, const segs *s, td_tensor *out)
{
    const td_dit_config *c = &m->cfg;
    td_backend *be = m->be;
    int64_t np = (int64_t)c->patch[0] * c->patch[1] * c->patch[2];
    td_tensor rows = prefix(&b->ff, 2, (int64_t[]){ b->S, c->out_ch * np });

    for (int k = 0; k < s->n; k++)
        TD_TRY(seg_modulation(m, b, &m->head_mod, &b->e, k, 2));
    TD_TRY(be->ops->layernorm(be, &b->x, NULL, NULL, DIT_EPS, &b->n));
    TD_TRY(modulate_segs(m, b, s, 0));
    TD_TRY(linear(be, &b->n, &m->head, &rows));
    return unpatchify(m, &rows, out);
}

static int forward(td_dit *m, td_dit_plan *b, const td_tensor *x, const segs *s, const td_tensor *context,
                   const td_dit_attn *attn, td_tensor *out)
{
    td_backend *be = m->be;
    const td_dit_config *c = &m->cfg;
    int64_t np = (int64_t)c->patch[0] * c->patch[1] * c->patch[2];
    td_tensor patches = prefix(&b->ff, 2, (int64_t[]){ b->S, c->in_ch * np });

    TD_TRY(patchify(m, x, &patches));
    TD_TRY(linear(be, &patches, &m->patch, &b->x));
    TD_TRY(time_embedding(m, s, b));
    TD_TRY(linear(be, context, &m->text0, &b->ctx_in));
    TD_TRY(be->ops->gelu_tanh(be, &b->ctx_in, &b->ctx_in));
    TD_TRY(linear(be, &b->ctx_in, &m->text2, &b->ctx));

    for (int i = 0; i < c->layers; i++) {
        const td_dit_block *bk = &m->blocks[i];
        for (int k = 0; k < s->n; k++)
            TD_TRY(seg_modulation(m, b, &bk->mod, &b->e0, k, 6));
        TD_TRY(self_attention(m, bk, b, s, attn));
        TD_TRY(cross_attention(m, bk, b));
        TD_TRY(feed_forward(m, bk, b, s));
    }
    return head(m, b, s, out);
}

int td_dit_forward_first(td_dit *dit, td_dit_plan *plan, const td_tensor *x, double timestep,
                         double first_timestep, const td_tensor *context, const td_dit_attn *attn,
                         td_tensor *out)
{
    static const td_dit_attn full = { TD_DIT_ATTN_FULL, 0 };
    td_dit_plan *own = NULL;
    segs s;
    int rc;
    if (!attn)
        attn = &full;
    TD_TRY(check_inputs(dit, x, context, attn, out));
    if (plan)
        TD_TRY(check_plan(dit, plan, x, context));
    else
        TD_TRY(td_dit_plan_new(dit, x->shape[1], x->shape[2], x->shape[3], context->shape[0], &own));
    make_segs(plan ? plan : own, &dit->cfg, timestep, first_timestep, &s);
    rc = forward(dit, plan ? plan : own, x, &s, context, attn, out);
    td_dit_plan_free(&own);
    return rc;
}

int td_dit_forward(td_dit *dit, td_dit_plan *plan, const td_tensor *x, double timestep,
                   const td_tensor *context, const td_dit_attn *attn, td_tensor *out)
{
    return td_dit_forward_first(dit, plan, x, timestep, timestep, context, attn, out);
}
