/*
 * One text-to-video job, end to end: prompt -> tokenizer -> umT5 -> rCM over
 * the Wan DiT -> streaming VAE decode -> frames through the job's callback.
 * Runs on the engine's context under its run lock (engine.h), so the models
 * it loads on first use are shared by every later job of the engine.
 */
#include <math.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "core/pool.h"
#include "engine.h"
#include "models.h"
#include "sample/rcm.h"
#include "text/prompt_clean.h"

#define TD_TEXT_LEN 512   /* Wan pads the umT5 output to 512 rows */

typedef struct run {
    td_engine *eng;
    const td_job *job;
    td_models *m;
    td_dit_attn attn;
    td_tensor context;       /* [512, text_dim] */
    double t0, stage_t0;
    int stage;
    uint8_t *rgb;            /* one packed frame */
} run;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void progress(run *r, int stage, int step, int steps)
{
    double t = now();
    td_progress p;
    if (stage != r->stage) {
        r->stage = stage;
        r->stage_t0 = t;
    }
    if (!r->job->on_progress)
        return;
    p.stage = stage;
    p.step = step;
    p.steps = steps;
    p.stage_seconds = t - r->stage_t0;
    p.total_seconds = t - r->t0;
    r->job->on_progress(r->job->opaque, &p);
}

/* Another thread raises the flag (turbodiff.h): read it atomically. */
static int cancelled(const run *r)
{
    return r->job->cancel && __atomic_load_n(r->job->cancel, __ATOMIC_RELAXED);
}

/* The [512, text_dim] context the DiT attends to (Wan pads the encoder's
 * rows with zeros up to 512): given by the caller, else the prompt cleaned
 * as Wan cleans it, tokenized and encoded, once per prompt per engine. */
static int text_stage(run *r, int text_dim)
{
    td_ctx *ctx = &r->eng->ctx;
    const td_job *job = r->job;
    char id[1024];
    char *clean = NULL;
    int32_t ids[TD_TEXT_LEN];
    int n = 0, rc, hit;

    if (job->context) {
        if (job->context_len > TD_TEXT_LEN)
            return td_fail(ctx, TD_EINVAL, "context_len %d is more than %d tokens",
                           job->context_len, TD_TEXT_LEN);
        if (job->context_dim != text_dim)
            return td_fail(ctx, TD_ESHAPE, "context rows are %d wide but the DiT %s takes %d",
                           job->context_dim, r->eng->files.dit, text_dim);
        TD_TRY(td_tensor_new(ctx, &r->context, TD_F32, 2, (int64_t[]){ TD_TEXT_LEN, text_dim }));
        memcpy(r->context.data, job->context, (size_t)job->context_len * text_dim * sizeof(float));
        return 0;
    }
    progress(r, TD_STAGE_TEXT, 0, 1);
    TD_TRY(td_models_load_text(ctx, &r->eng->files, r->m));
    if (r->m->t5->dims.d_model != text_dim)
        return td_fail(ctx, TD_ESHAPE, "text encoder %s gives %lld-wide embeddings but the DiT "
                       "%s takes %d", r->eng->files.t5, (long long)r->m->t5->dims.d_model,
                       r->eng->files.dit, text_dim);
    TD_TRY(td_text_encoder_identity(ctx, r->eng->files.t5, id, sizeof(id)));
    hit = td_text_cache_get(ctx, r->m->cache, id, job->prompt, &r->context);
    if (hit != 0)
        return hit < 0 ? hit : 0;
    TD_TRY(td_prompt_clean(ctx, job->prompt, &clean));
    rc = td_tokenizer_encode(ctx, r->m->tok, clean, TD_TEXT_LEN, ids, &n);
    free(clean);
    if (rc == 0)
        rc = td_tensor_new(ctx, &r->context, TD_F32, 2, (int64_t[]){ TD_TEXT_LEN, text_dim });
    if (rc == 0)
        rc = td_umt5_encode(r->m->t5, r->m->be_text, ids, n, &r->context);
    if (rc == 0)
        rc = td_text_cache_put(ctx, r->m->cache, id, job->prompt, &r->context);
    if (rc == 0)
        progress(r, TD_STAGE_TEXT, 1, 1);
    return rc;
}

static int denoise(void *opaque, int expert, const td_tensor *x, double t, td_tensor *v)
{
    run *r = opaque;
    (void)expert;
    return td_dit_forward(r->m->dit, r->m->be, x, t * 1000.0, &r->context, &r->attn, v);
}

static void on_step(void *opaque, int step, int steps, double t_next)
{
    (void)t_next;
    progress(opaque, TD_STAGE_DENOISE, step, steps);
}

/* VAE frames [3, f, H, W] in [-1, 1] to packed rows, the clip's first
 * job->frames frames only (the VAE makes 1 + 4k). */
static int deliver(void *opaque, int64_t first, const td_tensor *frames)
{
    run *r = opaque;
    const td_job *job = r->job;
    int64_t f = frames->shape[1], H = frames->shape[2], W = frames->shape[3], plane = f * H * W;
    const float *src = frames->data;
    int f32 = job->frame_format == TD_FRAME_RGBF32;

    for (int64_t i = 0; i < f && first + i < job->frames; i++) {
        td_frame fr = { (int)(first + i), (int)W, (int)H, job->frame_format, r->rgb,
                        (ptrdiff_t)W * 3 * (f32 ? 4 : 1) };
        for (int64_t p = 0; p < H * W; p++)
            for (int c = 0; c < 3; c++) {
                float v = src[c * plane + i * H * W + p];
                if (f32)
                    ((float *)r->rgb)[p * 3 + c] = (v + 1.0f) * 0.5f;
                else
                    r->rgb[p * 3 + c] = (uint8_t)lrintf(fminf(fmaxf((v + 1.0f) * 127.5f, 0.0f), 255.0f));
            }
        if (cancelled(r) || job->on_frame(job->opaque, &fr))
            return 1;
    }
    progress(r, TD_STAGE_DECODE, (int)((first + f + 3) / 4), (job->frames + 6) / 4);
    return cancelled(r);
}

static int decode_stage(run *r, const td_tensor *lat)
{
    td_ctx *ctx = &r->eng->ctx;
    td_vae_decoder *dec = NULL;
    td_tensor one = { 0 };
    int64_t T = lat->shape[1], h = lat->shape[2], w = lat->shape[3];
    int rc;

    r->rgb = malloc((size_t)(h * 8) * (size_t)(w * 8) * 3 * 4);
    if (!r->rgb)
        return td_fail(ctx, TD_ENOMEM, "out of memory for one %lldx%lld frame",
                       (long long)w * 8, (long long)h * 8);
    progress(r, TD_STAGE_DECODE, 0, (int)T);
    rc = td_vae_decoder_open(r->m->vae, h, w, NULL, &dec);
    if (rc == 0)
        rc = td_tensor_new(ctx, &one, TD_F32, 4, (int64_t[]){ lat->shape[0], 1, h, w });
    /* One latent frame per push: the first frames leave before the last
     * are decoded, and cancel is honoured between chunks. */
    for (int64_t t = 0; rc == 0 && t < T; t++) {
        td_tensor src;
        rc = td_tensor_slice(ctx, lat, 1, t, 1, &src);
        if (rc == 0)
            rc = td_tensor_copy(ctx, &one, &src);
        if (rc == 0)
            rc = td_vae_decoder_push(dec, &one, deliver, r);
    }
    td_tensor_free(&one);
    td_vae_decoder_close(&dec);
    free(r->rgb);
    r->rgb = NULL;
    return rc;
}

static int choose_attention(run *r, const td_dit_config *cfg)
{
    r->attn.mode = TD_DIT_ATTN_FULL;
    r->attn.topk = r->job->topk;
    if (r->job->attention == TD_ATTN_FULL)
        return 0;
    if (!cfg->has_proj_l) {
        /* SLA is a property of the checkpoint (its proj_l was trained);
         * an undistilled Wan file only knows full attention. */
        td_log(&r->eng->ctx, TD_LOG_WARNING, "%s has no SLA projections (proj_l): using full "
               "attention", r->eng->files.dit);
        return 0;
    }
    if (r->job->attention == TD_ATTN_SAGESLA)
        td_log(&r->eng->ctx, TD_LOG_INFO, "sagesla runs as sla on the CPU backend");
    r->attn.mode = TD_DIT_ATTN_SLA;
    return 0;
}

int td_generate(td_engine *eng, const td_job *job)
{
    td_ctx *ctx = &eng->ctx;
    run r = { .eng = eng, .job = job, .stage = -1 };
    td_rcm_params p;
    td_sample_io io = { .noise = { .seed = job->seed }, .cancel = job->cancel,
                        .on_step = on_step, .step_opaque = &r };
    td_denoiser den = { denoise, &r };
    const td_dit_config *cfg;
    td_tensor x = { 0 };
    int rc;

    r.t0 = r.stage_t0 = now();
    if (job->image)
        return td_fail(ctx, TD_EUNSUPPORTED, "image-to-video is not wired into the pipeline yet "
                       "(text-to-video only)");
    if (!eng->models)
        TD_TRY(td_models_load(ctx, &eng->files, &eng->models));
    r.m = eng->models;
    cfg = td_dit_get_config(r.m->dit);
    if (cfg->i2v)
        return td_fail(ctx, TD_EUNSUPPORTED, "%s is an image-to-video DiT (%d input channels); "
                       "give an image", eng->files.dit, cfg->in_ch);
    TD_TRY(choose_attention(&r, cfg));

    td_rcm_params_default(&p);
    p.steps = job->steps;
    if (job->sigma_max > 0)
        p.sigma_max = job->sigma_max;
    p.ode = job->ode;

    rc = text_stage(&r, cfg->text_dim);
    if (rc == 0 && cancelled(&r))
        rc = td_fail(ctx, TD_ECANCELLED, "cancelled");
    if (rc == 0)
        rc = td_tensor_new(ctx, &x, TD_F32, 4, (int64_t[]){ cfg->out_ch, 1 + (job->frames + 2) / 4,
                                                            job->height / 8, job->width / 8 });
    if (rc == 0) {
        progress(&r, TD_STAGE_DENOISE, 0, p.steps);
        rc = td_rcm_sample(ctx, &p, &den, &io, &x);
    }
    if (rc == 0)
        rc = decode_stage(&r, &x);
    if (rc == TD_ECANCELLED || (rc == 0 && cancelled(&r)))
        rc = td_fail(ctx, TD_ECANCELLED, "cancelled");
    if (rc == 0)
        progress(&r, TD_STAGE_DONE, 1, 1);
    td_tensor_free(&x);
    td_tensor_free(&r.context);
    return rc;
}
