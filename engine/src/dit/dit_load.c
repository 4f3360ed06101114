/*
 * Building the DiT over a weight store: every tensor is looked up with its
 * expected shape, so a missing or misshapen tensor is reported by name
 * (file, tensor, expected and found shape) before any compute.
 */
#include <stdio.h>
#include <stdlib.h>

#include "dit_internal.h"

typedef struct loader {
    td_ctx *ctx;
    const td_weights *w;
    td_dit_layout l;
} loader;

static int get(const loader *ld, td_tensor *out, const char *base, const char *suffix,
               int ndim, const int64_t *shape)
{
    return td_weights_getf(ld->ctx, ld->w, out, ndim, shape, "%s.%s", base, suffix);
}

static int has(const loader *ld, const char *base, const char *suffix)
{
    char name[256];
    snprintf(name, sizeof(name), "%s.%s", base, suffix);
    return td_weights_find(ld->w, name) != NULL;
}

/* A Linear [n, k] with bias: plain or Int8Linear (int8_weight + scale). */
static int load_linear(const loader *ld, td_dit_key k, int b, int64_t n, int64_t kk, td_dit_linear *lin)
{
    char base[200];
    int64_t ws[2] = { n, kk }, ss[2] = { (n + 127) / 128, (kk + 127) / 128 };
    td_dit_key_name(ld->l, k, b, base, sizeof(base));
    *lin = (td_dit_linear){ 0 };
    if (has(ld, base, "int8_weight")) {
        char s[96];
        lin->quant = 1;
        TD_TRY(get(ld, &lin->wq, base, "int8_weight", 2, ws));
        TD_TRY(get(ld, &lin->ws, base, "scale", 2, ss));
        if (lin->wq.dtype != TD_I8 || lin->ws.dtype != TD_F32)
            return td_fail(ld->ctx, TD_EFORMAT, "%s: %s.int8_weight must be int8 and .scale float32 (found %s)",
                           td_weights_path(ld->w), base, td_shape_str(&lin->wq, s, sizeof(s)));
    } else {
        TD_TRY(get(ld, &lin->w, base, "weight", 2, ws));
    }
    TD_TRY(get(ld, &lin->b, base, "bias", 1, &n));
    lin->has_bias = 1;
    return 0;
}

static int load_vec(const loader *ld, td_dit_key k, int b, const char *suffix, int64_t n, td_tensor *t)
{
    char base[200];
    td_dit_key_name(ld->l, k, b, base, sizeof(base));
    return get(ld, t, base, suffix, 1, &n);
}

static int load_block(const loader *ld, const td_dit_config *c, int i, td_dit_block *bk)
{
    int64_t d = c->dim, f = c->ffn_dim, mod[3] = { 1, 6, d };
    char base[200];
    td_dit_key_name(ld->l, DK_MOD, i, base, sizeof(base));
    TD_TRY(td_weights_get(ld->ctx, ld->w, base, 3, mod, &bk->mod));
    TD_TRY(load_vec(ld, DK_NORM3, i, "weight", d, &bk->norm3_w));
    TD_TRY(load_vec(ld, DK_NORM3, i, "bias", d, &bk->norm3_b));
    TD_TRY(load_linear(ld, DK_SA_Q, i, d, d, &bk->sq));
    TD_TRY(load_linear(ld, DK_SA_K, i, d, d, &bk->sk));
    TD_TRY(load_linear(ld, DK_SA_V, i, d, d, &bk->sv));
    TD_TRY(load_linear(ld, DK_SA_O, i, d, d, &bk->so));
    TD_TRY(load_vec(ld, DK_SA_NQ, i, "weight", d, &bk->snq));
    TD_TRY(load_vec(ld, DK_SA_NK, i, "weight", d, &bk->snk));
    TD_TRY(load_linear(ld, DK_CA_Q, i, d, d, &bk->cq));
    TD_TRY(load_linear(ld, DK_CA_K, i, d, d, &bk->ck));
    TD_TRY(load_linear(ld, DK_CA_V, i, d, d, &bk->cv));
    TD_TRY(load_linear(ld, DK_CA_O, i, d, d, &bk->co));
    TD_TRY(load_vec(ld, DK_CA_NQ, i, "weight", d, &bk->cnq));
    TD_TRY(load_vec(ld, DK_CA_NK, i, "weight", d, &bk->cnk));
    TD_TRY(load_linear(ld, DK_FFN0, i, f, d, &bk->ffn0));
    TD_TRY(load_linear(ld, DK_FFN2, i, d, f, &bk->ffn2));
    if (c->has_proj_l) {
        /* proj_l is kept f32 and never quantized upstream (skip_layer). */
        int64_t hd = c->head_dim, ws[2] = { hd, hd };
        td_dit_key_name(ld->l, DK_PROJ_L, i, base, sizeof(base));
        TD_TRY(get(ld, &bk->proj_l.w, base, "weight", 2, ws));
        TD_TRY(get(ld, &bk->proj_l.b, base, "bias", 1, &hd));
        bk->proj_l.has_bias = 1;
    }
    return 0;
}

int td_dit_load(td_ctx *ctx, const td_weights *w, const td_dit_opts *opts, td_dit **out)
{
    td_dit *m;
    loader ld = { ctx, w, td_dit_detect_layout(w) };
    int64_t d, np, pk, head_mod[3];
    int rc;

    *out = NULL;
    m = calloc(1, sizeof(*m));
    if (!m)
        return td_fail(ctx, TD_ENOMEM, "DiT model struct");
    m->ctx = ctx;
    m->w = w;
    m->layout = ld.l;
    rc = td_dit_read_config(ctx, w, ld.l, opts, &m->cfg);
    if (rc < 0)
        goto fail;
    d = m->cfg.dim;
    np = (int64_t)m->cfg.patch[0] * m->cfg.patch[1] * m->cfg.patch[2];
    pk = m->cfg.in_ch * np;
    {
        const td_tensor *pe = td_weights_find(w, "patch_embedding.weight");
        m->patch_w = td_view2(pe->data, pe->dtype, d, pk);
        if (!td_is_contiguous(pe)) {
            rc = td_fail(ctx, TD_EFORMAT, "%s: patch_embedding.weight is not contiguous", td_weights_path(w));
            goto fail;
        }
        m->patch.w = m->patch_w;
        rc = td_weights_get(ctx, w, "patch_embedding.bias", 1, &d, &m->patch.b);
        m->patch.has_bias = 1;
    }
    head_mod[0] = 1;
    head_mod[1] = 2;
    head_mod[2] = d;
    if (rc == 0)
        rc = load_linear(&ld, DK_TEXT0, 0, d, m->cfg.text_dim, &m->text0);
    if (rc == 0)
        rc = load_linear(&ld, DK_TEXT2, 0, d, d, &m->text2);
    if (rc == 0)
        rc = load_linear(&ld, DK_TIME0, 0, d, m->cfg.freq_dim, &m->time0);
    if (rc == 0)
        rc = load_linear(&ld, DK_TIME2, 0, d, d, &m->time2);
    if (rc == 0)
        rc = load_linear(&ld, DK_TPROJ, 0, 6 * d, d, &m->tproj);
    if (rc == 0)
        rc = load_linear(&ld, DK_HEAD, 0, m->cfg.out_ch * np, d, &m->head);
    if (rc == 0) {
        char base[200];
        rc = td_weights_get(ctx, w, td_dit_key_name(ld.l, DK_HEAD_MOD, 0, base, sizeof(base)), 3,
                            head_mod, &m->head_mod);
    }
    if (rc < 0)
        goto fail;
    m->blocks = calloc((size_t)m->cfg.layers, sizeof(*m->blocks));
    if (!m->blocks) {
        rc = td_fail(ctx, TD_ENOMEM, "DiT blocks (%d)", m->cfg.layers);
        goto fail;
    }
    for (int i = 0; i < m->cfg.layers && rc == 0; i++)
        rc = load_block(&ld, &m->cfg, i, &m->blocks[i]);
    if (rc < 0)
        goto fail;
    td_log(ctx, TD_LOG_INFO, "DiT: %s layout, dim %d, %d layers, %d heads x %d, ffn %d, in %d out %d, "
           "text %d%s%s", ld.l == TD_DIT_KEYS_WAN ? "Wan" : "diffusers", m->cfg.dim, m->cfg.layers,
           m->cfg.heads, m->cfg.head_dim, m->cfg.ffn_dim, m->cfg.in_ch, m->cfg.out_ch, m->cfg.text_dim,
           m->cfg.quant ? ", W8A8" : "", m->cfg.has_proj_l ? ", SLA proj_l" : "");
    *out = m;
    return 0;
fail:
    td_dit_free(&m);
    return rc;
}

const td_dit_config *td_dit_get_config(const td_dit *dit)
{
    return &dit->cfg;
}

void td_dit_free(td_dit **dit)
{
    if (!dit || !*dit)
        return;
    free((*dit)->blocks);
    free(*dit);
    *dit = NULL;
}
