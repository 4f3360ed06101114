/* W8A8 checkpoint quantizer (see dit_quantize.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "io/safetensors_write.h"
#include "dit_internal.h"
#include "dit_quantize.h"

#define QB 128

/* The Linears TurboDiffusion replaces with Int8Linear in every block. */
static const td_dit_key block_linears[] = {
    DK_SA_Q, DK_SA_K, DK_SA_V, DK_SA_O, DK_CA_Q, DK_CA_K, DK_CA_V, DK_CA_O, DK_FFN0, DK_FFN2,
};
#define N_BLOCK_LINEARS ((int)(sizeof(block_linears) / sizeof(block_linears[0])))

enum { ITEM_COPY, ITEM_INT8, ITEM_SCALE };

typedef struct quantizer {
    td_ctx *ctx;
    const td_weights *w;
    const td_tensor **targets;   /* the block Linear weights */
    int n_targets;
    td_st_item *items;
    const td_tensor **src;       /* per item */
    int *kind;                   /* per item */
    char **owned;                /* per item: the new name, NULL for copies */
    int n;
    float *pending_scale;        /* ITEM_INT8 leaves its scales for the next item */
} quantizer;

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int refuse_quantized(td_ctx *ctx, const td_weights *w)
{
    for (int i = 0; i < td_weights_count(w); i++)
        if (ends_with(td_weights_name(w, i), ".int8_weight"))
            return td_fail(ctx, TD_EINVAL, "%s: already quantized (has %s)", td_weights_path(w),
                           td_weights_name(w, i));
    return 0;
}

/* The weights of every block Linear, checked to be float [N, K]. */
static int find_targets(quantizer *q)
{
    const char *path = td_weights_path(q->w);
    td_dit_layout l = td_dit_detect_layout(q->w);
    char base[200], name[220], s[96];
    int layers = 0;

    while (td_weights_find(q->w, td_dit_key_name(l, DK_MOD, layers, base, sizeof(base))))
        layers++;
    if (layers == 0)
        return td_fail(q->ctx, TD_ENOTFOUND, "%s: no DiT blocks (%s not found)", path,
                       td_dit_key_name(l, DK_MOD, 0, base, sizeof(base)));
    q->targets = calloc((size_t)layers * N_BLOCK_LINEARS, sizeof(*q->targets));
    if (!q->targets)
        return td_fail(q->ctx, TD_ENOMEM, "quantize: %d block Linears", layers * N_BLOCK_LINEARS);
    for (int b = 0; b < layers; b++) {
        for (int j = 0; j < N_BLOCK_LINEARS; j++) {
            const td_tensor *t;
            snprintf(name, sizeof(name), "%s.weight", td_dit_key_name(l, block_linears[j], b, base, sizeof(base)));
            t = td_weights_find(q->w, name);
            if (!t)
                return td_fail(q->ctx, TD_ENOTFOUND, "%s: DiT tensor %s not found", path, name);
            if (t->ndim != 2)
                return td_fail(q->ctx, TD_ESHAPE, "%s: %s is %s, expected a 2-D Linear weight", path, name,
                               td_shape_str(t, s, sizeof(s)));
            if (t->dtype != TD_F32 && t->dtype != TD_BF16 && t->dtype != TD_F16)
                return td_fail(q->ctx, TD_EUNSUPPORTED, "%s: %s is %s, expected a float weight to quantize",
                               path, name, td_shape_str(t, s, sizeof(s)));
            q->targets[q->n_targets++] = t;
        }
    }
    return 0;
}

static int is_target(const quantizer *q, const td_tensor *t)
{
    for (int i = 0; i < q->n_targets; i++)
        if (q->targets[i] == t)
            return 1;
    return 0;
}

/* "<module>.weight" -> "<module><suffix>", heap-allocated. */
static char *renamed(const char *weight_name, const char *suffix)
{
    size_t base = strlen(weight_name) - strlen(".weight");
    char *s = malloc(base + strlen(suffix) + 1);
    if (s) {
        memcpy(s, weight_name, base);
        strcpy(s + base, suffix);
    }
    return s;
}

static int add_item(quantizer *q, const td_tensor *t, int kind, const char *stored)
{
    td_st_item *it = &q->items[q->n];
    it->ndim = t->ndim;
    memcpy(it->shape, t->shape, sizeof(it->shape));
    it->dtype = t->dtype;
    it->name = stored;
    if (kind == ITEM_INT8) {
        it->dtype = TD_I8;
        it->name = q->owned[q->n] = renamed(stored, ".int8_weight");
    } else if (kind == ITEM_SCALE) {
        it->dtype = TD_F32;
        it->shape[0] = (t->shape[0] + QB - 1) / QB;
        it->shape[1] = (t->shape[1] + QB - 1) / QB;
        it->name = q->owned[q->n] = renamed(stored, ".scale");
    }
    if (!it->name)
        return td_fail(q->ctx, TD_ENOMEM, "quantize: tensor name");
    q->src[q->n] = t;
    q->kind[q->n] = kind;
    q->n++;
    return 0;
}

/* Every tensor in file order; each block Linear weight becomes its pair. */
static int plan(quantizer *q)
{
    int count = td_weights_count(q->w), cap = count + q->n_targets;
    q->items = calloc((size_t)cap, sizeof(*q->items));
    q->src = calloc((size_t)cap, sizeof(*q->src));
    q->kind = calloc((size_t)cap, sizeof(*q->kind));
    q->owned = calloc((size_t)cap, sizeof(*q->owned));
    if (!q->items || !q->src || !q->kind || !q->owned)
        return td_fail(q->ctx, TD_ENOMEM, "quantize: plan of %d tensors", cap);
    for (int i = 0; i < count; i++) {
        const td_tensor *t = td_weights_tensor(q->w, i);
        const char *stored = td_weights_name(q->w, i);
        if (is_target(q, t)) {
            TD_TRY(add_item(q, t, ITEM_INT8, stored));
            TD_TRY(add_item(q, t, ITEM_SCALE, stored));
        } else {
            TD_TRY(add_item(q, t, ITEM_COPY, stored));
        }
    }
    return 0;
}

static int quantize_weight(quantizer *q, const td_tensor *t, int8_t *dst)
{
    int64_t n = t->shape[0], k = t->shape[1];
    td_tensor f = { 0 };
    int rc = td_tensor_new(q->ctx, &f, TD_F32, 2, t->shape);
    if (rc == 0)
        rc = td_tensor_copy(q->ctx, &f, t);
    free(q->pending_scale);
    q->pending_scale = NULL;
    if (rc == 0 && !(q->pending_scale = malloc(sizeof(float) * (size_t)(((n + QB - 1) / QB) * ((k + QB - 1) / QB) + 1))))
        rc = td_fail(q->ctx, TD_ENOMEM, "quantize: block scales of %s", td_weights_path(q->w));
    if (rc == 0)
        td_cpu_w8a8_quantize(q->ctx->pool, f.data, n, k, dst, q->pending_scale);
    td_tensor_free(&f);
    return rc;
}

static int fill(void *opaque, int i, void *dst, size_t nbytes)
{
    quantizer *q = opaque;
    const td_tensor *t = q->src[i];
    if (q->kind[i] == ITEM_INT8)
        return quantize_weight(q, t, dst);
    if (q->kind[i] == ITEM_SCALE) {
        memcpy(dst, q->pending_scale, nbytes);
        return 0;
    }
    if (td_is_contiguous(t)) {
        memcpy(dst, t->data, nbytes);
        return 0;
    }
    {
        td_tensor d = td_view(dst, t->dtype, t->ndim, t->shape);
        return td_tensor_copy(q->ctx, &d, t);
    }
}

static void quantizer_free(quantizer *q)
{
    for (int i = 0; q->owned && i < q->n; i++)
        free(q->owned[i]);
    free(q->targets);
    free(q->items);
    free(q->src);
    free(q->kind);
    free(q->owned);
    free(q->pending_scale);
}

int td_dit_quantize(td_ctx *ctx, const td_weights *w, const char *out_path, int *n_linears)
{
    quantizer q = { .ctx = ctx, .w = w };
    int rc = refuse_quantized(ctx, w);
    if (rc == 0)
        rc = find_targets(&q);
    if (rc == 0)
        rc = plan(&q);
    if (rc == 0)
        rc = td_safetensors_write(ctx, out_path, q.items, q.n, fill, &q);
    if (rc == 0 && n_linears)
        *n_linears = q.n_targets;
    quantizer_free(&q);
    return rc;
}
