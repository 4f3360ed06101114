/*
 * Every CUDA op against the CPU backend on fresh seeded random inputs, at
 * several sizes including ragged ones. Inputs are rounded to bf16 first so
 * both backends see the same numbers; bf16 results must be within 1e-2
 * relative L2 of the CPU's f32 (SLA too: its block map is computed in f64
 * in the CPU's order, so both pick the same blocks), and the W8A8 linear
 * must equal the CPU's result rounded to bf16 bit for bit (its integer sums
 * are exact on both). Exits 77 (ctest SKIP) with "no CUDA device: skipped"
 * where no GPU is.
 */
#include <math.h>
#include <string.h>

#include "backend/backend.h"
#include "check.h"

#define TOL 1e-2
#define ARENA ((size_t)256 << 20)

typedef struct env {
    td_ctx ctx;
    td_backend *cpu, *gpu;
    test_rng rng;
} env;

/* Host f32 of random values already representable in bf16. */
static td_tensor host_rand(env *e, int ndim, const int64_t *shape, float amp)
{
    td_tensor t;
    int rc = td_tensor_new(&e->ctx, &t, TD_F32, ndim, shape);
    CHECK(rc == 0, "host tensor: %s", e->ctx.errmsg);
    for (int64_t i = 0; i < td_numel(&t); i++)
        ((float *)t.data)[i] = td_bf16_to_f32(td_f32_to_bf16(amp * test_uniform(&e->rng)));
    return t;
}

static td_tensor host_zero(env *e, int ndim, const int64_t *shape)
{
    td_tensor t;
    int rc = td_tensor_new(&e->ctx, &t, TD_F32, ndim, shape);
    CHECK(rc == 0, "host tensor: %s", e->ctx.errmsg);
    return t;
}

/* The host values on the GPU in dtype dt (uploads live until the backend goes). */
static td_tensor to_gpu(env *e, const td_tensor *h, td_dtype dt)
{
    td_tensor n, d = { 0 };
    int rc = td_tensor_new(&e->ctx, &n, dt, h->ndim, h->shape);
    if (rc == 0)
        rc = td_tensor_copy(&e->ctx, &n, h);
    if (rc == 0)
        rc = e->gpu->ops->upload(e->gpu, &n, &d);
    CHECK(rc == 0, "upload: %s", e->ctx.errmsg);
    td_tensor_free(&n);
    return d;
}

static td_tensor gpu_out(env *e, int ndim, const int64_t *shape)
{
    td_tensor t = { 0 };
    int rc = e->gpu->ops->alloc(e->gpu, &t, TD_BF16, ndim, shape);
    CHECK(rc == 0, "alloc: %s", e->ctx.errmsg);
    return t;
}

/* Download g and compare with the CPU's ref; returns the relative L2 error. */
static double compare(env *e, const char *what, const td_tensor *g, const td_tensor *ref)
{
    td_tensor h = host_zero(e, ref->ndim, ref->shape);
    int rc = e->gpu->ops->read(e->gpu, g, &h);
    double err = rc == 0 ? rel_l2_ff(h.data, ref->data, (size_t)td_numel(ref)) : INFINITY;
    CHECK(rc == 0, "%s: download: %s", what, e->ctx.errmsg);
    CHECK(err < TOL, "%s: rel L2 %.3g", what, err);
    printf("%-44s rel L2 %.2e\n", what, err);
    td_tensor_free(&h);
    return err;
}

#define OK(call, what) do { int rc_ = (call); CHECK(rc_ == 0, "%s: %s", what, e->ctx.errmsg); } while (0)

static void test_linear(env *e)
{
    static const int64_t sz[][3] = { { 1, 64, 64 }, { 37, 96, 80 }, { 300, 136, 77 }, { 256, 512, 384 } };
    for (size_t i = 0; i < sizeof(sz) / sizeof(sz[0]); i++)
        for (int f32w = 0; f32w < 2; f32w++) {
            int64_t m = sz[i][0], k = sz[i][1], n = sz[i][2], xs[2] = { m, k }, ws[2] = { n, k }, ys[2] = { m, n };
            size_t mark = e->gpu->ops->mark(e->gpu);
            td_tensor x = host_rand(e, 2, xs, 1.0f), w = host_rand(e, 2, ws, 0.1f), b = host_rand(e, 1, &n, 1.0f);
            td_tensor y = host_zero(e, 2, ys);
            td_tensor gx = to_gpu(e, &x, TD_BF16), gw = to_gpu(e, &w, f32w ? TD_F32 : TD_BF16);
            td_tensor gb = to_gpu(e, &b, f32w ? TD_F32 : TD_BF16), gy = gpu_out(e, 2, ys);
            char what[96];
            OK(e->cpu->ops->linear(e->cpu, &x, &w, &b, &y), "cpu linear");
            OK(e->gpu->ops->linear(e->gpu, &gx, &gw, &gb, &gy), "cuda linear");
            snprintf(what, sizeof(what), "linear %s M=%lld K=%lld N=%lld", f32w ? "f32 w" : "bf16 w",
                     (long long)m, (long long)k, (long long)n);
            compare(e, what, &gy, &y);
            td_tensor_free(&x), td_tensor_free(&w), td_tensor_free(&b), td_tensor_free(&y);
            e->gpu->ops->reset(e->gpu, mark);
        }
}

static void test_w8a8(env *e)
{
    static const int64_t sz[][3] = { { 1, 128, 128 }, { 200, 300, 130 }, { 129, 256, 257 }, { 64, 40, 8 } };
    for (size_t i = 0; i < sizeof(sz) / sizeof(sz[0]); i++) {
        int64_t m = sz[i][0], k = sz[i][1], n = sz[i][2], xs[2] = { m, k }, ws[2] = { n, k }, ys[2] = { m, n };
        int64_t ss[2] = { (n + 127) / 128, (k + 127) / 128 };
        size_t mark = e->gpu->ops->mark(e->gpu);
        td_tensor x = host_rand(e, 2, xs, 3.0f), b = host_rand(e, 1, &n, 1.0f), y = host_zero(e, 2, ys);
        td_tensor wq, sc, gy = gpu_out(e, 2, ys), g = host_zero(e, 2, ys);
        int64_t diff = 0;
        OK(td_tensor_new(&e->ctx, &wq, TD_I8, 2, ws), "wq");
        sc = host_rand(e, 2, ss, 0.01f);
        for (int64_t j = 0; j < n * k; j++)
            ((int8_t *)wq.data)[j] = (int8_t)(test_next(&e->rng) % 255 - 127);
        for (int64_t j = 0; j < ss[0] * ss[1]; j++)
            ((float *)sc.data)[j] = fabsf(((float *)sc.data)[j]) + 1e-4f;
        {
            td_tensor gx = to_gpu(e, &x, TD_BF16), gw, gs = to_gpu(e, &sc, TD_F32), gb = to_gpu(e, &b, TD_F32);
            OK(e->gpu->ops->upload(e->gpu, &wq, &gw), "upload wq");
            OK(e->cpu->ops->linear_w8a8(e->cpu, &x, &wq, &sc, &b, &y), "cpu w8a8");
            OK(e->gpu->ops->linear_w8a8(e->gpu, &gx, &gw, &gs, &gb, &gy), "cuda w8a8");
        }
        OK(e->gpu->ops->read(e->gpu, &gy, &g), "download");
        for (int64_t j = 0; j < m * n; j++)
            diff += td_f32_to_bf16(((float *)g.data)[j]) != td_f32_to_bf16(((float *)y.data)[j]);
        CHECK(diff == 0, "w8a8 M=%lld K=%lld N=%lld: %lld of %lld outputs differ from bf16(cpu)",
              (long long)m, (long long)k, (long long)n, (long long)diff, (long long)(m * n));
        printf("w8a8 M=%lld K=%lld N=%lld: %lld outputs differ (bit-exact wanted)\n",
               (long long)m, (long long)k, (long long)n, (long long)diff);
        td_tensor_free(&x), td_tensor_free(&b), td_tensor_free(&y), td_tensor_free(&wq);
        td_tensor_free(&sc), td_tensor_free(&g);
        e->gpu->ops->reset(e->gpu, mark);
    }
}

/* The raw f32 gemm on device pointers, every transpose, ragged sizes, beta != 0. */
static void test_gemm(env *e)
{
    static const int64_t sz[][3] = { { 1, 1, 1 }, { 33, 17, 65 }, { 128, 96, 200 } };
    for (size_t i = 0; i < sizeof(sz) / sizeof(sz[0]); i++)
        for (int t = 0; t < 4; t++) {
            int ta = t & 1, tb = t >> 1;
            int64_t m = sz[i][0], n = sz[i][1], k = sz[i][2];
            int64_t as[2] = { ta ? k : m, ta ? m : k }, bs[2] = { tb ? n : k, tb ? k : n }, cs[2] = { m, n };
            size_t mark = e->gpu->ops->mark(e->gpu);
            td_tensor a = host_rand(e, 2, as, 1.0f), b = host_rand(e, 2, bs, 1.0f), c = host_rand(e, 2, cs, 1.0f);
            td_tensor ga = to_gpu(e, &a, TD_F32), gb = to_gpu(e, &b, TD_F32), gc = to_gpu(e, &c, TD_F32);
            char what[96];
            OK(e->cpu->ops->gemm(e->cpu, ta, tb, m, n, k, 0.5f, a.data, as[1], b.data, bs[1], 2.0f, c.data, n),
               "cpu gemm");
            OK(e->gpu->ops->gemm(e->gpu, ta, tb, m, n, k, 0.5f, ga.data, as[1], gb.data, bs[1], 2.0f, gc.data, n),
               "cuda gemm");
            snprintf(what, sizeof(what), "gemm f32 %c%c M=%lld N=%lld K=%lld", ta ? 'T' : 'N', tb ? 'T' : 'N',
                     (long long)m, (long long)n, (long long)k);
            compare(e, what, &gc, &c);
            td_tensor_free(&a), td_tensor_free(&b), td_tensor_free(&c);
            e->gpu->ops->reset(e->gpu, mark);
        }
}

/* Row ops and pointwise ops over [m, c] at a few shapes. */
static void test_rows(env *e)
{
    static const int64_t sz[][2] = { { 1, 1 }, { 7, 33 }, { 129, 1536 }, { 64, 5000 } };
    for (size_t i = 0; i < sizeof(sz) / sizeof(sz[0]); i++) {
        int64_t m = sz[i][0], c = sz[i][1], s[2] = { m, c };
        size_t mark = e->gpu->ops->mark(e->gpu);
        td_tensor x = host_rand(e, 2, s, 2.0f), x2 = host_rand(e, 2, s, 1.0f), v1 = host_rand(e, 1, &c, 1.0f);
        td_tensor v2 = host_rand(e, 1, &c, 0.5f), y = host_zero(e, 2, s);
        td_tensor gx = to_gpu(e, &x, TD_BF16), gx2 = to_gpu(e, &x2, TD_BF16), gv1 = to_gpu(e, &v1, TD_F32);
        td_tensor gv2 = to_gpu(e, &v2, TD_BF16), gy = gpu_out(e, 2, s);
        char what[96];
#define ROWCASE(name, cpucall, gpucall) do {                                           \
            OK(cpucall, "cpu " name);                                                  \
            OK(gpucall, "cuda " name);                                                 \
            snprintf(what, sizeof(what), name " [%lld, %lld]", (long long)m, (long long)c); \
            compare(e, what, &gy, &y);                                                 \
        } while (0)
        ROWCASE("layernorm affine", e->cpu->ops->layernorm(e->cpu, &x, &v1, &v2, 1e-6f, &y),
                e->gpu->ops->layernorm(e->gpu, &gx, &gv1, &gv2, 1e-6f, &gy));
        ROWCASE("layernorm plain", e->cpu->ops->layernorm(e->cpu, &x, NULL, NULL, 1e-6f, &y),
                e->gpu->ops->layernorm(e->gpu, &gx, NULL, NULL, 1e-6f, &gy));
        ROWCASE("rmsnorm", e->cpu->ops->rmsnorm(e->cpu, &x, &v1, 1e-6f, &y),
                e->gpu->ops->rmsnorm(e->gpu, &gx, &gv1, 1e-6f, &gy));
        ROWCASE("softmax", e->cpu->ops->softmax(e->cpu, &x, &y), e->gpu->ops->softmax(e->gpu, &gx, &gy));
        ROWCASE("gelu_tanh", e->cpu->ops->gelu_tanh(e->cpu, &x, &y), e->gpu->ops->gelu_tanh(e->gpu, &gx, &gy));
        ROWCASE("silu", e->cpu->ops->silu(e->cpu, &x, &y), e->gpu->ops->silu(e->gpu, &gx, &gy));
        ROWCASE("add row", e->cpu->ops->add(e->cpu, &x, &v1, &y), e->gpu->ops->add(e->gpu, &gx, &gv1, &gy));
        ROWCASE("add full", e->cpu->ops->add(e->cpu, &x, &x2, &y), e->gpu->ops->add(e->gpu, &gx, &gx2, &gy));
        ROWCASE("mul row", e->cpu->ops->mul(e->cpu, &x, &v2, &y), e->gpu->ops->mul(e->gpu, &gx, &gv2, &gy));
        ROWCASE("modulate", e->cpu->ops->modulate(e->cpu, &x, &v1, &v2, &y),
                e->gpu->ops->modulate(e->gpu, &gx, &gv1, &gv2, &gy));
        OK(e->gpu->ops->add(e->gpu, &gx, &gv1, &gy), "cuda add");   /* gy = x + v1, then in place */
        OK(e->cpu->ops->add(e->cpu, &x, &v1, &y), "cpu add");
        ROWCASE("add_gated (in place)", e->cpu->ops->add_gated(e->cpu, &y, &x2, &v2),
                e->gpu->ops->add_gated(e->gpu, &gy, &gx2, &gv2));
        td_tensor_free(&x), td_tensor_free(&x2), td_tensor_free(&v1), td_tensor_free(&v2), td_tensor_free(&y);
        e->gpu->ops->reset(e->gpu, mark);
    }
}

static void test_rope_upsample_crms(env *e)
{
    static const int64_t sz[][3] = { { 1, 1, 2 }, { 37, 3, 64 }, { 200, 12, 128 } };
    for (size_t i = 0; i < sizeof(sz) / sizeof(sz[0]); i++) {
        int64_t s3[3] = { sz[i][0], sz[i][1], sz[i][2] }, t2[2] = { sz[i][0], sz[i][2] / 2 };
        size_t mark = e->gpu->ops->mark(e->gpu);
        td_tensor x = host_rand(e, 3, s3, 1.0f), c = host_rand(e, 2, t2, 1.0f), s = host_rand(e, 2, t2, 1.0f);
        td_tensor y = host_zero(e, 3, s3), gx = to_gpu(e, &x, TD_BF16), gc = to_gpu(e, &c, TD_F32);
        td_tensor gs = to_gpu(e, &s, TD_F32), gy = gpu_out(e, 3, s3);
        char what[96];
        OK(e->cpu->ops->rope(e->cpu, &x, &c, &s, &y), "cpu rope");
        OK(e->gpu->ops->rope(e->gpu, &gx, &gc, &gs, &gy), "cuda rope");
        snprintf(what, sizeof(what), "rope [%lld, %lld, %lld]", (long long)s3[0], (long long)s3[1], (long long)s3[2]);
        compare(e, what, &gy, &y);
        {
            int64_t u3[3] = { s3[0], s3[1] * 2, s3[2] * 3 }, ch = s3[0];
            td_tensor u = host_zero(e, 3, u3), gu = gpu_out(e, 3, u3), g = host_rand(e, 1, &ch, 1.0f);
            td_tensor gg = to_gpu(e, &g, TD_BF16);
            OK(e->cpu->ops->upsample_nearest(e->cpu, &x, 2, 3, &u), "cpu upsample");
            OK(e->gpu->ops->upsample_nearest(e->gpu, &gx, 2, 3, &gu), "cuda upsample");
            snprintf(what, sizeof(what), "upsample_nearest 2x3 of [%lld, %lld, %lld]",
                     (long long)s3[0], (long long)s3[1], (long long)s3[2]);
            compare(e, what, &gu, &u);
            OK(e->cpu->ops->channel_rmsnorm(e->cpu, &x, &g, &g, &y), "cpu channel_rmsnorm");
            OK(e->gpu->ops->channel_rmsnorm(e->gpu, &gx, &gg, &gg, &gy), "cuda channel_rmsnorm");
            snprintf(what, sizeof(what), "channel_rmsnorm [%lld, %lld, %lld]",
                     (long long)s3[0], (long long)s3[1], (long long)s3[2]);
            compare(e, what, &gy, &y);
            td_tensor_free(&u), td_tensor_free(&g);
        }
        td_tensor_free(&x), td_tensor_free(&c), td_tensor_free(&s), td_tensor_free(&y);
        e->gpu->ops->reset(e->gpu, mark);
    }
}

static void test_attention(env *e)
{
    /* sq, sk, heads, d, dv, kv_len, bias */
    static const int64_t sz[][7] = { { 1, 1, 1, 64, 64, 0, 0 },     { 77, 130, 3, 64, 64, 0, 0 },
                                     { 100, 200, 2, 128, 128, 150, 0 }, { 33, 45, 4, 64, 64, 0, 1 },
                                     { 300, 512, 2, 128, 128, 0, 0 },  { 17, 70, 2, 64, 64, 65, 1 } };
    for (size_t i = 0; i < sizeof(sz) / sizeof(sz[0]); i++) {
        int64_t sq = sz[i][0], sk = sz[i][1], h = sz[i][2], d = sz[i][3], dv = sz[i][4];
        int64_t qs[3] = { sq, h, d }, ks[3] = { sk, h, d }, vs[3] = { sk, h, dv }, os[3] = { sq, h, dv };
        int64_t bs[3] = { h, sq, sk };
        float scale = 1.0f / sqrtf((float)d);
        size_t mark = e->gpu->ops->mark(e->gpu);
        td_tensor q = host_rand(e, 3, qs, 2.0f), k = host_rand(e, 3, ks, 2.0f), v = host_rand(e, 3, vs, 1.0f);
        td_tensor b = host_rand(e, 3, bs, 1.0f), o = host_zero(e, 3, os);
        td_tensor gq = to_gpu(e, &q, TD_BF16), gk = to_gpu(e, &k, TD_BF16), gv = to_gpu(e, &v, TD_BF16);
        td_tensor gb = to_gpu(e, &b, TD_BF16), go = gpu_out(e, 3, os);
        char what[96];
        OK(e->cpu->ops->attention(e->cpu, &q, &k, &v, sz[i][6] ? &b : NULL, scale, sz[i][5], &o), "cpu attention");
        OK(e->gpu->ops->attention(e->gpu, &gq, &gk, &gv, sz[i][6] ? &gb : NULL, scale, sz[i][5], &go),
           "cuda attention");
        snprintf(what, sizeof(what), "attention sq=%lld sk=%lld h=%lld d=%lld kv=%lld%s", (long long)sq,
                 (long long)sk, (long long)h, (long long)d, (long long)sz[i][5], sz[i][6] ? " bias" : "");
        compare(e, what, &go, &o);
        td_tensor_free(&q), td_tensor_free(&k), td_tensor_free(&v), td_tensor_free(&b), td_tensor_free(&o);
        e->gpu->ops->reset(e->gpu, mark);
    }
}

static void test_conv3d(env *e)
{
    /* ci, t, h, w, co, kt, kh, kw, stride t/h/w, pad front/back/h/w */
    static const int sz[][15] = { { 3, 5, 9, 11, 8, 3, 3, 3, 1, 1, 1, 2, 0, 1, 1 },
                                  { 16, 4, 8, 8, 5, 1, 3, 3, 1, 2, 2, 0, 0, 1, 1 },
                                  { 4, 3, 6, 7, 6, 3, 1, 1, 2, 1, 1, 2, 0, 0, 0 },
                                  { 32, 2, 20, 30, 24, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1 } };
    for (size_t i = 0; i < sizeof(sz) / sizeof(sz[0]); i++) {
        const int *z = sz[i];
        td_conv3d_params p = { { z[8], z[9], z[10] }, z[11], z[12], z[13], z[14] };
        int64_t xs[4] = { z[0], z[1], z[2], z[3] }, ws[5] = { z[4], z[0], z[5], z[6], z[7] }, co = z[4];
        int64_t ys[4] = { co, (z[1] + z[11] + z[12] - z[5]) / z[8] + 1, (z[2] + 2 * z[13] - z[6]) / z[9] + 1,
                          (z[3] + 2 * z[14] - z[7]) / z[10] + 1 };
        size_t mark = e->gpu->ops->mark(e->gpu);
        td_tensor x = host_rand(e, 4, xs, 1.0f), w = host_rand(e, 5, ws, 0.2f), b = host_rand(e, 1, &co, 1.0f);
        td_tensor y = host_zero(e, 4, ys), gx = to_gpu(e, &x, TD_BF16), gw = to_gpu(e, &w, i % 2 ? TD_F32 : TD_BF16);
        td_tensor gb = to_gpu(e, &b, TD_F32), gy = gpu_out(e, 4, ys);
        char what[96];
        OK(e->cpu->ops->conv3d(e->cpu, &x, &w, &b, &p, &y), "cpu conv3d");
        OK(e->gpu->ops->conv3d(e->gpu, &gx, &gw, &gb, &p, &gy), "cuda conv3d");
        snprintf(what, sizeof(what), "conv3d x [%d,%d,%d,%d] w [%d,%d,%d,%d,%d] s %d,%d,%d", z[0], z[1], z[2],
                 z[3], z[4], z[0], z[5], z[6], z[7], z[8], z[9], z[10]);
        compare(e, what, &gy, &y);
        td_tensor_free(&x), td_tensor_free(&w), td_tensor_free(&b), td_tensor_free(&y);
        e->gpu->ops->reset(e->gpu, mark);
    }
}

static void test_sla(env *e)
{
    /* S, H, D, blk_q, blk_k, topk x 100, bf16 proj_l */
    static const int sz[][7] = { { 200, 2, 64, 128, 64, 30, 0 }, { 130, 3, 128, 64, 64, 10, 1 },
                                 { 500, 2, 64, 64, 128, 50, 0 }, { 64, 1, 64, 64, 64, 100, 1 },
                                 { 1000, 2, 128, 128, 64, 10, 0 } };
    for (size_t i = 0; i < sizeof(sz) / sizeof(sz[0]); i++) {
        const int *z = sz[i];
        int64_t s3[3] = { z[0], z[1], z[2] }, ws[2] = { z[2], z[2] }, d = z[2];
        size_t mark = e->gpu->ops->mark(e->gpu);
        td_tensor q = host_rand(e, 3, s3, 2.0f), k = host_rand(e, 3, s3, 2.0f), v = host_rand(e, 3, s3, 1.0f);
        td_tensor w = host_rand(e, 2, ws, 0.2f), b = host_rand(e, 1, &d, 0.5f), o = host_zero(e, 3, s3);
        td_tensor gq = to_gpu(e, &q, TD_BF16), gk = to_gpu(e, &k, TD_BF16), gv = to_gpu(e, &v, TD_BF16);
        td_tensor gw = to_gpu(e, &w, z[6] ? TD_BF16 : TD_F32), gb = to_gpu(e, &b, z[6] ? TD_BF16 : TD_F32);
        td_tensor go = gpu_out(e, 3, s3);
        char what[96];
        OK(e->cpu->ops->sla_attention(e->cpu, &q, &k, &v, &w, &b, z[3], z[4], z[5] / 100.0, &o), "cpu sla");
        OK(e->gpu->ops->sla_attention(e->gpu, &gq, &gk, &gv, &gw, &gb, z[3], z[4], z[5] / 100.0, &go), "cuda sla");
        snprintf(what, sizeof(what), "sla S=%d H=%d D=%d blocks %d/%d topk %.2f", z[0], z[1], z[2], z[3], z[4],
                 z[5] / 100.0);
        compare(e, what, &go, &o);
        td_tensor_free(&q), td_tensor_free(&k), td_tensor_free(&v), td_tensor_free(&w), td_tensor_free(&b);
        td_tensor_free(&o);
        e->gpu->ops->reset(e->gpu, mark);
    }
}

/* Unsupported shapes say so by name; a full arena names the sizes. */
static void test_errors(env *e)
{
    int64_t s3[3] = { 4, 2, 64 }, big = (int64_t)(ARENA / 2) + 1;
    size_t mark = e->gpu->ops->mark(e->gpu);
    td_tensor t = gpu_out(e, 3, s3), huge;
    int rc;

    int64_t s3o[3] = { 4, 2, 130 };
    td_tensor odd = gpu_out(e, 3, s3o);
    td_ctx_clear(&e->ctx);
    rc = e->gpu->ops->attention(e->gpu, &odd, &odd, &odd, NULL, 1.0f, 0, &odd);
    CHECK(rc == TD_EUNSUPPORTED && strstr(e->ctx.errmsg, "attention"), "head dim 130: %d %s", rc, e->ctx.errmsg);
    td_ctx_clear(&e->ctx);
    rc = e->gpu->ops->alloc(e->gpu, &huge, TD_F32, 1, &big);
    CHECK(rc == TD_ENOMEM && strstr(e->ctx.errmsg, "bytes"), "arena full: %d %s", rc, e->ctx.errmsg);
    td_ctx_clear(&e->ctx);
    rc = e->gpu->ops->silu(e->gpu, &t, &(td_tensor){ .dtype = TD_F32, .ndim = 3, .shape = { 4, 2, 64 },
                                                     .stride = { 128, 64, 1 }, .data = t.data });
    CHECK(rc == TD_EINVAL && strstr(e->ctx.errmsg, "bf16"), "f32 activation: %d %s", rc, e->ctx.errmsg);
    e->gpu->ops->reset(e->gpu, mark);
}

int main(void)
{
    env e;
    int rc;

    if (td_cuda_device_count() == 0) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    td_ctx_init(&e.ctx);
    e.rng = test_rng_seeded();
    rc = td_backend_cpu_create(&e.ctx, ARENA, &e.cpu);
    if (rc == 0)
        rc = td_backend_cuda_create(&e.ctx, 0, ARENA, &e.gpu);
    CHECK(rc == 0, "backends: %s", e.ctx.errmsg);
    if (rc == 0) {
        test_linear(&e);
        test_w8a8(&e);
        test_gemm(&e);
        test_rows(&e);
        test_rope_upsample_crms(&e);
        test_attention(&e);
        test_conv3d(&e);
        test_sla(&e);
        test_errors(&e);
    }
    td_backend_destroy(&e.gpu);
    td_backend_destroy(&e.cpu);
    return check_summary();
}
