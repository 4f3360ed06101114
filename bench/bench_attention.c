/*
 * Dense attention at one full-size Wan 1.3B DiT block's self-attention
 * shape (32760 keys, 12 heads x 128), over fewer query rows to keep it
 * short: each path this CPU runs (td_att_path) timed in turn, alternated
 * over rounds so load drift from other processes hits them alike.
 * CPU seconds (all threads) are printed beside wall seconds: on a shared
 * machine they move less with the other processes' load.
 * Usage: bench_attention [threads] [query rows] [rounds]
 *        (defaults: all cores, 1024, 3); ~5 s per round on 2 cores.
 */
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

static int make(td_ctx *ctx, td_tensor *t, int64_t s, int64_t h, int64_t d, unsigned seed)
{
    if (td_tensor_new(ctx, t, TD_F32, 3, (int64_t[]){ s, h, d }) < 0) {
        fprintf(stderr, "bench_attention: %s\n", ctx->errmsg);
        return -1;
    }
    for (int64_t i = 0; i < td_numel(t); i++)
        ((float *)t->data)[i] = (float)((i * 2654435761u + seed) % 1000) / 500.0f - 1.0f;
    return 0;
}

static const char *path_name(td_att_path p)
{
    return p == TD_ATT_AMX ? "amx" : p == TD_ATT_AVX512 ? "avx512" : p == TD_ATT_AVX2 ? "avx2" : "scalar";
}

int main(int argc, char **argv)
{
    td_ctx ctx;
    td_backend *be;
    td_tensor q, k, v, o;
    int64_t S = 32760, H = 12, D = 128, sq = argc > 2 ? atoll(argv[2]) : 1024;
    int rounds = argc > 3 ? atoi(argv[3]) : 3;
    double best[TD_ATT_AMX + 1], cpu_best[TD_ATT_AMX + 1];

    for (int p = 0; p <= TD_ATT_AMX; p++)
        best[p] = cpu_best[p] = 1e30;

    td_ctx_init(&ctx);
    if (td_pool_create(&ctx, argc > 1 ? atoi(argv[1]) : 0, &ctx.pool) < 0 ||
        td_backend_cpu_create(&ctx, 0, &be) < 0) {
        fprintf(stderr, "bench_attention: %s\n", ctx.errmsg);
        return 1;
    }
    if (sq < 1 || rounds < 1) {
        fprintf(stderr, "bench_attention: query rows %lld and rounds %d must be >= 1\n", (long long)sq, rounds);
        return 1;
    }
    if (make(&ctx, &q, sq, H, D, 1) || make(&ctx, &k, S, H, D, 2) || make(&ctx, &v, S, H, D, 3) ||
        make(&ctx, &o, sq, H, D, 4))
        return 1;
    printf("threads %d, q %lld x %lld x %lld, k/v %lld rows\n", td_pool_threads(ctx.pool), (long long)sq,
           (long long)H, (long long)D, (long long)S);
    for (int r = 0; r < rounds; r++)
        for (td_att_path p = TD_ATT_SCALAR; p <= TD_ATT_AMX; p++) {
            double t, c;
            if (!td_cpu_att_supported(p))
                continue;
            td_cpu_of(be)->att_path = p;
            t = now(CLOCK_MONOTONIC);
            c = now(CLOCK_PROCESS_CPUTIME_ID);
            if (be->ops->attention(be, &q, &k, &v, NULL, 0.088f, 0, &o) < 0) {
                fprintf(stderr, "bench_attention: %s\n", ctx.errmsg);
                return 1;
            }
            t = now(CLOCK_MONOTONIC) - t;
            c = now(CLOCK_PROCESS_CPUTIME_ID) - c;
            best[p] = t < best[p] ? t : best[p];
            cpu_best[p] = c < cpu_best[p] ? c : cpu_best[p];
            printf("round %d %-7s %7.3f s %7.1f GFLOP/s  cpu %7.3f s\n", r, path_name(p), t,
                   4.0 * sq * S * D * H / t * 1e-9, c);
        }
    for (td_att_path p = TD_ATT_SCALAR; p <= TD_ATT_AMX; p++)
        if (td_cpu_att_supported(p))
            printf("best   %-7s %7.3f s %7.1f GFLOP/s  cpu %7.3f s\n", path_name(p), best[p],
                   4.0 * sq * S * D * H / best[p] * 1e-9, cpu_best[p]);
    td_tensor_free(&q);
    td_tensor_free(&k);
    td_tensor_free(&v);
    td_tensor_free(&o);
    td_backend_destroy(&be);
    td_pool_destroy(&ctx.pool);
    return 0;
}
