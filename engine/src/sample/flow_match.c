/* Flow-matching Euler / UniPC sampling with classifier-free guidance (see
 * flow_match.h). UniPC follows diffusers' UniPCMultistepScheduler.step for
 * solver_order 2, bh2, predict_x0 and flow sigmas, where alpha = 1 - sigma,
 * lambda = log(alpha) - log(sigma), the model output is turned into
 * x0 = x - sigma v, and the predictor (UniP) / corrector (UniC) combine the
 * last two x0 predictions. */
#include <math.h>
#include <stdlib.h>

#include "flow_match.h"
#include "sample_util.h"

#define FLOW_TRAIN_STEPS 1000

void td_flow_params_default(td_flow_params *p)
{
    p->solver = TD_FLOW_UNIPC;
    p->steps = 50;
    p->shift = 5.0;
    p->guidance = 5.0;
    p->two_experts = 0;
    p->boundary = 0.875;
    p->guidance_low = 5.0;
}

int td_flow_schedule(td_ctx *ctx, int steps, double shift, double *sigmas, double *timesteps)
{
    double step;

    if (steps < 1 || steps > TD_FLOW_MAX_STEPS)
        return td_fail(ctx, TD_EINVAL, "flow: steps %d outside 1..%d", steps, TD_FLOW_MAX_STEPS);
    if (!(shift > 0) || !isfinite(shift))
        return td_fail(ctx, TD_EINVAL, "flow: shift %g must be positive and finite", shift);
    /* numpy's linspace(1, 1/1000, steps + 1): start + i * (stop - start) / steps */
    step = (1.0 / FLOW_TRAIN_STEPS - 1.0) / steps;
    for (int i = 0; i < steps; i++) {
        double s = (double)i * step + 1.0;
        s = shift * s / (1 + (shift - 1) * s);
        if (i == 0 && fabs(s - 1) < 1e-6)
            s -= 1e-6;   /* diffusers: keeps log(sigma_0) finite in UniPC */
        timesteps[i] = trunc(s * FLOW_TRAIN_STEPS);
        sigmas[i] = (float)s;
    }
    sigmas[steps] = 0;
    return 0;
}

static double lambda_of(double sigma)
{
    return log(1 - sigma) - log(sigma);
}

typedef struct unipc_state {
    double *m_prev, *m_last;   /* x0 predictions of the two latest steps */
    double *last;              /* the sample the latest predictor started from */
    int this_order, lower_order_nums;
} unipc_state;

/* UniC: correct x (in place), the result of the predictor that started at
 * step i - 1, with this step's x0 prediction m. */
static void unipc_correct(const unipc_state *u, const double *sig, int i, const double *m,
                          double *x, int64_t n)
{
    double st = sig[i], s0 = sig[i - 1], at = 1 - st;
    double h = lambda_of(st) - lambda_of(s0), hh = -h;
    double h_phi_1 = expm1(hh), B_h = expm1(hh);
    double h_phi_k = h_phi_1 / hh - 1, fact = 1, b[2];
    double rho_d1 = 0, rho_t = 0.5, rk = 0;

    for (int k = 0; k < u->this_order; k++) {
        b[k] = h_phi_k * fact / B_h;
        fact *= k + 2;
        h_phi_k = h_phi_k / hh - 1 / fact;
    }
    if (u->this_order == 2) {
        /* solve [[1, 1], [rk, 1]] rho = b */
        rk = (lambda_of(sig[i - 2]) - lambda_of(s0)) / h;
        rho_d1 = (b[0] - b[1]) / (1 - rk);
        rho_t = b[0] - rho_d1;
    }
    for (int64_t j = 0; j < n; j++) {
        double m0 = u->m_last[j], corr = rho_t * (m[j] - m0);
        if (u->this_order == 2)
            corr += rho_d1 * (u->m_prev[j] - m0) / rk;
        x[j] = st / s0 * u->last[j] - at * h_phi_1 * m0 - at * B_h * corr;
    }
}

/* UniP: step x from sigma[i] to sigma[i + 1] with the x0 predictions. */
static void unipc_predict(const unipc_state *u, const double *sig, int i, double *x, int64_t n)
{
    double st = sig[i + 1], s0 = sig[i], at = 1 - st;
    double h = lambda_of(st) - lambda_of(s0), hh = -h;
    double h_phi_1 = expm1(hh), B_h = expm1(hh), rk = 0;

    if (u->this_order == 2)
        rk = (lambda_of(sig[i - 1]) - lambda_of(s0)) / h;
    for (int64_t j = 0; j < n; j++) {
        double m0 = u->m_last[j];
        double xt = st / s0 * x[j] - at * h_phi_1 * m0;
        if (u->this_order == 2)
            xt -= at * B_h * 0.5 * (u->m_prev[j] - m0) / rk;
        x[j] = xt;
    }
}

static int check_params(td_ctx *ctx, const td_flow_params *p, const td_denoiser *cond,
                        const td_denoiser *uncond)
{
    if (p->solver != TD_FLOW_EULER && p->solver != TD_FLOW_UNIPC)
        return td_fail(ctx, TD_EINVAL, "flow: unknown solver %d (0 euler, 1 unipc)", p->solver);
    if (!cond || !cond->fn)
        return td_fail(ctx, TD_EINVAL, "flow: no conditional denoiser given");
    if (!isfinite(p->guidance) || (p->two_experts && !isfinite(p->guidance_low)))
        return td_fail(ctx, TD_EINVAL, "flow: guidance scale must be finite");
    if ((p->guidance > 1 || (p->two_experts && p->guidance_low > 1)) && (!uncond || !uncond->fn))
        return td_fail(ctx, TD_EINVAL, "flow: guidance %g needs an unconditional (negative prompt) denoiser",
                       p->guidance);
    if (p->two_experts && !(p->boundary > 0 && p->boundary < 1))
        return td_fail(ctx, TD_EINVAL, "flow: expert boundary %g outside (0, 1)", p->boundary);
    return 0;
}

typedef struct flow_buf {
    double *x, *m;
    float *xf, *vc, *vu;
    unipc_state u;
    td_sample_dev dev;   /* the model's x and v on the backend */
} flow_buf;

static void flow_buf_free(flow_buf *b)
{
    free(b->x); free(b->m); free(b->xf); free(b->vc); free(b->vu);
    free(b->u.m_prev); free(b->u.m_last); free(b->u.last);
    td_sample_dev_free(&b->dev);
}

static int flow_buf_alloc(flow_buf *b, int64_t n, int unipc)
{
    size_t dn = sizeof(double) * (size_t)n, fn = sizeof(float) * (size_t)n;
    b->x = malloc(dn);
    b->m = malloc(dn);
    b->xf = malloc(fn);
    b->vc = malloc(fn);
    b->vu = malloc(fn);
    if (unipc) {
        b->u.m_prev = malloc(dn);
        b->u.m_last = malloc(dn);
        b->u.last = malloc(dn);
    }
    return b->x && b->m && b->xf && b->vc && b->vu &&
           (!unipc || (b->u.m_prev && b->u.m_last && b->u.last));
}

/* v = v_uncond + g (v_cond - v_uncond) into b->vc, the expert chosen by the
 * integer timestep as diffusers' Wan pipeline does. Both calls see one
 * upload of the latents. */
static int guided_velocity(td_ctx *ctx, const td_flow_params *p, const td_denoiser *cond,
                           const td_denoiser *uncond, flow_buf *b, const td_tensor *x,
                           double timestep)
{
    int low = p->two_experts && timestep < p->boundary * FLOW_TRAIN_STEPS;
    int expert = low ? TD_EXPERT_LOW : TD_EXPERT_HIGH;
    double g = low ? p->guidance_low : p->guidance, t = timestep / FLOW_TRAIN_STEPS;
    int64_t n = td_numel(x);
    td_tensor xt = td_view(b->xf, TD_F32, x->ndim, x->shape);
    td_tensor vc = td_view(b->vc, TD_F32, x->ndim, x->shape);
    td_tensor vu = td_view(b->vu, TD_F32, x->ndim, x->shape);

    for (int64_t i = 0; i < n; i++)
        b->xf[i] = (float)b->x[i];
    TD_TRY(td_sample_upload(&b->dev, &xt));
    TD_TRY(td_sample_denoise(ctx, "flow", cond, expert, &b->dev, t, &vc));
    if (g > 1) {
        TD_TRY(td_sample_denoise(ctx, "flow", uncond, expert, &b->dev, t, &vu));
        for (int64_t i = 0; i < n; i++)
            b->vc[i] = b->vu[i] + (float)g * (b->vc[i] - b->vu[i]);
    }
    return 0;
}

int td_flow_sample(td_ctx *ctx, const td_flow_params *p, const td_denoiser *cond,
                   const td_denoiser *uncond, const td_sample_io *io, td_tensor *x)
{
    double *sig = NULL, *ts = NULL;
    flow_buf b = { 0 };
    int64_t n;
    int rc, N = p->steps;

    TD_TRY(check_params(ctx, p, cond, uncond));
    TD_TRY(td_sample_check_latents(ctx, "flow", x));
    if (N < 1 || N > TD_FLOW_MAX_STEPS)
        return td_fail(ctx, TD_EINVAL, "flow: steps %d outside 1..%d", N, TD_FLOW_MAX_STEPS);
    n = td_numel(x);
    sig = malloc(sizeof(double) * (N + 1));
    ts = malloc(sizeof(double) * (N + 1));
    if (!sig || !ts || !flow_buf_alloc(&b, n, p->solver == TD_FLOW_UNIPC)) {
        rc = td_fail(ctx, TD_ENOMEM, "flow: out of memory for %lld latent values", (long long)n);
        goto out;
    }
    if ((rc = td_flow_schedule(ctx, N, p->shift, sig, ts)) < 0 ||
        (rc = td_sample_dev_new(ctx, "flow", io, x, &b.dev)) < 0)
        goto out;
    if ((rc = td_noise_src_get(ctx, &io->noise, 0, b.xf, n)) < 0)
        goto out;
    for (int64_t i = 0; i < n; i++)
        b.x[i] = b.xf[i];

    for (int s = 0; s < N; s++) {
        if ((rc = td_sample_check_cancel(ctx, "flow", io, s)) < 0)
            goto out;
        if ((rc = guided_velocity(ctx, p, cond, uncond, &b, x, ts[s])) < 0)
            goto out;
        if (p->solver == TD_FLOW_EULER) {
            for (int64_t i = 0; i < n; i++)
                b.x[i] += (sig[s + 1] - sig[s]) * b.vc[i];
        } else {
            double *tmp;
            for (int64_t i = 0; i < n; i++)
                b.m[i] = b.x[i] - sig[s] * b.vc[i];
            if (s > 0)
                unipc_correct(&b.u, sig, s, b.m, b.x, n);
            tmp = b.u.m_prev;   /* rotate: m_prev <- m_last <- m */
            b.u.m_prev = b.u.m_last;
            b.u.m_last = b.m;
            b.m = tmp;
            b.u.this_order = N - s < 2 ? N - s : 2;   /* lower_order_final */
            if (b.u.this_order > b.u.lower_order_nums + 1)
                b.u.this_order = b.u.lower_order_nums + 1;
            for (int64_t i = 0; i < n; i++)
                b.u.last[i] = b.x[i];
            unipc_predict(&b.u, sig, s, b.x, n);
            if (b.u.lower_order_nums < 2)
                b.u.lower_order_nums++;
        }
        if (io->on_step)
            io->on_step(io->step_opaque, s + 1, N, sig[s + 1]);
    }
    for (int64_t i = 0; i < n; i++)
        ((float *)x->data)[i] = (float)b.x[i];
    rc = 0;
out:
    free(sig);
    free(ts);
    flow_buf_free(&b);
    return rc;
}
