/*
 * Building the DiT over a weight store: every tensor is looked up with its
 * expected shape, so a missing or misshapen tensor is reported by name
 * (file, tensor, expected and found shape) before any compute, then
 * uploaded once to the backend (on the CPU a view of the mapped file, or
 * of the merged copy where a LoRA changed the tensor).
 */
#include <stdio.h>
#include <stdlib.h>

#include "dit_internal.h"

typedef struct loader {
    td_ctx *ctx;
    td_backend *be;
    const td_weights *w;
    td_dit_layout l;
    td_lora_merged *lora;            /* NULL: no LoRA */
} loader;

/* Replace the host view *t by its upload; *t is zeroed if that fails. */
static int upload(const loader *ld, td_tensor *t)
{
    td_tensor host = *t;
    *t = (td_tensor){ 0 };
    TD_TRY(ld->be->ops->upload(ld->be, &host, t));
    /* A backend that copied (CUDA) no longer needs a merged host copy. */
    if (t->data != host.data)
        td_lora_merged_release(ld->lora, host.data);
    return 0;
}

/* W8A8 block scales stay f32 on every backend (the int8 GEMM rescales with
 * them exactly), so they are not uploaded, where a backend may narrow
 * floats, but written into an f32 tensor of their own. */
static int place_scales(const loader *ld, td_tensor *t)
{
    td_backend *be = ld->be;
    td_tensor host = *t;
    int rc;
    *t = (td_tensor){ 0 };
    TD_TRY(be->ops->tensor_new(be, t, TD_F32, host.ndim, host.shape));
    rc = be->ops->write(be, t, &host);
    if (rc < 0)
        be->ops->tensor_free(be, t);
    return rc;
}

static int upload_linear(const loader *ld, td_dit_linear *lin)
{
    if (lin->quant) {
        TD_TRY(upload(ld, &lin->wq));
        TD_TRY(place_scales(ld, &lin->ws));
    } else {
        TD_TRY(upload(ld, &lin->w));
    }
    return lin->has_bias ? upload(ld, &lin->b) : 0;
}

/* The host tensor of the given name and shape: the LoRA-merged copy where
 * there is one, else the file's. */
static int fetch(const loader *ld, const char *name, int ndim, const int64_t *shape, td_tensor *out)
{
    const td_tensor *merged;
    TD_TRY(td_weights_get(ld->ctx, ld->w, name, ndim, shape, out));
    merged = td_lora_merged_find(ld->lora, td_weights_find(ld->w, name));
    if (merged) {
        *out = *merged;
        out->owns = 0;
    }
    return 0;
}

/* The named tensor of the given shape, uploaded. */
static int get_named(const loader *ld, const char *name, int ndim, const int64_t *shape, td_tensor *out)
{
    TD_TRY(fetch(ld, name, ndim, shape, out));
    return upload(ld, out);
}

static int get(const loader *ld, td_tensor *out, const char *base, const char *suffix,
               int ndim, const int64_t *shape)
{
    char name[256];
    snprintf(name, sizeof(name), "%s.%s", base, suffix);
    return fetch(ld, name, ndim, shape, out);
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
    return upload_linear(ld, lin);
}

static int load_vec(const loader *ld, td_dit_key k, int b, const char *suffix, int64_t n, td_tensor *t)
{
    char base[200];
    td_dit_key_name(ld->l, k, b, base, sizeof(base));
    TD_TRY(get(ld, t, base, suffix, 1, &n));
    return upload(ld, t);
}

static int load_block(const loader *ld, const td_dit_config *c, int i, td_dit_block *bk)
{
    int64_t d = c->dim, f = c->ffn_dim, mod[3] = { 1, 6, d };
    char base[200];
    td_dit_key_name(ld->l, DK_MOD, i, base, sizeof(base));
    TD_TRY(get_named(ld, base, 3, mod, &bk->mod));
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
        TD_TRY(upload_linear(ld, &bk->proj_l));
    }
    return 0;
}

/* The patch embedding, a Conv3d or Linear weight, as the Linear [dim, C_in np]. */
static int load_patch(const loader *ld, int64_t d, int64_t pk, td_dit_linear *patch)
{
    const td_tensor *pe = td_weights_find(ld->w, "patch_embedding.weight");
    const td_tensor *merged = td_lora_merged_find(ld->lora, pe);
    if (merged)
        pe = merged;
    if (!td_is_contiguous(pe))
        return td_fail(ld->ctx, TD_EFORMAT, "%s: patch_embedding.weight is not contiguous",
                       td_weights_path(ld->w));
    patch->w = td_view2(pe->data, pe->dtype, d, pk);
    TD_TRY(fetch(ld, "patch_embedding.bias", 1, &d, &patch->b));
    patch->has_bias = 1;
    return upload_linear(ld, patch);
}

/* int8 weights cannot take a low-rank update exactly (it would change their
 * block scales): the float checkpoint takes the merge, then the quantizer. */
static int merge_loras(td_ctx *ctx, td_dit *m, const td_dit_opts *opts)
{
    if (m->cfg.quant)
        return td_fail(ctx, TD_EUNSUPPORTED, "%s is a W8A8 (-quant) checkpoint: a LoRA cannot be merged "
                       "into int8 weights exactly; merge it into the float checkpoint (`turbodiff "
                       "lora-merge`), then quantize that (`turbodiff quantize`)", td_weights_path(m->w));
    TD_TRY(td_lora_merge(ctx, m->w, opts->loras, opts->n_loras, &m->lora));
    td_log(ctx, TD_LOG_INFO, "DiT %s: %d LoRA(s), %d tensors merged", td_weights_path(m->w), opts->n_loras,
           td_lora_merged_count(m->lora));
    return 0;
}

int td_dit_load(td_ctx *ctx, td_backend *be, const td_weights *w, const td_dit_opts *opts, td_dit **out)
{
    td_dit *m;
    loader ld = { ctx, be, w, td_dit_detect_layout(w), NULL };
    int64_t d, np, pk, head_mod[3];
    int rc;

    *out = NULL;
    m = calloc(1, sizeof(*m));
    if (!m)
        return td_fail(ctx, TD_ENOMEM, "DiT model struct");
    m->ctx = ctx;
    m->be = be;
    m->w = w;
    m->layout = ld.l;
    rc = td_dit_read_config(ctx, w, ld.l, opts, &m->cfg);
    if (rc == 0 && opts && opts->n_loras > 0)
        rc = merge_loras(ctx, m, opts);
    if (rc < 0)
        goto fail;
    ld.lora = m->lora;
    d = m->cfg.dim;
    np = (int64_t)m->cfg.patch[0] * m->cfg.patch[1] * m->cfg.patch[2];
    pk = m->cfg.in_ch * np;
    rc = load_patch(&ld, d, pk, &m->patch);
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
        rc = get_named(&ld, td_dit_key_name(ld.l, DK_HEAD_MOD, 0, base, sizeof(base)), 3, head_mod,
                       &m->head_mod);
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

static void free_linear(td_backend *be, td_dit_linear *l)
{
    td_tensor *all[] = { &l->w, &l->wq, &l->ws, &l->b };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        be->ops->tensor_free(be, all[i]);
}

static void free_block(td_backend *be, td_dit_block *bk)
{
    td_tensor *t[] = { &bk->mod, &bk->norm3_w, &bk->norm3_b, &bk->snq, &bk->snk, &bk->cnq, &bk->cnk };
    td_dit_linear *l[] = { &bk->sq, &bk->sk, &bk->sv, &bk->so, &bk->cq, &bk->ck, &bk->cv, &bk->co,
                           &bk->ffn0, &bk->ffn2, &bk->proj_l };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        be->ops->tensor_free(be, t[i]);
    for (size_t i = 0; i < sizeof(l) / sizeof(l[0]); i++)
        free_linear(be, l[i]);
}

static void free_model(td_dit *m)
{
    td_dit_linear *l[] = { &m->patch, &m->text0, &m->text2, &m->time0, &m->time2, &m->tproj, &m->head };
    for (size_t i = 0; i < sizeof(l) / sizeof(l[0]); i++)
        free_linear(m->be, l[i]);
    m->be->ops->tensor_free(m->be, &m->head_mod);
    for (int i = 0; m->blocks && i < m->cfg.layers; i++)
        free_block(m->be, &m->blocks[i]);
    free(m->blocks);
    td_lora_merged_free(&m->lora);
    free(m);
}

void td_dit_free(td_dit **dit)
{
    if (!dit || !*dit)
        return;
    free_model(*dit);
    *dit = NULL;
}
