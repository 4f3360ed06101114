/*
 * CPU throughput of the non-GEMM ops at Wan sizes: attention (flash-style,
 * 1.3B DiT heads), conv3d (VAE 3x3x3 at latent resolution) and the
 * memory-bound row ops. Prints seconds and GFLOP/s or GB/s, best of 2.
 * Usage: bench_ops [threads]   (default: all cores); about 10 s on 2 cores.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend/backend.h"
#include "core/pool.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int make(td_ctx *ctx, td_tensor *t, td_dtype dt, int nd, const int64_t *shape)
{
    if (td_tensor_new(ctx, t, dt, nd, shape) < 0) {
        fprintf(stderr, "bench_ops: %s\n", ctx->errmsg);
        return -1;
    }
    if (dt == TD_F32)
        for (int64_t i = 0; i < td_numel(t); i++)
            ((float *)t->data)[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    return 0;
}

#define BEST_OF_2(expr, out) do {                                   \
        double t0_, b_ = 1e30;                                      \
        for (int r_ = 0; r_ < 2; r_++) {                            \
            t0_ = now();                                            \
            if ((expr) < 0) {                                       \
                fprintf(stderr, "bench_ops: %s\n", ctx.errmsg);     \
                return 1;                                           \
            }                                                       \
            b_ = now() - t0_ < b_ ? now() - t0_ : b_;               \
        }                                                           \
        out = b_;                                                   \
    } while (0)

int main(int argc, char **argv)
{
    td_ctx ctx;
    td_backend *be;
    td_tensor q, o, cx, cw, cy, x, y;
    td_conv3d_params cp = { { 1, 1, 1 }, 2, 0, 1, 1 };
    int64_t S = 4096, H = 12, D = 128, C = 384, T = 3, Hh = 60, W = 104, M = 4096, N = 8960;
    double t;

    td_ctx_init(&ctx);
    if (td_pool_create(&ctx, argc > 1 ? atoi(argv[1]) : 0, &ctx.pool) < 0 ||
        td_backend_cpu_create(&ctx, 0, &be) < 0) {
        fprintf(stderr, "bench_ops: %s\n", ctx.errmsg);
        return 1;
    }
    printf("threads %d\n", td_pool_threads(ctx.pool));
    if (make(&ctx, &q, TD_F32, 3, (int64_t[]){ S, H, D }) || make(&ctx, &o, TD_F32, 3, (int64_t[]){ S, H, D }))
        return 1;
    BEST_OF_2(be->ops->attention(be, &q, &q, &q, NULL, 0.088f, 0, &o), t);
    printf("attention  S=%lld H=%lld D=%lld          %7.3f s %7.1f GFLOP/s\n", (long long)S, (long long)H,
           (long long)D, t, 4.0 * S * S * D * H / t * 1e-9);
    td_tensor_free(&q);
    td_tensor_free(&o);

    if (make(&ctx, &cx, TD_F32, 4, (int64_t[]){ C, T, Hh, W }) ||
        make(&ctx, &cw, TD_BF16, 5, (int64_t[]){ C, C, 3, 3, 3 }) ||
        make(&ctx, &cy, TD_F32, 4, (int64_t[]){ C, T, Hh, W }))
        return 1;
    BEST_OF_2(be->ops->conv3d(be, &cx, &cw, NULL, &cp, &cy), t);
    printf("conv3d     C=%lld 3x3x3 causal %lldx%lldx%lld bf16 %7.3f s %7.1f GFLOP/s\n", (long long)C,
           (long long)T, (long long)Hh, (long long)W, t, 2.0 * C * C * 27 * T * Hh * W / t * 1e-9);
    td_tensor_free(&cx);
    td_tensor_free(&cw);
    td_tensor_free(&cy);

    if (make(&ctx, &x, TD_F32, 2, (int64_t[]){ M, N }) || make(&ctx, &y, TD_F32, 2, (int64_t[]){ M, N }))
        return 1;
    BEST_OF_2(be->ops->layernorm(be, &x, NULL, NULL, 1e-6f, &y), t);
    printf("layernorm  %lldx%lld                  %7.3f s %7.1f GB/s\n", (long long)M, (long long)N, t,
           8.0 * M * N / t * 1e-9);
    BEST_OF_2(be->ops->rmsnorm(be, &x, NULL, 1e-6f, &y), t);
    printf("rmsnorm    %lldx%lld                  %7.3f s %7.1f GB/s\n", (long long)M, (long long)N, t,
           8.0 * M * N / t * 1e-9);
    BEST_OF_2(be->ops->gelu_tanh(be, &x, &y), t);
    printf("gelu_tanh  %lldx%lld                  %7.3f s %7.1f GB/s\n", (long long)M, (long long)N, t,
           8.0 * M * N / t * 1e-9);
    BEST_OF_2(be->ops->softmax(be, &x, &y), t);
    printf("softmax    %lldx%lld                  %7.3f s %7.1f GB/s\n", (long long)M, (long long)N, t,
           8.0 * M * N / t * 1e-9);
    td_tensor_free(&x);
    td_tensor_free(&y);
    td_backend_destroy(&be);
    td_pool_destroy(&ctx.pool);
    return 0;
}
