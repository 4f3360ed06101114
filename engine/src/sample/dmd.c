/* DMD few-step sampling as FastVideo runs FastWan (see dmd.h). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "dmd.h"
#include "sample_util.h"

void td_dmd_params_default(td_dmd_params *p)
{
    /* fastvideo/configs/pipelines/wan.py: dmd_denoising_steps of the FastWan
     * configs; fastvideo/pipelines/stages/denoising.py: DmdDenoisingStage's
     * FlowMatchEulerDiscreteScheduler(shift=8.0). */
    static const int published[] = { 1000, 757, 522 };
    *p = (td_dmd_params){ .steps = 3, .shift = 8.0 };
    for (int i = 0; i < p->steps; i++)
        p->timesteps[i] = published[i];
}

/* The step list; `who` starts each message: "dmd", or the option and the
 * list it parsed. */
static int check_steps(td_ctx *ctx, const char *who, const td_dmd_params *p)
{
    if (p->steps < 1 || p->steps > TD_DMD_MAX_STEPS)
        return td_fail(ctx, TD_EINVAL, "%s: %d steps: a DMD step list holds 1 to %d timesteps",
                       who, p->steps, TD_DMD_MAX_STEPS);
    for (int i = 0; i < p->steps; i++) {
        if (p->timesteps[i] < 1 || p->timesteps[i] > TD_DMD_TRAIN_STEPS)
            return td_fail(ctx, TD_EINVAL, "%s: timestep %d is outside 1..%d (FastWan: 1000,757,522)",
                           who, p->timesteps[i], TD_DMD_TRAIN_STEPS);
        if (i && p->timesteps[i] >= p->timesteps[i - 1])
            return td_fail(ctx, TD_EINVAL, "%s: timesteps must decrease, but %d follows %d "
                           "(FastWan: 1000,757,522)", who, p->timesteps[i], p->timesteps[i - 1]);
    }
    return 0;
}

int td_dmd_check(td_ctx *ctx, const td_dmd_params *p)
{
    if (!(p->shift > 0) || !isfinite(p->shift))
        return td_fail(ctx, TD_EINVAL, "dmd: shift %g must be positive and finite (FastVideo: 8)",
                       p->shift);
    return check_steps(ctx, "dmd", p);
}

int td_dmd_parse_timesteps(td_ctx *ctx, const char *what, const char *list, td_dmd_params *p)
{
    const char *s = list;
    char who[160];
    int n = 0;

    for (;;) {
        char *end;
        long v;
        while (isspace((unsigned char)*s))
            s++;
        errno = 0;
        v = strtol(s, &end, 10);
        if (end == s || errno || v < 1 || v > TD_DMD_TRAIN_STEPS)
            return td_fail(ctx, TD_EINVAL, "%s '%s': expected DiT timesteps from 1 to %d separated "
                           "by commas (or '|'), e.g. 1000,757,522", what, list, TD_DMD_TRAIN_STEPS);
        if (n == TD_DMD_MAX_STEPS)
            return td_fail(ctx, TD_EINVAL, "%s '%s': more than %d timesteps", what, list,
                           TD_DMD_MAX_STEPS);
        p->timesteps[n++] = (int)v;
        s = end;
        while (isspace((unsigned char)*s))
            s++;
        if (!*s)
            break;
        /* '|' too: FFmpeg's list separator, which needs no escaping in a
         * filtergraph where ',' separates filters. */
        if (*s != ',' && *s != '|')
            return td_fail(ctx, TD_EINVAL, "%s '%s': expected DiT timesteps separated by commas "
                           "(or '|'), e.g. 1000,757,522", what, list);
        s++;
    }
    p->steps = n;
    snprintf(who, sizeof(who), "%s '%s'", what, list);
    return check_steps(ctx, who, p);
}

/* The scheduler's table entry k (k = 1000 .. 1) in f32, one rounding per
 * operation as torch does it: separate statements, so that no compiler may
 * fuse a multiply and an add. */
static float grid_sigma(int k, double shift)
{
    float u = (float)k / (float)TD_DMD_TRAIN_STEPS;
    float num = (float)shift * u;
    float slope = (float)(shift - 1.0) * u;
    float den = 1.0f + slope;
    return num / den;
}

/* sigma of the table timestep nearest T; torch.argmin keeps the first of
 * equal distances, and the table runs from k = 1000 down. */
static double sigma_of(int T, double shift)
{
    double best = INFINITY, sigma = 1.0;
    for (int k = TD_DMD_TRAIN_STEPS; k >= 1; k--) {
        float s = grid_sigma(k, shift);
        float table_t = s * (float)TD_DMD_TRAIN_STEPS;
        double d = fabs((double)table_t - T);
        if (d < best) {
            best = d;
            sigma = s;
        }
    }
    return sigma;
}

int td_dmd_sigmas(td_ctx *ctx, const td_dmd_params *p, double *sigma)
{
    TD_TRY(td_dmd_check(ctx, p));
    for (int i = 0; i < p->steps; i++)
        sigma[i] = sigma_of(p->timesteps[i], p->shift);
    return 0;
}

int td_dmd_noise_count(const td_dmd_params *p)
{
    return p->steps;
}

int td_dmd_sample(td_ctx *ctx, const td_dmd_params *p, const td_denoiser *model,
                  const td_sample_io *io, td_tensor *x)
{
    double sig[TD_DMD_MAX_STEPS];
    td_sample_state st;
    int rc;

    TD_TRY(td_dmd_sigmas(ctx, p, sig));
    if (!model || !model->fn)
        return td_fail(ctx, TD_EINVAL, "dmd: no denoiser given");
    TD_TRY(td_sample_state_new(ctx, "dmd", io, x, &st));

    if ((rc = td_noise_src_get(ctx, &io->noise, 0, st.noise, st.n)) < 0)
        goto out;
    for (int64_t i = 0; i < st.n; i++)
        st.x[i] = st.noise[i];
    for (int s = 0; s < p->steps; s++) {
        double t = (double)p->timesteps[s] / TD_DMD_TRAIN_STEPS;
        int last = s == p->steps - 1;

        if ((rc = td_sample_check_cancel(ctx, "dmd", io, s)) < 0 ||
            (rc = td_sample_state_velocity(ctx, "dmd", model, TD_EXPERT_HIGH, &st, x, t)) < 0)
            goto out;
        if (last) {
            for (int64_t i = 0; i < st.n; i++)
                st.x[i] -= sig[s] * st.v[i];
        } else {
            double sn = sig[s + 1];
            if ((rc = td_noise_src_get(ctx, &io->noise, s + 1, st.noise, st.n)) < 0)
                goto out;
            for (int64_t i = 0; i < st.n; i++)
                st.x[i] = (1 - sn) * (st.x[i] - sig[s] * st.v[i]) + sn * st.noise[i];
        }
        if (io->on_step)
            io->on_step(io->step_opaque, s + 1, p->steps, last ? 0.0 : sig[s + 1]);
    }
    td_sample_state_round(&st, x);
out:
    td_sample_state_free(&st);
    return rc;
}
