/*
 * SLA attention against full attention on the CPU backend, same inputs,
 * same process and threads: the time ratio is what SLA buys on the CPU.
 * Shapes are Wan 1.3B heads (D = 128) at reduced sequence lengths so a run
 * stays under ~1 min on 2 cores (best of 3 each); full attention grows as S^2, SLA's sparse
 * part as topk * S^2 plus a linear part of S * D^2.
 * Usage: bench_sla [threads] [S] [heads]   (default: all cores, 8192, 2)
 *
 * With a fourth argument, bench_sla threads S heads rounds, it skips full
 * attention and times TurboDiffusion's setting (topk 0.1, blocks 128/64) on
 * each path this CPU runs (td_att_path), alternated over the rounds so the
 * other processes' load hits them alike, wall and process CPU seconds.
 * The DiT block's shape per head is S = 32760: `bench_sla 2 32760 2 3` is
 * 1/6 of the block's 12 heads. A fifth argument (scalar, avx2, avx512, amx) runs
 * that path alone, for perf.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "core/pool.h"

#define REPS 3   /* best of */

static double now_on(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double now(void)
{
    return now_on(CLOCK_MONOTONIC);
}

static const char *path_name(td_att_path p)
{
    return p == TD_ATT_AMX ? "amx" : p == TD_ATT_AVX512 ? "avx512" : p == TD_ATT_AVX2 ? "avx2" : "scalar";
}

/* topk 0.1, blocks 128/64 on each path (or `only`'s), alternated; 0 or 1
 * on failure. */
static int by_path(td_backend *be, td_tensor *q, td_tensor *k, td_tensor *v, td_tensor *w,
                   td_tensor *b, td_tensor *o, int rounds, const char *only)
{
    double best[TD_ATT_AMX + 1], cpu_best[TD_ATT_AMX + 1];

    for (int p = 0; p <= TD_ATT_AMX; p++)
        best[p] = cpu_best[p] = 1e30;

    for (int r = 0; r < rounds; r++)
        for (td_att_path p = TD_ATT_SCALAR; p <= TD_ATT_AMX; p++) {
            double t, c;
            if (!td_cpu_att_supported(p) || (only && strcmp(only, path_name(p))))
                continue;
            td_cpu_of(be)->att_path = p;
            t = now();
            c = now_on(CLOCK_PROCESS_CPUTIME_ID);
            if (be->ops->sla_attention(be, q, k, v, w, b, 128, 64, 0.1, o) < 0) {
                fprintf(stderr, "bench_sla: %s\n", be->ctx->errmsg);
                return 1;
            }
            t = now() - t;
            c = now_on(CLOCK_PROCESS_CPUTIME_ID) - c;
            best[p] = t < best[p] ? t : best[p];
            cpu_best[p] = c < cpu_best[p] ? c : cpu_best[p];
            printf("round %d %-7s %7.3f s  cpu %7.3f s\n", r, path_name(p), t, c);
        }
    for (td_att_path p = TD_ATT_SCALAR; p <= TD_ATT_AMX; p++)
        if (best[p] < 1e30)
            printf("best   %-7s %7.3f s  cpu %7.3f s\n", path_name(p), best[p], cpu_best[p]);
    return 0;
}

static void fill(float *p, size_t n, unsigned seed, float amp)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = amp * ((float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f);
    }
}

/* Full attention, then SLA at each topk and block shape, best of REPS;
 * 0 or 1 on failure. */
static int sweep(td_backend *be, td_tensor *q, td_tensor *k, td_tensor *v, td_tensor *w,
                 td_tensor *b, td_tensor *o)
{
    static const double topks[] = { 0.1, 0.2 };
    double t0, full, sla;

    full = 1e30;
    for (int r = 0; r < REPS; r++) {
        t0 = now();
        if (be->ops->attention(be, q, k, v, NULL, (float)(1.0 / sqrt((double)q->shape[2])), 0, o) < 0) {
            fprintf(stderr, "bench_sla: %s\n", be->ctx->errmsg);
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
                if (be->ops->sla_attention(be, q, k, v, w, b, bq, bk, topks[i], o) < 0) {
                    fprintf(stderr, "bench_sla: %s\n", be->ctx->errmsg);
                    return 1;
                }
                sla = fmin(sla, now() - t0);
            }
            printf("sla topk %.2f blocks %3d/%-3d %8.3f s   full/sla %.2fx\n", topks[i], bq, bk, sla,
                   full / sla);
        }
    return 0;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    int64_t S = argc > 2 ? atoll(argv[2]) : 8192, H = argc > 3 ? atoll(argv[3]) : 2, D = 128;
    int64_t shape[3] = { S, H, D };
    td_ctx ctx;
    td_backend *be;
    td_tensor q, k, v, w, b, o;
    int rc;

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
    rc = argc > 4 ? by_path(be, &q, &k, &v, &w, &b, &o, atoi(argv[4]) > 0 ? atoi(argv[4]) : 1,
                            argc > 5 ? argv[5] : NULL)
                  : sweep(be, &q, &k, &v, &w, &b, &o);
    td_tensor_free(&q);
    td_tensor_free(&k);
    td_tensor_free(&v);
    td_tensor_free(&o);
    td_tensor_free(&w);
    td_tensor_free(&b);
    td_backend_destroy(&be);
    td_pool_destroy(&ctx.pool);
    return rc;
}
