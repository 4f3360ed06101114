/* Helpers the samplers share; not part of the sampler API. */
#ifndef TD_SAMPLE_UTIL_H
#define TD_SAMPLE_UTIL_H

#include "sample.h"

/* The latent tensor a sampler runs on: contiguous f32, non-empty. */
int td_sample_check_latents(td_ctx *ctx, const char *who, const td_tensor *x);
/* TD_ECANCELLED with a message when the cancel flag is up. */
int td_sample_check_cancel(td_ctx *ctx, const char *who, const td_sample_io *io, int step);
/* Call the denoiser; a failure it did not record gets a message naming t. */
int td_sample_denoise(td_ctx *ctx, const char *who, const td_denoiser *d, int expert,
                      const td_tensor *x, double t, td_tensor *v);

#endif
