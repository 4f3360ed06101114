/*
 * DMD few-step sampling as FastVideo (github.com/hao-ai-lab/FastVideo) runs
 * its FastWan checkpoints (FastWan2.1-T2V-1.3B-Diffusers,
 * FastWan2.2-TI2V-5B-FullAttn-Diffusers), from its DmdDenoisingStage
 * (fastvideo/pipelines/stages/denoising.py), pred_noise_to_pred_video
 * (fastvideo/models/utils.py) and FlowMatchEulerDiscreteScheduler.add_noise
 * (fastvideo/models/schedulers/scheduling_flow_match_euler_discrete.py):
 *
 *   DiT timesteps   T_0 > T_1 > ... > T_{n-1}, integers; published
 *                   [1000, 757, 522] (dmd_denoising_steps of
 *                   FastWan2_1_T2V_480P_Config and FastWan2_2_TI2V_5B_Config,
 *                   fastvideo/configs/pipelines/wan.py)
 *   sigma grid      the scheduler's training table at shift 8 (the stage makes
 *                   FlowMatchEulerDiscreteScheduler(shift=8.0) whatever the
 *                   pipeline's flow_shift): u_k = k / 1000 for k = 1000..1,
 *                   s_k = 8 u_k / (1 + 7 u_k) and its timesteps 1000 s_k,
 *                   all in f32 as torch computes them
 *   sigma(T)        s_k of the grid timestep nearest T (the first on a tie)
 *   x               = noise_0 (pure noise, whatever T_0 is)
 *   each step i:    v  = model(x, T_i / 1000)   (the DiT gets T_i itself)
 *                   x0 = x - sigma(T_i) v
 *                   x  = (1 - sigma(T_{i+1})) x0 + sigma(T_{i+1}) noise_{i+1}
 *                        (fresh noise), or x0 after the last step
 *   no guidance: one model call per step.
 *
 * Upstream runs the DiT in bf16 and x0 in f64 cast back to the model's
 * dtype; we keep the state in f64 (as rcm.h) and hand the model x rounded
 * to f32. Transfers per step: the latents up once, the velocity down once.
 */
#ifndef TD_SAMPLE_DMD_H
#define TD_SAMPLE_DMD_H

#include "sample.h"

#define TD_DMD_MAX_STEPS 64
#define TD_DMD_TRAIN_STEPS 1000

typedef struct td_dmd_params {
    int steps;                          /* 1..TD_DMD_MAX_STEPS */
    int timesteps[TD_DMD_MAX_STEPS];    /* strictly decreasing, in 1..1000 */
    double shift;                       /* of the sigma grid, > 0; FastVideo 8 */
} td_dmd_params;

/* FastWan's published schedule: 1000, 757, 522 at shift 8. */
void td_dmd_params_default(td_dmd_params *p);

/* Parse a step list "1000,757,522" (decimal integers, commas, optional
 * spaces) into p->timesteps / p->steps (p->shift is left as it is),
 * checking them as td_dmd_check does; `what` names the option in messages. */
int td_dmd_parse_timesteps(td_ctx *ctx, const char *what, const char *list, td_dmd_params *p);

/* p's steps, timesteps and shift are in range. */
int td_dmd_check(td_ctx *ctx, const td_dmd_params *p);

/* sigma[i] = sigma(p->timesteps[i]) for each step, as f32 values. */
int td_dmd_sigmas(td_ctx *ctx, const td_dmd_params *p, double *sigma);

/* Noises a run draws: the initial one and one per step but the last. */
int td_dmd_noise_count(const td_dmd_params *p);

/* Run the sampler on the model's backend io->be. x: a contiguous TD_F32
 * host tensor of the latent shape, replaced by the final latents. Returns
 * 0, a negative TD_E* (TD_ECANCELLED when io->cancel was raised), or what
 * the denoiser returned. */
int td_dmd_sample(td_ctx *ctx, const td_dmd_params *p, const td_denoiser *model,
                  const td_sample_io *io, td_tensor *x);

#endif
