/*
 * Every CUDA op against the CPU backend on fresh seeded random inputs, at
 * several sizes including ragged ones. Inputs are rounded to bf16 first so
 * both backends see the same numbers; bf16 results must be within 1e-2
 * relative L2 of the CPU's f32 (SLA too: its block map is computed in f64
 * in the CPU's order, so both pick the same blocks), and the W8A8 linear
 * must equal the CPU's result rounded to bf16 bit for bit (its integer sums
 * are exact on both). The data-movement ops (write, read, copy, fill) move
 * values exactly, so they must match bit for bit too. Uploads narrow float
 * weights to bf16 and are freed with tensor_free; tensors the GPU side made
 * are held per case and released with the arena. Exits 77 (ctest SKIP) with
 * "no CUDA device: skipped" where no GPU is.
 */
#include <math.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_internal.h"
#include "check.h"

#define TOL 1e-2
#define ARENA ((size_t)256 << 20)

#define MAX_HELD 64

typedef struct env {
    td_ctx ctx;
    td_backend *cpu, *gpu;
    test_rng rng;
    td_tensor held[MAX_HELD];   /* uploads and tensor_new results of the current case */
    int nheld;
} env;

static td_tensor hold(env *e, td_tensor t)
{
    CHECK(e->nheld < MAX_HELD, "more than %d device tensors in one case", MAX_HELD);
    if (e->nheld < MAX_HELD)
        e->held[e->nheld++] = t;
    return t;
}

/* End of a case: free what it held, release its arena scratch. */
static void release(env *e, size_t mark)
{
    while (e->nheld > 0)
        e->gpu->ops->tensor_free(e->gpu, &e->held[--e->nheld]);
    e->gpu->ops->reset(e->gpu, mark);
}

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

/* The host values uploaded from a host tensor of dtype dt (a float weight
 * arrives as bf16), held until the case ends. */
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
    return hold(e, d);
}

/* The host values in a device tensor of exactly dtype dt (tensor_new +
 * write): how activations with given values and f32 device data (a
 * matmul's b, W8A8 scales) are made. */
static td_tensor to_dev(env *e, const td_tensor *h, td_dtype dt)
{
    td_tensor d = { 0 };
    int rc = e->gpu->ops->tensor_new(e->gpu, &d, dt, h->ndim, h->shape);
    CHECK(rc == 0, "tensor_new: %s", e->ctx.errmsg);
    if (rc == 0) {
        rc = e->gpu->ops->write(e->gpu, &d, h);
        CHECK(rc == 0, "write: %s", e->ctx.errmsg);
    }
    return hold(e, d);
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
            /* the FFN's GELU in cuBLASLt's epilogue (or after the bias kernel) */
            OK(e->cpu->ops->linear_gelu_tanh(e->cpu, &x, &w, &b, &y), "cpu linear_gelu_tanh");
            OK(e->gpu->ops->linear_gelu_tanh(e->gpu, &gx, &gw, &gb, &gy), "cuda linear_gelu_tanh");
            snprintf(what, sizeof(what), "linear+gelu %s M=%lld K=%lld N=%lld", f32w ? "f32 w" : "bf16 w",
                     (long long)m, (long long)k, (long long)n);
            compare(e, what, &gy, &y);
            OK(e->cpu->ops->linear_gelu_tanh(e->cpu, &x, &w, NULL, &y), "cpu linear_gelu_tanh");
            OK(e->gpu->ops->linear_gelu_tanh(e->gpu, &gx, &gw, NULL, &gy), "cuda linear_gelu_tanh");
            snprintf(what, sizeof(what), "linear+gelu, no bias, M=%lld K=%lld N=%lld", (long long)m, (long long)k,
                     (long long)n);
            compare(e, what, &gy, &y);
            td_tensor_free(&x), td_tensor_free(&w), td_tensor_free(&b), td_tensor_free(&y);
            release(e, mark);
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
            td_tensor gx = to_gpu(e, &x, TD_BF16), gw, gs = to_dev(e, &sc, TD_F32), gb = to_gpu(e, &b, TD_F32);
            OK(e->gpu->ops->upload(e->gpu, &wq, &gw), "upload wq");
            hold(e, gw);
            CHECK(gw.dtype == TD_I8, "upload changed the int8 weight's dtype to %d", (int)gw.dtype);
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
        release(e, mark);
    }
}

/* matmul, CUDA vs CPU: one matrix and batches, b per batch or shared, both
 * layouts of b, alpha and beta (y is read), b a bf16 activation or an f32
 * device tensor (narrowed by the op); then attention's strided views. */
static void test_matmul(env *e)
{
    static const int64_t sz[][5] = { /* B, b's B, M, N, K */
        { 1, 1, 1, 1, 1 }, { 1, 1, 33, 17, 65 }, { 4, 4, 37, 40, 64 }, { 3, 1, 128, 96, 200 },
    };
    for (size_t i = 0; i < sizeof(sz) / sizeof(sz[0]); i++)
        for (int t = 0; t < 4; t++) {
            int tb = t & 1, bf32 = t >> 1;
            int64_t nbt = sz[i][0], bbt = sz[i][1], m = sz[i][2], n = sz[i][3], k = sz[i][4];
            int64_t as[3] = { nbt, m, k }, bs[3] = { bbt, tb ? n : k, tb ? k : n }, ys[3] = { nbt, m, n };
            int ra = nbt > 1 ? 3 : 2, rb = bbt > 1 ? 3 : 2;
            size_t mark = e->gpu->ops->mark(e->gpu);
            td_tensor a = host_rand(e, ra, as + 3 - ra, 1.0f), b = host_rand(e, rb, bs + 3 - rb, 1.0f);
            td_tensor y = host_rand(e, ra, ys + 3 - ra, 1.0f);
            td_tensor ga = to_dev(e, &a, TD_BF16), gb = to_dev(e, &b, bf32 ? TD_F32 : TD_BF16);
            td_tensor gy = to_dev(e, &y, TD_BF16);
            char what[96];
            OK(e->cpu->ops->matmul(e->cpu, &a, &b, tb, 0.5f, 2.0f, &y), "cpu matmul");
            OK(e->gpu->ops->matmul(e->gpu, &ga, &gb, tb, 0.5f, 2.0f, &gy), "cuda matmul");
            snprintf(what, sizeof(what), "matmul %s b%s B=%lld/%lld M=%lld N=%lld K=%lld", bf32 ? "f32" : "bf16",
                     tb ? "^T" : "", (long long)nbt, (long long)bbt, (long long)m, (long long)n, (long long)k);
            compare(e, what, &gy, &y);
            td_tensor_free(&a), td_tensor_free(&b), td_tensor_free(&y);
            release(e, mark);
        }
}

/* Heads [H, S, D] of the row-major [S, .] tensor t from column off: head
 * stride D, t's row stride. */
static td_tensor heads(const td_tensor *t, int64_t off, int64_t h, int64_t d)
{
    td_tensor v = td_view3((char *)t->data + (size_t)off * td_dtype_size(t->dtype), t->dtype, h, t->shape[0], d);
    v.stride[0] = d;
    v.stride[1] = t->stride[0];
    return v;
}

/* q k^T on heads of a fused [S, 3HD] projection, then p v into heads
 * interleaved in [S, HD]: the strided layouts attention uses. */
static void test_matmul_views(env *e)
{
    int64_t s = 77, h = 4, d = 64, fs[2] = { s, 3 * h * d }, ps[3] = { h, s, s }, os[2] = { s, h * d };
    size_t mark = e->gpu->ops->mark(e->gpu);
    td_tensor qkv = host_rand(e, 2, fs, 1.0f), p = host_zero(e, 3, ps), o = host_zero(e, 2, os);
    td_tensor gqkv = to_dev(e, &qkv, TD_BF16), gp = gpu_out(e, 3, ps), go = gpu_out(e, 2, os);
    td_tensor q = heads(&qkv, 0, h, d), k = heads(&qkv, h * d, h, d), v = heads(&qkv, 2 * h * d, h, d);
    td_tensor gq = heads(&gqkv, 0, h, d), gk = heads(&gqkv, h * d, h, d), gv = heads(&gqkv, 2 * h * d, h, d);
    td_tensor ov = heads(&o, 0, h, d), gov = heads(&go, 0, h, d);
    OK(e->cpu->ops->matmul(e->cpu, &q, &k, 1, 0.125f, 0.0f, &p), "cpu q k^T");
    OK(e->gpu->ops->matmul(e->gpu, &gq, &gk, 1, 0.125f, 0.0f, &gp), "cuda q k^T");
    compare(e, "matmul q k^T on fused qkv heads", &gp, &p);
    OK(e->cpu->ops->matmul(e->cpu, &p, &v, 0, 1.0f, 0.0f, &ov), "cpu p v");
    OK(e->gpu->ops->matmul(e->gpu, &gp, &gv, 0, 1.0f, 0.0f, &gov), "cuda p v");
    compare(e, "matmul p v into interleaved heads", &go, &o);
    td_tensor_free(&qkv), td_tensor_free(&p), td_tensor_free(&o);
    release(e, mark);
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
        release(e, mark);
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
        release(e, mark);
    }
}

static void test_attention(env *e)
{
    /* sq, sk, heads, d, dv, kv_len, bias */
    static const int64_t sz[][7] = { { 1, 1, 1, 64, 64, 0, 0 },     { 77, 130, 3, 64, 64, 0, 0 },
                                     { 100, 200, 2, 128, 128, 150, 0 }, { 33, 45, 4, 64, 64, 0, 1 },
                                     { 300, 512, 2, 128, 128, 0, 0 },  { 17, 70, 2, 64, 64, 65, 1 },
                                     { 100, 300, 1, 384, 384, 0, 0 },  { 50, 90, 2, 256, 192, 70, 1 },
                                     { 9, 40, 1, 512, 512, 0, 1 } };
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
        release(e, mark);
    }
}

#ifdef TD_HAVE_CUDNN
/* Geometries cuDNN has taken: plans holding algorithms (cuda_conv3d.c). */
static int cudnn_plans(env *e)
{
    td_cuda *c = td_cuda_of(e->gpu);
    int n = 0;
    for (int i = 0; i < c->conv_nplans; i++)
        n += c->conv_plans[i].n > 0;
    return n;
}
#endif

/* Every case on each conv3d path the backend has (cuDNN, with im2col for
 * the frames whose windows reach into the time padding, and im2col alone),
 * into an output filled with NaN first so a frame neither path wrote shows.
 * Cases without time padding are wholly cuDNN's: it must take them. */
static void test_conv3d(env *e)
{
    /* ci, t, h, w, co, kt, kh, kw, stride t/h/w, pad front/back/h/w */
    static const int sz[][15] = { { 3, 5, 9, 11, 8, 3, 3, 3, 1, 1, 1, 2, 0, 1, 1 },    /* causal, first chunk */
                                  { 16, 4, 8, 8, 5, 1, 3, 3, 1, 2, 2, 0, 0, 1, 1 },
                                  { 4, 3, 6, 7, 6, 3, 1, 1, 2, 1, 1, 2, 0, 0, 0 },
                                  { 32, 2, 20, 30, 24, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1 }, /* no interior */
                                  { 8, 4, 6, 6, 4, 3, 3, 3, 1, 1, 1, 0, 2, 1, 1 },    /* back padding */
                                  { 32, 3, 12, 16, 16, 3, 3, 3, 1, 1, 1, 0, 0, 1, 1 }, /* causal, cache full */
                                  { 24, 4, 10, 12, 8, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0 },  /* 1x1x1 */
                                  { 16, 5, 8, 8, 16, 3, 1, 1, 2, 1, 1, 0, 0, 0, 0 },   /* time downsample */
                                  { 8, 5, 4, 6, 8, 3, 3, 3, 2, 1, 1, 1, 0, 1, 1 },    /* views from frame 1 */
                                  { 8, 5, 5, 7, 8, 3, 3, 3, 2, 1, 1, 1, 0, 1, 1 } };   /* views off 16 bytes */
    td_cuda *c = td_cuda_of(e->gpu);
    td_cuda_conv_path best = c->conv_path;
#ifdef TD_HAVE_CUDNN
    size_t v = cudnnGetVersion();
    const char *why = "did not start (see the backend's warning)";
    printf("conv3d: cuDNN %zu.%zu.%zu loaded, built against %d.%d.%d\n", v / 10000, v / 100 % 100, v % 100,
           CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL);
#else
    const char *why = "not built in (TD_CUDNN=OFF or not found)";
#endif

    if (best == TD_CUDA_CONV_IM2COL)
        printf("conv3d: cuDNN %s: im2col only\n", why);
    for (size_t i = 0; i < sizeof(sz) / sizeof(sz[0]); i++) {
        const int *z = sz[i];
        td_conv3d_params p = { { z[8], z[9], z[10] }, z[11], z[12], z[13], z[14] };
        int64_t xs[4] = { z[0], z[1], z[2], z[3] }, ws[5] = { z[4], z[0], z[5], z[6], z[7] }, co = z[4];
        int64_t ys[4] = { co, (z[1] + z[11] + z[12] - z[5]) / z[8] + 1, (z[2] + 2 * z[13] - z[6]) / z[9] + 1,
                          (z[3] + 2 * z[14] - z[7]) / z[10] + 1 };
        size_t mark = e->gpu->ops->mark(e->gpu);
        td_tensor x = host_rand(e, 4, xs, 1.0f), w = host_rand(e, 5, ws, 0.2f), b = host_rand(e, 1, &co, 1.0f);
        td_tensor y = host_zero(e, 4, ys), gx = to_gpu(e, &x, TD_BF16), gw = to_gpu(e, &w, i % 2 ? TD_F32 : TD_BF16);
        td_tensor gb = to_gpu(e, &b, TD_F32);
        OK(e->cpu->ops->conv3d(e->cpu, &x, &w, &b, &p, &y), "cpu conv3d");
        for (td_cuda_conv_path path = best;; path = TD_CUDA_CONV_IM2COL) {
            td_tensor gy = gpu_out(e, 4, ys);
            char what[128];
#ifdef TD_HAVE_CUDNN
            int before = cudnn_plans(e), took;
#endif
            c->conv_path = path;
            OK(e->gpu->ops->fill(e->gpu, &gy, NAN), "fill y with NaN");
            OK(e->gpu->ops->conv3d(e->gpu, &gx, &gw, &gb, &p, &gy), "cuda conv3d");
            snprintf(what, sizeof(what), "conv3d %s x [%d,%d,%d,%d] w [%d,%d,%d,%d,%d] s %d,%d,%d p %d+%d",
                     path == TD_CUDA_CONV_CUDNN ? "cudnn" : "im2col", z[0], z[1], z[2], z[3], z[4], z[0], z[5],
                     z[6], z[7], z[8], z[9], z[10], z[11], z[12]);
            compare(e, what, &gy, &y);
#ifdef TD_HAVE_CUDNN
            took = cudnn_plans(e) > before;
            if (path == TD_CUDA_CONV_CUDNN) {
                printf("  %s: interior frames %s\n", what, took ? "by cuDNN" : "by im2col (cuDNN declined or none)");
                CHECK(took || z[11] + z[12] > 0, "%s: cuDNN declined a conv without time padding", what);
            }
#endif
            if (path == TD_CUDA_CONV_IM2COL)
                break;
        }
        c->conv_path = best;
        td_tensor_free(&x), td_tensor_free(&w), td_tensor_free(&b), td_tensor_free(&y);
        release(e, mark);
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
        release(e, mark);
    }
}

/* Keys 0..63 masked by a -inf bias for every query: each row's first key
 * tile is fully masked. The reference is the CPU on the other keys alone
 * (moved to the front, the masked ones cut off by kv_len). */
static void test_attention_masked_tile(env *e)
{
    const int64_t sq = 40, sk = 200, h = 2, d = 64, cut = 64, kept = sk - cut;
    int64_t qs[3] = { sq, h, d }, ks[3] = { sk, h, d }, os[3] = { sq, h, d }, bs[3] = { h, sq, sk };
    size_t mark = e->gpu->ops->mark(e->gpu);
    td_tensor q = host_rand(e, 3, qs, 2.0f), k = host_rand(e, 3, ks, 2.0f), v = host_rand(e, 3, ks, 1.0f);
    td_tensor b = host_rand(e, 3, bs, 1.0f), k2 = host_zero(e, 3, ks), v2 = host_zero(e, 3, ks);
    td_tensor b2 = host_zero(e, 3, bs), o = host_zero(e, 3, os);
    float *bp = b.data, *b2p = b2.data;
    for (int64_t j = 0; j < sk; j++) {
        int64_t from = (j + cut) % sk;   /* kept keys first */
        memcpy((float *)k2.data + j * h * d, (float *)k.data + from * h * d, sizeof(float) * (size_t)(h * d));
        memcpy((float *)v2.data + j * h * d, (float *)v.data + from * h * d, sizeof(float) * (size_t)(h * d));
    }
    for (int64_t r = 0; r < h * sq; r++)
        for (int64_t j = 0; j < sk; j++) {
            b2p[r * sk + j] = j < kept ? bp[r * sk + j + cut] : 0.0f;
            if (j < cut)
                bp[r * sk + j] = -INFINITY;
        }
    {
        td_tensor gq = to_gpu(e, &q, TD_BF16), gk = to_gpu(e, &k, TD_BF16), gv = to_gpu(e, &v, TD_BF16);
        td_tensor gb = to_dev(e, &b, TD_F32), go = gpu_out(e, 3, os);
        OK(e->cpu->ops->attention(e->cpu, &q, &k2, &v2, &b2, 0.125f, kept, &o), "cpu attention");
        OK(e->gpu->ops->attention(e->gpu, &gq, &gk, &gv, &gb, 0.125f, 0, &go), "cuda attention");
        compare(e, "attention, first key tile masked by -inf", &go, &o);
    }
    td_tensor_free(&q), td_tensor_free(&k), td_tensor_free(&v), td_tensor_free(&b), td_tensor_free(&k2);
    td_tensor_free(&v2), td_tensor_free(&b2), td_tensor_free(&o);
    release(e, mark);
}

/* NaN scores in SLA's block map must not write past a row of the map:
 * memcheck (tools/gpu/first_run.sh) sees such a write; here the op must
 * just succeed. */
static void test_sla_nan(env *e)
{
    int64_t s3[3] = { 512, 2, 64 }, ws[2] = { 64, 64 };
    size_t mark = e->gpu->ops->mark(e->gpu);
    td_tensor q = host_rand(e, 3, s3, 1.0f), w = host_rand(e, 2, ws, 0.2f);
    for (int64_t i = 0; i < 64 * 2 * 64; i += 7)
        ((float *)q.data)[i] = NAN;
    {
        td_tensor gq = to_gpu(e, &q, TD_BF16), gw = to_gpu(e, &w, TD_F32), go = gpu_out(e, 3, s3);
        OK(e->gpu->ops->sla_attention(e->gpu, &gq, &gq, &gq, &gw, NULL, 64, 64, 0.25, &go), "cuda sla with NaN");
        OK(e->gpu->ops->read(e->gpu, &go, &q), "read");
    }
    printf("%-44s ran\n", "sla with NaN scores");
    td_tensor_free(&q), td_tensor_free(&w);
    release(e, mark);
}

/* Bits of a host tensor as bf16 / f16 (what a device tensor of that dtype holds). */
static int same_values(const td_tensor *a, const td_tensor *b)
{
    for (int64_t i = 0; i < td_numel(a); i++)
        if (((const float *)a->data)[i] != ((const float *)b->data)[i])
            return 0;
    return 1;
}

/* write from host f32/f16/i32 into bf16 and f32 device tensors, contiguous
 * and through a permuted view; read back into f32, bf16 and f16 hosts;
 * copy with a transpose, dtype change and accumulate; fill of a strided
 * slice; tensor_new/tensor_free in any order. Every value is bf16-exact, so
 * each must come back bit for bit. */
static void test_transfers(env *e)
{
    int64_t s3[3] = { 5, 7, 33 }, p3[3] = { 33, 5, 7 };
    size_t mark = e->gpu->ops->mark(e->gpu);
    td_tensor x = host_rand(e, 3, s3, 4.0f), back = host_zero(e, 3, s3), ref = host_zero(e, 3, s3);
    td_tensor h16, i32, dev[3];
    int rc;

    for (int i = 0; i < 3; i++) {   /* freed below out of allocation order */
        OK(e->gpu->ops->tensor_new(e->gpu, &dev[i], i == 1 ? TD_F32 : TD_BF16, 3, s3), "tensor_new");
        CHECK(dev[i].owns == TD_OWNS_BACKEND, "tensor_new owns %d", dev[i].owns);
    }
    /* host f32 -> device bf16 and f32 (contiguous), back to f32 */
    OK(e->gpu->ops->write(e->gpu, &dev[0], &x), "write f32 -> bf16");
    OK(e->gpu->ops->read(e->gpu, &dev[0], &back), "read bf16 -> f32");
    CHECK(same_values(&back, &x), "write/read bf16 changed values");
    OK(e->gpu->ops->write(e->gpu, &dev[1], &x), "write f32 -> f32");
    OK(e->gpu->ops->read(e->gpu, &dev[1], &back), "read f32 -> f32");
    CHECK(same_values(&back, &x), "write/read f32 changed values");
    /* host f16 -> device through a permuted view: dev[2] viewed as [33, 5, 7] */
    OK(td_tensor_new(&e->ctx, &h16, TD_F16, 3, p3), "host f16");
    {
        td_tensor xp = host_zero(e, 3, p3), pv = dev[2];
        for (int64_t a = 0; a < 5; a++)
            for (int64_t b = 0; b < 7; b++)
                for (int64_t c = 0; c < 33; c++)
                    ((float *)xp.data)[(c * 5 + a) * 7 + b] = ((float *)x.data)[(a * 7 + b) * 33 + c];
        OK(td_tensor_copy(&e->ctx, &h16, &xp), "to f16");
        pv.ndim = 3;
        pv.shape[0] = 33, pv.shape[1] = 5, pv.shape[2] = 7;
        pv.stride[0] = 1, pv.stride[1] = 7 * 33, pv.stride[2] = 33;
        OK(e->gpu->ops->write(e->gpu, &pv, &h16), "write f16 -> strided bf16");
        td_tensor_free(&xp);
    }
    /* values bf16-exact but not all f16-exact: the reference is x through f16 */
    td_tensor_free(&h16);
    {
        td_tensor x16;
        OK(td_tensor_new(&e->ctx, &x16, TD_F16, 3, s3), "x16");
        OK(td_tensor_copy(&e->ctx, &x16, &x), "x16 copy");
        OK(td_tensor_copy(&e->ctx, &ref, &x16), "ref from f16");
        for (int64_t i = 0; i < td_numel(&ref); i++)   /* then to bf16, as the device stores it */
            ((float *)ref.data)[i] = td_bf16_to_f32(td_f32_to_bf16(((float *)ref.data)[i]));
        td_tensor_free(&x16);
    }
    OK(e->gpu->ops->read(e->gpu, &dev[2], &back), "read strided-written");
    CHECK(same_values(&back, &ref), "write through a permuted view misplaced values");
    printf("%-44s exact\n", "write/read f32, bf16, f16 (permuted)");
    /* read a permuted view of dev[0] into host bf16 and f16 */
    {
        td_tensor pv = dev[0], hb, hp = host_zero(e, 3, p3), want = host_zero(e, 3, p3);
        pv.shape[0] = 33, pv.shape[1] = 5, pv.shape[2] = 7;
        pv.stride[0] = 1, pv.stride[1] = 7 * 33, pv.stride[2] = 33;
        for (int64_t a = 0; a < 5; a++)
            for (int64_t b = 0; b < 7; b++)
                for (int64_t c = 0; c < 33; c++)
                    ((float *)want.data)[(c * 5 + a) * 7 + b] = ((float *)x.data)[(a * 7 + b) * 33 + c];
        OK(td_tensor_new(&e->ctx, &hb, TD_BF16, 3, p3), "host bf16");
        OK(e->gpu->ops->read(e->gpu, &pv, &hb), "read permuted -> bf16");
        OK(td_tensor_copy(&e->ctx, &hp, &hb), "bf16 to f32");
        CHECK(same_values(&hp, &want), "read of a permuted view misplaced values");
        /* copy: dev[1] (f32) += permuted dev[0] back into [5, 7, 33] order, twice */
        {
            td_tensor pp = pv, d1 = dev[1], got = host_zero(e, 3, s3);
            pp.shape[0] = 5, pp.shape[1] = 7, pp.shape[2] = 33;   /* the view back in x's order */
            pp.stride[0] = 7 * 33, pp.stride[1] = 33, pp.stride[2] = 1;
            OK(e->gpu->ops->copy(e->gpu, &d1, &pp, 1), "copy accumulate");
            OK(e->gpu->ops->read(e->gpu, &d1, &got), "read");
            for (int64_t i = 0; i < td_numel(&x); i++)
                ((float *)ref.data)[i] = 2.0f * ((float *)x.data)[i];
            CHECK(same_values(&got, &ref), "copy accumulate: wrong sums");
            /* transpose copy f32 -> bf16 of the [33, 5, 7] permuted view */
            {
                td_tensor t16, tb = host_zero(e, 3, p3);
                OK(e->gpu->ops->tensor_new(e->gpu, &t16, TD_BF16, 3, p3), "tensor_new");
                OK(e->gpu->ops->copy(e->gpu, &t16, &pv, 0), "copy transpose");
                OK(e->gpu->ops->read(e->gpu, &t16, &tb), "read");
                CHECK(same_values(&tb, &want), "copy of a permuted view misplaced values");
                e->gpu->ops->tensor_free(e->gpu, &t16);
                CHECK(t16.data == NULL && t16.owns == 0, "tensor_free left the tensor set");
                td_tensor_free(&tb);
            }
            td_tensor_free(&got);
        }
        td_tensor_free(&hb), td_tensor_free(&hp), td_tensor_free(&want);
    }
    printf("%-44s exact\n", "read permuted, copy transpose/accumulate");
    /* fill every other row of dev[0] (a strided view), the rest untouched */
    {
        td_tensor rows = dev[0], got = host_zero(e, 3, s3);
        rows.shape[1] = 4;
        rows.stride[1] = 2 * 33;
        OK(e->gpu->ops->fill(e->gpu, &rows, -3.5f), "fill strided");
        OK(e->gpu->ops->read(e->gpu, &dev[0], &got), "read");
        for (int64_t a = 0; a < 5; a++)
            for (int64_t b = 0; b < 7; b++)
                for (int64_t c = 0; c < 33; c++) {
                    int64_t i = (a * 7 + b) * 33 + c;
                    ((float *)ref.data)[i] = b % 2 == 0 ? -3.5f : ((float *)x.data)[i];
                }
        CHECK(same_values(&got, &ref), "fill of a strided view wrote the wrong elements");
        td_tensor_free(&got);
    }
    printf("%-44s exact\n", "fill strided");
    /* an integer table keeps its dtype through write */
    {
        int64_t n = 10;
        td_tensor di, back_i;
        OK(td_tensor_new(&e->ctx, &i32, TD_I32, 1, &n), "host i32");
        OK(td_tensor_new(&e->ctx, &back_i, TD_F32, 1, &n), "back");
        for (int i = 0; i < 10; i++)
            ((int32_t *)i32.data)[i] = 3 * i - 7;
        OK(e->gpu->ops->tensor_new(e->gpu, &di, TD_F32, 1, &n), "tensor_new f32");
        OK(e->gpu->ops->write(e->gpu, &di, &i32), "write i32 -> f32");
        OK(e->gpu->ops->read(e->gpu, &di, &back_i), "read");
        for (int i = 0; i < 10; i++)
            CHECK(((float *)back_i.data)[i] == (float)(3 * i - 7), "i32 -> f32 write: [%d] = %g", i,
                  ((float *)back_i.data)[i]);
        e->gpu->ops->tensor_free(e->gpu, &di);
        td_tensor_free(&i32), td_tensor_free(&back_i);
    }
    e->gpu->ops->tensor_free(e->gpu, &dev[1]);
    e->gpu->ops->tensor_free(e->gpu, &dev[0]);
    e->gpu->ops->tensor_free(e->gpu, &dev[2]);
    td_ctx_clear(&e->ctx);
    rc = e->gpu->ops->write(e->gpu, &dev[0], &x);
    CHECK(rc == TD_ESHAPE, "write into a freed (zeroed) tensor: %d", rc);
    td_tensor_free(&x), td_tensor_free(&back), td_tensor_free(&ref);
    release(e, mark);
}

/* clamp, scale_shift, embed, rel_pos_bias against the CPU. */
static void test_small_ops(env *e)
{
    static const int64_t sz[][2] = { { 1, 1 }, { 16, 300 }, { 96, 1037 } };
    for (size_t i = 0; i < sizeof(sz) / sizeof(sz[0]); i++) {
        int64_t c = sz[i][0], n = sz[i][1], s[2] = { c, n };
        size_t mark = e->gpu->ops->mark(e->gpu);
        td_tensor x = host_rand(e, 2, s, 3.0f), sc = host_rand(e, 1, &c, 2.0f), sh = host_rand(e, 1, &c, 1.0f);
        td_tensor y = host_zero(e, 2, s), gx = to_gpu(e, &x, TD_BF16), gsc = to_dev(e, &sc, TD_F32);
        td_tensor gsh = to_gpu(e, &sh, TD_F32), gy = gpu_out(e, 2, s);
        char what[96];
        OK(e->cpu->ops->clamp(e->cpu, &x, -1.0f, 2.0f, &y), "cpu clamp");
        OK(e->gpu->ops->clamp(e->gpu, &gx, -1.0f, 2.0f, &gy), "cuda clamp");
        snprintf(what, sizeof(what), "clamp [%lld, %lld]", (long long)c, (long long)n);
        compare(e, what, &gy, &y);
        OK(e->cpu->ops->scale_shift(e->cpu, &x, &sc, &sh, &y), "cpu scale_shift");
        OK(e->gpu->ops->scale_shift(e->gpu, &gx, &gsc, &gsh, &gy), "cuda scale_shift");
        snprintf(what, sizeof(what), "scale_shift [%lld, %lld]", (long long)c, (long long)n);
        compare(e, what, &gy, &y);
        td_tensor_free(&x), td_tensor_free(&sc), td_tensor_free(&sh), td_tensor_free(&y);
        release(e, mark);
    }
    {
        int64_t ts[2] = { 1000, 96 }, ys[2] = { 77, 96 }, n = 77;
        int32_t ids[77];
        size_t mark = e->gpu->ops->mark(e->gpu);
        td_tensor table = host_rand(e, 2, ts, 1.0f), y = host_zero(e, 2, ys);
        td_tensor gt = to_gpu(e, &table, TD_F32), gy = gpu_out(e, 2, ys);
        for (int64_t i = 0; i < n; i++)
            ids[i] = (int32_t)(test_next(&e->rng) % 1000);
        ids[0] = 999, ids[1] = 0;
        OK(e->cpu->ops->embed(e->cpu, &table, ids, n, &y), "cpu embed");
        OK(e->gpu->ops->embed(e->gpu, &gt, ids, n, &gy), "cuda embed");
        compare(e, "embed 77 of [1000, 96]", &gy, &y);
        td_tensor_free(&table), td_tensor_free(&y);
        release(e, mark);
    }
    {
        int64_t n = 57, heads = 6, ts[2] = { 32, heads }, ys[3] = { heads, n, n };
        int32_t bucket[2 * 57 - 1];
        size_t mark = e->gpu->ops->mark(e->gpu);
        td_tensor table = host_rand(e, 2, ts, 1.0f), y = host_zero(e, 3, ys);
        td_tensor gt = to_gpu(e, &table, TD_BF16), gy = gpu_out(e, 3, ys);
        for (int64_t i = 0; i < 2 * n - 1; i++)
            bucket[i] = (int32_t)(test_next(&e->rng) % 32);
        OK(e->cpu->ops->rel_pos_bias(e->cpu, &table, bucket, &y), "cpu rel_pos_bias");
        OK(e->gpu->ops->rel_pos_bias(e->gpu, &gt, bucket, &gy), "cuda rel_pos_bias");
        compare(e, "rel_pos_bias [6, 57, 57] of 32 buckets", &gy, &y);
        td_tensor_free(&table), td_tensor_free(&y);
        release(e, mark);
    }
}

/* Unsupported shapes say so by name; a full arena names the sizes. */
static void test_errors(env *e)
{
    int64_t s3[3] = { 4, 2, 64 }, big = (int64_t)(ARENA / 2) + 1;
    size_t mark = e->gpu->ops->mark(e->gpu);
    td_tensor t = gpu_out(e, 3, s3), huge;
    int rc;

    int64_t s3o[3] = { 4, 2, 514 };
    td_tensor odd = gpu_out(e, 3, s3o);
    td_ctx_clear(&e->ctx);
    rc = e->gpu->ops->attention(e->gpu, &odd, &odd, &odd, NULL, 1.0f, 0, &odd);
    CHECK(rc == TD_EUNSUPPORTED && strstr(e->ctx.errmsg, "attention"), "head dim 514: %d %s", rc, e->ctx.errmsg);
    {
        int32_t ids[2] = { 0, 9 };
        int64_t ts[2] = { 4, 64 }, ys[2] = { 2, 64 };
        td_tensor table = gpu_out(e, 2, ts), y = gpu_out(e, 2, ys);
        td_ctx_clear(&e->ctx);
        rc = e->gpu->ops->embed(e->gpu, &table, ids, 2, &y);
        CHECK(rc == TD_EINVAL && strstr(e->ctx.errmsg, "position 1"), "embed id 9 of 4: %d %s", rc,
              e->ctx.errmsg);
    }
    td_ctx_clear(&e->ctx);
    rc = e->gpu->ops->alloc(e->gpu, &huge, TD_F32, 1, &big);
    CHECK(rc == TD_ENOMEM && strstr(e->ctx.errmsg, "bytes"), "arena full: %d %s", rc, e->ctx.errmsg);
    td_ctx_clear(&e->ctx);
    rc = e->gpu->ops->silu(e->gpu, &t, &(td_tensor){ .dtype = TD_F32, .ndim = 3, .shape = { 4, 2, 64 },
                                                     .stride = { 128, 64, 1 }, .data = t.data });
    CHECK(rc == TD_EINVAL && strstr(e->ctx.errmsg, "bf16"), "f32 activation: %d %s", rc, e->ctx.errmsg);
    td_ctx_clear(&e->ctx);
    rc = e->gpu->ops->matmul(e->gpu, &(td_tensor){ .dtype = TD_F32, .ndim = 2, .shape = { 8, 64 },
                                                   .stride = { 64, 1 }, .data = t.data }, &t, 1, 1.0f, 0.0f, &t);
    CHECK(rc == TD_EINVAL && strstr(e->ctx.errmsg, "matmul: a"), "f32 matmul a: %d %s", rc, e->ctx.errmsg);
    release(e, mark);
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
        test_matmul(&e);
        test_matmul_views(&e);
        test_rows(&e);
        test_rope_upsample_crms(&e);
        test_transfers(&e);
        test_small_ops(&e);
        test_attention(&e);
        test_attention_masked_tile(&e);
        test_sla_nan(&e);
        test_conv3d(&e);
        test_sla(&e);
        test_errors(&e);
    }
    td_backend_destroy(&e.gpu);
    td_backend_destroy(&e.cpu);
    return check_summary();
}
