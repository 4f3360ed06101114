/* The CPU ops against committed torch / TurboDiffusion-definition outputs
 * (tests/data/ops, written by tests/parity/gen_ops_fixtures.py): W8A8
 * quantization bit-exact and its output, attention with bias and kv_len,
 * causal conv3d with bf16 weights, Wan's rope and channel RMS norm. */
#include "ops_common.h"
#include "backend/cpu/cpu.h"
#include "io/npy.h"

static td_tensor load(ops_env *e, const char *name)
{
    char path[1024];
    td_tensor t;
    snprintf(path, sizeof(path), "%s/tests/data/ops/%s.npy", TD_ROOT, name);
    if (td_npy_read(&e->ctx, path, &t) < 0) {
        fprintf(stderr, "cannot read %s: %s\n", path, e->ctx.errmsg);
        exit(1);
    }
    return t;
}

static td_tensor like(ops_env *e, const td_tensor *t)
{
    return zero_tensor(e, TD_F32, t->ndim, t->shape);
}

static double close_to(const td_tensor *got, const td_tensor *want)
{
    return rel_l2_ff(got->data, want->data, (size_t)td_numel(want));
}

static void test_w8a8(ops_env *e)
{
    td_tensor x = load(e, "w8a8_x"), wq = load(e, "w8a8_wq"), ws = load(e, "w8a8_ws"), b = load(e, "w8a8_b");
    td_tensor xq = load(e, "w8a8_xq"), xs = load(e, "w8a8_xs"), y = load(e, "w8a8_y"), got = like(e, &y);
    int64_t m = x.shape[0], k = x.shape[1];
    int8_t *q = malloc((size_t)(m * k));
    float *s = malloc(sizeof(float) * (size_t)td_numel(&xs));

    CHECK(wq.dtype == TD_I8 && xq.dtype == TD_I8, "fixture dtypes");
    td_cpu_w8a8_quantize(e->ctx.pool, x.data, m, k, q, s);
    CHECK(!memcmp(q, xq.data, (size_t)(m * k)), "w8a8 activations differ from the definition");
    CHECK(!memcmp(s, xs.data, sizeof(float) * (size_t)td_numel(&xs)), "w8a8 block scales differ");
    CHECK_OK(e, e->be->ops->linear_w8a8(e->be, &x, &wq, &ws, &b, &got));
    CHECK(close_to(&got, &y) < 1e-6, "w8a8 output: %.3g", close_to(&got, &y));
    free(q);
    free(s);
    td_tensor_free(&x); td_tensor_free(&wq); td_tensor_free(&ws); td_tensor_free(&b);
    td_tensor_free(&xq); td_tensor_free(&xs); td_tensor_free(&y); td_tensor_free(&got);
}

static void test_attention(ops_env *e)
{
    td_tensor q = load(e, "att_q"), k = load(e, "att_k"), v = load(e, "att_v"), b = load(e, "att_bias");
    td_tensor want = load(e, "att_out"), got = like(e, &want);
    CHECK_OK(e, e->be->ops->attention(e->be, &q, &k, &v, &b, 0.3f, 41, &got));
    CHECK(close_to(&got, &want) < 1e-5, "attention vs torch SDPA: %.3g", close_to(&got, &want));
    td_tensor_free(&q); td_tensor_free(&k); td_tensor_free(&v); td_tensor_free(&b);
    td_tensor_free(&want); td_tensor_free(&got);
}

static void test_conv3d(ops_env *e)
{
    td_tensor x = load(e, "conv_x"), w = load(e, "conv_w"), b = load(e, "conv_b");
    td_tensor want = load(e, "conv_y"), got = like(e, &want), wb = narrowed(e, &w, TD_BF16);
    td_conv3d_params p = { { 1, 1, 1 }, 2, 0, 1, 1 };
    CHECK_OK(e, e->be->ops->conv3d(e->be, &x, &wb, &b, &p, &got));
    CHECK(close_to(&got, &want) < 1e-5, "causal conv3d vs torch: %.3g", close_to(&got, &want));
    td_tensor_free(&x); td_tensor_free(&w); td_tensor_free(&b); td_tensor_free(&wb);
    td_tensor_free(&want); td_tensor_free(&got);
}

static void test_rope_crms(ops_env *e)
{
    td_tensor x = load(e, "rope_x"), c = load(e, "rope_cos"), s = load(e, "rope_sin");
    td_tensor want = load(e, "rope_y"), got = like(e, &want);
    td_tensor nx = load(e, "crms_x"), ng = load(e, "crms_gamma"), nb = load(e, "crms_bias");
    td_tensor nwant = load(e, "crms_y"), ngot = like(e, &nwant);
    CHECK_OK(e, e->be->ops->rope(e->be, &x, &c, &s, &got));
    CHECK(close_to(&got, &want) < 1e-6, "rope vs Wan's complex form: %.3g", close_to(&got, &want));
    CHECK_OK(e, e->be->ops->channel_rmsnorm(e->be, &nx, &ng, &nb, &ngot));
    CHECK(close_to(&ngot, &nwant) < 1e-6, "channel_rmsnorm vs F.normalize: %.3g", close_to(&ngot, &nwant));
    td_tensor_free(&x); td_tensor_free(&c); td_tensor_free(&s); td_tensor_free(&want); td_tensor_free(&got);
    td_tensor_free(&nx); td_tensor_free(&ng); td_tensor_free(&nb); td_tensor_free(&nwant); td_tensor_free(&ngot);
}

int main(void)
{
    ops_env e;
    if (ops_env_init(&e) < 0)
        return 1;
    test_w8a8(&e);
    test_attention(&e);
    test_conv3d(&e);
    test_rope_crms(&e);
    ops_env_free(&e);
    return check_summary();
}
