/*
 * td_job_estimate and the refusal of jobs that cannot fit.
 *
 * The estimate's memory is held against what the pipeline really holds:
 * each case runs on the fenced backend (tests/support/fenced_backend.h),
 * which records every live allocation (activations, tensor_new, uploads),
 * and the estimated peak must lie within [0.8, 1.5] of the measured one
 * (weights included), over t2v, SLA, W8A8, the i2v expert pair resident
 * and with low memory, TI2V text- and image-to-video, at sizes and frame
 * counts where activations, not the weights of the tiny models, dominate.
 * Then: a job over max_memory is refused by td_job_validate and td_job_run
 * before any frame, with the numbers; max_memory just above the peak lets
 * it run; an absurd job is refused by default; a bad job gets
 * td_job_validate's message from td_job_estimate. The peak each job
 * reports with TD_STAGE_DONE (td_progress.peak_bytes) is the fenced
 * backend's own, and on the CPU backend within the same bounds; a CPU
 * engine keeps no op scratch or tensor blocks once its job ends.
 */
#include <stdint.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "check.h"
#include "fenced_backend.h"
#include "pipeline/engine.h"
#include "pipeline/models.h"
#include "pipeline_cases.h"

#define PEAK_LO 0.8
#define PEAK_HI 1.5

static int fenced_f32(td_ctx *ctx, const char *device, size_t arena, td_backend **out)
{
    (void)device;
    return td_backend_fenced_f32_create(ctx, arena, out);
}

typedef struct sink {
    int frames;
    int steps;
    int done;               /* TD_STAGE_DONE reports */
    size_t peak;            /* the peak the last one carried */
} sink;

static int on_frame(void *opaque, const td_frame *f)
{
    (void)f;
    ((sink *)opaque)->frames++;
    return 0;
}

static void on_progress(void *opaque, const td_progress *p)
{
    sink *s = opaque;
    if (p->stage == TD_STAGE_DENOISE && p->step > 0)
        s->steps++;
    if (p->stage == TD_STAGE_DONE) {
        s->done++;
        s->peak = p->peak_bytes;
    } else if (p->peak_bytes) {
        s->peak = SIZE_MAX;   /* only the last report carries the peak */
    }
}

static void job_for(td_job *job, const tc_case *k, int w, int h, int frames, sink *s, td_error *err)
{
    td_job_default(job);
    job->prompt = "a red circle moves right on a blue background";
    job->width = w;
    job->height = h;
    job->frames = frames;
    job->steps = 2;
    job->flow_steps = 2;
    job->seed = 5;
    job->attention = k->want.attention;
    job->topk = 0.5;
    if (k->want.image) {
        job->image = k->want.image;
        job->image_width = TC_IMAGE_W;
        job->image_height = TC_IMAGE_H;
        job->image_linesize = TC_IMAGE_W * 3;
    }
    job->on_frame = on_frame;
    job->on_progress = on_progress;
    job->opaque = s;
    job->error = err;
}

/* One case at one size: the estimate, then the run on the fenced backend
 * with its peak measured from what the engine holds after opening. */
static void peak_case(const tc_case *k, int w, int h, int frames)
{
    td_engine *eng = NULL;
    td_error err = { 0 };
    td_estimate e;
    td_job job;
    sink s = { 0 };
    td_backend *be;
    double measured, ratio;

    CHECK(tc_open(k->dir, "fenced-f32", fenced_f32, k->low_memory, &eng, &err) == 0, "%s: open: %s",
          k->name, err.msg);
    if (!eng)
        return;
    be = eng->models->be;
    job_for(&job, k, w, h, frames, &s, &err);
    CHECK(td_job_estimate(eng, &job, &e) == 0, "%s: estimate: %s", k->name, err.msg);
    td_backend_fenced_peak_reset(be);
    CHECK(td_job_run(eng, &job) == 0 && s.frames == frames, "%s %dx%d x %d: run: %s (%d frames)",
          k->name, w, h, frames, err.msg, s.frames);
    measured = (double)td_backend_fenced_peak(be);
    /* the job reports the fenced backend's own peak, counted from its start */
    CHECK(s.done == 1 && s.peak == td_backend_fenced_peak(be), "%s: the job reported a peak of %zu "
          "(%d done reports), the fenced backend measured %.0f", k->name, s.peak, s.done, measured);
    ratio = (double)e.peak_bytes / measured;
    printf("%-32s %3dx%-3d x %2d: estimate %9zu (weights %8zu, working %9zu, stage %d), measured %9.0f: "
           "%.3f; %lld tokens, %.3g FLOPs, %.3g s\n", k->name, w, h, frames, e.peak_bytes,
           e.weights_bytes, e.working_bytes, e.peak_stage, measured, ratio, (long long)e.tokens, e.flops,
           e.seconds);
    CHECK(ratio >= PEAK_LO && ratio <= PEAK_HI, "%s %dx%d x %d: estimated peak %zu is %.3f x the "
          "measured %.0f, outside [%.1f, %.1f]", k->name, w, h, frames, e.peak_bytes, ratio, measured,
          PEAK_LO, PEAK_HI);
    CHECK(e.weights_bytes > 0 && e.working_bytes > e.weights_bytes / 4, "%s: weights %zu, working %zu",
          k->name, e.weights_bytes, e.working_bytes);
    td_engine_release(&eng);
}

static void test_peaks(const tc_suite *su)
{
    static const struct { int c, w, h, frames; } runs[] = {
        { TC_T2V, 256, 128, 9 },
        { TC_T2V, 128, 192, 17 },
        { TC_SLA, 256, 128, 9 },
        { TC_W8A8, 192, 128, 13 },
        { TC_I2V, 192, 128, 9 },
        { TC_I2V_LOW, 192, 128, 9 },
        { TC_TI2V, 256, 128, 9 },
        { TC_TI2V_I2V, 256, 256, 5 },
    };
    for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++)
        peak_case(&su->cases[runs[i].c], runs[i].w, runs[i].h, runs[i].frames);
}

/* On the CPU backend the peak a job reports (its own count of tensors,
 * arena and mapped weights) lies within the same bounds of the estimate,
 * and a second job reports its own peak, not the first's: a smaller clip
 * after a larger one reports less. */
static void test_cpu_peak(const tc_suite *su, test_rng *r)
{
    const tc_case *k = &su->cases[TC_T2V];
    td_engine *eng = NULL;
    td_error err = { 0 };
    td_estimate e;
    td_job job;
    sink s = { 0 };
    int w = 128 + 32 * (int)(test_next(r) % 4), frames = 9 + 4 * (int)(test_next(r) % 2);
    size_t big;
    double ratio;

    CHECK(tc_open(k->dir, "cpu", NULL, 0, &eng, &err) == 0, "cpu open: %s", err.msg);
    if (!eng)
        return;
    job_for(&job, k, w, 128, frames, &s, &err);
    CHECK(td_job_estimate(eng, &job, &e) == 0, "cpu estimate: %s", err.msg);
    CHECK(td_job_run(eng, &job) == 0 && s.done == 1 && s.peak > 0, "cpu run: %s (%d done, peak %zu)",
          err.msg, s.done, s.peak);
    {
        const td_cpu *c = td_cpu_of(eng->models->be);
        CHECK(c->scratch_floats == 0 && c->nkept == 0, "an idle engine still holds %zu bytes of scratch and "
              "%d kept blocks (%zu bytes)", c->scratch_floats * sizeof(float), c->nkept, td_cpu_kept_bytes(c));
    }
    ratio = (double)e.peak_bytes / (double)s.peak;
    printf("cpu %dx128 x %d: estimate %zu, reported %zu: %.3f\n", w, frames, e.peak_bytes, s.peak, ratio);
    CHECK(ratio >= PEAK_LO && ratio <= PEAK_HI, "cpu %dx128 x %d: estimated peak %zu is %.3f x the "
          "reported %zu, outside [%.1f, %.1f]", w, frames, e.peak_bytes, ratio, s.peak, PEAK_LO, PEAK_HI);
    big = s.peak;
    job.width = 64;
    job.height = 32;
    job.frames = 5;
    s = (sink){ 0 };
    CHECK(td_job_run(eng, &job) == 0 && s.done == 1 && s.peak > 0 && s.peak < big,
          "cpu: a 64x32 x 5 job after a %dx128 x %d one reports %zu (that one %zu)", w, frames, s.peak,
          big);
    td_engine_release(&eng);
}

/* The estimate's counts for a t2v job: tokens from the latent grid, the
 * forwards from the steps, a time from the probed rate. */
static void check_counts(const td_estimate *e, int w, int h, int frames, int steps)
{
    int64_t T = 1 + (frames + 2) / 4;
    CHECK(e->tokens == T * (h / 16) * (w / 16), "tokens %lld for %dx%d x %d", (long long)e->tokens, w, h,
          frames);
    CHECK(e->text_tokens == 512 && e->forwards == steps, "text tokens %d, forwards %d", e->text_tokens,
          e->forwards);
    CHECK(e->flops > 0 && e->flops_per_second > 0 && e->seconds > 0 && e->seconds < 60,
          "flops %g at %g/s: %g s", e->flops, e->flops_per_second, e->seconds);
    CHECK(e->peak_bytes == e->weights_bytes + e->working_bytes && e->limit_bytes > 0,
          "peak %zu, weights %zu, working %zu, limit %zu", e->peak_bytes, e->weights_bytes, e->working_bytes,
          e->limit_bytes);
}

static void test_refusal(const tc_suite *su, test_rng *r)
{
    const tc_case *k = &su->cases[TC_T2V];
    td_engine *eng = NULL;
    td_error err = { 0 };
    td_estimate e, e2;
    td_job job;
    sink s = { 0 };
    char want[64];
    /* a random size and frame count, so the numbers in the message are the job's */
    int w = 64 + 16 * (int)(test_next(r) % 8), h = 64 + 16 * (int)(test_next(r) % 8);
    int frames = 1 + 4 * (int)(1 + test_next(r) % 4);

    CHECK(tc_open(k->dir, "fenced-f32", fenced_f32, 0, &eng, &err) == 0, "open: %s", err.msg);
    if (!eng)
        return;
    job_for(&job, k, w, h, frames, &s, &err);
    CHECK(td_job_estimate(eng, &job, &e) == 0, "estimate: %s", err.msg);
    check_counts(&e, w, h, frames, job.steps);
    /* the fence's weights are copies: free memory no longer counts them */
    CHECK(e.limit_bytes == e.available_bytes + e.resident_bytes && e.resident_bytes == e.weights_bytes,
          "limit %zu, available %zu, resident %zu, weights %zu", e.limit_bytes, e.available_bytes,
          e.resident_bytes, e.weights_bytes);
    /* bigger clips need more */
    job.width = 2 * w;
    job.frames = frames + 8;
    CHECK(td_job_estimate(eng, &job, &e2) == 0 && e2.peak_bytes > e.peak_bytes,
          "%dx%d x %d: peak %zu, %dx%d x %d: %zu", w, h, frames, e.peak_bytes, job.width, h, job.frames,
          e2.peak_bytes);
    job.width = w;
    job.frames = frames;

    /* one byte under the peak: refused, by validate and by run, with the numbers */
    job.max_memory = e.peak_bytes - 1;
    err = (td_error){ 0 };
    CHECK(td_job_validate(eng, &job) == TD_ENOMEM && strstr(err.msg, "needs about") &&
          strstr(err.msg, "max_memory is") && strstr(err.msg, "weights") && strstr(err.msg, "working set"),
          "validate under max_memory: %s", err.msg);
    snprintf(want, sizeof(want), "%dx%d x %d frames", w, h, frames);
    CHECK(strstr(err.msg, want) != NULL, "the message names the job (%s): %s", want, err.msg);
    printf("refused: %s\n", err.msg);
    err = (td_error){ 0 };
    CHECK(td_job_run(eng, &job) == TD_ENOMEM && s.frames == 0 && s.steps == 0 && strstr(err.msg, "needs about"),
          "run under max_memory: %s (%d frames, %d steps)", err.msg, s.frames, s.steps);

    /* at the peak: it runs */
    job.max_memory = e.peak_bytes;
    CHECK(td_job_validate(eng, &job) == 0, "validate at max_memory = the peak: %s", err.msg);
    CHECK(td_job_run(eng, &job) == 0 && s.frames == frames, "run at max_memory = the peak: %s", err.msg);

    /* by default the limit is the device's available memory: an absurd
     * clip (the largest sizes validate accepts) cannot fit anywhere */
    job.max_memory = 0;
    job.width = job.height = 4096;
    job.frames = 4093;
    err = (td_error){ 0 };
    CHECK(td_job_estimate(eng, &job, &e) == 0 && e.peak_bytes > ((size_t)256 << 30),
          "absurd job: peak %zu (%s)", e.peak_bytes, err.msg);
    if (e.peak_bytes > e.limit_bytes) {
        CHECK(td_job_validate(eng, &job) == TD_ENOMEM && strstr(err.msg, "is available"),
              "absurd job: %s", err.msg);
        printf("refused: %s\n", err.msg);
    }
    td_engine_release(&eng);
}

/* Bad jobs: td_job_estimate says what td_job_validate says. */
static void test_bad_jobs(const tc_suite *su)
{
    const tc_case *k = &su->cases[TC_T2V];
    td_engine *eng = NULL;
    td_error err = { 0 }, want = { 0 };
    td_estimate e;
    td_job job;
    sink s = { 0 };

    CHECK(tc_open(k->dir, "cpu", NULL, 0, &eng, &err) == 0, "open: %s", err.msg);
    if (!eng)
        return;
    job_for(&job, k, 100, 64, 5, &s, &want);
    CHECK(td_job_validate(NULL, &job) == TD_EINVAL, "validate 100x64: %s", want.msg);
    job.error = &err;
    CHECK(td_job_estimate(eng, &job, &e) == TD_EINVAL && !strcmp(err.msg, want.msg),
          "estimate 100x64: '%s', validate: '%s'", err.msg, want.msg);
    job.width = 64;
    job.steps = 9;
    CHECK(td_job_estimate(eng, &job, &e) == TD_EINVAL && strstr(err.msg, "steps 9"), "steps 9: %s",
          err.msg);
    job.steps = 2;
    CHECK(td_job_estimate(eng, NULL, &e) == TD_EINVAL && td_job_estimate(eng, &job, NULL) == TD_EINVAL &&
          td_job_estimate(NULL, &job, &e) == TD_EINVAL, "NULL arguments");
    /* on the CPU the host buffers count too, and the device is named */
    CHECK(td_job_estimate(eng, &job, &e) == 0 && !strcmp(e.device, "cpu") && e.host_bytes > 0 &&
          e.available_bytes > 0, "cpu estimate: %s, host %zu, available %zu", e.device, e.host_bytes,
          e.available_bytes);
    /* the CPU's weights are mapped file pages, which MemAvailable counts */
    CHECK(e.limit_bytes == e.available_bytes, "cpu: limit %zu, available %zu", e.limit_bytes,
          e.available_bytes);
    job.max_memory = e.peak_bytes + e.host_bytes - 1;
    CHECK(td_job_validate(eng, &job) == TD_ENOMEM && strstr(err.msg, "host buffers") && strstr(err.msg, "on cpu"),
          "cpu, one byte short: %s", err.msg);
    td_engine_release(&eng);
}

int main(void)
{
    test_rng r = test_rng_seeded();
    td_ctx ctx;
    tc_suite s;

    td_ctx_init(&ctx);
    CHECK(tc_suite_make(&ctx, &r, &s) == 0, "model sets: %s", ctx.errmsg);
    if (check_failed) {
        tc_suite_remove(&s);
        return check_summary();
    }
    test_peaks(&s);
    test_cpu_peak(&s, &r);
    test_refusal(&s, &r);
    test_bad_jobs(&s);
    tc_suite_remove(&s);
    return check_summary();
}
