/*
 * Samplers (sample/rcm.c, sample/flow_match.c, sample/dmd.c): schedules against values
 * computed another way, toy denoisers whose result is known in closed form,
 * expert switching, given noise stacks, cancel, and bad arguments. The
 * toy models see backend tensors (CPU backend) and move them with read and
 * write, as a model on any backend would.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sample/dmd.h"
#include "sample/flow_match.h"
#include "sample/noise.h"
#include "sample/rcm.h"

enum { N = 37 };   /* latent values; odd so noise blocks are ragged */

/* rCM: t = tan(s) / (1 + tan(s)) is the same map as sin / (sin + cos), and
 * tan(atan(sigma_max)) = sigma_max. */
static void test_rcm_schedule(void)
{
    static const double mid[3] = { 1.5, 1.4, 1.0 };
    td_ctx ctx;
    td_ctx_init(&ctx);
    for (int steps = 1; steps <= 4; steps++) {
        double t[5];
        CHECK(td_rcm_schedule(&ctx, steps, 80.0, t) == 0, "%s", ctx.errmsg);
        CHECK(fabs(t[0] - 80.0 / 81.0) < 1e-15, "steps %d: t0 %.17g", steps, t[0]);
        for (int i = 1; i < steps; i++)
            CHECK(fabs(t[i] - tan(mid[i - 1]) / (1 + tan(mid[i - 1]))) < 1e-14,
                  "steps %d: t%d %.17g", steps, i, t[i]);
        CHECK(t[steps] == 0, "steps %d: last %g", steps, t[steps]);
    }
    double t[5];
    CHECK(td_rcm_schedule(&ctx, 2, 200.0, t) == 0 && fabs(t[0] - 200.0 / 201.0) < 1e-15,
          "sigma_max 200: t0 %.17g", t[0]);
    /* 4 steps at sigma_max 80, values from Python math.sin/cos */
    td_rcm_schedule(&ctx, 4, 80.0, t);
    CHECK(fabs(t[1] - 0.93378106) < 1e-8 && fabs(t[2] - 0.85289539) < 1e-8 &&
          fabs(t[3] - 0.60897905) < 1e-8, "t = %.8f %.8f %.8f", t[1], t[2], t[3]);
    CHECK(td_rcm_schedule(&ctx, 0, 80, t) == TD_EINVAL, "0 steps accepted");
    CHECK(td_rcm_schedule(&ctx, 5, 80, t) == TD_EINVAL, "5 steps accepted");
    CHECK(td_rcm_schedule(&ctx, 4, -1, t) == TD_EINVAL, "negative sigma_max accepted");
    CHECK(td_rcm_schedule(&ctx, 4, INFINITY, t) == TD_EINVAL, "infinite sigma_max accepted");
}

/* Flow: diffusers' shifted linspace, sigma_0 nudged below 1, integer
 * timesteps; values written out for 4 steps at shift 5. */
static void test_flow_schedule(void)
{
    td_ctx ctx;
    double s[5], ts[5];
    td_ctx_init(&ctx);
    CHECK(td_flow_schedule(&ctx, 4, 5.0, s, ts) == 0, "%s", ctx.errmsg);
    double lin[4] = { 1.0, 0.75025, 0.5005, 0.25075 };
    for (int i = 0; i < 4; i++) {
        double want = 5 * lin[i] / (1 + 4 * lin[i]) - (i == 0 ? 1e-6 : 0);
        CHECK(fabs(s[i] - want) < 1e-7, "sigma %d: %.9g vs %.9g", i, s[i], want);
        CHECK(ts[i] == floor(want * 1000), "timestep %d: %g", i, ts[i]);
        CHECK(s[i] == (double)(float)s[i], "sigma %d not f32-rounded", i);
    }
    CHECK(s[4] == 0 && ts[0] == 999 && ts[1] == 937, "last %g, ts %g %g", s[4], ts[0], ts[1]);
    CHECK(td_flow_schedule(&ctx, 0, 5, s, ts) == TD_EINVAL, "0 steps accepted");
    CHECK(td_flow_schedule(&ctx, 4, 0, s, ts) == TD_EINVAL, "shift 0 accepted");
}

/* Toy model: v = c x + d t (+ a per-expert offset), recording the calls. */
typedef struct toy {
    td_backend *be;
    double c, d, offset[2];
    int calls, experts[64];
    double ts[64];
    int fail_at;
    volatile int *cancel_at_call2;
} toy;

static int toy_fn(void *opaque, int expert, const td_tensor *x, double t, td_tensor *v)
{
    toy *m = opaque;
    float xs[N], vs[N];
    td_tensor xh = td_view1(xs, TD_F32, N), vh = td_view1(vs, TD_F32, N);
    if (m->calls == m->fail_at)
        return TD_EIO;
    m->experts[m->calls] = expert;
    m->ts[m->calls++] = t;
    if (m->cancel_at_call2 && m->calls == 2)
        *m->cancel_at_call2 = 1;
    TD_TRY(m->be->ops->read(m->be, x, &xh));
    for (int64_t i = 0; i < N; i++)
        vs[i] = (float)(m->c * xs[i] + m->d * t + m->offset[expert]);
    return m->be->ops->write(m->be, v, &vh);
}

static void test_rcm_toy(td_backend *be, uint64_t seed)
{
    td_ctx ctx;
    float x[N], noise[5][N];
    int64_t shape[1] = { N };
    td_tensor xt = td_view(x, TD_F32, 1, shape);
    td_ctx_init(&ctx);

    for (int i = 0; i < 5; i++)
        td_noise_fill(seed, (uint64_t)i, noise[i], N);
    for (int ode = 0; ode <= 1; ode++)
        for (int steps = 1; steps <= 4; steps++) {
            td_rcm_params p;
            toy m = { .be = be, .c = -0.3, .d = 0.7, .fail_at = -1 };
            td_denoiser d = { toy_fn, &m };
            td_sample_io io = { .be = be, .noise = { .seed = seed } };
            double t[5], want[N];

            td_rcm_params_default(&p);
            p.steps = steps;
            p.ode = ode;
            td_rcm_schedule(&ctx, steps, 80, t);
            for (int i = 0; i < N; i++) {
                double xd = (double)noise[0][i] * t[0];
                for (int s = 0; s < steps; s++) {
                    double v = (double)(float)(m.c * (float)xd + m.d * t[s]);
                    xd = ode ? xd - (t[s] - t[s + 1]) * v
                             : (1 - t[s + 1]) * (xd - t[s] * v) + t[s + 1] * (s + 1 < steps ? noise[s + 1][i] : 0);
                }
                want[i] = xd;
            }
            CHECK(td_rcm_noise_count(&p) == (ode ? 1 : steps), "noise count");
            CHECK(td_rcm_sample(&ctx, &p, &d, &io, &xt) == 0, "%s", ctx.errmsg);
            CHECK(m.calls == steps, "%d calls for %d steps", m.calls, steps);
            CHECK(rel_l2_fd(x, want, N) < 1e-6, "ode %d steps %d: rel L2 %g", ode, steps,
                  rel_l2_fd(x, want, N));
            for (int s = 0; s < steps; s++)
                CHECK(m.ts[s] == t[s] && m.experts[s] == TD_EXPERT_HIGH, "call %d: t %g expert %d",
                      s, m.ts[s], m.experts[s]);

            /* the same noises given as a stack give the same result */
            float again[N];
            td_tensor at = td_view(again, TD_F32, 1, shape);
            toy m2 = { .be = be, .c = -0.3, .d = 0.7, .fail_at = -1 };
            td_denoiser d2 = { toy_fn, &m2 };
            td_sample_io io2 = { .be = be, .noise = { .stack = noise[0], .count = td_rcm_noise_count(&p) } };
            CHECK(td_rcm_sample(&ctx, &p, &d2, &io2, &at) == 0, "%s", ctx.errmsg);
            CHECK(!memcmp(x, again, sizeof(x)), "stack vs seed differ (ode %d, %d steps)", ode, steps);
            if (td_rcm_noise_count(&p) > 1) {
                io2.noise.count--;
                td_ctx_clear(&ctx);
                CHECK(td_rcm_sample(&ctx, &p, &d2, &io2, &at) == TD_EINVAL, "short stack accepted");
                CHECK(strstr(ctx.errmsg, "noise") != NULL, "message: %s", ctx.errmsg);
                td_ctx_clear(&ctx);
            }
        }
}

/* A14B: high-noise expert while t >= boundary, then low; with 4 steps at
 * sigma_max 200 the times are 0.995, 0.934, 0.853, 0.609. */
static void test_rcm_experts(td_backend *be, uint64_t seed)
{
    td_ctx ctx;
    float x[N];
    int64_t shape[1] = { N };
    td_tensor xt = td_view(x, TD_F32, 1, shape);
    td_rcm_params p;
    toy m = { .be = be, .c = 0.1, .offset = { 0, 1 }, .fail_at = -1 };
    td_denoiser d = { toy_fn, &m };
    td_sample_io io = { .be = be, .noise = { .seed = seed } };

    td_ctx_init(&ctx);
    td_rcm_params_default(&p);
    p.sigma_max = 200;
    p.two_experts = 1;
    p.boundary = 0.9;
    CHECK(td_rcm_sample(&ctx, &p, &d, &io, &xt) == 0, "%s", ctx.errmsg);
    CHECK(m.experts[0] == TD_EXPERT_HIGH && m.experts[1] == TD_EXPERT_HIGH &&
          m.experts[2] == TD_EXPERT_LOW && m.experts[3] == TD_EXPERT_LOW,
          "experts %d %d %d %d", m.experts[0], m.experts[1], m.experts[2], m.experts[3]);
    p.boundary = 1.5;
    CHECK(td_rcm_sample(&ctx, &p, &d, &io, &xt) == TD_EINVAL, "boundary 1.5 accepted");
    td_ctx_clear(&ctx);
}

/* Cancel between steps, a failing denoiser, bad latents. */
static void test_rcm_stops(td_backend *be, uint64_t seed)
{
    td_ctx ctx;
    float x[N];
    int64_t shape[1] = { N };
    td_tensor xt = td_view(x, TD_F32, 1, shape), bad = td_view(x, TD_I32, 1, shape);
    td_rcm_params p;
    volatile int cancel = 0;
    toy m = { .be = be, .c = 0.1, .fail_at = -1, .cancel_at_call2 = &cancel };
    td_denoiser d = { toy_fn, &m };
    td_sample_io io = { .be = be, .noise = { .seed = seed }, .cancel = (const volatile int *)&cancel };

    td_ctx_init(&ctx);
    td_rcm_params_default(&p);
    CHECK(td_rcm_sample(&ctx, &p, &d, &io, &xt) == TD_ECANCELLED, "cancel ignored");
    CHECK(m.calls == 2, "%d calls after cancel at the second", m.calls);
    td_ctx_clear(&ctx);
    toy f = { .be = be, .fail_at = 1 };
    td_denoiser df = { toy_fn, &f };
    io.cancel = NULL;
    CHECK(td_rcm_sample(&ctx, &p, &df, &io, &xt) == TD_EIO, "denoiser failure lost");
    CHECK(strstr(ctx.errmsg, "denoiser") != NULL, "message: %s", ctx.errmsg);
    td_ctx_clear(&ctx);
    CHECK(td_rcm_sample(&ctx, &p, &d, &io, &bad) == TD_EINVAL, "i32 latents accepted");
    td_ctx_clear(&ctx);
    io.be = NULL;
    CHECK(td_rcm_sample(&ctx, &p, &d, &io, &xt) == TD_EINVAL && strstr(ctx.errmsg, "backend"),
          "no backend accepted: %s", ctx.errmsg);
    td_ctx_clear(&ctx);
}

/* Flow matching with the exact velocity of a straight path from the initial
 * noise n to a target a: v = n - a whatever t is. Euler and UniPC must both
 * land on a, and with CFG on a_u + g (a_c - a_u). */
typedef struct line { td_backend *be; const float *n, *a; int calls; } line;

static int line_fn(void *opaque, int expert, const td_tensor *x, double t, td_tensor *v)
{
    line *l = opaque;
    float vs[N];
    td_tensor vh = td_view1(vs, TD_F32, N);
    (void)expert;
    (void)t;
    (void)x;
    l->calls++;
    for (int i = 0; i < N; i++)
        vs[i] = l->n[i] - l->a[i];
    return l->be->ops->write(l->be, v, &vh);
}

static void test_flow_line(td_backend *be, test_rng *rng, uint64_t seed)
{
    td_ctx ctx;
    float x[N], n0[N], ac[N], au[N];
    double want[N];
    int64_t shape[1] = { N };
    td_tensor xt = td_view(x, TD_F32, 1, shape);

    td_ctx_init(&ctx);
    td_noise_fill(seed, 0, n0, N);
    test_fill(rng, ac, N, 1);
    test_fill(rng, au, N, 1);
    for (int solver = 0; solver <= 1; solver++)
        for (int steps = 1; steps <= 12; steps += 5)
            for (int cfg = 0; cfg <= 1; cfg++) {
                td_flow_params p;
                line lc = { be, n0, ac, 0 }, lu = { be, n0, au, 0 };
                td_denoiser dc = { line_fn, &lc }, du = { line_fn, &lu };
                td_sample_io io = { .be = be, .noise = { .seed = seed } };
                td_flow_params_default(&p);
                p.solver = solver;
                p.steps = steps;
                p.shift = 3.0;
                p.guidance = cfg ? 4.0 : 1.0;
                for (int i = 0; i < N; i++)
                    want[i] = cfg ? au[i] + 4.0 * ((double)ac[i] - au[i]) : ac[i];
                CHECK(td_flow_sample(&ctx, &p, &dc, cfg ? &du : NULL, &io, &xt) == 0, "%s", ctx.errmsg);
                CHECK(rel_l2_fd(x, want, N) < 1e-5, "solver %d steps %d cfg %d: rel L2 %g",
                      solver, steps, cfg, rel_l2_fd(x, want, N));
                CHECK(lc.calls == steps && lu.calls == (cfg ? steps : 0), "calls %d %d", lc.calls, lu.calls);
            }
    td_flow_params p;
    line lc = { be, n0, ac, 0 };
    td_denoiser dc = { line_fn, &lc };
    td_sample_io io = { .be = be, .noise = { .seed = seed } };
    td_flow_params_default(&p);
    CHECK(td_flow_sample(&ctx, &p, &dc, NULL, &io, &xt) == TD_EINVAL, "guidance 5 without uncond accepted");
    td_ctx_clear(&ctx);
    p.guidance = 1;
    p.solver = 7;
    CHECK(td_flow_sample(&ctx, &p, &dc, NULL, &io, &xt) == TD_EINVAL, "solver 7 accepted");
    td_ctx_clear(&ctx);
}

/* DMD: FastWan's published list and its sigmas on FastVideo's shift-8
 * table, as torch computes it (FlowMatchEulerDiscreteScheduler(shift=8.0):
 * 1000 -> 1, 757 -> 0.756756723 (table entry 280), 522 -> 0.521739125
 * (entry 120)); other lists parsed or refused with a message. */
static void test_dmd_schedule(void)
{
    td_ctx ctx;
    td_dmd_params p;
    double sig[TD_DMD_MAX_STEPS];

    td_ctx_init(&ctx);
    td_dmd_params_default(&p);
    CHECK(p.steps == 3 && p.timesteps[0] == 1000 && p.timesteps[1] == 757 && p.timesteps[2] == 522 &&
          p.shift == 8.0, "published list %d: %d %d %d shift %g", p.steps, p.timesteps[0],
          p.timesteps[1], p.timesteps[2], p.shift);
    CHECK(td_dmd_sigmas(&ctx, &p, sig) == 0, "%s", ctx.errmsg);
    CHECK(sig[0] == 1.0 && sig[1] == (double)0.7567567229270935f && sig[2] == (double)0.52173912525177f,
          "sigmas %.17g %.17g %.17g", sig[0], sig[1], sig[2]);
    CHECK(td_dmd_noise_count(&p) == 3, "noise count %d", td_dmd_noise_count(&p));
    /* 750 and 500 fall between table entries; 250 and 1 sit on 960 and 999;
     * FFmpeg's list separator stands for a comma */
    CHECK(td_dmd_parse_timesteps(&ctx, "timesteps", " 750, 500 |250,1", &p) == 0, "%s", ctx.errmsg);
    CHECK(p.steps == 4 && td_dmd_sigmas(&ctx, &p, sig) == 0, "%d steps: %s", p.steps, ctx.errmsg);
    CHECK(sig[0] == (double)0.750257670879364f && sig[1] == (double)0.49971863627433777f &&
          sig[2] == 0.25 && sig[3] == (double)0.007944390177726746f,
          "sigmas %.17g %.17g %.17g %.17g", sig[0], sig[1], sig[2], sig[3]);

    static const char *const bad[][2] = {
        { "", "expected DiT timesteps" }, { "1000,,522", "expected DiT timesteps" },
        { "1000;757", "separated by commas" }, { "1000,757,", "expected DiT timesteps" },
        { "1001", "from 1 to 1000" }, { "0", "from 1 to 1000" }, { "757,1000", "must decrease" },
        { "522,522", "must decrease" }, { "1e3", "separated by commas" }, { "x", "expected DiT" },
        { "99999999999999999999", "from 1 to 1000" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        td_ctx_clear(&ctx);
        CHECK(td_dmd_parse_timesteps(&ctx, "timesteps", bad[i][0], &p) == TD_EINVAL &&
              strstr(ctx.errmsg, bad[i][1]) && strstr(ctx.errmsg, "timesteps '"),
              "'%s': %s", bad[i][0], ctx.errmsg);
    }
    char many[512] = "1000";
    for (int t = 999; t > 999 - TD_DMD_MAX_STEPS; t--)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), ",%d", t);
    td_ctx_clear(&ctx);
    CHECK(td_dmd_parse_timesteps(&ctx, "timesteps", many, &p) == TD_EINVAL &&
          strstr(ctx.errmsg, "more than 64"), "%s", ctx.errmsg);
    td_dmd_params_default(&p);
    p.shift = 0;
    td_ctx_clear(&ctx);
    CHECK(td_dmd_sigmas(&ctx, &p, sig) == TD_EINVAL && strstr(ctx.errmsg, "shift"), "%s", ctx.errmsg);
    td_ctx_clear(&ctx);
}

/* DMD with the toy model, against the loop written out: x0 = x - s_i v,
 * fresh noise i + 1 mixed in at s_{i+1}, the DiT handed T_i / 1000. */
static void test_dmd_toy(td_backend *be, uint64_t seed)
{
    static const char *const lists[] = { "1000,757,522", "1000", "900,600,300,100" };
    td_ctx ctx;
    float x[N], noise[4][N];
    int64_t shape[1] = { N };
    td_tensor xt = td_view(x, TD_F32, 1, shape);

    td_ctx_init(&ctx);
    for (int i = 0; i < 4; i++)
        td_noise_fill(seed, (uint64_t)i, noise[i], N);
    for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
        td_dmd_params p;
        toy m = { .be = be, .c = -0.4, .d = 0.6, .fail_at = -1 };
        td_denoiser d = { toy_fn, &m };
        td_sample_io io = { .be = be, .noise = { .seed = seed } };
        double sig[TD_DMD_MAX_STEPS], want[N];

        td_dmd_params_default(&p);
        CHECK(td_dmd_parse_timesteps(&ctx, "timesteps", lists[l], &p) == 0, "%s", ctx.errmsg);
        CHECK(td_dmd_sigmas(&ctx, &p, sig) == 0, "%s", ctx.errmsg);
        for (int i = 0; i < N; i++) {
            double xd = noise[0][i];
            for (int s = 0; s < p.steps; s++) {
                double t = p.timesteps[s] / 1000.0;
                double v = (double)(float)(m.c * (float)xd + m.d * t);
                double x0 = xd - sig[s] * v;
                xd = s + 1 < p.steps ? (1 - sig[s + 1]) * x0 + sig[s + 1] * noise[s + 1][i] : x0;
            }
            want[i] = xd;
        }
        CHECK(td_dmd_sample(&ctx, &p, &d, &io, &xt) == 0, "%s", ctx.errmsg);
        CHECK(m.calls == p.steps, "%s: %d calls", lists[l], m.calls);
        CHECK(rel_l2_fd(x, want, N) < 1e-6, "%s: rel L2 %g", lists[l], rel_l2_fd(x, want, N));
        for (int s = 0; s < p.steps; s++)
            CHECK(m.ts[s] == p.timesteps[s] / 1000.0 && m.experts[s] == TD_EXPERT_HIGH,
                  "%s call %d: t %g expert %d", lists[l], s, m.ts[s], m.experts[s]);

        /* a stack one noise short is refused, naming the noise */
        toy m2 = { .be = be, .c = -0.4, .d = 0.6, .fail_at = -1 };
        td_denoiser d2 = { toy_fn, &m2 };
        td_sample_io io2 = { .be = be, .noise = { .stack = noise[0], .count = td_dmd_noise_count(&p) } };
        float again[N];
        td_tensor at = td_view(again, TD_F32, 1, shape);
        CHECK(td_dmd_sample(&ctx, &p, &d2, &io2, &at) == 0 && !memcmp(x, again, sizeof(x)),
              "%s: stack vs seed", lists[l]);
        if (p.steps > 1) {
            io2.noise.count--;
            CHECK(td_dmd_sample(&ctx, &p, &d2, &io2, &at) == TD_EINVAL && strstr(ctx.errmsg, "noise"),
                  "%s: short stack: %s", lists[l], ctx.errmsg);
            td_ctx_clear(&ctx);
        }
    }

    /* cancel between steps */
    td_dmd_params p;
    volatile int cancel = 0;
    toy mc = { .be = be, .c = 0.1, .fail_at = -1, .cancel_at_call2 = &cancel };
    td_denoiser dc = { toy_fn, &mc };
    td_sample_io ioc = { .be = be, .noise = { .seed = seed }, .cancel = (const volatile int *)&cancel };
    td_dmd_params_default(&p);
    CHECK(td_dmd_sample(&ctx, &p, &dc, &ioc, &xt) == TD_ECANCELLED && mc.calls == 2,
          "cancel: %d calls, %s", mc.calls, ctx.errmsg);
    td_ctx_clear(&ctx);
}

int main(void)
{
    test_rng rng = test_rng_seeded();
    uint64_t seed = test_next(&rng);
    td_ctx ctx;
    td_backend *be = NULL;
    td_ctx_init(&ctx);
    CHECK(td_backend_cpu_create(&ctx, 0, &be) == 0, "backend: %s", ctx.errmsg);
    test_rcm_schedule();
    test_flow_schedule();
    test_dmd_schedule();
    if (be) {
        test_dmd_toy(be, seed);
        test_rcm_toy(be, seed);
        test_rcm_experts(be, seed);
        test_rcm_stops(be, seed);
        test_flow_line(be, &rng, seed);
    }
    td_backend_destroy(&be);
    return check_summary();
}
