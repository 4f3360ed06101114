/*
 * The CPU backend's memory and data-movement ops against naive loops that
 * walk every element by its multi-index: write / read (f32, bf16, f16, i32
 * host data, strided backend side), copy (permuted and sliced views up to
 * 7-D, dtype conversions, accumulate), fill on a strided view, clamp,
 * scale_shift, embed, rel_pos_bias, tensor_new / tensor_free in any order,
 * large tensors' blocks kept for reuse without one block serving two live
 * tensors or the held bytes passing the reported peak, and the error
 * paths (shape mismatch, ids out of range, missing tensors).
 */
#include "ops_common.h"

#include "backend/cpu/cpu.h"

#define S(...) (const int64_t[]){ __VA_ARGS__ }

/* Element idx of any-strided t, as double. */
static double at(const td_tensor *t, const int64_t *idx)
{
    int64_t o = 0;
    float f;
    for (int i = 0; i < t->ndim; i++)
        o += idx[i] * t->stride[i];
    td_to_f32(t->dtype, (const char *)t->data + o * (int64_t)td_dtype_size(t->dtype), &f, 1);
    return f;
}

/* Odometer over shape; 0 after the last index. */
static int next(int64_t *idx, const td_tensor *t)
{
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (++idx[i] < t->shape[i])
            return 1;
        idx[i] = 0;
    }
    return 0;
}

/* v rounded to dt as the library stores it. */
static double in_dtype(td_dtype dt, double v)
{
    float f = (float)v;
    if (dt == TD_BF16)
        return td_bf16_to_f32(td_f32_to_bf16(f));
    if (dt == TD_F16)
        return td_f16_to_f32(td_f32_to_f16(f));
    return f;
}

static td_tensor host_rand_dt(ops_env *e, test_rng *r, td_dtype dt, int ndim, const int64_t *shape)
{
    td_tensor f = rand_tensor(e, r, ndim, shape, 2.0f), t = zero_tensor(e, dt, ndim, shape);
    if (dt == TD_I32)
        for (int64_t i = 0; i < td_numel(&f); i++)
            ((int32_t *)t.data)[i] = (int32_t)(((float *)f.data)[i] * 1000);
    else
        td_from_f32(dt, f.data, t.data, (size_t)td_numel(&f));
    td_tensor_free(&f);
    return t;
}

/* dst (any view) must equal expect(src element, old dst element) everywhere. */
static int64_t count_bad(const td_tensor *dst, const td_tensor *src, const td_tensor *old, int accumulate)
{
    int64_t idx[TD_MAX_DIMS] = { 0 }, bad = 0;
    if (td_numel(src) == 0)
        return 0;
    do {
        double want = at(src, idx);
        if (accumulate)
            want = (float)((float)want + (float)at(old, idx));
        bad += at(dst, idx) != in_dtype(dst->dtype, want);
    } while (next(idx, src));
    return bad;
}

static void test_write_read(ops_env *e, test_rng *r)
{
    static const td_dtype hosts[] = { TD_F32, TD_BF16, TD_F16, TD_I32 };
    static const int perm[3] = { 1, 2, 0 };
    td_backend *be = e->be;
    for (size_t i = 0; i < 4; i++) {
        td_tensor h = host_rand_dt(e, r, hosts[i], 3, S(4, 5, 6)), d, pd, back;
        CHECK_OK(e, be->ops->tensor_new(be, &d, TD_F32, 3, S(6, 4, 5)));
        td_tensor_permute(&e->ctx, &d, perm, &pd);            /* [4, 5, 6] view, strided */
        CHECK_OK(e, be->ops->write(be, &pd, &h));
        CHECK(count_bad(&pd, &h, NULL, 0) == 0, "write from %s host", td_dtype_name(hosts[i]));
        for (int j = 0; j < 3; j++) {
            static const td_dtype outs[] = { TD_F32, TD_BF16, TD_F16 };
            back = zero_tensor(e, outs[j], 3, S(4, 5, 6));
            CHECK_OK(e, be->ops->read(be, &pd, &back));
            CHECK(count_bad(&back, &pd, NULL, 0) == 0, "read %s -> %s", td_dtype_name(hosts[i]),
                  td_dtype_name(outs[j]));
            td_tensor_free(&back);
        }
        be->ops->tensor_free(be, &d);
        td_tensor_free(&h);
    }
}

/* Random permutation of a 7-D tensor, a slice of it, copied between dtypes. */
static void test_copy(ops_env *e, test_rng *r)
{
    static const td_dtype dts[] = { TD_F32, TD_BF16, TD_F16 };
    td_backend *be = e->be;
    for (int rep = 0; rep < 18; rep++) {
        int nd = 1 + rep % 7, perm[TD_MAX_DIMS];
        td_dtype sdt = dts[rep % 3], ddt = dts[(rep / 3) % 3];
        int64_t shape[TD_MAX_DIMS], pshape[TD_MAX_DIMS];
        td_tensor src, ps, sl, dst, old;
        int dim, acc = rep % 2;
        for (int i = 0; i < nd; i++) {
            shape[i] = 1 + (int64_t)(test_next(r) % 4);
            perm[i] = i;
        }
        for (int i = nd - 1; i > 0; i--) {
            int j = (int)(test_next(r) % (uint64_t)(i + 1)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        src = host_rand_dt(e, r, sdt, nd, shape);
        td_tensor_permute(&e->ctx, &src, perm, &ps);
        dim = (int)(test_next(r) % (uint64_t)nd);
        td_tensor_slice(&e->ctx, &ps, dim, ps.shape[dim] > 1 ? 1 : 0, ps.shape[dim] > 1 ? ps.shape[dim] - 1 : 1,
                        &sl);
        for (int i = 0; i < nd; i++)
            pshape[i] = sl.shape[i];
        dst = host_rand_dt(e, r, ddt, nd, pshape);
        old = zero_tensor(e, ddt, nd, pshape);
        memcpy(old.data, dst.data, td_nbytes(&dst));
        CHECK_OK(e, be->ops->copy(be, &dst, &sl, acc));
        CHECK(count_bad(&dst, &sl, &old, acc) == 0, "copy %d-D %s -> %s accumulate %d", nd,
              td_dtype_name(sdt), td_dtype_name(ddt), acc);
        td_tensor_free(&src), td_tensor_free(&dst), td_tensor_free(&old);
    }
}

static void test_fill_view(ops_env *e, test_rng *r)
{
    td_tensor t = rand_tensor(e, r, 3, S(4, 6, 5), 1), keep = rand_tensor(e, r, 3, S(4, 6, 5), 1), s;
    int64_t idx[3] = { 0 }, bad = 0;
    memcpy(keep.data, t.data, td_nbytes(&t));
    td_tensor_slice(&e->ctx, &t, 1, 2, 3, &s);
    CHECK_OK(e, e->be->ops->fill(e->be, &s, -2.5f));
    do {
        int in = idx[1] >= 2 && idx[1] < 5;
        bad += at(&t, idx) != (in ? -2.5 : at(&keep, idx));
    } while (next(idx, &t));
    CHECK(bad == 0, "fill on a slice: %lld wrong", (long long)bad);
    td_tensor_free(&t), td_tensor_free(&keep);
}

static void test_clamp_scale_shift(ops_env *e, test_rng *r)
{
    td_tensor x = rand_tensor(e, r, 4, S(5, 3, 4, 7), 3), y = zero_tensor(e, TD_F32, 4, S(5, 3, 4, 7));
    td_tensor sc = rand_tensor(e, r, 1, S(5), 2), shf = rand_tensor(e, r, 1, S(5), 1);
    td_tensor shb = narrowed(e, &shf, TD_BF16);
    const float *xv = x.data, *yv = y.data, *s = sc.data, *b = shf.data;
    int64_t n = td_numel(&x), bad = 0;
    CHECK_OK(e, e->be->ops->clamp(e->be, &x, -0.5f, 1.25f, &y));
    for (int64_t i = 0; i < n; i++)
        bad += yv[i] != (float)fmin(fmax((double)xv[i], -0.5), 1.25);
    CHECK(bad == 0, "clamp: %lld wrong", (long long)bad);
    CHECK_OK(e, e->be->ops->scale_shift(e->be, &x, &sc, &shb, &y));
    {
        double *ref = malloc((size_t)n * sizeof(double));
        for (int64_t i = 0; i < n; i++)
            ref[i] = (double)xv[i] * s[i / (n / 5)] + b[i / (n / 5)];
        CHECK(rel_l2_fd(yv, ref, (size_t)n) < 1e-6, "scale_shift");
        free(ref);
    }
    CHECK_OK(e, e->be->ops->clamp(e->be, &x, -1, 1, &x));   /* in place */
    bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad += xv[i] < -1 || xv[i] > 1;
    CHECK(bad == 0, "clamp in place");
    CHECK_FAILS(e, e->be->ops->clamp(e->be, &x, 1, -1, &y), TD_EINVAL, "clamp");
    CHECK_FAILS(e, e->be->ops->scale_shift(e->be, &x, &sc, &shb, &sc), TD_ESHAPE, "scale_shift");
    td_tensor_free(&x), td_tensor_free(&y), td_tensor_free(&sc), td_tensor_free(&shf), td_tensor_free(&shb);
}

static void test_lookups(ops_env *e, test_rng *r)
{
    int32_t ids[7], bucket[2 * 6 - 1];
    td_tensor tf = rand_tensor(e, r, 2, S(40, 12), 1), tb = narrowed(e, &tf, TD_F16);
    td_tensor y = zero_tensor(e, TD_F32, 2, S(7, 12)), pb = zero_tensor(e, TD_F32, 3, S(12, 6, 6));
    const float *t = tf.data, *yv = y.data, *pv = pb.data;
    int64_t bad = 0;
    for (int i = 0; i < 7; i++)
        ids[i] = (int32_t)(test_next(r) % 40);
    for (int i = 0; i < 11; i++)
        bucket[i] = (int32_t)(test_next(r) % 40);
    CHECK_OK(e, e->be->ops->embed(e->be, &tb, ids, 7, &y));
    for (int i = 0; i < 7; i++)
        for (int j = 0; j < 12; j++)
            bad += yv[i * 12 + j] != t[ids[i] * 12 + j];
    CHECK(bad == 0, "embed: %lld wrong", (long long)bad);
    CHECK_OK(e, e->be->ops->rel_pos_bias(e->be, &tb, bucket, &pb));
    bad = 0;
    for (int h = 0; h < 12; h++)
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 6; j++)
                bad += pv[(h * 6 + i) * 6 + j] != t[bucket[j - i + 5] * 12 + h];
    CHECK(bad == 0, "rel_pos_bias: %lld wrong", (long long)bad);
    ids[4] = 40;
    CHECK_FAILS(e, e->be->ops->embed(e->be, &tb, ids, 7, &y), TD_EINVAL, "position 4");
    CHECK_FAILS(e, e->be->ops->embed(e->be, &tb, NULL, 7, &y), TD_EINVAL, "embed");
    CHECK_FAILS(e, e->be->ops->embed(e->be, &tb, ids, 6, &y), TD_ESHAPE, "embed");
    bucket[10] = -1;
    CHECK_FAILS(e, e->be->ops->rel_pos_bias(e->be, &tb, bucket, &pb), TD_EINVAL, "position 10");
    td_tensor_free(&tf), td_tensor_free(&tb), td_tensor_free(&y), td_tensor_free(&pb);
}

/* tensor_new / tensor_free in any order; views and zeroed tensors are no-ops. */
static void test_new_free(ops_env *e, test_rng *r)
{
    td_backend *be = e->be;
    td_tensor t[16], v;
    int order[16];
    for (int i = 0; i < 16; i++) {
        CHECK_OK(e, be->ops->tensor_new(be, &t[i], i % 2 ? TD_BF16 : TD_F32, 2, S(i + 1, 3)));
        CHECK(t[i].owns == TD_OWNS_BACKEND && t[i].data, "tensor_new %d", i);
        CHECK_OK(e, be->ops->fill(be, &t[i], (float)i));
        order[i] = i;
    }
    for (int i = 15; i > 0; i--) {
        int j = (int)(test_next(r) % (uint64_t)(i + 1)), s = order[i];
        order[i] = order[j];
        order[j] = s;
    }
    v = t[0];
    v.owns = 0;
    be->ops->tensor_free(be, &v);   /* a view: left alone but zeroed */
    CHECK(v.data == NULL, "a view is zeroed");
    for (int i = 0; i < 16; i++) {
        be->ops->tensor_free(be, &t[order[i]]);
        CHECK(t[order[i]].data == NULL && t[order[i]].owns == 0, "tensor_free zeroes");
        be->ops->tensor_free(be, &t[order[i]]);   /* zeroed: a no-op */
    }
    CHECK_OK(e, be->ops->tensor_new(be, &v, TD_F32, 0, S(1)));
    CHECK(td_numel(&v) == 1 && v.data, "0-d tensor_new");
    be->ops->tensor_free(be, &v);
}

static void test_errors(ops_env *e)
{
    td_backend *be = e->be;
    td_tensor a = zero_tensor(e, TD_F32, 2, S(2, 3)), b = zero_tensor(e, TD_F32, 2, S(3, 2));
    td_tensor i8 = zero_tensor(e, TD_I8, 2, S(2, 3));
    CHECK_FAILS(e, be->ops->copy(be, &a, &b, 0), TD_ESHAPE, "copy");
    CHECK_FAILS(e, be->ops->write(be, &a, &b), TD_ESHAPE, "write");
    CHECK_FAILS(e, be->ops->read(be, &a, &b), TD_ESHAPE, "read");
    CHECK_FAILS(e, be->ops->write(be, &a, NULL), TD_ESHAPE, "write");
    CHECK_FAILS(e, be->ops->read(be, NULL, &a), TD_ESHAPE, "read");
    CHECK_FAILS(e, be->ops->read(be, &a, &i8), TD_EINVAL, "read");
    CHECK_FAILS(e, be->ops->copy(be, &i8, &a, 0), TD_EINVAL, "copy");
    CHECK_FAILS(e, be->ops->fill(be, NULL, 0), TD_EINVAL, "fill");
    CHECK_FAILS(e, be->ops->fill(be, &i8, 0), TD_EINVAL, "fill");
    td_tensor_free(&a), td_tensor_free(&b), td_tensor_free(&i8);
}

/* Tensors of 4-12 MB (a few sizes, so freed blocks get reused) made and
 * freed in random order: each live one keeps the values written into it
 * whatever is made after it, and what the backend holds (live tensors and
 * kept blocks) never passes the peak it reports; peak_reset gives the kept
 * blocks back. */
static void test_kept_blocks(ops_env *e, test_rng *r)
{
    enum { N = 12 };
    td_backend *be = e->be;
    td_cpu *c = td_cpu_of(be);
    td_tensor t[N] = { 0 };
    float tag[N];
    int64_t bad = 0;

    be->ops->peak_reset(be);
    for (int step = 0; step < 200; step++) {
        int i = (int)(test_next(r) % N);
        if (t[i].data) {
            const float *d = t[i].data;
            for (int64_t j = 0; j < td_numel(&t[i]); j += 4099)
                bad += d[j] != tag[i];
            be->ops->tensor_free(be, &t[i]);
        } else {
            int64_t rows = 1024 * (1 + (int64_t)(test_next(r) % 3));
            CHECK_OK(e, be->ops->tensor_new(be, &t[i], TD_F32, 2, S(rows, 1024)));
            tag[i] = (float)step;
            CHECK_OK(e, be->ops->fill(be, &t[i], tag[i]));
        }
        CHECK(c->heap_live + td_cpu_kept_bytes(c) + c->uploaded + c->arena.used + c->scratch_floats * sizeof(float) <=
              be->ops->peak(be), "step %d: %zu live + %zu kept over the reported peak %zu", step, c->heap_live,
              td_cpu_kept_bytes(c), be->ops->peak(be));
    }
    CHECK(bad == 0, "%lld values changed under live tensors", (long long)bad);
    for (int i = 0; i < N; i++)
        be->ops->tensor_free(be, &t[i]);
    be->ops->peak_reset(be);
    CHECK(c->nkept == 0 && td_cpu_kept_bytes(c) == 0, "peak_reset kept %d blocks, %zu bytes", c->nkept, td_cpu_kept_bytes(c));
}

int main(void)
{
    ops_env e;
    test_rng r = test_rng_seeded();
    if (ops_env_init(&e) < 0)
        return 1;
    test_write_read(&e, &r);
    test_copy(&e, &r);
    test_fill_view(&e, &r);
    test_clamp_scale_shift(&e, &r);
    test_lookups(&e, &r);
    test_new_free(&e, &r);
    test_kept_blocks(&e, &r);
    test_errors(&e);
    ops_env_free(&e);
    return check_summary();
}
