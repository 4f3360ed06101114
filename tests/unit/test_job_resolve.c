/* td_job_resolve on the committed tiny sets: what the model's defaults
 * resolve to (a Wan2.1 T2V DiT: rCM; Wan2.2 TI2V-5B: flow matching, 50
 * steps, shift 5, guidance 5; a T2V A14B pair: flow matching, 40 steps,
 * shift 12, guidance 4 / 3, boundary 0.875; an I2V A14B pair: rCM, flow
 * settings of its config; a manifest naming DMD, as FastWan's
 * model_index.json does: DMD), settings the job gives are kept, and a run takes as many denoise
 * steps as the resolved job names, so the resolution cannot drift from what
 * td_job_run does. */
#include <string.h>

#include "check.h"
#include "pipeline_cases.h"
#include "turbodiff.h"

#define DATA TD_ROOT "/tests/data/pipeline"

typedef struct steps_seen {
    int denoise_steps, frames;
} steps_seen;

static int on_frame(void *opaque, const td_frame *f)
{
    steps_seen *s = opaque;
    s->frames = f->index + 1;
    return 0;
}

static void on_progress(void *opaque, const td_progress *p)
{
    steps_seen *s = opaque;
    if (p->stage == TD_STAGE_DENOISE)
        s->denoise_steps = p->steps;
}

static td_engine *open_set(const char *dir)
{
    td_engine *eng = NULL;
    td_error err = { 0 };

    CHECK(tc_open(dir, "auto", NULL, 0, &eng, &err) == 0, "open %s: %s", dir, err.msg);
    return eng;
}

static void defaults_of(td_engine *eng, const char *name, int sampler, int flow_steps, double shift,
                        double guidance, double guidance_low, double boundary)
{
    td_job job;

    td_job_default(&job);
    td_job_resolve(eng, &job);
    CHECK(job.sampler == sampler && job.flow_steps == flow_steps && job.shift == shift &&
          job.guidance == guidance && job.guidance_low == guidance_low && job.boundary == boundary,
          "%s: sampler %d, flow_steps %d, shift %g, guidance %g / %g, boundary %g", name, job.sampler,
          job.flow_steps, job.shift, job.guidance, job.guidance_low, job.boundary);
    CHECK(job.steps == 4 && job.sigma_max == 0, "%s: rCM steps %d and sigma_max %g are the job's",
          name, job.steps, job.sigma_max);
}

/* Every setting given (drawn at random) comes back as it was. */
static void given_kept(td_engine *eng, test_rng *r)
{
    td_job job, want;

    td_job_default(&job);
    job.sampler = test_next(r) % 2 ? TD_SAMPLER_RCM : TD_SAMPLER_FLOW;
    job.flow_steps = 1 + (int)(test_next(r) % 1000);
    job.shift = 1 + 4 * fabs(test_uniform(r));
    job.guidance = 1 + 9 * fabs(test_uniform(r));
    job.guidance_low = 1 + 9 * fabs(test_uniform(r));
    job.boundary = 0.1 + 0.8 * fabs(test_uniform(r));
    want = job;
    td_job_resolve(eng, &job);
    CHECK(!memcmp(&job, &want, sizeof(job)), "a job with every sampler setting given is unchanged");
    td_job_default(&job);
    want = job;
    td_job_resolve(NULL, &job);
    CHECK(!memcmp(&job, &want, sizeof(job)), "no engine: the job is unchanged");
}

/* The denoise stage's step count of a run, against the resolved job's. */
static void run_matches(td_engine *eng, const char *name, int sampler, uint64_t seed)
{
    steps_seen seen = { 0 };
    td_error err = { 0 };
    td_job job;
    int rc, want;

    td_job_default(&job);
    job.prompt = "a red circle moves right";
    td_engine_native_clip(eng, &job.width, &job.height, &job.frames);
    job.seed = seed;
    job.steps = 1 + (int)(seed % 4);
    job.sampler = sampler;
    job.attention = TD_ATTN_FULL;
    job.on_frame = on_frame;
    job.on_progress = on_progress;
    job.opaque = &seen;
    job.error = &err;
    rc = td_job_run(eng, &job);
    td_job_resolve(eng, &job);
    /* DMD takes one step per timestep of FastWan's 1000,757,522. */
    want = job.sampler == TD_SAMPLER_FLOW ? job.flow_steps : job.sampler == TD_SAMPLER_DMD ? 3
                                                                                           : job.steps;
    CHECK(rc == 0 && seen.frames == job.frames && seen.denoise_steps == want,
          "%s, sampler %d: a run took %d steps, the resolved job (sampler %d) says %d (rc %d %s)",
          name, sampler, seen.denoise_steps, job.sampler, want, rc, err.msg);
}

int main(void)
{
    test_rng r = test_rng_seeded();
    td_engine *t2v = open_set(DATA), *ti2v = open_set(DATA "/ti2v"), *i2v = open_set(DATA "/i2v");
    td_engine *t2v_pair = open_set(DATA "/t2v_a14b"), *dmd = open_set(DATA "/dmd");

    if (t2v && ti2v && i2v && t2v_pair && dmd) {
        /* Wan2.1 T2V: TurboDiffusion distils it, so rCM; Wan2.1's flow
         * settings. The others: Wan2.2's wan_ti2v_5B.py, wan_t2v_A14B.py and
         * wan_i2v_A14B.py. */
        defaults_of(t2v, "Wan2.1 T2V", TD_SAMPLER_RCM, 50, 5.0, 5.0, 5.0, 0.9);
        defaults_of(ti2v, "Wan2.2 TI2V-5B", TD_SAMPLER_FLOW, 50, 5.0, 5.0, 5.0, 0.9);
        defaults_of(t2v_pair, "Wan2.2 T2V A14B", TD_SAMPLER_FLOW, 40, 12.0, 4.0, 3.0, 0.875);
        defaults_of(i2v, "Wan2.2 I2V A14B", TD_SAMPLER_RCM, 40, 5.0, 3.5, 3.5, 0.9);
        defaults_of(dmd, "FastWan", TD_SAMPLER_DMD, 50, 5.0, 5.0, 5.0, 0.9);
        given_kept(ti2v, &r);
        run_matches(t2v, "Wan2.1 T2V", TD_SAMPLER_AUTO, test_next(&r));
        run_matches(t2v, "Wan2.1 T2V", TD_SAMPLER_FLOW, test_next(&r));
        run_matches(ti2v, "Wan2.2 TI2V-5B", TD_SAMPLER_AUTO, test_next(&r));
        run_matches(ti2v, "Wan2.2 TI2V-5B", TD_SAMPLER_RCM, test_next(&r));
        run_matches(t2v_pair, "Wan2.2 T2V A14B", TD_SAMPLER_AUTO, test_next(&r));
        run_matches(dmd, "FastWan", TD_SAMPLER_AUTO, test_next(&r));
        run_matches(t2v, "Wan2.1 T2V", TD_SAMPLER_DMD, test_next(&r));
    }
    td_engine_release(&t2v);
    td_engine_release(&ti2v);
    td_engine_release(&i2v);
    td_engine_release(&t2v_pair);
    td_engine_release(&dmd);
    return check_summary();
}
