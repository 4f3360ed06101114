/*
 * The CPU conv3d's stride-1 paths (td_conv_path; AMX where the CPU has it) alternated in one process,
 * so both see the same machine load: the Wan VAE decoder's causal 3x3x3
 * conv at 96 channels on 4 x 240 x 416 (f32 weights, as
 * bench/conv3d_vs_torch.py) and at 384 channels on 3 x 60 x 104 (bf16, as
 * bench_ops). Prints each round's wall and process CPU seconds (CPU
 * seconds move less with other processes' load), best of each path, their
 * ratios to the implicit GEMM and the relative L2 distance of each path's
 * output to the implicit GEMM's.
 * Usage: bench_conv3d [threads] [rounds]   (defaults: all cores, 3)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "core/pool.h"

static double now(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int make(td_ctx *ctx, td_tensor *t, td_dtype dt, int nd, const int64_t *shape, float scale)
{
    uint64_t s = 0x9e3779b97f4a7c15u;
    td_tensor f;
    if (td_tensor_new(ctx, &f, TD_F32, nd, shape) < 0) {
        fprintf(stderr, "bench_conv3d: %s\n", ctx->errmsg);
        return -1;
    }
    for (int64_t i = 0; i < td_numel(&f); i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        ((float *)f.data)[i] = ((float)(s >> 40) / (float)(1 << 24) - 0.5f) * scale;
    }
    if (dt == TD_F32) {
        *t = f;
        return 0;
    }
    if (td_tensor_new(ctx, t, dt, nd, shape) < 0) {
        fprintf(stderr, "bench_conv3d: %s\n", ctx->errmsg);
        td_tensor_free(&f);
        return -1;
    }
    td_from_f32(dt, f.data, t->data, (size_t)td_numel(&f));
    td_tensor_free(&f);
    return 0;
}

static const char *const path_name[3] = { "gemm", "avx512", "amx" };

static int one(td_ctx *ctx, td_backend *be, int64_t c, int64_t t, int64_t h, int64_t w, td_dtype wdt, int rounds,
               int npath)
{
    td_conv3d_params cp = { { 1, 1, 1 }, 2, 0, 1, 1 };
    td_tensor x, k, y[3];
    double best[3] = { 1e30, 1e30, 1e30 }, cpu[3] = { 1e30, 1e30, 1e30 };
    double gf = 2.0 * c * c * 27 * t * h * w * 1e-9;
    int64_t xs[4] = { c, t, h, w }, ks[5] = { c, c, 3, 3, 3 };

    if (make(ctx, &x, TD_F32, 4, xs, 2.0f) || make(ctx, &k, wdt, 5, ks, 0.1f))
        return -1;
    for (int p = 0; p < npath; p++)
        if (make(ctx, &y[p], TD_F32, 4, xs, 1.0f))
            return -1;
    printf("conv3d %lld -> %lld, 3x3x3 causal, %lld x %lld x %lld, %s weights\n", (long long)c, (long long)c,
           (long long)t, (long long)h, (long long)w, td_dtype_name(wdt));
    for (int r = 0; r < rounds; r++)
        for (int p = 0; p < npath; p++) {
            double t0, c0;
            td_cpu_of(be)->conv_path = (td_conv_path)p;
            c0 = now(CLOCK_PROCESS_CPUTIME_ID);
            t0 = now(CLOCK_MONOTONIC);
            if (be->ops->conv3d(be, &x, &k, NULL, &cp, &y[p]) < 0) {
                fprintf(stderr, "bench_conv3d: %s\n", ctx->errmsg);
                return -1;
            }
            t0 = now(CLOCK_MONOTONIC) - t0;
            c0 = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
            best[p] = t0 < best[p] ? t0 : best[p];
            cpu[p] = c0 < cpu[p] ? c0 : cpu[p];
            printf("  round %d %-7s %7.3f s %6.1f GFLOP/s  CPU %7.3f s\n", r, path_name[p], t0, gf / t0, c0);
        }
    for (int p = 1; p < npath; p++) {
        double num = 0, den = 0;
        for (int64_t i = 0; i < td_numel(&x); i++) {
            double a = ((float *)y[0].data)[i], b = ((float *)y[p].data)[i];
            num += (a - b) * (a - b);
            den += a * a;
        }
        printf("  best wall gemm %.3f s, %s %.3f s: gemm/%s %.2f; CPU s %.3f / %.3f: %.2f; rel L2 to gemm %.2g\n",
               best[0], path_name[p], best[p], path_name[p], best[0] / best[p], cpu[0], cpu[p], cpu[0] / cpu[p],
               sqrt(num / den));
    }
    td_tensor_free(&x);
    td_tensor_free(&k);
    for (int p = 0; p < npath; p++)
        td_tensor_free(&y[p]);
    return 0;
}

int main(int argc, char **argv)
{
    td_ctx ctx;
    td_backend *be;
    int rounds = argc > 2 ? atoi(argv[2]) : 3, npath;

    td_ctx_init(&ctx);
    if (td_pool_create(&ctx, argc > 1 ? atoi(argv[1]) : 0, &ctx.pool) < 0 ||
        td_backend_cpu_create(&ctx, 0, &be) < 0) {
        fprintf(stderr, "bench_conv3d: %s\n", ctx.errmsg);
        return 1;
    }
    if (!td_cpu_conv_supported(TD_CONV_AVX512)) {
        fprintf(stderr, "bench_conv3d: this CPU has no AVX-512, only one conv3d path to run\n");
        return 1;
    }
    npath = td_cpu_conv_supported(TD_CONV_AMX) ? 3 : 2;
    printf("threads %d\n", td_pool_threads(ctx.pool));
    if (one(&ctx, be, 96, 4, 240, 416, TD_F32, rounds, npath) < 0 ||
        one(&ctx, be, 384, 3, 60, 104, TD_BF16, rounds, npath) < 0)
        return 1;
    td_backend_destroy(&be);
    td_pool_destroy(&ctx.pool);
    return 0;
}
