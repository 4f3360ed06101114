/*
 * CPU GEMM throughput at DiT linear shapes: our linear op with f32 and bf16
 * weights (and the W8A8 op) against a plain cblas_sgemm of the same product
 * in the same process and thread count. Prints GFLOP/s and the ratios;
 * W8A8 twice: on the path this CPU gets (int8 dot products where it has
 * VNNI) and forced onto the widen + sgemm path every CPU has.
 * Usage: bench_gemm [threads [M K N reps]]   (default: all cores, the
 * three shapes below); one shape on the command line lets
 * gemm_vs_torch.py alternate it with torch under the same machine load.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "core/pool.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fill(float *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
}

typedef struct { int64_t m, k, n; int reps; } shape;

int main(int argc, char **argv)
{
    static const shape shapes[] = {
        { 4096, 1536, 1536, 5 },   /* Wan 1.3B attention projections */
        { 4096, 1536, 8960, 3 },   /* Wan 1.3B FFN up */
        { 4096, 8960, 1536, 3 },   /* Wan 1.3B FFN down */
    };
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    const shape *list = shapes;
    size_t count = sizeof(shapes) / sizeof(shapes[0]);
    shape one;
    td_ctx ctx;
    td_backend *be;

    if (argc == 6) {
        one = (shape){ atoll(argv[2]), atoll(argv[3]), atoll(argv[4]), atoi(argv[5]) };
        if (one.m < 1 || one.k < 1 || one.n < 1 || one.reps < 1) {
            fprintf(stderr, "bench_gemm: M K N reps must be positive\n");
            return 2;
        }
        list = &one;
        count = 1;
    } else if (argc > 2) {
        fprintf(stderr, "usage: bench_gemm [threads [M K N reps]]\n");
        return 2;
    }

    td_ctx_init(&ctx);
    if (td_pool_create(&ctx, threads, &ctx.pool) < 0 || td_backend_cpu_create(&ctx, 0, &be) < 0) {
        fprintf(stderr, "bench_gemm: %s\n", ctx.errmsg);
        return 1;
    }
    openblas_set_num_threads(td_pool_threads(ctx.pool));
    printf("threads %d (pool), openblas %d\n", td_pool_threads(ctx.pool), openblas_get_num_threads());
    printf("w8a8 path: %s\n", td_cpu_of(be)->w8a8_path == TD_W8_AVX512VNNI ? "avx512-vnni"
                               : td_cpu_of(be)->w8a8_path == TD_W8_AVXVNNI ? "avx-vnni" : "sgemm");
    printf("%-18s %10s %10s %10s %10s %8s %8s %8s %10s %8s %8s\n", "M x K x N", "sgemm", "lin f32", "lin bf16",
           "w8a8", "f32/bl", "bf16/bl", "w8a8/bl", "w8a8 sg", "w8sg/bl", "w8/f32");
    for (size_t s = 0; s < count; s++) {
        int64_t m = list[s].m, k = list[s].k, n = list[s].n;
        int64_t nkb = (k + 127) / 128, nnb = (n + 127) / 128;
        td_tensor x, w, wb, wq, ws, y;
        double flop = 2.0 * m * n * k, best[5] = { 1e30, 1e30, 1e30, 1e30, 1e30 };
        td_w8_path path = td_cpu_of(be)->w8a8_path;

        if (td_tensor_new(&ctx, &x, TD_F32, 2, (int64_t[]){ m, k }) < 0 ||
            td_tensor_new(&ctx, &w, TD_F32, 2, (int64_t[]){ n, k }) < 0 ||
            td_tensor_new(&ctx, &wb, TD_BF16, 2, (int64_t[]){ n, k }) < 0 ||
            td_tensor_new(&ctx, &wq, TD_I8, 2, (int64_t[]){ n, k }) < 0 ||
            td_tensor_new(&ctx, &ws, TD_F32, 2, (int64_t[]){ nnb, nkb }) < 0 ||
            td_tensor_new(&ctx, &y, TD_F32, 2, (int64_t[]){ m, n }) < 0) {
            fprintf(stderr, "bench_gemm: %s\n", ctx.errmsg);
            return 1;
        }
        fill(x.data, (size_t)(m * k), 1);
        fill(w.data, (size_t)(n * k), 2);
        td_from_f32(TD_BF16, w.data, wb.data, (size_t)(n * k));
        for (int64_t i = 0; i < n * k; i++)
            ((int8_t *)wq.data)[i] = (int8_t)(((float *)w.data)[i] * 250.0f);
        fill(ws.data, (size_t)(nnb * nkb), 3);
        for (int r = 0; r < list[s].reps; r++) {
            double t0, t;
            /* the ops set OpenBLAS's (process-wide) count per call; the
             * baseline gets the same count explicitly */
            openblas_set_num_threads(td_pool_threads(ctx.pool));
            t0 = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f,
                        x.data, (int)k, w.data, (int)k, 0.0f, y.data, (int)n);
            t = now() - t0;
            best[0] = t < best[0] ? t : best[0];
            t0 = now();
            be->ops->linear(be, &x, &w, NULL, &y);
            t = now() - t0;
            best[1] = t < best[1] ? t : best[1];
            t0 = now();
            be->ops->linear(be, &x, &wb, NULL, &y);
            t = now() - t0;
            best[2] = t < best[2] ? t : best[2];
            t0 = now();
            be->ops->linear_w8a8(be, &x, &wq, &ws, NULL, &y);
            t = now() - t0;
            best[3] = t < best[3] ? t : best[3];
            td_cpu_of(be)->w8a8_path = TD_W8_SGEMM;
            t0 = now();
            be->ops->linear_w8a8(be, &x, &wq, &ws, NULL, &y);
            t = now() - t0;
            td_cpu_of(be)->w8a8_path = path;
            best[4] = t < best[4] ? t : best[4];
        }
        printf("%5lldx%5lldx%5lld %10.1f %10.1f %10.1f %10.1f %8.3f %8.3f %8.3f %10.1f %8.3f %8.3f"
               "   GFLOP/s (best of %d)\n",
               (long long)m, (long long)k, (long long)n, flop / best[0] * 1e-9, flop / best[1] * 1e-9,
               flop / best[2] * 1e-9, flop / best[3] * 1e-9, best[0] / best[1], best[0] / best[2],
               best[0] / best[3], flop / best[4] * 1e-9, best[0] / best[4], best[1] / best[3],
               list[s].reps);
        td_tensor_free(&x); td_tensor_free(&w); td_tensor_free(&wb);
        td_tensor_free(&wq); td_tensor_free(&ws); td_tensor_free(&y);
    }
    td_backend_destroy(&be);
    td_pool_destroy(&ctx.pool);
    return 0;
}
