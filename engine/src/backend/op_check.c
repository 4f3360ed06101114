#include "op_check.h"

#include <stdint.h>

#define QB 128   /* W8A8 quantization block edge */

/* One matmul operand as a stack of matrices: batch x rows x cols with row
 * stride ld and batch stride bs (0 when there is one batch). */
typedef struct {
    int64_t batch, rows, cols, ld, bs;
} mm_operand;

static int mm_layout(td_ctx *ctx, const char *name, const td_tensor *t, mm_operand *o)
{
    char s[96];
    int nd = t->ndim, flat = 1, seen = 0;
    int64_t next = 0;

    if (nd < 2)
        return td_fail(ctx, TD_ESHAPE, "matmul: %s %s must have rank 2 or more ([..., rows, cols])", name,
                       td_shape_str(t, s, sizeof(s)));
    o->rows = t->shape[nd - 2];
    o->cols = t->shape[nd - 1];
    o->batch = 1;
    o->bs = 0;
    for (int i = nd - 3; i >= 0; i--) {
        o->batch *= t->shape[i];
        if (t->shape[i] == 1)
            continue;
        /* The leading dims must walk memory as one dim does: each stride
         * the product of the shape and stride of the next non-unit one. */
        if (seen && t->stride[i] != next)
            flat = 0;
        if (!seen)
            o->bs = t->stride[i];
        seen = 1;
        next = t->stride[i] * t->shape[i];
    }
    o->ld = o->rows > 1 ? t->stride[nd - 2] : o->cols;
    if (td_numel(t) == 0)
        return 0;
    if (!t->data)
        return td_fail(ctx, TD_EINVAL, "matmul: %s is missing", name);
    if (o->cols > 1 && t->stride[nd - 1] != 1)
        return td_fail(ctx, TD_EINVAL, "matmul: %s %s must be contiguous in its last dim", name,
                       td_shape_str(t, s, sizeof(s)));
    if (o->ld < o->cols)
        return td_fail(ctx, TD_EINVAL, "matmul: %s %s has a row stride of %lld, below its %lld columns", name,
                       td_shape_str(t, s, sizeof(s)), (long long)o->ld, (long long)o->cols);
    if (!flat || o->bs < 0)
        return td_fail(ctx, TD_EINVAL, "matmul: %s %s: its leading dims do not flatten into one batch stride",
                       name, td_shape_str(t, s, sizeof(s)));
    return 0;
}

static int mm_dtypes(td_ctx *ctx, td_dtype act, const td_tensor *a, const td_tensor *b, const td_tensor *y)
{
    char s[96];
    const char *name = !a ? "a" : !b ? "b" : !y ? "y" : NULL;
    if (name)
        return td_fail(ctx, TD_EINVAL, "matmul: %s is missing", name);
    if (a->dtype != act || y->dtype != act)
        return td_fail(ctx, TD_EINVAL, "matmul: %s %s must be %s, the backend's activation dtype",
                       a->dtype != act ? "a" : "y", td_shape_str(a->dtype != act ? a : y, s, sizeof(s)),
                       td_dtype_name(act));
    if (b->dtype != TD_F32 && b->dtype != TD_BF16 && b->dtype != TD_F16)
        return td_fail(ctx, TD_EINVAL, "matmul: b %s must be f32, bf16 or f16", td_shape_str(b, s, sizeof(s)));
    return 0;
}

/* y's B matrices, each rows of n at stride ldy, may not share an element:
 * either the batches lie one after another or they interleave inside each
 * row (heads of a [S, H, D] tensor seen as [H, S, D]). */
static int mm_y_disjoint(const td_matmul_dims *d)
{
    if (d->batch < 2 || d->m == 0 || d->n == 0)
        return 1;
    return d->sy >= (d->m - 1) * d->ldy + d->n || (d->sy >= d->n && (d->batch - 1) * d->sy + d->n <= d->ldy);
}

int td_check_matmul(td_ctx *ctx, td_dtype act, const td_tensor *a, const td_tensor *b, int trans_b,
                    const td_tensor *y, td_matmul_dims *d)
{
    char s1[96], s2[96], s3[96];
    mm_operand oa, ob, oy;
    int64_t bk, bn;

    TD_TRY(mm_dtypes(ctx, act, a, b, y));
    TD_TRY(mm_layout(ctx, "a", a, &oa));
    TD_TRY(mm_layout(ctx, "b", b, &ob));
    TD_TRY(mm_layout(ctx, "y", y, &oy));
    bk = trans_b ? ob.cols : ob.rows;
    bn = trans_b ? ob.rows : ob.cols;
    if (bk != oa.cols || oy.rows != oa.rows || oy.cols != bn || oy.batch != oa.batch ||
        (ob.batch != oa.batch && ob.batch != 1))
        return td_fail(ctx, TD_ESHAPE, "matmul: a %s, b %s and y %s do not fit (y[B, M, N] = a[B, M, K] %s)",
                       td_shape_str(a, s1, sizeof(s1)), td_shape_str(b, s2, sizeof(s2)),
                       td_shape_str(y, s3, sizeof(s3)), trans_b ? "b[B or 1, N, K]^T" : "b[B or 1, K, N]");
    *d = (td_matmul_dims){ oa.batch, oa.rows, bn, oa.cols, oa.ld, ob.ld, oy.ld,
                           oa.batch > 1 ? oa.bs : 0, ob.batch > 1 ? ob.bs : 0, oy.batch > 1 ? oy.bs : 0 };
    if (d->batch > INT32_MAX || d->m > INT32_MAX || d->n > INT32_MAX || d->k > INT32_MAX ||
        d->lda > INT32_MAX || d->ldb > INT32_MAX || d->ldy > INT32_MAX)
        return td_fail(ctx, TD_EINVAL, "matmul: a %s, b %s and y %s are past the 32-bit sizes of a GEMM",
                       td_shape_str(a, s1, sizeof(s1)), td_shape_str(b, s2, sizeof(s2)),
                       td_shape_str(y, s3, sizeof(s3)));
    if (!mm_y_disjoint(d))
        return td_fail(ctx, TD_EINVAL, "matmul: y %s: its %lld batches overlap in memory",
                       td_shape_str(y, s3, sizeof(s3)), (long long)d->batch);
    return 0;
}

int td_check_w8a8_weight(td_ctx *ctx, const char *op, const td_tensor *wq, const td_tensor *wscale)
{
    char a[96], b[96];
    int64_t n, nkb;

    if (!wq || wq->dtype != TD_I8 || wq->ndim != 2 || !td_is_contiguous(wq))
        return td_fail(ctx, TD_EINVAL, "%s: wq %s must be a contiguous int8 [N, K]", op,
                       wq ? td_shape_str(wq, a, sizeof(a)) : "(missing)");
    n = wq->shape[0];
    nkb = (wq->shape[1] + QB - 1) / QB;
    if (!wscale || wscale->dtype != TD_F32 || !td_is_contiguous(wscale) || wscale->ndim != 2 ||
        wscale->shape[0] != (n + QB - 1) / QB || wscale->shape[1] != nkb)
        return td_fail(ctx, TD_ESHAPE, "%s: wscale %s must be f32 [%lld, %lld] for wq %s", op,
                       wscale ? td_shape_str(wscale, a, sizeof(a)) : "(missing)",
                       (long long)((n + QB - 1) / QB), (long long)nkb, td_shape_str(wq, b, sizeof(b)));
    return 0;
}

/* Output length of one conv dim: 0 when the kernel is longer than the
 * padded input. */
static int64_t conv_out(int64_t in, int64_t pad, int64_t k, int64_t stride)
{
    return in + pad < k ? 0 : (in + pad - k) / stride + 1;
}

int td_check_conv3d(td_ctx *ctx, const char *op, const td_tensor *x, const td_tensor *w,
                     const td_tensor *y, const td_conv3d_params *p)
{
    char s1[96], s2[96], s3[96];
    int64_t to, ho, wo;
    if (!p)
        return td_fail(ctx, TD_EINVAL, "%s: params missing", op);
    if (p->stride[0] < 1 || p->stride[1] < 1 || p->stride[2] < 1 || p->pad_t_front < 0 ||
        p->pad_t_back < 0 || p->pad_h < 0 || p->pad_w < 0)
        return td_fail(ctx, TD_EINVAL, "%s: stride %d,%d,%d must be >= 1 and padding %d+%d,%d,%d >= 0",
                       op, p->stride[0], p->stride[1], p->stride[2], p->pad_t_front, p->pad_t_back,
                       p->pad_h, p->pad_w);
    if (x->ndim != 4 || w->ndim != 5 || y->ndim != 4 || w->shape[1] != x->shape[0])
        return td_fail(ctx, TD_ESHAPE, "%s: x %s, w %s, y %s must be [Ci,T,H,W], [Co,Ci,kt,kh,kw], [Co,To,Ho,Wo]",
                       op, td_shape_str(x, s1, sizeof(s1)), td_shape_str(w, s2, sizeof(s2)),
                       td_shape_str(y, s3, sizeof(s3)));
    to = conv_out(x->shape[1], (int64_t)p->pad_t_front + p->pad_t_back, w->shape[2], p->stride[0]);
    ho = conv_out(x->shape[2], 2 * (int64_t)p->pad_h, w->shape[3], p->stride[1]);
    wo = conv_out(x->shape[3], 2 * (int64_t)p->pad_w, w->shape[4], p->stride[2]);
    if (y->shape[0] != w->shape[0] || y->shape[1] != to || y->shape[2] != ho || y->shape[3] != wo)
        return td_fail(ctx, TD_ESHAPE, "%s: y %s must be [%lld, %lld, %lld, %lld] for x %s and w %s",
                       op, td_shape_str(y, s3, sizeof(s3)), (long long)w->shape[0], (long long)to,
                       (long long)ho, (long long)wo, td_shape_str(x, s1, sizeof(s1)),
                       td_shape_str(w, s2, sizeof(s2)));
    return 0;
}

int td_check_linear_shapes(td_ctx *ctx, const char *op, const td_tensor *x, const char *w_name,
                           const td_tensor *w, const td_tensor *y, int64_t *m)
{
    char a[96], b[96], c[96];
    int64_t n = w->shape[0], k = w->shape[1];

    *m = k ? td_numel(x) / k : 0;
    if (x->ndim < 1 || y->ndim < 1 || x->shape[x->ndim - 1] != k || y->shape[y->ndim - 1] != n ||
        td_numel(y) != *m * n)
        return td_fail(ctx, TD_ESHAPE, "%s: x %s, %s %s and y %s do not fit (y[M, N] = x[M, K] %s[N, K]^T)",
                       op, td_shape_str(x, a, sizeof(a)), w_name, td_shape_str(w, b, sizeof(b)),
                       td_shape_str(y, c, sizeof(c)), w_name);
    return 0;
}

int td_check_attention(td_ctx *ctx, const td_tensor *q, const td_tensor *k, const td_tensor *v,
                       const td_tensor *bias, int64_t kv_len, const td_tensor *out)
{
    char s1[96], s2[96], s3[96], s4[96];
    int64_t sq = q->shape[0], sk = k->shape[0], h = q->shape[1];
    if (k->shape[1] != h || v->shape[1] != h || k->shape[2] != q->shape[2] || v->shape[0] != sk ||
        out->shape[0] != sq || out->shape[1] != h || out->shape[2] != v->shape[2])
        return td_fail(ctx, TD_ESHAPE, "attention: q %s, k %s, v %s and out %s do not fit",
                       td_shape_str(q, s1, sizeof(s1)), td_shape_str(k, s2, sizeof(s2)),
                       td_shape_str(v, s3, sizeof(s3)), td_shape_str(out, s4, sizeof(s4)));
    if (bias && (bias->ndim != 3 || bias->shape[0] != h || bias->shape[1] != sq || bias->shape[2] != sk))
        return td_fail(ctx, TD_ESHAPE, "attention: bias %s must be [%lld, %lld, %lld]",
                       td_shape_str(bias, s1, sizeof(s1)), (long long)h, (long long)sq, (long long)sk);
    if (kv_len > sk)
        return td_fail(ctx, TD_EINVAL, "attention: kv_len %lld is past the %lld keys",
                       (long long)kv_len, (long long)sk);
    return 0;
}

int td_check_transfer(td_ctx *ctx, const char *op, const td_tensor *src, const td_tensor *dst)
{
    char a[96], b[96];
    int same = src && dst && src->ndim == dst->ndim;
    for (int i = 0; same && i < src->ndim; i++)
        same = src->shape[i] == dst->shape[i];
    if (!same)
        return td_fail(ctx, TD_ESHAPE, "%s: %s and %s must have the same shape", op,
                       src ? td_shape_str(src, a, sizeof(a)) : "(missing)",
                       dst ? td_shape_str(dst, b, sizeof(b)) : "(missing)");
    if (td_numel(src) > 0 && (!src->data || !dst->data))
        return td_fail(ctx, TD_EINVAL, "%s: %s has no memory", op, src->data ? "destination" : "source");
    return 0;
}

int td_check_lookup(td_ctx *ctx, const char *op, const td_tensor *table, const int32_t *idx,
                    int64_t n, const char *what)
{
    int64_t rows = table->shape[0];
    if (n > 0 && !idx)
        return td_fail(ctx, TD_EINVAL, "%s: no %s given", op, what);
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= rows)
            return td_fail(ctx, TD_EINVAL, "%s: %s %d at position %lld is outside the %lld rows of "
                           "the table", op, what, (int)idx[i], (long long)i, (long long)rows);
    return 0;
}

int td_check_embed(td_ctx *ctx, const td_tensor *table, const int32_t *ids, int64_t n,
                   const td_tensor *y)
{
    char a[96], b[96];
    if (table->ndim != 2 || y->ndim != 2 || y->shape[0] != n || y->shape[1] != table->shape[1])
        return td_fail(ctx, TD_ESHAPE, "embed: table %s and y %s must be [V, D] and [%lld, D]",
                       td_shape_str(table, a, sizeof(a)), td_shape_str(y, b, sizeof(b)), (long long)n);
    return td_check_lookup(ctx, "embed", table, ids, n, "token id");
}

int td_check_rel_pos_bias(td_ctx *ctx, const td_tensor *table, const int32_t *bucket,
                          const td_tensor *y)
{
    char a[96], b[96];
    if (table->ndim != 2 || y->ndim != 3 || y->shape[0] != table->shape[1] || y->shape[1] != y->shape[2] ||
        y->shape[1] < 1)
        return td_fail(ctx, TD_ESHAPE, "rel_pos_bias: table %s and y %s must be [buckets, H] and [H, n, n]",
                       td_shape_str(table, a, sizeof(a)), td_shape_str(y, b, sizeof(b)));
    return td_check_lookup(ctx, "rel_pos_bias", table, bucket, 2 * y->shape[1] - 1, "bucket");
}

int td_check_act(td_backend *be, const char *op, const char *name, const td_tensor *t)
{
    char s[96];
    if (!t || (!t->data && td_numel(t) > 0))
        return td_fail(be->ctx, TD_EINVAL, "%s: %s is missing", op, name);
    if (t->dtype != be->act)
        return td_fail(be->ctx, TD_EINVAL, "%s: %s %s must be %s on the %s backend", op, name,
                       td_shape_str(t, s, sizeof(s)), td_dtype_name(be->act), be->ops->name);
    if (!td_is_contiguous(t))
        return td_fail(be->ctx, TD_EINVAL, "%s: %s %s must be contiguous",
                       op, name, td_shape_str(t, s, sizeof(s)));
    return 0;
}

int td_check_float_vec(td_ctx *ctx, const char *op, const char *name, const td_tensor *t, int64_t n)
{
    char s[96];
    if (!t || (!t->data && td_numel(t) > 0))
        return td_fail(ctx, TD_EINVAL, "%s: %s is missing", op, name);
    if (t->dtype != TD_F32 && t->dtype != TD_BF16 && t->dtype != TD_F16)
        return td_fail(ctx, TD_EINVAL, "%s: %s %s must be f32, bf16 or f16",
                       op, name, td_shape_str(t, s, sizeof(s)));
    if (!td_is_contiguous(t) || td_numel(t) != n)
        return td_fail(ctx, TD_ESHAPE, "%s: %s %s must be contiguous with %lld elements",
                       op, name, td_shape_str(t, s, sizeof(s)), (long long)n);
    return 0;
}

int td_check_same_rows(td_ctx *ctx, const char *op, const td_tensor *x, const td_tensor *y)
{
    char a[96], b[96];
    int64_t lx = x->ndim ? x->shape[x->ndim - 1] : 1, ly = y->ndim ? y->shape[y->ndim - 1] : 1;
    if (td_numel(x) != td_numel(y) || lx != ly)
        return td_fail(ctx, TD_ESHAPE, "%s: output %s does not match input %s",
                       op, td_shape_str(y, b, sizeof(b)), td_shape_str(x, a, sizeof(a)));
    return 0;
}

int td_check_clamp(td_backend *be, const td_tensor *x, float lo, float hi, const td_tensor *y)
{
    TD_TRY(td_check_act(be, "clamp", "x", x));
    TD_TRY(td_check_act(be, "clamp", "y", y));
    TD_TRY(td_check_same_rows(be->ctx, "clamp", x, y));
    if (!(lo <= hi))
        return td_fail(be->ctx, TD_EINVAL, "clamp: bounds [%g, %g] are not ordered", lo, hi);
    return 0;
}

int td_check_scale_shift(td_backend *be, const td_tensor *x, const td_tensor *scale,
                         const td_tensor *shift, const td_tensor *y)
{
    static const char op[] = "scale_shift";
    char a[96], b[96];
    TD_TRY(td_check_act(be, op, "x", x));
    TD_TRY(td_check_act(be, op, "y", y));
    if (x->ndim < 1 || y->ndim != x->ndim || td_numel(x) != td_numel(y) || y->shape[0] != x->shape[0])
        return td_fail(be->ctx, TD_ESHAPE, "%s: y %s does not match x %s", op,
                       td_shape_str(y, b, sizeof(b)), td_shape_str(x, a, sizeof(a)));
    TD_TRY(td_check_float_vec(be->ctx, op, "scale", scale, x->shape[0]));
    return td_check_float_vec(be->ctx, op, "shift", shift, x->shape[0]);
}
