#include "models.h"

#include <stdlib.h>
#include <string.h>

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

/* The pipeline sizes latents from the VAE (its channels and factor): the
 * DiT must make the VAE's latent channels, and take them (plus the i2v
 * conditioning) at its patch size. A Wan2.1 VAE (16 channels, 1/8) with a
 * TI2V-5B DiT (48), or the Wan2.2 VAE (48, 1/16) with a Wan2.1 DiT, fails
 * at open naming both. */
static int check_vae(td_ctx *ctx, const td_model_files *files, const td_models *m)
{
    int z = td_vae_z_dim(m->vae), s = td_vae_spatial_factor(m->vae);
    if (z != m->cfg.out_ch)
        return td_fail(ctx, TD_EUNSUPPORTED, "the VAE %s has %d latent channels (at 1/%d of the frame) but "
                       "the DiT %s makes %d: %s", files->vae, z, s, files->dit, m->cfg.out_ch,
                       m->cfg.out_ch == 48 ? "Wan2.2 TI2V-5B needs the Wan2.2 VAE (Wan2.2_VAE.pth)"
                                           : "Wan2.1 and Wan2.2 A14B DiTs need the Wan2.1 VAE (Wan2.1_VAE.pth)");
    return 0;
}

void td_models_defaults(const td_models *m, const td_model_files *files, td_model_defaults *d)
{
    const td_dit_config *c = &m->cfg;
    int distilled = c->has_proj_l || c->quant;

    *d = (td_model_defaults){ .fps = 16, .sampler = TD_SAMPLER_RCM, .flow_steps = 50, .shift = 5.0,
                              .guidance = 5.0, .guidance_low = 5.0, .boundary = 0.9 };
    if (c->ti2v) {
        /* wan_ti2v_5B.py: 1280*704, 121 frames at 24 fps, UniPC 50 steps */
        d->width = 1280, d->height = 704, d->frames = 121, d->fps = 24;
        d->sampler = distilled ? TD_SAMPLER_RCM : TD_SAMPLER_FLOW;
    } else if (m->pair && !c->i2v) {
        /* wan_t2v_A14B.py: boundary 0.875, guidance (3.0 low, 4.0 high) */
        d->sampler = distilled ? TD_SAMPLER_RCM : TD_SAMPLER_FLOW;
        d->flow_steps = 40, d->shift = 12.0, d->guidance = 4.0, d->guidance_low = 3.0;
        d->boundary = 0.875;
    } else if (c->i2v) {
        /* wan_i2v_A14B.py: boundary 0.9, guidance (3.5, 3.5) */
        d->flow_steps = 40, d->guidance = d->guidance_low = 3.5;
    }
    if (files->sampler != TD_SAMPLER_AUTO)
        d->sampler = files->sampler;
    if (files->sampler == TD_SAMPLER_DMD && !c->ti2v)
        d->width = 832, d->height = 448, d->frames = 61;
}

/* FastVideo's sparse-distilled FastWan DiTs (FastWan2.1-T2V-1.3B) were
 * trained with Video Sparse Attention, whose blocks add a to_gate_compress
 * projection (fastvideo/models/dits/wanvideo.py, WanTransformerBlock_VSA)
 * for its coarse branch. turbodiff has no VSA: say so, as the clip may
 * differ from FastVideo's with VSA; the DiT runs dense, as FastVideo's MLX
 * runtime runs these files. */
static void note_vsa(td_ctx *ctx, const td_weights *w)
{
    for (int i = 0; i < td_weights_count(w); i++)
        if (strstr(td_weights_name(w, i), ".to_gate_compress.")) {
            td_log(ctx, TD_LOG_WARNING, "%s was trained with Video Sparse Attention (it has %s): "
                   "turbodiff has no VSA and runs it with dense attention, without those gates",
                   td_weights_path(w), td_weights_name(w, i));
            return;
        }
}

size_t td_models_uploaded(td_backend *be)
{
    return be->ops->uploaded ? be->ops->uploaded(be) : 0;
}

static int load_expert(td_ctx *ctx, const td_model_files *files, td_models *m, int expert)
{
    td_dit_opts opts = { 0, files->loras, files->n_loras };
    size_t before;
    TD_TRY(td_weights_open(ctx, expert_file(files, expert), &m->w_dit[expert]));
    note_vsa(ctx, m->w_dit[expert]);
    before = td_models_uploaded(m->be);
    TD_TRY(td_dit_load(ctx, m->be, m->w_dit[expert], &opts, &m->dit[expert]));
    /* at open; a low memory reload of the same file uploads as much, and
     * leaving the value alone lets estimates read it while a job runs */
    if (!m->dit_bytes[expert])
        m->dit_bytes[expert] = td_models_uploaded(m->be) - before;
    if (expert == TD_EXPERT_HIGH) {
        m->cfg = *td_dit_get_config(m->dit[expert]);
        return 0;
    }
    return check_pair(ctx, files, &m->cfg, td_dit_get_config(m->dit[expert]));
}

int td_models_expert(td_ctx *ctx, const td_model_files *files, td_models *m, int expert,
                     td_dit **out)
{
    int other;

    *out = NULL;
    if (expert == TD_EXPERT_LOW && !files->dit_low)
        expert = TD_EXPERT_HIGH;
    other = expert == TD_EXPERT_LOW ? TD_EXPERT_HIGH : TD_EXPERT_LOW;
    if (!m->dit[expert]) {
        if (m->low_memory && m->dit[other]) {
            td_log(ctx, TD_LOG_VERBOSE, "low memory: releasing %s", expert_file(files, other));
            unload_expert(m, other);
        }
        TD_TRY(load_expert(ctx, files, m, expert));
    }
    *out = m->dit[expert];
    return 0;
}

int td_models_load_text(td_ctx *ctx, const td_model_files *files, td_models *m)
{
    size_t before;
    if (m->t5)
        return 0;
    if (!m->w_t5)
        TD_TRY(td_weights_open(ctx, files->t5, &m->w_t5));
    before = td_models_uploaded(m->be);
    TD_TRY(td_umt5_load(ctx, m->be, m->w_t5, &m->t5));
    if (!m->t5_bytes)
        m->t5_bytes = td_models_uploaded(m->be) - before;
    return 0;
}

void td_models_release_text(td_models *m)
{
    if (m->be)
        td_umt5_free(&m->t5, m->be);
    td_weights_close(&m->w_t5);
}

static void log_residency(td_ctx *ctx, const td_model_files *files, const td_models *m,
                          const char *device)
{
    td_log(ctx, TD_LOG_INFO, "residency on %s: DiT %s%s; VAE resident; umT5 %s", device,
           files->dit_low ? "experts " : "resident",
           files->dit_low ? (m->low_memory ? "one at a time (low memory)" : "both resident") : "",
           m->low_memory ? "released after each new prompt (low memory)" : "resident");
}

/* The text stage first: its dims size the backend's activation arena. A
 * tokenizer file of its own, else the SentencePiece model ComfyUI embeds in
 * the encoder's safetensors as `spiece_model`. */
static int load_all(td_ctx *ctx, const td_model_files *files, const char *device,
                    td_backend_factory make, td_models *m)
{
    td_umt5_dims *dims = &m->t5_dims;
    td_dit *dit;

    TD_TRY(td_tokenizer_load(ctx, files->tokenizer ? files->tokenizer : files->t5, &m->tok));
    TD_TRY(td_weights_open(ctx, files->t5, &m->w_t5));
    TD_TRY(td_umt5_read_dims(ctx, m->w_t5, dims));
    /* Sized for f32, the widest activation dtype: the backend is not made yet. */
    TD_TRY(make(ctx, device, td_umt5_scratch_bytes(dims, TD_F32, TD_UMT5_TEXT_LEN), &m->be));
    TD_TRY(td_models_load_text(ctx, files, m));
    if (m->low_memory)
        td_models_release_text(m);
    TD_TRY(td_models_expert(ctx, files, m, TD_EXPERT_HIGH, &dit));
    m->pair = files->dit_low != NULL;
    /* Both experts up front, so a bad pair fails at open; low memory then
     * keeps the high one, which the first step needs. */
    if (files->dit_low) {
        TD_TRY(load_expert(ctx, files, m, TD_EXPERT_LOW));
        if (m->low_memory)
            unload_expert(m, TD_EXPERT_LOW);
    }
    TD_TRY(td_weights_open(ctx, files->vae, &m->w_vae));
    m->vae_bytes = td_models_uploaded(m->be);
    TD_TRY(td_vae_load(m->be, m->w_vae, &m->vae));
    m->vae_bytes = td_models_uploaded(m->be) - m->vae_bytes;
    TD_TRY(check_vae(ctx, files, m));
    return td_text_cache_create(ctx, TEXT_CACHE_ENTRIES, NULL, &m->cache);
}

int td_models_load(td_ctx *ctx, const td_model_files *files, const char *device,
                   td_backend_factory make, int low_memory, td_models **out)
{
    td_models *m = calloc(1, sizeof(*m));
    int rc;

    *out = NULL;
    if (!m)
        return td_fail(ctx, TD_ENOMEM, "out of memory loading the models");
    m->low_memory = low_memory;
    rc = load_all(ctx, files, device, make, m);
    if (rc < 0) {
        td_models_free(&m);
        return rc;
    }
    log_residency(ctx, files, m, device);
    *out = m;
    return 0;
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
