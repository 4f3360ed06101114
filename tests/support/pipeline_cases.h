/*
 * The whole-pipeline cases that every backend's pipeline test runs
 * (tests/unit/test_pipeline_fenced.c, tests/cuda/test_cuda_pipeline.c):
 * text-to-video with full attention, with SLA (the tiny DiT given random
 * proj_l), with W8A8 (the tiny DiT quantized by td_dit_quantize), the SLA
 * model with full attention (what SLA must differ from), and image-to-video
 * on the A14B-style expert pair, resident and with low memory, and Wan2.2
 * TI2V-5B (48-channel DiT, Wan2.2 VAE, flow matching with CFG) text- and
 * image-to-video, and text-to-video with the DMD sampler. Each case
 * makes one 64x32, 5-frame RGBF32 clip with a fixed seed; the tests compare
 * clips across backends and between cases.
 *
 * Fixtures are found under TD_TEST_ROOT when it is set, else under the
 * source tree the test was built from (TD_ROOT): a binary carried to
 * another machine (tools/gpu/build_for_gpu.sh) is pointed at its copy.
 *
 * Test-only, like everything in tests/support: errors come back as values
 * with a message in the td_error, the tests assert.
 */
#ifndef TD_TEST_PIPELINE_CASES_H
#define TD_TEST_PIPELINE_CASES_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "test_rng.h"
#include "turbodiff.h"

#define TC_W 64
#define TC_H 32
#define TC_FRAMES 5
#define TC_CLIP_FLOATS ((size_t)TC_FRAMES * TC_H * TC_W * 3)
#define TC_BF16_BAR 3e-2   /* rel L2 of bf16 vs CPU f32 after a full sampler run (DESIGN.md) */
#define TC_IMAGE_W 37      /* odd sizes: the i2v resize and crop are exercised */
#define TC_IMAGE_H 23

typedef struct tc_clip {
    float *rgb;             /* TC_FRAMES x TC_H x TC_W x 3 */
    int frames, bad;        /* frames delivered; frames with the wrong size or index */
    int cancel_at_step;     /* raise cancel when this denoise step is done (0: never) */
    volatile int cancel;
} tc_clip;

/* What a case generates: text-to-video or, with an image, image-to-video. */
typedef struct tc_want {
    const uint8_t *image;   /* TC_IMAGE_W x TC_IMAGE_H RGB24, or NULL */
    int attention;          /* TD_ATTN_* */
    int sampler;            /* TD_SAMPLER_* (AUTO: the model's) */
} tc_want;

typedef struct tc_case {
    const char *name;
    const char *dir;        /* model directory (a turbodiff.json manifest) */
    tc_want want;
    int low_memory;
} tc_case;

/* The cases, in the order tc_suite.cases holds them. */
enum {
    TC_T2V,          /* t2v, full attention */
    TC_SLA,          /* t2v, SLA on the SLA model */
    TC_SLA_FULL,     /* t2v, full attention on the SLA model */
    TC_W8A8,         /* t2v, the quantized model */
    TC_I2V,          /* i2v expert pair, resident */
    TC_I2V_LOW,      /* i2v expert pair, low memory */
    TC_TI2V,         /* TI2V-5B text-to-video (flow matching, CFG) */
    TC_TI2V_I2V,     /* TI2V-5B image-to-video */
    TC_DMD,          /* t2v with the DMD sampler (FastWan's loop) */
    TC_NCASES
};

/* The cases' inputs: the committed tiny model sets, temporary SLA and W8A8
 * copies of the t2v one (in a fresh /tmp folder), and a random image. The
 * cases point into the suite's strings and image: keep it in place. */
typedef struct tc_suite {
    char t2v_dir[1024], i2v_dir[1024], ti2v_dir[1024];
    char tmp[32], sla_dir[64], w8a8_dir[64];
    uint8_t image[TC_IMAGE_W * TC_IMAGE_H * 3];
    tc_case cases[TC_NCASES];
} tc_suite;

/* The fixture root: $TD_TEST_ROOT, else the compile-time TD_ROOT. */
const char *tc_root(void);

/* Fill *s: write the temporary model sets (proj_l drawn from r), draw the
 * image. Undo with tc_suite_remove, also after a failure. */
int tc_suite_make(td_ctx *ctx, test_rng *r, tc_suite *s);
void tc_suite_remove(tc_suite *s);

/* Open dir's model set: through td_engine_open with cfg.device = device
 * when make is NULL, else on the backends make creates (td_engine_open_on,
 * registered under device). */
int tc_open(const char *dir, const char *device, td_backend_factory make, int low_memory,
            td_engine **out, td_error *err);

/* Run want on eng into *c (allocated here; free with tc_clip_free). */
int tc_run(td_engine *eng, const tc_want *want, int cancel_at_step, tc_clip *c, td_error *err);

/* One case from open to release: its clip in *c. Non-zero (with a message
 * in err) when the run fails or does not deliver every frame in order. */
int tc_case_clip(const tc_case *k, const char *device, td_backend_factory make, tc_clip *c,
                 td_error *err);

void tc_clip_free(tc_clip *c);

/* ||a - b|| / ||b|| over n floats, in double (b the reference). */
double tc_rel_l2(const float *a, const float *b, size_t n);

/* Whether two clips hold the same frames bit for bit. */
int tc_clips_equal(const tc_clip *a, const tc_clip *b);

#endif
