/*
 * SLA attention against full attention on the CPU backend, same inputs,
 * same process and threads: the time ratio is what SLA buys on the CPU.
 * Shapes are Wan 1.3B heads (D = 128) at reduced sequence lengths so a run
 * stays under ~1 min on 2 cores (best of 3 each); full attention grows as S^2, SLA's sparse
 * part as topk * S^2 plus a linear part of S * D^2.
 * Usage: bench_sla [threads] [S] [heads]   (default: all cores, 8192, 2)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend/backend.h"
#include "core/pool.h"

#define REPS 3   /* best of */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fill(float *p, size_t n, unsigned seed, float amp)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = amp * ((float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f);
    }
}

int main(int argc, char **argv)
{
    static const double topks[] = { 0.1, 0.2 };
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    int64_t S = argc > 2 ? atoll(argv[2]) : 8192, H = argc > 3 ? atoll(argv[3]) : 2, D = 128;
    int64_t shape[3] = { S, H, D };
    td_ctx ctx;
    td_backend *be;
    td_tensor q, k, v, w, b, o;
    double t0, full, sla;

    td_ctx_init(&ctx);
    if (td_pool_create(&ctx, threads, &ctx.pool) < 0 || td_backend_cpu_create(&ctx, 0, &be) < 0 ||
        td_tensor_new(&ctx, &q, TD_F32, 3, shape) < 0 || td_tensor_new(&ctx, &k, TD_F32, 3, shape) < 0 ||
        td_tensor_new(&ctx, &v, TD_F32, 3, shape) < 0 || td_tensor_new(&ctx, &o, TD_F32, 3, shape) < 0 ||
        td_tensor_new(&ctx, &w, TD_F32, 2, (int64_t[]){ D, D }) < 0 ||
        td_tensor_new(&ctx, &b, TD_F32, 1, (int64_t[]){ D }) < 0) {
        fprintf(stderr, "bench_sla: %s\n", ctx.errmsg);
        return 1;
    }
    fill(q.data, (size_t)(S * H * D), 1, 2.0f);
    fill(k.data, (size_t)(S * H * D), 2, 2.0f);
    fill(v.data, (size_t)(S * H * D), 3, 1.0f);
    fill(w.data, (size_t)(D * D), 4, 0.1f);
    fill(b.data, (size_t)D, 5, 0.1f);
    printf("threads %d, S %lld, heads %lld, head_dim %lld\n", td_pool_threads(ctx.pool),
           (long long)S, (long long)H, (long long)D);

    full = 1e30;
    for (int r = 0; r < REPS; r++) {
        t0 = now();
        if (be->ops->attention(be, &q, &k, &v, NULL, (float)(1.0 / sqrt((double)D)), 0, &o) < 0) {
            fprintf(stderr, "bench_sla: %s\n", ctx.errmsg);
            return 1;
        }
        full = fmin(full, now() - t0);
    }
    printf("%-26s %8.3f s\n", "full attention", full);
    for (size_t i = 0; i < sizeof(topks) / sizeof(topks[0]); i++)
        for (int shape_i = 0; shape_i < 2; shape_i++) {
            int bq = shape_i ? 64 : 128, bk = shape_i ? 128 : 64;
            sla = 1e30;
            for (int r = 0; r < REPS; r++) {
                t0 = now();
                if (be->ops->sla_attention(be, &q, &k, &v, &w, &b, bq, bk, topks[i], &o) < 0) {
                    fprintf(stderr, "bench_sla: %s\n", ctx.errmsg);
                    return 1;
                }
                sla = fmin(sla, now() - t0);
            }
            printf("sla topk %.2f blocks %3d/%-3d %8.3f s   full/sla %.2fx\n", topks[i], bq, bk, sla,
                   full / sla);
        }
    td_tensor_free(&q);
    td_tensor_free(&k);
    td_tensor_free(&v);
    td_tensor_free(&o);
    td_tensor_free(&w);
    td_tensor_free(&b);
    td_backend_destroy(&be);
    td_pool_destroy(&ctx.pool);
    return 0;
}
