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
    char *end;
    long n;

    if (!device || !*device || !strcmp(device, "auto") || !strcmp(device, "cpu")) {
        /* auto picks CUDA once a CUDA backend is built in; until then the CPU. */
        snprintf(out, out_size, "cpu");
        return 0;
    }
    if (strncmp(device, "cuda", 4) || (device[4] && device[4] != ':'))
        return td_fail(ctx, TD_EINVAL, "device '%s': expected auto, cpu, cuda or cuda:N", device);
    n = 0;
    if (device[4] == ':') {
        n = strtol(device + 5, &end, 10);
        if (end == device + 5 || *end || n < 0 || n > 255)
            return td_fail(ctx, TD_EINVAL, "device '%s': N in cuda:N must be a GPU index 0..255",
                           device);
    }
    snprintf(out, out_size, "cuda:%ld", n);
    return td_fail(ctx, TD_EUNSUPPORTED, "device '%s': this build of libturbodiff has no CUDA "
                   "backend; use device=cpu", device);
}

static void copy_error(td_error *err, const td_ctx *ctx)
{
    if (!err)
        return;
    err->code = ctx->err;
    snprintf(err->msg, sizeof(err->msg), "%s", ctx->errmsg);
}

int td_engine_open(const td_engine_config *cfg, td_engine **out, td_error *err)
{
    td_model_files files;
    td_engine *eng;
    char device[32];
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

    if ((ret = td_device_resolve(&ctx, cfg->device, device, sizeof(device))) < 0 ||
        (ret = td_model_files_resolve(&ctx, cfg, &files)) < 0) {
        copy_error(err, &ctx);
        return ret;
    }

    td_registry_lock();
    if ((eng = td_registry_find(&files, device))) {
        eng->refcount++;
        td_registry_unlock();
        td_log(&ctx, TD_LOG_VERBOSE, "sharing the engine for %s (%d users)", files.dit,
               eng->refcount);
        td_model_files_free(&files);
        *out = eng;
        return 0;
    }
    if (!(eng = calloc(1, sizeof(*eng))) || pthread_mutex_init(&eng->run_lock, NULL)) {
        td_registry_unlock();
        free(eng);
        td_model_files_free(&files);
        td_fail(&ctx, TD_ENOMEM, "out of memory opening the engine");
        copy_error(err, &ctx);
        return TD_ENOMEM;
    }
    td_ctx_init(&eng->ctx);
    eng->files = files;
    snprintf(eng->device, sizeof(eng->device), "%s", device);
    eng->threads = cfg->threads;
    eng->low_memory = cfg->low_memory;
    eng->refcount = 1;
    td_registry_add(eng);
    td_registry_unlock();
    td_log(&ctx, TD_LOG_VERBOSE, "engine on %s: dit %s%s%s, vae %s, t5 %s, tokenizer %s",
           device, files.dit, files.dit_low ? ", dit_low " : "", files.dit_low ? files.dit_low : "",
           files.vae, files.t5, files.tokenizer ? files.tokenizer : "(inside the t5 file)");
    *out = eng;
    return 0;
}

void td_engine_release(td_engine **peng)
{
    td_engine *eng;
    int last;

    if (!peng || !(eng = *peng))
        return;
    *peng = NULL;
    td_registry_lock();
    last = --eng->refcount == 0;
    if (last)
        td_registry_remove(eng);
    td_registry_unlock();
    if (!last)
        return;
    pthread_mutex_destroy(&eng->run_lock);
    td_models_free(&eng->models);
    td_pool_destroy(&eng->ctx.pool);
    td_model_files_free(&eng->files);
    free(eng);
}

int td_engine_native_clip(const td_engine *eng, int *width, int *height, int *frames)
{
    const td_model_files *f = eng ? &eng->files : NULL;
    if (!f || (!f->width && !f->frames))
        return 0;
    if (width && f->width)
        *width = f->width;
    if (height && f->height)
        *height = f->height;
    if (frames && f->frames)
        *frames = f->frames;
    return 1;
}

const char *td_engine_errmsg(const td_engine *eng)
{
    return eng ? eng->ctx.errmsg : "no engine";
}
