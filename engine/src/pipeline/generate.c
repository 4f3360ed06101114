/*
 * One job, end to end: prompt -> tokenizer -> umT5; for image-to-video the
 * image -> VAE encoder -> conditioning (image_cond.h); rCM, DMD (FastWan),
 * or flow matching with classifier-free guidance (the negative prompt
 * encoded the same way), over the Wan DiT (or the two experts of an A14B pair) ->
 * streaming VAE decode -> frames through the job's callback.
 *
 * Wan2.2 TI2V-5B (a 48-channel DiT with the Wan2.2 VAE, latents at 1/16):
 * text-to-video as any DiT; image-to-video as diffusers'
 * WanImageToVideoPipeline with expand_timesteps runs it: the image alone
 * is encoded into one latent frame, which replaces the first latent frame
 * of every DiT input (the sampler's own first frame is never seen), whose
 * tokens take timestep 0; the decoded clip starts from it.
 * Runs on the engine's context under its run lock (engine.h), on the models
 * the engine loaded when it opened.
 *
 * Every activation lives on the models' backend. What crosses to the host:
 * the token ids in; the prompt's embedding out once per new prompt (the
 * per-prompt cache keeps host f32) and in once per job; the start image in
 * once (as prepared pixels); the sampler's f64 state (one latent in and one
 * velocity out per step, see rcm.h); each decoded VAE chunk out.
 */
#include <math.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "core/clock.h"
#include "core/pool.h"
#include "engine.h"
#include "image_cond.h"
#include "models.h"
#include "sample/dmd.h"
#include "sample/flow_match.h"
#include "sample/rcm.h"
#include "text/prompt_clean.h"

#define TD_TEXT_LEN 512   /* Wan pads the umT5 output to 512 rows */

/* wan/configs/shared_config.py: sample_neg_prompt, what Wan's pipelines
 * guide away from when no negative prompt is given. */
static const char WAN_NEGATIVE_PROMPT[] =
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，"
    "低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，"
    "毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走";

struct run;

/* A denoiser's view of the run: the context it attends to (the prompt's,
 * or the negative prompt's for CFG's unconditional pass). */
typedef struct den_ref {
    struct run *r;
    const td_tensor *context;
} den_ref;

typedef struct run {
    td_engine *eng;
    const td_job *job;
    td_models *m;
    td_backend *be;          /* the models' backend: every tensor below is on it */
    td_dit_attn attn;
    td_tensor context;       /* [512, text_dim] */
    td_tensor neg_context;   /* CFG: the negative prompt's [512, text_dim] */
    td_tensor xin;           /* i2v: the DiT input [16 noisy + 20 conditioning, T, h, w];
                                TI2V i2v: [48, T, h, w], the image's latent frame first */
    td_tensor first;         /* TI2V i2v: the image's latent frame [48, 1, h, w] */
    td_dit_plan *plan;       /* buffers and RoPE tables for this job's size (both experts) */
    int expert;              /* the expert of the last DiT call */
    double t0, stage_t0;
    int stage;
    uint8_t *rgb;            /* one packed frame */
} run;

static void progress(run *r, int stage, int step, int steps)
{
    double t = td_now();
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
    p.peak_bytes = stage == TD_STAGE_DONE && r->be->ops->peak ? r->be->ops->peak(r->be) : 0;
    r->job->on_progress(r->job->opaque, &p);
}

/* Another thread raises the flag (turbodiff.h): read it atomically. */
static int cancelled(const run *r)
{
    return r->job->cancel && __atomic_load_n(r->job->cancel, __ATOMIC_RELAXED);
}

/* The context rows the caller gave, on the host: written into r->context
 * after the zero padding. */
static int given_context(run *r, int text_dim)
{
    td_ctx *ctx = &r->eng->ctx;
    const td_job *job = r->job;
    td_tensor rows, host;

    TD_TRY(r->be->ops->fill(r->be, &r->context, 0.0f));
    TD_TRY(td_tensor_slice(ctx, &r->context, 0, 0, job->context_len, &rows));
    host = td_view2((void *)job->context, TD_F32, job->context_len, text_dim);
    return r->be->ops->write(r->be, &rows, &host);
}

/* A new prompt through the tokenizer and umT5 into dst, and a host copy of
 * it into the engine's cache. */
static int encode_prompt(run *r, const char *encoder_id, const char *prompt, td_tensor *dst)
{
    td_ctx *ctx = &r->eng->ctx;
    int32_t ids[TD_TEXT_LEN];
    char *clean = NULL;
    td_tensor host = { 0 };
    int n = 0, rc;

    TD_TRY(td_models_load_text(ctx, &r->eng->files, r->m));
    TD_TRY(td_prompt_clean(ctx, prompt, &clean));
    rc = td_tokenizer_encode(ctx, r->m->tok, clean, TD_TEXT_LEN, ids, &n);
    free(clean);
    if (rc == 0)
        rc = td_umt5_encode(r->m->t5, r->be, ids, n, dst);
    if (rc == 0)
        rc = td_tensor_new(ctx, &host, TD_F32, 2, dst->shape);
    if (rc == 0)
        rc = r->be->ops->read(r->be, dst, &host);
    if (rc == 0)
        rc = td_text_cache_put(ctx, r->m->cache, encoder_id, prompt, &host);
    td_tensor_free(&host);
    if (r->m->low_memory)
        td_models_release_text(r->m);
    return rc;
}

/* A [512, text_dim] context the DiT attends to (Wan pads the encoder's
 * rows with zeros up to 512) into dst, a new backend tensor: the prompt
 * cleaned as Wan cleans it, tokenized and encoded, once per prompt per
 * engine. */
static int prompt_context(run *r, const char *prompt, int text_dim, td_tensor *dst)
{
    td_ctx *ctx = &r->eng->ctx;
    char id[1024];
    td_tensor cached = { 0 };
    int hit;

    TD_TRY(r->be->ops->tensor_new(r->be, dst, r->be->act, 2, (int64_t[]){ TD_TEXT_LEN, text_dim }));
    TD_TRY(td_text_encoder_identity(ctx, r->eng->files.t5, id, sizeof(id)));
    hit = td_text_cache_get(ctx, r->m->cache, id, prompt, &cached);
    if (hit < 0)
        return hit;
    if (hit && cached.shape[1] != text_dim)
        hit = td_fail(ctx, TD_ESHAPE, "the cached embedding is %lld wide but the DiT %s takes %d",
                      (long long)cached.shape[1], r->eng->files.dit, text_dim);
    else if (hit)
        hit = r->be->ops->write(r->be, dst, &cached);
    else
        hit = encode_prompt(r, id, prompt, dst);
    td_tensor_free(&cached);
    return hit;
}

/* The prompt's context (given by the caller, else encoded) and, for
 * classifier-free guidance, the negative prompt's. */
static int text_stage(run *r, int text_dim, int negative)
{
    const char *neg = r->job->negative_prompt ? r->job->negative_prompt : WAN_NEGATIVE_PROMPT;

    if (r->job->context) {
        TD_TRY(r->be->ops->tensor_new(r->be, &r->context, r->be->act, 2,
                                      (int64_t[]){ TD_TEXT_LEN, text_dim }));
        TD_TRY(given_context(r, text_dim));
        if (!negative)
            return 0;
    }
    progress(r, TD_STAGE_TEXT, 0, 1);
    if (!r->job->context)
        TD_TRY(prompt_context(r, r->job->prompt, text_dim, &r->context));
    if (negative)
        TD_TRY(prompt_context(r, neg, text_dim, &r->neg_context));
    progress(r, TD_STAGE_TEXT, 1, 1);
    return 0;
}

/* TI2V image-to-video: the image alone through the VAE encoder into
 * r->first [48, 1, h, w] (normalised latents, as diffusers' prepare_latents
 * with expand_timesteps), and the DiT input buffer r->xin. */
static int ti2v_image_stage(run *r, const td_tensor *img, const int64_t *lat_shape)
{
    td_ctx *ctx = &r->eng->ctx;
    td_backend *be = r->be;
    td_tensor one = { 0 }, img4;
    int rc;

    TD_TRY(td_tensor_reshape(ctx, img, 4, (int64_t[]){ 3, 1, img->shape[1], img->shape[2] }, &img4));
    TD_TRY(be->ops->tensor_new(be, &one, be->act, 4, img4.shape));
    rc = be->ops->write(be, &one, &img4);
    if (rc == 0)
        rc = td_vae_encode(r->m->vae, &one, &r->first);
    be->ops->tensor_free(be, &one);
    if (rc == 0)
        rc = be->ops->tensor_new(be, &r->xin, be->act, 4, lat_shape);
    return rc;
}

/* The DiT input of an image-to-video job: its conditioning channels filled
 * once here (TI2V: the image's latent frame), the noisy channels by each
 * denoiser call. */
static int image_stage(run *r, int width, int height, int64_t frames, const int64_t *lat_shape)
{
    td_ctx *ctx = &r->eng->ctx;
    td_backend *be = r->be;
    const td_job *job = r->job;
    const td_dit_config *cfg = &r->m->cfg;
    td_tensor img = { 0 }, y = { 0 }, dst;
    int rc;

    progress(r, TD_STAGE_IMAGE_ENCODE, 0, 1);
    if (width != job->image_width || height != job->image_height)
        td_log(ctx, TD_LOG_VERBOSE, "resizing the %dx%d image to %dx%d", job->image_width,
               job->image_height, width, height);
    rc = td_image_prepare(ctx, job->image, job->image_width, job->image_height,
                          job->image_linesize, width, height, &img);
    if (rc == 0 && cfg->ti2v) {
        rc = ti2v_image_stage(r, &img, lat_shape);
        td_tensor_free(&img);
        if (rc == 0)
            progress(r, TD_STAGE_IMAGE_ENCODE, 1, 1);
        return rc;
    }
    if (rc == 0)
        rc = td_i2v_condition(ctx, r->m->vae, &img, frames, &y);
    td_tensor_free(&img);
    if (rc == 0)
        rc = be->ops->tensor_new(be, &r->xin, be->act, 4, (int64_t[]){ cfg->in_ch, y.shape[1],
                                                                        y.shape[2], y.shape[3] });
    if (rc == 0)
        rc = td_tensor_slice(ctx, &r->xin, 0, cfg->out_ch, y.shape[0], &dst);
    if (rc == 0)
        rc = be->ops->copy(be, &dst, &y, 0);
    if (rc == 0)
        progress(r, TD_STAGE_IMAGE_ENCODE, 1, 1);
    be->ops->tensor_free(be, &y);
    return rc;
}

/* TI2V image-to-video: the DiT input is x with its first latent frame
 * replaced by the image's, whose tokens take timestep 0 (diffusers:
 * (1 - mask) * condition + mask * latents, timestep mask * t). */
static int ti2v_forward(run *r, td_dit *dit, const td_tensor *x, double t, const td_tensor *context,
                        td_tensor *v)
{
    td_tensor frame0;
    TD_TRY(r->be->ops->copy(r->be, &r->xin, x, 0));
    TD_TRY(td_tensor_slice(&r->eng->ctx, &r->xin, 1, 0, 1, &frame0));
    TD_TRY(r->be->ops->copy(r->be, &frame0, &r->first, 0));
    return td_dit_forward_first(dit, r->plan, &r->xin, t * 1000.0, 0.0, context, &r->attn, v);
}

static int denoise(void *opaque, int expert, const td_tensor *x, double t, td_tensor *v)
{
    den_ref *d = opaque;
    run *r = d->r;
    const td_tensor *in = r->xin.data ? &r->xin : x;
    td_dit *dit;
    td_tensor noisy;

    if (expert != r->expert && r->eng->files.dit_low)
        td_log(&r->eng->ctx, TD_LOG_VERBOSE, "t %.4f: switching to the %s-noise expert", t,
               expert == TD_EXPERT_LOW ? "low" : "high");
    r->expert = expert;
    TD_TRY(td_models_expert(&r->eng->ctx, &r->eng->files, r->m, expert, &dit));
    if (!r->plan)
        TD_TRY(td_dit_plan_new(dit, x->shape[1], x->shape[2], x->shape[3], TD_TEXT_LEN, &r->plan));
    if (r->first.data)
        return ti2v_forward(r, dit, x, t, d->context, v);
    if (r->xin.data) {
        TD_TRY(td_tensor_slice(&r->eng->ctx, &r->xin, 0, 0, x->shape[0], &noisy));
        TD_TRY(r->be->ops->copy(r->be, &noisy, x, 0));
    }
    return td_dit_forward(dit, r->plan, in, t * 1000.0, d->context, &r->attn, v);
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

/* The sampled latents (host f32) onto the backend, then one latent frame
 * per decoder push: the first frames leave before the last are decoded,
 * and cancel is honoured between chunks. */
static int decode_stage(run *r, const td_tensor *lat)
{
    td_ctx *ctx = &r->eng->ctx;
    td_backend *be = r->be;
    td_vae_decoder *dec = NULL;
    td_tensor all = { 0 }, one;
    int64_t T = lat->shape[1], h = lat->shape[2], w = lat->shape[3];
    int s = td_vae_spatial_factor(r->m->vae), rc;

    r->rgb = malloc((size_t)(h * s) * (size_t)(w * s) * 3 * 4);
    if (!r->rgb)
        return td_fail(ctx, TD_ENOMEM, "out of memory for one %lldx%lld frame",
                       (long long)w * s, (long long)h * s);
    progress(r, TD_STAGE_DECODE, 0, (int)T);
    rc = td_vae_decoder_open(r->m->vae, h, w, NULL, &dec);
    if (rc == 0)
        rc = be->ops->tensor_new(be, &all, be->act, 4, lat->shape);
    if (rc == 0)
        rc = be->ops->write(be, &all, lat);
    /* TI2V image-to-video: the clip starts from the image's latent frame */
    if (rc == 0 && r->first.data && (rc = td_tensor_slice(ctx, &all, 1, 0, 1, &one)) == 0)
        rc = be->ops->copy(be, &one, &r->first, 0);
    for (int64_t t = 0; rc == 0 && t < T; t++) {
        rc = td_tensor_slice(ctx, &all, 1, t, 1, &one);
        if (rc == 0)
            rc = td_vae_decoder_push(dec, &one, deliver, r);
    }
    be->ops->tensor_free(be, &all);
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

void td_job_output_size(const td_job *job, int *width, int *height)
{
    if (job->adaptive_resolution && job->image_width > 0 && job->image_height > 0)
        td_i2v_adaptive_size(job->image_width, job->image_height, job->width, job->height,
                             width, height);
    else
        *width = job->width, *height = job->height;
}

/* Everything a run put on the backend, whatever stage it stopped in. */
static void run_free(run *r)
{
    td_dit_plan_free(&r->plan);
    r->be->ops->tensor_free(r->be, &r->xin);
    r->be->ops->tensor_free(r->be, &r->first);
    r->be->ops->tensor_free(r->be, &r->context);
    r->be->ops->tensor_free(r->be, &r->neg_context);
}

int td_job_sampler(const td_job *job, const td_model_defaults *d)
{
    return job->sampler != TD_SAMPLER_AUTO ? job->sampler : d->sampler;
}

static int run_rcm(run *r, const td_model_defaults *d, td_denoiser *cond, td_sample_io *io, td_tensor *x)
{
    const td_job *job = r->job;
    td_rcm_params p;

    td_rcm_params_default(&p);
    p.steps = job->steps;
    p.sigma_max = job->sigma_max > 0 ? job->sigma_max : job->image ? 200 : 80;
    p.ode = job->ode;
    p.two_experts = r->m->pair;
    p.boundary = job->boundary > 0 ? job->boundary : d->boundary;
    progress(r, TD_STAGE_DENOISE, 0, p.steps);
    return td_rcm_sample(&r->eng->ctx, &p, cond, io, x);
}

/* Flow matching (UniPC) with classifier-free guidance: the job's settings,
 * else the model's. */
static int run_flow(run *r, const td_model_defaults *d, td_denoiser *cond, td_denoiser *uncond,
                    td_sample_io *io, td_tensor *x)
{
    const td_job *job = r->job;
    td_flow_params p;

    td_flow_params_default(&p);
    p.steps = job->flow_steps > 0 ? job->flow_steps : d->flow_steps;
    p.shift = job->shift > 0 ? job->shift : d->shift;
    p.guidance = job->guidance > 0 ? job->guidance : d->guidance;
    p.guidance_low = job->guidance_low > 0 ? job->guidance_low : d->guidance_low;
    p.two_experts = r->m->pair;
    p.boundary = job->boundary > 0 ? job->boundary : d->boundary;
    progress(r, TD_STAGE_DENOISE, 0, p.steps);
    return td_flow_sample(&r->eng->ctx, &p, cond, uncond, io, x);
}

/* DMD (dmd.h): the job's step list, else FastWan's published one. */
static int run_dmd(run *r, td_denoiser *cond, td_sample_io *io, td_tensor *x)
{
    td_ctx *ctx = &r->eng->ctx;
    const td_job *job = r->job;
    td_dmd_params p;

    td_dmd_params_default(&p);
    if (job->timesteps)
        TD_TRY(td_dmd_parse_timesteps(ctx, "timesteps", job->timesteps, &p));
    progress(r, TD_STAGE_DENOISE, 0, p.steps);
    return td_dmd_sample(ctx, &p, cond, io, x);
}

int td_job_guided(const td_job *job, const td_model_defaults *d, int pair)
{
    double g = job->guidance > 0 ? job->guidance : d->guidance;
    double gl = job->guidance_low > 0 ? job->guidance_low : d->guidance_low;
    return g > 1 || (pair && gl > 1);
}

int td_generate(td_engine *eng, const td_job *job)
{
    td_ctx *ctx = &eng->ctx;
    run r = { .eng = eng, .job = job, .m = eng->models, .be = eng->models->be, .stage = -1 };
    td_sample_io io = { .noise = { .seed = job->seed }, .be = r.be, .cancel = job->cancel,
                        .on_step = on_step, .step_opaque = &r };
    den_ref dc = { &r, &r.context }, du = { &r, &r.neg_context };
    td_denoiser cond = { denoise, &dc }, uncond = { denoise, &du };
    td_model_defaults d;
    td_tensor x = { 0 };
    int width, height, rc, sampler, guided;
    int s = td_vae_spatial_factor(r.m->vae);
    int64_t latent_frames = 1 + (job->frames + 2) / 4, lat[4];

    r.t0 = r.stage_t0 = td_now();
    /* the job's peak, reported with TD_STAGE_DONE, starts from the weights
     * the engine holds now */
    if (r.be->ops->peak_reset)
        r.be->ops->peak_reset(r.be);
    td_models_defaults(r.m, &eng->files, &d);
    sampler = td_job_sampler(job, &d);
    guided = sampler == TD_SAMPLER_FLOW && td_job_guided(job, &d, r.m->pair);
    TD_TRY(choose_attention(&r, &r.m->cfg));
    td_job_output_size(job, &width, &height);
    lat[0] = r.m->cfg.out_ch, lat[1] = latent_frames, lat[2] = height / s, lat[3] = width / s;
    td_log(ctx, TD_LOG_VERBOSE, "sampler: %s", sampler == TD_SAMPLER_FLOW ? "flow matching (UniPC)"
           : sampler == TD_SAMPLER_DMD ? "DMD (FastWan)" : "rCM");

    rc = text_stage(&r, r.m->cfg.text_dim, guided);
    if (rc == 0 && job->image)
        rc = image_stage(&r, width, height, 1 + 4 * (latent_frames - 1), lat);
    if (rc == 0 && cancelled(&r))
        rc = td_fail(ctx, TD_ECANCELLED, "cancelled");
    /* The sampler's state is host f32 / f64, as upstream keeps it (sample.h). */
    if (rc == 0)
        rc = td_tensor_new(ctx, &x, TD_F32, 4, lat);
    if (rc == 0)
        rc = sampler == TD_SAMPLER_FLOW ? run_flow(&r, &d, &cond, guided ? &uncond : NULL, &io, &x)
           : sampler == TD_SAMPLER_DMD  ? run_dmd(&r, &cond, &io, &x)
                                        : run_rcm(&r, &d, &cond, &io, &x);
    td_dit_plan_free(&r.plan);   /* the DiT's activations go before the VAE's come */
    if (rc == 0)
        rc = decode_stage(&r, &x);
    if (rc == TD_ECANCELLED || (rc == 0 && cancelled(&r)))
        rc = td_fail(ctx, TD_ECANCELLED, "cancelled");
    if (rc == 0)
        progress(&r, TD_STAGE_DONE, 1, 1);
    td_tensor_free(&x);
    run_free(&r);
    if (r.be->ops->trim)
        r.be->ops->trim(r.be);
    return rc;
}
