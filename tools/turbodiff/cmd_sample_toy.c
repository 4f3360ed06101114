/*
 * turbodiff sample-toy: run a sampler with a toy linear "model" instead of
 * the DiT, so tests/parity/test_samplers.py can replay the same run in
 * PyTorch (TurboDiffusion's rCM loop, diffusers' UniPC):
 *   v = A x + b t            conditional / single model (expert 0)
 *   v = A_low x + b t        low-noise expert, when --a-low is given
 *   v = A x + b_uncond t     unconditional pass of classifier-free guidance
 * x is the flattened latent of n values; A [n, n], b [n]. The sampler hands
 * the model backend tensors (CPU backend), which it reads and writes
 * through the backend as the DiT would.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "io/npy.h"
#include "sample/flow_match.h"
#include "sample/rcm.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: turbodiff sample-toy --sampler rcm|euler|unipc --a A.npy --b B.npy\n"
               "         [--a-low A.npy] [--b-uncond B.npy] (--seed S --n N | --noise-from X.npy)\n"
               "         [--steps K] [--sigma-max S] [--ode] [--boundary F]\n"
               "         [--shift F] [--guidance G] [--guidance-low G] --out OUT.npy\n"
               "  Samples with the toy model v = A x + b t (see cmd_sample_toy.c); the\n"
               "  noise stack X is [count, n]. Writes the final latent [n] as f32.\n");
}

typedef struct toy_args {
    const char *sampler, *a, *b, *a_low, *b_uncond, *noise, *out;
    uint64_t seed;
    int64_t n;
    int have_seed;
    td_rcm_params rcm;
    td_flow_params flow;
} toy_args;

typedef struct toy_model {
    td_backend *be;
    const float *a, *b;
    const float *a_low, *b_uncond;
    float *xs, *vs;          /* [n] host copies of the model's x and v */
    int64_t n;
    int uncond;
} toy_model;

static int toy_denoise(void *opaque, int expert, const td_tensor *x, double t, td_tensor *v)
{
    const toy_model *m = opaque;
    const float *a = expert == TD_EXPERT_LOW && m->a_low ? m->a_low : m->a;
    const float *b = m->uncond ? m->b_uncond : m->b;
    td_tensor xh = td_view1(m->xs, TD_F32, m->n), vh = td_view1(m->vs, TD_F32, m->n);

    TD_TRY(m->be->ops->read(m->be, x, &xh));
    for (int64_t i = 0; i < m->n; i++) {
        double s = (double)b[i] * t;
        for (int64_t j = 0; j < m->n; j++)
            s += (double)a[i * m->n + j] * m->xs[j];
        m->vs[i] = (float)s;
    }
    return m->be->ops->write(m->be, v, &vh);
}

static int parse_num(const char *o, const char *val, double *d)
{
    char *end;
    *d = strtod(val, &end);
    if (end == val || *end) {
        fprintf(stderr, "turbodiff sample-toy: %s '%s' is not a number\n", o, val);
        return 2;
    }
    return 0;
}

static int parse(int argc, char **argv, toy_args *a)
{
    td_rcm_params_default(&a->rcm);
    td_flow_params_default(&a->flow);
    a->flow.guidance = 1.0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        const char **dst = !strcmp(o, "--sampler") ? &a->sampler : !strcmp(o, "--a") ? &a->a
                         : !strcmp(o, "--b") ? &a->b : !strcmp(o, "--a-low") ? &a->a_low
                         : !strcmp(o, "--b-uncond") ? &a->b_uncond
                         : !strcmp(o, "--noise-from") ? &a->noise : !strcmp(o, "--out") ? &a->out : NULL;
        double d;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(o, "--ode")) {
            a->rcm.ode = 1;
            continue;
        }
        if (!val) {
            fprintf(stderr, "turbodiff sample-toy: '%s' needs a value or is unknown\n", o);
            return 2;
        }
        i++;
        if (dst) {
            *dst = val;
            continue;
        }
        if (parse_num(o, val, &d))
            return 2;
        if (!strcmp(o, "--seed")) {
            a->seed = strtoull(val, NULL, 10);
            a->have_seed = 1;
        } else if (!strcmp(o, "--n"))
            a->n = (int64_t)d;
        else if (!strcmp(o, "--steps"))
            a->rcm.steps = a->flow.steps = (int)d;
        else if (!strcmp(o, "--sigma-max"))
            a->rcm.sigma_max = d;
        else if (!strcmp(o, "--boundary"))
            a->rcm.boundary = a->flow.boundary = d;
        else if (!strcmp(o, "--shift"))
            a->flow.shift = d;
        else if (!strcmp(o, "--guidance"))
            a->flow.guidance = d;
        else if (!strcmp(o, "--guidance-low"))
            a->flow.guidance_low = d;
        else {
            fprintf(stderr, "turbodiff sample-toy: unknown option '%s'\n", o);
            return 2;
        }
    }
    if (!a->sampler || !a->a || !a->b || !a->out || (!a->noise && !a->have_seed)) {
        fprintf(stderr, "turbodiff sample-toy: --sampler, --a, --b, --out and --seed or --noise-from are required\n");
        usage(stderr);
        return 2;
    }
    a->rcm.two_experts = a->flow.two_experts = a->a_low != NULL;
    return 0;
}

static int load_model(td_ctx *ctx, const toy_args *a, td_tensor t[4], toy_model *m)
{
    const char *paths[4] = { a->a, a->b, a->a_low, a->b_uncond };
    for (int i = 0; i < 4; i++)
        if (paths[i])
            TD_TRY(td_npy_read(ctx, paths[i], &t[i]));
    m->n = td_numel(&t[1]);
    for (int i = 0; i < 4; i++) {
        int64_t want = i % 2 ? m->n : m->n * m->n;
        if (paths[i] && (t[i].dtype != TD_F32 || td_numel(&t[i]) != want))
            return td_fail(ctx, TD_ESHAPE, "sample-toy: %s holds %lld values, expected %lld f32",
                           paths[i], (long long)td_numel(&t[i]), (long long)want);
    }
    m->a = t[0].data;
    m->b = t[1].data;
    m->a_low = a->a_low ? t[2].data : NULL;
    m->b_uncond = a->b_uncond ? t[3].data : NULL;
    return 0;
}

static int run(td_ctx *ctx, td_backend *be, const toy_args *a, td_tensor t[4], td_tensor *noise,
               td_tensor *x, td_tensor *scratch)
{
    toy_model m = { .be = be }, mu;
    td_sample_io io = { .be = be, .noise = { .seed = a->seed } };
    td_denoiser dc = { toy_denoise, &m }, du = { toy_denoise, &mu };

    TD_TRY(load_model(ctx, a, t, &m));
    TD_TRY(td_tensor_new(ctx, scratch, TD_F32, 2, (int64_t[]){ 2, m.n }));
    m.xs = scratch->data;
    m.vs = m.xs + m.n;
    if (a->noise) {
        TD_TRY(td_npy_read(ctx, a->noise, noise));
        if (noise->dtype != TD_F32 || noise->ndim != 2 || noise->shape[1] != m.n)
            return td_fail(ctx, TD_ESHAPE, "sample-toy: noise %s must be f32 [count, %lld]",
                           a->noise, (long long)m.n);
        io.noise.stack = noise->data;
        io.noise.count = noise->shape[0];
    } else if (a->n != m.n) {
        return td_fail(ctx, TD_ESHAPE, "sample-toy: --n %lld does not match b's %lld values",
                       (long long)a->n, (long long)m.n);
    }
    TD_TRY(td_tensor_new(ctx, x, TD_F32, 1, &m.n));
    mu = m;
    mu.uncond = 1;
    if (!strcmp(a->sampler, "rcm"))
        return td_rcm_sample(ctx, &a->rcm, &dc, &io, x);
    td_flow_params fp = a->flow;
    if (!strcmp(a->sampler, "euler"))
        fp.solver = TD_FLOW_EULER;
    else if (!strcmp(a->sampler, "unipc"))
        fp.solver = TD_FLOW_UNIPC;
    else
        return td_fail(ctx, TD_EINVAL, "sample-toy: unknown sampler '%s' (rcm, euler, unipc)", a->sampler);
    if (fp.guidance > 1 && !m.b_uncond)
        return td_fail(ctx, TD_EINVAL, "sample-toy: --guidance %g needs --b-uncond", fp.guidance);
    return td_flow_sample(ctx, &fp, &dc, m.b_uncond ? &du : NULL, &io, x);
}

int cmd_sample_toy(int argc, char **argv)
{
    toy_args a = { 0 };
    td_ctx ctx;
    td_backend *be = NULL;
    td_tensor t[4] = { { 0 } }, noise = { 0 }, x = { 0 }, scratch = { 0 };
    int rc = parse(argc, argv, &a);

    if (rc)
        return rc == 1 ? 0 : rc;
    td_ctx_init(&ctx);
    rc = td_backend_cpu_create(&ctx, 0, &be);
    if (rc == 0)
        rc = run(&ctx, be, &a, t, &noise, &x, &scratch);
    if (rc == 0)
        rc = td_npy_write(&ctx, a.out, &x);
    if (rc < 0)
        fprintf(stderr, "turbodiff sample-toy: %s\n", ctx.errmsg);
    for (int i = 0; i < 4; i++)
        td_tensor_free(&t[i]);
    td_tensor_free(&noise);
    td_tensor_free(&x);
    td_tensor_free(&scratch);
    td_backend_destroy(&be);
    return rc < 0 ? 1 : 0;
}
