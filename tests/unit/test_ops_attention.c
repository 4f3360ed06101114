/* attention against a double softmax(scale q k^T + bias) v per head, over
 * ragged query/key counts (across the 256x256 tiles and the 8/16-lane
 * vectors), with bias, kv_len masking, q/k/v as views into one fused qkv
 * tensor and NaN keys, on every softmax path this CPU runs (td_att_path);
 * plus errors. */
#include "ops_common.h"
#include "backend/cpu/cpu.h"

static void ref_attention(const td_tensor *q, const td_tensor *k, const td_tensor *v, const float *bias,
                          float scale, int64_t kv, double *out)
{
    int64_t sq = q->shape[0], sk = k->shape[0], h = q->shape[1], d = q->shape[2], dv = v->shape[2];
    const float *Q = q->data, *K = k->data, *V = v->data;
    double *p = malloc(sizeof(double) * (size_t)sk);
    for (int64_t hh = 0; hh < h; hh++)
        for (int64_t i = 0; i < sq; i++) {
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < kv; j++) {
                double s = 0;
                for (int64_t c = 0; c < d; c++)
                    s += (double)Q[i * q->stride[0] + hh * d + c] * K[j * k->stride[0] + hh * d + c];
                s = s * scale + (bias ? bias[(hh * sq + i) * sk + j] : 0.0);
                p[j] = s;
                mx = fmax(mx, s);
            }
            for (int64_t j = 0; j < kv; j++)
                sum += (p[j] = exp(p[j] - mx));
            for (int64_t c = 0; c < dv; c++) {
                double acc = 0;
                for (int64_t j = 0; j < kv; j++)
                    acc += p[j] * V[j * v->stride[0] + hh * dv + c];
                out[(i * h + hh) * dv + c] = acc / sum;
            }
        }
    free(p);
}

static void one(ops_env *e, test_rng *r, int64_t sq, int64_t sk, int64_t h, int64_t d, int64_t dv,
                int with_bias, int64_t kv_len)
{
    int64_t qs[3] = { sq, h, d }, ks[3] = { sk, h, d }, vs[3] = { sk, h, dv }, os[3] = { sq, h, dv };
    int64_t bs[3] = { h, sq, sk };
    td_tensor q = rand_tensor(e, r, 3, qs, 2.0f), k = rand_tensor(e, r, 3, ks, 2.0f);
    td_tensor v = rand_tensor(e, r, 3, vs, 1.0f), o = zero_tensor(e, TD_F32, 3, os);
    td_tensor b = rand_tensor(e, r, 3, bs, 3.0f);
    double *ref = malloc(sizeof(double) * (size_t)(sq * h * dv));
    float scale = 1.0f / sqrtf((float)d);
    int64_t kv = kv_len > 0 ? kv_len : sk;
    double err;

    ref_attention(&q, &k, &v, with_bias ? b.data : NULL, scale, kv, ref);
    CHECK_OK(e, e->be->ops->attention(e->be, &q, &k, &v, with_bias ? &b : NULL, scale, kv_len, &o));
    err = rel_l2_fd(o.data, ref, (size_t)(sq * h * dv));
    CHECK(err < 1e-5, "attention sq=%lld sk=%lld h=%lld d=%lld dv=%lld bias=%d kv_len=%lld: %.3g",
          (long long)sq, (long long)sk, (long long)h, (long long)d, (long long)dv, with_bias,
          (long long)kv_len, err);
    free(ref);
    td_tensor_free(&q); td_tensor_free(&k); td_tensor_free(&v); td_tensor_free(&o); td_tensor_free(&b);
}

/* A bias of -inf over every key of the first 256-key tile (and of the
 * second for some rows): those keys get weight 0 exactly and the rows are finite,
 * as torch's softmax gives them, not NaN from exp(-inf - -inf). */
static void test_masked_first_tile(ops_env *e, test_rng *r)
{
    int64_t sq = 5, sk = 600, h = 2, d = 16;
    int64_t qs[3] = { sq, h, d }, ks[3] = { sk, h, d }, bs[3] = { h, sq, sk };
    td_tensor q = rand_tensor(e, r, 3, qs, 2.0f), k = rand_tensor(e, r, 3, ks, 2.0f);
    td_tensor v = rand_tensor(e, r, 3, ks, 1.0f), o = zero_tensor(e, TD_F32, 3, qs);
    td_tensor b = rand_tensor(e, r, 3, bs, 1.0f);
    double *ref = malloc(sizeof(double) * (size_t)(sq * h * d));
    float *bias = b.data;
    double err;

    for (int64_t hh = 0; hh < h; hh++)
        for (int64_t i = 0; i < sq; i++)
            for (int64_t j = 0; j < sk; j++)
                if (j < (i % 2 ? 512 : 256) || (j >= 300 && j < 310))
                    bias[(hh * sq + i) * sk + j] = -INFINITY;
    /* Keys 300-309 are masked inside a tile with unmasked keys (for even
     * rows), so they go through exp: their weight must be 0 exactly, not
     * the 1e-38 of exp's clamp at -87.3, which these values would show. */
    for (int64_t j = 300 * h * d; j < 310 * h * d; j++)
        ((float *)v.data)[j] = 1e38f;
    ref_attention(&q, &k, &v, bias, 0.25f, sk, ref);
    CHECK_OK(e, e->be->ops->attention(e->be, &q, &k, &v, &b, 0.25f, 0, &o));
    err = rel_l2_fd(o.data, ref, (size_t)(sq * h * d));
    CHECK(err < 1e-5, "attention with the first key tile(s) masked: %.3g", err);
    free(ref);
    td_tensor_free(&q); td_tensor_free(&k); td_tensor_free(&v); td_tensor_free(&o); td_tensor_free(&b);
}

/* q, k, v sliced out of qkv[S, 3, H, D] (row stride 3*H*D) */
static void test_fused_views(ops_env *e, test_rng *r)
{
    int64_t S = 70, H = 2, D = 16, fs[4] = { S, 3, H, D }, os[3] = { S, H, D };
    td_tensor qkv = rand_tensor(e, r, 4, fs, 2.0f), o = zero_tensor(e, TD_F32, 3, os), t[3], c[3];
    double *ref = malloc(sizeof(double) * (size_t)(S * H * D));
    for (int i = 0; i < 3; i++) {
        td_tensor s;
        int64_t sh[3] = { S, H, D };
        td_tensor_slice(&e->ctx, &qkv, 1, i, 1, &s);
        s.ndim = 3;   /* drop the size-1 dim: [S, H, D] with row stride 3*H*D */
        s.shape[1] = H; s.shape[2] = D;
        s.stride[1] = D; s.stride[2] = 1;
        t[i] = s;
        c[i] = zero_tensor(e, TD_F32, 3, sh);
        td_tensor_copy(&e->ctx, &c[i], &t[i]);
    }
    ref_attention(&c[0], &c[1], &c[2], NULL, 0.25f, S, ref);
    CHECK_OK(e, e->be->ops->attention(e->be, &t[0], &t[1], &t[2], NULL, 0.25f, 0, &o));
    CHECK(rel_l2_fd(o.data, ref, (size_t)(S * H * D)) < 1e-5, "attention on fused qkv views: %.3g",
          rel_l2_fd(o.data, ref, (size_t)(S * H * D)));
    free(ref);
    for (int i = 0; i < 3; i++)
        td_tensor_free(&c[i]);
    td_tensor_free(&qkv); td_tensor_free(&o);
}

/* A NaN key makes every output row of its head NaN, as in torch, and
 * leaves the other head finite; once in a full 16/32-lane block of the
 * row, once in the ragged end of the second key tile. */
static void test_nan_key(ops_env *e, test_rng *r, int64_t nan_at)
{
    int64_t sq = 9, sk = 300, h = 2, d = 16, qs[3] = { sq, h, d }, ks[3] = { sk, h, d };
    td_tensor q = rand_tensor(e, r, 3, qs, 2.0f), k = rand_tensor(e, r, 3, ks, 2.0f);
    td_tensor v = rand_tensor(e, r, 3, ks, 1.0f), o = zero_tensor(e, TD_F32, 3, qs);
    const float *out = o.data;
    int bad = 0;

    ((float *)k.data)[nan_at * h * d + d + 3] = NAN;   /* head 1 */
    CHECK_OK(e, e->be->ops->attention(e->be, &q, &k, &v, NULL, 0.25f, 0, &o));
    for (int64_t i = 0; i < sq; i++)
        for (int64_t c = 0; c < d; c++)
            bad += !isfinite(out[(i * h) * d + c]) + !isnan(out[(i * h + 1) * d + c]);
    CHECK(bad == 0, "attention with key %lld NaN in head 1: %d outputs not NaN there / not finite in head 0",
          (long long)nan_at, bad);
    td_tensor_free(&q); td_tensor_free(&k); td_tensor_free(&v); td_tensor_free(&o);
}

static void test_errors(ops_env *e, test_rng *r)
{
    int64_t qs[3] = { 4, 2, 8 }, ks[3] = { 5, 2, 8 }, kb[3] = { 5, 3, 8 }, bs[3] = { 2, 4, 4 };
    td_tensor q = rand_tensor(e, r, 3, qs, 1.0f), k = rand_tensor(e, r, 3, ks, 1.0f);
    td_tensor k3 = rand_tensor(e, r, 3, kb, 1.0f), o = zero_tensor(e, TD_F32, 3, qs);
    td_tensor b = rand_tensor(e, r, 3, bs, 1.0f), qi = zero_tensor(e, TD_BF16, 3, qs);
    const td_backend_ops *op = e->be->ops;
    CHECK_FAILS(e, op->attention(e->be, &q, &k3, &k3, NULL, 1.0f, 0, &o), TD_ESHAPE, "attention");
    CHECK_FAILS(e, op->attention(e->be, &q, &k, &k, &b, 1.0f, 0, &o), TD_ESHAPE, "attention");
    CHECK_FAILS(e, op->attention(e->be, &q, &k, &k, NULL, 1.0f, 6, &o), TD_EINVAL, "attention");
    CHECK_FAILS(e, op->attention(e->be, &qi, &k, &k, NULL, 1.0f, 0, &o), TD_EINVAL, "attention");
    CHECK_FAILS(e, op->attention(e->be, &q, &k, &k, NULL, 1.0f, 0, &k), TD_ESHAPE, "attention");
    td_tensor_free(&q); td_tensor_free(&k); td_tensor_free(&k3); td_tensor_free(&o);
    td_tensor_free(&b); td_tensor_free(&qi);
}

int main(void)
{
    static const int64_t sqs[] = { 1, 7, 130, 257 }, sks[] = { 1, 3, 17, 40, 257, 300 };
    test_rng r = test_rng_seeded();
    ops_env e;
    if (ops_env_init(&e) < 0)
        return 1;
    for (td_att_path p = TD_ATT_SCALAR; p <= TD_ATT_AMX; p++) {
        if (!td_cpu_att_supported(p))
            continue;
        printf("attention softmax path %d\n", (int)p);
        td_cpu_of(e.be)->att_path = p;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 6; j++) {
                one(&e, &r, sqs[i], sks[j], 3, 16, 16, (i + j) % 2, 0);
                one(&e, &r, sqs[i], sks[j], 1, 8, 24, 1, sks[j] > 2 ? sks[j] - 2 : 0);
            }
        one(&e, &r, 40, 600, 2, 128, 128, 0, 513);
        one(&e, &r, 200, 37, 12, 64, 64, 1, 0);
        one(&e, &r, 513, 520, 1, 8, 8, 1, 515);
        test_fused_views(&e, &r);
        test_masked_first_tile(&e, &r);
        test_nan_key(&e, &r, 20);
        test_nan_key(&e, &r, 290);
    }
    td_cpu_of(e.be)->att_path = td_cpu_att_best(TD_ISA_AMX);
    test_errors(&e, &r);
    ops_env_free(&e);
    return check_summary();
}
