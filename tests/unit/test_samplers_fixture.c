/*
 * Samplers against committed numbers (tests/data/sample, written by
 * tests/parity/gen_sla_sample_fixtures.py): TurboDiffusion's rCM loop and
 * diffusers' UniPCMultistepScheduler run on a toy linear model
 * v = A x + b t (A_low for the low-noise expert, b_uncond for CFG's
 * unconditional pass), with given noises. The toy model moves the
 * sampler's backend tensors (CPU backend) with read and write.
 */
#include <string.h>

#include "check.h"
#include "io/npy.h"
#include "sample/flow_match.h"
#include "sample/rcm.h"

#define DATA TD_ROOT "/tests/data/sample/"

typedef struct toy {
    td_backend *be;
    td_tensor a, b, a_low, b_uncond;
    td_tensor xh, vh;        /* host copies of the model's x and v */
    int uncond, experts;
} toy;

static int toy_fn(void *opaque, int expert, const td_tensor *x, double t, td_tensor *v)
{
    toy *m = opaque;
    int64_t n = td_numel(x);
    const float *a = (expert == TD_EXPERT_LOW && m->experts ? m->a_low : m->a).data;
    const float *b = (m->uncond ? m->b_uncond : m->b).data;
    const float *xs = m->xh.data;
    float *vs = m->vh.data;
    TD_TRY(m->be->ops->read(m->be, x, &m->xh));
    for (int64_t i = 0; i < n; i++) {
        double s = (double)b[i] * t;
        for (int64_t j = 0; j < n; j++)
            s += (double)a[i * n + j] * xs[j];
        vs[i] = (float)s;
    }
    return m->be->ops->write(m->be, v, &m->vh);
}

static void compare(td_ctx *ctx, const char *name, const td_tensor *x)
{
    td_tensor ref = { 0 };
    char path[512];
    snprintf(path, sizeof(path), DATA "%s", name);
    if (td_npy_read(ctx, path, &ref) < 0) {
        CHECK(0, "%s: %s", path, ctx->errmsg);
        return;
    }
    CHECK(td_numel(&ref) == td_numel(x), "%s: size", name);
    if (td_numel(&ref) == td_numel(x)) {
        double e = rel_l2_ff(x->data, ref.data, (size_t)td_numel(x));
        CHECK(e < 1e-5, "%s: rel L2 %.3g", name, e);
    }
    td_tensor_free(&ref);
}

int main(void)
{
    td_ctx ctx;
    toy m = { 0 }, mu;
    td_tensor noise = { 0 }, x = { 0 };
    td_denoiser dc = { toy_fn, &m }, du = { toy_fn, &mu };

    td_ctx_init(&ctx);
    if (td_backend_cpu_create(&ctx, 0, &m.be) ||
        td_npy_read(&ctx, DATA "a.npy", &m.a) || td_npy_read(&ctx, DATA "b.npy", &m.b) ||
        td_npy_read(&ctx, DATA "a_low.npy", &m.a_low) || td_npy_read(&ctx, DATA "b_uncond.npy", &m.b_uncond) ||
        td_npy_read(&ctx, DATA "noise.npy", &noise) ||
        td_tensor_new(&ctx, &x, TD_F32, 1, &m.b.shape[0]) ||
        td_tensor_new(&ctx, &m.xh, TD_F32, 1, &m.b.shape[0]) ||
        td_tensor_new(&ctx, &m.vh, TD_F32, 1, &m.b.shape[0])) {
        CHECK(0, "fixtures: %s", ctx.errmsg);
        goto done;
    }
    td_sample_io io = { .be = m.be, .noise = { .stack = noise.data, .count = noise.shape[0] } };
    td_rcm_params rp;
    td_flow_params fp;

    td_rcm_params_default(&rp);
    CHECK(td_rcm_sample(&ctx, &rp, &dc, &io, &x) == 0, "%s", ctx.errmsg);
    compare(&ctx, "rcm_4step.npy", &x);
    rp.steps = 3;
    rp.ode = 1;
    CHECK(td_rcm_sample(&ctx, &rp, &dc, &io, &x) == 0, "%s", ctx.errmsg);
    compare(&ctx, "rcm_3step_ode.npy", &x);
    td_rcm_params_default(&rp);
    rp.sigma_max = 200;
    rp.two_experts = m.experts = 1;
    CHECK(td_rcm_sample(&ctx, &rp, &dc, &io, &x) == 0, "%s", ctx.errmsg);
    compare(&ctx, "rcm_4step_experts.npy", &x);

    m.experts = 0;
    mu = m;
    mu.uncond = 1;
    td_flow_params_default(&fp);
    fp.steps = 8;
    fp.shift = 5.0;
    fp.guidance = 4.0;
    CHECK(td_flow_sample(&ctx, &fp, &dc, &du, &io, &x) == 0, "%s", ctx.errmsg);
    compare(&ctx, "unipc_8step_cfg4.npy", &x);
    fp.solver = TD_FLOW_EULER;
    CHECK(td_flow_sample(&ctx, &fp, &dc, &du, &io, &x) == 0, "%s", ctx.errmsg);
    compare(&ctx, "euler_8step_cfg4.npy", &x);

    m.experts = mu.experts = 1;
    td_flow_params_default(&fp);
    fp.steps = 12;
    fp.shift = 3.0;
    fp.guidance = 4.0;
    fp.guidance_low = 3.0;
    fp.two_experts = 1;
    fp.boundary = 0.875;
    CHECK(td_flow_sample(&ctx, &fp, &dc, &du, &io, &x) == 0, "%s", ctx.errmsg);
    compare(&ctx, "unipc_12step_experts.npy", &x);
done:
    td_tensor_free(&m.a);
    td_tensor_free(&m.b);
    td_tensor_free(&m.a_low);
    td_tensor_free(&m.b_uncond);
    td_tensor_free(&m.xh);
    td_tensor_free(&m.vh);
    td_tensor_free(&noise);
    td_tensor_free(&x);
    td_backend_destroy(&m.be);
    return check_summary();
}
