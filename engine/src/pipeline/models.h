/*
 * The loaded model set behind an engine: mapped weight files and the model
 * objects built over them, on the engine's backend. Everything is mapped,
 * uploaded and checked when the engine opens, so a missing, truncated or
 * mismatched file fails there and not in the first job.
 *
 * Residency policy (logged at open):
 *  - the DiT (both experts of an A14B pair) and the VAE are uploaded once
 *    and stay until the engine goes;
 *  - the tokenizer and umT5 encoder run on the same backend; they stay
 *    between jobs, or with low_memory are released after each encoding
 *    (the tokenizer and the per-prompt embedding cache stay) and uploaded
 *    again for the next new prompt: the encoder is as large as the 14B
 *    DiT's int8 weights and is idle while the DiT denoises;
 *  - with low_memory only one expert of a pair is resident: the other is
 *    released when the sampler crosses the boundary and reloaded for the
 *    next job.
 */
#ifndef TD_PIPELINE_MODELS_H
#define TD_PIPELINE_MODELS_H

#include "backend/backend.h"
#include "dit/dit.h"
#include "io/weights.h"
#include "text/text_cache.h"
#include "text/tokenizer.h"
#include "text/umt5.h"
#include "vae/vae.h"

struct td_model_files;

typedef struct td_models {
    td_backend *be;          /* every model's weights and activations */
    int low_memory;
    td_weights *w_dit[2], *w_vae, *w_t5;
    td_dit *dit[2];          /* TD_EXPERT_HIGH (or the only DiT), TD_EXPERT_LOW */
    td_dit_config cfg;       /* of dit[TD_EXPERT_HIGH]; an A14B pair must agree */
    int pair;                /* a high- and low-noise expert pair */
    td_vae *vae;
    td_umt5 *t5;             /* NULL while released (low memory) */
    td_tokenizer *tok;
    td_text_cache *cache;    /* embeddings of the prompts seen */
    /* Bytes each component's weights take on the backend, measured as it
     * was uploaded (backend.h's memory op), kept while it is released. */
    size_t dit_bytes[2], vae_bytes, t5_bytes;
    td_umt5_dims t5_dims;    /* the encoder's, read at open (its scratch sizes) */
} td_models;

/* Bytes the backend has uploaded so far (0 if it cannot say). */
size_t td_models_uploaded(td_backend *be);

/*
 * What a job that leaves a setting to the model runs with: the model's own
 * clip and frame rate, and its sampler, from Wan's configs (wan/configs/
 * wan_ti2v_5B.py, wan_t2v_A14B.py, wan_i2v_A14B.py, wan_t2v_14B.py). The
 * kind of model is read from the DiT's shapes: 48 channels is TI2V-5B, 36
 * an I2V A14B expert, two 16-channel experts a T2V A14B pair.
 * Which sampler a distilled or undistilled checkpoint takes (turbodiff.h,
 * td_sampler): TurboDiffusion's distilled checkpoints carry SLA
 * projections or W8A8 weights, and the Wan2.1 T2V / I2V A14B DiTs are the
 * ones it distills, so they default to rCM; TI2V-5B and a T2V A14B pair,
 * which it publishes no distilled checkpoint of, default to flow matching.
 */
typedef struct td_model_defaults {
    int width, height, frames;   /* 0: no clip of its own */
    int fps;
    int sampler;                 /* TD_SAMPLER_RCM, _FLOW or _DMD */
    int flow_steps;
    double shift, guidance, guidance_low, boundary;
} td_model_defaults;

/* files->sampler, when the directory declares one (a FastWan checkpoint's
 * WanDMDPipeline), overrides the choice from shapes; a FastWan2.1 DiT then
 * makes FastVideo's clip for it (fastvideo/pipelines/basic/wan/presets.py,
 * fast_wan_t2v_480p: 832x448, 61 frames at 16 fps), a FastWan2.2 TI2V-5B
 * one TI2V-5B's. */
void td_models_defaults(const td_models *m, const struct td_model_files *files,
                        td_model_defaults *d);
/* The sampler a job runs with: its own, else the model's (generate.c). */
int td_job_sampler(const td_job *job, const td_model_defaults *d);
/* Whether a flow-matching job guides (and so encodes the negative prompt). */
int td_job_guided(const td_job *job, const td_model_defaults *d, int pair);

/* Map, upload and check every file of the set on the backend make gives for
 * device (its arena sized for the text encoder's longest prompt), as the
 * policy above says. */
int td_models_load(td_ctx *ctx, const struct td_model_files *files, const char *device,
                   td_backend_factory make, int low_memory, td_models **out);
/* The DiT for `expert` (sample.h), loaded now if it is not resident; with
 * low memory the other expert is released first. */
int td_models_expert(td_ctx *ctx, const struct td_model_files *files, td_models *m,
                     int expert, td_dit **out);
/* Upload the umT5 encoder again if low memory released it. */
int td_models_load_text(td_ctx *ctx, const struct td_model_files *files, td_models *m);
/* Release the umT5 encoder (the tokenizer and the embedding cache stay). */
void td_models_release_text(td_models *m);
void td_models_free(td_models **m);

#endif
