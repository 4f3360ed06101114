/*
 * The counting backend (backend.h): allocations are bookkeeping only and
 * compute ops do nothing, so a model's code run on it costs microseconds
 * whatever the sizes, and what it held at its peak is exactly what the
 * same code holds on a real backend (same shapes, same dtypes, same order
 * of tensor_new and tensor_free). Used by the job estimate to size the VAE,
 * whose working set depends on its layer list, caches and chunking.
 *
 * The addresses handed out are never dereferenced: no op touches memory,
 * and models only pass tensors to ops. Each allocation gets its own range
 * of a made-up address space so that views and slices stay distinct.
 */
#include <stdint.h>
#include <stdlib.h>

#include "backend.h"

typedef struct counter {
    uintptr_t next;          /* the next made-up address */
    size_t live, peak;       /* bytes held now (heap + arena), at most */
    size_t arena_used;
    size_t uploaded;
    double flops;            /* of the GEMM-like ops called: linear, matmul, attention, conv3d */
    td_backend *dev;         /* whose workspace the ops would take; NULL: none */
    size_t ws;               /* the largest of it so far */
} counter;

static counter *cnt(td_backend *be) { return be->priv; }

static void grow(counter *c, size_t bytes)
{
    c->live += bytes;
    if (c->live > c->peak)
        c->peak = c->live;
}

static int place(td_backend *be, td_tensor *t, td_dtype dtype, int ndim, const int64_t *shape, size_t *bytes)
{
    counter *c = cnt(be);
    int64_t n = td_checked_numel(ndim, shape);
    if (ndim < 0 || ndim > TD_MAX_DIMS || n < 0 || (uint64_t)n > SIZE_MAX / 16)
        return td_fail(be->ctx, TD_EINVAL, "count backend: a tensor of %d dims overflows", ndim);
    *bytes = (size_t)n * td_dtype_size(dtype);
    *t = td_view((void *)c->next, dtype, ndim, shape);
    /* 4 KiB apart at least, 64-byte aligned, like the real allocators */
    c->next += (*bytes + 4096 + 63) & ~(uintptr_t)63;
    return 0;
}

static int count_tensor_new(td_backend *be, td_tensor *t, td_dtype dtype, int ndim, const int64_t *shape)
{
    size_t bytes = 0;
    TD_TRY(place(be, t, dtype, ndim, shape, &bytes));
    t->owns = TD_OWNS_BACKEND;
    grow(cnt(be), bytes);
    return 0;
}

static void count_tensor_free(td_backend *be, td_tensor *t)
{
    if (t->owns == TD_OWNS_BACKEND)
        cnt(be)->live -= td_nbytes(t);
    if (t->owns != TD_OWNS_HEAP)
        *t = (td_tensor){ 0 };
}

static int count_upload(td_backend *be, const td_tensor *host, td_tensor *dev)
{
    TD_TRY(count_tensor_new(be, dev, host->dtype, host->ndim, host->shape));
    cnt(be)->uploaded += td_nbytes(dev);
    return 0;
}

static int count_alloc(td_backend *be, td_tensor *t, td_dtype dtype, int ndim, const int64_t *shape)
{
    size_t bytes = 0;
    TD_TRY(place(be, t, dtype, ndim, shape, &bytes));
    cnt(be)->arena_used += bytes;
    grow(cnt(be), bytes);
    return 0;
}

static size_t count_mark(td_backend *be)
{
    return cnt(be)->arena_used;
}

static void count_reset(td_backend *be, size_t mark)
{
    counter *c = cnt(be);
    if (mark < c->arena_used) {
        c->live -= c->arena_used - mark;
        c->arena_used = mark;
    }
}

static int count_available(td_backend *be, size_t *bytes)
{
    (void)be;
    *bytes = SIZE_MAX;
    return 0;
}

static size_t count_uploaded(td_backend *be)
{
    return cnt(be)->uploaded;
}

static void count_destroy(td_backend *be)
{
    free(be->priv);
    free(be);
}

/* The compute ops: nothing to compute, nothing to touch. */
static int w_h(td_backend *be, td_tensor *d, const td_tensor *s)
{ (void)be; (void)d; (void)s; return 0; }
static int r_h(td_backend *be, const td_tensor *s, td_tensor *h)
{ (void)be; (void)s; (void)h; return 0; }
static int copy_op(td_backend *be, td_tensor *d, const td_tensor *s, int acc)
{ (void)be; (void)d; (void)s; (void)acc; return 0; }
static int fill_op(td_backend *be, td_tensor *t, float v)
{ (void)be; (void)t; (void)v; return 0; }
/* Multiply-adds count 2 each; y's elements times the K each sums over. */
static void add_flops(td_backend *be, const td_tensor *y, double k)
{
    cnt(be)->flops += 2.0 * (double)td_numel(y) * k;
}

/* What the device would hold beside the tensors for this op. */
static void add_ws(td_backend *be, td_op op, const td_tensor *a, const td_tensor *b, const td_tensor *y,
                   const td_conv3d_params *p)
{
    counter *c = cnt(be);
    size_t ws = c->dev && c->dev->ops->workspace ? c->dev->ops->workspace(c->dev, op, a, b, y, p) : 0;
    if (ws > c->ws)
        c->ws = ws;
}

static int linear_op(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *b, td_tensor *y)
{
    (void)b;
    add_flops(be, y, (double)w->shape[w->ndim - 1]);
    add_ws(be, TD_OP_LINEAR, x, w, y, NULL);
    return 0;
}
static int w8a8_op(td_backend *be, const td_tensor *x, const td_tensor *wq, const td_tensor *ws,
                   const td_tensor *b, td_tensor *y)
{
    (void)ws; (void)b;
    add_flops(be, y, (double)wq->shape[wq->ndim - 1]);
    add_ws(be, TD_OP_LINEAR_W8A8, x, wq, y, NULL);
    return 0;
}
static int matmul_op(td_backend *be, const td_tensor *a, const td_tensor *b, int tb, float al, float be_,
                     td_tensor *y)
{
    (void)b; (void)tb; (void)al; (void)be_;
    add_flops(be, y, (double)a->shape[a->ndim - 1]);
    return 0;
}
static int ln_op(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *b, float e,
                 td_tensor *y)
{ (void)be; (void)x; (void)w; (void)b; (void)e; (void)y; return 0; }
static int rms_op(td_backend *be, const td_tensor *x, const td_tensor *w, float e, td_tensor *y)
{ (void)be; (void)x; (void)w; (void)e; (void)y; return 0; }
static int un_op(td_backend *be, const td_tensor *x, td_tensor *y)
{ (void)be; (void)x; (void)y; return 0; }
static int bin_op(td_backend *be, const td_tensor *a, const td_tensor *b, td_tensor *y)
{ (void)be; (void)a; (void)b; (void)y; return 0; }
static int tri_op(td_backend *be, const td_tensor *x, const td_tensor *a, const td_tensor *b, td_tensor *y)
{ (void)be; (void)x; (void)a; (void)b; (void)y; return 0; }
static int gated_op(td_backend *be, td_tensor *x, const td_tensor *y, const td_tensor *g)
{ (void)be; (void)x; (void)y; (void)g; return 0; }
static int clamp_op(td_backend *be, const td_tensor *x, float lo, float hi, td_tensor *y)
{ (void)be; (void)x; (void)lo; (void)hi; (void)y; return 0; }
static int embed_op(td_backend *be, const td_tensor *t, const int32_t *ids, int64_t n, td_tensor *y)
{ (void)be; (void)t; (void)ids; (void)n; (void)y; return 0; }
static int bias_op(td_backend *be, const td_tensor *t, const int32_t *bucket, td_tensor *y)
{ (void)be; (void)t; (void)bucket; (void)y; return 0; }
/* q . k^T and p . v for every query of out [Sq, H, Dv]. */
static int attn_op(td_backend *be, const td_tensor *q, const td_tensor *k, const td_tensor *v,
                   const td_tensor *b, float s, int64_t kv, td_tensor *o)
{
    (void)v; (void)b; (void)s; (void)kv;
    cnt(be)->flops += 2.0 * (double)td_numel(q) * (double)k->shape[0] +
                      2.0 * (double)td_numel(o) * (double)k->shape[0];
    add_ws(be, TD_OP_ATTENTION, q, k, o, NULL);
    return 0;
}
static int conv_op(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *b,
                   const td_conv3d_params *p, td_tensor *y)
{
    (void)b;
    add_flops(be, y, (double)(td_numel(w) / (w->shape[0] ? w->shape[0] : 1)));
    add_ws(be, TD_OP_CONV3D, x, w, y, p);
    return 0;
}
static int up_op(td_backend *be, const td_tensor *x, int fh, int fw, td_tensor *y)
{ (void)be; (void)x; (void)fh; (void)fw; (void)y; return 0; }
static int sla_op(td_backend *be, const td_tensor *q, const td_tensor *k, const td_tensor *v,
                  const td_tensor *pw, const td_tensor *pb, int bq, int bk, double topk, td_tensor *o)
{
    (void)v; (void)pw; (void)pb; (void)bq; (void)bk; (void)topk;
    add_ws(be, TD_OP_SLA, q, k, o, NULL);
    return 0;
}

static const td_backend_ops count_ops = {
    .name = "count",
    .destroy = count_destroy,
    .available = count_available,
    .uploaded = count_uploaded,
    .alloc = count_alloc,
    .mark = count_mark,
    .reset = count_reset,
    .tensor_new = count_tensor_new,
    .tensor_free = count_tensor_free,
    .upload = count_upload,
    .write = w_h,
    .read = r_h,
    .copy = copy_op,
    .fill = fill_op,
    .linear = linear_op,
    .linear_gelu_tanh = linear_op,
    .linear_w8a8 = w8a8_op,
    .matmul = matmul_op,
    .layernorm = ln_op,
    .rmsnorm = rms_op,
    .channel_rmsnorm = tri_op,
    .gelu_tanh = un_op,
    .silu = un_op,
    .softmax = un_op,
    .add = bin_op,
    .mul = bin_op,
    .modulate = tri_op,
    .add_gated = gated_op,
    .clamp = clamp_op,
    .scale_shift = tri_op,
    .embed = embed_op,
    .rel_pos_bias = bias_op,
    .rope = tri_op,
    .attention = attn_op,
    .conv3d = conv_op,
    .upsample_nearest = up_op,
    .sla_attention = sla_op,
};

int td_backend_count_create(td_ctx *ctx, td_backend *dev, td_backend **out)
{
    td_backend *be = calloc(1, sizeof(*be));
    counter *c = calloc(1, sizeof(*c));
    *out = NULL;
    if (!be || !c) {
        free(be);
        free(c);
        return td_fail(ctx, TD_ENOMEM, "count backend: cannot allocate its state");
    }
    c->next = 1 << 16;
    be->ops = &count_ops;
    be->ctx = ctx;
    be->act = dev->act;
    be->priv = c;
    c->dev = dev;
    *out = be;
    return 0;
}

size_t td_count_peak(td_backend *be) { return cnt(be)->peak; }
double td_count_flops(td_backend *be) { return cnt(be)->flops; }
size_t td_count_live(td_backend *be) { return cnt(be)->live; }
size_t td_count_workspace(td_backend *be) { return cnt(be)->ws; }

void td_count_reset(td_backend *be)
{
    cnt(be)->peak = cnt(be)->live;
    cnt(be)->ws = 0;
}
