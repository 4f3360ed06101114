#include "models.h"

#include <stdlib.h>

#include "engine.h"

/* Embeddings kept per engine: a filter cycling through a prompts file
 * encodes each line once. */
#define TEXT_CACHE_ENTRIES 16

int td_models_load(td_ctx *ctx, const td_model_files *files, td_models **out)
{
    td_models *m = calloc(1, sizeof(*m));
    td_dit_opts opts = { 0 };
    int rc;

    *out = NULL;
    if (!m)
        return td_fail(ctx, TD_ENOMEM, "out of memory loading the models");
    rc = td_backend_cpu_create(ctx, 0, &m->be);
    if (rc == 0)
        rc = td_weights_open(ctx, files->dit, &m->w_dit);
    if (rc == 0)
        rc = td_dit_load(ctx, m->w_dit, &opts, &m->dit);
    if (rc == 0)
        rc = td_weights_open(ctx, files->vae, &m->w_vae);
    if (rc == 0)
        rc = td_vae_load(m->be, m->w_vae, &m->vae);
    if (rc == 0)
        rc = td_text_cache_create(ctx, TEXT_CACHE_ENTRIES, NULL, &m->cache);
    if (rc < 0) {
        td_models_free(&m);
        return rc;
    }
    *out = m;
    return 0;
}

int td_models_load_text(td_ctx *ctx, const td_model_files *files, td_models *m)
{
    if (m->t5)
        return 0;
    /* A tokenizer file of its own, else the SentencePiece model ComfyUI
     * embeds in the encoder's safetensors as `spiece_model`. */
    if (!m->tok)
        TD_TRY(td_tokenizer_load(ctx, files->tokenizer ? files->tokenizer : files->t5, &m->tok));
    if (!m->w_t5)
        TD_TRY(td_weights_open(ctx, files->t5, &m->w_t5));
    /* The encoder's scratch depends on its dims: read them through a
     * backend without scratch (loading maps views, it costs nothing), then
     * build the encoder on one whose arena fits the longest prompt. */
    if (!m->be_text) {
        td_ctx quiet;            /* the probe's load is not worth a log line */
        td_backend *probe = NULL;
        td_umt5 *t5 = NULL;
        size_t bytes;
        int rc;
        td_ctx_init(&quiet);
        rc = td_backend_cpu_create(&quiet, 0, &probe);
        if (rc == 0)
            rc = td_umt5_load(&quiet, probe, m->w_t5, &t5);
        bytes = rc == 0 ? td_umt5_scratch_bytes(t5, 512) : 0;
        td_umt5_free(&t5);
        td_backend_destroy(&probe);
        if (rc < 0)
            return td_fail(ctx, rc, "%s", quiet.errmsg);
        TD_TRY(td_backend_cpu_create(ctx, bytes, &m->be_text));
    }
    return td_umt5_load(ctx, m->be_text, m->w_t5, &m->t5);
}

void td_models_free(td_models **pm)
{
    td_models *m = *pm;
    if (!m)
        return;
    td_text_cache_destroy(&m->cache);
    td_umt5_free(&m->t5);
    td_tokenizer_free(&m->tok);
    td_vae_free(&m->vae);
    td_dit_free(&m->dit);
    td_weights_close(&m->w_t5);
    td_backend_destroy(&m->be_text);
    td_weights_close(&m->w_vae);
    td_weights_close(&m->w_dit);
    td_backend_destroy(&m->be);
    free(m);
    *pm = NULL;
}
