/* rCM few-step sampling as TurboDiffusion runs it (see rcm.h). */
#include <math.h>
#include <stdlib.h>

#include "rcm.h"
#include "sample_util.h"

void td_rcm_params_default(td_rcm_params *p)
{
    p->steps = 4;
    p->sigma_max = 80.0;
    p->ode = 0;
    p->two_experts = 0;
    p->boundary = 0.9;
}

int td_rcm_schedule(td_ctx *ctx, int steps, double sigma_max, double *t)
{
    /* TrigFlow times between atan(sigma_max) and 0, fixed by rCM distillation. */
    static const double mid[TD_RCM_MAX_STEPS - 1] = { 1.5, 1.4, 1.0 };

    if (steps < 1 || steps > TD_RCM_MAX_STEPS)
        return td_fail(ctx, TD_EINVAL, "rcm: steps %d outside 1..%d", steps, TD_RCM_MAX_STEPS);
    if (!(sigma_max > 0) || !isfinite(sigma_max))
        return td_fail(ctx, TD_EINVAL, "rcm: sigma_max %g must be positive and finite", sigma_max);
    for (int i = 0; i <= steps; i++) {
        double s = i == 0 ? atan(sigma_max) : i == steps ? 0.0 : mid[i - 1];
        t[i] = sin(s) / (cos(s) + sin(s));
    }
    return 0;
}

int td_rcm_noise_count(const td_rcm_params *p)
{
    return p->ode ? 1 : p->steps;
}

static int check_params(td_ctx *ctx, const td_rcm_params *p, const td_denoiser *model)
{
    if (!model || !model->fn)
        return td_fail(ctx, TD_EINVAL, "rcm: no denoiser given");
    if (p->two_experts && !(p->boundary > 0 && p->boundary < 1))
        return td_fail(ctx, TD_EINVAL, "rcm: expert boundary %g outside (0, 1)", p->boundary);
    return 0;
}

int td_rcm_sample(td_ctx *ctx, const td_rcm_params *p, const td_denoiser *model,
                  const td_sample_io *io, td_tensor *x)
{
    double t[TD_RCM_MAX_STEPS + 1];
    td_sample_state st;
    int rc;

    TD_TRY(td_rcm_schedule(ctx, p->steps, p->sigma_max, t));
    TD_TRY(check_params(ctx, p, model));
    TD_TRY(td_sample_state_new(ctx, "rcm", io, x, &st));

    /* Upstream keeps the state in f64 and hands the model a rounded copy. */
    if ((rc = td_noise_src_get(ctx, &io->noise, 0, st.noise, st.n)) < 0)
        goto out;
    for (int64_t i = 0; i < st.n; i++)
        st.x[i] = (double)st.noise[i] * t[0];
    for (int s = 0; s < p->steps; s++) {
        double tc = t[s], tn = t[s + 1];
        int expert = p->two_experts && tc < p->boundary ? TD_EXPERT_LOW : TD_EXPERT_HIGH;

        if ((rc = td_sample_check_cancel(ctx, "rcm", io, s)) < 0 ||
            (rc = td_sample_state_velocity(ctx, "rcm", model, expert, &st, x, tc)) < 0)
            goto out;
        if (p->ode) {
            for (int64_t i = 0; i < st.n; i++)
                st.x[i] -= (tc - tn) * st.v[i];
        } else if (tn > 0) {
            if ((rc = td_noise_src_get(ctx, &io->noise, s + 1, st.noise, st.n)) < 0)
                goto out;
            for (int64_t i = 0; i < st.n; i++)
                st.x[i] = (1 - tn) * (st.x[i] - tc * st.v[i]) + tn * st.noise[i];
        } else {
            /* t_next = 0: upstream's (1 - 0) (x - t v) + 0 * noise, exactly. */
            for (int64_t i = 0; i < st.n; i++)
                st.x[i] -= tc * st.v[i];
        }
        if (io->on_step)
            io->on_step(io->step_opaque, s + 1, p->steps, tn);
    }
    td_sample_state_round(&st, x);
out:
    td_sample_state_free(&st);
    return rc;
}
