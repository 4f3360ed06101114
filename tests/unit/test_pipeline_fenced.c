/*
 * The whole pipeline on the fenced backend (tests/support/fenced_backend.h):
 * every activation and weight in memory that host code cannot touch outside
 * an op. A model, sampler or pipeline line that reads or writes backend
 * memory directly kills this test with a message naming the allocation and
 * the last op. On the f32 variant every frame equals the CPU backend's bit
 * for bit; on the bf16 variant (activations stored as CUDA stores them) the
 * frames stay within the design brief's bf16 bar of the CPU's.
 *
 * Cases (tests/support/pipeline_cases.h): text-to-video with full
 * attention, with SLA, with W8A8, with the DMD sampler; image-to-video on
 * the A14B-style expert pair, resident and with low memory; TI2V-5B; cancel.
 */
#include <stdlib.h>

#include "check.h"
#include "fenced_backend.h"
#include "pipeline_cases.h"

/* The engine's factory shape (it names a device; the fence has one). */
static int fenced_f32(td_ctx *ctx, const char *device, size_t arena, td_backend **out)
{
    (void)device;
    return td_backend_fenced_f32_create(ctx, arena, out);
}

static int fenced_bf16(td_ctx *ctx, const char *device, size_t arena, td_backend **out)
{
    (void)device;
    return td_backend_fenced_bf16_create(ctx, arena, out);
}

/* One case: the CPU's clip, then the fenced f32 (bit for bit) and bf16
 * (within the bar) ones. The CPU's clip goes to *cpu (caller frees). */
static void compare(const tc_case *k, tc_clip *cpu)
{
    td_error err = { 0 };
    tc_clip f32 = { 0 }, bf16 = { 0 };

    CHECK(tc_case_clip(k, "cpu", NULL, cpu, &err) == 0, "%s on cpu: %s", k->name, err.msg);
    CHECK(tc_case_clip(k, "fenced-f32", fenced_f32, &f32, &err) == 0, "%s on fenced-f32: %s",
          k->name, err.msg);
    CHECK(tc_clips_equal(&f32, cpu), "%s: fenced-f32 differs from the cpu backend (rel L2 %.3g)",
          k->name, f32.rgb && cpu->rgb ? tc_rel_l2(f32.rgb, cpu->rgb, TC_CLIP_FLOATS) : -1.0);
    CHECK(tc_case_clip(k, "fenced-bf16", fenced_bf16, &bf16, &err) == 0, "%s on fenced-bf16: %s",
          k->name, err.msg);
    if (bf16.rgb && cpu->rgb) {
        double e = tc_rel_l2(bf16.rgb, cpu->rgb, TC_CLIP_FLOATS);
        printf("%s: bf16 activations vs cpu f32: rel L2 %.3g\n", k->name, e);
        CHECK(e < TC_BF16_BAR, "%s: fenced-bf16 rel L2 %.3g vs the cpu is over %.g", k->name, e,
              TC_BF16_BAR);
    }
    tc_clip_free(&f32);
    tc_clip_free(&bf16);
}

static void test_cancel(const tc_suite *s)
{
    const tc_case *k = &s->cases[TC_T2V];
    td_engine *eng = NULL;
    td_error err = { 0 };
    tc_clip c = { 0 };

    CHECK(tc_open(k->dir, "fenced-f32", fenced_f32, 0, &eng, &err) == 0, "open: %s", err.msg);
    if (eng) {
        CHECK(tc_run(eng, &k->want, 1, &c, &err) == TD_ECANCELLED && c.frames == 0,
              "cancel after step 1 on the fenced backend: %d frames (%s)", c.frames, err.msg);
        td_engine_release(&eng);
    }
    tc_clip_free(&c);
}

int main(void)
{
    test_rng r = test_rng_seeded();
    tc_suite s;
    tc_clip cpu[TC_NCASES] = { { 0 } };
    td_ctx ctx;

    td_ctx_init(&ctx);
    CHECK(tc_suite_make(&ctx, &r, &s) == 0, "model sets: %s", ctx.errmsg);
    if (check_failed) {
        tc_suite_remove(&s);
        return check_summary();
    }
    for (int i = 0; i < TC_NCASES; i++)
        compare(&s.cases[i], &cpu[i]);

    /* SLA and W8A8 must really have run: their clips differ from full
     * attention's on the same weights and seed. */
    CHECK(cpu[TC_SLA].rgb && !tc_clips_equal(&cpu[TC_SLA], &cpu[TC_SLA_FULL]),
          "SLA gives the same frames as full attention in f32");
    CHECK(cpu[TC_W8A8].rgb && !tc_clips_equal(&cpu[TC_W8A8], &cpu[TC_T2V]),
          "W8A8 gives the same frames as full attention in f32");
    CHECK(tc_clips_equal(&cpu[TC_I2V], &cpu[TC_I2V_LOW]),
          "low memory residency changes the i2v frames");
    CHECK(cpu[TC_TI2V].rgb && !tc_clips_equal(&cpu[TC_TI2V], &cpu[TC_TI2V_I2V]),
          "TI2V-5B image-to-video gives the text-to-video frames");
    CHECK(cpu[TC_DMD].rgb && !tc_clips_equal(&cpu[TC_DMD], &cpu[TC_T2V]),
          "DMD gives rCM's frames on the same weights and seed");
    test_cancel(&s);

    tc_suite_remove(&s);
    for (int i = 0; i < TC_NCASES; i++)
        tc_clip_free(&cpu[i]);
    return check_summary();
}
