/*
 * td_engine: open (or share) the engine for a model set, release it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "models.h"
#include "core/pool.h"

void td_engine_config_default(td_engine_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->device = "auto";
    cfg->log_level = TD_LOG_INFO;
}

int td_device_resolve(td_ctx *ctx, const char *device, char *out, size_t out_size)
{
    int cuda;
    TD_TRY(td_device_parse(ctx, device, &cuda));
    if (cuda < 0)
        snprintf(out, out_size, "cpu");
    else
        snprintf(out, out_size, "cuda:%d", cuda);
    if (!device || !*device || !strcmp(device, "auto"))
        td_log(ctx, TD_LOG_INFO, "device auto: %s", cuda < 0 ? "no CUDA device, running on the CPU"
               : "running on the first CUDA device, cuda:0");
    return 0;
}

static void copy_error(td_error *err, const td_ctx *ctx)
{
    if (!err)
        return;
    err->code = ctx->err;
    snprintf(err->msg, sizeof(err->msg), "%s", ctx->errmsg);
}

/* A new engine for files on device, its models loaded and checked: a bad
 * file fails here, at open, not in the first job. */
static int engine_new(td_ctx *ctx, const td_engine_config *cfg, td_model_files *files,
                      const char *device, td_backend_factory make, td_engine **out)
{
    td_engine *eng = calloc(1, sizeof(*eng));
    int rc;

    *out = NULL;
    if (!eng || pthread_mutex_init(&eng->run_lock, NULL)) {
        free(eng);
        return td_fail(ctx, TD_ENOMEM, "out of memory opening the engine");
    }
    td_ctx_init(&eng->ctx);
    eng->ctx.log = ctx->log;
    eng->ctx.log_opaque = ctx->log_opaque;
    eng->ctx.log_level = ctx->log_level;
    eng->files = *files;
    memset(files, 0, sizeof(*files));
    snprintf(eng->device, sizeof(eng->device), "%s", device);
    eng->threads = cfg->threads;
    eng->low_memory = cfg->low_memory;
    eng->refcount = 1;
    td_log(ctx, TD_LOG_VERBOSE, "engine on %s: dit %s%s%s, vae %s, t5 %s, tokenizer %s", device,
           eng->files.dit, eng->files.dit_low ? ", dit_low " : "",
           eng->files.dit_low ? eng->files.dit_low : "", eng->files.vae, eng->files.t5,
           eng->files.tokenizer ? eng->files.tokenizer : "(inside the t5 file)");
    rc = td_pool_create(&eng->ctx, eng->threads, &eng->ctx.pool);
    if (rc == 0)
        rc = td_models_load(&eng->ctx, &eng->files, eng->device, make, eng->low_memory, &eng->models);
    if (rc == 0)
        td_engine_probe(eng);
    /* Jobs log through their own callbacks (turbodiff.h): the opener's is
     * used during open only. */
    eng->ctx.log = NULL;
    if (rc < 0) {
        td_fail(ctx, rc, "%s", eng->ctx.errmsg);
        td_engine_release(&eng);
        return rc;
    }
    /* Said once, when the model loads: a model that draws only some things
     * (the default one) renders any prompt, so the user learns here what
     * it is and what it can draw. */
    if (eng->files.name || eng->files.description)
        td_log(ctx, TD_LOG_INFO, "model%s%s%s%s%s", eng->files.name ? " \"" : "",
               eng->files.name ? eng->files.name : "", eng->files.name ? "\"" : "",
               eng->files.description ? ": " : "",
               eng->files.description ? eng->files.description : "");
    *out = eng;
    return 0;
}

int td_engine_open_on(const td_engine_config *cfg, const char *device, td_backend_factory make,
                      td_engine **out, td_error *err)
{
    td_model_files files;
    td_engine *eng, *other;
    td_ctx ctx;
    int ret;

    td_ctx_init(&ctx);
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
    if (!out || !cfg) {
        td_fail(&ctx, TD_EINVAL, "td_engine_open: NULL %s", out ? "config" : "output pointer");
        copy_error(err, &ctx);
        return TD_EINVAL;
    }
    *out = NULL;
    ctx.log = cfg->log;
    ctx.log_opaque = cfg->log_opaque;
    ctx.log_level = cfg->log_level;
    if ((ret = td_model_files_resolve(&ctx, cfg, &files)) < 0) {
        copy_error(err, &ctx);
        return ret;
    }

    td_registry_lock();
    if ((eng = td_registry_find(&files, device)))
        eng->refcount++;
    td_registry_unlock();
    if (!eng) {
        /* Loading takes long and must not hold the registry: another opener
         * of the same files may register first, and then its engine wins. */
        if ((ret = engine_new(&ctx, cfg, &files, device, make, &eng)) < 0) {
            td_model_files_free(&files);
            copy_error(err, &ctx);
            return ret;
        }
        td_registry_lock();
        if ((other = td_registry_find(&eng->files, device)))
            other->refcount++;
        else
            td_registry_add(eng);
        td_registry_unlock();
        if (other) {
            eng->refcount = 0;
            td_engine_release(&eng);
            eng = other;
        }
    } else {
        td_log(&ctx, TD_LOG_VERBOSE, "sharing the engine for %s (%d users)", files.dit, eng->refcount);
    }
    td_model_files_free(&files);
    *out = eng;
    return 0;
}

int td_engine_open(const td_engine_config *cfg, td_engine **out, td_error *err)
{
    char device[32];
    td_ctx ctx;
    int ret;

    td_ctx_init(&ctx);
    if (cfg) {
        ctx.log = cfg->log;
        ctx.log_opaque = cfg->log_opaque;
        ctx.log_level = cfg->log_level;
    }
    if (cfg && (ret = td_device_resolve(&ctx, cfg->device, device, sizeof(device))) < 0) {
        copy_error(err, &ctx);
        if (out)
            *out = NULL;
        return ret;
    }
    return td_engine_open_on(cfg, cfg ? device : "cpu", td_backend_create_for_device, out, err);
}

/* Frees an engine whose count reached zero, or one that never was
 * registered (a failed or lost open, count 0 or 1). */
static void engine_free(td_engine *eng)
{
    pthread_mutex_destroy(&eng->run_lock);
    td_models_free(&eng->models);
    td_pool_destroy(&eng->ctx.pool);
    td_model_files_free(&eng->files);
    free(eng);
}

void td_engine_release(td_engine **peng)
{
    td_engine *eng;
    int last;

    if (!peng || !(eng = *peng))
        return;
    *peng = NULL;
    td_registry_lock();
    last = eng->refcount <= 1;
    if (last)
        td_registry_remove(eng);
    else
        eng->refcount--;
    td_registry_unlock();
    if (last)
        engine_free(eng);
}

/* The manifest's size and frames, else the model's own (models.h). */
int td_engine_native_clip(const td_engine *eng, int *width, int *height, int *frames)
{
    const td_model_files *f = eng ? &eng->files : NULL;
    td_model_defaults d;
    int w, h, n;
    if (!f)
        return 0;
    td_models_defaults(eng->models, &eng->files, &d);
    w = f->width ? f->width : d.width;
    h = f->width ? f->height : d.height;
    n = f->frames ? f->frames : d.frames;
    if (!w && !n)
        return 0;
    if (width && w)
        *width = w;
    if (height && w)
        *height = h;
    if (frames && n)
        *frames = n;
    return 1;
}

int td_engine_native_fps(const td_engine *eng)
{
    td_model_defaults d;
    if (!eng)
        return 16;
    td_models_defaults(eng->models, &eng->files, &d);
    return d.fps;
}

/* The same choices td_generate makes (generate.c: choose_sampler, run_rcm,
 * run_flow); test_job_resolve holds the two together through the step
 * count a run reports. */
void td_job_resolve(const td_engine *eng, td_job *job)
{
    td_model_defaults d;
    if (!eng || !job)
        return;
    td_models_defaults(eng->models, &eng->files, &d);
    if (job->sampler == TD_SAMPLER_AUTO)
        job->sampler = d.sampler;
    if (job->boundary <= 0)
        job->boundary = d.boundary;
    if (job->flow_steps <= 0)
        job->flow_steps = d.flow_steps;
    if (job->shift <= 0)
        job->shift = d.shift;
    if (job->guidance <= 0)
        job->guidance = d.guidance;
    if (job->guidance_low <= 0)
        job->guidance_low = d.guidance_low;
}

const char *td_engine_errmsg(const td_engine *eng)
{
    return eng ? eng->ctx.errmsg : "no engine";
}
