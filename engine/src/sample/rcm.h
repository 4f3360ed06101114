/*
 * rCM sampling as TurboDiffusion runs it (turbodiffusion/inference/
 * wan2.1_t2v_infer.py and wan2.2_i2v_infer.py in thu-ml/TurboDiffusion):
 *
 *   TrigFlow times  [atan(sigma_max), 1.5, 1.4, 1.0][:steps] + [0]
 *   RF times        t = sin(s) / (sin(s) + cos(s))           (f64)
 *   x               = noise_0 * t_0                          (f64 state)
 *   each step i:    v = model(x, t_i)   (DiT timestep t_i * 1000)
 *     stochastic:   x = (1 - t_{i+1}) (x - t_i v) + t_{i+1} noise_{i+1}
 *     ode:          x = x - (t_i - t_{i+1}) v
 *   Wan2.2 A14B:    the high-noise expert while t_i >= boundary, then low.
 *
 * Upstream feeds the DiT x in bf16 and the timestep as bf16(f32(t) * 1000);
 * we pass x rounded to f32 (then to be->act by the backend's write) and the
 * exact t, the DiT decides its rounding.
 *
 * Transfers per step: the f32 latents up to the backend once (write), the
 * velocity down once (read); x stays on the host in f64 (see sample.h).
 */
#ifndef TD_SAMPLE_RCM_H
#define TD_SAMPLE_RCM_H

#include "sample.h"

#define TD_RCM_MAX_STEPS 4

typedef struct td_rcm_params {
    int steps;           /* 1..4 */
    double sigma_max;    /* > 0; upstream defaults 80 (t2v), 200 (i2v) */
    int ode;             /* deterministic update, no fresh noise */
    int two_experts;     /* Wan2.2 A14B pair: switch experts at boundary */
    double boundary;     /* in (0, 1); upstream default 0.9 */
} td_rcm_params;

/* Defaults for text-to-video: 4 steps, sigma_max 80, stochastic, one model. */
void td_rcm_params_default(td_rcm_params *p);

/* The steps + 1 rectified-flow times, t[0] > ... > t[steps] = 0. */
int td_rcm_schedule(td_ctx *ctx, int steps, double sigma_max, double *t);

/* How many noises a run draws (initial + one per stochastic step that has
 * t_next > 0): what --noise-from must supply. */
int td_rcm_noise_count(const td_rcm_params *p);

/*
 * Run the sampler on the model's backend io->be. x: a contiguous TD_F32
 * host tensor of the latent shape; its contents are replaced by the final
 * latents. Returns 0, a negative TD_E*
 * (TD_ECANCELLED when io->cancel was raised), or what the denoiser returned.
 */
int td_rcm_sample(td_ctx *ctx, const td_rcm_params *p, const td_denoiser *model,
                  const td_sample_io *io, td_tensor *x);

#endif
