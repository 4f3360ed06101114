/*
 * The engine object behind td_engine: which files make up the model set,
 * on which device it runs, and how many users share it.
 */
#ifndef TD_PIPELINE_ENGINE_H
#define TD_PIPELINE_ENGINE_H

#include <pthread.h>

#include "backend/backend.h"
#include "core/ctx.h"
#include "turbodiff.h"

/* The five files of a model set, canonical (realpath) so that two spellings
 * of one file share an engine. dit_low and tokenizer may be NULL (no
 * low-noise expert; tokenizer embedded in the text encoder file). */
typedef struct td_model_files {
    char *dit, *dit_low, *vae, *t5, *tokenizer;
    int width, height, frames;   /* the native clip a manifest names, else 0 */
    int sampler;                 /* enum td_sampler the directory declares (a manifest's
                                    "sampler", model_index.json's pipeline), else AUTO */
    char *name, *description;    /* a manifest's, else NULL: logged when the model loads */
    td_lora *loras;              /* merged into the DiT; paths canonical and owned */
    int n_loras;
} td_model_files;

struct td_engine {
    td_ctx ctx;              /* errors of engine-level calls */
    td_model_files files;
    char device[32];         /* resolved: "cpu" or "cuda:N" (or a test backend's name) */
    int refcount;            /* guarded by the registry lock */
    pthread_mutex_t run_lock;/* one job at a time on the shared weights */
    int threads;             /* CPU threads asked by the first opener */
    int low_memory;          /* the first opener's residency choice (models.h) */
    struct td_models *models;/* loaded and checked by td_engine_open */
    double flops_per_second; /* the device's matrix product rate, probed at open (0: unknown) */
    struct td_engine *next;  /* registry list */
};

/* Fill *files from cfg: explicit paths override what cfg->model_dir holds
 * (its turbodiff.json manifest, else the upstream file names), and cfg's
 * LoRAs, if any, replace the manifest's "lora". With neither a directory
 * nor a DiT, the default model's directory (turbodiff.h). */
int td_model_files_resolve(td_ctx *ctx, const td_engine_config *cfg, td_model_files *files);
void td_model_files_free(td_model_files *files);
/* Same files and the same LoRAs with the same scales in the same order. */
int td_model_files_equal(const td_model_files *a, const td_model_files *b);

/* Parse "auto", "cpu", "cuda", "cuda:N", "cudaN" into "cpu" / "cuda:N". */
int td_device_resolve(td_ctx *ctx, const char *device, char *out, size_t out_size);

/* td_engine_open on the backends `make` creates, registered under
 * device_name: how the tests run whole pipelines on the fenced backend. */
int td_engine_open_on(const td_engine_config *cfg, const char *device_name, td_backend_factory make,
                      td_engine **out, td_error *err);

/* The process-wide engine registry (see engine_registry.c for why it is the
 * one piece of shared state in the library). */
void td_registry_lock(void);
void td_registry_unlock(void);
td_engine *td_registry_find(const td_model_files *files, const char *device);
void td_registry_add(td_engine *eng);
void td_registry_remove(td_engine *eng);

/* Run a job td_job_run has checked (td_job_check, then td_estimate_check,
 * which includes td_job_check_model) on eng->ctx; the caller holds
 * eng->run_lock. */
int td_generate(td_engine *eng, const td_job *job);

/* The checks td_job_validate makes without an engine (job.c), into ctx. */
int td_job_check(td_ctx *ctx, const td_job *job);
/* What the engine's model set asks of the job beyond td_job_check (an
 * image for an image-to-video DiT and none for a text-to-video one, sizes
 * on the VAE x DiT patch grid, a context as wide as the DiT's text, ...),
 * into ctx. The estimate calls it, so td_job_validate, td_job_estimate
 * and td_job_run (before td_generate) all refuse such a job before
 * anything runs, with one message. */
int td_job_check_model(td_ctx *ctx, const td_engine *eng, const td_job *job);
/* A job's failure in ctx to the job's error sink, else the engine's; the code. */
int td_job_report(td_engine *eng, const td_job *job, const td_ctx *ctx);
/* TD_ENOMEM with the numbers when the job's estimate exceeds its limit
 * (estimate.c); 0 when it fits. */
int td_estimate_check(td_engine *eng, const td_job *job, td_ctx *ctx);
/* Measure eng->flops_per_second on its backend (estimate.c); a failure
 * leaves 0 (no time estimates) and is logged, not returned. */
void td_engine_probe(td_engine *eng);

#endif
