/*
 * The DiT's per-job plan: the activation buffers of one forward pass and
 * the RoPE tables, allocated once through the backend for one latent and
 * context size, so a sampler's steps reuse them. The RoPE angles are
 * computed on the host in f64 (as Wan does) and written once; the timestep
 * sinusoid's host staging row lives here too, written each forward.
 */
#include <stdlib.h>

#include "dit_internal.h"

static int new2(td_backend *be, td_tensor *t, int64_t r, int64_t c)
{
    int64_t s[2] = { r, c };
    return be->ops->tensor_new(be, t, be->act, 2, s);
}

/* The [S, head_dim / 2] cos/sin tables of the (tp, hp, wp) token grid. */
static int write_rope(td_ctx *ctx, td_dit_plan *p, int64_t tp, int64_t hp, int64_t wp)
{
    int64_t half = p->cfg.head_dim / 2, n = p->S * half;
    float *host = malloc(sizeof(float) * (size_t)(2 * n));
    td_tensor c, s;
    int rc;
    if (!host)
        return td_fail(ctx, TD_ENOMEM, "dit: RoPE tables for %lld tokens", (long long)p->S);
    td_dit_rope_tables(p->cfg.head_dim, tp, hp, wp, host, host + n);
    c = td_view2(host, TD_F32, p->S, half);
    s = td_view2(host + n, TD_F32, p->S, half);
    rc = p->be->ops->write(p->be, &p->cos_t, &c);
    if (rc == 0)
        rc = p->be->ops->write(p->be, &p->sin_t, &s);
    free(host);
    return rc;
}

/* td_dit_plan_bytes counts these buffers: keep the two together. */
static int alloc_buffers(td_dit_plan *p)
{
    const td_dit_config *c = &p->cfg;
    td_backend *be = p->be;
    int64_t np = (int64_t)c->patch[0] * c->patch[1] * c->patch[2], d = c->dim, S = p->S, L = p->L;
    int64_t ffw = c->ffn_dim, pin = c->in_ch * np, pout = c->out_ch * np;
    td_tensor *sd[] = { &p->x, &p->n, &p->q, &p->k, &p->v, &p->a, &p->o };
    td_tensor *ld[] = { &p->ctx_in, &p->ctx, &p->ck, &p->cv };

    if (pin > ffw)
        ffw = pin;
    if (pout > ffw)
        ffw = pout;
    for (size_t i = 0; i < sizeof(sd) / sizeof(sd[0]); i++)
        TD_TRY(new2(be, sd[i], S, d));
    TD_TRY(new2(be, &p->ff, S, ffw));
    for (size_t i = 0; i < sizeof(ld) / sizeof(ld[0]); i++)
        TD_TRY(new2(be, ld[i], L, d));
    TD_TRY(new2(be, &p->cos_t, S, c->head_dim / 2));
    TD_TRY(new2(be, &p->sin_t, S, c->head_dim / 2));
    TD_TRY(new2(be, &p->sinus, TD_DIT_MAX_TIMES, c->freq_dim));
    TD_TRY(new2(be, &p->th, TD_DIT_MAX_TIMES, d));
    TD_TRY(new2(be, &p->e, TD_DIT_MAX_TIMES, d));
    TD_TRY(new2(be, &p->e0, TD_DIT_MAX_TIMES, 6 * d));
    TD_TRY(new2(be, &p->mod, TD_DIT_MAX_TIMES * 6, d));
    p->sinus_host = malloc(sizeof(float) * (size_t)(TD_DIT_MAX_TIMES * c->freq_dim));
    if (!p->sinus_host)
        return td_fail(be->ctx, TD_ENOMEM, "dit: timestep sinusoids of %d values", c->freq_dim);
    return 0;
}

size_t td_dit_plan_bytes(const td_dit_config *c, td_dtype act, int64_t F, int64_t H, int64_t W, int64_t L)
{
    int64_t np = (int64_t)c->patch[0] * c->patch[1] * c->patch[2], d = c->dim;
    int64_t S = F / c->patch[0] * (H / c->patch[1]) * (W / c->patch[2]);
    int64_t ffw = c->ffn_dim, pin = c->in_ch * np, pout = c->out_ch * np;
    double n;
    if (pin > ffw)
        ffw = pin;
    if (pout > ffw)
        ffw = pout;
    /* alloc_buffers, tensor by tensor */
    n = 7.0 * S * d + (double)S * ffw + 4.0 * L * d + 2.0 * S * (c->head_dim / 2) +
        TD_DIT_MAX_TIMES * ((double)c->freq_dim + 2.0 * d + 6.0 * d + 6.0 * d);
    n *= (double)td_dtype_size(act);
    return n >= (double)SIZE_MAX ? SIZE_MAX : (size_t)n;
}

/* The workspace of a linear of rows x in -> out, W8A8 when quant. */
static size_t linear_ws(td_backend *be, const td_dit_config *c, int quant, int64_t rows, int64_t out, int64_t in)
{
    td_tensor x = td_view2(NULL, be->act, rows, in), y = td_view2(NULL, be->act, rows, out);
    td_tensor w = td_view2(NULL, quant ? TD_I8 : c->wdtype, out, in);
    return be->ops->workspace(be, quant ? TD_OP_LINEAR_W8A8 : TD_OP_LINEAR, &x, &w, &y, NULL);
}

/* The workspace of attention (op: dense or SLA) from S queries to keys rows per head. */
static size_t attention_ws(td_backend *be, const td_dit_config *c, td_op op, int64_t S, int64_t keys)
{
    td_tensor q = td_view3(NULL, be->act, S, c->heads, c->head_dim);
    td_tensor k = td_view3(NULL, be->act, keys, c->heads, c->head_dim);
    return be->ops->workspace(be, op, &q, &k, &q, NULL);
}

size_t td_dit_workspace(const td_dit_config *c, td_backend *be, int64_t F, int64_t H, int64_t W, int64_t L,
                        int sla)
{
    int64_t S = F / c->patch[0] * (H / c->patch[1]) * (W / c->patch[2]), d = c->dim;
    int64_t np = (int64_t)c->patch[0] * c->patch[1] * c->patch[2];
    /* dit.c's linears: the block's (W8A8 in a -quant model), then the
     * patch embedding, the head and the text embedding */
    const struct { int block; int64_t rows, out, in; } lin[] = {
        { 1, S, d, d }, { 1, L, d, d }, { 1, S, c->ffn_dim, d }, { 1, S, d, c->ffn_dim },
        { 0, S, d, c->in_ch * np }, { 0, S, c->out_ch * np, d }, { 0, L, d, c->text_dim }, { 0, L, d, d },
    };
    size_t ws = 0, n;

    if (!be->ops->workspace)
        return 0;
    for (size_t i = 0; i < sizeof(lin) / sizeof(lin[0]); i++)
        if ((n = linear_ws(be, c, lin[i].block && c->quant, lin[i].rows, lin[i].out, lin[i].in)) > ws)
            ws = n;
    if ((n = attention_ws(be, c, TD_OP_ATTENTION, S, L)) > ws)
        ws = n;
    if ((n = attention_ws(be, c, sla ? TD_OP_SLA : TD_OP_ATTENTION, S, S)) > ws)
        ws = n;
    return ws;
}

int td_dit_plan_new(td_dit *dit, int64_t F, int64_t H, int64_t W, int64_t L, td_dit_plan **out)
{
    const td_dit_config *c = &dit->cfg;
    td_dit_plan *p;
    int rc;

    *out = NULL;
    if (F <= 0 || H <= 0 || W <= 0 || L <= 0 || F % c->patch[0] || H % c->patch[1] || W % c->patch[2])
        return td_fail(dit->ctx, TD_ESHAPE, "dit plan: latents %lldx%lldx%lld must be non-zero multiples of "
                       "the patch %dx%dx%d and the context (%lld rows) non-empty", (long long)F,
                       (long long)H, (long long)W, c->patch[0], c->patch[1], c->patch[2], (long long)L);
    p = calloc(1, sizeof(*p));
    if (!p)
        return td_fail(dit->ctx, TD_ENOMEM, "dit plan struct");
    p->be = dit->be;
    p->cfg = *c;
    p->F = F, p->H = H, p->W = W, p->L = L;
    p->S = F / c->patch[0] * (H / c->patch[1]) * (W / c->patch[2]);
    rc = alloc_buffers(p);
    if (rc == 0)
        rc = write_rope(dit->ctx, p, F / c->patch[0], H / c->patch[1], W / c->patch[2]);
    if (rc < 0) {
        td_dit_plan_free(&p);
        return rc;
    }
    *out = p;
    return 0;
}

int td_dit_plan_fits(const td_dit_plan *p, const td_dit *m)
{
    const td_dit_config *a = &p->cfg, *b = &m->cfg;
    return p->be == m->be && a->dim == b->dim && a->ffn_dim == b->ffn_dim && a->heads == b->heads &&
           a->in_ch == b->in_ch && a->out_ch == b->out_ch && a->text_dim == b->text_dim &&
           a->freq_dim == b->freq_dim && a->patch[0] == b->patch[0] && a->patch[1] == b->patch[1] &&
           a->patch[2] == b->patch[2];
}

static void free_buffers(td_dit_plan *p)
{
    td_tensor *all[] = { &p->x, &p->n, &p->q, &p->k, &p->v, &p->a, &p->o, &p->ff, &p->ctx_in, &p->ctx,
                         &p->ck, &p->cv, &p->cos_t, &p->sin_t, &p->sinus, &p->th, &p->e, &p->e0, &p->mod };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        p->be->ops->tensor_free(p->be, all[i]);
    free(p->sinus_host);
}

void td_dit_plan_free(td_dit_plan **plan)
{
    if (!plan || !*plan)
        return;
    free_buffers(*plan);
    free(*plan);
    *plan = NULL;
}
