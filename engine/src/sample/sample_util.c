/* Shared checks and model calls of the samplers (sample_util.h). */
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

int td_sample_dev_new(td_ctx *ctx, const char *who, const td_sample_io *io, const td_tensor *x_host,
                      td_sample_dev *d)
{
    td_backend *be = io->be;
    *d = (td_sample_dev){ 0 };
    if (!be)
        return td_fail(ctx, TD_EINVAL, "%s: no backend given for the model's latents", who);
    d->be = be;
    TD_TRY(be->ops->tensor_new(be, &d->x, be->act, x_host->ndim, x_host->shape));
    return be->ops->tensor_new(be, &d->v, be->act, x_host->ndim, x_host->shape);
}

void td_sample_dev_free(td_sample_dev *d)
{
    if (!d->be)
        return;
    d->be->ops->tensor_free(d->be, &d->x);
    d->be->ops->tensor_free(d->be, &d->v);
}

int td_sample_upload(td_sample_dev *d, const td_tensor *x_host)
{
    return d->be->ops->write(d->be, &d->x, x_host);
}

int td_sample_denoise(td_ctx *ctx, const char *who, const td_denoiser *den, int expert,
                      td_sample_dev *d, double t, td_tensor *v_host)
{
    int rc = den->fn(den->opaque, expert, &d->x, t, &d->v);
    if (rc < 0 && !ctx->err)
        td_fail(ctx, rc, "%s: denoiser failed at t=%g (code %d)", who, t, rc);
    if (rc < 0)
        return rc;
    return d->be->ops->read(d->be, &d->v, v_host);
}
