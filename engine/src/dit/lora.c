/*
 * LoRA merge at load time (see lora.h for the formats and the arithmetic).
 *
 * Each LoRA file is read into groups, one per module it names (its
 * down/up/alpha/diff/diff_b tensors), in file order; each group is matched
 * to a module of the DiT by the key maps of both layouts (dit_keys.c), its
 * shapes checked against the DiT's, and merged into a copy of the target
 * tensor that this object owns until the DiT is freed.
 */
#include "lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dit_internal.h"

/* What a LoRA tensor is to its module. */
enum { PART_DOWN, PART_UP, PART_ALPHA, PART_DIFF, PART_DIFF_B, PART_COUNT };

static const struct {
    const char *suffix;
    int part;
} suffixes[] = {
    { ".lora_A.weight", PART_DOWN }, { ".lora_down.weight", PART_DOWN },
    { ".lora_B.weight", PART_UP },   { ".lora_up.weight", PART_UP },
    { ".lora_B.bias", PART_DIFF_B }, { ".diff_b", PART_DIFF_B },
    { ".alpha", PART_ALPHA },        { ".diff", PART_DIFF },
};

/* Wrappers around the module names, stripped repeatedly from the front:
 * PEFT's base_model.model., diffusers' transformer., ComfyUI's
 * diffusion_model. (after the weight store's model.). lora_unet_ marks
 * kohya's names, which write '_' for '.'. */
static const char *const prefixes[] = {
    "base_model.model.", "model.diffusion_model.", "diffusion_model.", "transformer.", "model.",
};
static const char kohya_prefix[] = "lora_unet_";

typedef struct group {
    char module[256];                /* as written, prefix stripped */
    int kohya;
    const char *first_key;           /* stored name, for messages */
    const char *key[PART_COUNT];
    const td_tensor *t[PART_COUNT];
} group;

typedef struct merged_entry {
    const td_tensor *base;           /* in the DiT's weight store */
    td_tensor t;                     /* the merged copy (heap; zeroed once released) */
} merged_entry;

struct td_lora_merged {
    merged_entry *e;
    int n, cap;
};

/* One LoRA file's pass: its store, its groups and where it goes. */
typedef struct lora_pass {
    td_ctx *ctx;
    const td_weights *dit;
    td_dit_layout layout;
    int layers;
    const td_weights *w;
    double scale;
    group *g;
    int n;
} lora_pass;

static const char *strip_prefixes(const char *name, int *kohya)
{
    size_t kn = sizeof(kohya_prefix) - 1;
    for (;;) {
        int stripped = 0;
        for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
            size_t n = strlen(prefixes[i]);
            if (!strncmp(name, prefixes[i], n)) {
                name += n;
                stripped = 1;
            }
        }
        if (!strncmp(name, kohya_prefix, kn)) {
            name += kn;
            *kohya = 1;
            stripped = 1;
        }
        if (!stripped)
            return name;
    }
}

/* Split a stored name into module and part; -1 when it is no LoRA tensor. */
static int split_key(const char *name, char *module, size_t size, int *kohya)
{
    const char *m = strip_prefixes(name, kohya);
    size_t len = strlen(m);
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        size_t sl = strlen(suffixes[i].suffix);
        if (len > sl && !strcmp(m + len - sl, suffixes[i].suffix) && len - sl < size) {
            memcpy(module, m, len - sl);
            module[len - sl] = '\0';
            return suffixes[i].part;
        }
    }
    return -1;
}

static int add_group(lora_pass *p, const char *module, int kohya, const char *key, group **out)
{
    group *ng = realloc(p->g, (size_t)(p->n + 1) * sizeof(*ng));
    if (!ng)
        return td_fail(p->ctx, TD_ENOMEM, "%s: out of memory for LoRA modules", td_weights_path(p->w));
    p->g = ng;
    *out = memset(&p->g[p->n++], 0, sizeof(group));
    snprintf((*out)->module, sizeof((*out)->module), "%s", module);
    (*out)->kohya = kohya;
    (*out)->first_key = key;
    return 0;
}

static int collect_groups(lora_pass *p)
{
    int n = td_weights_count(p->w);
    if (n == 0)
        return td_fail(p->ctx, TD_EFORMAT, "%s: the LoRA file holds no tensors", td_weights_path(p->w));
    for (int i = 0; i < n; i++) {
        const char *key = td_weights_name(p->w, i);
        char module[256];
        int kohya = 0, part = split_key(key, module, sizeof(module), &kohya);
        group *g = NULL;
        if (part < 0)
            return td_fail(p->ctx, TD_EFORMAT, "%s: %s is not a LoRA tensor (expected <module>.lora_A/"
                           "lora_B/lora_down/lora_up.weight, .alpha, .diff or .diff_b)",
                           td_weights_path(p->w), key);
        for (int j = 0; j < p->n && !g; j++)
            if (p->g[j].kohya == kohya && !strcmp(p->g[j].module, module))
                g = &p->g[j];
        if (!g)
            TD_TRY(add_group(p, module, kohya, key, &g));
        if (g->t[part])
            return td_fail(p->ctx, TD_EFORMAT, "%s: %s and %s are the same LoRA tensor",
                           td_weights_path(p->w), g->key[part], key);
        g->key[part] = key;
        g->t[part] = td_weights_tensor(p->w, i);
    }
    return 0;
}

/* kohya writes "blocks_0_self_attn_q" for "blocks.0.self_attn.q". */
static int same_module(const char *dit_name, const char *module, int kohya)
{
    if (!kohya)
        return !strcmp(dit_name, module);
    for (; *dit_name && *module; dit_name++, module++)
        if (*dit_name != *module && !(*dit_name == '.' && *module == '_'))
            return 0;
    return !*dit_name && !*module;
}

/* The block a module name starts with ("blocks.3." / "blocks_3_"), else 0. */
static int block_of(const char *module)
{
    if (strncmp(module, "blocks", 6) || (module[6] != '.' && module[6] != '_'))
        return 0;
    return atoi(module + 7);
}

/* The DiT's name of the module g names, in the DiT's own layout; 0 if none. */
static int resolve_module(const lora_pass *p, const group *g, char *out, size_t size)
{
    int b = block_of(g->module);
    if (b < 0 || b >= p->layers)
        return 0;
    for (int k = 0; k < DK_COUNT; k++) {
        for (int l = 0; l < 2; l++) {
            char name[256];
            if (td_dit_key_name((td_dit_layout)l, (td_dit_key)k, b, name, sizeof(name)) &&
                same_module(name, g->module, g->kohya))
                return td_dit_key_name(p->layout, (td_dit_key)k, b, out, size) != NULL;
        }
    }
    return 0;
}

/* The DiT tensor module + suffix; a table with no .weight (modulation) is
 * the module itself. */
static const td_tensor *find_target(const lora_pass *p, const char *module, const char *suffix,
                                    char *name, size_t size)
{
    const td_tensor *t;
    snprintf(name, size, "%s.%s", module, suffix);
    t = td_weights_find(p->dit, name);
    if (!t && !strcmp(suffix, "weight")) {
        snprintf(name, size, "%s", module);
        t = td_weights_find(p->dit, name);
    }
    return t;
}

static merged_entry *entry_of(td_lora_merged *m, const td_tensor *base)
{
    for (int i = 0; i < m->n; i++)
        if (m->e[i].base == base)
            return &m->e[i];
    return NULL;
}

/* The merged copy of base, made from base on first use. */
static int working_copy(td_ctx *ctx, td_lora_merged *m, const td_tensor *base, const char *name,
                        td_tensor **out)
{
    merged_entry *e = entry_of(m, base);
    if (!e) {
        if (base->dtype != TD_F32 && base->dtype != TD_BF16 && base->dtype != TD_F16)
            return td_fail(ctx, TD_EUNSUPPORTED, "the DiT's %s is %s: a LoRA merges into float weights only",
                           name, td_dtype_name(base->dtype));
        if (m->n == m->cap) {
            int cap = m->cap ? 2 * m->cap : 32;
            merged_entry *ne = realloc(m->e, (size_t)cap * sizeof(*ne));
            if (!ne)
                return td_fail(ctx, TD_ENOMEM, "out of memory for merged LoRA tensors");
            m->e = ne;
            m->cap = cap;
        }
        e = &m->e[m->n];
        *e = (merged_entry){ base, { 0 } };
        TD_TRY(td_tensor_new(ctx, &e->t, base->dtype, base->ndim, base->shape));
        m->n++;
        TD_TRY(td_tensor_copy(ctx, &e->t, base));
    }
    *out = &e->t;
    return 0;
}

/* v rounded to dtype t and widened back: what a tensor of t would hold. */
static float round_to(td_dtype t, float v)
{
    unsigned char buf[sizeof(float)];
    td_from_f32(t, &v, buf, 1);
    td_to_f32(t, buf, &v, 1);
    return v;
}

/* A LoRA tensor as a new contiguous f32 heap tensor holding the values it
 * has once cast to dtype as: diffusers loads the adapter in the weight's
 * dtype. */
static int round_all(td_tensor *t, td_dtype as)
{
    float *v = t->data;
    for (int64_t i = 0; i < td_numel(t); i++)
        v[i] = round_to(as, v[i]);
    return 0;
}

static int widen(td_ctx *ctx, const td_tensor *t, td_dtype as, td_tensor *out)
{
    TD_TRY(td_tensor_new(ctx, out, TD_F32, t->ndim, t->shape));
    TD_TRY(td_tensor_copy(ctx, out, t));
    return as == TD_F32 ? 0 : round_all(out, as);
}

static float elem(const td_tensor *t, int64_t i)
{
    float v;
    td_to_f32(t->dtype, (const char *)t->data + (size_t)i * td_dtype_size(t->dtype), &v, 1);
    return v;
}

/* row[0..n) of dst (contiguous) += delta * scale, in f32, rounded to dst's dtype. */
static void add_row(td_tensor *dst, int64_t off, const float *delta, int64_t n, float scale, float *tmp)
{
    char *p = (char *)dst->data + (size_t)off * td_dtype_size(dst->dtype);
    td_to_f32(dst->dtype, p, tmp, (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        /* PEFT's delta, (B . A) * scale, is a tensor of the weight's dtype */
        float d = round_to(dst->dtype, delta[i] * scale);
        tmp[i] = tmp[i] + d;
    }
    td_from_f32(dst->dtype, tmp, p, (size_t)n);
}

static int shape_error(const lora_pass *p, const char *key, const char *what, const td_tensor *found,
                       const char *target, const td_tensor *base)
{
    char fs[96], bs[96];
    return td_fail(p->ctx, TD_ESHAPE, "%s: %s is %s but the DiT's %s is %s, which needs %s "
                   "(a LoRA for another model?)", td_weights_path(p->w), key,
                   td_shape_str(found, fs, sizeof(fs)), target, td_shape_str(base, bs, sizeof(bs)), what);
}

static int same_shape(const td_tensor *a, const td_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

/* dst += scale * full-size difference d (diff / diff_b). */
static int merge_diff(const lora_pass *p, td_lora_merged *m, const char *key, const td_tensor *d,
                      const td_tensor *base, const char *target)
{
    td_tensor *dst, dw = { 0 };
    float *tmp;
    int rc;
    if (!same_shape(d, base))
        return shape_error(p, key, "the same shape", d, target, base);
    TD_TRY(working_copy(p->ctx, m, base, target, &dst));
    TD_TRY(widen(p->ctx, d, base->dtype, &dw));
    tmp = malloc((size_t)td_numel(base) * sizeof(float) + 1);
    rc = tmp ? 0 : td_fail(p->ctx, TD_ENOMEM, "out of memory merging %s", key);
    if (rc == 0)
        add_row(dst, 0, dw.data, td_numel(base), (float)p->scale, tmp);
    free(tmp);
    td_tensor_free(&dw);
    return rc;
}

/* The rank-r delta up [out, r] . down' [r, in], down' = down * (alpha / r)
 * rounded to down's dtype (diffusers' converters fold alpha in there). */
static int down_scaled(const lora_pass *p, const group *g, int64_t r, td_dtype as, td_tensor *a)
{
    const td_tensor *alpha = g->t[PART_ALPHA];
    double f;
    int64_t n;
    TD_TRY(widen(p->ctx, g->t[PART_DOWN], TD_F32, a));
    if (!alpha)
        return as == TD_F32 ? 0 : round_all(a, as);
    if (td_numel(alpha) != 1)
        return td_fail(p->ctx, TD_EFORMAT, "%s: %s must hold one number", td_weights_path(p->w),
                       g->key[PART_ALPHA]);
    f = (double)elem(alpha, 0) / (double)r;
    n = td_numel(a);
    for (int64_t i = 0; i < n; i++) {
        float *v = (float *)a->data + i;
        *v = round_to(g->t[PART_DOWN]->dtype, *v * (float)f);
    }
    return as == TD_F32 ? 0 : round_all(a, as);
}

static int check_pair_shapes(const lora_pass *p, const group *g, const td_tensor *base, const char *target,
                             int64_t *rank)
{
    const td_tensor *down = g->t[PART_DOWN], *up = g->t[PART_UP];
    int64_t out = base->ndim ? base->shape[0] : 1, in = out ? td_numel(base) / out : 0, r;
    char need[96];
    if (!down || !up)
        return td_fail(p->ctx, TD_EFORMAT, "%s: %s has no matching %s", td_weights_path(p->w),
                       down ? g->key[PART_DOWN] : g->key[PART_UP], down ? "up (lora_B/lora_up) weight"
                       : "down (lora_A/lora_down) weight");
    if (base->ndim < 2)
        return shape_error(p, g->first_key, "a diff, not a low-rank pair", down, target, base);
    r = down->ndim >= 2 ? down->shape[0] : 0;
    snprintf(need, sizeof(need), "[rank, %lld]", (long long)in);
    if (r <= 0 || td_numel(down) != r * in)
        return shape_error(p, g->key[PART_DOWN], need, down, target, base);
    snprintf(need, sizeof(need), "[%lld, %lld] (rank %lld from the down weight)", (long long)out,
             (long long)r, (long long)r);
    if (up->ndim < 2 || up->shape[0] != out || up->shape[1] != r || td_numel(up) != out * r)
        return shape_error(p, g->key[PART_UP], need, up, target, base);
    *rank = r;
    return 0;
}

static int merge_pair(const lora_pass *p, td_lora_merged *m, const group *g, const td_tensor *base,
                      const char *target)
{
    int64_t r = 0, out, in;
    td_tensor a = { 0 }, b = { 0 }, *dst;
    float *row = NULL, *tmp = NULL;
    int rc;

    TD_TRY(check_pair_shapes(p, g, base, target, &r));
    TD_TRY(working_copy(p->ctx, m, base, target, &dst));
    out = base->shape[0];
    in = td_numel(base) / out;
    rc = down_scaled(p, g, r, base->dtype, &a);
    if (rc == 0)
        rc = widen(p->ctx, g->t[PART_UP], base->dtype, &b);
    row = malloc((size_t)in * sizeof(float));
    tmp = malloc((size_t)in * sizeof(float));
    if (rc == 0 && (!row || !tmp))
        rc = td_fail(p->ctx, TD_ENOMEM, "out of memory merging %s", g->first_key);
    for (int64_t o = 0; rc == 0 && o < out; o++) {
        const float *bo = (const float *)b.data + o * r, *ad = a.data;
        for (int64_t i = 0; i < in; i++) {
            float acc = 0.0f;
            for (int64_t j = 0; j < r; j++)
                acc = fmaf(bo[j], ad[j * in + i], acc);
            row[i] = acc;
        }
        add_row(dst, o * in, row, in, (float)p->scale, tmp);
    }
    free(row);
    free(tmp);
    td_tensor_free(&a);
    td_tensor_free(&b);
    return rc;
}

static int merge_group(const lora_pass *p, td_lora_merged *m, const group *g)
{
    char module[256], target[300];
    const td_tensor *wt, *bt;

    if (!resolve_module(p, g, module, sizeof(module)))
        return td_fail(p->ctx, TD_ENOTFOUND, "%s: LoRA key %s matches no module of the DiT %s",
                       td_weights_path(p->w), g->first_key, td_weights_path(p->dit));
    if (g->t[PART_ALPHA] && !g->t[PART_DOWN])
        return td_fail(p->ctx, TD_EFORMAT, "%s: %s has no down (lora_A/lora_down) weight",
                       td_weights_path(p->w), g->key[PART_ALPHA]);
    wt = find_target(p, module, "weight", target, sizeof(target));
    if (!wt && find_target(p, module, "int8_weight", target, sizeof(target)))
        return td_fail(p->ctx, TD_EUNSUPPORTED, "%s: LoRA key %s: the DiT's %s is W8A8 (int8): merge "
                       "the LoRA into the float checkpoint, then quantize that (`turbodiff quantize`)",
                       td_weights_path(p->w), g->first_key, target);
    if ((g->t[PART_DOWN] || g->t[PART_UP] || g->t[PART_DIFF]) && !wt)
        return td_fail(p->ctx, TD_ENOTFOUND, "%s: LoRA key %s matches no weight of the DiT %s (%s)",
                       td_weights_path(p->w), g->first_key, td_weights_path(p->dit), target);
    if (g->t[PART_DOWN] || g->t[PART_UP])
        TD_TRY(merge_pair(p, m, g, wt, target));
    if (g->t[PART_DIFF])
        TD_TRY(merge_diff(p, m, g->key[PART_DIFF], g->t[PART_DIFF], wt, target));
    if (g->t[PART_DIFF_B]) {
        bt = find_target(p, module, "bias", target, sizeof(target));
        if (!bt)
            return td_fail(p->ctx, TD_ENOTFOUND, "%s: LoRA key %s: the DiT %s has no %s",
                           td_weights_path(p->w), g->key[PART_DIFF_B], td_weights_path(p->dit), target);
        TD_TRY(merge_diff(p, m, g->key[PART_DIFF_B], g->t[PART_DIFF_B], bt, target));
    }
    return 0;
}

static int merge_file(td_ctx *ctx, const td_weights *dit, int layers, const td_lora *lora, td_lora_merged *m)
{
    td_weights *w = NULL;
    lora_pass p = { ctx, dit, td_dit_detect_layout(dit), layers, NULL, lora->scale, NULL, 0 };
    int rc;

    if (!lora->path)
        return td_fail(ctx, TD_EINVAL, "a LoRA without a file path");
    if (!isfinite(lora->scale))
        return td_fail(ctx, TD_EINVAL, "%s: the LoRA scale is not a finite number", lora->path);
    TD_TRY(td_weights_open(ctx, lora->path, &w));
    p.w = w;
    rc = collect_groups(&p);
    for (int i = 0; i < p.n && rc == 0; i++)
        rc = merge_group(&p, m, &p.g[i]);
    if (rc == 0)
        td_log(ctx, TD_LOG_INFO, "LoRA %s (scale %g): %d modules merged", lora->path, lora->scale, p.n);
    free(p.g);
    td_weights_close(&w);
    return rc;
}

/* The number of blocks of the DiT, for telling block indices apart. */
static int count_layers(const td_weights *dit)
{
    int n = 0;
    char name[64];
    for (;; n++) {
        snprintf(name, sizeof(name), "blocks.%d.", n);
        if (!td_weights_has_prefix(dit, name))
            return n;
    }
}

int td_lora_merge(td_ctx *ctx, const td_weights *dit, const td_lora *loras, int n, td_lora_merged **out)
{
    td_lora_merged *m = calloc(1, sizeof(*m));
    int rc = 0, layers = count_layers(dit);

    *out = NULL;
    if (!m)
        return td_fail(ctx, TD_ENOMEM, "out of memory for the LoRA merge");
    for (int i = 0; i < n && rc == 0; i++)
        rc = merge_file(ctx, dit, layers, &loras[i], m);
    if (rc < 0) {
        td_lora_merged_free(&m);
        return rc;
    }
    *out = m;
    return 0;
}

const td_tensor *td_lora_merged_find(const td_lora_merged *m, const td_tensor *base)
{
    const merged_entry *e = m && base ? entry_of((td_lora_merged *)m, base) : NULL;
    return e && e->t.data ? &e->t : NULL;
}

int td_lora_merged_count(const td_lora_merged *m)
{
    return m ? m->n : 0;
}

void td_lora_merged_release(td_lora_merged *m, const void *data)
{
    for (int i = 0; m && data && i < m->n; i++)
        if (m->e[i].t.data == data)
            td_tensor_free(&m->e[i].t);
}

void td_lora_merged_free(td_lora_merged **pm)
{
    td_lora_merged *m = pm ? *pm : NULL;
    if (!m)
        return;
    for (int i = 0; i < m->n; i++)
        td_tensor_free(&m->e[i].t);
    free(m->e);
    free(m);
    *pm = NULL;
}
