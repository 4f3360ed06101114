/*
 * What a model set asks of a job, checked before anything runs
 * (td_job_check_model): td_job_validate and td_job_estimate with the
 * engine refuse it with the message td_job_run gives, and td_job_run
 * refuses it before its first stage (no progress report, no frame):
 *  - Wan2.2 TI2V-5B (VAE 16 x DiT patch 2) at a size that is a multiple of
 *    16 but not of 32, e.g. 48x32, with the nearest valid sizes;
 *  - an I2V A14B pair without an image, a text-to-video DiT with one;
 *  - a precomputed context of the wrong width or too many rows;
 *  - DMD on an expert pair;
 *  - a DiT that patches time (none in Wan; the engine's config is changed
 *    here to stand for one): a frame count whose latent frames it cannot
 *    take, with the counts it can.
 */
#include <string.h>

#include "check.h"
#include "pipeline_cases.h"
#include "pipeline/engine.h"
#include "pipeline/models.h"

#define DATA TD_ROOT "/tests/data/pipeline"
#define IMG_W 29
#define IMG_H 19

typedef struct seen {
    int progress, frames;
} seen;

static int on_frame(void *opaque, const td_frame *f)
{
    (void)f;
    ((seen *)opaque)->frames++;
    return 0;
}

static void on_progress(void *opaque, const td_progress *p)
{
    (void)p;
    ((seen *)opaque)->progress++;
}

static td_engine *open_set(const char *dir)
{
    td_engine *eng = NULL;
    td_error err = { 0 };

    CHECK(tc_open(dir, "cpu", NULL, 0, &eng, &err) == 0, "open %s: %s", dir, err.msg);
    return eng;
}

static void job_for(td_job *job, int w, int h, const uint8_t *image, seen *s, td_error *err)
{
    td_job_default(job);
    job->prompt = "a red circle moves right on a blue background";
    job->width = w;
    job->height = h;
    job->frames = 5;
    job->steps = 1;
    job->flow_steps = 1;
    job->attention = TD_ATTN_FULL;
    if (image) {
        job->image = image;
        job->image_width = IMG_W;
        job->image_height = IMG_H;
        job->image_linesize = 3 * IMG_W;
    }
    job->on_frame = on_frame;
    job->on_progress = on_progress;
    job->opaque = s;
    job->error = err;
}

/* validate, estimate and run all refuse the job with code and a message
 * holding each of want[], the run before its first stage. */
static void refused(td_engine *eng, td_job *job, int code, const char *const *want, int n,
                    const char *what)
{
    td_error err = { 0 }, verr = { 0 };
    td_estimate e;
    seen *s = job->opaque;
    int ret;

    job->error = &verr;
    ret = td_job_validate(eng, job);
    CHECK(ret == code, "%s: validate gave %d, expected %d: %s", what, ret, code, verr.msg);
    for (int i = 0; i < n; i++)
        CHECK(strstr(verr.msg, want[i]) != NULL, "%s: '%s' not in '%s'", what, want[i], verr.msg);
    printf("%s: %s\n", what, verr.msg);
    job->error = &err;
    CHECK(td_job_estimate(eng, job, &e) == code && !strcmp(err.msg, verr.msg),
          "%s: estimate says '%s', validate '%s'", what, err.msg, verr.msg);
    memset(&err, 0, sizeof(err));
    *s = (seen){ 0 };
    CHECK(td_job_run(eng, job) == code && !strcmp(err.msg, verr.msg) && s->progress == 0 && s->frames == 0,
          "%s: run says '%s' after %d progress reports and %d frames", what, err.msg, s->progress,
          s->frames);
}

/* TI2V-5B: a random width that is an odd multiple of 16 is refused with
 * the multiples of 32 around it; the multiple of 32 next to it runs. */
static void test_ti2v_sizes(test_rng *r)
{
    td_engine *eng = open_set(DATA "/ti2v");
    td_error err = { 0 };
    td_job job;
    seen s = { 0 };
    int w = 32 * (1 + (int)(test_next(r) % 4)) + 16, h = 32;
    char size[32], near[64];

    if (!eng)
        return;
    job_for(&job, w, h, NULL, &s, &err);
    snprintf(size, sizeof(size), "size %dx%d", w, h);
    snprintf(near, sizeof(near), "nearest valid sizes are %dx32 and %dx32", w - 16, w + 16);
    refused(eng, &job, TD_EINVAL,
            (const char *[]){ size, "width must be a multiple of 32", near, "patches its latents by 2x2" }, 4,
            "TI2V text-to-video, odd multiple of 16");
    /* 48x32 is the smallest such size, and its one neighbour below is 32 */
    job.width = 48;
    refused(eng, &job, TD_EINVAL, (const char *[]){ "size 48x32", "32x32 and 64x32" }, 2, "TI2V 48x32");
    job.width = 16;
    refused(eng, &job, TD_EINVAL, (const char *[]){ "size 16x32", "use 32x32" }, 2, "TI2V 16x32");
    job.width = w + 16;
    CHECK(td_job_validate(eng, &job) == 0, "TI2V %dx32: %s", w + 16, err.msg);
    CHECK(td_job_run(eng, &job) == 0 && s.frames == 5, "TI2V %dx32 runs: %s (%d frames)", w + 16, err.msg,
          s.frames);
    td_engine_release(&eng);
}

/* The task a model set does: an i2v pair needs an image, a t2v DiT takes
 * none (TI2V-5B both: its image job validates). */
static void test_task(const uint8_t *image)
{
    td_engine *i2v = open_set(DATA "/i2v"), *t2v = open_set(DATA), *ti2v = open_set(DATA "/ti2v");
    td_error err = { 0 };
    td_job job;
    seen s = { 0 };

    if (i2v) {
        job_for(&job, 64, 32, NULL, &s, &err);
        refused(i2v, &job, TD_EINVAL,
                (const char *[]){ "this model is image-to-video", "give it an image (turbodiff_i2v, or --image)",
                                  "36 input channels" }, 3, "i2v pair without an image");
        job_for(&job, 64, 32, image, &s, &err);
        job.sampler = TD_SAMPLER_DMD;
        refused(i2v, &job, TD_EINVAL, (const char *[]){ "sampler dmd", "expert pair", "rcm or flow" }, 3,
                "DMD on a pair");
        job.sampler = TD_SAMPLER_AUTO;
        CHECK(td_job_validate(i2v, &job) == 0, "i2v pair with an image: %s", err.msg);
    }
    if (t2v) {
        job_for(&job, 64, 32, image, &s, &err);
        refused(t2v, &job, TD_EINVAL,
                (const char *[]){ "this model is text-to-video", "leave the image out",
                                  "image-to-video model" }, 3, "t2v DiT with an image");
    }
    if (ti2v) {
        job_for(&job, 64, 32, image, &s, &err);
        CHECK(td_job_validate(ti2v, &job) == 0, "TI2V with an image: %s", err.msg);
    }
    td_engine_release(&i2v);
    td_engine_release(&t2v);
    td_engine_release(&ti2v);
}

/* A precomputed context must be as wide as the DiT's text input and at
 * most 512 rows. */
static void test_context(test_rng *r)
{
    td_engine *eng = open_set(DATA);
    td_error err = { 0 };
    td_job job;
    seen s = { 0 };
    float *rows;
    int dim, bad;
    char want[64];

    if (!eng)
        return;
    dim = eng->models->cfg.text_dim;
    bad = dim + 1 + (int)(test_next(r) % 8);
    rows = malloc(sizeof(float) * 513 * (size_t)bad);
    CHECK(rows != NULL, "out of memory");
    if (!rows) {
        td_engine_release(&eng);
        return;
    }
    test_fill(r, rows, 513 * (size_t)bad, 1.0f);
    job_for(&job, 64, 32, NULL, &s, &err);
    job.prompt = NULL;
    job.context = rows;
    job.context_len = 3;
    job.context_dim = bad;
    snprintf(want, sizeof(want), "context_dim %d", bad);
    refused(eng, &job, TD_ESHAPE, (const char *[]){ want, "text encoder" }, 2, "context too wide");
    job.context_dim = dim;
    job.context_len = 513;
    refused(eng, &job, TD_EINVAL, (const char *[]){ "context_len 513", "at most 512" }, 2, "context too long");
    job.context_len = 3;
    CHECK(td_job_validate(eng, &job) == 0 && td_job_run(eng, &job) == 0 && s.frames == 5,
          "a %d-wide context runs: %s", dim, err.msg);
    free(rows);
    td_engine_release(&eng);
}

/* A DiT patching time by 2: 5 frames make 2 latent frames (taken), 9
 * frames 3 (refused, naming 5 and 13 frames, which make 2 and 4). */
static void test_time_patch(void)
{
    td_engine *eng = open_set(DATA);
    td_error err = { 0 };
    td_job job;
    seen s = { 0 };

    if (!eng)
        return;
    eng->models->cfg.patch[0] = 2;
    job_for(&job, 64, 32, NULL, &s, &err);
    CHECK(td_job_validate(eng, &job) == 0, "5 frames, time patch 2: %s", err.msg);
    job.frames = 9;
    CHECK(td_job_validate(eng, &job) == TD_EINVAL && strstr(err.msg, "frames 9 make 3 latent frames") &&
          strstr(err.msg, "patches time by 2") && strstr(err.msg, "use 5 or 13 frames"),
          "9 frames, time patch 2: %s", err.msg);
    eng->models->cfg.patch[0] = 1;
    td_engine_release(&eng);
}

int main(void)
{
    test_rng r = test_rng_seeded();
    uint8_t image[IMG_W * IMG_H * 3];

    for (size_t i = 0; i < sizeof(image); i++)
        image[i] = (uint8_t)test_next(&r);
    test_ti2v_sizes(&r);
    test_task(image);
    test_context(&r);
    test_time_patch();
    return check_summary();
}
