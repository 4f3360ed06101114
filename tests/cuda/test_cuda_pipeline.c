/*
 * The whole pipeline on the CUDA backend against the CPU backend: the cases
 * of tests/support/pipeline_cases.h (t2v full attention, SLA, W8A8, the SLA
 * model with full attention, i2v expert pair resident and with low memory)
 * each run through td_engine_open with device "cuda" and "cpu". The decoded
 * RGBF32 frames of every case must be within the design brief's bar for
 * bf16 CUDA vs CPU f32 after a full sampler run (rel L2 under 3e-2; each
 * case prints its measured error). On CUDA too, SLA and W8A8 must differ
 * from full attention, low memory must equal resident bit for bit (the same
 * kernels on the same weights, only where they live differs), and a job
 * cancelled after step 1 returns TD_ECANCELLED with no frames.
 *
 *   test_cuda_pipeline [--t2v]
 *
 * --t2v runs only the t2v full-attention case: the tiny whole-pipeline run
 * that tools/gpu/first_run.sh puts under compute-sanitizer. Fixtures are
 * found under $TD_TEST_ROOT, else the source tree (pipeline_cases.h).
 * Exits 77 (ctest SKIP) with "no CUDA device: skipped" where no GPU is.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "pipeline_cases.h"

/* The CPU and CUDA clips of one case, and their distance. */
static void compare(const tc_case *k, tc_clip *gpu)
{
    td_error err = { 0 };
    tc_clip cpu = { 0 };

    CHECK(tc_case_clip(k, "cpu", NULL, &cpu, &err) == 0, "%s on cpu: %s", k->name, err.msg);
    err.msg[0] = '\0';
    CHECK(tc_case_clip(k, "cuda", NULL, gpu, &err) == 0, "%s on cuda: %s", k->name, err.msg);
    if (cpu.rgb && gpu->rgb) {
        double e = tc_rel_l2(gpu->rgb, cpu.rgb, TC_CLIP_FLOATS);
        printf("%-32s cuda bf16 vs cpu f32: rel L2 %.3g\n", k->name, e);
        CHECK(e < TC_BF16_BAR, "%s: cuda rel L2 %.3g vs the cpu is over %.g", k->name, e, TC_BF16_BAR);
    }
    tc_clip_free(&cpu);
}

static void test_cancel(const tc_case *k)
{
    td_engine *eng = NULL;
    td_error err = { 0 };
    tc_clip c = { 0 };

    CHECK(tc_open(k->dir, "cuda", NULL, 0, &eng, &err) == 0, "open on cuda: %s", err.msg);
    if (eng) {
        int rc = tc_run(eng, &k->want, 1, &c, &err);
        CHECK(rc == TD_ECANCELLED && c.frames == 0,
              "cancel after step 1 on cuda: rc %d, %d frames (%s)", rc, c.frames, err.msg);
        td_engine_release(&eng);
    }
    tc_clip_free(&c);
}

/* Properties that hold within the CUDA backend itself. */
static void test_cuda_properties(tc_clip gpu[TC_NCASES])
{
    CHECK(gpu[TC_SLA].rgb && !tc_clips_equal(&gpu[TC_SLA], &gpu[TC_SLA_FULL]),
          "SLA gives the same frames as full attention on cuda");
    CHECK(gpu[TC_W8A8].rgb && !tc_clips_equal(&gpu[TC_W8A8], &gpu[TC_T2V]),
          "W8A8 gives the same frames as full attention on cuda");
    CHECK(tc_clips_equal(&gpu[TC_I2V], &gpu[TC_I2V_LOW]),
          "low memory residency changes the i2v frames on cuda (rel L2 %.3g)",
          gpu[TC_I2V].rgb && gpu[TC_I2V_LOW].rgb
              ? tc_rel_l2(gpu[TC_I2V_LOW].rgb, gpu[TC_I2V].rgb, TC_CLIP_FLOATS) : -1.0);
}

int main(int argc, char **argv)
{
    int t2v_only = argc > 1 && !strcmp(argv[1], "--t2v");
    test_rng r;
    tc_suite s;
    tc_clip gpu[TC_NCASES] = { { 0 } };
    td_ctx ctx;

    if (argc > 2 || (argc == 2 && !t2v_only)) {
        fprintf(stderr, "usage: %s [--t2v]\n", argv[0]);
        return 2;
    }
    if (td_cuda_device_count() == 0) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    r = test_rng_seeded();
    td_ctx_init(&ctx);
    CHECK(tc_suite_make(&ctx, &r, &s) == 0, "model sets under %s: %s", tc_root(), ctx.errmsg);
    if (check_failed) {
        tc_suite_remove(&s);
        return check_summary();
    }
    for (int i = 0; i < (t2v_only ? TC_T2V + 1 : TC_NCASES); i++)
        compare(&s.cases[i], &gpu[i]);
    if (!t2v_only) {
        test_cuda_properties(gpu);
        test_cancel(&s.cases[TC_T2V]);
    }
    tc_suite_remove(&s);
    for (int i = 0; i < TC_NCASES; i++)
        tc_clip_free(&gpu[i]);
    return check_summary();
}
