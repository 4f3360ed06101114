/* Core: dtype conversions, tensor views and copies, arena limits, thread pool,
 * the version the library reports. */
#include <string.h>

#include "check.h"
#include "core/arena.h"
#include "core/pool.h"
#include "core/tensor.h"
#include "turbodiff.h"

static void test_f16_roundtrip(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = td_f16_to_f32((uint16_t)h);
        uint16_t back = td_f32_to_f16(f);
        if (isnan(f))
            bad += !(back & 0x7c00) || !(back & 0x3ff);
        else
            bad += back != h;
    }
    CHECK(bad == 0, "%d f16 values do not survive f16->f32->f16", bad);
    CHECK(td_f16_to_f32(0x3c00) == 1.0f, "f16 1.0");
    CHECK(td_f16_to_f32(0xc000) == -2.0f, "f16 -2.0");
    CHECK(td_f16_to_f32(0x0001) == ldexpf(1, -24), "smallest f16 subnormal");
    CHECK(td_f32_to_f16(65520.0f) == 0x7c00, "65520 overflows to inf");
    CHECK(td_f32_to_f16(1.0f + ldexpf(1, -11)) == 0x3c00, "tie rounds to even");
}

static void test_bf16(test_rng *r)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = td_bf16_to_f32((uint16_t)h);
        if (!isnan(f))
            bad += td_f32_to_bf16(f) != h;
    }
    CHECK(bad == 0, "%d bf16 values do not round-trip", bad);
    /* rounding error is at most half an ulp (2^-8 relative) */
    double worst = 0;
    for (int i = 0; i < 10000; i++) {
        float f = test_uniform(r) * 1000.0f;
        float g = td_bf16_to_f32(td_f32_to_bf16(f));
        if (f != 0) {
            double e = fabs((double)g - f) / fabs(f);
            if (e > worst) worst = e;
        }
    }
    CHECK(worst <= 1.0 / 256, "bf16 rounding error %g above 2^-8", worst);
}

static void test_f8(void)
{
    CHECK(td_f8e4m3_to_f32(0x38) == 1.0f, "e4m3 0x38 is 1.0");
    CHECK(td_f8e4m3_to_f32(0x7e) == 448.0f, "e4m3 max is 448");
    CHECK(td_f8e4m3_to_f32(0x01) == ldexpf(1, -9), "e4m3 min subnormal");
    CHECK(td_f8e4m3_to_f32(0xb8) == -1.0f, "e4m3 -1.0");
    CHECK(isnan(td_f8e4m3_to_f32(0x7f)), "e4m3 0x7f is NaN");
}

static void test_views(test_rng *r)
{
    td_ctx ctx;
    td_tensor t, s, p, c;
    td_ctx_init(&ctx);
    CHECK(td_tensor_new(&ctx, &t, TD_F32, 3, (int64_t[]){ 4, 5, 6 }) == 0, "alloc");
    float *x = t.data;
    for (int i = 0; i < 120; i++)
        x[i] = test_uniform(r);
    CHECK(td_tensor_slice(&ctx, &t, 1, 2, 3, &s) == 0, "slice");
    CHECK(!td_is_contiguous(&s), "a middle-dim slice is strided");
    CHECK(td_tensor_permute(&ctx, &s, (int[]){ 2, 0, 1 }, &p) == 0, "permute");
    CHECK(p.shape[0] == 6 && p.shape[1] == 4 && p.shape[2] == 3, "permuted shape");
    CHECK(td_tensor_new(&ctx, &c, TD_BF16, 3, p.shape) == 0, "alloc bf16");
    CHECK(td_tensor_copy(&ctx, &c, &p) == 0, "copy with conversion");
    int bad = 0;
    for (int a = 0; a < 6; a++)
        for (int b = 0; b < 4; b++)
            for (int d = 0; d < 3; d++) {
                float want = x[b * 30 + (d + 2) * 6 + a];
                float got = td_bf16_to_f32(((uint16_t *)c.data)[(a * 4 + b) * 3 + d]);
                bad += got != td_bf16_to_f32(td_f32_to_bf16(want));
            }
    CHECK(bad == 0, "%d elements wrong after slice+permute+copy", bad);
    CHECK(td_tensor_slice(&ctx, &t, 1, 4, 2, &s) == TD_ESHAPE, "slice past the end is refused");
    CHECK(strstr(ctx.errmsg, "out of range") != NULL, "message: %s", ctx.errmsg);
    td_ctx_clear(&ctx);
    CHECK(td_tensor_reshape(&ctx, &p, 2, (int64_t[]){ 6, 12 }, &s) == TD_ESHAPE,
          "reshape of a strided view is refused");
    td_ctx_clear(&ctx);
    CHECK(td_tensor_new(&ctx, &s, TD_F32, 2, (int64_t[]){ INT64_MAX / 2, 4 }) == TD_EINVAL,
          "overflowing dims are refused");
    /* empty, with dims whose product overflows: valid (the fuzzer's find) */
    CHECK(td_tensor_new(&ctx, &s, TD_F32, 4, (int64_t[]){ 0, 7677230164176710315LL, 32, 66262 }) == 0,
          "an empty tensor with huge other dims");
    CHECK(td_numel(&s) == 0, "it has no elements");
    td_tensor_free(&s);
    CHECK(td_tensor_new(&ctx, &s, TD_F32, 3, (int64_t[]){ 7677230164176710315LL, 64, 0 }) == 0 &&
          td_numel(&s) == 0, "the zero dim last");
    td_tensor_free(&s);
    td_tensor_free(&t);
    td_tensor_free(&c);
}

static void test_arena(void)
{
    td_ctx ctx;
    td_arena a;
    td_ctx_init(&ctx);
    CHECK(td_arena_init(&ctx, &a, 1000) == 0, "arena");
    void *p1 = td_arena_alloc(&ctx, &a, 100);
    size_t m = td_arena_mark(&a);
    void *p2 = td_arena_alloc(&ctx, &a, 100);
    CHECK(p1 && p2 && ((uintptr_t)p2 & 63) == 0, "aligned allocations");
    CHECK(td_arena_alloc(&ctx, &a, 2000) == NULL && ctx.err == TD_ENOMEM, "full arena is an error");
    CHECK(strstr(ctx.errmsg, "2000 bytes asked") != NULL, "message names the size: %s", ctx.errmsg);
    td_arena_reset(&a, m);
    CHECK(td_arena_alloc(&ctx, &a, 100) == p2, "reset releases to the mark");
    td_arena_free(&a);
}

typedef struct { double *partial; const float *x; } sum_job;

static void sum_range(void *arg, int64_t b, int64_t e)
{
    sum_job *j = arg;
    for (int64_t i = b; i < e; i++)
        j->partial[i] = (double)j->x[i] * 2.0;
}

static void test_pool(test_rng *r)
{
    td_ctx ctx;
    td_pool *pool;
    enum { N = 100003 };
    static float x[N];
    static double y[N];
    td_ctx_init(&ctx);
    test_fill(r, x, N, 1.0f);
    CHECK(td_pool_create(&ctx, 4, &pool) == 0, "pool");
    CHECK(td_pool_threads(pool) == 4, "4 threads");
    for (int rep = 0; rep < 50; rep++) {
        memset(y, 0, sizeof(y));
        td_pool_for(pool, N - rep, 1000, sum_range, &(sum_job){ y, x });
        int bad = 0;
        for (int i = 0; i < N; i++)
            bad += y[i] != (i < N - rep ? (double)x[i] * 2.0 : 0.0);
        CHECK(bad == 0, "rep %d: %d elements wrong", rep, bad);
    }
    td_pool_destroy(&pool);
    CHECK(pool == NULL, "destroy clears the handle");
}

/* The filters refuse a library whose td_version differs from the header
 * they were built with, and the shared object's name and the pkg-config
 * version come from CMake's project version: all three must be one. */
static void test_version(void)
{
    char header[32];

    snprintf(header, sizeof(header), "%d.%d.%d", TD_VERSION_MAJOR, TD_VERSION_MINOR, TD_VERSION_MICRO);
    CHECK(!strcmp(header, TD_PROJECT_VERSION), "turbodiff.h says %s, CMake's project %s",
          header, TD_PROJECT_VERSION);
    CHECK(td_version() == TD_VERSION_INT, "td_version() 0x%x, TD_VERSION_INT 0x%x",
          td_version(), (unsigned)TD_VERSION_INT);
}

int main(void)
{
    test_rng r = test_rng_seeded();
    test_f16_roundtrip();
    test_bf16(&r);
    test_f8();
    test_views(&r);
    test_arena();
    test_pool(&r);
    test_version();
    return check_summary();
}
