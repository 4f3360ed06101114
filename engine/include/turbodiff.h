/*
 * turbodiff: TurboDiffusion-class video generation (Wan DiT + rCM + SLA + W8A8).
 *
 * This is the only header users of the library include (the FFmpeg filters,
 * the turbodiff CLI). Every function returns 0 or a negative TD_E* code; the
 * message of the last error is kept per engine (td_engine_errmsg) or, for
 * calls made before an engine exists, in the caller's td_error.
 * The library never prints, never exits and never aborts.
 *
 * Example: open an engine, run a job, receive its frames (here as raw RGB24
 * on stdout: `./a.out | ffplay -f rawvideo -pixel_format rgb24
 * -video_size 64x64 -`). Build: cc example.c $(pkg-config --cflags --libs
 * turbodiff). tests/CMakeLists.txt compiles and runs this text as written.
 *
 *   #include <stdio.h>
 *   #include <turbodiff.h>
 *
 *   static int on_frame(void *opaque, const td_frame *f)
 *   {
 *       const uint8_t *row = f->data;
 *       for (int y = 0; y < f->height; y++, row += f->linesize)
 *           fwrite(row, 3, f->width, opaque);
 *       return 0;  // non-zero would stop the job
 *   }
 *
 *   int main(void)
 *   {
 *       td_engine_config cfg;
 *       td_engine *eng;
 *       td_error err;
 *       td_engine_config_default(&cfg);  // no model named: the default model
 *       if (td_engine_open(&cfg, &eng, &err) < 0) {
 *           fprintf(stderr, "%s\n", err.msg);
 *           return 1;
 *       }
 *
 *       td_job job;
 *       td_job_default(&job);
 *       job.prompt = "a red circle moves right on a blue background";
 *       td_engine_native_clip(eng, &job.width, &job.height, &job.frames);
 *       job.on_frame = on_frame;  // called once per frame, in order
 *       job.opaque = stdout;
 *       int ret = td_job_run(eng, &job);  // synchronous, on this thread
 *       if (ret < 0)
 *           fprintf(stderr, "%s\n", td_engine_errmsg(eng));
 *
 *       td_engine_release(&eng);
 *       return ret < 0;
 *   }
 */
#ifndef TURBODIFF_H
#define TURBODIFF_H

#include <stddef.h>
#include <stdint.h>

/* TD_API marks the functions libturbodiff.so exports. The library's
 * objects are compiled with -fvisibility=hidden and TD_SHARED, so these
 * are its only dynamic symbols: its internals (td_* helpers of every
 * stage) stay out of the symbol table of each process that loads it.
 * Users of the library define nothing; the attribute on a declaration
 * they include changes nothing for them. */
#if defined(TD_SHARED) && (defined(__GNUC__) || defined(__clang__))
#define TD_API __attribute__((visibility("default")))
#else
#define TD_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* While MAJOR is 0, every change to a type or a function of this header
 * bumps MINOR (and the root CMakeLists.txt's project version with it): a
 * program built against one MAJOR.MINOR passes structs laid out for it, so
 * it must refuse a library of another (td_version says which is loaded). */
#define TD_VERSION_MAJOR 0
#define TD_VERSION_MINOR 4
#define TD_VERSION_MICRO 0
#define TD_VERSION_INT (TD_VERSION_MAJOR << 16 | TD_VERSION_MINOR << 8 | TD_VERSION_MICRO)

/* The version of the library loaded at run time, as TD_VERSION_INT. */
TD_API unsigned td_version(void);

enum {
    TD_OK           = 0,
    TD_EINVAL       = -1,  /* an argument or option is out of range */
    TD_ENOMEM       = -2,  /* host or device allocation failed */
    TD_EIO          = -3,  /* open/read/mmap failed */
    TD_EFORMAT      = -4,  /* a file is malformed */
    TD_EUNSUPPORTED = -5,  /* valid but not handled (dtype, layout, feature) */
    TD_ECANCELLED   = -6,  /* the job's cancel flag was raised */
    TD_ENOTFOUND    = -7,  /* a tensor, file or key is missing */
    TD_ESHAPE       = -8,  /* tensor shapes do not fit together */
    TD_EDEVICE      = -9,  /* CUDA / cuBLAS failure */
    TD_EUNSAFE      = -10, /* a pickle asked for something we refuse to run */
};

/* A short static name for an error code ("invalid argument", ...). */
TD_API const char *td_strerror(int err);

/* Log levels follow FFmpeg's ordering so the filters can map them 1:1. */
enum td_log_level {
    TD_LOG_ERROR = 16,
    TD_LOG_WARNING = 24,
    TD_LOG_INFO = 32,
    TD_LOG_VERBOSE = 40,
    TD_LOG_DEBUG = 48,
};
typedef void (*td_log_fn)(void *opaque, int level, const char *msg);

/* Error sink for calls that run before an engine exists. */
typedef struct td_error {
    int code;
    char msg[512];
} td_error;


/* ---------------------------------------------------------------------------
 * Engine: the loaded weights of one model set, shared and reference-counted.
 * ------------------------------------------------------------------------- */

typedef struct td_engine td_engine;

/* With neither model_dir nor dit set, the default model is used: the
 * directory $TURBODIFF_MODEL_DIR names, else the one installed with the
 * library (<datadir>/turbodiff/models/toy), else models/toy of the source
 * tree it was built from; td_engine_open fails naming them if none is there. */
/* A LoRA merged into the DiT when the engine opens: W' = W + scale *
 * (alpha / rank) * up . down for each module it names (diffusers/PEFT
 * lora_A/lora_B, kohya/ComfyUI lora_down/lora_up with alpha, and the
 * full-difference diff/diff_b keys), in safetensors or .pth. */
typedef struct td_lora {
    const char *path;
    double scale;            /* 1.0: as trained */
} td_lora;

typedef struct td_engine_config {
    const char *model_dir;   /* upstream file names or turbodiff.json manifest */
    const char *dit;         /* explicit files override what model_dir finds; a
                              * relative name is looked up in model_dir first,
                              * then in the current directory */
    const char *dit_low;     /* low-noise expert of a Wan2.2 A14B pair */
    const char *vae;
    const char *t5;
    const char *tokenizer;
    const char *device;      /* "auto", "cpu", "cuda", "cuda:N"; NULL = auto */
    int threads;             /* CPU threads, 0 = all cores */
    int low_memory;          /* release/reload components to bound memory */
    const char *cache_dir;   /* optional on-disk text embedding cache */
    td_log_fn log;           /* may be NULL */
    void *log_opaque;
    int log_level;           /* messages above this level are dropped */
    /* LoRAs merged, in this order, into the DiT (each expert of a pair)
     * before it is uploaded; engines that differ in them are not shared.
     * NULL / 0: none. The array is read during td_engine_open only. */
    const td_lora *loras;
    int n_loras;
} td_engine_config;

/* Set every field to its default (threads 0, device auto, log level info). */
TD_API void td_engine_config_default(td_engine_config *cfg);

/* Open or share an engine. Two calls naming the same files return the same
 * engine with its reference count raised. On failure *out is NULL and err
 * (if not NULL) holds the message. */
TD_API int td_engine_open(const td_engine_config *cfg, td_engine **out, td_error *err);
TD_API void td_engine_release(td_engine **eng);
TD_API const char *td_engine_errmsg(const td_engine *eng);

/* The clip the model set was made for, when its turbodiff.json names it
 * ("size": "WxH" and/or "frames": N): returns 1 and fills the non-NULL
 * outputs it names, else returns 0; what it does not name is left as is. Callers use it for sizes the user left
 * unset (a toy model trained at 64x64 gives noise at 832x480). Without a
 * manifest's size or frames, a Wan2.2 TI2V-5B DiT names its own:
 * 1280x704, 121 frames. */
TD_API int td_engine_native_clip(const td_engine *eng, int *width, int *height, int *frames);

/* The frame rate the model set's motion was trained at: 24 for Wan2.2
 * TI2V-5B, 16 for the other Wan models. Callers label frames with it when
 * the user sets no rate (another rate plays the motion faster or slower). */
TD_API int td_engine_native_fps(const td_engine *eng);

/* ---------------------------------------------------------------------------
 * Job: one generation request, run synchronously on the calling thread.
 * ------------------------------------------------------------------------- */

enum td_attention { TD_ATTN_FULL = 0, TD_ATTN_SLA = 1, TD_ATTN_SAGESLA = 2 };
/* AUTO: DMD for FastVideo's FastWan checkpoints (a diffusers directory
 * whose model_index.json names WanDMDPipeline, or a turbodiff.json with
 * "sampler": "dmd"); rCM for TurboDiffusion's distilled checkpoints (those
 * carrying SLA projections or W8A8 weights) and for the Wan2.1 T2V / Wan2.2
 * I2V A14B DiTs TurboDiffusion distills; flow matching with CFG for the
 * models it publishes no distilled checkpoint of (Wan2.2 TI2V-5B, the
 * Wan2.2 T2V A14B pair). An undistilled Wan2.1 or I2V A14B file needs FLOW.
 * DMD: FastVideo's few-step loop (x0 from the velocity, fresh noise at the
 * next timestep), no guidance, steps from td_job.timesteps. */
enum td_sampler { TD_SAMPLER_AUTO = 0, TD_SAMPLER_RCM = 1, TD_SAMPLER_FLOW = 2,
                  TD_SAMPLER_DMD = 3 };
enum td_frame_format { TD_FRAME_RGB24 = 0, TD_FRAME_RGBF32 = 1 };
enum td_stage { TD_STAGE_TEXT = 0, TD_STAGE_IMAGE_ENCODE, TD_STAGE_DENOISE,
                TD_STAGE_DECODE, TD_STAGE_DONE };

typedef struct td_frame {
    int index;               /* 0-based frame number within the clip */
    int width, height;
    int format;              /* enum td_frame_format */
    const void *data;        /* packed rows, valid during the callback only */
    ptrdiff_t linesize;
} td_frame;

typedef struct td_progress {
    int stage;               /* enum td_stage */
    int step, steps;         /* sampler step (1-based) within the stage */
    double stage_seconds;    /* elapsed in this stage */
    double total_seconds;    /* elapsed in the job */
    /* TD_STAGE_DONE only (0 in the other stages): the most memory the job
     * held at once on the engine's device, measured by the backend: the
     * weights resident then (the DiT or both experts, the VAE, umT5 unless
     * low_memory released it; on the CPU every weight the engine has
     * mapped) plus the activations, caches and buffers live at that moment,
     * as td_estimate.peak_bytes counts them (host_bytes not included).
     * 0 on a backend that does not measure it. */
    size_t peak_bytes;
} td_progress;

/* Return non-zero from on_frame to stop the job (it returns TD_ECANCELLED). */
typedef int (*td_frame_fn)(void *opaque, const td_frame *frame);
typedef void (*td_progress_fn)(void *opaque, const td_progress *p);

typedef struct td_job {
    const char *prompt;
    const float *context;    /* precomputed embedding [context_len x dim], or NULL */
    int context_len;
    int context_dim;         /* its row width: the DiT's text dim (4096 for Wan) */
    const uint8_t *image;    /* RGB24 start image for image-to-video, or NULL */
    int image_width, image_height;
    ptrdiff_t image_linesize;
    int adaptive_resolution; /* keep the image's aspect at width x height's area */
    int width, height, frames;
    int steps;               /* rCM steps, 1..4 */
    double sigma_max;        /* <= 0: the model's default (80 t2v, 200 i2v) */
    uint64_t seed;
    int attention;           /* enum td_attention */
    double topk;             /* SLA key-block fraction, (0, 1] */
    int ode;                 /* deterministic rCM update instead of fresh noise */
    double boundary;         /* A14B expert switch, <= 0: 0.875 for a text-to-video
                                pair, 0.9 for image-to-video (Wan2.2's configs) */
    int frame_format;        /* enum td_frame_format */
    /* The sampler (enum td_sampler) and, for flow matching (UniPC, as
     * diffusers' Wan pipelines), its settings; each <= 0 (NULL) is the
     * model's own (Wan2.2's configs): TI2V-5B 50 steps, shift 5, guidance
     * 5; T2V A14B 40 steps, shift 12, guidance 4 high / 3 low; I2V A14B 40
     * steps, shift 5, guidance 3.5; Wan2.1 50 steps, shift 5, guidance 5. */
    int sampler;
    int flow_steps;          /* 1..1000 */
    double shift;
    double guidance;         /* classifier-free guidance scale; 1: none */
    double guidance_low;     /* the low-noise expert's */
    const char *negative_prompt; /* NULL: Wan's default negative prompt */
    /* DMD: the DiT timesteps of its steps, decreasing integers in 1..1000
     * separated by commas (or '|'); NULL: FastWan's published "1000,757,522". The
     * sigma of each is looked up on FastVideo's shift-8 grid. */
    const char *timesteps;
    td_frame_fn on_frame;
    td_progress_fn on_progress;
    void *opaque;
    const volatile int *cancel;  /* checked between steps and chunks */
    /* Several users of one shared engine run jobs on their own threads (two
     * FFmpeg filter instances naming the same model), so what a job reports
     * must not go through the engine:
     * - the library reads *cancel with an atomic load (__atomic_load_n,
     *   relaxed); another thread sets it with __atomic_store_n or a C11
     *   atomic store, without a data race;
     * - log: messages during this job (the engine's config log is used by
     *   td_engine_open only, since its opener may release the engine while
     *   another user still runs jobs); NULL drops them; level 0 means info;
     * - error: if not NULL, receives the message when validate/run fail;
     *   otherwise it is kept in the engine (td_engine_errmsg), which is only
     *   meaningful for an engine that one thread uses. */
    td_log_fn log;
    void *log_opaque;
    int log_level;
    td_error *error;
    /* The most memory the job may take on its device, weights included
     * (td_estimate's peak_bytes); 0: what the device has available when the
     * job is checked, plus the weights the engine already holds. A job
     * whose estimate exceeds it is refused (TD_ENOMEM) before it starts. */
    size_t max_memory;
} td_job;

/* Defaults: 832x480, 81 frames, 4 steps, sla, topk 0.1, seed 0, RGB24. */
TD_API void td_job_default(td_job *job);

/* Check a job against the engine without running it; the message names the
 * offending field and, for sizes, the nearest valid values. eng may be NULL:
 * then the checks that need no model run, so a caller can reject bad options
 * before loading anything. With an engine, what its model set asks of the
 * job is checked too, with the message td_job_run would give: an image for
 * an image-to-video model and none for a text-to-video one, width and
 * height multiples of the VAE's factor times the DiT's patch (16 for
 * Wan2.1 and the A14B pairs, 32 for Wan2.2 TI2V-5B), a frame count whose
 * latent frames the DiT's time patch takes, a precomputed context of at
 * most 512 rows as wide as the DiT's text input, and a sampler the model
 * runs (not DMD on an expert pair). A job whose estimated peak
 * (td_job_estimate) exceeds max_memory, or by default the memory available
 * on the device, is refused with TD_ENOMEM and a message giving the
 * numbers; td_job_run checks the same before its first step. */
TD_API int td_job_validate(td_engine *eng, const td_job *job);

TD_API int td_job_run(td_engine *eng, const td_job *job);

/* What a job will take on the engine's device, from the sizes the
 * implementation allocates (pipeline/estimate.c): weights, the largest
 * working set of its stages, and a rough time. */
typedef struct td_estimate {
    int width, height, frames;     /* the clip (adaptive sizes resolved) */
    int64_t tokens;                /* DiT tokens per forward: latent frames x rows x
                                    * columns after the DiT's patch (21 x 30 x 52 =
                                    * 32,760 for 832x480, 81 frames, Wan2.1) */
    int text_tokens;               /* context rows each DiT forward attends to (512) */
    int forwards;                  /* DiT forward passes: sampler steps, twice with CFG */
    int peak_stage;                /* enum td_stage in which the peak falls */
    size_t weights_bytes;          /* weights resident on the device at the peak (the
                                    * DiT or both experts, the VAE, and umT5 unless
                                    * low_memory releases it) */
    size_t working_bytes;          /* everything else at the peak: the stage's
                                    * activations, caches and buffers (text encoding,
                                    * image encoding, denoising with its CFG / expert
                                    * buffers, or VAE decoding with its causal caches) */
    size_t peak_bytes;             /* weights_bytes + working_bytes */
    size_t host_bytes;             /* host memory besides (the sampler's state, one
                                    * decoded chunk); part of the peak on the CPU */
    size_t resident_bytes;         /* weights the engine holds between jobs */
    size_t available_bytes;        /* free on the device now (CPU: MemAvailable,
                                    * lowered to a cgroup v2 limit; CUDA: free memory) */
    size_t limit_bytes;            /* what the job may use: job->max_memory, else
                                    * available_bytes, plus resident_bytes where
                                    * the weights are copies (CUDA), not mapped
                                    * file pages the CPU's MemAvailable counts */
    double flops;                  /* floating point operations of the DiT forwards and
                                    * the VAE (a multiply-add counts 2; the text encoder,
                                    * once per prompt, is left out) */
    double flops_per_second;       /* this engine's device, measured once at open on a
                                    * matrix product */
    double seconds;                /* flops / flops_per_second: rough, since attention,
                                    * convolutions and small ops run below the probed
                                    * rate (expect the job to take longer, up to ~3x) */
    char device[32];               /* "cpu", "cuda:0", ... */
} td_estimate;

/* Validate the job (the messages of td_job_validate) and estimate it on
 * eng, which must not be NULL. It runs nothing on the device and takes
 * about a millisecond; it is safe while another thread runs a job on eng.
 * Of an image only the size is read, so an image-to-video job can be
 * estimated before its image exists (any non-NULL image pointer). A job
 * that does not fit is still estimated (0 returned): td_job_validate
 * refuses it when peak_bytes (plus host_bytes on the CPU) exceeds
 * limit_bytes. */
TD_API int td_job_estimate(td_engine *eng, const td_job *job, td_estimate *out);

/* The size of the frames a job delivers: width x height, or with
 * adaptive_resolution the aspect ratio of an image_width x image_height
 * image at that area, each side a multiple of 16. Only the image's size is
 * read, so a caller can size its output before the image arrives. */
TD_API void td_job_output_size(const td_job *job, int *width, int *height);

/* The sampler settings td_job_run will use for this job on this engine:
 * sampler AUTO becomes the model's sampler (TD_SAMPLER_RCM, _FLOW or
 * _DMD), and boundary, flow_steps, shift, guidance and
 * guidance_low left <= 0 the model's values; the rest of the job is left
 * as it is. Callers tell the user what the model's defaults amount to
 * before a long run (or which settings the sampler will not read). */
TD_API void td_job_resolve(const td_engine *eng, td_job *job);

#ifdef __cplusplus
}
#endif

#endif /* TURBODIFF_H */
