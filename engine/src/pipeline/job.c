/*
 * td_job: defaults, validation with messages that say what to change, and
 * the entry point of a generation run.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "image_cond.h"
#include "models.h"
#include "sample/dmd.h"

/* Largest accepted sizes: beyond these the token count of one clip no longer
 * fits the int32 indices the attention kernels use. */
#define TD_MAX_SIDE 4096
#define TD_MAX_FRAMES 4096

void td_job_default(td_job *job)
{
    memset(job, 0, sizeof(*job));
    job->width = 832;
    job->height = 480;
    job->frames = 81;
    job->steps = 4;
    job->attention = TD_ATTN_SLA;
    job->topk = 0.1;
    job->frame_format = TD_FRAME_RGB24;
}

static int check_side(td_ctx *ctx, const char *name, int v)
{
    int lo, hi;
    if (v < 16 || v > TD_MAX_SIDE)
        return td_fail(ctx, TD_EINVAL, "%s %d is out of range: it must be a multiple of 16 "
                       "from 16 to %d", name, v, TD_MAX_SIDE);
    if (v % 16 == 0)
        return 0;
    lo = v / 16 * 16;
    hi = lo + 16;
    if (lo < 16)
        return td_fail(ctx, TD_EINVAL, "%s %d is not a multiple of 16: use %d", name, v, hi);
    return td_fail(ctx, TD_EINVAL, "%s %d is not a multiple of 16: the nearest valid values "
                   "are %d and %d", name, v, lo, hi);
}

static int validate_flow(td_ctx *ctx, const td_job *job)
{
    if (job->sampler < TD_SAMPLER_AUTO || job->sampler > TD_SAMPLER_DMD)
        return td_fail(ctx, TD_EINVAL, "sampler %d: expected auto (0), rcm (1), flow (2) or dmd (3)",
                       job->sampler);
    if (job->timesteps) {
        td_dmd_params p;
        td_dmd_params_default(&p);
        TD_TRY(td_dmd_parse_timesteps(ctx, "timesteps", job->timesteps, &p));
    }
    if (job->flow_steps < 0 || job->flow_steps > 1000)
        return td_fail(ctx, TD_EINVAL, "flow_steps %d is out of range: flow matching samples in 1 to "
                       "1000 steps (0: the model's own)", job->flow_steps);
    if (!isfinite(job->shift) || job->shift > 100)
        return td_fail(ctx, TD_EINVAL, "shift %g is out of range: use a value in (0, 100], or 0 for "
                       "the model's own", job->shift);
    if (!isfinite(job->guidance) || !isfinite(job->guidance_low) || job->guidance > 100 ||
        job->guidance_low > 100)
        return td_fail(ctx, TD_EINVAL, "guidance %g / guidance_low %g is out of range: use a value in "
                       "(0, 100] (1: no guidance), or 0 for the model's own", job->guidance,
                       job->guidance_low);
    return 0;
}

int td_job_check(td_ctx *ctx, const td_job *job)
{
    if ((!job->prompt || !*job->prompt) && !job->context)
        return td_fail(ctx, TD_EINVAL, "no prompt: give a prompt (or a precomputed context)");
    if (job->context && job->context_len <= 0)
        return td_fail(ctx, TD_EINVAL, "context_len %d: a context needs at least one token",
                       job->context_len);
    if (job->width % 16 || job->height % 16) {
        /* Name both sides' nearest sizes at once, so one retry fixes it. */
        int w = job->width, h = job->height;
        int wl = w / 16 * 16, hl = h / 16 * 16;
        if (w >= 16 && h >= 16 && w <= TD_MAX_SIDE && h <= TD_MAX_SIDE)
            return td_fail(ctx, TD_EINVAL, "size %dx%d is not a multiple of 16: the nearest "
                           "valid sizes are %dx%d and %dx%d", w, h, wl, hl,
                           w % 16 ? wl + 16 : w, h % 16 ? hl + 16 : h);
    }
    TD_TRY(check_side(ctx, "width", job->width));
    TD_TRY(check_side(ctx, "height", job->height));
    if (job->frames < 1 || job->frames > TD_MAX_FRAMES)
        return td_fail(ctx, TD_EINVAL, "frames %d is out of range: it must be from 1 to %d",
                       job->frames, TD_MAX_FRAMES);
    if (job->steps < 1 || job->steps > 4)
        return td_fail(ctx, TD_EINVAL, "steps %d is out of range: rCM samples in 1 to 4 steps",
                       job->steps);
    if (!isfinite(job->sigma_max) || job->sigma_max > 1000)
        return td_fail(ctx, TD_EINVAL, "sigma_max %g is out of range: use a value in (0, 1000], "
                       "or 0 for the model's default", job->sigma_max);
    if (job->attention < TD_ATTN_FULL || job->attention > TD_ATTN_SAGESLA)
        return td_fail(ctx, TD_EINVAL, "attention %d: expected full (0), sla (1) or sagesla (2)",
                       job->attention);
    if (!(job->topk > 0 && job->topk <= 1))
        return td_fail(ctx, TD_EINVAL, "topk %g is out of range: it is the fraction of key "
                       "blocks SLA keeps, in (0, 1]", job->topk);
    if (!isfinite(job->boundary) || job->boundary >= 1)
        return td_fail(ctx, TD_EINVAL, "boundary %g is out of range: use a value in (0, 1), "
                       "or 0 for the model's (0.875 text-to-video, 0.9 image-to-video)", job->boundary);
    TD_TRY(validate_flow(ctx, job));
    if (job->frame_format != TD_FRAME_RGB24 && job->frame_format != TD_FRAME_RGBF32)
        return td_fail(ctx, TD_EINVAL, "frame_format %d: expected RGB24 (0) or RGBF32 (1)",
                       job->frame_format);
    if (!job->on_frame)
        return td_fail(ctx, TD_EINVAL, "on_frame is NULL: a job needs somewhere to deliver frames");
    if (job->image) {
        if (job->image_width < 1 || job->image_height < 1 || job->image_width > 65536 ||
            job->image_height > 65536)
            return td_fail(ctx, TD_EINVAL, "image size %dx%d is out of range (1 to 65536)",
                           job->image_width, job->image_height);
        if (job->image_linesize < 3 * (ptrdiff_t)job->image_width)
            return td_fail(ctx, TD_EINVAL, "image linesize %td is smaller than 3 x width %d",
                           job->image_linesize, job->image_width);
    }
    return 0;
}

/* The nearest multiples of m around v, for the messages below. */
static void nearest(int v, int m, int *lo, int *hi)
{
    *lo = v / m * m;
    *hi = *lo + m;
    if (*lo < m)
        *lo = *hi;
}

/* The clip's size against the latent grid: the VAE compresses each side
 * by s, then the DiT patches the latents by patch[1] x patch[2] (Wan2.1:
 * 8 x 2 = 16, which td_job_check already holds; TI2V-5B: 16 x 2 = 32). */
static int check_grid(td_ctx *ctx, const td_engine *eng, const td_job *job, int w, int h)
{
    const td_models *m = eng->models;
    const td_dit_config *c = &m->cfg;
    int s = td_vae_spatial_factor(m->vae), mw = s * c->patch[2], mh = s * c->patch[1];
    int64_t T = 1 + (job->frames + 2) / 4;
    char adaptive[96] = "";
    int wl, wh, hl, hh;

    if (w > TD_MAX_SIDE || h > TD_MAX_SIDE)
        return td_fail(ctx, TD_EINVAL, "adaptive resolution gives %dx%d for the %dx%d image: more than "
                       "%d pixels on a side: lower width x height", w, h, job->image_width,
                       job->image_height, TD_MAX_SIDE);
    if (w % mw || h % mh) {
        char sizes[64];
        if (job->adaptive_resolution && (w != job->width || h != job->height))
            snprintf(adaptive, sizeof(adaptive), " (adaptive resolution's size for the %dx%d image)",
                     job->image_width, job->image_height);
        nearest(w, mw, &wl, &wh);
        nearest(h, mh, &hl, &hh);
        wl = w % mw ? wl : w, wh = w % mw ? wh : w, hl = h % mh ? hl : h, hh = h % mh ? hh : h;
        if (wl == wh && hl == hh)
            snprintf(sizes, sizeof(sizes), "use %dx%d", wh, hh);
        else
            snprintf(sizes, sizeof(sizes), "the nearest valid sizes are %dx%d and %dx%d", wl, hl, wh, hh);
        return td_fail(ctx, TD_EINVAL, "size %dx%d%s: the VAE %s compresses by %d and the DiT %s "
                       "patches its latents by %dx%d, so the width must be a multiple of %d and the "
                       "height of %d: %s", w, h, adaptive, eng->files.vae, s, eng->files.dit,
                       c->patch[2], c->patch[1], mw, mh, sizes);
    }
    if (T % c->patch[0]) {
        /* L latent frames come from up to 1 + 4 (L - 1) frames */
        int64_t lo = T - T % c->patch[0], hi = lo + c->patch[0];
        char counts[64];
        if (lo > 0)
            snprintf(counts, sizeof(counts), "%lld or %lld", (long long)(1 + 4 * (lo - 1)),
                     (long long)(1 + 4 * (hi - 1)));
        else
            snprintf(counts, sizeof(counts), "%lld", (long long)(1 + 4 * (hi - 1)));
        return td_fail(ctx, TD_EINVAL, "frames %d make %lld latent frames, and the DiT %s patches "
                       "time by %d: use %s frames", job->frames, (long long)T, eng->files.dit,
                       c->patch[0], counts);
    }
    return 0;
}

/* What the model set asks of the job's prompt, context and image. */
static int check_inputs(td_ctx *ctx, const td_engine *eng, const td_job *job, int guided)
{
    const td_models *m = eng->models;
    const td_dit_config *c = &m->cfg;

    if (job->context && job->context_len > TD_UMT5_TEXT_LEN)
        return td_fail(ctx, TD_EINVAL, "context_len %d is more than the %d rows the DiT attends to: "
                       "give at most %d rows", job->context_len, TD_UMT5_TEXT_LEN, TD_UMT5_TEXT_LEN);
    if (job->context && job->context_dim != c->text_dim)
        return td_fail(ctx, TD_ESHAPE, "context_dim %d: the context rows must be %d wide for the DiT "
                       "%s: encode the prompt with its text encoder (umT5-XXL for Wan)", job->context_dim,
                       c->text_dim, eng->files.dit);
    if ((!job->context || guided) && m->t5_dims.d_model != c->text_dim)
        return td_fail(ctx, TD_ESHAPE, "text encoder %s gives %lld-wide embeddings but the DiT %s takes "
                       "%d: use the text encoder the DiT was trained with (umT5-XXL for Wan)",
                       eng->files.t5, (long long)m->t5_dims.d_model, eng->files.dit, c->text_dim);
    /* TI2V-5B makes video from text, or from text and an image */
    if (!c->ti2v && c->i2v && !job->image)
        return td_fail(ctx, TD_EINVAL, "this model is image-to-video (the DiT %s takes %d input "
                       "channels): give it an image (turbodiff_i2v, or --image)", eng->files.dit,
                       c->in_ch);
    if (!c->ti2v && !c->i2v && job->image)
        return td_fail(ctx, TD_EINVAL, "this model is text-to-video (the DiT %s takes %d input "
                       "channels): leave the image out (the turbodiff source filter, or no --image), or "
                       "use an image-to-video model (36 input channels, or TI2V-5B's 48)",
                       eng->files.dit, c->in_ch);
    if (c->i2v && c->in_ch != c->out_ch + TD_I2V_MASK_CH + td_vae_z_dim(m->vae))
        return td_fail(ctx, TD_ESHAPE, "the DiT %s takes %d input channels, not the %d noisy + %d "
                       "conditioning channels of image-to-video with the VAE %s", eng->files.dit,
                       c->in_ch, c->out_ch, TD_I2V_MASK_CH + td_vae_z_dim(m->vae), eng->files.vae);
    if (job->image && !td_vae_has_encoder(m->vae))
        return td_fail(ctx, TD_ENOTFOUND, "image-to-video needs the VAE's encoder, and the VAE file %s "
                       "has decoder weights only: use the full VAE checkpoint", eng->files.vae);
    return 0;
}

int td_job_check_model(td_ctx *ctx, const td_engine *eng, const td_job *job)
{
    const td_models *m = eng->models;
    td_model_defaults d;
    int w, h, sampler;

    td_models_defaults(m, &eng->files, &d);
    sampler = td_job_sampler(job, &d);
    if (sampler == TD_SAMPLER_DMD && m->pair)
        return td_fail(ctx, TD_EINVAL, "sampler dmd: %s and %s are a high/low-noise expert pair, "
                       "and DMD (FastWan) runs one DiT: use the rcm or flow sampler",
                       eng->files.dit, eng->files.dit_low);
    TD_TRY(check_inputs(ctx, eng, job, sampler == TD_SAMPLER_FLOW && td_job_guided(job, &d, m->pair)));
    td_job_output_size(job, &w, &h);
    return check_grid(ctx, eng, job, w, h);
}

/* Where a job's failure goes: its own error sink, else the engine. */
int td_job_report(td_engine *eng, const td_job *job, const td_ctx *ctx)
{
    if (job && job->error) {
        job->error->code = ctx->err;
        snprintf(job->error->msg, sizeof(job->error->msg), "%s", ctx->errmsg);
    } else if (eng) {
        eng->ctx.err = ctx->err;
        snprintf(eng->ctx.errmsg, sizeof(eng->ctx.errmsg), "%s", ctx->errmsg);
    }
    return ctx->err;
}

int td_job_validate(td_engine *eng, const td_job *job)
{
    td_ctx ctx;

    td_ctx_init(&ctx);
    if (!job) {
        td_fail(&ctx, TD_EINVAL, "td_job_validate: NULL job");
        return td_job_report(eng, job, &ctx);
    }
    if (td_job_check(&ctx, job) < 0 || (eng && td_estimate_check(eng, job, &ctx) < 0))
        return td_job_report(eng, job, &ctx);
    return 0;
}

int td_job_run(td_engine *eng, const td_job *job)
{
    td_ctx ctx;
    int ret;

    td_ctx_init(&ctx);
    if (!eng) {
        td_fail(&ctx, TD_EINVAL, "td_job_run: NULL engine");
        return td_job_report(eng, job, &ctx);
    }
    if (!job) {
        td_fail(&ctx, TD_EINVAL, "td_job_run: NULL job");
        return td_job_report(eng, job, &ctx);
    }
    if (td_job_check(&ctx, job) < 0)
        return td_job_report(eng, job, &ctx);
    /* The models and the engine context are shared: one job at a time, its
     * log callback installed for its duration. The memory check comes
     * under the lock, once an earlier job on a shared engine has given its
     * memory back. */
    pthread_mutex_lock(&eng->run_lock);
    td_ctx_clear(&eng->ctx);
    eng->ctx.log = job->log;
    eng->ctx.log_opaque = job->log_opaque;
    eng->ctx.log_level = job->log_level ? job->log_level : TD_LOG_INFO;
    ret = td_estimate_check(eng, job, &eng->ctx);
    if (ret == 0)
        ret = td_generate(eng, job);
    if (ret < 0 && job->error) {
        job->error->code = ret;
        snprintf(job->error->msg, sizeof(job->error->msg), "%s", eng->ctx.errmsg);
    }
    eng->ctx.log = NULL;
    pthread_mutex_unlock(&eng->run_lock);
    return ret;
}
