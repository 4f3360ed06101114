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
 * Shared part of the turbodiff source (vsrc_turbodiff.c) and image-to-video
 * (vf_turbodiff.c) filters: options, the libturbodiff engine, and the worker
 * thread that generates clips into a bounded frame queue.
 *
 * Threads: the worker runs td_job_run() and pushes frames; the filtergraph
 * thread pops them in activate(). Everything the two share is guarded by
 * lock; cond is signalled on every change (frame pushed or popped, image
 * added, end of input, cancel). libavfilter offers no thread-safe way for the
 * worker to wake the graph, so activate() waits for a frame with a timed wait
 * of at most TD_WAIT_US and, when none came, marks its own filter ready again
 * (from the graph thread, which is allowed) and returns: the graph never
 * spins and is never blocked for long.
 */

#ifndef AVFILTER_TURBODIFF_COMMON_H
#define AVFILTER_TURBODIFF_COMMON_H

#include <stdatomic.h>

#include <turbodiff.h>

#include "libavutil/frame.h"
#include "libavutil/pixfmt.h"
#include "libavutil/rational.h"
#include "libavutil/thread.h"
#include "avfilter.h"

#define TD_WAIT_US 100000
#define TD_MAX_IMAGES 4

typedef struct TurboDiffContext {
    const AVClass *class;

    /* options */
    char *prompt;
    char *prompts_file;
    char *model_dir, *dit, *dit_low, *vae, *t5, *tokenizer, *device;
    int w, h;
    char *resolution;
    AVRational aspect;
    int frames;
    int64_t duration;
    AVRational rate;
    int steps;
    double sigma_max;
    int sampler;         ///< enum td_sampler
    int flow_steps;      ///< the flow settings: 0 (NULL) is the model's own
    double shift, guidance, guidance_low;
    char *negative_prompt;
    char *timesteps;     ///< DMD's steps as DiT timesteps, NULL: FastWan's
    double boundary;     ///< A14B expert switch, 0: the model's
    int64_t seed;
    int attention;
    double topk;
    int clips;
    int loop;
    int queue_size;
    int low_memory;
    int64_t max_memory;  ///< bytes a clip may take on the device; 0: what it has available
    char **lora;         ///< merged into the DiT when the model loads, in order
    unsigned nb_lora;
    double *lora_scale;  ///< lora_scale[i] scales lora[i]; missing ones are 1
    unsigned nb_lora_scale;
    int mode;            ///< image-to-video only: enum TurboDiffMode
    int adaptive;        ///< image-to-video only

    /* state */
    td_engine *engine;
    int size_unset;      ///< size, resolution unset: the model's own, once open
    int frames_unset;    ///< frames, duration unset: the model's own, once open
    char **prompt_lines;
    int nb_prompt_lines;
    int clip_frames;     ///< frames generated per clip (job.frames)
    enum AVPixelFormat pix_fmt; ///< of the output: set before the worker starts
    int skip_first;      ///< drop each clip's frame 0 (extend continues the input)

    pthread_t worker;
    int worker_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    atomic_int cancel;   ///< also read by libturbodiff through td_job.cancel

    /* guarded by lock */
    AVFrame **queue;
    int queue_head, queue_count;
    AVFrame *images[TD_MAX_IMAGES];
    int nb_images;
    int input_done;      ///< no more images will come
    int worker_done;
    int worker_err;
    char *next_prompt;   ///< runtime commands land here, used from the next clip
    int64_t next_seed;   ///< -1: draw one per clip
    double next_topk;
    int clip_index;

    /* worker thread only */
    char **warnings;     ///< job warnings already logged (said once)
    int nb_warnings;

    /* graph thread only */
    AVRational time_base;
    int64_t pts_origin;
    int64_t frames_out;
} TurboDiffContext;

enum TurboDiffMode { TD_MODE_FIRST, TD_MODE_EACH, TD_MODE_EXTEND };

/** Options shared by both filters, for their AVOption tables. */
#define TD_OFFSET(x) offsetof(TurboDiffContext, x)
#define TD_FLAGS  AV_OPT_FLAG_VIDEO_PARAM | AV_OPT_FLAG_FILTERING_PARAM
#define TD_RFLAGS TD_FLAGS | AV_OPT_FLAG_RUNTIME_PARAM
#define TURBODIFF_COMMON_OPTIONS \
    { "prompt",     "text prompt (runtime command: from the next clip)", TD_OFFSET(prompt), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, TD_RFLAGS }, \
    { "prompts",    "text file with one prompt per line, one clip each", TD_OFFSET(prompts_file), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, TD_FLAGS }, \
    { "model",      "model directory: TurboWan2.1 T2V 1.3B/14B, TurboWan2.2 I2V A14B, Wan2.2 TI2V-5B or T2V A14B files under their upstream names, or a turbodiff.json (default: the installed default model)", TD_OFFSET(model_dir), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, TD_FLAGS }, \
    { "dit",        "diffusion transformer file (overrides model; the high-noise expert of an A14B pair)", TD_OFFSET(dit), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, TD_FLAGS }, \
    { "dit_low",    "low-noise expert of a Wan2.2 A14B pair", TD_OFFSET(dit_low), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, TD_FLAGS }, \
    { "vae",        "Wan VAE file (overrides model)", TD_OFFSET(vae), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, TD_FLAGS }, \
    { "t5",         "umT5 text encoder file (overrides model)", TD_OFFSET(t5), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, TD_FLAGS }, \
    { "tokenizer",  "tokenizer file, spiece.model or tokenizer.json (overrides model)", TD_OFFSET(tokenizer), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, TD_FLAGS }, \
    { "size",       "frame size, multiple of 16, of 32 for TI2V-5B (default: the model's own, else 832x480)", TD_OFFSET(w), AV_OPT_TYPE_IMAGE_SIZE, { .str = NULL }, 0, 0, TD_FLAGS }, \
    { "s",          "frame size, multiple of 16, of 32 for TI2V-5B (default: the model's own, else 832x480)", TD_OFFSET(w), AV_OPT_TYPE_IMAGE_SIZE, { .str = NULL }, 0, 0, TD_FLAGS }, \
    { "resolution", "target resolution 480p or 720p, with aspect (overrides size)", TD_OFFSET(resolution), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, TD_FLAGS }, \
    { "aspect",     "aspect ratio for resolution", TD_OFFSET(aspect), AV_OPT_TYPE_RATIONAL, { .dbl = 16.0 / 9 }, 0, 100, TD_FLAGS }, \
    { "frames",     "frames per clip (-1: the model's own count, else 81)", TD_OFFSET(frames), AV_OPT_TYPE_INT, { .i64 = -1 }, -1, 4096, TD_FLAGS }, \
    { "duration",   "clip duration (overrides frames)", TD_OFFSET(duration), AV_OPT_TYPE_DURATION, { .i64 = 0 }, 0, INT64_MAX, TD_FLAGS }, \
    { "d",          "clip duration (overrides frames)", TD_OFFSET(duration), AV_OPT_TYPE_DURATION, { .i64 = 0 }, 0, INT64_MAX, TD_FLAGS }, \
    { "rate",       "frame rate (default: the model's, 24 for TI2V-5B, else 16)", TD_OFFSET(rate), AV_OPT_TYPE_VIDEO_RATE, { .str = "16" }, 0, INT_MAX, TD_FLAGS }, \
    { "r",          "frame rate (default: the model's, 24 for TI2V-5B, else 16)", TD_OFFSET(rate), AV_OPT_TYPE_VIDEO_RATE, { .str = "16" }, 0, INT_MAX, TD_FLAGS }, \
    { "steps",      "rCM sampling steps (TurboDiffusion checkpoints; flow matching counts flow_steps)", TD_OFFSET(steps), AV_OPT_TYPE_INT, { .i64 = 4 }, 1, 4, TD_FLAGS }, \
    { "sigma_max",  "initial noise level of rCM (0: the model's default)", TD_OFFSET(sigma_max), AV_OPT_TYPE_DOUBLE, { .dbl = 0 }, 0, 1000, TD_FLAGS }, \
    { "sampler",    "sampler", TD_OFFSET(sampler), AV_OPT_TYPE_INT, { .i64 = TD_SAMPLER_AUTO }, TD_SAMPLER_AUTO, TD_SAMPLER_DMD, TD_FLAGS, .unit = "sampler" }, \
        { "auto", "the model's: rcm for TurboDiffusion checkpoints, dmd for FastWan, flow for Wan2.2 TI2V-5B and T2V A14B", 0, AV_OPT_TYPE_CONST, { .i64 = TD_SAMPLER_AUTO }, 0, 0, TD_FLAGS, .unit = "sampler" }, \
        { "rcm",  "rCM, 1 to 4 steps (steps)", 0, AV_OPT_TYPE_CONST, { .i64 = TD_SAMPLER_RCM }, 0, 0, TD_FLAGS, .unit = "sampler" }, \
        { "flow", "flow matching (UniPC) with classifier-free guidance", 0, AV_OPT_TYPE_CONST, { .i64 = TD_SAMPLER_FLOW }, 0, 0, TD_FLAGS, .unit = "sampler" }, \
        { "dmd",  "FastVideo's DMD few-step sampling (timesteps)", 0, AV_OPT_TYPE_CONST, { .i64 = TD_SAMPLER_DMD }, 0, 0, TD_FLAGS, .unit = "sampler" }, \
    { "flow_steps", "flow matching steps (0: the model's, TI2V-5B 50, T2V A14B 40)", TD_OFFSET(flow_steps), AV_OPT_TYPE_INT, { .i64 = 0 }, 0, 1000, TD_FLAGS }, \
    { "shift",      "flow matching sigma shift (0: the model's)", TD_OFFSET(shift), AV_OPT_TYPE_DOUBLE, { .dbl = 0 }, 0, 100, TD_FLAGS }, \
    { "guidance",   "classifier-free guidance scale, 1: none (0: the model's)", TD_OFFSET(guidance), AV_OPT_TYPE_DOUBLE, { .dbl = 0 }, 0, 100, TD_FLAGS }, \
    { "guidance_low", "guidance of an A14B pair's low-noise expert (0: the model's)", TD_OFFSET(guidance_low), AV_OPT_TYPE_DOUBLE, { .dbl = 0 }, 0, 100, TD_FLAGS }, \
    { "negative_prompt", "what guidance steers away from (default: Wan's negative prompt)", TD_OFFSET(negative_prompt), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, TD_FLAGS }, \
    { "timesteps",  "DMD steps as '|'-separated DiT timesteps (default: FastWan's 1000|757|522)", TD_OFFSET(timesteps), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, TD_FLAGS }, \
    { "boundary",   "noise level where an A14B pair switches experts, below 1 (0: the model's)", TD_OFFSET(boundary), AV_OPT_TYPE_DOUBLE, { .dbl = 0 }, 0, 1, TD_FLAGS }, \
    { "seed",       "noise seed, -1 for a random one (runtime command: from the next clip)", TD_OFFSET(seed), AV_OPT_TYPE_INT64, { .i64 = -1 }, -1, INT64_MAX, TD_RFLAGS }, \
    { "attention",  "attention mode", TD_OFFSET(attention), AV_OPT_TYPE_INT, { .i64 = TD_ATTN_SLA }, 0, 2, TD_FLAGS, .unit = "attention" }, \
        { "full",    "dense attention", 0, AV_OPT_TYPE_CONST, { .i64 = TD_ATTN_FULL }, 0, 0, TD_FLAGS, .unit = "attention" }, \
        { "sla",     "sparse-linear attention", 0, AV_OPT_TYPE_CONST, { .i64 = TD_ATTN_SLA }, 0, 0, TD_FLAGS, .unit = "attention" }, \
        { "sagesla", "SLA with 8-bit Q/K", 0, AV_OPT_TYPE_CONST, { .i64 = TD_ATTN_SAGESLA }, 0, 0, TD_FLAGS, .unit = "attention" }, \
    { "topk",       "fraction of key blocks SLA attends to, in (0,1] (runtime command: from the next clip)", TD_OFFSET(topk), AV_OPT_TYPE_DOUBLE, { .dbl = 0.1 }, 0, 1, TD_RFLAGS }, \
    { "device",     "auto, cpu, cuda or cudaN (GPU N)", TD_OFFSET(device), AV_OPT_TYPE_STRING, { .str = "auto" }, 0, 0, TD_FLAGS }, \
    { "low_memory", "release and reload model parts to bound memory", TD_OFFSET(low_memory), AV_OPT_TYPE_BOOL, { .i64 = 0 }, 0, 1, TD_FLAGS }, \
    { "max_memory", "most device memory a clip may take, weights included, in bytes (0: what the device has available)", TD_OFFSET(max_memory), AV_OPT_TYPE_INT64, { .i64 = 0 }, 0, INT64_MAX, TD_FLAGS }, \
    { "lora",       "'|'-separated LoRA files merged into the DiT", TD_OFFSET(lora), AV_OPT_TYPE_STRING | AV_OPT_TYPE_FLAG_ARRAY, .default_val.arr = &(const AVOptionArrayDef){ .sep = '|' }, .flags = TD_FLAGS }, \
    { "lora_scale", "'|'-separated scale of each LoRA (default 1)", TD_OFFSET(lora_scale), AV_OPT_TYPE_DOUBLE | AV_OPT_TYPE_FLAG_ARRAY, .default_val.arr = &(const AVOptionArrayDef){ .sep = '|' }, .min = -100, .max = 100, .flags = TD_FLAGS }, \
    { "queue",      "frames generated ahead of the graph", TD_OFFSET(queue_size), AV_OPT_TYPE_INT, { .i64 = 32 }, 1, 1024, TD_FLAGS }

/** Check the options that need no model and read the prompts file. */
int ff_turbodiff_init(AVFilterContext *ctx);

/**
 * Open (or share) the engine, load and check the model, and resolve what
 * the model decides (size, frames and rate left unset, the sampler). Called
 * from the output's config_props, not from init: ffmpeg initialises the
 * filters of -vf / -filter_complex once in a graph it only inspects and
 * frees, and a model opened there would be loaded twice.
 */
int ff_turbodiff_open(AVFilterContext *ctx);

/**
 * Estimate the first clip at the configured size, refuse it when it cannot
 * fit, and say at info what will be produced. After ff_turbodiff_open and
 * whatever the filter sets from its input (sizes, rate).
 */
int ff_turbodiff_plan(AVFilterContext *ctx);
/** Cancel and join the worker, free everything. */
void ff_turbodiff_uninit(AVFilterContext *ctx);

/**
 * Stop the job under way (the library reads the flag between denoise
 * steps and VAE chunks) and make no more clips.
 */
void ff_turbodiff_cancel(AVFilterContext *ctx);

/** Start the worker thread if it is not running yet. */
int ff_turbodiff_start(AVFilterContext *ctx);

/**
 * Hand an image to the worker (image-to-video), taking ownership of it.
 * Returns AVERROR(EAGAIN) without taking it while TD_MAX_IMAGES wait.
 */
int ff_turbodiff_add_image(AVFilterContext *ctx, AVFrame *image);
/** Whether TD_MAX_IMAGES images wait for the worker (add_image would refuse). */
int ff_turbodiff_images_full(AVFilterContext *ctx);
/** No more images: the worker ends after the ones queued. */
void ff_turbodiff_end_input(AVFilterContext *ctx);

/**
 * Take the next generated frame, waiting at most TD_WAIT_US.
 * 0 with *out set; AVERROR(EAGAIN) when none came in time; AVERROR_EOF when
 * the worker finished; another AVERROR when generation failed.
 */
int ff_turbodiff_next_frame(AVFilterContext *ctx, AVFrame **out);

/**
 * An RGB24 copy of a BT.709 limited-range yuv420p image, the form the
 * library conditions on, with in's properties.
 */
int ff_turbodiff_rgb24_from_yuv420p(AVFrame **out, const AVFrame *in);

/** process_command for both filters: prompt, seed and topk from the next clip. */
int ff_turbodiff_process_command(AVFilterContext *ctx, const char *cmd, const char *arg,
                                 char *res, int res_len, int flags);

#endif /* AVFILTER_TURBODIFF_COMMON_H */
