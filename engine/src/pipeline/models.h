/*
 * The loaded model set behind an engine: mapped weight files and the model
 * objects built over them, on one backend. Loaded by the first job (opening
 * an engine only resolves files) and kept until the engine goes.
 * The text stage (tokenizer + umT5) joins here once the tokenizer exists.
 */
#ifndef TD_PIPELINE_MODELS_H
#define TD_PIPELINE_MODELS_H

#include "backend/backend.h"
#include "dit/dit.h"
#include "io/weights.h"
#include "vae/vae.h"

struct td_model_files;

typedef struct td_models {
    td_backend *be;
    td_weights *w_dit, *w_vae;
    td_dit *dit;
    td_vae *vae;
} td_models;

/* Map the DiT and VAE and build them on a CPU backend over ctx. */
int td_models_load(td_ctx *ctx, const struct td_model_files *files, td_models **out);
void td_models_free(td_models **m);

#endif
