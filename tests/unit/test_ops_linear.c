/* linear (f32, bf16, f16 weights, with and without bias) and the batched
 * matmul (batched and shared b, both layouts of b, alpha/beta, strided rows
 * and batches, bf16/f16 b), against double loops at ragged sizes, plus
 * their argument errors. */
#include "ops_common.h"
#include "backend/cpu/cpu.h"

static void ref_linear(const float *x, const float *w, const float *b, double *y, double *mag,
                       int64_t m, int64_t k, int64_t n)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = b ? b[j] : 0.0, a = fabs(s);
            for (int64_t q = 0; q < k; q++) {
                s += (double)x[i * k + q] * w[j * k + q];
                a += fabs((double)x[i * k + q] * w[j * k + q]);
            }
            y[i * n + j] = s;
            mag[i * n + j] = a;
        }
}

static void one_linear(ops_env *e, test_rng *r, int64_t m, int64_t k, int64_t n, td_dtype wdt, int with_bias)
{
    int64_t xs[2] = { m, k }, ws[2] = { n, k }, ys[2] = { m, n }, bs[1] = { n };
    td_tensor x = rand_tensor(e, r, 2, xs, 1.0f), w = rand_tensor(e, r, 2, ws, 0.5f);
    td_tensor b = rand_tensor(e, r, 1, bs, 1.0f), y = zero_tensor(e, TD_F32, 2, ys);
    td_tensor wn = narrowed(e, &w, wdt), bn = narrowed(e, &b, wdt);
    double *ref = malloc(sizeof(double) * (size_t)(m * n + 1)), *mag = malloc(sizeof(double) * (size_t)(m * n + 1));
    double err;

    test_fill(r, y.data, (size_t)(m * n), 100.0f);   /* must be overwritten */
    ref_linear(x.data, w.data, with_bias ? b.data : NULL, ref, mag, m, k, n);
    CHECK_OK(e, e->be->ops->linear(e->be, &x, &wn, with_bias ? &bn : NULL, &y));
    err = err_vs_mag(y.data, ref, mag, (size_t)(m * n));
    CHECK(err < 1e-6, "linear m=%lld k=%lld n=%lld %s bias=%d: rel l2 %.3g",
          (long long)m, (long long)k, (long long)n, td_dtype_name(wdt), with_bias, err);
    free(ref);
    free(mag);
    td_tensor_free(&x); td_tensor_free(&w); td_tensor_free(&b); td_tensor_free(&y);
    td_tensor_free(&wn); td_tensor_free(&bn);
}

static void test_linear_sizes(ops_env *e, test_rng *r)
{
    static const int64_t ms[] = { 1, 7, 130, 257 }, ks[] = { 1, 3, 129, 300 }, ns[] = { 1, 5, 131, 259 };
    static const td_dtype dts[] = { TD_F32, TD_BF16, TD_F16 };
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 4; l++)
                    one_linear(e, r, ms[i], ks[j], ns[l], dts[d], (i + j + l) % 2);
    /* K past one widened tile (split K, beta = 1) and N past one tile */
    one_linear(e, r, 3, 4100, 300, TD_BF16, 1);
    one_linear(e, r, 2, 5000, 700, TD_F16, 0);
    one_linear(e, r, 2, 5000, 700, TD_F32, 1);
    /* the AMX path's K chunks, edge rows and columns at once */
    one_linear(e, r, 300, 1000, 70, TD_F32, 1);
}

/* linear_gelu_tanh is linear then gelu_tanh, to the bit, with and without
 * bias, below and above the AMX row threshold, f32 and bf16 weights. */
static void test_linear_gelu(ops_env *e, test_rng *r)
{
    static const int64_t ms[] = { 3, 200 };
    const td_backend_ops *o = e->be->ops;
    for (int i = 0; i < 2; i++)
        for (int wb16 = 0; wb16 < 2; wb16++)
            for (int hb = 0; hb < 2; hb++) {
                int64_t m = ms[i], k = 1 + (int64_t)(test_next(r) % 300), n = 1 + (int64_t)(test_next(r) % 300);
                td_tensor x = rand_tensor(e, r, 2, (int64_t[]){ m, k }, 2.0f);
                td_tensor wf = rand_tensor(e, r, 2, (int64_t[]){ n, k }, 0.3f), b = rand_tensor(e, r, 1, &n, 1.0f);
                td_tensor w = wb16 ? narrowed(e, &wf, TD_BF16) : wf;
                td_tensor y = zero_tensor(e, TD_F32, 2, (int64_t[]){ m, n }), g = zero_tensor(e, TD_F32, 2, (int64_t[]){ m, n });
                CHECK_OK(e, o->linear(e->be, &x, &w, hb ? &b : NULL, &y));
                CHECK_OK(e, o->gelu_tanh(e->be, &y, &y));
                CHECK_OK(e, o->linear_gelu_tanh(e->be, &x, &w, hb ? &b : NULL, &g));
                CHECK(memcmp(y.data, g.data, sizeof(float) * (size_t)(m * n)) == 0,
                      "linear_gelu_tanh %lldx%lldx%lld (bf16 w %d, bias %d) differs from linear then gelu_tanh",
                      (long long)m, (long long)k, (long long)n, wb16, hb);
                if (wb16)
                    td_tensor_free(&w);
                td_tensor_free(&x); td_tensor_free(&wf); td_tensor_free(&b); td_tensor_free(&y); td_tensor_free(&g);
            }
    CHECK_FAILS(e, o->linear_gelu_tanh(e->be, &(td_tensor){ 0 }, &(td_tensor){ 0 }, NULL, &(td_tensor){ 0 }),
                TD_EINVAL, "linear");
}

/* y shaped [a, b, N] with x [a, b, K]: leading dims flatten */
static void test_linear_rank3(ops_env *e, test_rng *r)
{
    int64_t xs[3] = { 2, 3, 17 }, ws[2] = { 9, 17 }, ys[3] = { 2, 3, 9 };
    td_tensor x = rand_tensor(e, r, 3, xs, 1.0f), w = rand_tensor(e, r, 2, ws, 1.0f);
    td_tensor y = zero_tensor(e, TD_F32, 3, ys);
    double ref[54], mag[54];
    ref_linear(x.data, w.data, NULL, ref, mag, 6, 17, 9);
    CHECK_OK(e, e->be->ops->linear(e->be, &x, &w, NULL, &y));
    CHECK(err_vs_mag(y.data, ref, mag, 54) < 1e-6, "rank-3 linear");
    td_tensor_free(&x); td_tensor_free(&w); td_tensor_free(&y);
}

static void test_linear_errors(ops_env *e, test_rng *r)
{
    int64_t xs[2] = { 4, 8 }, ws[2] = { 6, 8 }, ys[2] = { 4, 6 }, bad[2] = { 4, 7 }, bs[1] = { 5 };
    td_tensor x = rand_tensor(e, r, 2, xs, 1.0f), w = rand_tensor(e, r, 2, ws, 1.0f);
    td_tensor y = zero_tensor(e, TD_F32, 2, ys), yb = zero_tensor(e, TD_F32, 2, bad);
    td_tensor wb = rand_tensor(e, r, 2, bad, 1.0f), b5 = rand_tensor(e, r, 1, bs, 1.0f);
    td_tensor xi = zero_tensor(e, TD_I8, 2, xs), xt;
    int perm[2] = { 1, 0 };
    const td_backend_ops *o = e->be->ops;

    CHECK_FAILS(e, o->linear(e->be, &x, &wb, NULL, &y), TD_ESHAPE, "linear");
    CHECK_FAILS(e, o->linear(e->be, &x, &w, NULL, &yb), TD_ESHAPE, "linear");
    CHECK_FAILS(e, o->linear(e->be, &x, &w, &b5, &y), TD_ESHAPE, "linear");
    CHECK_FAILS(e, o->linear(e->be, &xi, &w, NULL, &y), TD_EINVAL, "linear");
    CHECK_FAILS(e, o->linear(e->be, &x, &xi, NULL, &y), TD_EINVAL, "linear");
    td_tensor_permute(&e->ctx, &x, perm, &xt);
    CHECK_FAILS(e, o->linear(e->be, &xt, &w, NULL, &y), TD_EINVAL, "linear");
    td_tensor_free(&x); td_tensor_free(&w); td_tensor_free(&y); td_tensor_free(&yb);
    td_tensor_free(&wb); td_tensor_free(&b5); td_tensor_free(&xi);
}

/* One matmul operand: batch x rows x cols at row stride ld and batch
 * stride bs inside a random f32 buffer (the values the reference reads);
 * the op gets view, over nbuf (buf narrowed to its dtype) where that is
 * not f32. A batch of 1 is a rank-2 view. */
typedef struct {
    td_tensor buf, nbuf, view;
    int64_t batch, rows, cols, ld, bs;
} mm_opnd;

static mm_opnd mm_make(ops_env *e, test_rng *r, td_dtype dt, int64_t batch, int64_t rows, int64_t cols,
                       int64_t ld, int64_t bs)
{
    mm_opnd o = { .batch = batch, .rows = rows, .cols = cols, .ld = ld, .bs = bs };
    int64_t span = (batch - 1) * bs + (rows - 1) * ld + cols, shape[3] = { batch, rows, cols };
    int nd = batch > 1 ? 3 : 2;
    o.buf = rand_tensor(e, r, 1, &span, 1.0f);
    if (dt != TD_F32)
        o.nbuf = narrowed(e, &o.buf, dt);
    o.view = td_view(dt != TD_F32 ? o.nbuf.data : o.buf.data, dt, nd, shape + 3 - nd);
    o.view.stride[nd - 1] = 1;
    o.view.stride[nd - 2] = ld;
    if (nd == 3)
        o.view.stride[0] = bs;
    return o;
}

/* The same batches as [2, batch/2, rows, cols]: leading dims that flatten. */
static void mm_split_batch(mm_opnd *o)
{
    td_tensor v = o->view;
    int64_t shape[4] = { 2, o->batch / 2, o->rows, o->cols }, stride[4] = { o->batch / 2 * o->bs, o->bs, o->ld, 1 };
    v.ndim = 4;
    memcpy(v.shape, shape, sizeof(shape));
    memcpy(v.stride, stride, sizeof(stride));
    o->view = v;
}

static void mm_free(mm_opnd *o)
{
    td_tensor_free(&o->buf);
    td_tensor_free(&o->nbuf);
}

static double mm_at(const mm_opnd *o, int64_t i, int64_t r, int64_t c)
{
    return ((const float *)o->buf.data)[(o->batch > 1 ? i : 0) * o->bs + r * o->ld + c];
}

/* Run y = alpha a op(b) + beta y and compare with a double loop; every
 * element of y's buffer outside its view must be left as it was. y starts
 * as NaN where beta is 0 (it must be overwritten, not scaled). */
static void mm_run_check(ops_env *e, const char *what, mm_opnd *a, mm_opnd *b, int trans_b, float alpha,
                         float beta, mm_opnd *y)
{
    int64_t nb = (int64_t)td_numel(&y->buf), cnt = y->batch * y->rows * y->cols, at = 0, k = a->cols;
    float *yd = y->buf.data, *y0 = malloc(sizeof(float) * (size_t)nb), *got = malloc(sizeof(float) * (size_t)(cnt + 1));
    double *ref = malloc(sizeof(double) * (size_t)(cnt + 1)), *mag = malloc(sizeof(double) * (size_t)(cnt + 1));
    unsigned char *inview = calloc((size_t)nb, 1);
    int64_t outside = 0;
    double err;

    if (beta == 0.0f)
        for (int64_t i = 0; i < nb; i++)
            yd[i] = NAN;
    memcpy(y0, yd, sizeof(float) * (size_t)nb);
    CHECK_OK(e, e->be->ops->matmul(e->be, &a->view, &b->view, trans_b, alpha, beta, &y->view));
    for (int64_t i = 0; i < y->batch; i++)
        for (int64_t r = 0; r < y->rows; r++)
            for (int64_t j = 0; j < y->cols; j++, at++) {
                int64_t off = i * y->bs + r * y->ld + j;
                double s = 0, sa = 0, old = beta == 0.0f ? 0.0 : beta * (double)y0[off];
                for (int64_t q = 0; q < k; q++) {
                    double t = mm_at(a, i, r, q) * (trans_b ? mm_at(b, i, j, q) : mm_at(b, i, q, j));
                    s += t;
                    sa += fabs(t);
                }
                ref[at] = alpha * s + old;
                mag[at] = fabs(alpha) * sa + fabs(old);
                got[at] = yd[off];
                inview[off] = 1;
            }
    for (int64_t i = 0; i < nb; i++)
        outside += !inview[i] && memcmp(&yd[i], &y0[i], sizeof(float)) != 0;
    err = err_vs_mag(got, ref, mag, (size_t)cnt);
    CHECK(err < 1e-6 && outside == 0, "matmul %s: rel l2 %.3g, %lld elements outside y's view changed",
          what, err, (long long)outside);
    free(y0);
    free(got);
    free(ref);
    free(mag);
    free(inview);
}

/* pad widens every row stride and leaves a gap between batches. */
static void one_matmul(ops_env *e, test_rng *r, td_dtype bdt, int trans_b, int64_t batch, int64_t bbatch,
                       int64_t m, int64_t n, int64_t k, int64_t pad, float alpha, float beta)
{
    int64_t br = trans_b ? n : k, bc = trans_b ? k : n;
    mm_opnd a = mm_make(e, r, TD_F32, batch, m, k, k + pad, m * (k + pad) + pad);
    mm_opnd b = mm_make(e, r, bdt, bbatch, br, bc, bc + pad, br * (bc + pad) + 2 * pad);
    mm_opnd y = mm_make(e, r, TD_F32, batch, m, n, n + pad, m * (n + pad) + pad);
    char what[128];
    snprintf(what, sizeof(what), "B=%lld (b %lld) M=%lld N=%lld K=%lld %s b%s pad %lld alpha %g beta %g",
             (long long)batch, (long long)bbatch, (long long)m, (long long)n, (long long)k, td_dtype_name(bdt),
             trans_b ? "^T" : "", (long long)pad, alpha, beta);
    mm_run_check(e, what, &a, &b, trans_b, alpha, beta, &y);
    mm_free(&a); mm_free(&b); mm_free(&y);
}

static void test_matmul_sizes(ops_env *e, test_rng *r)
{
    static const int64_t sz[][3] = { { 1, 1, 1 }, { 7, 5, 3 }, { 130, 131, 129 }, { 33, 257, 300 } };
    static const td_dtype dts[] = { TD_F32, TD_BF16, TD_F16 };
    for (int d = 0; d < 3; d++)
        for (int s = 0; s < 4; s++)
            for (int tb = 0; tb < 2; tb++) {
                one_matmul(e, r, dts[d], tb, 1, 1, sz[s][0], sz[s][1], sz[s][2], 0, 1.0f, 0.0f);
                one_matmul(e, r, dts[d], tb, 1, 1, sz[s][0], sz[s][1], sz[s][2], 3, 0.75f, -0.5f);
            }
    for (int d = 0; d < 3; d++)
        for (int tb = 0; tb < 2; tb++) {
            /* 3 batches on 2 threads: one batch per worker; 2 would not be */
            one_matmul(e, r, dts[d], tb, 3, 3, 9, 14, 11, 2, 0.5f, 2.0f);
            one_matmul(e, r, dts[d], tb, 2, 2, 20, 7, 33, 0, 1.0f, 0.0f);
            /* b shared by every batch */
            one_matmul(e, r, dts[d], tb, 5, 1, 6, 19, 8, 1, -1.5f, 0.25f);
            one_matmul(e, r, dts[d], tb, 2, 1, 65, 40, 70, 0, 1.0f, 0.0f);
        }
    /* K past one widened tile (split K: later blocks accumulate onto beta y) */
    one_matmul(e, r, TD_BF16, 1, 2, 1, 3, 40, 4100, 1, 0.5f, -1.0f);
    one_matmul(e, r, TD_F16, 0, 2, 2, 2, 30, 5000, 0, 1.0f, 0.5f);
    /* K = 0: y = beta y (and zeros where beta is 0) */
    one_matmul(e, r, TD_F32, 0, 2, 2, 4, 5, 0, 1, 1.0f, -2.0f);
    one_matmul(e, r, TD_BF16, 1, 1, 1, 4, 5, 0, 0, 1.0f, 0.0f);
}

/* Attention's layouts: q, k, v as heads of a fused [S, 3, H, D]
 * projection ([H, S, D] views with row stride 3HD and head stride D), the
 * output heads interleaved in [S, H, D]; and a rank-4 a whose two batch
 * dims flatten, against a rank-2 shared b. */
/* Heads [H, S, D] of the row-major [S, .] matrix fused, starting at column
 * off of each row: head stride D, row stride fused's (a view, not owned). */
static mm_opnd mm_heads(const mm_opnd *fused, int64_t off, int64_t h, int64_t d)
{
    mm_opnd o = { .buf = fused->buf, .batch = h, .rows = fused->rows, .cols = d, .ld = fused->ld, .bs = d };
    int64_t shape[3] = { h, fused->rows, d };
    o.buf.data = (float *)fused->buf.data + off;
    o.view = td_view(o.buf.data, TD_F32, 3, shape);
    o.view.stride[0] = d;
    o.view.stride[1] = fused->ld;
    return o;
}

/* Attention's layouts: q, k, v as heads of a fused [S, 3HD] projection,
 * the output heads interleaved in [S, HD]; and a rank-4 a whose two batch
 * dims flatten, against a rank-2 shared b. */
static void test_matmul_views(ops_env *e, test_rng *r)
{
    int64_t s = 37, h = 3, d = 16;
    mm_opnd qkv = mm_make(e, r, TD_F32, 1, s, 3 * h * d, 3 * h * d, 0), out = mm_make(e, r, TD_F32, 1, s, h * d, h * d, 0);
    mm_opnd q = mm_heads(&qkv, 0, h, d), k = mm_heads(&qkv, h * d, h, d), v = mm_heads(&qkv, 2 * h * d, h, d);
    mm_opnd o = mm_heads(&out, 0, h, d), p = mm_make(e, r, TD_F32, h, s, s, s, s * s);
    mm_opnd a4 = mm_make(e, r, TD_F32, 4, 5, 6, 8, 45), b2 = mm_make(e, r, TD_BF16, 1, 7, 6, 6, 0);
    mm_opnd y4 = mm_make(e, r, TD_F32, 4, 5, 7, 7, 35);

    mm_run_check(e, "q k^T of fused qkv views", &q, &k, 1, 0.25f, 0.0f, &p);
    mm_run_check(e, "p v into interleaved heads", &p, &v, 0, 1.0f, 0.0f, &o);
    mm_split_batch(&a4);
    mm_split_batch(&y4);
    mm_run_check(e, "rank-4 a, shared rank-2 bf16 b^T", &a4, &b2, 1, 1.0f, 1.0f, &y4);
    mm_free(&qkv); mm_free(&out); mm_free(&p); mm_free(&a4); mm_free(&b2); mm_free(&y4);
}

static void test_matmul_errors(ops_env *e, test_rng *r)
{
    int64_t as[3] = { 3, 4, 8 }, bs[3] = { 3, 8, 6 }, ys[3] = { 3, 4, 6 }, b2s[3] = { 2, 8, 6 }, bad[3] = { 3, 4, 7 };
    int64_t big[2] = { 1, (int64_t)1 << 31 }, bigb[2] = { (int64_t)1 << 31, 1 }, one[2] = { 1, 1 };
    int64_t s4[4] = { 3, 2, 2, 8 }, y4s[4] = { 2, 3, 2, 6 };
    td_tensor a = rand_tensor(e, r, 3, as, 1.0f), b = rand_tensor(e, r, 3, bs, 1.0f), y = zero_tensor(e, TD_F32, 3, ys);
    td_tensor b2 = rand_tensor(e, r, 3, b2s, 1.0f), yb = zero_tensor(e, TD_F32, 3, bad);
    td_tensor ai = zero_tensor(e, TD_I8, 3, as), y1 = zero_tensor(e, TD_F32, 2, one), y4 = zero_tensor(e, TD_F32, 4, y4s);
    td_tensor v = td_view1(a.data, TD_F32, 8), w4 = td_view(a.data, TD_F32, 4, s4), t, u;
    int perm[3] = { 0, 2, 1 }, perm4[4] = { 1, 0, 2, 3 };
    const td_backend_ops *o = e->be->ops;

    CHECK_OK(e, o->matmul(e->be, &a, &b, 0, 1.0f, 0.0f, &y));
    CHECK_FAILS(e, o->matmul(e->be, &a, &b, 1, 1.0f, 0.0f, &y), TD_ESHAPE, "matmul: a");   /* K 8 vs 6 */
    CHECK_FAILS(e, o->matmul(e->be, &a, &b, 0, 1.0f, 0.0f, &yb), TD_ESHAPE, "do not fit");
    CHECK_FAILS(e, o->matmul(e->be, &a, &b2, 0, 1.0f, 0.0f, &y), TD_ESHAPE, "B or 1");
    CHECK_FAILS(e, o->matmul(e->be, &ai, &b, 0, 1.0f, 0.0f, &y), TD_EINVAL, "matmul: a");
    CHECK_FAILS(e, o->matmul(e->be, &a, &ai, 1, 1.0f, 0.0f, &y), TD_EINVAL, "matmul: b");
    CHECK_FAILS(e, o->matmul(e->be, &a, &b, 0, 1.0f, 0.0f, &ai), TD_EINVAL, "matmul: y");
    CHECK_FAILS(e, o->matmul(e->be, &a, NULL, 0, 1.0f, 0.0f, &y), TD_EINVAL, "matmul: b is missing");
    CHECK_FAILS(e, o->matmul(e->be, &v, &b, 0, 1.0f, 0.0f, &y), TD_ESHAPE, "rank 2 or more");
    /* b^T as a transposed view: its last dim is not contiguous */
    td_tensor_permute(&e->ctx, &b, perm, &t);
    CHECK_FAILS(e, o->matmul(e->be, &a, &t, 1, 1.0f, 0.0f, &y), TD_EINVAL, "contiguous in its last dim");
    /* rows that overlap */
    u = a;
    u.stride[1] = 5;
    CHECK_FAILS(e, o->matmul(e->be, &u, &b, 0, 1.0f, 0.0f, &y), TD_EINVAL, "row stride of 5");
    /* batch dims in swapped order: strides 16 then 32 do not walk as one */
    td_tensor_permute(&e->ctx, &w4, perm4, &t);
    CHECK_FAILS(e, o->matmul(e->be, &t, &b, 0, 1.0f, 0.0f, &y4), TD_EINVAL, "one batch stride");
    /* y's batches on top of each other */
    u = y;
    u.stride[0] = 0;
    CHECK_FAILS(e, o->matmul(e->be, &a, &b, 0, 1.0f, 0.0f, &u), TD_EINVAL, "overlap");
    /* sizes past 32 bits are refused before any memory is read */
    t = td_view(a.data, TD_F32, 2, big);
    u = td_view(b.data, TD_F32, 2, bigb);
    CHECK_FAILS(e, o->matmul(e->be, &t, &u, 0, 1.0f, 0.0f, &y1), TD_EINVAL, "32-bit");
    td_tensor_free(&a); td_tensor_free(&b); td_tensor_free(&y); td_tensor_free(&b2); td_tensor_free(&yb);
    td_tensor_free(&ai); td_tensor_free(&y1); td_tensor_free(&y4);
}

int main(void)
{
    test_rng r = test_rng_seeded();
    ops_env e;
    if (ops_env_init(&e) < 0)
        return 1;
    for (td_lin_path p = TD_LIN_BLAS; p <= TD_LIN_AMX; p++) {
        if (!td_cpu_lin_supported(p))
            continue;
        printf("linear path %d\n", (int)p);
        td_cpu_of(e.be)->lin_path = p;
        test_linear_sizes(&e, &r);
        test_linear_gelu(&e, &r);
    }
    td_cpu_of(e.be)->lin_path = td_cpu_lin_best(TD_ISA_AMX);
    test_linear_rank3(&e, &r);
    test_linear_errors(&e, &r);
    test_matmul_sizes(&e, &r);
    test_matmul_views(&e, &r);
    test_matmul_errors(&e, &r);
    ops_env_free(&e);
    return check_summary();
}
