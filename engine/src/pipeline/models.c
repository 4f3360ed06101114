#include "models.h"

#include <stdlib.h>

#include "engine.h"
#include "sample/sample.h"

/* Embeddings kept per engine: a filter cycling through a prompts file
 * encodes each line once. */
#define TEXT_CACHE_ENTRIES 16

static const char *expert_file(const td_model_files *files, int expert)
{
    return expert == TD_EXPERT_LOW ? files->dit_low : files->dit;
}

static void unload_expert(td_models *m, int expert)
{
    td_dit_free(&m->dit[expert]);
    td_weights_close(&m->w_dit[expert]);
}

/* The two experts of a pair are run on one latent: they must agree on
 * everything the sampler and the conditioning see. */
static int check_pair(td_ctx *ctx, const td_model_files *files, const td_dit_config *hi,
                      const td_dit_config *lo)
{
    if (hi->in_ch != lo->in_ch || hi->out_ch != lo->out_ch || hi->text_dim != lo->text_dim ||
        hi->patch[0] != lo->patch[0] || hi->patch[1] != lo->patch[1] || hi->patch[2] != lo->patch[2])
        return td_fail(ctx, TD_ESHAPE, "the low-noise expert %s (%d->%d channels, text %d, patch "
                       "%dx%dx%d) does not match the high-noise expert %s (%d->%d, text %d, patch "
                       "%dx%dx%d)", files->dit_low, lo->in_ch, lo->out_ch, lo->text_dim,
                       lo->patch[0], lo->patch[1], lo->patch[2], files->dit, hi->in_ch, hi->out_ch,
                       hi->text_dim, hi->patch[0], hi->patch[1], hi->patch[2]);
    return 0;
}

int td_models_expert(td_ctx *ctx, const td_model_files *files, td_models *m, int expert,
                     int low_memory, td_dit **out)
{
    td_dit_opts opts = { 0 };
    int other;

    *out = NULL;
    if (expert == TD_EXPERT_LOW && !files->dit_low)
        expert = TD_EXPERT_HIGH;
    other = expert == TD_EXPERT_LOW ? TD_EXPERT_HIGH : TD_EXPERT_LOW;
    if (!m->dit[expert]) {
        if (low_memory && m->dit[other]) {
            td_log(ctx, TD_LOG_VERBOSE, "low memory: unmapping %s", expert_file(files, other));
            unload_expert(m, other);
        }
        TD_TRY(td_weights_open(ctx, expert_file(files, expert), &m->w_dit[expert]));
        TD_TRY(td_dit_load(ctx, m->be, m->w_dit[expert], &opts, &m->dit[expert]));
        if (expert == TD_EXPERT_HIGH)
            m->cfg = *td_dit_get_config(m->dit[expert]);
        else
            TD_TRY(check_pair(ctx, files, &m->cfg, td_dit_get_config(m->dit[expert])));
    }
    *out = m->dit[expert];
    return 0;
}

int td_models_load(td_ctx *ctx, const td_model_files *files, int low_memory, td_models **out)
{
    td_models *m = calloc(1, sizeof(*m));
    td_dit *dit;
    int rc;

    *out = NULL;
    if (!m)
        return td_fail(ctx, TD_ENOMEM, "out of memory loading the models");
    rc = td_backend_cpu_create(ctx, 0, &m->be);
    if (rc == 0)
        rc = td_models_expert(ctx, files, m, TD_EXPERT_HIGH, 0, &dit);
    /* Both experts up front, so a bad pair fails before any work is done;
     * low memory maps the high one again for the first step. */
    if (rc == 0 && files->dit_low)
        rc = td_models_expert(ctx, files, m, TD_EXPERT_LOW, 0, &dit);
    if (rc == 0 && files->dit_low && low_memory)
        unload_expert(m, TD_EXPERT_LOW);
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
        bytes = rc == 0 ? td_umt5_scratch_bytes(t5, probe, 512) : 0;
        td_umt5_free(&t5, probe);
        td_backend_destroy(&probe);
        if (rc < 0)
            return td_fail(ctx, rc, "%s", quiet.errmsg);
        TD_TRY(td_backend_cpu_create(ctx, bytes, &m->be_text));
    }
    return td_umt5_load(ctx, m->be_text, m->w_t5, &m->t5);
}

void td_models_release_text(td_models *m)
{
    td_umt5_free(&m->t5, m->be_text);
    td_weights_close(&m->w_t5);
    td_backend_destroy(&m->be_text);
}

void td_models_free(td_models **pm)
{
    td_models *m = *pm;
    if (!m)
        return;
    td_text_cache_destroy(&m->cache);
    td_models_release_text(m);
    td_tokenizer_free(&m->tok);
    td_vae_free(&m->vae);
    td_weights_close(&m->w_vae);
    unload_expert(m, TD_EXPERT_HIGH);
    unload_expert(m, TD_EXPERT_LOW);
    td_backend_destroy(&m->be);
    free(m);
    *pm = NULL;
}
