/* Shared checks of the samplers (sample_util.h). */
#include "sample_util.h"

int td_sample_check_latents(td_ctx *ctx, const char *who, const td_tensor *x)
{
    char buf[96];
    if (x->dtype != TD_F32 || !td_is_contiguous(x) || td_numel(x) < 1 || !x->data)
        return td_fail(ctx, TD_EINVAL, "%s: latents must be a non-empty contiguous f32 tensor, got %s",
                       who, td_shape_str(x, buf, sizeof(buf)));
    return 0;
}

int td_sample_check_cancel(td_ctx *ctx, const char *who, const td_sample_io *io, int step)
{
    if (io->cancel && *io->cancel)
        return td_fail(ctx, TD_ECANCELLED, "%s: cancelled before step %d", who, step + 1);
    return 0;
}

int td_sample_denoise(td_ctx *ctx, const char *who, const td_denoiser *d, int expert,
                      const td_tensor *x, double t, td_tensor *v)
{
    int rc = d->fn(d->opaque, expert, x, t, v);
    if (rc < 0 && !ctx->err)
        td_fail(ctx, rc, "%s: denoiser failed at t=%g (code %d)", who, t, rc);
    return rc < 0 ? rc : 0;
}
