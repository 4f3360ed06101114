/* td_job_run on the committed tiny model set (tests/data/pipeline, random
 * weights): exact frame counts and sizes, determinism per seed, and cancel
 * from the progress callback or from on_frame returning non-zero. The ASan
 * tier checks that a cancelled job leaks nothing. */
#include <string.h>

#include "check.h"
#include "turbodiff.h"

typedef struct sink {
    int frames, stop_after_frames, cancel_at_step, last_index, bad_size;
    volatile int cancel;
    uint64_t hash;
} sink;

static int on_frame(void *opaque, const td_frame *f)
{
    sink *s = opaque;
    const uint8_t *p = f->data;
    if (f->width != 32 || f->height != 16 || f->index != s->frames)
        s->bad_size++;
    for (int i = 0; i < f->width * f->height * 3; i++)
        s->hash = (s->hash ^ p[i]) * 1099511628211ull;
    s->frames++;
    return s->stop_after_frames && s->frames >= s->stop_after_frames;
}

static void on_progress(void *opaque, const td_progress *p)
{
    sink *s = opaque;
    if (s->cancel_at_step && p->stage == TD_STAGE_DENOISE && p->step == s->cancel_at_step)
        __atomic_store_n(&s->cancel, 1, __ATOMIC_RELAXED);
}

static int run(td_engine *eng, uint64_t seed, int frames, sink *s)
{
    td_job job;
    td_error err = { 0 };
    td_job_default(&job);
    job.prompt = "a red circle moves right on a blue background";
    job.width = 32;
    job.height = 16;
    job.frames = frames;
    job.steps = 2;
    job.seed = seed;
    job.on_frame = on_frame;
    job.on_progress = on_progress;
    job.opaque = s;
    job.cancel = &s->cancel;
    job.error = &err;
    s->hash = 1469598103934665603ull;
    int rc = td_job_run(eng, &job);
    if (rc < 0 && rc != TD_ECANCELLED)
        fprintf(stderr, "job: %s\n", err.msg);
    return rc;
}

int main(void)
{
    td_engine_config cfg;
    td_engine *eng = NULL;
    td_error err = { 0 };
    sink a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 }, e = { 0 };

    td_engine_config_default(&cfg);
    cfg.model_dir = TD_ROOT "/tests/data/pipeline";
    cfg.threads = 2;
    CHECK(td_engine_open(&cfg, &eng, &err) == 0, "open: %s", err.msg);
    if (!eng)
        return check_summary();

    CHECK(run(eng, 7, 6, &a) == 0 && a.frames == 6 && !a.bad_size,
          "6 frames asked, %d delivered (%d misshapen or out of order)", a.frames, a.bad_size);
    CHECK(run(eng, 7, 6, &b) == 0 && b.hash == a.hash, "same seed, same frames");
    CHECK(run(eng, 8, 6, &c) == 0 && c.hash != a.hash, "another seed, other frames");

    d.cancel_at_step = 1;
    CHECK(run(eng, 7, 6, &d) == TD_ECANCELLED && d.frames == 0,
          "cancel after step 1: TD_ECANCELLED with no frames (got %d frames)", d.frames);
    e.stop_after_frames = 2;
    CHECK(run(eng, 7, 9, &e) == TD_ECANCELLED && e.frames == 2,
          "on_frame stopping after 2: TD_ECANCELLED with 2 frames (got %d)", e.frames);
    /* the engine still works after a cancelled job */
    memset(&b, 0, sizeof(b));
    CHECK(run(eng, 7, 6, &b) == 0 && b.hash == a.hash, "a cancelled job leaves the engine usable");
    td_engine_release(&eng);
    return check_summary();
}
