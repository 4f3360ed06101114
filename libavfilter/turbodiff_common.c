/*
 * This file is part of FFmpeg.
 *
 * FFmpeg is free software; you can redistribute it and/or
 * modify it under the terms of the GNU Lesser General Public
 * License as published by the Free Software Foundation; either
 * version 2.1 of the License, or (at your option) any later version.
 *
 * FFmpeg is distributed in the hope that it will be useful,
 * but WITHOUT ANY WARRANTY; without even the implied warranty of
 * MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the GNU
 * Lesser General Public License for more details.
 *
 * You should have received a copy of the GNU Lesser General Public
 * License along with FFmpeg; if not, write to the Free Software
 * Foundation, Inc., 51 Franklin Street, Fifth Floor, Boston, MA 02110-1301 USA
 */

/**
 * @file
 * Shared part of the turbodiff filters: option checks, engine, worker thread.
 */

#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "libavutil/attributes.h"
#include "libavutil/avstring.h"
#include "libavutil/common.h"
#include "libavutil/file.h"
#include "libavutil/imgutils.h"
#include "libavutil/log.h"
#include "libavutil/mathematics.h"
#include "libavutil/mem.h"
#include "libavutil/opt.h"
#include "libavutil/pixdesc.h"
#include "libavutil/random_seed.h"
#include "libavutil/time.h"

#include "filters.h"
#include "turbodiff_common.h"

static int td_averror(int err)
{
    switch (err) {
    case TD_EINVAL:       return AVERROR(EINVAL);
    case TD_ENOMEM:       return AVERROR(ENOMEM);
    case TD_EIO:          return AVERROR(EIO);
    case TD_ENOTFOUND:    return AVERROR(ENOENT);
    case TD_EUNSUPPORTED: return AVERROR(ENOSYS);
    case TD_ECANCELLED:   return AVERROR_EXIT;
    case TD_EDEVICE:      return AVERROR_EXTERNAL;
    default:              return AVERROR_INVALIDDATA;
    }
}

static void log_cb(void *opaque, int level, const char *msg)
{
    av_log(opaque, level, "%s\n", msg);
}

/**
 * The log of the jobs, on the worker thread: a warning about the model
 * (e.g. a DiT without SLA projections) comes with every clip but says
 * nothing new after the first, so each distinct one is logged once per
 * filter instance.
 */
static void job_log_cb(void *opaque, int level, const char *msg)
{
    AVFilterContext *ctx = opaque;
    TurboDiffContext *s = ctx->priv;

    if (level <= AV_LOG_WARNING) {
        char *copy;
        for (int i = 0; i < s->nb_warnings; i++)
            if (!strcmp(s->warnings[i], msg))
                return;
        if ((copy = av_strdup(msg)) &&
            av_dynarray_add_nofree(&s->warnings, &s->nb_warnings, copy) < 0)
            av_free(copy);
    }
    av_log(ctx, level, "%s\n", msg);
}

/**
 * 480p/720p at an aspect ratio: Wan's own sizes for 16:9 and 9:16, otherwise
 * the same pixel area at that aspect, rounded to multiples of 16.
 */
static av_cold int size_from_resolution(AVFilterContext *ctx, TurboDiffContext *s)
{
    double area, a = av_q2d(s->aspect);
    int lines;

    if (!strcmp(s->resolution, "480p")) {
        lines = 480;
        area  = 832 * 480;
    } else if (!strcmp(s->resolution, "720p")) {
        lines = 720;
        area  = 1280 * 720;
    } else {
        av_log(ctx, AV_LOG_ERROR, "resolution '%s': expected 480p or 720p\n", s->resolution);
        return AVERROR(EINVAL);
    }
    if (!(a > 0.1 && a < 10)) {
        av_log(ctx, AV_LOG_ERROR, "aspect %d:%d is out of range (1:10 to 10:1)\n",
               s->aspect.num, s->aspect.den);
        return AVERROR(EINVAL);
    }
    if (fabs(a - 16.0 / 9) < 0.01) {
        s->w = lines == 480 ? 832 : 1280;
        s->h = lines;
    } else if (fabs(a - 9.0 / 16) < 0.01) {
        s->w = lines;
        s->h = lines == 480 ? 832 : 1280;
    } else {
        s->w = FFMAX(16, (int)lrint(sqrt(area * a) / 16) * 16);
        s->h = FFMAX(16, (int)lrint(sqrt(area / a) / 16) * 16);
    }
    return 0;
}

/**
 * A prompts line with its surrounding white space cut, or NULL when it is
 * not a prompt (blank, or a # comment).
 */
static av_cold char *prompt_from_line(char *line)
{
    char *end;

    line += strspn(line, " \t\v\f");
    end = line + strlen(line);
    while (end > line && strchr(" \t\v\f", end[-1]))
        *--end = 0;
    return *line && *line != '#' ? line : NULL;
}

static av_cold int read_prompts(AVFilterContext *ctx, TurboDiffContext *s)
{
    uint8_t *buf;
    size_t size;
    struct stat st;
    char *text, *line, *save = NULL;
    int ret;

    /* av_file_map reports a directory or an empty file by errno values
     * ("No such device", "Cannot allocate memory") that do not say this. */
    if (!stat(s->prompts_file, &st) && S_ISDIR(st.st_mode)) {
        av_log(ctx, AV_LOG_ERROR, "prompts file '%s' is a directory: give a text file with one "
               "prompt per line\n", s->prompts_file);
        return AVERROR(EISDIR);
    }
    if (!stat(s->prompts_file, &st) && !st.st_size) {
        av_log(ctx, AV_LOG_ERROR, "prompts file '%s' is empty: write one prompt per line\n",
               s->prompts_file);
        return AVERROR(EINVAL);
    }
    if ((ret = av_file_map(s->prompts_file, &buf, &size, 0, ctx)) < 0) {
        av_log(ctx, AV_LOG_ERROR, "prompts file '%s': %s\n", s->prompts_file, av_err2str(ret));
        return ret;
    }
    text = av_strndup(buf, size);
    av_file_unmap(buf, size);
    if (!text)
        return AVERROR(ENOMEM);
    for (line = av_strtok(text, "\r\n", &save); line; line = av_strtok(NULL, "\r\n", &save)) {
        char *prompt = prompt_from_line(line), *copy;
        if (!prompt)
            continue;
        if (!(copy = av_strdup(prompt)) ||
            av_dynarray_add_nofree(&s->prompt_lines, &s->nb_prompt_lines, copy) < 0) {
            av_free(copy);
            av_free(text);
            return AVERROR(ENOMEM);
        }
    }
    av_free(text);
    if (!s->nb_prompt_lines) {
        av_log(ctx, AV_LOG_ERROR, "prompts file '%s' holds no prompt (only blank lines and "
               "# comments)\n", s->prompts_file);
        return AVERROR(EINVAL);
    }
    return 0;
}

/**
 * A job from the options, for checks before anything is loaded and as the
 * template of every clip.
 */
static void job_from_options(TurboDiffContext *s, td_job *job)
{
    td_job_default(job);
    job->prompt = s->prompt ? s->prompt : s->nb_prompt_lines ? s->prompt_lines[0] : NULL;
    job->width = s->w;
    job->height = s->h;
    job->frames = s->clip_frames;
    job->steps = s->steps;
    job->sigma_max = s->sigma_max;
    job->sampler = s->sampler;
    job->flow_steps = s->flow_steps;
    job->shift = s->shift;
    job->guidance = s->guidance;
    job->guidance_low = s->guidance_low;
    job->negative_prompt = s->negative_prompt;
    job->timesteps = s->timesteps;
    job->boundary = s->boundary;
    job->attention = s->attention;
    job->topk = s->topk;
    job->max_memory = s->max_memory;
    /* yuv420p is made from the library's float frames, so that the 4:2:0
     * conversion does not round twice. */
    job->frame_format = s->pix_fmt == AV_PIX_FMT_YUV420P ? TD_FRAME_RGBF32 : TD_FRAME_RGB24;
    job->adaptive_resolution = 0;
}

/**
 * The structs this file fills are laid out as turbodiff.h was at build
 * time; a libturbodiff of another ABI (see TD_VERSION_MINOR) would read them
 * wrongly, so refuse it before the first call that takes one. From 1.0 on, a
 * newer minor only adds, but an older one lacks what this file may use.
 */
static av_cold int check_library_version(AVFilterContext *ctx)
{
    unsigned v = td_version();
    unsigned major = v >> 16, minor = v >> 8 & 0xff;

    if (major == TD_VERSION_MAJOR &&
        (major ? minor >= TD_VERSION_MINOR : minor == TD_VERSION_MINOR))
        return 0;
    av_log(ctx, AV_LOG_ERROR, "libturbodiff %u.%u.%u is loaded, but FFmpeg was built against "
           "%d.%d.%d, whose interface differs: rebuild FFmpeg against the installed libturbodiff\n",
           major, minor, v & 0xff, TD_VERSION_MAJOR, TD_VERSION_MINOR, TD_VERSION_MICRO);
    return AVERROR_EXTERNAL;
}

/** A clip over this many seconds is worth a warning before it starts. */
#define TD_TIME_BUDGET 600

static const char *const stage_names[] = { "text", "image", "denoise", "decode", "done" };

static void format_bytes(char *buf, size_t size, uint64_t b)
{
    if (b >= 1ULL << 30)
        snprintf(buf, size, "%.1f GiB", b / (double)(1ULL << 30));
    else
        snprintf(buf, size, "%.1f MiB", b / (double)(1ULL << 20));
}

static void format_seconds(char *buf, size_t size, double t)
{
    if (t <= 0)
        av_strlcpy(buf, "an unknown time", size);
    else if (t < 0.1)
        av_strlcpy(buf, "under 0.1 s", size);
    else if (t < 120)
        snprintf(buf, size, "about %.1f s", t);
    else
        snprintf(buf, size, "about %.0f min", t / 60);
}

/** Stands in for the real sink while only the options are checked. */
static int options_only(void *opaque, const td_frame *f)
{
    return 1;
}

/**
 * The first given option that only sampler reads, or NULL: rCM reads steps
 * and sigma_max, flow matching its steps, shift, guidance and negative
 * prompt, DMD its timesteps.
 */
static const char *sampler_option_given(const TurboDiffContext *s, int sampler)
{
    switch (sampler) {
    case TD_SAMPLER_RCM:
        return s->steps != 4 ? "steps" : s->sigma_max > 0 ? "sigma_max" : NULL;
    case TD_SAMPLER_FLOW:
        return s->flow_steps      ? "flow_steps" : s->shift > 0        ? "shift" :
               s->guidance > 0    ? "guidance"   : s->guidance_low > 0 ? "guidance_low" :
               s->negative_prompt ? "negative_prompt" : NULL;
    case TD_SAMPLER_DMD:
        return s->timesteps ? "timesteps" : NULL;
    }
    return NULL;
}

/**
 * Refuse options the sampler would not read (they would pass silently):
 * an explicit sampler before the model loads, sampler=auto once it is open,
 * against the sampler the model resolves it to, so that a user who expected
 * another sampler learns to ask for it.
 */
static av_cold int check_sampler_options(AVFilterContext *ctx, TurboDiffContext *s)
{
    static const char *const name[] = {
        [TD_SAMPLER_RCM] = "rcm", [TD_SAMPLER_FLOW] = "flow", [TD_SAMPLER_DMD] = "dmd",
    };
    static const char *const family[] = {
        [TD_SAMPLER_RCM] = "an rCM", [TD_SAMPLER_FLOW] = "a flow matching",
        [TD_SAMPLER_DMD] = "a DMD",
    };
    static const char *const model[] = {
        [TD_SAMPLER_RCM]  = "this model samples with rCM (a TurboDiffusion checkpoint, or a DiT "
                            "it distills)",
        [TD_SAMPLER_FLOW] = "this model samples with flow matching",
        [TD_SAMPLER_DMD]  = "this model samples with DMD (a FastWan checkpoint)",
    };
    td_job job;

    job_from_options(s, &job);
    if (s->sampler == TD_SAMPLER_AUTO) {
        if (!s->engine)
            return 0;
        td_job_resolve(s->engine, &job);
    }
    for (int i = TD_SAMPLER_RCM; i <= TD_SAMPLER_DMD; i++) {
        const char *opt = i != job.sampler ? sampler_option_given(s, i) : NULL;
        char given[32];

        if (!opt)
            continue;
        snprintf(given, sizeof(given), "sampler=%s", name[job.sampler]);
        av_log(ctx, AV_LOG_ERROR, "%s is %s option, but %s: drop %s, or set sampler=%s\n", opt,
               family[i], s->sampler == TD_SAMPLER_AUTO ? model[job.sampler] : given, opt, name[i]);
        return AVERROR(EINVAL);
    }
    return 0;
}

/**
 * Say at info, before the first step, what the options will produce:
 * -t or -frames:v on the output cannot lengthen what the filter makes, so
 * a user asking for more than one clip holds needs the hint.
 */
static av_cold void log_plan(AVFilterContext *ctx, TurboDiffContext *s, const td_estimate *e)
{
    static const char *const i2v_clips[] = {
        [TD_MODE_FIRST] = "1 clip from the first input frame",
        [TD_MODE_EACH] = "1 clip per input frame",
        [TD_MODE_EXTEND] = "the input, then 1 clip continuing its last frame",
    };
    double seconds = s->clip_frames * av_q2d(av_inv_q(s->rate));
    int fps = td_engine_native_fps(s->engine);
    char clips[64], sampler[128], mem[32], work[32], wts[32], avail[32], took[32];
    td_job job;

    /* The sampler the model's defaults resolve to, with its steps: flow
     * matching takes 40 or 50 where rCM takes 1 to 4 (two passes each when
     * it guides), which a user should know before the first one. */
    job_from_options(s, &job);
    td_job_resolve(s->engine, &job);
    if (job.sampler == TD_SAMPLER_FLOW && job.guidance_low != job.guidance)
        snprintf(sampler, sizeof(sampler), "flow matching %d steps, shift %g, guidance %g "
                 "(low-noise expert %g)", job.flow_steps, job.shift, job.guidance, job.guidance_low);
    else if (job.sampler == TD_SAMPLER_FLOW)
        snprintf(sampler, sizeof(sampler), "flow matching %d steps, shift %g, guidance %g",
                 job.flow_steps, job.shift, job.guidance);
    else if (job.sampler == TD_SAMPLER_DMD)
        snprintf(sampler, sizeof(sampler), "DMD timesteps %s",
                 job.timesteps ? job.timesteps : "1000|757|522");
    else
        snprintf(sampler, sizeof(sampler), "rCM %d step(s)", job.steps);

    if (ctx->nb_inputs)
        av_strlcpy(clips, i2v_clips[s->mode], sizeof(clips));
    else if (s->loop)
        av_strlcpy(clips, "clips until stopped", sizeof(clips));
    else
        snprintf(clips, sizeof(clips), "%d clip(s)",
                 s->clips ? s->clips : s->nb_prompt_lines ? s->nb_prompt_lines : 1);
    format_bytes(mem, sizeof(mem), e->peak_bytes);
    format_seconds(took, sizeof(took), e->seconds);
    av_log(ctx, AV_LOG_INFO, "%s of %d frames %dx%d at %d/%d fps (%.2fs each), %s, "
           "model %s, device %s; each clip needs about %s on %s and %s%s\n", clips, s->clip_frames,
           s->w, s->h, s->rate.num, s->rate.den, seconds, sampler,
           s->dit ? s->dit : s->model_dir ? s->model_dir : "(the default model)", s->device, mem,
           e->device, took, !ctx->nb_inputs && !s->loop && !s->clips ?
           "; for longer video set loop=1 (with -t or -frames:v on the output), clips=, "
           "or frames= / duration=" : "");
    format_bytes(work, sizeof(work), e->working_bytes);
    format_bytes(wts, sizeof(wts), e->weights_bytes);
    format_bytes(avail, sizeof(avail), e->limit_bytes);
    av_log(ctx, AV_LOG_VERBOSE, "estimate: %"PRId64" DiT tokens x %d forward(s), %d text tokens; "
           "peak %"PRIu64" bytes in the %s stage (weights %s, working set %s), %s allowed; "
           "%.3g FLOPs at %.3g FLOP/s\n", e->tokens, e->forwards, e->text_tokens,
           (uint64_t)e->peak_bytes, stage_names[e->peak_stage], wts, work, avail, e->flops,
           e->flops_per_second);
    if (e->seconds > TD_TIME_BUDGET)
        av_log(ctx, AV_LOG_WARNING, "each clip will take %s on %s; for a quicker one use a "
               "smaller size, fewer frames or steps, or a GPU\n", took, e->device);
    /* Wan models move at their own rate (16 fps, TI2V-5B 24): another
     * rate only relabels the frames. */
    if (av_cmp_q(s->rate, (AVRational){ fps, 1 }) && !(ctx->nb_inputs && s->mode == TD_MODE_EXTEND))
        av_log(ctx, AV_LOG_WARNING, "rate %d/%d: the model generates %d fps motion, which plays "
               "%.2fx as fast at this rate; to change the frame rate keep rate=%d and add the "
               "fps filter (e.g. fps=%d/%d)\n", s->rate.num, s->rate.den, fps,
               av_q2d(s->rate) / fps, fps, s->rate.num, s->rate.den);
}

/**
 * The first clip's estimate, failing init when it cannot fit. The
 * image-to-video filter has no image yet: its clip is estimated at the
 * configured size (only an image's size is read), and td_job_run checks
 * each clip again, at the size adaptive sizing gives it.
 */
static av_cold int estimate_clip(AVFilterContext *ctx, TurboDiffContext *s, td_estimate *e)
{
    static const uint8_t pixel[3];
    td_error err = { 0 };
    td_job job;
    int ret;

    job_from_options(s, &job);
    job.frames = s->clip_frames + s->skip_first;
    job.on_frame = options_only;
    job.error = &err;
    if (ctx->nb_inputs) {
        job.image = pixel;
        job.image_width = s->w;
        job.image_height = s->h;
        job.image_linesize = 3 * s->w;
    }
    if ((ret = td_job_estimate(s->engine, &job, e)) < 0 ||
        (ret = td_job_validate(s->engine, &job)) < 0) {
        av_log(ctx, AV_LOG_ERROR, "%s\n", err.msg);
        return td_averror(ret);
    }
    return 0;
}

/** lora[i] with lora_scale[i] (1 where the scale list is shorter). */
static av_cold int loras_from_options(AVFilterContext *ctx, TurboDiffContext *s, td_lora **out)
{
    td_lora *l;

    *out = NULL;
    if (s->nb_lora_scale > s->nb_lora) {
        av_log(ctx, AV_LOG_ERROR, "lora_scale has %u values for %u lora files\n",
               s->nb_lora_scale, s->nb_lora);
        return AVERROR(EINVAL);
    }
    if (!s->nb_lora)
        return 0;
    if (!(l = av_calloc(s->nb_lora, sizeof(*l))))
        return AVERROR(ENOMEM);
    for (unsigned i = 0; i < s->nb_lora; i++) {
        l[i].path  = s->lora[i];
        l[i].scale = i < s->nb_lora_scale ? s->lora_scale[i] : 1.0;
    }
    *out = l;
    return 0;
}

av_cold int ff_turbodiff_init(AVFilterContext *ctx)
{
    TurboDiffContext *s = ctx->priv;
    td_error err;
    td_job job;
    int ret;

    if ((ret = check_library_version(ctx)) < 0)
        return ret;
    atomic_init(&s->cancel, 0);
    s->pix_fmt = AV_PIX_FMT_RGB24;
    s->next_seed = s->seed;
    s->next_topk = s->topk;

    if (s->prompt && s->prompts_file) {
        av_log(ctx, AV_LOG_ERROR, "prompt and prompts are exclusive: give one of them\n");
        return AVERROR(EINVAL);
    }
    if (s->prompts_file && (ret = read_prompts(ctx, s)) < 0)
        return ret;
    if (!s->prompt && !s->nb_prompt_lines) {
        av_log(ctx, AV_LOG_ERROR, "no prompt: set prompt (or prompts, a file of prompts)\n");
        return AVERROR(EINVAL);
    }
    /* Sizes left unset come from the model once it is open; until then the
     * option checks see Wan's 832x480 x 81. */
    s->size_unset = !s->w && !s->h && !s->resolution;
    s->frames_unset = s->frames < 0 && s->duration <= 0;
    if (s->size_unset) {
        s->w = 832;
        s->h = 480;
    }
    if (s->resolution && (ret = size_from_resolution(ctx, s)) < 0)
        return ret;
    if (s->rate.num <= 0 || s->rate.den <= 0) {
        av_log(ctx, AV_LOG_ERROR, "rate %d/%d: must be positive\n", s->rate.num, s->rate.den);
        return AVERROR(EINVAL);
    }
    s->clip_frames = s->frames < 0 ? 81 : s->frames;
    if (s->duration > 0) {
        int64_t n = av_rescale_q_rnd(s->duration, AV_TIME_BASE_Q, av_inv_q(s->rate), AV_ROUND_NEAR_INF);
        if (n < 1 || n > 4096) {
            av_log(ctx, AV_LOG_ERROR, "duration %.3fs at rate %d/%d gives %"PRId64" frames; "
                   "a clip holds 1 to 4096\n", s->duration / 1e6, s->rate.num, s->rate.den, n);
            return AVERROR(EINVAL);
        }
        s->clip_frames = n;
    }
    /* extend drops the clip's first frame (the input's last frame again). */
    s->skip_first = s->mode == TD_MODE_EXTEND;

    /* Every option check that needs no model, before loading anything. */
    job_from_options(s, &job);
    job.on_frame = options_only;
    job.error = &err;
    if (td_job_validate(NULL, &job) < 0) {
        av_log(ctx, AV_LOG_ERROR, "%s\n", err.msg);
        return td_averror(err.code);
    }
    if ((ret = check_sampler_options(ctx, s)) < 0)
        return ret;

    s->queue = av_calloc(s->queue_size, sizeof(*s->queue));
    if (!s->queue)
        return AVERROR(ENOMEM);
    if ((ret = pthread_mutex_init(&s->lock, NULL))) {
        av_freep(&s->queue);
        return AVERROR(ret);
    }
    if ((ret = pthread_cond_init(&s->cond, NULL))) {
        pthread_mutex_destroy(&s->lock);
        av_freep(&s->queue);
        return AVERROR(ret);
    }
    return 0;
}

av_cold int ff_turbodiff_open(AVFilterContext *ctx)
{
    TurboDiffContext *s = ctx->priv;
    td_engine_config cfg;
    td_error err;
    td_lora *loras;
    int ret;

    if (s->engine)
        return 0;
    if ((ret = loras_from_options(ctx, s, &loras)) < 0)
        return ret;
    td_engine_config_default(&cfg);
    cfg.model_dir = s->model_dir;
    cfg.dit = s->dit;
    cfg.dit_low = s->dit_low;
    cfg.vae = s->vae;
    cfg.t5 = s->t5;
    cfg.tokenizer = s->tokenizer;
    cfg.device = s->device;
    cfg.threads = ff_filter_get_nb_threads(ctx);
    cfg.low_memory = s->low_memory;
    cfg.log = log_cb;
    cfg.log_opaque = ctx;
    cfg.log_level = av_log_get_level();
    cfg.loras = loras;
    cfg.n_loras = s->nb_lora;
    ret = td_engine_open(&cfg, &s->engine, &err);
    av_free(loras);
    if (ret < 0) {
        av_log(ctx, AV_LOG_ERROR, "%s\n", err.msg);
        return td_averror(ret);
    }
    if ((s->size_unset || s->frames_unset) &&
        td_engine_native_clip(s->engine, s->size_unset ? &s->w : NULL, s->size_unset ? &s->h : NULL,
                              s->frames_unset ? &s->clip_frames : NULL))
        av_log(ctx, AV_LOG_VERBOSE, "the model's own clip: %dx%d, %d frames\n",
               s->w, s->h, s->clip_frames);
    if ((ret = check_sampler_options(ctx, s)) < 0)
        return ret;
    /* No rate (nor a duration counted at the default one): the model's own. */
    if (av_opt_is_set_to_default_by_name(s, "rate", 0) > 0 && s->duration <= 0)
        s->rate = (AVRational){ td_engine_native_fps(s->engine), 1 };
    return 0;
}

av_cold int ff_turbodiff_plan(AVFilterContext *ctx)
{
    TurboDiffContext *s = ctx->priv;
    td_estimate est;
    int ret;

    if ((ret = estimate_clip(ctx, s, &est)) < 0)
        return ret;
    log_plan(ctx, s, &est);
    return 0;
}

/** One clip's frames on their way from the library to the queue. */
typedef struct ClipState {
    AVFilterContext *ctx;
    const char *prompt;
    uint64_t seed;
    int index;
    int err;             ///< why on_frame stopped the job, when it did
} ClipState;

static float clip01(float v)
{
    return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
}

/** BT.709 luma weights; Kg = 1 - Kr - Kb. */
#define TD_KR 0.2126f
#define TD_KB 0.0722f

/**
 * The library's float R'G'B' (nominally [0, 1], clipped as the 8-bit path
 * clips) to BT.709 limited-range yuv420p. Chroma is left-sited, the MPEG-2
 * and H.264 default that encoders assume: [1 2 1]/4 across the even column,
 * the two rows averaged.
 */
static void rgbf32_to_yuv420p(AVFrame *out, const td_frame *f)
{
    const float *src = f->data;
    ptrdiff_t stride = f->linesize / sizeof(float);
    int w = f->width, h = f->height;

    for (int y = 0; y < h; y++) {
        const float *row = src + y * stride;
        uint8_t *dst = out->data[0] + y * out->linesize[0];
        for (int x = 0; x < w; x++) {
            float r = clip01(row[3 * x]), g = clip01(row[3 * x + 1]), b = clip01(row[3 * x + 2]);
            float luma = TD_KR * r + (1.0f - TD_KR - TD_KB) * g + TD_KB * b;
            dst[x] = lrintf(16.0f + 219.0f * luma);
        }
    }
    for (int cy = 0; cy < AV_CEIL_RSHIFT(h, 1); cy++) {
        const float *rows[2] = { src + 2 * cy * stride,
                                 src + FFMIN(2 * cy + 1, h - 1) * stride };
        uint8_t *u = out->data[1] + cy * out->linesize[1];
        uint8_t *v = out->data[2] + cy * out->linesize[2];
        for (int cx = 0; cx < AV_CEIL_RSHIFT(w, 1); cx++) {
            const int cols[3] = { FFMAX(2 * cx - 1, 0), 2 * cx, FFMIN(2 * cx + 1, w - 1) };
            const float weight[3] = { 0.125f, 0.25f, 0.125f };
            float rgb[3] = { 0 }, luma;
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 3; j++)
                    for (int c = 0; c < 3; c++)
                        rgb[c] += weight[j] * clip01(rows[i][3 * cols[j] + c]);
            luma = TD_KR * rgb[0] + (1.0f - TD_KR - TD_KB) * rgb[1] + TD_KB * rgb[2];
            u[cx] = lrintf(128.0f + 224.0f * (rgb[2] - luma) / (2.0f * (1.0f - TD_KB)));
            v[cx] = lrintf(128.0f + 224.0f * (rgb[0] - luma) / (2.0f * (1.0f - TD_KR)));
        }
    }
}

/**
 * Where luma position x (a column or a row) falls between chroma samples
 * sited at offset pos (in 1/256 luma steps, av_chroma_location_enum_to_pos)
 * of every pair: the two nearest samples (clamped to n) and the weight of
 * the second.
 */
static void chroma_taps(int x, int pos, int n, int *c0, int *c1, float *w)
{
    float t = (x - pos / 256.0f) * 0.5f;
    int i = floorf(t);

    *w = t - i;
    *c0 = av_clip(i, 0, n - 1);
    *c1 = av_clip(i + 1, 0, n - 1);
}

/**
 * The inverse of rgbf32_to_yuv420p, for the images the library conditions
 * on: BT.709 limited-range yuv420p (what the filter's input negotiates) to
 * full-range R'G'B'. Chroma is interpolated linearly from where the frame
 * says it is sited; unspecified is taken as centred, as swscale writes it
 * (an RGB image converted by the graph arrives so).
 */
int ff_turbodiff_rgb24_from_yuv420p(AVFrame **out, const AVFrame *in)
{
    int w = in->width, h = in->height, cw = AV_CEIL_RSHIFT(w, 1), ch = AV_CEIL_RSHIFT(h, 1);
    int hpos = 128, vpos = 128;
    AVFrame *frame;
    int ret;

    if (in->format != AV_PIX_FMT_YUV420P)
        return AVERROR_BUG;
    if (in->chroma_location != AVCHROMA_LOC_UNSPECIFIED)
        av_chroma_location_enum_to_pos(&hpos, &vpos, in->chroma_location);
    if (!(frame = av_frame_alloc()))
        return AVERROR(ENOMEM);
    frame->width = w;
    frame->height = h;
    frame->format = AV_PIX_FMT_RGB24;
    if ((ret = av_frame_get_buffer(frame, 0)) < 0 ||
        (ret = av_frame_copy_props(frame, in)) < 0) {
        av_frame_free(&frame);
        return ret;
    }
    frame->color_range = AVCOL_RANGE_JPEG;
    frame->colorspace = AVCOL_SPC_RGB;
    for (int y = 0; y < h; y++) {
        const uint8_t *luma = in->data[0] + y * in->linesize[0];
        const uint8_t *u[2], *v[2];
        uint8_t *dst = frame->data[0] + y * frame->linesize[0];
        int r0, r1;
        float wy;

        chroma_taps(y, vpos, ch, &r0, &r1, &wy);
        u[0] = in->data[1] + r0 * in->linesize[1];
        u[1] = in->data[1] + r1 * in->linesize[1];
        v[0] = in->data[2] + r0 * in->linesize[2];
        v[1] = in->data[2] + r1 * in->linesize[2];
        for (int x = 0; x < w; x++) {
            int c0, c1;
            float wx, cb, cr, y01, r, g, b;

            chroma_taps(x, hpos, cw, &c0, &c1, &wx);
            cb = (1 - wy) * ((1 - wx) * u[0][c0] + wx * u[0][c1]) +
                      wy  * ((1 - wx) * u[1][c0] + wx * u[1][c1]);
            cr = (1 - wy) * ((1 - wx) * v[0][c0] + wx * v[0][c1]) +
                      wy  * ((1 - wx) * v[1][c0] + wx * v[1][c1]);
            cb = (cb - 128.0f) / 224.0f;
            cr = (cr - 128.0f) / 224.0f;
            y01 = (luma[x] - 16.0f) / 219.0f;
            r = y01 + 2.0f * (1.0f - TD_KR) * cr;
            b = y01 + 2.0f * (1.0f - TD_KB) * cb;
            g = (y01 - TD_KR * r - TD_KB * b) / (1.0f - TD_KR - TD_KB);
            dst[3 * x]     = lrintf(255.0f * clip01(r));
            dst[3 * x + 1] = lrintf(255.0f * clip01(g));
            dst[3 * x + 2] = lrintf(255.0f * clip01(b));
        }
    }
    *out = frame;
    return 0;
}

/**
 * A frame of the negotiated format from one the library delivered, tagged
 * with what it is: Wan's training colours are sRGB / BT.709 video.
 */
static int frame_from_td(AVFrame **out, const td_frame *f, enum AVPixelFormat pix_fmt)
{
    int want = pix_fmt == AV_PIX_FMT_YUV420P ? TD_FRAME_RGBF32 : TD_FRAME_RGB24;
    AVFrame *frame;
    int ret;

    if (f->format != want)
        return AVERROR_BUG;
    if (!(frame = av_frame_alloc()))
        return AVERROR(ENOMEM);
    frame->width = f->width;
    frame->height = f->height;
    frame->format = pix_fmt;
    if ((ret = av_frame_get_buffer(frame, 0)) < 0) {
        av_frame_free(&frame);
        return ret;
    }
    frame->color_primaries = AVCOL_PRI_BT709;
    frame->color_trc = AVCOL_TRC_IEC61966_2_1;
    if (pix_fmt == AV_PIX_FMT_YUV420P) {
        rgbf32_to_yuv420p(frame, f);
        frame->color_range = AVCOL_RANGE_MPEG;
        frame->colorspace = AVCOL_SPC_BT709;
        frame->chroma_location = AVCHROMA_LOC_LEFT;
    } else {
        av_image_copy_plane(frame->data[0], frame->linesize[0], f->data, f->linesize,
                            3 * f->width, f->height);
        frame->color_range = AVCOL_RANGE_JPEG;
        frame->colorspace = AVCOL_SPC_RGB;
    }
    /* Every frame stands on its own. */
    frame->flags |= AV_FRAME_FLAG_KEY;
    frame->pict_type = AV_PICTURE_TYPE_I;
    *out = frame;
    return 0;
}

static int on_frame(void *opaque, const td_frame *f)
{
    ClipState *cs = opaque;
    TurboDiffContext *s = cs->ctx->priv;
    AVFrame *frame;
    char num[32];
    int full;

    if (s->skip_first && !f->index)
        return atomic_load(&s->cancel);
    /* Stopping the job here makes it return TD_ECANCELLED; cs->err keeps
     * the real reason, so that it is not taken for a cancel. */
    if ((cs->err = frame_from_td(&frame, f, s->pix_fmt)) < 0)
        return 1;
    av_dict_set(&frame->metadata, "lavfi.turbodiff.prompt", cs->prompt, 0);
    snprintf(num, sizeof(num), "%"PRIu64, cs->seed);
    av_dict_set(&frame->metadata, "lavfi.turbodiff.seed", num, 0);
    snprintf(num, sizeof(num), "%d", cs->index);
    av_dict_set(&frame->metadata, "lavfi.turbodiff.clip", num, 0);
    snprintf(num, sizeof(num), "%d", f->index - s->skip_first);
    av_dict_set(&frame->metadata, "lavfi.turbodiff.frame", num, 0);

    pthread_mutex_lock(&s->lock);
    while ((full = s->queue_count == s->queue_size) && !atomic_load(&s->cancel))
        pthread_cond_wait(&s->cond, &s->lock);
    if (!full) {
        s->queue[(s->queue_head + s->queue_count++) % s->queue_size] = frame;
        frame = NULL;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    av_frame_free(&frame);
    return atomic_load(&s->cancel);
}

static const char *const stage_name[] = {
    [TD_STAGE_TEXT] = "text", [TD_STAGE_IMAGE_ENCODE] = "image encode",
    [TD_STAGE_DENOISE] = "denoise", [TD_STAGE_DECODE] = "decode", [TD_STAGE_DONE] = "done",
};

static void on_progress(void *opaque, const td_progress *p)
{
    ClipState *cs = opaque;
    const TurboDiffContext *s = cs->ctx->priv;
    const char *name = p->stage >= 0 && p->stage <= TD_STAGE_DONE ? stage_name[p->stage] : "?";

    /* ETA of the stage from the mean time of its completed steps, as the
     * CLI's progress line has it. */
    double eta = p->step > 0 ? p->stage_seconds / p->step * (p->steps - p->step) : 0;

    if (p->stage == TD_STAGE_DONE) {
        av_log(cs->ctx, AV_LOG_INFO, "clip %d: %d frames, seed %"PRIu64", generated in %.2fs\n",
               cs->index, s->clip_frames, cs->seed, p->total_seconds);
        /* what the device held at most, next to the estimate logged before
         * the clip: a check on max_memory (0: the backend cannot tell) */
        if (p->peak_bytes) {
            char peak[32];
            format_bytes(peak, sizeof(peak), p->peak_bytes);
            av_log(cs->ctx, AV_LOG_VERBOSE, "clip %d: peak %s on the device, measured\n",
                   cs->index, peak);
        }
    } else
        av_log(cs->ctx, AV_LOG_VERBOSE, "clip %d: %s %d/%d, %.2fs, eta %.2fs (total %.2fs)\n",
               cs->index, name, p->step, p->steps, p->stage_seconds, eta, p->total_seconds);
}

/** Under lock: is there a clip to make? Waits for images (image-to-video). */
static int wait_for_work(TurboDiffContext *s, int is_i2v)
{
    if (!is_i2v) {
        int clips = s->clips ? s->clips : s->nb_prompt_lines ? s->nb_prompt_lines : 1;
        return !atomic_load(&s->cancel) && (s->loop || s->clip_index < clips);
    }
    while (!s->nb_images && !s->input_done && !atomic_load(&s->cancel))
        pthread_cond_wait(&s->cond, &s->lock);
    return s->nb_images && !atomic_load(&s->cancel);
}

static void *worker(void *arg)
{
    AVFilterContext *ctx = arg;
    TurboDiffContext *s = ctx->priv;
    int is_i2v = ctx->nb_inputs > 0, ret = 0;

    for (;;) {
        ClipState cs = { .ctx = ctx };
        AVFrame *image = NULL;
        char *prompt = NULL;
        td_error err = { 0 };
        td_estimate est;
        td_job job;

        pthread_mutex_lock(&s->lock);
        if (!wait_for_work(s, is_i2v)) {
            pthread_mutex_unlock(&s->lock);
            break;
        }
        cs.index = s->clip_index++;
        if (s->next_prompt) {
            prompt = s->next_prompt;
            s->next_prompt = NULL;
        } else if (s->nb_prompt_lines) {
            prompt = av_strdup(s->prompt_lines[cs.index % s->nb_prompt_lines]);
        } else {
            prompt = av_strdup(s->prompt ? s->prompt : "");
        }
        cs.seed = s->next_seed < 0 ? av_get_random_seed() : (uint64_t)s->next_seed;
        if (s->next_seed >= 0)
            s->next_seed = s->next_seed == INT64_MAX ? 0 : s->next_seed + 1;
        job_from_options(s, &job);
        job.topk = s->next_topk;
        if (is_i2v) {
            image = s->images[0];
            memmove(s->images, s->images + 1, --s->nb_images * sizeof(*s->images));
            pthread_cond_broadcast(&s->cond);
        }
        pthread_mutex_unlock(&s->lock);

        if (!prompt) {
            av_frame_free(&image);
            ret = AVERROR(ENOMEM);
            break;
        }
        cs.prompt = prompt;
        job.prompt = prompt;
        job.seed = cs.seed;
        job.frames = s->clip_frames + s->skip_first;
        if (image) {
            job.image = image->data[0];
            job.image_width = image->width;
            job.image_height = image->height;
            job.image_linesize = image->linesize[0];
        }
        job.on_frame = on_frame;
        job.on_progress = on_progress;
        job.opaque = &cs;
        /* atomic_int has int's representation on every platform FFmpeg
         * supports; libturbodiff reads it with an atomic load. */
        job.cancel = (const volatile int *)&s->cancel;
        job.log = job_log_cb;
        job.log_opaque = ctx;
        job.log_level = av_log_get_level();
        job.error = &err;

        av_log(ctx, AV_LOG_VERBOSE, "clip %d: seed %"PRIu64", prompt \"%s\"\n", cs.index, cs.seed,
               prompt);
        /* this clip's own (an input image may size it otherwise than init's) */
        if (av_log_get_level() >= AV_LOG_VERBOSE && !td_job_estimate(s->engine, &job, &est)) {
            char peak[32];
            format_bytes(peak, sizeof(peak), est.peak_bytes);
            av_log(ctx, AV_LOG_VERBOSE, "clip %d: %dx%d, %"PRId64" DiT tokens, peak about %s on %s\n",
                   cs.index, est.width, est.height, est.tokens, peak, est.device);
        }
        ret = td_job_run(s->engine, &job);
        av_frame_free(&image);
        av_free(prompt);
        if (cs.err < 0) {
            av_log(ctx, AV_LOG_ERROR, "clip %d: cannot pass a frame on: %s\n", cs.index,
                   av_err2str(cs.err));
            ret = cs.err;
            break;
        }
        if (ret < 0) {
            if (ret != TD_ECANCELLED || !atomic_load(&s->cancel))
                av_log(ctx, AV_LOG_ERROR, "clip %d: %s\n", cs.index, err.msg);
            ret = td_averror(ret);
            break;
        }
    }

    pthread_mutex_lock(&s->lock);
    s->worker_done = 1;
    s->worker_err = ret;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int ff_turbodiff_start(AVFilterContext *ctx)
{
    TurboDiffContext *s = ctx->priv;
    int ret;

    if (s->worker_started)
        return 0;
    if ((ret = pthread_create(&s->worker, NULL, worker, ctx))) {
        av_log(ctx, AV_LOG_ERROR, "cannot start the generation thread: %s\n",
               av_err2str(AVERROR(ret)));
        return AVERROR(ret);
    }
    s->worker_started = 1;
    return 0;
}

int ff_turbodiff_images_full(AVFilterContext *ctx)
{
    TurboDiffContext *s = ctx->priv;
    int full;

    pthread_mutex_lock(&s->lock);
    full = s->nb_images == TD_MAX_IMAGES;
    pthread_mutex_unlock(&s->lock);
    return full;
}

int ff_turbodiff_add_image(AVFilterContext *ctx, AVFrame *image)
{
    TurboDiffContext *s = ctx->priv;
    int ret = AVERROR(EAGAIN);

    pthread_mutex_lock(&s->lock);
    if (s->nb_images < TD_MAX_IMAGES) {
        s->images[s->nb_images++] = image;
        pthread_cond_broadcast(&s->cond);
        ret = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

av_cold void ff_turbodiff_end_input(AVFilterContext *ctx)
{
    TurboDiffContext *s = ctx->priv;

    pthread_mutex_lock(&s->lock);
    s->input_done = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

int ff_turbodiff_next_frame(AVFilterContext *ctx, AVFrame **out)
{
    TurboDiffContext *s = ctx->priv;
    int64_t deadline = av_gettime() + TD_WAIT_US;
    struct timespec ts = { .tv_sec = deadline / 1000000, .tv_nsec = deadline % 1000000 * 1000 };
    int ret = 0;

    *out = NULL;
    pthread_mutex_lock(&s->lock);
    while (!s->queue_count && !s->worker_done && ret != ETIMEDOUT)
        ret = pthread_cond_timedwait(&s->cond, &s->lock, &ts);
    if (s->queue_count) {
        *out = s->queue[s->queue_head];
        s->queue_head = (s->queue_head + 1) % s->queue_size;
        s->queue_count--;
        pthread_cond_broadcast(&s->cond);
        ret = 0;
    } else if (s->worker_done) {
        ret = s->worker_err < 0 ? s->worker_err : AVERROR_EOF;
    } else {
        ret = AVERROR(EAGAIN);
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

int ff_turbodiff_process_command(AVFilterContext *ctx, const char *cmd, const char *arg,
                                 char *res, int res_len, int flags)
{
    TurboDiffContext *s = ctx->priv;
    double old_topk = s->topk;
    int ret;

    pthread_mutex_lock(&s->lock);
    ret = ff_filter_process_command(ctx, cmd, arg, res, res_len, flags);
    if (ret >= 0 && !strcmp(cmd, "topk")) {
        if (!(s->topk > 0 && s->topk <= 1)) {
            av_log(ctx, AV_LOG_ERROR, "topk %g is out of range: it is the fraction of key "
                   "blocks SLA keeps, in (0, 1]\n", s->topk);
            s->topk = old_topk;
            ret = AVERROR(EINVAL);
        } else {
            s->next_topk = s->topk;
        }
    } else if (ret >= 0 && !strcmp(cmd, "seed")) {
        s->next_seed = s->seed;
    } else if (ret >= 0 && !strcmp(cmd, "prompt")) {
        av_free(s->next_prompt);
        if (!(s->next_prompt = av_strdup(s->prompt ? s->prompt : "")))
            ret = AVERROR(ENOMEM);
    }
    pthread_mutex_unlock(&s->lock);
    if (ret >= 0)
        av_log(ctx, AV_LOG_VERBOSE, "%s set to '%s' from the next clip\n", cmd, arg);
    return ret;
}

void ff_turbodiff_cancel(AVFilterContext *ctx)
{
    TurboDiffContext *s = ctx->priv;

    if (!s->worker_started || atomic_load(&s->cancel))
        return;
    atomic_store(&s->cancel, 1);
    pthread_mutex_lock(&s->lock);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

av_cold void ff_turbodiff_uninit(AVFilterContext *ctx)
{
    TurboDiffContext *s = ctx->priv;

    if (s->worker_started) {
        ff_turbodiff_cancel(ctx);
        pthread_join(s->worker, NULL);
        s->worker_started = 0;
    }
    if (s->queue) {
        for (int i = 0; i < s->queue_count; i++)
            av_frame_free(&s->queue[(s->queue_head + i) % s->queue_size]);
        av_freep(&s->queue);
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
    }
    for (int i = 0; i < s->nb_images; i++)
        av_frame_free(&s->images[i]);
    s->nb_images = 0;
    for (int i = 0; i < s->nb_prompt_lines; i++)
        av_freep(&s->prompt_lines[i]);
    av_freep(&s->prompt_lines);
    s->nb_prompt_lines = 0;
    av_freep(&s->next_prompt);
    for (int i = 0; i < s->nb_warnings; i++)
        av_freep(&s->warnings[i]);
    av_freep(&s->warnings);
    s->nb_warnings = 0;
    td_engine_release(&s->engine);
}
