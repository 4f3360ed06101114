/*
 * umT5 encoder: loading (shapes -> dims, per-layer views) and the forward
 * pass over the backend ops. See umt5.h for the architecture and why only
 * the real tokens are encoded.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "umt5.h"

#define UMT5_EPS 1e-6f

int td_umt5_bucket(int64_t rel, int64_t buckets, int64_t max_distance)
{
    /* Half the buckets per direction (keys after the query take the upper
     * half), the first half of those exact, the rest log-spaced out to
     * max_distance; f32 arithmetic in transformers' order so the boundary
     * distances (16, 32, 64 for 32 buckets) land in the same bucket. */
    int64_t half = buckets / 2, exact = half / 2, base = rel > 0 ? half : 0;
    int64_t d = rel < 0 ? -rel : rel, large;
    float f;

    if (d < exact)
        return (int)(base + d);
    f = logf((float)d / (float)exact) / (float)log((double)max_distance / (double)exact) *
        (float)(half - exact);
    large = exact + (int64_t)f;
    return (int)(base + (large < half - 1 ? large : half - 1));
}

static int get_layer(td_ctx *ctx, td_backend *be, const td_weights *w, const td_umt5_keys *k,
                     const td_umt5_dims *d, int i, td_umt5_layer *l)
{
    const int64_t vec[1] = { d->d_model }, in[2] = { d->d_attn, d->d_model },
                  out[2] = { d->d_model, d->d_attn }, bias[2] = { d->buckets, d->heads },
                  ff_in[2] = { d->d_ff, d->d_model }, ff_out[2] = { d->d_model, d->d_ff };
    struct { td_tensor *dst; const char *fmt; int ndim; const int64_t *shape; } t[] = {
        { &l->norm1, k->norm1, 1, vec }, { &l->q, k->q, 2, in }, { &l->k, k->k, 2, in },
        { &l->v, k->v, 2, in }, { &l->o, k->o, 2, out }, { &l->rel_bias, k->rel_bias, 2, bias },
        { &l->norm2, k->norm2, 1, vec }, { &l->wi_gate, k->wi_gate, 2, ff_in },
        { &l->wi_up, k->wi_up, 2, ff_in }, { &l->wo, k->wo, 2, ff_out },
    };
    for (size_t j = 0; j < sizeof(t) / sizeof(t[0]); j++) {
        td_tensor host;
        TD_TRY(td_weights_getf(ctx, w, &host, t[j].ndim, t[j].shape, t[j].fmt, i));
        TD_TRY(be->ops->upload(be, &host, t[j].dst));
    }
    return 0;
}

static int count_layers(const td_weights *w, const td_umt5_keys *k)
{
    char name[256];
    int n = 0;
    for (;; n++) {
        snprintf(name, sizeof(name), k->q, n);
        if (!td_weights_find(w, name))
            return n;
    }
}

/* The token embedding on the host, under whichever alias the file uses. */
static int find_embed(td_ctx *ctx, const td_weights *w, const td_umt5_keys *k, td_tensor *host)
{
    const int64_t any2[2] = { -1, -1 };
    for (int i = 0; i < 2 && k->embed[i]; i++)
        if (td_weights_find(w, k->embed[i]))
            return td_weights_get(ctx, w, k->embed[i], 2, any2, host);
    return td_fail(ctx, TD_ENOTFOUND, "%s: no token embedding (%s%s%s)", td_weights_path(w),
                   k->embed[0], k->embed[1] ? " or " : "", k->embed[1] ? k->embed[1] : "");
}

/* Dims from the embedding, layer 0's attention and feed-forward and its bias
 * table; every other layer is then checked against them. */
static int read_dims(td_ctx *ctx, const td_weights *w, const td_umt5_keys *k,
                     const td_tensor *embed, td_umt5_dims *d)
{
    const int64_t any2[2] = { -1, -1 };
    td_tensor q, bias, gate;

    d->vocab = embed->shape[0];
    d->d_model = embed->shape[1];
    d->layers = count_layers(w, k);   /* >= 1: the layout was detected by layer 0 */
    {
        const int64_t qs[2] = { -1, d->d_model }, gs[2] = { -1, d->d_model };
        TD_TRY(td_weights_getf(ctx, w, &q, 2, qs, k->q, 0));
        TD_TRY(td_weights_getf(ctx, w, &bias, 2, any2, k->rel_bias, 0));
        TD_TRY(td_weights_getf(ctx, w, &gate, 2, gs, k->wi_gate, 0));
    }
    d->d_attn = q.shape[0];
    d->wdtype = q.dtype;
    d->buckets = bias.shape[0];
    d->heads = bias.shape[1];
    d->d_ff = gate.shape[0];
    if (d->heads < 1 || d->d_attn % d->heads || d->buckets < 4 || d->buckets % 4)
        return td_fail(ctx, TD_ESHAPE,
                       "%s: layer 0 attention [%lld, %lld] does not split into the %lld heads of "
                       "its position bias [%lld buckets, %lld heads] (buckets a multiple of 4)",
                       td_weights_path(w), (long long)d->d_attn, (long long)d->d_model,
                       (long long)d->heads, (long long)d->buckets, (long long)d->heads);
    return 0;
}

int td_umt5_read_dims(td_ctx *ctx, const td_weights *w, td_umt5_dims *out)
{
    td_umt5_layout layout;
    const td_umt5_keys *k;
    td_tensor embed;
    TD_TRY(td_umt5_detect_layout(ctx, w, &layout));
    k = td_umt5_keys_of(layout);
    TD_TRY(find_embed(ctx, w, k, &embed));
    return read_dims(ctx, w, k, &embed, out);
}

int td_umt5_load(td_ctx *ctx, td_backend *be, const td_weights *w, td_umt5 **out)
{
    const td_umt5_keys *k;
    td_tensor embed;
    td_umt5 *m;
    int rc;

    *out = NULL;
    m = calloc(1, sizeof(*m));
    if (!m)
        return td_fail(ctx, TD_ENOMEM, "umt5: out of memory");
    if ((rc = td_umt5_detect_layout(ctx, w, &m->layout)) < 0)
        goto fail;
    k = td_umt5_keys_of(m->layout);
    if ((rc = find_embed(ctx, w, k, &embed)) < 0 ||
        (rc = read_dims(ctx, w, k, &embed, &m->dims)) < 0 ||
        (rc = be->ops->upload(be, &embed, &m->embed)) < 0)
        goto fail;
    m->layers = calloc((size_t)m->dims.layers, sizeof(*m->layers));
    if (!m->layers) {
        rc = td_fail(ctx, TD_ENOMEM, "umt5: out of memory for %d layers", m->dims.layers);
        goto fail;
    }
    for (int i = 0; i < m->dims.layers; i++)
        if ((rc = get_layer(ctx, be, w, k, &m->dims, i, &m->layers[i])) < 0)
            goto fail;
    {
        td_tensor host;
        int64_t shape[1] = { m->dims.d_model };
        if ((rc = td_weights_get(ctx, w, k->final_norm, 1, shape, &host)) < 0 ||
            (rc = be->ops->upload(be, &host, &m->final_norm)) < 0)
            goto fail;
    }
    td_log(ctx, TD_LOG_INFO,
           "umt5: %s layout, %d layers, d_model %lld, %lld heads x %lld, d_ff %lld, vocab %lld, %s",
           m->layout == TD_UMT5_LAYOUT_WAN ? "Wan" : "transformers", m->dims.layers,
           (long long)m->dims.d_model, (long long)m->dims.heads,
           (long long)(m->dims.d_attn / m->dims.heads), (long long)m->dims.d_ff,
           (long long)m->dims.vocab, td_dtype_name(m->layers[0].q.dtype));
    *out = m;
    return 0;
fail:
    td_umt5_free(&m, be);
    return rc;
}

static void free_layer(td_backend *be, td_umt5_layer *l)
{
    td_tensor *t[] = { &l->norm1, &l->q, &l->k, &l->v, &l->o, &l->rel_bias,
                       &l->norm2, &l->wi_gate, &l->wi_up, &l->wo };
    for (size_t j = 0; j < sizeof(t) / sizeof(t[0]); j++)
        be->ops->tensor_free(be, t[j]);
}

void td_umt5_free(td_umt5 **pm, td_backend *be)
{
    td_umt5 *m = pm ? *pm : NULL;
    if (!m)
        return;
    /* A load that failed part way left the rest zeroed: tensor_free skips
     * those. */
    for (int i = 0; m->layers && i < m->dims.layers; i++)
        free_layer(be, &m->layers[i]);
    be->ops->tensor_free(be, &m->embed);
    be->ops->tensor_free(be, &m->final_norm);
    free(m->layers);
    free(m);
    *pm = NULL;
}

/* Arena carving adds up to 64 bytes of alignment per tensor. */
static size_t act_bytes(td_dtype act, int64_t rows, int64_t cols)
{
    return (size_t)rows * (size_t)cols * td_dtype_size(act) + 64;
}

size_t td_umt5_scratch_bytes(const td_umt5_dims *d, td_dtype act, int n)
{
    /* x, h, bias, and per phase the larger of attention (q, k, v, att, o)
     * and feed-forward (gate, up, down). */
    size_t fixed = 2 * act_bytes(act, n, d->d_model) + act_bytes(act, d->heads * n, n);
    size_t attn = 4 * act_bytes(act, n, d->d_attn) + act_bytes(act, n, d->d_model);
    size_t ffn = 2 * act_bytes(act, n, d->d_ff) + act_bytes(act, n, d->d_model);
    return fixed + (attn > ffn ? attn : ffn);
}

static size_t linear_ws(td_backend *be, td_dtype wdt, int64_t n, int64_t out, int64_t in)
{
    td_tensor x = td_view2(NULL, be->act, n, in), w = td_view2(NULL, wdt, out, in), y = td_view2(NULL, be->act, n, out);
    return be->ops->workspace(be, TD_OP_LINEAR, &x, &w, &y, NULL);
}

size_t td_umt5_workspace(const td_umt5_dims *d, td_backend *be, int n)
{
    const int64_t shapes[][2] = { { d->d_attn, d->d_model }, { d->d_model, d->d_attn },
                                  { d->d_ff, d->d_model }, { d->d_model, d->d_ff } };
    td_tensor q = td_view3(NULL, be->act, n, d->heads, d->d_attn / d->heads);
    size_t ws, l;

    if (!be->ops->workspace)
        return 0;
    ws = be->ops->workspace(be, TD_OP_ATTENTION, &q, &q, &q, NULL);
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
        if ((l = linear_ws(be, d->wdtype, n, shapes[i][0], shapes[i][1])) > ws)
            ws = l;
    return ws;
}

static int alloc2(td_backend *be, td_tensor *t, int64_t rows, int64_t cols)
{
    const int64_t shape[2] = { rows, cols };
    return be->ops->alloc(be, t, be->act, 2, shape);
}

/* x += attention(norm1(x)) with this layer's bias. */
static int attention_block(td_backend *be, const td_umt5 *m, const td_umt5_layer *l,
                           td_tensor *x, td_tensor *h, const td_tensor *bias, int n)
{
    const td_umt5_dims *d = &m->dims;
    const int64_t s3[3] = { n, d->heads, d->d_attn / d->heads };
    td_tensor q, k, v, att, o, q3, k3, v3, att3;
    size_t mark = be->ops->mark(be);
    td_ctx *ctx = be->ctx;

    TD_TRY(be->ops->rmsnorm(be, x, &l->norm1, UMT5_EPS, h));
    TD_TRY(alloc2(be, &q, n, d->d_attn));
    TD_TRY(alloc2(be, &k, n, d->d_attn));
    TD_TRY(alloc2(be, &v, n, d->d_attn));
    TD_TRY(alloc2(be, &att, n, d->d_attn));
    TD_TRY(alloc2(be, &o, n, d->d_model));
    TD_TRY(be->ops->linear(be, h, &l->q, NULL, &q));
    TD_TRY(be->ops->linear(be, h, &l->k, NULL, &k));
    TD_TRY(be->ops->linear(be, h, &l->v, NULL, &v));
    TD_TRY(td_tensor_reshape(ctx, &q, 3, s3, &q3));
    TD_TRY(td_tensor_reshape(ctx, &k, 3, s3, &k3));
    TD_TRY(td_tensor_reshape(ctx, &v, 3, s3, &v3));
    TD_TRY(td_tensor_reshape(ctx, &att, 3, s3, &att3));
    /* T5 folds the 1/sqrt(d) into its initialisation: scale 1. All n keys
     * are real tokens, so no key is masked. */
    TD_TRY(be->ops->attention(be, &q3, &k3, &v3, bias, 1.0f, n, &att3));
    TD_TRY(be->ops->linear(be, &att, &l->o, NULL, &o));
    TD_TRY(be->ops->add(be, x, &o, x));
    be->ops->reset(be, mark);
    return 0;
}

/* x += wo(gelu_tanh(wi_gate h) * wi_up h), h = norm2(x). */
static int ffn_block(td_backend *be, const td_umt5 *m, const td_umt5_layer *l, td_tensor *x,
                     td_tensor *h, int n)
{
    const td_umt5_dims *d = &m->dims;
    td_tensor g, u, o;
    size_t mark = be->ops->mark(be);

    TD_TRY(be->ops->rmsnorm(be, x, &l->norm2, UMT5_EPS, h));
    TD_TRY(alloc2(be, &g, n, d->d_ff));
    TD_TRY(alloc2(be, &u, n, d->d_ff));
    TD_TRY(alloc2(be, &o, n, d->d_model));
    TD_TRY(be->ops->linear(be, h, &l->wi_gate, NULL, &g));
    TD_TRY(be->ops->gelu_tanh(be, &g, &g));
    TD_TRY(be->ops->linear(be, h, &l->wi_up, NULL, &u));
    TD_TRY(be->ops->mul(be, &g, &u, &g));
    TD_TRY(be->ops->linear(be, &g, &l->wo, NULL, &o));
    TD_TRY(be->ops->add(be, x, &o, x));
    be->ops->reset(be, mark);
    return 0;
}

static int check_args(td_backend *be, const td_umt5 *m, const int32_t *ids, int n,
                      const td_tensor *out)
{
    td_ctx *ctx = be->ctx;
    char s[96];
    if (!ids || n < 1 || n > TD_UMT5_TEXT_LEN)
        return td_fail(ctx, TD_EINVAL, "umt5: %d token ids; the encoder takes 1 to %d", n,
                       TD_UMT5_TEXT_LEN);
    if (!out || out->dtype != be->act || out->ndim != 2 || out->shape[0] != TD_UMT5_TEXT_LEN ||
        out->shape[1] != m->dims.d_model || !td_is_contiguous(out))
        return td_fail(ctx, TD_ESHAPE, "umt5: output %s must be contiguous %s [%d, %lld]",
                       out ? td_shape_str(out, s, sizeof(s)) : "(null)", td_dtype_name(be->act),
                       TD_UMT5_TEXT_LEN, (long long)m->dims.d_model);
    /* The embed op checks the range too; this names the model and its
     * vocabulary. */
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->dims.vocab)
            return td_fail(ctx, TD_EINVAL, "umt5: token id %d at position %d is outside the "
                           "vocabulary of %lld", (int)ids[i], i, (long long)m->dims.vocab);
    return 0;
}

/* out rows 0..n-1 = final_norm(x), rows n..511 zeros (Wan's padding). */
static int write_out(td_backend *be, const td_umt5 *m, const td_tensor *x, int n, td_tensor *out)
{
    td_tensor rows;
    TD_TRY(td_tensor_slice(be->ctx, out, 0, 0, n, &rows));
    TD_TRY(be->ops->rmsnorm(be, x, &m->final_norm, UMT5_EPS, &rows));
    if (n == TD_UMT5_TEXT_LEN)
        return 0;
    TD_TRY(td_tensor_slice(be->ctx, out, 0, n, TD_UMT5_TEXT_LEN - n, &rows));
    return be->ops->fill(be, &rows, 0.0f);
}

static int encode(const td_umt5 *m, td_backend *be, const int32_t *ids, int n,
                  const int32_t *bucket, td_tensor *out)
{
    const td_umt5_dims *d = &m->dims;
    const int64_t bshape[3] = { d->heads, n, n };
    td_tensor x, h, bias;

    TD_TRY(alloc2(be, &x, n, d->d_model));
    TD_TRY(alloc2(be, &h, n, d->d_model));
    TD_TRY(be->ops->alloc(be, &bias, be->act, 3, bshape));
    TD_TRY(be->ops->embed(be, &m->embed, ids, n, &x));
    for (int i = 0; i < d->layers; i++) {
        const td_umt5_layer *l = &m->layers[i];
        TD_TRY(be->ops->rel_pos_bias(be, &l->rel_bias, bucket, &bias));
        TD_TRY(attention_block(be, m, l, &x, &h, &bias, n));
        TD_TRY(ffn_block(be, m, l, &x, &h, n));
    }
    return write_out(be, m, &x, n, out);
}

int td_umt5_encode(const td_umt5 *m, td_backend *be, const int32_t *ids, int n, td_tensor *out)
{
    /* bucket[j - i + n - 1]: the bucket of key j seen from query i, the
     * same for every layer (each has its own table). */
    int32_t bucket[2 * TD_UMT5_TEXT_LEN - 1];
    size_t mark;
    int rc;

    TD_TRY(check_args(be, m, ids, n, out));
    for (int r = -(n - 1); r <= n - 1; r++)
        bucket[r + n - 1] = td_umt5_bucket(r, m->dims.buckets, TD_UMT5_MAX_DISTANCE);
    mark = be->ops->mark(be);
    rc = encode(m, be, ids, n, bucket, out);
    be->ops->reset(be, mark);
    return rc;
}
