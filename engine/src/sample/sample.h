/*
 * The samplers' shared contract: how a sampler asks the model for a velocity,
 * where its noise comes from, and how it reports progress and is stopped.
 * The samplers themselves are rcm.h (TurboDiffusion's few-step rCM) and
 * flow_match.h (Euler / UniPC with classifier-free guidance, for undistilled
 * Wan checkpoints); noise.h is the counter-based generator behind td_noise_src.
 *
 * Where the data lives: the sampler's state (the latents it integrates, its
 * solver history) stays on the host, in f64 where upstream keeps it so;
 * the model runs on a backend (io->be). Per model call the sampler writes
 * the latents, rounded to f32, into a backend tensor once and reads the
 * velocity back into a host f32 buffer once: one latent up, one down per
 * call (rCM: one call per step; flow matching with CFG: two calls on one
 * upload, so one latent up and two down per step). Those two backend
 * tensors are made once per run (be->ops->tensor_new, be->act) and freed
 * before the sampler returns.
 *
 * Time convention: every sampler works in rectified-flow time t in [0, 1]
 * (x_t = (1 - t) x0 + t noise, velocity v = noise - x0). The denoiser is
 * handed that t; the Wan DiT's timestep input is t * 1000 (what the sampler
 * documents it passes, e.g. UniPC passes diffusers' integer timesteps / 1000).
 */
#ifndef TD_SAMPLE_SAMPLE_H
#define TD_SAMPLE_SAMPLE_H

#include <stdint.h>

#include "backend/backend.h"
#include "core/ctx.h"
#include "core/tensor.h"

/* Which expert of a Wan2.2 A14B pair a call is for; single models get 0. */
enum { TD_EXPERT_HIGH = 0, TD_EXPERT_LOW = 1 };

/*
 * The model: write the predicted velocity v(x, t) into v_out.
 *  - x and v_out are contiguous tensors of the run's backend (io->be), in
 *    its activation dtype be->act, of the latent shape ([C, T, H, W] for
 *    Wan); the model reads and writes them only through backend ops (they
 *    are what the DiT takes: td_dit_forward(dit, plan, x, t * 1000, ...,
 *    v_out)); v_out never aliases x and x must not be changed;
 *  - expert: TD_EXPERT_HIGH for a single model or the high-noise expert,
 *    TD_EXPERT_LOW for the low-noise expert;
 *  - t: rectified-flow time, the DiT's timestep is t * 1000;
 *  - return 0, or a negative TD_E* code (already recorded with td_fail on
 *    the context the callback uses); the sampler stops and returns it.
 */
typedef int (*td_denoise_fn)(void *opaque, int expert, const td_tensor *x, double t,
                             td_tensor *v_out);

typedef struct td_denoiser {
    td_denoise_fn fn;
    void *opaque;
} td_denoiser;

/*
 * Where Gaussian noise comes from. Noise number i (0 = the initial noise,
 * i >= 1 = the fresh noise a stochastic step i-1 injects) is either
 *  - generated: td_noise_fill(seed, i, ...) (noise.h), identical on every
 *    machine and backend, or
 *  - given: stack[i * numel .. (i+1) * numel) of a user array holding
 *    `count` noises of the latent size (turbodiff --noise-from), in which
 *    case a sampler needing more than `count` noises fails with TD_EINVAL.
 */
typedef struct td_noise_src {
    uint64_t seed;
    const float *stack;      /* NULL: generate from seed */
    int64_t count;           /* noises in stack */
} td_noise_src;

/* Fill x (numel floats) with noise number `index` of src. */
int td_noise_src_get(td_ctx *ctx, const td_noise_src *src, int64_t index, float *x, int64_t numel);

/* Called after each completed step (1-based) with the time reached. */
typedef void (*td_step_fn)(void *opaque, int step, int steps, double t_next);

/* What every sampler run shares besides its own parameters. */
typedef struct td_sample_io {
    td_backend *be;              /* where the denoiser's x and v_out live */
    td_noise_src noise;
    const volatile int *cancel;  /* non-zero: stop before the next step, TD_ECANCELLED */
    td_step_fn on_step;          /* may be NULL */
    void *step_opaque;
} td_sample_io;

#endif
