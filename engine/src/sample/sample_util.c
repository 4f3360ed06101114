/* Shared checks and model calls of the samplers (sample_util.h). */
#include <stdlib.h>

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

int td_sample_state_new(td_ctx *ctx, const char *who, const td_sample_io *io,
                        const td_tensor *x_host, td_sample_state *st)
{
    int rc;

    *st = (td_sample_state){ 0 };
    TD_TRY(td_sample_check_latents(ctx, who, x_host));
    st->n = td_numel(x_host);
    st->x = malloc(sizeof(double) * (size_t)st->n);
    st->v = malloc(sizeof(float) * (size_t)st->n);
    st->noise = malloc(sizeof(float) * (size_t)st->n);
    if (!st->x || !st->v || !st->noise) {
        td_sample_state_free(st);
        return td_fail(ctx, TD_ENOMEM, "%s: out of memory for %lld latent values", who,
                       (long long)td_numel(x_host));
    }
    if ((rc = td_sample_dev_new(ctx, who, io, x_host, &st->dev)) < 0)
        td_sample_state_free(st);
    return rc;
}

void td_sample_state_free(td_sample_state *st)
{
    td_sample_dev_free(&st->dev);
    free(st->x);
    free(st->v);
    free(st->noise);
    *st = (td_sample_state){ 0 };
}

void td_sample_state_round(const td_sample_state *st, td_tensor *x_host)
{
    for (int64_t i = 0; i < st->n; i++)
        ((float *)x_host->data)[i] = (float)st->x[i];
}

int td_sample_state_velocity(td_ctx *ctx, const char *who, const td_denoiser *den, int expert,
                             td_sample_state *st, td_tensor *x_host, double t)
{
    td_tensor vt = td_view(st->v, TD_F32, x_host->ndim, x_host->shape);

    td_sample_state_round(st, x_host);
    TD_TRY(td_sample_upload(&st->dev, x_host));
    return td_sample_denoise(ctx, who, den, expert, &st->dev, t, &vt);
}
