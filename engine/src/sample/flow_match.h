/*
 * Flow-matching sampling for original (undistilled) Wan checkpoints, with
 * classifier-free guidance: the 50-step baseline TurboDiffusion is compared
 * against. Schedule and UniPC follow diffusers' UniPCMultistepScheduler as
 * the Wan pipelines configure it (use_flow_sigmas, prediction_type
 * flow_prediction, solver_order 2, solver_type bh2, predict_x0,
 * lower_order_final, final_sigmas_type zero, num_train_timesteps 1000):
 *
 *   sigmas  s = linspace(1, 1/1000, steps + 1)[:-1]
 *           s = shift s / (1 + (shift - 1) s); s[0] -= 1e-6 if s[0] == 1
 *           rounded to f32, then a final 0 appended
 *   model   timestep = int64(s * 1000) (truncated, as diffusers stores it),
 *           so the denoiser gets t = timestep / 1000
 *   CFG     v = v_uncond + g (v_cond - v_uncond)   when g > 1
 *   A14B    high-noise expert (guidance g) while timestep >= boundary * 1000,
 *           else the low-noise expert (guidance g_low)
 *   Euler   x += (s_{i+1} - s_i) v on the same grid and timesteps.
 *
 * Noise: x starts as noise number 0 of io->noise (sigma 1 = pure noise);
 * neither solver draws more.
 *
 * Transfers per step: the f32 latents up to the backend once (write) and
 * the velocity down once per model call (read): one down without guidance,
 * two with CFG (conditional and unconditional on the same upload). The
 * guidance mix and the solvers run on the host (f32 mix, f64 state).
 */
#ifndef TD_SAMPLE_FLOW_MATCH_H
#define TD_SAMPLE_FLOW_MATCH_H

#include "sample.h"

enum td_flow_solver { TD_FLOW_EULER = 0, TD_FLOW_UNIPC = 1 };

#define TD_FLOW_MAX_STEPS 1000

typedef struct td_flow_params {
    int solver;          /* enum td_flow_solver */
    int steps;           /* 1..TD_FLOW_MAX_STEPS */
    double shift;        /* > 0; Wan2.1 t2v 5.0, diffusers' Wan 480p config 3.0 */
    double guidance;     /* CFG scale; <= 1 runs the conditional model only */
    int two_experts;     /* Wan2.2 A14B pair */
    double boundary;     /* in (0, 1), timestep fraction of the expert switch */
    double guidance_low; /* CFG scale of the low-noise expert */
} td_flow_params;

/* Defaults: UniPC, 50 steps, shift 5.0, guidance 5.0, one model. */
void td_flow_params_default(td_flow_params *p);

/* sigmas[0..steps] (f32-rounded, last 0) and the model timesteps[0..steps-1]
 * (integers, as doubles). */
int td_flow_schedule(td_ctx *ctx, int steps, double shift, double *sigmas, double *timesteps);

/*
 * Run the sampler. cond is the model with the prompt's context, uncond the
 * same model with the negative prompt's (may be NULL when guidance <= 1),
 * both on io->be. x: a contiguous TD_F32 host latent tensor, replaced by
 * the result.
 */
int td_flow_sample(td_ctx *ctx, const td_flow_params *p, const td_denoiser *cond,
                   const td_denoiser *uncond, const td_sample_io *io, td_tensor *x);

#endif
