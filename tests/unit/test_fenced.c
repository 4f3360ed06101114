/*
 * The fenced backend (tests/support): (a) every op of the table on its f32
 * variant equals the CPU backend bit for bit on seeded random inputs; (b)
 * its bf16 variant is within the bf16 bar (rel L2 < 1e-2) of the CPU; (c) a
 * host access to fenced memory outside an op kills the process with exit
 * status 3 and a message naming the allocation and the last op; (d) an op
 * given host, freed or reset memory fails with TD_EINVAL naming the op and
 * the argument. Each case builds its inputs through the backend's own
 * memory ops (tensor_new + write, upload), so the CPU run and the fenced
 * run see the same values.
 */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif

#include "fenced_backend.h"
#include "ops_common.h"

#define MAXT 24

/* One case run on one backend: its inputs, and what to free afterwards. */
typedef struct cx {
    td_ctx *ctx;
    td_backend *be;
    test_rng r;
    int round;                 /* inputs rounded to bf16 (the bf16 comparison) */
    td_tensor host[MAXT];      /* kept alive: CPU uploads are views of them */
    td_tensor dev[MAXT];
    int nh, nd;
} cx;

static void must(cx *c, int rc, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "%s on %s: %s\n", what, c->be->ops->name, c->ctx->errmsg);
        exit(1);
    }
}

static td_tensor *host_rand(cx *c, td_dtype dt, int ndim, const int64_t *shape, float amp)
{
    td_tensor f, *h = &c->host[c->nh++];
    must(c, td_tensor_new(c->ctx, &f, TD_F32, ndim, shape), "host tensor");
    for (int64_t i = 0; i < td_numel(&f); i++) {
        float v = amp * test_uniform(&c->r);
        ((float *)f.data)[i] = c->round ? td_bf16_to_f32(td_f32_to_bf16(v)) : v;
    }
    must(c, td_tensor_new(c->ctx, h, dt, ndim, shape), "host tensor");
    must(c, td_tensor_copy(c->ctx, h, &f), "host copy");
    td_tensor_free(&f);
    return h;
}

static td_tensor *dev_new(cx *c, td_dtype dt, int ndim, const int64_t *shape)
{
    td_tensor *t = &c->dev[c->nd++];
    must(c, c->be->ops->tensor_new(c->be, t, dt, ndim, shape), "tensor_new");
    return t;
}

/* A random activation in the backend's dtype (dt_f32: an f32 tensor). */
static td_tensor *act_as(cx *c, int f32, int ndim, const int64_t *shape, float amp)
{
    td_tensor *t = dev_new(c, f32 ? TD_F32 : c->be->act, ndim, shape);
    must(c, c->be->ops->write(c->be, t, host_rand(c, TD_F32, ndim, shape, amp)), "write");
    return t;
}

static td_tensor *act(cx *c, int ndim, const int64_t *shape, float amp)
{
    return act_as(c, 0, ndim, shape, amp);
}

static td_tensor *upload(cx *c, const td_tensor *h)
{
    td_tensor *t = &c->dev[c->nd++];
    must(c, c->be->ops->upload(c->be, h, t), "upload");
    return t;
}

static td_tensor *weight(cx *c, td_dtype dt, int ndim, const int64_t *shape, float amp)
{
    return upload(c, host_rand(c, dt, ndim, shape, amp));
}

static td_tensor *out(cx *c, int ndim, const int64_t *shape)
{
    return dev_new(c, c->be->act, ndim, shape);
}

#define S(...) (const int64_t[]){ __VA_ARGS__ }
#define RUN(call) must(c, (call), #call)
#define OPS (c->be->ops)
#define BE (c->be)

static td_tensor *case_linear_f32w(cx *c)
{
    td_tensor *x = act(c, 2, S(37, 64), 1), *w = weight(c, TD_F32, 2, S(48, 64), 0.2f);
    td_tensor *b = weight(c, TD_F32, 1, S(48), 1), *y = out(c, 2, S(37, 48));
    RUN(OPS->linear(BE, x, w, b, y));
    return y;
}

static td_tensor *case_linear_bf16w(cx *c)
{
    td_tensor *x = act(c, 3, S(2, 9, 40), 1), *w = weight(c, TD_BF16, 2, S(24, 40), 0.2f);
    td_tensor *y = out(c, 3, S(2, 9, 24));
    RUN(OPS->linear(BE, x, w, NULL, y));
    return y;
}

static td_tensor *case_w8a8(cx *c)
{
    int64_t n = 136, k = 256;
    td_tensor *hs = host_rand(c, TD_F32, 2, S(2, 2), 0.01f), *hq = &c->host[c->nh++];
    td_tensor *x = act(c, 2, S(130, k), 3), *b = weight(c, TD_F32, 1, S(n), 1), *y = out(c, 2, S(130, n));
    for (int i = 0; i < 4; i++)
        ((float *)hs->data)[i] = fabsf(((float *)hs->data)[i]) + 1e-3f;
    must(c, td_tensor_new(c->ctx, hq, TD_I8, 2, S(n, k)), "wq");
    for (int64_t i = 0; i < n * k; i++)
        ((int8_t *)hq->data)[i] = (int8_t)(test_next(&c->r) % 255 - 127);
    RUN(OPS->linear_w8a8(BE, x, upload(c, hq), upload(c, hs), b, y));
    return y;
}

/* Attention done as two matmuls on views: q k^T from heads of a fused
 * [S, 3HD] projection (b an activation), then p v into heads interleaved
 * in [S, HD]. */
static td_tensor *case_matmul_heads(cx *c)
{
    int64_t s = 33, h = 3, d = 16;
    size_t es = td_dtype_size(BE->act);
    td_tensor *qkv = act(c, 2, S(s, 3 * h * d), 1), *p = out(c, 3, S(h, s, s)), *o = out(c, 2, S(s, h * d));
    td_tensor v[3], ov = td_view3(o->data, o->dtype, h, s, d);
    for (int i = 0; i < 3; i++) {
        v[i] = td_view3((char *)qkv->data + (size_t)(i * h * d) * es, qkv->dtype, h, s, d);
        v[i].stride[0] = d;
        v[i].stride[1] = 3 * h * d;
    }
    ov.stride[0] = d;
    ov.stride[1] = h * d;
    RUN(OPS->matmul(BE, &v[0], &v[1], 1, 0.25f, 0.0f, p));
    RUN(OPS->matmul(BE, p, &v[2], 0, 1.0f, 0.0f, &ov));
    return o;
}

/* A bf16 weight shared by two batches, beta != 0 (y is read too). */
static td_tensor *case_matmul_shared(cx *c)
{
    td_tensor *a = act(c, 3, S(2, 9, 40), 1), *w = weight(c, TD_BF16, 2, S(24, 40), 0.2f);
    td_tensor *y = act(c, 3, S(2, 9, 24), 1);
    RUN(OPS->matmul(BE, a, w, 1, 0.5f, 2.0f, y));
    return y;
}

static td_tensor *case_layernorm(cx *c)
{
    td_tensor *x = act(c, 2, S(7, 96), 2), *w = weight(c, TD_F32, 1, S(96), 1);
    td_tensor *b = weight(c, TD_BF16, 1, S(96), 1), *y = out(c, 2, S(7, 96));
    RUN(OPS->layernorm(BE, x, w, b, 1e-6f, y));
    return y;
}

static td_tensor *case_layernorm_plain(cx *c)
{
    td_tensor *x = act(c, 2, S(5, 33), 2);
    RUN(OPS->layernorm(BE, x, NULL, NULL, 1e-6f, x));   /* in place */
    return x;
}

static td_tensor *case_rmsnorm(cx *c)
{
    td_tensor *x = act(c, 2, S(9, 80), 2), *w = weight(c, TD_F32, 1, S(80), 1), *y = out(c, 2, S(9, 80));
    RUN(OPS->rmsnorm(BE, x, w, 1e-6f, y));
    return y;
}

static td_tensor *case_channel_rmsnorm(cx *c)
{
    td_tensor *x = act(c, 2, S(16, 50), 2), *g = weight(c, TD_F32, 1, S(16), 1);
    td_tensor *b = weight(c, TD_F32, 1, S(16), 1), *y = out(c, 2, S(16, 50));
    RUN(OPS->channel_rmsnorm(BE, x, g, b, y));
    return y;
}

static td_tensor *case_gelu(cx *c)
{
    td_tensor *x = act(c, 2, S(13, 77), 3), *y = out(c, 2, S(13, 77));
    RUN(OPS->gelu_tanh(BE, x, y));
    return y;
}

static td_tensor *case_silu(cx *c)
{
    td_tensor *x = act(c, 2, S(13, 77), 3);
    RUN(OPS->silu(BE, x, x));
    return x;
}

static td_tensor *case_softmax(cx *c)
{
    td_tensor *x = act(c, 2, S(11, 70), 3), *y = out(c, 2, S(11, 70));
    RUN(OPS->softmax(BE, x, y));
    return y;
}

static td_tensor *case_add(cx *c)
{
    td_tensor *a = act(c, 2, S(6, 40), 1), *b = act(c, 2, S(6, 40), 1), *y = out(c, 2, S(6, 40));
    RUN(OPS->add(BE, a, b, y));
    RUN(OPS->add(BE, y, weight(c, TD_F32, 1, S(40), 1), y));
    return y;
}

static td_tensor *case_mul(cx *c)
{
    td_tensor *a = act(c, 2, S(6, 40), 1), *b = weight(c, TD_BF16, 1, S(40), 1), *y = out(c, 2, S(6, 40));
    RUN(OPS->mul(BE, a, b, y));
    return y;
}

static td_tensor *case_modulate(cx *c)
{
    td_tensor *x = act(c, 2, S(8, 64), 1), *sh = act(c, 1, S(64), 1), *sc = act(c, 1, S(64), 0.5f);
    td_tensor *y = out(c, 2, S(8, 64));
    RUN(OPS->modulate(BE, x, sh, sc, y));
    return y;
}

static td_tensor *case_add_gated(cx *c)
{
    td_tensor *x = act(c, 2, S(8, 64), 1), *y = act(c, 2, S(8, 64), 1), *g = act(c, 1, S(64), 1);
    RUN(OPS->add_gated(BE, x, y, g));
    return x;
}

static td_tensor *case_clamp(cx *c)
{
    td_tensor *x = act(c, 3, S(3, 5, 7), 2);
    RUN(OPS->clamp(BE, x, -0.5f, 0.75f, x));
    return x;
}

static td_tensor *case_scale_shift(cx *c)
{
    td_tensor *x = act(c, 4, S(5, 2, 3, 4), 2), *s = weight(c, TD_F32, 1, S(5), 1);
    td_tensor *b = weight(c, TD_F16, 1, S(5), 1), *y = out(c, 4, S(5, 2, 3, 4));
    RUN(OPS->scale_shift(BE, x, s, b, y));
    return y;
}

static td_tensor *case_embed(cx *c)
{
    static const int32_t ids[] = { 3, 0, 49, 7, 7, 12 };
    td_tensor *t = weight(c, TD_BF16, 2, S(50, 24), 1), *y = out(c, 2, S(6, 24));
    RUN(OPS->embed(BE, t, ids, 6, y));
    return y;
}

static td_tensor *case_rel_pos_bias(cx *c)
{
    int32_t b[9];
    td_tensor *t = weight(c, TD_F32, 2, S(32, 4), 1), *y = out(c, 3, S(4, 5, 5));
    for (int i = 0; i < 9; i++)
        b[i] = (int32_t)(test_next(&c->r) % 32);
    RUN(OPS->rel_pos_bias(BE, t, b, y));
    return y;
}

static td_tensor *case_rope(cx *c)
{
    td_tensor *x = act(c, 3, S(12, 3, 16), 1), *co = act(c, 2, S(12, 8), 1), *si = act(c, 2, S(12, 8), 1);
    td_tensor *y = out(c, 3, S(12, 3, 16));
    RUN(OPS->rope(BE, x, co, si, y));
    return y;
}

/* q, k, v are row-strided views into one [S, 3*H*D] buffer, as a fused qkv. */
static td_tensor *case_attention(cx *c)
{
    int64_t s = 40, h = 3, d = 16;
    td_tensor *qkv = act(c, 2, S(s, 3 * h * d), 1), *bias = act(c, 3, S(h, s, s), 1);
    td_tensor *o = out(c, 3, S(s, h, d)), v[3];
    for (int i = 0; i < 3; i++) {
        v[i] = td_view3((char *)qkv->data + (size_t)(i * h * d) * td_dtype_size(qkv->dtype), qkv->dtype,
                        s, h, d);
        v[i].stride[0] = 3 * h * d;
    }
    RUN(OPS->attention(BE, &v[0], &v[1], &v[2], bias, 0.25f, 33, o));
    return o;
}

static td_tensor *case_conv3d(cx *c)
{
    td_conv3d_params p = { { 1, 1, 1 }, 2, 0, 1, 1 };
    td_tensor *x = act(c, 4, S(4, 3, 6, 7), 1), *w = weight(c, TD_F32, 5, S(5, 4, 3, 3, 3), 0.2f);
    td_tensor *b = weight(c, TD_F32, 1, S(5), 1), *y = out(c, 4, S(5, 3, 6, 7));
    RUN(OPS->conv3d(BE, x, w, b, &p, y));
    return y;
}

static td_tensor *case_upsample(cx *c)
{
    td_tensor *x = act(c, 4, S(3, 2, 5, 4), 1), *y = out(c, 4, S(3, 2, 10, 8));
    RUN(OPS->upsample_nearest(BE, x, 2, 2, y));
    return y;
}

static td_tensor *case_sla(cx *c)
{
    int64_t s = 200, h = 2, d = 32;
    td_tensor *q = act(c, 3, S(s, h, d), 1), *k = act(c, 3, S(s, h, d), 1), *v = act(c, 3, S(s, h, d), 1);
    td_tensor *w = weight(c, TD_F32, 2, S(d, d), 0.2f), *b = weight(c, TD_F32, 1, S(d), 0.2f);
    td_tensor *o = out(c, 3, S(s, h, d));
    RUN(OPS->sla_attention(BE, q, k, v, w, b, 64, 64, 0.5, o));
    return o;
}

/* A permuted view copied into place, then a slice accumulated onto it. */
static td_tensor *case_copy(cx *c)
{
    static const int perm[4] = { 3, 1, 0, 2 };
    td_tensor *x = act(c, 4, S(2, 3, 4, 5), 1), *y = out(c, 4, S(5, 3, 2, 4)), *z = act(c, 2, S(6, 4), 1);
    td_tensor px, sy, sz;
    must(c, td_tensor_permute(c->ctx, x, perm, &px), "permute");
    RUN(OPS->copy(BE, y, &px, 0));
    must(c, td_tensor_slice(c->ctx, y, 0, 1, 1, &sy), "slice");
    must(c, td_tensor_reshape(c->ctx, z, 4, S(1, 3, 2, 4), &sz), "reshape");
    RUN(OPS->copy(BE, &sy, &sz, 1));
    return y;
}

/* fill on a strided view (a slice of the middle dim), inside arena scratch. */
static td_tensor *case_fill(cx *c)
{
    td_tensor *y = act(c, 3, S(4, 6, 5), 1), t, s;
    size_t mark = OPS->mark(BE);
    RUN(OPS->alloc(BE, &t, BE->act, 3, S(4, 6, 5)));
    RUN(OPS->copy(BE, &t, y, 0));
    must(c, td_tensor_slice(c->ctx, &t, 1, 2, 3, &s), "slice");
    RUN(OPS->fill(BE, &s, -1.5f));
    RUN(OPS->silu(BE, &t, &t));
    RUN(OPS->copy(BE, y, &t, 0));
    OPS->reset(BE, mark);
    return y;
}

typedef td_tensor *(*case_fn)(cx *c);
static const struct { const char *name; case_fn fn; } cases[] = {
    { "linear f32 w", case_linear_f32w }, { "linear bf16 w", case_linear_bf16w },
    { "linear_w8a8", case_w8a8 }, { "matmul heads", case_matmul_heads },
    { "matmul shared b", case_matmul_shared }, { "layernorm", case_layernorm },
    { "layernorm plain in place", case_layernorm_plain }, { "rmsnorm", case_rmsnorm },
    { "channel_rmsnorm", case_channel_rmsnorm }, { "gelu_tanh", case_gelu }, { "silu in place", case_silu },
    { "softmax", case_softmax }, { "add", case_add }, { "mul", case_mul }, { "modulate", case_modulate },
    { "add_gated", case_add_gated }, { "clamp", case_clamp }, { "scale_shift", case_scale_shift },
    { "embed", case_embed }, { "rel_pos_bias", case_rel_pos_bias }, { "rope", case_rope },
    { "attention strided", case_attention }, { "conv3d", case_conv3d }, { "upsample_nearest", case_upsample },
    { "sla_attention", case_sla }, { "copy", case_copy }, { "fill/alloc/reset", case_fill },
};

/* Run one case on be from rng state r; the result comes back as host f32. */
static td_tensor run_case(td_ctx *ctx, td_backend *be, test_rng r, int round, case_fn fn)
{
    cx c = { ctx, be, r, round, { { 0 } }, { { 0 } }, 0, 0 };
    td_tensor *y = fn(&c), h;
    must(&c, td_tensor_new(ctx, &h, TD_F32, y->ndim, y->shape), "host result");
    must(&c, be->ops->read(be, y, &h), "read");
    for (int i = 0; i < c.nd; i++)
        be->ops->tensor_free(be, &c.dev[i]);
    for (int i = 0; i < c.nh; i++)
        td_tensor_free(&c.host[i]);
    return h;
}

static void test_ops(ops_env *e, td_backend *fb, test_rng *rng)
{
    int bf16 = fb->act == TD_BF16;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        test_rng r = { test_next(rng) };
        td_tensor a = run_case(&e->ctx, e->be, r, bf16, cases[i].fn);
        td_tensor b = run_case(&e->ctx, fb, r, bf16, cases[i].fn);
        size_t n = (size_t)td_numel(&a);
        if (bf16) {
            double err = rel_l2_ff(b.data, a.data, n);
            CHECK(err < 1e-2, "bf16 fenced %s: rel L2 %.3g vs cpu", cases[i].name, err);
            printf("bf16 fenced %-26s rel L2 %.2e\n", cases[i].name, err);
        } else {
            CHECK(memcmp(a.data, b.data, n * sizeof(float)) == 0, "f32 fenced %s differs from cpu",
                  cases[i].name);
        }
        td_tensor_free(&a);
        td_tensor_free(&b);
    }
}

/* Fresh memory reads back as NaN; freed, reset or host memory is refused. */
static void test_refusals(ops_env *e, td_backend *fb)
{
    td_tensor t, u, h, a, v;
    float host[6] = { 0 };
    size_t mark;
    int nan = 1;
    CHECK_OK(e, fb->ops->tensor_new(fb, &t, fb->act, 2, S(2, 3)));
    h = td_view2(host, TD_F32, 2, 3);
    CHECK_OK(e, fb->ops->read(fb, &t, &h));
    for (int i = 0; i < 6; i++)
        nan &= isnan(host[i]);
    CHECK(nan, "a fresh tensor_new tensor must read back as NaN");
    CHECK_FAILS(e, fb->ops->silu(fb, &h, &t), TD_EINVAL, "silu: x");
    CHECK_FAILS(e, fb->ops->silu(fb, &t, &h), TD_EINVAL, "silu: y");
    CHECK_FAILS(e, fb->ops->copy(fb, &t, &h, 0), TD_EINVAL, "copy: src");
    CHECK_OK(e, fb->ops->tensor_new(fb, &v, fb->act, 2, S(2, 2)));
    CHECK_FAILS(e, fb->ops->matmul(fb, &h, &t, 1, 1, 0, &v), TD_EINVAL, "matmul: a");
    CHECK_FAILS(e, fb->ops->matmul(fb, &t, &h, 1, 1, 0, &v), TD_EINVAL, "matmul: b");
    CHECK_FAILS(e, fb->ops->matmul(fb, &t, &t, 1, 1, 0, &h), TD_EINVAL, "matmul: y");
    fb->ops->tensor_free(fb, &v);
    v = t;
    v.shape[0] = 3;   /* one row past its end */
    CHECK_FAILS(e, fb->ops->fill(fb, &v, 0), TD_EINVAL, "fill: t");
    u = t;
    fb->ops->tensor_free(fb, &t);
    CHECK(t.data == NULL, "tensor_free zeroes the tensor");
    CHECK_FAILS(e, fb->ops->fill(fb, &u, 0), TD_EINVAL, "fill: t");
    mark = fb->ops->mark(fb);
    CHECK_OK(e, fb->ops->alloc(fb, &a, fb->act, 1, S(10)));
    CHECK_OK(e, fb->ops->fill(fb, &a, 1));
    fb->ops->reset(fb, mark);
    CHECK_FAILS(e, fb->ops->fill(fb, &a, 0), TD_EINVAL, "fill: t");
    if (fb->act == TD_BF16) {
        CHECK_OK(e, fb->ops->tensor_new(fb, &t, TD_F32, 2, S(2, 3)));
        CHECK_FAILS(e, fb->ops->silu(fb, &t, &t), TD_EINVAL, "must be bf16");
        fb->ops->tensor_free(fb, &t);
    }
}

/* A child touches a fenced tensor after an op: it must die with status 3
 * and a message naming the allocation, the offset and the last op. */
static void test_host_access(void)
{
    int fd[2], status = 0;
    char msg[1024] = { 0 };
    ssize_t got = 0, r;
    pid_t pid;
#ifdef RUNNING_ON_VALGRIND
    if (RUNNING_ON_VALGRIND) {
        printf("host access test skipped under valgrind (its signal delivery is not what the test is about)\n");
        return;
    }
#endif
    if (pipe(fd) != 0 || (pid = fork()) < 0) {
        CHECK(0, "pipe/fork failed");
        return;
    }
    if (pid == 0) {
        td_ctx ctx;
        td_backend *be;
        td_tensor t;
        dup2(fd[1], STDERR_FILENO);
        close(fd[0]);
        td_ctx_init(&ctx);
        if (td_backend_fenced_f32_create(&ctx, 1 << 20, &be) < 0 ||
            be->ops->tensor_new(be, &t, TD_F32, 2, S(2, 3)) < 0 || be->ops->fill(be, &t, 1) < 0 ||
            be->ops->silu(be, &t, &t) < 0)
            _exit(1);
        ((volatile float *)t.data)[4] = 0;
        _exit(0);
    }
    close(fd[1]);
    while ((r = read(fd[0], msg + got, sizeof(msg) - 1 - (size_t)got)) > 0)
        got += r;
    close(fd[0]);
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 3, "child status %d, wanted exit 3", status);
    CHECK(strstr(msg, "tensor_new [2,3] f32 at byte offset 16 outside an op; last op: silu") != NULL,
          "message: %s", msg);
    printf("host access: %s", msg);
}

int main(void)
{
    ops_env e;
    td_backend *f32 = NULL, *bf16 = NULL;
    test_rng rng = test_rng_seeded();
    if (ops_env_init(&e) < 0 || td_backend_fenced_f32_create(&e.ctx, (size_t)64 << 20, &f32) < 0 ||
        td_backend_fenced_bf16_create(&e.ctx, (size_t)64 << 20, &bf16) < 0) {
        fprintf(stderr, "setup: %s\n", e.ctx.errmsg);
        return 1;
    }
    CHECK(f32->act == TD_F32 && bf16->act == TD_BF16, "activation dtypes");
    test_ops(&e, f32, &rng);
    test_ops(&e, bf16, &rng);
    test_refusals(&e, f32);
    test_refusals(&e, bf16);
    test_host_access();
    td_backend_destroy(&bf16);
    td_backend_destroy(&f32);
    ops_env_free(&e);
    return check_summary();
}
