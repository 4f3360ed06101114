/* Helpers the samplers share; not part of the sampler API. */
#ifndef TD_SAMPLE_UTIL_H
#define TD_SAMPLE_UTIL_H

#include "sample.h"

/* The backend tensors a run hands the denoiser: x and v of the latent
 * shape in be->act, made once per run. */
typedef struct td_sample_dev {
    td_backend *be;
    td_tensor x, v;
} td_sample_dev;

/* The latent tensor a sampler runs on: contiguous f32, non-empty. */
int td_sample_check_latents(td_ctx *ctx, const char *who, const td_tensor *x);
/* TD_ECANCELLED with a message when the cancel flag is up. */
int td_sample_check_cancel(td_ctx *ctx, const char *who, const td_sample_io *io, int step);
/* x and v on io->be for latents of x_host's shape; TD_EINVAL without a backend. */
int td_sample_dev_new(td_ctx *ctx, const char *who, const td_sample_io *io, const td_tensor *x_host,
                      td_sample_dev *d);
void td_sample_dev_free(td_sample_dev *d);
/* The latents x_host (host f32) up into d->x: one write. */
int td_sample_upload(td_sample_dev *d, const td_tensor *x_host);
/* Call the denoiser on d->x and read its velocity into v_host (host f32):
 * one read. A failure it did not record gets a message naming t. */
int td_sample_denoise(td_ctx *ctx, const char *who, const td_denoiser *den, int expert,
                      td_sample_dev *d, double t, td_tensor *v_host);

/* The state of the samplers that keep x in f64 as upstream does (rCM and
 * DMD): x, the last velocity and a noise draw on the host, and the backend
 * tensors the denoiser runs on. */
typedef struct td_sample_state {
    int64_t n;
    double *x;
    float *v, *noise;
    td_sample_dev dev;
} td_sample_state;

/* Buffers for latents of x_host's shape (checked as td_sample_check_latents). */
int td_sample_state_new(td_ctx *ctx, const char *who, const td_sample_io *io,
                        const td_tensor *x_host, td_sample_state *st);
void td_sample_state_free(td_sample_state *st);
/* x_host = the state rounded to f32. */
void td_sample_state_round(const td_sample_state *st, td_tensor *x_host);
/* The denoiser's velocity at t, into st->v, for the state rounded to f32
 * (staged in x_host for its one write). */
int td_sample_state_velocity(td_ctx *ctx, const char *who, const td_denoiser *den, int expert,
                             td_sample_state *st, td_tensor *x_host, double t);

#endif
