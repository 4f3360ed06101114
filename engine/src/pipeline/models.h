/*
 * The loaded model set behind an engine: mapped weight files and the model
 * objects built over them, on one backend. Loaded by the first job (opening
 * an engine only resolves files) and kept until the engine goes.
 * The text stage (tokenizer + umT5) loads when the first prompt needs it,
 * so jobs given a precomputed context never map the encoder.
 *
 * Residency: weights are memory-mapped, so a part costs memory once its
 * pages are touched and nothing after it is unmapped. In low-memory mode the
 * text encoder is unmapped after each encoding and only one expert of an
 * A14B pair is mapped at a time (the other goes when the sampler crosses
 * the boundary); otherwise everything stays for the next job.
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
    td_backend *be;
    td_backend *be_text;     /* the encoder's, its arena sized for 512 tokens */
    td_weights *w_dit[2], *w_vae, *w_t5;
    td_dit *dit[2];          /* TD_EXPERT_HIGH (or the only DiT), TD_EXPERT_LOW */
    td_dit_config cfg;       /* of dit[TD_EXPERT_HIGH]; an A14B pair must agree */
    td_vae *vae;
    td_umt5 *t5;             /* NULL until the first prompt */
    td_tokenizer *tok;
    td_text_cache *cache;    /* embeddings of the prompts seen */
} td_models;

/* Map the DiT (both experts of a pair, unless low_memory: the high one
 * only) and the VAE, and build them on a CPU backend over ctx. */
int td_models_load(td_ctx *ctx, const struct td_model_files *files, int low_memory,
                   td_models **out);
/* The DiT for `expert` (sample.h), mapped now if it is not; low_memory
 * unmaps the other expert first. */
int td_models_expert(td_ctx *ctx, const struct td_model_files *files, td_models *m,
                     int expert, int low_memory, td_dit **out);
/* Map and build the tokenizer and umT5 encoder if not yet loaded. */
int td_models_load_text(td_ctx *ctx, const struct td_model_files *files, td_models *m);
/* Unmap the umT5 encoder (the tokenizer and the embedding cache stay). */
void td_models_release_text(td_models *m);
void td_models_free(td_models **m);

#endif
