/*
 * The CPU backend's workspace (backend.h): what the job estimate asks the
 * backend an op will hold beside its tensors is, byte for byte, what the
 * op adds to the backend's measured peak, on every path this CPU has
 * (linear with f32, bf16 and f16 weights above and below the AMX row
 * threshold, W8A8, attention, SLA, conv3d on each of its codes, stride 1
 * and strided). A smaller op after a larger one holds the larger one's scratch
 * (the estimate counts the largest so far), and peak_reset, which each
 * job makes first, gives it back.
 */
#include "ops_common.h"

#include "backend/cpu/cpu.h"

#define S(...) (const int64_t[]){ __VA_ARGS__ }

static int64_t pick(test_rng *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(test_next(r) % (uint64_t)(hi - lo + 1));
}

/* The peak a fresh op adds: reset, run, peak minus what was held. */
static size_t op_peak(ops_env *e, int (*run)(ops_env *, void *), void *arg)
{
    const td_backend_ops *o = e->be->ops;
    size_t base;
    o->peak_reset(e->be);
    base = o->peak(e->be);
    CHECK_OK(e, run(e, arg));
    return o->peak(e->be) - base;
}

typedef struct {
    td_tensor x, w, ws, y;
    int w8a8;
} lin_case;

static int run_linear(ops_env *e, void *arg)
{
    lin_case *c = arg;
    return c->w8a8 ? e->be->ops->linear_w8a8(e->be, &c->x, &c->w, &c->ws, NULL, &c->y)
                   : e->be->ops->linear(e->be, &c->x, &c->w, NULL, &c->y);
}

static void linear_case(ops_env *e, test_rng *r, int64_t m, int64_t n, int64_t k, td_dtype wdt)
{
    lin_case c = { .x = rand_tensor(e, r, 2, S(m, k), 1.0f), .y = zero_tensor(e, TD_F32, 2, S(m, n)),
                   .w8a8 = wdt == TD_I8 };
    td_op op = c.w8a8 ? TD_OP_LINEAR_W8A8 : TD_OP_LINEAR;
    size_t want, got;

    if (c.w8a8) {
        c.w = zero_tensor(e, TD_I8, 2, S(n, k));
        for (int64_t i = 0; i < n * k; i++)
            ((int8_t *)c.w.data)[i] = (int8_t)(test_next(r) % 255 - 127);
        c.ws = rand_tensor(e, r, 2, S((n + 127) / 128, (k + 127) / 128), 0.01f);
    } else {
        td_tensor wf = rand_tensor(e, r, 2, S(n, k), 0.1f);
        c.w = wdt == TD_F32 ? wf : narrowed(e, &wf, wdt);
        if (wdt != TD_F32)
            td_tensor_free(&wf);
    }
    want = e->be->ops->workspace(e->be, op, &c.x, &c.w, &c.y, NULL);
    got = op_peak(e, run_linear, &c);
    CHECK(got == want, "%s %lldx%lldx%lld (w dtype %d, lin path %d, w8 path %d): the op took %zu bytes, "
          "workspace says %zu", c.w8a8 ? "linear_w8a8" : "linear", (long long)m, (long long)n, (long long)k,
          (int)wdt, td_cpu_of(e->be)->lin_path, td_cpu_of(e->be)->w8a8_path, got, want);
    td_tensor_free(&c.x);
    td_tensor_free(&c.w);
    td_tensor_free(&c.ws);
    td_tensor_free(&c.y);
}

typedef struct {
    td_tensor q, k, v, o;
} att_case;

static int run_attention(ops_env *e, void *arg)
{
    att_case *c = arg;
    return e->be->ops->attention(e->be, &c->q, &c->k, &c->v, NULL, 0.125f, 0, &c->o);
}

static void attention_case(ops_env *e, test_rng *r, int64_t sq, int64_t sk, int64_t h, int64_t d, int64_t dv)
{
    att_case c = { rand_tensor(e, r, 3, S(sq, h, d), 1.0f), rand_tensor(e, r, 3, S(sk, h, d), 1.0f),
                   rand_tensor(e, r, 3, S(sk, h, dv), 1.0f), zero_tensor(e, TD_F32, 3, S(sq, h, dv)) };
    size_t want = e->be->ops->workspace(e->be, TD_OP_ATTENTION, &c.q, &c.k, &c.o, NULL);
    size_t got = op_peak(e, run_attention, &c);
    CHECK(got == want, "attention %lld queries, %lld keys, %lld heads, d %lld, dv %lld (path %d): the op "
          "took %zu bytes, workspace says %zu", (long long)sq, (long long)sk, (long long)h, (long long)d,
          (long long)dv, td_cpu_of(e->be)->att_path, got, want);
    td_tensor_free(&c.q);
    td_tensor_free(&c.k);
    td_tensor_free(&c.v);
    td_tensor_free(&c.o);
}

typedef struct {
    td_tensor q, k, v, w, o;
} sla_case;

static int run_sla(ops_env *e, void *arg)
{
    sla_case *c = arg;
    return e->be->ops->sla_attention(e->be, &c->q, &c->k, &c->v, &c->w, NULL, 128, 64, 0.25, &c->o);
}

static void sla_case_run(ops_env *e, test_rng *r, int64_t s, int64_t h)
{
    sla_case c = { rand_tensor(e, r, 3, S(s, h, 64), 1.0f), rand_tensor(e, r, 3, S(s, h, 64), 1.0f),
                   rand_tensor(e, r, 3, S(s, h, 64), 1.0f), rand_tensor(e, r, 2, S(64, 64), 0.1f),
                   zero_tensor(e, TD_F32, 3, S(s, h, 64)) };
    size_t want = e->be->ops->workspace(e->be, TD_OP_SLA, &c.q, &c.k, &c.o, NULL);
    size_t got = op_peak(e, run_sla, &c);
    CHECK(got == want, "sla_attention %lld rows, %lld heads (path %d): the op took %zu bytes, workspace "
          "says %zu", (long long)s, (long long)h, td_cpu_of(e->be)->att_path, got, want);
    td_tensor_free(&c.q);
    td_tensor_free(&c.k);
    td_tensor_free(&c.v);
    td_tensor_free(&c.w);
    td_tensor_free(&c.o);
}

typedef struct {
    td_tensor x, w, y;
    td_conv3d_params p;
} conv_case;

static int run_conv(ops_env *e, void *arg)
{
    conv_case *c = arg;
    return e->be->ops->conv3d(e->be, &c->x, &c->w, NULL, &c->p, &c->y);
}

static void conv_case_run(ops_env *e, test_rng *r, int64_t ci, int64_t co, int64_t t, int64_t h, int64_t w,
                          int stride, td_dtype wdt)
{
    conv_case c = { .p = { { 1, stride, stride }, 2, 0, 1, 1 } };
    td_tensor wf = rand_tensor(e, r, 5, S(co, ci, 3, 3, 3), 0.1f);
    int64_t ho = (h + 2 - 3) / stride + 1, wo = (w + 2 - 3) / stride + 1;
    size_t want, got;

    c.x = rand_tensor(e, r, 4, S(ci, t, h, w), 1.0f);
    c.w = wdt == TD_F32 ? wf : narrowed(e, &wf, wdt);
    if (wdt != TD_F32)
        td_tensor_free(&wf);
    c.y = zero_tensor(e, TD_F32, 4, S(co, t, ho, wo));
    want = e->be->ops->workspace(e->be, TD_OP_CONV3D, &c.x, &c.w, &c.y, &c.p);
    got = op_peak(e, run_conv, &c);
    CHECK(got == want, "conv3d %lld->%lld channels, %lldx%lldx%lld, stride %d (w dtype %d, path %d): the op "
          "took %zu bytes, workspace says %zu", (long long)ci, (long long)co, (long long)t, (long long)h,
          (long long)w, stride, (int)wdt, td_cpu_of(e->be)->conv_path, got, want);
    td_tensor_free(&c.x);
    td_tensor_free(&c.w);
    td_tensor_free(&c.y);
}

/* Scratch stays for the next op, counted, until peak_reset frees it. */
static void test_kept_until_reset(ops_env *e, test_rng *r)
{
    const td_backend_ops *o = e->be->ops;
    lin_case big = { .x = rand_tensor(e, r, 2, S(300, 200), 1.0f), .w = rand_tensor(e, r, 2, S(96, 200), 0.1f),
                     .y = zero_tensor(e, TD_F32, 2, S(300, 96)) };
    lin_case small = { .x = rand_tensor(e, r, 2, S(130, 40), 1.0f), .w = rand_tensor(e, r, 2, S(16, 40), 0.1f),
                       .y = zero_tensor(e, TD_F32, 2, S(130, 16)) };
    td_tensor wb = narrowed(e, &big.w, TD_BF16);
    size_t ws, base, held;

    td_tensor_free(&big.w);
    big.w = wb;
    ws = o->workspace(e->be, TD_OP_LINEAR, &big.x, &big.w, &big.y, NULL);
    o->peak_reset(e->be);
    base = o->peak(e->be);
    CHECK_OK(e, run_linear(e, &big));
    held = o->peak(e->be) - base;
    CHECK(ws > 0 && held == ws, "a bf16 linear of 300 rows: workspace %zu, held %zu", ws, held);
    o->peak_reset(e->be);
    CHECK(o->peak(e->be) == base, "peak_reset keeps %zu bytes of scratch", o->peak(e->be) - base);
    CHECK_OK(e, run_linear(e, &big));
    CHECK_OK(e, run_linear(e, &small));
    CHECK(o->peak(e->be) - base == ws, "a smaller op after it: held %zu, expected the larger %zu",
          o->peak(e->be) - base, ws);
    td_tensor_free(&big.x); td_tensor_free(&big.w); td_tensor_free(&big.y);
    td_tensor_free(&small.x); td_tensor_free(&small.w); td_tensor_free(&small.y);
}

int main(void)
{
    static const td_dtype wdts[] = { TD_F32, TD_BF16, TD_F16 };
    test_rng r = test_rng_seeded();
    ops_env e;
    td_cpu *c;

    if (ops_env_init(&e) < 0)
        return 1;
    c = td_cpu_of(e.be);
    for (td_lin_path p = TD_LIN_BLAS; p <= TD_LIN_AMX; p++) {
        if (!td_cpu_lin_supported(p))
            continue;
        c->lin_path = p;
        for (size_t i = 0; i < sizeof(wdts) / sizeof(wdts[0]); i++) {
            linear_case(&e, &r, pick(&r, 1, 100), pick(&r, 1, 300), pick(&r, 1, 300), wdts[i]);
            linear_case(&e, &r, pick(&r, 128, 400), pick(&r, 1, 300), pick(&r, 1, 3000), wdts[i]);
        }
    }
    c->lin_path = td_cpu_lin_best(TD_ISA_AMX);
    for (td_w8_path p = TD_W8_SGEMM; p <= TD_W8_AVX512VNNI; p++) {
        if (!td_cpu_w8a8_supported(p))
            continue;
        c->w8a8_path = p;
        linear_case(&e, &r, pick(&r, 1, 700), pick(&r, 1, 300), pick(&r, 1, 300), TD_I8);
    }
    for (td_att_path p = TD_ATT_SCALAR; p <= TD_ATT_AMX; p++) {
        if (!td_cpu_att_supported(p))
            continue;
        c->att_path = p;
        attention_case(&e, &r, pick(&r, 1, 300), pick(&r, 1, 600), pick(&r, 1, 3), pick(&r, 1, 70),
                       pick(&r, 1, 70));
        sla_case_run(&e, &r, pick(&r, 1, 700), pick(&r, 1, 3));
    }
    for (td_conv_path p = TD_CONV_GEMM; p <= TD_CONV_AMX; p++) {
        if (!td_cpu_conv_supported(p))
            continue;
        c->conv_path = p;
        conv_case_run(&e, &r, pick(&r, 32, 48), pick(&r, 32, 48), 3, pick(&r, 5, 20), pick(&r, 5, 40), 1,
                      TD_F32);
        conv_case_run(&e, &r, pick(&r, 1, 8), pick(&r, 16, 24), 2, pick(&r, 5, 20), pick(&r, 5, 40), 1,
                      TD_BF16);
        conv_case_run(&e, &r, pick(&r, 1, 8), pick(&r, 1, 8), 2, pick(&r, 5, 20), pick(&r, 5, 40), 1, TD_F32);
        conv_case_run(&e, &r, pick(&r, 1, 8), pick(&r, 1, 8), 2, pick(&r, 5, 20), pick(&r, 5, 40), 2, TD_BF16);
    }
    c->conv_path = td_cpu_conv_best(TD_ISA_AMX);
    c->lin_path = td_cpu_lin_best(TD_ISA_AMX);
    test_kept_until_reset(&e, &r);
    ops_env_free(&e);
    return check_summary();
}
