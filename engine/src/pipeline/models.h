/*
 * The loaded model set behind an engine: mapped weight files and the model
 * objects built over them, on one backend. Loaded by the first job (opening
 * an engine only resolves files) and kept until the engine goes.
 * The text stage (tokenizer + umT5) loads when the first prompt needs it,
 * so jobs given a precomputed context never map the encoder.
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
    td_weights *w_dit, *w_vae, *w_t5;
    td_dit *dit;
    td_vae *vae;
    td_umt5 *t5;             /* NULL until the first prompt */
    td_tokenizer *tok;
    td_text_cache *cache;    /* embeddings of the prompts seen */
} td_models;

/* Map the DiT and VAE and build them on a CPU backend over ctx. */
int td_models_load(td_ctx *ctx, const struct td_model_files *files, td_models **out);
/* Map and build the tokenizer and umT5 encoder if not yet loaded. */
int td_models_load_text(td_ctx *ctx, const struct td_model_files *files, td_models *m);
void td_models_free(td_models **m);

#endif
